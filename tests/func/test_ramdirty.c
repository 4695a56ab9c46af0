/* SPDX-License-Identifier: MIT */
/*
 * test_ramdirty.c - the guest-RAM dirty aggregator (<vmig/ramdirty.h>)
 * against real writers: this process's "vCPU" writing guest RAM (a memfd)
 * and two vfio-user test devices in child processes writing it by DMA,
 * one logging in 4 KiB pages, one made to log in 64 KiB pages.
 *
 * usage: test_ramdirty <case> [hash]
 *   exact     CPU and device writes show up exactly; nothing written,
 *             nothing reported; read-and-clear
 *   subrange  sub-range collections report their pages only and keep the
 *             rest for later
 *   converge  a precopy-style copy loop while a vCPU thread and a device
 *             thread write, ending in a byte-identical copy
 *   negotiate a device refusing small DMA logging pages gets a larger
 *             one; a device refusing every size fails the start cleanly
 * "hash" uses the portable CPU tracker instead of userfaultfd.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <vmig/ramdirty.h>
#include <vmig/vfu_client.h>
#include <vmig/vfu_server.h>
#include "vfu_testdev.h"
#include "func_check.h"

#define PG 4096u
#define A_IOVA 0x100000ull /* region 0: 4 MiB at 1 MiB */
#define A_LEN (4u << 20)
#define B_IOVA 0x1000000ull /* region 1: 2 MiB at 16 MiB */
#define B_LEN (2u << 20)
#define A_PAGES (A_LEN / PG)
#define B_PAGES (B_LEN / PG)

static char dir[256];
static int failures;
static vmig_ctx_t *ctx;
static pid_t kids[8];
static int nkids;
static enum vmig_dirty_method method = VMIG_DIRTY_AUTO;

/* The test bench: guest RAM, two devices, an aggregator. */
struct bench {
    int mfd;
    uint8_t *ram; /* region 0 then region 1 */
    struct vmig_vfu_client *c[2];
    struct vmig_ramdirty *rd;
};

static int
dev_dma_write(struct vmig_vfu_client *c, uint64_t iova)
{
    uint64_t v[3] = {A_IOVA + 700 * PG, iova, 1};
    int ret = vmig_vfu_client_region_write(c, 0, TD_SRC, &v[0], 8);

    if (ret == 0) {
        ret = vmig_vfu_client_region_write(c, 0, TD_DST, &v[1], 8);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_region_write(c, 0, TD_DOORBELL, &v[2], 8);
    }
    return ret;
}

static void bench_down(struct bench *b);

static int
bench_setup(struct bench *b)
{
    int ret;

    b->mfd = memfd_create("guest-ram", MFD_CLOEXEC);
    if (b->mfd < 0 || ftruncate(b->mfd, A_LEN + B_LEN) < 0) {
        return -errno;
    }
    b->ram = mmap(NULL, A_LEN + B_LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
                  b->mfd, 0);
    if (b->ram == MAP_FAILED) {
        return -errno;
    }
    memset(b->ram, 0x5a, A_LEN + B_LEN); /* a guest that ran a while */
    for (int i = 0; i < 2; i++) {
        char path[300];
        pid_t p;

        snprintf(path, sizeof(path), "%s/td%d.sock", dir, i);
        p = testdev_spawn(path, (uint64_t)i + 1, 64 << 10);
        if (p < 0) {
            return (int)p;
        }
        kids[nkids++] = p;
        ret = connect_retry(ctx, path, VMIG_VFU_EXT__ALL, &b->c[i]);
        if (ret == 0) {
            ret = vmig_vfu_client_dma_map(
                b->c[i], A_IOVA, A_LEN, VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                b->mfd, 0, b->ram);
        }
        if (ret == 0) {
            ret = vmig_vfu_client_dma_map(
                b->c[i], B_IOVA, B_LEN, VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                b->mfd, A_LEN, b->ram + A_LEN);
        }
        if (ret < 0) {
            return ret;
        }
    }
    ret = vmig_ramdirty_new(ctx, method, &b->rd);
    if (ret == 0) {
        ret = vmig_ramdirty_add_region(b->rd, A_IOVA, b->ram, A_LEN);
    }
    if (ret == 0) {
        ret = vmig_ramdirty_add_region(b->rd, B_IOVA, b->ram + A_LEN, B_LEN);
    }
    if (ret == 1) {
        ret = vmig_ramdirty_add_device(b->rd, b->c[0], "td0", 0);
    }
    if (ret == 0) {
        ret = vmig_ramdirty_add_device(b->rd, b->c[1], "td1", 64 << 10);
    }
    if (ret == 1) {
        ret = vmig_ramdirty_start(b->rd);
    }
    return ret;
}

/* Everything up; on failure everything torn down again. */
static int
bench_up(struct bench *b)
{
    int ret;

    memset(b, 0, sizeof(*b));
    b->mfd = -1;
    b->ram = MAP_FAILED;
    ret = bench_setup(b);
    if (ret < 0) {
        bench_down(b);
    }
    return ret;
}

static void
bench_down(struct bench *b)
{
    vmig_ramdirty_free(b->rd);
    b->rd = NULL;
    for (int i = 0; i < 2; i++) {
        vmig_vfu_client_free(b->c[i]);
        b->c[i] = NULL;
    }
    while (nkids > 0) {
        (void)testdev_stop(kids[--nkids]);
    }
    if (b->ram != MAP_FAILED) {
        munmap(b->ram, A_LEN + B_LEN);
        b->ram = MAP_FAILED;
    }
    if (b->mfd >= 0) {
        close(b->mfd);
        b->mfd = -1;
    }
}

/* Does @bm (nbits) hold exactly the pages in @want (sorted or not)? */
static bool
exactly(const uint64_t *bm, size_t nbits, const unsigned int *want, size_t n)
{
    size_t set = 0;

    for (size_t i = 0; i < nbits; i++) {
        set += (bm[i / 64] >> (i % 64)) & 1;
    }
    for (size_t k = 0; k < n; k++) {
        if (!((bm[want[k] / 64] >> (want[k] % 64)) & 1)) {
            fprintf(stderr, "page %u missing\n", want[k]);
            return false;
        }
    }
    if (set != n) {
        fprintf(stderr, "%zu pages reported, %zu expected:", set, n);
        for (size_t i = 0; i < nbits; i++) {
            if ((bm[i / 64] >> (i % 64)) & 1) {
                fprintf(stderr, " %zu", i);
            }
        }
        fprintf(stderr, "\n");
        return false;
    }
    return true;
}

static uint64_t bma[A_PAGES / 64], bmb[B_PAGES / 64];

static void
case_exact(void)
{
    struct bench b;
    unsigned int want_a[6 + 16], want_b[] = {5, 7};

    CHECK_RC(bench_up(&b), 0);
    CHECK(vmig_ramdirty_page_size(b.rd) == PG);
    CHECK(vmig_ramdirty_device_page_size(b.rd, 0) == PG);
    CHECK(vmig_ramdirty_device_page_size(b.rd, 1) == (64 << 10));

    /* nothing written: nothing reported */
    memset(bma, 0, sizeof(bma));
    memset(bmb, 0, sizeof(bmb));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES), 0);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 1, 0, B_LEN, bmb, B_PAGES), 0);
    CHECK(exactly(bma, A_PAGES, NULL, 0));

    /* the vCPU */
    b.ram[3 * PG + 1] = 1;
    b.ram[100 * PG] = 2;
    b.ram[1023 * PG + PG - 1] = 3;
    b.ram[A_LEN + 5 * PG + 17] = 4;
    /* device 0 (4 KiB logging): one page, a straddle, region 1 */
    CHECK_RC(dev_dma_write(b.c[0], A_IOVA + 200 * PG + 8), 0);
    CHECK_RC(dev_dma_write(b.c[0], A_IOVA + 301 * PG - 32), 0);
    CHECK_RC(dev_dma_write(b.c[0], B_IOVA + 7 * PG), 0);
    /* device 1 (64 KiB logging): its whole 64 KiB page is reported */
    CHECK_RC(dev_dma_write(b.c[1], A_IOVA + 600 * PG + 100), 0);

    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES), 6 + 16);
    want_a[0] = 3;
    want_a[1] = 100;
    want_a[2] = 1023;
    want_a[3] = 200;
    want_a[4] = 300;
    want_a[5] = 301;
    for (unsigned int i = 0; i < 16; i++) {
        want_a[6 + i] = 592 + i; /* (1 MiB + 600 pages) in 64 KiB */
    }
    CHECK(exactly(bma, A_PAGES, want_a, 6 + 16));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 1, 0, B_LEN, bmb, B_PAGES), 2);
    CHECK(exactly(bmb, B_PAGES, want_b, 2));

    /* read-and-clear */
    memset(bma, 0, sizeof(bma));
    memset(bmb, 0, sizeof(bmb));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES), 0);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 1, 0, B_LEN, bmb, B_PAGES), 0);

    /* bad arguments */
    CHECK_RC(vmig_ramdirty_collect(b.rd, 2, 0, PG, bma, A_PAGES), -EINVAL);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 1, PG, bma, A_PAGES), -EINVAL);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN + PG, bma, A_PAGES + 1),
             -EINVAL);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES - 1),
             -EINVAL);
    CHECK_RC(vmig_ramdirty_add_region(b.rd, 0x8000000, b.ram, PG), -EBUSY);
    CHECK_RC(vmig_ramdirty_start(b.rd), -EBUSY);
    CHECK_RC(vmig_ramdirty_stop(b.rd), 0);
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES), -EINVAL);
    CHECK_RC(vmig_ramdirty_stop(b.rd), -EINVAL);
    /* logging is free again on both devices */
    {
        struct vmig_vfu_log_range r = {A_IOVA, A_LEN};

        CHECK_RC(vmig_vfu_client_log_start(b.c[0], PG, &r, 1), 0);
        CHECK_RC(vmig_vfu_client_log_stop(b.c[0]), 0);
    }
    bench_down(&b);
}

static void
case_subrange(void)
{
    struct bench b;
    uint64_t bm[A_PAGES / 64];
    unsigned int w1[] = {4, 14}, w2[] = {0, 1}, w3[2 + 14];

    CHECK_RC(bench_up(&b), 0);
    b.ram[10 * PG] = 1;
    b.ram[20 * PG] = 2;
    CHECK_RC(dev_dma_write(b.c[0], A_IOVA + 30 * PG), 0);
    CHECK_RC(dev_dma_write(b.c[1], A_IOVA + 40 * PG), 0); /* 32..47 */

    /* pages 16..31 */
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 16 * PG, 16 * PG, bm, 16), 2);
    CHECK(exactly(bm, 16, w1, 2));
    /* pages 36..37: inside device 1's 64 KiB page */
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 36 * PG, 2 * PG, bm, 2), 2);
    CHECK(exactly(bm, 2, w2, 2));
    /* the rest of that 64 KiB page and page 10 are still pending */
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bm, A_PAGES), 15);
    w3[0] = 10;
    for (unsigned int i = 0, k = 1; i < 16; i++) {
        if (32 + i != 36 && 32 + i != 37) {
            w3[k++] = 32 + i;
        }
    }
    CHECK(exactly(bm, A_PAGES, w3, 15));
    bench_down(&b);
}

/* ------------------------------------------------------------ converge */

struct writers {
    struct bench *b;
    bool stop;
    long cpu_writes;
    long dev_writes;
    int err;
};

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *
vcpu_main(void *arg)
{
    struct writers *w = arg;
    uint64_t s = 88172645463325252ull;

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 64; i++) {
            uint64_t x = rnd(&s);
            /* a hot set of 256 pages, and rarely anywhere */
            uint64_t page =
                (x >> 8) % 64 == 0 ? (x >> 20) % A_PAGES : (x >> 20) % 256;

            w->b->ram[page * PG + (x % PG)] = (uint8_t)(x >> 40);
            w->cpu_writes++;
        }
        usleep(100);
    }
    return NULL;
}

static void *
dev_main(void *arg)
{
    struct writers *w = arg;
    uint64_t s = 2463534242ull;

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        uint64_t x = rnd(&s);
        int ret =
            dev_dma_write(w->b->c[x % 2], A_IOVA + (512 + (x >> 8) % 128) * PG +
                                              ((x >> 20) % (PG - 64)));

        if (ret < 0 && w->err == 0) {
            w->err = ret;
        }
        w->dev_writes++;
    }
    return NULL;
}

/* Copy the pages set in @bm from @src to @dst; returns the count. */
static long
copy_dirty(uint8_t *dst, const uint8_t *src, const uint64_t *bm, size_t npg)
{
    long n = 0;

    for (size_t i = 0; i < npg; i++) {
        if ((bm[i / 64] >> (i % 64)) & 1) {
            memcpy(dst + i * PG, src + i * PG, PG);
            n++;
        }
    }
    return n;
}

static void
case_converge(void)
{
    struct bench b;
    struct writers w = {0};
    pthread_t tc, td;
    uint8_t *copy;
    long n = 0, sent = 0;
    int iter;

    CHECK_RC(bench_up(&b), 0);
    copy = malloc(A_LEN + B_LEN);
    CHECK(copy != NULL);
    w.b = &b;
    CHECK(pthread_create(&tc, NULL, vcpu_main, &w) == 0);
    CHECK(pthread_create(&td, NULL, dev_main, &w) == 0);

    /* pass 0: everything; then only what was written meanwhile */
    memcpy(copy, b.ram, A_LEN + B_LEN);
    sent = A_PAGES + B_PAGES;
    for (iter = 1; iter <= 50; iter++) {
        memset(bma, 0, sizeof(bma));
        memset(bmb, 0, sizeof(bmb));
        n = vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES);
        if (n >= 0) {
            long m = vmig_ramdirty_collect(b.rd, 1, 0, B_LEN, bmb, B_PAGES);

            n = m < 0 ? m : n + m;
        }
        if (n < 0) {
            break;
        }
        copy_dirty(copy, b.ram, bma, A_PAGES);
        copy_dirty(copy + A_LEN, b.ram + A_LEN, bmb, B_PAGES);
        sent += n;
        if (iter >= 5 && n <= 768) {
            break;
        }
        usleep(5000);
    }
    /* "pause the VM": both writers stop, then the final pass */
    __atomic_store_n(&w.stop, true, __ATOMIC_RELEASE);
    pthread_join(tc, NULL);
    pthread_join(td, NULL);
    CHECK(n >= 0);
    CHECK_RC(w.err, 0);
    memset(bma, 0, sizeof(bma));
    memset(bmb, 0, sizeof(bmb));
    n = vmig_ramdirty_collect(b.rd, 0, 0, A_LEN, bma, A_PAGES);
    CHECK(n >= 0);
    copy_dirty(copy, b.ram, bma, A_PAGES);
    CHECK(vmig_ramdirty_collect(b.rd, 1, 0, B_LEN, bmb, B_PAGES) >= 0);
    copy_dirty(copy + A_LEN, b.ram + A_LEN, bmb, B_PAGES);
    printf("converge: %d passes, %ld pages sent, %ld in the final pass; "
           "%ld vCPU writes, %ld device writes\n",
           iter, sent, n, w.cpu_writes, w.dev_writes);
    CHECK(w.cpu_writes > 0 && w.dev_writes > 0);
    CHECK(iter <= 50);
    CHECK(memcmp(copy, b.ram, A_LEN + B_LEN) == 0);
    free(copy);
    bench_down(&b);
}

/* ------------------------------------------------------------ negotiate */

/*
 * A "picky" device with its own DMA logging: it refuses page sizes below
 * its minimum with EINVAL.  Writing a u64 IOVA at offset 0 of region 0
 * stands for a DMA write the device made there; the report reads and
 * clears those marks in the page size asked for.  Device-side logging is
 * part of the migration framework, so it is a migratable device, with no
 * state to move.
 */
struct picky {
    struct vmig_vfu_server *srv;
    struct vmig_dev *dev;
    uint64_t min_page;
    uint64_t page;
    uint64_t marks[64];
    unsigned int nmarks;
};

static int
picky_access(void *opaque, unsigned int region, uint64_t off, void *buf,
             uint32_t len, bool wr)
{
    struct picky *p = opaque;

    if (region != 0 || off != 0 || len != 8 || !wr) {
        return -EINVAL;
    }
    if (p->page != 0 && p->nmarks < 64) {
        memcpy(&p->marks[p->nmarks++], buf, 8);
    }
    return 0;
}

static int
picky_log_start(void *opaque, uint64_t page_size,
                const struct vmig_dma_range *ranges, unsigned int n)
{
    struct picky *p = opaque;

    (void)ranges;
    (void)n;
    if (page_size < p->min_page) {
        return -EINVAL;
    }
    p->page = page_size;
    p->nmarks = 0;
    return 0;
}

static int
picky_log_stop(void *opaque)
{
    struct picky *p = opaque;

    p->page = 0;
    return 0;
}

static int
picky_log_report(void *opaque, uint64_t iova, uint64_t length,
                 uint64_t page_size, uint64_t *bitmap)
{
    struct picky *p = opaque;
    unsigned int k = 0;

    for (unsigned int i = 0; i < p->nmarks; i++) {
        uint64_t m = p->marks[i];

        if (m >= iova && m - iova < length) {
            uint64_t q = (m - iova) / page_size;

            bitmap[q / 64] |= 1ull << (q % 64);
        } else {
            p->marks[k++] = m; /* not asked for: kept */
        }
    }
    p->nmarks = k;
    return 0;
}

static int
picky_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    (void)opaque;
    (void)from;
    (void)to;
    (void)broken;
    return 0;
}

static ssize_t
picky_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    (void)opaque;
    (void)state;
    (void)buf;
    (void)len;
    return 0; /* no state */
}

static int
picky_load(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    (void)buf;
    return len == 0 ? 0 : -EINVAL;
}

static const struct vmig_vfu_dev_ops picky_ops = {
    .region_access = picky_access,
};

static const struct vmig_dev_ops picky_mig = {
    .step = picky_step,
    .save = picky_save,
    .load = picky_load,
    .log_start = picky_log_start,
    .log_stop = picky_log_stop,
    .log_report = picky_log_report,
};

static struct vmig_vfu_server *picky_srv;

static void
picky_term(int sig)
{
    (void)sig;
    vmig_vfu_server_stop(picky_srv); /* NOLINT(bugprone-signal-handler) */
}

static pid_t
picky_spawn(const char *path, uint64_t min_page)
{
    pid_t pid = fork();

    if (pid == 0) {
        struct picky p = {.min_page = min_page};
        vmig_ctx_t *c;

        if (vmig_ctx_new("picky", NULL, NULL, &c) < 0 ||
            vmig_dev_new(c, VMIG_MIGRATION_STOP_COPY, &picky_mig, &p, &p.dev) <
                0 ||
            vmig_vfu_server_new(c, &picky_ops, &p, p.dev, &p.srv) < 0 ||
            vmig_vfu_server_add_region(p.srv, 0, 4096, VMIG_VFU_REGION_WRITE,
                                       -1, 0) < 0) {
            _exit(1);
        }
        picky_srv = p.srv;
        signal(SIGTERM, picky_term);
        if (vmig_vfu_server_listen(p.srv, path) < 0) {
            _exit(1);
        }
        _exit(vmig_vfu_server_run(p.srv) < 0 ? 2 : 0);
    }
    for (int i = 0; pid > 0 && i < 500; i++) {
        struct stat st;

        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return pid;
        }
        usleep(10000);
    }
    return -1;
}

static void
case_negotiate(void)
{
    struct vmig_vfu_client *pc = NULL, *bad = NULL, *td = NULL;
    struct vmig_ramdirty *rd = NULL;
    char p1[300], p2[300], p3[300];
    uint8_t *ram;
    uint64_t bm[A_PAGES / 64], mark = A_IOVA + 101 * PG + 5;
    unsigned int want[4] = {100, 101, 102, 103};
    pid_t k;

    snprintf(p1, sizeof(p1), "%s/picky.sock", dir);
    snprintf(p2, sizeof(p2), "%s/never.sock", dir);
    snprintf(p3, sizeof(p3), "%s/td.sock", dir);
    k = picky_spawn(p1, 16 << 10);
    CHECK(k > 0);
    kids[nkids++] = k;
    k = picky_spawn(p2, 4 << 20); /* above what the aggregator offers */
    CHECK(k > 0);
    kids[nkids++] = k;
    k = testdev_spawn(p3, 1, 64 << 10);
    CHECK(k > 0);
    kids[nkids++] = k;
    ram = mmap(NULL, A_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    CHECK(ram != MAP_FAILED);
    CHECK_RC(connect_retry(ctx, p1, 0, &pc), 0);
    CHECK_RC(connect_retry(ctx, p2, 0, &bad), 0);
    CHECK_RC(connect_retry(ctx, p3, 0, &td), 0);

    /* 4 and 8 KiB refused, 16 KiB taken; a 16 KiB page = 4 RAM pages */
    CHECK_RC(vmig_ramdirty_new(ctx, method, &rd), 0);
    CHECK_RC(vmig_ramdirty_add_region(rd, A_IOVA, ram, A_LEN), 0);
    CHECK_RC(vmig_ramdirty_add_device(rd, pc, "picky", 0), 0);
    CHECK_RC(vmig_ramdirty_start(rd), 0);
    CHECK(vmig_ramdirty_device_page_size(rd, 0) == (16 << 10));
    CHECK_RC(vmig_vfu_client_region_write(pc, 0, 0, &mark, 8), 0);
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_ramdirty_collect(rd, 0, 0, A_LEN, bm, A_PAGES), 4);
    CHECK(exactly(bm, A_PAGES, want, 4));
    CHECK_RC(vmig_ramdirty_stop(rd), 0);
    vmig_ramdirty_free(rd);
    rd = NULL;

    /* one device refuses every size: start fails, nothing stays started */
    CHECK_RC(vmig_ramdirty_new(ctx, method, &rd), 0);
    CHECK_RC(vmig_ramdirty_add_region(rd, A_IOVA, ram, A_LEN), 0);
    CHECK_RC(vmig_ramdirty_add_device(rd, td, "td", 0), 0);
    CHECK_RC(vmig_ramdirty_add_device(rd, bad, "never", 0), 1);
    CHECK_RC(vmig_ramdirty_start(rd), -EINVAL);
    CHECK_RC(vmig_ramdirty_collect(rd, 0, 0, A_LEN, bm, A_PAGES), -EINVAL);
    {
        struct vmig_vfu_log_range r = {A_IOVA, A_LEN};

        /* the first device's logging was stopped again */
        CHECK_RC(vmig_vfu_client_log_start(td, PG, &r, 1), 0);
        CHECK_RC(vmig_vfu_client_log_stop(td), 0);
    }
    vmig_ramdirty_free(rd);
    vmig_vfu_client_free(pc);
    vmig_vfu_client_free(bad);
    vmig_vfu_client_free(td);
    munmap(ram, A_LEN);
}

static void
log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (level <= VMIG_LOG_WARNING || getenv("VMIG_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "test: %s\n", msg);
    }
}

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    bool all = strcmp(which, "all") == 0;

    if (argc > 2 && strcmp(argv[2], "hash") == 0) {
        method = VMIG_DIRTY_HASH;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/vmig-ramdirty.XXXXXX");
    if (mkdtemp(dir) == NULL || vmig_ctx_new("test", log_sink, NULL, &ctx)) {
        return 1;
    }
    if (all || strcmp(which, "exact") == 0) {
        case_exact();
    }
    if (all || strcmp(which, "subrange") == 0) {
        case_subrange();
    }
    if (all || strcmp(which, "converge") == 0) {
        case_converge();
    }
    if (all || strcmp(which, "negotiate") == 0) {
        case_negotiate();
    }
    for (int i = 0; i < nkids; i++) {
        kill(kids[i], SIGKILL);
        (void)waitpid(kids[i], NULL, 0);
    }
    vmig_ctx_free(ctx);
    {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    printf("%s: %s\n", which, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
