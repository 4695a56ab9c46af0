/* SPDX-License-Identifier: MIT */
/*
 * bench_commit.c - what the commit protocol's extra round trip (READY,
 * GO) adds to the downtime.  A small VM (1 MiB of RAM, one in-process
 * device with 4 KiB of state) migrates stop-and-copy between two engines
 * in this process over loopback TCP, alternately with the COMMIT feature
 * and without it (engine parameter no_commit).  The downtime is taken
 * from the VMM hooks themselves: the source's vcpu_pause to the
 * destination's vcpu_resume, on one monotonic clock.  Prints the median
 * and the spread of each and their difference.  No assertions on timing.
 *
 * usage: bench_commit [RUNS]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include "../tests/loopback.h"

#define RAM (1u << 20)

static uint64_t t_pause, t_resume;

static uint64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
h_pause(void *o)
{
    (void)o;
    t_pause = mono_ns();
    return 0;
}

static int
h_resume(void *o)
{
    if (o != NULL) { /* the destination's */
        t_resume = mono_ns();
    }
    return 0;
}

static const struct vmig_engine_vm_ops ops = {.vcpu_pause = h_pause,
                                              .vcpu_resume = h_resume};

struct side {
    uint8_t *ram;
    struct vmig_memdev *dev;
    struct vmig_engine *eng;
};

static void
side_new(struct side *s, bool dst, bool commit)
{
    struct vmig_memdev_params p = {.state_size = 4096,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 1,
                                   .revision = 1};
    struct vmig_engine_params ep = {
        .timeout_ms = 10000, .no_precopy = true, .no_commit = !commit};
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM};

    s->ram = calloc(1, RAM);
    rg.host = s->ram;
    if (s->ram == NULL ||
        vmig_engine_new(NULL, &rg, 1, &ops, dst ? s : NULL, &s->eng) < 0 ||
        vmig_memdev_new(NULL, &p, &s->dev) < 0 ||
        vmig_engine_add_device(s->eng, "dev0", vmig_memdev_ops(), s->dev) < 0) {
        fprintf(stderr, "bench_commit: setup failed\n");
        exit(1);
    }
    vmig_engine_set_params(s->eng, &ep);
    for (unsigned int i = 0; i < RAM; i += 64) {
        s->ram[i] = (uint8_t)(i >> 6);
    }
}

static void
side_free(struct side *s)
{
    vmig_engine_free(s->eng);
    vmig_memdev_free(s->dev);
    free(s->ram);
}

struct job {
    struct side *s;
    int lfd;
    int ret;
};

static void *
dst_main(void *arg)
{
    struct job *j = arg;
    int fd = accept(j->lfd, NULL, NULL);

    j->ret = fd < 0 ? -errno : vmig_engine_incoming(j->s->eng, fd);
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

/* One migration; its downtime in microseconds. */
static double
one(bool commit)
{
    struct side src, dst;
    struct job j;
    pthread_t th;
    int port, fd, ret;

    side_new(&src, false, commit);
    side_new(&dst, true, commit);
    j = (struct job){.s = &dst, .lfd = lb_listen(&port)};
    if (j.lfd < 0 || pthread_create(&th, NULL, dst_main, &j) != 0) {
        fprintf(stderr, "bench_commit: cannot listen\n");
        exit(1);
    }
    fd = lb_connect(port);
    ret = fd < 0 ? fd : vmig_engine_migrate(src.eng, fd);
    pthread_join(th, NULL);
    if (ret < 0 || j.ret < 0) {
        fprintf(stderr, "bench_commit: migration failed: %s / %s\n",
                strerror(-ret), strerror(-j.ret));
        exit(1);
    }
    close(fd);
    close(j.lfd);
    side_free(&src);
    side_free(&dst);
    return (double)(t_resume - t_pause) / 1000.0;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 101;
    double *with, *without;

    if (runs < 1) {
        runs = 1;
    }
    with = calloc((size_t)runs, sizeof(double));
    without = calloc((size_t)runs, sizeof(double));
    if (with == NULL || without == NULL) {
        return 1;
    }
    for (int i = 0; i < runs; i++) {
        with[i] = one(true);
        without[i] = one(false);
    }
    qsort(with, (size_t)runs, sizeof(double), cmp);
    qsort(without, (size_t)runs, sizeof(double), cmp);
    printf("commit downtime (1 MiB RAM, 4 KiB device, loopback TCP, %d runs "
           "each)\n",
           runs);
    printf("  with COMMIT     median %8.1f us  (p10 %.1f, p90 %.1f)\n",
           with[runs / 2], with[runs / 10], with[runs * 9 / 10]);
    printf("  without COMMIT  median %8.1f us  (p10 %.1f, p90 %.1f)\n",
           without[runs / 2], without[runs / 10], without[runs * 9 / 10]);
    printf("  READY/GO round trip adds %.1f us at the median (ratio %.2f)\n",
           with[runs / 2] - without[runs / 2],
           without[runs / 2] > 0 ? with[runs / 2] / without[runs / 2] : 0.0);
    free(with);
    free(without);
    return 0;
}
