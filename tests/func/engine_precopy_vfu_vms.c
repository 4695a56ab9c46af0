/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy_vfu_vms.c - the VMs of test_engine_precopy_vfu.c
 * (engine_precopy_vfu_vms.h).
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
#include "engine_precopy_vfu_vms.h"

char dir[256];
int failures;
vmig_ctx_t *ctx;
pid_t kids[16];
int nkids;

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

struct vm vm_a, vm_b;
/* vmig extensions the clients offer (0: a plain vfio-user client) */
uint32_t client_ext = VMIG_VFU_EXT__ALL;

int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return vmig_vfu_client_region_read(opaque, FT_SRV_REGION_BAR0, off, val, 4);
}

int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return vmig_vfu_client_region_write(opaque, FT_SRV_REGION_BAR0, off, &val,
                                        4);
}

int
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

int
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
int
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

long
vcpu_stop(struct vm *vm)
{
    if (vm->v.on) {
        atomic_store(&vm->v.stop, true);
        pthread_join(vm->v.t, NULL);
        vm->v.on = false;
    }
    return vm->v.err;
}

int
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

const struct vmig_engine_dev_ops *vfu;
static struct vmig_engine_dev_ops wrapped;
bool (*read_hook)(void *b);
void (*state_hook)(void *b, enum vmig_state target);
bool compat_yes;

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

void
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

int
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

void
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
int
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
int
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

void
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
void
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
