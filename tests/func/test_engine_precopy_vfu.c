/* SPDX-License-Identifier: MIT */
/*
 * test_engine_precopy_vfu.c - engine-level precopy with real vfio-user
 * device server processes: vmig-flowtab servers (flowtab_server.c in
 * forked children) behind the vfio-user backend (<vmig/engine_vfu.h>),
 * two engines in this process (source and destination), each VM with its
 * own guest RAM on a memfd that its servers DMA into.  The source's dirty
 * hooks are <vmig/ramdirty.h>: the RAM mapping (vCPU writes, userfaultfd
 * write-protect or its fallback) and the source's vfio-user clients (their
 * DMA logging).  A vCPU thread drives the flowtab guest driver
 * (ft_guest.c) with traffic the whole time the VM runs.
 *
 * usage: test_engine_precopy_vfu <case>
 *   backend    the backend's ops driven by hand: PRE_COPY read bursts stay
 *              within what PRECOPY_INFO reported at their start although
 *              the device keeps dirtying; a reset made behind the
 *              backend's back fails the next read with -ENODEV; the next
 *              PRE_COPY session starts at offset 0; STOP_COPY reads to the
 *              end; the destination's digest equals the source's
 *   converge   precopy under traffic converges: several iterations,
 *              device bytes moved while the VM ran, identical device
 *              digest and guest RAM, the guest carries on there
 *   plain      the same with clients that negotiated no vmig extension
 *              (no PRECOPY_INFO: bursts sized by MIG_DATA_SIZE; no bulk
 *              channel: STOP_COPY by MIG_DATA_READ)
 *   restart    a device reset in the middle of its initial data (the guest
 *              resets and reprograms it): reset_policy RESTART completes
 *              with one restart and identical state
 *   abort      the same with reset_policy ABORT: the migration fails, the
 *              source device is RUNNING, the VM was never paused, the
 *              destination device is reset
 *   ack        switchover-ack: a destination device that refuses the
 *              source's initial data (another geometry, let through HELLO
 *              by the destination VMM's own compat callback) fails the
 *              migration before the source's vcpu_pause is ever called
 *   p2p        two flowtab devices forwarding into each other under load,
 *              two-phase stop: on the destination every record one sent
 *              was counted by the other
 *   p2p-one    the same with params.test_one_phase_stop: the records the
 *              second device forwarded into the first after the first was
 *              frozen are lost, and the test sees it
 * Every case reaps its server children, also when it fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig/engine_vfu.h>
#include <vmig/log.h>
#include <vmig/ramdirty.h>
#include <vmig/vfu_client.h>
#include "flowtab_server.h"
#include "ft_guest.h"
#include "engine_precopy_vfu_vms.h"
#include "func_check.h"

/* ------------------------------------------------------------ backend */

/* The destination's resuming session takes everything read. */
static int
fwd(struct dev *dst, const void *buf, size_t len)
{
    return vmig_vfu_client_mig_write(dst->c, buf, len);
}

/* One burst: read until -ENOMSG (bounded), forwarding. */
static long
burst(struct dev *s, struct dev *d, uint8_t *buf, size_t cap)
{
    long total = 0;

    for (int k = 0; k < 100000; k++) {
        ssize_t n = vfu->read(s->b, buf, cap);

        if (n == -ENOMSG) {
            return total;
        }
        if (n <= 0) {
            return n < 0 ? (long)n : -EPROTO;
        }
        if (fwd(d, buf, (size_t)n) < 0) {
            return -EIO;
        }
        total += n;
    }
    return -ELOOP;
}

static void
case_backend(void)
{
    static const uint8_t magic[8] = {'V', 'M', 'I', 'G', 'D', 'E', 'V', 1};
    const struct spec sp = {16u << 20, 4096, 4u << 20, false};
    static uint8_t buf[256u << 10];
    const size_t cap = sizeof(buf);
    struct vm *a = &vm_a, *b = &vm_b;
    uint64_t init, dirty, size, ds[2], dd[2];
    enum vmig_state st;
    long n, total = 0;
    int bursts = 0;

    CHECK_RC(vm_up(a, "a", true, &sp), 0);
    CHECK_RC(vm_up(b, "b", false, &sp), 0);
    a->v.fwd_every = 0;
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 300), 0);

    CHECK_RC(vfu->set_state(a->dev[0].b, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_set_state(b->dev[0].c, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vfu->precopy_info(a->dev[0].b, &init, &dirty), 0);
    CHECK(init > sp.state && dirty == 0);
    CHECK_RC(vfu->data_size(a->dev[0].b, &size), 0);
    CHECK(size >= init);
    /* the first burst is the initial data, no more, although the guest
     * dirties chunks already read while it runs */
    n = burst(&a->dev[0], &b->dev[0], buf, cap);
    CHECK(n > 0 && (uint64_t)n <= init);
    total += n;
    /* a few more bursts, each within its device's own report */
    for (bursts = 0; bursts < 5; bursts++) {
        CHECK_RC(wait_traffic(a, 0, 50), 0);
        n = burst(&a->dev[0], &b->dev[0], buf, cap);
        CHECK(n >= 0);
        total += n;
    }
    printf("backend: initial %llu B, %ld B over %d bursts\n",
           (unsigned long long)init, total, bursts + 1);

    /* a reset behind the backend's back (the guest resets the device): the
     * next read fails, nothing stale is handed out */
    CHECK_RC(vcpu_stop(a), 0);
    CHECK_RC(vmig_vfu_client_reset(a->dev[0].c), 0);
    CHECK_RC(vfu->read(a->dev[0].b, buf, cap), -ENODEV);
    CHECK_RC(vfu->get_state(a->dev[0].b, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);
    {
        struct ft_guest_regs r = {reg_read, reg_write, a->dev[0].c};

        CHECK_RC(ft_guest_init(&a->dev[0].g, a->ram, a->ram_len, AREA_A, RING,
                               NFLOWS, 21, &r),
                 0);
    }
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 200), 0);
    /* the destination drops its partial state; a new session, from 0 */
    CHECK_RC(vmig_vfu_client_reset(b->dev[0].c), 0);
    CHECK_RC(vmig_vfu_client_set_state(b->dev[0].c, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vfu->set_state(a->dev[0].b, VMIG_STATE_PRE_COPY), 0);
    n = vfu->read(a->dev[0].b, buf, 64);
    CHECK(n == 64 && memcmp(buf, magic, sizeof(magic)) == 0);
    CHECK_RC(fwd(&b->dev[0], buf, 64), 0);
    n = burst(&a->dev[0], &b->dev[0], buf, cap);
    CHECK(n > 0);
    CHECK_RC(wait_traffic(a, 0, 100), 0);
    CHECK(burst(&a->dev[0], &b->dev[0], buf, cap) >= 0);

    /* switchover by hand: the guest pauses, STOP_COPY reads to the end */
    CHECK_RC(h_pause(a), 0);
    CHECK_RC(vfu->set_state(a->dev[0].b, VMIG_STATE_STOP_COPY), 0);
    for (int k = 0; k < 100000; k++) {
        n = vfu->read(a->dev[0].b, buf, cap);
        if (n <= 0) {
            break;
        }
        CHECK_RC(fwd(&b->dev[0], buf, (size_t)n), 0);
    }
    CHECK_RC(n, 0);
    CHECK_RC(vfu->set_state(a->dev[0].b, VMIG_STATE_STOP), 0);
    CHECK_RC(vmig_vfu_client_set_state(b->dev[0].c, VMIG_STATE_STOP), 0);
    CHECK_RC(digest(&a->dev[0], ds), 0);
    CHECK_RC(digest(&b->dev[0], dd), 0);
    CHECK(ds[0] == dd[0] && ds[1] == dd[1]);
    vm_down(a);
    vm_down(b);
}

/* ------------------------------------------------------------ converge */

static void
case_converge(bool plain)
{
    const struct spec sp = {16u << 20, 4096, 40u << 20, false};
    struct vmig_engine_params p = {.downtime_limit_ms = 2,
                                   .max_iterations = 50};
    struct vmig_engine_stats st;
    struct vm *a = &vm_a, *b = &vm_b;
    uint64_t init, dirty;
    int ret, dret;

    client_ext = plain ? 0 : VMIG_VFU_EXT__ALL;
    CHECK_RC(vm_up(a, "a", true, &sp), 0);
    CHECK_RC(vm_up(b, "b", false, &sp), 0);
    {
        size_t dl = 0;

        /* the descriptor is looked for (a PRE_COPY session opened at
         * attach) only with a server that negotiated x-vmig */
        vmig_engine_vfu_identity(a->dev[0].b, NULL, &dl);
        CHECK(plain ? dl == 0 : dl > 0);
    }
    a->scratch = 32u << 20;
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 300), 0);
    ret = migrate(a, b, &p, &dret);
    print_stats(plain ? "plain" : "converge", a);
    CHECK_RC(ret, 0);
    CHECK_RC(dret, 0);
    vmig_engine_stats(a->e, &st);
    CHECK(st.precopy);
    CHECK(st.iterations >= 2);
    CHECK(st.iterations < p.max_iterations); /* converged, not capped */
    CHECK(st.ndevices == 1 && st.dev[0].precopy_bytes >= sp.state);
    CHECK(st.dev[0].bytes > st.dev[0].precopy_bytes);
    CHECK(st.precopy_bytes > st.stopcopy_bytes);
    CHECK(atomic_load(&a->pauses) == 1);
    /* without the extension the backend had no PRECOPY_INFO to size its
     * bursts nor MIG_DATA_SIZE (the estimate came from the bytes read)
     * nor a bulk channel for STOP_COPY */
    CHECK_RC(vfu->precopy_info(a->dev[0].b, &init, &dirty),
             plain ? -EOPNOTSUPP : -EINVAL);
    check_landed(a, b);
    vm_down(a);
    vm_down(b);
}

/* ------------------------------------------------------------ reset */

static struct vm *reset_vm;
static uint64_t reset_after, reset_seen;
static int reset_err;

/* Before the read that crosses @reset_after bytes of the device's
 * PRE_COPY data: the guest resets the device and reprograms it. */
static bool
reset_read_hook(void *b)
{
    struct vm *vm = reset_vm;
    struct dev *d = &vm->dev[0];
    struct ft_guest_regs r = {reg_read, reg_write, d->c};
    uint64_t init, dirty;

    if (b != d->b || vfu->precopy_info(b, &init, &dirty) < 0) {
        return false;
    }
    if (reset_seen == 0) {
        reset_seen = init; /* the first read: the whole initial data */
    }
    if (reset_seen - init < reset_after) {
        return false;
    }
    if (vcpu_stop(vm) < 0) {
        reset_err = -EIO;
    }
    reset_err = reset_err != 0 ? reset_err : vmig_vfu_client_reset(d->c);
    if (reset_err == 0) {
        reset_err = ft_guest_init(&d->g, vm->ram, vm->ram_len, d->area, RING,
                                  NFLOWS, 33, &r);
    }
    if (reset_err == 0) {
        reset_err = vcpu_start(vm);
    }
    return true;
}

static void
case_reset(bool restart)
{
    const struct spec sp = {16u << 20, 4096, 4u << 20, false};
    struct vmig_engine_params p = {.reset_policy =
                                       restart ? VMIG_ENGINE_RESET_RESTART
                                               : VMIG_ENGINE_RESET_ABORT};
    struct vmig_engine_stats st;
    enum vmig_state s;
    struct vm *a = &vm_a, *b = &vm_b;
    int ret, dret;

    CHECK_RC(vm_up(a, "a", true, &sp), 0);
    CHECK_RC(vm_up(b, "b", false, &sp), 0);
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 300), 0);
    reset_vm = a;
    reset_after = 2u << 20;
    reset_seen = 0;
    reset_err = 0;
    read_hook = reset_read_hook;
    ret = migrate(a, b, &p, &dret);
    read_hook = NULL;
    print_stats(restart ? "restart" : "abort", a);
    CHECK_RC(reset_err, 0);
    CHECK(reset_seen != 0); /* the hook ran */
    vmig_engine_stats(a->e, &st);
    CHECK(st.precopy && st.ndevices == 1);
    if (restart) {
        CHECK_RC(ret, 0);
        CHECK_RC(dret, 0);
        CHECK(st.dev[0].restarts == 1);
        CHECK(st.dev[0].precopy_bytes > 0);
        check_landed(a, b);
    } else {
        CHECK_RC(ret, -ENODEV); /* the device's own error */
        CHECK(dret < 0);
        CHECK(st.status == VMIG_ENGINE_FAILED);
        CHECK(st.dev[0].restarts == 0);
        /* the VM never stopped and runs on here */
        CHECK(atomic_load(&a->pauses) == 0);
        CHECK(atomic_load(&a->running));
        CHECK_RC(vmig_vfu_client_get_state(a->dev[0].c, &s), 0);
        CHECK(s == VMIG_STATE_RUNNING);
        CHECK_RC(wait_traffic(a, 0, 300), 0);
        CHECK(atomic_load(&b->resumes) == 0);
        CHECK_RC(vmig_vfu_client_get_state(b->dev[0].c, &s), 0);
        CHECK(s == VMIG_STATE_RUNNING); /* reset, partial state gone */
        CHECK_RC(vcpu_stop(a), 0);
    }
    vm_down(a);
    vm_down(b);
}

/* ------------------------------------------------------------ ack */

static void
case_ack(void)
{
    const struct spec sp = {16u << 20, 4096, 4u << 20, false};
    const struct spec other = {8u << 20, 4096, 4u << 20, false};
    struct vmig_engine_params p = {0};
    struct vmig_engine_stats st;
    enum vmig_state s;
    struct vm *a = &vm_a, *b = &vm_b;
    int ret, dret;

    CHECK_RC(vm_up(a, "a", true, &sp), 0);
    CHECK_RC(vm_up(b, "b", false, &other), 0);
    compat_yes = true; /* HELLO lets it through; the device itself won't */
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 300), 0);
    ret = migrate(a, b, &p, &dret);
    compat_yes = false;
    print_stats("ack", a);
    /* the destination device's refusal, reported back to the source */
    CHECK_RC(ret, -EOPNOTSUPP);
    CHECK_RC(dret, -EOPNOTSUPP);
    vmig_engine_stats(a->e, &st);
    CHECK(st.precopy);
    CHECK(st.status == VMIG_ENGINE_FAILED);
    /* refused before any downtime */
    CHECK(atomic_load(&a->pauses) == 0);
    CHECK(atomic_load(&a->running));
    CHECK_RC(vmig_vfu_client_get_state(a->dev[0].c, &s), 0);
    CHECK(s == VMIG_STATE_RUNNING);
    CHECK_RC(wait_traffic(a, 0, 300), 0);
    CHECK(atomic_load(&b->resumes) == 0);
    CHECK_RC(vmig_vfu_client_get_state(b->dev[0].c, &s), 0);
    CHECK(s == VMIG_STATE_RUNNING);
    CHECK_RC(vcpu_stop(a), 0);
    vm_down(a);
    vm_down(b);
}

/* ------------------------------------------------------------ p2p */

static struct vm *p2p_vm;
static int p2p_err;
static bool p2p_done;

/* Right after device 0 left PRE_COPY at switchover (to PRE_COPY_P2P with
 * the two-phase stop, to STOP_COPY with the one-phase one), while device
 * 1 still runs: BACKLOG forwarding descriptors the guest had queued for
 * device 1 are processed, each forwarding a record into device 0. */
static void
p2p_state_hook(void *b, enum vmig_state target)
{
    struct vm *vm = p2p_vm;
    struct dev *d1 = &vm->dev[1];
    uint32_t head = 0;
    long n;

    if (p2p_done || b != vm->dev[0].b ||
        (target != VMIG_STATE_PRE_COPY_P2P && target != VMIG_STATE_STOP_COPY &&
         target != VMIG_STATE_RUNNING_P2P && target != VMIG_STATE_STOP)) {
        return;
    }
    p2p_done = true;
    n = ft_guest_post(&d1->g, BACKLOG, 1);
    if (n != BACKLOG) {
        p2p_err = n < 0 ? (int)n : -ENOSPC;
        return;
    }
    for (int k = 0; k < 10000; k++) {
        p2p_err = reg_read(d1->c, FT_REG_HEAD, &head);
        if (p2p_err < 0 || head == d1->g.a->prod) {
            break;
        }
        usleep(500);
    }
    if (p2p_err == 0 && head != d1->g.a->prod) {
        p2p_err = -ETIMEDOUT;
    }
}

static void
case_p2p(bool one_phase)
{
    const struct spec sp = {4u << 20, 16384, 4u << 20, true};
    struct vmig_engine_params p = {.test_one_phase_stop = one_phase};
    struct ft_stats s[2];
    struct vm *a = &vm_a, *b = &vm_b;
    int ret, dret;
    uint64_t lost_into0, lost_into1;

    CHECK_RC(vm_up(a, "a", true, &sp), 0);
    CHECK_RC(vm_up(b, "b", false, &sp), 0);
    a->v.fwd_every = 3;
    CHECK_RC(vcpu_start(a), 0);
    CHECK_RC(wait_traffic(a, 0, 1000), 0);
    CHECK_RC(wait_traffic(a, 1, 1000), 0);
    p2p_vm = a;
    p2p_err = 0;
    p2p_done = false;
    state_hook = p2p_state_hook;
    ret = migrate(a, b, &p, &dret);
    state_hook = NULL;
    print_stats(one_phase ? "p2p one-phase" : "p2p two-phase", a);
    CHECK_RC(p2p_err, 0);
    CHECK(p2p_done);
    CHECK_RC(ret, 0);
    CHECK_RC(dret, 0);
    check_landed(a, b);
    /* one plain packet each refreshes the statistics blocks (written per
     * batch); then compare what each sent with what the other counted */
    for (unsigned int i = 0; i < 2; i++) {
        CHECK_RC(ft_guest_post(&b->dev[i].g, 1, 0), 1);
        CHECK_RC(drain(&b->dev[i].g), 0);
        memcpy(&s[i], b->dev[i].g.stats, sizeof(s[i]));
        CHECK(b->dev[i].g.a->bad == 0);
        CHECK(s[i].p2p_tx == b->dev[i].g.a->fwd_completed);
    }
    lost_into0 = s[1].p2p_tx - s[0].p2p_rx;
    lost_into1 = s[0].p2p_tx - s[1].p2p_rx;
    printf("%s: A forwarded %llu, B counted %llu; B forwarded %llu, A "
           "counted %llu\n",
           one_phase ? "one-phase" : "two-phase",
           (unsigned long long)s[0].p2p_tx, (unsigned long long)s[1].p2p_rx,
           (unsigned long long)s[1].p2p_tx, (unsigned long long)s[0].p2p_rx);
    CHECK(s[0].p2p_tx > 100 && s[1].p2p_tx > 100);
    for (unsigned int i = 0; i < 2; i++) {
        uint32_t flows = 0;

        /* the peer's flows arrived in the migrated table */
        CHECK_RC(reg_read(b->dev[i].c, FT_REG_FLOWS, &flows), 0);
        CHECK(flows > NFLOWS && flows == s[i].flows);
    }
    if (one_phase) {
        /* B's backlog went into a frozen A: B counts it sent, the
         * migrated A never saw it (more may be lost: records B had in
         * flight when A froze) */
        CHECK(lost_into0 >= BACKLOG && lost_into0 <= s[1].p2p_tx);
    } else {
        CHECK(lost_into0 == 0);
        CHECK(lost_into1 == 0);
    }
    vm_down(a);
    vm_down(b);
}

static void
log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (level <= VMIG_LOG_ERR || getenv("VMIG_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "test: %s\n", msg);
    }
}

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "converge";
    bool v = getenv("VMIG_TEST_VERBOSE") != NULL;

    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/vmig-engpc-XXXXXX");
    if (mkdtemp(dir) == NULL || vmig_ctx_new("test", log_sink, NULL, &ctx)) {
        return 1;
    }
    vmig_ctx_set_level(ctx, v ? VMIG_LOG_DEBUG : VMIG_LOG_ERR);
    wrap_ops();
    if (strcmp(which, "backend") == 0) {
        case_backend();
    } else if (strcmp(which, "converge") == 0) {
        case_converge(false);
    } else if (strcmp(which, "plain") == 0) {
        case_converge(true);
    } else if (strcmp(which, "restart") == 0) {
        case_reset(true);
    } else if (strcmp(which, "abort") == 0) {
        case_reset(false);
    } else if (strcmp(which, "ack") == 0) {
        case_ack();
    } else if (strcmp(which, "p2p") == 0) {
        case_p2p(false);
    } else if (strcmp(which, "p2p-one") == 0) {
        case_p2p(true);
    } else {
        fprintf(stderr, "unknown case %s\n", which);
        failures++;
    }
    vm_down(&vm_a);
    vm_down(&vm_b);
    for (int i = 0; i < nkids; i++) {
        if (kill(kids[i], SIGKILL) == 0) {
            (void)waitpid(kids[i], NULL, 0);
        }
    }
    vmig_ctx_free(ctx);
    {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    printf("%s: %s\n", which, failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
