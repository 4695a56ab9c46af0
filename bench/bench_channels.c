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
 * Then multifd-compression: 64 MiB of compressible (text-like) guest RAM
 * and one device of ZDEV_MiB, migrated without and with zstd (level 1)
 * in the same run: over loopback without a limit at stop-copy (one
 * connection, then 1 + 2), where the CPU compression costs is not
 * repaid, and precopying under max-bandwidth, where every byte saved is
 * time saved.  Time and bytes on the wire of each, and the zstd/none
 * ratios.
 *
 * usage: bench_channels [DEV_MiB] [RUNS] [ZLIMIT_MiB/s]
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
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
#include "bench_plot.h"
#include "bench_side.h"

#define NDEV 4u
#define RAM_SIZE (64u << 20)
#define MAX_STREAMS 4

/* An idle guest: dirty tracking that never finds a page written, so
 * guest RAM precopies in one pass and nothing is left for stop-copy. */
static long
no_dirt(void *o, unsigned int region, uint64_t *bitmap, size_t nbits)
{
    (void)o;
    (void)region;
    (void)bitmap;
    (void)nbits;
    return 0;
}

static void
nop_stop(void *o)
{
    (void)o;
}

static const struct vmig_engine_vm_ops idle_vm_ops = {
    .vcpu_pause = bench_nop_vcpu,
    .vcpu_resume = bench_nop_vcpu,
    .dirty_start = bench_nop_vcpu,
    .dirty_collect = no_dirt,
    .dirty_stop = nop_stop,
};

#define ZDEV_MiB 1u

/* ------------------------------------------------------------ sides */

struct bside {
    uint8_t *ram;
    struct vmig_memdev *dev[NDEV];
    struct vmig_engine *eng;
    vmig_ctx_t *ctx;
    int port; /* source: where extra channels go */
};

/* Text-like guest RAM: words from a small vocabulary, a random byte in
 * every 16 (zstd level 1 shrinks it about 3-4x). */
static void
fill_text(uint8_t *p, size_t n, uint64_t x)
{
    static const char *const words[] = {
        "migration ", "device ", "state ", "the ",   "of ",  "precopy ",
        "vfio ",      "guest ",  "page ",  "dirty ", "and ", "ram ",
        "stop-copy ", "queue ",  "ring ",  "a "};
    size_t i = 0;

    while (i < n) {
        const char *w;
        size_t l;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w = words[x & 15];
        l = strlen(w);
        for (size_t k = 0; k < l && i < n; k++) {
            p[i++] = (uint8_t)w[k];
        }
        if (i < n && (x >> 8) % 16 == 0) {
            p[i++] = (uint8_t)(x >> 16);
        }
    }
}

/* ------------------------------------------------------------ sides */

static int
ch_open(void *opaque, unsigned int index, const int *cancel,
        struct vmig_chan **out)
{
    struct side *s = opaque;

    (void)index;
    (void)cancel;
    return lb_chan_connect(s->ctx, s->port, out);
}

static void
ch_release(void *opaque, struct vmig_chan *ch)
{
    (void)opaque;
    lb_chan_close(ch);
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
            lb_chan_close(ch);
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

/* ------------------------------------------------------------ zstd */

static double
best(double a, double b)
{
    return a <= 0 || b < a ? b : a;
}

/* One device of ZDEV_MiB, idle dirty tracking (RAM precopies), RAM of
 * text (@text) or of pseudo-random bytes. */
static void
zside_new(struct side *s, vmig_ctx_t *ctx, uint64_t seed, bool text)
{
    side_new_n_ops(s, ctx, RAM_SIZE, 1, (size_t)ZDEV_MiB << 20, seed * 16,
                   &idle_vm_ops);
    if (text) {
        fill_text(s->ram, RAM_SIZE, seed);
    } else {
        side_fill(s, seed);
    }
    if (vmig_engine_set_chan_ops(s->eng, &ch_ops, s) < 0) {
        exit(1);
    }
}

struct zcase {
    const char *name;
    unsigned int channels;
    uint64_t limit; /* max-bandwidth, bytes/s; 0: none (stop-copy only) */
    double secs[2]; /* none, zstd: best */
    uint64_t wire[2];
};

/* One migration of @a into @b: seconds, and the source's wire bytes. */
static double
zmigrate(struct side *a, struct side *b, const struct zcase *zc, bool zstd,
         uint64_t *wire)
{
    struct vmig_engine_params p;
    struct vmig_engine_stats st;
    double t;

    vmig_engine_get_params(a->eng, &p);
    p.compression =
        zstd ? VMIG_ENGINE_COMPRESS_ZSTD : VMIG_ENGINE_COMPRESS_NONE;
    p.max_bandwidth = zc->limit;
    p.no_precopy = zc->limit == 0;
    vmig_engine_set_params(a->eng, &p);
    t = migrate(a, b, zc->channels);
    vmig_engine_stats(a->eng, &st);
    *wire = st.wire_bytes;
    reset_sides(a, b, 1);
    return t;
}

static void
bench_zstd(vmig_ctx_t *ctx, unsigned int runs, uint64_t limit_mib)
{
    struct zcase zc[] = {
        {"loopback, no limit, stop-copy, 1 connection", 1, 0, {0, 0}, {0, 0}},
        {"loopback, no limit, stop-copy, 1 + 2 connections",
         3,
         0,
         {0, 0},
         {0, 0}},
        {"max-bandwidth, precopy, 1 connection",
         1,
         limit_mib << 20,
         {0, 0},
         {0, 0}},
    };
    const size_t n = sizeof(zc) / sizeof(zc[0]);
    double mib = (double)((RAM_SIZE >> 20) + ZDEV_MiB);
    struct side a, b;

    zside_new(&a, ctx, 5, true);
    zside_new(&b, ctx, 6, false);
    {
        uint64_t w; /* a first migration touches the destination's memory */

        (void)zmigrate(&a, &b, &zc[0], false, &w);
    }
    for (unsigned int r = 0; r < runs; r++) {
        for (size_t i = 0; i < n; i++) {
            for (int z = 0; z < 2; z++) {
                uint64_t w;
                double t = zmigrate(&a, &b, &zc[i], z == 1, &w);

                zc[i].secs[z] = best(zc[i].secs[z], t);
                zc[i].wire[z] = w;
            }
        }
    }
    printf("\nmultifd-compression: %u MiB of text-like guest RAM + a %u MiB "
           "device, zstd level 1 vs none, best of %u\n",
           RAM_SIZE >> 20, ZDEV_MiB, runs);
    printf("| case | none s | zstd s | none MiB/s | zstd MiB/s | wire MiB "
           "none | wire MiB zstd | zstd/none time |\n"
           "|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        char name[96];

        if (zc[i].limit != 0) {
            snprintf(name, sizeof(name), "%s (%llu MiB/s)", zc[i].name,
                     (unsigned long long)limit_mib);
        } else {
            snprintf(name, sizeof(name), "%s", zc[i].name);
        }
        printf("| %s | %.3f | %.3f | %.0f | %.0f | %.1f | %.1f | %.2fx |\n",
               name, zc[i].secs[0], zc[i].secs[1], mib / zc[i].secs[0],
               mib / zc[i].secs[1], (double)zc[i].wire[0] / (1 << 20),
               (double)zc[i].wire[1] / (1 << 20),
               zc[i].secs[1] / zc[i].secs[0]);
    }
    printf("zstd on the wire: %.2fx fewer bytes; with max-bandwidth %.2fx "
           "the speed of none (wins above 1); loopback without a limit "
           "%.2fx (1 connection), %.2fx (1 + 2)\n",
           (double)zc[0].wire[0] / (double)zc[0].wire[1],
           zc[2].secs[0] / zc[2].secs[1], zc[0].secs[0] / zc[0].secs[1],
           zc[1].secs[0] / zc[1].secs[1]);
    {
        char path[512];
        FILE *f = bench_dat_open("zstd.dat", path, sizeof(path));

        if (f != NULL) {
            fprintf(f, "# case none_s zstd_s none_wire_MiB zstd_wire_MiB\n");
            for (size_t i = 0; i < n; i++) {
                fprintf(f, "\"%s\" %.4f %.4f %.1f %.1f\n",
                        i == 0   ? "loopback\\n1 connection"
                        : i == 1 ? "loopback\\n1 + 2 connections"
                                 : "max-bandwidth\\nprecopy",
                        zc[i].secs[0], zc[i].secs[1],
                        (double)zc[i].wire[0] / (1 << 20),
                        (double)zc[i].wire[1] / (1 << 20));
            }
            fclose(f);
            (void)bench_plot(
                "zstd",
                "set title 'multifd-compression: seconds to migrate %u MiB of "
                "text-like RAM, none vs zstd (max-bandwidth %llu MiB/s)'\n"
                "set style data histograms\n"
                "set style histogram clustered gap 1\n"
                "set style fill solid 0.5\nset yrange [0:*]\n"
                "set ylabel 'seconds'\n"
                "plot '%s' using 2:xtic(1) title 'none', '' using 3 "
                "title 'zstd'\n",
                RAM_SIZE >> 20, (unsigned long long)limit_mib, path);
        }
    }
    side_free(&a);
    side_free(&b);
}

/* ------------------------------------------------------------ main */

int
main(int argc, char **argv)
{
    size_t dev_mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
    unsigned int runs = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 0) : 2;
    uint64_t zlimit = argc > 3 ? strtoull(argv[3], NULL, 0) : 64;
    size_t dev = dev_mib << 20;
    double t_one = 0, t_four1 = 0, t_four = 0, t_plain4 = 0, t_plain1 = 0;
    double mib_one, mib_four;
    uint8_t *src[MAX_STREAMS], *dst[MAX_STREAMS];
    struct side a1, b1, a4, b4;
    vmig_ctx_t *ctx;

    if (dev_mib == 0 || runs == 0 || zlimit == 0 ||
        vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        fprintf(stderr,
                "usage: bench_channels [DEV_MiB] [RUNS] [ZLIMIT_MiB/s]\n");
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
    {
        char path[512];
        FILE *f = bench_dat_open("channels.dat", path, sizeof(path));

        if (f != NULL) {
            fprintf(f,
                    "# case MiB/s (bench_channels, P6)\n"
                    "\"1 device\\n1 channel\" %.1f\n"
                    "\"4 devices\\n1 channel\" %.1f\n"
                    "\"4 devices\\n1 + 4 channels\" %.1f\n"
                    "\"plain TCP\\n1 stream\" %.1f\n"
                    "\"plain TCP\\n4 streams\" %.1f\n",
                    mib_one / t_one, mib_four / t_four1, mib_four / t_four,
                    (double)dev_mib / t_plain1,
                    (double)(NDEV * dev_mib) / t_plain4);
            fclose(f);
            (void)bench_plot(
                "channels",
                "set title 'P6: aggregate MiB/s, %u devices x %zu MiB + %u MiB "
                "RAM, stop-copy over loopback (%.2fx one device on one "
                "channel)'\n"
                "set style fill solid 0.5\nset boxwidth 0.6\n"
                "set yrange [0:*]\nset ylabel 'MiB/s'\n"
                "plot '%s' using 0:2:xtic(1) with boxes notitle\n",
                NDEV, dev_mib, RAM_SIZE >> 20,
                (mib_four / t_four) / (mib_one / t_one), path);
        }
    }
    for (unsigned int i = 0; i < MAX_STREAMS; i++) {
        free(src[i]);
        free(dst[i]);
    }
    side_free(&a1);
    side_free(&b1);
    side_free(&a4);
    side_free(&b4);
    bench_zstd(ctx, runs, zlimit);
    vmig_ctx_free(ctx);
    return 0;
}
