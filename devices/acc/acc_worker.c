/* SPDX-License-Identifier: MIT */
/*
 * acc_worker.c - the accelerator at work: events and interrupts posted to
 * guest memory, the requests (compression, digests, copies) and the worker
 * thread that serves the queue pairs round by round (acc_model.c's top
 * comment has the invariants).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd_errors.h>
#include "acc_priv.h"

/* ------------------------------------------------------------ events */

void
acc__raise_irq_locked(struct acc_model *m, unsigned int vector)
{
    m->irq_status |= 1u << vector;
    if (!(m->irq_mask & (1u << vector))) {
        m->irq_fire |= 1u << vector;
    }
}

/* Called without the lock: ops->irq may block or re-enter the model. */
void
acc__fire_irqs(struct acc_model *m, uint32_t vectors)
{
    for (unsigned int v = 0; v < ACC_IRQ__COUNT; v++) {
        if ((vectors & (1u << v)) && m->ops != NULL && m->ops->irq != NULL) {
            m->ops->irq(m->opaque, v);
        }
    }
}

static void *
dma(struct acc_model *m, uint64_t iova, uint64_t len, bool write)
{
    if (len == 0 || iova + len < iova) {
        return NULL;
    }
    return m->dma->translate(m->dma_opaque, iova, len, write);
}

/* End the use of a range dma() returned (not NULL). */
static void
undma(struct acc_model *m, uint64_t iova, uint64_t len, bool written)
{
    if (m->dma->release != NULL) {
        m->dma->release(m->dma_opaque, iova, len, written);
    }
}

/*
 * Write a device-produced entry of @size bytes at @slot (guest memory, any
 * alignment: the guest chooses the address): every byte but the last with
 * memcpy, then the last byte, which holds the phase bit, with release
 * order, so a guest that sees the new phase sees the whole entry.
 */
static void
publish(void *slot, const void *entry, size_t size)
{
    uint8_t *d = slot;

    memcpy(d, entry, size - 1);
    __atomic_store_n(d + size - 1, ((const uint8_t *)entry)[size - 1],
                     __ATOMIC_RELEASE);
}

void
acc__post_aeqe_locked(struct acc_model *m, uint8_t code, uint16_t qp,
                      uint16_t index, uint64_t info)
{
    struct acc_ring *r = &m->aeq;
    void *e;

    vmig_log(m->ctx, VMIG_LOG_DEBUG,
             "%s: async event %u qp %#x index %#x info %#" PRIx64, m->name,
             code, qp, index, info);
    if (r->size == 0 || !(m->ctrl & ACC_CTRL_ENABLE)) {
        return; /* no AEQ: the event is only logged */
    }
    if (ring_next(r->tail, r->size) == r->head) {
        m->status |= ACC_STATUS_AEQ_OVF;
        return;
    }
    e = dma(m, r->base + (uint64_t)r->tail * sizeof(struct acc_aeqe),
            sizeof(struct acc_aeqe), true);
    if (e == NULL) {
        m->status |= ACC_STATUS_AEQ_FAULT;
        return;
    }
    publish(e,
            &(struct acc_aeqe){.info = info,
                               .qp = qp,
                               .index = index,
                               .code = code,
                               .flags = (uint8_t)r->phase},
            sizeof(struct acc_aeqe));
    undma(m, r->base + (uint64_t)r->tail * sizeof(struct acc_aeqe),
          sizeof(struct acc_aeqe), true);
    r->tail = ring_next(r->tail, r->size);
    if (r->tail == 0) {
        r->phase ^= ACC_PHASE;
    }
    acc__raise_irq_locked(m, ACC_IRQ_ERROR);
}

static void
post_eqe_locked(struct acc_model *m, uint16_t qp, uint32_t cq_tail)
{
    struct acc_ring *r = &m->eq;
    void *e;

    acc__raise_irq_locked(m, ACC_IRQ_COMPLETION);
    if (r->size == 0 || !(m->ctrl & ACC_CTRL_ENABLE)) {
        return;
    }
    if (ring_next(r->tail, r->size) == r->head) {
        if (!(m->status & ACC_STATUS_EQ_OVF)) {
            m->status |= ACC_STATUS_EQ_OVF;
            acc__post_aeqe_locked(m, ACC_AEQ_EQ_OVERFLOW, ACC_NO_QP, ACC_NO_QP,
                                  r->head);
        }
        return;
    }
    e = dma(m, r->base + (uint64_t)r->tail * sizeof(struct acc_eqe),
            sizeof(struct acc_eqe), true);
    if (e == NULL) {
        acc__post_aeqe_locked(m, ACC_AEQ_EQ_FAULT, ACC_NO_QP, ACC_NO_QP,
                              r->base +
                                  (uint64_t)r->tail * sizeof(struct acc_eqe));
        return;
    }
    publish(e,
            &(struct acc_eqe){
                .cq_tail = cq_tail, .qp = qp, .flags = (uint8_t)r->phase},
            sizeof(struct acc_eqe));
    undma(m, r->base + (uint64_t)r->tail * sizeof(struct acc_eqe),
          sizeof(struct acc_eqe), true);
    r->tail = ring_next(r->tail, r->size);
    if (r->tail == 0) {
        r->phase ^= ACC_PHASE;
    }
}

static void
ring_fault_locked(struct acc_model *m, unsigned int qpn, uint64_t addr)
{
    vmig_log(m->ctx, VMIG_LOG_DEBUG,
             "%s: qp %u: ring address %#" PRIx64 " is not mapped; %s stops",
             m->name, qpn, addr,
             m->isolation == ACC_ISO_QP ? "the queue pair" : "the device");
    if (m->isolation == ACC_ISO_QP) {
        m->qp[qpn].status |= ACC_QP_STATUS_FAULT;
    } else {
        m->status |= ACC_STATUS_FAULT;
    }
    acc__post_aeqe_locked(m, ACC_AEQ_RING_FAULT, (uint16_t)qpn, ACC_NO_QP,
                          addr);
}

/* ------------------------------------------------------------ requests */

static bool
overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen != 0 && blen != 0 && a < b + blen && b < a + alen;
}

static int
bounce_reserve(struct acc_model *m, size_t n)
{
    uint8_t *p;

    if (n <= m->bounce_cap) {
        return 0;
    }
    p = realloc(m->bounce, n);
    if (p == NULL) {
        return -ENOMEM;
    }
    m->bounce = p;
    m->bounce_cap = n;
    return 0;
}

static uint8_t
zstd_status(size_t rc, bool decomp)
{
    if (ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall) {
        return ACC_ST_OVERFLOW;
    }
    if (ZSTD_getErrorCode(rc) == ZSTD_error_memory_allocation) {
        return ACC_ST_INTERNAL;
    }
    return decomp ? ACC_ST_BAD_DATA : ACC_ST_INTERNAL;
}

/*
 * Do one request; runs without the lock.  Guest memory may change under
 * us (a guest racing its own buffers gets garbage output, never a crash):
 * the SQE is a private copy, and decompression reads a private copy of the
 * input so the parsers never see bytes change between two reads.
 */
static uint8_t run_op(struct acc_model *m, const struct acc_sqe *sqe,
                      const uint8_t *src, uint8_t *dst, uint32_t *out_len);

static uint8_t
do_request(struct acc_model *m, const struct acc_sqe *sqe, uint32_t *out_len)
{
    static const uint8_t empty[1];
    const uint8_t *src = empty;
    uint8_t *dst = NULL;
    uint32_t slen = sqe->src_len, dlen = sqe->dst_len;
    uint8_t st;

    *out_len = 0;
    if (sqe->opcode >= ACC_OP__COUNT || sqe->flags != 0) {
        return ACC_ST_BAD_OPCODE;
    }
    if (sqe->opcode == ACC_OP_NOP) {
        return ACC_ST_OK;
    }
    if (slen > ACC_XFER_MAX || dlen > ACC_XFER_MAX) {
        return ACC_ST_BAD_LEN;
    }
    if (sqe->opcode != ACC_OP_COPY &&
        overlaps(sqe->src, slen, sqe->dst, dlen)) {
        return ACC_ST_OVERLAP;
    }
    if (slen != 0) {
        src = dma(m, sqe->src, slen, false);
        if (src == NULL) {
            return ACC_ST_BAD_ADDR;
        }
    }
    if (dlen != 0) {
        dst = dma(m, sqe->dst, dlen, true);
        if (dst == NULL) {
            if (slen != 0) {
                undma(m, sqe->src, slen, false);
            }
            return ACC_ST_BAD_ADDR;
        }
    }
    st = run_op(m, sqe, src, dst, out_len);
    if (slen != 0) {
        undma(m, sqe->src, slen, false);
    }
    if (dlen != 0) {
        undma(m, sqe->dst, dlen, true);
    }
    return st;
}

/* The operation itself, on translated buffers. */
static uint8_t
run_op(struct acc_model *m, const struct acc_sqe *sqe, const uint8_t *src,
       uint8_t *dst, uint32_t *out_len)
{
    uint32_t slen = sqe->src_len, dlen = sqe->dst_len;
    int level = sqe->param;
    if (sqe->opcode == ACC_OP_ZSTD_DECOMP ||
        sqe->opcode == ACC_OP_DEFL_DECOMP) {
        if (bounce_reserve(m, slen) < 0) {
            return ACC_ST_INTERNAL;
        }
        if (slen != 0) { /* an empty input: no bounce buffer yet */
            memcpy(m->bounce, src, slen);
        }
        src = m->bounce;
    }

    switch (sqe->opcode) {
    case ACC_OP_COPY:
        if (dlen < slen) {
            return ACC_ST_OVERFLOW;
        }
        if (slen != 0) {
            memmove(dst, src, slen);
        }
        *out_len = slen;
        return ACC_ST_OK;
    case ACC_OP_CRC32C: {
        uint32_t c = acc_crc32c(0, src, slen);

        if (dlen < 4) {
            return ACC_ST_OVERFLOW;
        }
        for (int i = 0; i < 4; i++) {
            dst[i] = (uint8_t)(c >> (8 * i));
        }
        *out_len = 4;
        return ACC_ST_OK;
    }
    case ACC_OP_SHA256: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        if (dlen < 32) {
            return ACC_ST_OVERFLOW;
        }
        if (EVP_Digest(src, slen, md, &mdlen, EVP_sha256(), NULL) != 1 ||
            mdlen != 32) {
            return ACC_ST_INTERNAL;
        }
        memcpy(dst, md, 32);
        *out_len = 32;
        return ACC_ST_OK;
    }
    case ACC_OP_ZSTD_COMP: {
        size_t rc;

        if (level == 0) {
            level = ZSTD_CLEVEL_DEFAULT;
        } else if (level > ZSTD_maxCLevel()) {
            level = ZSTD_maxCLevel();
        }
        rc = ZSTD_compressCCtx(m->cctx, dlen ? dst : NULL, dlen, src, slen,
                               level);
        if (ZSTD_isError(rc)) {
            return zstd_status(rc, false);
        }
        *out_len = (uint32_t)rc;
        return ACC_ST_OK;
    }
    case ACC_OP_ZSTD_DECOMP: {
        size_t rc =
            ZSTD_decompressDCtx(m->dctx, dlen ? dst : NULL, dlen, src, slen);

        if (ZSTD_isError(rc)) {
            return zstd_status(rc, true);
        }
        *out_len = (uint32_t)rc;
        return ACC_ST_OK;
    }
    case ACC_OP_DEFL_COMP: {
        uLongf n = dlen;
        int rc;

        if (level == 0) {
            level = Z_DEFAULT_COMPRESSION;
        } else if (level > Z_BEST_COMPRESSION) {
            level = Z_BEST_COMPRESSION;
        }
        if (dlen == 0) {
            return ACC_ST_OVERFLOW;
        }
        rc = compress2(dst, &n, src, slen, level);
        if (rc == Z_BUF_ERROR) {
            return ACC_ST_OVERFLOW;
        }
        if (rc != Z_OK) {
            return ACC_ST_INTERNAL;
        }
        *out_len = (uint32_t)n;
        return ACC_ST_OK;
    }
    case ACC_OP_DEFL_DECOMP: {
        uint8_t one;
        uLongf n = dlen;
        int rc;

        /* zlib wants a buffer even for an empty output. */
        rc = uncompress(dlen ? dst : &one, &n, src, slen);
        if (rc == Z_BUF_ERROR && slen != 0 && n == dlen) {
            /* Output full before the stream ended: it did not fit. */
            return ACC_ST_OVERFLOW;
        }
        if (rc == Z_MEM_ERROR) {
            return ACC_ST_INTERNAL;
        }
        if (rc != Z_OK) {
            return ACC_ST_BAD_DATA;
        }
        *out_len = (uint32_t)n;
        return ACC_ST_OK;
    }
    default:
        return ACC_ST_BAD_OPCODE;
    }
}

/* ------------------------------------------------------------ worker */

static bool
qp_runnable_locked(const struct acc_model *m, const struct acc_qp *q)
{
    return (q->ctrl & ACC_QP_CTRL_ENABLE) &&
           !(q->status & ACC_QP_STATUS_FAULT) && q->sq_head != q->sq_tail &&
           ring_next(q->cq_tail, q->cq_size) != q->cq_head &&
           (m->ctrl & ACC_CTRL_ENABLE) && !(m->status & ACC_STATUS_FAULT);
}

bool
acc__work_available_locked(const struct acc_model *m)
{
    for (uint32_t i = 0; i < m->qp_count; i++) {
        if (qp_runnable_locked(m, &m->qp[i])) {
            return true;
        }
    }
    return false;
}

static bool
round_cut_short_locked(const struct acc_model *m)
{
    return m->stopped || m->waiters != 0 || m->exit;
}

/* Serve up to ACC_BATCH requests of one queue pair. */
static void
serve_qp_locked(struct acc_model *m, unsigned int qpn)
{
    struct acc_qp *q = &m->qp[qpn];
    unsigned int batch = 0;

    while (batch < ACC_BATCH && qp_runnable_locked(m, q) &&
           !round_cut_short_locked(m)) {
        uint64_t sqe_addr = q->sq_base + (uint64_t)q->sq_head * 64u;
        uint64_t cqe_addr = q->cq_base + (uint64_t)q->cq_tail * 16u;
        const struct acc_sqe *gsqe;
        struct acc_sqe sqe;
        void *cqe;
        uint32_t out_len;
        uint8_t st;

        gsqe = dma(m, sqe_addr, sizeof(sqe), false);
        if (gsqe == NULL) {
            ring_fault_locked(m, qpn, sqe_addr);
            break;
        }
        memcpy(&sqe, gsqe, sizeof(sqe));
        undma(m, sqe_addr, sizeof(sqe), false);
        cqe = dma(m, cqe_addr, sizeof(struct acc_cqe), true);
        if (cqe == NULL) {
            ring_fault_locked(m, qpn, cqe_addr);
            break;
        }
        undma(m, cqe_addr, sizeof(struct acc_cqe), false);

        pthread_mutex_unlock(&m->lock);
        st = do_request(m, &sqe, &out_len);
        pthread_mutex_lock(&m->lock);

        /*
         * Queue configuration cannot have changed (it waits for !active),
         * but the DMA mapping might have: translate the CQE again.
         */
        cqe = dma(m, cqe_addr, sizeof(struct acc_cqe), true);
        if (cqe == NULL) {
            ring_fault_locked(m, qpn, cqe_addr);
            break;
        }
        q->sq_head = ring_next(q->sq_head, q->sq_size);
        publish(cqe,
                &(struct acc_cqe){.req_id = sqe.req_id,
                                  .out_len = out_len,
                                  .sq_head = (uint16_t)q->sq_head,
                                  .status = st,
                                  .flags = (uint8_t)q->cq_phase},
                sizeof(struct acc_cqe));
        undma(m, cqe_addr, sizeof(struct acc_cqe), true);
        q->cq_tail = ring_next(q->cq_tail, q->cq_size);
        if (q->cq_tail == 0) {
            q->cq_phase ^= ACC_PHASE;
        }
        m->done++;
        batch++;
        if (st != ACC_ST_OK) {
            uint32_t idx = (q->sq_head + q->sq_size - 1) & (q->sq_size - 1);

            acc__post_aeqe_locked(m, st, (uint16_t)qpn, (uint16_t)idx,
                                  sqe.req_id);
        }
    }
    if (batch != 0) {
        post_eqe_locked(m, (uint16_t)qpn, q->cq_tail);
    }
}

void *
acc__worker_main(void *arg)
{
    struct acc_model *m = arg;

    pthread_mutex_lock(&m->lock);
    while (!m->exit) {
        uint32_t fire;

        if (m->stopped || m->waiters != 0 || !acc__work_available_locked(m)) {
            pthread_cond_broadcast(&m->idle_cond);
            pthread_cond_wait(&m->work_cond, &m->lock);
            continue;
        }
        m->active = true;
        for (uint32_t i = 0; i < m->qp_count && !round_cut_short_locked(m);
             i++) {
            serve_qp_locked(m, i);
        }
        fire = m->irq_fire;
        m->irq_fire = 0;
        if (fire != 0) {
            pthread_mutex_unlock(&m->lock);
            acc__fire_irqs(m, fire);
            pthread_mutex_lock(&m->lock);
        }
        m->active = false;
        pthread_cond_broadcast(&m->idle_cond);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void
acc__kick_locked(struct acc_model *m)
{
    pthread_cond_signal(&m->work_cond);
}

void
acc__quiesce_locked(struct acc_model *m)
{
    m->waiters++;
    while (m->active) {
        pthread_cond_wait(&m->idle_cond, &m->lock);
    }
    m->waiters--;
    /* The worker parks while anyone waits; let it look again. */
    pthread_cond_signal(&m->work_cond);
}
