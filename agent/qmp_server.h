/* SPDX-License-Identifier: MIT */
/*
 * qmp_server.h - the QMP server's insides, shared by its files: qmp.c
 * (the I/O thread: sockets, requests, the loop), qmp_conn.c (each
 * client's output and the queues between the threads) and qmp_exec.c
 * (running commands: in band on the dispatcher thread, out of band on
 * the I/O thread).  Private to the agent program.
 */
#ifndef VMIG_AGENT_QMP_SERVER_H
#define VMIG_AGENT_QMP_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>
#include "qmp.h"

#define QMP_MAX_CLIENTS 16
#define QMP_QUEUE_MAX 8 /* in-band requests of an "oob" client (QEMU's) */
#define QMP_NEGOTIATE_MS 10000
#define QMP_MAX_OUT (8u << 20) /* unread output before a client is dropped */
#define QMP_FLUSH_MS 1000      /* output flushed at exit at most that long */
#define QMP_LINGER_MS 2000     /* a closed client's input discarded that long */

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
    uint64_t linger_until; /* non-zero: write side shut, input discarded
                            * until the client's EOF or this time */
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

/* qmp_conn.c */
char *qmp_error_line(const char *cls, const char *desc, json_object *id,
                     size_t *len);
char *qmp_return_line(json_object *ret, json_object *id, size_t *len);
void qmp_post(struct qmp_server *s, int slot, uint64_t gen, char *line,
              size_t len, bool done, int caps);
void qmp_request_quit(struct qmp_server *s);
bool qmp_quitting(struct qmp_server *s);
void qmp_drop_jobs_of(struct qmp_server *s, int slot, uint64_t gen);
void qmp_conn_close(struct qmp_server *s, struct conn *c);
void qmp_conn_linger(struct qmp_server *s, struct conn *c);
void qmp_conn_discard(struct qmp_server *s, struct conn *c);
bool qmp_conn_flush(struct qmp_server *s, struct conn *c);
void qmp_conn_put(struct qmp_server *s, struct conn *c, const char *line,
                  size_t len);
void qmp_conn_say(struct qmp_server *s, struct conn *c, const char *desc);
void qmp_drain(struct qmp_server *s);

/* qmp_exec.c */
void qmp_push_job(struct qmp_server *s, struct conn *c, struct job *j);
void qmp_reply_error(struct qmp_server *s, struct conn *c, const char *cls,
                     const char *desc, json_object *id);
json_object *qmp_caps(json_object *args, int *caps);
void *qmp_dispatcher(void *arg);
void qmp_run_oob(struct qmp_server *s, struct conn *c, const struct cmd_desc *d,
                 json_object *args, json_object *id);
void qmp_stop_dispatcher(struct qmp_server *s);

#endif
