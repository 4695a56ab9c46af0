/* SPDX-License-Identifier: MIT */
/*
 * acc_priv.h - what the files of the accelerator model share: the model's
 * struct and the functions one file provides to another.
 *
 *   acc_model.c   lifecycle, run states, reset, registers
 *   acc_worker.c  events and interrupts, requests, the worker thread
 *   acc_state.c   the migration payload: save, match check, load
 *
 * acc_model.c's top comment has the invariants; every field below "lock"
 * is guarded by it.
 */
#ifndef ACC_PRIV_H
#define ACC_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <zstd.h>
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

static inline bool
ring_size_ok(uint32_t size)
{
    return size >= ACC_RING_MIN && size <= ACC_RING_MAX &&
           (size & (size - 1)) == 0;
}

static inline uint32_t
ring_next(uint32_t idx, uint32_t size)
{
    return (idx + 1) & (size - 1);
}

/* acc_model.c */
const char *acc__iso_name(uint32_t iso);
void acc__power_on_locked(struct acc_model *m);

/* acc_worker.c */
void acc__raise_irq_locked(struct acc_model *m, unsigned int vector);
void acc__fire_irqs(struct acc_model *m, uint32_t vectors);
void acc__post_aeqe_locked(struct acc_model *m, uint8_t code, uint16_t qp,
                           uint16_t index, uint64_t info);
/* Wake the worker: there may be something to do. */
void acc__kick_locked(struct acc_model *m);
/* Take exclusive control from the worker: it finishes its round first. */
void acc__quiesce_locked(struct acc_model *m);
void *acc__worker_main(void *arg);
/* Some queue pair has a request the worker may serve now. */
bool acc__work_available_locked(const struct acc_model *m);

#endif /* ACC_PRIV_H */
