/* SPDX-License-Identifier: MIT */
/*
 * vm_net.c - the VM's migration channels: TCP addresses, connecting and
 * listening, and the channel on top (a TLS session when the VM has
 * credentials, else plaintext), noted for query-migrate.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "agent.h"
#include "vm_net.h"

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

int
vm_tcp_listen(const char *uri, const struct agent_tls *cfg, char *err,
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

void
vm_note_chan(struct agent_vm *vm, const struct vmig_chan *ch)
{
    pthread_mutex_lock(&vm->lock);
    vmig_chan_info(ch, &vm->chan);
    vm->chan_valid = true;
    pthread_mutex_unlock(&vm->lock);
}

void
vm_log_chan(struct agent_vm *vm, const struct vmig_chan *ch, const char *what,
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
 * Connect to @uri and make a migration channel: a TLS session when the
 * VM has credentials (both sides authenticated before it returns), else
 * plaintext.  On failure @err says why.
 */
static int
open_chan(struct agent_vm *vm, const char *uri, const int *stop, int *fdp,
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
    *fdp = fd;
    return 0;
}

/*
 * The main connection of a migration (or a check) to @uri.  On failure
 * @err says why and nothing reached the engine.
 */
int
vm_open_channel(struct agent_vm *vm, const char *uri, const int *stop, int *fdp,
                struct vmig_chan **ch, char *err, size_t errlen)
{
    int ret = open_chan(vm, uri, stop, fdp, ch, err, errlen);

    if (ret == 0) {
        vm_note_chan(vm, *ch);
        vm_log_chan(vm, *ch, "migrate: to", uri + 4);
    }
    return ret;
}

/*
 * The engine's extra connections (multifd-channels): to the address of
 * the migration under way, authenticated exactly as its main one.
 */
static int
chan_open(void *opaque, unsigned int index, const int *cancel,
          struct vmig_chan **out)
{
    struct agent_vm *vm = opaque;
    char uri[sizeof(vm->uri)], err[600];
    int fd, ret;

    pthread_mutex_lock(&vm->lock);
    snprintf(uri, sizeof(uri), "%s", vm->uri);
    pthread_mutex_unlock(&vm->lock);
    ret = open_chan(vm, uri, cancel, &fd, out, err, sizeof(err));
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "migrate: channel %u: %s", index, err);
        return ret;
    }
    vmig_log(vm->ctx, VMIG_LOG_DEBUG, "migrate: channel %u to %s open", index,
             uri + 4);
    return 0;
}

/* The engine is done with a channel: it and its socket go. */
static void
chan_release(void *opaque, struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    (void)opaque;
    vmig_chan_free(ch);
    close(fd);
}

const struct vmig_engine_chan_ops vm_chan_ops = {
    .open = chan_open,
    .release = chan_release,
};
