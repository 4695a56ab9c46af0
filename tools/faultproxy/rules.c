/* SPDX-License-Identifier: MIT */
/*
 * rules.c - fault rules: "[conn=N] DIR WHEN ACTION [ARG [ARG2]]".
 *
 *   DIR     fwd (source -> destination), back (the return path), both
 *   WHEN    now | at=OFFSET | frame=ALT[|ALT...]
 *           ALT = TYPE[:pass=N|:pass>=N|:last|:precopy|:stopcopy|:nth=N...]
 *           TYPE = a frame type name (RAM, DEV_DATA, CONFIRM, ...) or number
 *   ACTION  hold | cut | reset | truncate [AFTER] | flip [OFFSET [BIT]] |
 *           stall MS | throttle BYTES_PER_S | latency MS
 *
 * A rule fires once, on the first connection (or on conn=N) where its
 * trigger is reached, right before the byte at the trigger position is
 * forwarded; "now" fires on every open connection (or on the next one).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fp.h"

static const char *const dir_names[] = {
    [FP_FWD] = "fwd",
    [FP_BACK] = "back",
    [FP_BOTH] = "both",
};

static const struct {
    const char *name;
    int nargs; /* required arguments; -1: up to two optional */
} actions[FP__ACT_COUNT] = {
    [FP_ACT_HOLD] = {"hold", 0},         [FP_ACT_CUT] = {"cut", 0},
    [FP_ACT_RESET] = {"reset", 0},       [FP_ACT_TRUNCATE] = {"truncate", -1},
    [FP_ACT_FLIP] = {"flip", -1},        [FP_ACT_STALL] = {"stall", 1},
    [FP_ACT_THROTTLE] = {"throttle", 1}, [FP_ACT_LATENCY] = {"latency", 1},
};

const char *
fp_dir_name(enum fp_dir d)
{
    return (unsigned int)d <= FP_BOTH ? dir_names[d] : "?";
}

const char *
fp_action_name(enum fp_action a)
{
    return (unsigned int)a < FP__ACT_COUNT ? actions[a].name : "?";
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s == '\0' || *s == '-') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno != 0 || end == s) {
        return -EINVAL;
    }
    /* k, M suffixes (powers of 1024) for throttles and offsets */
    if (*end == 'k' || *end == 'K') {
        v *= 1024;
        end++;
    } else if (*end == 'M') {
        v *= 1024 * 1024;
        end++;
    }
    if (*end != '\0') {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int
parse_alt(char *s, struct fp_alt *a, char *err, size_t errlen)
{
    char *save = NULL, *tok = strtok_r(s, ":", &save);
    uint64_t v;

    memset(a, 0, sizeof(*a));
    if (tok == NULL || fp_frame_type_parse(tok, &a->type) < 0) {
        snprintf(err, errlen, "unknown frame type '%s'", tok ? tok : "");
        return -EINVAL;
    }
    while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
        if (strncmp(tok, "pass>=", 6) == 0 && parse_u64(tok + 6, &v) == 0) {
            a->pass_op = 2;
            a->pass = (uint32_t)v;
        } else if (strncmp(tok, "pass=", 5) == 0 &&
                   parse_u64(tok + 5, &v) == 0) {
            a->pass_op = 1;
            a->pass = (uint32_t)v;
        } else if (strncmp(tok, "nth=", 4) == 0 &&
                   parse_u64(tok + 4, &v) == 0 && v > 0) {
            a->nth = (unsigned int)v;
        } else if (strcmp(tok, "last") == 0) {
            a->last = true;
        } else if (strcmp(tok, "precopy") == 0) {
            a->precopy = true;
        } else if (strcmp(tok, "stopcopy") == 0) {
            a->stopcopy = true;
        } else {
            snprintf(err, errlen, "unknown frame condition '%s'", tok);
            return -EINVAL;
        }
    }
    return 0;
}

static int
parse_when(char *s, struct fp_rule *r, char *err, size_t errlen)
{
    if (strcmp(s, "now") == 0) {
        r->when = FP_WHEN_NOW;
        return 0;
    }
    if (strncmp(s, "at=", 3) == 0) {
        r->when = FP_WHEN_AT;
        if (parse_u64(s + 3, &r->at) < 0) {
            snprintf(err, errlen, "bad offset '%s'", s + 3);
            return -EINVAL;
        }
        return 0;
    }
    if (strncmp(s, "frame=", 6) == 0) {
        char *save = NULL, *alt;

        r->when = FP_WHEN_FRAME;
        for (alt = strtok_r(s + 6, "|", &save); alt != NULL;
             alt = strtok_r(NULL, "|", &save)) {
            if (r->nalt == FP_MAX_ALT) {
                snprintf(err, errlen, "at most %d frame alternatives",
                         FP_MAX_ALT);
                return -EINVAL;
            }
            if (parse_alt(alt, &r->alt[r->nalt++], err, errlen) < 0) {
                return -EINVAL;
            }
        }
        if (r->nalt == 0) {
            snprintf(err, errlen, "frame= needs a frame type");
            return -EINVAL;
        }
        return 0;
    }
    snprintf(err, errlen, "unknown trigger '%s' (now, at=N, frame=TYPE)", s);
    return -EINVAL;
}

int
fp_rule_parse(const char *spec, struct fp_rule *r, char *err, size_t errlen)
{
    char buf[512], *save = NULL, *tok, *argv[8];
    int argc = 0, i = 0, a;
    uint64_t v;

    memset(r, 0, sizeof(*r));
    if (strlen(spec) >= sizeof(buf)) {
        snprintf(err, errlen, "rule too long");
        return -E2BIG;
    }
    snprintf(buf, sizeof(buf), "%s", spec);
    for (tok = strtok_r(buf, " \t\r\n", &save); tok != NULL && argc < 8;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        argv[argc++] = tok;
    }
    if (i < argc && strncmp(argv[i], "conn=", 5) == 0) {
        if (parse_u64(argv[i] + 5, &v) < 0 || v == 0) {
            snprintf(err, errlen, "bad connection '%s'", argv[i] + 5);
            return -EINVAL;
        }
        r->conn = (unsigned int)v;
        i++;
    }
    if (argc - i < 3) {
        snprintf(err, errlen, "usage: [conn=N] DIR WHEN ACTION [ARG [ARG2]]");
        return -EINVAL;
    }
    for (a = 0; a <= FP_BOTH; a++) {
        if (strcmp(argv[i], dir_names[a]) == 0) {
            break;
        }
    }
    if (a > FP_BOTH) {
        snprintf(err, errlen, "unknown direction '%s' (fwd, back, both)",
                 argv[i]);
        return -EINVAL;
    }
    r->dir = (enum fp_dir)a;
    if (parse_when(argv[i + 1], r, err, errlen) < 0) {
        return -EINVAL;
    }
    if (r->dir == FP_BOTH && r->when != FP_WHEN_NOW) {
        snprintf(err, errlen, "'both' only with 'now'");
        return -EINVAL;
    }
    i += 2;
    for (a = 0; a < FP__ACT_COUNT; a++) {
        if (strcmp(argv[i], actions[a].name) == 0) {
            break;
        }
    }
    if (a == FP__ACT_COUNT) {
        snprintf(err, errlen, "unknown action '%s'", argv[i]);
        return -EINVAL;
    }
    r->action = (enum fp_action)a;
    i++;
    if ((actions[a].nargs >= 0 && argc - i != actions[a].nargs) ||
        (actions[a].nargs < 0 && argc - i > 2)) {
        snprintf(err, errlen, "%s takes %s", actions[a].name,
                 actions[a].nargs == 0   ? "no argument"
                 : actions[a].nargs == 1 ? "one argument"
                                         : "at most two arguments");
        return -EINVAL;
    }
    if (argc > i && parse_u64(argv[i], &r->arg) < 0) {
        snprintf(err, errlen, "bad number '%s'", argv[i]);
        return -EINVAL;
    }
    if (a == FP_ACT_TRUNCATE && argc > i + 1) {
        snprintf(err, errlen, "truncate takes at most one argument");
        return -EINVAL;
    }
    if (argc > i + 1 && (parse_u64(argv[i + 1], &r->arg2) < 0 || r->arg2 > 7)) {
        snprintf(err, errlen, "bad bit '%s' (0..7)", argv[i + 1]);
        return -EINVAL;
    }
    r->used = true;
    return 0;
}

bool
fp_rule_match(struct fp_rule *r, unsigned int slot, const struct fp_frame *f)
{
    for (unsigned int i = 0; i < r->nalt; i++) {
        const struct fp_alt *a = &r->alt[i];

        if (a->type != f->type) {
            continue;
        }
        if (a->pass_op != 0 &&
            (!f->pass_known || (a->pass_op == 1 && f->pass != a->pass) ||
             (a->pass_op == 2 && f->pass < a->pass))) {
            continue;
        }
        if (a->last && !(f->type == 0x04 && (f->pflags & 1))) {
            continue;
        }
        if (a->precopy && !(f->type == 0x06 && (f->pflags & 1))) {
            continue;
        }
        if (a->stopcopy && !(f->type == 0x06 && !(f->pflags & 1))) {
            continue;
        }
        if (++r->seen[slot][i] < (a->nth > 0 ? a->nth : 1)) {
            continue;
        }
        return true;
    }
    return false;
}
