/* SPDX-License-Identifier: MIT */
/*
 * test_acc_mig.c - the accelerator's migration callbacks through the
 * device-side framework (<vmig/device.h>): a PRE_COPY + STOP_COPY migration
 * with requests in flight (each completes exactly once, on the destination if
 * not on the source), refusal during PRE_COPY from the compatibility record
 * alone, refusal of a damaged stream at RESUMING -> STOP, and device resets
 * (guest register or host) in PRE_COPY, STOP_COPY and RESUMING ending the
 * session with an error for its reader or writer, returning to RUNNING, logged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <zstd.h>
#include <vmig/stream.h>
#include "acc_mig.h"
#include "acc_rig.h"

#define RAM_SIZE (32u << 20)
#define DRV_GPA 0x1000u
#define BUF_GPA (1u << 20)
#define QPS 2u
#define NREQ 63u /* per queue pair: a full SQ */
#define IN_LEN (64u << 10)
#define SLOT (2u * IN_LEN + 4096u)

struct side {
    struct acc_rig *r;
    struct acc_model *m;
    struct acc_mig *am;
};

static void
side_irq(void *opaque, unsigned int vector)
{
    struct side *s = opaque;

    acc_rig_model_ops.irq(s->r, vector);
}

static void
side_reset(void *opaque, bool guest)
{
    struct side *s = opaque;

    if (s->am != NULL) {
        acc_mig_model_reset(s->am, guest);
    }
}

static const struct acc_model_ops side_ops = {
    .irq = side_irq,
    .reset = side_reset,
};

static void
side_new(struct acc_rig *r, uint32_t qps, uint32_t iso, struct side *s)
{
    struct acc_model_config cfg = {
        .name = "acc-mig",
        .ctx = r->ctx,
        .qp_count = qps,
        .isolation = iso,
        .dma = &acc_flatmem_dma_ops,
        .dma_opaque = &r->mem,
        .ops = &side_ops,
        .opaque = s,
    };

    s->r = r;
    s->am = NULL;
    assert_int_equal(acc_model_new(&cfg, &s->m), 0);
    assert_int_equal(acc_mig_new(r->ctx, s->m, &s->am), 0);
}

static void
side_free(struct side *s)
{
    acc_model_free(s->m);
    acc_mig_free(s->am);
    s->m = NULL;
    s->am = NULL;
}

struct fx {
    struct acc_rig r;
    struct side src;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct acc_gdrv_config cfg = {
        .qp_count = QPS,
        .sq_size = 64,
        .cq_size = 64,
        .eq_size = 64,
        .aeq_size = 16,
    };

    if (f == NULL || acc_rig_init(&f->r, RAM_SIZE, QPS, ACC_ISO_QP) < 0) {
        free(f);
        return -1;
    }
    /* The rig's own model is not used: the sides have migration drivers. */
    acc_model_free(f->r.m);
    side_new(&f->r, QPS, ACC_ISO_QP, &f->src);
    f->r.m = f->src.m;
    if (acc_gdrv_init(&f->r.drv, f->r.mem.base, f->r.mem.size, DRV_GPA, &cfg,
                      &acc_rig_bar_ops, &f->r) < 0) {
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    f->r.m = NULL;
    side_free(&f->src);
    acc_rig_fini(&f->r);
    free(f);
    return 0;
}

static uint64_t
slot_gpa(unsigned int qp, unsigned int i)
{
    return BUF_GPA + ((uint64_t)qp * NREQ + i) * SLOT;
}

static void
fill(uint8_t *p, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (seed >> 16) % 3 == 0 ? (uint8_t)(seed >> 8) : (uint8_t)'a';
    }
}

/* Fill every SQ with zstd compressions of 64 KiB (level 9: slow enough
 * that most are still queued when the migration starts). */
static void
submit_all(struct fx *f)
{
    for (unsigned int qp = 0; qp < QPS; qp++) {
        struct acc_sqe s[NREQ];

        for (unsigned int i = 0; i < NREQ; i++) {
            uint64_t g = slot_gpa(qp, i);

            fill(f->r.mem.base + g, IN_LEN, qp * 1000 + i);
            memset(&s[i], 0, sizeof(s[i]));
            s[i].req_id = qp * 1000 + i;
            s[i].opcode = ACC_OP_ZSTD_COMP;
            s[i].param = 9;
            s[i].src = g;
            s[i].src_len = IN_LEN;
            s[i].dst = g + IN_LEN;
            s[i].dst_len = IN_LEN + 4096;
        }
        assert_int_equal(acc_gdrv_submit_batch(&f->r.drv, qp, s, NREQ), NREQ);
    }
}

/* Reap and check everything that completed; returns how many. */
static unsigned int
reap_check(struct fx *f, uint8_t *seen)
{
    uint8_t *x = malloc(IN_LEN), *y = malloc(IN_LEN);
    unsigned int got = 0;
    struct acc_cqe c[64];
    int n;

    assert_non_null(x);
    assert_non_null(y);
    for (unsigned int qp = 0; qp < QPS; qp++) {
        while ((n = acc_gdrv_reap(&f->r.drv, qp, c, 64)) > 0) {
            for (int k = 0; k < n; k++) {
                uint32_t id = (uint32_t)c[k].req_id, i = id % 1000;
                size_t z;

                assert_int_equal(id / 1000, qp);
                assert_true(i < NREQ);
                assert_int_equal(seen[qp * NREQ + i], 0);
                seen[qp * NREQ + i] = 1;
                assert_int_equal(c[k].status, ACC_ST_OK);
                z = ZSTD_decompress(y, IN_LEN,
                                    f->r.mem.base + slot_gpa(qp, i) + IN_LEN,
                                    c[k].out_len);
                assert_int_equal(z, IN_LEN);
                fill(x, IN_LEN, id);
                assert_memory_equal(x, y, IN_LEN);
                got++;
            }
        }
    }
    (void)acc_gdrv_reap_events(&f->r.drv, NULL, 1024);
    free(x);
    free(y);
    return got;
}

/*
 * Copy saving-session data to the destination in odd-sized pieces until
 * the source says "no more for now" (-ENOMSG) or "end" (0), or the
 * destination refuses (its errno).  *@moved counts the bytes accepted.
 */
/* MIG_DATA_SIZE: the whole envelope's size. */
static uint64_t
data_size(struct acc_mig *am)
{
    uint64_t bytes = 0;

    assert_int_equal(vmig_dev_data_size(acc_mig_dev(am), &bytes), 0);
    return bytes;
}

static ssize_t
pump(struct side *from, struct side *to, size_t *moved)
{
    uint8_t buf[7];
    ssize_t n, w;

    *moved = 0;
    while ((n = vmig_dev_read(acc_mig_dev(from->am), buf, sizeof(buf), NULL)) >
           0) {
        w = vmig_dev_write(acc_mig_dev(to->am), buf, (size_t)n);
        if (w < 0) {
            return w;
        }
        *moved += (size_t)n;
    }
    return n;
}

static void
test_precopy_stopcopy_exactly_once(void **state)
{
    struct fx *f = *state;
    struct side dst;
    uint8_t seen[QPS * NREQ] = {0};
    unsigned int on_src, on_dst, reaped = 0;
    uint64_t init, dirty;
    size_t pre, stop;
    uint8_t byte;

    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    submit_all(f);

    /* Destination ready to receive: RUNNING -> STOP -> RESUMING. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    /* Source: PRE_COPY carries only the compatibility part. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY), 0);
    assert_int_equal(
        vmig_dev_precopy_info(acc_mig_dev(f->src.am), &init, &dirty), 0);
    assert_true(init > VMIG_STREAM_HEADER_SIZE);
    assert_int_equal(dirty, 0);
    assert_int_equal(pump(&f->src, &dst, &pre), -ENOMSG);
    assert_int_equal(pre, init);
    assert_int_equal(
        vmig_dev_precopy_info(acc_mig_dev(f->src.am), &init, &dirty), 0);
    assert_int_equal(init, 0);
    assert_false(acc_model_stopped(f->src.m)); /* still running */
    /* Switchover. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_STOP_COPY), 0);
    assert_true(acc_model_stopped(f->src.m));
    assert_int_equal(
        vmig_dev_precopy_info(acc_mig_dev(f->src.am), &init, &dirty), -EINVAL);
    assert_int_equal(pump(&f->src, &dst, &stop), 0);
    assert_int_equal(pre + stop, data_size(f->src.am));
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), &byte, 1, NULL),
                     0); /* permanent */
    /* The vCPU is paused: no reaping now; count what the source did. */
    on_src = acc_model_mmio_read(f->src.m, ACC_REG_DONE_LO);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RUNNING), 0);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_STOP), 0);
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), &byte, 1, NULL),
                     -EBUSY);

    /* The guest carries on against the destination. */
    f->r.m = dst.m;
    assert_int_equal(acc_gdrv_attach(&f->r.drv, f->r.mem.base, f->r.mem.size,
                                     DRV_GPA, &acc_rig_bar_ops, &f->r),
                     0);
    side_free(&f->src);
    f->src = dst;
    for (int i = 0; i < 500 && reaped < QPS * NREQ; i++) {
        reaped += reap_check(f, seen);
        if (reaped < QPS * NREQ) {
            (void)acc_gdrv_wait_irq(f->r.irq_fd[ACC_IRQ_COMPLETION], 20);
        }
    }
    assert_int_equal(reaped, QPS * NREQ);
    /* The completion counter travelled: it counts both hosts' work. */
    assert_int_equal(acc_model_mmio_read(dst.m, ACC_REG_DONE_LO), QPS * NREQ);
    on_dst = reaped - on_src;
    assert_true(on_dst > 0);
    assert_int_equal(acc_gdrv_reap_errors(&f->r.drv, NULL, 16), 0);
    print_message("%u requests completed on the source, %u on the "
                  "destination, each once; envelope %zu + %zu bytes\n",
                  on_src, on_dst, pre, stop);
}

/*
 * The test-only version 1 writer: an old device that emits stream
 * version 1, whose payload stored the EQ/AEQ base addresses with their
 * 32-bit halves swapped.
 */
struct v1_src {
    uint8_t buf[ACC_STATE_SIZE(ACC_QP_MAX)];
    size_t len;
    size_t pos;
    bool sent;
};

static int
v1_next(void *opaque, struct vmig_stream_record *rec)
{
    struct v1_src *v = opaque;

    if (v->sent) {
        return 0;
    }
    v->sent = true;
    rec->type = ACC_MIG_REC_STATE;
    rec->flags = VMIG_RECF_MANDATORY;
    rec->len = v->len;
    return 1;
}

static ssize_t
v1_read(void *opaque, void *buf, size_t n)
{
    struct v1_src *v = opaque;

    memcpy(buf, v->buf + v->pos, n);
    v->pos += n;
    return (ssize_t)n;
}

static const struct vmig_stream_source_ops v1_ops = {
    .next = v1_next,
    .read = v1_read,
};

static size_t
write_v1_stream(struct fx *f, uint8_t *out, size_t cap)
{
    static const uint32_t v1[] = {1};
    struct vmig_compat_desc old = *acc_mig_descriptor(f->src.am);
    struct vmig_stream_writer *w;
    struct v1_src v = {.len = 0};
    size_t len = 0;
    ssize_t n;

    old.stream_version = 1;
    old.produced = v1;
    old.n_produced = 1;
    old.accepted = v1;
    old.n_accepted = 1;
    old.known_bad = NULL;
    old.n_known_bad = 0;
    acc_model_stop(f->src.m);
    assert_int_equal(acc_model_save(f->src.m, v.buf, sizeof(v.buf), &v.len), 0);
    acc_model_resume(f->src.m);
    v.buf[0] = 1; /* payload version byte */
    for (unsigned int k = 0; k < 2; k++) {
        size_t o = k ? ACC_STATE_AEQ_BASE_OFF : ACC_STATE_EQ_BASE_OFF;
        uint8_t t[4];

        memcpy(t, v.buf + o, 4);
        memmove(v.buf + o, v.buf + o + 4, 4);
        memcpy(v.buf + o + 4, t, 4);
    }
    {
        uint32_t crc = acc_crc32c(0, v.buf, v.len - 4);

        for (int i = 0; i < 4; i++) {
            v.buf[v.len - 4 + i] = (uint8_t)(crc >> (8 * i));
        }
    }
    assert_int_equal(vmig_stream_writer_new(f->r.ctx, &old, 1, &v1_ops, &v, &w),
                     0);
    while ((n = vmig_stream_writer_read(w, out + len, cap - len)) > 0) {
        len += (size_t)n;
    }
    assert_int_equal(n, 0);
    vmig_stream_writer_free(w);
    return len;
}

static void
test_refused_during_precopy(void **state)
{
    struct fx *f = *state;
    struct side dst;
    struct acc_sqe s = {.req_id = 5, .opcode = ACC_OP_NOP};
    struct acc_cqe c;
    uint8_t v1[4096], one = 0;
    size_t moved, v1_len;

    side_new(&f->r, QPS + 1, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY), 0);
    /* The descriptor alone is enough to say no. */
    assert_int_equal(pump(&f->src, &dst, &moved), -EOPNOTSUPP);
    assert_true(moved < data_size(f->src.am));
    assert_non_null(strstr(acc_mig_last_error(dst.am),
                           "resource parameter qp-count differs: source "
                           "\"2\", destination \"3\""));
    assert_true(acc_rig_log_has(&f->r, "incoming device state refused: "));
    /* Refused for good: more data does not help, RESUMING -> STOP fails. */
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), &one, 1), -EOPNOTSUPP);
    assert_true(vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_STOP) < 0);
    assert_int_equal(vmig_dev_state(acc_mig_dev(dst.am)), VMIG_STATE_RESUMING);
    side_free(&dst);

    /* Isolation mode is compared too. */
    side_new(&f->r, QPS, ACC_ISO_DEVICE, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING), 0);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY), 0);
    assert_int_equal(pump(&f->src, &dst, &moved), -EOPNOTSUPP);
    assert_non_null(strstr(acc_mig_last_error(dst.am),
                           "resource parameter isolation differs: source "
                           "\"queue-pair\", destination \"device\""));
    side_free(&dst);

    /* A version 1 stream: refused by name from its header. */
    v1_len = write_v1_stream(f, v1, sizeof(v1));
    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), v1, v1_len),
                     -EOPNOTSUPP);
    assert_non_null(strstr(acc_mig_last_error(dst.am),
                           "stream version 1 is known bad: EQ/AEQ addresses "
                           "saved wrongly; refusing"));
    side_free(&dst);

    /* The source goes back to RUNNING and keeps working; no downtime. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING), 0);
    assert_int_equal(acc_gdrv_submit(&f->r.drv, 0, &s), 0);
    assert_int_equal(acc_model_wait_idle(f->src.m, 2000), 0);
    assert_int_equal(acc_gdrv_reap(&f->r.drv, 0, &c, 1), 1);
    assert_int_equal(c.req_id, 5);
}

static void
test_damaged_stream_refused_at_load(void **state)
{
    struct fx *f = *state;
    struct side dst;
    uint8_t buf[4096];
    ssize_t n, len = 0;

    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_STOP_COPY), 0);
    while ((n = vmig_dev_read(acc_mig_dev(f->src.am), buf + len, 100, NULL)) >
           0) {
        len += n;
    }
    assert_int_equal(n, 0);
    assert_int_equal(len, data_size(f->src.am));

    /* A flipped bit in the state record: the record checksum catches it
     * as it arrives. */
    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    buf[len - 80] ^= 4;
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), buf, (size_t)len),
                     -EBADMSG);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RUNNING), -EBADMSG);
    assert_int_equal(vmig_dev_state(acc_mig_dev(dst.am)), VMIG_STATE_RESUMING);
    assert_non_null(strstr(acc_mig_last_error(dst.am), "checksum"));
    /* Only a reset leaves it; then it runs, power-on state. */
    vmig_dev_reset(acc_mig_dev(dst.am), VMIG_RESET_HOST);
    assert_int_equal(vmig_dev_state(acc_mig_dev(dst.am)), VMIG_STATE_RUNNING);
    assert_false(acc_model_stopped(dst.m));
    side_free(&dst);
    buf[len - 80] ^= 4;

    /* Cut short: RESUMING -> STOP finds no END record. */
    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), buf, (size_t)len - 10),
                     0);
    assert_int_equal(vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_STOP),
                     -ENODATA);
    assert_int_equal(vmig_dev_state(acc_mig_dev(dst.am)), VMIG_STATE_RESUMING);
    side_free(&dst);

    /* Intact, it loads. */
    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), buf, (size_t)len), 0);
    assert_int_equal(vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_STOP),
                     0);
    side_free(&dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING), 0);
}

/* The committed golden envelope (written by this driver, version 2) must
 * keep loading. */
static void
test_golden_envelope(void **state)
{
    struct fx *f = *state;
    struct side dst;
    uint8_t buf[4096];
    size_t len;
    FILE *fp;

    fp = fopen(VMIG_TEST_DATA "/acc-envelope-v2.bin", "rb");
    assert_non_null(fp);
    len = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), buf, len), 0);
    assert_int_equal(vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_STOP),
                     0);
    assert_int_equal(acc_model_mmio_read(dst.m, ACC_REG_CTRL), ACC_CTRL_ENABLE);
    assert_int_equal(acc_model_mmio_read(dst.m, ACC_QP_REG(1, ACC_QP_SQ_SIZE)),
                     32);
    assert_int_equal(acc_model_mmio_read(dst.m, ACC_QP_REG(1, ACC_QP_CQ_SIZE)),
                     64);
    side_free(&dst);
}

static void
test_guest_reset_in_precopy(void **state)
{
    struct fx *f = *state;
    uint8_t b[4];

    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY), 0);
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), b, 4, NULL), 4);
    acc_model_mmio_write(f->src.m, ACC_REG_RESET, ACC_RESET_MAGIC);
    assert_int_equal(vmig_dev_state(acc_mig_dev(f->src.am)),
                     VMIG_STATE_RUNNING);
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), b, 4, NULL),
                     -ENODEV);
    assert_false(acc_model_stopped(f->src.m));
    assert_true(acc_rig_log_has(&f->r, "guest-initiated device reset in "
                                       "PRE_COPY"));
    assert_true(acc_rig_log_has(&f->r, "device reset in PRE_COPY: saving "
                                       "session"));
    /* A new session works again. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY), 0);
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), b, 4, NULL), 4);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING), 0);
}

static void
test_host_reset_in_stop_copy_and_resuming(void **state)
{
    struct fx *f = *state;
    struct side dst;
    uint8_t b[16];

    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_STOP_COPY), 0);
    assert_true(acc_model_stopped(f->src.m));
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), b, sizeof(b), NULL),
                     sizeof(b));
    vmig_dev_reset(acc_mig_dev(f->src.am), VMIG_RESET_HOST);
    assert_int_equal(vmig_dev_state(acc_mig_dev(f->src.am)),
                     VMIG_STATE_RUNNING);
    assert_int_equal(vmig_dev_read(acc_mig_dev(f->src.am), b, sizeof(b), NULL),
                     -ENODEV);
    assert_false(acc_model_stopped(f->src.m));
    assert_int_equal(acc_model_mmio_read(f->src.m, ACC_REG_CTRL), 0);
    assert_true(acc_rig_log_has(&f->r, "device reset in STOP_COPY: saving "
                                       "session"));

    side_new(&f->r, QPS, ACC_ISO_QP, &dst);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(dst.am), VMIG_STATE_RESUMING), 0);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), b, 4), 0);
    acc_model_mmio_write(dst.m, ACC_REG_RESET, ACC_RESET_MAGIC);
    assert_int_equal(vmig_dev_state(acc_mig_dev(dst.am)), VMIG_STATE_RUNNING);
    assert_int_equal(vmig_dev_write(acc_mig_dev(dst.am), b, 4), -ENODEV);
    assert_true(acc_rig_log_has(&f->r, "device reset in RESUMING: resuming "
                                       "session"));
    side_free(&dst);
}

static void
test_no_p2p_states(void **state)
{
    struct fx *f = *state;

    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING_P2P),
        -EINVAL);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY_P2P),
        -EINVAL);
    assert_int_equal(vmig_dev_state(acc_mig_dev(f->src.am)),
                     VMIG_STATE_RUNNING);
    /* STOP_COPY -> PRE_COPY is not an arc. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_STOP_COPY), 0);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_PRE_COPY),
        -EINVAL);
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(f->src.am), VMIG_STATE_RUNNING), 0);
    assert_false(acc_model_stopped(f->src.m));
}

static bool
stopped_state(enum vmig_state st)
{
    return st == VMIG_STATE_STOP || st == VMIG_STATE_STOP_COPY ||
           st == VMIG_STATE_RESUMING;
}

/*
 * Random targets (legal or not), data reads and writes, and guest or host
 * resets, checking after every step: the model is stopped exactly in
 * STOP, STOP_COPY and RESUMING; reads answer as the state says.
 */
static void
test_random_walk(void **state)
{
    struct fx *f = *state;
    struct side *s = &f->src;
    uint8_t good[2048], buf[64];
    ssize_t good_len = 0, n;
    uint32_t x = 12345;
    unsigned int arcs = 0, resets = 0, loads = 0;

    /* A valid stream of this device, to feed RESUMING now and then. */
    assert_int_equal(
        vmig_dev_set_state(acc_mig_dev(s->am), VMIG_STATE_STOP_COPY), 0);
    while ((n = vmig_dev_read(acc_mig_dev(s->am), good + good_len, 100, NULL)) >
           0) {
        good_len += n;
    }
    assert_int_equal(vmig_dev_set_state(acc_mig_dev(s->am), VMIG_STATE_RUNNING),
                     0);

    for (int i = 0; i < 3000; i++) {
        enum vmig_state st;
        uint32_t r;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        r = x % 16;
        if (r < 8) {
            if (vmig_dev_set_state(acc_mig_dev(s->am), x % VMIG_STATE__COUNT) ==
                0) {
                arcs++;
            }
        } else if (r < 10) {
            (void)!vmig_dev_read(acc_mig_dev(s->am), buf, sizeof(buf), NULL);
        } else if (r < 12) {
            if (vmig_dev_write(acc_mig_dev(s->am), good, (size_t)good_len) ==
                0) {
                loads++;
            }
        } else if (r == 12) {
            acc_model_mmio_write(s->m, ACC_REG_RESET, ACC_RESET_MAGIC);
            resets++;
        } else if (r == 13) {
            vmig_dev_reset(acc_mig_dev(s->am), VMIG_RESET_HOST);
            resets++;
        } else {
            (void)acc_model_mmio_read(s->m, ACC_REG_STATUS);
        }
        st = vmig_dev_state(acc_mig_dev(s->am));
        assert_true(st != VMIG_STATE_ERROR);
        assert_true(vmig_state_supported(ACC_MIG_FLAGS, st));
        assert_int_equal(acc_model_stopped(s->m), stopped_state(st));
        n = vmig_dev_read(acc_mig_dev(s->am), buf, 0, NULL);
        if (st == VMIG_STATE_PRE_COPY) {
            assert_true(n == 0 || n == -ENOMSG);
        } else if (st == VMIG_STATE_STOP_COPY) {
            assert_true(n >= 0);
        } else {
            assert_true(n == -EBUSY || n == -ENODEV);
        }
    }
    print_message("random walk: %u transitions, %u resets, %u stream "
                  "writes\n",
                  arcs, resets, loads);
    assert_true(arcs > 100 && resets > 100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_precopy_stopcopy_exactly_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_during_precopy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_stream_refused_at_load,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_golden_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_reset_in_precopy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_host_reset_in_stop_copy_and_resuming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_p2p_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_walk, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
