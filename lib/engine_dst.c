/* SPDX-License-Identifier: MIT */
/*
 * engine_dst.c - the destination side of a migration: answers HELLO per
 * device, puts devices in RESUMING, checks every frame before it touches
 * RAM or a device, and on SWITCHOVER re-establishes each device's
 * VMM-owned config, validates (RESUMING -> STOP), starts the devices in two
 * phases, loads and resumes the vCPUs and CONFIRMs.  Any failure resets
 * the devices and leaves the vCPUs paused: the source resumes the VM
 * (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_priv.h"
#include "internal.h"

/* Why a destination failed, for the ERROR frame; -1 dev: none. */
struct dst_fail {
    int dev;
    bool peer_aborted; /* the source sent ABORT: no ERROR back */
    char reason[VMIG_MP_REASON_MAX + 1];
};

static void fail_set(struct dst_fail *df, int dev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail_set(struct dst_fail *df, int dev, const char *fmt, ...)
{
    va_list ap;

    if (df->reason[0] != '\0') {
        return;
    }
    df->dev = dev;
    va_start(ap, fmt);
    vsnprintf(df->reason, sizeof(df->reason), fmt, ap);
    va_end(ap);
}

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
dst_decide(struct vmig_engine *e, const struct vmig_mp_dev *src,
           struct vmig_mp_verdict *v)
{
    int i = find_dev(e, src->name);
    struct eng_dev *d;
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
    ret = d->ops->get_flags(d->opaque, &d->flags);
    if (ret == 0) {
        ret = vmig_flags_validate(d->flags);
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

/* Evaluate HELLO into @rp.  Return true when the migration may go on. */
static bool
dst_evaluate(struct vmig_engine *e, const struct vmig_mp_hello *h,
             struct vmig_mp_hello_reply *rp)
{
    bool ok = true;
    uint32_t hi =
        h->version_max < VMIG_MP_PROTO_MAX ? h->version_max : VMIG_MP_PROTO_MAX;
    uint32_t lo =
        h->version_min > VMIG_MP_PROTO_MIN ? h->version_min : VMIG_MP_PROTO_MIN;

    memset(rp, 0, sizeof(*rp));
    rp->ndevices = h->ndevices;
    rp->features = h->features & VMIG_MP_FEAT__SUPPORTED;
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
    for (unsigned int i = 0; i < VMIG_ENGINE_MAX_DEVICES; i++) {
        e->map[i] = -1;
        e->dev[i].src_index = -1;
    }
    e->src_ndev = h->ndevices;
    for (uint32_t i = 0; i < h->ndevices; i++) {
        int j;

        (void)dst_decide(e, &h->dev[i], &rp->dev[i]);
        j = find_dev(e, h->dev[i].name);
        if (j >= 0) {
            if (e->dev[j].src_index >= 0) {
                rp->dev[i].compatible = false;
                snprintf(rp->dev[i].reason, sizeof(rp->dev[i].reason),
                         "device named twice in HELLO");
            } else {
                e->map[i] = j;
                e->dev[j].src_index = (int)i;
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
        if (e->dev[j].src_index < 0 && rp->status == 0) {
            rp->status = EINVAL;
            snprintf(rp->reason, sizeof(rp->reason),
                     "device %s here has no counterpart on the source",
                     e->dev[j].name);
            ok = false;
        }
    }
    return ok;
}

/* SETUP: every device to RESUMING; fresh receive trackers. */
static int
dst_setup(struct vmig_engine *e, struct dst_fail *df)
{
    vmig__engine_drop_rx(e);
    for (unsigned int j = 0; j < e->ndev; j++) {
        struct eng_dev *d = &e->dev[j];
        enum vmig_state s;
        int ret;

        d->rx_off = 0;
        d->rx_ended = false;
        d->rx_stopcopy = false;
        d->hash = XXH3_createState();
        if (d->hash == NULL) {
            return -ENOMEM;
        }
        XXH3_64bits_reset(d->hash);
        if (d->ops->get_state(d->opaque, &s) == 0 && s == VMIG_STATE_ERROR) {
            (void)d->ops->reset(d->opaque);
        }
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_RESUMING, false);
        if (ret < 0) {
            fail_set(df, d->src_index, "cannot enter RESUMING: %s",
                     strerror(-ret));
            return ret;
        }
    }
    return 0;
}

static struct eng_dev *
dst_dev(struct vmig_engine *e, uint32_t src_index)
{
    if (src_index >= e->src_ndev || e->map[src_index] < 0) {
        return NULL;
    }
    return &e->dev[e->map[src_index]];
}

/*
 * Zero pages: on a shared mapping (a memfd the VMM also hands to device
 * servers) punching a hole zeroes them without allocating memory, which
 * matters because most of a fresh guest's RAM is zero.  Anything else
 * (private memory, a kernel that refuses) gets a memset.  Once the hole
 * punch is refused for a region it is not tried again.
 */
static void
dst_zero(struct vmig_engine *e, unsigned int region, uint8_t *p, size_t len)
{
    if (!e->region[region].no_punch) {
        if (madvise(p, len, MADV_REMOVE) == 0) {
            return;
        }
        e->region[region].no_punch = true;
    }
    memset(p, 0, len);
}

/*
 * Where RAM pages at @off of region @region land, or NULL when the range
 * is not inside the region.  The codec checked the page count and
 * alignment.
 */
static uint8_t *
dst_ram_at(const struct vmig_engine *e, uint32_t region, uint64_t off,
           uint64_t len)
{
    const struct eng_region *rg;

    if (region >= e->nregions) {
        return NULL;
    }
    rg = &e->region[region];
    if (off > rg->size || len > rg->size - off) {
        return NULL;
    }
    return (uint8_t *)rg->host + off;
}

static int
dst_ram(struct vmig_engine *e, struct vmig_mp_conn *c,
        const struct vmig_mp_frame *f, const struct vmig_mp_ram *m,
        uint64_t features, struct dst_fail *df)
{
    uint64_t len = (uint64_t)m->npages * VMIG_MP_PAGE_SIZE;
    bool zero = (m->flags & VMIG_MP_RAM_ZERO) != 0;
    uint8_t *at = dst_ram_at(e, m->region, m->offset, len);
    int ret = 0;

    if (at == NULL) {
        fail_set(df, -1, "RAM frame beyond region %u (%llu pages at %#llx)",
                 m->region, (unsigned long long)m->npages,
                 (unsigned long long)m->offset);
        return -EBADMSG;
    }
    if (zero && !(features & VMIG_MP_FEAT_ZERO_PAGES)) {
        fail_set(df, -1, "zero-page RAM frame without the feature");
        return -EPROTO;
    }
    if (e->ops->ram_write != NULL) {
        ret = e->ops->ram_write(e->opaque, m->region, m->offset,
                                zero ? NULL : m->data.ptr, (size_t)len);
        if (ret < 0) {
            fail_set(df, -1, "cannot write guest RAM: %s", strerror(-ret));
            return ret;
        }
    } else if (zero) {
        dst_zero(e, m->region, at, (size_t)len);
    } else if (!f->placed) {
        memcpy(at, m->data.ptr, (size_t)len);
    }
    vmig__engine_account(e, c, len, zero ? m->npages : 0, -1, 0);
    return 0;
}

static int
dst_dev_config(struct vmig_engine *e, const struct vmig_mp_dev_config *m,
               struct dst_fail *df)
{
    uint32_t idx = m->dev;
    struct eng_dev *d = dst_dev(e, idx);
    size_t n = m->data.len;

    if (d == NULL) {
        fail_set(df, -1, "DEV_CONFIG for unknown device %u", idx);
        return -EBADMSG;
    }
    if (d->config_seen) {
        fail_set(df, (int)idx, "config sent twice");
        return -EPROTO;
    }
    d->config = malloc(n > 0 ? n : 1);
    if (d->config == NULL) {
        return -ENOMEM;
    }
    if (n > 0) {
        memcpy(d->config, m->data.ptr, n);
    }
    d->config_len = n;
    d->config_seen = true;
    pthread_mutex_lock(&e->lock);
    e->st.dev[e->map[idx]].config_len = n;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static int
dst_dev_data(struct vmig_engine *e, struct vmig_mp_conn *c,
             const struct vmig_mp_dev_data *m, uint64_t features,
             struct dst_fail *df)
{
    uint32_t idx = m->dev, flags = m->flags;
    uint64_t off = m->offset;
    size_t n = m->data.len;
    struct eng_dev *d = dst_dev(e, idx);
    int ret;

    if (d == NULL) {
        fail_set(df, -1, "DEV_DATA for unknown device %u", idx);
        return -EBADMSG;
    }
    if ((flags & VMIG_MP_DEV_PRECOPY) && !(features & VMIG_MP_FEAT_PRECOPY)) {
        fail_set(df, (int)idx, "precopy device data was not negotiated");
        return -EOPNOTSUPP;
    }
    if ((flags & VMIG_MP_DEV_PRECOPY) && d->rx_stopcopy) {
        fail_set(df, (int)idx, "precopy data after stop-copy data");
        return -EPROTO;
    }
    if (d->rx_ended || off != d->rx_off) {
        fail_set(df, (int)idx,
                 "device data out of order at offset %llu "
                 "(expected %llu)",
                 (unsigned long long)off, (unsigned long long)d->rx_off);
        return -EBADMSG;
    }
    ret = d->ops->write(d->opaque, m->data.ptr, n);
    if (ret < 0) {
        fail_set(df, (int)idx, "device refused its state at offset %llu: %s",
                 (unsigned long long)off, strerror(-ret));
        return ret;
    }
    XXH3_64bits_update(d->hash, m->data.ptr, n);
    d->rx_off += n;
    if (!(flags & VMIG_MP_DEV_PRECOPY)) {
        d->rx_stopcopy = true;
    }
    vmig__engine_account(e, c, 0, 0, e->map[idx], n);
    return 0;
}

/*
 * DEV_RESTART: the source device was reset during precopy and starts its
 * stream again.  Whatever this device received is discarded (reset) and
 * it waits for a new stream from offset 0.
 */
static int
dst_dev_restart(struct vmig_engine *e, const struct vmig_mp_dev_restart *m,
                uint64_t features, struct dst_fail *df)
{
    uint32_t idx = m->dev;
    struct eng_dev *d = dst_dev(e, idx);
    int ret;

    if (d == NULL) {
        fail_set(df, -1, "DEV_RESTART for unknown device %u", idx);
        return -EBADMSG;
    }
    if (!(features & VMIG_MP_FEAT_PRECOPY)) {
        fail_set(df, (int)idx, "DEV_RESTART without precopy");
        return -EPROTO;
    }
    if (d->rx_ended || d->rx_stopcopy) {
        fail_set(df, (int)idx, "DEV_RESTART after its stop-copy data");
        return -EPROTO;
    }
    vmig_warn(e->ctx,
              "incoming: device %s: the source restarts its precopy (it was "
              "reset there); discarding the %llu bytes received",
              d->name, (unsigned long long)d->rx_off);
    ret = d->ops->reset(d->opaque);
    if (ret == 0) {
        ret = vmig__engine_dev_set(e, (unsigned int)e->map[idx],
                                   VMIG_STATE_RESUMING, false);
    }
    if (ret < 0) {
        fail_set(df, (int)idx, "cannot restart RESUMING: %s", strerror(-ret));
        return ret;
    }
    d->rx_off = 0;
    XXH3_64bits_reset(d->hash);
    pthread_mutex_lock(&e->lock);
    e->st.dev[e->map[idx]].restarts++;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/*
 * SWITCHOVER_REQ: every frame before it has been handled, so every
 * device accepted the data sent so far (its initial precopy data
 * included): acknowledge.  A device that refused it has failed the
 * migration already, before the source paused anything.
 */
static int
dst_switchover_req(struct vmig_mp_conn *c, const struct vmig_mp_swreq *m,
                   uint64_t features, struct dst_fail *df)
{
    struct vmig_mp_msg ack = {.type = VMIG_MP_SWITCHOVER_ACK,
                              .switchover_ack = {.id = m->id}};

    if (!(features & VMIG_MP_FEAT_SWITCHOVER_ACK)) {
        fail_set(df, -1, "SWITCHOVER_REQ without switchover-ack");
        return -EPROTO;
    }
    return vmig_mp_send_msg(c, &ack);
}

static int
dst_dev_end(struct vmig_engine *e, const struct vmig_mp_dev_end *m,
            struct dst_fail *df)
{
    uint32_t idx = m->dev;
    uint64_t total = m->total, digest = m->digest;
    struct eng_dev *d = dst_dev(e, idx);

    if (d == NULL || d->rx_ended) {
        fail_set(df, -1, "DEV_END for unknown device %u, or twice", idx);
        return -EBADMSG;
    }
    if (total != d->rx_off || digest != XXH3_64bits_digest(d->hash)) {
        fail_set(df, (int)idx,
                 "device data incomplete or corrupt (%llu of "
                 "%llu bytes, digest %s)",
                 (unsigned long long)d->rx_off, (unsigned long long)total,
                 digest == XXH3_64bits_digest(d->hash) ? "ok" : "mismatch");
        return -EBADMSG;
    }
    d->rx_ended = true;
    return 0;
}

/* SWITCHOVER: validate, start the devices, resume, confirm. */
static int
dst_complete(struct vmig_engine *e, struct vmig_mp_conn *c,
             const struct vmig_mp_switchover *sw, uint64_t t_sw, bool *resumed,
             struct dst_fail *df)
{
    struct vmig_mp_msg conf = {.type = VMIG_MP_CONFIRM};
    int ret;

    if (sw->ram_bytes != e->ram_total || sw->ndevices != e->src_ndev) {
        fail_set(df, -1,
                 "SWITCHOVER for %llu bytes of RAM and %u devices; HELLO "
                 "announced %llu and %u",
                 (unsigned long long)sw->ram_bytes, sw->ndevices,
                 (unsigned long long)e->ram_total, e->src_ndev);
        return -EBADMSG;
    }
    if ((sw->flags & VMIG_MP_SW_VCPU) && e->vcpu == NULL) {
        fail_set(df, -1, "vCPU state missing at switchover");
        return -EPROTO;
    }
    for (unsigned int j = 0; j < e->ndev; j++) {
        if (!e->dev[j].rx_ended) {
            fail_set(df, e->dev[j].src_index,
                     "no complete state at "
                     "switchover");
            return -EPROTO;
        }
    }
    vmig__engine_set_status(e, VMIG_ENGINE_DEVICE);
    /*
     * Validation (RESUMING -> STOP), then the VMM-owned config (DMA
     * mappings, IRQ wiring, PCI config writes) while the device is
     * stopped: a device accepts region accesses in STOP, not in RESUMING
     * (the uAPI's rule), and nothing runs before both are done.
     */
    for (unsigned int j = 0; j < e->ndev; j++) {
        struct eng_dev *d = &e->dev[j];

        if (d->config_seen && d->ops->config_load == NULL) {
            fail_set(df, d->src_index,
                     "config sent but this backend cannot load one");
            return -EOPNOTSUPP;
        }
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_STOP, false);
        if (ret < 0) {
            fail_set(df, d->src_index, "state failed validation: %s",
                     strerror(-ret));
            return ret;
        }
        if (d->config_seen) {
            ret = d->ops->config_load(d->opaque, d->config, d->config_len);
            if (ret < 0) {
                fail_set(df, d->src_index, "config refused: %s",
                         strerror(-ret));
                return ret;
            }
        }
    }
    /* two phases: nobody runs before everybody accepts P2P traffic */
    for (unsigned int j = 0; j < e->ndev; j++) {
        if (e->dev[j].flags & VMIG_MIGRATION_P2P) {
            ret = vmig__engine_dev_set(e, j, VMIG_STATE_RUNNING_P2P, false);
            if (ret < 0) {
                fail_set(df, e->dev[j].src_index, "cannot enter RUNNING_P2P");
                return ret;
            }
        }
    }
    for (unsigned int j = 0; j < e->ndev; j++) {
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_RUNNING, false);
        if (ret < 0) {
            fail_set(df, e->dev[j].src_index, "cannot enter RUNNING");
            return ret;
        }
    }
    if (e->vcpu != NULL && e->ops->vcpu_load != NULL) {
        ret = e->ops->vcpu_load(e->opaque, e->vcpu, e->vcpu_len);
        if (ret < 0) {
            fail_set(df, -1, "vCPU state refused: %s", strerror(-ret));
            return ret;
        }
    } else if (e->vcpu != NULL) {
        fail_set(df, -1, "vCPU state sent but this VMM cannot load it");
        return -EOPNOTSUPP;
    }
    ret = e->ops->vcpu_resume(e->opaque);
    if (ret < 0) {
        fail_set(df, -1, "cannot resume the vCPUs: %s", strerror(-ret));
        return ret;
    }
    *resumed = true;
    conf.confirm.resume_ns = vmig__real_ns();
    conf.confirm.switchover_ns = vmig__mono_ns() - t_sw;
    pthread_mutex_lock(&e->lock);
    conf.confirm.ram_bytes = e->st.ram_transferred;
    conf.confirm.dev_bytes = e->st.dev_total;
    pthread_mutex_unlock(&e->lock);
    return vmig_mp_send_msg(c, &conf);
}

static void
dst_send_error(struct vmig_engine *e, struct vmig_mp_conn *c, int err,
               const struct dst_fail *df)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ERROR};

    vmig_mp_conn_set_cancel(c, NULL);
    vmig_mp_conn_set_timeout(c, 1000);
    m.error.err = (uint32_t)-err;
    m.error.dev = df->dev >= 0 ? (uint32_t)df->dev : VMIG_MP_NO_DEVICE;
    snprintf(m.error.reason, sizeof(m.error.reason), "%s",
             df->reason[0] != '\0' ? df->reason : strerror(-err));
    if (vmig_mp_send_msg(c, &m) < 0) {
        vmig_dbg(e->ctx, "incoming: the source is gone; no ERROR sent");
    }
}

/*
 * RAM pages go straight from the socket into guest RAM when the frame's
 * header is sound (dst_ram() then checks it again and skips the copy).
 * The checksum is verified after the write; a bad frame fails the
 * migration and the destination's RAM is discarded with it.
 */
static void *
dst_place(void *opaque, const struct vmig_mp_hdr *hdr, const uint8_t *head,
          size_t tail_len)
{
    struct vmig_engine *e = opaque;
    struct vmig_mp_msg m;

    if (hdr->type != VMIG_MP_RAM || e->ops->ram_write != NULL ||
        vmig_mp_msg_decode_head(VMIG_MP_RAM, head, VMIG_MP_RAM_HDR_LEN,
                                hdr->len, &m) < 0 ||
        m.ram.data.len != tail_len) {
        return NULL;
    }
    return dst_ram_at(e, m.ram.region, m.ram.offset, m.ram.data.len);
}

/*
 * After an ERROR: closing a socket with unread data makes TCP send a
 * reset, which can destroy the ERROR before the source reads it.  So stop
 * writing and drain what the source still sends until it hangs up (it
 * does once it reads the ERROR between two frames), for at most 2 s.
 */
static void
dst_linger(struct vmig_engine *e, struct vmig_chan *ch)
{
    uint64_t end = vmig__mono_ns() + 2000000000ull;
    int fd = vmig_chan_fd(ch);

    /* raw reads below: what is drained is discarded, TLS or not */
    vmig__chan_shutdown_wr(ch);
    while (vmig__mono_ns() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        n = recv(fd, e->buf, VMIG_MP_PAYLOAD_MAX, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return;
        }
    }
}

/*
 * ACK on the return path: {u32 type acked, u32 its sequence number, u64
 * value} - the pass number for RAM_PASS_END, the device bytes for DEV_END.
 * The source uses them as progress and liveness; precopy will hang the
 * switchover-ack on the same mechanism.
 */
static int
dst_ack(struct vmig_mp_conn *c, const struct vmig_mp_frame *f, uint64_t value)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ACK,
                            .ack = {f->hdr.type, f->hdr.seq, value}};

    return vmig_mp_send_msg(c, &m);
}

/* Receive frames until SWITCHOVER (0, *@sw filled), or fail. */
static int
dst_stream(struct vmig_engine *e, struct vmig_mp_conn *c, uint64_t features,
           struct vmig_mp_switchover *sw, struct dst_fail *df)
{
    struct vmig_mp_frame fr, *f = &fr;
    struct vmig_mp_msg m;

    for (;;) {
        int ret = vmig_mp_recv_placed(c, VMIG_MP_RAM_HDR_LEN, dst_place, e, f);

        if (ret < 0) {
            if (ret == -EBADMSG || ret == -E2BIG) {
                fail_set(df, -1, "corrupt or oversized frame (%s)",
                         strerror(-ret));
            }
            return ret;
        }
        if (!vmig_mp_type_known(f->hdr.type)) {
            if (f->hdr.flags & VMIG_MP_F_OPTIONAL) {
                vmig_dbg(e->ctx, "incoming: skipping optional frame type %#x",
                         f->hdr.type);
                continue;
            }
            fail_set(df, -1, "unknown mandatory frame type %#x", f->hdr.type);
            return -EOPNOTSUPP;
        }
        /* return-path frames, and HELLO or SETUP again: out of place */
        if (f->hdr.type > VMIG_MP_MAIN_LAST || f->hdr.type == VMIG_MP_HELLO ||
            f->hdr.type == VMIG_MP_SETUP) {
            fail_set(df, -1, "unexpected %s frame",
                     vmig_mp_type_name(f->hdr.type));
            return -EPROTO;
        }
        if (vmig_mp_frame_decode(f, &m) < 0) {
            fail_set(df, -1, "malformed %s frame (%u bytes)",
                     vmig_mp_type_name(f->hdr.type), f->hdr.len);
            return -EBADMSG;
        }
        switch (f->hdr.type) {
        case VMIG_MP_RAM:
            ret = dst_ram(e, c, f, &m.ram, features, df);
            break;
        case VMIG_MP_RAM_PASS_END:
            vmig__engine_pass(e, m.pass_end.pass);
            ret = dst_ack(c, f, m.pass_end.pass);
            break;
        case VMIG_MP_DEV_CONFIG:
            ret = dst_dev_config(e, &m.dev_config, df);
            break;
        case VMIG_MP_DEV_DATA:
            ret = dst_dev_data(e, c, &m.dev_data, features, df);
            break;
        case VMIG_MP_DEV_RESTART:
            ret = dst_dev_restart(e, &m.dev_restart, features, df);
            break;
        case VMIG_MP_SWITCHOVER_REQ:
            ret = dst_switchover_req(c, &m.switchover_req, features, df);
            break;
        case VMIG_MP_DEV_END:
            ret = dst_dev_end(e, &m.dev_end, df);
            if (ret == 0) {
                ret = dst_ack(c, f, m.dev_end.total);
            }
            break;
        case VMIG_MP_VCPU:
            if (e->vcpu != NULL || m.vcpu.index != 0) {
                fail_set(df, -1,
                         "a second VCPU frame, or vCPU index %u (one state "
                         "blob, index 0, carries every vCPU)",
                         m.vcpu.index);
                return -EPROTO;
            }
            e->vcpu_len = m.vcpu.data.len;
            e->vcpu = malloc(e->vcpu_len > 0 ? e->vcpu_len : 1);
            if (e->vcpu == NULL) {
                return -ENOMEM;
            }
            if (e->vcpu_len > 0) {
                memcpy(e->vcpu, m.vcpu.data.ptr, e->vcpu_len);
            }
            break;
        case VMIG_MP_SWITCHOVER:
            *sw = m.switchover;
            return 0;
        case VMIG_MP_ABORT:
            vmig__engine_set_error(e, "source aborted: %s", m.abort.reason);
            vmig_warn(e->ctx,
                      "incoming: the source aborted (%s); "
                      "discarding everything",
                      strerror((int)m.abort.err));
            df->peer_aborted = true;
            return -ECANCELED;
        default:
            return -EPROTO; /* not reached: every main-direction type */
        }
        if (ret < 0) {
            return ret;
        }
    }
}

int
vmig_engine_incoming(struct vmig_engine *e, int fd)
{
    struct vmig_chan *ch;
    int ret = vmig_chan_plain(e->ctx, fd, &ch);

    if (ret == 0) {
        ret = vmig_engine_incoming_chan(e, ch);
        vmig_chan_free(ch);
    }
    return ret;
}

int
vmig_engine_incoming_chan(struct vmig_engine *e, struct vmig_chan *ch)
{
    struct vmig_mp_conn *c = NULL;
    struct vmig_mp_hello *h = NULL;
    struct vmig_mp_hello_reply *rp = NULL;
    struct vmig_mp_frame f;
    struct vmig_engine_params p;
    struct dst_fail df = {.dev = -1};
    struct vmig_mp_switchover sw;
    struct vmig_mp_msg m;
    bool touched = false, resumed = false, ok, send_err = true;
    char freason[VMIG_MP_REASON_MAX + 1];
    uint64_t features;
    ssize_t n;
    int ret, fdev, fail_err;

    ret = vmig__engine_begin(e, VMIG_ENGINE_ROLE_DEST);
    if (ret < 0) {
        return ret;
    }
    rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        ret = -ENOMEM;
        goto end;
    }
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &c);
    if (ret < 0) {
        goto end;
    }
    vmig_engine_get_params(e, &p);
    vmig_mp_conn_set_timeout(c, p.timeout_ms);
    vmig_mp_conn_set_cancel(c, &e->cancel);
    vmig__engine_set_status(e, VMIG_ENGINE_SETUP);
    ret = vmig__engine_handshake(e, c, false);
    if (ret < 0) {
        send_err = false;
        goto fail;
    }
    ret = vmig_mp_recv(c, &f);
    if (ret == 0 && f.hdr.type != VMIG_MP_HELLO) {
        fail_set(&df, -1, "expected HELLO, got %s",
                 vmig_mp_type_name(f.hdr.type));
        ret = -EPROTO;
    }
    if (ret == 0) {
        ret = vmig_mp_hello_decode(f.payload, f.hdr.len, &h);
        if (ret < 0) {
            fail_set(&df, -1, "malformed HELLO: %s", strerror(-ret));
        }
    }
    if (ret < 0) {
        goto fail;
    }
    ok = dst_evaluate(e, h, rp);
    features = rp->features;
    n = vmig_mp_reply_encode(rp, e->buf, VMIG_MP_PAYLOAD_MAX);
    ret = n < 0 ? (int)n
                : vmig_mp_send1(c, VMIG_MP_HELLO_REPLY, 0, e->buf, (size_t)n);
    if (ret < 0) {
        send_err = false;
        goto fail;
    }
    if (h->flags & VMIG_MP_HELLO_CHECK_ONLY) {
        vmig_info(e->ctx, "incoming: answered a compatibility check (%s)",
                  ok ? "compatible" : rp->reason);
        vmig_mp_conn_free(c);
        vmig_mp_hello_free(h);
        free(rp);
        pthread_mutex_lock(&e->lock);
        e->st.status = VMIG_ENGINE_NONE;
        e->running = false;
        pthread_mutex_unlock(&e->lock);
        return 1;
    }
    if (!ok) {
        vmig__engine_set_error(e, "refused: %s", rp->reason);
        ret = -EOPNOTSUPP;
        send_err = false;
        goto fail;
    }
    ret = vmig_mp_recv(c, &f);
    if (ret == 0 && f.hdr.type == VMIG_MP_ABORT) {
        ret = -ECANCELED;
        send_err = false;
    } else if (ret == 0 && f.hdr.type != VMIG_MP_SETUP) {
        fail_set(&df, -1, "expected SETUP, got %s",
                 vmig_mp_type_name(f.hdr.type));
        ret = -EPROTO;
    } else if (ret == 0 && vmig_mp_frame_decode(&f, &m) < 0) {
        fail_set(&df, -1, "malformed SETUP (%u bytes)", f.hdr.len);
        ret = -EBADMSG;
    }
    if (ret < 0) {
        goto fail;
    }
    touched = true;
    ret = dst_setup(e, &df);
    m = (struct vmig_mp_msg){.type = VMIG_MP_SETUP_ACK};
    m.setup_ack.err = ret < 0 ? (uint32_t)-ret : 0;
    snprintf(m.setup_ack.reason, sizeof(m.setup_ack.reason), "%s", df.reason);
    if (ret < 0) {
        if (vmig_mp_send_msg(c, &m) < 0) {
            vmig_dbg(e->ctx, "incoming: the source is gone");
        }
        send_err = false;
        goto fail;
    }
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        send_err = false;
        goto fail;
    }
    pthread_mutex_lock(&e->lock);
    e->t_xfer = vmig__mono_ns();
    e->st.setup_time_ms = (e->t_xfer - e->t_start) / 1000000;
    pthread_mutex_unlock(&e->lock);
    vmig__engine_set_status(e, VMIG_ENGINE_ACTIVE);
    ret = dst_stream(e, c, features, &sw, &df);
    if (ret == -ECANCELED && df.peer_aborted) {
        send_err = false;
    } else if (ret == -ECANCELED &&
               vmig__engine_failure(e, &fdev, freason, sizeof(freason))) {
        /* vmig_engine_fail(): the reason is set below */
    } else if (ret == -ECANCELED) {
        fail_set(&df, -1, "cancelled on the destination");
    }
    if (ret < 0) {
        goto fail;
    }
    ret = dst_complete(e, c, &sw, vmig__mono_ns(), &resumed, &df);
    if (ret < 0) {
        goto fail;
    }
    vmig__engine_drop_rx(e);
    vmig_info(e->ctx, "incoming: VM received and running");
    vmig_mp_conn_free(c);
    vmig_mp_hello_free(h);
    free(rp);
    vmig__engine_end(e, 0);
    return 0;

fail:
    if (ret == -ECONNRESET || ret == -EPIPE || ret == -ETIMEDOUT) {
        send_err = false;
    }
    fail_err = vmig__engine_failure(e, &fdev, freason, sizeof(freason));
    if (fail_err != 0) {
        /* the VMM's reason (a device's server died) is the cause, whatever
         * the stream met first; the source learns it in ERROR */
        ret = -fail_err;
        df.dev = fdev >= 0 ? e->dev[fdev].src_index : -1;
        snprintf(df.reason, sizeof(df.reason), "%s", freason);
    }
    if (df.reason[0] != '\0') {
        vmig__engine_set_error(e, "%s", df.reason);
    }
    vmig_err(e->ctx, "incoming: failed: %s%s%s; discarding everything",
             strerror(-ret), df.reason[0] != '\0' ? ": " : "", df.reason);
    if (send_err && c != NULL) {
        dst_send_error(e, c, ret, &df);
        dst_linger(e, ch);
    }
    if (resumed && e->ops->vcpu_pause != NULL) {
        /* the CONFIRM did not leave: the source resumes, so we must not */
        (void)e->ops->vcpu_pause(e->opaque);
    }
    if (touched) {
        for (unsigned int j = 0; j < e->ndev; j++) {
            struct eng_dev *d = &e->dev[j];
            enum vmig_state s = VMIG_STATE_ERROR;

            (void)d->ops->reset(d->opaque);
            (void)d->ops->get_state(d->opaque, &s);
            vmig__engine_dev_state(e, j, s);
        }
    }
    vmig__engine_drop_rx(e);
end:
    vmig_mp_conn_free(c);
    vmig_mp_hello_free(h);
    free(rp);
    vmig__engine_end(e, ret);
    return ret;
}
