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
#include "agent.h"

#define QMP_MAX_CLIENTS 8
/* An unfinished JSON value larger than this is hostile: drop it. */
#define QMP_MAX_PENDING (1u << 20)

struct conn {
    int fd;
    json_tokener *tok;
    bool negotiated;
    size_t pending;
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

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap + n + 1) * 2;
        char *np = realloc(b->p, cap);

        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/*
 * Serialize the way QEMU does ({"a": 1, "b": [1, 2]}): ": " after keys,
 * ", " between members, nothing inside empty containers.  Scalars and
 * string escaping come from json-c.
 */
static void
sb_json(struct sbuf *b, json_object *o)
{
    bool first = true;

    switch (json_object_get_type(o)) {
    case json_type_object:
        sb_str(b, "{");
        json_object_object_foreach(o, key, val)
        {
            json_object *k = json_object_new_string(key);

            sb_str(b, first ? "" : ", ");
            sb_str(b,
                   json_object_to_json_string_ext(k, JSON_C_TO_STRING_PLAIN));
            sb_str(b, ": ");
            json_object_put(k);
            sb_json(b, val);
            first = false;
        }
        sb_str(b, "}");
        break;
    case json_type_array:
        sb_str(b, "[");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            sb_str(b, i == 0 ? "" : ", ");
            sb_json(b, json_object_array_get_idx(o, i));
        }
        sb_str(b, "]");
        break;
    default:
        sb_str(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        break;
    }
}

/* One QMP line: the value in QEMU's layout, then CRLF.  Caller frees. */
static char *
qmp_line(json_object *o)
{
    struct sbuf b = {0};

    sb_json(&b, o);
    sb_str(&b, "\r\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static void
conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->tok != NULL) {
        json_tokener_free(c->tok);
        c->tok = NULL;
    }
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
    char *line = qmp_line(o);

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
qmp_emit(struct qmp_server *s, const char *event, json_object *data)
{
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
        q->line = qmp_line(o);
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

/* ------------------------------------------------------------ arguments */

struct arg_spec {
    const char *name;
    json_type type;
    bool required;
};

/* QEMU's messages for missing, unexpected and mistyped parameters. */
static bool
check_args(json_object *args, const struct arg_spec *spec, char *err,
           size_t len)
{
    if (args != NULL) {
        json_object_object_foreach(args, key, val)
        {
            const struct arg_spec *a = spec;

            while (a != NULL && a->name != NULL && strcmp(a->name, key) != 0) {
                a++;
            }
            if (a == NULL || a->name == NULL) {
                snprintf(err, len, "Parameter '%s' is unexpected", key);
                return false;
            }
            if (!json_object_is_type(val, a->type)) {
                snprintf(err, len,
                         "Invalid parameter type for '%s', expected: %s", key,
                         a->type == json_type_int       ? "integer"
                         : a->type == json_type_string  ? "string"
                         : a->type == json_type_boolean ? "boolean"
                                                        : "array");
                return false;
            }
        }
    }
    for (const struct arg_spec *a = spec; a != NULL && a->name != NULL; a++) {
        if (a->required &&
            (args == NULL || !json_object_object_get_ex(args, a->name, NULL))) {
            snprintf(err, len, "Parameter '%s' is missing", a->name);
            return false;
        }
    }
    return true;
}

static const char *
arg_str(json_object *args, const char *name)
{
    json_object *v;

    if (args == NULL || !json_object_object_get_ex(args, name, &v)) {
        return NULL;
    }
    return json_object_get_string(v);
}

/* ------------------------------------------------------------ commands */

struct cmd_ctx {
    struct qmp_server *s;
    struct conn *c;
    json_object *args;
    char err[512];
    const char *cls; /* error class; GenericError when NULL */
};

typedef json_object *cmd_fn(struct cmd_ctx *x);

static json_object *
cmd_capabilities(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{"enable", json_type_array, false},
                                           {NULL, 0, false}};
    json_object *en;

    if (!check_args(x->args, spec, x->err, sizeof(x->err))) {
        return NULL;
    }
    if (x->args != NULL && json_object_object_get_ex(x->args, "enable", &en) &&
        json_object_array_length(en) > 0) {
        snprintf(x->err, sizeof(x->err), "Capability %s not available",
                 json_object_get_string(json_object_array_get_idx(en, 0)));
        return NULL;
    }
    x->c->negotiated = true;
    return json_object_new_object();
}

static json_object *
cmd_query_status(struct cmd_ctx *x)
{
    json_object *o = json_object_new_object();
    const char *rs = vm_runstate(x->s->vm);

    json_object_object_add(o, "status", json_object_new_string(rs));
    json_object_object_add(o, "singlestep", json_object_new_boolean(0));
    json_object_object_add(o, "running",
                           json_object_new_boolean(strcmp(rs, "running") == 0));
    return o;
}

static json_object *
cmd_query_version(struct cmd_ctx *x)
{
    json_object *o = json_object_new_object(), *q = json_object_new_object();

    (void)x;
    json_object_object_add(q, "major", json_object_new_int(VMIG_VERSION_MAJOR));
    json_object_object_add(q, "minor", json_object_new_int(VMIG_VERSION_MINOR));
    json_object_object_add(q, "micro", json_object_new_int(VMIG_VERSION_PATCH));
    json_object_object_add(o, "qemu", q);
    json_object_object_add(o, "package",
                           json_object_new_string("vmig " VMIG_VERSION_STRING));
    return o;
}

/* Precopy figures of query-migrate (see docs/agent.md). */
static json_object *
precopy_stats(const struct vmig_engine_stats *st)
{
    json_object *p = json_object_new_object();
    unsigned int restarts = 0;

    for (unsigned int i = 0; i < st->ndevices; i++) {
        restarts += st->dev[i].restarts;
    }
    json_object_object_add(p, "enabled", json_object_new_boolean(st->precopy));
    json_object_object_add(p, "iterations",
                           json_object_new_int64(st->iterations));
    json_object_object_add(p, "precopy-bytes",
                           json_object_new_int64((int64_t)st->precopy_bytes));
    json_object_object_add(p, "stopcopy-bytes",
                           json_object_new_int64((int64_t)st->stopcopy_bytes));
    json_object_object_add(p, "dirty-pages",
                           json_object_new_int64((int64_t)st->dirty_pages));
    json_object_object_add(
        p, "estimated-stopcopy-bytes",
        json_object_new_int64((int64_t)st->est_stopcopy_bytes));
    json_object_object_add(
        p, "expected-downtime",
        json_object_new_int64((int64_t)st->expected_downtime_ms));
    json_object_object_add(
        p, "switchover-ack-ms",
        json_object_new_int64((int64_t)st->switchover_ack_ms));
    json_object_object_add(p, "device-restarts",
                           json_object_new_int64(restarts));
    return p;
}

static json_object *
cmd_query_migrate(struct cmd_ctx *x)
{
    struct vmig_engine_stats *st = malloc(sizeof(*st));
    json_object *o, *ram, *vfio, *devs;

    if (st == NULL) {
        snprintf(x->err, sizeof(x->err), "out of memory");
        return NULL;
    }
    vmig_engine_stats(x->s->vm->eng, st);
    o = json_object_new_object();
    if (st->status == VMIG_ENGINE_NONE) {
        char err[256];

        free(st);
        if (vm_connect_error(x->s->vm, err, sizeof(err))) {
            /* the migration failed before reaching the peer */
            json_object_object_add(o, "status",
                                   json_object_new_string("failed"));
            json_object_object_add(o, "error-desc",
                                   json_object_new_string(err));
        }
        return o; /* QEMU answers {} before any migration */
    }
    json_object_object_add(
        o, "status",
        json_object_new_string(vmig_engine_status_name(st->status)));
    json_object_object_add(o, "total-time",
                           json_object_new_int64((int64_t)st->total_time_ms));
    json_object_object_add(o, "setup-time",
                           json_object_new_int64((int64_t)st->setup_time_ms));
    if (st->status == VMIG_ENGINE_COMPLETED &&
        st->role == VMIG_ENGINE_ROLE_SOURCE) {
        json_object_object_add(o, "downtime",
                               json_object_new_int64((int64_t)st->downtime_ms));
    } else if (st->status == VMIG_ENGINE_ACTIVE ||
               st->status == VMIG_ENGINE_DEVICE ||
               st->status == VMIG_ENGINE_SETUP) {
        json_object_object_add(
            o, "expected-downtime",
            json_object_new_int64((int64_t)st->expected_downtime_ms));
    }
    ram = json_object_new_object();
    json_object_object_add(ram, "transferred",
                           json_object_new_int64((int64_t)st->ram_transferred));
    json_object_object_add(ram, "remaining",
                           json_object_new_int64((int64_t)st->ram_remaining));
    json_object_object_add(ram, "total",
                           json_object_new_int64((int64_t)st->ram_total));
    json_object_object_add(ram, "duplicate",
                           json_object_new_int64((int64_t)st->ram_zero_pages));
    json_object_object_add(
        ram, "normal",
        json_object_new_int64(
            (int64_t)(st->ram_transferred / 4096 - st->ram_zero_pages)));
    json_object_object_add(
        ram, "normal-bytes",
        json_object_new_int64(
            (int64_t)(st->ram_transferred - st->ram_zero_pages * 4096)));
    json_object_object_add(ram, "mbps", json_object_new_double(st->mbps));
    json_object_object_add(ram, "dirty-sync-count",
                           json_object_new_int64(st->pass));
    json_object_object_add(ram, "page-size", json_object_new_int(4096));
    json_object_object_add(o, "ram", ram);
    vfio = json_object_new_object();
    json_object_object_add(vfio, "transferred",
                           json_object_new_int64((int64_t)st->dev_total));
    json_object_object_add(o, "vfio", vfio);
    devs = json_object_new_array();
    for (unsigned int i = 0; i < st->ndevices; i++) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name",
                               json_object_new_string(st->dev[i].name));
        json_object_object_add(
            d, "state",
            json_object_new_string(vmig_state_name(st->dev[i].state)));
        json_object_object_add(
            d, "transferred", json_object_new_int64((int64_t)st->dev[i].bytes));
        json_object_object_add(
            d, "config-bytes",
            json_object_new_int64((int64_t)st->dev[i].config_len));
        json_object_object_add(
            d, "precopy-bytes",
            json_object_new_int64((int64_t)st->dev[i].precopy_bytes));
        json_object_object_add(d, "restarts",
                               json_object_new_int64(st->dev[i].restarts));
        if (st->dev[i].verdict >= 0) {
            json_object_object_add(d, "compatible",
                                   json_object_new_boolean(st->dev[i].verdict));
        }
        if (st->dev[i].verdict == 0) {
            json_object_object_add(d, "reason",
                                   json_object_new_string(st->dev[i].reason));
        }
        json_object_array_add(devs, d);
    }
    json_object_object_add(o, "x-vmig-devices", devs);
    json_object_object_add(o, "x-vmig-precopy", precopy_stats(st));
    json_object_object_add(
        o, "x-vmig-role",
        json_object_new_string(
            st->role == VMIG_ENGINE_ROLE_SOURCE ? "source" : "destination"));
    if (st->status == VMIG_ENGINE_FAILED ||
        st->status == VMIG_ENGINE_CANCELLED) {
        json_object_object_add(o, "error-desc",
                               json_object_new_string(st->error));
    }
    free(st);
    return o;
}

static json_object *
cmd_migrate(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{"uri", json_type_string, true},
                                           {"detach", json_type_boolean, false},
                                           {"resume", json_type_boolean, false},
                                           {NULL, 0, false}};
    json_object *v;

    if (!check_args(x->args, spec, x->err, sizeof(x->err))) {
        return NULL;
    }
    if (json_object_object_get_ex(x->args, "resume", &v) &&
        json_object_get_boolean(v)) {
        snprintf(x->err, sizeof(x->err), "postcopy resume is not supported");
        return NULL;
    }
    if (vm_start_migration(x->s->vm, arg_str(x->args, "uri"), x->err,
                           sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

static json_object *
cmd_migrate_cancel(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{NULL, 0, false}};

    if (!check_args(x->args, spec, x->err, sizeof(x->err))) {
        return NULL;
    }
    if (vmig_engine_cancel(x->s->vm->eng) == 0) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "status",
                               json_object_new_string("cancelling"));
        qmp_emit(x->s, "MIGRATION", d);
    }
    return json_object_new_object();
}

static json_object *
cmd_migrate_incoming(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{"uri", json_type_string, true},
                                           {NULL, 0, false}};

    if (!check_args(x->args, spec, x->err, sizeof(x->err)) ||
        vm_start_incoming(x->s->vm, arg_str(x->args, "uri"), x->err,
                          sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

/*
 * Migration parameters.  QEMU's names where QEMU has the knob
 * (downtime-limit, max-bandwidth), x-vmig-* for ours.  Every argument is
 * checked before any is applied, so a bad value changes nothing.
 */
/* clang-format off */
static const struct arg_spec param_spec[] = {
    {"downtime-limit",                json_type_int,     false},
    {"max-bandwidth",                 json_type_int,     false},
    {"x-vmig-precopy",                json_type_boolean, false},
    {"x-vmig-precopy-max-iterations", json_type_int,     false},
    {"x-vmig-precopy-max-time",       json_type_int,     false},
    {"x-vmig-precopy-cap-action",     json_type_string,  false},
    {"x-vmig-reset-policy",           json_type_string,  false},
    {"x-vmig-max-restarts",           json_type_int,     false},
    {"x-vmig-allow-mixed-p2p",        json_type_boolean, false},
    {NULL, 0, false}};
/* clang-format on */

static bool
param_int(json_object *args, const char *name, int64_t max, int64_t *out,
          const char *unit, char *err, size_t len)
{
    json_object *v;

    if (args == NULL || !json_object_object_get_ex(args, name, &v)) {
        return true;
    }
    *out = json_object_get_int64(v);
    if (*out < 0 || *out > max) {
        /* QEMU's message; it spells its own parameters with '_' */
        snprintf(err, len,
                 "Parameter '%s' expects an integer in the range of 0 to "
                 "%lld%s",
                 strcmp(name, "downtime-limit") == 0  ? "downtime_limit"
                 : strcmp(name, "max-bandwidth") == 0 ? "max_bandwidth"
                                                      : name,
                 (long long)max, unit);
        return false;
    }
    return true;
}

static bool
param_enum(json_object *args, const char *name, const char *const *names,
           int *out, char *err, size_t len)
{
    json_object *v;
    const char *s;

    if (args == NULL || !json_object_object_get_ex(args, name, &v)) {
        return true;
    }
    s = json_object_get_string(v);
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    snprintf(err, len, "Parameter '%s' does not accept value '%s' (%s or %s)",
             name, s, names[0], names[1]);
    return false;
}

static const char *const cap_names[] = {"stop-copy", "abort", NULL};
static const char *const reset_names[] = {"restart", "abort", NULL};

int
qmp_params_apply(struct vmig_engine *eng, json_object *args, char *err,
                 size_t errlen)
{
    struct vmig_engine_params p;
    json_object *v;
    int64_t dl = -1, bw = -1, it = -1, tm = -1, rs = -1;
    int cap = -1, rp = -1;

    if (!check_args(args, param_spec, err, errlen) ||
        /* QEMU's range for downtime-limit */
        !param_int(args, "downtime-limit", 2000000, &dl, " milliseconds", err,
                   errlen) ||
        !param_int(args, "max-bandwidth", INT64_MAX, &bw, " bytes/second", err,
                   errlen) ||
        !param_int(args, "x-vmig-precopy-max-iterations", 1000000, &it,
                   " (0: the default, 30)", err, errlen) ||
        !param_int(args, "x-vmig-precopy-max-time", 86400000, &tm,
                   " milliseconds (0: no limit)", err, errlen) ||
        !param_int(args, "x-vmig-max-restarts", 1000, &rs,
                   " (0: the default, 3)", err, errlen) ||
        !param_enum(args, "x-vmig-precopy-cap-action", cap_names, &cap, err,
                    errlen) ||
        !param_enum(args, "x-vmig-reset-policy", reset_names, &rp, err,
                    errlen)) {
        return -EINVAL;
    }
    vmig_engine_get_params(eng, &p);
    if (dl >= 0) {
        p.downtime_limit_ms = (uint64_t)dl;
    }
    if (bw >= 0) {
        p.max_bandwidth = (uint64_t)bw;
    }
    if (it >= 0) {
        p.max_iterations = (unsigned int)it;
    }
    if (tm >= 0) {
        p.max_precopy_ms = (uint64_t)tm;
    }
    if (rs >= 0) {
        p.max_restarts = (unsigned int)rs;
    }
    if (cap >= 0) {
        p.cap_action =
            cap == 0 ? VMIG_ENGINE_CAP_STOP_COPY : VMIG_ENGINE_CAP_ABORT;
    }
    if (rp >= 0) {
        p.reset_policy =
            rp == 0 ? VMIG_ENGINE_RESET_RESTART : VMIG_ENGINE_RESET_ABORT;
    }
    if (args != NULL && json_object_object_get_ex(args, "x-vmig-precopy", &v)) {
        p.no_precopy = !json_object_get_boolean(v);
    }
    if (args != NULL &&
        json_object_object_get_ex(args, "x-vmig-allow-mixed-p2p", &v)) {
        p.allow_mixed_p2p = json_object_get_boolean(v);
    }
    vmig_engine_set_params(eng, &p);
    return 0;
}

static json_object *
cmd_set_params(struct cmd_ctx *x)
{
    if (qmp_params_apply(x->s->vm->eng, x->args, x->err, sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

static json_object *
cmd_query_params(struct cmd_ctx *x)
{
    struct vmig_engine_params p;
    json_object *o = json_object_new_object();

    vmig_engine_get_params(x->s->vm->eng, &p);
    json_object_object_add(o, "downtime-limit",
                           json_object_new_int64((int64_t)p.downtime_limit_ms));
    json_object_object_add(o, "max-bandwidth",
                           json_object_new_int64((int64_t)p.max_bandwidth));
    json_object_object_add(o, "x-vmig-precopy",
                           json_object_new_boolean(!p.no_precopy));
    json_object_object_add(o, "x-vmig-precopy-max-iterations",
                           json_object_new_int64(p.max_iterations));
    json_object_object_add(o, "x-vmig-precopy-max-time",
                           json_object_new_int64((int64_t)p.max_precopy_ms));
    json_object_object_add(
        o, "x-vmig-precopy-cap-action",
        json_object_new_string(
            cap_names[p.cap_action == VMIG_ENGINE_CAP_ABORT ? 1 : 0]));
    json_object_object_add(
        o, "x-vmig-reset-policy",
        json_object_new_string(
            reset_names[p.reset_policy == VMIG_ENGINE_RESET_ABORT ? 1 : 0]));
    json_object_object_add(o, "x-vmig-max-restarts",
                           json_object_new_int64(p.max_restarts));
    json_object_object_add(o, "x-vmig-allow-mixed-p2p",
                           json_object_new_boolean(p.allow_mixed_p2p));
    json_object_object_add(o, "x-vmig-ram-precopy",
                           json_object_new_boolean(x->s->vm->ram_precopy));
    if (p.test_one_phase_stop) {
        /* VMIG_TEST_ONE_PHASE_STOP=1: shown only when on */
        json_object_object_add(o, "x-vmig-test-one-phase-stop",
                               json_object_new_boolean(1));
    }
    return o;
}

static json_object *
cmd_device_reset(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{"device", json_type_string, true},
                                           {NULL, 0, false}};

    if (!check_args(x->args, spec, x->err, sizeof(x->err)) ||
        vm_device_reset(x->s->vm, arg_str(x->args, "device"), x->err,
                        sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

/*
 * Migration capabilities: QEMU's "events" (MIGRATION events are always
 * sent here) is the only one; management layers that set it keep working.
 */
static json_object *
cmd_query_caps(struct cmd_ctx *x)
{
    json_object *a = json_object_new_array(), *c = json_object_new_object();

    (void)x;
    json_object_object_add(c, "capability", json_object_new_string("events"));
    json_object_object_add(c, "state", json_object_new_boolean(1));
    json_object_array_add(a, c);
    return a;
}

static json_object *
cmd_set_caps(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {
        {"capabilities", json_type_array, true}, {NULL, 0, false}};
    json_object *caps;

    if (!check_args(x->args, spec, x->err, sizeof(x->err))) {
        return NULL;
    }
    json_object_object_get_ex(x->args, "capabilities", &caps);
    for (size_t i = 0; i < json_object_array_length(caps); i++) {
        json_object *c = json_object_array_get_idx(caps, i), *name, *st;

        if (!json_object_is_type(c, json_type_object) ||
            !json_object_object_get_ex(c, "capability", &name) ||
            !json_object_object_get_ex(c, "state", &st) ||
            !json_object_is_type(st, json_type_boolean)) {
            snprintf(x->err, sizeof(x->err),
                     "Invalid parameter type for 'capabilities', expected: "
                     "array of {capability, state}");
            return NULL;
        }
        if (strcmp(json_object_get_string(name), "events") != 0) {
            snprintf(x->err, sizeof(x->err),
                     "Parameter 'capability' does not accept value '%s'",
                     json_object_get_string(name));
            return NULL;
        }
    }
    return json_object_new_object();
}

static json_object *
cmd_query_devices(struct cmd_ctx *x)
{
    struct agent_vm *vm = x->s->vm;
    json_object *a = json_object_new_array();

    for (unsigned int i = 0; i < vm->o.ndev; i++) {
        json_object *d = json_object_new_object();
        char name[16], flags[64], dig[20];

        snprintf(name, sizeof(name), "dev%u", i);
        json_object_object_add(d, "name", json_object_new_string(name));
        json_object_object_add(d, "type", json_object_new_string("memdev"));
        json_object_object_add(d, "vendor",
                               json_object_new_int(VMIG_MEMDEV_VENDOR));
        json_object_object_add(d, "device",
                               json_object_new_int(VMIG_MEMDEV_DEVICE));
        json_object_object_add(d, "revision",
                               json_object_new_int(vm->o.dev_revision));
        json_object_object_add(
            d, "migration-flags",
            json_object_new_string(
                vmig_flags_format(VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
                                  flags, sizeof(flags))));
        json_object_object_add(d, "state",
                               json_object_new_string(vmig_state_name(
                                   vmig_memdev_state(vm->dev[i]))));
        json_object_object_add(d, "state-size",
                               json_object_new_int64((int64_t)vm->o.dev_state));
        json_object_object_add(
            d, "work-done",
            json_object_new_int64((int64_t)vmig_memdev_work_done(vm->dev[i])));
        snprintf(dig, sizeof(dig), "%016llx",
                 (unsigned long long)vmig_memdev_digest(vm->dev[i]));
        json_object_object_add(d, "digest", json_object_new_string(dig));
        json_object_array_add(a, d);
    }
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        json_object_array_add(a, vfudev_describe(vm, i));
    }
    return a;
}

static json_object *
cmd_check_compat(struct cmd_ctx *x)
{
    static const struct arg_spec spec[] = {{"uri", json_type_string, true},
                                           {NULL, 0, false}};
    struct vmig_engine_check *chk;
    json_object *o, *devs;

    if (!check_args(x->args, spec, x->err, sizeof(x->err))) {
        return NULL;
    }
    chk = malloc(sizeof(*chk));
    if (chk == NULL) {
        snprintf(x->err, sizeof(x->err), "out of memory");
        return NULL;
    }
    if (vm_check(x->s->vm, arg_str(x->args, "uri"), chk, x->err,
                 sizeof(x->err)) < 0) {
        free(chk);
        return NULL;
    }
    o = json_object_new_object();
    json_object_object_add(o, "compatible",
                           json_object_new_boolean(chk->status == 0));
    if (chk->status != 0) {
        json_object_object_add(o, "reason",
                               json_object_new_string(chk->reason));
    }
    devs = json_object_new_array();
    for (unsigned int i = 0; i < chk->ndevices; i++) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name",
                               json_object_new_string(chk->dev[i].name));
        json_object_object_add(
            d, "compatible", json_object_new_boolean(chk->dev[i].verdict == 1));
        if (chk->dev[i].verdict != 1) {
            json_object_object_add(d, "reason",
                                   json_object_new_string(chk->dev[i].reason));
        }
        json_object_array_add(devs, d);
    }
    json_object_object_add(o, "devices", devs);
    free(chk);
    return o;
}

static json_object *
cmd_query_guest(struct cmd_ctx *x)
{
    char why[256] = "";
    uint64_t steps = 0;
    json_object *o, *acc = NULL, *ft = NULL;
    int ret = vm_guest_report(x->s->vm, &steps, why, sizeof(why), &acc, &ft);

    o = json_object_new_object();
    json_object_object_add(o, "steps", json_object_new_int64((int64_t)steps));
    if (ft != NULL) {
        json_object_object_add(o, "flowtab", ft);
    }
    if (acc != NULL) {
        json_object_object_add(o, "accelerator", acc);
    }
    json_object_object_add(o, "verified", json_object_new_boolean(ret == 0));
    if (ret == -EBUSY) {
        /* a migration still owns the vCPU: ask again once it ended */
        json_object_object_add(o, "busy", json_object_new_boolean(1));
    }
    if (ret < 0) {
        json_object_object_add(
            o, "error", json_object_new_string(why[0] ? why : strerror(-ret)));
    }
    return o;
}

static json_object *
cmd_quit(struct cmd_ctx *x)
{
    json_object *d = json_object_new_object();

    json_object_object_add(d, "guest", json_object_new_boolean(0));
    json_object_object_add(d, "reason",
                           json_object_new_string("host-qmp-quit"));
    qmp_emit(x->s, "SHUTDOWN", d);
    qmp_request_quit(x->s);
    return json_object_new_object();
}

static json_object *cmd_query_commands(struct cmd_ctx *x);

struct cmd_desc {
    const char *name;
    cmd_fn *fn;
};

/* clang-format off */
static const struct cmd_desc cmd_table[] = {
    {"qmp_capabilities",          cmd_capabilities},
    {"query-status",              cmd_query_status},
    {"query-version",             cmd_query_version},
    {"query-commands",            cmd_query_commands},
    {"query-migrate",             cmd_query_migrate},
    {"query-migrate-parameters",  cmd_query_params},
    {"migrate",                   cmd_migrate},
    {"migrate_cancel",            cmd_migrate_cancel},
    {"migrate-cancel",            cmd_migrate_cancel},
    {"migrate-incoming",          cmd_migrate_incoming},
    {"migrate-set-parameters",    cmd_set_params},
    {"query-migrate-capabilities", cmd_query_caps},
    {"migrate-set-capabilities",  cmd_set_caps},
    {"x-vmig-query-devices",      cmd_query_devices},
    {"x-vmig-check-compat",       cmd_check_compat},
    {"x-vmig-query-guest",        cmd_query_guest},
    {"x-vmig-device-reset",       cmd_device_reset},
    {"quit",                      cmd_quit},
};
/* clang-format on */

static json_object *
cmd_query_commands(struct cmd_ctx *x)
{
    json_object *a = json_object_new_array();

    (void)x;
    for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name",
                               json_object_new_string(cmd_table[i].name));
        json_object_array_add(a, d);
    }
    return a;
}

/* One parsed request, checked as QEMU's qmp_dispatch_check_obj() does. */
static void
dispatch(struct qmp_server *s, struct conn *c, json_object *req)
{
    struct cmd_ctx x = {.s = s, .c = c};
    json_object *id = NULL, *exec = NULL, *args = NULL, *ret, *o;
    const struct cmd_desc *d = NULL;
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
    for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
        if (strcmp(cmd_table[i].name, name) == 0) {
            d = &cmd_table[i];
            break;
        }
    }
    if (d == NULL) {
        snprintf(x.err, sizeof(x.err), "The command %s has not been found",
                 name);
        send_error(c, "CommandNotFound", x.err, id);
        return;
    }
    x.args = args;
    ret = d->fn(&x);
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
        json_object *obj;
        enum json_tokener_error jerr;
        size_t used;

        obj = json_tokener_parse_ex(c->tok, buf + off, (int)(n - off));
        jerr = json_tokener_get_error(c->tok);
        if (jerr == json_tokener_continue) {
            c->pending += n - off;
            if (c->pending > QMP_MAX_PENDING) {
                send_error(c, "GenericError",
                           "JSON parse error, input too large", NULL);
                json_tokener_reset(c->tok);
                c->pending = 0;
            }
            return;
        }
        if (jerr != json_tokener_success) {
            char msg[160];
            const char *nl;

            snprintf(msg, sizeof(msg), "JSON parse error, %s",
                     json_tokener_error_desc(jerr));
            send_error(c, "GenericError", msg, NULL);
            json_tokener_reset(c->tok);
            c->pending = 0;
            /* resynchronise at the next line, as QEMU's lexer does */
            nl = memchr(buf + off, '\n', n - off);
            off = nl == NULL ? n : (size_t)(nl - buf) + 1;
            continue;
        }
        used = json_tokener_get_parse_end(c->tok);
        off += used > 0 ? used : n - off;
        c->pending = 0;
        json_tokener_reset(c->tok);
        dispatch(s, c, obj);
        json_object_put(obj);
    }
}

static void
accept_client(struct qmp_server *s)
{
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    struct timeval tv = {.tv_sec = 2};
    json_object *g, *q, *v;
    struct cmd_ctx x = {.s = s};

    if (fd < 0) {
        return;
    }
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        struct conn *c = &s->conn[i];

        if (c->fd >= 0) {
            continue;
        }
        c->fd = fd;
        c->tok = json_tokener_new_ex(32);
        c->negotiated = false;
        c->pending = 0;
        if (c->tok == NULL) {
            conn_close(c);
            return;
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        g = json_object_new_object();
        q = json_object_new_object();
        v = cmd_query_version(&x);
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
