/* SPDX-License-Identifier: MIT */
/*
 * qmp.c - the agent's management socket, speaking QEMU's QMP wire format
 * (docs/interop/qmp-spec in QEMU): a greeting, capabilities negotiation
 * required before any other command, {"execute", "arguments", "id"}
 * requests answered by {"return"} or {"error": {"class", "desc"}} with the
 * id echoed, and timestamped events.  Lines end in CRLF as QEMU's do.
 *
 * One thread runs the loop (poll over the listening socket, the clients
 * and an eventfd); events raised on other threads are queued and written
 * by the loop, so replies and events never interleave within a line.
 * Commands are dispatched from a table.  See docs/agent.md.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmig/version.h>
#include "qmp.h"

#define QMP_MAX_CLIENTS 8

struct conn {
    int fd;
    struct qmp_framer in;
    bool negotiated;
};

struct evq {
    char *line;
    struct evq *next;
};

struct qmp_server {
    struct agent_vm *vm;
    int lfd;
    int evfd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct conn conn[QMP_MAX_CLIENTS];
    pthread_mutex_t qlock; /* guards the event queue */
    struct evq *head;
    struct evq **tail;
    int quit; /* atomic */
};

volatile sig_atomic_t agent_signalled;

/* ------------------------------------------------------------ output */

static void
conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    qmp_framer_free(&c->in);
}

static void
conn_send_str(struct conn *c, const char *s)
{
    size_t len = strlen(s), off = 0;

    while (c->fd >= 0 && off < len) {
        ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            conn_close(c);
            return;
        }
        off += (size_t)n;
    }
}

static void
conn_send(struct conn *c, json_object *o)
{
    char *line = qmp_line(o, NULL);

    if (line == NULL) {
        return;
    }
    conn_send_str(c, line);
    free(line);
}

static void
send_error(struct conn *c, const char *cls, const char *desc, json_object *id)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();

    json_object_object_add(e, "class", json_object_new_string(cls));
    json_object_object_add(e, "desc", json_object_new_string(desc));
    json_object_object_add(o, "error", e);
    if (id != NULL) {
        json_object_object_add(o, "id", json_object_get(id));
    }
    conn_send(c, o);
    json_object_put(o);
}

void
qmp_emit(void *server, const char *event, json_object *data)
{
    struct qmp_server *s = server;
    struct timeval tv;
    json_object *o, *ts;
    struct evq *q;
    uint64_t one = 1;

    if (s == NULL) {
        json_object_put(data);
        return;
    }
    gettimeofday(&tv, NULL);
    o = json_object_new_object();
    ts = json_object_new_object();
    json_object_object_add(o, "event", json_object_new_string(event));
    if (data != NULL) {
        json_object_object_add(o, "data", data);
    }
    json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
    json_object_object_add(ts, "microseconds",
                           json_object_new_int64(tv.tv_usec));
    json_object_object_add(o, "timestamp", ts);
    q = calloc(1, sizeof(*q));
    if (q != NULL) {
        q->line = qmp_line(o, NULL);
        if (q->line == NULL) {
            free(q);
            q = NULL;
        }
    }
    json_object_put(o);
    if (q == NULL) {
        return;
    }
    pthread_mutex_lock(&s->qlock);
    *s->tail = q;
    s->tail = &q->next;
    pthread_mutex_unlock(&s->qlock);
    if (write(s->evfd, &one, sizeof(one)) < 0) {
        /* the loop polls with a timeout and drains anyway */
        return;
    }
}

static void
flush_events(struct qmp_server *s)
{
    struct evq *q;
    uint64_t v;

    if (read(s->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        return;
    }
    pthread_mutex_lock(&s->qlock);
    q = s->head;
    s->head = NULL;
    s->tail = &s->head;
    pthread_mutex_unlock(&s->qlock);
    while (q != NULL) {
        struct evq *next = q->next;

        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            if (s->conn[i].fd >= 0 && s->conn[i].negotiated) {
                conn_send_str(&s->conn[i], q->line);
            }
        }
        free(q->line);
        free(q);
        q = next;
    }
}

void
qmp_request_quit(struct qmp_server *s)
{
    __atomic_store_n(&s->quit, 1, __ATOMIC_RELEASE);
}

/*
 * qmp_capabilities: capabilities negotiation (QMP spec).  Nothing is
 * offered yet, so any capability asked for is refused and the connection
 * stays in negotiation mode.
 */
static json_object *
capabilities(struct conn *c, json_object *args, char *err, size_t len)
{
    json_object *en;

    if (args != NULL && json_object_object_get_ex(args, "enable", &en) &&
        json_object_array_length(en) > 0) {
        json_object *cap = json_object_array_get_idx(en, 0);

        if (!json_object_is_type(cap, json_type_string)) {
            snprintf(err, len,
                     "Invalid parameter type for 'enable[0]', expected: "
                     "string");
            return NULL;
        }
        snprintf(err, len, "Parameter 'enable[0]' does not accept value '%s'",
                 json_object_get_string(cap));
        return NULL;
    }
    c->negotiated = true;
    return json_object_new_object();
}

/* One parsed request, checked as QEMU's qmp_dispatch_check_obj() does. */
static void
dispatch(struct qmp_server *s, struct conn *c, json_object *req)
{
    struct cmd_ctx x = {.s = s, .vm = s->vm};
    json_object *id = NULL, *exec = NULL, *args = NULL, *ret, *o;
    const struct cmd_desc *d;
    const char *name;

    if (!json_object_is_type(req, json_type_object)) {
        send_error(c, "GenericError", "QMP input must be a JSON object", NULL);
        return;
    }
    json_object_object_get_ex(req, "id", &id);
    json_object_object_foreach(req, key, val)
    {
        if (strcmp(key, "execute") == 0) {
            exec = val;
        } else if (strcmp(key, "arguments") == 0) {
            args = val;
        } else if (strcmp(key, "id") != 0) {
            snprintf(x.err, sizeof(x.err),
                     "QMP input member '%s' is unexpected", key);
            send_error(c, "GenericError", x.err, id);
            return;
        }
    }
    if (exec == NULL) {
        send_error(c, "GenericError", "QMP input lacks member 'execute'", id);
        return;
    }
    if (!json_object_is_type(exec, json_type_string)) {
        send_error(c, "GenericError",
                   "QMP input member 'execute' must be a string", id);
        return;
    }
    if (args != NULL && !json_object_is_type(args, json_type_object)) {
        send_error(c, "GenericError",
                   "QMP input member 'arguments' must be an object", id);
        return;
    }
    name = json_object_get_string(exec);
    if (!c->negotiated && strcmp(name, "qmp_capabilities") != 0) {
        send_error(c, "CommandNotFound",
                   "Expecting capabilities negotiation with 'qmp_capabilities'",
                   id);
        return;
    }
    if (c->negotiated && strcmp(name, "qmp_capabilities") == 0) {
        send_error(c, "CommandNotFound",
                   "Capabilities negotiation is already complete, command "
                   "ignored",
                   id);
        return;
    }
    d = qmp_cmd_find(name);
    if (d == NULL) {
        snprintf(x.err, sizeof(x.err), "The command %s has not been found",
                 name);
        send_error(c, "CommandNotFound", x.err, id);
        return;
    }
    /* every command's arguments are checked here, before it runs */
    if (!qmp_args_check(args, d->args, x.err, sizeof(x.err))) {
        send_error(c, "GenericError", x.err, id);
        return;
    }
    x.args = args;
    ret =
        d->fn != NULL ? d->fn(&x) : capabilities(c, args, x.err, sizeof(x.err));
    if (ret == NULL) {
        send_error(c, x.cls != NULL ? x.cls : "GenericError", x.err, id);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "return", ret);
    if (id != NULL) {
        json_object_object_add(o, "id", json_object_get(id));
    }
    conn_send(c, o);
    json_object_put(o);
}

/* Feed bytes from a client; dispatch every complete JSON value in them. */
static void
feed(struct qmp_server *s, struct conn *c, const char *buf, size_t n)
{
    size_t off = 0;

    while (off < n && c->fd >= 0) {
        struct qmp_frame fr;

        off += qmp_framer_feed(&c->in, buf + off, n - off, &fr);
        switch (fr.kind) {
        case QMP_FRAME_VALUE:
            dispatch(s, c, fr.value);
            json_object_put(fr.value);
            break;
        case QMP_FRAME_ERROR:
            send_error(c, "GenericError", fr.msg, NULL);
            break;
        case QMP_FRAME_CLOSE:
            if (fr.msg[0] != '\0') {
                send_error(c, "GenericError", fr.msg, NULL);
            }
            conn_close(c);
            return;
        case QMP_FRAME_MORE:
            break;
        }
    }
}

static void
accept_client(struct qmp_server *s)
{
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    struct timeval tv = {.tv_sec = 2};
    json_object *g, *q, *v;

    if (fd < 0) {
        return;
    }
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        struct conn *c = &s->conn[i];

        if (c->fd >= 0) {
            continue;
        }
        c->fd = fd;
        qmp_framer_init(&c->in);
        c->negotiated = false;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        g = json_object_new_object();
        q = json_object_new_object();
        v = qmp_version();
        json_object_object_add(q, "version", v);
        json_object_object_add(q, "capabilities", json_object_new_array());
        json_object_object_add(g, "QMP", q);
        conn_send(c, g);
        json_object_put(g);
        return;
    }
    /* full: say why, then hang up */
    {
        struct conn tmp = {.fd = fd};

        send_error(&tmp, "GenericError", "too many QMP clients", NULL);
        conn_close(&tmp);
    }
}

int
qmp_server_new(struct agent_vm *vm, const char *path, struct qmp_server **out)
{
    struct qmp_server *s;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int ret;

    if (strlen(path) >= sizeof(a.sun_path)) {
        return -ENAMETOOLONG;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->vm = vm;
    s->tail = &s->head;
    pthread_mutex_init(&s->qlock, NULL);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        s->conn[i].fd = -1;
    }
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->evfd < 0 || s->lfd < 0) {
        ret = -errno;
        goto err;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    snprintf(s->path, sizeof(s->path), "%s", path);
    unlink(path);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(s->lfd, 8) < 0) {
        ret = -errno;
        goto err;
    }
    *out = s;
    return 0;

err:
    if (s->evfd >= 0) {
        close(s->evfd);
    }
    if (s->lfd >= 0) {
        close(s->lfd);
    }
    pthread_mutex_destroy(&s->qlock);
    free(s);
    return ret;
}

void
qmp_server_free(struct qmp_server *s)
{
    if (s == NULL) {
        return;
    }
    flush_events(s);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        conn_close(&s->conn[i]);
    }
    close(s->lfd);
    unlink(s->path);
    close(s->evfd);
    pthread_mutex_destroy(&s->qlock);
    free(s);
}

int
qmp_server_run(struct qmp_server *s)
{
    struct pollfd pfd[2 + QMP_MAX_CLIENTS];

    while (!__atomic_load_n(&s->quit, __ATOMIC_ACQUIRE) && !agent_signalled) {
        int n = 0, nclients = 0;
        bool done;

        pfd[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = s->evfd, .events = POLLIN};
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            pfd[n++] = (struct pollfd){.fd = s->conn[i].fd, .events = POLLIN};
            nclients += s->conn[i].fd >= 0;
        }
        pthread_mutex_lock(&s->vm->lock);
        done = s->vm->migrated_out && !s->vm->migrating;
        pthread_mutex_unlock(&s->vm->lock);
        if (done && nclients == 0) {
            /* the VM runs on the destination now: shut down cleanly */
            flush_events(s);
            return 0;
        }
        if (poll(pfd, (nfds_t)n, 100) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (pfd[0].revents & POLLIN) {
            accept_client(s);
        }
        flush_events(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];
            char buf[4096];
            ssize_t r;

            if (c->fd < 0 || pfd[2 + i].fd != c->fd ||
                !(pfd[2 + i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            r = recv(c->fd, buf, sizeof(buf), 0);
            if (r <= 0) {
                conn_close(c);
                continue;
            }
            feed(s, c, buf, (size_t)r);
        }
        flush_events(s);
        vm_reap(s->vm);
    }
    flush_events(s);
    return 0;
}
