/* SPDX-License-Identifier: MIT */
/*
 * relay.c - vmig-faultproxy's relay: each connection's two pipes (read,
 * gate, write through a bounded buffer), and the rules firing on them
 * (frames classified as they pass, byte offsets, "now" rules): hold, cut,
 * reset, truncate, flip, stall, throttle, latency.
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
#include "proxy.h"

/* ------------------------------------------------------------ rules */

static bool
applies(const struct fp_rule *r, const struct conn *c, enum fp_dir d)
{
    return r->used && !r->fired && (r->conn == 0 || r->conn == c->id) &&
           (r->dir == d || r->dir == FP_BOTH);
}

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
        fp_say("conn %u %s: frame %s at %llu (%u bytes)", fc->c->id,
               fp_dir_name(p->dir), fp_frame_type_name(f->type),
               (unsigned long long)f->start, f->len);
    }
}

/* A new frame rule also looks at frames classified but not yet sent. */
void
fp_rule_scan_recent(struct fp_rule *r)
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
    fp_say("rule %u fired: conn %u %s at offset %llu: %s %llu", r->id, c->id,
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
        fp_conn_close(c, false);
        return false;
    case FP_ACT_RESET:
        fp_conn_close(c, true);
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
void
fp_fire_now_rules(uint64_t now)
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

uint64_t
fp_gate(struct conn *c, struct pipe *p, uint64_t now)
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
bool
fp_check_triggers(struct conn *c, struct pipe *p, uint64_t now)
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

void
fp_refill(struct pipe *p, uint64_t now)
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
int
fp_pipe_read(struct conn *c, struct pipe *p, uint64_t now)
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
        fp_say("conn %u %s: sender %s at offset %llu", c->id,
               fp_dir_name(p->dir), n == 0 ? "closed" : strerror(errno),
               (unsigned long long)p->off_in);
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

int
fp_pipe_write(struct conn *c, struct pipe *p, uint64_t lim)
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
        fp_say("conn %u %s: receiver gone (%s) at offset %llu", c->id,
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

void
fp_conn_close(struct conn *c, bool rst)
{
    fp_say("conn %u: %s (fwd %llu/%llu, back %llu/%llu)", c->id,
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

void
fp_conn_accept(int lfd)
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
        fp_say("refusing a connection: %s",
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
            fp_conn_close(c, true);
            return;
        }
    }
    for (int i = 0; i < 2; i++) {
        fp_set_nonblock(c->fd[i]);
        (void)setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    fp_say("conn %u: open", c->id);
}

/* Both directions done: close. */
void
fp_conn_settle(struct conn *c)
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
        fp_conn_close(c, false);
    }
}
