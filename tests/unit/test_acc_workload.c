/* SPDX-License-Identifier: MIT */
/*
 * test_acc_workload.c - thousands of mixed requests through the emulated
 * accelerator, each checked against a direct computation, with and without
 * migrations (stop, save, load into a fresh model, resume) in the middle.
 *
 * The test thread plays the guest: it keeps every queue pair full, waits on
 * the completion interrupt, reaps, and checks each completion against its
 * record.  A compression that completes is checked with the library and
 * then sent back through the device for decompression, so
 * decompress(compress(x)) == x is checked device-to-device as well.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>
#include "acc_rig.h"

#define RAM_SIZE (40u << 20)
#define DRV_GPA 0x1000u
#define BUF_GPA (4u << 20)
#define QPS 4u
#define SQ_SIZE 32u
#define SLOTS_PER_QP (SQ_SIZE - 1)
#define MAX_IN (24u << 10)
#define SLOT_HALF (32u << 10) /* src area, then dst area */
#define SLOT_SIZE (2u * SLOT_HALF)
#define MAX_REQS 12000u

enum kind {
    K_COPY,
    K_CRC,
    K_SHA,
    K_ZC,  /* zstd compress; chains a K_ZRT */
    K_ZD,  /* zstd decompress of library-compressed data */
    K_DC,  /* deflate compress; chains a K_DRT */
    K_DD,  /* deflate decompress of library-compressed data */
    K_ZRT, /* zstd decompress of the device's own output */
    K_DRT, /* deflate decompress of the device's own output */
    K_NOP,
    K__COUNT
};

struct req {
    uint8_t kind;
    uint8_t qp;
    uint16_t slot;
    uint32_t seed;
    uint32_t len;  /* original input length */
    uint32_t done; /* completions seen: must end at exactly 1 */
};

struct wl {
    struct acc_rig rig;
    struct req reqs[MAX_REQS];
    uint32_t nreqs;      /* ids handed out */
    uint32_t base_total; /* base requests to issue */
    uint32_t base_issued;
    uint32_t completed;
    uint32_t slot_busy[QPS][SLOTS_PER_QP]; /* req id + 1, or 0 */
    uint8_t *scratch;
    uint8_t *scratch2;
    unsigned int migrations;
    unsigned int migrate_every; /* completions between migrations; 0 never */
};

static uint32_t
xs(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Deterministic, partly compressible data. */
static void
gen(uint32_t seed, uint8_t *p, uint32_t len)
{
    static const char words[][8] = {"vfio", "user", "acc",  "queue",
                                    "pair", "zstd", "crc",  "state",
                                    "mig",  "page", "dirty"};
    uint32_t s = seed * 2654435761u + 1u;
    uint32_t i = 0;

    while (i < len) {
        uint32_t r = xs(&s);

        if (r % 4 == 0) {
            p[i++] = (uint8_t)(r >> 8);
        } else {
            const char *w = words[(r >> 4) % 11];

            for (size_t k = 0; w[k] != '\0' && i < len; k++) {
                p[i++] = (uint8_t)w[k];
            }
            if (i < len) {
                p[i++] = ' ';
            }
        }
    }
}

static uint64_t
slot_gpa(unsigned int qp, unsigned int slot)
{
    return BUF_GPA + ((uint64_t)qp * SLOTS_PER_QP + slot) * SLOT_SIZE;
}

static uint8_t *
hva(struct wl *w, uint64_t gpa)
{
    return w->rig.mem.base + gpa;
}

static int
free_slot(struct wl *w, unsigned int qp)
{
    for (unsigned int i = 0; i < SLOTS_PER_QP; i++) {
        if (w->slot_busy[qp][i] == 0) {
            return (int)i;
        }
    }
    return -1;
}

static uint32_t
new_req(struct wl *w, uint8_t kind, unsigned int qp, unsigned int slot,
        uint32_t seed, uint32_t len)
{
    uint32_t id = w->nreqs++;

    assert_true(id < MAX_REQS);
    w->reqs[id] = (struct req){.kind = kind,
                               .qp = (uint8_t)qp,
                               .slot = (uint16_t)slot,
                               .seed = seed,
                               .len = len};
    w->slot_busy[qp][slot] = id + 1;
    return id;
}

/* Build the SQE of a base request: fill its source in guest memory. */
static void
prepare(struct wl *w, uint32_t id, struct acc_sqe *sqe)
{
    struct req *q = &w->reqs[id];
    uint64_t src = slot_gpa(q->qp, q->slot), dst = src + SLOT_HALF;
    uint8_t *s = hva(w, src);

    memset(sqe, 0, sizeof(*sqe));
    sqe->req_id = id;
    sqe->src = src;
    sqe->dst = dst;
    sqe->dst_len = SLOT_HALF;
    switch (q->kind) {
    case K_COPY:
        sqe->opcode = ACC_OP_COPY;
        break;
    case K_CRC:
        sqe->opcode = ACC_OP_CRC32C;
        break;
    case K_SHA:
        sqe->opcode = ACC_OP_SHA256;
        break;
    case K_ZC:
        sqe->opcode = ACC_OP_ZSTD_COMP;
        sqe->param = (uint16_t)(1 + q->seed % 5);
        break;
    case K_DC:
        sqe->opcode = ACC_OP_DEFL_COMP;
        sqe->param = (uint16_t)(1 + q->seed % 9);
        break;
    case K_NOP:
        sqe->opcode = ACC_OP_NOP;
        break;
    default:
        break;
    }
    if (q->kind == K_ZD || q->kind == K_DD) {
        /* Input: library-compressed data, placed in the slot's source. */
        gen(q->seed, w->scratch, q->len);
        if (q->kind == K_ZD) {
            size_t n = ZSTD_compress(s, SLOT_HALF, w->scratch, q->len, 3);

            assert_false(ZSTD_isError(n));
            sqe->src_len = (uint32_t)n;
            sqe->opcode = ACC_OP_ZSTD_DECOMP;
        } else {
            uLongf n = SLOT_HALF;

            assert_int_equal(compress2(s, &n, w->scratch, q->len, 6), Z_OK);
            sqe->src_len = (uint32_t)n;
            sqe->opcode = ACC_OP_DEFL_DECOMP;
        }
    } else {
        gen(q->seed, s, q->len);
        sqe->src_len = q->len;
    }
}

static void
submit_base(struct wl *w)
{
    for (unsigned int qp = 0; qp < QPS; qp++) {
        struct acc_sqe sqes[SLOTS_PER_QP];
        unsigned int n = 0;
        int slot, rc;

        while (w->base_issued < w->base_total &&
               acc_gdrv_inflight(&w->rig.drv, qp) + n < SLOTS_PER_QP &&
               (slot = free_slot(w, qp)) >= 0) {
            uint32_t seed = w->base_issued * 7919u + 17u;
            uint8_t kind = (uint8_t)(seed % 8 == 7 ? K_NOP : seed % 7);
            uint32_t len = seed % 13 == 0 ? 0 : (seed * 2246822519u) % MAX_IN;
            uint32_t id = new_req(w, kind == 6 ? K_DD : kind, qp,
                                  (unsigned int)slot, seed, len);

            prepare(w, id, &sqes[n++]);
            w->base_issued++;
        }
        if (n != 0) {
            rc = acc_gdrv_submit_batch(&w->rig.drv, qp, sqes, n);
            assert_int_equal(rc, (int)n);
        }
    }
}

/* Send a compressed result back through the device (same slot). */
static void
chain_roundtrip(struct wl *w, const struct req *q, uint32_t out_len)
{
    uint64_t src = slot_gpa(q->qp, q->slot);
    struct acc_sqe sqe = {0};
    uint32_t id;

    memmove(hva(w, src), hva(w, src + SLOT_HALF), out_len);
    id = new_req(w, q->kind == K_ZC ? K_ZRT : K_DRT, q->qp, q->slot, q->seed,
                 q->len);
    sqe.req_id = id;
    sqe.opcode = q->kind == K_ZC ? ACC_OP_ZSTD_DECOMP : ACC_OP_DEFL_DECOMP;
    sqe.src = src;
    sqe.src_len = out_len;
    sqe.dst = src + SLOT_HALF;
    sqe.dst_len = SLOT_HALF;
    assert_int_equal(acc_gdrv_submit(&w->rig.drv, q->qp, &sqe), 0);
}

static void
check_completion(struct wl *w, const struct acc_cqe *c)
{
    struct req *q;
    const uint8_t *out;
    uint8_t *x = w->scratch;
    bool chained = false;

    assert_true(c->req_id < w->nreqs);
    q = &w->reqs[c->req_id];
    q->done++;
    assert_int_equal(q->done, 1);
    assert_int_equal(c->status, ACC_ST_OK);
    out = hva(w, slot_gpa(q->qp, q->slot) + SLOT_HALF);
    gen(q->seed, x, q->len);

    switch (q->kind) {
    case K_NOP:
        assert_int_equal(c->out_len, 0);
        break;
    case K_COPY:
    case K_ZD:
    case K_DD:
    case K_ZRT:
    case K_DRT:
        assert_int_equal(c->out_len, q->len);
        assert_memory_equal(out, x, q->len);
        break;
    case K_CRC: {
        uint32_t want = acc_rig_crc32c_ref(x, q->len);

        assert_int_equal(c->out_len, 4);
        assert_int_equal(
            out[0] | out[1] << 8 | out[2] << 16 | (uint32_t)out[3] << 24, want);
        break;
    }
    case K_SHA: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        assert_int_equal(EVP_Digest(x, q->len, md, &mdlen, EVP_sha256(), NULL),
                         1);
        assert_int_equal(c->out_len, 32);
        assert_memory_equal(out, md, 32);
        break;
    }
    case K_ZC: {
        size_t n = ZSTD_decompress(w->scratch2, MAX_IN, out, c->out_len);

        assert_false(ZSTD_isError(n));
        assert_int_equal(n, q->len);
        assert_memory_equal(w->scratch2, x, q->len);
        chained = true;
        break;
    }
    case K_DC: {
        uLongf n = MAX_IN;

        assert_int_equal(uncompress(w->scratch2, &n, out, c->out_len), Z_OK);
        assert_int_equal(n, q->len);
        assert_memory_equal(w->scratch2, x, q->len);
        chained = true;
        break;
    }
    default:
        fail();
    }
    w->completed++;
    if (chained) {
        chain_roundtrip(w, q, c->out_len);
    } else {
        w->slot_busy[q->qp][q->slot] = 0;
    }
}

static void
run(struct wl *w, uint32_t total, unsigned int migrate_every)
{
    struct acc_aeqe ae[8];
    unsigned int idle_waits = 0, next_migration = migrate_every;

    w->base_total = total;
    w->migrate_every = migrate_every;
    for (;;) {
        struct acc_cqe c[SQ_SIZE];
        bool progress = false;
        int rc;

        submit_base(w);
        if (migrate_every != 0 && w->completed >= next_migration) {
            /* Requests are in flight right now: some mid-computation. */
            rc = acc_rig_migrate(&w->rig);
            assert_true(rc > 0);
            w->migrations++;
            next_migration += migrate_every;
            assert_int_equal(acc_gdrv_attach(&w->rig.drv, w->rig.mem.base,
                                             w->rig.mem.size, DRV_GPA,
                                             &acc_rig_bar_ops, &w->rig),
                             0);
        }
        if (w->completed == w->nreqs && w->base_issued == w->base_total) {
            break;
        }
        rc = acc_gdrv_wait_irq(w->rig.irq_fd[ACC_IRQ_COMPLETION], 2000);
        assert_true(rc >= 0);
        (void)acc_gdrv_ack_irq(&w->rig.drv);
        (void)acc_gdrv_reap_events(&w->rig.drv, NULL, 1024);
        for (unsigned int qp = 0; qp < QPS; qp++) {
            int n;

            while ((n = acc_gdrv_reap(&w->rig.drv, qp, c, SQ_SIZE)) > 0) {
                for (int i = 0; i < n; i++) {
                    check_completion(w, &c[i]);
                }
                progress = true;
            }
        }
        assert_int_equal(acc_gdrv_reap_errors(&w->rig.drv, ae, 8), 0);
        idle_waits = progress ? 0 : idle_waits + 1;
        assert_true(idle_waits < 5);
    }
    for (uint32_t i = 0; i < w->nreqs; i++) {
        assert_int_equal(w->reqs[i].done, 1);
    }
}

static int
setup(void **state)
{
    struct wl *w = calloc(1, sizeof(*w));
    struct acc_gdrv_config cfg = {
        .qp_count = QPS,
        .sq_size = SQ_SIZE,
        .cq_size = SQ_SIZE * 2,
        .eq_size = 256,
        .aeq_size = 64,
    };

    if (w == NULL || acc_rig_init(&w->rig, RAM_SIZE, QPS, ACC_ISO_QP) < 0) {
        free(w);
        return -1;
    }
    w->scratch = malloc(MAX_IN);
    w->scratch2 = malloc(MAX_IN);
    if (acc_gdrv_mem_size(&cfg) + DRV_GPA > BUF_GPA ||
        BUF_GPA + (uint64_t)QPS * SLOTS_PER_QP * SLOT_SIZE > RAM_SIZE ||
        w->scratch == NULL || w->scratch2 == NULL ||
        acc_gdrv_init(&w->rig.drv, w->rig.mem.base, w->rig.mem.size, DRV_GPA,
                      &cfg, &acc_rig_bar_ops, &w->rig) < 0) {
        return -1;
    }
    *state = w;
    return 0;
}

static int
teardown(void **state)
{
    struct wl *w = *state;

    acc_rig_fini(&w->rig);
    free(w->scratch);
    free(w->scratch2);
    free(w);
    return 0;
}

static void
test_mixed_workload(void **state)
{
    struct wl *w = *state;

    run(w, 4000, 0);
    /* Every compression was also decompressed by the device. */
    assert_true(w->nreqs > 4000);
    assert_int_equal(w->completed, w->nreqs);
    assert_int_equal(acc_model_mmio_read(w->rig.m, ACC_REG_DONE_LO), w->nreqs);
    print_message("mixed: %u requests (%u base), %u completion irqs\n",
                  w->nreqs, 4000u,
                  __atomic_load_n(&w->rig.irq_count[ACC_IRQ_COMPLETION],
                                  __ATOMIC_RELAXED));
}

static void
test_workload_with_migrations(void **state)
{
    struct wl *w = *state;

    run(w, 3000, 150);
    assert_true(w->migrations >= 10);
    assert_int_equal(w->completed, w->nreqs);
    /* The completion counter travelled with the state. */
    assert_int_equal(acc_model_mmio_read(w->rig.m, ACC_REG_DONE_LO), w->nreqs);
    print_message("migrating: %u requests, %u migrations, each exactly "
                  "once\n",
                  w->nreqs, w->migrations);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mixed_workload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_with_migrations, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
