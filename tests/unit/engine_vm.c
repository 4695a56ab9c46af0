/* SPDX-License-Identifier: MIT */
/*
 * engine_vm.c - a test VM for the engine tests (engine_vm.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <xxhash.h>
#include "../loopback.h"
#include "engine_vm.h"

static int
tvm_hook(void *opaque, uint64_t steps)
{
    struct tvm *vm = opaque;

    (void)steps;
    for (unsigned int i = 0; i < vm->ndev; i++) {
        int ret = vmig_memdev_work(vm->dev[i], 3);

        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int
tvm_vm_pause(void *o)
{
    ((struct tvm *)o)->pauses++;
    return vmig_vcpu_pause(((struct tvm *)o)->vcpu);
}

int
tvm_vm_resume(void *o)
{
    struct tvm *vm = o;

    vm->snap_ram = XXH3_64bits(vm->ram, vm->ram_size);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        vm->snap_dev[i] = vmig_memdev_digest(vm->dev[i]);
    }
    vm->resumes++;
    return vmig_vcpu_resume(vm->vcpu);
}

ssize_t
tvm_vm_save(void *o, void *buf, size_t cap)
{
    return vmig_vcpu_save(((struct tvm *)o)->vcpu, buf, cap);
}

int
tvm_vm_load(void *o, const void *buf, size_t len)
{
    return vmig_vcpu_load(((struct tvm *)o)->vcpu, buf, len);
}

const struct vmig_engine_vm_ops tvm_vm_ops = {
    .vcpu_pause = tvm_vm_pause,
    .vcpu_resume = tvm_vm_resume,
    .vcpu_save = tvm_vm_save,
    .vcpu_load = tvm_vm_load,
};

int
tvm_vm_hole(void *o, unsigned int region, uint64_t off, uint64_t len)
{
    struct tvm *vm = o;
    const uint8_t *p = vm->ram + off;

    if (region != 0) {
        return 0;
    }
    for (uint64_t i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    __atomic_add_fetch(&vm->holes, 1, __ATOMIC_RELAXED);
    return 1;
}

struct tvm *
tvm_make(const char *name, bool program, uint64_t seed,
         const struct tvm_cfg *cfg)
{
    struct tvm *vm = calloc(1, sizeof(*vm));
    struct vmig_engine_region rg;
    struct vmig_vcpu_params vp = {.steps_per_sec = 100000, .hook = tvm_hook};

    assert_non_null(vm);
    assert_true(cfg->ndev <= TVM_MAX_DEV);
    vm->ram_size = cfg->ram_size;
    vm->dev_state = cfg->dev_state;
    vm->ndev = cfg->ndev;
    assert_int_equal(
        vmig_ctx_new(name, getenv("VMIG_TEST_LOG") ? vmig_log_stderr : NULL,
                     NULL, &vm->ctx),
        0);
    vm->ram = aligned_alloc(4096, vm->ram_size);
    assert_non_null(vm->ram);
    memset(vm->ram, 0, vm->ram_size);
    if (program) {
        assert_int_equal(vmig_guest_init(vm->ram, vm->ram_size, seed), 0);
    }
    for (unsigned int i = 0; i < vm->ndev; i++) {
        struct vmig_memdev_params mp = {.state_size = cfg->dev_state,
                                        .flags = cfg->flags[i],
                                        .seed = seed + (uint64_t)i,
                                        .revision = cfg->revision};
        uint8_t c[VMIG_MEMDEV_CONFIG_SIZE];

        assert_int_equal(vmig_memdev_new(vm->ctx, &mp, &vm->dev[i]), 0);
        memset(c, program ? 0xc0 + (int)i : 0, sizeof(c));
        vmig_memdev_config(vm->dev[i], NULL, c);
    }
    vp.opaque = vm;
    assert_int_equal(vmig_vcpu_new(vm->ram, vm->ram_size, &vp, &vm->vcpu), 0);
    rg.name = "ram0";
    rg.host = vm->ram;
    rg.size = vm->ram_size;
    assert_int_equal(vmig_engine_new(vm->ctx, &rg, 1,
                                     cfg->vm_ops ? cfg->vm_ops : &tvm_vm_ops,
                                     vm, &vm->eng),
                     0);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        assert_int_equal(vmig_engine_add_device(
                             vm->eng, cfg->names[i],
                             cfg->dev_ops ? cfg->dev_ops : vmig_memdev_ops(),
                             vm->dev[i]),
                         0);
    }
    return vm;
}

void
tvm_free(struct tvm *vm)
{
    vmig_vcpu_free(vm->vcpu);
    vmig_engine_free(vm->eng);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        vmig_memdev_free(vm->dev[i]);
    }
    free(vm->ram);
    vmig_ctx_free(vm->ctx);
    free(vm->ext);
    free(vm);
}

static const struct vmig_engine_vm_ops std_vm_ops = {
    .ram_hole = tvm_vm_hole,
    .vcpu_pause = tvm_vm_pause,
    .vcpu_resume = tvm_vm_resume,
    .vcpu_save = tvm_vm_save,
    .vcpu_load = tvm_vm_load,
};

struct tvm *
tvm_std_new(const char *name, bool program, uint64_t seed, uint8_t revision,
            const struct vmig_engine_dev_ops *dev_ops)
{
    static const char *const names[TVM_STD_NDEV] = {"acc0", "nic0"};
    static const uint64_t flags[TVM_STD_NDEV] = {VMIG_MIGRATION_STOP_COPY |
                                                     VMIG_MIGRATION_P2P,
                                                 VMIG_MIGRATION_STOP_COPY};
    struct tvm_cfg cfg = {.ram_size = TVM_STD_RAM,
                          .dev_state = TVM_STD_DEV_STATE,
                          .ndev = TVM_STD_NDEV,
                          .names = names,
                          .flags = flags,
                          .revision = revision,
                          .vm_ops = &std_vm_ops,
                          .dev_ops = dev_ops};
    struct tvm *vm = tvm_make(name, program, seed, &cfg);
    struct vmig_engine_params p = {.allow_mixed_p2p = true};

    vmig_engine_set_params(vm->eng, &p);
    return vm;
}

int
tvm_listen(int *port)
{
    int fd = lb_listen(port);

    assert_true(fd >= 0);
    return fd;
}

int
tvm_connect(int port)
{
    int fd = lb_connect(port);

    assert_true(fd >= 0);
    return fd;
}

void
tvm_check_moved(struct tvm *src, struct tvm *dst)
{
    /* source: paused, devices stopped, nothing changed since the pause */
    assert_false(vmig_vcpu_running(src->vcpu));
    assert_int_equal(dst->resumes, 1);
    assert_true(XXH3_64bits(src->ram, src->ram_size) == dst->snap_ram);
    for (unsigned int i = 0; i < src->ndev; i++) {
        uint8_t a[VMIG_MEMDEV_CONFIG_SIZE], b[VMIG_MEMDEV_CONFIG_SIZE];

        assert_int_equal(vmig_memdev_state(src->dev[i]), VMIG_STATE_STOP);
        assert_true(vmig_memdev_digest(src->dev[i]) == dst->snap_dev[i]);
        vmig_memdev_config(src->dev[i], a, NULL);
        vmig_memdev_config(dst->dev[i], b, NULL);
        assert_memory_equal(a, b, sizeof(a));
    }
}

void
tvm_check_landed(struct tvm *src, struct tvm *dst)
{
    struct vmig_engine_stats st;

    tvm_check_moved(src, dst);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, src->ram_size);
    assert_int_equal(st.dev[0].bytes, src->dev_state + 32);
    assert_true(st.total_time_ms < 20000);
    assert_true(st.downtime_ms <= st.total_time_ms + 1);
    /* the first device byte left while the VM was paused, before it ran
     * at the destination */
    assert_true(st.first_dev_byte_us > 0);
    assert_true(st.first_dev_byte_us <= (st.downtime_ms + 1) * 1000);
    vmig_engine_stats(dst->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    dst->resumes = 0;
}

void
tvm_check_rolled_back(struct tvm *src, int ret, int want_status)
{
    struct vmig_engine_stats st;

    assert_true(ret < 0);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, want_status);
    assert_true(st.error[0] != '\0');
    assert_vm_alive(src);
}

void
msleep(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

void
wait_steps(struct tvm *vm, uint64_t n)
{
    for (int t = 0; t < 2000 && vmig_guest_steps(vm->ram) < n; t++) {
        msleep(5);
    }
    assert_true(vmig_guest_steps(vm->ram) >= n);
}

/* The device work the vCPU's hooks have done so far, on every device. */
static uint64_t
work_done(const struct tvm *vm)
{
    uint64_t w = 0;

    for (unsigned int i = 0; i < vm->ndev; i++) {
        w += vmig_memdev_work_done(vm->dev[i]);
    }
    return w;
}

/*
 * The device work is read before the steps: the vCPU calls the work hook
 * after each batch of 100 steps, so 500 steps after the second read mean
 * hooks after the first, however long this thread was preempted between.
 *
 * The ledger program ends when its ledger is full: at 100000 steps a
 * second, 2.6 s of running for TVM_STD_RAM, which a loaded machine
 * spends in one slow migration.  A finished program's steps stay put
 * while its vCPU goes on driving the devices, so then the steps must
 * not move and the hooks' work must: the vCPU still runs.  Waits are
 * bounded by 60 s (a vCPU starved by a loaded machine is slow, a stopped
 * one never moves).
 */
void
assert_vm_alive(struct tvm *vm)
{
    uint64_t s0, w0, cap = vmig_guest_capacity(vm->ram, vm->ram_size);
    char why[256] = "";

    assert_true(cap > 0);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        assert_int_equal(vmig_memdev_state(vm->dev[i]), VMIG_STATE_RUNNING);
    }
    w0 = work_done(vm);
    s0 = vmig_guest_steps(vm->ram);
    assert_true(vmig_vcpu_running(vm->vcpu));
    for (int t = 0; t < 6000 && vmig_guest_steps(vm->ram) < s0 + 500 &&
                    vmig_guest_steps(vm->ram) < cap;
         t++) {
        msleep(10);
    }
    if (vmig_guest_steps(vm->ram) < cap) {
        assert_true(vmig_guest_steps(vm->ram) >= s0 + 500);
    } else {
        /* finished (before or while waiting): the hooks go on */
        assert_int_equal(vmig_guest_steps(vm->ram), cap);
        for (int t = 0; t < 6000 && work_done(vm) <= w0; t++) {
            msleep(10);
        }
    }
    assert_true(work_done(vm) > w0);
    assert_int_equal(vmig_vcpu_pause(vm->vcpu), 0);
    if (vmig_guest_verify(vm->ram, vm->ram_size, why, sizeof(why)) != 0) {
        fail_msg("guest RAM does not verify: %s", why);
    }
    assert_int_equal(vmig_vcpu_hook_errors(vm->vcpu), 0);
    assert_int_equal(vmig_vcpu_resume(vm->vcpu), 0);
}
