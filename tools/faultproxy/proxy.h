/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - the inside of vmig-faultproxy shared by its files: each
 * connection's two pipes and the control clients (the state lives in
 * util.c), the relay and the rules firing on it (relay.c), the control
 * socket (control.c) and the poll loop (main.c).  Private to the tool.
 */
#ifndef VMIG_FAULTPROXY_PROXY_H
#define VMIG_FAULTPROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fp.h"
#include "timeio.h" /* vmig__mono_ms(): the project's one clock */

#define FP_MAX_CTL 8
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

/* util.c: the proxy's state (one thread: no locking) */
extern struct conn conns[FP_MAX_CONN];
extern struct fp_rule rules[FP_MAX_RULES];
extern struct ctl ctls[FP_MAX_CTL];
extern unsigned int next_conn_id, next_rule_id;
extern int verbose;
extern bool quitting;
extern char target_host[256], target_port[16];

/* util.c */
/* A line on stderr with -v. */
void fp_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fp_split_hostport(const char *s, char *host, size_t hl, char *port,
                      size_t pl);
void fp_set_nonblock(int fd);

/* relay.c */
void fp_conn_close(struct conn *c, bool rst);
/* Fire "now" rules on every open connection. */
void fp_fire_now_rules(uint64_t now);
/* A new frame rule: look at the frames already classified. */
void fp_rule_scan_recent(struct fp_rule *r);
/* How many bytes of @p may go now (holds, stalls, throttle, latency). */
uint64_t fp_gate(struct conn *c, struct pipe *p, uint64_t now);
/* Fire the rules whose trigger is the next byte of @p; false: closed. */
bool fp_check_triggers(struct conn *c, struct pipe *p, uint64_t now);
void fp_refill(struct pipe *p, uint64_t now);
int fp_pipe_read(struct conn *c, struct pipe *p, uint64_t now);
int fp_pipe_write(struct conn *c, struct pipe *p, uint64_t lim);
void fp_conn_accept(int lfd);
void fp_conn_settle(struct conn *c);

/* control.c */
void fp_ctl_reply(struct ctl *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct fp_rule *fp_rule_find(unsigned int id);
int fp_rule_add(const char *spec, char *err, size_t errlen);
void fp_release_all(int dir);
void fp_ctl_wait_done(struct ctl *k, const struct fp_rule *r);
void fp_ctl_read(struct ctl *k, uint64_t now);
int fp_ctl_listen(const char *path);
int fp_tcp_listen(const char *spec, int *port);

#endif /* VMIG_FAULTPROXY_PROXY_H */
