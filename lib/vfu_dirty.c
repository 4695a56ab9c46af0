/* SPDX-License-Identifier: MIT */
/*
 * vfu_dirty.c - DMA dirty logging (VFIO's DMA_LOGGING_START, _STOP and
 * _REPORT features): which guest pages the device wrote.
 *
 * A device with its own tracker has log callbacks in its framework
 * object (VMIG_DEV_CAP_DMA_LOG), called through vmig_dev_log_*() with no
 * server lock held (the framework's lock comes first); otherwise the
 * server logs itself every write the device makes through
 * vmig_vfu_dma_write() or a written vmig_vfu_dma_get() window, one bit
 * per page of each range the client asked for.  Bits are set and cleared
 * atomically under the read side of dma.lock (DMA runs on many threads);
 * starting and stopping take the write side.  log_on and log_dev change
 * only on the loop thread (LOG_START, LOG_STOP, disconnect).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include "vfu_srv.h"

/* Built-in dirty log: bitmap bits across all ranges. */
#define VFU_MAX_DIRTY_BITS (1ull << 28)

static void
log_free_locked(struct vfu_dma *d)
{
    for (unsigned int i = 0; i < d->log_n; i++) {
        free(d->log_r[i].bits);
    }
    free(d->log_r);
    d->log_r = NULL;
    d->log_n = 0;
    d->log_on = false;
    d->log_dev = false;
}

static bool
dev_logs(const struct vmig_vfu_server *s)
{
    return s->mig.dev != NULL &&
           (vmig_dev_caps(s->mig.dev) & VMIG_DEV_CAP_DMA_LOG);
}

void
vmig__vfu_dirty_disconnect(struct vmig_vfu_server *s)
{
    if (s->dma.log_on && s->dma.log_dev) {
        (void)!vmig_dev_log_stop(s->mig.dev);
    }
    pthread_rwlock_wrlock(&s->dma.lock);
    log_free_locked(&s->dma);
    pthread_rwlock_unlock(&s->dma.lock);
}

void
vmig__vfu_dirty_mark_locked(struct vfu_dma *d, uint64_t iova, uint64_t len)
{
    if (!d->log_on || d->log_dev || len == 0) {
        return;
    }
    for (unsigned int i = 0; i < d->log_n; i++) {
        struct vfu_dirty_range *r = &d->log_r[i];
        uint64_t a = iova > r->iova ? iova : r->iova;
        uint64_t e1 = iova + len, e2 = r->iova + r->len;
        uint64_t b = e1 < e2 ? e1 : e2;

        if (a >= b) {
            continue;
        }
        for (uint64_t p = (a - r->iova) / d->log_pgsize;
             p <= (b - 1 - r->iova) / d->log_pgsize; p++) {
            __atomic_fetch_or(&r->bits[p / 64], 1ull << (p % 64),
                              __ATOMIC_RELAXED);
        }
    }
}

static int
log_start_builtin(struct vfu_dma *d, uint64_t pgsize,
                  const struct vmig_vfu_log_range *rg, unsigned int n)
{
    uint64_t bits_total = 0;

    d->log_r = calloc(n, sizeof(*d->log_r));
    if (d->log_r == NULL) {
        return -ENOMEM;
    }
    for (unsigned int i = 0; i < n; i++) {
        uint64_t pages = rg[i].length / pgsize + 2;

        bits_total += pages;
        if (bits_total > VFU_MAX_DIRTY_BITS) {
            log_free_locked(d);
            return -E2BIG;
        }
        d->log_r[i].iova = rg[i].iova;
        d->log_r[i].len = rg[i].length;
        d->log_r[i].bits = calloc((size_t)(pages + 63) / 64, 8);
        d->log_n = i + 1;
        if (d->log_r[i].bits == NULL) {
            log_free_locked(d);
            return -ENOMEM;
        }
    }
    d->log_pgsize = pgsize;
    return 0;
}

/* The ranges of a LOG_START: sized, non-empty, not overlapping. */
static int
ranges_check(const struct vmig_vfu_log_range *rg, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        if (rg[i].length == 0 || rg[i].iova + rg[i].length < rg[i].iova) {
            return -EINVAL;
        }
        for (unsigned int j = 0; j < i; j++) {
            if (rg[i].iova < rg[j].iova + rg[j].length &&
                rg[j].iova < rg[i].iova + rg[i].length) {
                return -EINVAL;
            }
        }
    }
    return 0;
}

int
vmig__vfu_f_log_start(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                      struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_log_ctl c;
    struct vmig_vfu_log_range *rg;
    int ret;

    (void)out;
    (void)olen;
    if (f->dlen < sizeof(c)) {
        return -EINVAL;
    }
    memcpy(&c, f->d, sizeof(c));
    if (c.num_ranges == 0 || c.num_ranges > VMIG_VFU_MAX_LOG_RANGES) {
        /* 0 ("log everything") needs no ranges; vmig requires them so
         * the bitmap size is known up front. */
        return c.num_ranges == 0 ? -EINVAL : -E2BIG;
    }
    if (f->dlen != sizeof(c) + (size_t)c.num_ranges * sizeof(*rg) ||
        c.page_size < 4096 || (c.page_size & (c.page_size - 1))) {
        return -EINVAL;
    }
    rg = malloc(sizeof(*rg) * c.num_ranges);
    if (rg == NULL) {
        return -ENOMEM;
    }
    memcpy(rg, f->d + sizeof(c), sizeof(*rg) * c.num_ranges);
    ret = ranges_check(rg, c.num_ranges);
    if (ret == 0 && s->dma.log_on) {
        ret = -EBUSY;
    }
    if (ret == 0 && dev_logs(s)) {
        _Static_assert(sizeof(struct vmig_dma_range) ==
                               sizeof(struct vmig_vfu_log_range) &&
                           offsetof(struct vmig_dma_range, length) ==
                               offsetof(struct vmig_vfu_log_range, length),
                       "the wire ranges are the framework's");
        ret = vmig_dev_log_start(s->mig.dev, c.page_size,
                                 (const struct vmig_dma_range *)(void *)rg,
                                 c.num_ranges);
        pthread_rwlock_wrlock(&s->dma.lock);
        s->dma.log_dev = ret == 0;
        s->dma.log_on = ret == 0;
        pthread_rwlock_unlock(&s->dma.lock);
    } else if (ret == 0) {
        pthread_rwlock_wrlock(&s->dma.lock);
        ret = log_start_builtin(&s->dma, c.page_size, rg, c.num_ranges);
        s->dma.log_on = ret == 0;
        pthread_rwlock_unlock(&s->dma.lock);
    }
    free(rg);
    if (ret < 0) {
        return ret;
    }
    rep->p1 = f->m->payload;
    rep->l1 = f->m->len;
    return VFU_FEAT_REPLIED;
}

int
vmig__vfu_f_log_stop(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                     struct vfu_reply *rep, void *out, size_t *olen)
{
    int ret = 0;

    (void)f;
    (void)rep;
    (void)out;
    *olen = 0;
    if (!s->dma.log_on) {
        return -EINVAL;
    }
    if (s->dma.log_dev) {
        ret = vmig_dev_log_stop(s->mig.dev);
    }
    if (ret == 0) {
        pthread_rwlock_wrlock(&s->dma.lock);
        log_free_locked(&s->dma);
        pthread_rwlock_unlock(&s->dma.lock);
    }
    return ret;
}

/* Report and clear: bit i covers [iova + i*pg, iova + (i+1)*pg). */
static void
log_report_builtin(struct vfu_dma *d, uint64_t iova, uint64_t len, uint64_t pg,
                   uint64_t *bm)
{
    for (unsigned int k = 0; k < d->log_n; k++) {
        struct vfu_dirty_range *r = &d->log_r[k];
        uint64_t a = iova > r->iova ? iova : r->iova;
        uint64_t e =
            iova + len < r->iova + r->len ? iova + len : r->iova + r->len;

        if (a >= e) {
            continue;
        }
        for (uint64_t p = (a - r->iova) / d->log_pgsize;
             p <= (e - 1 - r->iova) / d->log_pgsize; p++) {
            uint64_t bit = 1ull << (p % 64);
            uint64_t lo, hi;

            if (!(__atomic_fetch_and(&r->bits[p / 64], ~bit, __ATOMIC_RELAXED) &
                  bit)) {
                continue;
            }
            /* The tracked page's span, clipped to the report. */
            lo = r->iova + p * d->log_pgsize;
            hi = lo + d->log_pgsize;
            lo = lo < iova ? iova : lo;
            hi = hi > iova + len ? iova + len : hi;
            for (uint64_t q = (lo - iova) / pg; q <= (hi - 1 - iova) / pg;
                 q++) {
                bm[q / 64] |= 1ull << (q % 64);
            }
        }
    }
}

/* The reply (feature header, report struct, bitmap) is built in scratch
 * after the header. */
int
vmig__vfu_f_log_report(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                       struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_log_report lr;
    struct vmig_vfu_feature fh;
    uint64_t *bm = (uint64_t *)(void *)(s->scratch + sizeof(lr));
    uint64_t pages, bytes;
    int ret = 0;

    (void)out;
    (void)olen;
    if (f->dlen < sizeof(lr)) {
        return -EINVAL;
    }
    memcpy(&lr, f->d, sizeof(lr));
    if (lr.length == 0 || lr.iova + lr.length < lr.iova ||
        lr.page_size < 4096 || (lr.page_size & (lr.page_size - 1))) {
        return -EINVAL;
    }
    pages = lr.length / lr.page_size + (lr.length % lr.page_size != 0);
    bytes = (pages + 63) / 64 * 8;
    if (bytes > s->conn.xfer_out || bytes > VMIG_VFU_MAX_DATA_XFER) {
        return -E2BIG;
    }
    if (f->argsz < sizeof(fh) + sizeof(lr) + bytes) {
        return -EINVAL;
    }
    memset(bm, 0, (size_t)bytes);
    if (!s->dma.log_on) {
        ret = -EINVAL;
    } else if (s->dma.log_dev) {
        ret = vmig_dev_log_report(s->mig.dev, lr.iova, lr.length, lr.page_size,
                                  bm);
    } else {
        pthread_rwlock_rdlock(&s->dma.lock);
        log_report_builtin(&s->dma, lr.iova, lr.length, lr.page_size, bm);
        pthread_rwlock_unlock(&s->dma.lock);
    }
    if (ret < 0) {
        return ret;
    }
    memcpy(s->scratch, &lr, sizeof(lr));
    fh.argsz = (uint32_t)(sizeof(fh) + sizeof(lr) + bytes);
    fh.flags = f->flags;
    vmig__vfu_rep_inline(rep, &fh, sizeof(fh), NULL, 0);
    rep->p2 = s->scratch;
    rep->l2 = (size_t)(sizeof(lr) + bytes);
    return VFU_FEAT_REPLIED;
}
