/* SPDX-License-Identifier: MIT */
/*
 * guest-driver.c - the accelerator's guest-side driver.
 *
 * Guest memory at state_gpa:
 *   struct acc_gdrv_state, then (each 64-byte aligned) the EQ, the AEQ, and
 *   for each queue pair its SQ and CQ.
 * The device publishes an entry by storing its phase byte last (release);
 * the driver reads the phase byte first (acquire) and the rest after.  The
 * driver writes an SQE completely before the doorbell write that hands it
 * over.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include "guest-driver.h"

#define ALIGN64(x) (((x) + 63u) & ~(uint64_t)63u)

static bool
size_ok(uint32_t n)
{
    return n >= ACC_RING_MIN && n <= ACC_RING_MAX && (n & (n - 1)) == 0;
}

uint64_t
acc_gdrv_mem_size(const struct acc_gdrv_config *cfg)
{
    uint64_t n = ALIGN64(sizeof(struct acc_gdrv_state));

    n += ALIGN64((uint64_t)cfg->eq_size * sizeof(struct acc_eqe));
    n += ALIGN64((uint64_t)cfg->aeq_size * sizeof(struct acc_aeqe));
    n += cfg->qp_count *
         (ALIGN64((uint64_t)cfg->sq_size * sizeof(struct acc_sqe)) +
          ALIGN64((uint64_t)cfg->cq_size * sizeof(struct acc_cqe)));
    return n;
}

static uint32_t
rd(struct acc_gdrv *d, uint32_t off)
{
    return d->bar->read32(d->bar_opaque, off);
}

static void
wr(struct acc_gdrv *d, uint32_t off, uint32_t val)
{
    d->bar->write32(d->bar_opaque, off, val);
}

static void
wr64(struct acc_gdrv *d, uint32_t lo_off, uint64_t val)
{
    wr(d, lo_off, (uint32_t)val);
    wr(d, lo_off + 4, (uint32_t)(val >> 32));
}

static void *
gpa(struct acc_gdrv *d, uint64_t addr)
{
    return d->ram + addr;
}

int
acc_gdrv_init(struct acc_gdrv *d, uint8_t *ram, uint64_t ram_size,
              uint64_t state_gpa, const struct acc_gdrv_config *cfg,
              const struct acc_bar_ops *bar, void *bar_opaque)
{
    struct acc_gdrv_state *st;
    uint64_t need, at;

    if (d == NULL || ram == NULL || cfg == NULL || bar == NULL ||
        (state_gpa & 63u) != 0 || cfg->qp_count == 0 ||
        cfg->qp_count > ACC_QP_MAX || !size_ok(cfg->sq_size) ||
        !size_ok(cfg->cq_size) || !size_ok(cfg->eq_size) ||
        !size_ok(cfg->aeq_size)) {
        return -EINVAL;
    }
    need = acc_gdrv_mem_size(cfg);
    if (state_gpa > ram_size || need > ram_size - state_gpa) {
        return -EINVAL;
    }
    d->ram = ram;
    d->ram_size = ram_size;
    d->state_gpa = state_gpa;
    d->bar = bar;
    d->bar_opaque = bar_opaque;
    if (rd(d, ACC_REG_ID) != (ACC_PCI_DEVICE_ID << 16 | ACC_PCI_VENDOR_ID)) {
        return -ENODEV;
    }
    if (rd(d, ACC_REG_QP_NUM) < cfg->qp_count) {
        return -EINVAL;
    }

    wr(d, ACC_REG_RESET, ACC_RESET_MAGIC);
    memset(ram + state_gpa, 0, need);
    st = gpa(d, state_gpa);
    d->st = st;
    st->qp_count = cfg->qp_count;
    st->sq_size = cfg->sq_size;
    st->cq_size = cfg->cq_size;
    st->eq_size = cfg->eq_size;
    st->aeq_size = cfg->aeq_size;
    st->eq_phase = ACC_PHASE;
    st->aeq_phase = ACC_PHASE;
    at = state_gpa + ALIGN64(sizeof(*st));
    st->eq_gpa = at;
    at += ALIGN64((uint64_t)cfg->eq_size * sizeof(struct acc_eqe));
    st->aeq_gpa = at;
    at += ALIGN64((uint64_t)cfg->aeq_size * sizeof(struct acc_aeqe));
    for (uint32_t i = 0; i < cfg->qp_count; i++) {
        st->qp[i].sq_gpa = at;
        at += ALIGN64((uint64_t)cfg->sq_size * sizeof(struct acc_sqe));
        st->qp[i].cq_gpa = at;
        at += ALIGN64((uint64_t)cfg->cq_size * sizeof(struct acc_cqe));
        st->qp[i].cq_phase = ACC_PHASE;
    }
    st->end_gpa = at;

    wr64(d, ACC_REG_EQ_BASE_LO, st->eq_gpa);
    wr(d, ACC_REG_EQ_SIZE, cfg->eq_size);
    wr64(d, ACC_REG_AEQ_BASE_LO, st->aeq_gpa);
    wr(d, ACC_REG_AEQ_SIZE, cfg->aeq_size);
    wr(d, ACC_REG_IRQ_MASK, 0);
    wr(d, ACC_REG_CTRL, ACC_CTRL_ENABLE);
    if (!(rd(d, ACC_REG_STATUS) & ACC_STATUS_ENABLED)) {
        return -EIO;
    }
    for (uint32_t i = 0; i < cfg->qp_count; i++) {
        wr64(d, ACC_QP_REG(i, ACC_QP_SQ_BASE_LO), st->qp[i].sq_gpa);
        wr64(d, ACC_QP_REG(i, ACC_QP_CQ_BASE_LO), st->qp[i].cq_gpa);
        wr(d, ACC_QP_REG(i, ACC_QP_SQ_SIZE), cfg->sq_size);
        wr(d, ACC_QP_REG(i, ACC_QP_CQ_SIZE), cfg->cq_size);
        wr(d, ACC_QP_REG(i, ACC_QP_CTRL), ACC_QP_CTRL_ENABLE);
        if (!(rd(d, ACC_QP_REG(i, ACC_QP_STATUS)) & ACC_QP_STATUS_ENABLED)) {
            return -EIO;
        }
    }
    /* Published last: attach() trusts only a completed setup. */
    st->magic = ACC_GDRV_MAGIC;
    return 0;
}

int
acc_gdrv_attach(struct acc_gdrv *d, uint8_t *ram, uint64_t ram_size,
                uint64_t state_gpa, const struct acc_bar_ops *bar,
                void *bar_opaque)
{
    const struct acc_gdrv_state *st;
    struct acc_gdrv_config cfg;

    if (d == NULL || ram == NULL || bar == NULL || (state_gpa & 63u) != 0 ||
        state_gpa > ram_size || ram_size - state_gpa < sizeof(*st)) {
        return -EINVAL;
    }
    st = (const struct acc_gdrv_state *)(ram + state_gpa);
    cfg.qp_count = st->qp_count;
    cfg.sq_size = st->sq_size;
    cfg.cq_size = st->cq_size;
    cfg.eq_size = st->eq_size;
    cfg.aeq_size = st->aeq_size;
    if (st->magic != ACC_GDRV_MAGIC || cfg.qp_count == 0 ||
        cfg.qp_count > ACC_QP_MAX || !size_ok(cfg.sq_size) ||
        !size_ok(cfg.cq_size) || !size_ok(cfg.eq_size) ||
        !size_ok(cfg.aeq_size) ||
        acc_gdrv_mem_size(&cfg) > ram_size - state_gpa) {
        return -EINVAL;
    }
    d->ram = ram;
    d->ram_size = ram_size;
    d->state_gpa = state_gpa;
    d->st = (struct acc_gdrv_state *)(ram + state_gpa);
    d->bar = bar;
    d->bar_opaque = bar_opaque;
    return 0;
}

static uint32_t
max_inflight(const struct acc_gdrv_state *st)
{
    return (st->sq_size < st->cq_size ? st->sq_size : st->cq_size) - 1;
}

int
acc_gdrv_submit_batch(struct acc_gdrv *d, unsigned int qp,
                      const struct acc_sqe *sqes, unsigned int n)
{
    struct acc_gdrv_state *st = d->st;
    struct acc_gdrv_qp *q;
    struct acc_sqe *ring;
    unsigned int done = 0;

    if (qp >= st->qp_count) {
        return -EINVAL;
    }
    q = &st->qp[qp];
    ring = gpa(d, q->sq_gpa);
    while (done < n && q->inflight < max_inflight(st)) {
        ring[q->sq_tail] = sqes[done];
        q->sq_tail = (q->sq_tail + 1) & (st->sq_size - 1);
        q->inflight++;
        q->submitted++;
        done++;
    }
    if (done != 0) {
        __atomic_thread_fence(__ATOMIC_RELEASE);
        wr(d, ACC_QP_REG(qp, ACC_QP_SQ_TAIL), q->sq_tail);
    }
    return (int)done;
}

int
acc_gdrv_submit(struct acc_gdrv *d, unsigned int qp, const struct acc_sqe *sqe)
{
    int n = acc_gdrv_submit_batch(d, qp, sqe, 1);

    if (n < 0) {
        return n;
    }
    return n == 1 ? 0 : -EAGAIN;
}

int
acc_gdrv_reap(struct acc_gdrv *d, unsigned int qp, struct acc_cqe *out,
              unsigned int max)
{
    struct acc_gdrv_state *st = d->st;
    struct acc_gdrv_qp *q;
    struct acc_cqe *ring;
    unsigned int n = 0;

    if (qp >= st->qp_count) {
        return -EINVAL;
    }
    q = &st->qp[qp];
    ring = gpa(d, q->cq_gpa);
    while (n < max) {
        struct acc_cqe *e = &ring[q->cq_head];
        uint8_t fl = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

        if ((fl & ACC_PHASE) != q->cq_phase) {
            break;
        }
        out[n++] = *e;
        q->cq_head = (q->cq_head + 1) & (st->cq_size - 1);
        if (q->cq_head == 0) {
            q->cq_phase ^= ACC_PHASE;
        }
        if (q->inflight != 0) {
            q->inflight--;
        }
        q->completed++;
    }
    if (n != 0) {
        wr(d, ACC_QP_REG(qp, ACC_QP_CQ_HEAD), q->cq_head);
    }
    return (int)n;
}

int
acc_gdrv_reap_events(struct acc_gdrv *d, struct acc_eqe *out, unsigned int max)
{
    struct acc_gdrv_state *st = d->st;
    struct acc_eqe *ring = gpa(d, st->eq_gpa);
    unsigned int n = 0;

    while (n < max) {
        struct acc_eqe *e = &ring[st->eq_head];
        uint8_t fl = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

        if ((fl & ACC_PHASE) != st->eq_phase) {
            break;
        }
        if (out != NULL) {
            out[n] = *e;
        }
        n++;
        st->eq_head = (st->eq_head + 1) & (st->eq_size - 1);
        if (st->eq_head == 0) {
            st->eq_phase ^= ACC_PHASE;
        }
        st->events++;
    }
    if (n != 0) {
        wr(d, ACC_REG_EQ_HEAD, st->eq_head);
    }
    return (int)n;
}

int
acc_gdrv_reap_errors(struct acc_gdrv *d, struct acc_aeqe *out, unsigned int max)
{
    struct acc_gdrv_state *st = d->st;
    struct acc_aeqe *ring = gpa(d, st->aeq_gpa);
    unsigned int n = 0;

    while (n < max) {
        struct acc_aeqe *e = &ring[st->aeq_head];
        uint8_t fl = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

        if ((fl & ACC_PHASE) != st->aeq_phase) {
            break;
        }
        if (out != NULL) {
            out[n] = *e;
        }
        n++;
        st->aeq_head = (st->aeq_head + 1) & (st->aeq_size - 1);
        if (st->aeq_head == 0) {
            st->aeq_phase ^= ACC_PHASE;
        }
        st->async_errs++;
    }
    if (n != 0) {
        wr(d, ACC_REG_AEQ_HEAD, st->aeq_head);
    }
    return (int)n;
}

unsigned int
acc_gdrv_inflight(const struct acc_gdrv *d, unsigned int qp)
{
    if (qp >= d->st->qp_count) {
        return 0;
    }
    return d->st->qp[qp].inflight;
}

uint32_t
acc_gdrv_ack_irq(struct acc_gdrv *d)
{
    uint32_t v = rd(d, ACC_REG_IRQ_STATUS);

    if (v != 0) {
        wr(d, ACC_REG_IRQ_STATUS, v);
    }
    return v;
}

int
acc_gdrv_wait_irq(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t cnt;
    int rc;

    do {
        rc = poll(&pfd, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        return -errno;
    }
    if (rc == 0) {
        return 0;
    }
    if (read(fd, &cnt, sizeof(cnt)) != (ssize_t)sizeof(cnt) &&
        errno != EAGAIN) {
        return -errno;
    }
    return 1;
}
