/* SPDX-License-Identifier: MIT */
/*
 * conform_rules.h - what the files of conform's rule engine share:
 * conform.c (the state machine's rules and the run), conform_data.c (the
 * data session, reset, round trips, sizing and DMA logging) and
 * conform_steps.c (the steps every rule takes).  Private to them.
 */
#ifndef VMIG_CONFORM_RULES_H
#define VMIG_CONFORM_RULES_H

#include <stddef.h>
#include <stdint.h>
#include "conform.h"

#define PIECE (256u << 10)          /* bytes asked per data read */
#define SAVE_MAX (1ull << 30)       /* a device state conform keeps */
#define MAX_EMPTY_READS 1000000u    /* reads before "it never ends" */
#define ST_MASK VMIG_MIGRATION__ALL /* flags that index the table */
/* PRE_COPY: a running device may dirty its state faster than it is read,
 * and then never says "no more for now"; reading stops after this long */
#define PRECOPY_READ_MS 10000

/* conform_steps.c: the next step from @cur towards @target for the
 * device's flags (-1: refused); whether @s is a state it supports. */
int cf_next_step(const struct cf *cf, uint32_t cur, uint32_t target);
bool cf_supported(const struct cf *cf, uint32_t s);
const char *cf_sname(uint32_t s);

/* Move @t to @target one arc at a time; @why says what went wrong. */
int cf_drive(struct cf *cf, void *t, uint32_t target, char *why, size_t wl);
/* Write @len bytes of resuming data. */
int cf_put(struct cf *cf, void *t, const uint8_t *buf, size_t len);
/* Read the session until an empty read; appended to *@buf.  With @ms > 0,
 * -ETIME when that long passed without one. */
int cf_drain_for(struct cf *cf, void *t, uint8_t **buf, size_t *len,
                 unsigned int *reads, int ms);
int cf_drain(struct cf *cf, void *t, uint8_t **buf, size_t *len,
             unsigned int *reads);
/* Save the device to the end of its STOP_COPY data (left in STOP_COPY). */
int cf_save(struct cf *cf, void *t, uint8_t **buf, size_t *len,
            unsigned int *reads, char *why, size_t wl);
/* Load @buf: RESUMING, write it, RESUMING -> STOP (left in STOP). */
int cf_load(struct cf *cf, void *t, const uint8_t *buf, size_t len, char *why,
            size_t wl);
/* Back to RUNNING, walking there first and resetting only if that fails. */
int cf_home(struct cf *cf, void *t, char *why, size_t wl);
/* A fresh session with @t, its device RUNNING. */
int cf_fresh(struct cf *cf, void *t, char *why, size_t wl);
/* " - the device closed the session..." when it did, else "". */
const char *cf_gone_note(struct cf *cf, void *t);

/* A rule's preamble: fresh session or a FAIL row. */
#define FRESH(cf, t, rule, clause)                                             \
    do {                                                                       \
        char why_[256];                                                        \
        if (cf_fresh(cf, t, why_, sizeof(why_)) < 0) {                         \
            cf_row(cf, rule, clause, CF_FAIL, "%s", why_);                     \
            return;                                                            \
        }                                                                      \
    } while (0)

/* conform_data.c: the rules about the data session, reset, round trips,
 * precopy sizing and DMA logging, in order. */
void cf_run_data(struct cf *cf);

#endif /* VMIG_CONFORM_RULES_H */
