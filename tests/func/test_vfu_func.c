/* SPDX-License-Identifier: MIT */
/*
 * test_vfu_func.c - vfio-user end to end: a test device server in a child
 * process, driven by the vmig client (and by a hostile raw client).
 *
 * usage: test_vfu_func <case>   (basic, migrate-bulk, migrate-plain,
 *                                 reset, hostile, badstream, listen)
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include <vmig/vfu_server.h>
#include "vfu_testdev.h"
#include "func_check.h"
#include "vfu_func.h"

char dir[256];
int failures;

vmig_ctx_t *ctx;
static pid_t kids[16];
static int nkids;

/* Children are remembered so a failed case cannot leak a server. */
pid_t
spawn(const char *path, uint64_t seed, size_t size)
{
    pid_t p = testdev_spawn(path, seed, size);

    if (p > 0 && nkids < 16) {
        kids[nkids++] = p;
    }
    return p;
}

static void
reap_all(void)
{
    for (int i = 0; i < nkids; i++) {
        if (kill(kids[i], SIGKILL) == 0) {
            (void)waitpid(kids[i], NULL, 0);
        }
    }
}

void
sock_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s.sock", dir, name);
}

static int
reg_read64(struct vmig_vfu_client *c, uint64_t off, uint64_t *v)
{
    return vmig_vfu_client_region_read(c, 0, off, v, 8);
}

static int
reg_write64(struct vmig_vfu_client *c, uint64_t off, uint64_t v)
{
    return vmig_vfu_client_region_write(c, 0, off, &v, 8);
}

/* ------------------------------------------------------------- basic */

static void
case_basic(void)
{
    struct vmig_vfu_client *c = NULL;
    struct vmig_vfu_device_info di;
    struct vmig_vfu_region_info ri;
    struct vmig_vfu_irq_info ii;
    struct vmig_vfu_caps caps;
    char path[300];
    uint8_t *ram, *ram2, buf[64];
    uint64_t v;
    int mfd, efd, rfd;
    pid_t pid;
    struct pollfd p;

    sock_path(path, sizeof(path), "basic");
    pid = spawn(path, 1, STATE_SIZE);
    CHECK(pid > 0);
    CHECK_RC(connect_retry(ctx, path, VMIG_VFU_EXT__ALL, &c), 0);
    vmig_vfu_client_caps(c, &caps);
    CHECK(caps.ext == VMIG_VFU_EXT__ALL);
    CHECK(caps.max_msg_fds >= 1);
    CHECK_RC(vmig_vfu_client_device_info(c, &di), 0);
    CHECK(di.num_regions == 2 && di.num_irqs == 1);
    CHECK(di.flags & VMIG_VFU_DEV_RESET);
    CHECK_RC(vmig_vfu_client_region_info(c, 0, &ri, &rfd), 0);
    CHECK(ri.size == 4096 && rfd == -1 && !(ri.flags & VMIG_VFU_REGION_MMAP));
    CHECK_RC(vmig_vfu_client_region_info(c, 1, &ri, &rfd), 0);
    CHECK(ri.size == (64 << 10) && rfd >= 0 &&
          (ri.flags & VMIG_VFU_REGION_MMAP));
    /* the capability did not fit in 32 bytes: argsz says what it needs */
    CHECK((ri.flags & VMIG_VFU_REGION_CAPS) && ri.cap_offset == 0 &&
          ri.argsz == 32 + 16 + 2 * 16);
    {
        struct vmig_vfu_sparse_area sp[4];

        CHECK_RC(vmig_vfu_client_region_sparse(c, 1, sp, 4), 2);
        CHECK(sp[0].offset == 0 && sp[0].size == (16 << 10));
        CHECK(sp[1].offset == (32 << 10) && sp[1].size == (16 << 10));
        CHECK_RC(vmig_vfu_client_region_sparse(c, 0, sp, 4), 0);
    }
    {
        /* mmap the region fd and see what region reads see */
        uint8_t *bar1 = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                             rfd, (off_t)ri.offset);

        CHECK(bar1 != MAP_FAILED);
        CHECK(memcmp(bar1, "bar1", 4) == 0);
        memcpy(bar1 + 100, "hello", 5);
        CHECK_RC(vmig_vfu_client_region_read(c, 1, 100, buf, 5), 0);
        CHECK(memcmp(buf, "hello", 5) == 0);
        munmap(bar1, ri.size);
        close(rfd);
    }
    CHECK_RC(vmig_vfu_client_region_info(c, 5, &ri, NULL), -EINVAL);
    CHECK_RC(vmig_vfu_client_irq_info(c, 0, &ii), 0);
    CHECK(ii.count == 1 && (ii.flags & VMIG_VFU_IRQ_INFO_EVENTFD));
    CHECK_RC(vmig_vfu_client_region_read(c, 0, 4090, buf, 8), -EINVAL);
    CHECK_RC(vmig_vfu_client_region_read(c, 0, UINT64_MAX - 2, buf, 4),
             -EINVAL);

    /* registers */
    CHECK_RC(reg_write64(c, TD_SCRATCH, 0x1122334455667788ull), 0);
    CHECK_RC(reg_read64(c, TD_SCRATCH, &v), 0);
    CHECK(v == 0x1122334455667788ull);

    /* guest RAM: a memfd, mapped by fd at iova 1 MiB */
    mfd = memfd_create("guest-ram", MFD_CLOEXEC);
    CHECK(mfd >= 0 && ftruncate(mfd, 2 << 20) == 0);
    ram = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    CHECK(ram != MAP_FAILED);
    CHECK_RC(vmig_vfu_client_dma_map(c, 1 << 20, 1 << 20,
                                     VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                     mfd, 0, ram),
             0);
    /* overlapping map refused, exact unmap required */
    CHECK_RC(vmig_vfu_client_dma_map(c, (1 << 20) + 4096, 4096,
                                     VMIG_VFU_DMA_READ, mfd, 0, ram),
             -EEXIST);
    CHECK_RC(vmig_vfu_client_dma_unmap(c, 1 << 20, 4096), -ENOENT);
    /* message-based window: no fd, served from ram2 by the client */
    ram2 = calloc(1, 1 << 16);
    CHECK(ram2 != NULL);
    CHECK_RC(vmig_vfu_client_dma_map(c, 8 << 20, 1 << 16,
                                     VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE, -1,
                                     0, ram2),
             0);

    /* interrupt eventfd */
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    CHECK(efd >= 0);
    CHECK_RC(vmig_vfu_client_set_irqs(c, 0, 0, 1, &efd), 0);

    /* DMA through the mmap'ed window */
    for (int i = 0; i < 64; i++) {
        ram[i] = (uint8_t)i;
    }
    CHECK_RC(reg_write64(c, TD_SRC, 1 << 20), 0);
    CHECK_RC(reg_write64(c, TD_DST, (1 << 20) + 4096), 0);
    CHECK_RC(reg_write64(c, TD_DOORBELL, 1), 0);
    /* map offset 0 = iova 1 MiB: dst lands at ram + 4096 */
    for (int i = 0; i < 64; i++) {
        CHECK(ram[4096 + i] == (uint8_t)(i + 1));
    }
    p.fd = efd;
    p.events = POLLIN;
    CHECK_RC(poll(&p, 1, 2000), 1);
    CHECK(read(efd, &v, 8) == 8 && v == 1);

    /* zero-copy DMA through pointers into the mmap'ed window */
    CHECK_RC(reg_write64(c, TD_SRC, 1 << 20), 0);
    CHECK_RC(reg_write64(c, TD_DST, (1 << 20) + 8192), 0);
    CHECK_RC(reg_write64(c, TD_ZEROCOPY, 1), 0);
    for (int i = 0; i < 64; i++) {
        CHECK(ram[8192 + i] == (uint8_t)(i + 1));
    }
    /* a range crossing the end of the map is refused */
    CHECK_RC(reg_write64(c, TD_DST, (2 << 20) - 32), 0);
    CHECK_RC(reg_write64(c, TD_ZEROCOPY, 1), -EFAULT);

    /* DMA through DMA_READ/DMA_WRITE messages, served during our write */
    for (int i = 0; i < 64; i++) {
        ram2[i] = (uint8_t)(100 + i);
    }
    CHECK_RC(reg_write64(c, TD_SRC, 8 << 20), 0);
    CHECK_RC(reg_write64(c, TD_DST, (8 << 20) + 1024), 0);
    CHECK_RC(reg_write64(c, TD_DOORBELL, 1), 0);
    for (int i = 0; i < 64; i++) {
        CHECK(ram2[1024 + i] == (uint8_t)(101 + i));
    }
    CHECK_RC(reg_read64(c, TD_COUNT, &v), 0);
    CHECK(v == 2);
    /* no pointers into memory the server has not mmap'ed */
    CHECK_RC(reg_write64(c, TD_ZEROCOPY, 1), -EOPNOTSUPP);
    CHECK_RC(poll(&p, 1, 2000), 1);
    CHECK(read(efd, &v, 8) == 8);
    /* a device thread doing message-based DMA while the client is idle:
     * the client serves it from vmig_vfu_client_service() */
    memset(ram2 + 2048, 0, 64);
    CHECK_RC(reg_write64(c, TD_DST, (8 << 20) + 2048), 0);
    CHECK_RC(reg_write64(c, TD_ASYNC, 1), 0);
    {
        int served = 0;

        for (int i = 0; i < 50 && poll(&p, 1, 0) == 0; i++) {
            int r = vmig_vfu_client_service(c, 100);

            CHECK(r >= 0);
            served += r;
        }
        /* the DMA_READ may already have been served while the ASYNC
         * write itself waited for its reply */
        CHECK(served >= 1 && served <= 2);
    }
    CHECK_RC(poll(&p, 1, 2000), 1);
    CHECK(read(efd, &v, 8) == 8);
    for (int i = 0; i < 64; i++) {
        CHECK(ram2[2048 + i] == (uint8_t)(101 + i));
    }
    /* DMA outside every map fails the doorbell, device survives */
    CHECK_RC(reg_write64(c, TD_SRC, 64 << 20), 0);
    CHECK_RC(reg_write64(c, TD_DOORBELL, 1), -EFAULT);

    /* migration flags, state, extensions outside PRE_COPY */
    CHECK_RC(vmig_vfu_client_mig_flags(c, &v), 0);
    CHECK(v == (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P |
                VMIG_MIGRATION_PRE_COPY));
    {
        uint64_t a, b;

        CHECK_RC(vmig_vfu_client_precopy_info(c, &a, &b), -EINVAL);
        CHECK_RC(vmig_vfu_client_data_size(c, &a), 0);
        CHECK(a >= STATE_SIZE);
    }
    /* DMA logging (framework-built-in: the device writes via
     * vmig_vfu_dma_write) */
    {
        struct vmig_vfu_log_range r = {1 << 20, 1 << 20};
        uint64_t bm[4] = {0};

        CHECK_RC(vmig_vfu_client_log_start(c, 4096, &r, 1), 0);
        CHECK_RC(vmig_vfu_client_log_start(c, 4096, &r, 1), -EBUSY);
        CHECK_RC(reg_write64(c, TD_SRC, 1 << 20), 0);
        CHECK_RC(reg_write64(c, TD_DST, (1 << 20) + 5 * 4096 + 4070), 0);
        CHECK_RC(reg_write64(c, TD_DOORBELL, 1), 0);
        CHECK_RC(vmig_vfu_client_log_report(c, 1 << 20, 1 << 20, 4096, bm), 0);
        /* 64 bytes at page 5 offset 4070 straddle pages 5 and 6 */
        if (bm[0] != ((1ull << 5) | (1ull << 6)) || bm[1] != 0) {
            fprintf(stderr, "bitmap %#llx %#llx\n", (unsigned long long)bm[0],
                    (unsigned long long)bm[1]);
        }
        CHECK(bm[0] == ((1ull << 5) | (1ull << 6)) && bm[1] == 0);
        CHECK_RC(vmig_vfu_client_log_report(c, 1 << 20, 1 << 20, 4096, bm), 0);
        CHECK(bm[0] == 0);
        /* zero-copy writes are logged at vmig_vfu_dma_put() */
        CHECK_RC(reg_write64(c, TD_DST, (1 << 20) + 7 * 4096), 0);
        CHECK_RC(reg_write64(c, TD_ZEROCOPY, 1), 0);
        CHECK_RC(vmig_vfu_client_log_report(c, 1 << 20, 1 << 20, 4096, bm), 0);
        CHECK(bm[0] == (1ull << 7));
        CHECK_RC(vmig_vfu_client_log_stop(c), 0);
        CHECK_RC(vmig_vfu_client_log_stop(c), -EINVAL);
    }
    CHECK_RC(vmig_vfu_client_dma_unmap(c, 8 << 20, 1 << 16), 0);
    CHECK_RC(vmig_vfu_client_dma_unmap(c, 1 << 20, 1 << 20), 0);
    vmig_vfu_client_free(c);
    close(efd);
    munmap(ram, 2 << 20);
    close(mfd);
    free(ram2);
    CHECK_RC(testdev_stop(pid), 0);
}

/* --------------------------------------------------------- migration */

struct membuf {
    uint8_t *p;
    size_t len, cap;
};

static int
sink(void *opaque, const void *buf, size_t len)
{
    struct membuf *m = opaque;

    if (len > m->cap - m->len) {
        return -E2BIG;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static void
do_migrate(uint32_t ext, const char *tag)
{
    struct vmig_vfu_client *a = NULL, *b = NULL;
    struct membuf mb = {0};
    char pa[300], pb[300];
    uint64_t hsrc, hdst, init, dirty, n;
    enum vmig_state st;
    pid_t ka, kb;
    uint8_t tmp[8];

    snprintf(pa, sizeof(pa), "%s/src-%s.sock", dir, tag);
    snprintf(pb, sizeof(pb), "%s/dst-%s.sock", dir, tag);
    ka = spawn(pa, 7, STATE_SIZE);
    kb = spawn(pb, 8, STATE_SIZE);
    CHECK(ka > 0 && kb > 0);
    CHECK_RC(connect_retry(ctx, pa, ext, &a), 0);
    CHECK_RC(connect_retry(ctx, pb, ext, &b), 0);
    mb.cap = 4 * STATE_SIZE;
    mb.p = malloc(mb.cap);
    CHECK(mb.p != NULL);

    CHECK_RC(reg_write64(a, TD_SCRATCH, 0xabcdef), 0);
    CHECK_RC(reg_write64(a, TD_MUTATE, 12345), 0);
    CHECK_RC(vmig_vfu_client_region_read(a, 0, TD_HASH, &hdst, 8), 0);
    CHECK_RC(vmig_vfu_client_region_read(b, 0, TD_HASH, &hsrc, 8), 0);
    CHECK(hsrc != hdst); /* different seeds */

    /* PRE_COPY: initial data, then "no more for now" */
    CHECK_RC(vmig_vfu_client_set_state(a, VMIG_STATE_PRE_COPY), 0);
    if (ext & VMIG_VFU_EXT_PRECOPY_INFO) {
        CHECK_RC(vmig_vfu_client_precopy_info(a, &init, &dirty), 0);
        CHECK(init == STATE_SIZE && dirty == 0);
    } else {
        CHECK_RC(vmig_vfu_client_precopy_info(a, &init, &dirty), -EOPNOTSUPP);
    }
    CHECK_RC(vmig_vfu_client_mig_save(a, sink, &mb, &n), -ENOMSG);
    CHECK(n > STATE_SIZE && mb.len == n);
    CHECK_RC(vmig_vfu_client_mig_read(a, tmp, sizeof(tmp)), -ENOMSG);
    /* the device keeps running and dirties state */
    CHECK_RC(reg_write64(a, TD_MUTATE, 1), 0);
    CHECK_RC(reg_write64(a, TD_MUTATE, 2u << 20), 0);
    if (ext & VMIG_VFU_EXT_PRECOPY_INFO) {
        CHECK_RC(vmig_vfu_client_precopy_info(a, &init, &dirty), 0);
        CHECK(init == 0 && dirty == 2 * (64 << 10));
    }
    CHECK_RC(vmig_vfu_client_mig_save(a, sink, &mb, &n), -ENOMSG);
    CHECK(n == 2 * ((64 << 10) + 16));
    CHECK_RC(vmig_vfu_client_region_read(a, 0, TD_HASH, &hsrc, 8), 0);

    /* STOP_COPY: the rest, then a permanent end */
    CHECK_RC(vmig_vfu_client_set_state(a, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_region_read(a, 0, TD_HASH, tmp, 8), -EBUSY);
    CHECK_RC(vmig_vfu_client_set_state(a, VMIG_STATE_PRE_COPY), -EINVAL);
    CHECK_RC(vmig_vfu_client_get_state(a, &st), 0);
    CHECK(st == VMIG_STATE_STOP_COPY);
    /* pulled in bounded pieces straight into the buffer (what the
     * engine's backend does): each full piece says "more may follow",
     * the last one the end */
    {
        const size_t piece = 24; /* STOP_COPY has a few records left */
        size_t got = 0, before = mb.len;
        int ret;

        CHECK_RC(vmig_vfu_client_mig_pull(a, tmp, 0, &got), -EINVAL);
        do {
            CHECK(mb.cap - mb.len >= piece);
            if (mb.cap - mb.len < piece) {
                break;
            }
            ret = vmig_vfu_client_mig_pull(a, mb.p + mb.len, piece, &got);
            CHECK(got <= piece);
            CHECK(ret != -EAGAIN || got == piece);
            mb.len += got;
        } while (ret == -EAGAIN);
        CHECK_RC(ret, 0);
        n = mb.len - before;
        CHECK(n > piece); /* several pieces */
    }
    CHECK_RC(vmig_vfu_client_mig_read(a, tmp, sizeof(tmp)), 0);
    CHECK_RC(vmig_vfu_client_mig_save(a, sink, &mb, &n), 0);
    CHECK(n == 0);
    CHECK_RC(vmig_vfu_client_set_state(a, VMIG_STATE_STOP), 0);
    CHECK_RC(vmig_vfu_client_mig_read(a, tmp, sizeof(tmp)), -EBUSY);

    /* restore into the second process: RUNNING -> RESUMING goes
     * through STOP inside the server */
    CHECK_RC(vmig_vfu_client_mig_write(b, mb.p, 16), -EBUSY);
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_region_read(b, 0, TD_HASH, tmp, 8), -EBUSY);
    CHECK_RC(vmig_vfu_client_mig_write(b, mb.p, mb.len), 0);
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), 0);
    CHECK_RC(vmig_vfu_client_region_read(b, 0, TD_HASH, &hdst, 8), 0);
    CHECK(hsrc == hdst);
    CHECK_RC(reg_read64(b, TD_SCRATCH, &n), 0);
    CHECK(n == 0xabcdef);
    printf("%s: %zu bytes migrated, state hash %016llx matches\n", tag, mb.len,
           (unsigned long long)hdst);

    vmig_vfu_client_free(a);
    vmig_vfu_client_free(b);
    free(mb.p);
    CHECK_RC(testdev_stop(ka), 0);
    CHECK_RC(testdev_stop(kb), 0);
}

static void
case_badstream(void)
{
    struct vmig_vfu_client *b = NULL;
    char pb[300];
    enum vmig_state st;
    uint8_t junk[100];
    pid_t kb;

    sock_path(pb, sizeof(pb), "bad");
    kb = spawn(pb, 8, 1 << 20);
    CHECK(kb > 0);
    CHECK_RC(connect_retry(ctx, pb, 0, &b), 0);
    memset(junk, 0x5a, sizeof(junk));
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_write(b, junk, sizeof(junk)), 0);
    /* RESUMING -> STOP validates and refuses; device stays RESUMING */
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), -EINVAL);
    CHECK_RC(vmig_vfu_client_get_state(b, &st), 0);
    CHECK(st == VMIG_STATE_RESUMING);
    CHECK_RC(vmig_vfu_client_reset(b), 0);
    CHECK_RC(vmig_vfu_client_get_state(b, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);
    vmig_vfu_client_free(b);
    CHECK_RC(testdev_stop(kb), 0);
}

/* The test device's state byte @i for @seed (its seeding generator). */
static uint8_t
td_seed_byte(uint64_t seed, size_t i)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    for (size_t k = 0; k <= i; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return (uint8_t)x;
}

/* Stream record {u32 type, u32 len, u64 off} + @len bytes into @p. */
static size_t
td_rec(uint8_t *p, uint32_t type, uint64_t off, const void *d, uint32_t len)
{
    memcpy(p, &type, 4);
    memcpy(p + 4, &len, 4);
    memcpy(p + 8, &off, 8);
    if (len > 0) {
        memcpy(p + 16, d, len);
    }
    return 16 + (size_t)len;
}

/*
 * A resuming stream applies all or nothing: records of a stream that
 * fails validation change no byte, and a record covering part of the
 * state changes only its bytes.
 */
static void
case_resume_atomic(void)
{
    struct vmig_vfu_client *b = NULL;
    uint8_t s[64], v = (uint8_t)(td_seed_byte(8, 70000) ^ 0xff);
    uint64_t h0, h;
    char pb[300];
    size_t n;
    pid_t kb;

    sock_path(pb, sizeof(pb), "atom");
    kb = spawn(pb, 8, 1 << 20);
    CHECK(kb > 0);
    CHECK_RC(connect_retry(ctx, pb, 0, &b), 0);
    CHECK_RC(reg_read64(b, TD_HASH, &h0), 0);
    /* first (the shadow is fresh): one byte inside a 64 KiB chunk, sent a
     * byte at a time; only it changes (flipping it back restores the
     * hash) */
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RESUMING), 0);
    n = td_rec(s, 1, 70000, &v, 1);
    n += td_rec(s + n, 3, 0, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_RC(vmig_vfu_client_mig_write(b, s + i, 1), 0);
    }
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), 0);
    CHECK_RC(reg_read64(b, TD_HASH, &h), 0);
    CHECK(h != h0);
    CHECK_RC(reg_write64(b, TD_MUTATE, 70000), 0);
    CHECK_RC(reg_read64(b, TD_HASH, &h), 0);
    CHECK(h == h0);
    /* a valid record, then no END: refused, nothing applied */
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RESUMING), 0);
    n = td_rec(s, 1, 70000, &v, 1);
    CHECK_RC(vmig_vfu_client_mig_write(b, s, n), 0);
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), -EINVAL);
    /* a valid record, END, then a stray byte: refused too */
    n = td_rec(s, 1, 70000, &v, 1);
    n += td_rec(s + n, 3, 0, NULL, 0);
    s[n++] = 0;
    CHECK_RC(vmig_vfu_client_mig_write(b, s, n), 0);
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), -EINVAL);
    n = td_rec(s, 3, 0, NULL, 0);
    CHECK_RC(vmig_vfu_client_mig_write(b, s, n), 0);
    CHECK_RC(vmig_vfu_client_set_state(b, VMIG_STATE_RUNNING), 0);
    CHECK_RC(reg_read64(b, TD_HASH, &h), 0);
    CHECK(h == h0);
    vmig_vfu_client_free(b);
    CHECK_RC(testdev_stop(kb), 0);
}

/* ------------------------------------------------------------- reset */

static int
discard(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    (void)buf;
    (void)len;
    return 0;
}

static void
case_reset(void)
{
    struct vmig_vfu_client *c = NULL, *p = NULL;
    char path[300];
    uint8_t buf[4096];
    uint64_t n;
    pid_t k;

    sock_path(path, sizeof(path), "reset");
    k = spawn(path, 3, 1 << 20);
    CHECK(k > 0);
    CHECK_RC(connect_retry(ctx, path, VMIG_VFU_EXT__ALL, &c), 0);

    /* PRE_COPY, client-requested reset: the reader gets ENODEV */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), sizeof(buf));
    CHECK_RC(vmig_vfu_client_reset(c), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), -ENODEV);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), -ENODEV);

    /* PRE_COPY, device-internal reset (guest FLR) */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), sizeof(buf));
    CHECK_RC(reg_write64(c, TD_RESET, 1), 0);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), -ENODEV);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), -ENODEV);

    /* STOP_COPY, reset mid-stream */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), sizeof(buf));
    CHECK_RC(vmig_vfu_client_reset(c), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), -ENODEV);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), -ENODEV);

    /* RESUMING, reset mid-stream: the writer gets ENODEV too */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_write(c, buf, 100), 0);
    CHECK_RC(vmig_vfu_client_reset(c), 0);
    CHECK_RC(vmig_vfu_client_mig_write(c, buf, 100), -ENODEV);

    /* a new session after the reset works again, to its end */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), 0);
    CHECK(n > (1 << 20));
    /* a reset after the end: no session was cut, plain EBUSY */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, buf, sizeof(buf)), -EBUSY);
    vmig_vfu_client_free(c);

    /* the same over the message path (plain client) */
    CHECK_RC(connect_retry(ctx, path, 0, &p), 0);
    CHECK_RC(vmig_vfu_client_set_state(p, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(p, buf, sizeof(buf)), sizeof(buf));
    CHECK_RC(vmig_vfu_client_reset(p), 0);
    CHECK_RC(vmig_vfu_client_mig_save(p, discard, NULL, &n), -ENODEV);
    CHECK_RC(vmig_vfu_client_set_state(p, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_write(p, buf, 100), 0);
    CHECK_RC(vmig_vfu_client_reset(p), 0);
    CHECK_RC(vmig_vfu_client_mig_write(p, buf, 100), -ENODEV);
    vmig_vfu_client_free(p);
    CHECK_RC(testdev_stop(k), 0);
}

static void
case_tool(const char *tool)
{
    struct vmig_vfu_client *c = NULL;
    struct vmig_vfu_device_info di;
    uint64_t n;
    int sv[2], status;
    pid_t pid;

    CHECK(tool != NULL);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char arg[32];
        int fd = dup(sv[1]); /* without CLOEXEC */

        snprintf(arg, sizeof(arg), "--fd=%d", fd);
        execl(tool, tool, arg, "--size=1", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    CHECK_RC(vmig_vfu_client_adopt(ctx, sv[0], VMIG_VFU_EXT__ALL, &c), 0);
    CHECK_RC(vmig_vfu_client_device_info(c, &di), 0);
    CHECK(di.num_regions == 2);
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), 0);
    CHECK(n > (1 << 20));
    vmig_vfu_client_free(c);
    /* the backend ends when its only client leaves */
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ------------------------------------------------------------- listen */

struct listen_job {
    struct vmig_vfu_server *s;
    const char *path;
    int ret;
};

static void *
listen_main(void *arg)
{
    struct listen_job *j = arg;

    j->ret = vmig_vfu_server_listen(j->s, j->path);
    return NULL;
}

/*
 * A client that connects the moment the socket path appears (as a VMM or
 * a test spawning the server does) is never refused: the path must not
 * exist before the socket listens.  The server listens in a thread while
 * this one spins on stat() and connects at once, LISTEN_ROUNDS times.
 */
#define LISTEN_ROUNDS 400
static void
case_listen(void)
{
    static const struct vmig_vfu_dev_ops noops = {0};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[300];
    int refused = 0, other = 0;

    sock_path(path, sizeof(path), "listen");
    CHECK(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < LISTEN_ROUNDS; i++) {
        struct listen_job j = {.path = path};
        struct timespec t0, t;
        struct stat st;
        pthread_t th;
        int fd;

        CHECK_RC(vmig_vfu_server_new(ctx, &noops, NULL, NULL, &j.s), 0);
        CHECK(pthread_create(&th, NULL, listen_main, &j) == 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec > 30) {
                break; /* the join below tells what happened */
            }
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            refused += errno == ECONNREFUSED;
            other += errno != ECONNREFUSED;
        }
        close(fd);
        pthread_join(th, NULL);
        CHECK_RC(j.ret, 0);
        vmig_vfu_server_free(j.s);
        CHECK(access(path, F_OK) < 0); /* the server removed its socket */
    }
    if (refused + other > 0) {
        fprintf(stderr,
                "listen: %d of %d connections made as the socket appeared "
                "were refused, %d failed otherwise\n",
                refused, LISTEN_ROUNDS, other);
    }
    CHECK(refused == 0 && other == 0);
    /* nothing is left beside it: no temporary name */
    {
        DIR *d = opendir(dir);
        struct dirent *e;
        int left = 0;

        CHECK(d != NULL);
        while ((e = readdir(d)) != NULL) {
            left += strncmp(e->d_name, "listen", 6) == 0;
        }
        closedir(d);
        CHECK(left == 0);
    }
}

static void
log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (getenv("VMIG_TEST_VERBOSE") != NULL || level <= VMIG_LOG_ERR) {
        fprintf(stderr, "client: %s\n", msg);
    }
}

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    bool all = strcmp(which, "all") == 0;
    char tmpl[] = "/tmp/vmig-vfu-XXXXXX";

    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s", tmpl);
    if (vmig_ctx_new("client", log_sink, NULL, &ctx) < 0) {
        return 1;
    }
    if (all || strcmp(which, "basic") == 0) {
        case_basic();
    }
    if (all || strcmp(which, "migrate-bulk") == 0) {
        do_migrate(VMIG_VFU_EXT__ALL, "bulk");
    }
    if (all || strcmp(which, "migrate-plain") == 0) {
        do_migrate(0, "plain");
    }
    if (all || strcmp(which, "badstream") == 0) {
        case_badstream();
        case_resume_atomic();
    }
    if (all || strcmp(which, "reset") == 0) {
        case_reset();
    }
    if (all || strcmp(which, "hostile") == 0) {
        case_hostile();
    }
    if (all || strcmp(which, "listen") == 0) {
        case_listen();
    }
    if (strcmp(which, "tool") == 0) {
        case_tool(argc > 2 ? argv[2] : NULL);
    }
    reap_all();
    vmig_ctx_free(ctx);
    {
        char cmd[400];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    printf("%s: %s\n", which, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
