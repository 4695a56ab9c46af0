/* SPDX-License-Identifier: MIT */
/*
 * migproto_hello.c - the HELLO and HELLO_REPLY payloads: the source's
 * offer (protocol versions, features, RAM regions, and per device its
 * name, migration flags, PCI ids and compatibility descriptor) and the
 * destination's per-device verdicts.  Every count, name and length is
 * bounded before anything is allocated.  Layout:
 * docs/migration-protocol.md section 3.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/migproto.h>
#include "migproto_priv.h"

static bool
name_ok(const char *s, size_t n)
{
    if (n == 0 || n > VMIG_MP_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

ssize_t
vmig_mp_hello_encode(const struct vmig_mp_hello *h, void *buf, size_t cap)
{
    struct mp_w w = {.p = buf, .cap = cap};

    if (h->nregions > VMIG_MP_MAX_REGIONS ||
        h->ndevices > VMIG_MP_MAX_DEVICES) {
        return -EINVAL;
    }
    mp_w_u32(&w, h->version_min);
    mp_w_u32(&w, h->version_max);
    mp_w_u64(&w, h->features);
    mp_w_u32(&w, h->flags);
    mp_w_u32(&w, h->page_size);
    mp_w_u32(&w, h->nregions);
    for (uint32_t i = 0; i < h->nregions; i++) {
        const struct vmig_mp_region *rg = &h->region[i];

        if (!name_ok(rg->name, strnlen(rg->name, sizeof(rg->name)))) {
            return -EINVAL;
        }
        mp_w_str(&w, rg->name);
        mp_w_u64(&w, rg->size);
    }
    mp_w_u32(&w, h->ndevices);
    for (uint32_t i = 0; i < h->ndevices; i++) {
        const struct vmig_mp_dev *d = &h->dev[i];

        if (!name_ok(d->name, strnlen(d->name, sizeof(d->name))) ||
            d->desc_len > VMIG_MP_DESC_MAX ||
            (d->desc_len > 0 && d->desc == NULL)) {
            return -EINVAL;
        }
        mp_w_str(&w, d->name);
        mp_w_u64(&w, d->mig_flags);
        mp_w_u8(&w, d->ids.valid ? 1 : 0);
        mp_w_u8(&w, d->ids.revision);
        mp_w_u16(&w, d->ids.vendor);
        mp_w_u16(&w, d->ids.device);
        mp_w_u16(&w, d->ids.subsys_vendor);
        mp_w_u16(&w, d->ids.subsys_device);
        mp_w_u32(&w, d->desc_len);
        mp_w_bytes(&w, d->desc, d->desc_len);
    }
    if (w.err != 0) {
        return w.err;
    }
    return (ssize_t)w.len;
}

void
vmig_mp_hello_free(struct vmig_mp_hello *h)
{
    if (h == NULL) {
        return;
    }
    for (uint32_t i = 0; i < h->ndevices && i < VMIG_MP_MAX_DEVICES; i++) {
        free(h->dev[i].desc);
    }
    free(h);
}

int
vmig_mp_hello_decode(const void *buf, size_t len, struct vmig_mp_hello **out)
{
    struct mp_r r = {.p = buf, .len = len};
    struct vmig_mp_hello *h;
    uint32_t n;
    int ret;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->version_min = mp_r_u32(&r);
    h->version_max = mp_r_u32(&r);
    h->features = mp_r_u64(&r);
    h->flags = mp_r_u32(&r);
    h->page_size = mp_r_u32(&r);
    n = mp_r_u32(&r);
    if (r.err != 0) {
        ret = r.err;
        goto err;
    }
    if (n > VMIG_MP_MAX_REGIONS) {
        ret = -E2BIG;
        goto err;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vmig_mp_region *rg = &h->region[i];

        ret = mp_r_str(&r, rg->name, sizeof(rg->name));
        if (ret < 0) {
            goto err;
        }
        if (!name_ok(rg->name, strlen(rg->name))) {
            ret = -EBADMSG;
            goto err;
        }
        rg->size = mp_r_u64(&r);
        h->nregions = i + 1;
    }
    n = mp_r_u32(&r);
    if (r.err != 0) {
        ret = r.err;
        goto err;
    }
    if (n > VMIG_MP_MAX_DEVICES) {
        ret = -E2BIG;
        goto err;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vmig_mp_dev *d = &h->dev[i];
        const uint8_t *p;

        h->ndevices = i + 1; /* so vmig_mp_hello_free() sees desc */
        ret = mp_r_str(&r, d->name, sizeof(d->name));
        if (ret < 0) {
            goto err;
        }
        if (!name_ok(d->name, strlen(d->name))) {
            ret = -EBADMSG;
            goto err;
        }
        d->mig_flags = mp_r_u64(&r);
        d->ids.valid = mp_r_u8(&r) != 0;
        d->ids.revision = mp_r_u8(&r);
        d->ids.vendor = mp_r_u16(&r);
        d->ids.device = mp_r_u16(&r);
        d->ids.subsys_vendor = mp_r_u16(&r);
        d->ids.subsys_device = mp_r_u16(&r);
        d->desc_len = mp_r_u32(&r);
        if (r.err != 0) {
            ret = r.err;
            goto err;
        }
        if (d->desc_len > VMIG_MP_DESC_MAX) {
            ret = -E2BIG;
            goto err;
        }
        if (d->desc_len > 0) {
            p = mp_r_bytes(&r, d->desc_len);
            if (p == NULL) {
                ret = -EBADMSG;
                goto err;
            }
            d->desc = malloc(d->desc_len);
            if (d->desc == NULL) {
                ret = -ENOMEM;
                goto err;
            }
            memcpy(d->desc, p, d->desc_len);
        }
    }
    ret = mp_r_done(&r);
    if (ret < 0) {
        goto err;
    }
    *out = h;
    return 0;

err:
    vmig_mp_hello_free(h);
    return ret;
}

ssize_t
vmig_mp_reply_encode(const struct vmig_mp_hello_reply *rp, void *buf,
                     size_t cap)
{
    struct mp_w w = {.p = buf, .cap = cap};

    if (rp->ndevices > VMIG_MP_MAX_DEVICES) {
        return -EINVAL;
    }
    mp_w_u32(&w, rp->version);
    mp_w_u64(&w, rp->features);
    mp_w_u32(&w, rp->status);
    mp_w_str(&w, rp->reason);
    mp_w_u32(&w, rp->ndevices);
    for (uint32_t i = 0; i < rp->ndevices; i++) {
        mp_w_u8(&w, rp->dev[i].compatible ? 1 : 0);
        mp_w_str(&w, rp->dev[i].reason);
    }
    if (w.err != 0) {
        return w.err;
    }
    return (ssize_t)w.len;
}

int
vmig_mp_reply_decode(const void *buf, size_t len,
                     struct vmig_mp_hello_reply *out)
{
    struct mp_r r = {.p = buf, .len = len};
    struct vmig_mp_hello_reply *rp;
    int ret;

    rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        return -ENOMEM;
    }
    rp->version = mp_r_u32(&r);
    rp->features = mp_r_u64(&r);
    rp->status = mp_r_u32(&r);
    ret = mp_r_str(&r, rp->reason, sizeof(rp->reason));
    if (ret < 0) {
        goto out;
    }
    rp->ndevices = mp_r_u32(&r);
    if (r.err == 0 && rp->ndevices > VMIG_MP_MAX_DEVICES) {
        ret = -E2BIG;
        goto out;
    }
    for (uint32_t i = 0; i < rp->ndevices && r.err == 0; i++) {
        uint8_t v = mp_r_u8(&r);

        if (v > 1) {
            ret = -EBADMSG;
            goto out;
        }
        rp->dev[i].compatible = v == 1;
        ret = mp_r_str(&r, rp->dev[i].reason, sizeof(rp->dev[i].reason));
        if (ret < 0) {
            goto out;
        }
    }
    ret = mp_r_done(&r);
    if (ret == 0) {
        *out = *rp;
    }
out:
    free(rp);
    return ret;
}
