/* SPDX-License-Identifier: MIT */
/*
 * conform_steps.c - the steps every rule of `vmig conform` takes: report
 * a row, the kernel's next-step table (from libvmig or the kernel's test
 * vectors), drive a device one arc at a time, save and load its state,
 * bring it back to RUNNING in a fresh session.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/fsm.h>
#include "conform_rules.h"
#include "timeio.h"

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

int
cf_next_step(const struct cf *cf, uint32_t cur, uint32_t target)
{
    if (cur > 7 || target > 7) {
        return -1;
    }
    return cf->fsm.next[cf->flags & ST_MASK][cur][target];
}

bool
cf_supported(const struct cf *cf, uint32_t s)
{
    return s >= 1 && s <= 7 && cf_next_step(cf, s, s) == (int)s;
}

/* ------------------------------------------------------------ helpers */

const char *
cf_sname(uint32_t s)
{
    return vmig_state_name(s);
}

/* Move @t to @target one arc at a time; *why says what went wrong. */
int
cf_drive(struct cf *cf, void *t, uint32_t target, char *why, size_t wl)
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
        n = cf_next_step(cf, cur, target);
        if (n < 0) {
            snprintf(why, wl, "no way from %s to %s for these flags",
                     cf_sname(cur), cf_sname(target));
            return -EINVAL;
        }
        ret = o->set_state(t, (uint32_t)n);
        if (ret < 0) {
            snprintf(why, wl, "arc %s -> %s refused: %s", cf_sname(cur),
                     cf_sname((uint32_t)n), strerror(-ret));
            return ret;
        }
        ret = o->get_state(t, &got);
        if (ret < 0 || got != (uint32_t)n) {
            snprintf(why, wl, "arc %s -> %s: the device reports %s",
                     cf_sname(cur), cf_sname((uint32_t)n),
                     ret < 0 ? strerror(-ret) : cf_sname(got));
            return ret < 0 ? ret : -EIO;
        }
    }
    snprintf(why, wl, "more than 8 arcs to %s", cf_sname(target));
    return -ELOOP;
}

/* Write @len bytes of resuming data. */
int
cf_put(struct cf *cf, void *t, const uint8_t *buf, size_t len)
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

void
cf_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Read the session until an empty read; appended to *buf.  With @ms > 0,
 * -ETIME when that long passed without one. */
int
cf_drain_for(struct cf *cf, void *t, uint8_t **buf, size_t *len,
             unsigned int *reads, int ms)
{
    uint64_t end = vmig__mono_ms() + (uint64_t)ms;

    for (unsigned int i = 0; i < MAX_EMPTY_READS; i++) {
        if (ms > 0 && vmig__mono_ms() > end) {
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

int
cf_drain(struct cf *cf, void *t, uint8_t **buf, size_t *len,
         unsigned int *reads)
{
    return cf_drain_for(cf, t, buf, len, reads, 0);
}

/* Save the device to the end of its STOP_COPY data (left in STOP_COPY). */
int
cf_save(struct cf *cf, void *t, uint8_t **buf, size_t *len, unsigned int *reads,
        char *why, size_t wl)
{
    int ret = cf_drive(cf, t, VMIG_STATE_STOP_COPY, why, wl);

    *buf = NULL;
    *len = 0;
    if (ret == 0) {
        ret = cf_drain(cf, t, buf, len, reads);
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
int
cf_load(struct cf *cf, void *t, const uint8_t *buf, size_t len, char *why,
        size_t wl)
{
    int ret = cf_drive(cf, t, VMIG_STATE_RESUMING, why, wl);
    uint32_t st;

    if (ret < 0) {
        return ret;
    }
    ret = cf_put(cf, t, buf, len);
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
int
cf_home(struct cf *cf, void *t, char *why, size_t wl)
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
        (cf_put(cf, t, cf->saved, cf->saved_len) < 0 ||
         cf->ops->set_state(t, VMIG_STATE_STOP) < 0)) {
        st = VMIG_STATE_ERROR; /* fall back to a reset */
    }
    if (st != VMIG_STATE_ERROR &&
        cf_drive(cf, t, VMIG_STATE_RUNNING, why, wl) == 0) {
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
int
cf_fresh(struct cf *cf, void *t, char *why, size_t wl)
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
    return cf_home(cf, t, why, wl);
}

/* The session ended under us: the device server closed it (exited?). */
const char *
cf_gone_note(struct cf *cf, void *t)
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
