/* SPDX-License-Identifier: MIT */
/*
 * flowtab_worker.c - the flowtab device at work: the flow table (open
 * addressing, linear probing, bounded by the capacity) and ring
 * processing - one descriptor at a time under the model's lock, which is
 * dropped only around an outbound P2P write (counted in flight, so a
 * quiescing run-mode change waits for it; the descriptor's DMA window is
 * released first, so the lock is never re-taken under a DMA window).
 */
#include <errno.h>
#include <sched.h>
#include "flowtab_priv.h"

enum run_mode
ft__mode_of(enum vmig_state s)
{
    switch (s) {
    case VMIG_STATE_RUNNING:
    case VMIG_STATE_PRE_COPY:
        return MODE_FULL;
    case VMIG_STATE_RUNNING_P2P:
    case VMIG_STATE_PRE_COPY_P2P:
        return MODE_NO_P2P;
    default:
        return MODE_STOPPED;
    }
}

/* ---------------------------------------------------------- flow table */

static uint64_t
flow_limit(const struct ft_model *d)
{
    /* keep probe chains short: at most 7/8 full */
    return d->capacity - d->capacity / 8;
}

int
ft__flow_update(struct ft_model *d, const struct ft_key *key, uint32_t len,
                uint64_t seq, struct ft_flow **out)
{
    struct ft_flow *t = table(d);
    uint64_t i = XXH3_64bits(key, sizeof(*key)) % d->capacity;

    /* Bounded by the capacity, so any table content (even a loaded one
     * with no free slot) terminates. */
    for (uint64_t n = 0; n < d->capacity; n++) {
        struct ft_flow *f = &t[i];

        if (f->used == 0) {
            struct ft_ctrl *c = C(d);

            if (c->flows >= flow_limit(d)) {
                return -ENOSPC;
            }
            ft__mark_dirty(d, FT_CTRL_BYTES + i * FT_FLOW_BYTES, FT_FLOW_BYTES);
            memset(f, 0, sizeof(*f));
            f->key = *key;
            f->used = 1;
            f->first_seq = seq;
            ft__ctrl_w(d)->flows++;
        } else if (memcmp(&f->key, key, sizeof(*key)) != 0) {
            i = i + 1 == d->capacity ? 0 : i + 1;
            continue;
        }
        ft__mark_dirty(d, FT_CTRL_BYTES + i * FT_FLOW_BYTES, FT_FLOW_BYTES);
        f->packets++;
        f->bytes += len;
        f->last_seq = seq;
        *out = f;
        return 0;
    }
    return -ENOSPC;
}

/* -------------------------------------------------------------- ft__worker */

bool
ft__can_progress(const struct ft_model *d)
{
    const struct ft_ctrl *c = C(d);

    return d->mode != MODE_STOPPED && (c->ctrl & FT_CTRL_ENABLE) &&
           c->head != c->tail && !d->hold;
}

static void
dma_error(struct ft_model *d, const char *what, uint64_t iova)
{
    struct ft_ctrl *c = ft__ctrl_w(d);

    c->status |= FT_STATUS_DMA_ERR;
    c->ctrl &= ~FT_CTRL_ENABLE;
    c->status &= ~FT_STATUS_ENABLED;
    LOG(d, VMIG_LOG_ERR,
        "%s at iova %#llx does not translate; ring processing disabled "
        "(the guest driver must reprogram the device)",
        what, (unsigned long long)iova);
}

void
ft__stats_dma(struct ft_model *d)
{
    const struct ft_ctrl *c = C(d);
    struct ft_stats *s;

    if (c->stats_iova == 0) {
        return;
    }
    s = d->dma->translate(d->dma_opaque, c->stats_iova, sizeof(*s), true);
    if (s == NULL) {
        dma_error(d, "statistics block", c->stats_iova);
        return;
    }
    s->packets = c->packets;
    s->bytes = c->bytes;
    s->flows = c->flows;
    s->p2p_tx = c->p2p_tx;
    s->p2p_rx = c->p2p_rx;
    s->errors = c->errors;
    /* head last: completions below it are visible once it is */
    __atomic_store_n(&s->head, c->head, __ATOMIC_RELEASE);
}

/*
 * Process the descriptor at head.  Called with lock held; may drop it
 * around the peer write.  Return: 1 when a descriptor was consumed, 0 when
 * nothing may be done now.
 */
static int
process_one(struct ft_model *d)
{
    struct ft_ctrl *c = C(d);
    uint32_t idx;
    const struct ft_desc *dp;
    struct ft_desc desc;
    struct ft_cmpl *cp;
    struct ft_flow *f = NULL;
    struct ft_key key;
    uint16_t status = FT_ST_OK, cflags = 0;

    if (!ft__can_progress(d)) {
        return 0;
    }
    idx = c->head & (c->ring_size - 1);
    dp = d->dma->translate(d->dma_opaque, c->ring_iova + idx * sizeof(desc),
                           sizeof(desc), false);
    if (dp == NULL) {
        dma_error(d, "descriptor", c->ring_iova + idx * sizeof(desc));
        return 0;
    }
    memcpy(&desc, dp, sizeof(desc));
    if ((desc.flags & FT_DESC_FWD) && d->peer != NULL) {
        struct ft_p2p_rec rec = {
            .seq = desc.seq,
            .src = desc.src,
            .dst = desc.dst,
            .sport = desc.sport,
            .dport = desc.dport,
            .proto = desc.proto,
            .len = desc.len,
            .origin = d->cfg.device_id,
        };
        const struct ft_peer_ops *peer = d->peer;
        void *popaque = d->peer_opaque;
        uint64_t epoch = d->reset_epoch;
        int rc;

        if (d->mode != MODE_FULL) {
            d->hold = true; /* RUNNING_P2P: initiate no P2P */
            return 0;
        }
        d->p2p_inflight++;
        /* the descriptor is copied: give its window back before the lock
         * goes, so lock is never re-taken under a DMA window (lock order:
         * model lock, then the transport's DMA lock) */
        if (d->dma->release != NULL) {
            d->dma->release(d->dma_opaque);
        }
        pthread_mutex_unlock(&d->lock);
        rc = peer->write(popaque, 0, &rec, sizeof(rec));
        pthread_mutex_lock(&d->lock);
        if (rc < 0) {
            LOG(d, VMIG_LOG_DEBUG, "P2P write of seq %llu not accepted: %s",
                (unsigned long long)desc.seq, strerror(-rc));
        }
        if (epoch != d->reset_epoch) {
            /* reset while the write was in flight: the ring is gone */
            if (--d->p2p_inflight == 0) {
                pthread_cond_broadcast(&d->idle_cv);
            }
            return 1;
        }
        ft__ctrl_w(d)->p2p_tx++;
        cflags |= FT_CMPL_FWD;
        /* still counted in flight: a quiescing step waits for the rest of
         * this descriptor, so the state stops changing when it returns */
    } else {
        d->p2p_inflight++;
    }
    c = C(d);
    cp = d->dma->translate(d->dma_opaque, c->cmpl_iova + idx * sizeof(*cp),
                           sizeof(*cp), true);
    if (cp == NULL) {
        dma_error(d, "completion", c->cmpl_iova + idx * sizeof(*cp));
    } else {
        memset(&key, 0, sizeof(key));
        key.src = desc.src;
        key.dst = desc.dst;
        key.sport = desc.sport;
        key.dport = desc.dport;
        key.proto = desc.proto;
        c = ft__ctrl_w(d);
        if (ft__flow_update(d, &key, desc.len, desc.seq, &f) < 0) {
            status = FT_ST_TABLE_FULL;
            c->errors++;
        }
        c->packets++;
        c->bytes += desc.len;
        cp->seq = desc.seq;
        cp->flow_packets = f != NULL ? f->packets : 0;
        cp->flow_bytes = f != NULL ? f->bytes : 0;
        cp->cookie = desc.cookie;
        cp->status = status;
        cp->flags = cflags;
        c->head++;
    }
    if (--d->p2p_inflight == 0) {
        pthread_cond_broadcast(&d->idle_cv);
    }
    return cp != NULL;
}

long
ft__process_batch(struct ft_model *d, unsigned int max)
{
    long n = 0;

    while ((unsigned int)n < max && process_one(d) > 0) {
        n++;
    }
    if (n > 0) {
        ft__stats_dma(d);
    }
    return n;
}

void *
ft__worker(void *arg)
{
    struct ft_model *d = arg;

    pthread_mutex_lock(&d->lock);
    while (!d->quit) {
        if (ft__process_batch(d, d->cfg.batch) > 0) {
            /* let register writes and state changes in */
            pthread_mutex_unlock(&d->lock);
            sched_yield();
            pthread_mutex_lock(&d->lock);
            continue;
        }
        pthread_cond_broadcast(&d->idle_cv);
        pthread_cond_wait(&d->work_cv, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

void
ft__kick(struct ft_model *d)
{
    pthread_cond_broadcast(&d->work_cv);
}

void
ft__set_mode(struct ft_model *d, enum run_mode m)
{
    bool lower = m < d->mode;

    d->mode = m;
    d->hold = false;
    if (lower) {
        while (d->p2p_inflight > 0) {
            pthread_cond_wait(&d->idle_cv, &d->lock);
        }
    }
    ft__kick(d);
}
