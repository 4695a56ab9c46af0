/* SPDX-License-Identifier: MIT */
/*
 * devwatch.c - a vfio-user device server that dies is noticed at once.
 *
 * One thread polls, for every vfio-user device, a pidfd of the server the
 * agent spawned (readable when it exits) and the device's socket for a
 * hang-up (POLLRDHUP: the only sign for a server the agent did not spawn).
 * A death is known within DEVWATCH_TICK_MS of the poll waking up, well
 * inside a second.  The device is then marked failed (agent_vfu.failed,
 * with the reason in fail_reason), a DEVICE_FAILED event names it, its
 * pid and its exit status or signal, and from then on:
 *
 *  - x-vmig-query-devices and `vmig status` show it failed;
 *  - a migration in progress fails for that reason (vmig_engine_fail(): on
 *    a destination the source is told), and the engine backend refuses
 *    the device from then on (vfudev.c): a destination's compatibility
 *    verdict names it;
 *  - a migration or check from this VM is refused naming it (vm.c);
 *  - guest RAM tracking leaves it out (it can no longer DMA), and the
 *    guest stops driving it, so the VM and its other devices go on.
 *
 * The exit status is read with waitid(WNOWAIT): the child stays waitable,
 * vfudev_down() reaps it as for any other server.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/log.h>
#include <vmig/vfu_client.h>
#include "agent.h"

/* How long a socket hang-up waits for the server's exit status. */
#define DEVWATCH_EXIT_WAIT_MS 500
#define DEVWATCH_TICK_MS 200

static int
pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

bool
vfudev_failed(struct agent_vfu *d)
{
    return __atomic_load_n(&d->failed, __ATOMIC_ACQUIRE) != 0;
}

/* The server's fate, without reaping it: "killed by signal 9 (SIGKILL)",
 * "exited with status 3", or "" while it still runs. */
static void
exit_reason(const struct agent_vfu *d, char *buf, size_t len, int *code,
            int *sig)
{
    siginfo_t si;

    buf[0] = '\0';
    *code = -1;
    *sig = 0;
    if (d->pid <= 0) {
        return;
    }
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)d->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
        si.si_pid != d->pid) {
        return;
    }
    if (si.si_code == CLD_EXITED) {
        *code = si.si_status;
        snprintf(buf, len, "exited with status %d", si.si_status);
    } else {
        *sig = si.si_status;
        snprintf(buf, len, "killed by signal %d (SIG%s)%s", si.si_status,
                 sigabbrev_np(si.si_status) != NULL ? sigabbrev_np(si.si_status)
                                                    : "?",
                 si.si_code == CLD_DUMPED ? ", core dumped" : "");
    }
}

static void
mark_failed(struct agent_vm *vm, struct agent_vfu *d, bool exited)
{
    char fate[96] = "";
    json_object *ev;
    int code, sig;

    /* a hang-up first: give the exit status a moment to be known */
    for (int ms = 0; !exited && d->pid > 0 && ms < DEVWATCH_EXIT_WAIT_MS;
         ms += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        exit_reason(d, fate, sizeof(fate), &code, &sig);
        if (fate[0] != '\0') {
            break;
        }
        nanosleep(&ts, NULL);
    }
    exit_reason(d, fate, sizeof(fate), &code, &sig);
    if (fate[0] == '\0') {
        snprintf(fate, sizeof(fate), "%s",
                 d->pid > 0 ? "closed its connection"
                            : "closed its connection (the server is gone)");
    }
    if (d->pid > 0) {
        snprintf(d->fail_reason, sizeof(d->fail_reason),
                 "device %s failed: its server %s (pid %d) %s", d->spec.name,
                 d->spec.kind, (int)d->pid, fate);
    } else {
        snprintf(d->fail_reason, sizeof(d->fail_reason),
                 "device %s failed: its server at %s %s", d->spec.name,
                 d->spec.socket, fate);
    }
    __atomic_store_n(&d->failed, 1, __ATOMIC_RELEASE);
    /* a migration under way fails for this reason (on a destination the
     * source is told); none running: nothing to do */
    if (vmig_engine_fail(vm->eng, d->spec.name, ENODEV, d->fail_reason) == 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "%s: the migration under way fails",
                 d->spec.name);
    }
    vmig_log(vm->ctx, VMIG_LOG_ERR,
             "%s; the VM keeps running without it; it cannot migrate with "
             "it (remove it with QMP device_del to migrate the others)",
             d->fail_reason);
    ev = json_object_new_object();
    json_object_object_add(ev, "device", json_object_new_string(d->spec.name));
    json_object_object_add(ev, "type", json_object_new_string(d->spec.kind));
    if (d->pid > 0) {
        json_object_object_add(ev, "pid", json_object_new_int(d->pid));
    }
    if (code >= 0) {
        json_object_object_add(ev, "exit-status", json_object_new_int(code));
    }
    if (sig > 0) {
        json_object_object_add(ev, "signal", json_object_new_int(sig));
    }
    json_object_object_add(ev, "reason",
                           json_object_new_string(d->fail_reason));
    vm_emit(vm, "DEVICE_FAILED", ev);
}

static void *
watch_main(void *arg)
{
    struct agent_vm *vm = arg;

    while (!__atomic_load_n(&vm->devwatch_quit, __ATOMIC_ACQUIRE)) {
        struct pollfd pfd[2 * AGENT_MAX_DEV];
        struct agent_vfu *who[2 * AGENT_MAX_DEV];
        bool exit_fd[2 * AGENT_MAX_DEV];
        nfds_t n = 0;

        for (unsigned int i = 0; i < vm->o.nvfu; i++) {
            struct agent_vfu *d = &vm->vfu[i];

            if (d->c == NULL || vfudev_failed(d)) {
                continue;
            }
            if (d->pidfd >= 0) {
                pfd[n] = (struct pollfd){.fd = d->pidfd, .events = POLLIN};
                who[n] = d;
                exit_fd[n++] = true;
            }
            pfd[n] = (struct pollfd){.fd = vmig_vfu_client_fd(d->c),
                                     .events = POLLRDHUP};
            who[n] = d;
            exit_fd[n++] = false;
        }
        if (poll(pfd, n, DEVWATCH_TICK_MS) <= 0) {
            continue;
        }
        for (nfds_t k = 0; k < n; k++) {
            short re = pfd[k].revents;

            if (vfudev_failed(who[k])) {
                continue;
            }
            if ((exit_fd[k] && (re & POLLIN)) ||
                (!exit_fd[k] && (re & (POLLRDHUP | POLLHUP | POLLERR)))) {
                mark_failed(vm, who[k], exit_fd[k]);
            }
        }
    }
    return NULL;
}

int
devwatch_start(struct agent_vm *vm)
{
    int ret;

    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        struct agent_vfu *d = &vm->vfu[i];

        d->pidfd = d->pid > 0 ? pidfd_of(d->pid) : -1;
        if (d->pid > 0 && d->pidfd < 0) {
            /* an old kernel: the socket's hang-up still tells */
            vmig_log(vm->ctx, VMIG_LOG_DEBUG,
                     "%s: no pidfd for the server (%s); watching its socket",
                     d->spec.name, strerror(errno));
        }
    }
    if (vm->o.nvfu == 0) {
        return 0;
    }
    ret = pthread_create(&vm->devwatch, NULL, watch_main, vm);
    if (ret != 0) {
        return -ret;
    }
    vm->devwatch_running = true;
    return 0;
}

void
devwatch_stop(struct agent_vm *vm)
{
    if (vm->devwatch_running) {
        __atomic_store_n(&vm->devwatch_quit, 1, __ATOMIC_RELEASE);
        pthread_join(vm->devwatch, NULL);
        vm->devwatch_running = false;
    }
    for (unsigned int i = 0; i < AGENT_MAX_DEV; i++) {
        if (vm->vfu[i].pidfd > 0) {
            close(vm->vfu[i].pidfd);
        }
        vm->vfu[i].pidfd = -1;
    }
}

int
vm_failed_device(struct agent_vm *vm, char *why, size_t len)
{
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        if (vfudev_failed(&vm->vfu[i]) &&
            !__atomic_load_n(&vm->vfu[i].removed, __ATOMIC_ACQUIRE)) {
            snprintf(why, len,
                     "%s: its state is lost, so the VM cannot migrate with "
                     "it; remove it (QMP device_del) to migrate the others, "
                     "or restart the VM",
                     vm->vfu[i].fail_reason);
            return (int)i;
        }
    }
    return -1;
}
