/* SPDX-License-Identifier: MIT */
/*
 * test_switchover.c - the precopy switchover decision
 * (lib/engine_switchover.c) over a table of cases: when it fits, the
 * "one more cheap round" rule, RAM untracked, devices whose initial data
 * is not all sent, the iteration and time caps with either cap action,
 * the rate floor, devices slower (or faster) than the wire, what the VM
 * dirties between the measurement and the pause, the switchover's fixed
 * cost, device data overlapping the last RAM pass (parallel channels),
 * and the estimates it reports.  The expected values are
 * worked out by hand in each row's comment from the rule in
 * docs/migration-protocol.md section 7.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include "engine_switchover.h"

#define MB 1000000ull
#define NONE UINT64_MAX
#define STOP VMIG_ENGINE_CAP_STOP_COPY
#define ABRT VMIG_ENGINE_CAP_ABORT

struct row {
    const char *what;
    struct vmig__sw_in in;
    enum vmig__sw_decision want;
    uint64_t est_ms;      /* expected */
    uint64_t downtime_ms; /* expected */
};

/*
 * One row: what the precopy loop measured (limit 300 ms, 30 iterations
 * at most, columns: RAM bytes, RAM tracked, device bytes, rate in bytes/s,
 * initial data all sent, iteration, elapsed ms, time cap ms (0: none),
 * cap action, previous estimate ms) and the expected decision, estimate
 * and expected downtime.
 */
#define R(ram, tracked, dev, rate_, init, it, el, cap_ms, act, prev)           \
    {                                                                          \
        .ram_bytes = (ram), .ram_tracked = (tracked), .dev_bytes = (dev),      \
        .rate = (rate_), .limit_ms = 300, .init_done = (init),                 \
        .iteration = (it), .max_iterations = 30, .elapsed_ms = (el),           \
        .max_ms = (cap_ms), .cap_action = (act), .prev_est_ms = (prev)         \
    }
#define Y true
#define N false
#define R100 (100 * MB)

static const struct row rows[] = {
    /* 10 MB at 100 MB/s = 100 ms <= 300, and <= 150 (half): go */
    {"fits well below half the limit",
     R(8 * MB, Y, 2 * MB, R100, Y, 5, 1000, 0, STOP, NONE), VMIG__SW_GO, 100,
     100},
    /* 20 MB = 200 ms: fits, above half; first estimate: one more round */
    {"fits, above half, first round",
     R(20 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE), VMIG__SW_ITERATE, 200,
     200},
    /* 200 ms after 400 ms: halved, still converging fast: one more */
    {"fits, above half, halved since last",
     R(20 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, 400), VMIG__SW_ITERATE, 200,
     200},
    /* 200 ms after 399 ms: not quite halved: go */
    {"fits, above half, converging slowly",
     R(20 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, 399), VMIG__SW_GO, 200, 200},
    /* 150 ms is exactly half: not above it: go */
    {"fits at exactly half", R(15 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE),
     VMIG__SW_GO, 150, 150},
    /* 300 ms == limit, prev 350: fits, slow convergence: go */
    {"exactly the limit", R(30 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, 350),
     VMIG__SW_GO, 300, 300},
    /* 301 ms > 300: iterate */
    {"just over the limit",
     R(30 * MB + 100000, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE),
     VMIG__SW_ITERATE, 301, 301},
    /* fits, but a device has initial data left: iterate */
    {"initial data not all sent", R(MB, Y, 0, R100, N, 5, 1000, 0, STOP, NONE),
     VMIG__SW_ITERATE, 10, 10},
    /* RAM untracked: 1 GB of RAM is a fixed cost; devices 5 MB = 50 ms
     * fit; the expected downtime counts all of it: 1005 MB = 10050 ms */
    {"RAM untracked: only devices must fit",
     R(1000 * MB, N, 5 * MB, R100, Y, 5, 1000, 0, STOP, NONE), VMIG__SW_GO, 50,
     10050},
    {"RAM untracked: devices too big",
     R(1000 * MB, N, 50 * MB, R100, Y, 5, 1000, 0, STOP, NONE),
     VMIG__SW_ITERATE, 500, 10500},
    /* iteration cap, does not fit: stop-copy anyway, or abort */
    {"iteration cap, stop-copy",
     R(100 * MB, Y, 0, R100, Y, 30, 1000, 0, STOP, NONE), VMIG__SW_GO_CAPPED,
     1000, 1000},
    {"iteration cap, abort",
     R(100 * MB, Y, 0, R100, Y, 30, 1000, 0, ABRT, NONE), VMIG__SW_ABORT, 1000,
     1000},
    {"past the iteration cap",
     R(100 * MB, Y, 0, R100, Y, 31, 1000, 0, STOP, NONE), VMIG__SW_GO_CAPPED,
     1000, 1000},
    /* iteration cap, fits although it would want one more round: go */
    {"iteration cap, fits", R(20 * MB, Y, 0, R100, Y, 30, 1000, 0, ABRT, NONE),
     VMIG__SW_GO, 200, 200},
    /* the time cap */
    {"time cap reached, stop-copy",
     R(100 * MB, Y, 0, R100, Y, 5, 1000, 1000, STOP, NONE), VMIG__SW_GO_CAPPED,
     1000, 1000},
    {"time cap passed, abort",
     R(100 * MB, Y, 0, R100, Y, 5, 1500, 1000, ABRT, NONE), VMIG__SW_ABORT,
     1000, 1000},
    {"time cap not reached",
     R(100 * MB, Y, 0, R100, Y, 5, 999, 1000, ABRT, NONE), VMIG__SW_ITERATE,
     1000, 1000},
    {"no time cap (0)",
     R(100 * MB, Y, 0, R100, Y, 5, 1ull << 40, 0, ABRT, NONE), VMIG__SW_ITERATE,
     1000, 1000},
    /* a cap with initial data left: it does not fit, so the cap action */
    {"cap while initial data left",
     R(MB, Y, 0, R100, N, 30, 1000, 0, ABRT, NONE), VMIG__SW_ABORT, 10, 10},
    /* nothing measurable yet: the rate counts as 1 MB/s; 0.1 MB = 100 ms */
    {"rate 0 counts as 1 MB/s", R(100000, Y, 0, 0, Y, 1, 0, 0, STOP, NONE),
     VMIG__SW_GO, 100, 100},
    {"rate below the floor", R(100000, Y, 0, 5000, Y, 1, 0, 0, STOP, NONE),
     VMIG__SW_GO, 100, 100},
    /* nothing left at all */
    {"nothing to move", R(0, Y, 0, R100, Y, 1, 0, 0, STOP, NONE), VMIG__SW_GO,
     0, 0},
    /* a fast link: 1 GB at 10 GB/s = 100 ms */
    {"fast link", R(1000 * MB, Y, 0, 10000 * MB, Y, 5, 1000, 0, STOP, NONE),
     VMIG__SW_GO, 100, 100},
};

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct vmig__sw_out out;

        print_message("%s\n", r->what);
        vmig__switchover_decide(&r->in, &out);
        assert_int_equal(out.decision, r->want);
        assert_int_equal(out.est_ms, r->est_ms);
        assert_int_equal(out.downtime_ms, r->downtime_ms);
        assert_int_equal(out.est_bytes, r->in.ram_bytes + r->in.dev_bytes);
        assert_int_equal(out.grow_bytes, 0);
        assert_int_equal(out.xfer_ms, r->downtime_ms);
        assert_int_equal(out.rate, r->in.rate < MB ? MB : r->in.rate);
        assert_int_equal(out.capped, r->in.iteration >= r->in.max_iterations ||
                                         (r->in.max_ms != 0 &&
                                          r->in.elapsed_ms >= r->in.max_ms));
    }
}

/*
 * A run of iterations the way precopy feeds them (each output's est_ms is
 * the next input's prev_est_ms): a VM whose dirty set shrinks 600, 300,
 * 200, 180 ms.  The first fit (200 ms after 300) is above half the limit
 * but not halved: switch then, at iteration 3.
 */
static void
test_sequence(void **state)
{
    static const uint64_t mbytes[] = {60, 30, 20, 18};
    static const enum vmig__sw_decision want[] = {
        VMIG__SW_ITERATE, VMIG__SW_ITERATE, VMIG__SW_GO, VMIG__SW_GO};
    uint64_t prev = NONE;

    (void)state;
    for (unsigned int i = 0; i < 4; i++) {
        struct vmig__sw_in in =
            R(mbytes[i] * MB, Y, 0, R100, Y, i + 1, 1000, 0, STOP, prev);
        struct vmig__sw_out out;

        vmig__switchover_decide(&in, &out);
        assert_int_equal(out.decision, want[i]);
        prev = out.est_ms;
    }
}

/*
 * The devices at their own rate: RAM at the wire's, each part timed at
 * its rate and the parts added.
 */
static void
test_dev_rate(void **state)
{
    struct vmig__sw_in in =
        R(10 * MB, Y, 10 * MB, R100, Y, 5, 1000, 0, STOP, NONE);
    struct vmig__sw_out out;

    (void)state;
    /* one rate: 20 MB at 100 MB/s = 200 ms (as dev_rate 0) */
    in.dev_rate = R100;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 200);
    assert_int_equal(out.downtime_ms, 200);
    /* a device read at 20 MB/s: 100 ms of RAM + 500 ms of device state,
     * which does not fit although the wire alone would say 200 ms */
    in.dev_rate = 20 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 600);
    assert_int_equal(out.downtime_ms, 600);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
    assert_int_equal(out.rate, R100);
    /* RAM untracked: only the devices must fit, at their rate; the
     * expected downtime has both */
    in.ram_tracked = false;
    in.dev_rate = 50 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 200);
    assert_int_equal(out.downtime_ms, 300);
    /* a device rate below the floor counts as the floor */
    in.dev_rate = 1;
    in.dev_bytes = 100000;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 100);
    /* a faster device than the wire: faster estimate */
    in.ram_tracked = true;
    in.dev_bytes = 10 * MB;
    in.dev_rate = 1000 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 110);
    assert_int_equal(out.decision, VMIG__SW_GO);
}

/*
 * Pages and device data dirtied after the measurement, until the pause:
 * the dirty rates over the window move at the stop too.
 */
static void
test_dirty_window(void **state)
{
    struct vmig__sw_in in = R(10 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE);
    struct vmig__sw_out out;

    (void)state;
    /* 10 MB dirty now, 20 MB/s for 250 ms more: 15 MB = 150 ms (the
     * estimate without the window said 100 ms); 150 is not above half
     * of 300: go */
    in.ram_dirty_rate = 20 * MB;
    in.window_ms = 250;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 5 * MB);
    assert_int_equal(out.est_bytes, 15 * MB);
    assert_int_equal(out.est_ms, 150);
    assert_int_equal(out.downtime_ms, 150);
    assert_int_equal(out.decision, VMIG__SW_GO);
    /* 25 MB now (250 ms, which fits) + 40 MB/s x 250 ms = 35 MB: 350 ms
     * does not fit: iterate */
    in.ram_bytes = 25 * MB;
    in.ram_dirty_rate = 40 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 10 * MB);
    assert_int_equal(out.est_ms, 350);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
    /* the devices grow too: 5 MB pending + 8 MB/s x 500 ms = 9 MB, no
     * RAM: 90 ms */
    in.ram_bytes = 0;
    in.ram_dirty_rate = 0;
    in.dev_bytes = 5 * MB;
    in.dev_dirty_rate = 8 * MB;
    in.window_ms = 500;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 4 * MB);
    assert_int_equal(out.est_bytes, 9 * MB);
    assert_int_equal(out.est_ms, 90);
    /* RAM untracked: all of it moves anyway, its dirty rate adds
     * nothing; the devices' 5 MB + 10 MB/s x 100 ms = 6 MB = 60 ms must
     * fit; the downtime has RAM's 10000 ms too */
    in = (struct vmig__sw_in)R(1000 * MB, N, 5 * MB, R100, Y, 5, 1000, 0, STOP,
                               NONE);
    in.ram_dirty_rate = 50 * MB;
    in.dev_dirty_rate = 10 * MB;
    in.window_ms = 100;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 1 * MB);
    assert_int_equal(out.est_ms, 60);
    assert_int_equal(out.downtime_ms, 10060);
    assert_int_equal(out.decision, VMIG__SW_GO);
    /* a rate that is not a multiple of 1000: 1000999 B/s x 3 ms =
     * 3002.997 bytes, rounded down */
    in = (struct vmig__sw_in)R(0, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE);
    in.ram_dirty_rate = 1000999;
    in.window_ms = 3;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 3002);
    /* a pass never sends more than all of RAM: 200 MB dirty of 256 MB,
     * 100 MB/s for 1000 ms more grows by the 56 MB left, not 100 MB */
    in.ram_bytes = 200 * MB;
    in.ram_max = 256 * MB;
    in.ram_dirty_rate = 100 * MB;
    in.window_ms = 1000;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 56 * MB);
    assert_int_equal(out.est_ms, 2560);
    /* already all of it dirty (or more counted): nothing grows */
    in.ram_bytes = 256 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 0);
    in.ram_bytes = 300 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 0);
    /* the devices are not bounded by it */
    in.ram_bytes = 0;
    in.ram_dirty_rate = 0;
    in.dev_dirty_rate = 500 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 500 * MB);
    in.ram_max = 0;
    in.dev_dirty_rate = 0;
    in.ram_dirty_rate = 1000999;
    in.window_ms = 3;
    /* no window: nothing grows, whatever the rates */
    in.window_ms = 0;
    in.dev_dirty_rate = 1000 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.grow_bytes, 0);
    assert_int_equal(out.est_ms, 0);
}

/*
 * The switchover's fixed cost (pause, stop arcs, last collection, resume
 * on the destination) is in the estimate whatever the bytes.
 */
static void
test_fixed_cost(void **state)
{
    struct vmig__sw_in in = R(10 * MB, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE);
    struct vmig__sw_out out;

    (void)state;
    /* 100 ms of RAM + 8 ms */
    in.fixed_ms = 8;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 100);
    assert_int_equal(out.est_ms, 108);
    assert_int_equal(out.downtime_ms, 108);
    assert_int_equal(out.decision, VMIG__SW_GO);
    /* 29 MB: 290 + 8 = 298 ms fits (prev 350: converging slowly) */
    in.ram_bytes = 29 * MB;
    in.prev_est_ms = 350;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 298);
    assert_int_equal(out.decision, VMIG__SW_GO);
    /* 30 MB: exactly the limit in bytes, 308 ms with the fixed cost:
     * iterate (without it the rule went) */
    in.ram_bytes = 30 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 308);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
    /* RAM untracked: the devices' 50 ms + 8 ms must fit; all of it is
     * the downtime */
    in = (struct vmig__sw_in)R(1000 * MB, N, 5 * MB, R100, Y, 5, 1000, 0, STOP,
                               NONE);
    in.fixed_ms = 8;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 58);
    assert_int_equal(out.downtime_ms, 10058);
    /* a fixed cost above the limit never fits: at the iteration cap the
     * switchover is forced (or aborted) */
    in = (struct vmig__sw_in)R(0, Y, 0, R100, Y, 5, 1000, 0, STOP, NONE);
    in.fixed_ms = 400;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 400);
    assert_false(out.fits);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
    in.iteration = 30;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.decision, VMIG__SW_GO_CAPPED);
    in.cap_action = ABRT;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.decision, VMIG__SW_ABORT);
}

/*
 * Parallel channels: device data on the extra channels overlaps the last
 * RAM pass.  The transfer is the longer part, but no shorter than all of
 * it over the shared link.
 */
static void
test_overlap(void **state)
{
    struct vmig__sw_in in =
        R(10 * MB, Y, 5 * MB, R100, Y, 5, 1000, 0, STOP, NONE);
    struct vmig__sw_out out;

    (void)state;
    /* RAM 100 ms, device read at 25 MB/s 200 ms: one after the other
     * 300 ms */
    in.dev_rate = 25 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 300);
    /* at once: the device's 200 ms (15 MB on the link at the faster
     * rate, 100 MB/s, would be 150 ms) */
    in.overlap = true;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 200);
    assert_int_equal(out.est_ms, 200);
    assert_int_equal(out.downtime_ms, 200);
    /* both at the wire's rate: 20 + 20 MB, 200 ms each alone, but the
     * shared link moves the 40 MB in 400 ms: no gain */
    in.ram_bytes = 20 * MB;
    in.dev_bytes = 20 * MB;
    in.dev_rate = R100;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 400);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
    /* a link measured at 200 MB/s carries both in 200 ms */
    in.link_rate = 200 * MB;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 200);
    /* a link rate below the floor counts as the floor: 40 MB at 1 MB/s */
    in.link_rate = 1;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.xfer_ms, 40000);
    /* all three at once: RAM 10 MB + 10 MB/s x 100 ms = 11 MB at
     * 100 MB/s = 110 ms; device 4 MB + 10 MB/s x 100 ms = 5 MB at
     * 25 MB/s = 200 ms; 16 MB over the link (100 MB/s) = 160 ms; the
     * transfer 200 ms, + 8 ms fixed */
    in = (struct vmig__sw_in)R(10 * MB, Y, 4 * MB, R100, Y, 5, 1000, 0, STOP,
                               NONE);
    in.dev_rate = 25 * MB;
    in.ram_dirty_rate = 10 * MB;
    in.dev_dirty_rate = 10 * MB;
    in.window_ms = 100;
    in.fixed_ms = 8;
    in.overlap = true;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_bytes, 16 * MB);
    assert_int_equal(out.grow_bytes, 2 * MB);
    assert_int_equal(out.xfer_ms, 200);
    assert_int_equal(out.est_ms, 208);
    assert_int_equal(out.downtime_ms, 208);
    /* the same on one connection: 110 + 200 + 8 */
    in.overlap = false;
    vmig__switchover_decide(&in, &out);
    assert_int_equal(out.est_ms, 318);
    assert_int_equal(out.decision, VMIG__SW_ITERATE);
}

/* Inputs are not changed, and the same inputs give the same outputs. */
static void
test_pure(void **state)
{
    struct vmig__sw_in in =
        R(20 * MB, Y, 3 * MB, R100, Y, 5, 1000, 0, STOP, 900);
    struct vmig__sw_in copy;
    struct vmig__sw_out a, b;

    (void)state;
    in.ram_dirty_rate = 7 * MB;
    in.dev_dirty_rate = 3 * MB;
    in.window_ms = 40;
    in.fixed_ms = 5;
    in.overlap = true;
    copy = in;
    vmig__switchover_decide(&in, &a);
    vmig__switchover_decide(&in, &b);
    assert_memory_equal(&in, &copy, sizeof(in));
    assert_int_equal(a.decision, b.decision);
    assert_int_equal(a.est_ms, b.est_ms);
    assert_int_equal(a.downtime_ms, b.downtime_ms);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),      cmocka_unit_test(test_sequence),
        cmocka_unit_test(test_dev_rate),   cmocka_unit_test(test_dirty_window),
        cmocka_unit_test(test_fixed_cost), cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_pure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
