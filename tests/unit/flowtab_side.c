/* SPDX-License-Identifier: MIT */
/*
 * flowtab_side.c - a flowtab device model on guest RAM for the model
 * tests (flowtab_side.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include "flowtab_side.h"
#include "flowtab_testlib.h"

vmig_ctx_t *ctx;

void
side_new_cfg(struct side *s, const struct ft_config *cfg)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(ft_ram_new(&s->ram, RAM_BYTES), 0);
    assert_int_equal(ft_model_new(ctx, cfg, &ft_ram_dma, &s->ram, &s->dev), 0);
    s->regs = ft_regs_of(s->dev);
}

void
side_new(struct side *s, uint64_t state, uint32_t chunk, bool no_thread)
{
    struct ft_config cfg = {.state_bytes = state,
                            .chunk_bytes = chunk,
                            .device_id = 1,
                            .no_thread = no_thread};

    side_new_cfg(s, &cfg);
}

void
side_guest(struct side *s, uint32_t nflows)
{
    assert_int_equal(ft_guest_init(&s->g, s->ram.base, s->ram.len, AREA, 256,
                                   nflows, 0x9e3779b97f4a7c15ull, &s->regs),
                     0);
}

void
side_free(struct side *s)
{
    ft_model_free(s->dev);
    ft_ram_free(&s->ram);
}

void
set_state(struct ft_model *d, unsigned int st)
{
    assert_int_equal(vmig_dev_set_state(ft_model_dev(d), st), 0);
    assert_int_equal(vmig_dev_state(ft_model_dev(d)), st);
}

void
assert_same_state(struct ft_model *a, struct ft_model *b)
{
    uint64_t ah, al, bh, bl;

    ft_model_digest(a, &ah, &al);
    ft_model_digest(b, &bh, &bl);
    assert_true(ah == bh && al == bl);
}

/* Post and process synchronously (no_thread device). */
void
traffic(struct side *s, unsigned int n)
{
    while (n > 0) {
        long p = ft_guest_post(&s->g, n > 64 ? 64 : n, 0);

        assert_true(p > 0);
        while (ft_model_poll(s->dev, 1024) > 0) {
        }
        assert_return_code(ft_guest_reap(&s->g), 0);
        n -= (unsigned int)p;
    }
    assert_int_equal(ft_guest_outstanding(&s->g), 0);
}

/* Post and wait for completions (threaded device). */
void
traffic_threaded(struct side *s, unsigned int n)
{
    while (n > 0) {
        long p = ft_guest_post(&s->g, n > 64 ? 64 : n, 0);

        assert_true(p > 0);
        assert_int_equal(ft_drain(&s->g, 5000), 0);
        n -= (unsigned int)p;
    }
    assert_int_equal(s->g.a->bad, 0);
}

int
setup(void **state)
{
    (void)state;
    return vmig_ctx_new("ft-test", NULL, NULL, &ctx);
}

int
teardown(void **state)
{
    (void)state;
    vmig_ctx_free(ctx);
    return 0;
}
