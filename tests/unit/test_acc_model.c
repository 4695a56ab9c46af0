/* SPDX-License-Identifier: MIT */
/*
 * test_acc_model.c - the accelerator model piece by piece: CRC32C vectors,
 * registers, guest errors and their async events, isolation modes, STOP
 * semantics, resets and the DMA fence.  Its migration payload:
 * test_acc_model_state.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "acc_model_fixture.h"
#include "acc_rig.h"

/* Submit one request and wait for its completion (bounded). */
static struct acc_cqe
one(struct acc_rig *r, unsigned int qp, const struct acc_sqe *sqe)
{
    struct acc_cqe c;

    assert_int_equal(acc_gdrv_submit(&r->drv, qp, sqe), 0);
    for (int i = 0; i < 200; i++) {
        if (acc_gdrv_reap(&r->drv, qp, &c, 1) == 1) {
            /* Keep the small EQ from overflowing. */
            (void)acc_gdrv_reap_events(&r->drv, NULL, 64);
            return c;
        }
        (void)acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_COMPLETION], 20);
    }
    fail_msg("no completion for request %llu", (unsigned long long)sqe->req_id);
    return c;
}

static struct acc_sqe
mk(uint64_t id, uint8_t op, uint64_t src, uint32_t slen, uint64_t dst,
   uint32_t dlen)
{
    struct acc_sqe s = {0};

    s.req_id = id;
    s.opcode = op;
    s.src = src;
    s.src_len = slen;
    s.dst = dst;
    s.dst_len = dlen;
    return s;
}

static unsigned int
irqs_of(struct acc_rig *r, int v)
{
    return __atomic_load_n(&r->irq_count[v], __ATOMIC_RELAXED);
}

static unsigned int
resets(struct acc_rig *r)
{
    return __atomic_load_n(&r->resets, __ATOMIC_RELAXED);
}

static int
drain_errors(struct acc_rig *r, struct acc_aeqe *ae, unsigned int max)
{
    int n = 0;

    for (int i = 0; i < 50 && n == 0; i++) {
        (void)acc_model_wait_idle(r->m, 1000);
        n = acc_gdrv_reap_errors(&r->drv, ae, max);
        if (n == 0) {
            (void)acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_ERROR], 10);
        }
    }
    return n;
}

/* ------------------------------------------------------------ CRC32C */

static void
test_crc32c_vectors(void **state)
{
    uint8_t buf[48];
    uint32_t c;

    (void)state;
    assert_int_equal(acc_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(acc_crc32c(0, "", 0), 0);
    /* RFC 3720 B.4 */
    memset(buf, 0, 32);
    assert_int_equal(acc_crc32c(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, 32);
    assert_int_equal(acc_crc32c(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)i;
    }
    assert_int_equal(acc_crc32c(0, buf, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)(31 - i);
    }
    assert_int_equal(acc_crc32c(0, buf, 32), 0x113fdb5cu);
    /* Every length and alignment against the bitwise reference, and
     * incremental use. */
    for (int i = 0; i < 48; i++) {
        buf[i] = (uint8_t)(i * 37 + 11);
    }
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; off + n <= 48; n++) {
            c = acc_crc32c(0, buf + off, n);
            assert_int_equal(c, acc_rig_crc32c_ref(buf + off, n));
            assert_int_equal(acc_crc32c(acc_crc32c(0, buf + off, n / 3),
                                        buf + off + n / 3, n - n / 3),
                             c);
        }
    }
}

/* ------------------------------------------------------------ registers */

static void
test_identity_and_config(void **state)
{
    struct acc_rig *r = *state;

    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_ID),
                     ACC_PCI_DEVICE_ID << 16 | ACC_PCI_VENDOR_ID);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_QP_NUM), QPS);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_ISOLATION), ACC_ISO_QP);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_CAPS), ACC_CAPS_ALL);
    assert_int_equal(acc_model_mmio_read(r->m, 0x3), 0);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_BAR0_SIZE), 0);
    /* A queue pair beyond the instance's count reads 0. */
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(QPS, ACC_QP_SQ_SIZE)),
                     0);
    /* 64-bit addresses written as two halves. */
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_EQ_BASE_LO),
                     (uint32_t)r->drv.st->eq_gpa);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_EQ_BASE_HI), 0);
    /* Config writes while enabled are ignored. */
    acc_model_mmio_write(r->m, ACC_REG_EQ_BASE_HI, 0x12345678);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_EQ_BASE_HI), 0);
    acc_model_mmio_write(r->m, ACC_QP_REG(0, ACC_QP_SQ_SIZE), 4);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(0, ACC_QP_SQ_SIZE)),
                     16);
    assert_true(acc_model_mmio_read(r->m, ACC_REG_STATUS) & ACC_STATUS_ENABLED);
}

static void
test_each_opcode(void **state)
{
    struct acc_rig *r = *state;
    uint8_t *ram = r->mem.base;
    struct acc_cqe c;
    struct acc_sqe s;

    memcpy(ram + BUF_GPA, "123456789", sizeof("123456789")); /* with NUL */
    s = mk(1, ACC_OP_CRC32C, BUF_GPA, 9, BUF_GPA + 0x1000, 4);
    c = one(r, 0, &s);
    assert_int_equal(c.status, ACC_ST_OK);
    assert_int_equal(c.req_id, 1);
    assert_int_equal(c.out_len, 4);
    assert_int_equal(ram[BUF_GPA + 0x1000], 0x83);
    assert_int_equal(ram[BUF_GPA + 0x1003], 0xe3);

    /* SHA-256("abc"), FIPS 180-2 appendix B.1 */
    memcpy(ram + BUF_GPA, "abc", sizeof("abc"));
    s = mk(2, ACC_OP_SHA256, BUF_GPA, 3, BUF_GPA + 0x1000, 64);
    c = one(r, 1, &s);
    assert_int_equal(c.status, ACC_ST_OK);
    assert_int_equal(c.out_len, 32);
    assert_int_equal(ram[BUF_GPA + 0x1000], 0xba);
    assert_int_equal(ram[BUF_GPA + 0x1000 + 31], 0xad);

    /* Overlapping copy is a memmove. */
    memcpy(ram + BUF_GPA, "abcdefgh", sizeof("abcdefgh"));
    s = mk(3, ACC_OP_COPY, BUF_GPA, 6, BUF_GPA + 2, 6);
    c = one(r, 0, &s);
    assert_int_equal(c.status, ACC_ST_OK);
    assert_memory_equal(ram + BUF_GPA, "ababcdef", 8);

    /* Empty inputs are fine everywhere. */
    for (unsigned int op = ACC_OP_NOP; op < ACC_OP__COUNT; op++) {
        if (op == ACC_OP_ZSTD_DECOMP || op == ACC_OP_DEFL_DECOMP) {
            continue;
        }
        s = mk(10 + op, (uint8_t)op, 0, 0, BUF_GPA + 0x1000, 256);
        c = one(r, 0, &s);
        assert_int_equal(c.status, ACC_ST_OK);
    }
}

/* ------------------------------------------------------------ errors */

static void
test_request_errors_raise_aeqes(void **state)
{
    struct acc_rig *r = *state;
    uint8_t *ram = r->mem.base;
    struct acc_aeqe ae[16];
    struct {
        struct acc_sqe sqe;
        uint8_t want;
    } cases[8];
    int n;

    memset(ram + BUF_GPA, 'x', 4096);
    cases[0].sqe = mk(100, 99, BUF_GPA, 16, BUF_GPA + 8192, 64);
    cases[0].want = ACC_ST_BAD_OPCODE;
    cases[1].sqe = mk(101, ACC_OP_COPY, RAM_SIZE - 8, 16, BUF_GPA, 64);
    cases[1].want = ACC_ST_BAD_ADDR;
    cases[2].sqe = mk(102, ACC_OP_SHA256, BUF_GPA, 16, ~0ull - 8, 64);
    cases[2].want = ACC_ST_BAD_ADDR;
    cases[3].sqe = mk(103, ACC_OP_ZSTD_COMP, BUF_GPA, 4096, BUF_GPA + 8192, 8);
    cases[3].want = ACC_ST_OVERFLOW;
    cases[4].sqe = mk(104, ACC_OP_ZSTD_DECOMP, BUF_GPA, 64, BUF_GPA + 8192, 64);
    cases[4].want = ACC_ST_BAD_DATA;
    cases[5].sqe = mk(105, ACC_OP_COPY, BUF_GPA, ACC_XFER_MAX + 1, BUF_GPA, 64);
    cases[5].want = ACC_ST_BAD_LEN;
    cases[6].sqe = mk(106, ACC_OP_DEFL_COMP, BUF_GPA, 4096, BUF_GPA + 100, 64);
    cases[6].want = ACC_ST_OVERLAP;
    cases[7].sqe = mk(107, ACC_OP_DEFL_DECOMP, BUF_GPA, 64, BUF_GPA + 8192, 64);
    cases[7].want = ACC_ST_BAD_DATA;
    cases[0].sqe.flags = 0;

    for (unsigned int i = 0; i < 8; i++) {
        struct acc_cqe c = one(r, i % QPS, &cases[i].sqe);

        assert_int_equal(c.req_id, cases[i].sqe.req_id);
        assert_int_equal(c.status, cases[i].want);
        assert_int_equal(c.out_len, 0);
    }
    n = drain_errors(r, ae, 16);
    for (int i = 0; n < 8 && i < 20; i++) {
        n += drain_errors(r, ae + n, (unsigned int)(16 - n));
    }
    assert_int_equal(n, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(ae[i].code, cases[i].want);
        assert_int_equal(ae[i].info, cases[i].sqe.req_id);
        assert_int_equal(ae[i].qp, (unsigned int)i % QPS);
    }
    assert_true(irqs_of(r, ACC_IRQ_ERROR) >= 1);

    /* A non-zero flags byte is a bad opcode too; the device carries on. */
    cases[0].sqe = mk(200, ACC_OP_NOP, 0, 0, 0, 0);
    cases[0].sqe.flags = 1;
    assert_int_equal(one(r, 0, &cases[0].sqe).status, ACC_ST_BAD_OPCODE);
    cases[0].sqe.flags = 0;
    assert_int_equal(one(r, 0, &cases[0].sqe).status, ACC_ST_OK);
}

static void
test_doorbell_and_eq_overflow(void **state)
{
    struct acc_rig *r = *state;
    struct acc_aeqe ae[16];
    struct acc_cqe c[16];
    struct acc_sqe s = mk(1, ACC_OP_NOP, 0, 0, 0, 0);
    int n, got = 0;

    /* Doorbell beyond the ring: an async event, nothing else happens. */
    acc_model_mmio_write(r->m, ACC_QP_REG(0, ACC_QP_SQ_TAIL), 16 + 5);
    n = drain_errors(r, ae, 16);
    assert_int_equal(n, 1);
    assert_int_equal(ae[0].code, ACC_AEQ_DOORBELL);
    assert_int_equal(ae[0].qp, 0);
    assert_int_equal(ae[0].info, 21);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(0, ACC_QP_SQ_TAIL)),
                     0);

    /* EQ of 8 holds 7: eleven batches without draining it overflow it. */
    for (int i = 0; i < 11; i++) {
        s.req_id = (uint64_t)i;
        assert_int_equal(acc_gdrv_submit(&r->drv, 0, &s), 0);
        assert_int_equal(acc_model_wait_idle(r->m, 2000), 0);
        got += acc_gdrv_reap(&r->drv, 0, c, 16);
    }
    assert_int_equal(got, 11);
    assert_true(acc_model_mmio_read(r->m, ACC_REG_STATUS) & ACC_STATUS_EQ_OVF);
    n = drain_errors(r, ae, 16);
    assert_int_equal(n, 1);
    assert_int_equal(ae[0].code, ACC_AEQ_EQ_OVERFLOW);
    assert_int_equal(acc_gdrv_reap_events(&r->drv, NULL, 64), 7);
    assert_false(acc_model_mmio_read(r->m, ACC_REG_STATUS) & ACC_STATUS_EQ_OVF);
    /* Still working. */
    s.req_id = 99;
    assert_int_equal(one(r, 1, &s).status, ACC_ST_OK);
}

/* Point queue pair 1's SQ outside guest memory, then use it. */
static void
break_qp1(struct acc_rig *r)
{
    struct acc_sqe s = mk(7, ACC_OP_NOP, 0, 0, 0, 0);

    acc_model_mmio_write(r->m, ACC_QP_REG(1, ACC_QP_CTRL), 0);
    acc_model_mmio_write(r->m, ACC_QP_REG(1, ACC_QP_SQ_BASE_HI), 0x100);
    acc_model_mmio_write(r->m, ACC_QP_REG(1, ACC_QP_CTRL), ACC_QP_CTRL_ENABLE);
    r->drv.st->qp[1].sq_tail = 0;
    r->drv.st->qp[1].cq_head = 0;
    r->drv.st->qp[1].cq_phase = ACC_PHASE;
    r->drv.st->qp[1].inflight = 0;
    assert_int_equal(acc_gdrv_submit(&r->drv, 1, &s), 0);
}

static void
test_ring_fault_isolated_to_qp(void **state)
{
    struct acc_rig *r = *state;
    struct acc_sqe s = mk(8, ACC_OP_NOP, 0, 0, 0, 0);
    struct acc_aeqe ae[4];

    break_qp1(r);
    assert_int_equal(drain_errors(r, ae, 4), 1);
    assert_int_equal(ae[0].code, ACC_AEQ_RING_FAULT);
    assert_int_equal(ae[0].qp, 1);
    assert_int_equal(ae[0].info, 0x100ull << 32 | r->drv.st->qp[1].sq_gpa);
    assert_true(acc_model_mmio_read(r->m, ACC_QP_REG(1, ACC_QP_STATUS)) &
                ACC_QP_STATUS_FAULT);
    assert_false(acc_model_mmio_read(r->m, ACC_REG_STATUS) & ACC_STATUS_FAULT);
    /* Queue pair 0 is unaffected. */
    assert_int_equal(one(r, 0, &s).status, ACC_ST_OK);
}

static void
test_ring_fault_stops_device(void **state)
{
    struct acc_rig *r = *state;
    struct acc_sqe s = mk(8, ACC_OP_NOP, 0, 0, 0, 0);
    struct acc_aeqe ae[4];
    struct acc_cqe c;

    break_qp1(r);
    assert_int_equal(drain_errors(r, ae, 4), 1);
    assert_int_equal(ae[0].code, ACC_AEQ_RING_FAULT);
    assert_true(acc_model_mmio_read(r->m, ACC_REG_STATUS) & ACC_STATUS_FAULT);
    /* Device isolation: queue pair 0 stops too. */
    assert_int_equal(acc_gdrv_submit(&r->drv, 0, &s), 0);
    assert_int_equal(acc_model_wait_idle(r->m, 1000), 0);
    assert_int_equal(acc_gdrv_reap(&r->drv, 0, &c, 1), 0);
}

/* Masked vectors are latched in IRQ_STATUS and fire on unmask; W1C. */
static void
test_irq_mask_and_status(void **state)
{
    struct acc_rig *r = *state;
    struct acc_sqe s = mk(1, ACC_OP_NOP, 0, 0, 0, 0);
    unsigned int before;
    struct acc_cqe c;

    (void)acc_gdrv_ack_irq(&r->drv);
    acc_model_mmio_write(r->m, ACC_REG_IRQ_MASK, 1u << ACC_IRQ_COMPLETION);
    before = irqs_of(r, ACC_IRQ_COMPLETION);
    assert_int_equal(acc_gdrv_submit(&r->drv, 0, &s), 0);
    assert_int_equal(acc_model_wait_idle(r->m, 2000), 0);
    assert_int_equal(acc_gdrv_reap(&r->drv, 0, &c, 1), 1);
    assert_int_equal(irqs_of(r, ACC_IRQ_COMPLETION), before);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_IRQ_STATUS),
                     1u << ACC_IRQ_COMPLETION);
    acc_model_mmio_write(r->m, ACC_REG_IRQ_MASK, 0);
    assert_int_equal(irqs_of(r, ACC_IRQ_COMPLETION), before + 1);
    assert_int_equal(acc_gdrv_ack_irq(&r->drv), 1u << ACC_IRQ_COMPLETION);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_IRQ_STATUS), 0);
    /* Unmasking with nothing pending raises nothing. */
    acc_model_mmio_write(r->m, ACC_REG_IRQ_MASK, 3);
    acc_model_mmio_write(r->m, ACC_REG_IRQ_MASK, 0);
    assert_int_equal(irqs_of(r, ACC_IRQ_COMPLETION), before + 1);
    (void)acc_gdrv_reap_events(&r->drv, NULL, 64);
}

/* ------------------------------------------------------------ STOP, reset */

static void
test_stop_means_stop(void **state)
{
    struct acc_rig *r = *state;
    uint8_t *ram = r->mem.base;
    uint64_t lo = r->drv.st->eq_gpa, hi = r->drv.st->end_gpa;
    uint8_t *before = malloc(hi - lo);
    unsigned int irqs = irqs_of(r, ACC_IRQ_COMPLETION);
    struct acc_sqe s;
    struct acc_cqe c;
    struct timespec ts = {0, 50 * 1000000L};

    assert_non_null(before);
    memset(ram + BUF_GPA, 'q', 8192);
    acc_model_stop(r->m);
    assert_true(acc_model_stopped(r->m));
    memcpy(before, ram + lo, hi - lo);
    for (uint64_t i = 0; i < 4; i++) {
        s = mk(i, ACC_OP_ZSTD_COMP, BUF_GPA, 8192, BUF_GPA + 0x4000, 0x4000);
        assert_int_equal(acc_gdrv_submit(&r->drv, 0, &s), 0);
    }
    nanosleep(&ts, NULL);
    /* The SQE writes are the guest's; nothing of the device's changed. */
    memcpy(before + (r->drv.st->qp[0].sq_gpa - lo),
           ram + r->drv.st->qp[0].sq_gpa, 4 * sizeof(struct acc_sqe));
    assert_memory_equal(before, ram + lo, hi - lo);
    assert_int_equal(irqs_of(r, ACC_IRQ_COMPLETION), irqs);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(0, ACC_QP_SQ_HEAD)),
                     0);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(0, ACC_QP_SQ_TAIL)),
                     4);
    assert_true(acc_model_mmio_read(r->m, ACC_REG_STATUS) &
                ACC_STATUS_QUIESCED);
    acc_model_resume(r->m);
    assert_int_equal(acc_model_wait_idle(r->m, 5000), 0);
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(acc_gdrv_reap(&r->drv, 0, &c, 1), 1);
        assert_int_equal(c.req_id, i);
        assert_int_equal(c.status, ACC_ST_OK);
    }
    free(before);
}

static void
test_guest_reset(void **state)
{
    struct acc_rig *r = *state;
    unsigned int base = resets(r); /* acc_gdrv_init() reset it once */

    acc_model_stop(r->m);
    acc_model_mmio_write(r->m, ACC_REG_RESET, 0x1234); /* wrong magic */
    assert_int_equal(resets(r), base);
    acc_model_mmio_write(r->m, ACC_REG_RESET, ACC_RESET_MAGIC);
    assert_int_equal(resets(r), base + 1);
    assert_true(r->last_reset_guest);
    assert_false(acc_model_stopped(r->m));
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_CTRL), 0);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_REG_EQ_BASE_LO), 0);
    assert_int_equal(acc_model_mmio_read(r->m, ACC_QP_REG(0, ACC_QP_CTRL)), 0);
    acc_model_reset(r->m);
    assert_int_equal(resets(r), base + 2);
    assert_false(r->last_reset_guest);
    /* The driver can bring it back up. */
    assert_int_equal(acc_gdrv_init(&r->drv, r->mem.base, r->mem.size, DRV_GPA,
                                   &drv_cfg, &acc_rig_bar_ops, r),
                     0);
}

/* ------------------------------------------------------------ DMA fence */

struct fenced_mem {
    struct acc_flatmem *mem;
    uint64_t limit; /* atomic: addresses at or above are unmapped */
};

static void *
fenced_translate(void *opaque, uint64_t iova, uint64_t len, bool write)
{
    struct fenced_mem *f = opaque;

    if (iova + len > __atomic_load_n(&f->limit, __ATOMIC_ACQUIRE)) {
        return NULL;
    }
    return acc_flatmem_dma_ops.translate(f->mem, iova, len, write);
}

static const struct acc_dma_ops fenced_ops = {.translate = fenced_translate};

/*
 * The vfio-user DMA_UNMAP protocol: make translate() refuse the range,
 * fence, then unmap.  After the fence no request may complete having used
 * the range.
 */
static void
test_dma_fence(void **state)
{
    struct acc_rig *r = *state;
    struct fenced_mem fm = {.mem = &r->mem, .limit = RAM_SIZE};
    struct acc_model_config cfg = {
        .name = "acc-fence",
        .qp_count = QPS,
        .isolation = ACC_ISO_QP,
        .dma = &fenced_ops,
        .dma_opaque = &fm,
        .ops = &acc_rig_model_ops,
        .opaque = r,
    };
    struct acc_sqe s[15];
    struct acc_cqe c[16];
    uint32_t d0;
    int n = 0;

    acc_model_free(r->m);
    assert_int_equal(acc_model_new(&cfg, &r->m), 0);
    assert_int_equal(acc_gdrv_init(&r->drv, r->mem.base, r->mem.size, DRV_GPA,
                                   &drv_cfg, &acc_rig_bar_ops, r),
                     0);
    memset(r->mem.base + BUF_GPA, 'f', 256u << 10);
    for (unsigned int i = 0; i < 15; i++) {
        s[i] = mk(i, ACC_OP_SHA256, BUF_GPA, 256u << 10,
                  BUF_GPA + (512u << 10) + 64 * i, 32);
    }
    assert_int_equal(acc_gdrv_submit_batch(&r->drv, 0, s, 15), 15);
    /* Let the worker get going, so that a request is mid-way. */
    for (int i = 0; i < 5000; i++) {
        if (acc_model_mmio_read(r->m, ACC_REG_DONE_LO) >= 2) {
            break;
        }
        (void)acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_COMPLETION], 1);
    }
    __atomic_store_n(&fm.limit, (uint64_t)BUF_GPA, __ATOMIC_RELEASE);
    acc_model_dma_fence(r->m);
    d0 = acc_model_mmio_read(r->m, ACC_REG_DONE_LO);
    assert_int_equal(acc_model_wait_idle(r->m, 5000), 0);
    while (n < 15) {
        int got = acc_gdrv_reap(&r->drv, 0, c + n, (unsigned int)(16 - n));

        assert_true(got > 0);
        n += got;
    }
    for (int i = 0; i < 15; i++) {
        assert_int_equal(c[i].req_id, (uint64_t)i);
        if ((uint32_t)i >= d0) {
            assert_int_equal(c[i].status, ACC_ST_BAD_ADDR);
        }
    }
    assert_true(d0 >= 2);
    print_message("fence: %u of 15 completed before the fence\n", d0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test_setup_teardown(test_identity_and_config, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_each_opcode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_errors_raise_aeqes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_doorbell_and_eq_overflow, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ring_fault_isolated_to_qp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ring_fault_stops_device,
                                        setup_iso_device, teardown),
        cmocka_unit_test_setup_teardown(test_irq_mask_and_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_means_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_fence, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
