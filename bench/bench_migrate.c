/* SPDX-License-Identifier: MIT */
/*
 * bench_migrate.c - a stop-and-copy migration of a VM with 1 GiB of guest
 * RAM (pseudo-random contents, so no zero pages) and two devices with
 * 32 MiB of state each, between two engines over loopback TCP, against a
 * plain TCP loopback copy of the same number of bytes measured in the same
 * run.  Prints total time, throughput, the ratio to the plain copy, and the
 * downtime.  No assertions on timing.
 *
 * Second case: the same RAM (a memfd, DMA-mapped into the device by fd
 * passing) with one vfio-user device server process (the test device,
 * DEV_MiB of state) migrated through the vfio-user backend
 * (<vmig/engine_vfu.h>): its state moves over the bulk channel.
 * Third case: the same RAM with the accelerator (a vmig-acc server
 * process, its queues set up by the guest driver through BAR0).
 * A run still going after 300 s (VMIG_BENCH_RUN_LIMIT_S) is reported as a
 * hang (each side's status and device states) and ends the benchmark with
 * status 1, its device servers killed.
 *
 * usage: bench_migrate [RAM_MiB] [DEV_MiB] [RUNS]
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <vmig/engine.h>
#include <vmig/engine_vfu.h>
#include <vmig/fsm.h>
#include <vmig_testkit/memdev.h>
#include <vmig_testkit/spawn.h>
#include <vmig/vfu_client.h>
#include "acc_server.h"
#include "guest-driver.h"
#include "vfu_testdev.h"
#include "../tests/loopback.h"
#include "bench_side.h"

static int
listen_any(int *port)
{
    int fd = lb_listen(port);

    if (fd < 0) {
        fprintf(stderr, "bench: listen: %s\n", strerror(-fd));
        exit(1);
    }
    return fd;
}

static int
connect_to(int port)
{
    int fd = lb_connect(port);

    if (fd < 0) {
        fprintf(stderr, "bench: connect: %s\n", strerror(-fd));
        exit(1);
    }
    return fd;
}

/* ------------------------------------------------------------ watchdog */

/* A run still going after this long (or VMIG_BENCH_RUN_LIMIT_S) is taken
 * for a hang: the benchmark says where each side and device stands, kills
 * its device servers and exits, rather than waiting for ever (a migration
 * here takes seconds). */
#define RUN_LIMIT_S 300

static int
run_limit_s(void)
{
    const char *v = getenv("VMIG_BENCH_RUN_LIMIT_S");

    return v != NULL && atoi(v) > 0 ? atoi(v) : RUN_LIMIT_S;
}

struct watch {
    const char *what;
    struct vmig_engine *src, *dst;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    pthread_t th;
};

static void
watch_say(const char *side, struct vmig_engine *e)
{
    struct vmig_engine_stats *st = malloc(sizeof(*st));

    if (st == NULL) {
        return;
    }
    vmig_engine_stats(e, st);
    fprintf(stderr,
            "bench:   %s: %s for %llu ms, %llu of %llu RAM bytes moved%s%s\n",
            side, vmig_engine_status_name(st->status),
            (unsigned long long)st->total_time_ms,
            (unsigned long long)st->ram_transferred,
            (unsigned long long)st->ram_total, st->error[0] ? ", error: " : "",
            st->error);
    for (unsigned int i = 0; i < st->ndevices; i++) {
        fprintf(stderr, "bench:     device %s: %s, %llu bytes of state moved\n",
                st->dev[i].name, vmig_state_name(st->dev[i].state),
                (unsigned long long)st->dev[i].bytes);
    }
    free(st);
}

static void *
watch_main(void *arg)
{
    struct watch *w = arg;
    struct timespec dl;
    bool done;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += run_limit_s();
    pthread_mutex_lock(&w->lock);
    while (!w->done &&
           pthread_cond_timedwait(&w->cond, &w->lock, &dl) != ETIMEDOUT) {
    }
    done = w->done;
    pthread_mutex_unlock(&w->lock);
    if (!done) {
        fprintf(stderr,
                "bench: %s did not end within %d s; taken for a hang "
                "(attach gdb to see where; the device servers die with "
                "the benchmark):\n",
                w->what, run_limit_s());
        watch_say("source", w->src);
        watch_say("destination", w->dst);
        _exit(1); /* the servers die with it (vmig_tk_spawn_server()) */
    }
    return NULL;
}

static void
watch_start(struct watch *w, const char *what, struct vmig_engine *src,
            struct vmig_engine *dst)
{
    w->what = what;
    w->src = src;
    w->dst = dst;
    w->done = false;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
        fprintf(stderr, "bench: cannot start the watchdog thread\n");
        exit(1);
    }
}

static void
watch_stop(struct watch *w)
{
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* ------------------------------------------------------------ baseline */

/* Seconds of one plain TCP loopback copy of @len bytes. */
static double
plain_copy(const uint8_t *src, uint8_t *dst, size_t len)
{
    double secs = lb_tcp_copy(src, dst, len);

    if (secs <= 0) {
        fprintf(stderr, "bench: plain TCP copy failed\n");
        exit(1);
    }
    return secs;
}

/* ------------------------------------------------------------ migration */

struct dst_job {
    struct side *s;
    struct vmig_engine *eng;
    int lfd;
    int ret;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;
    int fd = accept(j->lfd, NULL, NULL);

    j->ret = vmig_engine_incoming(j->eng, fd);
    close(fd);
    return NULL;
}

/* ------------------------------------------------ vfio-user device */

struct vside {
    size_t dev;
    int memfd;
    uint8_t *ram;
    pid_t pid;
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
    struct vmig_engine *eng;
};

static int
acc_serve_at(void *path)
{
    struct acc_server_cfg cfg = {
        .path = path, .fd = -1, .qp_count = 4, .level = VMIG_LOG_ERR};

    return acc_serve(&cfg) < 0 ? 1 : 0;
}

static pid_t
acc_spawn(const char *path)
{
    pid_t pid = vmig_tk_spawn_server(path, acc_serve_at, (void *)path, 120000);

    return pid < 0 ? -1 : pid;
}

static void
vside_new(struct vside *s, vmig_ctx_t *ctx, const char *path, size_t ram,
          size_t dev, uint64_t seed)
{
    struct vmig_engine_region rg = {.name = "ram0", .size = ram};
    struct vmig_engine_vfu_params p = {.name = "td0"};
    int ret;

    s->memfd = memfd_create("bench-ram", MFD_CLOEXEC);
    if (s->memfd < 0 || ftruncate(s->memfd, (off_t)ram) < 0) {
        perror("bench: memfd");
        exit(1);
    }
    s->ram = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
    s->dev = dev;
    s->pid = dev == 0 ? acc_spawn(path) : testdev_spawn(path, seed, dev);
    if (s->ram == MAP_FAILED || s->pid <= 0) {
        fprintf(stderr, "bench: cannot start the %s server at %s (%d)\n",
                dev == 0 ? "vmig-acc" : "test device", path, (int)s->pid);
        exit(1);
    }
    if ((ret = vmig_vfu_client_connect(ctx, path, VMIG_VFU_EXT__ALL, &s->c)) <
            0 ||
        (ret = vmig_engine_vfu_new(ctx, s->c, &p, &s->b)) < 0 ||
        (ret = vmig_engine_vfu_add_ram(s->b, 0, ram, s->memfd, 0, s->ram)) <
            0 ||
        (ret = vmig_engine_vfu_dma_map(
             s->b, 0, ram, VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) < 0) {
        fprintf(stderr,
                "bench: cannot set up the vfio-user device %s at %s: %s\n",
                dev == 0 ? "vmig-acc" : "test device", path, strerror(-ret));
        exit(1);
    }
    rg.host = s->ram;
    if (vmig_engine_new(ctx, &rg, 1, &bench_nop_vm_ops, s, &s->eng) < 0 ||
        vmig_engine_add_device(s->eng, "td0", vmig_engine_vfu_ops(), s->b) <
            0) {
        exit(1);
    }
}

static void
vside_free(struct vside *s, size_t ram)
{
    vmig_engine_free(s->eng);
    vmig_engine_vfu_free(s->b);
    vmig_vfu_client_free(s->c);
    if (s->dev == 0) {
        kill(s->pid, SIGKILL);
        (void)waitpid(s->pid, NULL, 0);
    } else {
        (void)testdev_stop(s->pid);
    }
    munmap(s->ram, ram);
    close(s->memfd);
}

static uint32_t
bar_read32(void *opaque, uint32_t off)
{
    uint32_t v;

    if (vmig_vfu_client_region_read(opaque, 0, off, &v, 4) < 0) {
        v = UINT32_MAX;
    }
    return v;
}

static void
bar_write32(void *opaque, uint32_t off, uint32_t val)
{
    if (vmig_vfu_client_region_write(opaque, 0, off, &val, 4) < 0) {
        fprintf(stderr, "bench: BAR0 write at %#x failed\n", off);
    }
}

static const struct acc_bar_ops bar_ops = {bar_read32, bar_write32};

/* The test device's state hash; for the accelerator (dev == 0), its
 * device state as the destination reports it: RUNNING and attached. */
static uint64_t
td_hash(struct vside *s)
{
    uint64_t h = 0;

    if (s->dev == 0) {
        enum vmig_state st;

        return vmig_vfu_client_get_state(s->c, &st) == 0 &&
                       st == VMIG_STATE_RUNNING
                   ? 1
                   : 0;
    }
    if (vmig_vfu_client_region_read(s->c, 0, TD_HASH, &h, 8) < 0) {
        return 0;
    }
    return h;
}

static int
vfu_case(vmig_ctx_t *ctx, size_t ram, size_t dev, int runs)
{
    char dir[] = "/tmp/vmig-bench-XXXXXX", pa[64], pb[64];
    struct vside a, b;
    uint64_t x = 0x2545f4914f6cdd1dull;
    double best_plain = 1e9, best_mig = 1e9, best_down = 1e9;

    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    snprintf(pa, sizeof(pa), "%s/a.sock", dir);
    snprintf(pb, sizeof(pb), "%s/b.sock", dir);
    vside_new(&a, ctx, pa, ram, dev, 1);
    vside_new(&b, ctx, pb, ram, dev, 2);
    for (size_t i = 0; i < ram / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint64_t *)a.ram)[i] = x;
    }
    memset(b.ram, 0, ram); /* allocate the destination's pages up front */
    if (dev == 0) {
        struct acc_gdrv drv;
        struct acc_gdrv_config cfg = {.qp_count = 4,
                                      .sq_size = 64,
                                      .cq_size = 64,
                                      .eq_size = 256,
                                      .aeq_size = 64};

        if (acc_gdrv_init(&drv, a.ram, ram, ram / 2, &cfg, &bar_ops, a.c) < 0) {
            fprintf(stderr, "bench: accelerator driver init failed\n");
            return 1;
        }
        printf("\nbench_migrate: %zu MiB RAM (random, memfd DMA-mapped) + "
               "the vmig-acc accelerator process (queues set up), best of "
               "%d runs\n",
               ram >> 20, runs);
    } else {
        printf("\nbench_migrate: %zu MiB RAM (random, memfd DMA-mapped) + a "
               "vfio-user device server process with %zu MiB of state, best "
               "of %d runs\n",
               ram >> 20, dev >> 20, runs);
    }
    for (int r = 0; r < runs; r++) {
        struct vmig_engine_stats *st = malloc(sizeof(*st));
        struct dst_job j = {.s = NULL};
        struct watch w;
        pthread_t th;
        int port, fd, ret;
        double t0, tp, tm;
        uint64_t ha = td_hash(&a);

        tp = plain_copy(a.ram, b.ram, ram) +
             (dev > 0 ? plain_copy(a.ram, b.ram, dev < ram ? dev : ram) : 0);
        j.lfd = listen_any(&port);
        j.eng = b.eng;
        watch_start(&w,
                    dev == 0 ? "the accelerator's migration"
                             : "the vfio-user test device's migration",
                    a.eng, b.eng);
        pthread_create(&th, NULL, dst_main, &j);
        fd = connect_to(port);
        t0 = bench_now_s();
        ret = vmig_engine_migrate(a.eng, fd);
        tm = bench_now_s() - t0;
        close(fd);
        pthread_join(th, NULL);
        watch_stop(&w);
        close(j.lfd);
        if (ret < 0 || j.ret < 0 || st == NULL ||
            memcmp(a.ram, b.ram, ram) != 0 || td_hash(&b) != ha) {
            fprintf(stderr,
                    "bench: vfio-user migration failed (%d/%d) or "
                    "differs\n",
                    ret, j.ret);
            return 1;
        }
        vmig_engine_stats(a.eng, st);
        printf("  run %d: plain copy %.3f s, migration %.3f s, downtime "
               "%.1f ms, device state %llu bytes\n",
               r + 1, tp, tm, (double)st->downtime_ms,
               (unsigned long long)st->dev_total);
        best_plain = tp < best_plain ? tp : best_plain;
        best_mig = tm < best_mig ? tm : best_mig;
        best_down = (double)st->downtime_ms < best_down
                        ? (double)st->downtime_ms
                        : best_down;
        free(st);
        if (vmig_engine_vfu_ops()->set_state(a.b, VMIG_STATE_RUNNING) < 0) {
            return 1;
        }
        memset(b.ram, 0, ram);
    }
    {
        double bytes = (double)ram + (double)dev;

        printf("plain TCP copy   %8.1f MiB/s\n",
               bytes / best_plain / (1 << 20));
        printf("migration        %8.1f MiB/s\n", bytes / best_mig / (1 << 20));
        printf("ratio            %8.2f  (migration throughput / plain copy)\n",
               best_plain / best_mig);
        printf("total time       %8.3f s\n", best_mig);
        printf("downtime         %8.1f ms\n", best_down);
    }
    vside_free(&a, ram);
    vside_free(&b, ram);
    (void)unlink(pa);
    (void)unlink(pb);
    (void)rmdir(dir);
    return 0;
}

int
main(int argc, char **argv)
{
    size_t ram = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
    size_t dev = (size_t)(argc > 2 ? atol(argv[2]) : 32) << 20;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    struct side a, b;
    vmig_ctx_t *ctx;
    double best_plain = 1e9, best_mig = 1e9, best_down = 1e9, wire = 0;

    if (vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        return 1;
    }
    sides_new(&a, &b, ctx, ram, dev);
    printf("bench_migrate: %zu MiB RAM (random), 2 devices x %zu MiB, "
           "best of %d runs, loopback TCP\n",
           ram >> 20, dev >> 20, runs);
    for (int r = 0; r < runs; r++) {
        struct vmig_engine_stats *st = malloc(sizeof(*st));
        struct dst_job j = {.s = &b, .eng = b.eng};
        struct watch w;
        pthread_t th;
        int port, fd, ret;
        double t0, tp, tm;

        /* same bytes as the migration moves (RAM + device state) */
        tp = plain_copy(a.ram, b.ram, ram) +
             plain_copy(a.ram, b.ram, 2 * dev < ram ? 2 * dev : ram);
        j.lfd = listen_any(&port);
        watch_start(&w, "the in-process migration", a.eng, b.eng);
        pthread_create(&th, NULL, dst_main, &j);
        fd = connect_to(port);
        t0 = bench_now_s();
        ret = vmig_engine_migrate(a.eng, fd);
        tm = bench_now_s() - t0;
        close(fd);
        pthread_join(th, NULL);
        watch_stop(&w);
        close(j.lfd);
        if (ret < 0 || j.ret < 0 || st == NULL ||
            memcmp(a.ram, b.ram, ram) != 0 ||
            vmig_memdev_digest(a.dev[0]) != vmig_memdev_digest(b.dev[0])) {
            fprintf(stderr, "bench: migration failed (%d/%d) or differs\n", ret,
                    j.ret);
            return 1;
        }
        vmig_engine_stats(a.eng, st);
        printf("  run %d: plain copy %.3f s, migration %.3f s (engine %llu "
               "ms), downtime %.1f ms\n",
               r + 1, tp, tm, (unsigned long long)st->total_time_ms,
               (double)st->downtime_ms);
        wire = (double)st->wire_bytes;
        best_plain = tp < best_plain ? tp : best_plain;
        best_mig = tm < best_mig ? tm : best_mig;
        best_down = (double)st->downtime_ms < best_down
                        ? (double)st->downtime_ms
                        : best_down;
        free(st);
        /* back to RUNNING on both sides for the next run */
        for (int i = 0; i < 2; i++) {
            if (vmig_memdev_ops()->set_state(a.dev[i], VMIG_STATE_RUNNING) <
                0) {
                return 1;
            }
        }
        memset(b.ram, 0, ram);
    }
    {
        double bytes = (double)ram + 2.0 * (double)dev;

        printf("plain TCP copy   %8.1f MiB/s\n",
               bytes / best_plain / (1 << 20));
        printf("migration        %8.1f MiB/s  (%.1f MiB on the wire)\n",
               bytes / best_mig / (1 << 20), wire / (1 << 20));
        printf("ratio            %8.2f  (migration throughput / plain copy)\n",
               best_plain / best_mig);
        printf("total time       %8.3f s\n", best_mig);
        printf("downtime         %8.1f ms  (no dirty tracking here, so "
               "stop-and-copy: ~ total time; bench_precopy measures "
               "precopy)\n",
               best_down);
    }
    side_free(&a);
    side_free(&b);
    signal(SIGPIPE, SIG_IGN);
    if (vfu_case(ctx, ram, dev, runs) != 0) {
        return 1;
    }
    return vfu_case(ctx, ram, 0, runs);
}
