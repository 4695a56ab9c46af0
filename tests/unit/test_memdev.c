/* SPDX-License-Identifier: MIT */
/*
 * test_memdev.c - the in-process device backend and the guest program:
 * save/load round trip, validation before anything is applied, reset
 * ending a session (-ENODEV for its reader), config space, compat rule;
 * the ledger program's replay check and the vCPU's register blob.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>

#define SZ 8192

static struct vmig_memdev *
mk(uint64_t seed, uint8_t rev, uint64_t flags)
{
    struct vmig_memdev_params p = {
        .state_size = SZ, .flags = flags, .seed = seed, .revision = rev};
    struct vmig_memdev *m;

    assert_int_equal(vmig_memdev_new(NULL, &p, &m), 0);
    return m;
}

static size_t
save(struct vmig_memdev *m, uint8_t *buf, size_t cap)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    size_t n = 0;
    ssize_t r;

    assert_int_equal(o->set_state(m, VMIG_STATE_STOP_COPY), 0);
    /* small reads exercise the header/state boundary */
    while ((r = o->read(m, buf + n, cap - n < 1000 ? cap - n : 1000)) > 0) {
        n += (size_t)r;
    }
    assert_int_equal(r, 0);
    assert_int_equal(o->read(m, buf, 10), 0); /* the end is permanent */
    return n;
}

static void
test_roundtrip(void **state)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *a = mk(1, 1, 3), *b = mk(2, 1, 3);
    static uint8_t buf[SZ + 64];
    size_t n;

    (void)state;
    assert_int_equal(vmig_memdev_work(a, 50), 0);
    n = save(a, buf, sizeof(buf));
    assert_int_equal(n, SZ + 32);
    assert_int_equal(vmig_memdev_work(a, 1), -EBUSY); /* stopped: no work */
    assert_int_equal(o->set_state(b, VMIG_STATE_RESUMING), 0);
    assert_int_equal(o->write(b, buf, 100), 0);
    assert_int_equal(o->write(b, buf + 100, n - 100), 0);
    assert_int_equal(o->write(b, buf, 1), -E2BIG);
    assert_int_equal(o->set_state(b, VMIG_STATE_RUNNING), 0);
    assert_true(vmig_memdev_digest(a) == vmig_memdev_digest(b));
    assert_int_equal(vmig_memdev_work_done(b), 50);
    assert_int_equal(vmig_memdev_work(b, 1), 0);
    vmig_memdev_free(a);
    vmig_memdev_free(b);
}

static void
test_validation_applies_nothing(void **state)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *a = mk(1, 1, 1), *b = mk(2, 1, 1);
    static uint8_t buf[SZ + 64];
    uint64_t before = vmig_memdev_digest(b);
    size_t n = save(a, buf, sizeof(buf));
    enum vmig_state s;

    (void)state;
    buf[n / 2] ^= 1;
    assert_int_equal(o->set_state(b, VMIG_STATE_RESUMING), 0);
    assert_int_equal(o->write(b, buf, n), 0);
    assert_int_equal(o->set_state(b, VMIG_STATE_STOP), -EBADMSG);
    assert_int_equal(o->get_state(b, &s), 0);
    assert_int_equal(s, VMIG_STATE_RESUMING);
    assert_int_equal(o->reset(b), 0);
    assert_int_equal(vmig_memdev_state(b), VMIG_STATE_RUNNING);
    assert_true(vmig_memdev_digest(b) == before);

    /* short state */
    assert_int_equal(o->set_state(b, VMIG_STATE_RESUMING), 0);
    assert_int_equal(o->write(b, buf, 31), 0);
    assert_int_equal(o->set_state(b, VMIG_STATE_STOP), -EBADMSG);
    assert_int_equal(o->reset(b), 0);
    assert_true(vmig_memdev_digest(b) == before);
    vmig_memdev_free(a);
    vmig_memdev_free(b);
}

static void
test_reset_ends_session(void **state)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *a = mk(1, 1, 1);
    uint8_t buf[100];

    (void)state;
    assert_int_equal(o->read(a, buf, sizeof(buf)), -EBUSY); /* no session */
    assert_int_equal(o->set_state(a, VMIG_STATE_STOP_COPY), 0);
    assert_int_equal(o->read(a, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    assert_int_equal(o->reset(a), 0);
    assert_int_equal(o->read(a, buf, sizeof(buf)), -ENODEV);
    /* until a new session opens, the session's end is what anyone gets */
    assert_int_equal(o->write(a, buf, 1), -ENODEV);
    assert_int_equal(o->set_state(a, VMIG_STATE_STOP), 0);
    assert_int_equal(o->read(a, buf, sizeof(buf)), -ENODEV);
    assert_int_equal(o->set_state(a, VMIG_STATE_RESUMING), 0);
    assert_int_equal(o->read(a, buf, sizeof(buf)), -EBUSY);
    assert_int_equal(o->write(a, buf, 1), 0);
    vmig_memdev_free(a);
}

static void
test_faults_and_config(void **state)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *a = mk(1, 1, 1), *b = mk(2, 1, 1);
    uint8_t cfg[VMIG_MEMDEV_CONFIG_SIZE], got[VMIG_MEMDEV_CONFIG_SIZE];
    static uint8_t buf[SZ + 64];
    size_t n;

    (void)state;
    vmig_memdev_inject(a, VMIG_MEMDEV_FAULT_FAIL_STOP_COPY);
    assert_int_equal(o->set_state(a, VMIG_STATE_STOP_COPY), -EIO);
    assert_int_equal(vmig_memdev_state(a), VMIG_STATE_STOP);
    assert_int_equal(o->set_state(a, VMIG_STATE_RUNNING), 0);
    vmig_memdev_inject(a, VMIG_MEMDEV_FAULT_CORRUPT_SAVE);
    n = save(a, buf, sizeof(buf));
    assert_int_equal(o->set_state(b, VMIG_STATE_RESUMING), 0);
    assert_int_equal(o->write(b, buf, n), 0);
    assert_int_equal(o->set_state(b, VMIG_STATE_STOP), -EBADMSG);

    memset(cfg, 0xab, sizeof(cfg));
    vmig_memdev_config(a, NULL, cfg);
    assert_int_equal(o->config_save(a, got, sizeof(got)), sizeof(got));
    assert_memory_equal(got, cfg, sizeof(cfg));
    assert_int_equal(o->config_save(a, got, 10), -E2BIG);
    assert_int_equal(o->config_load(b, cfg, 10), -EINVAL);
    assert_int_equal(o->config_load(b, cfg, sizeof(cfg)), 0);
    vmig_memdev_config(b, got, NULL);
    assert_memory_equal(got, cfg, sizeof(cfg));
    vmig_memdev_free(a);
    vmig_memdev_free(b);
}

static void
test_compat_rule(void **state)
{
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *old = mk(1, 1, 1), *new = mk(1, 2, 1);
    struct vmig_mp_dev d;
    uint8_t desc[64];
    char why[128];
    ssize_t n;

    (void)state;
    memset(&d, 0, sizeof(d));
    n = o->describe(old, &d.ids, desc, sizeof(desc));
    assert_true(n > 0);
    d.desc = desc;
    d.desc_len = (uint32_t)n;
    /* older -> newer accepted, newer -> older refused with a reason */
    assert_int_equal(o->compat(new, &d, why, sizeof(why)), 1);
    n = o->describe(new, &d.ids, desc, sizeof(desc));
    assert_int_equal(o->compat(old, &d, why, sizeof(why)), 0);
    assert_string_equal(why, "source revision 2 is newer than 1 here");
    d.ids.vendor = 0x8086;
    assert_int_equal(o->compat(new, &d, why, sizeof(why)), 0);
    vmig_memdev_free(old);
    vmig_memdev_free(new);
}

static void
test_guest_program(void **state)
{
    size_t size = 256u << 10;
    uint8_t *ram = calloc(1, size);
    char why[128];
    struct vmig_vcpu *v;
    struct vmig_vcpu_params p = {.steps_per_sec = 0};
    uint8_t regs[64];
    ssize_t n;

    (void)state;
    assert_int_equal(vmig_guest_init(ram, 1000, 1), -EINVAL);
    assert_int_equal(vmig_guest_verify(ram, size, why, sizeof(why)), -EINVAL);
    assert_int_equal(vmig_guest_init(ram, size, 5), 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(vmig_guest_step(ram, size), 0);
    }
    assert_int_equal(vmig_guest_steps(ram), 1000);
    assert_int_equal(vmig_guest_verify(ram, size, why, sizeof(why)), 0);
    ram[size - 1] ^= 1; /* a lost or stray write anywhere is caught */
    assert_int_equal(vmig_guest_verify(ram, size, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "differs"));
    ram[size - 1] ^= 1;

    /* the vCPU runs it, pauses, and its registers match RAM */
    assert_int_equal(vmig_vcpu_new(ram, size, &p, &v), 0);
    assert_int_equal(vmig_vcpu_resume(v), 0);
    while (vmig_guest_steps(ram) < 5000) {
        continue;
    }
    assert_int_equal(vmig_vcpu_save(v, regs, sizeof(regs)), -EBUSY);
    assert_int_equal(vmig_vcpu_pause(v), 0);
    n = vmig_vcpu_save(v, regs, sizeof(regs));
    assert_true(n > 0);
    assert_int_equal(vmig_vcpu_load(v, regs, (size_t)n), 0);
    regs[8] ^= 1; /* a program counter that disagrees with RAM */
    assert_int_equal(vmig_vcpu_load(v, regs, (size_t)n), -EBADMSG);
    assert_int_equal(vmig_guest_verify(ram, size, why, sizeof(why)), 0);
    vmig_vcpu_free(v);
    free(ram);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_validation_applies_nothing),
        cmocka_unit_test(test_reset_ends_session),
        cmocka_unit_test(test_faults_and_config),
        cmocka_unit_test(test_compat_rule),
        cmocka_unit_test(test_guest_program),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
