/* SPDX-License-Identifier: MIT */
/*
 * test_flowtab_p2p.c - two flowtab devices of one VM forwarding packets
 * into each other (P2P) under guest load, migrated together.
 *
 * Two-phase stop (the uAPI's order for several devices): both devices to
 * RUNNING_P2P first - neither initiates P2P any more, both still accept it -
 * and only then either to STOP_COPY.  Nothing is lost: on the destination every
 * record a device forwarded has been counted by its peer.
 *
 * One-phase stop (deliberately wrong, test-only): device A goes to
 * STOP_COPY while B still runs and forwards into A.  A is frozen and
 * refuses the writes; B believes them delivered (posted writes), so the
 * migrated pair disagrees: the test asserts that loss.
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
#include <cmocka.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include "flowtab_testlib.h"

#define S(x) VMIG_STATE_##x
#define RAM_BYTES (4u << 20)
#define AREA_A 0x10000u
#define AREA_B 0x100000u
#define STATE_BYTES (4u << 20)
#define CHUNK (16u << 10)
#define BACKLOG 32u

static vmig_ctx_t *ctx;

struct vm {
    struct ft_ram ram;
    struct ft_model *dev[2];
    struct ft_guest g[2];
    struct ft_guest_regs regs[2];
};

static void
vm_new(struct vm *vm)
{
    memset(vm, 0, sizeof(*vm));
    assert_int_equal(ft_ram_new(&vm->ram, RAM_BYTES), 0);
    for (int i = 0; i < 2; i++) {
        struct ft_config cfg = {.state_bytes = STATE_BYTES,
                                .chunk_bytes = CHUNK,
                                .device_id = (uint32_t)i + 1};

        assert_int_equal(
            ft_model_new(ctx, &cfg, &ft_ram_dma, &vm->ram, &vm->dev[i]), 0);
        vm->regs[i] = ft_regs_of(vm->dev[i]);
    }
    /* A forwards into B's window and B into A's */
    ft_model_set_peer(vm->dev[0], &ft_model_peer, vm->dev[1]);
    ft_model_set_peer(vm->dev[1], &ft_model_peer, vm->dev[0]);
}

static void
vm_free(struct vm *vm)
{
    /* disconnect first: no write may target a device being freed */
    ft_model_set_peer(vm->dev[0], NULL, NULL);
    ft_model_set_peer(vm->dev[1], NULL, NULL);
    ft_model_free(vm->dev[0]);
    ft_model_free(vm->dev[1]);
    ft_ram_free(&vm->ram);
}

static void
set_state(struct ft_model *d, unsigned int st)
{
    assert_int_equal(vmig_dev_set_state(ft_model_dev(d), st), 0);
    assert_int_equal(vmig_dev_state(ft_model_dev(d)), st);
}

/* Work already queued in a device's ring when the vCPU was paused. */
static void
backlog(struct vm *vm, int i)
{
    assert_int_equal(ft_guest_post(&vm->g[i], BACKLOG, 1), BACKLOG);
}

/* Carry device @i's STOP_COPY stream from @src into @dst. */
static void
carry(struct vm *src, struct vm *dst, int i)
{
    uint8_t *buf;
    size_t len;
    uint64_t sh, sl, dh, dl;

    assert_int_equal(ft_read_all(src->dev[i], ft_gen(src->dev[i]), &buf, &len),
                     0);
    if (vmig_dev_state(ft_model_dev(dst->dev[i])) != S(RESUMING)) {
        set_state(dst->dev[i], S(STOP));
        set_state(dst->dev[i], S(RESUMING));
    }
    assert_int_equal(ft_write_gen(dst->dev[i], ft_gen(dst->dev[i]), buf, len),
                     (ssize_t)len);
    free(buf);
    set_state(dst->dev[i], S(STOP));
    ft_model_digest(src->dev[i], &sh, &sl);
    ft_model_digest(dst->dev[i], &dh, &dl);
    assert_true(sh == dh && sl == dl);
}

struct outcome {
    uint64_t lost_into[2]; /* forwarded by the other device, not counted */
    uint64_t refused[2];   /* inbound writes refused on the source */
    uint64_t p2p_rx[2];
};

enum variant {
    TWO_PHASE,         /* RUNNING_P2P for all, then STOP_COPY */
    ONE_PHASE,         /* deliberately wrong: A frozen while B runs */
    PRECOPY_TWO_PHASE, /* PRE_COPY passes, PRE_COPY_P2P for all, STOP_COPY */
};

static const char *const variant_name[] = {"two-phase", "one-phase",
                                           "precopy two-phase"};

/* PRE_COPY passes for both devices while the guest runs. */
static void
precopy(struct vm *src, struct vm *dst, uint64_t *bytes)
{
    const uint64_t rec = sizeof(struct ft_rec_hdr) + CHUNK;
    uint64_t ini, dirty;

    for (int i = 0; i < 2; i++) {
        set_state(src->dev[i], S(PRE_COPY));
        set_state(dst->dev[i], S(STOP));
        set_state(dst->dev[i], S(RESUMING));
    }
    for (int pass = 0; pass < 20; pass++) {
        bool small = true;

        for (int i = 0; i < 2; i++) {
            assert_int_equal(
                vmig_dev_precopy_info(ft_model_dev(src->dev[i]), &ini, &dirty),
                0);
            small = small && ini == 0 && dirty <= 8 * rec;
            assert_int_equal(ft_copy(src->dev[i], ft_gen(src->dev[i]),
                                     dst->dev[i], ft_gen(dst->dev[i]),
                                     ini + dirty + 1, bytes),
                             0);
        }
        if (small) {
            break;
        }
    }
}

static void
migrate_pair(enum variant var, struct outcome *o)
{
    const bool two_phase = var != ONE_PHASE;
    uint64_t pre_bytes = 0;
    struct vm src, dst;
    struct ft_vcpu v = {.ng = 2, .fwd_every = 3, .burst = 8};
    struct ft_counters c[2];
    struct ft_diag dg;
    uint32_t status;

    vm_new(&src);
    vm_new(&dst);
    assert_int_equal(ft_guest_init(&src.g[0], src.ram.base, src.ram.len, AREA_A,
                                   128, 50, 11, &src.regs[0]),
                     0);
    assert_int_equal(ft_guest_init(&src.g[1], src.ram.base, src.ram.len, AREA_B,
                                   128, 50, 13, &src.regs[1]),
                     0);

    /* load: the guest drives both devices, a third of it forwarded */
    v.g[0] = &src.g[0];
    v.g[1] = &src.g[1];
    assert_int_equal(ft_vcpu_start(&v), 0);
    for (int i = 0; i < 10000 && (ft_guest_completed(&src.g[0]) < 3000 ||
                                  ft_guest_completed(&src.g[1]) < 3000);
         i++) {
        usleep(1000);
    }
    if (var == PRECOPY_TWO_PHASE) {
        precopy(&src, &dst, &pre_bytes); /* under the same load */
        assert_true(pre_bytes >= 2ull * STATE_BYTES);
    }
    assert_int_equal(ft_vcpu_stop(&v), 0); /* the vCPU pauses */
    /* what it had queued completes; the backlog below is then exactly
     * BACKLOG forwarding descriptors per ring */
    assert_int_equal(ft_drain(&src.g[0], 5000), 0);
    assert_int_equal(ft_drain(&src.g[1], 5000), 0);

    if (two_phase) {
        /* phase 1: every device stops initiating P2P */
        unsigned int p2p =
            var == PRECOPY_TWO_PHASE ? S(PRE_COPY_P2P) : S(RUNNING_P2P);

        set_state(src.dev[0], p2p);
        set_state(src.dev[1], p2p);
        backlog(&src, 1);
        backlog(&src, 0);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(ft_model_wait_idle(src.dev[i], 5000), 0);
            assert_int_equal(
                ft_model_reg_read(src.dev[i], FT_REG_STATUS, &status), 0);
            assert_true(status & FT_STATUS_P2P_HOLD);
        }
        /* phase 2: only now any device's final state is read */
        set_state(src.dev[0], S(STOP_COPY));
        set_state(src.dev[1], S(STOP_COPY));
    } else {
        /* one phase: A frozen while B still runs and forwards into A */
        set_state(src.dev[0], S(STOP_COPY));
        backlog(&src, 1);
        assert_int_equal(ft_model_wait_idle(src.dev[1], 5000), 0);
        set_state(src.dev[1], S(STOP_COPY));
    }
    carry(&src, &dst, 0);
    carry(&src, &dst, 1);
    for (int i = 0; i < 2; i++) {
        ft_model_diag(src.dev[i], &dg);
        o->refused[i] = dg.p2p_refused;
    }

    /* destination: guest RAM in, every device to RUNNING_P2P before any
     * to RUNNING, then the guest resumes and drains its rings */
    memcpy(dst.ram.base, src.ram.base, RAM_BYTES);
    set_state(dst.dev[0], S(RUNNING_P2P));
    set_state(dst.dev[1], S(RUNNING_P2P));
    set_state(dst.dev[0], S(RUNNING));
    set_state(dst.dev[1], S(RUNNING));
    assert_int_equal(ft_guest_attach(&dst.g[0], dst.ram.base, dst.ram.len,
                                     AREA_A, &dst.regs[0]),
                     0);
    assert_int_equal(ft_guest_attach(&dst.g[1], dst.ram.base, dst.ram.len,
                                     AREA_B, &dst.regs[1]),
                     0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ft_drain(&dst.g[i], 5000), 0);
        /* the guest sees every completion right, in both variants: a lost
         * posted write is invisible to it */
        assert_int_equal(dst.g[i].a->bad, 0);
        assert_int_equal(dst.g[i].a->completed, dst.g[i].a->posted);
        assert_int_equal(ft_model_wait_idle(dst.dev[i], 5000), 0);
    }
    for (int i = 0; i < 2; i++) {
        ft_model_counters(dst.dev[i], &c[i]);
        assert_int_equal(c[i].p2p_tx, dst.g[i].a->fwd_completed);
        assert_int_equal(ft_model_peer_sum(dst.dev[i]), c[i].p2p_rx);
    }
    for (int i = 0; i < 2; i++) {
        o->p2p_rx[i] = c[i].p2p_rx;
        o->lost_into[i] = c[1 - i].p2p_tx - c[i].p2p_rx;
    }
    print_message(
        "%s: A forwarded %llu, B counted %llu; B forwarded %llu, "
        "A counted %llu; refused on the source: A %llu, B %llu\n",
        variant_name[var], (unsigned long long)c[0].p2p_tx,
        (unsigned long long)c[1].p2p_rx, (unsigned long long)c[1].p2p_tx,
        (unsigned long long)c[0].p2p_rx, (unsigned long long)o->refused[0],
        (unsigned long long)o->refused[1]);
    vm_free(&src);
    vm_free(&dst);
}

static void
test_two_phase_stop_loses_nothing(void **state)
{
    struct outcome o = {0};

    (void)state;
    migrate_pair(TWO_PHASE, &o);
    assert_true(o.p2p_rx[0] > 500 && o.p2p_rx[1] > 500);
    assert_int_equal(o.lost_into[0], 0);
    assert_int_equal(o.lost_into[1], 0);
    assert_int_equal(o.refused[0], 0);
    assert_int_equal(o.refused[1], 0);
}

static void
test_one_phase_stop_loses_records(void **state)
{
    struct outcome o = {0};

    (void)state;
    migrate_pair(ONE_PHASE, &o);
    /* B's backlog went into a frozen A: refused there, counted as sent by
     * B, absent from A's migrated state */
    assert_int_equal(o.refused[0], BACKLOG);
    assert_int_equal(o.lost_into[0], BACKLOG);
    assert_int_equal(o.lost_into[1], 0);
}

/*
 * The live sequence: precopy under P2P load (inbound P2P writes dirty the
 * receiver's chunks and are resent), then PRE_COPY_P2P for both, then
 * STOP_COPY: byte-identical destinations, nothing lost.
 */
static void
test_precopy_two_phase_loses_nothing(void **state)
{
    struct outcome o = {0};

    (void)state;
    migrate_pair(PRECOPY_TWO_PHASE, &o);
    assert_true(o.p2p_rx[0] > 500 && o.p2p_rx[1] > 500);
    assert_int_equal(o.lost_into[0], 0);
    assert_int_equal(o.lost_into[1], 0);
    assert_int_equal(o.refused[0], 0);
    assert_int_equal(o.refused[1], 0);
}

static int
setup(void **state)
{
    (void)state;
    return vmig_ctx_new("ft-p2p", NULL, NULL, &ctx);
}

static int
teardown(void **state)
{
    (void)state;
    vmig_ctx_free(ctx);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_phase_stop_loses_nothing),
        cmocka_unit_test(test_one_phase_stop_loses_records),
        cmocka_unit_test(test_precopy_two_phase_loses_nothing),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
