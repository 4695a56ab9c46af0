/* SPDX-License-Identifier: MIT */
/*
 * test_engine_chan.c - parallel channels (<vmig/engine_chan.h>) end to
 * end over loopback TCP: two VMs (guest RAM with the ledger program, a
 * vCPU thread, three memdev devices with P2P) in one process, the source
 * opening its extra connections through the VMM ops and the destination
 * handing every further connection it accepts to
 * vmig_engine_accept_chan().
 *
 * - four channels: everything lands (RAM, vCPU, every device's state and
 *   config), the extra channels really carried data, and back again;
 * - a destination (or source) with one channel: the migration uses one
 *   connection, as before channels existed;
 * - hostile channel hellos while a migration waits for its channels (an
 *   unknown id, a count that does not fit, an index past the count, a
 *   duplicate, a second source's HELLO, a late one after the migration
 *   ended): each refused with its errno and a reason, and the migration
 *   still lands intact;
 * - one extra channel cut in the middle of stop-copy: the source rolls
 *   back and runs on intact, the destination fails and resets its
 *   devices; the next attempt lands;
 * - a device's corrupt state on its channel: refused, rolled back.
 * The peer timeout shared by a migration's connections and the order of
 * RAM after the channels' device frames: test_engine_chan_peer.c.
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

static void
test_four_channels(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 4), *b = tvm_new("B", false, 7, 4);
    struct dst_side j;
    struct vmig_engine_stats st;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(a)->opened, 3);
    assert_int_equal(j.naccept, 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(j.accept_ret[k], 0);
    }
    check_landed(a, b);
    /* the extra channels carried every device's state */
    vmig_engine_stats(a->eng, &st);
    pthread_mutex_lock(&a->eng->lock);
    assert_true(a->eng->wire_extra > (uint64_t)NDEV * DEV_STATE);
    assert_true(st.wire_bytes > a->eng->wire_extra);
    /* the stop-copy bytes count the channels' too */
    assert_true(st.stopcopy_bytes > a->eng->wire_extra);
    pthread_mutex_unlock(&a->eng->lock);
    /* a device's first stop-copy frame went out on a channel, while the
     * guest was down */
    assert_true(st.first_dev_byte_us > 0);
    assert_true(st.first_dev_byte_us <= (st.downtime_ms + 1) * 1000);
    assert_vm_alive(b);

    /* and back, B the source now */
    msleep(30);
    assert_int_equal(migrate(b, a, &j), 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(b)->opened, 3);
    check_landed(b, a);
    assert_vm_alive(a);
    tvm_free(a);
    tvm_free(b);
}

/* One side with one channel: one connection, as before channels. */
static void
test_one_channel_side(void **state)
{
    struct tvm *a = tvm_new("A", true, 3, 4), *b = tvm_new("B", false, 9, 1);
    struct dst_side j;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(a)->opened, 0);
    assert_int_equal(j.naccept, 0);
    check_landed(a, b);
    assert_vm_alive(b);

    set_channels(b, 1);
    set_channels(a, 4);
    msleep(30);
    assert_int_equal(migrate(b, a, &j), 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(b)->opened, 0);
    assert_int_equal(j.naccept, 0);
    check_landed(b, a);
    tvm_free(a);
    tvm_free(b);
}

/* --- hostile channel hellos */

static struct tvm *hostile_dst;
static uint64_t old_id[2];

/* The destination migration's id (a peer that learnt it somehow). */
static void
dst_id(uint64_t id[2])
{
    struct vmig_engine *e = hostile_dst->eng;

    pthread_mutex_lock(&e->lock);
    assert_non_null(e->mc_cur);
    id[0] = e->mc_cur->id_hi;
    id[1] = e->mc_cur->id_lo;
    pthread_mutex_unlock(&e->lock);
}

/*
 * Connect, exchange preambles, send one frame of @type with @payload, and
 * return the errno of the ERROR that must come back (its reason into
 * @why).
 */
static int
raw_hello(int port, unsigned int type, const void *payload, size_t len,
          char *why, size_t whylen)
{
    struct vmig_mp_conn *c;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    int fd = lb_connect(port), err;

    assert_true(fd >= 0);
    assert_int_equal(vmig_mp_conn_new(hostile_dst->ctx, fd, &c), 0);
    vmig_mp_conn_set_timeout(c, CHAN_PEER_TIMEOUT_MS);
    assert_int_equal(vmig_mp_handshake(c), 0);
    assert_int_equal(vmig_mp_send1(c, type, 0, payload, len), 0);
    assert_int_equal(vmig_mp_recv(c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_ERROR);
    assert_int_equal(vmig_mp_frame_decode(&f, &m), 0);
    err = (int)m.error.err;
    snprintf(why, whylen, "%s", m.error.reason);
    vmig_mp_conn_free(c);
    close(fd);
    return err;
}

static size_t
put_hello(uint8_t *p, uint64_t hi, uint64_t lo, uint32_t index, uint32_t count)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(hi >> (8 * i));
        p[8 + i] = (uint8_t)(lo >> (8 * i));
    }
    for (int i = 0; i < 4; i++) {
        p[16 + i] = (uint8_t)(index >> (8 * i));
        p[20 + i] = (uint8_t)(count >> (8 * i));
    }
    return 24;
}

static int
hostile_pre_open(struct tvm *vm, unsigned int index)
{
    uint8_t p[64];
    uint64_t id[2];
    char why[256];
    size_t n;

    dst_id(id);
    memcpy(old_id, id, sizeof(old_id));
    if (index == 1) {
        n = put_hello(p, id[0] ^ 1, id[1], 1, 4);
        assert_int_equal(raw_hello(CHX(vm)->port, VMIG_MP_CHANNEL_HELLO, p, n,
                                   why, sizeof(why)),
                         ENOENT);
        assert_non_null(strstr(why, "unknown migration id"));
        n = put_hello(p, id[0], id[1], 1, 3);
        assert_int_equal(raw_hello(CHX(vm)->port, VMIG_MP_CHANNEL_HELLO, p, n,
                                   why, sizeof(why)),
                         EINVAL);
        assert_non_null(strstr(why, "has 4 channels"));
        n = put_hello(p, id[0], id[1], 7, 4);
        assert_int_equal(raw_hello(CHX(vm)->port, VMIG_MP_CHANNEL_HELLO, p, n,
                                   why, sizeof(why)),
                         EBADMSG);
        n = put_hello(p, id[0], id[1], 1, 4);
        assert_int_equal(
            raw_hello(CHX(vm)->port, VMIG_MP_SETUP, p, 16, why, sizeof(why)),
            EPROTO);
        assert_non_null(strstr(why, "expected CHANNEL_HELLO"));
        assert_int_equal(
            raw_hello(CHX(vm)->port, VMIG_MP_HELLO, p, 16, why, sizeof(why)),
            EBUSY);
    } else if (index == 2) {
        n = put_hello(p, id[0], id[1], 1, 4);
        assert_int_equal(raw_hello(CHX(vm)->port, VMIG_MP_CHANNEL_HELLO, p, n,
                                   why, sizeof(why)),
                         EEXIST);
        assert_non_null(strstr(why, "already joined"));
    }
    return 0;
}

static void
test_hostile_hellos(void **state)
{
    struct tvm *a = tvm_new("A", true, 11, 4), *b = tvm_new("B", false, 5, 4);
    struct dst_side j;
    int refused = 0;

    (void)state;
    hostile_dst = b;
    CHX(a)->pre_open = hostile_pre_open;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(a)->opened, 3);
    for (int k = 0; k < j.naccept; k++) {
        refused += j.accept_ret[k] < 0;
    }
    assert_int_equal(j.naccept, 3 + 6);
    assert_int_equal(refused, 6);
    check_landed(a, b);
    assert_vm_alive(b);
    {
        /* the migration is over: its id opens nothing any more */
        struct vmig_chan *ch;
        int sv[2], ret;
        uint8_t p[64];
        size_t n = put_hello(p, old_id[0], old_id[1], 1, 4);
        struct vmig_mp_conn *c;
        struct vmig_mp_frame f;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(vmig_mp_conn_new(b->ctx, sv[1], &c), 0);
        vmig_mp_conn_set_timeout(c, CHAN_PEER_TIMEOUT_MS);
        /* preamble and hello written ahead; the socket buffers them */
        assert_int_equal(vmig_chan_plain(b->ctx, sv[0], &ch), 0);
        {
            uint8_t pre[VMIG_MP_PREAMBLE_LEN];

            vmig_mp_preamble(pre);
            assert_int_equal(write(sv[1], pre, sizeof(pre)), sizeof(pre));
        }
        assert_int_equal(vmig_mp_send1(c, VMIG_MP_CHANNEL_HELLO, 0, p, n), 0);
        ret = vmig_engine_accept_chan(b->eng, ch, NULL, 5000);
        assert_int_equal(ret, -ENOENT);
        {
            uint8_t pre[VMIG_MP_PREAMBLE_LEN];

            assert_int_equal(read(sv[1], pre, sizeof(pre)), sizeof(pre));
        }
        assert_int_equal(vmig_mp_recv(c, &f), 0);
        assert_int_equal(f.hdr.type, VMIG_MP_ERROR);
        vmig_mp_conn_free(c);
        vmig_chan_free(ch);
        close(sv[0]);
        close(sv[1]);
    }
    tvm_free(a);
    tvm_free(b);
}

/* One extra channel cut in the middle of stop-copy. */
static void
test_channel_cut(void **state)
{
    struct tvm *a = tvm_new("A", true, 21, 4), *b = tvm_new("B", false, 8, 4);
    struct vmig_engine_stats st;
    struct dst_side j;
    int ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    CHX(a)->cut_index = 2;
    CHX(a)->cut_after = DEV_STATE / 2;
    ret = migrate(a, b, &j);
    assert_true(ret < 0);
    assert_true(j.ret < 0);
    vmig_engine_stats(a->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    check_discarded(b);
    assert_vm_alive(a);

    /* nothing is left over: the next attempt lands */
    CHX(a)->cut_after = 0;
    migrate_lands(a, b, NULL);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

/*
 * A device whose saved state is corrupt, carried on its channel: the
 * destination refuses it (while it arrives, or when the device validates
 * it), the migration fails as a whole and rolls back, and the next
 * attempt lands.
 */
static void
test_corrupt_device_state(void **state)
{
    struct tvm *a = tvm_new("A", true, 31, 4), *b = tvm_new("B", false, 6, 4);
    struct vmig_engine_stats st;
    struct dst_side j;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_CORRUPT_SAVE);
    assert_true(migrate(a, b, &j) < 0);
    assert_true(j.ret < 0);
    assert_int_equal(CHX(a)->opened, 3);
    vmig_engine_stats(a->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    assert_non_null(strstr(st.error, "nic0"));
    check_discarded(b);
    assert_vm_alive(a);

    migrate_lands(a, b, NULL);
    tvm_free(a);
    tvm_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_channels),
        cmocka_unit_test(test_one_channel_side),
        cmocka_unit_test(test_hostile_hellos),
        cmocka_unit_test(test_channel_cut),
        cmocka_unit_test(test_corrupt_device_state),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
