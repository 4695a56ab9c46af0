/* SPDX-License-Identifier: MIT */
/*
 * qmp_exec.c - running QMP commands: the job queue and the dispatcher
 * thread that runs in-band commands one at a time in arrival order,
 * capabilities negotiation, and out-of-band commands run on the I/O
 * thread.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "qmp_server.h"

/* ------------------------------------------------------------ dispatch */

void
qmp_push_job(struct qmp_server *s, struct conn *c, struct job *j)
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
void
qmp_reply_error(struct qmp_server *s, struct conn *c, const char *cls,
                const char *desc, json_object *id)
{
    struct job *j;

    if (c->inflight == 0) {
        size_t len = 0;
        char *line = qmp_error_line(cls, desc, id, &len);

        qmp_conn_put(s, c, line, len);
        free(line);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    j->line = qmp_error_line(cls, desc, id, &j->len);
    qmp_push_job(s, c, j);
}

/*
 * qmp_capabilities: enter command mode, with "oob" if asked (the only
 * capability offered; every element was checked against its values).
 */
json_object *
qmp_caps(json_object *args, int *caps)
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
    ret = d->fn != NULL ? d->fn(&x) : qmp_caps(args, caps);
    *quit = ret != NULL && x.quit;
    if (ret == NULL) {
        return qmp_error_line(x.cls != NULL ? x.cls : "GenericError", x.err, id,
                              len);
    }
    return qmp_return_line(ret, id, len);
}

void *
qmp_dispatcher(void *arg)
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
            qmp_post(s, j->slot, j->gen, j->line, j->len, true, caps);
            if (quit && !qmp_quitting(s)) {
                /* after the reply, as QEMU's quit */
                json_object *d = json_object_new_object();

                json_object_object_add(d, "guest", json_object_new_boolean(0));
                json_object_object_add(d, "reason",
                                       json_object_new_string("host-qmp-quit"));
                qmp_emit(s, "SHUTDOWN", d);
                qmp_request_quit(s);
            }
        } else {
            qmp_post(s, j->slot, j->gen, j->line, j->len, true, 0);
        }
        json_object_put(j->args);
        json_object_put(j->id);
        free(j);
        pthread_mutex_lock(&s->jlock);
    }
    pthread_mutex_unlock(&s->jlock);
    return NULL;
}

/* Run a command now, on the I/O thread; its reply goes out at once. */
void
qmp_run_oob(struct qmp_server *s, struct conn *c, const struct cmd_desc *d,
            json_object *args, json_object *id)
{
    size_t len = 0;
    int caps;
    bool quit; /* quit is in band only */
    char *line = run_cmd(s, d, args, id, &len, &caps, &quit);

    qmp_drain(s); /* events it raised first, as in-band */
    if (caps != 0) {
        c->negotiated = true;
        c->oob = caps == 2;
    }
    qmp_conn_put(s, c, line, len);
    free(line);
}

void
qmp_stop_dispatcher(struct qmp_server *s)
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
        qmp_drop_jobs_of(s, i, s->conn[i].gen);
    }
}
