/* SPDX-License-Identifier: MIT */
/*
 * vfu_feature.c - DEVICE_FEATURE: one descriptor per feature.
 *
 * The descriptor says whether the feature offers GET and SET on this
 * server right now (the kernel's vfio_check_feature() idea: a feature is
 * refused with EOPNOTSUPP unless every operation asked for is offered),
 * and names the handler.  PROBE is answered here without running the
 * handler.  A handler answers with a fixed-size GET part that this file
 * puts after the feature header, checking the client's argsz for it, or
 * builds the whole reply itself.
 */
#include <errno.h>
#include "vfu_srv.h"

struct feat_desc {
    uint32_t feature;
    const char *name;
    vfu_feat_can_fn can_get; /* NULL: no GET */
    vfu_feat_can_fn can_set; /* NULL: no SET */
    vfu_feat_fn handle;
};

static bool
always(struct vmig_vfu_server *s)
{
    (void)s;
    return true;
}

/* clang-format off */
static const struct feat_desc feat_table[] = {
    {VMIG_VFU_FEAT_MIGRATION, "MIGRATION",
     vmig__vfu_has_mig, NULL, vmig__vfu_f_migration},
    {VMIG_VFU_FEAT_MIG_DEVICE_STATE, "MIG_DEVICE_STATE",
     vmig__vfu_has_mig, vmig__vfu_has_mig, vmig__vfu_f_device_state},
    {VMIG_VFU_FEAT_DMA_LOGGING_START, "DMA_LOGGING_START",
     NULL, always, vmig__vfu_f_log_start},
    {VMIG_VFU_FEAT_DMA_LOGGING_STOP, "DMA_LOGGING_STOP",
     NULL, always, vmig__vfu_f_log_stop},
    {VMIG_VFU_FEAT_DMA_LOGGING_REPORT, "DMA_LOGGING_REPORT",
     always, NULL, vmig__vfu_f_log_report},
    {VMIG_VFU_FEAT_MIG_DATA_SIZE, "MIG_DATA_SIZE",
     vmig__vfu_has_data_size, NULL, vmig__vfu_f_data_size},
    {VMIG_VFU_FEAT_X_PRECOPY_INFO, "X_PRECOPY_INFO",
     vmig__vfu_has_precopy_info, NULL, vmig__vfu_f_precopy_info},
    {VMIG_VFU_FEAT_X_BULK_CHANNEL, "X_BULK_CHANNEL",
     vmig__vfu_has_bulk_channel, NULL, vmig__vfu_f_bulk_channel},
    {VMIG_VFU_FEAT_X_BULK_READ, "X_BULK_READ",
     NULL, vmig__vfu_has_bulk, vmig__vfu_f_bulk_read},
    {VMIG_VFU_FEAT_X_BULK_WRITE, "X_BULK_WRITE",
     NULL, vmig__vfu_has_bulk, vmig__vfu_f_bulk_write},
};
/* clang-format on */

static const struct feat_desc *
feat_find(uint32_t feature)
{
    for (size_t i = 0; i < VMIG_ARRAY_SIZE(feat_table); i++) {
        if (feat_table[i].feature == feature) {
            return &feat_table[i];
        }
    }
    return NULL;
}

int
vmig__vfu_h_feature(struct vmig_vfu_server *s, struct vfu_req *r,
                    struct vfu_reply *rep)
{
    uint64_t out[VFU_FEAT_OUT_MAX / 8];
    struct vmig_vfu_feature fh;
    struct vfu_feat_req f = {
        .m = r->m,
        .argsz = vmig__rd32(r->m->payload, 0),
        .flags = vmig__rd32(r->m->payload, 4),
        .d = r->m->payload + sizeof(struct vmig_vfu_feature),
        .dlen = r->m->len - sizeof(struct vmig_vfu_feature),
    };
    uint32_t feat = f.flags & VMIG_VFU_FEATURE_MASK;
    const struct feat_desc *d = feat_find(feat);
    bool can_get, can_set;
    size_t olen = 0;
    int ret;

    f.get = f.flags & VMIG_VFU_FEATURE_GET;
    f.set = f.flags & VMIG_VFU_FEATURE_SET;
    can_get = d != NULL && d->can_get != NULL && d->can_get(s);
    can_set = d != NULL && d->can_set != NULL && d->can_set(s);
    if ((f.get && !can_get) || (f.set && !can_set) || (!can_get && !can_set)) {
        vmig_dbg(s->ctx, "vfu: msg %#x: feature %u %s%s not supported",
                 r->m->hdr.id, feat, f.get ? "GET" : "", f.set ? "SET" : "");
        return -EOPNOTSUPP;
    }
    if (f.flags & VMIG_VFU_FEATURE_PROBE) {
        rep->p1 = r->m->payload;
        rep->l1 = sizeof(struct vmig_vfu_feature);
        return 0;
    }
    ret = d->handle(s, &f, rep, out, &olen);
    if (ret < 0 || ret == VFU_FEAT_REPLIED) {
        return ret < 0 ? ret : 0;
    }
    /* GET: argsz is the room the client has for the reply (the
     * kernel's vfio_check_feature() minsz test). */
    if (f.get && f.argsz < sizeof(fh) + olen) {
        vmig_dbg(s->ctx, "vfu: msg %#x: %s: argsz %u < %zu", r->m->hdr.id,
                 d->name, f.argsz, sizeof(fh) + olen);
        return -EINVAL;
    }
    fh.argsz = (uint32_t)(sizeof(fh) + olen);
    fh.flags = f.flags;
    vmig__vfu_rep_inline(rep, &fh, sizeof(fh), out, olen);
    return 0;
}
