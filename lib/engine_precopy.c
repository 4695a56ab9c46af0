/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy.c - the source's precopy: while the VM runs, devices in
 * PRE_COPY stream their initial then dirty data and guest RAM moves in
 * passes (all of it, then what was dirtied since), until the estimated
 * stop-copy bytes at the measured bandwidth fit the downtime limit or a
 * cap is hit; switchover-ack; a device reset during precopy (restart its
 * stream or abort); and the last RAM pass once the VM is paused
 * (docs/migration-protocol.md §7).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/engine.h>
#include "engine_priv.h"
#include "internal.h"

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
vmig__pc_wanted(struct vmig_engine *e, uint64_t features,
                const struct vmig_engine_params *p)
{
    bool dev_pc = false;

    if (!(features & VMIG_MP_FEAT_PRECOPY) || p->no_precopy) {
        return false;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (e->dev[i].flags & VMIG_MIGRATION_PRE_COPY) {
            dev_pc = true;
        }
    }
    return dev_pc || tracks_ram(e);
}

void
vmig__pc_end(struct vmig_engine *e, struct eng_pc *pc)
{
    if (pc->dirty_started) {
        e->ops->dirty_stop(e->opaque);
        pc->dirty_started = false;
    }
    for (unsigned int r = 0; r < VMIG_ENGINE_MAX_REGIONS; r++) {
        free(pc->bm[r]);
        pc->bm[r] = NULL;
    }
}

int
vmig__pc_begin(struct vmig_engine *e, uint64_t features,
               const struct vmig_engine_params *p, struct eng_pc *pc,
               bool *touched)
{
    int ret;

    memset(pc, 0, sizeof(*pc));
    pc->ack = (features & VMIG_MP_FEAT_SWITCHOVER_ACK) != 0;
    pc->max_iter =
        p->max_iterations ? p->max_iterations : PC_DEFAULT_ITERATIONS;
    pc->max_restarts = p->max_restarts ? p->max_restarts : PC_DEFAULT_RESTARTS;
    pc->zero = (features & VMIG_MP_FEAT_ZERO_PAGES) != 0;
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
        struct eng_dev *d = &e->dev[i];

        if (!(d->flags & VMIG_MIGRATION_PRE_COPY)) {
            continue;
        }
        *touched = true;
        ret = vmig__engine_dev_set(e, i, VMIG_STATE_PRE_COPY, false);
        if (ret < 0) {
            vmig__engine_set_error(e, "device %s: cannot enter PRE_COPY: %s",
                                   d->name, strerror(-ret));
            return ret;
        }
        d->tx_pc = true;
        pc->ndev_pc++;
    }
    pthread_mutex_lock(&e->lock);
    e->st.precopy = true;
    pthread_mutex_unlock(&e->lock);
    vmig_info(e->ctx,
              "migration: precopy (%s RAM, %u of %u devices in PRE_COPY%s)",
              pc->ram ? "with" : "without", pc->ndev_pc, e->ndev,
              pc->ack ? ", switchover-ack" : "");
    return 0;
}

/* Send the pages set in the bitmaps as pass @pass and clear them. */
static int
pc_send_dirty(struct vmig_engine *e, struct vmig_mp_conn *c, struct eng_pc *pc,
              unsigned int pass, bool last)
{
    uint64_t pages = 0;
    int ret;

    vmig__engine_pass(e, pass);
    pthread_mutex_lock(&e->lock);
    e->st.ram_remaining = pc->dirty_pages * VMIG_MP_PAGE_SIZE;
    pthread_mutex_unlock(&e->lock);
    for (unsigned int r = 0; r < e->nregions; r++) {
        uint64_t *bm = pc->bm[r];
        uint64_t npages = e->region[r].size / VMIG_MP_PAGE_SIZE;
        uint64_t pg = 0;

        while (pg < npages) {
            uint64_t run = 0;

            if (bm[pg / 64] == 0 && pg % 64 == 0) {
                pg += 64;
                continue;
            }
            if (!(bm[pg / 64] & (1ull << (pg % 64)))) {
                pg++;
                continue;
            }
            /* a run of dirty pages, bridging short clean gaps: resending
             * a few clean pages is cheaper than a frame per scattered
             * page while the VM is paused */
            {
                uint64_t end = pg, q = pg + 1;

                while (q < npages && q - pg < PC_RAM_RUN_MAX) {
                    if (bm[q / 64] & (1ull << (q % 64))) {
                        end = q;
                    } else if (q - end > PC_RAM_GAP) {
                        break;
                    }
                    q++;
                }
                run = end - pg + 1;
            }
            ret = vmig__src_send_pages(e, c, r, pg * VMIG_MP_PAGE_SIZE,
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
    return vmig__src_pass_end(c, pass, last, pages);
}

/* Read and clear every region's dirty pages into the bitmaps. */
static int
pc_collect(struct vmig_engine *e, struct eng_pc *pc)
{
    uint64_t total = 0;

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
    return 0;
}

/*
 * Device @i lost its saving session during precopy (@err from its read,
 * or its state is no longer PRE_COPY): it was reset.  Restart its stream
 * (the destination discards what it had) or abort, per the policy.
 */
static int
pc_dev_lost(struct vmig_engine *e, struct vmig_mp_conn *c, struct eng_pc *pc,
            const struct vmig_engine_params *p, unsigned int i, int err)
{
    struct eng_dev *d = &e->dev[i];
    enum vmig_state s = VMIG_STATE_ERROR;
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_RESTART,
                            .dev_restart = {.dev = i}};
    int ret;

    if (d->ops->get_state(d->opaque, &s) < 0) {
        s = VMIG_STATE_ERROR;
    }
    vmig__engine_dev_state(e, i, s);
    if (s == VMIG_STATE_PRE_COPY) {
        /* the session is there but reading it failed: not a reset */
        vmig_err(e->ctx,
                 "device %s: reading its precopy state at byte %llu "
                 "failed: %s",
                 d->name, (unsigned long long)d->tx_off, strerror(-err));
        vmig__engine_set_error(e, "device %s: precopy read failed: %s", d->name,
                               strerror(-err));
        return err;
    }
    if (p->reset_policy == VMIG_ENGINE_RESET_ABORT ||
        d->tx_restarts >= pc->max_restarts) {
        vmig_err(e->ctx,
                 "device %s: reset during precopy (now %s, %s); "
                 "aborting the migration (%s); the VM keeps running here",
                 d->name, vmig_state_name(s),
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
    if (s == VMIG_STATE_ERROR) {
        ret = d->ops->reset(d->opaque);
        if (ret < 0 || d->ops->get_state(d->opaque, &s) < 0) {
            s = VMIG_STATE_ERROR;
        }
    }
    if (s != VMIG_STATE_RUNNING) {
        vmig__engine_set_error(e,
                               "device %s: in %s after a reset during "
                               "precopy",
                               d->name, vmig_state_name(s));
        return err < 0 ? err : -EIO;
    }
    d->tx_restarts++;
    vmig_warn(e->ctx,
              "device %s: reset during precopy; restarting its precopy from "
              "the beginning (restart %u of at most %u); the destination "
              "discards what it received",
              d->name, d->tx_restarts, pc->max_restarts);
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        return ret;
    }
    d->tx_off = 0;
    d->tx_init_done = false;
    XXH3_64bits_reset(d->hash);
    pc->ack_sent = false; /* its initial data must be acknowledged again */
    pthread_mutex_lock(&e->lock);
    e->st.dev[i].restarts = d->tx_restarts;
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
 * restart it (return 1: keep iterating) or fail, per the policy.
 */
static int
pc_check_sessions(struct vmig_engine *e, struct vmig_mp_conn *c,
                  struct eng_pc *pc, const struct vmig_engine_params *p)
{
    int restarted = 0;

    for (unsigned int i = 0; i < e->ndev; i++) {
        struct eng_dev *d = &e->dev[i];
        enum vmig_state s;
        int ret;

        if (!d->tx_pc || (d->ops->get_state(d->opaque, &s) == 0 &&
                          s == VMIG_STATE_PRE_COPY)) {
            continue;
        }
        ret = pc_dev_lost(e, c, pc, p, i, -ENODEV);
        if (ret < 0) {
            return ret;
        }
        restarted = 1;
    }
    return restarted;
}

/* One round over the precopy devices: send what each has pending. */
static int
pc_devices(struct vmig_engine *e, struct vmig_mp_conn *c, struct eng_pc *pc,
           const struct vmig_engine_params *p)
{
    int lost = pc_check_sessions(e, c, pc, p); /* reset since last round */

    if (lost < 0) {
        return lost;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        struct eng_dev *d = &e->dev[i];
        uint64_t initial = 0, dirty = 0, budget = 0;
        bool info = false, dev_err = false;
        int ret;

        if (!d->tx_pc) {
            continue;
        }
        if (d->ops->precopy_info != NULL &&
            d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
            info = true;
            budget = initial + dirty + (4u << 20);
        }
        ret = vmig__src_dev_pump(e, c, i, true, budget, &dev_err);
        if (ret < 0 && dev_err) {
            ret = pc_dev_lost(e, c, pc, p, i, ret);
            if (ret == 0) {
                continue; /* restarted: its data flows next round */
            }
        }
        if (ret < 0) {
            return ret;
        }
        if (!d->tx_init_done) {
            if (info &&
                d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
                d->tx_init_done = initial == 0;
            } else {
                d->tx_init_done = ret == 1;
            }
        }
    }
    return 0;
}

/* Estimated stop-copy bytes if we switched over now. */
static uint64_t
pc_estimate(struct vmig_engine *e, const struct eng_pc *pc, uint64_t *dev_part)
{
    uint64_t dev = 0;

    for (unsigned int i = 0; i < e->ndev; i++) {
        struct eng_dev *d = &e->dev[i];
        uint64_t v = 0, initial = 0, dirty = 0;

        if (d->ops->data_size != NULL &&
            d->ops->data_size(d->opaque, &v) == 0) {
            dev += v;
        } else if (d->tx_pc && d->ops->precopy_info != NULL &&
                   d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
            dev += initial + dirty;
        }
    }
    *dev_part = dev;
    return dev + (pc->ram ? pc->dirty_pages * VMIG_MP_PAGE_SIZE : e->ram_total);
}

static bool
pc_all_init_done(const struct vmig_engine *e)
{
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (e->dev[i].tx_pc && !e->dev[i].tx_init_done) {
            return false;
        }
    }
    return true;
}

static int
pc_send_ack_req(struct vmig_engine *e, struct vmig_mp_conn *c,
                struct eng_pc *pc)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_SWITCHOVER_REQ};

    e->ack_req++;
    e->t_ack_req = vmig__mono_ns();
    m.switchover_req.id = e->ack_req;
    pc->ack_sent = true;
    vmig_dbg(e->ctx, "migration: every device sent its initial data; "
                     "asking the destination to acknowledge switchover");
    return vmig_mp_send_msg(c, &m);
}

int
vmig__pc_iterate(struct vmig_engine *e, struct vmig_mp_conn *c,
                 struct eng_pc *pc, const struct vmig_engine_params *p)
{
    uint64_t t0 = vmig__mono_ns(), sent0 = vmig__wire_sent(c);
    bool need_ack = pc->ack && pc->ndev_pc > 0;
    uint64_t prev_est_ms = UINT64_MAX;
    int ret;

    pc->sent0 = sent0;
    for (unsigned int it = 1;; it++) {
        uint64_t sent_it = vmig__wire_sent(c), est, dev_part, now, bw, est_ms;
        double secs;
        bool fits, converged, capped;

        pthread_mutex_lock(&e->lock);
        e->st.iterations = it;
        pthread_mutex_unlock(&e->lock);
        if (pc->ram) {
            ret = it == 1 ? vmig__src_send_ram(e, c, pc->zero, true, 1, false)
                          : pc_send_dirty(e, c, pc, it, false);
            if (ret < 0) {
                return ret;
            }
            pc->pass = it;
        }
        ret = pc_devices(e, c, pc, p);
        if (ret < 0) {
            return ret;
        }
        if (need_ack && !pc->ack_sent && pc_all_init_done(e)) {
            ret = pc_send_ack_req(e, c, pc);
            if (ret < 0) {
                return ret;
            }
        }
        ret = vmig__src_check_return(e, c);
        if (ret < 0) {
            return ret;
        }
        if (pc->ram) {
            ret = pc_collect(e, pc);
            if (ret < 0) {
                return ret;
            }
        }
        now = vmig__mono_ns();
        secs = (double)(now - t0) / 1e9;
        /* bytes per second over all of precopy so far; at least 1 MB/s
         * so a first estimate exists */
        bw = secs > 0 ? (uint64_t)((double)(vmig__wire_sent(c) - sent0) / secs)
                      : 0;
        if (bw < 1000000) {
            bw = 1000000;
        }
        est = pc_estimate(e, pc, &dev_part);
        /* without RAM tracking RAM is a fixed cost: converge on devices */
        est_ms = (pc->ram ? est : dev_part) * 1000 / bw;
        pthread_mutex_lock(&e->lock);
        e->st.dirty_pages = pc->dirty_pages;
        e->st.est_stopcopy_bytes = est;
        e->st.expected_downtime_ms = est * 1000 / bw;
        e->st.precopy_bytes = vmig__wire_sent(c) - sent0;
        pthread_mutex_unlock(&e->lock);
        fits = est_ms <= p->downtime_limit_ms && pc_all_init_done(e);
        converged = fits;
        /*
         * Fits, but only just, while precopy is still converging fast
         * (the estimate at least halved by the last round, or this was
         * the first): one more round costs little and cuts the downtime
         * well below the limit.
         */
        if (converged && est_ms > p->downtime_limit_ms / 2 &&
            (prev_est_ms == UINT64_MAX || est_ms * 2 <= prev_est_ms)) {
            converged = false;
        }
        prev_est_ms = est_ms;
        capped =
            it >= pc->max_iter || (p->max_precopy_ms != 0 &&
                                   (now - t0) / 1000000 >= p->max_precopy_ms);
        vmig_dbg(e->ctx,
                 "migration: precopy iteration %u: %llu dirty pages, "
                 "estimated stop-copy %llu bytes (%llu ms at %llu B/s)",
                 it, (unsigned long long)pc->dirty_pages,
                 (unsigned long long)est, (unsigned long long)est_ms,
                 (unsigned long long)bw);
        if (converged || capped) {
            /* a device reset since its last read would otherwise open a
             * new session at the stop: catch it while the VM runs */
            ret = pc_check_sessions(e, c, pc, p);
            if (ret < 0) {
                return ret;
            }
            if (ret == 1) {
                continue;
            }
            if (!fits && p->cap_action == VMIG_ENGINE_CAP_ABORT) {
                vmig_err(e->ctx,
                         "migration: precopy did not converge after %u "
                         "iterations / %llu ms (estimated downtime %llu ms "
                         "> limit %llu ms); aborting as configured; the VM "
                         "keeps running here",
                         it, (unsigned long long)((now - t0) / 1000000),
                         (unsigned long long)est_ms,
                         (unsigned long long)p->downtime_limit_ms);
                vmig__engine_set_error(
                    e,
                    "precopy did not converge (estimated downtime %llu ms "
                    "> limit %llu ms after %u iterations); raise "
                    "downtime-limit or max-bandwidth, or let the cap "
                    "switch over",
                    (unsigned long long)est_ms,
                    (unsigned long long)p->downtime_limit_ms, it);
                return -ETIME;
            }
            if (!fits) {
                vmig_warn(e->ctx,
                          "migration: precopy did not converge after %u "
                          "iterations (estimated downtime %llu ms > limit "
                          "%llu ms); switching over anyway",
                          it, (unsigned long long)est_ms,
                          (unsigned long long)p->downtime_limit_ms);
            }
            if (need_ack && pc->ack_sent) {
                ret = vmig__src_wait_ack(e, c);
                if (ret < 0) {
                    return ret;
                }
            } else if (need_ack) {
                vmig_warn(e->ctx, "migration: switching over before every "
                                  "device sent its initial data; the "
                                  "destination judges it during downtime");
            }
            return 0;
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        if (vmig__wire_sent(c) == sent_it) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = PC_IDLE_NS};

            nanosleep(&ts, NULL);
        }
    }
}

int
vmig__pc_final_ram(struct vmig_engine *e, struct vmig_mp_conn *c,
                   struct eng_pc *pc)
{
    int ret;

    if (!pc->ram) {
        return vmig__src_send_ram(e, c, pc->zero, false, 1, true);
    }
    ret = pc_collect(e, pc);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&e->lock);
    e->st.dirty_pages = pc->dirty_pages;
    pthread_mutex_unlock(&e->lock);
    /* tracking stops after the migration (vmig__pc_end): releasing it
     * costs time that is not the guest's downtime */
    return pc_send_dirty(e, c, pc, pc->pass + 1, true);
}
