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
#include <time.h>
#include <unistd.h>
#include <vmig/log.h>
#include "qmp.h"

#define QMP_MAX_CLIENTS 16
#define QMP_QUEUE_MAX 8 /* in-band requests of an "oob" client (QEMU's) */
#define QMP_NEGOTIATE_MS 10000
#define QMP_MAX_OUT (8u << 20) /* unread output before a client is dropped */
#define QMP_FLUSH_MS 1000      /* output flushed at exit at most that long */

struct conn {
    int fd;       /* -1: a free slot */
    uint64_t gen; /* tells this connection from the slot's earlier ones */
    struct qmp_framer in;
    char ibuf[4096]; /* received, not yet framed */
    size_t ioff;
    size_t ilen;
    char *obuf; /* to send */
    size_t ooff;
    size_t olen;
    size_t ocap;
    bool negotiated;       /* command mode */
    bool oob;              /* capability "oob" enabled */
    bool closing;          /* close once the output is out */
    unsigned int inflight; /* in-band requests queued or running */
    uint64_t active_ms;    /* accepted, or last request read */
    pid_t pid;
    uid_t uid;
};

/* Output for the I/O thread to write, from any thread. */
struct out {
    int slot; /* -1: an event, for every client in command mode */
    uint64_t gen;
    char *line;
    size_t len;
    bool done; /* it ends an in-band request */
    int caps;  /* qmp_capabilities succeeded: 1, with oob: 2 */
    struct out *next;
};

/* An in-band request for the dispatcher. */
struct job {
    int slot;
    uint64_t gen;
    const struct cmd_desc *d; /* NULL: just send @line */
    json_object *args;
    json_object *id;
    char *line;
    size_t len;
    struct job *next;
};

struct qmp_server {
    struct agent_vm *vm;
    int lfd;
    int evfd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct conn conn[QMP_MAX_CLIENTS];
    uint64_t next_gen;

    pthread_mutex_t olock; /* guards the output queue */
    struct out *ohead;
    struct out **otail;

    pthread_mutex_t jlock; /* guards the job queue and jstop */
    pthread_cond_t jcond;
    struct job *jhead;
    struct job **jtail;
    bool jstop;
    pthread_t disp;
    bool disp_running;

    int quit; /* atomic: a command asked to quit */
};

volatile sig_atomic_t agent_signalled;

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ messages */

static char *
error_line(const char *cls, const char *desc, json_object *id, size_t *len)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();
    char *line;

    json_object_object_add(e, "class", json_object_new_string(cls));
    json_object_object_add(e, "desc", json_object_new_string(desc));
    json_object_object_add(o, "error", e);
    if (id != NULL) {
        json_object_object_add(o, "id", json_object_get(id));
    }
    line = qmp_line(o, len);
    json_object_put(o);
    return line;
}

static char *
return_line(json_object *ret, json_object *id, size_t *len)
{
    json_object *o = json_object_new_object();
    char *line;

    json_object_object_add(o, "return", ret);
    if (id != NULL) {
        json_object_object_add(o, "id", json_object_get(id));
    }
    line = qmp_line(o, len);
    json_object_put(o);
    return line;
}

/* Queue @line (ours now) for the I/O thread; NULL lines are dropped. */
static void
post(struct qmp_server *s, int slot, uint64_t gen, char *line, size_t len,
     bool done, int caps)
{
    struct out *q = calloc(1, sizeof(*q));
    uint64_t one = 1;

    if (q == NULL) {
        free(line);
        return;
    }
    *q = (struct out){.slot = slot,
                      .gen = gen,
                      .line = line,
                      .len = len,
                      .done = done,
                      .caps = caps};
    pthread_mutex_lock(&s->olock);
    *s->otail = q;
    s->otail = &q->next;
    pthread_mutex_unlock(&s->olock);
    if (write(s->evfd, &one, sizeof(one)) < 0) {
        return; /* the loop polls with a timeout and drains anyway */
    }
}

void
qmp_emit(void *server, const char *event, json_object *data)
{
    struct qmp_server *s = server;
    struct timeval tv;
    json_object *o, *ts;
    size_t len = 0;
    char *line;

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
    line = qmp_line(o, &len);
    json_object_put(o);
    if (line != NULL) {
        post(s, -1, 0, line, len, false, 0);
    }
}

static void
qmp_request_quit(struct qmp_server *s)
{
    __atomic_store_n(&s->quit, 1, __ATOMIC_RELEASE);
}

static bool
quitting(struct qmp_server *s)
{
    return __atomic_load_n(&s->quit, __ATOMIC_ACQUIRE) != 0;
}

/* ------------------------------------------------------------ clients */

static void
drop_jobs_of(struct qmp_server *s, int slot, uint64_t gen)
{
    pthread_mutex_lock(&s->jlock);
    for (struct job **pp = &s->jhead; *pp != NULL;) {
        struct job *j = *pp;

        if (j->slot == slot && j->gen == gen) {
            *pp = j->next;
            json_object_put(j->args);
            json_object_put(j->id);
            free(j->line);
            free(j);
            continue;
        }
        pp = &j->next;
    }
    s->jtail = &s->jhead;
    while (*s->jtail != NULL) {
        s->jtail = &(*s->jtail)->next;
    }
    pthread_mutex_unlock(&s->jlock);
}

/* Close a client; its requests not yet run are dropped, as QEMU does. */
static void
conn_close(struct qmp_server *s, struct conn *c)
{
    if (c->fd < 0) {
        return;
    }
    close(c->fd);
    c->fd = -1;
    qmp_framer_free(&c->in);
    free(c->obuf);
    c->obuf = NULL;
    c->ooff = c->olen = c->ocap = 0;
    drop_jobs_of(s, (int)(c - s->conn), c->gen);
}

/* Write what we can without blocking; false when the client is gone. */
static bool
conn_flush(struct qmp_server *s, struct conn *c)
{
    while (c->fd >= 0 && c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        if (n <= 0) {
            conn_close(s, c);
            return false;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    if (c->fd >= 0 && c->closing && c->inflight == 0) {
        conn_close(s, c);
        return false;
    }
    return c->fd >= 0;
}

static void
conn_put(struct qmp_server *s, struct conn *c, const char *line, size_t len)
{
    if (c->fd < 0 || line == NULL) {
        return;
    }
    if (c->olen - c->ooff + len > QMP_MAX_OUT) {
        vmig_log(s->vm->ctx, VMIG_LOG_WARNING,
                 "QMP: dropping client pid %d: it left %u bytes of replies "
                 "and events unread",
                 (int)c->pid, QMP_MAX_OUT);
        conn_close(s, c);
        return;
    }
    if (c->olen + len > c->ocap) {
        size_t cap = (c->olen + len) * 2;
        char *p = realloc(c->obuf, cap);

        if (p == NULL) {
            conn_close(s, c);
            return;
        }
        c->obuf = p;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, line, len);
    c->olen += len;
}

/* A one-line error straight to @c (outside the in-band order). */
static void
conn_say(struct qmp_server *s, struct conn *c, const char *desc)
{
    size_t len = 0;
    char *line = error_line("GenericError", desc, NULL, &len);

    conn_put(s, c, line, len);
    free(line);
}

/* Write everything queued to the clients it is for. */
static void
drain(struct qmp_server *s)
{
    struct out *q;
    uint64_t v;

    if (read(s->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        v = 0;
    }
    pthread_mutex_lock(&s->olock);
    q = s->ohead;
    s->ohead = NULL;
    s->otail = &s->ohead;
    pthread_mutex_unlock(&s->olock);
    while (q != NULL) {
        struct out *next = q->next;

        if (q->slot < 0) {
            for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
                if (s->conn[i].negotiated) {
                    conn_put(s, &s->conn[i], q->line, q->len);
                }
            }
        } else {
            struct conn *c = &s->conn[q->slot];

            if (c->fd >= 0 && c->gen == q->gen) {
                if (q->caps != 0) {
                    c->negotiated = true;
                    c->oob = q->caps == 2;
                }
                conn_put(s, c, q->line, q->len);
                if (q->done && c->inflight > 0) {
                    c->inflight--;
                }
            }
        }
        free(q->line);
        free(q);
        q = next;
    }
}

/* ------------------------------------------------------------ dispatch */

static void
push_job(struct qmp_server *s, struct conn *c, struct job *j)
{
    j->slot = (int)(c - s->conn);
    j->gen = c->gen;
    c->inflight++;
    pthread_mutex_lock(&s->jlock);
    *s->jtail = j;
    s->jtail = &j->next;
    pthread_cond_signal(&s->jcond);
    pthread_mutex_unlock(&s->jlock);
}

/*
 * An error found before any command ran: straight out when nothing of
 * this client is in flight, else behind its replies, so they keep their
 * order (the dispatcher may be busy: no need to wait for it otherwise).
 */
static void
reply_error(struct qmp_server *s, struct conn *c, const char *cls,
            const char *desc, json_object *id)
{
    struct job *j;

    if (c->inflight == 0) {
        size_t len = 0;
        char *line = error_line(cls, desc, id, &len);

        conn_put(s, c, line, len);
        free(line);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    j->line = error_line(cls, desc, id, &j->len);
    push_job(s, c, j);
}

/*
 * qmp_capabilities: enter command mode, with "oob" if asked (the only
 * capability offered; every element was checked against its values).
 */
static json_object *
capabilities(json_object *args, int *caps)
{
    json_object *en;

    *caps = 1;
    if (args != NULL && json_object_object_get_ex(args, "enable", &en) &&
        json_object_array_length(en) > 0) {
        *caps = 2;
    }
    return json_object_new_object();
}

/* Run @d with @args: the reply line; *caps for qmp_capabilities, *quit
 * when the agent is to quit once it is out. */
static char *
run_cmd(struct qmp_server *s, const struct cmd_desc *d, json_object *args,
        json_object *id, size_t *len, int *caps, bool *quit)
{
    struct cmd_ctx x = {.s = s, .vm = s->vm, .args = args};
    json_object *ret;

    *caps = 0;
    *quit = false;
    ret = d->fn != NULL ? d->fn(&x) : capabilities(args, caps);
    *quit = ret != NULL && x.quit;
    if (ret == NULL) {
        return error_line(x.cls != NULL ? x.cls : "GenericError", x.err, id,
                          len);
    }
    return return_line(ret, id, len);
}

static void *
dispatcher(void *arg)
{
    struct qmp_server *s = arg;

    pthread_mutex_lock(&s->jlock);
    for (;;) {
        struct job *j;
        struct timespec dl;

        while (s->jhead == NULL && !s->jstop) {
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 100 * 1000 * 1000;
            if (dl.tv_nsec >= 1000000000) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&s->jcond, &s->jlock, &dl) != 0) {
                /* idle: join a migration thread that ended */
                pthread_mutex_unlock(&s->jlock);
                vm_reap(s->vm);
                pthread_mutex_lock(&s->jlock);
            }
        }
        if (s->jstop) {
            break;
        }
        j = s->jhead;
        s->jhead = j->next;
        if (s->jhead == NULL) {
            s->jtail = &s->jhead;
        }
        pthread_mutex_unlock(&s->jlock);
        if (j->d != NULL) {
            bool quit;
            int caps;

            j->line = run_cmd(s, j->d, j->args, j->id, &j->len, &caps, &quit);
            post(s, j->slot, j->gen, j->line, j->len, true, caps);
            if (quit && !quitting(s)) {
                /* after the reply, as QEMU's quit */
                json_object *d = json_object_new_object();

                json_object_object_add(d, "guest", json_object_new_boolean(0));
                json_object_object_add(d, "reason",
                                       json_object_new_string("host-qmp-quit"));
                qmp_emit(s, "SHUTDOWN", d);
                qmp_request_quit(s);
            }
        } else {
            post(s, j->slot, j->gen, j->line, j->len, true, 0);
        }
        json_object_put(j->args);
        json_object_put(j->id);
        free(j);
        pthread_mutex_lock(&s->jlock);
    }
    pthread_mutex_unlock(&s->jlock);
    return NULL;
}

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
    char *line = error_line("GenericError", desc, id, &len);

    conn_put(s, c, line, len);
    free(line);
}

/* Run a command now, on the I/O thread; its reply goes out at once. */
static void
run_oob(struct qmp_server *s, struct conn *c, const struct cmd_desc *d,
        json_object *args, json_object *id)
{
    size_t len = 0;
    int caps;
    bool quit; /* quit is in band only */
    char *line = run_cmd(s, d, args, id, &len, &caps, &quit);

    drain(s); /* events it raised first, as in-band */
    if (caps != 0) {
        c->negotiated = true;
        c->oob = caps == 2;
    }
    conn_put(s, c, line, len);
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

    c->active_ms = now_ms();
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
        reply_error(s, c, "GenericError", err, id);
        return;
    }
    d = qmp_cmd_find(name);
    if (!c->negotiated && (d == NULL || d->fn != NULL)) {
        reply_error(s, c, "CommandNotFound",
                    "Expecting capabilities negotiation with "
                    "'qmp_capabilities'",
                    id);
        return;
    }
    if (c->negotiated && d != NULL && d->fn == NULL) {
        reply_error(s, c, "CommandNotFound",
                    "Capabilities negotiation is already complete, command "
                    "ignored",
                    id);
        return;
    }
    if (d == NULL) {
        snprintf(err, sizeof(err), "The command %s has not been found", name);
        reply_error(s, c, "CommandNotFound", err, id);
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
            reply_error(s, c, "GenericError", err, id);
        }
        return;
    }
    if (oob || d->fn == NULL) {
        /* out of band, or qmp_capabilities: only this connection's state
         * changes, so a busy dispatcher cannot keep a client (`vmig
         * cancel`) from negotiating */
        run_oob(s, c, d, args, id);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    j->d = d;
    j->args = json_object_get(args);
    j->id = json_object_get(id);
    push_job(s, c, j);
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
            reply_error(s, c, "GenericError", fr.msg, NULL);
            break;
        case QMP_FRAME_CLOSE:
            vmig_log(s->vm->ctx, VMIG_LOG_WARNING,
                     "QMP: client pid %d sent more than %u bytes without a "
                     "complete request: closing it",
                     (int)c->pid, QMP_MAX_REQUEST);
            if (fr.msg[0] != '\0') {
                reply_error(s, c, "GenericError", fr.msg, NULL);
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
    return c->fd >= 0 && !c->closing && c->ioff == c->ilen &&
           c->inflight < queue_max(c);
}

static void
conn_read(struct qmp_server *s, struct conn *c)
{
    ssize_t n = recv(c->fd, c->ibuf, sizeof(c->ibuf), MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn_close(s, c);
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
    conn_put(s, c, line, len);
    free(line);
}

/* Refuse @fd with a one-line reason (best effort: it is not ours). */
static void
refuse(int fd, const char *desc)
{
    size_t len = 0;
    char *line = error_line("GenericError", desc, NULL, &len);

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
            conn_say(s, c, msg);
            conn_flush(s, c);
            conn_close(s, c);
        }
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->gen = ++s->next_gen;
        c->pid = cr.pid;
        c->uid = cr.uid;
        c->active_ms = now_ms();
        qmp_framer_init(&c->in);
        greet(s, c);
    }
}

/* Clients that never negotiate go; so do those we were told to close. */
static void
expire(struct qmp_server *s, uint64_t now)
{
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        struct conn *c = &s->conn[i];

        if (c->fd >= 0 && !c->negotiated && !c->closing && c->inflight == 0 &&
            now - c->active_ms > QMP_NEGOTIATE_MS) {
            conn_say(s, c,
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
    drain(s);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        conn_flush(s, &s->conn[i]);
        conn_close(s, &s->conn[i]);
    }
    close(s->lfd);
    unlink(s->path);
    close(s->evfd);
    pthread_mutex_destroy(&s->olock);
    pthread_mutex_destroy(&s->jlock);
    pthread_cond_destroy(&s->jcond);
    free(s);
}

static void
stop_dispatcher(struct qmp_server *s)
{
    if (!s->disp_running) {
        return;
    }
    pthread_mutex_lock(&s->jlock);
    s->jstop = true;
    pthread_cond_signal(&s->jcond);
    pthread_mutex_unlock(&s->jlock);
    pthread_join(s->disp, NULL);
    s->disp_running = false;
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        drop_jobs_of(s, i, s->conn[i].gen);
    }
}

/* At exit: what is queued goes out, for a moment at most. */
static void
final_flush(struct qmp_server *s)
{
    uint64_t end = now_ms() + QMP_FLUSH_MS;

    drain(s);
    for (;;) {
        struct pollfd pfd[QMP_MAX_CLIENTS];
        int n = 0;
        uint64_t now = now_ms();

        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];

            if (c->fd >= 0 && conn_flush(s, c) && c->ooff < c->olen) {
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

    if (pthread_create(&s->disp, NULL, dispatcher, s) != 0) {
        return -EAGAIN;
    }
    s->disp_running = true;
    while (!quitting(s) && !agent_signalled) {
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
            nclients += c->fd >= 0;
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
        drain(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            struct conn *c = &s->conn[i];
            short re = pfd[2 + i].revents;

            if (c->fd < 0 || pfd[2 + i].fd != c->fd) {
                continue;
            }
            if ((re & POLLOUT) && !conn_flush(s, c)) {
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                conn_read(s, c);
            }
        }
        drain(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            /* input held back while a request was in flight */
            process_input(s, &s->conn[i]);
            conn_flush(s, &s->conn[i]);
        }
        expire(s, now_ms());
    }
    if (agent_signalled && !quitting(s)) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "guest", json_object_new_boolean(0));
        json_object_object_add(d, "reason",
                               json_object_new_string("host-signal"));
        qmp_emit(s, "SHUTDOWN", d);
    }
    stop_dispatcher(s);
    final_flush(s);
    return ret;
}
