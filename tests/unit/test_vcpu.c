/* SPDX-License-Identifier: MIT */
/*
 * test_vcpu.c - the vCPU thread and its step hook (the guest driving its
 * devices): the hook keeps being called once the ledger program has
 * filled its RAM and idles, so device work the guest still has to do (an
 * accelerator workload longer than the ledger program) goes on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>
#include <vmig_testkit/guest.h>

struct hook_log {
    uint64_t calls;      /* atomic */
    uint64_t last_steps; /* atomic */
    uint64_t same;       /* calls in a row with no new step (atomic) */
};

static int
hook(void *opaque, uint64_t steps)
{
    struct hook_log *l = opaque;

    if (__atomic_load_n(&l->last_steps, __ATOMIC_ACQUIRE) == steps) {
        __atomic_add_fetch(&l->same, 1, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&l->same, 0, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&l->last_steps, steps, __ATOMIC_RELEASE);
    __atomic_add_fetch(&l->calls, 1, __ATOMIC_RELEASE);
    return 0;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
test_hook_after_program_end(void **state)
{
    size_t size = VMIG_GUEST_MIN_RAM; /* a program that ends quickly */
    uint8_t *ram = calloc(1, size);
    struct hook_log l = {.last_steps = UINT64_MAX};
    struct vmig_vcpu_params p = {
        .steps_per_sec = 0, .hook = hook, .opaque = &l};
    struct vmig_vcpu *v;
    uint64_t end = mono_ms() + 60000;

    (void)state;
    assert_non_null(ram);
    assert_int_equal(vmig_guest_init(ram, size, 3), 0);
    assert_int_equal(vmig_vcpu_new(ram, size, &p, &v), 0);
    assert_int_equal(vmig_vcpu_resume(v), 0);
    /* the program fills its RAM, then the hook runs on without new steps
     * (generous deadline: a loaded machine is slow, a hook no longer
     * called never gets there) */
    while (__atomic_load_n(&l.same, __ATOMIC_ACQUIRE) < 5) {
        struct timespec ts = {0, 1000000};

        assert_true(mono_ms() < end);
        nanosleep(&ts, NULL);
    }
    assert_int_equal(vmig_vcpu_pause(v), 0);
    assert_true(vmig_guest_steps(ram) > 0);
    assert_int_equal(__atomic_load_n(&l.last_steps, __ATOMIC_ACQUIRE),
                     vmig_guest_steps(ram));
    assert_int_equal(vmig_guest_verify(ram, size, NULL, 0), 0);
    assert_int_equal(vmig_vcpu_hook_errors(v), 0);
    vmig_vcpu_free(v);
    free(ram);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_after_program_end),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
