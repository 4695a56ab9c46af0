/* SPDX-License-Identifier: MIT */
/*
 * inbusy.c - while the destination receives a migration, a second source
 * that connects is told at once "destination busy" (an ERROR frame after
 * the preamble exchange, over TLS when the destination requires it)
 * instead of waiting in the listen backlog until its peer timeout.  A
 * thread of its own accepts on the listening socket for as long as the
 * incoming thread runs the engine; each refusal is bounded by
 * INBUSY_TIMEOUT_MS, so a silent peer cannot hold the next one back long.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/chan.h>
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig/log.h>
#include <vmig/tls.h>
#include "agent.h"

#define INBUSY_TIMEOUT_MS 2000u

void
agent_peer_str(const struct sockaddr_storage *ss, socklen_t len, char *out,
               size_t outlen)
{
    char h[64], p[16];

    if (getnameinfo((const struct sockaddr *)ss, len, h, sizeof(h), p,
                    sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, "%s:%s", h, p);
}

/*
 * A connection while a migration comes in: one of its extra channels
 * (multifd-channels), authenticated as its main connection was, joins
 * it; a second source is told "destination busy"; anything else is
 * refused with the engine's reason.  Return true when the engine took
 * the connection (it closes it).
 */
static bool
inbusy_conn(struct agent_vm *vm, int fd, const char *peer)
{
    char why[512], reason[VMIG_MP_REASON_MAX + 1];
    struct vmig_chan *ch = NULL;
    int ret;

    if (vm->in_tls != NULL) {
        ret = vmig_tls_handshake(vm->in_tls, fd, INBUSY_TIMEOUT_MS,
                                 &vm->in_cancel, &ch, why, sizeof(why));
    } else {
        ret = vmig_chan_plain(vm->ctx, fd, &ch);
        snprintf(why, sizeof(why), "%s", strerror(-ret));
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "incoming: busy receiving from %s; the connection from %s "
                 "failed: %s",
                 vm->in_peer, peer, why);
        return false;
    }
    snprintf(reason, sizeof(reason),
             "destination busy: it is already receiving a migration (from "
             "%s); try again once that one has ended",
             vm->in_peer);
    ret = vmig_engine_accept_chan(vm->eng, ch, reason, INBUSY_TIMEOUT_MS);
    if (ret == 0) {
        vmig_log(vm->ctx, VMIG_LOG_DEBUG,
                 "incoming: a channel of the migration from %s joined (%s)",
                 vm->in_peer, peer);
        return true;
    }
    if (ret == -EBUSY) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "incoming: refused the migration from %s: busy receiving "
                 "from %s",
                 peer, vm->in_peer);
    } else {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "incoming: refused the connection from %s: %s", peer,
                 strerror(-ret));
    }
    vmig_chan_free(ch);
    return false;
}

static void *
inbusy_main(void *arg)
{
    struct agent_vm *vm = arg;

    for (;;) {
        struct pollfd pf[2] = {{.fd = vm->listen_fd, .events = POLLIN},
                               {.fd = vm->busy_wake[0], .events = POLLIN}};
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char peer[96];
        int fd;

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (pf[1].revents != 0 ||
            (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL))) {
            break;
        }
        if (!(pf[0].revents & POLLIN)) {
            continue;
        }
        fd = accept4(vm->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED) {
                continue;
            }
            break; /* listening socket shut down: quitting */
        }
        /* the refusal's own waits are bounded; the socket blocks */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        agent_peer_str(&ss, sl, peer, sizeof(peer));
        if (!inbusy_conn(vm, fd, peer)) {
            close(fd);
        }
    }
    return NULL;
}

void
inbusy_start(struct agent_vm *vm, const char *peer)
{
    int fl;

    snprintf(vm->in_peer, sizeof(vm->in_peer), "%s", peer);
    vm->busy_on = false;
    if (pipe2(vm->busy_wake, O_CLOEXEC) < 0) {
        return; /* a second source then waits, as before */
    }
    /* the incoming thread does not accept meanwhile; never block in
     * accept on a connection that vanished after poll said ready */
    fl = fcntl(vm->listen_fd, F_GETFL);
    fcntl(vm->listen_fd, F_SETFL, fl | O_NONBLOCK);
    if (pthread_create(&vm->busy_th, NULL, inbusy_main, vm) != 0) {
        fcntl(vm->listen_fd, F_SETFL, fl);
        close(vm->busy_wake[0]);
        close(vm->busy_wake[1]);
        return;
    }
    vm->busy_on = true;
}

void
inbusy_stop(struct agent_vm *vm)
{
    if (!vm->busy_on) {
        return;
    }
    if (write(vm->busy_wake[1], "q", 1) < 0) {
        /* the pipe is ours and empty: cannot fail; the join still ends
         * once the listening socket shuts down */
    }
    pthread_join(vm->busy_th, NULL);
    close(vm->busy_wake[0]);
    close(vm->busy_wake[1]);
    fcntl(vm->listen_fd, F_SETFL, fcntl(vm->listen_fd, F_GETFL) & ~O_NONBLOCK);
    vm->busy_on = false;
}
