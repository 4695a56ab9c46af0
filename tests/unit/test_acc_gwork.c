/* SPDX-License-Identifier: MIT */
/*
 * test_acc_gwork.c - the guest-memory workload (guest-work.h) on the
 * accelerator: straight through, and with the device migrated to a fresh
 * model every few hundred completions while the guest views are rebuilt
 * from guest memory alone, as a destination process would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "acc_rig.h"
#include "guest-work.h"

#define RAM_SIZE (32u << 20)
#define DRV_GPA 0x1000u
#define WORK_GPA (1u << 20)
#define QPS 3u

static int
setup(void **state)
{
    struct acc_rig *r = calloc(1, sizeof(*r));
    struct acc_gdrv_config cfg = {
        .qp_count = QPS,
        .sq_size = 32,
        .cq_size = 32,
        .eq_size = 128,
        .aeq_size = 16,
    };

    if (r == NULL || acc_rig_init(r, RAM_SIZE, QPS, ACC_ISO_DEVICE) < 0) {
        free(r);
        return -1;
    }
    if (acc_gdrv_init(&r->drv, r->mem.base, r->mem.size, DRV_GPA, &cfg,
                      &acc_rig_bar_ops, r) < 0) {
        return -1;
    }
    *state = r;
    return 0;
}

static int
teardown(void **state)
{
    struct acc_rig *r = *state;

    acc_rig_fini(r);
    free(r);
    return 0;
}

static void
run(struct acc_rig *r, uint64_t total, unsigned int migrate_every)
{
    struct acc_gwork_ledger lg;
    struct acc_gwork w;
    uint64_t next = migrate_every;
    unsigned int migrations = 0, idle = 0;

    assert_int_equal(acc_gwork_init(&w, &r->drv, WORK_GPA, total, 16u << 10, 7),
                     0);
    while (!acc_gwork_finished(&w)) {
        int n = acc_gwork_step(&w, &r->drv);

        assert_true(n >= 0);
        if (migrate_every != 0 && w.st->completed >= next) {
            assert_true(acc_rig_migrate(r) > 0);
            /* A new process: nothing but guest memory carries over. */
            acc_gwork_fini(&w);
            assert_int_equal(acc_gdrv_attach(&r->drv, r->mem.base, r->mem.size,
                                             DRV_GPA, &acc_rig_bar_ops, r),
                             0);
            assert_int_equal(
                acc_gwork_attach(&w, r->mem.base, r->mem.size, WORK_GPA), 0);
            next += migrate_every;
            migrations++;
        }
        if (n == 0 && !acc_gwork_finished(&w)) {
            int rc = acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_COMPLETION], 2000);

            (void)acc_gdrv_ack_irq(&r->drv);
            idle = rc == 0 ? idle + 1 : 0;
            assert_true(idle < 5);
        }
    }
    assert_int_equal(acc_gwork_verify(&w), 0);
    assert_int_equal(w.st->completed, total);
    /* the last process re-checks the whole result ledger it received */
    assert_int_equal(acc_gwork_ledger_check(&w, true, &lg), 0);
    assert_int_equal(lg.entries, total);
    assert_int_equal(lg.checked, total);
    assert_int_equal(lg.mismatch, 0);
    print_message("%llu requests, %u migrations, each exactly once\n",
                  (unsigned long long)total, migrations);
    acc_gwork_fini(&w);
}

static void
test_gwork_plain(void **state)
{
    run(*state, 3000, 0);
}

static void
test_gwork_migrating(void **state)
{
    run(*state, 3000, 250);
}

static void
test_gwork_attach_rejects_garbage(void **state)
{
    struct acc_rig *r = *state;
    struct acc_gwork w;

    assert_int_equal(acc_gwork_attach(&w, r->mem.base, r->mem.size, WORK_GPA),
                     -EINVAL);
    assert_int_equal(acc_gwork_init(&w, &r->drv, WORK_GPA, 10, 2u << 20, 1),
                     -EINVAL);
    assert_int_equal(
        acc_gwork_init(&w, &r->drv, RAM_SIZE - 4096, 1000, 4096, 1), -EINVAL);
    assert_int_equal(acc_gwork_init(&w, &r->drv, WORK_GPA, 10, 4096, 1), 0);
    assert_int_equal(acc_gwork_verify(&w), -EAGAIN);
    acc_gwork_fini(&w);
}

/* A device that does a request twice is caught. */
static void
test_gwork_catches_duplicate(void **state)
{
    struct acc_rig *r = *state;
    struct acc_sqe again = {.req_id = 0, .opcode = ACC_OP_NOP};
    struct acc_gwork_ledger lg;
    struct acc_gwork w;

    assert_int_equal(acc_gwork_init(&w, &r->drv, WORK_GPA, 40, 1024, 3), 0);
    for (int i = 0; i < 1000 && !acc_gwork_finished(&w); i++) {
        assert_true(acc_gwork_step(&w, &r->drv) >= 0);
        (void)acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_COMPLETION], 10);
    }
    assert_int_equal(acc_gwork_verify(&w), 0);
    /* Request 0 went to slot 0: complete it once more. */
    assert_int_equal(acc_gdrv_submit(&r->drv, 0, &again), 0);
    assert_int_equal(acc_model_wait_idle(r->m, 2000), 0);
    assert_int_equal(acc_gwork_step(&w, &r->drv), 1);
    assert_int_equal(acc_gwork_verify(&w), -EBADMSG);
    assert_int_equal(w.st->dup, 1);
    assert_int_equal(w.st->first_bad, 0);
    /* the ledger saw the second completion too */
    assert_int_equal(w.ledger[0].count, 2);
    assert_int_equal(acc_gwork_ledger_check(&w, false, &lg), -EBADMSG);
    assert_int_equal(lg.mismatch, 1);
    assert_int_equal(lg.first_bad, 0);
    acc_gwork_fini(&w);
}

/* A ledger entry altered in guest memory (a result digest, a length) is
 * caught by the digest re-check, not by the counts. */
static void
test_gwork_ledger_catches_bad_entry(void **state)
{
    struct acc_rig *r = *state;
    struct acc_gwork_ledger lg;
    struct acc_gwork w;
    uint64_t n;

    assert_int_equal(acc_gwork_init(&w, &r->drv, WORK_GPA, 200, 2048, 5), 0);
    for (int i = 0; i < 2000 && !acc_gwork_finished(&w); i++) {
        assert_true(acc_gwork_step(&w, &r->drv) >= 0);
        (void)acc_gdrv_wait_irq(r->irq_fd[ACC_IRQ_COMPLETION], 10);
    }
    assert_int_equal(acc_gwork_verify(&w), 0);
    assert_int_equal(acc_gwork_ledger_check(&w, true, &lg), 0);
    assert_int_equal(lg.checked, 200);
    w.ledger[17].digest ^= 1u << 9;
    assert_int_equal(acc_gwork_ledger_check(&w, false, &lg), 0);
    assert_int_equal(acc_gwork_ledger_check(&w, true, &lg), -EBADMSG);
    assert_int_equal(lg.mismatch, 1);
    assert_int_equal(lg.first_bad, 17);
    w.ledger[17].digest ^= 1u << 9;
    assert_int_equal(acc_gwork_ledger_check(&w, true, &lg), 0);
    /* a wrong length: caught unless the request is a compression (whose
     * length is the compressor's own); the mix has every kind */
    for (n = 150; n < 200; n++) {
        w.ledger[n].out_len += 1;
        if (acc_gwork_ledger_check(&w, true, &lg) == -EBADMSG) {
            break;
        }
        w.ledger[n].out_len -= 1;
    }
    assert_true(n < 200);
    assert_int_equal(lg.first_bad, n);
    w.ledger[n].out_len -= 1;
    w.ledger[42].status = ACC_ST_BAD_DATA;
    assert_int_equal(acc_gwork_ledger_check(&w, false, &lg), -EBADMSG);
    assert_int_equal(lg.first_bad, 42);
    acc_gwork_fini(&w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gwork_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gwork_migrating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gwork_catches_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gwork_ledger_catches_bad_entry,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gwork_attach_rejects_garbage,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
