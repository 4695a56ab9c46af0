/* SPDX-License-Identifier: MIT */
/*
 * test_engine_chan_peer.c - the connections of one migration share one
 * peer timeout (the fixture of engine_chan_vm.h, devices read or written
 * slowly):
 * - the main connection silent for three peer timeouts while an extra
 *   channel streams a slow device's state still lands;
 * - a source waiting for READY while the destination still writes what
 *   its channels carried to slow devices lands;
 * - a stall of every connection fails within the destination's peer
 *   timeout, named, and rolls back;
 * - the main connection's RAM waits for every extra channel's first
 *   device frame.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "../loopback.h"
#include "engine_vm.h"
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>
#include "engine_chan.h"
#include "engine_priv.h"
#include "engine_chan_vm.h"

/* ------------------------------------------------------------ paced device */

/*
 * A memdev whose state is read out slowly: at most @max bytes a read,
 * each after @ms, and read number @stall_at (counting from 1 over every
 * device; 0: none) after @stall_ms instead; on a destination each write
 * of state takes @write_ms first.  Set before a migration
 * starts its channel threads, read by them.
 */
static struct {
    size_t max;
    unsigned int ms;
    uint64_t stall_at;
    unsigned int stall_ms;
    uint64_t reads;        /* atomic */
    unsigned int write_ms; /* a destination: before each write */
    uint64_t writes;       /* atomic */
    /* per device (told apart by @dev): each read takes @dev_ms more, its
     * first read @first_ms more; each device is read by one thread */
    const void *dev[NDEV];
    unsigned int dev_ms[NDEV];
    unsigned int first_ms[NDEV];
    bool dev_read[NDEV];
} pace;

/*
 * When the migrating thread first sent guest RAM, and when each channel
 * thread's first device read returned (CLOCK_MONOTONIC ns), with @on.
 */
static struct {
    pthread_mutex_t lock;
    bool on;
    unsigned int chan_ram_ms; /* a channel thread's RAM piece takes this */
    pthread_t main;
    uint64_t main_ram;
    unsigned int nchan;
    pthread_t chan[VMIG_MP_MAX_CHANNELS];
    uint64_t chan_first[VMIG_MP_MAX_CHANNELS];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
seen_read(void)
{
    unsigned int k;

    pthread_mutex_lock(&seen.lock);
    for (k = 0; seen.on && k < seen.nchan; k++) {
        if (pthread_equal(seen.chan[k], pthread_self())) {
            break;
        }
    }
    if (seen.on && k == seen.nchan && k < VMIG_MP_MAX_CHANNELS) {
        seen.chan[k] = pthread_self();
        seen.chan_first[k] = mono_ns();
        seen.nchan++;
    }
    pthread_mutex_unlock(&seen.lock);
}

/* The VM ops with a RAM hole check that notes the migrating thread's
 * first RAM (the engine asks it before each piece it sends) and makes a
 * channel thread's pieces slow. */
static int
seen_hole(void *o, unsigned int region, uint64_t off, uint64_t len)
{
    unsigned int ms = 0;

    pthread_mutex_lock(&seen.lock);
    if (seen.on && !pthread_equal(seen.main, pthread_self())) {
        ms = seen.chan_ram_ms;
    } else if (seen.on && seen.main_ram == 0) {
        seen.main_ram = mono_ns();
    }
    pthread_mutex_unlock(&seen.lock);
    msleep(ms);
    return tvm_vm_hole(o, region, off, len);
}

static struct vmig_engine_vm_ops seen_vm_ops;

static struct vmig_engine_dev_ops paced_ops;

static ssize_t
paced_read(void *o, void *buf, size_t cap)
{
    uint64_t n = __atomic_add_fetch(&pace.reads, 1, __ATOMIC_RELAXED);
    unsigned int ms = n == pace.stall_at ? pace.stall_ms : pace.ms;
    ssize_t ret;

    for (unsigned int i = 0; i < NDEV; i++) {
        if (pace.dev[i] == o) {
            ms += pace.dev_ms[i] + (pace.dev_read[i] ? 0 : pace.first_ms[i]);
            pace.dev_read[i] = true;
        }
    }
    msleep(ms);
    ret = vmig_memdev_ops()->read(o, buf, cap < pace.max ? cap : pace.max);
    seen_read();
    return ret;
}

static int
paced_write(void *o, const void *buf, size_t len)
{
    __atomic_add_fetch(&pace.writes, 1, __ATOMIC_RELAXED);
    msleep(pace.write_ms);
    return vmig_memdev_ops()->write(o, buf, len);
}

static const struct vmig_engine_dev_ops *
paced_dev_ops(void)
{
    paced_ops = *vmig_memdev_ops();
    paced_ops.read = paced_read;
    paced_ops.write = paced_write;
    return &paced_ops;
}

/* ------------------------------------------------------------ tests */

/*
 * Two connections, a peer timeout of PEER_MS on both sides, and device
 * state read out slowly (64 KiB every 15 ms: about 4.5 s for the three
 * devices, all on the one extra channel).  The main connection carries
 * its RAM at once and then nothing until RAM_PASS_END: it is silent for
 * about three peer timeouts while the extra channel streams.  The peer
 * was heard all along, so the migration lands.
 */
#define PEER_MS 1500u /* short, but not for a loaded ThreadSanitizer run */
#define PACE_MS 15

static void
test_main_silent_channel_busy(void **state)
{
    const struct vmig_engine_dev_ops *ops = paced_dev_ops();
    struct tvm *a = tvm_new_ops("A", true, 41, 2, ops, NULL),
               *b = tvm_new_ops("B", false, 4, 2, ops, NULL);
    struct vmig_engine_stats st;

    (void)state;
    set_peer_timeout(a, PEER_MS);
    set_peer_timeout(b, PEER_MS);
    pace = (__typeof__(pace)){.max = 64u << 10, .ms = PACE_MS};
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    migrate_lands(a, b, &st);
    assert_int_equal(CHX(a)->opened, 1);
    /* the devices' state really took longer than the peer timeout many
     * times over (the main connection had nothing to say meanwhile) */
    assert_true(__atomic_load_n(&pace.reads, __ATOMIC_RELAXED) >=
                (uint64_t)NDEV * DEV_STATE / pace.max);
    assert_true(st.downtime_ms >= 2 * PEER_MS);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

/*
 * The source's side of it: the destination's devices take their state in
 * slowly (15 ms a 64 KiB write: about 4.5 s for the three), and the source
 * channel's send buffer holds all of it, so the source's channel is done
 * at once and the source waits on the main connection for READY for
 * about three peer timeouts, hearing nothing there while the destination
 * reads the channel on its behalf.  The destination says it hears the
 * source (ACKs of SWITCHOVER): the migration lands.  Without a big
 * enough buffer (no CAP_NET_ADMIN) the wait is shorter, the test weaker.
 */
static void
test_source_waits_slow_destination(void **state)
{
    const struct vmig_engine_dev_ops *ops = paced_dev_ops();
    struct tvm *a = tvm_new_ops("A", true, 45, 2, ops, NULL),
               *b = tvm_new_ops("B", false, 3, 2, ops, NULL);
    struct vmig_engine_stats st;

    (void)state;
    set_peer_timeout(a, PEER_MS);
    set_peer_timeout(b, PEER_MS);
    pace = (__typeof__(pace)){.max = 64u << 10, .write_ms = PACE_MS};
    CHX(a)->sndbuf = 2 * NDEV * DEV_STATE;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    migrate_lands(a, b, &st);
    assert_true(__atomic_load_n(&pace.writes, __ATOMIC_RELAXED) >=
                (uint64_t)NDEV * DEV_STATE / pace.max);
    assert_true(st.downtime_ms >= 2 * PEER_MS);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

/*
 * The opposite: every connection silent.  A device's state stops for
 * four peer timeouts after a few reads (the extra channel has nothing to
 * send, the main connection waits for it): the destination, whose peer
 * timeout is the short one, gives up within it and names it; the source
 * (a long timeout) reports the destination's reason, rolls back and runs
 * on; the destination discarded everything; the next attempt lands.
 */
static void
test_all_silent(void **state)
{
    const struct vmig_engine_dev_ops *ops = paced_dev_ops();
    struct tvm *a = tvm_new_ops("A", true, 43, 2, ops, NULL),
               *b = tvm_new_ops("B", false, 2, 2, ops, NULL);
    char silent[128];
    struct vmig_engine_stats st;
    struct dst_side j;
    int ret;

    (void)state;
    snprintf(silent, sizeof(silent),
             "the source was silent for %u ms (the peer timeout)", PEER_MS);
    set_peer_timeout(a, 20 * PEER_MS);
    set_peer_timeout(b, PEER_MS);
    pace = (__typeof__(pace)){
        .max = 64u << 10, .stall_at = 5, .stall_ms = 4 * PEER_MS};
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    ret = migrate(a, b, &j);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "destination: "));
    assert_non_null(strstr(st.error, silent));
    assert_true(j.ret < 0);
    vmig_engine_stats(b->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    assert_non_null(strstr(st.error, silent));
    check_discarded(b);

    pace.stall_at = 0;
    pace.reads = 0;
    migrate_lands(a, b, NULL);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

/*
 * The main connection's RAM waits until every extra channel has its
 * first device frame out, not merely as many devices as there are
 * channels: three connections, "acc0" read slowly (5 ms a read, about
 * 0.5 s) and the first read of "nic0" taking 1.5 s.  One channel takes
 * acc0, the other nic0; the first is through acc0 and into gpu0 long
 * before nic0's first frame - two devices have a frame out - but the
 * migrating thread sends no RAM until nic0's channel has its frame out.
 * A channel's RAM piece (4 MiB of the 16) takes 1 s, so RAM is left for
 * the migrating thread when its turn comes.
 */
static void
test_ram_waits_each_channel(void **state)
{
    const struct vmig_engine_dev_ops *ops = paced_dev_ops();
    struct tvm *a, *b;

    (void)state;
    seen_vm_ops = tvm_vm_ops;
    seen_vm_ops.ram_hole = seen_hole;
    a = tvm_new_ops("A", true, 47, 3, ops, &seen_vm_ops);
    b = tvm_new_ops("B", false, 5, 3, ops, NULL);
    pace = (__typeof__(pace)){.max = 64u << 10};
    for (int i = 0; i < NDEV; i++) {
        pace.dev[i] = a->dev[i];
    }
    pace.dev_ms[0] = 5;
    pace.first_ms[1] = 1500;
    pthread_mutex_lock(&seen.lock);
    seen.on = true;
    seen.chan_ram_ms = 1000;
    seen.main = pthread_self();
    seen.main_ram = 0;
    seen.nchan = 0;
    pthread_mutex_unlock(&seen.lock);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    migrate_lands(a, b, NULL);
    pthread_mutex_lock(&seen.lock);
    seen.on = false;
    assert_int_equal(seen.nchan, 2);
    assert_true(seen.main_ram != 0);
    for (unsigned int k = 0; k < seen.nchan; k++) {
        if (seen.main_ram < seen.chan_first[k]) {
            print_message(
                "the main connection's RAM went %llu ms before "
                "channel thread %u's first device read\n",
                (unsigned long long)(seen.chan_first[k] - seen.main_ram) /
                    1000000,
                k);
        }
        assert_true(seen.main_ram >= seen.chan_first[k]);
    }
    pthread_mutex_unlock(&seen.lock);
    tvm_free(a);
    tvm_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_silent_channel_busy),
        cmocka_unit_test(test_source_waits_slow_destination),
        cmocka_unit_test(test_all_silent),
        cmocka_unit_test(test_ram_waits_each_channel),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
