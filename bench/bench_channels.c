/* SPDX-License-Identifier: MIT */
/*
 * bench_channels.c - P6: parallel channels (multifd-channels).  Four
 * devices with DEV_MiB of state each (in-process memdev devices), 64 MiB
 * of guest RAM, stop-and-copy between two engines over loopback TCP, all
 * in one run:
 *
 *   one device on one channel            (the per-device reference)
 *   four devices on one channel          (today's default path)
 *   four devices on 1 + 4 channels       (each device on its own)
 *   four plain TCP loopback streams of DEV_MiB each at once, from DRAM
 *                                         (the multi-stream ceiling)
 *   one plain TCP loopback stream of DEV_MiB
 *
 * and prints the aggregate device-state throughput of each and the ratios
 * the issue asks for: four devices on channels vs one device on one
 * channel, and vs the multi-stream ceiling.  No assertions on timing; on
 * a machine with fewer cores than streams the ratios say what is left.
 *
 * usage: bench_channels [DEV_MiB] [RUNS]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig_testkit/memdev.h>
#include "../tests/loopback.h"
#include "bench_side.h"

#define NDEV 4u
#define RAM_SIZE (64u << 20)
#define MAX_STREAMS 4

/* ------------------------------------------------------------ sides */

static int
ch_open(void *opaque, unsigned int index, const int *cancel,
        struct vmig_chan **out)
{
    struct side *s = opaque;
    int fd = lb_connect(s->port), ret;

    (void)index;
    (void)cancel;
    if (fd < 0) {
        return fd;
    }
    ret = vmig_chan_plain(s->ctx, fd, out);
    if (ret < 0) {
        close(fd);
    }
    return ret;
}

static void
ch_release(void *opaque, struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    (void)opaque;
    vmig_chan_free(ch);
    close(fd);
}

static const struct vmig_engine_chan_ops ch_ops = {.open = ch_open,
                                                   .release = ch_release};

/* A side of @ndev devices, seeded from @seed, its RAM pseudo-random. */
static void
bside_new(struct side *s, vmig_ctx_t *ctx, unsigned int ndev, size_t dev,
          uint64_t seed)
{
    side_new_n(s, ctx, RAM_SIZE, ndev, dev, seed * 16);
    side_fill(s, seed);
    if (vmig_engine_set_chan_ops(s->eng, &ch_ops, s) < 0) {
        exit(1);
    }
}

static void
set_channels(struct side *s, unsigned int n)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(s->eng, &p);
    p.channels = n;
    vmig_engine_set_params(s->eng, &p);
}

/* The destination: the main connection to the engine, every later one to
 * vmig_engine_accept_chan() until the migration ends. */
struct djob {
    struct side *s;
    int lfd;
    int main_fd;
    int ret;
    int done; /* atomic */
};

static void *
d_incoming(void *arg)
{
    struct djob *j = arg;

    j->ret = vmig_engine_incoming(j->s->eng, j->main_fd);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *
d_main(void *arg)
{
    struct djob *j = arg;
    pthread_t th;

    j->main_fd = accept(j->lfd, NULL, NULL);
    if (j->main_fd < 0 || pthread_create(&th, NULL, d_incoming, j) != 0) {
        j->ret = -EIO;
        return NULL;
    }
    while (!__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = j->lfd, .events = POLLIN};
        struct vmig_chan *ch;
        int fd;

        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        fd = accept(j->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        if (vmig_chan_plain(j->s->ctx, fd, &ch) < 0) {
            close(fd);
            continue;
        }
        if (vmig_engine_accept_chan(j->s->eng, ch, NULL, 10000) < 0) {
            vmig_chan_free(ch);
            close(fd);
        }
    }
    pthread_join(th, NULL);
    close(j->main_fd);
    return NULL;
}

/* Seconds of one migration of @a into @b with @channels connections. */
static double
migrate(struct side *a, struct side *b, unsigned int channels)
{
    struct djob j = {.s = b};
    pthread_t th;
    double t0, t1;
    int fd, ret;

    set_channels(a, channels);
    set_channels(b, channels);
    j.lfd = lb_listen(&a->port);
    if (j.lfd < 0 || pthread_create(&th, NULL, d_main, &j) != 0) {
        exit(1);
    }
    fd = lb_connect(a->port);
    t0 = bench_now_s();
    ret = vmig_engine_migrate(a->eng, fd);
    t1 = bench_now_s();
    close(fd);
    pthread_join(th, NULL);
    close(j.lfd);
    if (ret < 0 || j.ret < 0) {
        fprintf(stderr, "bench: migration failed: %s / %s\n", strerror(-ret),
                strerror(j.ret < 0 ? -j.ret : 0));
        exit(1);
    }
    return t1 - t0;
}

/* Devices back to RUNNING on both sides, for the next run. */
static void
reset_sides(struct side *a, struct side *b, unsigned int ndev)
{
    for (unsigned int i = 0; i < ndev; i++) {
        if (vmig_memdev_ops()->reset(a->dev[i]) < 0 ||
            vmig_memdev_ops()->reset(b->dev[i]) < 0) {
            exit(1);
        }
    }
}

/* ------------------------------------------------------------ ceiling */

struct stream {
    const uint8_t *src;
    uint8_t *dst;
    size_t len;
    double secs;
};

static void *
stream_main(void *arg)
{
    struct stream *s = arg;

    s->secs = lb_tcp_copy(s->src, s->dst, s->len);
    return NULL;
}

/* Seconds for @n plain TCP loopback streams of @len bytes each at once. */
static double
plain_streams(unsigned int n, uint8_t *const *src, uint8_t *const *dst,
              size_t len)
{
    struct stream st[MAX_STREAMS];
    pthread_t th[MAX_STREAMS];
    double t0 = bench_now_s(), t1;

    for (unsigned int i = 0; i < n; i++) {
        st[i] = (struct stream){src[i], dst[i], len, 0};
        if (pthread_create(&th[i], NULL, stream_main, &st[i]) != 0) {
            exit(1);
        }
    }
    for (unsigned int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (st[i].secs <= 0) {
            fprintf(stderr, "bench: plain TCP stream failed\n");
            exit(1);
        }
    }
    t1 = bench_now_s();
    return t1 - t0;
}

/* ------------------------------------------------------------ main */

static double
best(double a, double b)
{
    return a <= 0 || b < a ? b : a;
}

int
main(int argc, char **argv)
{
    size_t dev_mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
    unsigned int runs = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 0) : 2;
    size_t dev = dev_mib << 20;
    double t_one = 0, t_four1 = 0, t_four = 0, t_plain4 = 0, t_plain1 = 0;
    double mib_one, mib_four;
    uint8_t *src[MAX_STREAMS], *dst[MAX_STREAMS];
    struct side a1, b1, a4, b4;
    vmig_ctx_t *ctx;

    if (dev_mib == 0 || runs == 0 ||
        vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        fprintf(stderr, "usage: bench_channels [DEV_MiB] [RUNS]\n");
        return 2;
    }
    bside_new(&a1, ctx, 1, dev, 1);
    bside_new(&b1, ctx, 1, dev, 2);
    bside_new(&a4, ctx, NDEV, dev, 3);
    bside_new(&b4, ctx, NDEV, dev, 4);
    for (unsigned int i = 0; i < MAX_STREAMS; i++) {
        src[i] = malloc(dev);
        dst[i] = malloc(dev);
        if (src[i] == NULL || dst[i] == NULL) {
            return 1;
        }
        for (size_t k = 0; k < dev; k += 4096) {
            memset(src[i] + k, (int)(k >> 12) + (int)i, 4096);
            dst[i][k] = 0;
        }
    }
    for (unsigned int r = 0; r < runs; r++) {
        t_one = best(t_one, migrate(&a1, &b1, 1));
        reset_sides(&a1, &b1, 1);
        t_four1 = best(t_four1, migrate(&a4, &b4, 1));
        reset_sides(&a4, &b4, NDEV);
        t_four = best(t_four, migrate(&a4, &b4, NDEV + 1));
        reset_sides(&a4, &b4, NDEV);
        t_plain4 = best(t_plain4, plain_streams(NDEV, src, dst, dev));
        t_plain1 = best(t_plain1, plain_streams(1, src, dst, dev));
    }
    mib_one = (double)(dev_mib + (RAM_SIZE >> 20));
    mib_four = (double)(NDEV * dev_mib + (RAM_SIZE >> 20));
    printf("P6: %u devices x %zu MiB (in-process memdev) + %u MiB guest RAM, "
           "stop-copy, loopback TCP, %ld cores, best of %u\n",
           NDEV, dev_mib, RAM_SIZE >> 20, sysconf(_SC_NPROCESSORS_ONLN), runs);
    printf("| case | seconds | MiB/s |\n|---|---|---|\n");
    printf("| 1 device, 1 channel | %.3f | %.0f |\n", t_one, mib_one / t_one);
    printf("| 4 devices, 1 channel | %.3f | %.0f |\n", t_four1,
           mib_four / t_four1);
    printf("| 4 devices, 1 + 4 channels | %.3f | %.0f |\n", t_four,
           mib_four / t_four);
    printf("| plain TCP, 1 stream | %.3f | %.0f |\n", t_plain1,
           (double)dev_mib / t_plain1);
    printf("| plain TCP, 4 streams at once | %.3f | %.0f |\n", t_plain4,
           (double)(NDEV * dev_mib) / t_plain4);
    printf("aggregate, 4 devices on channels vs 1 device on 1 channel: "
           "%.2fx (target >= 3x where cores allow)\n",
           (mib_four / t_four) / (mib_one / t_one));
    printf("4 devices on channels vs on 1 channel: %.2fx\n",
           (mib_four / t_four) / (mib_four / t_four1));
    printf("4 devices on channels vs the 4-stream TCP ceiling: %.2fx "
           "(target >= 0.9x)\n",
           (mib_four / t_four) / ((double)(NDEV * dev_mib) / t_plain4));
    for (unsigned int i = 0; i < MAX_STREAMS; i++) {
        free(src[i]);
        free(dst[i]);
    }
    side_free(&a1);
    side_free(&b1);
    side_free(&a4);
    side_free(&b4);
    vmig_ctx_free(ctx);
    return 0;
}
