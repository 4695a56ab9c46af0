/* SPDX-License-Identifier: MIT */
/*
 * vm.c - the agent's VM: guest RAM in a memfd mapped shared (so device
 * servers can map it through DMA_MAP fd passing later), the vCPU thread
 * running the ledger guest program, memdev devices driven by the guest,
 * and the migration engine with its hooks.  Migrations run on their own
 * thread so the QMP loop keeps answering: that is vm_mig.c, and the
 * channels they run on are vm_net.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/engine_vfu.h>
#include <vmig/ramdirty.h>
#include "agent.h"

static int
guest_hook(void *opaque, uint64_t steps)
{
    struct agent_vm *vm = opaque;
    int ret, r2;

    for (unsigned int i = 0; i < vm->o.ndev; i++) {
        ret = vmig_memdev_work(vm->dev[i], 1);

        if (ret < 0) {
            return ret;
        }
    }
    ret = vfudev_guest_work(vm, steps);
    if (ret == 0) {
        ret = accwork_step(vm);
    }
    r2 = ftwork_step(vm);
    return ret < 0 ? ret : r2;
}

static void
set_runstate(struct agent_vm *vm, const char *s)
{
    pthread_mutex_lock(&vm->lock);
    vm->runstate = s;
    pthread_mutex_unlock(&vm->lock);
}

const char *
vm_runstate(struct agent_vm *vm)
{
    const char *s;

    pthread_mutex_lock(&vm->lock);
    s = vm->runstate;
    pthread_mutex_unlock(&vm->lock);
    return s;
}

static int
h_pause(void *o)
{
    struct agent_vm *vm = o;
    int ret = vmig_vcpu_pause(vm->vcpu);

    if (ret == 0) {
        set_runstate(vm, "finish-migrate");
        vm_emit(vm, "STOP", NULL);
    }
    return ret;
}

static int
h_resume(void *o)
{
    struct agent_vm *vm = o;

    set_runstate(vm, "running");
    vm_emit(vm, "RESUME", NULL);
    return vmig_vcpu_resume(vm->vcpu);
}

static ssize_t
h_save(void *o, void *buf, size_t cap)
{
    return vmig_vcpu_save(((struct agent_vm *)o)->vcpu, buf, cap);
}

static int
h_load(void *o, const void *buf, size_t len)
{
    return vmig_vcpu_load(((struct agent_vm *)o)->vcpu, buf, len);
}

static void
h_event(void *o, enum vmig_engine_event_kind kind,
        const struct vmig_engine_stats *st)
{
    struct agent_vm *vm = o;
    json_object *d;
    bool cancel;

    if (kind == VMIG_ENGINE_EV_STATUS) {
        if (st->status == VMIG_ENGINE_COMPLETED &&
            st->role == VMIG_ENGINE_ROLE_SOURCE) {
            /* the VM lives on the destination from here: say so before
             * announcing it */
            set_runstate(vm, "postmigrate");
        }
        vm_mig_status_engine(vm, st->status);
        pthread_mutex_lock(&vm->lock);
        cancel = vm->cancel_requested && st->status == VMIG_ENGINE_SETUP;
        pthread_mutex_unlock(&vm->lock);
        if (cancel) {
            /* migrate_cancel came before the engine ran: it runs now */
            if (vmig_engine_cancel(vm->eng) < 0) {
                vmig_log(vm->ctx, VMIG_LOG_WARNING,
                         "migrate_cancel: the engine was not running");
            }
        }
    } else if (kind == VMIG_ENGINE_EV_PASS) {
        d = json_object_new_object();
        json_object_object_add(d, "pass", json_object_new_int64(st->pass));
        vm_emit(vm, "MIGRATION_PASS", d);
    }
}

/* A hole in the memfd reads as zeroes: no need to touch (allocate) it. */
static int
h_hole(void *o, unsigned int region, uint64_t off, uint64_t len)
{
    struct agent_vm *vm = o;
    off_t data;

    if (region != 0) {
        return 0;
    }
    data = lseek(vm->memfd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        return errno == ENXIO ? 1 : 0; /* ENXIO: no data after off */
    }
    return (uint64_t)data >= off + len ? 1 : 0;
}

/*
 * Guest RAM dirty tracking for precopy (<vmig/ramdirty.h>): the vCPU's
 * writes through our mapping (userfaultfd write-protect, or the hashing
 * fallback where the kernel lacks it) and every vfio-user device's DMA
 * (DMA logging).  Installed only when every device can log its DMA
 * (vm->ram_precopy); otherwise guest RAM moves at stop-copy.
 */
static void
h_dirty_stop(void *o)
{
    struct agent_vm *vm = o;

    if (vm->rd == NULL) {
        return;
    }
    if (vmig_ramdirty_stop(vm->rd) < 0) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "dirty tracking: a device did not stop DMA logging");
    }
    vmig_ramdirty_free(vm->rd);
    vm->rd = NULL;
}

static int
h_dirty_start(void *o)
{
    struct agent_vm *vm = o;
    struct vmig_ramdirty *rd;
    int ret;

    h_dirty_stop(vm); /* a previous attempt's, if any */
    ret = vmig_ramdirty_new(vm->ctx, VMIG_DIRTY_AUTO, &rd);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_ramdirty_add_region(rd, 0, vm->ram, vm->o.ram_size);
    for (unsigned int i = 0; ret >= 0 && i < vm->o.nvfu; i++) {
        /* a device whose server died DMAs no more (devwatch.c) */
        if (!vfudev_failed(&vm->vfu[i])) {
            ret = vmig_ramdirty_add_device(rd, vm->vfu[i].c,
                                           vm->vfu[i].spec.name, 0);
        }
    }
    if (ret >= 0 && vmig_ramdirty_page_size(rd) != VMIG_MP_PAGE_SIZE) {
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "dirty tracking: RAM page size %llu, the engine needs %u",
                 (unsigned long long)vmig_ramdirty_page_size(rd),
                 VMIG_MP_PAGE_SIZE);
        ret = -EOPNOTSUPP;
    }
    if (ret >= 0) {
        ret = vmig_ramdirty_start(rd);
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "dirty tracking: cannot start: %s",
                 strerror(-ret));
        vmig_ramdirty_free(rd);
        return ret;
    }
    vm->rd = rd;
    return 0;
}

static long
h_dirty_collect(void *o, unsigned int region, uint64_t *bitmap, size_t nbits)
{
    struct agent_vm *vm = o;

    if (vm->rd == NULL || region != 0) {
        return -EINVAL;
    }
    return vmig_ramdirty_collect(vm->rd, 0, 0, vm->o.ram_size, bitmap, nbits);
}

static const struct vmig_engine_vm_ops vm_hooks = {
    .ram_hole = h_hole,
    .vcpu_pause = h_pause,
    .vcpu_resume = h_resume,
    .vcpu_save = h_save,
    .vcpu_load = h_load,
    .event = h_event,
};

/* VMIG_TEST_ONE_PHASE_STOP=1: the deliberately unsafe one-phase stop. */
static void
test_params(struct agent_vm *vm)
{
    const char *v = getenv("VMIG_TEST_ONE_PHASE_STOP");
    struct vmig_engine_params p;

    if (v == NULL || strcmp(v, "1") != 0) {
        return;
    }
    vmig_engine_get_params(vm->eng, &p);
    p.test_one_phase_stop = true;
    vmig_engine_set_params(vm->eng, &p);
    vmig_log(vm->ctx, VMIG_LOG_WARNING,
             "*** VMIG_TEST_ONE_PHASE_STOP=1: TEST ONLY, UNSAFE: devices "
             "are stopped one at a time straight to STOP_COPY, so a peer "
             "still running may DMA into one already saved and that "
             "write is LOST.  Never use this outside a test. ***");
}

/*
 * Parallel channels (multifd-channels): QEMU's default would be 2; ours
 * is min(4, cores), the point past which more connections only compete
 * for the same CPUs.  The engine opens them through vm_chan_ops, given to
 * it when a migration starts (vm_mig.c).
 */
static void
default_channels(struct agent_vm *vm)
{
    struct vmig_engine_params p;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    vmig_engine_get_params(vm->eng, &p);
    p.channels = cores >= 4 ? 4 : cores > 1 ? (unsigned int)cores : 1;
    vmig_engine_set_params(vm->eng, &p);
}

int
vm_create(struct agent_vm *vm, const struct vm_opts *o, vmig_ctx_t *ctx)
{
    struct vmig_engine_region rg;
    struct vmig_vcpu_params vp = {0};
    int ret;

    memset(vm, 0, sizeof(*vm));
    vm->ctx = ctx;
    vm->o = *o;
    vm->listen_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    if (o->ndev > AGENT_MAX_DEV || o->ram_size < VMIG_GUEST_MIN_RAM ||
        o->ram_size % 4096 != 0) {
        return -EINVAL;
    }
    vm->memfd = memfd_create("vmig-guest-ram", MFD_CLOEXEC);
    if (vm->memfd < 0) {
        return -errno;
    }
    if (ftruncate(vm->memfd, (off_t)o->ram_size) < 0) {
        return -errno;
    }
    vm->ram = mmap(NULL, o->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   vm->memfd, 0);
    if (vm->ram == MAP_FAILED) {
        vm->ram = NULL;
        return -errno;
    }
    vm->prog_size = guestmap_prog_size(o);
    if (vm->prog_size < VMIG_GUEST_MIN_RAM) {
        vmig_log(ctx, VMIG_LOG_ERR,
                 "guest RAM %llu bytes leaves too little for the guest "
                 "program next to its devices' areas: give more --ram",
                 (unsigned long long)o->ram_size);
        return -E2BIG;
    }
    if (o->program) {
        ret = vmig_guest_init(vm->ram, vm->prog_size, o->seed);
        if (ret < 0) {
            return ret;
        }
    }
    for (unsigned int i = 0; i < o->ndev; i++) {
        struct vmig_memdev_params mp = {
            .state_size = o->dev_state,
            /* every memdev has P2P: several devices where one lacks it
             * are refused (mixed_p2p()) */
            .flags = VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
            .seed = o->seed * 31 + i,
            .revision = o->dev_revision,
        };
        uint8_t cfg[VMIG_MEMDEV_CONFIG_SIZE];

        ret = vmig_memdev_new(ctx, &mp, &vm->dev[i]);
        if (ret < 0) {
            return ret;
        }
        if (o->program) {
            /* what the VMM "wrote": ids, BARs, the IRQ it wired */
            for (size_t k = 0; k < sizeof(cfg); k++) {
                cfg[k] = (uint8_t)(k * 7 + i);
            }
            vmig_memdev_config(vm->dev[i], NULL, cfg);
        }
    }
    vp.steps_per_sec = o->rate;
    vp.hook = guest_hook;
    vp.opaque = vm;
    ret = vmig_vcpu_new(vm->ram, vm->prog_size, &vp, &vm->vcpu);
    if (ret < 0) {
        return ret;
    }
    ret = vfudev_up(vm);
    if (ret < 0) {
        return ret;
    }
    vm->hooks = vm_hooks;
    vm->ram_precopy = true;
    for (unsigned int i = 0; i < o->nvfu; i++) {
        if (!vm->vfu[i].dma_log) {
            vm->ram_precopy = false;
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "%s: the device cannot log its DMA writes to guest "
                     "RAM (DMA_LOGGING_START refused), so guest RAM is "
                     "not precopied: all of it moves while the VM is "
                     "paused (longer downtime); device state still "
                     "precopies",
                     vm->vfu[i].spec.name);
        }
    }
    if (vm->ram_precopy) {
        vm->hooks.dirty_start = h_dirty_start;
        vm->hooks.dirty_collect = h_dirty_collect;
        vm->hooks.dirty_stop = h_dirty_stop;
    }
    rg.name = "ram0";
    rg.host = vm->ram;
    rg.size = o->ram_size;
    ret = vmig_engine_new(ctx, &rg, 1, &vm->hooks, vm, &vm->eng);
    if (ret < 0) {
        return ret;
    }
    test_params(vm);
    default_channels(vm);
    for (unsigned int i = 0; i < o->ndev; i++) {
        char name[16];

        snprintf(name, sizeof(name), "dev%u", i);
        ret = vmig_engine_add_device(vm->eng, name, vmig_memdev_ops(),
                                     vm->dev[i]);
        if (ret < 0) {
            return ret;
        }
    }
    ret = vfudev_add(vm);
    if (ret == 0) {
        ret = devwatch_start(vm);
    }
    if (ret == 0) {
        ret = accwork_new(vm);
    }
    if (ret == 0) {
        ret = ftwork_new(vm);
    }
    if (ret < 0) {
        return ret;
    }
    if (o->program) {
        vm->runstate = "running";
        ret = vmig_vcpu_resume(vm->vcpu);
    } else {
        vm->runstate = "inmigrate";
    }
    return ret;
}

void
vm_destroy(struct agent_vm *vm)
{
    if (vm->listen_fd >= 0) {
        shutdown(vm->listen_fd, SHUT_RDWR);
    }
    /* a TLS handshake under way, either direction */
    __atomic_store_n(&vm->in_cancel, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&vm->hs_cancel, 1, __ATOMIC_RELEASE);
    if (vm->eng != NULL && vmig_engine_cancel(vm->eng) == 0) {
        vmig_log(vm->ctx, VMIG_LOG_INFO, "quitting: migration cancelled");
    }
    vm_reap(vm);
    pthread_mutex_lock(&vm->lock);
    if (vm->thread_joinable) {
        pthread_mutex_unlock(&vm->lock);
        pthread_join(vm->thread, NULL);
        pthread_mutex_lock(&vm->lock);
        vm->thread_joinable = false;
    }
    pthread_mutex_unlock(&vm->lock);
    if (vm->listen_fd >= 0) {
        close(vm->listen_fd);
    }
    vmig_tls_free(vm->in_tls);
    vmig_vcpu_free(vm->vcpu);
    vmig_engine_free(vm->eng);
    h_dirty_stop(vm);
    accwork_free(vm);
    ftwork_free(vm);
    devwatch_stop(vm);
    vfudev_down(vm);
    for (unsigned int i = 0; i < AGENT_MAX_DEV; i++) {
        vmig_memdev_free(vm->dev[i]);
    }
    if (vm->ram != NULL) {
        munmap(vm->ram, vm->o.ram_size);
    }
    if (vm->memfd > 0) {
        close(vm->memfd);
    }
    pthread_mutex_destroy(&vm->lock);
}

/* Join a finished migration thread (called from the QMP loop). */
void
vm_reap(struct agent_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->thread_joinable && !vm->migrating && !vm->incoming_armed) {
        vm->thread_joinable = false;
        pthread_mutex_unlock(&vm->lock);
        pthread_join(vm->thread, NULL);
        return;
    }
    pthread_mutex_unlock(&vm->lock);
}

void
vm_params_get(struct agent_vm *vm, struct mig_params *p)
{
    memset(p, 0, sizeof(*p));
    vmig_engine_get_params(vm->eng, &p->eng);
    pthread_mutex_lock(&vm->lock);
    p->tls = vm->tls;
    pthread_mutex_unlock(&vm->lock);
}

void
vm_params_set(struct agent_vm *vm, const struct mig_params *p)
{
    vmig_engine_set_params(vm->eng, &p->eng);
    pthread_mutex_lock(&vm->lock);
    vm->tls = p->tls;
    pthread_mutex_unlock(&vm->lock);
}

uint64_t
vm_guest_capacity(struct agent_vm *vm)
{
    /* written once, when the program is loaded (or its RAM received) */
    return vmig_guest_capacity(vm->ram, vm->prog_size);
}

int
vm_guest_report(struct agent_vm *vm, uint64_t *steps, char *why, size_t whylen,
                json_object **acc, json_object **ft)
{
    int acc_ret = 0, ft_ret = 0;

    bool was, busy;
    int ret;

    /* the engine owns the vCPU's pause state while it migrates */
    pthread_mutex_lock(&vm->lock);
    busy = vm->migrating;
    pthread_mutex_unlock(&vm->lock);
    if (busy) {
        snprintf(why, whylen, "a migration is in progress");
        return -EBUSY;
    }
    was = vmig_vcpu_running(vm->vcpu);
    if (was && vmig_vcpu_pause(vm->vcpu) < 0) {
        return -EIO;
    }
    *steps = vmig_guest_steps(vm->ram);
    ret = vmig_guest_verify(vm->ram, vm->prog_size, why, whylen);
    *acc = accwork_report(vm, &acc_ret);
    *ft = ftwork_report(vm, &ft_ret);
    if (ret == 0 && acc_ret < 0) {
        ret = acc_ret;
        snprintf(why, whylen,
                 "accelerator workload: a request completed "
                 "wrongly or twice");
    }
    if (ret == 0 && ft_ret < 0) {
        ret = ft_ret;
        snprintf(why, whylen,
                 "flowtab traffic: a completion was wrong (flow "
                 "counters differ from what the guest sent)");
    }
    if (was && vmig_vcpu_resume(vm->vcpu) < 0) {
        return -EIO;
    }
    return ret;
}

/* vfio-user device @name, or NULL with @err saying there is none. */
static struct agent_vfu *
find_vfu(struct agent_vm *vm, const char *name, char *err, size_t errlen)
{
    struct agent_vfu *d = vfudev_find(vm, name);

    if (d == NULL) {
        snprintf(err, errlen,
                 "no vfio-user device named '%s' (see "
                 "x-vmig-query-devices)",
                 name);
    }
    return d;
}

int
vm_device_del(struct agent_vm *vm, const char *name, char *err, size_t errlen)
{
    struct agent_vfu *d = find_vfu(vm, name, err, errlen);
    json_object *ev;
    bool busy;
    int ret;

    if (d == NULL) {
        return -ENODEV;
    }
    pthread_mutex_lock(&vm->lock);
    busy = vm->migrating;
    pthread_mutex_unlock(&vm->lock);
    ret = busy ? -EBUSY : vmig_engine_del_device(vm->eng, name);
    if (ret < 0) {
        snprintf(err, errlen, "%s: cannot remove the device: %s", name,
                 ret == -EBUSY ? "a migration is in progress" : strerror(-ret));
        return ret;
    }
    /* the guest, the dirty tracking and the watcher leave it alone from
     * now on; its client stays allocated until the VM goes (a call in
     * flight on another thread finds a closed socket, not freed memory) */
    if (!vfudev_failed(d)) {
        snprintf(d->fail_reason, sizeof(d->fail_reason),
                 "device %s was removed (device_del)", name);
        __atomic_store_n(&d->failed, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&d->removed, 1, __ATOMIC_RELEASE);
    if (d->pid > 0) {
        (void)kill(d->pid, SIGTERM); /* reaped by vfudev_down() */
    }
    vmig_log(vm->ctx, VMIG_LOG_NOTICE,
             "%s: removed from the VM (device_del); migrations carry the "
             "other devices",
             name);
    ev = json_object_new_object();
    json_object_object_add(ev, "device", json_object_new_string(name));
    vm_emit(vm, "DEVICE_DELETED", ev);
    return 0;
}

/*
 * A reset while an outgoing migration has the VM paused (stop-copy):
 * the device's saved state may all have been read and sent already, so
 * the engine would not notice; the destination would get the state from
 * before the reset.  Before the commit (GO) the migration fails naming
 * it (the VM resumes here); after it the engine ignores this.  In
 * precopy the engine restarts the device itself (reset policy).
 */
static void
reset_in_stopcopy(struct agent_vm *vm, const char *name)
{
    struct vmig_engine_stats *st = malloc(sizeof(*st));
    char why[VMIG_MP_REASON_MAX + 1];

    if (st == NULL) {
        return;
    }
    vmig_engine_stats(vm->eng, st);
    if (st->role == VMIG_ENGINE_ROLE_SOURCE &&
        st->status == VMIG_ENGINE_DEVICE) {
        snprintf(why, sizeof(why),
                 "device %s was reset during the switchover (x-vmig-device-"
                 "reset); migration aborted, retry it",
                 name);
        if (vmig_engine_fail(vm->eng, name, ENODEV, why) == 0) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING, "migrate: %s", why);
        }
    }
    free(st);
}

int
vm_device_reset(struct agent_vm *vm, const char *name, char *err, size_t errlen)
{
    struct agent_vfu *d = find_vfu(vm, name, err, errlen);
    int ret;

    if (d == NULL) {
        return -ENODEV;
    }
    vmig_log(vm->ctx, VMIG_LOG_WARNING,
             "%s: device reset requested over QMP (x-vmig-device-reset)", name);
    ret = vmig_engine_vfu_ops()->reset(d->b);
    if (ret < 0) {
        snprintf(err, errlen, "%s: DEVICE_RESET failed: %s", name,
                 strerror(-ret));
    } else {
        reset_in_stopcopy(vm, name);
    }
    return ret;
}
