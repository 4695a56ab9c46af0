/* SPDX-License-Identifier: MIT */
/*
 * bench_acc.c - the emulated accelerator against plain libzstd.
 *
 * 1. zstd compression through one queue pair (guest driver -> doorbell ->
 *    worker -> CQE -> interrupt eventfd) versus ZSTD_compressCCtx called
 *    directly on the same buffers at the same level, in the same run; for
 *    64 KiB requests (throughput) and 4 KiB requests (per-request cost).
 * 2. The device state: payload size, and save / load time.
 * No timing is asserted; the ratio is what to read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <vmig/vfu_client.h>
#include <zstd.h>
#include "acc_flatmem.h"
#include "acc_mig.h"
#include "acc_model.h"
#include "acc_server.h"
#include "guest-driver.h"

#define RAM_SIZE (64u << 20)
#define DRV_GPA 0x1000u
#define BUF_GPA (1u << 20)
#define SQ_SIZE 64u
#define NBUF 63u /* one per queue slot */
#define LEVEL 3

struct bench {
    struct acc_flatmem mem;
    struct acc_model *m;
    struct acc_gdrv drv;
    int irq_fd;
    const char *path; /* "in-process" or "vfio-user" */
};

static uint32_t
bar_read(void *opaque, uint32_t off)
{
    return acc_model_mmio_read(((struct bench *)opaque)->m, off);
}

static void
bar_write(void *opaque, uint32_t off, uint32_t val)
{
    acc_model_mmio_write(((struct bench *)opaque)->m, off, val);
}

static const struct acc_bar_ops bar_ops = {bar_read, bar_write};

static void
on_irq(void *opaque, unsigned int vector)
{
    struct bench *b = opaque;
    uint64_t one = 1;

    if (vector == ACC_IRQ_COMPLETION &&
        write(b->irq_fd, &one, sizeof(one)) < 0) {
        abort();
    }
}

static const struct acc_model_ops model_ops = {.irq = on_irq};

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Text-like data that compresses roughly 3:1. */
static void
fill(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *const w[] = {"migration ", "device ", "state ",
                                    "queue ",     "pair ",   "dirty ",
                                    "page ",      "vfio ",   "user "};
    uint32_t s = seed * 2654435761u + 7u;
    size_t i = 0;

    while (i < n) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        if (s % 5 == 0) {
            p[i++] = (uint8_t)(s >> 11);
            continue;
        }
        for (const char *c = w[(s >> 3) % 9]; *c != '\0' && i < n; c++) {
            p[i++] = (uint8_t)*c;
        }
    }
}

static int
bench_init(struct bench *b, uint32_t qps)
{
    struct acc_model_config cfg = {
        .name = "bench",
        .qp_count = qps,
        .isolation = ACC_ISO_QP,
        .dma = &acc_flatmem_dma_ops,
        .dma_opaque = &b->mem,
        .ops = &model_ops,
        .opaque = b,
    };
    struct acc_gdrv_config dc = {
        .qp_count = qps,
        .sq_size = SQ_SIZE,
        .cq_size = SQ_SIZE,
        .eq_size = 1024,
        .aeq_size = 64,
    };
    int ret;

    memset(b, 0, sizeof(*b));
    b->path = "in-process";
    b->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->irq_fd < 0) {
        return -errno;
    }
    ret = acc_flatmem_new(RAM_SIZE, &b->mem);
    if (ret < 0) {
        return ret;
    }
    cfg.dma_opaque = &b->mem;
    ret = acc_model_new(&cfg, &b->m);
    if (ret < 0) {
        return ret;
    }
    return acc_gdrv_init(&b->drv, b->mem.base, b->mem.size, DRV_GPA, &dc,
                         &bar_ops, b);
}

static void
bench_fini(struct bench *b)
{
    acc_model_free(b->m);
    acc_flatmem_free(&b->mem);
    close(b->irq_fd);
}

/* Run @total compressions of @len bytes through queue pair 0. */
static double
run_device(struct bench *b, uint32_t len, uint32_t total, uint64_t *out_bytes)
{
    uint32_t stride = 2 * (len + 1024), submitted = 0, done = 0;
    double t0 = now();

    *out_bytes = 0;
    while (done < total) {
        struct acc_sqe sq[NBUF];
        struct acc_cqe cq[SQ_SIZE];
        unsigned int n = 0;
        int got;

        while (submitted + n < total &&
               acc_gdrv_inflight(&b->drv, 0) + n < NBUF) {
            uint32_t slot = (submitted + n) % NBUF;
            uint64_t src = BUF_GPA + (uint64_t)slot * stride;

            memset(&sq[n], 0, sizeof(sq[n]));
            sq[n].req_id = submitted + n;
            sq[n].opcode = ACC_OP_ZSTD_COMP;
            sq[n].param = LEVEL;
            sq[n].src = src;
            sq[n].src_len = len;
            sq[n].dst = src + len + 1024;
            sq[n].dst_len = len + 1024;
            n++;
        }
        if (n != 0 && acc_gdrv_submit_batch(&b->drv, 0, sq, n) != (int)n) {
            abort();
        }
        submitted += n;
        if (acc_gdrv_wait_irq(b->irq_fd, 1000) < 0) {
            abort();
        }
        (void)acc_gdrv_ack_irq(&b->drv);
        (void)acc_gdrv_reap_events(&b->drv, NULL, 1024);
        while ((got = acc_gdrv_reap(&b->drv, 0, cq, SQ_SIZE)) > 0) {
            for (int i = 0; i < got; i++) {
                if (cq[i].status != ACC_ST_OK) {
                    abort();
                }
                *out_bytes += cq[i].out_len;
            }
            done += (uint32_t)got;
        }
    }
    return now() - t0;
}

static double
run_direct(struct bench *b, uint32_t len, uint32_t total, uint64_t *out_bytes)
{
    uint32_t stride = 2 * (len + 1024);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    double t0;

    *out_bytes = 0;
    t0 = now();
    for (uint32_t i = 0; i < total; i++) {
        uint8_t *src = b->mem.base + BUF_GPA + (uint64_t)(i % NBUF) * stride;
        size_t r = ZSTD_compressCCtx(cc, src + len + 1024, len + 1024, src, len,
                                     LEVEL);

        if (ZSTD_isError(r)) {
            abort();
        }
        *out_bytes += r;
    }
    t0 = now() - t0;
    ZSTD_freeCCtx(cc);
    return t0;
}

static void
compress_row(struct bench *b, uint32_t len, uint32_t total)
{
    uint32_t stride = 2 * (len + 1024);
    uint64_t dev_out, dir_out;
    double td, tz, mb = (double)len * total / 1e6;

    for (uint32_t i = 0; i < NBUF; i++) {
        fill(b->mem.base + BUF_GPA + (uint64_t)i * stride, len, i + 1);
    }
    (void)run_direct(b, len, NBUF, &dir_out); /* warm up */
    (void)run_device(b, len, NBUF, &dev_out);
    td = run_device(b, len, total, &dev_out);
    tz = run_direct(b, len, total, &dir_out);
    printf("%-10s zstd -%d %6u B x %5u: device %8.0f req/s %7.1f MB/s | "
           "libzstd %8.0f req/s %7.1f MB/s | ratio %.2f | out %s\n",
           b->path, LEVEL, len, total, total / td, mb / td, total / tz, mb / tz,
           tz / td, dev_out == dir_out ? "identical size" : "DIFFERENT");
}

/*
 * Quiesce latency with a full queue of 64 KiB compressions: how long
 * acc_model_stop() waits for the request in flight (the device's share of
 * the downtime before its state can be saved).
 */
static void
stop_row(struct bench *b)
{
    const uint32_t len = 64u << 10, stride = 2 * (len + 1024);
    const int iters = 40;
    double sum = 0, max = 0;
    uint64_t out;

    for (uint32_t i = 0; i < NBUF; i++) {
        fill(b->mem.base + BUF_GPA + (uint64_t)i * stride, len, i + 1);
    }
    for (int it = 0; it < iters; it++) {
        struct acc_sqe sq[NBUF];
        struct acc_cqe cq[SQ_SIZE];
        unsigned int left = NBUF;
        double t0, dt;
        int got;

        for (uint32_t i = 0; i < NBUF; i++) {
            uint64_t src = BUF_GPA + (uint64_t)i * stride;

            memset(&sq[i], 0, sizeof(sq[i]));
            sq[i].req_id = i;
            sq[i].opcode = ACC_OP_ZSTD_COMP;
            sq[i].param = LEVEL;
            sq[i].src = src;
            sq[i].src_len = len;
            sq[i].dst = src + len + 1024;
            sq[i].dst_len = len + 1024;
        }
        if (acc_gdrv_submit_batch(&b->drv, 0, sq, NBUF) != (int)NBUF) {
            abort();
        }
        (void)run_direct(b, len, 2, &out); /* let the worker get going */
        t0 = now();
        acc_model_stop(b->m);
        dt = now() - t0;
        acc_model_resume(b->m);
        sum += dt;
        max = dt > max ? dt : max;
        while (left > 0) {
            if (acc_gdrv_wait_irq(b->irq_fd, 1000) < 0) {
                abort();
            }
            (void)acc_gdrv_reap_events(&b->drv, NULL, 1024);
            while ((got = acc_gdrv_reap(&b->drv, 0, cq, SQ_SIZE)) > 0) {
                left -= (unsigned int)got;
            }
        }
    }
    printf("stop with a full queue of 64 KiB zstd requests: mean %.1f us, "
           "max %.1f us (one request in flight finishes first)\n",
           sum / iters * 1e6, max * 1e6);
}

static void
state_row(uint32_t qps)
{
    struct bench b;
    size_t cap, len = 0;
    uint8_t *buf;
    char why[256];
    const int iters = 20000;
    double t0, ts, tl;

    if (bench_init(&b, qps) < 0) {
        abort();
    }
    cap = acc_model_state_size(b.m);
    buf = malloc(cap);
    if (buf == NULL) {
        abort();
    }
    acc_model_stop(b.m);
    t0 = now();
    for (int i = 0; i < iters; i++) {
        if (acc_model_save(b.m, buf, cap, &len) < 0) {
            abort();
        }
    }
    ts = (now() - t0) / iters;
    t0 = now();
    for (int i = 0; i < iters; i++) {
        if (acc_model_load(b.m, buf, len, why, sizeof(why)) < 0) {
            abort();
        }
    }
    tl = (now() - t0) / iters;
    printf("state, %2u queue pairs: %5zu bytes, save %6.2f us, load (full "
           "validation) %6.2f us\n",
           qps, len, ts * 1e6, tl * 1e6);
    free(buf);
    bench_fini(&b);
}

/*
 * The whole device migration through the state machine and the envelope:
 * RUNNING -> STOP_COPY and read everything on one model; RUNNING ->
 * RESUMING, write, RESUMING -> STOP on another.
 */
static void
envelope_row(uint32_t qps)
{
    struct bench a, b;
    struct acc_mig *ma, *mb;
    uint8_t buf[8192];
    const int iters = 2000;
    double ts = 0, tl = 0, t0;
    ssize_t n, len = 0;

    if (bench_init(&a, qps) < 0 || bench_init(&b, qps) < 0 ||
        acc_mig_new(NULL, a.m, &ma) < 0 || acc_mig_new(NULL, b.m, &mb) < 0) {
        abort();
    }
    for (int i = 0; i < iters; i++) {
        t0 = now();
        if (vmig_dev_set_state(acc_mig_dev(ma), VMIG_STATE_STOP_COPY) < 0) {
            abort();
        }
        len = 0;
        while ((n = vmig_dev_read(acc_mig_dev(ma), buf + len, sizeof(buf) - len,
                                  NULL)) > 0) {
            len += n;
        }
        ts += now() - t0;
        t0 = now();
        if (n < 0 ||
            vmig_dev_set_state(acc_mig_dev(mb), VMIG_STATE_RESUMING) < 0 ||
            vmig_dev_write(acc_mig_dev(mb), buf, (size_t)len) != 0 ||
            vmig_dev_set_state(acc_mig_dev(mb), VMIG_STATE_STOP) < 0) {
            abort();
        }
        tl += now() - t0;
        if (vmig_dev_set_state(acc_mig_dev(ma), VMIG_STATE_RUNNING) < 0 ||
            vmig_dev_set_state(acc_mig_dev(mb), VMIG_STATE_RUNNING) < 0) {
            abort();
        }
    }
    printf("envelope, %2u queue pairs: %5zd bytes, save (RUNNING -> "
           "STOP_COPY, read) %6.2f us, restore (-> RESUMING, write, -> STOP) "
           "%6.2f us\n",
           qps, len, ts / iters * 1e6, tl / iters * 1e6);
    acc_mig_free(ma);
    acc_mig_free(mb);
    bench_fini(&a);
    bench_fini(&b);
}

/* ------------------------------------------------ the same over vfio-user */

struct vfu_bench {
    struct bench b;
    struct vmig_vfu_client *c;
    vmig_ctx_t *ctx;
    pid_t pid;
};

static uint32_t
vfu_read(void *opaque, uint32_t off)
{
    struct vfu_bench *v = opaque;
    uint32_t x = 0;

    if (vmig_vfu_client_region_read(v->c, ACC_VFU_BAR0, off, &x, 4) < 0) {
        abort();
    }
    return x;
}

static void
vfu_write(void *opaque, uint32_t off, uint32_t val)
{
    struct vfu_bench *v = opaque;

    if (vmig_vfu_client_region_write(v->c, ACC_VFU_BAR0, off, &val, 4) < 0) {
        abort();
    }
}

static const struct acc_bar_ops vfu_bar_ops = {vfu_read, vfu_write};

/* A vmig-acc server in a child process, this process as the VMM. */
static int
vfu_init(struct vfu_bench *v)
{
    struct acc_gdrv_config dc = {
        .qp_count = 1,
        .sq_size = SQ_SIZE,
        .cq_size = SQ_SIZE,
        .eq_size = 1024,
        .aeq_size = 64,
    };
    int sv[2], efds[ACC_IRQ__COUNT];

    memset(v, 0, sizeof(*v));
    v->b.path = "vfio-user";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -errno;
    }
    v->pid = fork();
    if (v->pid == 0) {
        struct acc_server_cfg cfg = {.fd = sv[1],
                                     .qp_count = 1,
                                     .isolation = ACC_ISO_QP,
                                     .level = VMIG_LOG_ERR};

        close(sv[0]);
        _exit(acc_serve(&cfg) == 0 ? 0 : 1);
    }
    close(sv[1]);
    v->b.irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    efds[0] = v->b.irq_fd;
    efds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->pid < 0 || v->b.irq_fd < 0 || efds[1] < 0 ||
        vmig_ctx_new("bench", NULL, NULL, &v->ctx) < 0 ||
        acc_flatmem_new(RAM_SIZE, &v->b.mem) < 0 ||
        vmig_vfu_client_adopt(v->ctx, sv[0], 0, &v->c) < 0 ||
        vmig_vfu_client_dma_map(v->c, 0, v->b.mem.size,
                                VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                v->b.mem.fd, 0, v->b.mem.base) < 0 ||
        vmig_vfu_client_set_irqs(v->c, ACC_VFU_IRQ_INDEX, 0, ACC_IRQ__COUNT,
                                 efds) < 0) {
        return -EIO;
    }
    close(efds[1]);
    return acc_gdrv_init(&v->b.drv, v->b.mem.base, v->b.mem.size, DRV_GPA, &dc,
                         &vfu_bar_ops, v);
}

static void
vfu_fini(struct vfu_bench *v)
{
    vmig_vfu_client_free(v->c);
    (void)waitpid(v->pid, NULL, 0);
    acc_flatmem_free(&v->b.mem);
    close(v->b.irq_fd);
    vmig_ctx_free(v->ctx);
}

int
main(void)
{
    struct vfu_bench v;
    struct bench b;

    if (bench_init(&b, 1) < 0) {
        fprintf(stderr, "bench_acc: setup failed\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("one queue pair, %u-deep; ratio = device speed / direct speed\n",
           NBUF);
    compress_row(&b, 64u << 10, 1500);
    compress_row(&b, 4u << 10, 20000);
    stop_row(&b);
    bench_fini(&b);
    if (vfu_init(&v) < 0) {
        fprintf(stderr, "bench_acc: vfio-user setup failed\n");
        return 1;
    }
    compress_row(&v.b, 64u << 10, 1500);
    compress_row(&v.b, 4u << 10, 20000);
    vfu_fini(&v);
    state_row(1);
    state_row(16);
    envelope_row(1);
    envelope_row(16);
    return 0;
}
