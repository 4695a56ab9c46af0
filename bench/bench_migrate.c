/* SPDX-License-Identifier: MIT */
/*
 * bench_migrate.c - a stop-and-copy migration of a VM with 1 GiB of guest
 * RAM (pseudo-random contents, so no zero pages) and two devices with
 * 32 MiB of state each, between two engines over loopback TCP, against a
 * plain TCP loopback copy of the same number of bytes measured in the same
 * run.  Prints total time, throughput, the ratio to the plain copy, and the
 * downtime.  No assertions on timing.
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
#include <vmig/engine.h>
#include <vmig/memdev.h>

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
listen_any(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(fd, 1) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("bench: listen");
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static int
connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("bench: connect");
        exit(1);
    }
    return fd;
}

/* ------------------------------------------------------------ baseline */

struct sink {
    int lfd;
    uint8_t *dst;
    size_t len;
};

static void *
sink_main(void *arg)
{
    struct sink *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    size_t got = 0;

    /* like the destination, land the bytes in "guest RAM" */
    while (fd >= 0 && got < s->len) {
        ssize_t n = read(fd, s->dst + got,
                         s->len - got < (4u << 20) ? s->len - got : 4u << 20);

        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return NULL;
}

static double
plain_copy(const uint8_t *src, uint8_t *dst, size_t len)
{
    struct sink s = {.dst = dst, .len = len};
    pthread_t th;
    int port, fd;
    size_t off = 0;
    double t0;

    s.lfd = listen_any(&port);
    pthread_create(&th, NULL, sink_main, &s);
    fd = connect_to(port);
    t0 = now_s();
    while (off < len) {
        size_t n = len - off < (4u << 20) ? len - off : 4u << 20;
        ssize_t w = write(fd, src + off, n);

        if (w <= 0) {
            perror("bench: write");
            exit(1);
        }
        off += (size_t)w;
    }
    close(fd);
    pthread_join(th, NULL);
    close(s.lfd);
    return now_s() - t0;
}

/* ------------------------------------------------------------ migration */

static int
nop_vcpu(void *o)
{
    (void)o;
    return 0;
}

static const struct vmig_engine_vm_ops vm_ops = {
    .vcpu_pause = nop_vcpu,
    .vcpu_resume = nop_vcpu,
};

struct side {
    uint8_t *ram;
    struct vmig_memdev *dev[2];
    struct vmig_engine *eng;
};

static void
side_new(struct side *s, vmig_ctx_t *ctx, size_t ram, size_t dev, uint64_t seed)
{
    struct vmig_engine_region rg = {.name = "ram0", .size = ram};

    s->ram = mmap(NULL, ram, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->ram == MAP_FAILED) {
        perror("bench: mmap");
        exit(1);
    }
    rg.host = s->ram;
    if (vmig_engine_new(ctx, &rg, 1, &vm_ops, s, &s->eng) < 0) {
        exit(1);
    }
    for (int i = 0; i < 2; i++) {
        struct vmig_memdev_params p = {.state_size = dev,
                                       .flags =
                                           VMIG_MIGRATION_STOP_COPY |
                                           (i == 0 ? VMIG_MIGRATION_P2P : 0),
                                       .seed = seed + (uint64_t)i,
                                       .revision = 1};
        char name[8];

        snprintf(name, sizeof(name), "dev%d", i);
        if (vmig_memdev_new(ctx, &p, &s->dev[i]) < 0 ||
            vmig_engine_add_device(s->eng, name, vmig_memdev_ops(), s->dev[i]) <
                0) {
            exit(1);
        }
    }
}

struct dst_job {
    struct side *s;
    int lfd;
    int ret;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;
    int fd = accept(j->lfd, NULL, NULL);

    j->ret = vmig_engine_incoming(j->s->eng, fd);
    close(fd);
    return NULL;
}

int
main(int argc, char **argv)
{
    size_t ram = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
    size_t dev = (size_t)(argc > 2 ? atol(argv[2]) : 32) << 20;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    struct side a, b;
    vmig_ctx_t *ctx;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    double best_plain = 1e9, best_mig = 1e9, best_down = 1e9, wire = 0;

    if (vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        return 1;
    }
    side_new(&a, ctx, ram, dev, 1);
    side_new(&b, ctx, ram, dev, 2);
    for (size_t i = 0; i < ram / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint64_t *)a.ram)[i] = x;
    }
    memset(b.ram, 0, ram);
    printf("bench_migrate: %zu MiB RAM (random), 2 devices x %zu MiB, "
           "best of %d runs, loopback TCP\n",
           ram >> 20, dev >> 20, runs);
    for (int r = 0; r < runs; r++) {
        struct vmig_engine_stats *st = malloc(sizeof(*st));
        struct dst_job j = {.s = &b};
        pthread_t th;
        int port, fd, ret;
        double t0, tp, tm;

        /* same bytes as the migration moves (RAM + device state) */
        tp = plain_copy(a.ram, b.ram, ram) +
             plain_copy(a.ram, b.ram, 2 * dev < ram ? 2 * dev : ram);
        j.lfd = listen_any(&port);
        pthread_create(&th, NULL, dst_main, &j);
        fd = connect_to(port);
        t0 = now_s();
        ret = vmig_engine_migrate(a.eng, fd);
        tm = now_s() - t0;
        close(fd);
        pthread_join(th, NULL);
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
        printf("downtime         %8.1f ms  (stop-and-copy: ~ total time; "
               "precopy will cut it)\n",
               best_down);
    }
    return 0;
}
