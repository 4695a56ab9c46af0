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
 * - the connections share one peer timeout: the main connection silent
 *   for three peer timeouts while an extra channel streams a slow
 *   device's state still lands; a stall of every connection fails
 *   within the destination's peer timeout, named, and rolls back;
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

#define RAM_SIZE (16u << 20)
#define DEV_STATE (6u << 20)
#define NDEV 3

/*
 * Every wait on a peer (the engines' peer timeout, a channel's HELLO, a
 * hostile peer's answer, the cut proxy's idle wait) only bounds a hang:
 * no test waits for one to expire (a cut closes its connections).  At 20 s, a
 * source starved under ThreadSanitizer on a loaded machine (load 25 on two
 * cores) was silent on its main connection for longer while its extra channels
 * carried the device states; the destination gave up ("the source was silent
 * for 20000 ms") and the source's channels failed with EPIPE.
 */
#define CHAN_PEER_TIMEOUT_MS 120000

/* What a channel test adds to its VMs (tvm.ext). */
struct chx {
    /* source side: where extra channels connect, how many were opened */
    int port;
    int opened;
    int (*pre_open)(struct tvm *vm, unsigned int index);
    /* a cut: channel @cut_index goes through a proxy that closes both
     * ends after @cut_after bytes (0: no cut) */
    unsigned int cut_index;
    uint64_t cut_after;
    /* the extra channels' send buffers (0: the system's) */
    int sndbuf;
    pthread_t cut_th;
    bool cut_live;
};

#define CHX(vm) ((struct chx *)(vm)->ext)

/* ------------------------------------------------------------ cut proxy */

struct cut {
    int a, b;
    uint64_t after;
};

/* Forward a -> b (and b -> a) until @after bytes went a -> b, then cut. */
static void *
cut_main(void *arg)
{
    struct cut *x = arg;
    uint64_t fwd = 0;
    static uint8_t buf[1 << 16];

    for (;;) {
        struct pollfd pf[2] = {{.fd = x->a, .events = POLLIN},
                               {.fd = x->b, .events = POLLIN}};
        ssize_t n;

        if (poll(pf, 2, CHAN_PEER_TIMEOUT_MS) <= 0) {
            break;
        }
        if (pf[0].revents) {
            size_t want = sizeof(buf);

            if (x->after - fwd < want) {
                want = (size_t)(x->after - fwd);
            }
            n = read(x->a, buf, want);
            if (n <= 0 || write(x->b, buf, (size_t)n) != n) {
                break;
            }
            fwd += (uint64_t)n;
            if (fwd >= x->after) {
                break;
            }
        }
        if (pf[1].revents) {
            n = read(x->b, buf, sizeof(buf));
            if (n <= 0 || write(x->a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    shutdown(x->a, SHUT_RDWR);
    shutdown(x->b, SHUT_RDWR);
    close(x->a);
    close(x->b);
    free(x);
    return NULL;
}

/* ------------------------------------------------------------ chan ops */

static int
ops_open(void *opaque, unsigned int index, const int *cancel,
         struct vmig_chan **out)
{
    struct tvm *vm = opaque;
    int fd, ret;

    (void)cancel;
    if (CHX(vm)->pre_open != NULL) {
        ret = CHX(vm)->pre_open(vm, index);
        if (ret < 0) {
            return ret;
        }
    }
    fd = lb_connect(CHX(vm)->port);
    if (fd < 0) {
        return fd;
    }
    if (CHX(vm)->sndbuf != 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE,
                                           &CHX(vm)->sndbuf, sizeof(int)) < 0) {
        /* not privileged: as much as the system allows */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &CHX(vm)->sndbuf,
                         sizeof(int));
    }
    if (CHX(vm)->cut_after != 0 && index == CHX(vm)->cut_index) {
        /* a proxy in the middle: the source talks to it */
        struct cut *x = calloc(1, sizeof(*x));
        int port, lfd = lb_listen(&port);

        assert_non_null(x);
        assert_true(lfd >= 0);
        x->b = fd;
        x->after = CHX(vm)->cut_after;
        fd = lb_connect(port);
        assert_true(fd >= 0);
        x->a = accept(lfd, NULL, NULL);
        assert_true(x->a >= 0);
        close(lfd);
        assert_int_equal(pthread_create(&CHX(vm)->cut_th, NULL, cut_main, x),
                         0);
        CHX(vm)->cut_live = true;
    }
    ret = vmig_chan_plain(vm->ctx, fd, out);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    CHX(vm)->opened++;
    return 0;
}

static void
ops_release(void *opaque, struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    (void)opaque;
    vmig_chan_free(ch);
    close(fd);
}

static const struct vmig_engine_chan_ops chan_ops = {
    .open = ops_open,
    .release = ops_release,
};

/* ------------------------------------------------------------ VMs */

static void
set_channels(struct tvm *vm, unsigned int n)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.channels = n;
    p.timeout_ms = CHAN_PEER_TIMEOUT_MS;
    vmig_engine_set_params(vm->eng, &p);
}

static struct tvm *
tvm_new_ops(const char *name, bool program, uint64_t seed,
            unsigned int channels, const struct vmig_engine_dev_ops *dev_ops,
            const struct vmig_engine_vm_ops *vm_ops)
{
    static const char *const names[NDEV] = {"acc0", "nic0", "gpu0"};
    static const uint64_t flags[NDEV] = {
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P};
    struct tvm_cfg cfg = {.ram_size = RAM_SIZE,
                          .dev_state = DEV_STATE,
                          .ndev = NDEV,
                          .names = names,
                          .flags = flags,
                          .revision = 1,
                          .vm_ops = vm_ops,
                          .dev_ops = dev_ops};
    struct tvm *vm = tvm_make(name, program, seed, &cfg);

    vm->ext = calloc(1, sizeof(struct chx));
    assert_non_null(vm->ext);
    assert_int_equal(vmig_engine_set_chan_ops(vm->eng, &chan_ops, vm), 0);
    set_channels(vm, channels);
    return vm;
}

static struct tvm *
tvm_new(const char *name, bool program, uint64_t seed, unsigned int channels)
{
    return tvm_new_ops(name, program, seed, channels, NULL, NULL);
}

/* The peer timeout of @vm's engine. */
static void
set_peer_timeout(struct tvm *vm, unsigned int ms)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.timeout_ms = ms;
    vmig_engine_set_params(vm->eng, &p);
}

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

/* ------------------------------------------------------------ destination */

#define MAX_ACCEPTS 16

/* Accepts the main connection, runs the engine on it, and hands every
 * further connection to vmig_engine_accept_chan() meanwhile. */
struct dst_side {
    struct tvm *vm;
    int lfd;
    int ret;
    int in_done; /* atomic */
    int naccept;
    int accept_ret[MAX_ACCEPTS];
    pthread_t th, in_th;
    int main_fd;
};

static void *
dst_incoming(void *arg)
{
    struct dst_side *j = arg;

    j->ret = vmig_engine_incoming(j->vm->eng, j->main_fd);
    __atomic_store_n(&j->in_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void
dst_release(void *opaque, struct vmig_chan *ch)
{
    ops_release(opaque, ch);
}

static void *
dst_main(void *arg)
{
    struct dst_side *j = arg;

    j->main_fd = accept(j->lfd, NULL, NULL);
    if (j->main_fd < 0) {
        j->ret = -errno;
        return NULL;
    }
    assert_int_equal(pthread_create(&j->in_th, NULL, dst_incoming, j), 0);
    while (!__atomic_load_n(&j->in_done, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = j->lfd, .events = POLLIN};
        struct vmig_chan *ch;
        int fd, ret;

        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        fd = accept(j->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        assert_int_equal(vmig_chan_plain(j->vm->ctx, fd, &ch), 0);
        ret =
            vmig_engine_accept_chan(j->vm->eng, ch, NULL, CHAN_PEER_TIMEOUT_MS);
        if (j->naccept < MAX_ACCEPTS) {
            j->accept_ret[j->naccept++] = ret;
        }
        if (ret < 0) {
            vmig_chan_free(ch);
            close(fd);
        }
    }
    pthread_join(j->in_th, NULL);
    close(j->main_fd);
    return NULL;
}

static const struct vmig_engine_chan_ops dst_ops = {.release = dst_release};

/* Migrate @src to @dst; the destination's side in @j (its result, the
 * accept results). */
static int
migrate(struct tvm *src, struct tvm *dst, struct dst_side *j)
{
    int fd, ret;

    memset(j, 0, sizeof(*j));
    j->vm = dst;
    assert_int_equal(vmig_engine_set_chan_ops(dst->eng, &dst_ops, dst), 0);
    j->lfd = lb_listen(&CHX(src)->port);
    assert_true(j->lfd >= 0);
    assert_int_equal(pthread_create(&j->th, NULL, dst_main, j), 0);
    fd = lb_connect(CHX(src)->port);
    assert_true(fd >= 0);
    CHX(src)->opened = 0;
    ret = vmig_engine_migrate(src->eng, fd);
    close(fd);
    pthread_join(j->th, NULL);
    close(j->lfd);
    if (CHX(src)->cut_live) {
        pthread_join(CHX(src)->cut_th, NULL);
        CHX(src)->cut_live = false;
    }
    /* the source side's ops again, for a migration back */
    assert_int_equal(vmig_engine_set_chan_ops(dst->eng, &chan_ops, dst), 0);
    return ret;
}

static void
check_landed(struct tvm *src, struct tvm *dst)
{
    struct vmig_engine_stats st;

    tvm_check_moved(src, dst);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, RAM_SIZE);
    vmig_engine_stats(dst->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, RAM_SIZE);
    for (int i = 0; i < NDEV; i++) {
        assert_true(st.dev[i].bytes >= DEV_STATE);
    }
    dst->resumes = 0;
}

/* ------------------------------------------------------------ tests */

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
    assert_int_equal(b->resumes, 0);
    for (int i = 0; i < NDEV; i++) {
        /* the destination discarded what it had: reset, RUNNING, no
         * state of the source */
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }
    assert_vm_alive(a);

    /* nothing is left over: the next attempt lands */
    CHX(a)->cut_after = 0;
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    check_landed(a, b);
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
    assert_int_equal(b->resumes, 0);
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }
    assert_vm_alive(a);

    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    check_landed(a, b);
    tvm_free(a);
    tvm_free(b);
}

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
    struct vmig_engine_stats st, dst;
    struct dst_side j;
    int ret;

    (void)state;
    set_peer_timeout(a, PEER_MS);
    set_peer_timeout(b, PEER_MS);
    pace = (__typeof__(pace)){.max = 64u << 10, .ms = PACE_MS};
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    ret = migrate(a, b, &j);
    vmig_engine_stats(a->eng, &st);
    vmig_engine_stats(b->eng, &dst);
    if (ret != 0 || j.ret != 0) {
        print_message("source: %s\ndestination: %s\n", st.error, dst.error);
    }
    assert_int_equal(ret, 0);
    assert_int_equal(j.ret, 0);
    assert_int_equal(CHX(a)->opened, 1);
    check_landed(a, b);
    /* the devices' state really took longer than the peer timeout many
     * times over (the main connection had nothing to say meanwhile) */
    assert_true(__atomic_load_n(&pace.reads, __ATOMIC_RELAXED) >=
                (uint64_t)NDEV * DEV_STATE / pace.max);
    vmig_engine_stats(a->eng, &st);
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
    struct vmig_engine_stats st, dst;
    struct dst_side j;
    int ret;

    (void)state;
    set_peer_timeout(a, PEER_MS);
    set_peer_timeout(b, PEER_MS);
    pace = (__typeof__(pace)){.max = 64u << 10, .write_ms = PACE_MS};
    CHX(a)->sndbuf = 2 * NDEV * DEV_STATE;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 500);
    ret = migrate(a, b, &j);
    vmig_engine_stats(a->eng, &st);
    vmig_engine_stats(b->eng, &dst);
    if (ret != 0 || j.ret != 0) {
        print_message("source: %s\ndestination: %s\n", st.error, dst.error);
    }
    assert_int_equal(ret, 0);
    assert_int_equal(j.ret, 0);
    check_landed(a, b);
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
    assert_int_equal(b->resumes, 0);
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }

    pace.stall_at = 0;
    pace.reads = 0;
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    check_landed(a, b);
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
    struct dst_side j;

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
    assert_int_equal(migrate(a, b, &j), 0);
    assert_int_equal(j.ret, 0);
    check_landed(a, b);
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
        cmocka_unit_test(test_four_channels),
        cmocka_unit_test(test_one_channel_side),
        cmocka_unit_test(test_hostile_hellos),
        cmocka_unit_test(test_channel_cut),
        cmocka_unit_test(test_corrupt_device_state),
        cmocka_unit_test(test_main_silent_channel_busy),
        cmocka_unit_test(test_source_waits_slow_destination),
        cmocka_unit_test(test_all_silent),
        cmocka_unit_test(test_ram_waits_each_channel),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
