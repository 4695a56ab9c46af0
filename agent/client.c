/* SPDX-License-Identifier: MIT */
/*
 * client.c - a small QMP client (greeting, qmp_capabilities, execute with
 * ids, events) for the CLI commands, and the migration follower that draws
 * the progress bar on a TTY or prints JSON events otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "agent.h"

struct qmp_client {
    int fd;
    json_tokener *tok;
    char server_err[256]; /* an error the server sent without an id */
    char buf[65536];
    size_t len;
    size_t off;
    unsigned int timeout_ms;
    int next_id;
    void (*ev)(void *opaque, json_object *ev);
    void *evop;
};

/* Next JSON value from the server, waiting up to @ms (0: don't wait). */
static int
read_obj(struct qmp_client *c, unsigned int ms, json_object **out)
{
    uint64_t deadline = qmp_now_ms() + ms;

    for (;;) {
        while (c->off < c->len) {
            json_object *o = json_tokener_parse_ex(c->tok, c->buf + c->off,
                                                   (int)(c->len - c->off));
            enum json_tokener_error e = json_tokener_get_error(c->tok);

            if (e == json_tokener_continue) {
                c->off = c->len;
                break;
            }
            if (e != json_tokener_success) {
                snprintf(c->server_err, sizeof(c->server_err),
                         "the agent sent something that is not JSON (%s)",
                         json_tokener_error_desc(e));
                return -EPROTO;
            }
            c->off += json_tokener_get_parse_end(c->tok);
            json_tokener_reset(c->tok);
            *out = o;
            return 0;
        }
        c->off = c->len = 0;
        {
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            int64_t left = (int64_t)(deadline - qmp_now_ms());
            ssize_t n;

            if (left < 0) {
                left = 0;
            }
            n = poll(&p, 1, (int)left);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return -ETIMEDOUT;
            }
            n = recv(c->fd, c->buf, sizeof(c->buf), 0);
            if (n <= 0) {
                return -ECONNRESET;
            }
            c->len = (size_t)n;
        }
    }
}

static int
send_obj(struct qmp_client *c, json_object *o)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(s), off = 0;

    while (off < len) {
        ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);

        if (n <= 0) {
            return -EPIPE;
        }
        off += (size_t)n;
    }
    return send(c->fd, "\n", 1, MSG_NOSIGNAL) == 1 ? 0 : -EPIPE;
}

void
qmpc_on_event(struct qmp_client *c, void (*fn)(void *opaque, json_object *ev),
              void *opaque)
{
    c->ev = fn;
    c->evop = opaque;
}

/* Send @cmd (in band, or out of band: exec-oob) with the next id. */
static int
send_cmd(struct qmp_client *c, const char *cmd, json_object *args, bool oob)
{
    json_object *req = json_object_new_object();
    int r;

    json_object_object_add(req, oob ? "exec-oob" : "execute",
                           json_object_new_string(cmd));
    if (args != NULL) {
        json_object_object_add(req, "arguments", args);
    }
    json_object_object_add(req, "id", json_object_new_int(++c->next_id));
    r = send_obj(c, req);
    json_object_put(req);
    return r;
}

/* Why the connection failed, in words: the server's own reason when it
 * gave one (refused, evicted, timed out), never a bare errno. */
static void
lost(struct qmp_client *c, int r, char *err, size_t errlen)
{
    if (c->server_err[0] != '\0') {
        snprintf(err, errlen, "%s", c->server_err);
    } else if (r == -ETIMEDOUT) {
        snprintf(err, errlen, "no answer from the agent within %u ms",
                 c->timeout_ms);
    } else if (r == -ECONNRESET) {
        snprintf(err, errlen, "the agent closed the connection");
    } else {
        snprintf(err, errlen, "the agent connection failed: %s", strerror(-r));
    }
}

static int
exec_cmd(struct qmp_client *c, const char *cmd, json_object *args, bool oob,
         json_object **ret, char *err, size_t errlen)
{
    json_object *o, *v;
    int id, r;

    *ret = NULL;
    r = send_cmd(c, cmd, args, oob);
    id = c->next_id;
    if (r < 0) {
        lost(c, r, err, errlen);
        return r;
    }
    for (;;) {
        r = read_obj(c, c->timeout_ms, &o);
        if (r < 0) {
            lost(c, r, err, errlen);
            return r;
        }
        if (json_object_object_get_ex(o, "event", NULL)) {
            if (c->ev != NULL) {
                c->ev(c->evop, o);
            }
            json_object_put(o);
            continue;
        }
        if (!json_object_object_get_ex(o, "id", &v)) {
            json_object *e, *d;

            /* an error without an id: about the connection itself
             * (eviction, a request too long): keep it for the reason */
            if (json_object_object_get_ex(o, "error", &e) &&
                json_object_object_get_ex(e, "desc", &d)) {
                snprintf(c->server_err, sizeof(c->server_err), "%s",
                         json_object_get_string(d));
            }
            json_object_put(o);
            continue;
        }
        if (json_object_get_int(v) != id) {
            json_object_put(o);
            continue;
        }
        if (json_object_object_get_ex(o, "return", &v)) {
            *ret = json_object_get(v);
            json_object_put(o);
            return 0;
        }
        if (json_object_object_get_ex(o, "error", &v)) {
            json_object *d;

            snprintf(err, errlen, "%s",
                     json_object_object_get_ex(v, "desc", &d)
                         ? json_object_get_string(d)
                         : "error");
        }
        json_object_put(o);
        return -EIO;
    }
}

void
qmpc_set_timeout(struct qmp_client *c, unsigned int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

int
qmpc_exec(struct qmp_client *c, const char *cmd, json_object *args,
          json_object **ret, char *err, size_t errlen)
{
    return exec_cmd(c, cmd, args, false, ret, err, errlen);
}

int
qmpc_exec_oob(struct qmp_client *c, const char *cmd, json_object *args,
              json_object **ret, char *err, size_t errlen)
{
    return exec_cmd(c, cmd, args, true, ret, err, errlen);
}

int
qmpc_poll_events(struct qmp_client *c, unsigned int ms)
{
    uint64_t deadline = qmp_now_ms() + ms;

    for (;;) {
        uint64_t now = qmp_now_ms();
        json_object *o;
        int r;

        if (now >= deadline) {
            return 0;
        }
        r = read_obj(c, (unsigned int)(deadline - now), &o);
        if (r == -ETIMEDOUT) {
            return 0;
        }
        if (r < 0) {
            return r;
        }
        if (json_object_object_get_ex(o, "event", NULL) && c->ev != NULL) {
            c->ev(c->evop, o);
        }
        json_object_put(o);
    }
}

int
qmpc_open(const char *path, unsigned int timeout_ms, bool oob,
          struct qmp_client **out, char *err, size_t errlen)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    struct qmp_client *c;
    json_object *g, *ret, *v, *args = NULL;
    int r;

    if (strlen(path) >= sizeof(a.sun_path)) {
        snprintf(err, errlen, "the socket path %s is too long", path);
        return -ENAMETOOLONG;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->timeout_ms = timeout_ms;
    c->tok = json_tokener_new();
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (c->tok == NULL || c->fd < 0 ||
        connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        r = errno != 0 ? -errno : -ENOMEM;
        if (r == -ENOENT) {
            snprintf(err, errlen, "no agent at %s (no such socket)", path);
        } else if (r == -ECONNREFUSED) {
            snprintf(err, errlen,
                     "nobody answers on %s (its agent is gone: a stale "
                     "socket)",
                     path);
        } else if (r == -EACCES) {
            snprintf(err, errlen,
                     "permission denied on %s: the QMP socket is its "
                     "agent's user's only (mode 0600); run as that user "
                     "or root",
                     path);
        } else {
            snprintf(err, errlen, "cannot connect to %s: %s", path,
                     strerror(-r));
        }
        qmpc_close(c);
        return r;
    }
    r = read_obj(c, timeout_ms, &g);
    if (r < 0) {
        lost(c, r, err, errlen);
        qmpc_close(c);
        return r;
    }
    if (json_object_object_get_ex(g, "error", &v) &&
        json_object_object_get_ex(v, "desc", &v)) {
        /* refused instead of greeted: the agent says why */
        snprintf(err, errlen, "%s", json_object_get_string(v));
        json_object_put(g);
        qmpc_close(c);
        return -EPERM;
    }
    if (!json_object_object_get_ex(g, "QMP", NULL)) {
        snprintf(err, errlen, "%s does not greet as a QMP server", path);
        json_object_put(g);
        qmpc_close(c);
        return -EPROTO;
    }
    json_object_put(g);
    if (oob) {
        json_object *en = json_object_new_array();

        args = json_object_new_object();
        json_object_array_add(en, json_object_new_string("oob"));
        json_object_object_add(args, "enable", en);
    }
    r = qmpc_exec(c, "qmp_capabilities", args, &ret, err, errlen);
    json_object_put(ret);
    if (r < 0) {
        qmpc_close(c);
        return r;
    }
    *out = c;
    return 0;
}

int
qmpc_connect(const char *path, unsigned int timeout_ms, struct qmp_client **out)
{
    char err[256];

    return qmpc_open(path, timeout_ms, false, out, err, sizeof(err));
}

void
qmpc_close(struct qmp_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->tok != NULL) {
        json_tokener_free(c->tok);
    }
    free(c);
}

/* ------------------------------------------------------------ follow */

struct follow {
    bool tty;
    bool json;
    bool ended; /* the MIGRATION event of a final status was seen */
};

static bool
final_status(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
           strcmp(s, "cancelled") == 0;
}

static void
print_event(void *opaque, json_object *ev)
{
    struct follow *f = opaque;
    json_object *v, *d;

    if (json_object_object_get_ex(ev, "event", &v) &&
        strcmp(json_object_get_string(v), "MIGRATION") == 0 &&
        json_object_object_get_ex(ev, "data", &d) &&
        json_object_object_get_ex(d, "status", &v) &&
        final_status(json_object_get_string(v))) {
        f->ended = true;
    }
    if (f->json) {
        printf("%s\n",
               json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
    }
}

static int64_t
jint(json_object *o, const char *a, const char *b)
{
    json_object *v;

    if (!json_object_object_get_ex(o, a, &v)) {
        return 0;
    }
    if (b != NULL && !json_object_object_get_ex(v, b, &v)) {
        return 0;
    }
    return json_object_get_int64(v);
}

/*
 * The rate shown is measured between two samples (smoothed), so it tracks
 * what the link does now; the engine's mbps is the average since the
 * transfer began, used until two samples exist.
 */
struct rate {
    double last_bytes;
    uint64_t last_ms;
    double smooth; /* bytes per second */
};

static void
draw_bar(json_object *st, struct rate *rt)
{
    json_object *v;
    /* the engine's phase (it tells the paused "device" phase apart) */
    const char *phase = json_object_object_get_ex(st, "x-vmig-phase", &v) ||
                                json_object_object_get_ex(st, "status", &v)
                            ? json_object_get_string(v)
                            : "setup";
    double ram_total = (double)jint(st, "ram", "total");
    double moved = (double)jint(st, "ram", "transferred") +
                   (double)jint(st, "vfio", "transferred");
    double remaining = (double)jint(st, "ram", "remaining");
    double mbps = 0, frac, rate;
    char bar[31];
    int fill;

    if (json_object_object_get_ex(st, "ram", &v) &&
        json_object_object_get_ex(v, "mbps", &v)) {
        mbps = json_object_get_double(v);
    }
    rate = mbps * 1e6 / 8 / (1 << 20);
    {
        uint64_t now = qmp_now_ms();

        if (rt->last_ms != 0 && now > rt->last_ms && moved >= rt->last_bytes) {
            double inst =
                (moved - rt->last_bytes) * 1000.0 / (double)(now - rt->last_ms);

            rt->smooth = rt->smooth == 0 ? inst : 0.6 * rt->smooth + 0.4 * inst;
        }
        rt->last_ms = now;
        rt->last_bytes = moved;
        if (rt->smooth > 0) {
            rate = rt->smooth / (1 << 20);
        }
    }
    frac = ram_total > 0 ? 1.0 - remaining / ram_total : 0;
    fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[30] = '\0';
    fprintf(stderr,
            "\r\033[K%-9s [%s] %5.1f%%  %8.1f MiB  %8.1f MiB/s  ETA %5.1fs",
            phase, bar, frac * 100, moved / (1 << 20), rate,
            rate > 0 ? remaining / (1 << 20) / rate : 0.0);
    if (jint(st, "x-vmig-precopy", "iterations") > 0) {
        fprintf(stderr,
                "  precopy it %lld, %lld dirty pages, downtime ~%lld ms",
                (long long)jint(st, "x-vmig-precopy", "iterations"),
                (long long)jint(st, "x-vmig-precopy", "dirty-pages"),
                (long long)jint(st, "x-vmig-precopy", "expected-downtime"));
    }
    fflush(stderr);
}

static void
print_precopy(json_object *st)
{
    json_object *p, *v;

    if (!json_object_object_get_ex(st, "x-vmig-precopy", &p) ||
        !json_object_object_get_ex(p, "enabled", &v) ||
        !json_object_get_boolean(v)) {
        printf("stop-and-copy (no precopy)\n");
        return;
    }
    printf("precopy: %lld iterations; on the wire %.1f MiB while running, "
           "%.1f MiB while paused; %lld dirty pages at the end, %lld device "
           "restarts\n",
           (long long)jint(st, "x-vmig-precopy", "iterations"),
           (double)jint(st, "x-vmig-precopy", "precopy-bytes") / (1 << 20),
           (double)jint(st, "x-vmig-precopy", "stopcopy-bytes") / (1 << 20),
           (long long)jint(st, "x-vmig-precopy", "dirty-pages"),
           (long long)jint(st, "x-vmig-precopy", "device-restarts"));
}

/* To stderr, with --json too: the person running it should know. */
static void
warn_forced(json_object *st)
{
    json_object *p, *v;

    if (json_object_object_get_ex(st, "x-vmig-precopy", &p) &&
        json_object_object_get_ex(p, "forced-switchover", &v) &&
        json_object_get_boolean(v)) {
        fprintf(stderr,
                "vmig: warning: precopy did not converge: the cap "
                "(--max-iterations, --max-precopy-time) switched over with "
                "an estimated downtime above --downtime-limit, so the "
                "downtime may exceed it; to meet the limit, raise "
                "--max-bandwidth or the caps, or use --cap-action abort\n");
    }
}

int
cmd_migrate_follow(struct qmp_client *c, bool tty, bool json_out)
{
    struct follow f = {.tty = tty, .json = json_out};
    struct rate rt = {0};
    char err[512];
    json_object *st = NULL, *v;
    const char *status = "";
    int ret = EXIT_FAIL;

    qmpc_on_event(c, print_event, &f);
    for (int i = 0; i < 36000; i++) {
        if (qmpc_poll_events(c, 100) < 0) {
            fprintf(stderr, "vmig: lost the agent's QMP connection\n");
            return EXIT_FAIL;
        }
        json_object_put(st);
        if (qmpc_exec(c, "query-migrate", NULL, &st, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig: query-migrate: %s\n", err);
            return EXIT_FAIL;
        }
        status = json_object_object_get_ex(st, "status", &v)
                     ? json_object_get_string(v)
                     : "setup";
        if (tty) {
            draw_bar(st, &rt);
        }
        if (final_status(status)) {
            break;
        }
    }
    /* query-migrate can tell the end before the MIGRATION event that
     * says it was written out: print that event too (--json readers wait
     * for it); the agent queued it already, so this takes a moment */
    for (int i = 0; i < 100 && !f.ended; i++) {
        if (qmpc_poll_events(c, 100) < 0) {
            break;
        }
    }
    if (tty) {
        fputc('\n', stderr);
    }
    if (strcmp(status, "completed") == 0) {
        ret = EXIT_OK;
        warn_forced(st);
        if (!json_out) {
            printf("migration completed: %.1f MiB of guest RAM sent (every "
                   "pass, zero pages at full size) and %lld bytes of "
                   "device state in %lld ms, downtime %lld ms, %.0f "
                   "Mbit/s\n",
                   (double)jint(st, "ram", "transferred") / (1 << 20),
                   (long long)jint(st, "vfio", "transferred"),
                   (long long)jint(st, "total-time", NULL),
                   (long long)jint(st, "downtime", NULL),
                   json_object_object_get_ex(st, "ram", &v) &&
                           json_object_object_get_ex(v, "mbps", &v)
                       ? json_object_get_double(v)
                       : 0.0);
            print_precopy(st);
        }
    } else if (!json_out) {
        printf("migration %s: %s; the VM keeps running on the source\n", status,
               json_object_object_get_ex(st, "error-desc", &v)
                   ? json_object_get_string(v)
                   : "no reason given");
    }
    if (json_out) {
        printf("%s\n",
               json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(st);
    return ret;
}
