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
 * replay of the program.  The same migrations compressed with zstd are in
 * test_engine_zstd.c; the VM and the checks both use are engine_vm.c's.
 */
#include <errno.h>
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
#include "engine_vm.h"
#include <vmig/engine.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>

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
foreign_dev_ops(void)
{
    foreign_ops = *vmig_memdev_ops();
    foreign_ops.describe = foreign_describe;
    foreign_ops.compat = NULL;
    return &foreign_ops;
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
    b = tvm_connect(p->port);
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

    j.lfd = tvm_listen(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    if (px != NULL) {
        px->port = port;
        px->lfd = tvm_listen(&port);
        if (px->hold_at != 0) {
            int sz = PROXY_HOLD_BUF;

            assert_int_equal(
                setsockopt(px->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
        }
        assert_int_equal(pthread_create(&px->th, NULL, proxy_main, px), 0);
    }
    fd = tvm_connect(port);
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
test_migrate_and_back(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    int dret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    tvm_check_landed(a, b);
    assert_vm_alive(b);

    /* and back: A receives while its devices sit in STOP */
    msleep(30);
    assert_int_equal(migrate(b, a, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    tvm_check_landed(b, a);
    assert_vm_alive(a);
    tvm_free(a);
    tvm_free(b);
}

static void
test_refused_in_hello(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 3, NULL),
               *b = tvm_std_new("B", false, 7, 2, NULL);
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
    tvm_check_rolled_back(a, -EOPNOTSUPP, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_connection_cut(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    struct proxy px = {.flip_at = -1, .cut_after = TVM_STD_RAM / 2};
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    ret = migrate(a, b, &px, &dret);
    assert_true(dret < 0);
    assert_int_equal(b->resumes, 0);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    /* the same pair migrates fine afterwards */
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    tvm_check_landed(a, b);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
}

static void
test_wire_byte_flipped(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    /* well inside the device data, which follows the RAM */
    struct proxy px = {.flip_at = TVM_STD_RAM + TVM_STD_DEV_STATE / 2};
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
    for (int i = 0; i < TVM_STD_NDEV; i++) {
        assert_int_equal(vmig_memdev_state(b->dev[i]), VMIG_STATE_RUNNING);
    }
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_device_state_corrupt(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
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
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_stop_copy_fails(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_FAIL_STOP_COPY);
    ret = migrate(a, b, NULL, &dret);
    assert_int_equal(ret, -EIO);
    assert_int_equal(dret, -ECANCELED);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_rollback_transition_fails(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    /* STOP_COPY fails on one device, then its way back to RUNNING fails
     * too: the engine resets it */
    vmig_memdev_inject(a->dev[1], VMIG_MEMDEV_FAULT_FAIL_STOP_COPY);
    vmig_memdev_inject(a->dev[0], VMIG_MEMDEV_FAULT_FAIL_RUNNING);
    ret = migrate(a, b, NULL, &dret);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_dest_fails_to_start(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    int dret, ret;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    vmig_memdev_inject(b->dev[0], VMIG_MEMDEV_FAULT_FAIL_RUNNING);
    ret = migrate(a, b, NULL, &dret);
    assert_int_equal(dret, -EIO);
    assert_int_equal(ret, -EIO);
    assert_int_equal(b->resumes, 0);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
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
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
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
    assert_true(st.ram_transferred < TVM_STD_RAM);
    assert_int_equal(b->resumes, 0);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_CANCELLED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_cancel_on_destination(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
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
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_CANCELLED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_dest_killed(void **state)
{
    int port, status;
    int lfd = tvm_listen(&port);
    pid_t pid = fork();
    struct tvm *a;
    struct proxy px = {.flip_at = -1, .cut_after = TVM_STD_RAM / 2};
    int ret;

    (void)state;
    assert_true(pid >= 0);
    if (pid == 0) {
        struct tvm *b = tvm_std_new("B", false, 7, 1, NULL);
        int fd = accept(lfd, NULL, NULL);

        /* the parent kills us mid-stream; exiting 0 would be a bug */
        if (fd >= 0) {
            ret = vmig_engine_incoming(b->eng, fd);
            (void)ret;
        }
        _exit(3);
    }
    a = tvm_std_new("A", true, 42, 1, NULL);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    px.port = port;
    px.kill_pid = pid;
    px.lfd = tvm_listen(&port);
    assert_int_equal(pthread_create(&px.th, NULL, proxy_main, &px), 0);
    {
        int fd = tvm_connect(port);

        ret = vmig_engine_migrate(a->eng, fd);
        close(fd);
    }
    pthread_join(px.th, NULL);
    close(px.lfd);
    close(lfd);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
}

static void
test_zero_ram_via_hole_hook(void **state)
{
    /* a VM whose RAM was never written: every chunk is a hole, nothing
     * of it is read on the source, and the destination's stale bytes are
     * cleared */
    struct tvm *a = tvm_std_new("A", false, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    int dret;

    (void)state;
    memset(b->ram, 0xaa, TVM_STD_RAM);
    assert_int_equal(migrate(a, b, NULL, &dret), 0);
    assert_int_equal(dret, 0);
    assert_int_equal(__atomic_load_n(&a->holes, __ATOMIC_RELAXED),
                     TVM_STD_RAM / (4u << 20));
    tvm_check_landed(a, b);
    for (size_t i = 0; i < TVM_STD_RAM; i++) {
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
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL);
    struct vmig_engine_params p = {.timeout_ms = 300, .allow_mixed_p2p = true};
    int port, lfd = tvm_listen(&port), fd, ret;

    (void)state;
    /* a peer that accepts the TCP connection (backlog) but never answers */
    vmig_engine_set_params(a->eng, &p);
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    wait_steps(a, 1000);
    fd = tvm_connect(port);
    ret = vmig_engine_migrate(a->eng, fd);
    close(fd);
    close(lfd);
    assert_int_equal(ret, -ETIMEDOUT);
    assert_int_equal(a->pauses, 0);
    tvm_check_rolled_back(a, ret, VMIG_ENGINE_FAILED);
    tvm_free(a);
}

static void
test_check_only(void **state)
{
    struct tvm *a = tvm_std_new("A", true, 42, 1, NULL),
               *b = tvm_std_new("B", false, 7, 1, NULL);
    struct vmig_engine_check chk;
    struct ep_dst j = {.eng = b->eng};
    int port, fd;

    (void)state;
    assert_int_equal(vmig_vcpu_resume(a->vcpu), 0);
    j.lfd = tvm_listen(&port);
    assert_int_equal(pthread_create(&j.th, NULL, ep_dst_main, &j), 0);
    fd = tvm_connect(port);
    assert_int_equal(vmig_engine_check(a->eng, fd, &chk), 0);
    close(fd);
    pthread_join(j.th, NULL);
    close(j.lfd);
    assert_int_equal(j.ret, 1);
    assert_int_equal(chk.status, 0);
    assert_int_equal(chk.ndevices, TVM_STD_NDEV);
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
    a = tvm_std_new("A", true, 42, 1, foreign_dev_ops());
    b = tvm_std_new("B", false, 7, 1, foreign_dev_ops());
    c = tvm_std_new("C", false, 7, 2, foreign_dev_ops());
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
    tvm_check_landed(a, b);
    assert_vm_alive(b);
    tvm_free(a);
    tvm_free(b);
    tvm_free(c);
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
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
