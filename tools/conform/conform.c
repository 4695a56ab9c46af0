/* SPDX-License-Identifier: MIT */
/*
 * conform.c - the transport-neutral rules of `vmig conform`: the
 * migration flags, the state machine (every arc, combinations, invalid and
 * unadvertised states) and the run of every rule; conform_data.c has the
 * rules about the data session, reset, round trips, sizing and logging.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/fsm.h>
#include "conform_rules.h"

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
               st == VMIG_STATE_RUNNING ? CF_PASS : CF_FAIL, "%s%s",
               cf_sname(st),
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
    if (cf_save(cf, cf->src, &cf->saved, &cf->saved_len, &reads, why,
                sizeof(why)) < 0) {
        cf_row(cf, rule, c_save, CF_FAIL, "%s%s", why,
               cf_gone_note(cf, cf->src));
        return;
    }
    cf_row(cf, rule, c_save, CF_PASS, "%zu bytes in %u reads", cf->saved_len,
           reads);
    (void)cf_home(cf, cf->src, why, sizeof(why));
}

/* One direct arc @a -> @b. */
static void
r_arc(struct cf *cf, uint32_t a, uint32_t b)
{
    void *t = cf->src;
    char rule[96], why[256];
    uint32_t got;
    int ret;

    snprintf(rule, sizeof(rule), "arc %s -> %s", cf_sname(a), cf_sname(b));
    FRESH(cf, t, rule, c_arc);
    if (a == VMIG_STATE_RESUMING && cf->saved == NULL) {
        cf_row(cf, rule, c_arc, CF_FAIL,
               "no saved state to load (the STOP_COPY save failed)");
        return;
    }
    if (cf_drive(cf, t, a, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_arc, CF_FAIL, "reaching %s: %s%s", cf_sname(a), why,
               cf_gone_note(cf, t));
        return;
    }
    if (a == VMIG_STATE_RESUMING) {
        ret = cf_put(cf, t, cf->saved, cf->saved_len);
        if (ret < 0) {
            cf_row(cf, rule, c_arc, CF_FAIL, "writing the saved state: %s",
                   strerror(-ret));
            return;
        }
    }
    ret = cf->ops->set_state(t, b);
    if (ret < 0) {
        cf_row(cf, rule, c_arc, CF_FAIL, "refused: %s%s", strerror(-ret),
               cf_gone_note(cf, t));
        return;
    }
    ret = cf->ops->get_state(t, &got);
    if (ret < 0 || got != b) {
        cf_row(cf, rule, c_arc, CF_FAIL, "accepted, but the device reports %s",
               ret < 0 ? strerror(-ret) : cf_sname(got));
        return;
    }
    cf_row(cf, rule, c_arc, CF_PASS, "%s%s", cf_sname(got),
           a == VMIG_STATE_RESUMING ? " (with its own saved state)" : "");
    (void)cf_home(cf, t, why, sizeof(why));
}

static void
r_arcs(struct cf *cf)
{
    for (uint32_t a = 1; a < 8; a++) {
        for (uint32_t b = 1; b < 8; b++) {
            if (a != b && cf_supported(cf, a) && cf_supported(cf, b) &&
                cf_next_step(cf, a, b) == (int)b) {
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
            int n = cf_next_step(cf, a, b), ret;

            if (a == b || !cf_supported(cf, a) || !cf_supported(cf, b) ||
                n < 0 || n == (int)b ||
                (a == VMIG_STATE_RESUMING && cf->saved == NULL)) {
                continue;
            }
            pairs++;
            ret = cf_home(cf, t, why, sizeof(why));
            if (ret == 0) {
                ret = cf_drive(cf, t, a, why, sizeof(why));
            }
            if (ret == 0 && a == VMIG_STATE_RESUMING) {
                ret = cf_put(cf, t, cf->saved, cf->saved_len);
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
                         nbad > 1 ? "; " : "", cf_sname(a), cf_sname(b),
                         ret < 0 ? strerror(-ret) : cf_sname(got));
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
               bad, cf_gone_note(cf, t));
    } else {
        cf_row(cf, rule, c_combo, CF_PASS, "%u pairs, each in one SET", pairs);
    }
    (void)cf_home(cf, t, why, sizeof(why));
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
                 vals[i] < 8 ? cf_sname(vals[i]) : "");
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

            if (cf_drive(cf, t, from[f], why, sizeof(why)) < 0) {
                cf_row(cf, rule, clause, CF_FAIL, "reaching %s: %s",
                       cf_sname(from[f]), why);
                return;
            }
            ret = cf->ops->set_state(t, vals[i]);
            if (cf->ops->gone(t)) {
                cf_row(cf, rule, clause, CF_FAIL, "SET %#x in %s: no reply%s",
                       vals[i], cf_sname(from[f]), cf_gone_note(cf, t));
                return;
            }
            if (ret == 0) {
                cf_row(cf, rule, clause, CF_FAIL, "SET %#x in %s accepted",
                       vals[i], cf_sname(from[f]));
                (void)cf_home(cf, t, why, sizeof(why));
                return;
            }
            if (cf->ops->get_state(t, &st) < 0 || st != from[f]) {
                cf_row(cf, rule, clause, CF_FAIL,
                       "SET %#x in %s refused (%s), but the device is now "
                       "in %s",
                       vals[i], cf_sname(from[f]), strerror(-ret),
                       cf_sname(st));
                (void)cf_home(cf, t, why, sizeof(why));
                return;
            }
        }
    }
    cf_row(cf, rule, clause, CF_PASS, "%s: each refused in %s%s%s, state kept",
           list, cf_sname(from_a), from_b != VMIG_STATE_ERROR ? " and " : "",
           from_b != VMIG_STATE_ERROR ? cf_sname(from_b) : "");
    (void)cf_home(cf, t, why, sizeof(why));
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
        if (!cf_supported(cf, s)) {
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
    cf_run_data(cf);
    if (cf->hostile && cf->ops->hostile_rules != NULL) {
        cf->ops->hostile_rules(cf, cf->src);
    }
    cf->ops->close(cf->src);
    if (cf->dst != NULL) {
        cf->ops->close(cf->dst);
    }
}
