/* SPDX-License-Identifier: MIT */
/*
 * vm.c - the agent's VM: guest RAM in a memfd mapped shared (so device
 * servers can map it through DMA_MAP fd passing later), the vCPU thread
 * running the ledger guest program, memdev devices driven by the guest,
 * and the migration engine with its hooks.  Migrations run on their own
 * thread so the QMP loop keeps answering.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
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

int
vm_parse_tcp(const char *uri, char *host, size_t hostlen, int *port)
{
    const char *p = uri, *colon;
    char *end;
    long v;

    if (strncmp(p, "tcp:", 4) == 0) {
        p += 4;
    }
    colon = strrchr(p, ':');
    if (colon == NULL || colon == p || (size_t)(colon - p) >= hostlen) {
        return -EINVAL;
    }
    v = strtol(colon + 1, &end, 10);
    if (*end != '\0' || v <= 0 || v > 65535) {
        return -EINVAL;
    }
    if (p[0] == '[' && colon[-1] == ']') {
        /* IPv6: tcp:[::1]:4444 */
        p++;
        colon--;
        if (colon <= p) {
            return -EINVAL;
        }
    }
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    *port = (int)v;
    return 0;
}

/*
 * connect() that a migrate_cancel can interrupt (@stop non-zero; NULL:
 * none): a peer that drops our connection attempts would otherwise hold
 * the cancel for minutes.
 */
static int
connect_one(const struct addrinfo *a, const int *stop)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    int flags, err = 0;
    socklen_t el = sizeof(err);

    if (fd < 0) {
        return -errno;
    }
    flags = fcntl(fd, F_GETFL);
    if (stop != NULL && flags >= 0 &&
        fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0) {
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            err = errno;
        }
        while (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};

            if (__atomic_load_n(stop, __ATOMIC_ACQUIRE) != 0) {
                err = ECANCELED;
                break;
            }
            if (poll(&p, 1, 100) > 0 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
                err = errno;
            }
        }
        if (err == 0 && fcntl(fd, F_SETFL, flags) < 0) {
            err = errno;
        }
    } else if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
        err = errno;
    }
    if (err != 0) {
        close(fd);
        return -err;
    }
    return fd;
}

static int
tcp_connect(const char *uri, const int *stop)
{
    char host[96], port_s[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
    int port, ret;

    ret = vm_parse_tcp(uri, host, sizeof(host), &port);
    if (ret < 0) {
        return ret;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    if (getaddrinfo(host, port_s, &hints, &ai) != 0) {
        return -EHOSTUNREACH;
    }
    ret = -ECONNREFUSED;
    for (a = ai; a != NULL && ret != -ECANCELED; a = a->ai_next) {
        ret = connect_one(a, stop);
        if (ret >= 0) {
            break;
        }
    }
    freeaddrinfo(ai);
    return ret;
}

static int
tcp_listen(const char *uri, const struct agent_tls *cfg, char *err,
           size_t errlen)
{
    char host[96], port_s[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai;
    int port, fd, ret, one = 1;

    ret = vm_parse_tcp(uri, host, sizeof(host), &port);
    if (ret < 0) {
        return ret;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    if (getaddrinfo(host, port_s, &hints, &ai) != 0) {
        return -EADDRNOTAVAIL;
    }
    if (cfg != NULL) {
        ret = agent_tls_listen_ok(cfg, ai->ai_addr, uri + 4, err, errlen);
        if (ret < 0) {
            goto out;
        }
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4) < 0) {
        ret = -errno;
        close(fd);
        goto out;
    }
    ret = fd;
out:
    freeaddrinfo(ai);
    return ret;
}

bool
vm_chan_info(struct agent_vm *vm, struct vmig_chan_info *out)
{
    bool valid;

    pthread_mutex_lock(&vm->lock);
    valid = vm->chan_valid;
    *out = vm->chan;
    pthread_mutex_unlock(&vm->lock);
    return valid;
}

static void
note_chan(struct agent_vm *vm, const struct vmig_chan *ch)
{
    pthread_mutex_lock(&vm->lock);
    vmig_chan_info(ch, &vm->chan);
    vm->chan_valid = true;
    pthread_mutex_unlock(&vm->lock);
}

static void
log_chan(struct agent_vm *vm, const struct vmig_chan *ch, const char *what,
         const char *where)
{
    struct vmig_chan_info ci;

    vmig_chan_info(ch, &ci);
    if (!ci.tls) {
        vmig_log(vm->ctx, VMIG_LOG_INFO, "%s %s: plaintext", what, where);
        return;
    }
    vmig_log(vm->ctx, VMIG_LOG_NOTICE,
             "%s %s: %s, %s, peer '%s' authenticated by %s%s", what, where,
             ci.version, ci.cipher, ci.peer, ci.psk ? "PSK" : "certificate",
             ci.ktls_tx ? ", kernel TLS" : "");
}

/*
 * Connect to @uri and make the migration channel: a TLS session when the
 * VM has credentials (both sides authenticated before it returns), else
 * plaintext.  On failure @err says why and nothing reached the engine.
 */
static int
open_channel(struct agent_vm *vm, const char *uri, const int *stop, int *fdp,
             struct vmig_chan **ch, char *err, size_t errlen)
{
    struct mig_params p;
    struct vmig_tls *t;
    char host[96], why[512];
    int port, fd, ret;

    vm_params_get(vm, &p);
    ret = vm_parse_tcp(uri, host, sizeof(host), &port);
    if (ret == 0) {
        ret = agent_tls_make(&p.tls, vm->ctx, VMIG_TLS_CLIENT, host, &t, why,
                             sizeof(why));
        if (ret < 0) {
            snprintf(err, errlen, "%s", why);
        }
    } else {
        snprintf(err, errlen, "bad address %s", uri);
    }
    if (ret < 0) {
        return ret;
    }
    fd = tcp_connect(uri, stop);
    if (fd == -ECANCELED) {
        snprintf(err, errlen, "cancelled before the migration started");
    } else if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", uri, strerror(-fd));
    }
    if (fd < 0) {
        vmig_tls_free(t);
        return fd;
    }
    if (t == NULL) {
        ret = vmig_chan_plain(vm->ctx, fd, ch);
    } else {
        ret = vmig_tls_handshake(t, fd, p.eng.timeout_ms, stop, ch, why,
                                 sizeof(why));
        if (ret < 0) {
            snprintf(err, errlen, "TLS with %s: %s", uri, why);
        }
        vmig_tls_free(t);
    }
    if (ret < 0) {
        close(fd);
        return ret;
    }
    note_chan(vm, *ch);
    log_chan(vm, *ch, "migrate: to", uri + 4);
    *fdp = fd;
    return 0;
}

static void *
out_main(void *arg)
{
    struct agent_vm *vm = arg;
    struct vmig_chan *ch;
    char err[sizeof(vm->connect_error)];
    int fd, ret;

    ret = open_channel(vm, vm->uri, &vm->hs_cancel, &fd, &ch, err, sizeof(err));
    pthread_mutex_lock(&vm->lock);
    if (ret == 0 && vm->cancel_requested) {
        /* cancelled while connecting: nothing was sent */
        snprintf(err, sizeof(err), "cancelled before the migration started");
        ret = -ECANCELED;
        vmig_chan_free(ch);
        close(fd);
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "migrate: %s; the VM keeps running",
                 err);
        snprintf(vm->connect_error, sizeof(vm->connect_error), "%s", err);
        vm->migrating = false;
        vm_mig_status_set_locked(vm, ret == -ECANCELED && vm->cancel_requested
                                         ? "cancelled"
                                         : "failed");
        pthread_mutex_unlock(&vm->lock);
        return NULL;
    }
    pthread_mutex_unlock(&vm->lock);
    ret = vmig_engine_migrate_chan(vm->eng, ch);
    vmig_chan_free(ch);
    close(fd);
    pthread_mutex_lock(&vm->lock);
    vm->migrating = false;
    if (ret == 0) {
        vm->migrated_out = true;
        vm->runstate = "postmigrate";
    } else {
        vm->runstate = "running";
    }
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

bool
vm_connect_error(struct agent_vm *vm, char *buf, size_t len)
{
    bool any;

    pthread_mutex_lock(&vm->lock);
    any = vm->connect_error[0] != '\0';
    snprintf(buf, len, "%s", vm->connect_error);
    pthread_mutex_unlock(&vm->lock);
    return any;
}

int
vm_cancel(struct agent_vm *vm)
{
    const char *st;

    pthread_mutex_lock(&vm->lock);
    st = vm->mig_status != NULL ? vm->mig_status : "none";
    if (!vm->migrating ||
        (strcmp(st, "setup") != 0 && strcmp(st, "active") != 0)) {
        pthread_mutex_unlock(&vm->lock);
        return 0; /* nothing to cancel: QEMU says nothing either */
    }
    vm->cancel_requested = true;
    vm_mig_status_set_locked(vm, "cancelling");
    pthread_mutex_unlock(&vm->lock);
    /* a TLS handshake under way stops at once */
    __atomic_store_n(&vm->hs_cancel, 1, __ATOMIC_RELEASE);
    if (vmig_engine_cancel(vm->eng) < 0) {
        /* not running yet (still connecting): the thread sees the flag */
        vmig_log(vm->ctx, VMIG_LOG_INFO,
                 "migrate_cancel: the migration stops once it starts");
    }
    return 1;
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

/* The last migration was announced as ended (completed, failed,
 * cancelled): management may start the next one, as in QEMU. */
static bool
mig_over_locked(const struct agent_vm *vm)
{
    const char *st = vm->mig_status;

    return st != NULL &&
           (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
            strcmp(st, "cancelled") == 0);
}

/*
 * QEMU's rule for several devices (hw/vfio/migration.c, since 8.1): a VM
 * with more than one migratable device migrates only when every one of
 * them supports P2P, because a device without RUNNING_P2P cannot be kept
 * from DMAing into a peer whose state was already saved (that write would
 * be lost: the destination never sees it).  The
 * user may override it (x-vmig-allow-mixed-p2p).  The engine applies the
 * rule (vmig_engine_mixed_p2p()); asking it here first lets the refusal
 * name the agent's override.
 */
static int
mixed_p2p(struct agent_vm *vm, const struct mig_params *p, char *err,
          size_t errlen)
{
    char why[256];

    if (p->eng.allow_mixed_p2p ||
        vmig_engine_mixed_p2p(vm->eng, why, sizeof(why)) != 1) {
        return 0;
    }
    snprintf(err, errlen,
             "%s: it could DMA into a peer already stopped, so the migration "
             "is refused (QEMU's rule); set x-vmig-allow-mixed-p2p (vmig "
             "migrate --allow-mixed-p2p) to migrate anyway",
             why);
    return -EOPNOTSUPP;
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

/*
 * Start an outgoing migration.  Every refusal comes before anything
 * changes: the URI, a migration already running, a VM that is not
 * running here, the mixed-P2P rule (judged with the staged parameters,
 * so `vmig migrate --allow-mixed-p2p` works in one step).  Only the QMP
 * thread starts migrations, so what was checked still holds when the
 * thread starts (a running migration can only end meanwhile).
 */
int
vm_migrate(struct agent_vm *vm, const char *uri, const struct mig_params *np,
           char *err, size_t errlen)
{
    struct mig_params old, p;
    char host[96];
    int port, ret;

    if (vm_parse_tcp(uri, host, sizeof(host), &port) < 0 ||
        strncmp(uri, "tcp:", 4) != 0) {
        snprintf(err, errlen, "unknown migration protocol: %s", uri);
        return -EINVAL;
    }
    vm_reap(vm);
    pthread_mutex_lock(&vm->lock);
    if (strcmp(vm->runstate, "inmigrate") == 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen, "Guest is waiting for an incoming migration");
        return -EBUSY;
    }
    if ((vm->migrating || vm->thread_joinable) && !mig_over_locked(vm)) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen, "There's a migration process in progress");
        return -EBUSY;
    }
    if (vm->thread_joinable) {
        /* the last one was announced over (an incoming one too: the VM
         * runs here, so it succeeded); its thread is finishing */
        vm->thread_joinable = false;
        pthread_mutex_unlock(&vm->lock);
        pthread_join(vm->thread, NULL);
        pthread_mutex_lock(&vm->lock);
    }
    if (vm->migrated_out || strcmp(vm->runstate, "running") != 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "the VM is not running here (state %s): it migrated away",
                 vm->runstate);
        return -EBUSY;
    }
    pthread_mutex_unlock(&vm->lock);
    if (vm_failed_device(vm, err, errlen) >= 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "migrate: %s", err);
        return -ENODEV;
    }
    vm_params_get(vm, &old);
    p = np != NULL ? *np : old;
    ret = mixed_p2p(vm, &p, err, errlen);
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "migrate: %s", err);
        return ret;
    }
    vm_params_set(vm, &p);
    pthread_mutex_lock(&vm->lock);
    snprintf(vm->uri, sizeof(vm->uri), "%s", uri);
    vm->connect_error[0] = '\0';
    vm->cancel_requested = false;
    vm->migrating = true;
    vm->chan_valid = false;
    __atomic_store_n(&vm->hs_cancel, 0, __ATOMIC_RELEASE);
    /* before `migrate` replies, as QEMU: a query-migrate right after it
     * sees a status */
    vm_mig_status_set_locked(vm, "setup");
    ret = pthread_create(&vm->thread, NULL, out_main, vm);
    if (ret != 0) {
        vm->migrating = false;
        snprintf(vm->connect_error, sizeof(vm->connect_error),
                 "cannot start the migration thread");
        vm_mig_status_set_locked(vm, "failed");
        pthread_mutex_unlock(&vm->lock);
        vm_params_set(vm, &old);
        snprintf(err, errlen, "cannot start the migration thread");
        return -ret;
    }
    vm->thread_joinable = true;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

/*
 * One incoming connection: the TLS handshake first when we have
 * credentials (a refusal never reaches the engine, so nothing here
 * changes), then the engine.  Return its result, or 1 for a refusal.
 */
static int
in_one(struct agent_vm *vm, int fd, const char *peer)
{
    struct vmig_engine_params p;
    struct vmig_chan *ch;
    char why[512];
    int ret;

    if (vm->in_tls == NULL) {
        ret = vmig_chan_plain(vm->ctx, fd, &ch);
    } else {
        vmig_engine_get_params(vm->eng, &p);
        ret = vmig_tls_handshake(vm->in_tls, fd, p.timeout_ms, &vm->in_cancel,
                                 &ch, why, sizeof(why));
        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "incoming: refused the connection from %s: %s; still "
                     "listening on %s",
                     peer, why, vm->uri);
            return 1;
        }
    }
    if (ret < 0) {
        return ret;
    }
    note_chan(vm, ch);
    log_chan(vm, ch, "incoming: from", peer);
    pthread_mutex_lock(&vm->lock);
    vm->migrating = true;
    pthread_mutex_unlock(&vm->lock);
    inbusy_start(vm, peer); /* a second source is refused meanwhile */
    ret = vmig_engine_incoming_chan(vm->eng, ch);
    inbusy_stop(vm);
    vmig_chan_free(ch);
    pthread_mutex_lock(&vm->lock);
    vm->migrating = false;
    pthread_mutex_unlock(&vm->lock);
    return ret;
}

static void *
in_main(void *arg)
{
    struct agent_vm *vm = arg;

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd =
            accept4(vm->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        char peer[96];
        int ret;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            break; /* listening socket shut down: quitting */
        }
        agent_peer_str(&ss, sl, peer, sizeof(peer));
        ret = in_one(vm, fd, peer);
        close(fd);
        if (ret == 0) {
            break;
        }
        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "incoming: attempt failed (%s); still listening on %s",
                     strerror(-ret), vm->uri);
        }
    }
    pthread_mutex_lock(&vm->lock);
    vm->incoming_armed = false;
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int
vm_start_incoming(struct agent_vm *vm, const char *uri, char *err,
                  size_t errlen)
{
    struct mig_params p;
    struct agent_tls cfg;
    struct vmig_tls *t = NULL;
    int fd, ret;

    pthread_mutex_lock(&vm->lock);
    if (vm->incoming_armed || vm->listen_fd >= 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "The incoming migration has already been "
                 "started");
        return -EBUSY;
    }
    if (strcmp(vm->runstate, "inmigrate") != 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "this VM is not waiting for an incoming migration (QEMU: "
                 "'-incoming' was not specified on the command line): "
                 "start the destination with 'vmig receive'");
        return -EBUSY;
    }
    pthread_mutex_unlock(&vm->lock);
    if (strncmp(uri, "tcp:", 4) != 0) {
        snprintf(err, errlen, "unknown migration protocol: %s", uri);
        return -EINVAL;
    }
    vm_params_get(vm, &p);
    cfg = p.tls;
    /* loaded first: bad credentials fail here, not at the first try */
    ret = agent_tls_make(&cfg, vm->ctx, VMIG_TLS_SERVER, NULL, &t, err, errlen);
    if (ret < 0) {
        return ret;
    }
    err[0] = '\0';
    fd = tcp_listen(uri, &cfg, err, errlen);
    if (fd < 0) {
        if (err[0] == '\0') {
            snprintf(err, errlen, "cannot listen on %s: %s", uri,
                     strerror(-fd));
        }
        vmig_tls_free(t);
        return fd;
    }
    vmig_tls_free(vm->in_tls);
    vm->in_tls = t;
    vmig_log(
        vm->ctx, VMIG_LOG_NOTICE, "incoming: listening on %s (%s)", uri + 4,
        t != NULL                                  ? "TLS required"
        : cfg.insecure && !agent_tls_enabled(&cfg) ? "plaintext, --insecure"
                                                   : "plaintext, loopback");
    pthread_mutex_lock(&vm->lock);
    vm->listen_fd = fd;
    snprintf(vm->uri, sizeof(vm->uri), "%s", uri);
    vm->incoming_armed = true;
    vm_mig_status_set_locked(vm, "setup"); /* listening, as QEMU */
    ret = pthread_create(&vm->thread, NULL, in_main, vm);
    if (ret != 0) {
        /* nothing changed: not listening, still waiting */
        vm->incoming_armed = false;
        vm->listen_fd = -1;
        pthread_mutex_unlock(&vm->lock);
        close(fd);
        snprintf(err, errlen, "cannot start the incoming thread");
        return -ret;
    }
    vm->thread_joinable = true;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int
vm_check(struct agent_vm *vm, const char *uri, struct vmig_engine_check *out,
         char *err, size_t errlen)
{
    char why[VMIG_MP_REASON_MAX + 1];
    struct vmig_chan *ch;
    int fd, ret, k;

    if (strncmp(uri, "tcp:", 4) != 0) {
        snprintf(err, errlen, "unknown migration protocol: %s", uri);
        return -EINVAL;
    }
    /* a device of ours whose server died cannot migrate: say so as the
     * destination's verdicts would, without asking it */
    k = vm_failed_device(vm, why, sizeof(why));
    if (k >= 0) {
        memset(out, 0, sizeof(*out));
        out->status = ENODEV;
        snprintf(out->reason, sizeof(out->reason), "%s", why);
        out->ndevices = vm->o.nvfu;
        for (unsigned int i = 0; i < vm->o.nvfu; i++) {
            snprintf(out->dev[i].name, sizeof(out->dev[i].name), "%s",
                     vm->vfu[i].spec.name);
            out->dev[i].verdict = vfudev_failed(&vm->vfu[i]) ? 0 : -1;
            snprintf(out->dev[i].reason, sizeof(out->dev[i].reason), "%s",
                     vfudev_failed(&vm->vfu[i]) ? vm->vfu[i].fail_reason
                                                : "not asked");
        }
        return 0;
    }
    /* a check is not a migration: no migrate_cancel applies to it */
    ret = open_channel(vm, uri, NULL, &fd, &ch, err, errlen);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_engine_check_chan(vm->eng, ch, out);
    vmig_chan_free(ch);
    close(fd);
    if (ret == -EPROTONOSUPPORT) {
        snprintf(err, errlen,
                 "compatibility check with %s failed: the destination "
                 "requires TLS and this agent has no TLS credentials (give "
                 "it --tls-creds DIR or --tls-psk FILE)",
                 uri);
    } else if (ret < 0) {
        snprintf(err, errlen, "compatibility check with %s failed: %s", uri,
                 strerror(-ret));
    }
    return ret;
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
    }
    return ret;
}
