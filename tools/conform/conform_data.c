/* SPDX-License-Identifier: MIT */
/*
 * conform_data.c - the rules of `vmig conform` about the data session
 * (reads and writes in the wrong state, PRE_COPY's "no more for now", the
 * end of STOP_COPY data), reset in every state and its effect on a save
 * or a resume, a save/load round trip, precopy sizing and DMA dirty-page
 * logging.  Each starts from a fresh session, as conform.c's rules do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/fsm.h>
#include "conform_rules.h"
#include "timeio.h"

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

        if (!cf_supported(cf, states[i])) {
            continue;
        }
        if (cf_drive(cf, t, states[i], why, sizeof(why)) < 0) {
            cf_row(cf, rule, clause, CF_FAIL, "reaching %s: %s",
                   cf_sname(states[i]), why);
            return;
        }
        r = write ? cf->ops->write(t, buf, sizeof(buf))
                  : cf->ops->read(t, buf, sizeof(buf));
        if (r >= 0) {
            cf_row(cf, rule, clause, CF_FAIL, "%s in %s: %s",
                   write ? "a 64-byte write" : "a read", cf_sname(states[i]),
                   write    ? "accepted"
                   : r == 0 ? "an empty reply (reads as the end of data)"
                            : "data returned");
            (void)cf_home(cf, t, why, sizeof(why));
            return;
        }
        snprintf(list + u, sizeof(list) - u, "%s%s (%s)", u ? ", " : "",
                 cf_sname(states[i]), strerror((int)-r));
        (void)cf_home(cf, t, why, sizeof(why));
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
    ret = cf_drive(cf, t, VMIG_STATE_PRE_COPY, why, sizeof(why));
    if (ret == 0) {
        ret = cf_drain_for(cf, t, &buf, &len, NULL, PRECOPY_READ_MS);
        snprintf(why, sizeof(why), "reading PRE_COPY: %s", strerror(-ret));
    }
    if (ret == -ETIME) {
        cf_row(cf, rule, c_fornow, CF_SKIP,
               "not observable: the device kept producing PRE_COPY data "
               "(%zu bytes in %d s) without an empty read",
               len, PRECOPY_READ_MS / 1000);
        free(buf);
        (void)cf_home(cf, t, why, sizeof(why));
        return;
    }
    if (ret == 0 &&
        (cf->ops->get_state(t, &st) < 0 || st != VMIG_STATE_PRE_COPY)) {
        snprintf(why, sizeof(why), "after the empty read the device is in %s",
                 cf_sname(st));
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
        ret = cf_drive(cf, t, VMIG_STATE_STOP_COPY, why, sizeof(why));
    }
    if (ret == 0) {
        ret = cf_drain(cf, t, &buf, &len, NULL);
        snprintf(why, sizeof(why), "reading STOP_COPY: %s", strerror(-ret));
    }
    if (ret == 0) {
        if (dst != t) {
            (void)cf_home(cf, t, why, sizeof(why));
            ret = cf_fresh(cf, dst, why, sizeof(why));
        } else {
            ret = cf_home(cf, t, why, sizeof(why));
        }
    }
    if (ret == 0) {
        ret = cf_load(cf, dst, buf, len, why, sizeof(why));
    }
    free(buf);
    if (ret < 0) {
        cf_row(cf, rule, c_fornow, CF_FAIL, "%s%s", why, cf_gone_note(cf, t));
    } else {
        cf_row(cf, rule, c_fornow, CF_PASS,
               "%zu bytes before the empty read, still PRE_COPY, %zu after "
               "in STOP_COPY to its end; the whole stream loads%s",
               pre, len - pre, dst != t ? " into the second instance" : "");
    }
    (void)cf_home(cf, t, why, sizeof(why));
    if (dst != t) {
        (void)cf_home(cf, dst, why, sizeof(why));
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
    if (cf_save(cf, cf->src, &buf, &len, NULL, why, sizeof(why)) < 0) {
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
    (void)cf_home(cf, cf->src, why, sizeof(why));
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

    snprintf(rule, sizeof(rule), "reset in %s returns to RUNNING", cf_sname(s));
    FRESH(cf, t, rule, c_reset);
    if (cf_drive(cf, t, s, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_reset, CF_FAIL, "reaching %s: %s", cf_sname(s), why);
        return;
    }
    if (s == VMIG_STATE_STOP_COPY || s == VMIG_STATE_PRE_COPY ||
        s == VMIG_STATE_PRE_COPY_P2P) {
        (void)cf->ops->read(t, b, sizeof(b));
    } else if (s == VMIG_STATE_RESUMING && cf->saved != NULL) {
        (void)cf_put(cf, t, cf->saved,
                     cf->saved_len < sizeof(b) ? cf->saved_len : sizeof(b));
    }
    ret = cf->ops->reset(t);
    if (ret == -EOPNOTSUPP) {
        cf_row(cf, rule, c_reset, CF_SKIP, "no DEVICE_RESET");
        return;
    }
    if (ret < 0) {
        cf_row(cf, rule, c_reset, CF_FAIL, "refused in %s: %s%s", cf_sname(s),
               strerror(-ret), cf_gone_note(cf, t));
        (void)cf_home(cf, t, why, sizeof(why));
        return;
    }
    if (cf->ops->get_state(t, &st) < 0 || st != VMIG_STATE_RUNNING) {
        cf_row(cf, rule, c_reset, CF_FAIL, "accepted, the device is in %s",
               cf_sname(st));
        (void)cf_home(cf, t, why, sizeof(why));
        return;
    }
    cf_row(cf, rule, c_reset, CF_PASS, "RUNNING");
}

static void
r_resets(struct cf *cf)
{
    for (uint32_t s = 1; s < 8; s++) {
        if (cf_supported(cf, s)) {
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
    if (cf_drive(cf, t, VMIG_STATE_STOP_COPY, why, sizeof(why)) < 0) {
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
        (void)cf_home(cf, t, why, sizeof(why));
        return;
    }
    n = cf->ops->read(t, b, sizeof(b));
    if (n >= 0) {
        cf_row(cf, rule, c_reset_save, CF_FAIL, "a read after the reset: %s",
               n == 0 ? "an empty reply (reads as the end of data)"
                      : "data from the old session");
        (void)cf_home(cf, t, why, sizeof(why));
        return;
    }
    ret = cf_save(cf, t, &buf, &len, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = cf_home(cf, t, why, sizeof(why));
    }
    if (ret == 0) {
        ret = cf_load(cf, t, buf, len, why, sizeof(why));
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
    (void)cf_home(cf, t, why, sizeof(why));
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
    ret = cf_drive(cf, t, VMIG_STATE_RESUMING, why, sizeof(why));
    if (ret == 0) {
        ret = cf_put(cf, t, cf->saved, cf->saved_len / 2);
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
        ret = cf_load(cf, t, cf->saved, cf->saved_len, why, sizeof(why));
    }
    cf_row(cf, rule, c_reset_resume, ret < 0 ? CF_FAIL : CF_PASS, "%s",
           ret < 0 ? why
                   : "half a state, a reset, then the whole state: loaded");
    (void)cf_home(cf, t, why, sizeof(why));
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
    ret = cf_save(cf, cf->src, &a, &la, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = cf_home(cf, cf->src, why, sizeof(why));
    }
    if (ret == 0) {
        ret = cf_fresh(cf, cf->dst, why, sizeof(why));
    }
    if (ret == 0) {
        ret = cf_load(cf, cf->dst, a, la, why, sizeof(why));
    }
    if (ret < 0) {
        cf_row(cf, r1, c_trip, CF_FAIL, "%s", why);
        cf_row(cf, r2, c_same, CF_SKIP, "nothing restored");
        free(a);
        return;
    }
    /* save again before it runs (a running device may change) */
    ret = cf_save(cf, cf->dst, &b, &lb, NULL, why, sizeof(why));
    if (ret == 0) {
        ret = cf_drive(cf, cf->dst, VMIG_STATE_RUNNING, why, sizeof(why));
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
    ret = cf_drive(cf, t, VMIG_STATE_PRE_COPY, why, sizeof(why));
    if (ret == 0) {
        ret = cf->ops->precopy_info(t, &i0, &d0);
        snprintf(why, sizeof(why), "in PRE_COPY: %s", strerror(-ret));
    }
    prev = i0;
    for (uint64_t end = vmig__mono_ms() + PRECOPY_READ_MS; ret == 0;) {
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
        if (len > SAVE_MAX || vmig__mono_ms() > end) {
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
    (void)cf_home(cf, t, why, sizeof(why));
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
cf_run_data(struct cf *cf)
{
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
}
