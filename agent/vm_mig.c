/* SPDX-License-Identifier: MIT */
/*
 * vm_mig.c - the VM's migrations: the outgoing migration thread, cancel,
 * the refusals before one starts, the incoming side (listen, accept, load)
 * and the compatibility check.  Each runs on its own thread so the QMP
 * loop keeps answering.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/engine_vfu.h>
#include "agent.h"
#include "vm_net.h"

/* The outgoing migration's engine call returned @ret. */
static void
out_end(struct agent_vm *vm, int ret)
{
    pthread_mutex_lock(&vm->lock);
    vm->migrating = false;
    if (ret == 0) {
        vm->migrated_out = true;
        vm->runstate = "postmigrate";
    } else if (ret == -EINPROGRESS) {
        /* GO was sent, the outcome is unknown: the VM stays paused */
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "migrate: the outcome is unknown; the VM stays paused "
                 "here. 'vmig recover' asks the destination again; "
                 "'vmig recover --destination-gone' resumes it here (only "
                 "if the destination is gone for good)");
    } else {
        vm->runstate = "running";
    }
    pthread_mutex_unlock(&vm->lock);
}

static void *
out_main(void *arg)
{
    struct agent_vm *vm = arg;
    struct vmig_chan *ch;
    char err[sizeof(vm->connect_error)];
    int fd, ret;

    ret = vm_open_channel(vm, vm->uri, &vm->hs_cancel, &fd, &ch, err,
                          sizeof(err));
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
    out_end(vm, ret);
    return NULL;
}

/* The engine's recovery hook: a new channel to the destination of the
 * migration (the commit protocol asks it again after a lost answer). */
static int
vm_mig_reconnect(void *opaque, struct vmig_chan **out, char *why, size_t len)
{
    struct agent_vm *vm = opaque;
    char uri[sizeof(vm->uri)];
    int fd, ret;

    pthread_mutex_lock(&vm->lock);
    snprintf(uri, sizeof(uri), "%s", vm->uri);
    pthread_mutex_unlock(&vm->lock);
    /* the same address and TLS credentials as the migration itself */
    ret = vm_open_channel(vm, uri, NULL, &fd, out, why, len);
    return ret < 0 ? ret : 0;
}

static void
vm_mig_disconnect(void *opaque, struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    (void)opaque;
    vmig_chan_free(ch);
    close(fd);
}

static void *
recover_main(void *arg)
{
    struct agent_vm *vm = arg;

    out_end(vm, vmig_engine_recover(vm->eng));
    return NULL;
}

int
vm_recover(struct agent_vm *vm, bool destination_gone, char *err, size_t errlen)
{
    const char *st;
    int ret;

    pthread_mutex_lock(&vm->lock);
    st = vm->mig_status != NULL ? vm->mig_status : "none";
    if (vm->migrating || strcmp(st, "postmigrate-unknown") != 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "nothing to recover: the last migration's outcome is not "
                 "unknown (status %s)",
                 st);
        return -EINVAL;
    }
    if (vm->thread_joinable) {
        vm->thread_joinable = false;
        pthread_mutex_unlock(&vm->lock);
        pthread_join(vm->thread, NULL);
        pthread_mutex_lock(&vm->lock);
    }
    if (destination_gone) {
        pthread_mutex_unlock(&vm->lock);
        ret = vmig_engine_resume_source(vm->eng);
        if (ret < 0) {
            snprintf(err, errlen, "cannot resume here: %s", strerror(-ret));
            return ret;
        }
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "recover: the VM resumed here on the operator's word that "
                 "the destination is gone");
        return 0;
    }
    vm->migrating = true;
    /* before the command replies, as `migrate` sets "setup": a
     * query-migrate right after it sees the recovery, never the
     * "postmigrate-unknown" it started from (which `vmig recover` would
     * take for the recovery's end) */
    vm_mig_status_set_locked(vm, "recovering");
    ret = pthread_create(&vm->thread, NULL, recover_main, vm);
    if (ret != 0) {
        vm->migrating = false;
        vm_mig_status_set_locked(vm, "postmigrate-unknown");
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen, "cannot start the recovery thread");
        return -ret;
    }
    vm->thread_joinable = true;
    pthread_mutex_unlock(&vm->lock);
    return 0;
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
    int ret;

    pthread_mutex_lock(&vm->lock);
    st = vm->mig_status != NULL ? vm->mig_status : "none";
    if (!vm->migrating ||
        (strcmp(st, "setup") != 0 && strcmp(st, "active") != 0)) {
        pthread_mutex_unlock(&vm->lock);
        return 0; /* nothing to cancel: QEMU says nothing either */
    }
    ret = vmig_engine_cancel(vm->eng);
    if (ret == -EINPROGRESS) {
        /* GO is out: the destination decides; the cancel only applies if
         * it turns out not to have got it */
        pthread_mutex_unlock(&vm->lock);
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "migrate_cancel: too late to cancel: the source committed "
                 "(GO sent); the VM runs where the destination says");
        return 0;
    }
    vm->cancel_requested = true;
    vm_mig_status_set_locked(vm, "cancelling");
    pthread_mutex_unlock(&vm->lock);
    /* a TLS handshake under way stops at once */
    __atomic_store_n(&vm->hs_cancel, 1, __ATOMIC_RELEASE);
    if (ret < 0) {
        /* not running yet (still connecting): the thread sees the flag */
        vmig_log(vm->ctx, VMIG_LOG_INFO,
                 "migrate_cancel: the migration stops once it starts");
    }
    return 1;
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
    if (vm->mig_status != NULL &&
        strcmp(vm->mig_status, "postmigrate-unknown") == 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "the last migration's outcome is unknown and the VM is "
                 "paused here: 'vmig recover' asks the destination again");
        return -EBUSY;
    }
    if (vmig_engine_recovery_ms(vm->eng) > 0) {
        pthread_mutex_unlock(&vm->lock);
        snprintf(err, errlen,
                 "the source of the VM received here has not confirmed yet "
                 "that it knows; try again in %u ms",
                 vmig_engine_recovery_ms(vm->eng));
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
    if (vmig_engine_set_chan_ops(vm->eng, &vm_chan_ops, vm) < 0) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "migrate: the engine is busy; one connection only");
    }
    pthread_mutex_lock(&vm->lock);
    /* no migration runs: the engine reads its hooks only while one does */
    vm->hooks.reconnect = vm_mig_reconnect;
    vm->hooks.disconnect = vm_mig_disconnect;
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
    vm_note_chan(vm, ch);
    vm_log_chan(vm, ch, "incoming: from", peer);
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

/* Whether the VM runs here (received). */
static bool
runs_here(struct agent_vm *vm)
{
    bool r;

    pthread_mutex_lock(&vm->lock);
    r = strcmp(vm->runstate, "running") == 0;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/*
 * Wait for the next connection; while the engine expects a recovery
 * contact (a loaded VM waiting for GO, or a VM running here whose source
 * may not know it), only until that window ends: then tell the engine.
 * Return 0 when a connection waits, -ETIMEDOUT when the window ended,
 * -EPIPE when the listening socket was shut down (quitting).
 */
static int
in_wait(struct agent_vm *vm)
{
    unsigned int win = vmig_engine_recovery_ms(vm->eng);
    struct pollfd pf = {.fd = vm->listen_fd, .events = POLLIN};
    int n;

    if (win == 0) {
        return 0; /* accept blocks */
    }
    do {
        n = poll(&pf, 1, (int)win);
    } while (n < 0 && errno == EINTR);
    if (n < 0 || (pf.revents & (POLLERR | POLLHUP | POLLNVAL))) {
        return -EPIPE;
    }
    if (n == 0) {
        if (vmig_engine_recovery_expire(vm->eng) == 1) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "incoming: the source did not come back to commit; "
                     "the received VM was discarded; still listening on %s",
                     vm->uri);
        }
        return -ETIMEDOUT;
    }
    return 0;
}

static void *
in_main(void *arg)
{
    struct agent_vm *vm = arg;

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char peer[96];
        int fd, ret;

        if (runs_here(vm) && vmig_engine_recovery_ms(vm->eng) == 0) {
            break; /* received, and the source knows it */
        }
        ret = in_wait(vm);
        if (ret == -ETIMEDOUT) {
            continue;
        }
        if (ret < 0) {
            break;
        }
        fd = accept4(vm->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            break; /* listening socket shut down: quitting */
        }
        agent_peer_str(&ss, sl, peer, sizeof(peer));
        ret = in_one(vm, fd, peer);
        close(fd);
        if (ret == -EINPROGRESS) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "incoming: holding the received VM, paused, for its "
                     "source to come back (%u ms); listening on %s",
                     vmig_engine_recovery_ms(vm->eng), vm->uri);
        } else if (ret < 0) {
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
    fd = vm_tcp_listen(uri, &cfg, err, errlen);
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
    /* extra channels of an incoming migration join through inbusy.c */
    if (vmig_engine_set_chan_ops(vm->eng, &vm_chan_ops, vm) < 0) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "incoming: the engine is busy; one connection only");
    }
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
    ret = vm_open_channel(vm, uri, NULL, &fd, &ch, err, errlen);
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
