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

/*
 * The device work is read before the steps: the vCPU calls the work hook
 * after each batch of 100 steps, so 500 steps after the second read mean
 * hooks after the first, however long this thread was preempted between.
 */
void
assert_vm_alive(struct tvm *vm)
{
    uint64_t s0, w0 = 0, w1 = 0;
    char why[256] = "";

    for (unsigned int i = 0; i < vm->ndev; i++) {
        assert_int_equal(vmig_memdev_state(vm->dev[i]), VMIG_STATE_RUNNING);
        w0 += vmig_memdev_work_done(vm->dev[i]);
    }
    s0 = vmig_guest_steps(vm->ram);
    assert_true(vmig_vcpu_running(vm->vcpu));
    for (int t = 0; t < 1000 && vmig_guest_steps(vm->ram) < s0 + 500; t++) {
        msleep(10);
    }
    assert_true(vmig_guest_steps(vm->ram) >= s0 + 500);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        w1 += vmig_memdev_work_done(vm->dev[i]);
    }
    assert_true(w1 > w0);
    assert_int_equal(vmig_vcpu_pause(vm->vcpu), 0);
    if (vmig_guest_verify(vm->ram, vm->ram_size, why, sizeof(why)) != 0) {
        fail_msg("guest RAM does not verify: %s", why);
    }
    assert_int_equal(vmig_vcpu_hook_errors(vm->vcpu), 0);
    assert_int_equal(vmig_vcpu_resume(vm->vcpu), 0);
}
