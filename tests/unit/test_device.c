/* SPDX-License-Identifier: MIT */
/*
 * test_device.c - the device-side migration framework against a fake
 * device that can fail (or break) on a chosen arc, produce saving data in
 * chosen pieces, break the save contract, and call back into the
 * framework from its callbacks.
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
#include <vmig/device.h>

#define S(x) VMIG_STATE_##x
#define MAX_ARCS 64

struct fake {
    int fail_from, fail_to; /* arc to fail on; -1 = none */
    int fail_errno;
    bool fail_broken;
    int narcs;
    int arcs[MAX_ARCS][2];
    int resets;
    enum vmig_reset_cause last_cause;
    /* saving: data[0..ndata) handed out in pieces of at most piece bytes;
     * then save_end is returned (0 or -ENOMSG) */
    uint8_t data[256];
    size_t ndata, pos, piece;
    ssize_t save_end;
    ssize_t save_override; /* != 0: returned by every save */
    int saves;
    /* resuming */
    uint8_t loaded[256];
    size_t nloaded;
    int load_errno;
    /* re-entry: the step calls these on its own device */
    struct vmig_dev *self;
    int reentry_ret;
    enum vmig_state state_seen;
    /* logging */
    int log_calls;
};

static int
fake_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct fake *f = opaque;

    if (f->self != NULL) {
        f->reentry_ret = vmig_dev_set_state(f->self, VMIG_STATE_RUNNING);
        f->state_seen = vmig_dev_state(f->self);
        vmig_dev_reset(f->self, VMIG_RESET_HOST); /* refused, logged */
    }
    if ((int)from == f->fail_from && (int)to == f->fail_to) {
        *broken = f->fail_broken;
        return -f->fail_errno;
    }
    assert_true(f->narcs < MAX_ARCS);
    f->arcs[f->narcs][0] = from;
    f->arcs[f->narcs][1] = to;
    f->narcs++;
    if (vmig_arc_classify(from, to) == VMIG_ARC_OPEN_SAVE) {
        f->pos = 0;
    }
    if (vmig_arc_classify(from, to) == VMIG_ARC_OPEN_RESUME) {
        f->nloaded = 0;
    }
    return 0;
}

static ssize_t
fake_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct fake *f = opaque;
    size_t n = f->ndata - f->pos;

    (void)state;
    f->saves++;
    if (f->save_override != 0) {
        return f->save_override;
    }
    if (n == 0) {
        return f->save_end;
    }
    n = n < len ? n : len;
    n = f->piece != 0 && n > f->piece ? f->piece : n;
    memcpy(buf, f->data + f->pos, n);
    f->pos += n;
    return (ssize_t)n;
}

static int
fake_load(void *opaque, const void *buf, size_t len)
{
    struct fake *f = opaque;

    if (f->load_errno != 0) {
        return -f->load_errno;
    }
    assert_true(len <= sizeof(f->loaded) - f->nloaded);
    memcpy(f->loaded + f->nloaded, buf, len);
    f->nloaded += len;
    return 0;
}

static void
fake_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct fake *f = opaque;

    f->resets++;
    f->last_cause = cause;
    f->pos = 0;
}

static int
fake_precopy(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct fake *f = opaque;

    *initial = f->ndata - f->pos;
    *dirty = 0;
    return 0;
}

static int
fake_log_start(void *opaque, uint64_t page_size,
               const struct vmig_dma_range *ranges, unsigned int n)
{
    struct fake *f = opaque;

    (void)page_size;
    (void)ranges;
    (void)n;
    f->log_calls++;
    return 0;
}

static int
fake_log_stop(void *opaque)
{
    struct fake *f = opaque;

    f->log_calls++;
    return 0;
}

static int
fake_log_report(void *opaque, uint64_t iova, uint64_t length,
                uint64_t page_size, uint64_t *bitmap)
{
    struct fake *f = opaque;

    (void)iova;
    (void)length;
    (void)page_size;
    bitmap[0] |= 5;
    f->log_calls++;
    return 0;
}

static const struct vmig_dev_ops fake_ops = {
    .step = fake_step,
    .save = fake_save,
    .load = fake_load,
    .reset = fake_reset,
    .precopy_info = fake_precopy,
    .log_start = fake_log_start,
    .log_stop = fake_log_stop,
    .log_report = fake_log_report,
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

static struct vmig_dev *
new_dev(struct fixture *fx, uint64_t flags)
{
    struct vmig_dev *m = NULL;

    assert_int_equal(vmig_dev_new(fx->ctx, flags, &fake_ops, &fx->fake, &m), 0);
    assert_non_null(m);
    assert_int_equal(vmig_dev_state(m), S(RUNNING));
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
                struct vmig_dev *m;

                if (vmig_fsm_path(sets[i], cur, t, &p) != 0) {
                    continue;
                }
                m = new_dev(fx, sets[i]);
                assert_int_equal(vmig_dev_set_state(m, cur), 0);
                fx->fake.narcs = 0;
                assert_int_equal(vmig_dev_set_state(m, t), 0);
                assert_int_equal(vmig_dev_state(m), t);
                assert_int_equal(fx->fake.narcs, (int)p.len - 1);
                for (unsigned int k = 0; k + 1 < p.len; k++) {
                    assert_int_equal(fx->fake.arcs[k][0], p.state[k]);
                    assert_int_equal(fx->fake.arcs[k][1], p.state[k + 1]);
                }
                vmig_dev_free(m);
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
    struct vmig_dev *m = new_dev(fx, 7);

    fx->fake.fail_from = S(RUNNING_P2P);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = EIO;
    assert_int_equal(vmig_dev_set_state(m, S(STOP_COPY)), -EIO);
    assert_int_equal(vmig_dev_state(m), S(RUNNING_P2P));
    assert_int_equal(fx->fake.narcs, 1); /* RUNNING -> RUNNING_P2P only */
    assert_non_null(strstr(fx->log, "device is now in RUNNING_P2P"));
    assert_non_null(strstr(fx->log, "fake0: RUNNING -> STOP_COPY failed"));
    /* the caller can retry once the device recovers */
    fx->fake.fail_from = -1;
    assert_int_equal(vmig_dev_set_state(m, S(STOP_COPY)), 0);
    assert_int_equal(vmig_dev_state(m), S(STOP_COPY));
    vmig_dev_free(m);
}

/* A broken device goes to ERROR; only reset leaves it. */
static void
test_error_left_only_by_reset(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *m = new_dev(fx, 5);
    struct vmig_session_info si;
    uint64_t gen;

    assert_int_equal(vmig_dev_set_state(m, S(PRE_COPY)), 0);
    vmig_dev_session(m, &si);
    gen = si.generation;
    fx->fake.fail_from = S(PRE_COPY);
    fx->fake.fail_to = S(STOP_COPY);
    fx->fake.fail_errno = EFAULT;
    fx->fake.fail_broken = true;
    assert_int_equal(vmig_dev_set_state(m, S(STOP_COPY)), -EFAULT);
    assert_int_equal(vmig_dev_state(m), S(ERROR));
    assert_int_equal(vmig_dev_session_check(m, gen, VMIG_SESSION_SAVE),
                     -ENODEV);
    fx->fake.fail_from = -1;
    for (int t = 0; t < VMIG_STATE__COUNT; t++) {
        int before = fx->fake.narcs;

        assert_int_equal(vmig_dev_set_state(m, t), -EINVAL);
        assert_int_equal(fx->fake.narcs, before); /* no step attempted */
        assert_int_equal(vmig_dev_state(m), S(ERROR));
    }
    vmig_dev_reset(m, VMIG_RESET_HOST);
    assert_int_equal(fx->fake.resets, 1);
    assert_int_equal(vmig_dev_state(m), S(RUNNING));
    assert_int_equal(vmig_dev_set_state(m, S(STOP)), 0);
    vmig_dev_free(m);
}

/* A step that claims success but marks the device broken is an error. */
static void
test_broken_without_errno_is_eio(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *m = new_dev(fx, 1);

    fx->fake.fail_from = S(RUNNING);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = 0;
    fx->fake.fail_broken = true;
    assert_int_equal(vmig_dev_set_state(m, S(STOP)), -EIO);
    assert_int_equal(vmig_dev_state(m), S(ERROR));
    vmig_dev_free(m);
}

static void
test_sessions_open_keep_end(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *m = new_dev(fx, 7);
    struct vmig_session_info si;
    uint64_t g1, g2;

    vmig_dev_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_NONE);
    assert_int_equal(si.generation, 0);

    assert_int_equal(vmig_dev_set_state(m, S(PRE_COPY)), 0);
    vmig_dev_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_SAVE);
    g1 = si.generation;
    assert_int_equal(g1, 1);
    assert_int_equal(vmig_dev_session_check(m, g1, VMIG_SESSION_SAVE), 0);
    assert_int_equal(vmig_dev_session_check(m, g1, VMIG_SESSION_RESUME),
                     -EBADF);

    /* PRE_COPY -> PRE_COPY_P2P -> STOP_COPY keeps the same session */
    assert_int_equal(vmig_dev_set_state(m, S(STOP_COPY)), 0);
    assert_int_equal(vmig_dev_session_check(m, g1, VMIG_SESSION_SAVE), 0);

    /* STOP_COPY -> STOP ends it normally */
    assert_int_equal(vmig_dev_set_state(m, S(STOP)), 0);
    vmig_dev_session(m, &si);
    assert_int_equal(si.kind, VMIG_SESSION_NONE);
    assert_int_equal(si.end, VMIG_SESSION_END_NORMAL);
    assert_int_equal(vmig_dev_session_check(m, g1, VMIG_SESSION_SAVE), -EBADF);

    /* STOP -> RESUMING opens a resuming session */
    assert_int_equal(vmig_dev_set_state(m, S(RESUMING)), 0);
    vmig_dev_session(m, &si);
    g2 = si.generation;
    assert_int_equal(g2, 2);
    assert_int_equal(si.kind, VMIG_SESSION_RESUME);
    assert_int_equal(vmig_dev_session_check(m, g2, VMIG_SESSION_RESUME), 0);

    /* a failed validation (RESUMING -> STOP) keeps the device resuming */
    fx->fake.fail_from = S(RESUMING);
    fx->fake.fail_to = S(STOP);
    fx->fake.fail_errno = EBADMSG;
    assert_int_equal(vmig_dev_set_state(m, S(RUNNING)), -EBADMSG);
    assert_int_equal(vmig_dev_state(m), S(RESUMING));
    assert_int_equal(vmig_dev_session_check(m, g2, VMIG_SESSION_RESUME), 0);
    fx->fake.fail_from = -1;
    assert_int_equal(vmig_dev_set_state(m, S(RUNNING)), 0);
    assert_int_equal(vmig_dev_session_check(m, g2, VMIG_SESSION_RESUME),
                     -EBADF);
    vmig_dev_free(m);
}

/* A reset during PRE_COPY or STOP_COPY ends the session with an error for
 * the reader (never a silent end of data), returns to RUNNING, and is
 * logged. */
static void
test_reset_during_session(void **state)
{
    struct fixture *fx = *state;
    static const int targets[] = {S(PRE_COPY), S(STOP_COPY), S(RESUMING)};

    for (size_t i = 0; i < 3; i++) {
        struct vmig_dev *m = new_dev(fx, 5);
        struct vmig_session_info si;

        fx->log[0] = '\0';
        assert_int_equal(vmig_dev_set_state(m, targets[i]), 0);
        vmig_dev_session(m, &si);
        assert_int_not_equal(si.kind, VMIG_SESSION_NONE);
        vmig_dev_reset(m, VMIG_RESET_HOST);
        assert_int_equal(vmig_dev_state(m), S(RUNNING));
        assert_int_equal(vmig_dev_session_check(m, si.generation, si.kind),
                         -ENODEV);
        vmig_dev_session(m, &si);
        assert_int_equal(si.end, VMIG_SESSION_END_RESET);
        assert_non_null(strstr(fx->log, "device reset in"));
        assert_non_null(strstr(fx->log, vmig_state_name(targets[i])));
        assert_non_null(strstr(fx->log, "ENODEV"));
        /* RUNNING -> RUNNING after the reset is a no-op */
        assert_int_equal(vmig_dev_set_state(m, S(RUNNING)), 0);
        vmig_dev_free(m);
    }
}

static void
test_bad_arguments(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *m = (struct vmig_dev *)0x1;
    static const struct vmig_dev_ops no_step = {.step = NULL};
    static const struct vmig_dev_ops half_log = {.step = fake_step,
                                                 .save = fake_save,
                                                 .load = fake_load,
                                                 .log_start = fake_log_start};

    assert_int_equal(vmig_dev_new(fx->ctx, 0, &fake_ops, NULL, &m), -EINVAL);
    assert_int_equal(vmig_dev_new(fx->ctx, 9, &fake_ops, NULL, &m), -EINVAL);
    assert_int_equal(vmig_dev_new(fx->ctx, 1, &no_step, NULL, &m), -EINVAL);
    assert_int_equal(vmig_dev_new(fx->ctx, 1, NULL, NULL, &m), -EINVAL);
    assert_int_equal(vmig_dev_new(fx->ctx, 1, &half_log, NULL, &m), -EINVAL);
    assert_ptr_equal(m, (struct vmig_dev *)0x1); /* untouched */
    m = new_dev(fx, 1);
    /* states the device lacks, and out-of-range targets */
    assert_int_equal(vmig_dev_set_state(m, S(RUNNING_P2P)), -EINVAL);
    assert_int_equal(vmig_dev_set_state(m, S(PRE_COPY)), -EINVAL);
    assert_int_equal(vmig_dev_set_state(m, 8), -EINVAL);
    assert_int_equal(vmig_dev_set_state(m, 0xffffffffu), -EINVAL);
    assert_int_equal(vmig_dev_state(m), S(RUNNING));
    assert_int_equal(vmig_dev_flags(m), 1);
    vmig_dev_free(m);
    vmig_dev_free(NULL);
}

static void
fill_data(struct fake *f, size_t n, size_t piece, ssize_t end)
{
    for (size_t i = 0; i < n; i++) {
        f->data[i] = (uint8_t)(i * 7 + 1);
    }
    f->ndata = n;
    f->piece = piece;
    f->save_end = end;
}

/* STOP_COPY: reads fill the buffer across the device's pieces; the end
 * of data is permanent and the device is not asked again. */
static void
test_read_stop_copy_end_is_permanent(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 1);
    uint8_t buf[64];
    int next = 1, saves;

    fill_data(&fx->fake, 100, 30, 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), -EBUSY);
    assert_int_equal(vmig_dev_set_state(d, S(STOP_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 64);
    assert_int_equal(next, -EAGAIN);
    assert_memory_equal(buf, fx->fake.data, 64);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 36);
    assert_int_equal(next, 0);
    assert_memory_equal(buf, fx->fake.data + 64, 36);
    saves = fx->fake.saves;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 0);
        assert_int_equal(next, 0);
    }
    assert_int_equal(fx->fake.saves, saves);
    assert_int_equal(vmig_dev_set_state(d, S(STOP)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -EBUSY);
    /* a new session starts over */
    assert_int_equal(vmig_dev_set_state(d, S(STOP_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), 64);
    vmig_dev_free(d);
}

/* PRE_COPY: "no more for now" (0 or -ENOMSG from the device) is -ENOMSG,
 * not the end; STOP_COPY then gets the rest and the end. */
static void
test_read_precopy_no_more_for_now(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 5);
    uint8_t buf[64];
    int next;

    fill_data(&fx->fake, 10, 0, 0);
    assert_int_equal(vmig_dev_set_state(d, S(PRE_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 10);
    assert_int_equal(next, -ENOMSG);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), -ENOMSG);
    assert_int_equal(next, -ENOMSG);
    fx->fake.save_end = -ENOMSG;
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -ENOMSG);
    fx->fake.save_end = 0;
    fx->fake.ndata = 30; /* the device produced more meanwhile */
    assert_int_equal(vmig_dev_set_state(d, S(STOP_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 20);
    assert_int_equal(next, 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), &next), 0);
    vmig_dev_free(d);
}

/* A device that breaks the save contract gets its data refused. */
static void
test_read_contract_violations(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 5);
    uint8_t buf[64];

    assert_int_equal(vmig_dev_set_state(d, S(PRE_COPY)), 0);
    fx->fake.save_override = 65; /* more than asked */
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -EIO);
    fx->fake.save_override = -EFAULT; /* its own error passes through */
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -EFAULT);
    fx->fake.save_override = 0;
    assert_int_equal(vmig_dev_set_state(d, S(STOP_COPY)), 0);
    fx->fake.save_end = -ENOMSG; /* "later" in STOP_COPY would truncate */
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -EIO);
    assert_non_null(strstr(fx->log, "truncated"));
    vmig_dev_free(d);
}

static void
test_write_rules(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 1);
    static const uint8_t in[5] = {1, 2, 3, 4, 5};

    assert_int_equal(vmig_dev_write(d, in, sizeof(in)), -EBUSY);
    assert_int_equal(vmig_dev_set_state(d, S(RESUMING)), 0);
    assert_int_equal(vmig_dev_write(d, in, 0), 0);
    assert_int_equal(vmig_dev_write(d, in, sizeof(in)), 0);
    assert_int_equal(vmig_dev_write(d, in, 2), 0);
    assert_int_equal(fx->fake.nloaded, 7);
    assert_memory_equal(fx->fake.loaded + 5, in, 2);
    fx->fake.load_errno = EBADMSG;
    assert_int_equal(vmig_dev_write(d, in, 1), -EBADMSG);
    fx->fake.load_errno = 0;
    vmig_dev_reset(d, VMIG_RESET_HOST);
    assert_int_equal(vmig_dev_write(d, in, 1), -ENODEV);
    assert_int_equal(vmig_dev_write(d, in, 0), -ENODEV);
    assert_int_equal(vmig_dev_session_usable(d, VMIG_SESSION_RESUME), -ENODEV);
    /* until the next session opens */
    assert_int_equal(vmig_dev_set_state(d, S(STOP)), 0);
    assert_int_equal(vmig_dev_write(d, in, 1), -ENODEV);
    assert_int_equal(vmig_dev_set_state(d, S(RESUMING)), 0);
    assert_int_equal(vmig_dev_write(d, in, 1), 0);
    assert_int_equal(vmig_dev_session_usable(d, VMIG_SESSION_SAVE), -EBUSY);
    vmig_dev_free(d);
}

/* The reader of a session cut by a reset gets ENODEV; the device learns
 * who asked for the reset. */
static void
test_read_after_reset(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 5);
    uint8_t buf[8];

    fill_data(&fx->fake, 100, 0, 0);
    assert_int_equal(vmig_dev_set_state(d, S(PRE_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), 8);
    vmig_dev_reset(d, VMIG_RESET_GUEST);
    assert_int_equal(fx->fake.last_cause, VMIG_RESET_GUEST);
    assert_non_null(strstr(fx->log, "guest-initiated device reset in "
                                    "PRE_COPY"));
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), -ENODEV);
    assert_int_equal(vmig_dev_set_state(d, S(PRE_COPY)), 0);
    assert_int_equal(vmig_dev_read(d, buf, sizeof(buf), NULL), 8);
    vmig_dev_reset(d, VMIG_RESET_HOST);
    assert_int_equal(fx->fake.last_cause, VMIG_RESET_HOST);
    assert_int_equal(fx->fake.resets, 2);
    vmig_dev_free(d);
}

/* A callback that calls back into its own device is refused instead of
 * deadlocking; it may still read the state. */
static void
test_reentry_refused(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 1);

    fx->fake.self = d;
    fx->fake.state_seen = S(ERROR);
    assert_int_equal(vmig_dev_set_state(d, S(STOP)), 0);
    fx->fake.self = NULL;
    assert_int_equal(fx->fake.reentry_ret, -EDEADLK);
    assert_int_equal(fx->fake.state_seen, S(RUNNING));
    assert_int_equal(fx->fake.resets, 0);
    assert_int_equal(vmig_dev_state(d), S(STOP));
    assert_non_null(strstr(fx->log, "own callbacks"));
    vmig_dev_free(d);
}

static void
test_sizing_and_logging(void **state)
{
    struct fixture *fx = *state;
    struct vmig_dev *d = new_dev(fx, 5), *bare;
    static const struct vmig_dev_ops bare_ops = {
        .step = fake_step, .save = fake_save, .load = fake_load};
    struct vmig_dma_range r = {0x1000, 0x4000};
    uint64_t a = 0, b = 0, bm[1] = {0};

    assert_int_equal(vmig_dev_caps(d),
                     VMIG_DEV_CAP_PRECOPY_INFO | VMIG_DEV_CAP_DMA_LOG);
    assert_int_equal(vmig_dev_data_size(d, &a), -EOPNOTSUPP);
    assert_int_equal(vmig_dev_precopy_info(d, &a, &b), -EINVAL);
    fill_data(&fx->fake, 40, 0, 0);
    assert_int_equal(vmig_dev_set_state(d, S(PRE_COPY)), 0);
    assert_int_equal(vmig_dev_precopy_info(d, &a, &b), 0);
    assert_int_equal(a, 40);
    assert_int_equal(vmig_dev_log_start(d, 4096, &r, 1), 0);
    assert_int_equal(vmig_dev_log_report(d, 0x1000, 0x4000, 4096, bm), 0);
    assert_int_equal(bm[0], 5);
    assert_int_equal(vmig_dev_log_stop(d), 0);
    assert_int_equal(fx->fake.log_calls, 3);
    vmig_dev_free(d);

    assert_int_equal(vmig_dev_new(fx->ctx, 1, &bare_ops, &fx->fake, &bare), 0);
    assert_int_equal(vmig_dev_caps(bare), 0);
    assert_int_equal(vmig_dev_precopy_info(bare, &a, &b), -EOPNOTSUPP);
    assert_int_equal(vmig_dev_log_start(bare, 4096, &r, 1), -EOPNOTSUPP);
    assert_int_equal(vmig_dev_log_stop(bare), -EOPNOTSUPP);
    assert_int_equal(vmig_dev_log_report(bare, 0, 1, 4096, bm), -EOPNOTSUPP);
    vmig_dev_reset(bare, VMIG_RESET_HOST); /* no reset callback: fine */
    assert_int_equal(vmig_dev_state(bare), S(RUNNING));
    vmig_dev_free(bare);
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
        cmocka_unit_test_setup_teardown(test_read_stop_copy_end_is_permanent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_precopy_no_more_for_now,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_contract_violations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_after_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizing_and_logging, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reset_during_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
