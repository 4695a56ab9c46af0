/* SPDX-License-Identifier: MIT */
/*
 * flowtab_model.c - the flowtab device model: lifetime, registers,
 * inbound P2P, inspection (flowtab_priv.h lists the other files).
 *
 * State layout (d->state, state_bytes long, migrated byte for byte):
 *   [0, FT_CTRL_BYTES)        struct ft_ctrl: registers and counters
 *   [FT_CTRL_BYTES, end)      the flow table: capacity entries of 64 bytes,
 *                             open addressing with linear probing
 * Every write to the state goes through ft__mark_dirty(), which records
 * the chunk for an open saving session.
 *
 * Run modes (derived from the migration state by ft__mode_of()):
 *   FULL     RUNNING, PRE_COPY: ring processing, guest DMA, outbound P2P;
 *   NO_P2P   RUNNING_P2P, PRE_COPY_P2P: as FULL but no P2P is initiated;
 *            the worker holds at the first FWD descriptor (ring order is
 *            kept);
 *   STOPPED  STOP, STOP_COPY, RESUMING: the state does not change.
 * Lowering the mode waits until no outbound P2P write is in flight, so
 * when a step returns the device is quiesced as the uAPI requires
 * ("the device must complete in-progress P2P before returning").
 *
 * Migration: the device's framework object (<vmig/device.h>) owns the
 * state machine and the sessions; the model's callbacks (flowtab_mig.c,
 * ft_model_stream_ops()) only move its run mode and produce or consume
 * the stream.
 *
 * Locking: lock guards everything below it in struct ft_model.  One
 * order: the framework's lock, then lock, then the transport's DMA lock
 * (translate() may take one and hold it for the window it returns, as the
 * vfio-user server does).  Every migration callback runs with the
 * framework's lock held and takes lock; translate() is called with lock
 * held; the peer callback is called with lock released, and before lock
 * is released mid-call the translation is given back (dma->release), so
 * lock is never taken while a DMA window is held.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include "flowtab_priv.h"

/* ------------------------------------------------------------ lifetime */

int
ft_model_new(vmig_ctx_t *ctx, const struct ft_config *cfg,
             const struct ft_dma_ops *dma, void *dma_opaque,
             struct ft_model **out)
{
    struct ft_model *d;
    pthread_condattr_t ca;
    struct ft_config c = {0};
    int ret;

    if (cfg != NULL) {
        c = *cfg;
    }
    if (c.chunk_bytes == 0) {
        c.chunk_bytes = FT_DEFAULT_CHUNK_BYTES;
    }
    if (c.state_bytes == 0) {
        c.state_bytes = FT_DEFAULT_STATE_BYTES;
    }
    if (c.batch == 0) {
        c.batch = 32;
    }
    if (c.mig_flags == 0) {
        c.mig_flags = FT_MIG_FLAGS;
    }
    if (out == NULL || dma == NULL || dma->translate == NULL ||
        c.chunk_bytes < FT_MIN_CHUNK_BYTES ||
        c.chunk_bytes > FT_MAX_CHUNK_BYTES ||
        (c.chunk_bytes & (c.chunk_bytes - 1)) != 0 ||
        (c.mig_flags & ~(uint32_t)FT_MIG_FLAGS) != 0 ||
        vmig_flags_validate(c.mig_flags) < 0) {
        return -EINVAL;
    }
    if (c.state_bytes > FT_MAX_STATE_BYTES) {
        return -E2BIG;
    }
    c.state_bytes =
        (c.state_bytes + c.chunk_bytes - 1) & ~(uint64_t)(c.chunk_bytes - 1);
    if (c.state_bytes < 2ull * c.chunk_bytes) {
        c.state_bytes = 2ull * c.chunk_bytes;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->ctx = ctx;
    d->dma = dma;
    d->dma_opaque = dma_opaque;
    d->cfg = c;
    d->state_bytes = c.state_bytes;
    d->chunk_bytes = c.chunk_bytes;
    d->chunk_shift = (unsigned int)__builtin_ctz(c.chunk_bytes);
    d->nchunks = c.state_bytes / c.chunk_bytes;
    d->capacity = (c.state_bytes - FT_CTRL_BYTES) / FT_FLOW_BYTES;
    d->mode = MODE_FULL;
    d->state = ft__big_alloc(d->state_bytes, false);
    if (d->state == NULL) {
        ret = -ENOMEM;
        goto err_free;
    }
    ft__state_power_on(d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->work_cv, &ca);
    pthread_cond_init(&d->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    ret = vmig_dev_new(ctx, c.mig_flags,
                       c.mig_ops != NULL ? c.mig_ops : ft_model_stream_ops(),
                       c.mig_ops != NULL ? c.mig_opaque : d, &d->dev);
    if (ret < 0) {
        goto err_sync;
    }
    if (!c.no_thread) {
        ret = -pthread_create(&d->thread, NULL, ft__worker, d);
        if (ret < 0) {
            goto err_mig;
        }
        d->thread_started = true;
    }
    *out = d;
    return 0;

err_mig:
    vmig_dev_free(d->dev);
err_sync:
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->lock);
    ft__big_free(d->state, d->state_bytes);
err_free:
    free(d);
    return ret;
}

void
ft_model_free(struct ft_model *d)
{
    if (d == NULL) {
        return;
    }
    if (d->thread_started) {
        pthread_mutex_lock(&d->lock);
        d->quit = true;
        ft__kick(d);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
    }
    ft__save_close(d);
    ft__load_close(d);
    vmig_dev_free(d->dev);
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->lock);
    ft__big_free(d->state, d->state_bytes);
    ft__big_free(d->spare, d->state_bytes);
    free(d);
}

void
ft_model_set_peer(struct ft_model *d, const struct ft_peer_ops *ops,
                  void *opaque)
{
    pthread_mutex_lock(&d->lock);
    /* a write already in flight completes against the old peer first */
    while (d->p2p_inflight > 0) {
        pthread_cond_wait(&d->idle_cv, &d->lock);
    }
    d->peer = ops != NULL && ops->write != NULL ? ops : NULL;
    d->peer_opaque = opaque;
    d->hold = false;
    ft__kick(d);
    pthread_mutex_unlock(&d->lock);
}

struct vmig_dev *
ft_model_dev(struct ft_model *d)
{
    return d->dev;
}

uint64_t
ft_model_state_bytes(const struct ft_model *d)
{
    return d->state_bytes;
}

uint32_t
ft_model_chunk_bytes(const struct ft_model *d)
{
    return d->chunk_bytes;
}

/* ------------------------------------------------------------ registers */

int
ft_model_reg_read(struct ft_model *d, uint32_t off, uint32_t *val)
{
    const struct ft_ctrl *c;
    int ret = 0;

    if (val == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    c = C(d);
    switch (off) {
    case FT_REG_ID:
        *val = FT_ID_VALUE;
        break;
    case FT_REG_VERSION:
        *val = FT_VERSION_VALUE;
        break;
    case FT_REG_CTRL:
        *val = c->ctrl;
        break;
    case FT_REG_STATUS:
        *val = c->status | (d->hold ? FT_STATUS_P2P_HOLD : 0);
        break;
    case FT_REG_RING_LO:
        *val = (uint32_t)c->ring_iova;
        break;
    case FT_REG_RING_HI:
        *val = (uint32_t)(c->ring_iova >> 32);
        break;
    case FT_REG_CMPL_LO:
        *val = (uint32_t)c->cmpl_iova;
        break;
    case FT_REG_CMPL_HI:
        *val = (uint32_t)(c->cmpl_iova >> 32);
        break;
    case FT_REG_STATS_LO:
        *val = (uint32_t)c->stats_iova;
        break;
    case FT_REG_STATS_HI:
        *val = (uint32_t)(c->stats_iova >> 32);
        break;
    case FT_REG_RING_SIZE:
        *val = c->ring_size;
        break;
    case FT_REG_TAIL:
        *val = c->tail;
        break;
    case FT_REG_HEAD:
        *val = c->head;
        break;
    case FT_REG_FLOWS:
        *val = (uint32_t)c->flows;
        break;
    case FT_REG_CAP:
        *val = c->capacity > UINT32_MAX ? UINT32_MAX : (uint32_t)c->capacity;
        break;
    case FT_REG_ERRORS:
        *val = (uint32_t)c->errors;
        break;
    default:
        ret = -EINVAL;
        break;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

static void
set_lo(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffff00000000ull) | v;
}

static void
set_hi(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffffull) | (uint64_t)v << 32;
}

/* CTRL.ENABLE set: check the ring configuration and its addresses. */
static int
enable_locked(struct ft_model *d)
{
    struct ft_ctrl *c = ft__ctrl_w(d);
    uint32_t rs = c->ring_size;
    uint64_t bytes = (uint64_t)rs * sizeof(struct ft_desc);

    c->status &= ~(FT_STATUS_CFG_ERR | FT_STATUS_DMA_ERR);
    if (rs < FT_RING_MIN || rs > FT_RING_MAX || (rs & (rs - 1)) != 0 ||
        (uint32_t)(c->tail - c->head) > rs ||
        d->dma->translate(d->dma_opaque, c->ring_iova, bytes, false) == NULL ||
        d->dma->translate(d->dma_opaque, c->cmpl_iova, bytes, true) == NULL ||
        (c->stats_iova != 0 &&
         d->dma->translate(d->dma_opaque, c->stats_iova,
                           sizeof(struct ft_stats), true) == NULL)) {
        c->status |= FT_STATUS_CFG_ERR;
        LOG(d, VMIG_LOG_DEBUG,
            "enable refused: ring size %u or an address "
            "does not translate",
            rs);
        return -EINVAL;
    }
    c->ctrl |= FT_CTRL_ENABLE;
    c->status |= FT_STATUS_ENABLED;
    return 0;
}

int
ft_model_reg_write(struct ft_model *d, uint32_t off, uint32_t val)
{
    struct ft_ctrl *c;
    int ret = 0;

    pthread_mutex_lock(&d->lock);
    c = C(d);
    if (d->mode == MODE_STOPPED) {
        d->diag.reg_refused++;
        LOG(d, VMIG_LOG_DEBUG,
            "register %#x write refused: the device is stopped (its state "
            "is frozen)",
            off);
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    switch (off) {
    case FT_REG_CTRL:
        if (val & ~(uint32_t)FT_CTRL_ENABLE) {
            ret = -EINVAL;
        } else if (val & FT_CTRL_ENABLE) {
            ret = (c->ctrl & FT_CTRL_ENABLE) ? 0 : enable_locked(d);
        } else {
            c = ft__ctrl_w(d);
            c->ctrl = 0;
            c->status &= ~FT_STATUS_ENABLED;
        }
        break;
    case FT_REG_RING_LO:
    case FT_REG_RING_HI:
    case FT_REG_CMPL_LO:
    case FT_REG_CMPL_HI:
    case FT_REG_STATS_LO:
    case FT_REG_STATS_HI:
    case FT_REG_RING_SIZE:
        if (c->ctrl & FT_CTRL_ENABLE) {
            ret = -EBUSY;
            break;
        }
        c = ft__ctrl_w(d);
        if (off == FT_REG_RING_LO) {
            set_lo(&c->ring_iova, val);
        } else if (off == FT_REG_RING_HI) {
            set_hi(&c->ring_iova, val);
        } else if (off == FT_REG_CMPL_LO) {
            set_lo(&c->cmpl_iova, val);
        } else if (off == FT_REG_CMPL_HI) {
            set_hi(&c->cmpl_iova, val);
        } else if (off == FT_REG_STATS_LO) {
            set_lo(&c->stats_iova, val);
        } else if (off == FT_REG_STATS_HI) {
            set_hi(&c->stats_iova, val);
        } else {
            c->ring_size = val;
            c->head = 0;
            c->tail = 0;
        }
        break;
    case FT_REG_TAIL:
        if (c->ring_size == 0 || (uint32_t)(val - c->head) > c->ring_size) {
            ret = -EINVAL;
            break;
        }
        ft__ctrl_w(d)->tail = val;
        ft__kick(d);
        break;
    default:
        ret = -EINVAL; /* unknown or read-only */
        break;
    }
    if (ret < 0) {
        d->diag.reg_refused++;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* ------------------------------------------------------------- P2P, poll */

int
ft_model_p2p_write(struct ft_model *d, uint64_t off, const void *buf,
                   size_t len)
{
    struct ft_p2p_rec rec;
    struct ft_key key;
    struct ft_flow *f;
    int ret;

    pthread_mutex_lock(&d->lock);
    if (off != 0 || len != sizeof(rec) || buf == NULL) {
        d->diag.p2p_refused++;
        pthread_mutex_unlock(&d->lock);
        return -EINVAL;
    }
    if (d->mode == MODE_STOPPED) {
        d->diag.p2p_refused++;
        LOG(d, VMIG_LOG_DEBUG,
            "inbound P2P write refused: the device is "
            "stopped (its state is frozen)");
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    memcpy(&rec, buf, sizeof(rec));
    memset(&key, 0, sizeof(key));
    key.src = rec.src;
    key.dst = rec.dst;
    key.sport = rec.sport;
    key.dport = rec.dport;
    key.proto = rec.proto;
    key.space = 1;
    key.origin = (uint16_t)rec.origin;
    ret = ft__flow_update(d, &key, rec.len, rec.seq, &f);
    if (ret == 0) {
        ft__ctrl_w(d)->p2p_rx++;
        /* the guest sees p2p_rx move without waiting for its own
         * traffic: the statistics block is written after every record
         * received, as after every batch */
        if (C(d)->ctrl & FT_CTRL_ENABLE) {
            ft__stats_dma(d);
        }
    } else {
        d->diag.p2p_refused++;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

long
ft_model_poll(struct ft_model *d, unsigned int max)
{
    long n;

    if (!d->cfg.no_thread) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    n = ft__process_batch(d, max);
    pthread_mutex_unlock(&d->lock);
    return n;
}

int
ft_model_wait_idle(struct ft_model *d, unsigned int timeout_ms)
{
    struct timespec ts;
    int ret = 0;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    while (d->thread_started && (ft__can_progress(d) || d->p2p_inflight > 0)) {
        if (pthread_cond_timedwait(&d->idle_cv, &d->lock, &ts) == ETIMEDOUT) {
            ret = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* ----------------------------------------------------------- inspection */

void
ft_model_digest(struct ft_model *d, uint64_t *high, uint64_t *low)
{
    XXH128_hash_t h;

    pthread_mutex_lock(&d->lock);
    h = XXH3_128bits(d->state, d->state_bytes);
    pthread_mutex_unlock(&d->lock);
    *high = h.high64;
    *low = h.low64;
}

void
ft_model_counters(struct ft_model *d, struct ft_counters *out)
{
    const struct ft_ctrl *c;

    pthread_mutex_lock(&d->lock);
    c = C(d);
    out->packets = c->packets;
    out->bytes = c->bytes;
    out->flows = c->flows;
    out->p2p_tx = c->p2p_tx;
    out->p2p_rx = c->p2p_rx;
    out->errors = c->errors;
    out->head = c->head;
    out->tail = c->tail;
    pthread_mutex_unlock(&d->lock);
}

uint64_t
ft_model_peer_sum(struct ft_model *d)
{
    const struct ft_flow *t;
    uint64_t sum = 0;

    pthread_mutex_lock(&d->lock);
    t = table(d);
    for (uint64_t i = 0; i < d->capacity; i++) {
        if (t[i].used != 0 && t[i].key.space == 1) {
            sum += t[i].packets;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return sum;
}

void
ft_model_diag(struct ft_model *d, struct ft_diag *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->diag;
    pthread_mutex_unlock(&d->lock);
}
