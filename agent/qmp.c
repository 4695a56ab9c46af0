/* SPDX-License-Identifier: MIT */
/*
 * qmp.c - the agent's management socket, speaking QEMU's QMP (QEMU
 * docs/interop/qmp-spec): a greeting offering "oob", capabilities
 * negotiation before any other command, {"execute" | "exec-oob",
 * "arguments", "id"} requests answered by {"return"} or {"error": {"class",
 * "desc"}} with the id echoed, and timestamped events.
 *
 * Two threads, as QEMU's monitor has:
 *
 * - the I/O thread (qmp_server_run()'s caller) owns the sockets: it
 *   accepts and checks clients (qmp_sock.c), frames their bytes into
 *   requests (qmp_wire.c), checks each request's form, negotiation state,
 *   command and arguments (qmp_args.c), and writes everything out.
 *   Commands that allow it (migrate_cancel) run right here when sent with
 *   "exec-oob", so a busy monitor never delays a cancel;
 * - the dispatcher thread runs in-band commands one at a time, in the
 *   order they arrived, across all clients.
 *
 * Like QEMU, a client without "oob" has one request in flight at a time
 * (the next is not read before the reply is out), so replies come in
 * request order; with "oob", up to QMP_QUEUE_MAX.  Everything written
 * (replies, events) goes through one queue the I/O thread drains, so an
 * event raised by a command precedes its reply, as in QEMU.
 *
 * Management is never locked out: sockets are non-blocking and a client
 * that does not read its output is dropped past QMP_MAX_OUT; a client
 * that never negotiates times out; when every slot is taken the client
 * idle the longest is told why and evicted.
 *
 * This file is the I/O thread; each client's output and the queues between
 * the threads are qmp_conn.c, running commands qmp_exec.c (qmp_server.h).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/log.h>
#include "qmp_server.h"

volatile sig_atomic_t agent_signalled;

/* A request's members, checked as QEMU's qmp_dispatch_check_obj(). */
static const char *
check_request(json_object *req, bool allow_oob, bool *oob, json_object **args,
              char *err, size_t len)
{
    const char *exec_key = NULL;
    json_object *exec = NULL;

    *oob = false;
    *args = NULL;
    if (!json_object_is_type(req, json_type_object)) {
        snprintf(err, len, "QMP input must be a JSON object");
        return NULL;
    }
    json_object_object_foreach(req, key, val)
    {
        if (strcmp(key, "execute") == 0 ||
            (strcmp(key, "exec-oob") == 0 && allow_oob)) {
            if (!json_object_is_type(val, json_type_string)) {
                snprintf(err, len, "QMP input member '%s' must be a string",
                         key);
                return NULL;
            }
            if (exec_key != NULL) {
                snprintf(err, len, "QMP input member '%s' clashes with '%s'",
                         key, exec_key);
                return NULL;
            }
            exec_key = key;
            exec = val;
        } else if (strcmp(key, "arguments") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                snprintf(err, len,
                         "QMP input member 'arguments' must be an object");
                return NULL;
            }
            *args = val;
        } else if (strcmp(key, "id") != 0) {
            snprintf(err, len, "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (exec == NULL) {
        snprintf(err, len, "QMP input lacks member 'execute'");
        return NULL;
    }
    *oob = strcmp(exec_key, "exec-oob") == 0;
    return json_object_get_string(exec);
}

/* An out-of-band error: at once, outside the in-band order. */
static void
oob_error(struct qmp_server *s, struct conn *c, const char *desc,
          json_object *id)
{
    size_t len = 0;
    char *line = qmp_error_line("GenericError", desc, id, &len);

    qmp_conn_put(s, c, line, len);
    free(line);
}

/* One complete JSON value from @c (ours). */
static void
handle(struct qmp_server *s, struct conn *c, json_object *req)
{
    char err[512];
    json_object *id = NULL, *args;
    const struct cmd_desc *d;
    const char *name;
    bool oob;
    struct job *j;

    c->active_ms = qmp_now_ms();
    if (json_object_is_type(req, json_type_object)) {
        json_object_object_get_ex(req, "id", &id);
    }
    name = check_request(req, c->oob, &oob, &args, err, sizeof(err));
    if (name == NULL) {
        /* a stray exec-oob is answered at once, as QEMU does */
        if (json_object_is_type(req, json_type_object) &&
            json_object_object_get_ex(req, "exec-oob", NULL) &&
            !json_object_object_get_ex(req, "execute", NULL)) {
            oob_error(s, c, err, id);
            return;
        }
        qmp_reply_error(s, c, "GenericError", err, id);
        return;
    }
    d = qmp_cmd_find(name);
    if (!c->negotiated && (d == NULL || d->fn != NULL)) {
        qmp_reply_error(s, c, "CommandNotFound",
                        "Expecting capabilities negotiation with "
                        "'qmp_capabilities'",
                        id);
        return;
    }
    if (c->negotiated && d != NULL && d->fn == NULL) {
        qmp_reply_error(s, c, "CommandNotFound",
                        "Capabilities negotiation is already complete, command "
                        "ignored",
                        id);
        return;
    }
    if (d == NULL) {
        snprintf(err, sizeof(err), "The command %s has not been found", name);
        qmp_reply_error(s, c, "CommandNotFound", err, id);
        return;
    }
    if (oob && !(d->flags & CMD_ALLOW_OOB)) {
        snprintf(err, sizeof(err), "The command %s does not support OOB", name);
        oob_error(s, c, err, id);
        return;
    }
    /* every command's arguments are checked here, before it runs */
    if (!qmp_args_check(args, d->args, err, sizeof(err))) {
        if (oob) {
            oob_error(s, c, err, id);
        } else {
            qmp_reply_error(s, c, "GenericError", err, id);
        }
        return;
    }
    if (oob || d->fn == NULL) {
        /* out of band, or qmp_capabilities: only this connection's state
         * changes, so a busy dispatcher cannot keep a client (`vmig
         * cancel`) from negotiating */
        qmp_run_oob(s, c, d, args, id);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    j->d = d;
    j->args = json_object_get(args);
    j->id = json_object_get(id);
    qmp_push_job(s, c, j);
}

/* ------------------------------------------------------------ the loop */

static unsigned int
queue_max(const struct conn *c)
{
    return c->oob ? QMP_QUEUE_MAX : 1;
}

/* Frame what @c sent, as long as it may have more requests in flight. */
static void
process_input(struct qmp_server *s, struct conn *c)
{
    while (c->fd >= 0 && !c->closing && c->ioff < c->ilen &&
           c->inflight < queue_max(c)) {
        struct qmp_frame fr;

        c->ioff +=
            qmp_framer_feed(&c->in, c->ibuf + c->ioff, c->ilen - c->ioff, &fr);
        switch (fr.kind) {
        case QMP_FRAME_VALUE:
            handle(s, c, fr.value);
            json_object_put(fr.value);
            break;
        case QMP_FRAME_ERROR:
            qmp_reply_error(s, c, "GenericError", fr.msg, NULL);
            break;
        case QMP_FRAME_CLOSE:
            vmig_log(s->vm->ctx, VMIG_LOG_WARNING,
                     "QMP: client pid %d sent more than %u bytes without a "
                     "complete request: closing it",
                     (int)c->pid, QMP_MAX_REQUEST);
            if (fr.msg[0] != '\0') {
                qmp_reply_error(s, c, "GenericError", fr.msg, NULL);
            }
            c->closing = true;
            break;
        case QMP_FRAME_MORE:
            break;
        }
    }
    if (c->ioff == c->ilen) {
        c->ioff = c->ilen = 0;
    }
}

static bool
conn_readable(const struct conn *c)
{
    if (c->fd >= 0 && c->linger_until != 0) {
        return true; /* input to discard, or the client's EOF */
    }
    return c->fd >= 0 && !c->closing && c->ioff == c->ilen &&
           c->inflight < queue_max(c);
}

static void
conn_read(struct qmp_server *s, struct conn *c)
{
    ssize_t n;

    if (c->linger_until != 0) {
        qmp_conn_discard(s, c);
        return;
    }
    n = recv(c->fd, c->ibuf, sizeof(c->ibuf), MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        qmp_conn_close(s, c);
        return;
    }
    c->ioff = 0;
    c->ilen = (size_t)n;
    process_input(s, c);
}

/* The client idle the longest with nothing in flight, or NULL. */
static struct conn *
idlest(struct qmp_server *s)
{
    struct conn *best = NULL;

    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        struct conn *c = &s->conn[i];

        if (c->fd >= 0 && c->inflight == 0 &&
            (best == NULL || c->active_ms < best->active_ms)) {
            best = c;
        }
    }
    return best;
}

static void
greet(struct qmp_server *s, struct conn *c)
{
    json_object *g = json_object_new_object(), *q = json_object_new_object();
    json_object *caps = json_object_new_array();
    size_t len = 0;
    char *line;

    json_object_array_add(caps, json_object_new_string("oob"));
    json_object_object_add(q, "version", qmp_version());
    json_object_object_add(q, "capabilities", caps);
    json_object_object_add(g, "QMP", q);
    line = qmp_line(g, &len);
    json_object_put(g);
    qmp_conn_put(s, c, line, len);
    free(line);
}

/* Refuse @fd with a one-line reason (best effort: it is not ours). */
static void
refuse(int fd, const char *desc)
{
    size_t len = 0;
    char *line = qmp_error_line("GenericError", desc, NULL, &len);

    if (line != NULL) {
        (void)!send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    free(line);
    close(fd);
}

static void
accept_clients(struct qmp_server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        struct ucred cr = {0};
        struct conn *c = NULL;
        char msg[256];

        if (fd < 0) {
            return;
        }
        if (qmp_sock_peer(fd, &cr) < 0) {
            snprintf(msg, sizeof(msg),
                     "permission denied: uid %u may not manage this agent "
                     "(only uid %u or root)",
                     (unsigned int)cr.uid, (unsigned int)geteuid());
            vmig_log(s->vm->ctx, VMIG_LOG_WARNING,
                     "QMP: refused a client: pid %d, uid %u, gid %u: only "
                     "uid %u or root may manage this agent",
                     (int)cr.pid, (unsigned int)cr.uid, (unsigned int)cr.gid,
                     (unsigned int)geteuid());
            refuse(fd, msg);
            continue;
        }
        for (int i = 0; i < QMP_MAX_CLIENTS && c == NULL; i++) {
            if (s->conn[i].fd < 0) {
                c = &s->conn[i];
            }
        }
        if (c == NULL) {
            c = idlest(s);
            if (c == NULL) {
                refuse(fd, "too many QMP clients, all busy: try again");
                continue;
            }
            vmig_log(s->vm->ctx, VMIG_LOG_NOTICE,
                     "QMP: %d clients connected: evicting pid %d, idle the "
                     "longest, for pid %d",
                     QMP_MAX_CLIENTS, (int)c->pid, (int)cr.pid);
            snprintf(msg, sizeof(msg),
                     "evicted: %d QMP clients are connected and this one "
                     "was idle the longest",
                     QMP_MAX_CLIENTS);
            qmp_conn_say(s, c, msg);
            qmp_conn_flush(s, c);
            qmp_conn_close(s, c);
        }
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->gen = ++s->next_gen;
        c->pid = cr.pid;
        c->uid = cr.uid;
        c->active_ms = qmp_now_ms();
        qmp_framer_init(&c->in);
        greet(s, c);
    }
}

/* Clients that never negotiate are told to go; lingering ones go at their
 * time. */
static void
expire(struct qmp_server *s, uint64_t now)
{
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        struct conn *c = &s->conn[i];

        if (c->fd >= 0 && c->linger_until != 0 && now >= c->linger_until) {
            qmp_conn_close(s, c); /* it never read its EOF: enough */
            continue;
        }
        if (c->fd >= 0 && !c->negotiated && !c->closing && c->inflight == 0 &&
            now - c->active_ms > QMP_NEGOTIATE_MS) {
            qmp_conn_say(s, c,
                         "timed out waiting for qmp_capabilities: closing the "
                         "connection");
            c->closing = true;
        }
    }
}

int
qmp_server_new(struct agent_vm *vm, const char *path, struct qmp_server **out)
{
    struct qmp_server *s;
    char err[512];
    bool stale;
    int ret;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->vm = vm;
    s->otail = &s->ohead;
    s->jtail = &s->jhead;
    s->lfd = -1;
    pthread_mutex_init(&s->olock, NULL);
    pthread_mutex_init(&s->jlock, NULL);
    pthread_cond_init(&s->jcond, NULL);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        s->conn[i].fd = -1;
    }
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->evfd < 0) {
        ret = -errno;
        snprintf(err, sizeof(err), "eventfd: %s", strerror(-ret));
        goto err;
    }
    ret = qmp_sock_listen(path, &s->lfd, &stale, err, sizeof(err));
    if (ret < 0) {
        goto err;
    }
    if (stale) {
        vmig_log(vm->ctx, VMIG_LOG_NOTICE,
                 "QMP: replaced the stale socket %s (nobody answered on it)",
                 path);
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    *out = s;
    return 0;

err:
    vmig_log(vm->ctx, VMIG_LOG_ERR, "%s", err);
    if (s->evfd >= 0) {
        close(s->evfd);
    }
    pthread_mutex_destroy(&s->olock);
    pthread_mutex_destroy(&s->jlock);
    pthread_cond_destroy(&s->jcond);
    free(s);
    return ret;
}

void
qmp_server_free(struct qmp_server *s)
{
    if (s == NULL) {
        return;
    }
    qmp_drain(s);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        qmp_conn_flush(s, &s->conn[i]);
        qmp_conn_close(s, &s->conn[i]);
    }
    close(s->lfd);
    unlink(s->path);
    close(s->evfd);
    pthread_mutex_destroy(&s->olock);
    pthread_mutex_destroy(&s->jlock);
    pthread_cond_destroy(&s->jcond);
    free(s);
}

/* At exit: what is queued goes out, for a moment at most. */
static void
final_flush(struct qmp_server *s)
{
    uint64_t end = qmp_now_ms() + QMP_FLUSH_MS;

    qmp_drain(s);
    for (;;) {
        struct pollfd pfd[QMP_MAX_CLIENTS];
        int n = 0;
        uint64_t now = qmp_now_ms();

        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];

            if (c->fd >= 0 && qmp_conn_flush(s, c) && c->ooff < c->olen) {
                pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
            }
        }
        if (n == 0 || now >= end) {
            return;
        }
        (void)poll(pfd, (nfds_t)n, (int)(end - now));
    }
}

int
qmp_server_run(struct qmp_server *s)
{
    struct pollfd pfd[2 + QMP_MAX_CLIENTS];
    int ret = 0;

    if (pthread_create(&s->disp, NULL, qmp_dispatcher, s) != 0) {
        return -EAGAIN;
    }
    s->disp_running = true;
    while (!qmp_quitting(s) && !agent_signalled) {
        int n = 0, nclients = 0;
        bool done;

        pfd[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = s->evfd, .events = POLLIN};
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];
            short ev = 0;

            if (conn_readable(c)) {
                ev |= POLLIN;
            }
            if (c->fd >= 0 && c->ooff < c->olen) {
                ev |= POLLOUT;
            }
            pfd[n++] =
                (struct pollfd){.fd = ev != 0 ? c->fd : -1, .events = ev};
            nclients += c->fd >= 0 && c->linger_until == 0;
        }
        pthread_mutex_lock(&s->vm->lock);
        done = s->vm->migrated_out && !s->vm->migrating;
        pthread_mutex_unlock(&s->vm->lock);
        if (done && nclients == 0) {
            /* the VM runs on the destination now: shut down cleanly */
            break;
        }
        if (poll(pfd, (nfds_t)n, 100) < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            break;
        }
        if (pfd[0].revents & POLLIN) {
            accept_clients(s);
        }
        qmp_drain(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];
            short re = pfd[2 + i].revents;

            if (c->fd < 0 || pfd[2 + i].fd != c->fd) {
                continue;
            }
            if ((re & POLLOUT) && !qmp_conn_flush(s, c)) {
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                conn_read(s, c);
            }
        }
        qmp_drain(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            /* input held back while a request was in flight */
            process_input(s, &s->conn[i]);
            qmp_conn_flush(s, &s->conn[i]);
        }
        expire(s, qmp_now_ms());
    }
    if (agent_signalled && !qmp_quitting(s)) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "guest", json_object_new_boolean(0));
        json_object_object_add(d, "reason",
                               json_object_new_string("host-signal"));
        qmp_emit(s, "SHUTDOWN", d);
    }
    qmp_stop_dispatcher(s);
    final_flush(s);
    return ret;
}
