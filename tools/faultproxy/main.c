/* SPDX-License-Identifier: MIT */
/*
 * vmig-faultproxy - a TCP relay that injects faults between a migration
 * source and its destination (see fp.h and rules.c for the rules).
 *
 *   vmig-faultproxy --listen HOST:PORT --to HOST:PORT [--control PATH]
 *                   [--port-file PATH] [--arm RULE]... [-v]
 *
 * The control socket (UNIX, one command per line, one reply line each):
 *   arm RULE          -> "ok ID"                 add a rule
 *   wait ID [MS]      -> "fired ID conn=C dir=D offset=O ms=T" | "timeout ID"
 *   release [DIR]     -> "ok"                    end holds and stalls
 *   clear             -> "ok"                    drop rules, holds, limits
 *   status            -> "conn C fwd=OUT/IN back=OUT/IN STATE..." lines, "end"
 *   quit              -> "ok", then the proxy exits
 * ms= is CLOCK_MONOTONIC in milliseconds, so a test can time what follows
 * a fault.  SIGUSR1 cuts every connection, SIGUSR2 releases every hold.
 *
 * One thread, one poll loop; up to FP_MAX_CONN connections at once, each
 * relayed through a bounded buffer per direction (so a hold or a throttle
 * pushes back on the sender as a slow network would).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "fp.h"

#define MAX_CTL 8
#define CTL_LINE 600
#define RECENT 256 /* classified frames remembered per direction */

struct pipe {
    enum fp_dir dir;
    int in, out;
    uint8_t *buf;
    size_t start, end; /* buf[start, end) holds offsets off_out..off_in */
    uint64_t off_in, off_out;
    bool in_eof, shut, truncated, hold;
    bool trunc_pending;
    uint64_t trunc_at; /* truncate once this much was forwarded */
    uint64_t stall_until;
    uint64_t bps;
    double tokens;
    uint64_t tok_ms;
    uint64_t latency;
    struct {
        uint64_t end, t;
    } st[FP_MAX_STAMPS];
    unsigned int st_head, st_n;
    struct fp_parser parser;
    struct fp_frame recent[RECENT];
    unsigned int nrecent; /* total classified (ring index = n % RECENT) */
    struct {
        uint64_t at;
        uint8_t mask;
    } flip[FP_MAX_FLIPS];
    unsigned int nflip;
};

struct conn {
    bool used;
    unsigned int id;
    int fd[2]; /* client (source side), target */
    struct pipe p[FP__DIR_COUNT];
};

struct ctl {
    int fd;
    char line[CTL_LINE];
    size_t len;
    unsigned int wait_rule; /* 0: not waiting */
    uint64_t wait_until;
};

static struct conn conns[FP_MAX_CONN];
static struct fp_rule rules[FP_MAX_RULES];
static struct ctl ctls[MAX_CTL];
static unsigned int next_conn_id = 1, next_rule_id = 1;
static int verbose;
static volatile sig_atomic_t sig_cut, sig_release, sig_quit;
static bool quitting;
static char target_host[256], target_port[16];

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
    va_list ap;

    if (!verbose) {
        return;
    }
    fprintf(stderr, "faultproxy: [%llu] ", (unsigned long long)mono_ms());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int
split_hostport(const char *s, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon = strrchr(s, ':');

    if (colon == NULL || colon == s || (size_t)(colon - s) >= hl ||
        strlen(colon + 1) == 0 || strlen(colon + 1) >= pl) {
        return -EINVAL;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    snprintf(port, pl, "%s", colon + 1);
    return 0;
}

static void
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0) {
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

/* ------------------------------------------------------------ rules */

static bool
applies(const struct fp_rule *r, const struct conn *c, enum fp_dir d)
{
    return r->used && !r->fired && (r->conn == 0 || r->conn == c->id) &&
           (r->dir == d || r->dir == FP_BOTH);
}

static void conn_close(struct conn *c, bool rst);

/* A classified frame: arm the frame rules it matches on this connection. */
static void
frame_seen(struct conn *c, struct pipe *p, const struct fp_frame *f)
{
    unsigned int slot = (unsigned int)(c - conns);

    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        struct fp_rule *r = &rules[i];

        if (applies(r, c, p->dir) && r->when == FP_WHEN_FRAME &&
            !r->pending[slot] && fp_rule_match(r, slot, f)) {
            r->pending[slot] = true;
            r->pos[slot] = f->start;
        }
    }
}

struct feed_ctx {
    struct conn *c;
    struct pipe *p;
};

static void
on_frame(void *opaque, const struct fp_frame *f)
{
    struct feed_ctx *fc = opaque;
    struct pipe *p = fc->p;

    p->recent[p->nrecent % RECENT] = *f;
    p->nrecent++;
    frame_seen(fc->c, p, f);
    if (verbose > 1) {
        say("conn %u %s: frame %s at %llu (%u bytes)", fc->c->id,
            fp_dir_name(p->dir), fp_frame_type_name(f->type),
            (unsigned long long)f->start, f->len);
    }
}

/* A new frame rule also looks at frames classified but not yet sent. */
static void
rule_scan_recent(struct fp_rule *r)
{
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        struct conn *c = &conns[k];

        if (!c->used || r->when != FP_WHEN_FRAME) {
            continue;
        }
        for (int d = 0; d < FP__DIR_COUNT; d++) {
            struct pipe *p = &c->p[d];
            unsigned int n = p->nrecent < RECENT ? p->nrecent : RECENT;

            if (!applies(r, c, p->dir)) {
                continue;
            }
            for (unsigned int j = p->nrecent - n; j < p->nrecent; j++) {
                const struct fp_frame *f = &p->recent[j % RECENT];

                if (f->start >= p->off_out && !r->pending[k] &&
                    fp_rule_match(r, k, f)) {
                    r->pending[k] = true;
                    r->pos[k] = f->start;
                }
            }
        }
    }
}

static void
apply_flip(struct pipe *p, uint64_t at, uint8_t mask)
{
    if (at >= p->off_out && at < p->off_in) {
        p->buf[p->start + (at - p->off_out)] ^= mask;
        return;
    }
    if (p->nflip < FP_MAX_FLIPS) {
        p->flip[p->nflip].at = at;
        p->flip[p->nflip].mask = mask;
        p->nflip++;
    }
}

/* End the direction here when a truncation is due: FIN to the receiver,
 * everything the sender still sends is dropped. */
static void
truncate_due(struct pipe *p)
{
    if (!p->trunc_pending || p->off_out < p->trunc_at) {
        return;
    }
    p->trunc_pending = false;
    p->truncated = true;
    p->start = p->end = 0;
    p->off_in = p->off_out;
    if (!p->shut) {
        (void)shutdown(p->out, SHUT_WR);
        p->shut = true;
    }
}

/* Fire @r on @c's direction @d.  Return false when @c was closed. */
static bool
fire(struct fp_rule *r, struct conn *c, enum fp_dir d, uint64_t now)
{
    struct pipe *p = &c->p[d];

    r->fired = true;
    r->fired_conn = c->id;
    r->fired_dir = d;
    r->fired_off = p->off_out;
    r->fired_ms = now;
    say("rule %u fired: conn %u %s at offset %llu: %s %llu", r->id, c->id,
        fp_dir_name(d), (unsigned long long)p->off_out,
        fp_action_name(r->action), (unsigned long long)r->arg);
    switch (r->action) {
    case FP_ACT_HOLD:
        p->hold = true;
        break;
    case FP_ACT_STALL:
        p->stall_until = now + r->arg;
        break;
    case FP_ACT_CUT:
        conn_close(c, false);
        return false;
    case FP_ACT_RESET:
        conn_close(c, true);
        return false;
    case FP_ACT_TRUNCATE:
        p->trunc_pending = true;
        p->trunc_at = p->off_out + r->arg;
        truncate_due(p);
        break;
    case FP_ACT_FLIP:
        apply_flip(p, p->off_out + r->arg, (uint8_t)(1u << r->arg2));
        break;
    case FP_ACT_THROTTLE:
        p->bps = r->arg;
        p->tokens = 0;
        p->tok_ms = now;
        break;
    case FP_ACT_LATENCY:
        p->latency = r->arg;
        break;
    default:
        break;
    }
    return true;
}

/* Fire "now" rules on every open connection (or leave them for the next). */
static void
fire_now_rules(uint64_t now)
{
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        struct fp_rule *r = &rules[i];
        bool any = false;

        if (!r->used || r->fired || r->when != FP_WHEN_NOW) {
            continue;
        }
        for (unsigned int k = 0; k < FP_MAX_CONN && !r->fired; k++) {
            struct conn *c = &conns[k];

            if (!c->used || (r->conn != 0 && r->conn != c->id)) {
                continue;
            }
            any = true;
            for (int d = 0; d < FP__DIR_COUNT && c->used; d++) {
                if (r->dir == FP_BOTH || r->dir == (enum fp_dir)d) {
                    r->fired = false; /* once per direction and conn */
                    if (!fire(r, c, (enum fp_dir)d, now)) {
                        break;
                    }
                }
            }
            r->fired = false;
        }
        if (any) {
            r->fired = true;
        }
    }
}

/* ------------------------------------------------------------ relay */

static uint64_t
gate(struct conn *c, struct pipe *p, uint64_t now)
{
    unsigned int slot = (unsigned int)(c - conns);
    uint64_t lim = p->off_in;
    bool frames = false;

    if (p->hold || p->stall_until > now || p->truncated || p->shut) {
        return p->off_out;
    }
    if (p->latency > 0) {
        uint64_t ok = p->off_out;

        for (unsigned int i = 0; i < p->st_n; i++) {
            unsigned int k = (p->st_head + i) % FP_MAX_STAMPS;

            if (p->st[k].t + p->latency > now) {
                break;
            }
            ok = p->st[k].end;
        }
        lim = ok < lim ? ok : lim;
    }
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        const struct fp_rule *r = &rules[i];

        if (!applies(r, c, p->dir)) {
            continue;
        }
        if (r->when == FP_WHEN_AT && r->at >= p->off_out && r->at < lim) {
            lim = r->at;
        } else if (r->when == FP_WHEN_FRAME) {
            frames = true;
            if (r->pending[slot] && r->pos[slot] < lim) {
                lim = r->pos[slot];
            }
        }
    }
    if (frames && !fp_parser_lost(&p->parser)) {
        uint64_t u = fp_parser_unclassified(&p->parser);

        lim = u < lim ? u : lim;
    }
    if (p->trunc_pending && p->trunc_at < lim) {
        lim = p->trunc_at;
    }
    if (p->bps > 0) {
        uint64_t t = p->off_out + (uint64_t)p->tokens;

        lim = t < lim ? t : lim;
    }
    return lim < p->off_out ? p->off_out : lim;
}

/* Fire the rules whose trigger is the next byte of @p.  False: closed. */
static bool
check_triggers(struct conn *c, struct pipe *p, uint64_t now)
{
    unsigned int slot = (unsigned int)(c - conns);

    truncate_due(p);
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        struct fp_rule *r = &rules[i];
        bool hit;

        if (!applies(r, c, p->dir)) {
            continue;
        }
        hit = (r->when == FP_WHEN_AT && r->at == p->off_out) ||
              (r->when == FP_WHEN_FRAME && r->pending[slot] &&
               r->pos[slot] == p->off_out);
        if (hit && !fire(r, c, p->dir, now)) {
            return false;
        }
    }
    return true;
}

static void
refill(struct pipe *p, uint64_t now)
{
    double cap;

    if (p->bps == 0 || now <= p->tok_ms) {
        return;
    }
    p->tokens += (double)(now - p->tok_ms) * (double)p->bps / 1000.0;
    p->tok_ms = now;
    cap = (double)p->bps / 10.0; /* 100 ms of burst at most */
    cap = cap < 1 ? 1 : cap;
    if (p->tokens > cap) {
        p->tokens = cap;
    }
}

static void
stamp(struct pipe *p, uint64_t now)
{
    unsigned int last;

    if (p->st_n > 0) {
        last = (p->st_head + p->st_n - 1) % FP_MAX_STAMPS;
        if (p->st[last].t == now || p->st_n == FP_MAX_STAMPS) {
            p->st[last].end = p->off_in;
            return;
        }
    }
    last = (p->st_head + p->st_n) % FP_MAX_STAMPS;
    p->st[last].end = p->off_in;
    p->st[last].t = now;
    p->st_n++;
}

static void
unstamp(struct pipe *p)
{
    while (p->st_n > 0 && p->st[p->st_head].end <= p->off_out) {
        p->st_head = (p->st_head + 1) % FP_MAX_STAMPS;
        p->st_n--;
    }
}

/* Read what @p's sender has.  Return -1 when the connection must close. */
static int
pipe_read(struct conn *c, struct pipe *p, uint64_t now)
{
    struct feed_ctx fc = {.c = c, .p = p};
    uint8_t scratch[65536], *dst;
    size_t room;
    ssize_t n;

    if (p->truncated) {
        dst = scratch;
        room = sizeof(scratch);
    } else {
        if (p->start > 0 && p->end == FP_BUF_SIZE) {
            memmove(p->buf, p->buf + p->start, p->end - p->start);
            p->end -= p->start;
            p->start = 0;
        }
        dst = p->buf + p->end;
        room = FP_BUF_SIZE - p->end;
        if (room == 0) {
            return 0;
        }
    }
    n = recv(p->in, dst, room, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    if (n <= 0) {
        p->in_eof = true;
        say("conn %u %s: sender %s at offset %llu", c->id, fp_dir_name(p->dir),
            n == 0 ? "closed" : strerror(errno), (unsigned long long)p->off_in);
        return 0;
    }
    if (p->truncated) {
        return 0; /* dropped */
    }
    if (!fp_parser_lost(&p->parser)) {
        (void)fp_parser_feed(&p->parser, dst, (size_t)n, on_frame, &fc);
    }
    for (unsigned int i = 0; i < p->nflip;) {
        uint64_t at = p->flip[i].at;

        if (at >= p->off_in && at < p->off_in + (uint64_t)n) {
            dst[at - p->off_in] ^= p->flip[i].mask;
            p->flip[i] = p->flip[--p->nflip];
            continue;
        }
        i++;
    }
    p->end += (size_t)n;
    p->off_in += (uint64_t)n;
    stamp(p, now);
    return 0;
}

static int
pipe_write(struct conn *c, struct pipe *p, uint64_t lim)
{
    size_t len = (size_t)(lim - p->off_out);
    ssize_t n;

    if (len == 0) {
        return 0;
    }
    n = send(p->out, p->buf + p->start, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    if (n < 0) {
        say("conn %u %s: receiver gone (%s) at offset %llu", c->id,
            fp_dir_name(p->dir), strerror(errno),
            (unsigned long long)p->off_out);
        return -1;
    }
    p->start += (size_t)n;
    p->off_out += (uint64_t)n;
    if (p->start == p->end) {
        p->start = p->end = 0;
    }
    if (p->bps > 0) {
        p->tokens -= (double)n;
    }
    unstamp(p);
    return 0;
}

static void
conn_close(struct conn *c, bool rst)
{
    say("conn %u: %s (fwd %llu/%llu, back %llu/%llu)", c->id,
        rst ? "reset" : "closed", (unsigned long long)c->p[FP_FWD].off_out,
        (unsigned long long)c->p[FP_FWD].off_in,
        (unsigned long long)c->p[FP_BACK].off_out,
        (unsigned long long)c->p[FP_BACK].off_in);
    for (int i = 0; i < 2; i++) {
        if (rst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            (void)setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        } else {
            (void)shutdown(c->fd[i], SHUT_RDWR);
        }
        close(c->fd[i]);
    }
    for (int d = 0; d < FP__DIR_COUNT; d++) {
        free(c->p[d].buf);
    }
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        rules[i].pending[c - conns] = false;
        memset(rules[i].seen[c - conns], 0, sizeof(rules[i].seen[0]));
    }
    memset(c, 0, sizeof(*c));
}

static int
connect_target(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
    int fd = -1;

    if (getaddrinfo(target_host, target_port, &hints, &ai) != 0) {
        return -1;
    }
    for (a = ai; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void
conn_accept(int lfd)
{
    int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), tfd, one = 1;
    struct conn *c = NULL;

    if (cfd < 0) {
        return;
    }
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        if (!conns[k].used) {
            c = &conns[k];
            break;
        }
    }
    tfd = c != NULL ? connect_target() : -1;
    if (tfd < 0) {
        say("refusing a connection: %s",
            c == NULL ? "too many connections" : "target unreachable");
        close(cfd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->used = true;
    c->id = next_conn_id++;
    c->fd[0] = cfd;
    c->fd[1] = tfd;
    for (int d = 0; d < FP__DIR_COUNT; d++) {
        struct pipe *p = &c->p[d];

        p->dir = (enum fp_dir)d;
        p->in = d == FP_FWD ? cfd : tfd;
        p->out = d == FP_FWD ? tfd : cfd;
        p->buf = malloc(FP_BUF_SIZE);
        fp_parser_init(&p->parser);
        if (p->buf == NULL) {
            conn_close(c, true);
            return;
        }
    }
    for (int i = 0; i < 2; i++) {
        set_nonblock(c->fd[i]);
        (void)setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    say("conn %u: open", c->id);
}

/* Both directions done: close. */
static void
conn_settle(struct conn *c)
{
    for (int d = 0; d < FP__DIR_COUNT; d++) {
        struct pipe *p = &c->p[d];

        if (p->in_eof && !p->shut && !p->hold && p->off_out == p->off_in) {
            (void)shutdown(p->out, SHUT_WR);
            p->shut = true;
        }
    }
    if (c->p[FP_FWD].shut && c->p[FP_BACK].shut && c->p[FP_FWD].in_eof &&
        c->p[FP_BACK].in_eof) {
        conn_close(c, false);
    }
}

/* ------------------------------------------------------------ control */

static void ctl_reply(struct ctl *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ctl_reply(struct ctl *k, const char *fmt, ...)
{
    char line[CTL_LINE + 64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    (void)send(k->fd, line, (size_t)n, MSG_NOSIGNAL);
}

static struct fp_rule *
rule_find(unsigned int id)
{
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        if (rules[i].used && rules[i].id == id) {
            return &rules[i];
        }
    }
    return NULL;
}

static int
rule_add(const char *spec, char *err, size_t errlen)
{
    struct fp_rule *slot = NULL;

    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        if (!rules[i].used) {
            slot = &rules[i];
            break;
        }
    }
    if (slot == NULL) {
        snprintf(err, errlen, "too many rules (clear some)");
        return -1;
    }
    if (fp_rule_parse(spec, slot, err, errlen) < 0) {
        memset(slot, 0, sizeof(*slot));
        return -1;
    }
    slot->id = next_rule_id++;
    rule_scan_recent(slot);
    say("rule %u: %s", slot->id, spec);
    return (int)slot->id;
}

static void
release_all(int dir)
{
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        for (int d = 0; d < FP__DIR_COUNT && conns[k].used; d++) {
            if (dir < 0 || dir == d) {
                conns[k].p[d].hold = false;
                conns[k].p[d].stall_until = 0;
            }
        }
    }
}

static void
clear_all(void)
{
    memset(rules, 0, sizeof(rules));
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        for (int d = 0; d < FP__DIR_COUNT && conns[k].used; d++) {
            struct pipe *p = &conns[k].p[d];

            p->hold = false;
            p->stall_until = 0;
            p->bps = 0;
            p->latency = 0;
            p->nflip = 0;
        }
    }
}

static void
ctl_wait_done(struct ctl *k, const struct fp_rule *r)
{
    ctl_reply(k, "fired %u conn=%u dir=%s offset=%llu ms=%llu", r->id,
              r->fired_conn, fp_dir_name(r->fired_dir),
              (unsigned long long)r->fired_off,
              (unsigned long long)r->fired_ms);
    k->wait_rule = 0;
}

static void
ctl_status(struct ctl *k, uint64_t now)
{
    for (unsigned int i = 0; i < FP_MAX_CONN; i++) {
        const struct conn *c = &conns[i];
        char st[2][96];

        if (!c->used) {
            continue;
        }
        for (int d = 0; d < FP__DIR_COUNT; d++) {
            const struct pipe *p = &c->p[d];

            snprintf(
                st[d], sizeof(st[d]), "%llu/%llu%s%s%s%s last=%s",
                (unsigned long long)p->off_out, (unsigned long long)p->off_in,
                p->hold ? ",held" : "", p->stall_until > now ? ",stalled" : "",
                p->truncated ? ",truncated" : "", p->in_eof ? ",eof" : "",
                p->parser.frames > 0 ? fp_frame_type_name(p->parser.last_type)
                                     : "-");
        }
        ctl_reply(k, "conn %u fwd=%s back=%s", c->id, st[0], st[1]);
    }
    ctl_reply(k, "end");
}

static void
ctl_command(struct ctl *k, char *line, uint64_t now)
{
    char err[256] = "";
    char *arg;

    line[strcspn(line, "\r\n")] = '\0';
    arg = strchr(line, ' ');
    if (arg != NULL) {
        *arg++ = '\0';
    }
    if (strcmp(line, "arm") == 0 && arg != NULL) {
        int id = rule_add(arg, err, sizeof(err));

        if (id < 0) {
            ctl_reply(k, "error %s", err);
        } else {
            fire_now_rules(now);
            ctl_reply(k, "ok %d", id);
        }
    } else if (strcmp(line, "wait") == 0 && arg != NULL) {
        unsigned int id = (unsigned int)strtoul(arg, &arg, 10);
        unsigned long ms = strtoul(arg, NULL, 10);
        struct fp_rule *r = rule_find(id);

        if (r == NULL) {
            ctl_reply(k, "error no rule %u", id);
        } else if (r->fired) {
            ctl_wait_done(k, r);
        } else {
            k->wait_rule = id;
            k->wait_until = now + (ms > 0 ? ms : 60000);
        }
    } else if (strcmp(line, "release") == 0) {
        int dir = -1;

        if (arg != NULL) {
            dir = strcmp(arg, "fwd") == 0    ? FP_FWD
                  : strcmp(arg, "back") == 0 ? FP_BACK
                                             : -1;
        }
        release_all(dir);
        ctl_reply(k, "ok");
    } else if (strcmp(line, "clear") == 0) {
        clear_all();
        ctl_reply(k, "ok");
    } else if (strcmp(line, "status") == 0) {
        ctl_status(k, now);
    } else if (strcmp(line, "quit") == 0) {
        ctl_reply(k, "ok");
        quitting = true;
    } else {
        ctl_reply(k,
                  "error unknown command '%s' (arm, wait, release, "
                  "clear, status, quit)",
                  line);
    }
}

static void
ctl_read(struct ctl *k, uint64_t now)
{
    ssize_t n = recv(k->fd, k->line + k->len, sizeof(k->line) - 1 - k->len,
                     MSG_DONTWAIT);
    char *nl;

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        close(k->fd);
        k->fd = -1;
        return;
    }
    k->len += (size_t)n;
    k->line[k->len] = '\0';
    while (k->wait_rule == 0 && (nl = strchr(k->line, '\n')) != NULL) {
        size_t used = (size_t)(nl - k->line) + 1;
        char cmd[CTL_LINE];

        memcpy(cmd, k->line, used);
        cmd[used] = '\0';
        memmove(k->line, k->line + used, k->len - used + 1);
        k->len -= used;
        ctl_command(k, cmd, now);
    }
    if (k->len == sizeof(k->line) - 1) {
        ctl_reply(k, "error line too long");
        k->len = 0;
    }
}

static int
ctl_listen(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(a.sun_path)) {
        return -ENAMETOOLONG;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    (void)unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    return fd;
}

static int
tcp_listen(const char *spec, int *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[256], ps[16];
    int fd, one = 1, rcvbuf = FP_SOCK_RCVBUF;

    if (split_hostport(spec, host, sizeof(host), ps, sizeof(ps)) < 0 ||
        getaddrinfo(host, ps, &hints, &ai) != 0) {
        return -EINVAL;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        int ret = -errno;

        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
        return ret;
    }
    freeaddrinfo(ai);
    *port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ------------------------------------------------------------ main */

static void
on_signal(int sig)
{
    if (sig == SIGUSR1) {
        sig_cut = 1;
    } else if (sig == SIGUSR2) {
        sig_release = 1;
    } else {
        sig_quit = 1;
    }
}

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: vmig-faultproxy --listen HOST:PORT --to HOST:PORT\n"
        "                       [--control PATH] [--port-file PATH]\n"
        "                       [--arm RULE]... [-v]\n"
        "Relays TCP from --listen to --to, injecting faults.\n"
        "RULE: [conn=N] DIR WHEN ACTION [ARG [ARG2]]\n"
        "  DIR     fwd | back | both (both: only with now)\n"
        "  WHEN    now | at=OFFSET | frame=TYPE[:COND...][|TYPE...]\n"
        "          COND: pass=N pass>=N last precopy stopcopy nth=N\n"
        "  ACTION  hold | cut | reset | truncate [AFTER] | flip [OFF [BIT]] |\n"
        "          stall MS | throttle BYTES/S | latency MS\n"
        "Control socket commands: arm RULE, wait ID [MS], release "
        "[DIR],\n"
        "  clear, status, quit.  SIGUSR1 cuts every connection, SIGUSR2\n"
        "  releases every hold.  Port 0 picks a free port (printed).\n"
        "Exit codes: 0 success, 1 failure, 2 usage error.\n");
}

static void
loop_once(int lfd, int cfd)
{
    struct pollfd pfd[2 + MAX_CTL + FP_MAX_CONN * 2];
    int who[2 + MAX_CTL + FP_MAX_CONN * 2]; /* index into conns*2+dir... */
    uint64_t now = mono_ms(), wake = now + 1000;
    nfds_t n = 0;
    int timeout;

    fire_now_rules(now);
    pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
    who[n++] = -1;
    if (cfd >= 0) {
        pfd[n] = (struct pollfd){.fd = cfd, .events = POLLIN};
        who[n++] = -2;
    }
    for (int i = 0; i < MAX_CTL; i++) {
        if (ctls[i].fd >= 0) {
            pfd[n] = (struct pollfd){.fd = ctls[i].fd, .events = POLLIN};
            who[n++] = -10 - i;
            if (ctls[i].wait_rule != 0 && ctls[i].wait_until < wake) {
                wake = ctls[i].wait_until;
            }
        }
    }
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        struct conn *c = &conns[k];
        short ev[2] = {0, 0};

        if (!c->used) {
            continue;
        }
        for (int d = 0; d < FP__DIR_COUNT && c->used; d++) {
            struct pipe *p = &c->p[d];
            uint64_t lim;

            refill(p, now);
            lim = gate(c, p, now);
            while (lim == p->off_out && c->used) {
                uint64_t before = lim;

                if (!check_triggers(c, p, now)) {
                    break;
                }
                lim = gate(c, p, now);
                if (lim == before) {
                    break;
                }
            }
            if (!c->used) {
                break;
            }
            if (!p->in_eof &&
                (p->truncated || p->end - p->start < FP_BUF_SIZE)) {
                ev[d == FP_FWD ? 0 : 1] |= POLLIN;
            }
            if (lim > p->off_out) {
                ev[d == FP_FWD ? 1 : 0] |= POLLOUT;
            }
            if (p->stall_until > now && p->stall_until < wake) {
                wake = p->stall_until;
            }
            if (p->latency > 0 && p->st_n > 0 && lim == p->off_out) {
                uint64_t t = p->st[p->st_head].t + p->latency;

                wake = t > now && t < wake ? t : wake;
            }
            if (p->bps > 0 && p->off_in > p->off_out && lim == p->off_out) {
                wake = now + 5 < wake ? now + 5 : wake;
            }
        }
        if (!c->used) {
            continue;
        }
        conn_settle(c);
        if (!c->used) {
            continue;
        }
        for (int i = 0; i < 2; i++) {
            /* nothing wanted: ignored (a hung-up socket would wake us) */
            pfd[n] = (struct pollfd){.fd = ev[i] != 0 ? c->fd[i] : -1,
                                     .events = ev[i]};
            who[n++] = (int)(k * 2 + (unsigned int)i);
        }
    }
    timeout = wake > now ? (int)(wake - now) : 0;
    if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
        return;
    }
    now = mono_ms();
    for (nfds_t i = 0; i < n; i++) {
        short re = pfd[i].revents;

        if (re == 0) {
            continue;
        }
        if (who[i] == -1) {
            conn_accept(lfd);
        } else if (who[i] == -2) {
            int fd = accept4(cfd, NULL, NULL, SOCK_CLOEXEC);

            for (int j = 0; fd >= 0 && j < MAX_CTL; j++) {
                if (ctls[j].fd < 0) {
                    memset(&ctls[j], 0, sizeof(ctls[j]));
                    ctls[j].fd = fd;
                    fd = -1;
                }
            }
            if (fd >= 0) {
                close(fd);
            }
        } else if (who[i] <= -10) {
            ctl_read(&ctls[-10 - who[i]], now);
        } else if (who[i] >= 0) {
            struct conn *c = &conns[who[i] / 2];
            int side = who[i] % 2; /* 0 client, 1 target */
            struct pipe *rp = &c->p[side == 0 ? FP_FWD : FP_BACK];
            struct pipe *wp = &c->p[side == 0 ? FP_BACK : FP_FWD];

            if (!c->used) {
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                (void)pipe_read(c, rp, now);
            }
            if ((re & POLLOUT) && c->used) {
                refill(wp, now);
                if (pipe_write(c, wp, gate(c, wp, now)) < 0) {
                    conn_close(c, true);
                }
            }
        }
    }
    for (int i = 0; i < MAX_CTL; i++) {
        struct ctl *k = &ctls[i];
        struct fp_rule *r;

        if (k->fd < 0 || k->wait_rule == 0) {
            continue;
        }
        r = rule_find(k->wait_rule);
        if (r == NULL) {
            ctl_reply(k, "error rule %u cleared", k->wait_rule);
            k->wait_rule = 0;
        } else if (r->fired) {
            ctl_wait_done(k, r);
        } else if (now >= k->wait_until) {
            ctl_reply(k, "timeout %u", k->wait_rule);
            k->wait_rule = 0;
        }
        if (k->wait_rule == 0 && k->len > 0) {
            ctl_read(k, now); /* commands queued behind the wait */
        }
    }
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"to", required_argument, NULL, 't'},
        {"control", required_argument, NULL, 'c'},
        {"port-file", required_argument, NULL, 'p'},
        {"arm", required_argument, NULL, 'a'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_at = NULL, *to = NULL, *ctl_path = NULL;
    const char *port_file = NULL;
    const char *arms[FP_MAX_RULES];
    unsigned int narm = 0;
    struct sigaction sa = {.sa_handler = on_signal};
    int opt, lfd, cfd = -1, port = 0;
    char err[256];

    while ((opt = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_at = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'c':
            ctl_path = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'a':
            if (narm == FP_MAX_RULES) {
                fprintf(stderr, "vmig-faultproxy: too many --arm\n");
                return 2;
            }
            arms[narm++] = optarg;
            break;
        case 'v':
            verbose++;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (listen_at == NULL || to == NULL || optind != argc ||
        split_hostport(to, target_host, sizeof(target_host), target_port,
                       sizeof(target_port)) < 0) {
        usage(stderr);
        return 2;
    }
    for (unsigned int i = 0; i < narm; i++) {
        if (rule_add(arms[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig-faultproxy: --arm '%s': %s\n", arms[i], err);
            return 2;
        }
    }
    for (int i = 0; i < MAX_CTL; i++) {
        ctls[i].fd = -1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    lfd = tcp_listen(listen_at, &port);
    if (lfd < 0) {
        fprintf(stderr, "vmig-faultproxy: cannot listen on %s: %s\n", listen_at,
                strerror(-lfd));
        return 1;
    }
    if (ctl_path != NULL) {
        cfd = ctl_listen(ctl_path);
        if (cfd < 0) {
            fprintf(stderr, "vmig-faultproxy: control socket %s: %s\n",
                    ctl_path, strerror(-cfd));
            return 1;
        }
    }
    if (port_file != NULL) {
        char tmp[4096];
        FILE *f;

        /* written whole, then renamed: a reader never sees half of it */
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) < 0) {
            fprintf(stderr, "vmig-faultproxy: cannot write %s\n", port_file);
            return 1;
        }
    }
    printf("vmig-faultproxy: listening on port %d, relaying to %s\n", port, to);
    fflush(stdout);
    while (!quitting && !sig_quit) {
        if (sig_cut) {
            sig_cut = 0;
            for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
                if (conns[k].used) {
                    conn_close(&conns[k], false);
                }
            }
        }
        if (sig_release) {
            sig_release = 0;
            release_all(-1);
        }
        loop_once(lfd, cfd);
    }
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        if (conns[k].used) {
            conn_close(&conns[k], false);
        }
    }
    for (int i = 0; i < MAX_CTL; i++) {
        if (ctls[i].fd >= 0) {
            close(ctls[i].fd);
        }
    }
    close(lfd);
    if (cfd >= 0) {
        close(cfd);
        (void)unlink(ctl_path);
    }
    return 0;
}
