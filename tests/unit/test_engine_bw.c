/* SPDX-License-Identifier: MIT */
/*
 * test_engine_bw.c - max-bandwidth while a migration runs: two engines
 * over loopback TCP, guest RAM of pseudo-random bytes (no zero pages) and
 * dirty hooks that make RAM precopy, no devices.
 *
 * Proved here: a limit lowered mid-precopy holds the rate down at once
 * (bytes sent in a window after the change stay under what the new limit
 * allows, one frame in flight aside), raising it again lets the migration
 * finish at once instead of after the debt the low limit would have run up
 * since the start; a lowered limit never leaves the destination without a
 * byte for its peer timeout; a limit lowered at the pause, or a low one with no
 * precopy, does not hold the paused VM down (stop-copy is not throttled).
 * Every bound on time is an outcome the old limiter missed by minutes
 * (the destination's 30 s peer timeout would fail it), never a tight one.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "../engine_pair.h"
#include "../loopback.h"
#include <vmig/engine.h>
#include <vmig/migproto.h>

#define RAM_SIZE (16u << 20)
#define PAGES (RAM_SIZE / VMIG_MP_PAGE_SIZE)
/* the largest frame the source sends at once, headers and all */
#define FRAME_MAX ((uint64_t)(4u << 20) + 4096)

struct bvm {
    vmig_ctx_t *ctx;
    uint8_t *ram;
    struct vmig_engine *eng;
    bool dirty_all;       /* every collection reports every page */
    uint64_t bw_at_pause; /* set max_bandwidth to this in the pause hook */
    int pauses, resumes;
};

static int
vm_pause(void *o)
{
    struct bvm *vm = o;

    vm->pauses++;
    if (vm->bw_at_pause != 0) {
        struct vmig_engine_params p;

        vmig_engine_get_params(vm->eng, &p);
        p.max_bandwidth = vm->bw_at_pause;
        vmig_engine_set_params(vm->eng, &p);
    }
    return 0;
}

static int
vm_resume(void *o)
{
    ((struct bvm *)o)->resumes++;
    return 0;
}

static int
dirty_start(void *o)
{
    (void)o;
    return 0;
}

static long
dirty_collect(void *o, unsigned int region, uint64_t *bitmap, size_t nbits)
{
    struct bvm *vm = o;

    (void)region;
    if (!vm->dirty_all) {
        return 0;
    }
    for (size_t i = 0; i < nbits; i++) {
        bitmap[i / 64] |= 1ull << (i % 64);
    }
    return (long)nbits;
}

static void
dirty_stop(void *o)
{
    (void)o;
}

static const struct vmig_engine_vm_ops vm_ops = {
    .vcpu_pause = vm_pause,
    .vcpu_resume = vm_resume,
    .dirty_start = dirty_start,
    .dirty_collect = dirty_collect,
    .dirty_stop = dirty_stop,
};

static struct bvm *
bvm_new(const char *name, uint64_t seed)
{
    struct bvm *vm = calloc(1, sizeof(*vm));
    struct vmig_engine_region rg;
    uint64_t x = seed | 1;

    assert_non_null(vm);
    assert_int_equal(
        vmig_ctx_new(name, getenv("VMIG_TEST_LOG") ? vmig_log_stderr : NULL,
                     NULL, &vm->ctx),
        0);
    vm->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(vm->ram);
    for (size_t i = 0; i < RAM_SIZE / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(vm->ram + i * 8, &x, 8);
    }
    rg.name = "ram0";
    rg.host = vm->ram;
    rg.size = RAM_SIZE;
    assert_int_equal(vmig_engine_new(vm->ctx, &rg, 1, &vm_ops, vm, &vm->eng),
                     0);
    return vm;
}

static void
bvm_free(struct bvm *vm)
{
    vmig_engine_free(vm->eng);
    free(vm->ram);
    vmig_ctx_free(vm->ctx);
    free(vm);
}

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
msleep(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static void
set_bw(struct bvm *vm, uint64_t bw)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.max_bandwidth = bw;
    vmig_engine_set_params(vm->eng, &p);
}

static struct vmig_engine_stats
stats(struct bvm *vm)
{
    struct vmig_engine_stats st;

    vmig_engine_stats(vm->eng, &st);
    return st;
}

/* The source migrating on its own thread, the destination on another. */
struct run {
    struct bvm *src, *dst;
    struct ep_dst j;
    pthread_t th;
    int ret;
};

static void *
src_main(void *arg)
{
    struct run *r = arg;
    int port, fd;

    r->j.eng = r->dst->eng;
    r->j.lfd = lb_listen(&port);
    assert_true(r->j.lfd >= 0);
    assert_int_equal(pthread_create(&r->j.th, NULL, ep_dst_main, &r->j), 0);
    fd = lb_connect(port);
    assert_true(fd >= 0);
    r->ret = vmig_engine_migrate(r->src->eng, fd);
    close(fd);
    return NULL;
}

static void
run_start(struct run *r)
{
    assert_int_equal(pthread_create(&r->th, NULL, src_main, r), 0);
}

static void
run_join(struct run *r)
{
    pthread_join(r->th, NULL);
    pthread_join(r->j.th, NULL);
    close(r->j.lfd);
}

/* Wait until the source's stats satisfy @pred, at most @ms. */
static bool
wait_src(struct bvm *vm,
         bool (*pred)(const struct vmig_engine_stats *, uint64_t), uint64_t arg,
         uint64_t ms, struct vmig_engine_stats *st)
{
    uint64_t t0 = now_ms();

    *st = stats(vm);
    while (!pred(st, arg) && now_ms() - t0 < ms) {
        msleep(2);
        *st = stats(vm);
    }
    return pred(st, arg);
}

static bool
sent_at_least(const struct vmig_engine_stats *st, uint64_t n)
{
    return st->status >= VMIG_ENGINE_COMPLETED ||
           (st->status == VMIG_ENGINE_ACTIVE && st->wire_bytes >= n);
}

static bool
ended(const struct vmig_engine_stats *st, uint64_t unused)
{
    (void)unused;
    return st->status >= VMIG_ENGINE_COMPLETED;
}

/*
 * The migration must end within @ms (far less than the old limiter
 * needed; generous for a loaded machine) and complete: RAM identical,
 * the destination resumed once.  A migration still running then is
 * cancelled so the test ends with a message instead of hanging.
 */
static void
finish(struct run *r, uint64_t ms, const char *what)
{
    struct vmig_engine_stats st;

    if (!wait_src(r->src, ended, 0, ms, &st)) {
        int cret = vmig_engine_cancel(r->src->eng);

        run_join(r);
        fail_msg("%s: the migration did not end within %llu ms (cancel: %d)",
                 what, (unsigned long long)ms, cret);
    }
    run_join(r);
    st = stats(r->src);
    assert_int_equal(r->ret, 0);
    assert_int_equal(r->j.ret, 0);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_memory_equal(r->src->ram, r->dst->ram, RAM_SIZE);
    assert_int_equal(r->dst->resumes, 1);
}

/*
 * Lowered mid-precopy, the limit holds at once; raised again, the
 * migration finishes at once.  The old limiter (bytes since the start /
 * the limit read once per wait) stalled ~4 minutes here whatever the
 * later limit, and the destination gave up after 30 s of silence.
 */
static void
test_lower_then_raise(void **state)
{
    struct bvm *a = bvm_new("A", 42), *b = bvm_new("B", 7);
    struct run r = {.src = a, .dst = b};
    struct vmig_engine_stats st;
    const uint64_t low = 16u << 10;
    uint64_t w0, t0, t1, allowed;

    (void)state;
    set_bw(a, 4u << 20);
    run_start(&r);
    /* the second RAM frame is out: 4 MiB/s is what holds it now */
    assert_true(wait_src(a, sent_at_least, FRAME_MAX + 1, 120000, &st));
    assert_int_equal(st.status, VMIG_ENGINE_ACTIVE);
    set_bw(a, low);
    t0 = now_ms();
    w0 = stats(a).wire_bytes;
    /* one second at the low limit: at most the frame being sent when it
     * changed, and what the new limit allows (the old limit would have
     * sent another 4 MiB) */
    while (now_ms() - t0 < 1000) {
        msleep(10);
    }
    st = stats(a);
    t1 = now_ms();
    allowed = FRAME_MAX + low * (t1 - t0) / 1000 + low / 10 + 4096;
    if (st.wire_bytes - w0 > allowed) {
        fail_msg("after lowering max-bandwidth to %llu B/s, %llu bytes went "
                 "out in %llu ms (at most %llu allowed)",
                 (unsigned long long)low,
                 (unsigned long long)(st.wire_bytes - w0),
                 (unsigned long long)(t1 - t0), (unsigned long long)allowed);
    }
    assert_int_equal(st.status, VMIG_ENGINE_ACTIVE);
    /* 16 MiB more at 16 KiB/s would be 17 minutes */
    set_bw(a, 256u << 20);
    finish(&r, 25000, "max-bandwidth raised to 256 MiB/s");
    assert_true(stats(a).precopy);
    bvm_free(a);
    bvm_free(b);
}

/*
 * A migration started at a crawl goes at once when the limit is raised
 * (the old limiter slept out its first frame's 4 minutes, re-reading the
 * limit only after).
 */
static void
test_raise_from_crawl(void **state)
{
    struct bvm *a = bvm_new("A", 42), *b = bvm_new("B", 7);
    struct run r = {.src = a, .dst = b};
    struct vmig_engine_stats st;

    (void)state;
    set_bw(a, 16u << 10);
    run_start(&r);
    assert_true(wait_src(a, sent_at_least, 1, 120000, &st));
    assert_int_equal(st.status, VMIG_ENGINE_ACTIVE);
    set_bw(a, 0);
    finish(&r, 25000, "max-bandwidth raised to unlimited");
    bvm_free(a);
    bvm_free(b);
}

/*
 * A lowered limit never leaves the stream silent for a peer timeout:
 * frames are cut to what the limit allows in a short while, and a frame
 * sized for the old limit does not run up a debt at the new one.  Before,
 * the 4 MiB frame sent at 4 MiB/s was waited off at 512 KiB/s: 8 s
 * without a byte, and the destination (peer timeout 3 s, as the fault
 * matrix runs it) gave up; the matrix's bandwidth-lower cell failed so.
 */
static void
test_lowered_keeps_talking(void **state)
{
    struct bvm *a = bvm_new("A", 42), *b = bvm_new("B", 7);
    struct run r = {.src = a, .dst = b};
    struct vmig_engine_params p;
    struct vmig_engine_stats st;
    uint64_t w0;

    (void)state;
    vmig_engine_get_params(b->eng, &p);
    p.timeout_ms = 3000;
    vmig_engine_set_params(b->eng, &p);
    set_bw(a, 4u << 20);
    run_start(&r);
    assert_true(wait_src(a, sent_at_least, FRAME_MAX + 1, 120000, &st));
    assert_int_equal(st.status, VMIG_ENGINE_ACTIVE);
    set_bw(a, 512u << 10);
    w0 = stats(a).wire_bytes;
    /* 1.5 MiB more at 512 KiB/s: three seconds, a peer timeout's worth */
    assert_true(wait_src(a, sent_at_least, w0 + (3u << 19), 120000, &st));
    if (st.status != VMIG_ENGINE_ACTIVE) {
        set_bw(a, 0);
        run_join(&r);
        fail_msg("the migration ended (status %d: %s) at the lowered limit "
                 "instead of moving on: the destination heard nothing for "
                 "its 3 s peer timeout",
                 (int)st.status, st.error);
    }
    set_bw(a, 0);
    finish(&r, 25000, "max-bandwidth lowered to 512 KiB/s, then lifted");
    bvm_free(a);
    bvm_free(b);
}

/*
 * The limit never holds the paused VM: lowered to 64 KiB/s at the pause,
 * the whole RAM (all dirty) still goes in one stop-copy burst; the old
 * limiter took 4 minutes and the destination failed it.
 */
static void
test_stopcopy_not_throttled(void **state)
{
    struct bvm *a = bvm_new("A", 42), *b = bvm_new("B", 7);
    struct run r = {.src = a, .dst = b};
    struct vmig_engine_params p;
    struct vmig_engine_stats st;

    (void)state;
    vmig_engine_get_params(a->eng, &p);
    p.max_bandwidth = 64u << 20;
    p.max_iterations = 2;
    p.cap_action = VMIG_ENGINE_CAP_STOP_COPY;
    vmig_engine_set_params(a->eng, &p);
    a->dirty_all = true;
    a->bw_at_pause = 64u << 10;
    run_start(&r);
    finish(&r, 60000, "max-bandwidth lowered to 64 KiB/s at the pause");
    st = stats(a);
    assert_int_equal(a->pauses, 1);
    assert_true(st.precopy);
    assert_true(st.stopcopy_bytes >= RAM_SIZE);
    assert_true(st.downtime_ms < 25000);
    bvm_free(a);
    bvm_free(b);
}

/* The same without precopy: everything moves paused, nothing throttled. */
static void
test_no_precopy_not_throttled(void **state)
{
    struct bvm *a = bvm_new("A", 42), *b = bvm_new("B", 7);
    struct run r = {.src = a, .dst = b};
    struct vmig_engine_params p;
    struct vmig_engine_stats st;

    (void)state;
    vmig_engine_get_params(a->eng, &p);
    p.max_bandwidth = 64u << 10;
    p.no_precopy = true;
    vmig_engine_set_params(a->eng, &p);
    run_start(&r);
    finish(&r, 60000, "no precopy at 64 KiB/s");
    st = stats(a);
    assert_false(st.precopy);
    assert_true(st.stopcopy_bytes >= RAM_SIZE);
    assert_true(st.downtime_ms < 25000);
    bvm_free(a);
    bvm_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lower_then_raise),
        cmocka_unit_test(test_raise_from_crawl),
        cmocka_unit_test(test_lowered_keeps_talking),
        cmocka_unit_test(test_stopcopy_not_throttled),
        cmocka_unit_test(test_no_precopy_not_throttled),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
