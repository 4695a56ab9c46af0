/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy_rate.c - what the source's precopy measures for the
 * switchover decision (engine_switchover.c): the rates of the last RAM
 * pass and device bursts, what the devices have pending, the dirty rates,
 * the window before the pause and the fixed cost of the stop.
 */
#include <stdint.h>
#include <vmig/engine.h>
#include "engine_precopy_rate.h"
#include "engine_priv.h"
#include "engine_switchover.h"
#include "internal.h"

/* A pass or burst moving less measures its fixed costs more than a rate:
 * the rate of the last one that moved at least this much is kept. */
#define PC_RATE_MIN_BYTES (1u << 20)

/* Keep @bytes moved in @ns as the rate in *@rate, when enough moved to
 * measure one. */
void
vmig__pc_note_rate(uint64_t *rate, uint64_t bytes, uint64_t ns)
{
    if (bytes >= PC_RATE_MIN_BYTES && ns > 0) {
        *rate = (uint64_t)((double)bytes * 1e9 / (double)ns);
    }
}

/*
 * Device bytes the stop would still move, asked of each device now, and in
 * *@rate the rate they would move at: each device at the rate of its last
 * measured precopy burst (@fallback before it has one), so a device read
 * slower than the wire counts at its own speed.
 */
uint64_t
vmig__pc_dev_pending(const struct eng_src *s, uint64_t fallback, uint64_t *rate)
{
    const struct vmig_engine *e = s->e;
    uint64_t dev = 0;
    double secs = 0;

    if (fallback < VMIG__SW_MIN_RATE) {
        fallback = VMIG__SW_MIN_RATE;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        uint64_t v = 0, initial = 0, dirty = 0;
        uint64_t r = s->dev[i].pc_rate != 0 ? s->dev[i].pc_rate : fallback;

        if (d->ops->data_size != NULL &&
            d->ops->data_size(d->opaque, &v) == 0) {
            /* the device's own stop-copy size */
        } else if (s->dev[i].tx_pc && d->ops->precopy_info != NULL &&
                   d->ops->precopy_info(d->opaque, &initial, &dirty) == 0) {
            v = initial + dirty;
        }
        dev += v;
        secs +=
            (double)v / (double)(r < VMIG__SW_MIN_RATE ? VMIG__SW_MIN_RATE : r);
    }
    *rate = secs > 0 ? (uint64_t)((double)dev / secs) : 0;
    return dev;
}

static uint64_t
per_sec(uint64_t bytes, uint64_t ns)
{
    return ns > 0 ? (uint64_t)((double)bytes * 1e9 / (double)ns) : 0;
}

/* Whole milliseconds, rounded to the nearest: rounding each part up
 * would add up to a millisecond per part to the estimate. */
static uint64_t
ns_to_ms(uint64_t ns)
{
    return (ns + 500000) / 1000000;
}

/*
 * What the switchover estimate needs besides the pending bytes, measured
 * over the iteration that just ended (its measurement ended at @t_meas,
 * the devices had @dev_read bytes read from them meanwhile, @restarted
 * when one restarted its stream):
 * - the dirty rates: the RAM a pass would send now (the dirty pages and
 *   the clean ones its runs bridge), and device data produced (pending
 *   now + read - pending after the iteration before), over the
 *   iteration's time;
 * - the window the VM goes on dirtying before the pause: at least the
 *   iteration's time (the decision, the pause itself waiting for the
 *   vCPUs and for the devices' work in flight, and a starved vCPU
 *   catching up once the engine stops sending are not known in advance);
 * - the fixed cost, measured in this migration's earlier phases: the
 *   last collection (the stop collects once more) and the devices' two
 *   stop arcs (each as long as the devices took to report their state in
 *   this iteration: an arc into PRE_COPY opens a session and is no
 *   measure of one that keeps it).
 */
void
vmig__pc_sw_measure(struct eng_src *s, struct vmig__sw_in *in, uint64_t t_meas,
                    uint64_t dev_read, bool restarted)
{
    struct eng_pc *pc = &s->pc;
    uint64_t pass_ns = t_meas - pc->t_meas, fixed_ns;
    uint64_t dev_new = 0;

    if (!restarted && in->dev_bytes + dev_read > pc->dev_pending) {
        dev_new = in->dev_bytes + dev_read - pc->dev_pending;
    }
    pc->pass_ns = pass_ns;
    pc->t_meas = t_meas;
    pc->dev_pending = in->dev_bytes;
    in->ram_dirty_rate =
        pc->ram ? per_sec(pc->pass_pages * VMIG_MP_PAGE_SIZE, pass_ns) : 0;
    in->dev_dirty_rate = per_sec(dev_new, pass_ns);
    in->window_ms = ns_to_ms(pass_ns);
    in->ram_max = s->e->ram_total;
    fixed_ns = (pc->ram ? pc->collect_ns : 0) + 2 * pc->arc_ns;
    in->fixed_ms = ns_to_ms(fixed_ns);
    in->overlap = s->mc != NULL;
}

/* The decision's inputs and outcome, for the debug log. */
void
vmig__pc_sw_log(const struct eng_src *s, unsigned int it,
                const struct vmig__sw_in *in, const struct vmig__sw_out *out,
                uint64_t dev_rate)
{
    const struct eng_pc *pc = &s->pc;

    vmig_dbg(
        s->e->ctx,
        "migration: precopy iteration %u: %llu dirty pages (%llu "
        "to send), estimated stop-copy %llu bytes (%llu dirtied in "
        "the next "
        "%llu ms: RAM at %llu B/s, devices at %llu B/s), %llu ms "
        "(%llu fixed + %llu transfer%s: RAM at %llu B/s, devices "
        "at %llu B/s)",
        it, (unsigned long long)pc->dirty_pages,
        (unsigned long long)pc->pass_pages, (unsigned long long)out->est_bytes,
        (unsigned long long)out->grow_bytes, (unsigned long long)in->window_ms,
        (unsigned long long)in->ram_dirty_rate,
        (unsigned long long)in->dev_dirty_rate, (unsigned long long)out->est_ms,
        (unsigned long long)in->fixed_ms, (unsigned long long)out->xfer_ms,
        in->overlap ? ", overlapped" : "", (unsigned long long)out->rate,
        (unsigned long long)(dev_rate != 0 ? dev_rate : out->rate));
}
