/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy.c - the source's precopy: while the VM runs, devices in
 * PRE_COPY stream their initial then dirty data and guest RAM moves in
 * passes (all of it, then what was dirtied since), until the estimated
 * stop-copy bytes at the measured bandwidth fit the downtime limit or a
 * cap is hit; switchover-ack; a device reset during precopy (restart its
 * stream or abort); and the last RAM pass once the VM is paused
 * (docs/migration-protocol.md section 7).  When to stop iterating is
 * engine_switchover.c's pure decision.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/engine.h>
#include "engine_precopy.h"
#include "engine_precopy_rate.h"
#include "engine_priv.h"
#include "engine_send.h"
#include "engine_switchover.h"
#include "internal.h"
#include "precopy_budget.h"

#define PC_DEFAULT_ITERATIONS 30u
#define PC_DEFAULT_RESTARTS 3u
#define PC_RAM_RUN_MAX 1024u /* pages per RAM frame */
#define PC_RAM_GAP 16u       /* clean pages bridged inside one frame */
/* Pause between iterations that moved nothing, so an idle VM is not
 * polled in a tight loop while its devices catch up. */
#define PC_IDLE_NS 5000000L

static unsigned int
bitmap_words(uint64_t bytes)
{
    uint64_t pages = bytes / VMIG_MP_PAGE_SIZE;

    return (unsigned int)((pages + 63) / 64);
}

/* The VMM gave the three dirty hooks: guest RAM can be precopied. */
static bool
tracks_ram(const struct vmig_engine *e)
{
    return e->ops->dirty_start != NULL && e->ops->dirty_collect != NULL &&
           e->ops->dirty_stop != NULL;
}

bool
vmig__pc_wanted(const struct eng_src *s)
{
    bool dev_pc = false;

    if (!(s->features & VMIG_MP_FEAT_PRECOPY) || s->p.no_precopy) {
        return false;
    }
    for (unsigned int i = 0; i < s->e->ndev; i++) {
        if (s->dev[i].flags & VMIG_MIGRATION_PRE_COPY) {
            dev_pc = true;
        }
    }
    return dev_pc || tracks_ram(s->e);
}

void
vmig__pc_end(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;

    if (pc->dirty_started) {
        e->ops->dirty_stop(e->opaque);
        pc->dirty_started = false;
    }
    for (unsigned int r = 0; r < VMIG_ENGINE_MAX_REGIONS; r++) {
        free(pc->bm[r]);
        pc->bm[r] = NULL;
    }
}

/* RAM tracking on, PRE_COPY devices into PRE_COPY. */
static int
pc_begin(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;
    int ret;

    memset(pc, 0, sizeof(*pc));
    pc->ack = (s->features & VMIG_MP_FEAT_SWITCHOVER_ACK) != 0;
    pc->max_iter =
        s->p.max_iterations ? s->p.max_iterations : PC_DEFAULT_ITERATIONS;
    pc->max_restarts =
        s->p.max_restarts ? s->p.max_restarts : PC_DEFAULT_RESTARTS;
    pc->zero = (s->features & VMIG_MP_FEAT_ZERO_PAGES) != 0;
    pc->ram = tracks_ram(e);
    if (pc->ram) {
        for (unsigned int r = 0; r < e->nregions; r++) {
            pc->bm[r] =
                calloc(bitmap_words(e->region[r].size), sizeof(uint64_t));
            if (pc->bm[r] == NULL) {
                return -ENOMEM;
            }
        }
        ret = e->ops->dirty_start(e->opaque);
        if (ret < 0) {
            vmig__engine_set_error(e, "cannot track guest RAM writes: %s",
                                   strerror(-ret));
            return ret;
        }
        pc->dirty_started = true;
    } else {
        vmig_info(e->ctx, "migration: the VMM tracks no RAM writes; guest RAM "
                          "moves at stop-copy, only device data is "
                          "precopied");
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (!(s->dev[i].flags & VMIG_MIGRATION_PRE_COPY)) {
            continue;
        }
        s->touched = true;
        ret = vmig__engine_dev_set(e, i, VMIG_STATE_PRE_COPY, false);
        if (ret < 0) {
            vmig__engine_set_error(e, "device %s: cannot enter PRE_COPY: %s",
                                   e->dev[i].name, strerror(-ret));
            return ret;
        }
        s->dev[i].tx_pc = true;
        pc->ndev_pc++;
    }
    pthread_mutex_lock(&e->lock);
    e->st.precopy = true;
    pthread_mutex_unlock(&e->lock);
    {
        uint64_t unused;

        /* the devices' pending bytes and the time the first pass's
         * dirtying is counted from */
        pc->dev_pending = vmig__pc_dev_pending(s, 0, &unused);
        pc->t_meas = vmig__mono_ns();
    }
    vmig_info(e->ctx,
              "migration: precopy (%s RAM, %u of %u devices in PRE_COPY%s)",
              pc->ram ? "with" : "without", pc->ndev_pc, e->ndev,
              pc->ack ? ", switchover-ack" : "");
    return 0;
}

/*
 * The next run of pages a dirty pass sends in region @bm (@npages pages),
 * from page *@pg on: a run of dirty pages, bridging short clean gaps
 * (resending a few clean pages is cheaper than a frame per scattered page
 * while the VM is paused).  Return its length (0: none left) with its
 * first page in *@pg.
 */
static uint64_t
pc_next_run(const uint64_t *bm, uint64_t npages, uint64_t *pg)
{
    uint64_t p = *pg;

    while (p < npages) {
        uint64_t end = p, q = p + 1;

        if (bm[p / 64] == 0 && p % 64 == 0) {
            p += 64;
            continue;
        }
        if (!(bm[p / 64] & (1ull << (p % 64)))) {
            p++;
            continue;
        }
        while (q < npages && q - p < PC_RAM_RUN_MAX) {
            if (bm[q / 64] & (1ull << (q % 64))) {
                end = q;
            } else if (q - end > PC_RAM_GAP) {
                break;
            }
            q++;
        }
        *pg = p;
        return end - p + 1;
    }
    *pg = npages;
    return 0;
}

/* Pages a dirty pass would send now: the dirty ones and the clean ones
 * its runs bridge. */
static uint64_t
pc_pass_pages(const struct eng_src *s)
{
    const struct vmig_engine *e = s->e;
    uint64_t pages = 0;

    for (unsigned int r = 0; r < e->nregions; r++) {
        uint64_t npages = e->region[r].size / VMIG_MP_PAGE_SIZE;
        uint64_t pg = 0, run;

        while ((run = pc_next_run(s->pc.bm[r], npages, &pg)) != 0) {
            pages += run;
            pg += run;
        }
    }
    return pages;
}

/* Send the pages set in the bitmaps as pass @pass and clear them. */
static int
pc_send_dirty(struct eng_src *s, unsigned int pass, bool last)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;
    uint64_t pages = 0;
    int ret;

    vmig__engine_pass(e, pass);
    pthread_mutex_lock(&e->lock);
    e->st.ram_remaining = pc->dirty_pages * VMIG_MP_PAGE_SIZE;
    pthread_mutex_unlock(&e->lock);
    for (unsigned int r = 0; r < e->nregions; r++) {
        uint64_t *bm = pc->bm[r];
        uint64_t npages = e->region[r].size / VMIG_MP_PAGE_SIZE;
        uint64_t pg = 0, run;

        while ((run = pc_next_run(bm, npages, &pg)) != 0) {
            ret = vmig__src_send_pages(s, r, pg * VMIG_MP_PAGE_SIZE,
                                       (uint32_t)run, pc->zero, false, !last,
                                       pass);
            if (ret < 0) {
                return ret;
            }
            pages += run;
            pg += run;
        }
        memset(bm, 0, (size_t)bitmap_words(e->region[r].size) * 8);
    }
    pc->dirty_pages = 0;
    pc->pass_pages = 0;
    return vmig__src_pass_end(s, pass, last, pages);
}

/* Read and clear every region's dirty pages into the bitmaps. */
static int
pc_collect(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;
    uint64_t total = 0, t0 = vmig__mono_ns();

    for (unsigned int r = 0; r < e->nregions; r++) {
        size_t nbits = (size_t)(e->region[r].size / VMIG_MP_PAGE_SIZE);
        long n = e->ops->dirty_collect(e->opaque, r, pc->bm[r], nbits);

        if (n < 0) {
            vmig__engine_set_error(e, "cannot read dirty RAM of region %s: %s",
                                   e->region[r].name, strerror((int)-n));
            return (int)n;
        }
    }
    for (unsigned int r = 0; r < e->nregions; r++) {
        unsigned int words = bitmap_words(e->region[r].size);

        for (unsigned int w = 0; w < words; w++) {
            total += (uint64_t)__builtin_popcountll(pc->bm[r][w]);
        }
    }
    pc->dirty_pages = total;
    pc->collect_ns = vmig__mono_ns() - t0;
    return 0;
}

/*
 * Device @i lost its saving session during precopy (@err from its read,
 * or its state is no longer PRE_COPY): it was reset.  Restart its stream
 * (the destination discards what it had) or abort, per the policy.
 */
static int
pc_dev_lost(struct eng_src *s, unsigned int i, int err)
{
    struct vmig_engine *e = s->e;
    const struct vmig_engine_params *p = &s->p;
    const struct eng_dev *d = &e->dev[i];
    struct eng_src_dev *sd = &s->dev[i];
    enum vmig_state st = VMIG_STATE_ERROR;
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_RESTART,
                            .dev_restart = {.dev = i}};
    int ret;

    if (d->ops->get_state(d->opaque, &st) < 0) {
        st = VMIG_STATE_ERROR;
    }
    vmig__engine_dev_state(e, i, st);
    if (st == VMIG_STATE_PRE_COPY) {
        /* the session is there but reading it failed: not a reset */
        vmig_err(e->ctx,
                 "device %s: reading its precopy state at byte %llu "
                 "failed: %s",
                 d->name, (unsigned long long)sd->tx_off, strerror(-err));
        vmig__engine_set_error(e, "device %s: precopy read failed: %s", d->name,
                               strerror(-err));
        return err;
    }
    if (p->reset_policy == VMIG_ENGINE_RESET_ABORT ||
        sd->tx_restarts >= s->pc.max_restarts) {
        vmig_err(e->ctx,
                 "device %s: reset during precopy (now %s, %s); "
                 "aborting the migration (%s); the VM keeps running here",
                 d->name, vmig_state_name(st),
                 err < 0 ? strerror(-err) : "session gone",
                 p->reset_policy == VMIG_ENGINE_RESET_ABORT
                     ? "reset policy: abort"
                     : "restart limit reached");
        vmig__engine_set_error(e,
                               "device %s was reset during precopy; "
                               "migration aborted (%s)",
                               d->name,
                               p->reset_policy == VMIG_ENGINE_RESET_ABORT
                                   ? "reset policy abort"
                                   : "too many restarts");
        return -ENODEV;
    }
    if (st == VMIG_STATE_ERROR) {
        ret = d->ops->reset(d->opaque);
        if (ret < 0 || d->ops->get_state(d->opaque, &st) < 0) {
            st = VMIG_STATE_ERROR;
        }
    }
    if (st != VMIG_STATE_RUNNING) {
        vmig__engine_set_error(e,
                               "device %s: in %s after a reset during "
                               "precopy",
                               d->name, vmig_state_name(st));
        return err < 0 ? err : -EIO;
    }
    sd->tx_restarts++;
    vmig_warn(e->ctx,
              "device %s: reset during precopy; restarting its precopy from "
              "the beginning (restart %u of at most %u); the destination "
              "discards what it received",
              d->name, sd->tx_restarts, s->pc.max_restarts);
    ret = vmig_mp_send_msg(s->c, &m);
    if (ret < 0) {
        return ret;
    }
    sd->tx_off = 0;
    sd->tx_init_done = false;
    XXH3_64bits_reset(sd->hash);
    s->pc.ack_sent = false; /* its initial data must be acknowledged again */
    pthread_mutex_lock(&e->lock);
    e->st.dev[i].restarts = sd->tx_restarts;
    pthread_mutex_unlock(&e->lock);
    ret = vmig__engine_dev_set(e, i, VMIG_STATE_PRE_COPY, false);
    if (ret < 0) {
        vmig__engine_set_error(e, "device %s: cannot re-enter PRE_COPY: %s",
                               d->name, strerror(-ret));
    }
    return ret;
}

/*
 * Every precopy device still in PRE_COPY?  One that is not was reset:
 * restart it (return 1: keep iterating) or fail, per the policy.  The
 * time the devices took to answer is kept (pc.arc_ns): a stop arc costs
 * about one such exchange.
 */
static int
pc_check_sessions(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    int restarted = 0;
    uint64_t asked = 0;

    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        enum vmig_state st;
        uint64_t t0;
        bool in_pc;
        int ret;

        if (!s->dev[i].tx_pc) {
            continue;
        }
        t0 = vmig__mono_ns();
        in_pc =
            d->ops->get_state(d->opaque, &st) == 0 && st == VMIG_STATE_PRE_COPY;
        asked += vmig__mono_ns() - t0;
        if (in_pc) {
            continue;
        }
        ret = pc_dev_lost(s, i, -ENODEV);
        if (ret < 0) {
            return ret;
        }
        restarted = 1;
    }
    s->pc.arc_ns = asked;
    return restarted;
}

/* One round over the precopy devices: send what each has pending. */
static int
pc_devices(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    int lost = pc_check_sessions(s); /* reset since last round */

    if (lost < 0) {
        return lost;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        struct eng_src_dev *sd = &s->dev[i];
        uint64_t initial = 0, dirty = 0, budget, t0, off0;
        struct vmig__pc_sizing sz;
        bool info = false, dev_err = false;
        int ret;

        if (!sd->tx_pc) {
            continue;
        }
        if (d->ops->precopy_info != NULL &&
            d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
            info = true;
        }
        /* the device's burst under the one budget rule, and the read
         * that finds it over; a backend that sizes its bursts by
         * MIG_DATA_SIZE sizes them below this */
        sz = (struct vmig__pc_sizing){
            .info = info, .initial = initial, .dirty = dirty};
        budget = vmig__pc_round_budget(&sz, VMIG_MP_CHUNK_MAX);
        t0 = vmig__mono_ns();
        off0 = sd->tx_off;
        ret = vmig__src_dev_pump(s, i, true, budget, &dev_err);
        if (ret >= 0 && sd->tx_off >= off0) {
            vmig__pc_note_rate(&sd->pc_rate, sd->tx_off - off0,
                               vmig__mono_ns() - t0);
        }
        if (ret < 0 && dev_err) {
            ret = pc_dev_lost(s, i, ret);
            if (ret == 0) {
                continue; /* restarted: its data flows next round */
            }
        }
        if (ret < 0) {
            return ret;
        }
        if (!sd->tx_init_done) {
            if (info &&
                d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
                sd->tx_init_done = initial == 0;
            } else {
                sd->tx_init_done = ret == 1;
            }
        }
    }
    return 0;
}

static bool
pc_all_init_done(const struct eng_src *s)
{
    for (unsigned int i = 0; i < s->e->ndev; i++) {
        if (s->dev[i].tx_pc && !s->dev[i].tx_init_done) {
            return false;
        }
    }
    return true;
}

static int
pc_send_ack_req(struct eng_src *s)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_SWITCHOVER_REQ};

    s->ack_req++;
    s->t_ack_req = vmig__mono_ns();
    m.switchover_req.id = s->ack_req;
    s->pc.ack_sent = true;
    vmig_dbg(s->e->ctx, "migration: every device sent its initial data; "
                        "asking the destination to acknowledge switchover");
    return vmig_mp_send_msg(s->c, &m);
}

/*
 * The decision at a cap or at convergence, before the switchover: a cap
 * that aborts (-ETIME), a switchover that goes on although it does not
 * fit (a warning), and the wait for the destination's switchover-ack.
 */
static int
pc_finish(struct eng_src *s, const struct vmig__sw_in *in,
          const struct vmig__sw_out *out)
{
    struct vmig_engine *e = s->e;
    bool need_ack = s->pc.ack && s->pc.ndev_pc > 0;

    if (out->decision == VMIG__SW_ABORT) {
        vmig_err(e->ctx,
                 "migration: precopy did not converge after %u "
                 "iterations / %llu ms (estimated downtime %llu ms "
                 "> limit %llu ms); aborting as configured; the VM "
                 "keeps running here",
                 in->iteration, (unsigned long long)in->elapsed_ms,
                 (unsigned long long)out->est_ms,
                 (unsigned long long)in->limit_ms);
        vmig__engine_set_error(
            e,
            "precopy did not converge (estimated downtime %llu ms "
            "> limit %llu ms after %u iterations); raise "
            "downtime-limit or max-bandwidth, or let the cap "
            "switch over",
            (unsigned long long)out->est_ms, (unsigned long long)in->limit_ms,
            in->iteration);
        return -ETIME;
    }
    if (out->decision == VMIG__SW_GO_CAPPED) {
        pthread_mutex_lock(&e->lock);
        e->st.forced_switchover = true;
        pthread_mutex_unlock(&e->lock);
        vmig_warn(e->ctx,
                  "migration: precopy did not converge after %u "
                  "iterations (estimated downtime %llu ms > limit "
                  "%llu ms); switching over anyway",
                  in->iteration, (unsigned long long)out->est_ms,
                  (unsigned long long)in->limit_ms);
    }
    if (need_ack && s->pc.ack_sent) {
        return vmig__src_wait_ack(s);
    }
    if (need_ack) {
        vmig_warn(e->ctx, "migration: switching over before every "
                          "device sent its initial data; the "
                          "destination judges it during downtime");
    }
    return 0;
}

/*
 * Before switching over on an estimate: wait for the destination's
 * switchover-ack if it is still due.  Return 1 when that wait outlasted a
 * quarter of the downtime limit: the VM kept dirtying RAM and device
 * state meanwhile, so the estimate is stale and one more iteration
 * measures again (with no wait then); 0 to go on; a negative errno when
 * the wait failed.
 */
static int
pc_ack_stale(struct eng_src *s)
{
    uint64_t t0, waited_ms;
    int ret;

    if (!s->pc.ack || s->pc.ndev_pc == 0 || !s->pc.ack_sent ||
        s->ack_got == s->ack_req) {
        return 0;
    }
    t0 = vmig__mono_ns();
    ret = vmig__src_wait_ack(s);
    if (ret < 0) {
        return ret;
    }
    waited_ms = (vmig__mono_ns() - t0) / 1000000;
    if (waited_ms <= s->p.downtime_limit_ms / 4) {
        return 0;
    }
    vmig_dbg(s->e->ctx,
             "migration: waited %llu ms for the switchover-ack; the "
             "estimate before it is stale, measuring again",
             (unsigned long long)waited_ms);
    return 1;
}

/* Bytes of the device streams sent so far, and restarts so far. */
static uint64_t
pc_dev_sent(const struct eng_src *s, unsigned int *restarts)
{
    uint64_t sent = 0;

    *restarts = 0;
    for (unsigned int i = 0; i < s->e->ndev; i++) {
        sent += s->dev[i].tx_off;
        *restarts += s->dev[i].tx_restarts;
    }
    return sent;
}

/* Iterate: RAM pass, device data, switchover-ack request, decision. */
static int
pc_iterate(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;
    uint64_t t0 = vmig__mono_ns(), sent0 = vmig__wire_sent(s->c);
    bool need_ack = pc->ack && pc->ndev_pc > 0;
    uint64_t prev_est_ms = UINT64_MAX;
    int ret;

    pc->sent0 = sent0;
    for (unsigned int it = 1;; it++) {
        uint64_t sent_it = vmig__wire_sent(s->c), now, avg, rate, dev_rate;
        uint64_t ram_ns = 0, ram_sent = 0, tr, dev0, dev1;
        unsigned int rst0, rst1;
        struct vmig__sw_in in;
        struct vmig__sw_out out;
        double secs;

        pthread_mutex_lock(&e->lock);
        e->st.iterations = it;
        pthread_mutex_unlock(&e->lock);
        if (pc->ram) {
            tr = vmig__mono_ns();
            ret = it == 1 ? vmig__src_send_ram(s, pc->zero, true, 1, false)
                          : pc_send_dirty(s, it, false);
            if (ret < 0) {
                return ret;
            }
            pc->pass = it;
            ram_ns = vmig__mono_ns() - tr;
            ram_sent = vmig__wire_sent(s->c) - sent_it;
        }
        dev0 = pc_dev_sent(s, &rst0);
        ret = pc_devices(s);
        if (ret < 0) {
            return ret;
        }
        dev1 = pc_dev_sent(s, &rst1);
        if (need_ack && !pc->ack_sent && pc_all_init_done(s)) {
            ret = pc_send_ack_req(s);
            if (ret < 0) {
                return ret;
            }
        }
        ret = vmig__src_check_return(s);
        if (ret < 0) {
            return ret;
        }
        if (pc->ram) {
            tr = vmig__mono_ns();
            ret = pc_collect(s);
            if (ret < 0) {
                return ret;
            }
            pc->pass_pages = pc_pass_pages(s);
            /* the stop's last pass sends and collects too */
            vmig__pc_note_rate(&pc->ram_rate, ram_sent,
                               ram_ns + (vmig__mono_ns() - tr));
        }
        now = vmig__mono_ns();
        secs = (double)(now - t0) / 1e9;
        /* bytes per second over all of precopy so far: the rate until a
         * pass or burst was measured */
        avg = secs > 0
                  ? (uint64_t)((double)(vmig__wire_sent(s->c) - sent0) / secs)
                  : 0;
        /* RAM at the rate of its last pass, not since the start (the first
         * pass streams RAM in long runs, the later ones scattered pages
         * while the vCPUs compete for the CPU) */
        rate = pc->ram_rate != 0 ? pc->ram_rate : avg;
        in = (struct vmig__sw_in){
            .ram_bytes =
                pc->ram ? pc->pass_pages * VMIG_MP_PAGE_SIZE : e->ram_total,
            .ram_tracked = pc->ram,
            .dev_bytes = vmig__pc_dev_pending(s, rate, &dev_rate),
            .rate = rate,
            .dev_rate = dev_rate,
            .limit_ms = s->p.downtime_limit_ms,
            .init_done = pc_all_init_done(s),
            .iteration = it,
            .max_iterations = pc->max_iter,
            .elapsed_ms = (now - t0) / 1000000,
            .max_ms = s->p.max_precopy_ms,
            .cap_action = s->p.cap_action,
            .prev_est_ms = prev_est_ms,
        };
        vmig__pc_sw_measure(s, &in, now, rst1 == rst0 ? dev1 - dev0 : 0,
                            rst1 != rst0);
        vmig__switchover_decide(&in, &out);
        prev_est_ms = out.est_ms;
        pthread_mutex_lock(&e->lock);
        e->st.dirty_pages = pc->dirty_pages;
        e->st.est_stopcopy_bytes = out.est_bytes;
        e->st.expected_downtime_ms = out.downtime_ms;
        e->st.precopy_bytes = vmig__wire_sent(s->c) - sent0;
        pthread_mutex_unlock(&e->lock);
        vmig__pc_sw_log(s, it, &in, &out, dev_rate);
        if (out.decision != VMIG__SW_ITERATE) {
            /* a device reset since its last read would otherwise open a
             * new session at the stop: catch it while the VM runs */
            ret = pc_check_sessions(s);
            if (ret < 0) {
                return ret;
            }
            /* at a cap the decision stands, however stale */
            if (ret == 0 && out.decision == VMIG__SW_GO && !out.capped) {
                ret = pc_ack_stale(s);
                if (ret < 0) {
                    return ret;
                }
                if (ret == 1) {
                    continue; /* measure again, the ack in hand */
                }
            }
            if (ret == 0) {
                return pc_finish(s, &in, &out);
            }
            continue;
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        if (vmig__wire_sent(s->c) == sent_it) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = PC_IDLE_NS};

            nanosleep(&ts, NULL);
        }
    }
}

int
vmig__pc_run(struct eng_src *s)
{
    int ret = pc_begin(s);

    return ret < 0 ? ret : pc_iterate(s);
}

bool
vmig__pc_dirty_pass(const struct eng_src *s)
{
    return s->pc_on && s->pc.ram;
}

int
vmig__pc_final_collect(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_pc *pc = &s->pc;
    int ret;

    if (!vmig__pc_dirty_pass(s)) {
        return 0;
    }
    ret = pc_collect(s);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&e->lock);
    e->st.dirty_pages = pc->dirty_pages;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

int
vmig__pc_final_send(struct eng_src *s)
{
    struct eng_pc *pc = &s->pc;

    /* tracking stops after the migration (vmig__pc_end()): releasing it
     * costs time that is not the guest's downtime */
    return pc_send_dirty(s, pc->pass + 1, true);
}
