/* SPDX-License-Identifier: MIT */
/*
 * acc_state.c - the accelerator's migration payload (docs/acc.md,
 * "Migration payload"): acc_model_save() in STOPPED, the match check a
 * destination applies to a source's parameters, and acc_model_load(),
 * which validates everything before it changes anything.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/byteorder.h>
#include "acc_priv.h"

/* ------------------------------------------------------------ migration */

static int why_set(char *why, size_t why_sz, int ret, const char *fmt, ...)
    VMIG_PRINTF(4, 5);

static int
why_set(char *why, size_t why_sz, int ret, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && why_sz != 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_sz, fmt, ap);
        va_end(ap);
    }
    return ret;
}

size_t
acc_model_state_size(const struct acc_model *m)
{
    return ACC_STATE_SIZE(m->qp_count);
}

void
acc_model_match_info(const struct acc_model *m, struct acc_match_info *out)
{
    out->vendor = ACC_PCI_VENDOR_ID;
    out->device = ACC_PCI_DEVICE_ID;
    out->qp_count = m->qp_count;
    out->isolation = m->isolation;
    out->version = ACC_STATE_VERSION;
}

int
acc_check_match(const struct acc_match_info *dst,
                const struct acc_match_info *src, char *why, size_t why_sz)
{
    if (src->vendor != dst->vendor || src->device != dst->device) {
        return why_set(why, why_sz, -EOPNOTSUPP,
                       "device %04x:%04x cannot load state of device "
                       "%04x:%04x",
                       dst->vendor, dst->device, src->vendor, src->device);
    }
    if (src->version == 1) {
        return why_set(why, why_sz, -EOPNOTSUPP,
                       "stream version 1 is known bad: EQ/AEQ addresses "
                       "saved wrongly; refusing");
    }
    if (src->version != ACC_STATE_VERSION) {
        return why_set(why, why_sz, -EOPNOTSUPP,
                       "stream version %u is not supported (this device "
                       "reads version %u)",
                       src->version, ACC_STATE_VERSION);
    }
    if (src->qp_count != dst->qp_count) {
        return why_set(why, why_sz, -EINVAL,
                       "queue-pair count mismatch: source has %u, this "
                       "device has %u",
                       src->qp_count, dst->qp_count);
    }
    if (src->isolation != dst->isolation) {
        return why_set(why, why_sz, -EINVAL,
                       "isolation mode mismatch: source is %s (%u), this "
                       "device is %s (%u)",
                       acc__iso_name(src->isolation), src->isolation,
                       acc__iso_name(dst->isolation), dst->isolation);
    }
    return 0;
}

int
acc_state_peek(const void *buf, size_t len, struct acc_match_info *out,
               char *why, size_t why_sz)
{
    const uint8_t *p = buf;
    uint64_t magic;

    if (buf == NULL || len < ACC_STATE_HDR_SIZE) {
        return why_set(why, why_sz, -EBADMSG,
                       "truncated: %zu bytes, the header alone needs %u", len,
                       ACC_STATE_HDR_SIZE);
    }
    magic = vmig_get_le64(p);
    if ((magic & ACC_STATE_MAGIC_MASK) != ACC_STATE_MAGIC) {
        return why_set(why, why_sz, -EBADMSG,
                       "not accelerator state (magic %#" PRIx64 ")", magic);
    }
    out->version = (uint32_t)(magic & 0xffu);
    out->vendor = vmig_get_le16(p + 12);
    out->device = vmig_get_le16(p + 14);
    out->qp_count = vmig_get_le32(p + 16);
    out->isolation = vmig_get_le32(p + 20);
    return 0;
}

int
acc_model_save(struct acc_model *m, void *buf, size_t cap, size_t *len)
{
    size_t need = acc_model_state_size(m);
    uint8_t *p = buf, *g;

    if (cap < need) {
        return -E2BIG;
    }
    pthread_mutex_lock(&m->lock);
    if (!m->stopped) {
        pthread_mutex_unlock(&m->lock);
        vmig_log(m->ctx, VMIG_LOG_ERR,
                 "%s: cannot save state while running; stop the device first",
                 m->name);
        return -EBUSY;
    }
    memset(p, 0, need);
    vmig_put_le64(p, ACC_STATE_MAGIC | ACC_STATE_VERSION);
    vmig_put_le32(p + 8, (uint32_t)need);
    vmig_put_le16(p + 12, ACC_PCI_VENDOR_ID);
    vmig_put_le16(p + 14, ACC_PCI_DEVICE_ID);
    vmig_put_le32(p + 16, m->qp_count);
    vmig_put_le32(p + 20, m->isolation);
    vmig_put_le32(p + 24, ACC_HW_REVISION);

    g = p + ACC_STATE_GLOBAL_OFF;
    vmig_put_le32(g + 0, m->ctrl);
    vmig_put_le32(g + 4, m->irq_mask);
    vmig_put_le32(g + 8, m->irq_status);
    vmig_put_le32(g + 12, m->status & ~ACC_STATUS_QUIESCED);
    vmig_put_le64(g + 16, m->done);
    vmig_put_le64(g + 24, m->eq.base);
    vmig_put_le32(g + 32, m->eq.size);
    vmig_put_le32(g + 36, m->eq.head);
    vmig_put_le32(g + 40, m->eq.tail);
    vmig_put_le32(g + 44, m->eq.phase);
    vmig_put_le64(g + 48, m->aeq.base);
    vmig_put_le32(g + 56, m->aeq.size);
    vmig_put_le32(g + 60, m->aeq.head);
    vmig_put_le32(g + 64, m->aeq.tail);
    vmig_put_le32(g + 68, m->aeq.phase);

    for (uint32_t i = 0; i < m->qp_count; i++) {
        const struct acc_qp *q = &m->qp[i];
        uint8_t *s = p + ACC_STATE_QP_OFF + ACC_STATE_QP_SIZE * i;

        vmig_put_le64(s + 0, q->sq_base);
        vmig_put_le64(s + 8, q->cq_base);
        vmig_put_le32(s + 16, q->sq_size);
        vmig_put_le32(s + 20, q->cq_size);
        vmig_put_le32(s + 24, q->ctrl);
        vmig_put_le32(s + 28, q->status);
        vmig_put_le32(s + 32, q->sq_head);
        vmig_put_le32(s + 36, q->sq_tail);
        vmig_put_le32(s + 40, q->cq_head);
        vmig_put_le32(s + 44, q->cq_tail | q->cq_phase << 31);
    }
    pthread_mutex_unlock(&m->lock);
    vmig_put_le32(p + need - 4, acc_crc32c(0, p, need - 4));
    *len = need;
    return 0;
}

/* Indices of a ring: below its size, or all zero when it has none. */
static bool
ring_idx_ok(uint32_t size, uint32_t a, uint32_t b)
{
    if (size == 0) {
        return a == 0 && b == 0;
    }
    return a < size && b < size;
}

static int
parse_state(const struct acc_model *m, const uint8_t *p, size_t len,
            uint32_t qps, uint32_t *ctrl, uint32_t *irq, uint32_t *status,
            struct acc_ring *eq, struct acc_ring *aeq, struct acc_qp *qp,
            uint64_t *done, char *why, size_t why_sz)
{
    const uint8_t *g = p + ACC_STATE_GLOBAL_OFF;
    const uint32_t known = ACC_STATUS_FAULT | ACC_STATUS_EQ_OVF |
                           ACC_STATUS_AEQ_OVF | ACC_STATUS_AEQ_FAULT;

    (void)m;
    (void)len;
    if (vmig_get_le32(p + 24) != ACC_HW_REVISION ||
        vmig_get_le32(p + 28) != 0) {
        return why_set(why, why_sz, -EBADMSG,
                       "corrupt: hardware revision %u / reserved %#x",
                       vmig_get_le32(p + 24), vmig_get_le32(p + 28));
    }
    *ctrl = vmig_get_le32(g + 0);
    irq[0] = vmig_get_le32(g + 4);
    irq[1] = vmig_get_le32(g + 8);
    *status = vmig_get_le32(g + 12);
    *done = vmig_get_le64(g + 16);
    eq->base = vmig_get_le64(g + 24);
    eq->size = vmig_get_le32(g + 32);
    eq->head = vmig_get_le32(g + 36);
    eq->tail = vmig_get_le32(g + 40);
    eq->phase = vmig_get_le32(g + 44);
    aeq->base = vmig_get_le64(g + 48);
    aeq->size = vmig_get_le32(g + 56);
    aeq->head = vmig_get_le32(g + 60);
    aeq->tail = vmig_get_le32(g + 64);
    aeq->phase = vmig_get_le32(g + 68);
    if ((*ctrl & ~ACC_CTRL_MASK) || (irq[0] & ~ACC_IRQ_ALL) ||
        (irq[1] & ~ACC_IRQ_ALL) || (*status & ~known) ||
        vmig_get_le32(g + 72) || vmig_get_le32(g + 76)) {
        return why_set(why, why_sz, -EBADMSG,
                       "corrupt: unknown bits in ctrl %#x, irq mask %#x, irq "
                       "status %#x or status %#x",
                       *ctrl, irq[0], irq[1], *status);
    }
    for (int k = 0; k < 2; k++) {
        const struct acc_ring *r = k ? aeq : eq;
        bool bad;

        if (*ctrl & ACC_CTRL_ENABLE) {
            bad = (r->size != 0 && !ring_size_ok(r->size)) ||
                  !ring_idx_ok(r->size, r->head, r->tail) || r->phase > 1;
        } else {
            /* Sizes are raw register values until enabled. */
            bad = r->head != 0 || r->tail != 0 || r->phase != ACC_PHASE;
        }
        if (bad) {
            return why_set(why, why_sz, -EBADMSG,
                           "corrupt: %s size %u head %u tail %u phase %u",
                           k ? "AEQ" : "EQ", r->size, r->head, r->tail,
                           r->phase);
        }
    }
    for (uint32_t i = 0; i < qps; i++) {
        const uint8_t *s = p + ACC_STATE_QP_OFF + ACC_STATE_QP_SIZE * i;
        struct acc_qp *q = &qp[i];
        uint32_t cqt = vmig_get_le32(s + 44);

        q->sq_base = vmig_get_le64(s + 0);
        q->cq_base = vmig_get_le64(s + 8);
        q->sq_size = vmig_get_le32(s + 16);
        q->cq_size = vmig_get_le32(s + 20);
        q->ctrl = vmig_get_le32(s + 24);
        q->status = vmig_get_le32(s + 28);
        q->sq_head = vmig_get_le32(s + 32);
        q->sq_tail = vmig_get_le32(s + 36);
        q->cq_head = vmig_get_le32(s + 40);
        q->cq_tail = cqt & 0x7fffffffu;
        q->cq_phase = cqt >> 31;
        if (q->ctrl & ~ACC_QP_CTRL_ENABLE ||
            q->status & ~(ACC_QP_STATUS_ENABLED | ACC_QP_STATUS_FAULT) ||
            !!(q->ctrl & ACC_QP_CTRL_ENABLE) !=
                !!(q->status & ACC_QP_STATUS_ENABLED)) {
            return why_set(why, why_sz, -EBADMSG,
                           "corrupt: qp %u ctrl %#x status %#x", i, q->ctrl,
                           q->status);
        }
        if (q->ctrl & ACC_QP_CTRL_ENABLE) {
            if (!ring_size_ok(q->sq_size) || !ring_size_ok(q->cq_size) ||
                q->sq_head >= q->sq_size || q->sq_tail >= q->sq_size ||
                q->cq_head >= q->cq_size || q->cq_tail >= q->cq_size) {
                return why_set(why, why_sz, -EBADMSG,
                               "corrupt: qp %u SQ size %u head %u tail %u, "
                               "CQ size %u head %u tail %u",
                               i, q->sq_size, q->sq_head, q->sq_tail,
                               q->cq_size, q->cq_head, q->cq_tail);
            }
        } else if (q->sq_head || q->sq_tail || q->cq_head || q->cq_tail ||
                   q->cq_phase != ACC_PHASE) {
            return why_set(why, why_sz, -EBADMSG,
                           "corrupt: disabled qp %u has ring indices", i);
        }
    }
    return 0;
}

int
acc_model_load(struct acc_model *m, const void *buf, size_t len, char *why,
               size_t why_sz)
{
    const uint8_t *p = buf;
    struct acc_match_info src = {0}, dst = {0};
    struct acc_ring eq, aeq;
    struct acc_qp *qp;
    uint32_t total, ctrl = 0, status = 0, irq[2] = {0, 0};
    uint64_t done = 0;
    char reason[256];
    int ret;

    ret = acc_state_peek(buf, len, &src, reason, sizeof(reason));
    if (ret < 0) {
        goto out_refuse;
    }
    acc_model_match_info(m, &dst);
    /* Version first: an old layout cannot be trusted for anything else. */
    if (src.version != ACC_STATE_VERSION) {
        ret = acc_check_match(&dst, &src, reason, sizeof(reason));
        goto out_refuse;
    }
    total = vmig_get_le32(p + 8);
    if (len < total) {
        ret = why_set(reason, sizeof(reason), -EBADMSG,
                      "truncated: have %zu of %u bytes", len, total);
        goto out_refuse;
    }
    if (len > total) {
        ret = why_set(reason, sizeof(reason), -EBADMSG,
                      "%zu trailing bytes after the %u-byte state", len - total,
                      total);
        goto out_refuse;
    }
    if (src.qp_count == 0 || src.qp_count > ACC_QP_MAX ||
        total != ACC_STATE_SIZE(src.qp_count)) {
        ret = why_set(reason, sizeof(reason), -EBADMSG,
                      "corrupt: %u bytes cannot hold %u queue pairs", total,
                      src.qp_count);
        goto out_refuse;
    }
    if (acc_crc32c(0, p, total - 4) != vmig_get_le32(p + total - 4)) {
        ret =
            why_set(reason, sizeof(reason), -EBADMSG,
                    "corrupt: checksum %#x does not match the data (%#x)",
                    vmig_get_le32(p + total - 4), acc_crc32c(0, p, total - 4));
        goto out_refuse;
    }
    ret = acc_check_match(&dst, &src, reason, sizeof(reason));
    if (ret < 0) {
        goto out_refuse;
    }
    qp = calloc(ACC_QP_MAX, sizeof(*qp));
    if (qp == NULL) {
        ret = why_set(reason, sizeof(reason), -ENOMEM, "out of memory");
        goto out_refuse;
    }
    ret = parse_state(m, p, len, src.qp_count, &ctrl, irq, &status, &eq, &aeq,
                      qp, &done, reason, sizeof(reason));
    if (ret < 0) {
        free(qp);
        goto out_refuse;
    }

    pthread_mutex_lock(&m->lock);
    if (!m->stopped) {
        pthread_mutex_unlock(&m->lock);
        free(qp);
        ret = why_set(reason, sizeof(reason), -EBUSY,
                      "device is running; stop it before loading state");
        goto out_refuse;
    }
    m->ctrl = ctrl;
    m->irq_mask = irq[0];
    m->irq_status = irq[1];
    m->status = status | ACC_STATUS_QUIESCED;
    m->done = done;
    m->eq = eq;
    m->aeq = aeq;
    for (uint32_t i = 0; i < ACC_QP_MAX; i++) {
        m->qp[i] = qp[i];
        if (i >= m->qp_count) {
            m->qp[i].cq_phase = ACC_PHASE;
        }
    }
    pthread_mutex_unlock(&m->lock);
    free(qp);
    vmig_log(m->ctx, VMIG_LOG_INFO, "%s: state loaded (%u bytes, version %u)",
             m->name, total, src.version);
    return 0;

out_refuse:
    vmig_log(m->ctx, VMIG_LOG_ERR, "%s: refusing device state: %s", m->name,
             reason);
    why_set(why, why_sz, ret, "%s", reason);
    return ret;
}
