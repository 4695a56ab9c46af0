/* SPDX-License-Identifier: MIT */
/*
 * bench_side.h - one side of an in-process benchmark migration: guest RAM
 * (anonymous memory), two memdev devices with P2P, an engine with no-op
 * vCPU hooks.  Header-only, shared by bench_migrate and bench_tls; every
 * failure exits (a benchmark has nobody to report to).
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
    struct vmig_memdev *dev[2];
    struct vmig_engine *eng;
};

static inline void
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
    if (vmig_engine_new(ctx, &rg, 1, &bench_nop_vm_ops, s, &s->eng) < 0) {
        exit(1);
    }
    for (int i = 0; i < 2; i++) {
        struct vmig_memdev_params p = {.state_size = dev,
                                       .flags = VMIG_MIGRATION_STOP_COPY |
                                                VMIG_MIGRATION_P2P,
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

/* A source @a with RAM of pseudo-random bytes (no zero pages to skip)
 * and an empty destination @b of the same shape. */
static inline void
sides_new(struct side *a, struct side *b, vmig_ctx_t *ctx, size_t ram,
          size_t dev)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    side_new(a, ctx, ram, dev, 1);
    side_new(b, ctx, ram, dev, 2);
    for (size_t i = 0; i < ram / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint64_t *)a->ram)[i] = x;
    }
    memset(b->ram, 0, ram);
}

#endif /* VMIG_BENCH_SIDE_H */
