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
#include "func_check.h"

#define MAXDEV 2
#define RING 256u
#define NFLOWS 4u
#define AREA_A 0x10000u
#define AREA_B 0x100000u
#define BACKLOG 32u

static char dir[256];
static int failures;
static vmig_ctx_t *ctx;
static pid_t kids[16];
static int nkids;

/* A child reaped by its case is no longer ours to kill at exit. */
static void
reaped(pid_t pid)
{
    for (int i = 0; i < nkids; i++) {
        if (kids[i] == pid) {
            kids[i] = kids[--nkids];
            return;
        }
    }
}

/* ------------------------------------------------------------ the VMs */

struct dev {
    char path[300];
    pid_t pid;
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
    struct ft_guest g;
    bool guest; /* g is initialised */
    uint64_t area;
};

/* The vCPU: posts to and reaps from every device's driver until told to
 * stop (pause). */
struct vcpu {
    struct vm *vm;
    atomic_bool stop;
    bool on;
    unsigned int fwd_every;
    long err;
    pthread_t t;
};

struct vm {
    const char *name;
    bool source;
    int memfd;
    uint8_t *ram;
    size_t ram_len;
    unsigned int ndev;
    struct dev dev[MAXDEV];
    struct vmig_engine *e;
    struct vcpu v;
    struct vmig_ramdirty *rd;
    atomic_int pauses, resumes, collects;
    atomic_bool running;
    /* converge: dirty this many bytes of RAM (from ram_len - scratch) at
     * the first two collections, as a guest burst of memory writes */
    size_t scratch;
};

/* The source and destination VM of the running case; torn down by main
 * also when a CHECK returned early from the case. */
static struct vm vm_a, vm_b;
/* vmig extensions the clients offer (0: a plain vfio-user client) */
static uint32_t client_ext = VMIG_VFU_EXT__ALL;

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return vmig_vfu_client_region_read(opaque, FT_SRV_REGION_BAR0, off, val, 4);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return vmig_vfu_client_region_write(opaque, FT_SRV_REGION_BAR0, off, &val,
                                        4);
}

static int
digest(struct dev *d, uint64_t out[2])
{
    return vmig_vfu_client_region_read(d->c, FT_SRV_REGION_DIGEST, 0, out, 16);
}

static void *
vcpu_main(void *arg)
{
    struct vcpu *v = arg;
    struct timespec ts = {0, 200 * 1000};

    while (!atomic_load(&v->stop)) {
        for (unsigned int i = 0; i < v->vm->ndev; i++) {
            struct ft_guest *g = &v->vm->dev[i].g;
            long r = ft_guest_post(g, 8, v->fwd_every);

            if (r >= 0) {
                r = ft_guest_reap(g);
            }
            if (r < 0 && v->err == 0) {
                v->err = r;
            }
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int
vcpu_start(struct vm *vm)
{
    int ret;

    if (vm->v.on) {
        return 0;
    }
    vm->v.vm = vm;
    atomic_store(&vm->v.stop, false);
    ret = -pthread_create(&vm->v.t, NULL, vcpu_main, &vm->v);
    vm->v.on = ret == 0;
    return ret;
}

/* Reap until nothing is outstanding (bounded). */
static int
drain(struct ft_guest *g)
{
    for (int i = 0; i < 10000; i++) {
        long r = ft_guest_reap(g);

        if (r < 0) {
            return (int)r;
        }
        if (ft_guest_outstanding(g) == 0) {
            return 0;
        }
        usleep(500);
    }
    return -ETIMEDOUT;
}

static long
vcpu_stop(struct vm *vm)
{
    if (vm->v.on) {
        atomic_store(&vm->v.stop, true);
        pthread_join(vm->v.t, NULL);
        vm->v.on = false;
    }
    return vm->v.err;
}

static int
h_pause(void *o)
{
    struct vm *vm = o;
    int ret = 0;

    atomic_fetch_add(&vm->pauses, 1);
    atomic_store(&vm->running, false);
    if (vcpu_stop(vm) < 0) {
        return -EIO;
    }
    /* what the guest had queued completes before the devices stop, so
     * the device state is still when it is compared afterwards */
    for (unsigned int i = 0; i < vm->ndev && ret == 0; i++) {
        if (vm->dev[i].guest) {
            ret = drain(&vm->dev[i].g);
        }
    }
    return ret;
}

static int
h_resume(void *o)
{
    struct vm *vm = o;

    atomic_fetch_add(&vm->resumes, 1);
    atomic_store(&vm->running, true);
    if (vm->source && vm->dev[0].guest) {
        return vcpu_start(vm); /* a failed migration: the guest goes on */
    }
    return 0;
}

static int
h_dirty_start(void *o)
{
    struct vm *vm = o;
    int ret;

    ret = vmig_ramdirty_new(ctx, VMIG_DIRTY_AUTO, &vm->rd);
    if (ret == 0) {
        ret = vmig_ramdirty_add_region(vm->rd, 0, vm->ram, vm->ram_len);
        ret = ret > 0 ? -EPROTO : ret;
    }
    for (unsigned int i = 0; ret >= 0 && i < vm->ndev; i++) {
        ret = vmig_ramdirty_add_device(vm->rd, vm->dev[i].c, "ft", 0);
    }
    if (ret >= 0) {
        ret = vmig_ramdirty_start(vm->rd);
    }
    if (ret < 0) {
        vmig_ramdirty_free(vm->rd);
        vm->rd = NULL;
    }
    return ret;
}

static long
h_dirty_collect(void *o, unsigned int region, uint64_t *bitmap, size_t nbits)
{
    struct vm *vm = o;
    int k = atomic_fetch_add(&vm->collects, 1);

    if (vm->scratch != 0 && k < 2) {
        /* the guest writes a lot of memory at once */
        uint8_t *p = vm->ram + vm->ram_len - vm->scratch;

        for (size_t off = 0; off < vm->scratch; off += 512) {
            p[off] = (uint8_t)(off >> 9) + (uint8_t)k + 1;
        }
    }
    if (vm->rd == NULL) {
        return -EINVAL;
    }
    return vmig_ramdirty_collect(vm->rd, region, 0, vm->ram_len, bitmap, nbits);
}

static void
h_dirty_stop(void *o)
{
    struct vm *vm = o;

    if (vm->rd != NULL) {
        (void)!vmig_ramdirty_stop(vm->rd);
        vmig_ramdirty_free(vm->rd);
        vm->rd = NULL;
    }
}

static const struct vmig_engine_vm_ops src_hooks = {
    .vcpu_pause = h_pause,
    .vcpu_resume = h_resume,
    .dirty_start = h_dirty_start,
    .dirty_collect = h_dirty_collect,
    .dirty_stop = h_dirty_stop,
};

static const struct vmig_engine_vm_ops dst_hooks = {
    .vcpu_pause = h_pause,
    .vcpu_resume = h_resume,
};

/* ------------------------------------------------------------ device op
 * wrappers: the vfio-user backend's ops with test hooks around read,
 * set_state and compat (the opaque stays the backend) */

static const struct vmig_engine_dev_ops *vfu;
static struct vmig_engine_dev_ops wrapped;
static bool (*read_hook)(void *b);
static void (*state_hook)(void *b, enum vmig_state target);
static bool compat_yes;

static ssize_t
w_read(void *o, void *buf, size_t cap)
{
    if (read_hook != NULL && read_hook(o)) {
        read_hook = NULL;
    }
    return vfu->read(o, buf, cap);
}

static int
w_set_state(void *o, enum vmig_state target)
{
    int ret = vfu->set_state(o, target);

    if (ret == 0 && state_hook != NULL) {
        state_hook(o, target);
    }
    return ret;
}

static int
w_compat(void *o, const struct vmig_mp_dev *src, char *reason, size_t rlen)
{
    if (compat_yes) {
        return 1; /* the VMM's own judgement: "same device, go ahead" */
    }
    return vfu->compat(o, src, reason, rlen);
}

static void
wrap_ops(void)
{
    vfu = vmig_engine_vfu_ops();
    wrapped = *vfu;
    wrapped.read = w_read;
    wrapped.set_state = w_set_state;
    wrapped.compat = w_compat;
    read_hook = NULL;
    state_hook = NULL;
    compat_yes = false;
}

/* ------------------------------------------------------------ setup */

struct spec {
    uint64_t state;
    uint32_t chunk;
    size_t ram;
    bool p2p; /* two devices forwarding into each other */
};

static int
spawn(struct vm *vm, unsigned int i, const struct spec *sp)
{
    struct ft_server_cfg cfg = {0};
    char peer[320];
    struct dev *d = &vm->dev[i];

    snprintf(d->path, sizeof(d->path), "%s/%s%u.sock", dir, vm->name, i);
    cfg.model.state_bytes = sp->state;
    cfg.model.chunk_bytes = sp->chunk;
    cfg.model.device_id = i + 1;
    if (sp->p2p) {
        snprintf(peer, sizeof(peer), "%s/%s%u.sock.p2p", dir, vm->name, 1 - i);
        cfg.peer = peer;
    }
    d->pid = ft_server_spawn(d->path, &cfg);
    if (d->pid <= 0) {
        d->pid = 0;
        return -ECHILD;
    }
    if (nkids < 16) {
        kids[nkids++] = d->pid;
    }
    return 0;
}

static int
vm_up(struct vm *vm, const char *name, bool source, const struct spec *sp)
{
    struct vmig_engine_region rg = {"ram0", NULL, sp->ram};
    int ret = 0;

    memset(vm, 0, sizeof(*vm));
    vm->name = name;
    vm->source = source;
    vm->ram_len = sp->ram;
    vm->ndev = sp->p2p ? 2 : 1;
    vm->memfd = memfd_create("ram", MFD_CLOEXEC);
    if (vm->memfd < 0 || ftruncate(vm->memfd, (off_t)sp->ram) < 0) {
        return -errno;
    }
    vm->ram =
        mmap(NULL, sp->ram, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
    if (vm->ram == MAP_FAILED) {
        vm->ram = NULL;
        return -errno;
    }
    for (unsigned int i = 0; ret == 0 && i < vm->ndev; i++) {
        ret = spawn(vm, i, sp);
    }
    rg.host = vm->ram;
    if (ret == 0) {
        ret = vmig_engine_new(ctx, &rg, 1, source ? &src_hooks : &dst_hooks, vm,
                              &vm->e);
    }
    for (unsigned int i = 0; ret == 0 && i < vm->ndev; i++) {
        struct dev *d = &vm->dev[i];
        struct vmig_engine_vfu_params p = {.name = i == 0 ? "ft0" : "ft1"};
        struct ft_guest_regs r;

        ret = connect_retry(ctx, d->path, client_ext, &d->c);
        if (ret == 0) {
            ret = vmig_engine_vfu_new(ctx, d->c, &p, &d->b);
        }
        if (ret == 0) {
            ret = vmig_engine_vfu_add_ram(d->b, 0, vm->ram_len, vm->memfd, 0,
                                          vm->ram);
        }
        if (ret == 0) {
            ret = vmig_engine_add_device(vm->e, p.name, &wrapped, d->b);
        }
        d->area = i == 0 ? AREA_A : AREA_B;
        if (ret == 0 && source) {
            ret = vmig_engine_vfu_dma_map(
                d->b, 0, vm->ram_len, VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE);
            r = (struct ft_guest_regs){reg_read, reg_write, d->c};
            if (ret == 0) {
                ret = ft_guest_init(&d->g, vm->ram, vm->ram_len, d->area, RING,
                                    NFLOWS, 7 + i, &r);
            }
            d->guest = ret == 0;
        }
    }
    atomic_store(&vm->running, source);
    return ret;
}

static void
vm_down(struct vm *vm)
{
    (void)vcpu_stop(vm);
    h_dirty_stop(vm);
    vmig_engine_free(vm->e);
    for (unsigned int i = 0; i < vm->ndev; i++) {
        struct dev *d = &vm->dev[i];

        vmig_engine_vfu_free(d->b);
        vmig_vfu_client_free(d->c);
    }
    /* both servers of a P2P pair first lose their clients, then stop */
    for (unsigned int i = 0; i < vm->ndev; i++) {
        if (vm->dev[i].pid > 0) {
            (void)ft_server_stop(vm->dev[i].pid);
            reaped(vm->dev[i].pid);
        }
    }
    if (vm->ram != NULL) {
        munmap(vm->ram, vm->ram_len);
    }
    if (vm->memfd > 0) {
        close(vm->memfd);
    }
    memset(vm, 0, sizeof(*vm));
}

/* Wait until the guest has seen @n more completions on device @i. */
static int
wait_traffic(struct vm *vm, unsigned int i, uint64_t n)
{
    uint64_t target = ft_guest_completed(&vm->dev[i].g) + n;

    for (int k = 0; k < 10000; k++) {
        if (ft_guest_completed(&vm->dev[i].g) >= target) {
            return 0;
        }
        usleep(500);
    }
    return -ETIMEDOUT;
}

struct incoming {
    struct vm *vm;
    int fd, ret;
    pthread_t t;
};

static void *
in_main(void *arg)
{
    struct incoming *in = arg;

    in->ret = vmig_engine_incoming(in->vm->e, in->fd);
    return NULL;
}

/* Migrate @src to @dst over a socketpair; the destination's result goes
 * to *@dst_ret. */
static int
migrate(struct vm *src, struct vm *dst, const struct vmig_engine_params *p,
        int *dst_ret)
{
    struct incoming in = {.vm = dst};
    int sv[2], ret;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -errno;
    }
    in.fd = sv[1];
    if (pthread_create(&in.t, NULL, in_main, &in) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -EAGAIN;
    }
    vmig_engine_set_params(src->e, p);
    ret = vmig_engine_migrate(src->e, sv[0]);
    shutdown(sv[0], SHUT_RDWR);
    pthread_join(in.t, NULL);
    close(sv[0]);
    close(sv[1]);
    *dst_ret = in.ret;
    return ret;
}

static void
print_stats(const char *what, struct vm *vm)
{
    struct vmig_engine_stats st;

    vmig_engine_stats(vm->e, &st);
    printf(
        "%s: precopy %d, %u iterations, precopy %llu B, stop-copy %llu B, "
        "last dirty %llu pages, est %llu B, downtime %llu ms, ack %llu "
        "ms, %s%s%s\n",
        what, st.precopy, st.iterations, (unsigned long long)st.precopy_bytes,
        (unsigned long long)st.stopcopy_bytes,
        (unsigned long long)st.dirty_pages,
        (unsigned long long)st.est_stopcopy_bytes,
        (unsigned long long)st.downtime_ms,
        (unsigned long long)st.switchover_ack_ms,
        vmig_engine_status_name(st.status), st.error[0] ? ": " : "", st.error);
    for (unsigned int i = 0; i < st.ndevices; i++) {
        printf("  %s: %llu B, %llu B in precopy, %u restarts\n", st.dev[i].name,
               (unsigned long long)st.dev[i].bytes,
               (unsigned long long)st.dev[i].precopy_bytes, st.dev[i].restarts);
    }
}

/* After a completed migration: every device's state is identical, guest
 * RAM is identical, and the guest carries on on the destination with
 * every completion right. */
static void
check_landed(struct vm *src, struct vm *dst)
{
    uint64_t ds[2], dd[2];
    enum vmig_state st;

    CHECK(atomic_load(&dst->running) && !atomic_load(&src->running));
    for (unsigned int i = 0; i < src->ndev; i++) {
        CHECK_RC(vmig_vfu_client_get_state(src->dev[i].c, &st), 0);
        if (st != VMIG_STATE_STOP) {
            CHECK_RC(vmig_vfu_client_set_state(src->dev[i].c, VMIG_STATE_STOP),
                     0);
        }
        CHECK_RC(digest(&src->dev[i], ds), 0);
        CHECK_RC(digest(&dst->dev[i], dd), 0);
        CHECK(ds[0] == dd[0] && ds[1] == dd[1]);
        CHECK_RC(vmig_vfu_client_get_state(dst->dev[i].c, &st), 0);
        CHECK(st == VMIG_STATE_RUNNING);
    }
    CHECK(memcmp(src->ram, dst->ram, src->ram_len) == 0);
    for (unsigned int i = 0; i < dst->ndev; i++) {
        struct dev *d = &dst->dev[i];
        struct ft_guest_regs r = {reg_read, reg_write, d->c};

        CHECK_RC(ft_guest_attach(&d->g, dst->ram, dst->ram_len,
                                 src->dev[i].area, &r),
                 0);
        d->guest = true;
        d->area = src->dev[i].area;
    }
    CHECK_RC(vcpu_start(dst), 0);
    for (unsigned int i = 0; i < dst->ndev; i++) {
        CHECK_RC(wait_traffic(dst, i, 500), 0);
    }
    CHECK_RC(vcpu_stop(dst), 0);
    for (unsigned int i = 0; i < dst->ndev; i++) {
        CHECK_RC(drain(&dst->dev[i].g), 0);
        CHECK(dst->dev[i].g.a->bad == 0);
    }
}

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
