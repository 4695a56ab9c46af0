/* SPDX-License-Identifier: MIT */
/*
 * qmp_conn.c - the QMP server's output: reply and error lines, the one
 * output queue every thread posts to (events too) and the I/O thread
 * drains into each client's buffer, writing it out, and closing a
 * client (its queued jobs dropped).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <vmig/log.h>
#include "qmp_server.h"

uint64_t
qmp_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ messages */

char *
qmp_error_line(const char *cls, const char *desc, json_object *id, size_t *len)
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

char *
qmp_return_line(json_object *ret, json_object *id, size_t *len)
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
void
qmp_post(struct qmp_server *s, int slot, uint64_t gen, char *line, size_t len,
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
        qmp_post(s, -1, 0, line, len, false, 0);
    }
}

void
qmp_request_quit(struct qmp_server *s)
{
    __atomic_store_n(&s->quit, 1, __ATOMIC_RELEASE);
}

bool
qmp_quitting(struct qmp_server *s)
{
    return __atomic_load_n(&s->quit, __ATOMIC_ACQUIRE) != 0;
}

/* ------------------------------------------------------------ clients */

void
qmp_drop_jobs_of(struct qmp_server *s, int slot, uint64_t gen)
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
void
qmp_conn_close(struct qmp_server *s, struct conn *c)
{
    if (c->fd < 0) {
        return;
    }
    close(c->fd);
    c->fd = -1;
    c->linger_until = 0;
    qmp_framer_free(&c->in);
    free(c->obuf);
    c->obuf = NULL;
    c->ooff = c->olen = c->ocap = 0;
    qmp_drop_jobs_of(s, (int)(c - s->conn), c->gen);
}

/*
 * Close @c once the client has read what we sent. Closing a socket with
 * unread input makes the kernel reset the connection, and the client can
 * lose our last line (the error saying why) to that reset. So the write
 * side is shut first (the client reads our lines, then EOF) and what the
 * client still sends is read and discarded until its EOF, for
 * QMP_LINGER_MS at most; then the socket is closed.
 */
void
qmp_conn_linger(struct qmp_server *s, struct conn *c)
{
    if (c->fd < 0 || c->linger_until != 0) {
        return;
    }
    if (shutdown(c->fd, SHUT_WR) < 0) {
        qmp_conn_close(s, c); /* the client is gone already */
        return;
    }
    c->linger_until = qmp_now_ms() + QMP_LINGER_MS;
}

/* Discard a lingering client's input; closed on its EOF or an error. */
void
qmp_conn_discard(struct qmp_server *s, struct conn *c)
{
    char buf[65536];

    for (int i = 0; i < 16 && c->fd >= 0; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            qmp_conn_close(s, c);
        }
    }
}

/* Write what we can without blocking; false when the client is gone. */
bool
qmp_conn_flush(struct qmp_server *s, struct conn *c)
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
            qmp_conn_close(s, c);
            return false;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    if (c->fd >= 0 && c->closing && c->inflight == 0) {
        qmp_conn_linger(s, c);
        return false;
    }
    return c->fd >= 0;
}

void
qmp_conn_put(struct qmp_server *s, struct conn *c, const char *line, size_t len)
{
    if (c->fd < 0 || c->linger_until != 0 || line == NULL) {
        return;
    }
    if (c->olen - c->ooff + len > QMP_MAX_OUT) {
        vmig_log(s->vm->ctx, VMIG_LOG_WARNING,
                 "QMP: dropping client pid %d: it left %u bytes of replies "
                 "and events unread",
                 (int)c->pid, QMP_MAX_OUT);
        qmp_conn_close(s, c);
        return;
    }
    if (c->olen + len > c->ocap) {
        size_t cap = (c->olen + len) * 2;
        char *p = realloc(c->obuf, cap);

        if (p == NULL) {
            qmp_conn_close(s, c);
            return;
        }
        c->obuf = p;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, line, len);
    c->olen += len;
}

/* A one-line error straight to @c (outside the in-band order). */
void
qmp_conn_say(struct qmp_server *s, struct conn *c, const char *desc)
{
    size_t len = 0;
    char *line = qmp_error_line("GenericError", desc, NULL, &len);

    qmp_conn_put(s, c, line, len);
    free(line);
}

/* Write everything queued to the clients it is for. */
void
qmp_drain(struct qmp_server *s)
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
                    qmp_conn_put(s, &s->conn[i], q->line, q->len);
                }
            }
        } else {
            struct conn *c = &s->conn[q->slot];

            if (c->fd >= 0 && c->gen == q->gen) {
                if (q->caps != 0) {
                    c->negotiated = true;
                    c->oob = q->caps == 2;
                }
                qmp_conn_put(s, c, q->line, q->len);
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
