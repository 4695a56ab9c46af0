/* SPDX-License-Identifier: MIT */
/*
 * acc_model.c - the emulated accelerator: registers, worker, requests.
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
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>
#include "acc_model.h"

/* Requests served per queue pair before the worker looks at the next one. */
#define ACC_BATCH 32u

struct acc_ring {
    uint64_t base;
    uint32_t size; /* entries; 0 = absent */
    uint32_t head; /* guest-owned consumer index */
    uint32_t tail; /* device-owned producer index */
    uint32_t phase;
};

struct acc_qp {
    uint64_t sq_base;
    uint64_t cq_base;
    uint32_t sq_size;
    uint32_t cq_size;
    uint32_t ctrl;
    uint32_t status;
    uint32_t sq_head; /* device consumer */
    uint32_t sq_tail; /* guest producer (doorbell) */
    uint32_t cq_head; /* guest consumer (doorbell) */
    uint32_t cq_tail; /* device producer */
    uint32_t cq_phase;
};

struct acc_model {
    char name[32];
    vmig_ctx_t *ctx;
    uint32_t qp_count;  /* constant */
    uint32_t isolation; /* constant */
    const struct acc_dma_ops *dma;
    void *dma_opaque;
    const struct acc_model_ops *ops;
    void *opaque;

    pthread_mutex_t lock;
    pthread_cond_t work_cond; /* worker: something to do */
    pthread_cond_t idle_cond; /* waiters: active dropped / progress */
    pthread_t worker;

    /* Guarded by lock. */
    bool exit;
    bool stopped;
    bool active;
    unsigned int waiters;
    uint32_t irq_fire; /* vectors to raise at the end of this round */

    /* Device state, guarded by lock; saved and loaded. */
    uint32_t ctrl;
    uint32_t irq_mask;
    uint32_t irq_status;
    uint32_t status;
    uint64_t done;
    struct acc_ring eq;
    struct acc_ring aeq;
    struct acc_qp qp[ACC_QP_MAX];

    /* Worker-only scratch: never touched by another thread. */
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *bounce;
    size_t bounce_cap;
};

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

static const char *
iso_name(uint32_t iso)
{
    return iso < ACC_ISO__COUNT ? iso_names[iso] : "unknown";
}

static bool
ring_size_ok(uint32_t size)
{
    return size >= ACC_RING_MIN && size <= ACC_RING_MAX &&
           (size & (size - 1)) == 0;
}

static uint32_t
ring_next(uint32_t idx, uint32_t size)
{
    return (idx + 1) & (size - 1);
}

/* ------------------------------------------------------------ events */

static void
raise_irq_locked(struct acc_model *m, unsigned int vector)
{
    m->irq_status |= 1u << vector;
    if (!(m->irq_mask & (1u << vector))) {
        m->irq_fire |= 1u << vector;
    }
}

/* Called without the lock: ops->irq may block or re-enter the model. */
static void
fire_irqs(struct acc_model *m, uint32_t vectors)
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

static void
post_aeqe_locked(struct acc_model *m, uint8_t code, uint16_t qp, uint16_t index,
                 uint64_t info)
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
    raise_irq_locked(m, ACC_IRQ_ERROR);
}

static void
post_eqe_locked(struct acc_model *m, uint16_t qp, uint32_t cq_tail)
{
    struct acc_ring *r = &m->eq;
    void *e;

    raise_irq_locked(m, ACC_IRQ_COMPLETION);
    if (r->size == 0 || !(m->ctrl & ACC_CTRL_ENABLE)) {
        return;
    }
    if (ring_next(r->tail, r->size) == r->head) {
        if (!(m->status & ACC_STATUS_EQ_OVF)) {
            m->status |= ACC_STATUS_EQ_OVF;
            post_aeqe_locked(m, ACC_AEQ_EQ_OVERFLOW, ACC_NO_QP, ACC_NO_QP,
                             r->head);
        }
        return;
    }
    e = dma(m, r->base + (uint64_t)r->tail * sizeof(struct acc_eqe),
            sizeof(struct acc_eqe), true);
    if (e == NULL) {
        post_aeqe_locked(m, ACC_AEQ_EQ_FAULT, ACC_NO_QP, ACC_NO_QP,
                         r->base + (uint64_t)r->tail * sizeof(struct acc_eqe));
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
    post_aeqe_locked(m, ACC_AEQ_RING_FAULT, (uint16_t)qpn, ACC_NO_QP, addr);
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

static bool
work_available_locked(const struct acc_model *m)
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

            post_aeqe_locked(m, st, (uint16_t)qpn, (uint16_t)idx, sqe.req_id);
        }
    }
    if (batch != 0) {
        post_eqe_locked(m, (uint16_t)qpn, q->cq_tail);
    }
}

static void *
worker_main(void *arg)
{
    struct acc_model *m = arg;

    pthread_mutex_lock(&m->lock);
    while (!m->exit) {
        uint32_t fire;

        if (m->stopped || m->waiters != 0 || !work_available_locked(m)) {
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
            fire_irqs(m, fire);
            pthread_mutex_lock(&m->lock);
        }
        m->active = false;
        pthread_cond_broadcast(&m->idle_cond);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

static void
kick_locked(struct acc_model *m)
{
    pthread_cond_signal(&m->work_cond);
}

/* Take exclusive control from the worker: it finishes its round first. */
static void
quiesce_locked(struct acc_model *m)
{
    m->waiters++;
    while (m->active) {
        pthread_cond_wait(&m->idle_cond, &m->lock);
    }
    m->waiters--;
    /* The worker parks while anyone waits; let it look again. */
    pthread_cond_signal(&m->work_cond);
}

/* ------------------------------------------------------------ lifecycle */

static void
power_on_locked(struct acc_model *m)
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
    power_on_locked(m);

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
    ret = -pthread_create(&m->worker, NULL, worker_main, m);
    if (ret < 0) {
        goto err_destroy_idle;
    }
    vmig_log(m->ctx, VMIG_LOG_DEBUG, "%s: %u queue pairs, isolation %s",
             m->name, m->qp_count, iso_name(m->isolation));
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
    quiesce_locked(m);
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
        kick_locked(m);
    }
    pthread_mutex_unlock(&m->lock);
    fire_irqs(m, fire);
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
    quiesce_locked(m);
    was_stopped = m->stopped;
    power_on_locked(m);
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
    quiesce_locked(m);
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
    while (m->active || (!m->stopped && work_available_locked(m))) {
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
        post_aeqe_locked(m, ACC_AEQ_DOORBELL, qp, ACC_NO_QP, val);
    }
    return false;
}

static void
qp_enable_locked(struct acc_model *m, unsigned int qpn, bool on)
{
    struct acc_qp *q = &m->qp[qpn];

    quiesce_locked(m);
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
            post_aeqe_locked(m, ACC_AEQ_BAD_CONFIG, (uint16_t)qpn, ACC_NO_QP,
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
            kick_locked(m);
        }
        return;
    case ACC_QP_CQ_HEAD:
        if (index_ok_locked(m, (uint16_t)qpn, enabled ? q->cq_size : 0, val)) {
            q->cq_head = val;
            kick_locked(m);
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

    quiesce_locked(m);
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
        kick_locked(m);
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
    fire_irqs(m, fire);
}

/* ------------------------------------------------------------ migration */

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

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
                       iso_name(src->isolation), src->isolation,
                       iso_name(dst->isolation), dst->isolation);
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
    magic = get64(p);
    if ((magic & ACC_STATE_MAGIC_MASK) != ACC_STATE_MAGIC) {
        return why_set(why, why_sz, -EBADMSG,
                       "not accelerator state (magic %#" PRIx64 ")", magic);
    }
    out->version = (uint32_t)(magic & 0xffu);
    out->vendor = get16(p + 12);
    out->device = get16(p + 14);
    out->qp_count = get32(p + 16);
    out->isolation = get32(p + 20);
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
    put64(p, ACC_STATE_MAGIC | ACC_STATE_VERSION);
    put32(p + 8, (uint32_t)need);
    put16(p + 12, ACC_PCI_VENDOR_ID);
    put16(p + 14, ACC_PCI_DEVICE_ID);
    put32(p + 16, m->qp_count);
    put32(p + 20, m->isolation);
    put32(p + 24, ACC_HW_REVISION);

    g = p + ACC_STATE_GLOBAL_OFF;
    put32(g + 0, m->ctrl);
    put32(g + 4, m->irq_mask);
    put32(g + 8, m->irq_status);
    put32(g + 12, m->status & ~ACC_STATUS_QUIESCED);
    put64(g + 16, m->done);
    put64(g + 24, m->eq.base);
    put32(g + 32, m->eq.size);
    put32(g + 36, m->eq.head);
    put32(g + 40, m->eq.tail);
    put32(g + 44, m->eq.phase);
    put64(g + 48, m->aeq.base);
    put32(g + 56, m->aeq.size);
    put32(g + 60, m->aeq.head);
    put32(g + 64, m->aeq.tail);
    put32(g + 68, m->aeq.phase);

    for (uint32_t i = 0; i < m->qp_count; i++) {
        const struct acc_qp *q = &m->qp[i];
        uint8_t *s = p + ACC_STATE_QP_OFF + ACC_STATE_QP_SIZE * i;

        put64(s + 0, q->sq_base);
        put64(s + 8, q->cq_base);
        put32(s + 16, q->sq_size);
        put32(s + 20, q->cq_size);
        put32(s + 24, q->ctrl);
        put32(s + 28, q->status);
        put32(s + 32, q->sq_head);
        put32(s + 36, q->sq_tail);
        put32(s + 40, q->cq_head);
        put32(s + 44, q->cq_tail | q->cq_phase << 31);
    }
    pthread_mutex_unlock(&m->lock);
    put32(p + need - 4, acc_crc32c(0, p, need - 4));
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
    if (get32(p + 24) != ACC_HW_REVISION || get32(p + 28) != 0) {
        return why_set(why, why_sz, -EBADMSG,
                       "corrupt: hardware revision %u / reserved %#x",
                       get32(p + 24), get32(p + 28));
    }
    *ctrl = get32(g + 0);
    irq[0] = get32(g + 4);
    irq[1] = get32(g + 8);
    *status = get32(g + 12);
    *done = get64(g + 16);
    eq->base = get64(g + 24);
    eq->size = get32(g + 32);
    eq->head = get32(g + 36);
    eq->tail = get32(g + 40);
    eq->phase = get32(g + 44);
    aeq->base = get64(g + 48);
    aeq->size = get32(g + 56);
    aeq->head = get32(g + 60);
    aeq->tail = get32(g + 64);
    aeq->phase = get32(g + 68);
    if ((*ctrl & ~ACC_CTRL_MASK) || (irq[0] & ~ACC_IRQ_ALL) ||
        (irq[1] & ~ACC_IRQ_ALL) || (*status & ~known) || get32(g + 72) ||
        get32(g + 76)) {
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
        uint32_t cqt = get32(s + 44);

        q->sq_base = get64(s + 0);
        q->cq_base = get64(s + 8);
        q->sq_size = get32(s + 16);
        q->cq_size = get32(s + 20);
        q->ctrl = get32(s + 24);
        q->status = get32(s + 28);
        q->sq_head = get32(s + 32);
        q->sq_tail = get32(s + 36);
        q->cq_head = get32(s + 40);
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
    total = get32(p + 8);
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
    if (acc_crc32c(0, p, total - 4) != get32(p + total - 4)) {
        ret = why_set(reason, sizeof(reason), -EBADMSG,
                      "corrupt: checksum %#x does not match the data (%#x)",
                      get32(p + total - 4), acc_crc32c(0, p, total - 4));
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
