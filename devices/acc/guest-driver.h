/* SPDX-License-Identifier: MIT */
/*
 * guest-driver.h - a guest-side driver for the emulated accelerator.
 *
 * Every piece of driver state (ring positions, phases, counters) lives in
 * guest memory, in a struct acc_gdrv_state at a guest address the caller
 * chooses, followed by the rings themselves.  struct acc_gdrv is only a
 * view: host pointers to guest RAM and the BAR0 accessors.  After a
 * migration, build a new view on the destination with acc_gdrv_attach()
 * and carry on; nothing else needs to move.
 *
 * The driver talks to the device only through struct acc_bar_ops (32-bit
 * BAR0 reads and writes), so it works in-process against acc_model_mmio_*
 * and over vfio-user region accesses alike.
 *
 * Threading: a driver view is used by one thread at a time.
 */
#ifndef ACC_GUEST_DRIVER_H
#define ACC_GUEST_DRIVER_H

#include <stddef.h>
#include <stdint.h>
#include "acc_regs.h"

/**
 * struct acc_bar_ops - BAR0 accessors.
 * @read32:  read the register at byte offset @off.
 * @write32: write @val to the register at byte offset @off.
 */
struct acc_bar_ops {
    uint32_t (*read32)(void *opaque, uint32_t off);
    void (*write32)(void *opaque, uint32_t off, uint32_t val);
};

#define ACC_GDRV_MAGIC 0x3156524447434341ull /* "ACCGDRV1" */

/* Per queue pair, in guest memory. */
struct acc_gdrv_qp {
    uint64_t sq_gpa;
    uint64_t cq_gpa;
    uint32_t sq_tail;  /* next SQ slot to fill */
    uint32_t cq_head;  /* next CQ slot to read */
    uint32_t cq_phase; /* phase a new CQE carries */
    uint32_t inflight; /* submitted, not yet reaped */
    uint64_t submitted;
    uint64_t completed;
};

/* The driver's state, in guest memory at a 64-byte aligned address. */
struct acc_gdrv_state {
    uint64_t magic;
    uint32_t qp_count;
    uint32_t sq_size;
    uint32_t cq_size;
    uint32_t eq_size;
    uint32_t aeq_size;
    uint32_t eq_head;
    uint32_t eq_phase;
    uint32_t aeq_head;
    uint32_t aeq_phase;
    uint32_t rsvd;
    uint64_t eq_gpa;
    uint64_t aeq_gpa;
    uint64_t events;     /* EQEs consumed */
    uint64_t async_errs; /* AEQEs consumed */
    uint64_t end_gpa;    /* first byte after the rings */
    struct acc_gdrv_qp qp[ACC_QP_MAX];
};

/**
 * struct acc_gdrv_config - queue geometry for acc_gdrv_init().
 * @qp_count: queue pairs to use, 1..the device's ACC_REG_QP_NUM.
 * @sq_size:  SQ entries (power of 2, ACC_RING_MIN..ACC_RING_MAX).
 * @cq_size:  CQ entries (same rules); the driver keeps at most
 *            min(sq_size, cq_size) - 1 requests in flight per pair.
 * @eq_size:  EQ entries (same rules).
 * @aeq_size: AEQ entries (same rules).
 */
struct acc_gdrv_config {
    uint32_t qp_count;
    uint32_t sq_size;
    uint32_t cq_size;
    uint32_t eq_size;
    uint32_t aeq_size;
};

/**
 * struct acc_gdrv - a view of a driver instance; not guest state.
 */
struct acc_gdrv {
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t state_gpa;
    struct acc_gdrv_state *st;
    const struct acc_bar_ops *bar;
    void *bar_opaque;
};

/**
 * acc_gdrv_mem_size() - Guest memory the driver needs at its address.
 * @cfg: geometry.
 *
 * Return: bytes: the state struct plus every ring, 64-byte aligned.
 */
uint64_t acc_gdrv_mem_size(const struct acc_gdrv_config *cfg);

/**
 * acc_gdrv_init() - Reset the device and bring it up with fresh queues.
 * @d:          receives the view.
 * @ram:        host pointer to guest address 0.
 * @ram_size:   guest memory size.
 * @state_gpa:  where the driver state and rings go (64-byte aligned;
 *              acc_gdrv_mem_size() bytes).
 * @cfg:        geometry.
 * @bar:        BAR0 accessors (borrowed).
 * @bar_opaque: passed to @bar.
 *
 * Return: 0; -EINVAL (bad geometry, does not fit); -ENODEV (BAR0 does not
 * identify as the accelerator); -EIO (the device refused the configuration).
 */
int acc_gdrv_init(struct acc_gdrv *d, uint8_t *ram, uint64_t ram_size,
                  uint64_t state_gpa, const struct acc_gdrv_config *cfg,
                  const struct acc_bar_ops *bar, void *bar_opaque);

/**
 * acc_gdrv_attach() - Build a view of a driver already set up (after
 * migration), without touching the device.
 * @d:          receives the view.
 * @ram:        host pointer to guest address 0.
 * @ram_size:   guest memory size.
 * @state_gpa:  the address given to acc_gdrv_init().
 * @bar:        BAR0 accessors.
 * @bar_opaque: passed to @bar.
 *
 * Return: 0, or -EINVAL (no valid driver state there).
 */
int acc_gdrv_attach(struct acc_gdrv *d, uint8_t *ram, uint64_t ram_size,
                    uint64_t state_gpa, const struct acc_bar_ops *bar,
                    void *bar_opaque);

/**
 * acc_gdrv_submit() - Queue one request and ring the doorbell.
 * @d:   view.
 * @qp:  queue pair.
 * @sqe: the request; buffers are guest addresses.
 *
 * Return: 0; -EAGAIN when the pair has its maximum in flight; -EINVAL.
 */
int acc_gdrv_submit(struct acc_gdrv *d, unsigned int qp,
                    const struct acc_sqe *sqe);

/**
 * acc_gdrv_submit_batch() - Queue up to @n requests, one doorbell.
 * @d:    view.
 * @qp:   queue pair.
 * @sqes: requests.
 * @n:    count.
 *
 * Return: how many were queued (0 when full), or -EINVAL.
 */
int acc_gdrv_submit_batch(struct acc_gdrv *d, unsigned int qp,
                          const struct acc_sqe *sqes, unsigned int n);

/**
 * acc_gdrv_reap() - Take up to @max completions of a queue pair.
 * @d:   view.
 * @qp:  queue pair.
 * @out: receives the CQEs.
 * @max: room in @out.
 *
 * Tells the device the CQ slots are free (one CQ_HEAD write).
 *
 * Return: the number taken, or -EINVAL.
 */
int acc_gdrv_reap(struct acc_gdrv *d, unsigned int qp, struct acc_cqe *out,
                  unsigned int max);

/**
 * acc_gdrv_reap_events() - Drain the event queue.
 * @d:   view.
 * @out: receives the EQEs, or NULL to discard them.
 * @max: room in @out (a bound on how many are drained).
 *
 * Return: the number drained.
 */
int acc_gdrv_reap_events(struct acc_gdrv *d, struct acc_eqe *out,
                         unsigned int max);

/**
 * acc_gdrv_reap_errors() - Drain the asynchronous error queue.
 * @d:   view.
 * @out: receives the AEQEs, or NULL to discard them.
 * @max: room in @out (a bound on how many are drained).
 *
 * Return: the number drained.
 */
int acc_gdrv_reap_errors(struct acc_gdrv *d, struct acc_aeqe *out,
                         unsigned int max);

/**
 * acc_gdrv_inflight() - Requests of @qp submitted and not yet reaped.
 * @d:  view.
 * @qp: queue pair.
 *
 * Return: the count.
 */
unsigned int acc_gdrv_inflight(const struct acc_gdrv *d, unsigned int qp);

/**
 * acc_gdrv_ack_irq() - Clear the device's pending interrupt bits.
 * @d: view.
 *
 * Return: the bits that were pending (bit per enum acc_irq_vector).
 */
uint32_t acc_gdrv_ack_irq(struct acc_gdrv *d);

/**
 * acc_gdrv_wait_irq() - Wait for an interrupt eventfd and consume it.
 * @fd:         an eventfd the device's interrupt writes to.
 * @timeout_ms: upper bound; -1 waits forever.
 *
 * Return: 1 when the interrupt fired, 0 on timeout, or -errno.
 */
int acc_gdrv_wait_irq(int fd, int timeout_ms);

#endif /* ACC_GUEST_DRIVER_H */
