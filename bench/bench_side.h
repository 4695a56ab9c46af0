/* SPDX-License-Identifier: MIT */
/*
 * bench_side.h - one side of an in-process benchmark migration: guest RAM
 * (anonymous memory, optionally of pseudo-random bytes so no zero page is
 * skipped), memdev devices with P2P, an engine with no-op vCPU hooks; and
 * the benchmarks' clock.  Header-only, shared by bench_migrate, bench_tls
 * and bench_channels; every failure exits (a benchmark has nobody to
 * report to).
 */
#ifndef VMIG_BENCH_SIDE_H
#define VMIG_BENCH_SIDE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include "timeio.h"

#define SIDE_MAX_DEV 4

/* CLOCK_MONOTONIC in seconds (the project's one clock, lib/timeio.c). */
static inline double
bench_now_s(void)
{
    return (double)vmig__mono_ns() / 1e9;
}

static int
bench_nop_vcpu(void *o)
{
    (void)o;
    return 0;
}

static const struct vmig_engine_vm_ops bench_nop_vm_ops = {
    .vcpu_pause = bench_nop_vcpu,
    .vcpu_resume = bench_nop_vcpu,
};

struct side {
    uint8_t *ram;
    size_t ram_size;
    unsigned int ndev;
    struct vmig_memdev *dev[SIDE_MAX_DEV];
    struct vmig_engine *eng;
    vmig_ctx_t *ctx;
    int port; /* a source's extra channels connect there (bench_channels) */
};

/* @ndev devices of @dev bytes of state, seeded @seed + index; the VM's
 * hooks @ops. */
static inline void
side_new_n_ops(struct side *s, vmig_ctx_t *ctx, size_t ram, unsigned int ndev,
               size_t dev, uint64_t seed, const struct vmig_engine_vm_ops *ops)
{
    struct vmig_engine_region rg = {.name = "ram0", .size = ram};

    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->ram_size = ram;
    s->ndev = ndev;
    s->ram = mmap(NULL, ram, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->ram == MAP_FAILED || ndev > SIDE_MAX_DEV) {
        perror("bench: mmap");
        exit(1);
    }
    rg.host = s->ram;
    if (vmig_engine_new(ctx, &rg, 1, ops, s, &s->eng) < 0) {
        exit(1);
    }
    for (unsigned int i = 0; i < ndev; i++) {
        struct vmig_memdev_params p = {.state_size = dev,
                                       .flags = VMIG_MIGRATION_STOP_COPY |
                                                VMIG_MIGRATION_P2P,
                                       .seed = seed + (uint64_t)i,
                                       .revision = 1};
        char name[8];

        snprintf(name, sizeof(name), "dev%u", i);
        if (vmig_memdev_new(ctx, &p, &s->dev[i]) < 0 ||
            vmig_engine_add_device(s->eng, name, vmig_memdev_ops(), s->dev[i]) <
                0) {
            exit(1);
        }
    }
}

/* @ndev devices, no-op vCPU hooks. */
static inline void
side_new_n(struct side *s, vmig_ctx_t *ctx, size_t ram, unsigned int ndev,
           size_t dev, uint64_t seed)
{
    side_new_n_ops(s, ctx, ram, ndev, dev, seed, &bench_nop_vm_ops);
}

/* Two devices. */
static inline void
side_new(struct side *s, vmig_ctx_t *ctx, size_t ram, size_t dev, uint64_t seed)
{
    side_new_n(s, ctx, ram, 2, dev, seed);
}

/* RAM of pseudo-random bytes from @seed. */
static inline void
side_fill(struct side *s, uint64_t seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull + seed;

    for (size_t i = 0; i < s->ram_size / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(s->ram + i * 8, &x, 8);
    }
}

/* A source @a with RAM of pseudo-random bytes (no zero pages to skip)
 * and an empty destination @b of the same shape, its RAM already faulted
 * in (untouched anonymous memory would charge page faults to the
 * migration being measured). */
static inline void
sides_new(struct side *a, struct side *b, vmig_ctx_t *ctx, size_t ram,
          size_t dev)
{
    side_new(a, ctx, ram, dev, 1);
    side_new(b, ctx, ram, dev, 2);
    side_fill(a, 0);
    /* fault the destination's RAM in before timing, as a VM's RAM is */
    memset(b->ram, 0, ram);
}

static inline void
side_free(struct side *s)
{
    vmig_engine_free(s->eng);
    for (unsigned int i = 0; i < s->ndev; i++) {
        vmig_memdev_free(s->dev[i]);
    }
    munmap(s->ram, s->ram_size);
}

#endif /* VMIG_BENCH_SIDE_H */
