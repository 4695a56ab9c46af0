/* SPDX-License-Identifier: MIT */
/*
 * engine_dst_hello.c - the destination's answer to HELLO: the protocol
 * version, the page size and RAM layout, and per source device a verdict
 * (a device of the same name here, valid flags, a backend that can load
 * state, and the backend's compat callback or the default rule), plus a
 * device here without a counterpart.  Any refusal ends the migration with
 * nothing changed on either side (docs/migration-protocol.md section 3).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/engine.h>
#include "engine_chan.h"
#include "engine_dst_state.h"
#include "engine_priv.h"
#include "internal.h"

static int
find_dev(const struct vmig_engine *e, const char *name)
{
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (strcmp(e->dev[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The engine's rule when the backend has no compat callback. */
static int
default_compat(const struct vmig_mp_dev *src, const struct vmig_pci_ids *ids,
               const uint8_t *desc, size_t desc_len, char *reason, size_t cap)
{
    if (src->ids.valid && ids->valid &&
        (src->ids.vendor != ids->vendor || src->ids.device != ids->device ||
         src->ids.subsys_vendor != ids->subsys_vendor ||
         src->ids.subsys_device != ids->subsys_device ||
         src->ids.revision != ids->revision)) {
        snprintf(reason, cap,
                 "PCI ids differ: source %04x:%04x %04x:%04x rev %u, here "
                 "%04x:%04x %04x:%04x rev %u",
                 src->ids.vendor, src->ids.device, src->ids.subsys_vendor,
                 src->ids.subsys_device, src->ids.revision, ids->vendor,
                 ids->device, ids->subsys_vendor, ids->subsys_device,
                 ids->revision);
        return 0;
    }
    if (src->desc_len > 0 && desc_len > 0 &&
        (src->desc_len != desc_len || memcmp(src->desc, desc, desc_len) != 0)) {
        snprintf(reason, cap, "compatibility descriptors differ");
        return 0;
    }
    return 1;
}

/* Decide one source device; fills the verdict.  Return 0 or -errno. */
static int
dst_decide(struct eng_dst *dd, const struct vmig_mp_dev *src,
           struct vmig_mp_verdict *v)
{
    struct vmig_engine *e = dd->e;
    int i = find_dev(e, src->name);
    const struct eng_dev *d;
    uint64_t *flags;
    struct vmig_pci_ids ids = {0};
    ssize_t n = 0;
    int ret;

    v->compatible = false;
    if (i < 0) {
        snprintf(v->reason, sizeof(v->reason), "no device named %s here",
                 src->name);
        return 0;
    }
    d = &e->dev[i];
    flags = &dd->dev[i].flags;
    ret = d->ops->get_flags(d->opaque, flags);
    if (ret == 0) {
        ret = vmig_flags_validate(*flags);
    }
    if (ret < 0) {
        snprintf(v->reason, sizeof(v->reason),
                 "device here has no valid "
                 "migration flags");
        return 0;
    }
    if (vmig_flags_validate(src->mig_flags) < 0) {
        snprintf(v->reason, sizeof(v->reason), "source flags %#llx invalid",
                 (unsigned long long)src->mig_flags);
        return 0;
    }
    if (d->ops->write == NULL) {
        snprintf(v->reason, sizeof(v->reason), "backend cannot load state");
        return 0;
    }
    if (d->ops->compat != NULL) {
        ret = d->ops->compat(d->opaque, src, v->reason, sizeof(v->reason));
        if (ret < 0) {
            snprintf(v->reason, sizeof(v->reason),
                     "compatibility check "
                     "failed: %s",
                     strerror(-ret));
            return 0;
        }
        v->compatible = ret == 1;
        if (!v->compatible && v->reason[0] == '\0') {
            snprintf(v->reason, sizeof(v->reason), "refused by the device");
        }
        return 0;
    }
    if (d->ops->describe != NULL) {
        n = d->ops->describe(d->opaque, &ids, e->buf, VMIG_MP_DESC_MAX);
        if (n < 0 || n > (ssize_t)VMIG_MP_DESC_MAX) {
            snprintf(v->reason, sizeof(v->reason),
                     "device here cannot "
                     "describe itself");
            return 0;
        }
    }
    v->compatible = default_compat(src, &ids, e->buf, (size_t)n, v->reason,
                                   sizeof(v->reason)) == 1;
    return 0;
}

bool
vmig__dst_evaluate(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    const struct vmig_mp_hello *h = d->h;
    struct vmig_mp_hello_reply *rp = d->rp;
    bool ok = true;
    uint32_t hi =
        h->version_max < VMIG_MP_PROTO_MAX ? h->version_max : VMIG_MP_PROTO_MAX;
    uint32_t lo =
        h->version_min > VMIG_MP_PROTO_MIN ? h->version_min : VMIG_MP_PROTO_MIN;

    memset(rp, 0, sizeof(*rp));
    rp->ndevices = h->ndevices;
    /* compression is the source's choice: whatever it sends is read */
    rp->features = h->features & (VMIG_MP_FEAT__SUPPORTED | VMIG_MP_FEAT_ZSTD);
    if ((h->features & VMIG_MP_FEAT_CHANNELS) && vmig__mc_grantable(e, d)) {
        rp->features |= VMIG_MP_FEAT_CHANNELS;
    }
    if (lo > hi) {
        rp->status = EOPNOTSUPP;
        snprintf(rp->reason, sizeof(rp->reason),
                 "no common protocol version: source %u..%u, here %u..%u",
                 h->version_min, h->version_max, VMIG_MP_PROTO_MIN,
                 VMIG_MP_PROTO_MAX);
        return false;
    }
    rp->version = hi;
    if (h->page_size != VMIG_MP_PAGE_SIZE) {
        rp->status = EOPNOTSUPP;
        snprintf(rp->reason, sizeof(rp->reason), "page size %u, here %u",
                 h->page_size, VMIG_MP_PAGE_SIZE);
        return false;
    }
    if (h->nregions != e->nregions) {
        rp->status = EINVAL;
        snprintf(rp->reason, sizeof(rp->reason),
                 "source has %u RAM regions, here %u", h->nregions,
                 e->nregions);
        ok = false;
    }
    for (uint32_t i = 0; ok && i < h->nregions; i++) {
        if (strcmp(h->region[i].name, e->region[i].name) != 0 ||
            h->region[i].size != e->region[i].size) {
            rp->status = EINVAL;
            snprintf(rp->reason, sizeof(rp->reason),
                     "RAM region %u: source %s of %llu bytes, here %s of "
                     "%llu bytes; start the destination with the same RAM",
                     i, h->region[i].name,
                     (unsigned long long)h->region[i].size, e->region[i].name,
                     (unsigned long long)e->region[i].size);
            ok = false;
        }
    }
    d->src_ndev = h->ndevices;
    for (uint32_t i = 0; i < h->ndevices; i++) {
        int j;

        (void)dst_decide(d, &h->dev[i], &rp->dev[i]);
        j = find_dev(e, h->dev[i].name);
        if (j >= 0) {
            if (d->dev[j].src_index >= 0) {
                rp->dev[i].compatible = false;
                snprintf(rp->dev[i].reason, sizeof(rp->dev[i].reason),
                         "device named twice in HELLO");
            } else {
                d->map[i] = j;
                d->dev[j].src_index = (int)i;
            }
            pthread_mutex_lock(&e->lock);
            e->st.dev[j].verdict = rp->dev[i].compatible ? 1 : 0;
            memcpy(e->st.dev[j].reason, rp->dev[i].reason,
                   sizeof(e->st.dev[j].reason));
            pthread_mutex_unlock(&e->lock);
        }
        if (!rp->dev[i].compatible) {
            vmig_warn(e->ctx, "incoming: refusing device %s: %s",
                      h->dev[i].name, rp->dev[i].reason);
            if (rp->status == 0) {
                rp->status = EOPNOTSUPP;
                snprintf(rp->reason, sizeof(rp->reason),
                         "device %s refused: %s", h->dev[i].name,
                         rp->dev[i].reason);
            }
            ok = false;
        }
    }
    for (unsigned int j = 0; j < e->ndev; j++) {
        if (d->dev[j].src_index < 0 && rp->status == 0) {
            rp->status = EINVAL;
            snprintf(rp->reason, sizeof(rp->reason),
                     "device %s here has no counterpart on the source",
                     e->dev[j].name);
            ok = false;
        }
    }
    return ok;
}
