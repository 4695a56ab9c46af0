/* SPDX-License-Identifier: MIT */
/*
 * test_engine_vfu.c - the engine migrating real vfio-user device server
 * processes (the test device) through the vfio-user backend
 * (<vmig/engine_vfu.h>): source and destination engines in this process,
 * each with its own guest RAM (memfd, DMA-mapped into its own server by
 * fd passing) and its own eventfds, joined by a relay thread that can cut
 * the connection or corrupt a byte.
 *
 * usage: test_engine_vfu <case>
 *   ok       state byte-identical on the destination, RAM identical, the
 *            destination's DMA mapping and IRQ wiring work; then back
 *            (A -> B -> A)
 *   refuse   the destination has no such device: refused in HELLO
 *   corrupt  one byte of the device state flipped on the wire
 *   cut      the connection cut mid-stream
 *   middev   the connection cut in the middle of the device's state, once
 *            the destination wrote some of it into its device: the
 *            destination device discards it (reset, its own state back),
 *            and a second migration over a good connection succeeds
 *   killed   the destination's device server killed before it resumes
 *   rss      a 48 MiB device state migrates with this process (both VMMs)
 *            growing by less than 24 MiB: the state streams through, no
 *            side holds all of it (not checked under ASan, whose
 *            allocator keeps freed memory)
 *   cancel   vmig_engine_cancel() mid-transfer
 *   config   hostile VMM-config sections are refused whole, nothing applied
 *   cfgreplay PCI config space the source VMM wrote (and only that) is
 *            replayed into the destination device before it runs
 * Every failure case ends with the source device RUNNING, its state
 * unchanged, its DMA and IRQ working, and the source vCPU resumed.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig/engine_vfu.h>
#include <vmig/log.h>
#include <vmig/vfu_client.h>
#include "vfu_testdev.h"
#include "func_check.h"

#define RAM_SIZE (4u << 20)
#define STATE_SIZE (3u << 20)
/* middev: several engine chunks (4 MiB) of device state */
#define BIG_STATE_SIZE (14u << 20)
/* rss: a state well above what the VMMs may hold of it */
#define RSS_STATE_SIZE (48u << 20)
#define RSS_GROWTH_MAX (24u << 20)

static char dir[256];
static vmig_ctx_t *ctx;
static int failures;
static pid_t kids[8];
static int nkids;
static size_t state_size = STATE_SIZE;

/* One side: a VM with guest RAM, a vCPU flag, one test device. */
struct side {
    const char *name;
    pid_t pid;
    int memfd, efd;
    uint8_t *ram;
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
    struct vmig_engine *e;
    atomic_int running;
    atomic_int irq_asked;
    char path[320];
};

static int
h_pause(void *o)
{
    atomic_store(&((struct side *)o)->running, 0);
    return 0;
}

static int
h_resume(void *o)
{
    atomic_store(&((struct side *)o)->running, 1);
    return 0;
}

static int
h_irq_fd(void *o, unsigned int index, unsigned int vector)
{
    struct side *s = o;

    atomic_fetch_add(&s->irq_asked, 1);
    return index == 0 && vector == 0 ? s->efd : -EINVAL;
}

static const struct vmig_engine_vm_ops hooks = {
    .vcpu_pause = h_pause,
    .vcpu_resume = h_resume,
};

static int
side_up(struct side *s, const char *name, uint64_t seed, bool wire,
        const char *devname)
{
    struct vmig_engine_region rg = {"ram0", NULL, RAM_SIZE};
    struct vmig_engine_vfu_params p = {
        .name = devname, .irq_fd = h_irq_fd, .opaque = s};
    char *path = s->path;
    int ret = -ECONNREFUSED;

    memset(s, 0, sizeof(*s));
    s->name = name;
    snprintf(path, sizeof(s->path), "%s/%s.sock", dir, name);
    s->pid = testdev_spawn(path, seed, state_size);
    if (s->pid <= 0) {
        return -ECHILD;
    }
    if (nkids < 8) {
        kids[nkids++] = s->pid; /* killed at exit if a case fails */
    }
    for (int i = 0; i < 100 && ret == -ECONNREFUSED; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        ret = vmig_vfu_client_connect(ctx, path, VMIG_VFU_EXT__ALL, &s->c);
        if (ret == -ECONNREFUSED) {
            nanosleep(&ts, NULL);
        }
    }
    if (ret < 0) {
        return ret;
    }
    s->memfd = memfd_create("ram", MFD_CLOEXEC);
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->memfd < 0 || s->efd < 0 || ftruncate(s->memfd, RAM_SIZE) < 0) {
        return -errno;
    }
    s->ram =
        mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
    if (s->ram == MAP_FAILED) {
        return -errno;
    }
    ret = vmig_engine_vfu_new(ctx, s->c, &p, &s->b);
    if (ret == 0) {
        ret = vmig_engine_vfu_add_ram(s->b, 0, RAM_SIZE, s->memfd, 0, s->ram);
    }
    if (ret == 0 && wire) {
        /* the VMM's own wiring, as any VMM does at device realize */
        ret = vmig_engine_vfu_dma_map(s->b, 0, RAM_SIZE,
                                      VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE);
        if (ret == 0) {
            ret = vmig_engine_vfu_set_irq(s->b, 0, 0, s->efd);
        }
    }
    if (ret == 0) {
        rg.host = s->ram;
        ret = vmig_engine_new(ctx, &rg, 1, &hooks, s, &s->e);
    }
    if (ret == 0) {
        ret = vmig_engine_add_device(s->e, "td0", vmig_engine_vfu_ops(), s->b);
    }
    atomic_store(&s->running, wire ? 1 : 0);
    return ret;
}

static void
side_down(struct side *s)
{
    vmig_engine_free(s->e);
    vmig_engine_vfu_free(s->b);
    vmig_vfu_client_free(s->c);
    if (s->pid > 0) {
        (void)testdev_stop(s->pid);
    }
    if (s->ram != NULL && s->ram != MAP_FAILED) {
        munmap(s->ram, RAM_SIZE);
    }
    if (s->memfd > 0) {
        close(s->memfd);
    }
    if (s->efd > 0) {
        close(s->efd);
    }
    if (s->path[0] != '\0') {
        (void)unlink(s->path);
    }
    memset(s, 0, sizeof(*s));
}

static int
reg64(struct side *s, uint64_t off, uint64_t *v)
{
    return vmig_vfu_client_region_read(s->c, 0, off, v, 8);
}

static int
wreg64(struct side *s, uint64_t off, uint64_t v)
{
    return vmig_vfu_client_region_write(s->c, 0, off, &v, 8);
}

/* The guest's device work: DMA 64 bytes at @src -> @dst (+1 each) through
 * the device, then wait for its IRQ on our eventfd. */
static int
doorbell(struct side *s, uint64_t src, uint64_t dst)
{
    struct pollfd pf = {.fd = s->efd, .events = POLLIN};
    uint64_t cnt;
    int ret;

    for (unsigned int i = 0; i < 64; i++) {
        s->ram[src + i] = (uint8_t)(i * 3 + src);
    }
    ret = wreg64(s, TD_SRC, src);
    if (ret == 0) {
        ret = wreg64(s, TD_DST, dst);
    }
    if (ret == 0) {
        ret = wreg64(s, TD_DOORBELL, 1);
    }
    if (ret < 0) {
        return ret;
    }
    if (poll(&pf, 1, 5000) != 1 || read(s->efd, &cnt, 8) != 8) {
        return -ETIMEDOUT;
    }
    for (unsigned int i = 0; i < 64; i++) {
        if (s->ram[dst + i] != (uint8_t)(s->ram[src + i] + 1)) {
            return -EBADMSG;
        }
    }
    return 0;
}

/* ---- relay: source <-> destination, optionally hostile ---- */

struct relay {
    int a, b;                 /* our ends towards source and destination */
    uint64_t cut_at, flip_at; /* source->destination byte offsets; 0 off */
    /* cut once this destination engine took @cut_dev bytes of device
     * state (it writes each chunk into its device as it arrives) */
    struct vmig_engine *cut_dst;
    uint64_t cut_dev;
    pthread_t t;
};

static bool
dst_took(struct vmig_engine *e, uint64_t bytes)
{
    struct vmig_engine_stats *st = malloc(sizeof(*st));
    bool took;

    if (st == NULL) {
        return false;
    }
    vmig_engine_stats(e, st);
    took = st->ndevices > 0 && st->dev[0].bytes >= bytes;
    free(st);
    return took;
}

static void *
relay_main(void *arg)
{
    struct relay *r = arg;
    uint64_t fwd = 0;
    static uint8_t buf[1u << 16];

    for (;;) {
        struct pollfd p[2] = {{.fd = r->a, .events = POLLIN},
                              {.fd = r->b, .events = POLLIN}};

        if (poll(p, 2, 10000) <= 0) {
            break;
        }
        if (p[0].revents != 0) {
            ssize_t n = read(r->a, buf, sizeof(buf));

            if (n <= 0) {
                break;
            }
            if (r->flip_at != 0 && r->flip_at >= fwd &&
                r->flip_at < fwd + (uint64_t)n) {
                buf[r->flip_at - fwd] ^= 0x40;
            }
            if (r->cut_at != 0 && fwd + (uint64_t)n >= r->cut_at) {
                break;
            }
            if (r->cut_dst != NULL && dst_took(r->cut_dst, r->cut_dev)) {
                break;
            }
            fwd += (uint64_t)n;
            if (write(r->b, buf, (size_t)n) != n) {
                break;
            }
        }
        if (p[1].revents != 0) {
            ssize_t n = read(r->b, buf, sizeof(buf));

            if (n <= 0 || write(r->a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    shutdown(r->a, SHUT_RDWR);
    shutdown(r->b, SHUT_RDWR);
    return NULL;
}

struct incoming {
    struct side *s;
    int fd, ret;
    pthread_t t;
};

static void *
in_main(void *arg)
{
    struct incoming *in = arg;

    in->ret = vmig_engine_incoming(in->s->e, in->fd);
    return NULL;
}

/* Migrate @src to @dst through a relay; returns the source's result and
 * the destination's in *dst_ret. */
static int
migrate(struct side *src, struct side *dst, struct relay *r, int *dst_ret,
        bool cancel)
{
    int sp[2], dp[2], ret;
    struct incoming in = {.s = dst};

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, dp) < 0) {
        return -errno;
    }
    r->a = sp[1];
    r->b = dp[1];
    in.fd = dp[0];
    pthread_create(&r->t, NULL, relay_main, r);
    pthread_create(&in.t, NULL, in_main, &in);
    if (cancel) {
        struct vmig_engine_params prm = {.max_bandwidth = 8u << 20};

        vmig_engine_set_params(src->e, &prm);
    }
    ret = vmig_engine_migrate(src->e, sp[0]);
    shutdown(sp[0], SHUT_RDWR);
    pthread_join(in.t, NULL);
    pthread_join(r->t, NULL);
    close(sp[0]);
    close(sp[1]);
    close(dp[0]);
    close(dp[1]);
    *dst_ret = in.ret;
    return ret;
}

static void *
cancel_main(void *arg)
{
    struct side *s = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};

    for (int i = 0; i < 250; i++) {
        struct vmig_engine_stats st;

        vmig_engine_stats(s->e, &st);
        if (st.wire_bytes > (1u << 20)) {
            if (vmig_engine_cancel(s->e) < 0) {
                fprintf(stderr, "cancel: no migration running\n");
            }
            return NULL;
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* After a failed migration: the source is intact and works. */
static void
check_intact(struct side *s, uint64_t hash)
{
    uint64_t h;
    enum vmig_state st;

    CHECK(atomic_load(&s->running) == 1);
    CHECK_RC(vmig_vfu_client_get_state(s->c, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);
    CHECK_RC(vmig_engine_device_states(s->e), 0);
    CHECK_RC(reg64(s, TD_HASH, &h), 0);
    CHECK(h == hash);
    CHECK_RC(doorbell(s, 0x2000, 0x3000), 0);
}

static void
case_ok(void)
{
    struct side a, b;
    struct relay r = {0};
    uint64_t ha, hb;
    int dret;

    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    CHECK_RC(side_up(&b, "b", 2, true, "td"), 0);
    CHECK_RC(doorbell(&a, 0x1000, 0x1100), 0);
    CHECK_RC(wreg64(&a, TD_SCRATCH, 0x5eed), 0);
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);
    CHECK(ha != hb);
    CHECK_RC(migrate(&a, &b, &r, &dret, false), 0);
    CHECK_RC(dret, 0);
    CHECK(atomic_load(&b.running) == 1 && atomic_load(&a.running) == 0);
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);
    CHECK(ha == hb);
    CHECK(memcmp(a.ram, b.ram, RAM_SIZE) == 0);
    /* the destination's own mapping and wiring carry on the work */
    CHECK_RC(doorbell(&b, 0x4000, 0x4100), 0);
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);

    /* and back: A's VMM still holds its mapping; A is a fresh target */
    side_down(&a);
    CHECK_RC(side_up(&a, "a2", 3, false, "td"), 0);
    memset(&r, 0, sizeof(r));
    CHECK_RC(migrate(&b, &a, &r, &dret, false), 0);
    CHECK_RC(dret, 0);
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    CHECK(ha == hb);
    CHECK(atomic_load(&a.irq_asked) == 1);
    CHECK_RC(doorbell(&a, 0x5000, 0x5100), 0);
    side_down(&a);
    side_down(&b);
}

static void
case_fail(const char *which)
{
    struct side a, b;
    struct relay r = {0};
    uint64_t ha;
    pthread_t ct;
    int ret, dret;
    bool cancel = strcmp(which, "cancel") == 0;

    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    CHECK_RC(side_up(&b, "b", 2, true,
                     strcmp(which, "refuse") == 0 ? "other" : "td"),
             0);
    atomic_store(&b.running, 0); /* a destination waits for the VM */
    if (strcmp(which, "refuse") == 0) {
        /* a device of another name only: "no device named td0 here" */
        vmig_engine_free(b.e);
        b.e = NULL;
        {
            struct vmig_engine_region rg = {"ram0", b.ram, RAM_SIZE};

            CHECK_RC(vmig_engine_new(ctx, &rg, 1, &hooks, &b, &b.e), 0);
            CHECK_RC(
                vmig_engine_add_device(b.e, "td1", vmig_engine_vfu_ops(), b.b),
                0);
        }
    }
    for (size_t i = 0; i < RAM_SIZE; i += 64) {
        a.ram[i] = (uint8_t)(i >> 6 | 1); /* no zero pages: RAM_SIZE on wire */
    }
    CHECK_RC(doorbell(&a, 0x1000, 0x1100), 0);
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    if (strcmp(which, "corrupt") == 0) {
        /* RAM, then the device state: flip a byte inside the state */
        r.flip_at = RAM_SIZE + STATE_SIZE / 2;
    } else if (strcmp(which, "cut") == 0) {
        r.cut_at = RAM_SIZE / 2 + 4096;
    } else if (strcmp(which, "killed") == 0) {
        (void)testdev_stop(b.pid);
        b.pid = 0;
    }
    if (cancel) {
        pthread_create(&ct, NULL, cancel_main, &a);
    }
    ret = migrate(&a, &b, &r, &dret, cancel);
    if (cancel) {
        pthread_join(ct, NULL);
    }
    if (strcmp(which, "refuse") == 0) {
        CHECK_RC(ret, -EOPNOTSUPP);
    } else if (cancel) {
        CHECK_RC(ret, -ECANCELED);
    } else {
        CHECK(ret < 0);
    }
    CHECK(dret != 0);
    CHECK(atomic_load(&b.running) == 0);
    check_intact(&a, ha);
    side_down(&a);
    side_down(&b);
}

/* A failure in the middle of the device's state: the destination had
 * already written part of it into its device. */
static void
case_middev(void)
{
    struct side a, b;
    struct relay r = {0};
    struct vmig_engine_stats *st = malloc(sizeof(*st));
    uint64_t ha, hb0, hb;
    enum vmig_state ds;
    int ret, dret;

    CHECK(st != NULL);
    if (st == NULL) {
        return;
    }
    state_size = BIG_STATE_SIZE;
    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    CHECK_RC(side_up(&b, "b", 2, true, "td"), 0);
    atomic_store(&b.running, 0);
    CHECK_RC(doorbell(&a, 0x1000, 0x1100), 0);
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    CHECK_RC(reg64(&b, TD_HASH, &hb0), 0);
    r.cut_dst = b.e;
    r.cut_dev = 4u << 20;
    ret = migrate(&a, &b, &r, &dret, false);
    CHECK(ret < 0);
    CHECK(dret < 0);
    /* it was mid-stream: some of the state reached the destination's
     * device, not all of it */
    vmig_engine_stats(b.e, st);
    CHECK(st->ndevices == 1);
    CHECK(st->dev[0].bytes >= (4u << 20));
    CHECK(st->dev[0].bytes < BIG_STATE_SIZE);
    /* the destination discarded it: its device is reset, its own state */
    CHECK(atomic_load(&b.running) == 0);
    CHECK_RC(vmig_vfu_client_get_state(b.c, &ds), 0);
    CHECK(ds == VMIG_STATE_RUNNING);
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);
    CHECK(hb == hb0);
    check_intact(&a, ha);
    /* and it migrates over a good connection */
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    memset(&r, 0, sizeof(r));
    CHECK_RC(migrate(&a, &b, &r, &dret, false), 0);
    CHECK_RC(dret, 0);
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);
    CHECK(hb == ha);
    CHECK(memcmp(a.ram, b.ram, RAM_SIZE) == 0);
    CHECK(atomic_load(&b.running) == 1);
    free(st);
    side_down(&a);
    side_down(&b);
}

/* VmHWM of this process in bytes, or 0. */
static uint64_t
peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL &&
           sscanf(line, "VmHWM: %llu kB", &kib) != 1) {
    }
    fclose(f);
    return (uint64_t)kib << 10;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Both VMMs (this process) hold at most a few chunks of a device's state
 * while it streams through them. */
static void
case_rss(void)
{
    struct side a, b;
    struct relay r = {0};
    uint64_t ha, hb, before, after;
    int dret;

    state_size = RSS_STATE_SIZE;
    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    CHECK_RC(side_up(&b, "b", 2, true, "td"), 0);
    CHECK_RC(doorbell(&a, 0x1000, 0x1100), 0);
    CHECK_RC(reg64(&a, TD_HASH, &ha), 0);
    /* both sides' guest RAM is resident before: only the device state
     * passing through counts */
    memset(b.ram, 0, RAM_SIZE);
    before = peak_rss();
    CHECK_RC(migrate(&a, &b, &r, &dret, false), 0);
    CHECK_RC(dret, 0);
    after = peak_rss();
    CHECK_RC(reg64(&b, TD_HASH, &hb), 0);
    CHECK(ha == hb);
    CHECK(before > 0 && after >= before);
    printf("rss: peak RSS %llu KiB before, %llu KiB after migrating %u MiB "
           "of device state\n",
           (unsigned long long)(before >> 10),
           (unsigned long long)(after >> 10), RSS_STATE_SIZE >> 20);
#ifndef UNDER_ASAN
    CHECK(after - before < RSS_GROWTH_MAX);
#endif
    side_down(&a);
    side_down(&b);
}

static void
put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* the tests run little endian, like the format */
}

static void
put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void
case_config(void)
{
    const struct vmig_engine_dev_ops *ops = vmig_engine_vfu_ops();
    struct side a;
    uint8_t good[4096], bad[4096];
    ssize_t n;
    uint64_t h0, h1;

    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    n = ops->config_save(a.b, good, sizeof(good));
    CHECK(n == 24 + 24 + 8);
    CHECK_RC(ops->config_save(a.b, good, 10), -E2BIG);
    /* a section equal to what is there applies as a no-op */
    CHECK_RC(ops->config_load(a.b, good, (size_t)n), 0);
    CHECK_RC(reg64(&a, TD_HASH, &h0), 0);

    memcpy(bad, good, (size_t)n);
    CHECK_RC(ops->config_load(a.b, bad, 23), -EBADMSG); /* truncated */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n - 1), -EBADMSG);
    put32(bad, 0x12345678);
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EBADMSG); /* magic */
    memcpy(bad, good, (size_t)n);
    put32(bad + 4, 2);
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EOPNOTSUPP);
    memcpy(bad, good, (size_t)n);
    put32(bad + 8, 1000); /* too many maps */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EBADMSG);
    memcpy(bad, good, (size_t)n);
    put64(bad + 24, RAM_SIZE); /* a mapping outside this VMM's RAM */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EINVAL);
    memcpy(bad, good, (size_t)n);
    put64(bad + 32, UINT64_MAX); /* size wraps */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EINVAL);
    memcpy(bad, good, (size_t)n);
    put32(bad + 40, 0x80); /* unknown prot bit */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EBADMSG);
    memcpy(bad, good, (size_t)n);
    put32(bad + 16, 1); /* claims config bytes it does not carry */
    CHECK_RC(ops->config_load(a.b, bad, (size_t)n), -EBADMSG);
    /* two overlapping mappings */
    memcpy(bad, good, 48);
    put32(bad + 8, 2);
    put32(bad + 12, 0);
    memcpy(bad + 48, good + 24, 24);
    CHECK_RC(ops->config_load(a.b, bad, 72), -EBADMSG);
    /* nothing was applied: the device still DMAs into RAM, state intact */
    CHECK_RC(reg64(&a, TD_HASH, &h1), 0);
    CHECK(h0 == h1);
    CHECK_RC(doorbell(&a, 0x6000, 0x6100), 0);
    CHECK_RC(ops->config_save(a.b, bad, sizeof(bad)), n);
    CHECK(memcmp(bad, good, (size_t)n) == 0);
    side_down(&a);
}

static int
cfg_read(struct side *s, unsigned int off, void *buf, size_t len)
{
    return vmig_vfu_client_region_read(s->c, TD_CFG_REGION, off, buf, len);
}

static void
case_cfgreplay(void)
{
    static const uint8_t cmd[2] = {0x06, 0x00}; /* memory + bus master */
    static const uint8_t pat[4] = {0xde, 0xad, 0xbe, 0xef};
    static const uint8_t own = 0x77;
    struct side a, b;
    struct relay r = {0};
    struct vmig_pci_ids ids;
    uint8_t got[4] = {0};
    size_t dlen;
    int dret;

    testdev_cfg_space = true; /* inherited by the spawned servers */
    CHECK_RC(side_up(&a, "a", 1, true, "td"), 0);
    CHECK_RC(side_up(&b, "b", 2, true, "td"), 0);
    /* the backend read the ids from config space */
    vmig_engine_vfu_identity(a.b, &ids, &dlen);
    CHECK(ids.valid && ids.vendor == 0x1b36 && ids.device == TD_PCI_DEVICE);
    /* the source VMM programs its device; the destination device has a
     * byte of its own at 0x48 the source never wrote */
    CHECK_RC(vmig_engine_vfu_config_write(a.b, 0x04, cmd, sizeof(cmd)), 0);
    CHECK_RC(vmig_engine_vfu_config_write(a.b, 0x40, pat, sizeof(pat)), 0);
    CHECK_RC(vmig_vfu_client_region_write(b.c, TD_CFG_REGION, 0x48, &own, 1),
             0);
    CHECK_RC(cfg_read(&b, 0x40, got, 4), 0);
    CHECK(memcmp(got, "\0\0\0\0", 4) == 0);

    CHECK_RC(migrate(&a, &b, &r, &dret, false), 0);
    CHECK_RC(dret, 0);
    CHECK_RC(cfg_read(&b, 0x04, got, 2), 0);
    CHECK(memcmp(got, cmd, 2) == 0);
    CHECK_RC(cfg_read(&b, 0x40, got, 4), 0);
    CHECK(memcmp(got, pat, 4) == 0);
    CHECK_RC(cfg_read(&b, 0x48, got, 1), 0);
    CHECK(got[0] == own); /* not the source's: left alone */
    CHECK_RC(cfg_read(&b, 0x44, got, 4), 0);
    CHECK(memcmp(got, "\0\0\0\0", 4) == 0);
    /* and the device works there */
    CHECK_RC(doorbell(&b, 0x4000, 0x4100), 0);
    side_down(&a);
    side_down(&b);
}

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "ok";
    bool v = getenv("VMIG_TEST_VERBOSE") != NULL;

    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/vmig-engvfu-XXXXXX");
    if (mkdtemp(dir) == NULL ||
        vmig_ctx_new("test", v ? vmig_log_stderr : NULL, NULL, &ctx) < 0) {
        return 1;
    }
    vmig_ctx_set_level(ctx, v ? VMIG_LOG_DEBUG : VMIG_LOG_ERR);
    if (strcmp(which, "ok") == 0) {
        case_ok();
    } else if (strcmp(which, "config") == 0) {
        case_config();
    } else if (strcmp(which, "cfgreplay") == 0) {
        case_cfgreplay();
    } else if (strcmp(which, "middev") == 0) {
        case_middev();
    } else if (strcmp(which, "rss") == 0) {
        case_rss();
    } else {
        case_fail(which);
    }
    for (int i = 0; i < nkids; i++) {
        if (kill(kids[i], SIGKILL) == 0) {
            (void)waitpid(kids[i], NULL, 0);
        }
    }
    vmig_ctx_free(ctx);
    {
        /* a failed case leaves its sockets behind */
        static const char *const names[] = {"a", "b", "a2"};

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            char p[320];

            snprintf(p, sizeof(p), "%s/%s.sock", dir, names[i]);
            (void)unlink(p);
        }
    }
    (void)rmdir(dir);
    printf("%s: %s\n", which, failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
