/* SPDX-License-Identifier: MIT */
/*
 * fp.h - vmig-faultproxy: a TCP relay between a migration source and its
 * destination that injects faults on command (a control socket, signals,
 * --arm rules): cut or reset the connection, truncate a direction, flip a
 * bit, stall, throttle, add latency.  Rules fire at a byte offset, at once,
 * or at a frame of the vmig migration stream (docs/migration-protocol.md:
 * an 8-byte preamble, then 24-byte frame headers), so a test can hold the
 * stream at an exact phase of a migration.  Plain libc; nothing from
 * libvmig, so the proxy judges the wire format from the outside.
 */
#ifndef VMIG_FAULTPROXY_H
#define VMIG_FAULTPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FP_MAX_CONN 16
#define FP_MAX_RULES 64
#define FP_MAX_ALT 4
#define FP_MAX_FLIPS 8
#define FP_BUF_SIZE (1u << 20) /* bytes buffered per direction */
/* the listening socket's receive buffer: what the proxy takes in (and
 * the sender sees acknowledged) beyond FP_BUF_SIZE is bounded, so a
 * throttle or a hold holds the sender back as a slow link would instead
 * of a deep buffer hiding it (the kernel doubles it) */
#define FP_SOCK_RCVBUF (256 << 10)
#define FP_MAX_STAMPS 4096 /* arrival stamps kept for latency */

enum fp_dir {
    FP_FWD = 0, /* connecting side (source) -> target (destination) */
    FP_BACK,    /* target -> connecting side (the return path) */
    FP__DIR_COUNT,
    FP_BOTH = FP__DIR_COUNT,
};

enum fp_when {
    FP_WHEN_NOW = 0,
    FP_WHEN_AT,    /* a stream byte offset */
    FP_WHEN_FRAME, /* the start of a matching frame */
};

enum fp_action {
    FP_ACT_HOLD = 0, /* forward nothing more until released */
    FP_ACT_CUT,      /* close both sockets (FIN) */
    FP_ACT_RESET,    /* close both sockets with a TCP reset */
    FP_ACT_TRUNCATE, /* end the direction arg bytes on (FIN), drop the rest */
    FP_ACT_FLIP,     /* flip bit arg2 of the byte arg bytes further on */
    FP_ACT_STALL,    /* forward nothing for arg ms */
    FP_ACT_THROTTLE, /* at most arg bytes per second (0: no limit) */
    FP_ACT_LATENCY,  /* deliver every byte arg ms after it arrived */
    FP__ACT_COUNT
};

/* A frame as the classifier saw it. */
struct fp_frame {
    uint64_t start;    /* stream offset of its first header byte */
    unsigned int type; /* header type */
    uint32_t len;      /* payload length */
    uint32_t pflags;   /* RAM, RAM_PASS_END, DEV_DATA: payload flags */
    uint32_t pass;     /* RAM: pass; RAM_PASS_END: the pass it ends */
    bool pass_known;   /* pass is meaningful */
};

/* One alternative of a frame trigger: TYPE[:cond...]. */
struct fp_alt {
    unsigned int type;
    int pass_op; /* 0 any, 1 equal, 2 at least */
    uint32_t pass;
    bool last;        /* RAM_PASS_END with the LAST flag */
    bool precopy;     /* DEV_DATA with the PRECOPY flag */
    bool stopcopy;    /* DEV_DATA without it */
    unsigned int nth; /* the nth match (1-based; 0 = first) */
};

struct fp_rule {
    bool used;
    bool fired;
    unsigned int id;
    enum fp_dir dir;
    enum fp_when when;
    uint64_t at;
    struct fp_alt alt[FP_MAX_ALT];
    unsigned int nalt;
    enum fp_action action;
    uint64_t arg, arg2;
    unsigned int conn; /* only this connection (1-based id); 0 any */
    /* per connection slot: matches seen, and where it fires (set once a
     * matching frame was classified) */
    unsigned int seen[FP_MAX_CONN][FP_MAX_ALT];
    bool pending[FP_MAX_CONN];
    uint64_t pos[FP_MAX_CONN];
    /* what happened */
    unsigned int fired_conn;
    enum fp_dir fired_dir;
    uint64_t fired_off;
    uint64_t fired_ms; /* CLOCK_MONOTONIC */
};

/* Incremental classifier of one direction of a vmig stream. */
struct fp_parser {
    int state; /* see frames.c */
    uint64_t pos;
    uint64_t frame_start;
    uint8_t hdr[24];
    unsigned int hdr_got;
    uint8_t pre[24];
    unsigned int pre_need, pre_got;
    uint64_t body_left;
    struct fp_frame cur;
    uint64_t frames; /* classified so far */
    unsigned int last_type;
};

/* frames.c */
void fp_parser_init(struct fp_parser *p);
/* Feed @len bytes; @fn is called for each frame once classified.
 * Return: false once the stream is not (or no longer) a vmig stream. */
bool fp_parser_feed(struct fp_parser *p, const uint8_t *data, size_t len,
                    void (*fn)(void *opaque, const struct fp_frame *f),
                    void *opaque);
/* The offset of a frame whose header is still incomplete, or UINT64_MAX. */
uint64_t fp_parser_unclassified(const struct fp_parser *p);
bool fp_parser_lost(const struct fp_parser *p);
int fp_frame_type_parse(const char *s, unsigned int *type);
const char *fp_frame_type_name(unsigned int type);

/* rules.c */
/* Parse "[conn=N] DIR WHEN ACTION [ARG [ARG2]]"; @err gets why not. */
int fp_rule_parse(const char *spec, struct fp_rule *r, char *err,
                  size_t errlen);
/* Does @f match an alternative of @r (counting matches on slot @slot)? */
bool fp_rule_match(struct fp_rule *r, unsigned int slot,
                   const struct fp_frame *f);
const char *fp_dir_name(enum fp_dir d);
const char *fp_action_name(enum fp_action a);

#endif /* VMIG_FAULTPROXY_H */
