/* SPDX-License-Identifier: MIT */
/*
 * test_engine_precopy.c - the engine's precopy between two engines over
 * loopback TCP, with in-process flowtab devices (large state that changes
 * under guest traffic, PRE_COPY with dirty tracking) and guest RAM dirty
 * tracking through <vmig/ramdirty.h> behind the engine's dirty hooks.
 *
 * Proved here: guest RAM and device state land identical under load
 * (dirty passes catch every write), convergence and both cap actions,
 * switchover-ack refusing a device before the source pauses anything,
 * a device reset during PRE_COPY restarted or aborting per the policy,
 * the mixed-P2P refusal and its override, and stop-and-copy on request.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "../engine_pair.h"
#include "../loopback.h"
#include <vmig/engine.h>
#include <vmig/ramdirty.h>
#include "flowtab_testlib.h"
#include "ft_engine_dev.h"

#define RAM_BYTES (16u << 20)
#define AREA 0x100000u
#define NDEV_MAX 2

/* The flowtab backend (devices/flowtab/ft_engine_dev.c) without its
 * descriptor: the destination then judges the stream itself, on its
 * initial data (switchover-ack), instead of refusing in HELLO. */
static struct vmig_engine_dev_ops ftdev_ops;

/* ------------------------------------------------------------ a VM */

struct pvm {
    vmig_ctx_t *ctx;
    struct ft_ram ram;
    unsigned int ndev;
    struct ft_edev dev[NDEV_MAX];
    struct ft_guest g;
    bool guest;
    struct ft_vcpu vcpu;
    bool vcpu_on;
    struct vmig_ramdirty *rd;
    struct vmig_engine *eng;
    unsigned int pauses, resumes;
    /* reset device 0 at the end of the first precopy iteration */
    bool reset_in_precopy;
    /* reset device 0 in the pause hook (once) */
    bool reset_at_pause;
    /* the guest rewrites 64 pages every round: never converges below
     * a few ms */
    bool dirty_each_round;
    uint8_t round;
    bool did_reset;
};

static int
vm_pause(void *o)
{
    struct pvm *vm = o;

    vm->pauses++;
    if (vm->reset_at_pause) {
        /* after the last precopy read, before the devices stop */
        vm->reset_at_pause = false;
        vmig_dev_reset(ft_model_dev(vm->dev[0].m), VMIG_RESET_HOST);
    }
    if (vm->vcpu_on) {
        assert_int_equal(ft_vcpu_stop(&vm->vcpu), 0);
        vm->vcpu_on = false;
        /* the guest finishes its in-flight packets before it stops */
        assert_int_equal(ft_drain(&vm->g, 5000), 0);
    }
    return 0;
}

static int
vm_resume(void *o)
{
    ((struct pvm *)o)->resumes++;
    return 0;
}

static int
vm_dirty_start(void *o)
{
    struct pvm *vm = o;
    int ret;

    vmig_ramdirty_free(vm->rd);
    vm->rd = NULL;
    ret = vmig_ramdirty_new(vm->ctx, VMIG_DIRTY_AUTO, &vm->rd);
    if (ret == 0) {
        ret = vmig_ramdirty_add_region(vm->rd, 0, vm->ram.base, vm->ram.len);
    }
    if (ret >= 0) {
        ret = vmig_ramdirty_start(vm->rd);
    }
    return ret < 0 ? ret : 0;
}

static long
vm_dirty_collect(void *o, unsigned int region, uint64_t *bm, size_t nbits)
{
    struct pvm *vm = o;

    /* the end of the first precopy iteration: device 0 sent all its
     * initial data, and now it is reset: its session ends with ENODEV */
    if (vm->reset_in_precopy && !vm->did_reset) {
        vm->did_reset = true;
        vmig_dev_reset(ft_model_dev(vm->dev[0].m), VMIG_RESET_HOST);
    }
    if (vm->dirty_each_round) {
        vm->round++;
        for (unsigned int i = 0; i < 64; i++) {
            vm->ram.base[RAM_BYTES - (size_t)(i + 1) * 4096] = vm->round;
        }
    }
    return vmig_ramdirty_collect(vm->rd, region, 0, vm->ram.len, bm, nbits);
}

static void
vm_dirty_stop(void *o)
{
    struct pvm *vm = o;

    if (vmig_ramdirty_stop(vm->rd) < 0) {
        fail_msg("stopping dirty tracking failed");
    }
}

static const struct vmig_engine_vm_ops pvm_ops = {
    .vcpu_pause = vm_pause,
    .vcpu_resume = vm_resume,
    .dirty_start = vm_dirty_start,
    .dirty_collect = vm_dirty_collect,
    .dirty_stop = vm_dirty_stop,
};

/* A VM with @ndev flowtab devices of @state bytes; @flags[i] 0: all. */
static struct pvm *
pvm_new(const char *name, unsigned int ndev, uint64_t state,
        const uint32_t *flags, uint32_t chunk)
{
    struct pvm *vm = calloc(1, sizeof(*vm));
    struct vmig_engine_region rg;

    ftdev_ops = *ft_edev_ops();
    ftdev_ops.describe = NULL;

    assert_non_null(vm);
    assert_int_equal(
        vmig_ctx_new(name, getenv("VMIG_TEST_LOG") ? vmig_log_stderr : NULL,
                     NULL, &vm->ctx),
        0);
    assert_int_equal(ft_ram_new(&vm->ram, RAM_BYTES), 0);
    rg.name = "ram0";
    rg.host = vm->ram.base;
    rg.size = RAM_BYTES;
    assert_int_equal(vmig_engine_new(vm->ctx, &rg, 1, &pvm_ops, vm, &vm->eng),
                     0);
    vm->ndev = ndev;
    for (unsigned int i = 0; i < ndev; i++) {
        struct ft_config cfg = {.state_bytes = state,
                                .chunk_bytes = chunk,
                                .device_id = i + 1,
                                .mig_flags = flags != NULL ? flags[i] : 0};
        struct ft_model *m;
        char dname[16];

        assert_int_equal(ft_model_new(vm->ctx, &cfg, &ft_ram_dma, &vm->ram, &m),
                         0);
        ft_edev_init(&vm->dev[i], m);
        snprintf(dname, sizeof(dname), "ft%u", i);
        assert_int_equal(
            vmig_engine_add_device(vm->eng, dname, &ftdev_ops, &vm->dev[i]), 0);
    }
    return vm;
}

/* Program the guest driver of device 0 and let the vCPU post packets. */
static void
pvm_start_traffic(struct pvm *vm)
{
    struct ft_guest_regs regs = ft_regs_of(vm->dev[0].m);

    assert_int_equal(ft_guest_init(&vm->g, vm->ram.base, vm->ram.len, AREA, 256,
                                   4096, 0x9e3779b97f4a7c15ull, &regs),
                     0);
    vm->guest = true;
    vm->vcpu.g[0] = &vm->g;
    vm->vcpu.ng = 1;
    vm->vcpu.burst = 16;
    assert_int_equal(ft_vcpu_start(&vm->vcpu), 0);
    vm->vcpu_on = true;
    /* some packets through before the migration starts */
    for (int t = 0; t < 2000 && ft_guest_completed(&vm->g) < 2000; t++) {
        usleep(1000);
    }
    assert_true(ft_guest_completed(&vm->g) >= 2000);
}

static void
pvm_free(struct pvm *vm)
{
    if (vm->vcpu_on) {
        (void)ft_vcpu_stop(&vm->vcpu);
    }
    vmig_engine_free(vm->eng);
    vmig_ramdirty_free(vm->rd);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        ft_model_free(vm->dev[i].m);
    }
    ft_ram_free(&vm->ram);
    vmig_ctx_free(vm->ctx);
    free(vm);
}

static void
set_params(struct pvm *vm, const struct vmig_engine_params *p)
{
    vmig_engine_set_params(vm->eng, p);
}

/* ------------------------------------------------------ the wire */

static int
listen_any(int *port)
{
    int fd = lb_listen(port);

    assert_true(fd >= 0);
    return fd;
}

static int
connect_to(int port)
{
    int fd = lb_connect(port);

    assert_true(fd >= 0);
    return fd;
}

static int
migrate(struct pvm *src, struct pvm *dst, int *dret)
{
    struct ep_dst j = {.eng = dst->eng};
    int port, fd, ret;

    j.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    fd = connect_to(port);
    ret = vmig_engine_migrate(src->eng, fd);
    close(fd);
    pthread_join(j.th, NULL);
    close(j.lfd);
    *dret = j.ret;
    return ret;
}

/* ------------------------------------------------------ checks */

static void
assert_same_device(struct ft_model *a, struct ft_model *b)
{
    uint64_t ah, al, bh, bl;

    ft_model_digest(a, &ah, &al);
    ft_model_digest(b, &bh, &bl);
    assert_true(ah == bh && al == bl);
}

/* Landed: RAM byte-identical, device states equal, destination running. */
static void
check_landed(struct pvm *a, struct pvm *b)
{
    assert_memory_equal(a->ram.base, b->ram.base, RAM_BYTES);
    for (unsigned int i = 0; i < a->ndev; i++) {
        assert_same_device(a->dev[i].m, b->dev[i].m);
        assert_int_equal(vmig_dev_state(ft_model_dev(b->dev[i].m)),
                         VMIG_STATE_RUNNING);
    }
    assert_int_equal(b->resumes, 1);
}

/* Rolled back: the source runs as before, its devices RUNNING. */
static void
check_rolled_back(struct pvm *a, struct pvm *b)
{
    for (unsigned int i = 0; i < a->ndev; i++) {
        assert_int_equal(vmig_dev_state(ft_model_dev(a->dev[i].m)),
                         VMIG_STATE_RUNNING);
        assert_int_not_equal(vmig_dev_state(ft_model_dev(b->dev[i].m)),
                             VMIG_STATE_RESUMING);
    }
    assert_int_equal(a->resumes, a->pauses);
    assert_int_equal(b->resumes, 0);
}

/* ------------------------------------------------------ tests */

/* Under guest traffic, precopy converges within the default limit and
 * everything the guest and the device wrote meanwhile arrives. */
static void
test_precopy_under_load(void **state)
{
    struct pvm *a = pvm_new("A", 1, 8u << 20, NULL, 0);
    struct pvm *b = pvm_new("B", 1, 8u << 20, NULL, 0);
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    pvm_start_traffic(a);
    ret = migrate(a, b, &dret);
    assert_int_equal(ret, 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    vmig_engine_stats(a->eng, &st);
    assert_true(st.precopy);
    assert_true(st.iterations >= 1);
    assert_true(st.dev[0].precopy_bytes >= (8u << 20));
    assert_true(st.dev[0].bytes > st.dev[0].precopy_bytes ||
                st.dev[0].bytes == st.dev[0].precopy_bytes);
    assert_true(st.precopy_bytes > RAM_BYTES / 2);
    assert_true(st.stopcopy_bytes < st.precopy_bytes);
    assert_int_equal(a->pauses, 1);
    pvm_free(a);
    pvm_free(b);
}

/* A limit that cannot be met: the iteration cap switches over anyway
 * (several passes, state still exact) or aborts with the VM running. */
static void
test_cap_actions(void **state)
{
    struct vmig_engine_params p = {.downtime_limit_ms = 1,
                                   .max_bandwidth = 48u << 20,
                                   .max_iterations = 4};
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    for (int abort_on_cap = 0; abort_on_cap < 2; abort_on_cap++) {
        struct pvm *a = pvm_new("A", 1, 4u << 20, NULL, 0);
        struct pvm *b = pvm_new("B", 1, 4u << 20, NULL, 0);

        p.cap_action =
            abort_on_cap ? VMIG_ENGINE_CAP_ABORT : VMIG_ENGINE_CAP_STOP_COPY;
        set_params(a, &p);
        a->dirty_each_round = true;
        pvm_start_traffic(a);
        ret = migrate(a, b, &dret);
        vmig_engine_stats(a->eng, &st);
        assert_int_equal(st.iterations, 4);
        if (abort_on_cap) {
            assert_int_equal(ret, -ETIME);
            assert_int_not_equal(dret, 0);
            assert_int_equal(a->pauses, 0);
            check_rolled_back(a, b);
            assert_non_null(strstr(st.error, "did not converge"));
        } else {
            assert_int_equal(ret, 0);
            assert_int_equal(dret, 0);
            assert_true(st.pass >= 4);
            check_landed(a, b);
        }
        pvm_free(a);
        pvm_free(b);
    }
}

/* Switchover-ack: a destination device that cannot take the source's
 * stream (another chunk geometry) refuses its initial data; the source
 * never paused its VM. */
static void
test_switchover_ack_refusal(void **state)
{
    struct pvm *a = pvm_new("A", 1, 4u << 20, NULL, 0);
    struct pvm *b = pvm_new("B", 1, 4u << 20, NULL, 16u << 10);
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    pvm_start_traffic(a);
    ret = migrate(a, b, &dret);
    assert_true(ret < 0);
    assert_true(dret < 0);
    assert_int_equal(a->pauses, 0);
    check_rolled_back(a, b);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "ft0"));
    /* the source carries on and migrates fine to a matching destination */
    {
        struct pvm *c = pvm_new("C", 1, 4u << 20, NULL, 0);

        assert_int_equal(migrate(a, c, &dret), 0);
        assert_int_equal(dret, 0);
        check_landed(a, c);
        pvm_free(c);
    }
    pvm_free(a);
    pvm_free(b);
}

/* A device reset during PRE_COPY: restarted (default) or aborting. */
static void
test_reset_during_precopy(void **state)
{
    struct vmig_engine_params p = {.downtime_limit_ms = 1,
                                   .max_bandwidth = 256u << 20,
                                   .max_iterations = 5};
    struct vmig_engine_stats st, dst_st;
    int dret, ret;

    (void)state;
    for (int abort_policy = 0; abort_policy < 2; abort_policy++) {
        struct pvm *a = pvm_new("A", 1, 4u << 20, NULL, 0);
        struct pvm *b = pvm_new("B", 1, 4u << 20, NULL, 0);

        p.reset_policy =
            abort_policy ? VMIG_ENGINE_RESET_ABORT : VMIG_ENGINE_RESET_RESTART;
        set_params(a, &p);
        a->reset_in_precopy = true;
        ret = migrate(a, b, &dret);
        assert_true(a->did_reset);
        vmig_engine_stats(a->eng, &st);
        vmig_engine_stats(b->eng, &dst_st);
        if (abort_policy) {
            assert_int_equal(ret, -ENODEV);
            assert_true(dret < 0);
            assert_int_equal(a->pauses, 0);
            check_rolled_back(a, b);
            assert_non_null(strstr(st.error, "ft0"));
            assert_non_null(strstr(st.error, "reset"));
        } else {
            assert_int_equal(ret, 0);
            assert_int_equal(dret, 0);
            assert_int_equal(st.dev[0].restarts, 1);
            assert_int_equal(st.error[0], '\0');
            assert_int_equal(dst_st.dev[0].restarts, 1);
            check_landed(a, b);
        }
        pvm_free(a);
        pvm_free(b);
    }
}

/* A reset between the last precopy read and the stop must not let the
 * device open a new session that would go out as the continuation of the
 * old one: the migration fails and rolls back. */
static void
test_reset_at_switchover(void **state)
{
    struct pvm *a = pvm_new("A", 1, 2u << 20, NULL, 0);
    struct pvm *b = pvm_new("B", 1, 2u << 20, NULL, 0);
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    a->reset_at_pause = true;
    ret = migrate(a, b, &dret);
    assert_int_equal(ret, -ENODEV);
    assert_true(dret < 0);
    check_rolled_back(a, b);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "ft0 was reset during the switchover"));
    /* and the next attempt goes through */
    assert_int_equal(migrate(a, b, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    pvm_free(a);
    pvm_free(b);
}

/* Several devices where one lacks P2P: refused before anything changes
 * (and by the check), accepted with the override. */
static void
test_mixed_p2p(void **state)
{
    static const uint32_t flags[2] = {
        FT_MIG_FLAGS, VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY};
    struct pvm *a = pvm_new("A", 2, 1u << 20, flags, 0);
    struct pvm *b = pvm_new("B", 2, 1u << 20, flags, 0);
    struct vmig_engine_params p = {.allow_mixed_p2p = true};
    struct vmig_engine_check chk;
    struct vmig_engine_stats st;
    struct ep_dst j = {.eng = b->eng};
    int dret, ret, port, fd;

    (void)state;
    ret = migrate(a, b, &dret);
    assert_int_equal(ret, -EOPNOTSUPP);
    assert_true(dret < 0);
    assert_int_equal(a->pauses, 0);
    check_rolled_back(a, b);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "ft1"));
    assert_non_null(strstr(st.error, "allow-mixed-p2p"));

    j.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    fd = connect_to(port);
    assert_int_equal(vmig_engine_check(a->eng, fd, &chk), 0);
    close(fd);
    pthread_join(j.th, NULL);
    close(j.lfd);
    assert_int_equal(j.ret, 1);
    assert_int_equal(chk.status, EOPNOTSUPP);
    assert_non_null(strstr(chk.reason, "ft1"));

    set_params(a, &p);
    assert_int_equal(migrate(a, b, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    pvm_free(a);
    pvm_free(b);
}

/* no_precopy: plain stop-and-copy although both sides could precopy. */
static void
test_no_precopy(void **state)
{
    struct pvm *a = pvm_new("A", 1, 2u << 20, NULL, 0);
    struct pvm *b = pvm_new("B", 1, 2u << 20, NULL, 0);
    struct vmig_engine_params p = {.no_precopy = true};
    struct vmig_engine_stats st;
    int dret;

    (void)state;
    set_params(a, &p);
    pvm_start_traffic(a);
    assert_int_equal(migrate(a, b, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    vmig_engine_stats(a->eng, &st);
    assert_false(st.precopy);
    assert_int_equal(st.iterations, 0);
    assert_int_equal(st.dev[0].precopy_bytes, 0);
    pvm_free(a);
    pvm_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precopy_under_load),
        cmocka_unit_test(test_cap_actions),
        cmocka_unit_test(test_switchover_ack_refusal),
        cmocka_unit_test(test_reset_during_precopy),
        cmocka_unit_test(test_reset_at_switchover),
        cmocka_unit_test(test_mixed_p2p),
        cmocka_unit_test(test_no_precopy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
