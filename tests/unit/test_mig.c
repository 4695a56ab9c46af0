/* SPDX-License-Identifier: MIT */
/*
 * test_mig.c - the device-side driver loop against a fake device that can
 * fail (or break) on a chosen arc.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <vmig/ctx.h>
#include <vmig/mig.h>

#define S(x) VMIG_STATE_##x
#define MAX_ARCS 64

struct fake {
    int fail_from, fail_to; /* arc to fail on; -1 = none */
    int fail_errno;
    bool fail_broken;
    int narcs;
    int arcs[MAX_ARCS][2];
    int resets;
};

static int
fake_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct fake *f = opaque;

    if ((int)from == f->fail_from && (int)to == f->fail_to) {
        *broken = f->fail_broken;
        return -f->fail_errno;
    }
    assert_true(f->narcs < MAX_ARCS);
    f->arcs[f->narcs][0] = from;
    f->arcs[f->narcs][1] = to;
    f->narcs++;
    return 0;
}

static void
fake_reset(void *opaque)
{
    struct fake *f = opaque;

    f->resets++;
}

static const struct vmig_mig_ops fake_ops = {
    .step = fake_step,
    .reset = fake_reset,
};

struct fixture {
    vmig_ctx_t *ctx;
    struct fake fake;
    char log[4096];
};

static void
capture_log(void *opaque, int level, const char *msg)
{
    struct fixture *fx = opaque;
    size_t used = strlen(fx->log);

    (void)level;
    snprintf(fx->log + used, sizeof(fx->log) - used, "%s\n", msg);
}

static int
setup(void **state)
{
    static struct fixture fx;

    memset(&fx, 0, sizeof(fx));
    fx.fake.fail_from = -1;
    fx.fake.fail_to = -1;
    if (vmig_ctx_new("fake0", capture_log, &fx, &fx.ctx) != 0) {
        return -1;
    }
    vmig_ctx_set_level(fx.ctx, VMIG_LOG_DEBUG);
    *state = &fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    vmig_ctx_free(fx->ctx);
    return 0;
}

static struct vmig_mig *
new_mig(struct fixture *fx, uint64_t flags)
{
    struct vmig_mig *m = NULL;

    assert_int_equal(vmig_mig_new(fx->ctx, flags, &fake_ops, &fx->fake, &m), 0);
    assert_non_null(m);
    assert_int_equal(vmig_mig_state(m), S(RUNNING));
    return m;
}

/* Every reachable (cur, target) pair walks exactly vmig_fsm_path(). */
static void
test_walks_every_path_arc_by_arc(void **state)
{
    struct fixture *fx = *state;
    static const uint64_t sets[] = {1, 3, 5, 7};
    int walked = 0;

    for (size_t i = 0; i < 4; i++) {
        for (int cur = 1; cur < VMIG_STATE__COUNT; cur++) {
            for (int t = 1; t < VMIG_STATE__COUNT; t++) {
                struct vmig_fsm_path p;
                struct vmig_mig *m;

                if (vmig_fsm_path(sets[i], cur, t, &p) != 0) {
                    continue;
                }
                m = new_mig(fx, sets[i]);
                assert_int_equal(vmig_mig_set_state(m, cur), 0);
                fx->fake.narcs = 0;
                assert_int_equal(vmig_mig_set_state(m, t), 0);
                assert_int_equal(vmig_mig_state(m), t);
                assert_int_equal(fx->fake.narcs, (int)p.len - 1);
                for (unsigned int k = 0; k + 1 < p.len; k++) {
                    assert_int_equal(fx->fake.arcs[k][0], p.state[k]);
                    assert_int_equal(fx->fake.arcs[k][1], p.state[k + 1]);
                }
                vmig_mig_free(m);
                walked++;
            }
        }
    }
    assert_int_equal(walked, 42 + 20 + 20 + 12 - 3 + 4 + 5 + 5 + 7);
}

/* A failing arc leaves the device at the last state it reached. */
static void
test_failure_reports_last_reached_state(void **state)
{
    struct fixture *fx = *state;
    struct vmig_mig *m = new_mig(fx, 7);

    fx->fake.fail_from = S(RUNNING_P2P);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = EIO;
    assert_int_equal(vmig_mig_set_state(m, S(STOP_COPY)), -EIO);
    assert_int_equal(vmig_mig_state(m), S(RUNNING_P2P));
    assert_int_equal(fx->fake.narcs, 1); /* RUNNING -> RUNNING_P2P only */
    assert_non_null(strstr(fx->log, "device is now in RUNNING_P2P"));
    assert_non_null(strstr(fx->log, "fake0: RUNNING -> STOP_COPY failed"));
    /* the caller can retry once the device recovers */
    fx->fake.fail_from = -1;
    assert_int_equal(vmig_mig_set_state(m, S(STOP_COPY)), 0);
    assert_int_equal(vmig_mig_state(m), S(STOP_COPY));
    vmig_mig_free(m);
}

/* A broken device goes to ERROR; only reset leaves it. */
static void
test_error_left_only_by_reset(void **state)
{
    struct fixture *fx = *state;
    struct vmig_mig *m = new_mig(fx, 5);
    struct vmig_session_info si;
    uint64_t gen;

    assert_int_equal(vmig_mig_set_state(m, S(PRE_COPY)), 0);
    vmig_mig_session(m, &si);
    gen = si.generation;
    fx->fake.fail_from = S(PRE_COPY);
    fx->fake.fail_to = S(STOP_COPY);
    fx->fake.fail_errno = EFAULT;
    fx->fake.fail_broken = true;
    assert_int_equal(vmig_mig_set_state(m, S(STOP_COPY)), -EFAULT);
    assert_int_equal(vmig_mig_state(m), S(ERROR));
    assert_int_equal(vmig_mig_session_check(m, gen, VMIG_SESSION_SAVE),
                     -ENODEV);
    fx->fake.fail_from = -1;
    for (int t = 0; t < VMIG_STATE__COUNT; t++) {
        int before = fx->fake.narcs;

        assert_int_equal(vmig_mig_set_state(m, t), -EINVAL);
        assert_int_equal(fx->fake.narcs, before); /* no step attempted */
        assert_int_equal(vmig_mig_state(m), S(ERROR));
    }
    vmig_mig_reset(m);
    assert_int_equal(fx->fake.resets, 1);
    assert_int_equal(vmig_mig_state(m), S(RUNNING));
    assert_int_equal(vmig_mig_set_state(m, S(STOP)), 0);
    vmig_mig_free(m);
}

/* A step that claims success but marks the device broken is an error. */
static void
test_broken_without_errno_is_eio(void **state)
{
    struct fixture *fx = *state;
    struct vmig_mig *m = new_mig(fx, 1);

    fx->fake.fail_from = S(RUNNING);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = 0;
    fx->fake.fail_broken = true;
    assert_int_equal(vmig_mig_set_state(m, S(STOP)), -EIO);
    assert_int_equal(vmig_mig_state(m), S(ERROR));
    vmig_mig_free(m);
}

static void
test_sessions_open_keep_end(void **state)
{
    struct fixture *fx = *state;
    struct vmig_mig *m = new_mig(fx, 7);
    struct vmig_session_info si;
    uint64_t g1, g2;

    vmig_mig_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_NONE);
    assert_int_equal(si.generation, 0);

    assert_int_equal(vmig_mig_set_state(m, S(PRE_COPY)), 0);
    vmig_mig_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_SAVE);
    g1 = si.generation;
    assert_int_equal(g1, 1);
    assert_int_equal(vmig_mig_session_check(m, g1, VMIG_SESSION_SAVE), 0);
    assert_int_equal(vmig_mig_session_check(m, g1, VMIG_SESSION_RESUME),
                     -EBADF);

    /* PRE_COPY -> PRE_COPY_P2P -> STOP_COPY keeps the same session */
    assert_int_equal(vmig_mig_set_state(m, S(STOP_COPY)), 0);
    assert_int_equal(vmig_mig_session_check(m, g1, VMIG_SESSION_SAVE), 0);

    /* STOP_COPY -> STOP ends it normally */
    assert_int_equal(vmig_mig_set_state(m, S(STOP)), 0);
    vmig_mig_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_NONE);
    assert_int_equal(si.end, VMIG_SESSION_END_NORMAL);
    assert_int_equal(vmig_mig_session_check(m, g1, VMIG_SESSION_SAVE), -EBADF);

    /* STOP -> RESUMING opens a resuming session */
    assert_int_equal(vmig_mig_set_state(m, S(RESUMING)), 0);
    vmig_mig_session(m, &si);
    g2 = si.generation;
    assert_int_equal(g2, 2);
    assert_int_equal(si.kind, VMIG_SESSION_RESUME);
    assert_int_equal(vmig_mig_session_check(m, g2, VMIG_SESSION_RESUME), 0);

    /* a failed validation (RESUMING -> STOP) keeps the device resuming */
    fx->fake.fail_from = S(RESUMING);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = EBADMSG;
    assert_int_equal(vmig_mig_set_state(m, S(RUNNING)), -EBADMSG);
    assert_int_equal(vmig_mig_state(m), S(RESUMING));
    assert_int_equal(vmig_mig_session_check(m, g2, VMIG_SESSION_RESUME), 0);
    fx->fake.fail_from = -1;
    assert_int_equal(vmig_mig_set_state(m, S(RUNNING)), 0);
    assert_int_equal(vmig_mig_session_check(m, g2, VMIG_SESSION_RESUME),
                     -EBADF);
    vmig_mig_free(m);
}

/* Seed 003: a reset during PRE_COPY or STOP_COPY ends the session with an
 * error for the reader, returns to RUNNING, and is logged. */
static void
test_reset_during_session(void **state)
{
    struct fixture *fx = *state;
    static const int targets[] = {S(PRE_COPY), S(STOP_COPY), S(RESUMING)};

    for (size_t i = 0; i < 3; i++) {
        struct vmig_mig *m = new_mig(fx, 5);
        struct vmig_session_info si;

        fx->log[0] = '\0';
        assert_int_equal(vmig_mig_set_state(m, targets[i]), 0);
        vmig_mig_session(m, &si);
        assert_int_not_equal(si.kind, VMIG_SESSION_NONE);
        vmig_mig_reset(m);
        assert_int_equal(vmig_mig_state(m), S(RUNNING));
        assert_int_equal(vmig_mig_session_check(m, si.generation, si.kind),
                         -ENODEV);
        vmig_mig_session(m, &si);
        assert_int_equal(si.end, VMIG_SESSION_END_RESET);
        assert_non_null(strstr(fx->log, "device reset in"));
        assert_non_null(strstr(fx->log, vmig_state_name(targets[i])));
        assert_non_null(strstr(fx->log, "ENODEV"));
        /* RUNNING -> RUNNING after the reset is a no-op */
        assert_int_equal(vmig_mig_set_state(m, S(RUNNING)), 0);
        vmig_mig_free(m);
    }
}

static void
test_bad_arguments(void **state)
{
    struct fixture *fx = *state;
    struct vmig_mig *m = (struct vmig_mig *)0x1;
    static const struct vmig_mig_ops no_step = {.step = NULL};

    assert_int_equal(vmig_mig_new(fx->ctx, 0, &fake_ops, NULL, &m), -EINVAL);
    assert_int_equal(vmig_mig_new(fx->ctx, 9, &fake_ops, NULL, &m), -EINVAL);
    assert_int_equal(vmig_mig_new(fx->ctx, 1, &no_step, NULL, &m), -EINVAL);
    assert_int_equal(vmig_mig_new(fx->ctx, 1, NULL, NULL, &m), -EINVAL);
    assert_ptr_equal(m, (struct vmig_mig *)0x1); /* untouched */
    m = new_mig(fx, 1);
    /* states the device lacks, and out-of-range targets */
    assert_int_equal(vmig_mig_set_state(m, S(RUNNING_P2P)), -EINVAL);
    assert_int_equal(vmig_mig_set_state(m, S(PRE_COPY)), -EINVAL);
    assert_int_equal(vmig_mig_set_state(m, 8), -EINVAL);
    assert_int_equal(vmig_mig_set_state(m, 0xffffffffu), -EINVAL);
    assert_int_equal(vmig_mig_state(m), S(RUNNING));
    assert_int_equal(vmig_mig_flags(m), 1);
    vmig_mig_free(m);
    vmig_mig_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_walks_every_path_arc_by_arc, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failure_reports_last_reached_state,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_left_only_by_reset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_broken_without_errno_is_eio, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sessions_open_keep_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reset_during_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
