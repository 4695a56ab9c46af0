/* SPDX-License-Identifier: MIT */
/*
 * acc_model.c - the emulated accelerator: lifecycle, run states, reset and
 * registers (acc_priv.h lists the other files).
 *
 * See acc_model.h for the run states and the locking rule, acc_regs.h for
 * the guest interface and docs/acc.md for the prose.  Invariants, all under
 * m->lock:
 *   - a ring index (head, tail) is always below its ring's size, and every
 *     index of a disabled queue pair is 0;
 *   - the worker consumes an SQE (advances sq_head) only in the critical
 *     section that writes its CQE, so a request is either untouched in the
 *     SQ or completed;
 *   - m->active is true from the moment the worker takes up a round until
 *     it has delivered that round's interrupts; stop, reset and queue
 *     configuration wait for it to drop (m->waiters asks the worker to end
 *     the round early, between two requests);
 *   - while m->stopped the worker takes up no round, and nothing but latched
 *     register writes changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "acc_priv.h"

static const char *const status_names[ACC_ST__COUNT] = {
    [ACC_ST_OK] = "ok",
    [ACC_ST_BAD_OPCODE] = "bad-opcode",
    [ACC_ST_BAD_ADDR] = "bad-address",
    [ACC_ST_BAD_LEN] = "bad-length",
    [ACC_ST_OVERFLOW] = "overflow",
    [ACC_ST_BAD_DATA] = "bad-data",
    [ACC_ST_OVERLAP] = "overlap",
    [ACC_ST_INTERNAL] = "internal",
};

static const char *const iso_names[ACC_ISO__COUNT] = {
    [ACC_ISO_DEVICE] = "device",
    [ACC_ISO_QP] = "queue-pair",
};

const char *
acc_status_name(unsigned int st)
{
    if (st >= ACC_ST__COUNT) {
        return "unknown";
    }
    return status_names[st];
}

const char *
acc__iso_name(uint32_t iso)
{
    return iso < ACC_ISO__COUNT ? iso_names[iso] : "unknown";
}

/* ------------------------------------------------------------ lifecycle */

void
acc__power_on_locked(struct acc_model *m)
{
    m->ctrl = 0;
    m->irq_mask = 0;
    m->irq_status = 0;
    m->status = 0;
    m->done = 0;
    m->irq_fire = 0;
    memset(&m->eq, 0, sizeof(m->eq));
    memset(&m->aeq, 0, sizeof(m->aeq));
    m->eq.phase = ACC_PHASE;
    m->aeq.phase = ACC_PHASE;
    memset(m->qp, 0, sizeof(m->qp));
    for (unsigned int i = 0; i < ACC_QP_MAX; i++) {
        m->qp[i].cq_phase = ACC_PHASE;
    }
}

int
acc_model_new(const struct acc_model_config *cfg, struct acc_model **out)
{
    struct acc_model *m;
    int ret;

    if (cfg == NULL || out == NULL || cfg->qp_count == 0 ||
        cfg->qp_count > ACC_QP_MAX || cfg->isolation >= ACC_ISO__COUNT ||
        cfg->dma == NULL || cfg->dma->translate == NULL) {
        return -EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    snprintf(m->name, sizeof(m->name), "%s",
             cfg->name != NULL ? cfg->name : "acc");
    m->ctx = cfg->ctx;
    m->qp_count = cfg->qp_count;
    m->isolation = cfg->isolation;
    m->dma = cfg->dma;
    m->dma_opaque = cfg->dma_opaque;
    m->ops = cfg->ops;
    m->opaque = cfg->opaque;
    acc__power_on_locked(m);

    m->cctx = ZSTD_createCCtx();
    m->dctx = ZSTD_createDCtx();
    if (m->cctx == NULL || m->dctx == NULL) {
        ret = -ENOMEM;
        goto err_free_zstd;
    }
    ret = -pthread_mutex_init(&m->lock, NULL);
    if (ret < 0) {
        goto err_free_zstd;
    }
    ret = -pthread_cond_init(&m->work_cond, NULL);
    if (ret < 0) {
        goto err_destroy_lock;
    }
    ret = -pthread_cond_init(&m->idle_cond, NULL);
    if (ret < 0) {
        goto err_destroy_work;
    }
    ret = -pthread_create(&m->worker, NULL, acc__worker_main, m);
    if (ret < 0) {
        goto err_destroy_idle;
    }
    vmig_log(m->ctx, VMIG_LOG_DEBUG, "%s: %u queue pairs, isolation %s",
             m->name, m->qp_count, acc__iso_name(m->isolation));
    *out = m;
    return 0;

err_destroy_idle:
    pthread_cond_destroy(&m->idle_cond);
err_destroy_work:
    pthread_cond_destroy(&m->work_cond);
err_destroy_lock:
    pthread_mutex_destroy(&m->lock);
err_free_zstd:
    ZSTD_freeCCtx(m->cctx);
    ZSTD_freeDCtx(m->dctx);
    free(m);
    return ret;
}

void
acc_model_free(struct acc_model *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->lock);
    m->exit = true;
    pthread_cond_broadcast(&m->work_cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->worker, NULL);
    pthread_cond_destroy(&m->idle_cond);
    pthread_cond_destroy(&m->work_cond);
    pthread_mutex_destroy(&m->lock);
    ZSTD_freeCCtx(m->cctx);
    ZSTD_freeDCtx(m->dctx);
    free(m->bounce);
    free(m);
}

void
acc_model_stop(struct acc_model *m)
{
    pthread_mutex_lock(&m->lock);
    m->stopped = true;
    acc__quiesce_locked(m);
    m->status |= ACC_STATUS_QUIESCED;
    pthread_mutex_unlock(&m->lock);
}

void
acc_model_resume(struct acc_model *m)
{
    uint32_t fire = 0;

    pthread_mutex_lock(&m->lock);
    if (m->stopped) {
        m->stopped = false;
        m->status &= ~ACC_STATUS_QUIESCED;
        /*
         * Re-raise what is pending and unmasked: an interrupt delivered on
         * another host just before the stop may never have reached the
         * guest's wait here.  A spurious interrupt is harmless.
         */
        fire = m->irq_status & ~m->irq_mask & ACC_IRQ_ALL;
        acc__kick_locked(m);
    }
    pthread_mutex_unlock(&m->lock);
    acc__fire_irqs(m, fire);
}

bool
acc_model_stopped(struct acc_model *m)
{
    bool s;

    pthread_mutex_lock(&m->lock);
    s = m->stopped;
    pthread_mutex_unlock(&m->lock);
    return s;
}

static void
do_reset(struct acc_model *m, bool guest)
{
    bool was_stopped;

    pthread_mutex_lock(&m->lock);
    acc__quiesce_locked(m);
    was_stopped = m->stopped;
    acc__power_on_locked(m);
    m->stopped = false;
    pthread_mutex_unlock(&m->lock);
    vmig_log(m->ctx, VMIG_LOG_NOTICE, "%s: %s reset while %s; back to running",
             m->name, guest ? "guest-initiated" : "host",
             was_stopped ? "stopped" : "running");
    if (m->ops != NULL && m->ops->reset != NULL) {
        m->ops->reset(m->opaque, guest);
    }
}

void
acc_model_reset(struct acc_model *m)
{
    do_reset(m, false);
}

void
acc_model_dma_fence(struct acc_model *m)
{
    pthread_mutex_lock(&m->lock);
    acc__quiesce_locked(m);
    pthread_mutex_unlock(&m->lock);
}

int
acc_model_wait_idle(struct acc_model *m, int timeout_ms)
{
    struct timespec dl;
    int ret = 0;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->lock);
    while (m->active || (!m->stopped && acc__work_available_locked(m))) {
        if (pthread_cond_timedwait(&m->idle_cond, &m->lock, &dl) == ETIMEDOUT) {
            ret = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

/* ------------------------------------------------------------ registers */

static uint32_t
lo32(uint64_t v)
{
    return (uint32_t)v;
}

static uint32_t
hi32(uint64_t v)
{
    return (uint32_t)(v >> 32);
}

static uint64_t
set_lo(uint64_t v, uint32_t lo)
{
    return (v & 0xffffffff00000000ull) | lo;
}

static uint64_t
set_hi(uint64_t v, uint32_t hi)
{
    return (v & 0xffffffffull) | ((uint64_t)hi << 32);
}

static uint32_t
qp_read_locked(const struct acc_model *m, unsigned int qpn, uint32_t reg)
{
    const struct acc_qp *q = &m->qp[qpn];

    switch (reg) {
    case ACC_QP_SQ_BASE_LO:
        return lo32(q->sq_base);
    case ACC_QP_SQ_BASE_HI:
        return hi32(q->sq_base);
    case ACC_QP_CQ_BASE_LO:
        return lo32(q->cq_base);
    case ACC_QP_CQ_BASE_HI:
        return hi32(q->cq_base);
    case ACC_QP_SQ_SIZE:
        return q->sq_size;
    case ACC_QP_CQ_SIZE:
        return q->cq_size;
    case ACC_QP_CTRL:
        return q->ctrl;
    case ACC_QP_SQ_TAIL:
        return q->sq_tail;
    case ACC_QP_SQ_HEAD:
        return q->sq_head;
    case ACC_QP_CQ_HEAD:
        return q->cq_head;
    case ACC_QP_CQ_TAIL:
        return q->cq_tail;
    case ACC_QP_STATUS:
        return q->status;
    default:
        return 0;
    }
}

uint32_t
acc_model_mmio_read(struct acc_model *m, uint32_t off)
{
    uint32_t v = 0;

    if ((off & 3u) != 0 || off >= ACC_BAR0_SIZE) {
        return 0;
    }
    pthread_mutex_lock(&m->lock);
    if (off >= ACC_QP_REG_BASE) {
        uint32_t qpn = (off - ACC_QP_REG_BASE) / ACC_QP_REG_STRIDE;

        if (qpn < m->qp_count) {
            v = qp_read_locked(m, qpn,
                               (off - ACC_QP_REG_BASE) % ACC_QP_REG_STRIDE);
        }
        pthread_mutex_unlock(&m->lock);
        return v;
    }
    switch (off) {
    case ACC_REG_ID:
        v = ACC_PCI_DEVICE_ID << 16 | ACC_PCI_VENDOR_ID;
        break;
    case ACC_REG_REVISION:
        v = ACC_HW_REVISION;
        break;
    case ACC_REG_CAPS:
        v = ACC_CAPS_ALL;
        break;
    case ACC_REG_QP_NUM:
        v = m->qp_count;
        break;
    case ACC_REG_ISOLATION:
        v = m->isolation;
        break;
    case ACC_REG_STATUS:
        v = m->status | ((m->ctrl & ACC_CTRL_ENABLE) ? ACC_STATUS_ENABLED : 0);
        break;
    case ACC_REG_CTRL:
        v = m->ctrl;
        break;
    case ACC_REG_IRQ_MASK:
        v = m->irq_mask;
        break;
    case ACC_REG_IRQ_STATUS:
        v = m->irq_status;
        break;
    case ACC_REG_DONE_LO:
        v = lo32(m->done);
        break;
    case ACC_REG_DONE_HI:
        v = hi32(m->done);
        break;
    case ACC_REG_EQ_BASE_LO:
        v = lo32(m->eq.base);
        break;
    case ACC_REG_EQ_BASE_HI:
        v = hi32(m->eq.base);
        break;
    case ACC_REG_EQ_SIZE:
        v = m->eq.size;
        break;
    case ACC_REG_EQ_HEAD:
        v = m->eq.head;
        break;
    case ACC_REG_EQ_TAIL:
        v = m->eq.tail;
        break;
    case ACC_REG_AEQ_BASE_LO:
        v = lo32(m->aeq.base);
        break;
    case ACC_REG_AEQ_BASE_HI:
        v = hi32(m->aeq.base);
        break;
    case ACC_REG_AEQ_SIZE:
        v = m->aeq.size;
        break;
    case ACC_REG_AEQ_HEAD:
        v = m->aeq.head;
        break;
    case ACC_REG_AEQ_TAIL:
        v = m->aeq.tail;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&m->lock);
    return v;
}

/*
 * A doorbell or consumer index the guest wrote.  Out of range is a guest
 * error: reported in the AEQ (not while stopped: no DMA then), ignored.
 */
static bool
index_ok_locked(struct acc_model *m, uint16_t qp, uint32_t size, uint32_t val)
{
    if (size != 0 && val < size) {
        return true;
    }
    if (!m->stopped) {
        acc__post_aeqe_locked(m, ACC_AEQ_DOORBELL, qp, ACC_NO_QP, val);
    }
    return false;
}

static void
qp_enable_locked(struct acc_model *m, unsigned int qpn, bool on)
{
    struct acc_qp *q = &m->qp[qpn];

    acc__quiesce_locked(m);
    if (!on) {
        q->ctrl = 0;
        q->status = 0;
        q->sq_head = q->sq_tail = q->cq_head = q->cq_tail = 0;
        q->cq_phase = ACC_PHASE;
        return;
    }
    if (q->ctrl & ACC_QP_CTRL_ENABLE) {
        return;
    }
    if (!ring_size_ok(q->sq_size) || !ring_size_ok(q->cq_size)) {
        if (!m->stopped) {
            acc__post_aeqe_locked(m, ACC_AEQ_BAD_CONFIG, (uint16_t)qpn,
                                  ACC_NO_QP,
                                  (uint64_t)q->sq_size << 32 | q->cq_size);
        }
        return;
    }
    q->ctrl = ACC_QP_CTRL_ENABLE;
    q->status = ACC_QP_STATUS_ENABLED;
    q->sq_head = q->sq_tail = q->cq_head = q->cq_tail = 0;
    q->cq_phase = ACC_PHASE;
}

static void
qp_write_locked(struct acc_model *m, unsigned int qpn, uint32_t reg,
                uint32_t val)
{
    struct acc_qp *q = &m->qp[qpn];
    bool enabled = q->ctrl & ACC_QP_CTRL_ENABLE;

    switch (reg) {
    case ACC_QP_SQ_BASE_LO:
    case ACC_QP_SQ_BASE_HI:
    case ACC_QP_CQ_BASE_LO:
    case ACC_QP_CQ_BASE_HI:
    case ACC_QP_SQ_SIZE:
    case ACC_QP_CQ_SIZE:
        if (enabled) {
            vmig_log(m->ctx, VMIG_LOG_DEBUG,
                     "%s: qp %u: config write %#x while enabled ignored",
                     m->name, qpn, reg);
            return;
        }
        if (reg == ACC_QP_SQ_BASE_LO) {
            q->sq_base = set_lo(q->sq_base, val);
        } else if (reg == ACC_QP_SQ_BASE_HI) {
            q->sq_base = set_hi(q->sq_base, val);
        } else if (reg == ACC_QP_CQ_BASE_LO) {
            q->cq_base = set_lo(q->cq_base, val);
        } else if (reg == ACC_QP_CQ_BASE_HI) {
            q->cq_base = set_hi(q->cq_base, val);
        } else if (reg == ACC_QP_SQ_SIZE) {
            q->sq_size = val;
        } else {
            q->cq_size = val;
        }
        return;
    case ACC_QP_CTRL:
        qp_enable_locked(m, qpn, val & ACC_QP_CTRL_ENABLE);
        return;
    case ACC_QP_SQ_TAIL:
        if (index_ok_locked(m, (uint16_t)qpn, enabled ? q->sq_size : 0, val)) {
            q->sq_tail = val;
            acc__kick_locked(m);
        }
        return;
    case ACC_QP_CQ_HEAD:
        if (index_ok_locked(m, (uint16_t)qpn, enabled ? q->cq_size : 0, val)) {
            q->cq_head = val;
            acc__kick_locked(m);
        }
        return;
    default:
        return;
    }
}

static void
ring_cfg_write_locked(struct acc_model *m, struct acc_ring *r, uint32_t reg,
                      uint32_t val)
{
    if (m->ctrl & ACC_CTRL_ENABLE) {
        vmig_log(m->ctx, VMIG_LOG_DEBUG,
                 "%s: event queue config write while enabled ignored", m->name);
        return;
    }
    switch (reg) {
    case 0:
        r->base = set_lo(r->base, val);
        break;
    case 1:
        r->base = set_hi(r->base, val);
        break;
    default:
        r->size = val;
        break;
    }
}

static void
ctrl_write_locked(struct acc_model *m, uint32_t val)
{
    bool on = val & ACC_CTRL_ENABLE;

    acc__quiesce_locked(m);
    if (on == !!(m->ctrl & ACC_CTRL_ENABLE)) {
        return;
    }
    if (on) {
        if ((m->eq.size != 0 && !ring_size_ok(m->eq.size)) ||
            (m->aeq.size != 0 && !ring_size_ok(m->aeq.size))) {
            vmig_log(m->ctx, VMIG_LOG_DEBUG,
                     "%s: enable refused: EQ size %u, AEQ size %u", m->name,
                     m->eq.size, m->aeq.size);
            return;
        }
        m->eq.head = m->eq.tail = 0;
        m->aeq.head = m->aeq.tail = 0;
        m->eq.phase = m->aeq.phase = ACC_PHASE;
        m->ctrl = ACC_CTRL_ENABLE;
        m->status &= ACC_STATUS_QUIESCED;
        acc__kick_locked(m);
    } else {
        m->ctrl = 0;
        m->status &= ACC_STATUS_QUIESCED;
        /* A disabled device has no event queue positions (the loader
         * relies on it). */
        m->eq.head = m->eq.tail = 0;
        m->aeq.head = m->aeq.tail = 0;
        m->eq.phase = m->aeq.phase = ACC_PHASE;
    }
}

void
acc_model_mmio_write(struct acc_model *m, uint32_t off, uint32_t val)
{
    uint32_t fire;
    bool enabled;

    if ((off & 3u) != 0 || off >= ACC_BAR0_SIZE) {
        return;
    }
    if (off == ACC_REG_RESET) {
        if (val == ACC_RESET_MAGIC) {
            do_reset(m, true);
        }
        return;
    }
    pthread_mutex_lock(&m->lock);
    enabled = m->ctrl & ACC_CTRL_ENABLE;
    if (off >= ACC_QP_REG_BASE) {
        uint32_t qpn = (off - ACC_QP_REG_BASE) / ACC_QP_REG_STRIDE;

        if (qpn < m->qp_count) {
            qp_write_locked(m, qpn, (off - ACC_QP_REG_BASE) % ACC_QP_REG_STRIDE,
                            val);
        }
    } else {
        switch (off) {
        case ACC_REG_CTRL:
            ctrl_write_locked(m, val);
            break;
        case ACC_REG_IRQ_MASK:
            m->irq_mask = val & ACC_IRQ_ALL;
            if (!m->stopped) {
                m->irq_fire |= m->irq_status & ~m->irq_mask;
            }
            break;
        case ACC_REG_IRQ_STATUS:
            m->irq_status &= ~val;
            break;
        case ACC_REG_EQ_BASE_LO:
        case ACC_REG_EQ_BASE_HI:
        case ACC_REG_EQ_SIZE:
            ring_cfg_write_locked(m, &m->eq, (off - ACC_REG_EQ_BASE_LO) / 4,
                                  val);
            break;
        case ACC_REG_AEQ_BASE_LO:
        case ACC_REG_AEQ_BASE_HI:
        case ACC_REG_AEQ_SIZE:
            ring_cfg_write_locked(m, &m->aeq, (off - ACC_REG_AEQ_BASE_LO) / 4,
                                  val);
            break;
        case ACC_REG_EQ_HEAD:
            if (index_ok_locked(m, ACC_NO_QP, enabled ? m->eq.size : 0, val)) {
                m->eq.head = val;
                m->status &= ~ACC_STATUS_EQ_OVF;
            }
            break;
        case ACC_REG_AEQ_HEAD:
            if (index_ok_locked(m, ACC_NO_QP, enabled ? m->aeq.size : 0, val)) {
                m->aeq.head = val;
                m->status &= ~ACC_STATUS_AEQ_OVF;
            }
            break;
        default:
            break;
        }
    }
    /* Interrupts from a register write (an error event, an unmask). */
    fire = m->stopped ? 0 : m->irq_fire;
    if (!m->active) {
        m->irq_fire = 0;
    } else {
        fire = 0; /* the worker delivers them at the end of its round */
    }
    pthread_mutex_unlock(&m->lock);
    acc__fire_irqs(m, fire);
}
