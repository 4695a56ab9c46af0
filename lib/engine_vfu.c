/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu.c - the engine's vfio-user device backend (<vmig/engine_vfu.h>):
 * creation, the device's identity for HELLO (PCI ids, the descriptor
 * probed from a PRE_COPY session) and the destination's compatibility
 * verdict, and the ops table.  engine_vfu_data.c has the state and data
 * ops, engine_vfu_cfg.c the VMM-owned config.
 *
 * Ops map one to one onto the client; what the backend adds is the
 * shape of reads: bounded bursts in PRE_COPY / PRE_COPY_P2P (sized by
 * PRECOPY_INFO when each burst starts), to the end in STOP_COPY.  Every
 * read is one bounded pull straight into the engine's buffer (over the
 * bulk channel when negotiated): the backend holds no device data of its
 * own, so a device's state streams device -> wire one engine chunk at a
 * time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <vmig/byteorder.h>
#include <vmig/compat.h>
#include <vmig/log.h>
#include <vmig/stream.h>
#include "engine_vfu_priv.h"

#define PROBE_HDR (VMIG_STREAM_HEADER_SIZE + VMIG_STREAM_REC_HEADER_SIZE)

/* Read exactly @len bytes of the PRE_COPY session; -ENOMSG if it has
 * fewer. */
static int
probe_read(struct vmig_engine_vfu *b, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        long n = vmig_vfu_client_mig_read(b->c, buf + got, len - got);

        if (n <= 0) {
            return n == 0 ? -ENOMSG : (int)n;
        }
        got += (size_t)n;
    }
    return 0;
}

/* The envelope's header and DESCRIPTOR record, checked (docs/stream-format.md
 * §3, §4); 0 with b->desc set, or -errno (no descriptor). */
static int
probe_envelope(struct vmig_engine_vfu *b)
{
    static const uint8_t magic[8] = {'V', 'M', 'I', 'G', 'D', 'E', 'V', 1};
    uint8_t h[PROBE_HDR], tail[8];
    uint64_t len;
    uint8_t *d;
    int ret;

    ret = probe_read(b, h, sizeof(h));
    if (ret < 0) {
        return ret;
    }
    if (memcmp(h, magic, sizeof(magic)) != 0 ||
        XXH3_64bits_withSeed(h, 24, 0) != vmig_get_le64(h + 24) ||
        vmig_get_le32(h + 32) != VMIG_REC_DESCRIPTOR ||
        XXH3_64bits_withSeed(h + 32, 16, 0) != vmig_get_le64(h + 48)) {
        return -EBADMSG;
    }
    len = vmig_get_le64(h + 40);
    if (len == 0 || len > VMIG_COMPAT_BIN_MAX || len > VMIG_MP_DESC_MAX) {
        return -EBADMSG;
    }
    d = malloc((size_t)len);
    if (d == NULL) {
        return -ENOMEM;
    }
    ret = probe_read(b, d, (size_t)len);
    if (ret == 0) {
        ret = probe_read(b, tail, sizeof(tail));
    }
    if (ret == 0 &&
        XXH3_64bits_withSeed(d, (size_t)len, 0) != vmig_get_le64(tail)) {
        ret = -EBADMSG;
    }
    if (ret == 0) {
        ret = vmig_compat_desc_from_bin(d, (size_t)len, &b->cdesc, NULL, 0);
    }
    if (ret < 0) {
        free(d);
        return ret;
    }
    b->desc = d;
    b->desc_len = (size_t)len;
    return 0;
}

/*
 * Open a PRE_COPY session, look for a descriptor, close it again.  Only
 * for a server that negotiated vmig's extensions (vmig's own devices put
 * their descriptor first in the state for this) and advertised PRE_COPY:
 * any other server is never moved to a state a migration did not ask
 * for - real servers assert on that.
 */
static int
probe_desc(struct vmig_engine_vfu *b)
{
    enum vmig_state st;
    int ret, ret2;

    if ((b->flags & VMIG_MIGRATION_PRE_COPY) == 0 || !b->xvmig) {
        return 0;
    }
    ret = vmig_vfu_client_get_state(b->c, &st);
    if (ret < 0 || st != VMIG_STATE_RUNNING) {
        return ret < 0 ? ret : 0;
    }
    ret = vmig_vfu_client_set_state(b->c, VMIG_STATE_PRE_COPY);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_DEBUG,
                 "%s: no PRE_COPY session to read a descriptor from: %s",
                 b->name, strerror(-ret));
        return 0;
    }
    ret = probe_envelope(b);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_INFO,
                 "%s: no vmig descriptor in its state (%s); identified by "
                 "its PCI ids if it has them, data carried opaque",
                 b->name, strerror(-ret));
    }
    ret2 = vmig_vfu_client_set_state(b->c, VMIG_STATE_RUNNING);
    if (ret2 < 0) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: leaving the probe session failed (%s); resetting",
                 b->name, strerror(-ret2));
        return vmig_vfu_client_reset(b->c);
    }
    return ret == -ENOMEM ? ret : 0;
}

static void
probe_ids(struct vmig_engine_vfu *b)
{
    struct vmig_vfu_device_info di;
    struct vmig_vfu_region_info ri;
    uint8_t cfg[0x30];

    if (vmig_vfu_client_device_info(b->c, &di) < 0 ||
        di.num_regions <= PCI_CONFIG_REGION ||
        vmig_vfu_client_region_info(b->c, PCI_CONFIG_REGION, &ri, NULL) < 0 ||
        ri.size < sizeof(cfg) || (ri.flags & VMIG_VFU_REGION_READ) == 0 ||
        vmig_vfu_client_region_read(b->c, PCI_CONFIG_REGION, 0, cfg,
                                    sizeof(cfg)) < 0) {
        return;
    }
    b->ids.vendor = (uint16_t)(cfg[0] | cfg[1] << 8);
    b->ids.device = (uint16_t)(cfg[2] | cfg[3] << 8);
    b->ids.revision = cfg[8];
    b->ids.subsys_vendor = (uint16_t)(cfg[0x2c] | cfg[0x2d] << 8);
    b->ids.subsys_device = (uint16_t)(cfg[0x2e] | cfg[0x2f] << 8);
    b->ids.valid = b->ids.vendor != 0 && b->ids.vendor != 0xffff;
}

/*
 * The device's migration flags: the one source of truth for the states
 * this backend may ever ask for.  Bits the kernel's uAPI does not define
 * (yet) are dropped with a warning - they can only name states vmig does
 * not know, which it never asks for; a device without STOP_COPY cannot
 * migrate (the spec: "at least VFIO_MIGRATION_STOP_COPY must be set").
 */
static int
read_flags(struct vmig_engine_vfu *b)
{
    char fl[64];
    int ret = vmig_vfu_client_mig_flags(b->c, &b->flags);

    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: cannot read its migration flags (DEVICE_FEATURE "
                 "MIGRATION GET): %s%s",
                 b->name, strerror(-ret),
                 ret == -EOPNOTSUPP || ret == -EINVAL || ret == -ENOTTY
                     ? "; the device does not support migration"
                     : "");
        return ret == -EINVAL || ret == -ENOTTY ? -EOPNOTSUPP : ret;
    }
    if (b->flags & ~(uint64_t)VMIG_MIGRATION__ALL) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: migration flags %s carry bits vmig does not know; "
                 "they are ignored (no state they might name is ever asked "
                 "for)",
                 b->name, vmig_flags_format(b->flags, fl, sizeof(fl)));
        b->flags &= VMIG_MIGRATION__ALL;
    }
    if (!(b->flags & VMIG_MIGRATION_STOP_COPY)) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: migration flags %s lack STOP_COPY; the vfio-user "
                 "specification says at least VFIO_MIGRATION_STOP_COPY must "
                 "be set: the device cannot migrate",
                 b->name, vmig_flags_format(b->flags, fl, sizeof(fl)));
        return -EOPNOTSUPP;
    }
    return 0;
}

int
vmig_engine_vfu_new(vmig_ctx_t *ctx, struct vmig_vfu_client *c,
                    const struct vmig_engine_vfu_params *p,
                    struct vmig_engine_vfu **out)
{
    struct vmig_engine_vfu *b;
    struct vmig_vfu_caps caps;
    int ret;

    if (ctx == NULL || c == NULL || p == NULL || out == NULL) {
        return -EINVAL;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return -ENOMEM;
    }
    b->ctx = ctx;
    b->c = c;
    snprintf(b->name, sizeof(b->name), "%s",
             p->name != NULL ? p->name : "vfio-user");
    b->irq_fd = p->irq_fd;
    b->opaque = p->opaque;
    pthread_mutex_init(&b->lock, NULL);
    vmig_vfu_client_set_name(c, b->name);
    vmig_vfu_client_caps(c, &caps);
    b->xvmig = caps.ext != 0;
    ret = read_flags(b);
    if (ret < 0) {
        goto err;
    }
    probe_ids(b);
    if (!p->no_probe) {
        ret = probe_desc(b);
        if (ret < 0) {
            goto err;
        }
    }
    if (vmig_vfu_client_get_state(c, &b->state) < 0) {
        b->state = VMIG_STATE_RUNNING; /* as documented for a new backend */
    }
    vmig_log(ctx, VMIG_LOG_DEBUG,
             "%s: flags %#llx, %s descriptor, PCI ids %s %04x:%04x", b->name,
             (unsigned long long)b->flags, b->desc ? "vmig" : "no",
             b->ids.valid ? "valid" : "none", b->ids.vendor, b->ids.device);
    *out = b;
    return 0;
err:
    vmig_engine_vfu_free(b);
    return ret;
}

void
vmig_engine_vfu_free(struct vmig_engine_vfu *b)
{
    if (b == NULL) {
        return;
    }
    vmig_compat_desc_free(b->cdesc);
    free(b->desc);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void
vmig_engine_vfu_identity(struct vmig_engine_vfu *b, struct vmig_pci_ids *ids,
                         size_t *desc_len)
{
    if (ids != NULL) {
        *ids = b->ids;
    }
    if (desc_len != NULL) {
        *desc_len = b->desc_len;
    }
}

static ssize_t
op_describe(void *o, struct vmig_pci_ids *ids, void *buf, size_t cap)
{
    struct vmig_engine_vfu *b = o;

    *ids = b->ids;
    if (b->desc_len > cap) {
        return -E2BIG;
    }
    if (b->desc_len > 0) {
        memcpy(buf, b->desc, b->desc_len);
    }
    return (ssize_t)b->desc_len;
}

static bool
ids_equal(const struct vmig_pci_ids *a, const struct vmig_pci_ids *b)
{
    return a->vendor == b->vendor && a->device == b->device &&
           a->subsys_vendor == b->subsys_vendor &&
           a->subsys_device == b->subsys_device && a->revision == b->revision;
}

static int
op_compat(void *o, const struct vmig_mp_dev *src, char *reason, size_t rlen)
{
    struct vmig_engine_vfu *b = o;
    const struct vmig_pci_ids *s = &src->ids, *d = &b->ids;

    if (b->cdesc != NULL && src->desc_len > 0) {
        struct vmig_compat_desc *sd = NULL;
        struct vmig_compat_result res;
        int ret =
            vmig_compat_desc_from_bin(src->desc, src->desc_len, &sd, NULL, 0);

        if (ret < 0) {
            snprintf(reason, rlen, "the source's descriptor is malformed: %s",
                     strerror(-ret));
            return 0;
        }
        ret = vmig_compat_check(b->cdesc, sd, NULL, NULL, &res);
        vmig_compat_desc_free(sd);
        if (ret < 0) {
            snprintf(reason, rlen, "%s", res.reason);
            return 0;
        }
        if (!res.compatible) {
            snprintf(reason, rlen, "%s", res.reason);
        }
        return res.compatible ? 1 : 0;
    }
    if (b->cdesc != NULL || src->desc_len > 0) {
        snprintf(reason, rlen,
                 "%s carries a vmig compatibility descriptor and the %s "
                 "does not: different devices",
                 b->cdesc != NULL ? "this device" : "the source device",
                 b->cdesc != NULL ? "source" : "device here");
        return 0;
    }
    if (s->valid != d->valid || (s->valid && !ids_equal(s, d))) {
        snprintf(reason, rlen,
                 "PCI ids differ: source %04x:%04x %04x:%04x rev %u%s, here "
                 "%04x:%04x %04x:%04x rev %u%s",
                 s->vendor, s->device, s->subsys_vendor, s->subsys_device,
                 s->revision, s->valid ? "" : " (none)", d->vendor, d->device,
                 d->subsys_vendor, d->subsys_device, d->revision,
                 d->valid ? "" : " (none)");
        return 0;
    }
    if ((src->mig_flags & VMIG_MIGRATION_P2P) != 0 &&
        (b->flags & VMIG_MIGRATION_P2P) == 0) {
        snprintf(reason, rlen, "the source device has P2P, this one not");
        return 0;
    }
    return 1;
}

static const struct vmig_engine_dev_ops vfu_ops = {
    .get_flags = vmig__evfu_get_flags,
    .get_state = vmig__evfu_get_state,
    .set_state = vmig__evfu_set_state,
    .read = vmig__evfu_read,
    .write = vmig__evfu_write,
    .describe = op_describe,
    .compat = op_compat,
    .config_save = vmig__evfu_config_save,
    .config_load = vmig__evfu_config_load,
    .reset = vmig__evfu_reset,
    .precopy_info = vmig__evfu_precopy_info,
    .data_size = vmig__evfu_data_size,
};

const struct vmig_engine_dev_ops *
vmig_engine_vfu_ops(void)
{
    return &vfu_ops;
}
