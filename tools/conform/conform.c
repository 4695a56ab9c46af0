/* SPDX-License-Identifier: MIT */
/*
 * conform.c - the transport-neutral rules of `vmig conform`.
 *
 * Each rule starts from a fresh session with the device brought back to
 * RUNNING, reaches the states it needs one arc at a time through the
 * kernel's next-step table (so the device only ever sees single arcs,
 * except in the rule about combination transitions), checks what the
 * vfio-user specification (QEMU docs/interop/vfio-user.rst) and the
 * kernel uAPI (include/uapi/linux/vfio.h, "enum vfio_device_mig_state")
 * promise a VMM, and reports one row.  A device that dies under a rule
 * fails that rule; the next one revives it when the transport can
 * (a spawned server).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/fsm.h>
#include "conform.h"

#define PIECE (256u << 10)          /* bytes asked per data read */
#define SAVE_MAX (1ull << 30)       /* a device state conform keeps */
#define MAX_EMPTY_READS 1000000u    /* reads before "it never ends" */
#define ST_MASK VMIG_MIGRATION__ALL /* flags that index the table */
/* PRE_COPY: a running device may dirty its state faster than it is read,
 * and then never says "no more for now"; reading stops after this long */
#define PRECOPY_READ_MS 10000

static const char c_flags[] =
    "vfio-user DEVICE_FEATURE MIGRATION: if GET succeeds, RUNNING and ERROR "
    "are supported; at least VFIO_MIGRATION_STOP_COPY must be set (uAPI: "
    "STOP_COPY, P2P, PRE_COPY are the defined flags)";
static const char c_initial[] =
    "uAPI: a device that supports migration starts in RUNNING";
static const char c_save[] =
    "vfio-user MIG_DATA_READ: a reply with less than the requested size "
    "means there is no more migration data (STOP_COPY: the end)";
static const char c_arc[] =
    "vfio-user Direct State Transitions: the server supports every arc of "
    "its feature set; GET MIG_DEVICE_STATE reports the new state";
static const char c_combo[] =
    "vfio-user Complex State Transitions: any other transition is done as "
    "the shortest combination of arcs, saving states only at its ends";
static const char c_invalid[] =
    "uAPI/vfio-user: ERROR cannot be requested; a SET of a state that is "
    "not defined fails with an error and the device stays where it was";
static const char c_unadv[] =
    "vfio-user: if a feature is not supported, arcs touching its states are "
    "removed; asking for them fails and leaves the state unchanged";
static const char c_sc_pc[] =
    "vfio-user: the STOP_COPY -> PRE_COPY transition is explicitly not "
    "allowed and should return an error";
static const char c_read_state[] =
    "vfio-user MIG_DATA_READ reads data while in a saving group state "
    "(PRE_COPY, STOP_COPY): elsewhere an error, never an empty reply that "
    "reads as the end of data";
static const char c_write_state[] =
    "vfio-user MIG_DATA_WRITE writes data while in RESUMING: elsewhere an "
    "error";
static const char c_fornow[] =
    "uAPI PRE_COPY: running out of data is not the end (-ENOMSG, 'no more "
    "for now'); the session continues in STOP_COPY, where the end comes";
static const char c_eof[] =
    "uAPI STOP_COPY: the end of the data stream is the end; a read after it "
    "returns no data";
static const char c_reset[] =
    "vfio-user: DEVICE_RESET returns the device to RUNNING (the way out of "
    "ERROR); uAPI: VFIO_DEVICE_RESET puts the device in RUNNING from any "
    "state";
static const char c_reset_save[] =
    "uAPI: a reset ends the data session; reads after it fail, and the "
    "next session starts from the beginning";
static const char c_reset_resume[] =
    "uAPI: a reset ends the resuming session; data written before it is "
    "dropped";
static const char c_trip[] =
    "vfio-user RESUMING -> STOP: complete processing of the migration data "
    "(a device's own saved state is valid); STOP -> RUNNING starts it";
static const char c_same[] =
    "migration: the destination device holds the state the source saved "
    "(checked here by saving it again: the same bytes)";
static const char c_sizing[] =
    "uAPI VFIO_MIG_GET_PRECOPY_INFO (x-vmig PRECOPY_INFO): initial_bytes "
    "only shrinks as the initial data is read, and is 0 once it is all "
    "read; only valid in PRE_COPY";
static const char c_log[] =
    "vfio-user DMA_LOGGING_START/REPORT/STOP: SET START with ranges, GET "
    "REPORT a bitmap for a range, SET STOP; a report after STOP fails";

void
cf_row(struct cf *cf, const char *rule, const char *clause, enum cf_verdict v,
       const char *fmt, ...)
{
    struct cf_row r = {.clause = clause, .verdict = v};
    va_list ap;

    snprintf(r.rule, sizeof(r.rule), "%s", rule);
    va_start(ap, fmt);
    vsnprintf(r.seen, sizeof(r.seen), fmt, ap);
    va_end(ap);
    cf->count[v]++;
    cf->emit(cf->opaque, &r);
}

/* ------------------------------------------------------------ the FSM */

void
cf_fsm_from_lib(struct cf_fsm *f)
{
    for (unsigned int fl = 0; fl < 8; fl++) {
        for (unsigned int c = 0; c < 8; c++) {
            for (unsigned int t = 0; t < 8; t++) {
                enum vmig_state n;

                f->next[fl][c][t] =
                    vmig_fsm_next(fl, c, t, &n) == 0 ? (int8_t)n : -1;
            }
        }
    }
}

int
cf_fsm_load(struct cf_fsm *f, const char *path, char *err, size_t len)
{
    FILE *fp = fopen(path, "r");
    bool seen[8] = {false};
    char line[256];
    unsigned int n = 0;

    if (fp == NULL) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -errno;
    }
    memset(f, -1, sizeof(*f));
    while (fgets(line, sizeof(line), fp) != NULL) {
        unsigned int fl, c;
        int pos = 0;
        char *p;

        if (sscanf(line, "flags=%u cur=%u:%n", &fl, &c, &pos) != 2 ||
            pos == 0) {
            continue;
        }
        if (fl > 7 || c > 7) {
            fclose(fp);
            snprintf(err, len, "%s: flags/state out of range: %s", path, line);
            return -EINVAL;
        }
        p = line + pos;
        for (unsigned int t = 0; t < 8; t++) {
            char tok[8];
            int used = 0;

            if (sscanf(p, "%7s%n", tok, &used) != 1) {
                fclose(fp);
                snprintf(err, len, "%s: short row: %s", path, line);
                return -EINVAL;
            }
            p += used;
            if (strcmp(tok, "E") == 0) {
                f->next[fl][c][t] = -1;
            } else if (tok[0] >= '0' && tok[0] <= '7' && tok[1] == '\0') {
                f->next[fl][c][t] = (int8_t)(tok[0] - '0');
            } else {
                fclose(fp);
                snprintf(err, len, "%s: bad cell '%s'", path, tok);
                return -EINVAL;
            }
        }
        seen[fl] = true;
        n++;
    }
    fclose(fp);
    if (n == 0) {
        snprintf(err, len, "%s: no 'flags=F cur=C:' rows", path);
        return -EINVAL;
    }
    /* flag sets the file lacks (without STOP_COPY: none migrates) */
    for (unsigned int fl = 0; fl < 8; fl++) {
        if (!seen[fl] && (fl & VMIG_MIGRATION_STOP_COPY)) {
            snprintf(err, len, "%s: no rows for flags %u", path, fl);
            return -EINVAL;
        }
    }
    return 0;
}

static int
next_step(const struct cf *cf, uint32_t cur, uint32_t target)
{
    if (cur > 7 || target > 7) {
        return -1;
    }
    return cf->fsm.next[cf->flags & ST_MASK][cur][target];
}

static bool
supported(const struct cf *cf, uint32_t s)
{
    return s >= 1 && s <= 7 && next_step(cf, s, s) == (int)s;
}

/* ------------------------------------------------------------ helpers */

static const char *
sname(uint32_t s)
{
    return vmig_state_name(s);
}

/* Move @t to @target one arc at a time; *why says what went wrong. */
static int
drive(struct cf *cf, void *t, uint32_t target, char *why, size_t wl)
{
    const struct cf_ops *o = cf->ops;

    for (int hops = 0; hops < 8; hops++) {
        uint32_t cur, got;
        int n, ret;

        ret = o->get_state(t, &cur);
        if (ret < 0) {
            snprintf(why, wl, "GET state failed: %s", strerror(-ret));
            return ret;
        }
        if (cur == target) {
            return 0;
        }
        n = next_step(cf, cur, target);
        if (n < 0) {
            snprintf(why, wl, "no way from %s to %s for these flags",
                     sname(cur), sname(target));
            return -EINVAL;
        }
        ret = o->set_state(t, (uint32_t)n);
        if (ret < 0) {
            snprintf(why, wl, "arc %s -> %s refused: %s", sname(cur),
                     sname((uint32_t)n), strerror(-ret));
            return ret;
        }
        ret = o->get_state(t, &got);
        if (ret < 0 || got != (uint32_t)n) {
            snprintf(why, wl, "arc %s -> %s: the device reports %s", sname(cur),
                     sname((uint32_t)n), ret < 0 ? strerror(-ret) : sname(got));
            return ret < 0 ? ret : -EIO;
        }
    }
    snprintf(why, wl, "more than 8 arcs to %s", sname(target));
    return -ELOOP;
}

/* Write @len bytes of resuming data. */
static int
put(struct cf *cf, void *t, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        size_t n = len < PIECE ? len : PIECE;
        int ret = cf->ops->write(t, buf, n);

        if (ret < 0) {
            return ret;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read the session until an empty read; appended to *buf.  With @ms > 0,
 * -ETIME when that long passed without one. */
static int
drain_for(struct cf *cf, void *t, uint8_t **buf, size_t *len,
          unsigned int *reads, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;

    for (unsigned int i = 0; i < MAX_EMPTY_READS; i++) {
        if (ms > 0 && now_ms() > end) {
            return -ETIME;
        }
        uint8_t *nb = realloc(*buf, *len + PIECE);
        long n;

        if (nb == NULL) {
            return -ENOMEM;
        }
        *buf = nb;
        n = cf->ops->read(t, *buf + *len, PIECE);
        if (reads != NULL) {
            (*reads)++;
        }
        if (n <= 0) {
            return (int)n;
        }
        *len += (size_t)n;
        if (*len > SAVE_MAX) {
            return -E2BIG;
        }
    }
    return -ELOOP;
}

static int
drain(struct cf *cf, void *t, uint8_t **buf, size_t *len, unsigned int *reads)
{
    return drain_for(cf, t, buf, len, reads, 0);
}

/* Save the device to the end of its STOP_COPY data (left in STOP_COPY). */
static int
save(struct cf *cf, void *t, uint8_t **buf, size_t *len, unsigned int *reads,
     char *why, size_t wl)
{
    int ret = drive(cf, t, VMIG_STATE_STOP_COPY, why, wl);

    *buf = NULL;
    *len = 0;
    if (ret == 0) {
        ret = drain(cf, t, buf, len, reads);
        if (ret < 0) {
            snprintf(why, wl, "read %zu bytes, then %s", *len, strerror(-ret));
        }
    }
    if (ret < 0) {
        free(*buf);
        *buf = NULL;
    }
    return ret;
}

/* Load @buf: RESUMING, write it, RESUMING -> STOP (left in STOP). */
static int
load(struct cf *cf, void *t, const uint8_t *buf, size_t len, char *why,
     size_t wl)
{
    int ret = drive(cf, t, VMIG_STATE_RESUMING, why, wl);
    uint32_t st;

    if (ret < 0) {
        return ret;
    }
    ret = put(cf, t, buf, len);
    if (ret < 0) {
        snprintf(why, wl, "writing %zu bytes in RESUMING failed: %s", len,
                 strerror(-ret));
        return ret;
    }
    ret = cf->ops->set_state(t, VMIG_STATE_STOP);
    if (ret < 0) {
        snprintf(why, wl, "RESUMING -> STOP after %zu bytes refused: %s", len,
                 strerror(-ret));
        return ret;
    }
    if (cf->ops->get_state(t, &st) < 0 || st != VMIG_STATE_STOP) {
        snprintf(why, wl, "RESUMING -> STOP: the device is not in STOP");
        return -EIO;
    }
    return 0;
}

/*
 * Back to RUNNING without trusting a reset: walk there (a RESUMING
 * session is first fed the saved state so it can end), and reset only
 * when walking fails.
 */
static int
home(struct cf *cf, void *t, char *why, size_t wl)
{
    uint32_t st;
    int ret = cf->ops->get_state(t, &st);

    if (ret < 0) {
        snprintf(why, wl, "GET state failed: %s", strerror(-ret));
        return ret;
    }
    if (st == VMIG_STATE_RUNNING) {
        return 0;
    }
    if (st == VMIG_STATE_RESUMING && cf->saved != NULL &&
        (put(cf, t, cf->saved, cf->saved_len) < 0 ||
         cf->ops->set_state(t, VMIG_STATE_STOP) < 0)) {
        st = VMIG_STATE_ERROR; /* fall back to a reset */
    }
    if (st != VMIG_STATE_ERROR &&
        drive(cf, t, VMIG_STATE_RUNNING, why, wl) == 0) {
        return 0;
    }
    ret = cf->ops->reset(t);
    if (ret == 0 && cf->ops->get_state(t, &st) == 0 &&
        st == VMIG_STATE_RUNNING) {
        return 0;
    }
    snprintf(why, wl, "the device cannot be brought back to RUNNING (%s)",
             ret < 0 ? strerror(-ret) : "reset did not reach RUNNING");
    return ret < 0 ? ret : -EIO;
}

/* A fresh session with @t, its device RUNNING. */
static int
fresh(struct cf *cf, void *t, char *why, size_t wl)
{
    int ret;

    cf->ops->close(t);
    ret = cf->ops->open(t);
    if (ret < 0) {
        snprintf(why, wl, "no session with the device: %s", strerror(-ret));
        return ret;
    }
    if (!cf->flags_ok) {
        snprintf(why, wl, "no usable migration flags");
        return -EOPNOTSUPP;
    }
    return home(cf, t, why, wl);
}

/* A rule's preamble: fresh session or a FAIL row. */
#define FRESH(cf, t, rule, clause)                                             \
    do {                                                                       \
        char why_[256];                                                        \
        if (fresh(cf, t, why_, sizeof(why_)) < 0) {                            \
            cf_row(cf, rule, clause, CF_FAIL, "%s", why_);                     \
            return;                                                            \
        }                                                                      \
    } while (0)

/* The session ended under us: the device server closed it (exited?). */
static const char *
gone_note(struct cf *cf, void *t)
{
    static char note[400];
    const char *why;

    if (!cf->ops->gone(t)) {
        return "";
    }
    why = cf->ops->gone_why != NULL ? cf->ops->gone_why(t) : NULL;
    snprintf(note, sizeof(note), " - the device closed the session%s%s",
             why != NULL ? ": " : " (its server exited?)",
             why != NULL ? why : "");
    return note;
}

/* ------------------------------------------------------------ rules */

static void
r_flags(struct cf *cf)
{
    char fl[64];
    uint64_t f = 0;
    int ret;

    if (cf->ops->open(cf->src) < 0) {
        cf_row(cf, "migration flags", c_flags, CF_FAIL,
               "no session with the device");
        return;
    }
    ret = cf->ops->flags(cf->src, &f);
    vmig_flags_format(f, fl, sizeof(fl));
    if (ret < 0) {
        cf_row(cf, "migration flags", c_flags, CF_FAIL, "GET failed: %s",
               strerror(-ret));
        return;
    }
    if (!(f & VMIG_MIGRATION_STOP_COPY) || (f & ~(uint64_t)ST_MASK)) {
        cf_row(cf, "migration flags", c_flags, CF_FAIL, "%s", fl);
        return;
    }
    cf->flags = f;
    cf->flags_ok = true;
    cf_row(cf, "migration flags", c_flags, CF_PASS, "%s", fl);
}

static void
r_initial(struct cf *cf)
{
    uint32_t st;
    int ret = cf->ops->get_state(cf->src, &st);

    if (ret < 0) {
        cf_row(cf, "initial state RUNNING", c_initial, CF_FAIL,
               "GET state failed: %s", strerror(-ret));
    } else {
        cf_row(cf, "initial state RUNNING", c_initial,
               st == VMIG_STATE_RUNNING ? CF_PASS : CF_FAIL, "%s%s", sname(st),
               st == VMIG_STATE_RUNNING ? ""
                                        : " (a device left there by an "
                                          "earlier client?)");
    }
}

static void
r_save(struct cf *cf)
{
    const char *rule = "STOP_COPY save ends with an empty read";
    unsigned int reads = 0;
    char why[256];

    FRESH(cf, cf->src, rule, c_save);
    if (save(cf, cf->src, &cf->saved, &cf->saved_len, &reads, why,
             sizeof(why)) < 0) {
        cf_row(cf, rule, c_save, CF_FAIL, "%s%s", why, gone_note(cf, cf->src));
        return;
    }
    cf_row(cf, rule, c_save, CF_PASS, "%zu bytes in %u reads", cf->saved_len,
           reads);
    (void)home(cf, cf->src, why, sizeof(why));
}

/* One direct arc @a -> @b. */
static void
r_arc(struct cf *cf, uint32_t a, uint32_t b)
{
    void *t = cf->src;
    char rule[96], why[256];
    uint32_t got;
    int ret;

    snprintf(rule, sizeof(rule), "arc %s -> %s", sname(a), sname(b));
    FRESH(cf, t, rule, c_arc);
    if (a == VMIG_STATE_RESUMING && cf->saved == NULL) {
        cf_row(cf, rule, c_arc, CF_FAIL,
               "no saved state to load (the STOP_COPY save failed)");
        return;
    }
    if (drive(cf, t, a, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_arc, CF_FAIL, "reaching %s: %s%s", sname(a), why,
               gone_note(cf, t));
        return;
    }
    if (a == VMIG_STATE_RESUMING) {
        ret = put(cf, t, cf->saved, cf->saved_len);
        if (ret < 0) {
            cf_row(cf, rule, c_arc, CF_FAIL, "writing the saved state: %s",
                   strerror(-ret));
            return;
        }
    }
    ret = cf->ops->set_state(t, b);
    if (ret < 0) {
        cf_row(cf, rule, c_arc, CF_FAIL, "refused: %s%s", strerror(-ret),
               gone_note(cf, t));
        return;
    }
    ret = cf->ops->get_state(t, &got);
    if (ret < 0 || got != b) {
        cf_row(cf, rule, c_arc, CF_FAIL, "accepted, but the device reports %s",
               ret < 0 ? strerror(-ret) : sname(got));
        return;
    }
    cf_row(cf, rule, c_arc, CF_PASS, "%s%s", sname(got),
           a == VMIG_STATE_RESUMING ? " (with its own saved state)" : "");
    (void)home(cf, t, why, sizeof(why));
}

static void
r_arcs(struct cf *cf)
{
    for (uint32_t a = 1; a < 8; a++) {
        for (uint32_t b = 1; b < 8; b++) {
            if (a != b && supported(cf, a) && supported(cf, b) &&
                next_step(cf, a, b) == (int)b) {
                r_arc(cf, a, b);
            }
        }
    }
}

static void
r_combos(struct cf *cf)
{
    const char *rule = "combination transitions";
    char bad[400] = "", why[256];
    unsigned int pairs = 0, nbad = 0;
    void *t = cf->src;

    FRESH(cf, t, rule, c_combo);
    for (uint32_t a = 1; a < 8; a++) {
        for (uint32_t b = 1; b < 8; b++) {
            uint32_t got = VMIG_STATE_ERROR;
            int n = next_step(cf, a, b), ret;

            if (a == b || !supported(cf, a) || !supported(cf, b) || n < 0 ||
                n == (int)b ||
                (a == VMIG_STATE_RESUMING && cf->saved == NULL)) {
                continue;
            }
            pairs++;
            ret = home(cf, t, why, sizeof(why));
            if (ret == 0) {
                ret = drive(cf, t, a, why, sizeof(why));
            }
            if (ret == 0 && a == VMIG_STATE_RESUMING) {
                ret = put(cf, t, cf->saved, cf->saved_len);
            }
            if (ret == 0) {
                ret = cf->ops->set_state(t, b);
            }
            if (ret == 0) {
                ret = cf->ops->get_state(t, &got);
            }
            if (ret < 0 || got != b) {
                size_t u = strlen(bad);

                nbad++;
                snprintf(bad + u, sizeof(bad) - u, "%s%s -> %s: %s",
                         nbad > 1 ? "; " : "", sname(a), sname(b),
                         ret < 0 ? strerror(-ret) : sname(got));
                if (cf->ops->gone(t)) {
                    break;
                }
            }
        }
    }
    if (pairs == 0) {
        cf_row(cf, rule, c_combo, CF_SKIP, "no combination for these flags");
    } else if (nbad > 0) {
        cf_row(cf, rule, c_combo, CF_FAIL, "%u of %u failed: %s%s", nbad, pairs,
               bad, gone_note(cf, t));
    } else {
        cf_row(cf, rule, c_combo, CF_PASS, "%u pairs, each in one SET", pairs);
    }
    (void)home(cf, t, why, sizeof(why));
}

/* SET each of @vals from RUNNING and from STOP: every one refused, the
 * state unchanged. */
static void
refuse_states(struct cf *cf, const char *rule, const char *clause,
              const uint32_t *vals, unsigned int n, uint32_t from_a,
              uint32_t from_b)
{
    const uint32_t from[2] = {from_a, from_b};
    void *t = cf->src;
    char list[160] = "", why[256];

    for (unsigned int i = 0; i < n; i++) {
        size_t u = strlen(list);

        snprintf(list + u, sizeof(list) - u, "%s%s", i ? ", " : "",
                 vals[i] < 8 ? sname(vals[i]) : "");
        if (vals[i] >= 8) {
            u = strlen(list);
            snprintf(list + u, sizeof(list) - u, "%#x", vals[i]);
        }
    }
    FRESH(cf, t, rule, clause);
    for (unsigned int f = 0; f < 2; f++) {
        if (from[f] == VMIG_STATE_ERROR) {
            continue;
        }
        for (unsigned int i = 0; i < n; i++) {
            uint32_t st = VMIG_STATE_ERROR;
            int ret;

            if (drive(cf, t, from[f], why, sizeof(why)) < 0) {
                cf_row(cf, rule, clause, CF_FAIL, "reaching %s: %s",
                       sname(from[f]), why);
                return;
            }
            ret = cf->ops->set_state(t, vals[i]);
            if (cf->ops->gone(t)) {
                cf_row(cf, rule, clause, CF_FAIL, "SET %#x in %s: no reply%s",
                       vals[i], sname(from[f]), gone_note(cf, t));
                return;
            }
            if (ret == 0) {
                cf_row(cf, rule, clause, CF_FAIL, "SET %#x in %s accepted",
                       vals[i], sname(from[f]));
                (void)home(cf, t, why, sizeof(why));
                return;
            }
            if (cf->ops->get_state(t, &st) < 0 || st != from[f]) {
                cf_row(cf, rule, clause, CF_FAIL,
                       "SET %#x in %s refused (%s), but the device is now "
                       "in %s",
                       vals[i], sname(from[f]), strerror(-ret), sname(st));
                (void)home(cf, t, why, sizeof(why));
                return;
            }
        }
    }
    cf_row(cf, rule, clause, CF_PASS, "%s: each refused in %s%s%s, state kept",
           list, sname(from_a), from_b != VMIG_STATE_ERROR ? " and " : "",
           from_b != VMIG_STATE_ERROR ? sname(from_b) : "");
    (void)home(cf, t, why, sizeof(why));
}

static void
r_invalid(struct cf *cf)
{
    static const uint32_t vals[] = {VMIG_STATE_ERROR, 8, 0xff,
                                    0x100 | VMIG_STATE_RUNNING, 0xffffffff};

    refuse_states(cf, "invalid state numbers refused", c_invalid, vals,
                  sizeof(vals) / sizeof(vals[0]), VMIG_STATE_RUNNING,
                  VMIG_STATE_STOP);
}

static void
r_unadvertised(struct cf *cf)
{
    const char *rule = "states not advertised refused";
    uint32_t vals[8];
    unsigned int n = 0;

    for (uint32_t s = 1; s < 8; s++) {
        if (!supported(cf, s)) {
            vals[n++] = s;
        }
    }
    if (n == 0) {
        cf_row(cf, rule, c_unadv, CF_SKIP, "every state is advertised");
        return;
    }
    refuse_states(cf, rule, c_unadv, vals, n, VMIG_STATE_RUNNING,
                  VMIG_STATE_STOP);
}

static void
r_sc_to_pc(struct cf *cf)
{
    static const uint32_t vals[] = {VMIG_STATE_PRE_COPY};

    if (!(cf->flags & VMIG_MIGRATION_PRE_COPY)) {
        cf_row(cf, "STOP_COPY -> PRE_COPY refused", c_sc_pc, CF_SKIP,
               "no PRE_COPY");
        return;
    }
    refuse_states(cf, "STOP_COPY -> PRE_COPY refused", c_sc_pc, vals, 1,
                  VMIG_STATE_STOP_COPY, VMIG_STATE_ERROR);
}

/* Data reads (@write false) or writes in each state of @states: each
 * must be refused with an error. */
static void
data_wrong_state(struct cf *cf, const char *rule, const char *clause,
                 bool write, const uint32_t *states, unsigned int n)
{
    void *t = cf->src;
    char why[256], list[128] = "";

    FRESH(cf, t, rule, clause);
    for (unsigned int i = 0; i < n; i++) {
        uint8_t buf[64] = {0};
        size_t u = strlen(list);
        long r;

        if (!supported(cf, states[i])) {
            continue;
        }
        if (drive(cf, t, states[i], why, sizeof(why)) < 0) {
            cf_row(cf, rule, clause, CF_FAIL, "reaching %s: %s",
                   sname(states[i]), why);
            return;
        }
        r = write ? cf->ops->write(t, buf, sizeof(buf))
                  : cf->ops->read(t, buf, sizeof(buf));
        if (r >= 0) {
            cf_row(cf, rule, clause, CF_FAIL, "%s in %s: %s",
                   write ? "a 64-byte write" : "a read", sname(states[i]),
                   write    ? "accepted"
                   : r == 0 ? "an empty reply (reads as the end of data)"
                            : "data returned");
            (void)home(cf, t, why, sizeof(why));
            return;
        }
        snprintf(list + u, sizeof(list) - u, "%s%s (%s)", u ? ", " : "",
                 sname(states[i]), strerror((int)-r));
        (void)home(cf, t, why, sizeof(why));
    }
    cf_row(cf, rule, clause, CF_PASS, "refused in %s", list);
}

static void
r_read_state(struct cf *cf)
{
    static const uint32_t st[] = {VMIG_STATE_RUNNING, VMIG_STATE_STOP,
                                  VMIG_STATE_RESUMING, VMIG_STATE_RUNNING_P2P};

    data_wrong_state(cf, "data reads outside the saving states refused",
                     c_read_state, false, st, sizeof(st) / sizeof(st[0]));
}

static void
r_write_state(struct cf *cf)
{
    static const uint32_t st[] = {VMIG_STATE_RUNNING, VMIG_STATE_STOP,
                                  VMIG_STATE_STOP_COPY, VMIG_STATE_PRE_COPY};

    data_wrong_state(cf, "data writes outside RESUMING refused", c_write_state,
                     true, st, sizeof(st) / sizeof(st[0]));
}

static void
r_fornow(struct cf *cf)
{
    const char *rule = "PRE_COPY: an empty read is 'no more for now'";
    uint8_t *buf = NULL;
    size_t len = 0, pre;
    void *t = cf->src, *dst = cf->dst != NULL ? cf->dst : cf->src;
    char why[256];
    uint32_t st = VMIG_STATE_ERROR;
    long again;
    int ret;

    if (!(cf->flags & VMIG_MIGRATION_PRE_COPY)) {
        cf_row(cf, rule, c_fornow, CF_SKIP, "no PRE_COPY");
        return;
    }
    FRESH(cf, t, rule, c_fornow);
    ret = drive(cf, t, VMIG_STATE_PRE_COPY, why, sizeof(why));
    if (ret == 0) {
        ret = drain_for(cf, t, &buf, &len, NULL, PRECOPY_READ_MS);
        snprintf(why, sizeof(why), "reading PRE_COPY: %s", strerror(-ret));
    }
    if (ret == -ETIME) {
        cf_row(cf, rule, c_fornow, CF_SKIP,
               "not observable: the device kept producing PRE_COPY data "
               "(%zu bytes in %d s) without an empty read",
               len, PRECOPY_READ_MS / 1000);
        free(buf);
        (void)home(cf, t, why, sizeof(why));
        return;
    }
    if (ret == 0 &&
        (cf->ops->get_state(t, &st) < 0 || st != VMIG_STATE_PRE_COPY)) {
        snprintf(why, sizeof(why), "after the empty read the device is in %s",
                 sname(st));
        ret = -EIO;
    }
    pre = len;
    if (ret == 0) {
        uint8_t one;

        /* the session goes on: another read is fine (data or empty) */
        again = cf->ops->read(t, &one, 1);
        if (again < 0) {
            snprintf(why, sizeof(why),
                     "a read after the empty one failed (%s): the session "
                     "ended in PRE_COPY",
                     strerror((int)-again));
            ret = (int)again;
        } else if (again > 0) {
            /* one byte of the stream: keep it */
            uint8_t *nb = realloc(buf, len + 1);

            if (nb == NULL) {
                ret = -ENOMEM;
            } else {
                buf = nb;
                buf[len++] = one;
            }
        }
    }
    if (ret == 0) {
        ret = drive(cf, t, VMIG_STATE_STOP_COPY, why, sizeof(why));
    }
    if (ret == 0) {
        ret = drain(cf, t, &buf, &len, NULL);
        snprintf(why, sizeof(why), "reading STOP_COPY: %s", strerror(-ret));
    }
    if (ret == 0) {
        if (dst != t) {
            (void)home(cf, t, why, sizeof(why));
            ret = fresh(cf, dst, why, sizeof(why));
        } else {
            ret = home(cf, t, why, sizeof(why));
        }
    }
    if (ret == 0) {
        ret = load(cf, dst, buf, len, why, sizeof(why));
    }
    free(buf);
    if (ret < 0) {
        cf_row(cf, rule, c_fornow, CF_FAIL, "%s%s", why, gone_note(cf, t));
    } else {
        cf_row(cf, rule, c_fornow, CF_PASS,
               "%zu bytes before the empty read, still PRE_COPY, %zu after "
               "in STOP_COPY to its end; the whole stream loads%s",
               pre, len - pre, dst != t ? " into the second instance" : "");
    }
    (void)home(cf, t, why, sizeof(why));
    if (dst != t) {
        (void)home(cf, dst, why, sizeof(why));
    }
}

static void
r_eof(struct cf *cf)
{
    const char *rule = "STOP_COPY: the end of data is permanent";
    uint8_t *buf = NULL, b[PIECE];
    size_t len = 0;
    char why[256];
    long n1, n2;

    FRESH(cf, cf->src, rule, c_eof);
    if (save(cf, cf->src, &buf, &len, NULL, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_eof, CF_FAIL, "%s", why);
        return;
    }
    free(buf);
    n1 = cf->ops->read(cf->src, b, sizeof(b));
    n2 = cf->ops->read(cf->src, b, sizeof(b));
    if (n1 > 0 || n2 > 0) {
        cf_row(cf, rule, c_eof, CF_FAIL,
               "after the end (%zu bytes) more data came: %ld, then %ld "
               "bytes",
               len, n1, n2);
    } else {
        cf_row(cf, rule, c_eof, CF_PASS, "two reads after the end: %s, %s",
               n1 == 0 ? "empty" : "refused", n2 == 0 ? "empty" : "refused");
    }
    (void)home(cf, cf->src, why, sizeof(why));
}

/* Reset in @s (a session open and used where @s has one). */
static void
r_reset_in(struct cf *cf, uint32_t s)
{
    void *t = cf->src;
    char rule[96], why[256];
    uint32_t st = VMIG_STATE_ERROR;
    uint8_t b[4096];
    int ret;

    snprintf(rule, sizeof(rule), "reset in %s returns to RUNNING", sname(s));
    FRESH(cf, t, rule, c_reset);
    if (drive(cf, t, s, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_reset, CF_FAIL, "reaching %s: %s", sname(s), why);
        return;
    }
    if (s == VMIG_STATE_STOP_COPY || s == VMIG_STATE_PRE_COPY ||
        s == VMIG_STATE_PRE_COPY_P2P) {
        (void)cf->ops->read(t, b, sizeof(b));
    } else if (s == VMIG_STATE_RESUMING && cf->saved != NULL) {
        (void)put(cf, t, cf->saved,
                  cf->saved_len < sizeof(b) ? cf->saved_len : sizeof(b));
    }
    ret = cf->ops->reset(t);
    if (ret == -EOPNOTSUPP) {
        cf_row(cf, rule, c_reset, CF_SKIP, "no DEVICE_RESET");
        return;
    }
    if (ret < 0) {
        cf_row(cf, rule, c_reset, CF_FAIL, "refused in %s: %s%s", sname(s),
               strerror(-ret), gone_note(cf, t));
        (void)home(cf, t, why, sizeof(why));
        return;
    }
    if (cf->ops->get_state(t, &st) < 0 || st != VMIG_STATE_RUNNING) {
        cf_row(cf, rule, c_reset, CF_FAIL, "accepted, the device is in %s",
               sname(st));
        (void)home(cf, t, why, sizeof(why));
        return;
    }
    cf_row(cf, rule, c_reset, CF_PASS, "RUNNING");
}

static void
r_resets(struct cf *cf)
{
    for (uint32_t s = 1; s < 8; s++) {
        if (supported(cf, s)) {
            r_reset_in(cf, s);
        }
    }
}

static void
r_reset_save(struct cf *cf)
{
    const char *rule = "reset ends a saving session";
    uint8_t b[4096], *buf = NULL;
    size_t len = 0;
    char why[256];
    void *t = cf->src;
    long n;
    int ret;

    FRESH(cf, t, rule, c_reset_save);
    if (drive(cf, t, VMIG_STATE_STOP_COPY, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_reset_save, CF_FAIL, "%s", why);
        return;
    }
    n = cf->ops->read(t, b, sizeof(b));
    ret = cf->ops->reset(t);
    if (ret == -EOPNOTSUPP) {
        cf_row(cf, rule, c_reset_save, CF_SKIP, "no DEVICE_RESET");
        return;
    }
    if (ret < 0) {
        cf_row(cf, rule, c_reset_save, CF_FAIL, "reset in STOP_COPY: %s",
               strerror(-ret));
        (void)home(cf, t, why, sizeof(why));
        return;
    }
    n = cf->ops->read(t, b, sizeof(b));
    if (n >= 0) {
        cf_row(cf, rule, c_reset_save, CF_FAIL, "a read after the reset: %s",
               n == 0 ? "an empty reply (reads as the end of data)"
                      : "data from the old session");
        (void)home(cf, t, why, sizeof(why));
        return;
    }
    ret = save(cf, t, &buf, &len, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = home(cf, t, why, sizeof(why));
    }
    if (ret == 0) {
        ret = load(cf, t, buf, len, why, sizeof(why));
    }
    free(buf);
    if (ret < 0) {
        cf_row(cf, rule, c_reset_save, CF_FAIL, "the next session: %s", why);
    } else {
        cf_row(cf, rule, c_reset_save, CF_PASS,
               "a read after it refused (%s); the next session saves and "
               "loads",
               strerror((int)-n));
    }
    (void)home(cf, t, why, sizeof(why));
}

static void
r_reset_resume(struct cf *cf)
{
    const char *rule = "reset ends a resuming session";
    char why[256];
    void *t = cf->src;
    int ret;

    if (cf->saved == NULL || cf->saved_len < 2) {
        cf_row(cf, rule, c_reset_resume, CF_FAIL,
               "no saved state to load (the STOP_COPY save failed)");
        return;
    }
    FRESH(cf, t, rule, c_reset_resume);
    ret = drive(cf, t, VMIG_STATE_RESUMING, why, sizeof(why));
    if (ret == 0) {
        ret = put(cf, t, cf->saved, cf->saved_len / 2);
        snprintf(why, sizeof(why), "writing half the state: %s",
                 strerror(-ret));
    }
    if (ret == 0) {
        ret = cf->ops->reset(t);
        if (ret == -EOPNOTSUPP) {
            cf_row(cf, rule, c_reset_resume, CF_SKIP, "no DEVICE_RESET");
            return;
        }
        snprintf(why, sizeof(why), "reset in RESUMING: %s", strerror(-ret));
    }
    if (ret == 0) {
        ret = load(cf, t, cf->saved, cf->saved_len, why, sizeof(why));
    }
    cf_row(cf, rule, c_reset_resume, ret < 0 ? CF_FAIL : CF_PASS, "%s",
           ret < 0 ? why
                   : "half a state, a reset, then the whole state: loaded");
    (void)home(cf, t, why, sizeof(why));
}

static void
r_trip(struct cf *cf)
{
    const char *r1 = "round trip: restored in a second instance";
    const char *r2 = "round trip: the same state";
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0, diff;
    char why[256];
    int ret;

    if (cf->dst == NULL) {
        cf_row(cf, r1, c_trip, CF_SKIP,
               "one instance (give --dest-socket or --dest-spawn)");
        cf_row(cf, r2, c_same, CF_SKIP, "one instance");
        return;
    }
    FRESH(cf, cf->src, r1, c_trip);
    ret = save(cf, cf->src, &a, &la, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = home(cf, cf->src, why, sizeof(why));
    }
    if (ret == 0) {
        ret = fresh(cf, cf->dst, why, sizeof(why));
    }
    if (ret == 0) {
        ret = load(cf, cf->dst, a, la, why, sizeof(why));
    }
    if (ret < 0) {
        cf_row(cf, r1, c_trip, CF_FAIL, "%s", why);
        cf_row(cf, r2, c_same, CF_SKIP, "nothing restored");
        free(a);
        return;
    }
    /* save again before it runs (a running device may change) */
    ret = save(cf, cf->dst, &b, &lb, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = drive(cf, cf->dst, VMIG_STATE_RUNNING, why, sizeof(why));
    }
    if (ret < 0) {
        cf_row(cf, r1, c_trip, CF_FAIL, "after loading: %s", why);
        cf_row(cf, r2, c_same, CF_SKIP, "nothing to compare");
    } else {
        cf_row(cf, r1, c_trip, CF_PASS,
               "%zu bytes saved, loaded (RESUMING -> STOP), RUNNING", la);
        for (diff = 0; diff < la && diff < lb && a[diff] == b[diff]; diff++) {
        }
        if (la == lb && diff == la) {
            cf_row(cf, r2, c_same, CF_PASS,
                   "the second instance saves the same %zu bytes", lb);
        } else {
            cf_row(cf, r2, c_same, CF_FAIL,
                   "the second instance saves %zu bytes, the source saved "
                   "%zu; first difference at byte %zu",
                   lb, la, diff);
        }
    }
    free(a);
    free(b);
}

static void
r_sizing(struct cf *cf)
{
    const char *rule = "precopy sizing shrinks as data is read";
    uint64_t i0, d0, i, d, prev;
    uint8_t *buf = NULL;
    size_t len = 0;
    char why[256];
    void *t = cf->src;
    int ret;

    if (!(cf->flags & VMIG_MIGRATION_PRE_COPY)) {
        cf_row(cf, rule, c_sizing, CF_SKIP, "no PRE_COPY");
        return;
    }
    FRESH(cf, t, rule, c_sizing);
    ret = cf->ops->precopy_info(t, &i0, &d0);
    if (ret == -EOPNOTSUPP) {
        cf_row(cf, rule, c_sizing, CF_SKIP,
               "not offered (PRECOPY_INFO is vmig's extension)");
        return;
    }
    if (ret == 0) {
        cf_row(cf, rule, c_sizing, CF_FAIL,
               "answered in RUNNING (%llu initial bytes)",
               (unsigned long long)i0);
        return;
    }
    ret = drive(cf, t, VMIG_STATE_PRE_COPY, why, sizeof(why));
    if (ret == 0) {
        ret = cf->ops->precopy_info(t, &i0, &d0);
        snprintf(why, sizeof(why), "in PRE_COPY: %s", strerror(-ret));
    }
    prev = i0;
    for (uint64_t end = now_ms() + PRECOPY_READ_MS; ret == 0;) {
        long n;
        uint8_t *nb = realloc(buf, PIECE);

        if (nb == NULL) {
            ret = -ENOMEM;
            break;
        }
        buf = nb;
        n = cf->ops->read(t, buf, PIECE);
        if (n < 0) {
            ret = (int)n;
            snprintf(why, sizeof(why), "read: %s", strerror(-ret));
            break;
        }
        len += (size_t)n;
        ret = cf->ops->precopy_info(t, &i, &d);
        if (ret < 0) {
            snprintf(why, sizeof(why), "after %zu bytes: %s", len,
                     strerror(-ret));
            break;
        }
        if (i > prev) {
            snprintf(why, sizeof(why),
                     "initial_bytes grew from %llu to %llu after %zu bytes",
                     (unsigned long long)prev, (unsigned long long)i, len);
            ret = -ERANGE;
            break;
        }
        prev = i;
        if (n == 0) {
            if (i != 0) {
                snprintf(why, sizeof(why),
                         "no more data for now, but initial_bytes is %llu",
                         (unsigned long long)i);
                ret = -ERANGE;
            }
            break;
        }
        if (len > SAVE_MAX || now_ms() > end) {
            break; /* it dirties as fast as it is read: enough seen */
        }
    }
    free(buf);
    if (ret < 0) {
        cf_row(cf, rule, c_sizing, CF_FAIL, "%s", why);
    } else {
        cf_row(cf, rule, c_sizing, CF_PASS,
               "initial %llu -> %llu over %zu bytes (dirty %llu at first)",
               (unsigned long long)i0, (unsigned long long)prev, len,
               (unsigned long long)d0);
    }
    (void)home(cf, t, why, sizeof(why));
}

static void
r_dma_log(struct cf *cf)
{
    const char *rule = "DMA logging start, report, stop";
    uint64_t iova, len, bm[64];
    void *t = cf->src;
    int ret;

    FRESH(cf, t, rule, c_log);
    ret = cf->ops->log_range(t, &iova, &len);
    if (ret == -EOPNOTSUPP) {
        cf_row(cf, rule, c_log, CF_SKIP, "not offered");
        return;
    }
    if (ret < 0 || len / 4096 > 64 * 64) {
        cf_row(cf, rule, c_log, CF_FAIL, "no memory to log: %s",
               strerror(-ret));
        return;
    }
    ret = cf->ops->log_start(t, 4096, iova, len);
    if (ret < 0) {
        cf_row(cf, rule, c_log, CF_FAIL, "START refused: %s", strerror(-ret));
        return;
    }
    ret = cf->ops->log_report(t, iova, len, 4096, bm);
    if (ret < 0) {
        cf_row(cf, rule, c_log, CF_FAIL, "REPORT refused: %s", strerror(-ret));
        (void)cf->ops->log_stop(t);
        return;
    }
    ret = cf->ops->log_stop(t);
    if (ret < 0) {
        cf_row(cf, rule, c_log, CF_FAIL, "STOP refused: %s", strerror(-ret));
        return;
    }
    ret = cf->ops->log_report(t, iova, len, 4096, bm);
    if (ret < 0) {
        cf_row(cf, rule, c_log, CF_PASS,
               "started over %#llx+%#llx, reported, stopped; a report after "
               "STOP refused",
               (unsigned long long)iova, (unsigned long long)len);
    } else {
        cf_row(cf, rule, c_log, CF_FAIL,
               "a report after STOP was answered (%#llx+%#llx)",
               (unsigned long long)iova, (unsigned long long)len);
    }
}

void
cf_run(struct cf *cf)
{
    if (cf->ops->transport_rules != NULL) {
        cf->ops->transport_rules(cf, cf->src);
    }
    r_flags(cf);
    if (cf->flags_ok) {
        r_initial(cf);
    }
    r_save(cf);
    r_arcs(cf);
    r_combos(cf);
    r_invalid(cf);
    r_unadvertised(cf);
    r_sc_to_pc(cf);
    r_read_state(cf);
    r_write_state(cf);
    r_fornow(cf);
    r_eof(cf);
    r_resets(cf);
    r_reset_save(cf);
    r_reset_resume(cf);
    r_trip(cf);
    r_sizing(cf);
    r_dma_log(cf);
    if (cf->hostile && cf->ops->hostile_rules != NULL) {
        cf->ops->hostile_rules(cf, cf->src);
    }
    cf->ops->close(cf->src);
    if (cf->dst != NULL) {
        cf->ops->close(cf->dst);
    }
}
