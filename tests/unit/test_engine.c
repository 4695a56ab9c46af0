/* SPDX-License-Identifier: MIT */
/*
 * test_engine.c - the migration engine end to end over loopback TCP: two
 * VMs (guest RAM with the ledger program, a vCPU thread, two memdev
 * devices of 2 MiB state, one with P2P and one without) in one process,
 * the source and destination engines on two threads, and a byte-counting
 * proxy between them for fault injection.  A forked destination covers
 * "destination killed mid-stream".
 *
 * Every failure case ends with the VM running intact on the source: vCPU
 * running, devices RUNNING and working, and the whole RAM equal to a
 * replay of the program.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "../engine_pair.h"
#include "../frame_relay.h"
#include "../loopback.h"
#include "engine_vm.h"
#include <xxhash.h>
#include <vmig/engine.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>

#define RAM_SIZE (8u << 20)
#define DEV_STATE (2u << 20)
#define NDEV 2

/* A VMM that knows some RAM is zero (here: by looking; a real one asks
 * its memfd for holes).  Counted so the test sees the engine use it. */
static int holes_reported;

static int
vm_hole(void *o, unsigned int region, uint64_t off, uint64_t len)
{
    const uint8_t *p = ((struct tvm *)o)->ram + off;

    if (region != 0) {
        return 0;
    }
    for (uint64_t i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    __atomic_add_fetch(&holes_reported, 1, __ATOMIC_RELAXED);
    return 1;
}

static const struct vmig_engine_vm_ops vm_ops = {
    .ram_hole = vm_hole,
    .vcpu_pause = tvm_vm_pause,
    .vcpu_resume = tvm_vm_resume,
    .vcpu_save = tvm_vm_save,
    .vcpu_load = tvm_vm_load,
};

/*
 * A device from "another library": no vmig descriptor and no compat
 * callback, identified by its PCI ids only; its data is opaque to us.
 */
static struct vmig_engine_dev_ops foreign_ops;

static ssize_t
foreign_describe(void *opaque, struct vmig_pci_ids *ids, void *buf, size_t cap)
{
    uint8_t tmp[128];

    (void)buf;
    (void)cap;
    return vmig_memdev_ops()->describe(opaque, ids, tmp, sizeof(tmp)) < 0 ? -EIO
                                                                          : 0;
}

static const struct vmig_engine_dev_ops *
dev_ops(bool foreign)
{
    if (!foreign) {
        return vmig_memdev_ops();
    }
    foreign_ops = *vmig_memdev_ops();
    foreign_ops.describe = foreign_describe;
    foreign_ops.compat = NULL;
    return &foreign_ops;
}

static bool use_foreign;

static struct tvm *
tvm_new(const char *name, bool program, uint64_t seed, uint8_t revision)
{
    static const char *const names[NDEV] = {"acc0", "nic0"};
    static const uint64_t flags[NDEV] = {VMIG_MIGRATION_STOP_COPY |
                                             VMIG_MIGRATION_P2P,
                                         VMIG_MIGRATION_STOP_COPY};
    struct tvm_cfg cfg = {.ram_size = RAM_SIZE,
                          .dev_state = DEV_STATE,
                          .ndev = NDEV,
                          .names = names,
                          .flags = flags,
                          .revision = revision,
                          .vm_ops = &vm_ops,
                          .dev_ops = dev_ops(use_foreign)};
    struct tvm *vm = tvm_make(name, program, seed, &cfg);

    /* nic0 lacks P2P on purpose (it must reach STOP in the first phase):
     * migrating that pair needs the override */
    {
        struct vmig_engine_params p = {.allow_mixed_p2p = true};

        vmig_engine_set_params(vm->eng, &p);
    }
    return vm;
}

/* ------------------------------------------------------------ sockets */

static int
listen_any(int *port)
{
    int fd = lb_listen(port);

    assert_true(fd >= 0);
    return fd;
}

static int
connect_to(int port)
{
    int fd = lb_connect(port);

    assert_true(fd >= 0);
    return fd;
}

/*
 * A proxy between source and destination: forwards both ways, flips the
 * main-direction byte at @flip_at, and cuts both connections once
 * @cut_after main-direction bytes went through (calling @on_cut first).
 * With @hold_at it stops forwarding the main direction after that many
 * bytes (sets @held) until @release is set, the return path still open;
 * socket buffers are then small, so the source stays inside its first
 * RAM frame: a migration that cannot end before a cancel lands (the
 * bandwidth limit no longer slows stop-copy).
 */
struct proxy {
    int lfd;
    int port; /* where the real destination listens */
    int64_t flip_at;
    uint64_t cut_after;
    uint64_t hold_at;
    int held;    /* atomic */
    int release; /* atomic */
    pid_t kill_pid;
    pthread_t th;
};

#define PROXY_HOLD_BUF (128 << 10)

static bool
proxy_holding(struct proxy *p, uint64_t fwd)
{
    if (p->hold_at == 0 || fwd < p->hold_at ||
        __atomic_load_n(&p->release, __ATOMIC_ACQUIRE)) {
        return false;
    }
    __atomic_store_n(&p->held, 1, __ATOMIC_RELEASE);
    return true;
}

static void *
proxy_main(void *arg)
{
    struct proxy *p = arg;
    int a = accept(p->lfd, NULL, NULL), b;
    uint64_t fwd = 0;
    bool a_open = true, b_open = true;
    static uint8_t buf[1 << 16];

    if (a < 0) {
        return NULL;
    }
    b = connect_to(p->port);
    /* half-closes are passed on, as TCP between two hosts would */
    while (a_open || b_open) {
        bool hold = proxy_holding(p, fwd);
        struct pollfd pf[2] = {
            {.fd = a_open && !hold ? a : -1, .events = POLLIN},
            {.fd = b_open ? b : -1, .events = POLLIN}};
        ssize_t n;
        int pr = poll(pf, 2, hold ? 10 : 5000);

        if (pr < 0 || (pr == 0 && !hold)) {
            break;
        }
        if (pf[0].revents) {
            size_t want = sizeof(buf);

            if (p->cut_after != 0 && p->cut_after - fwd < want) {
                want = (size_t)(p->cut_after - fwd);
            }
            if (p->hold_at > fwd && p->hold_at - fwd < want) {
                want = (size_t)(p->hold_at - fwd);
            }
            n = read(a, buf, want);
            if (n <= 0) {
                a_open = false;
                shutdown(b, SHUT_WR);
                continue;
            }
            if (p->flip_at >= 0 && (uint64_t)p->flip_at >= fwd &&
                (uint64_t)p->flip_at < fwd + (uint64_t)n) {
                buf[p->flip_at - (int64_t)fwd] ^= 0x01;
            }
            if (write(b, buf, (size_t)n) != n) {
                /* the destination is gone: keep draining the source */
                continue;
            }
            fwd += (uint64_t)n;
            if (p->cut_after != 0 && fwd >= p->cut_after) {
                if (p->kill_pid > 0) {
                    kill(p->kill_pid, SIGKILL);
                }
                break;
            }
        }
        if (pf[1].revents) {
            n = read(b, buf, sizeof(buf));
            if (n <= 0) {
                b_open = false;
                shutdown(a, SHUT_WR);
                continue;
            }
            if (write(a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    shutdown(a, SHUT_RDWR);
    shutdown(b, SHUT_RDWR);
    close(a);
    close(b);
    return NULL;
}

/*
 * Migrate @src to @dst (optionally through a proxy).  Returns the source's
 * result; the destination's is in *@dret.
 */
static int
migrate(struct tvm *src, struct tvm *dst, struct proxy *px, int *dret)
{
    struct ep_dst j = {.eng = dst->eng};
    int port, fd, ret;

    j.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    if (px != NULL) {
        px->port = port;
        px->lfd = listen_any(&port);
        if (px->hold_at != 0) {
            int sz = PROXY_HOLD_BUF;

            assert_int_equal(
                setsockopt(px->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
        }
        assert_int_equal(pthread_create(&px->th, NULL, proxy_main, px), 0);
    }
    fd = connect_to(port);
    if (px != NULL && px->hold_at != 0) {
        int sz = PROXY_HOLD_BUF;

        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)),
                         0);
    }
    ret = vmig_engine_migrate(src->eng, fd);
    close(fd);
    if (px != NULL) {
        pthread_join(px->th, NULL);
        close(px->lfd);
    }
    pthread_join(j.th, NULL);
    close(j.lfd);
    *dret = j.ret;
    return ret;
}

/* ------------------------------------------------------------ tests */

static void
check_landed(struct tvm *src, struct tvm *dst)
{
    struct vmig_engine_stats st;

    /* source: paused, devices stopped, nothing changed since the pause */
    assert_false(vmig_vcpu_running(src->vcpu));
    assert_int_equal(dst->resumes, 1);
    assert_true(XXH3_64bits(src->ram, RAM_SIZE) == dst->snap_ram);
    for (int i = 0; i < NDEV; i++) {
        uint8_t a[VMIG_MEMDEV_CONFIG_SIZE], b[VMIG_MEMDEV_CONFIG_SIZE];

        assert_int_equal(vmig_memdev_state(src->dev[i]), VMIG_STATE_STOP);
        assert_true(vmig_memdev_digest(src->dev[i]) == dst->snap_dev[i]);
        vmig_memdev_config(src->dev[i], a, NULL);
        vmig_memdev_config(dst->dev[i], b, NULL);
        assert_memory_equal(a, b, sizeof(a));
    }
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, RAM_SIZE);
    assert_int_equal(st.dev[0].bytes, DEV_STATE + 32);
    assert_true(st.total_time_ms < 20000);
    assert_true(st.downtime_ms <= st.total_time_ms + 1);
    /* the first device byte left while the VM was paused, before it ran
     * at the destination */
    assert_true(st.first_dev_byte_us > 0);
    assert_true(st.first_dev_byte_us <= (st.downtime_ms + 1) * 1000);
    vmig_engine_stats(dst->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    dst->resumes = 0;
}

static void
test_migrate_and_back(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    assert_vm_alive(b);

    /* and back: A receives while its devices sit in STOP */
    msleep(30);
    assert_int_equal(migrate(b, a, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(b, a);
    assert_vm_alive(a);
    tvm_free(a);
    tvm_free(b);
}

/* The failure happened; the VM must be running intact on the source. */
static void
check_rolled_back(struct tvm *src, int ret, int want_status)
{
    struct vmig_engine_stats st;

    assert_true(ret < 0);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, want_status);
    assert_true(st.error[0] != '\0');
    assert_vm_alive(src);
}

static void
test_refused_in_hello(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 3), *b = tvm_new("B", false, 7, 2);
    struct vmig_engine_stats st;
    int dret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate(a, b, NULL, &dret), -EOPNOTSUPP);
    assert_int_equal(dret, -EOPNOTSUPP);
    vmig_engine_stats(a->eng, &st);
    assert_int_equal(st.dev[0].verdict, 0);
    assert_non_null(strstr(st.dev[0].reason, "revision 3"));
    assert_int_equal(st.ram_transferred, 0);
    /* nothing stopped: the vCPU never paused, no device state moved */
    assert_int_equal(a->pauses, 0);
    assert_int_equal(st.dev_total, 0);
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, -EOPNOTSUPP, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_connection_cut(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct proxy px = {.flip_at = -1, .cut_after = RAM_SIZE / 2};
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    ret = migrate(a, b, &px, &dret);
    assert_true(dret < 0);
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    /* the same pair migrates fine afterwards */
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

static void
test_wire_byte_flipped(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    /* well inside the device data, which follows the RAM */
    struct proxy px = {.flip_at = RAM_SIZE + DEV_STATE / 2};
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    ret = migrate(a, b, &px, &dret);
    assert_int_equal(dret, -EBADMSG);
    assert_int_equal(ret, -EBADMSG);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "destination"));
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_device_state_corrupt(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    uint64_t before;
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    before = vmig_memdev_digest(b->dev[1]);
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_CORRUPT_SAVE);
    ret = migrate(a, b, NULL, &dret);
    assert_int_equal(dret, -EBADMSG);
    assert_int_equal(ret, -EBADMSG);
    /* nothing of the bad state reached the destination device */
    assert_true(vmig_memdev_digest(b->dev[1]) == before);
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_stop_copy_fails(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_FAIL_STOP_COPY);
    ret = migrate(a, b, NULL, &dret);
    assert_int_equal(ret, -EIO);
    assert_int_equal(dret, -ECANCELED);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_rollback_transition_fails(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    /* STOP_COPY fails on one device, then its way back to RUNNING fails
     * too: the engine resets it */
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_FAIL_STOP_COPY);
    vmig_memdev_inject(a->dev[0], VMIG_MEMDEV_FAULT_FAIL_RUNNING);
    ret = migrate(a, b, NULL, &dret);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_dest_fails_to_start(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    vmig_memdev_inject(b->dev[0], VMIG_MEMDEV_FAULT_FAIL_RUNNING);
    ret = migrate(a, b, NULL, &dret);
    assert_int_equal(dret, -EIO);
    assert_int_equal(ret, -EIO);
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

/* Cancel @vm's migration once the proxy holds the stream mid-RAM, then
 * let the stream go on. */
struct canceller {
    struct tvm *vm;
    struct proxy *px;
    pthread_t th;
};

static void *
cancel_main(void *arg)
{
    struct canceller *c = arg;

    for (int i = 0;
         i < 24000 && !__atomic_load_n(&c->px->held, __ATOMIC_ACQUIRE); i++) {
        msleep(5);
    }
    assert_true(__atomic_load_n(&c->px->held, __ATOMIC_ACQUIRE));
    assert_int_equal(vmig_engine_cancel(c->vm->eng), 0);
    __atomic_store_n(&c->px->release, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void
test_cancel_mid_transfer(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct proxy px = {.flip_at = -1, .hold_at = 1u << 20};
    struct canceller c = {.vm = a, .px = &px};
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_engine_cancel(a->eng), -EBUSY);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(pthread_create(&c.th, NULL, cancel_main, &c), 0);
    ret = migrate(a, b, &px, &dret);
    pthread_join(c.th, NULL);
    assert_int_equal(ret, -ECANCELED);
    /* cancelled in the middle of a frame: the source can only drop the
     * connection, and the destination fails on that */
    assert_true(dret == -ECANCELED || dret == -ECONNRESET || dret == -EPIPE);
    vmig_engine_stats(a->eng, &st);
    assert_true(st.ram_transferred < RAM_SIZE);
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_CANCELLED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_cancel_on_destination(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct proxy px = {.flip_at = -1, .hold_at = 1u << 20};
    struct canceller c = {.vm = b, .px = &px};
    struct vmig_engine_stats st;
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(pthread_create(&c.th, NULL, cancel_main, &c), 0);
    ret = migrate(a, b, &px, &dret);
    pthread_join(c.th, NULL);
    assert_int_equal(dret, -ECANCELED);
    assert_int_equal(ret, -ECANCELED);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.error, "cancelled on the destination"));
    assert_int_equal(b->resumes, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_CANCELLED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_dest_killed(void **state)
{
    int port, status;
    int lfd = listen_any(&port);
    pid_t pid = fork();
    struct tvm *a;
    struct proxy px = {.flip_at = -1, .cut_after = RAM_SIZE / 2};
    int ret;

    (void)state;
    assert_true(pid >= 0);
    if (pid == 0) {
        struct tvm *b = tvm_new("B", false, 7, 1);
        int fd = accept(lfd, NULL, NULL);

        /* the parent kills us mid-stream; exiting 0 would be a bug */
        if (fd >= 0) {
            ret = vmig_engine_incoming(b->eng, fd);
            (void)ret;
        }
        _exit(3);
    }
    a = tvm_new("A", true, 42, 1);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    px.port = port;
    px.kill_pid = pid;
    px.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&px.th, NULL, proxy_main, &px), 0);
    {
        int fd = connect_to(port);

        ret = vmig_engine_migrate(a->eng, fd);
        close(fd);
    }
    pthread_join(px.th, NULL);
    close(px.lfd);
    close(lfd);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
}

static void
test_zero_ram_via_hole_hook(void **state)
{
    /* a VM whose RAM was never written: every chunk is a hole, nothing
     * of it is read on the source, and the destination's stale bytes are
     * cleared */
    struct tvm *a = tvm_new("A", false, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret;

    (void)state;
    memset(b->ram, 0xaa, RAM_SIZE);
    holes_reported = 0;
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    assert_int_equal(holes_reported, RAM_SIZE / (4u << 20));
    check_landed(a, b);
    for (size_t i = 0; i < RAM_SIZE; i++) {
        if (b->ram[i] != 0) {
            fail_msg("byte %zu not cleared", i);
        }
    }
    tvm_free(a);
    tvm_free(b);
}

static void
test_silent_destination(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1);
    struct vmig_engine_params p = {.timeout_ms = 300, .allow_mixed_p2p = true};
    int port, lfd = listen_any(&port), fd, ret;

    (void)state;
    /* a peer that accepts the TCP connection (backlog) but never answers */
    vmig_engine_set_params(a->eng, &p);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    fd = connect_to(port);
    ret = vmig_engine_migrate(a->eng, fd);
    close(fd);
    close(lfd);
    assert_int_equal(ret, -ETIMEDOUT);
    assert_int_equal(a->pauses, 0);
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
}

static void
test_check_only(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct vmig_engine_check chk;
    struct ep_dst j = {.eng = b->eng};
    int port, fd;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    j.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    fd = connect_to(port);
    assert_int_equal(vmig_engine_check(a->eng, fd, &chk), 0);
    close(fd);
    pthread_join(j.th, NULL);
    close(j.lfd);
    assert_int_equal(j.ret, 1);
    assert_int_equal(chk.status, 0);
    assert_int_equal(chk.ndevices, NDEV);
    assert_int_equal(chk.dev[0].verdict, 1);
    assert_vm_alive(a);
    tvm_free(a);
    tvm_free(b);
}

static void
test_foreign_device_by_pci_ids(void **state)
{
    struct tvm *a, *b, *c;
    struct vmig_engine_stats st;
    int dret;

    (void)state;
    use_foreign = true;
    a = tvm_new("A", true, 42, 1);
    b = tvm_new("B", false, 7, 1);
    c = tvm_new("C", false, 7, 2);
    use_foreign = false;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    /* different revision: the engine's default rule refuses */
    assert_int_equal(migrate(a, c, NULL, &dret), -EOPNOTSUPP);
    vmig_engine_stats(a->eng, &st);
    assert_non_null(strstr(st.dev[0].reason, "PCI ids differ"));
    assert_vm_alive(a);
    /* same ids: the opaque data moves unchanged */
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
    tvm_free(c);
}

/* ------------------------------------------------------------ zstd */

static void
set_zstd(struct tvm *vm)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.compression = VMIG_ENGINE_COMPRESS_ZSTD;
    vmig_engine_set_params(vm->eng, &p);
}

/* Migrate @src to @dst through a frame relay in @mode; the source's
 * result, the destination's in *@dret, frames rewritten in *@rewritten. */
static int
migrate_relay(struct tvm *src, struct tvm *dst, enum fr_mode mode, int *dret,
              int *rewritten)
{
    struct ep_dst j = {.eng = dst->eng};
    struct frelay r = {.mode = mode};
    int port, sv[2], ret;

    j.lfd = listen_any(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r.a = sv[1];
    r.b = connect_to(port);
    assert_int_equal(pthread_create(&r.th, NULL, fr_main, &r), 0);
    ret = vmig_engine_migrate(src->eng, sv[0]);
    close(sv[0]);
    pthread_join(r.th, NULL);
    pthread_join(j.th, NULL);
    close(j.lfd);
    *dret = j.ret;
    *rewritten = r.rewritten;
    return ret;
}

/* Compressed end to end: the same bytes land, fewer went on the wire. */
static void
test_zstd_migrate(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct vmig_engine_stats st;
    int dret, n;

    (void)state;
    set_zstd(a);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate_relay(a, b, FR_PASS, &dret, &n), 0);
    assert_int_equal(dret, 0);
    vmig_engine_stats(a->eng, &st);
    check_landed(a, b);
    assert_true(st.zstd_raw_bytes > 0);
    assert_true(st.zstd_bytes < st.zstd_raw_bytes);
    assert_true(st.wire_bytes < RAM_SIZE + NDEV * DEV_STATE);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

/* A ZDATA frame rewritten with a valid checksum (@mode): the destination
 * refuses it and discards, the source rolls back and runs on, and the
 * next (clean) migration lands. */
static void
zstd_hostile(enum fr_mode mode)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    int dret, ret, n;

    set_zstd(a);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    ret = migrate_relay(a, b, mode, &dret, &n);
    assert_int_equal(n, 1);
    assert_int_equal(dret, -EBADMSG);
    assert_int_equal(ret, -EBADMSG);
    assert_int_equal(b->resumes, 0);
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }
    check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    assert_int_equal(migrate_relay(a, b, FR_PASS, &dret, &n), 0);
    assert_int_equal(dret, 0);
    check_landed(a, b);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

static void
test_zstd_corrupt_frame(void **state)
{
    (void)state;
    zstd_hostile(FR_ZDATA_BODY);
}

static void
test_zstd_oversized_frame(void **state)
{
    (void)state;
    zstd_hostile(FR_ZDATA_SIZE);
}

/* A destination that does not know compression: nothing is compressed. */
static void
test_zstd_old_destination(void **state)
{
    struct tvm *a = tvm_new("A", true, 42, 1), *b = tvm_new("B", false, 7, 1);
    struct vmig_engine_stats st;
    int dret, n;

    (void)state;
    set_zstd(a);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate_relay(a, b, FR_HELLO_NO_ZSTD, &dret, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(dret, 0);
    vmig_engine_stats(a->eng, &st);
    check_landed(a, b);
    assert_int_equal(st.zstd_raw_bytes, 0);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_and_back),
        cmocka_unit_test(test_refused_in_hello),
        cmocka_unit_test(test_connection_cut),
        cmocka_unit_test(test_wire_byte_flipped),
        cmocka_unit_test(test_device_state_corrupt),
        cmocka_unit_test(test_stop_copy_fails),
        cmocka_unit_test(test_rollback_transition_fails),
        cmocka_unit_test(test_dest_fails_to_start),
        cmocka_unit_test(test_cancel_mid_transfer),
        cmocka_unit_test(test_cancel_on_destination),
        cmocka_unit_test(test_dest_killed),
        cmocka_unit_test(test_zero_ram_via_hole_hook),
        cmocka_unit_test(test_silent_destination),
        cmocka_unit_test(test_check_only),
        cmocka_unit_test(test_foreign_device_by_pci_ids),
        cmocka_unit_test(test_zstd_migrate),
        cmocka_unit_test(test_zstd_corrupt_frame),
        cmocka_unit_test(test_zstd_oversized_frame),
        cmocka_unit_test(test_zstd_old_destination),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
