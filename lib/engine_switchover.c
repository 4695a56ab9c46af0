/* SPDX-License-Identifier: MIT */
/*
 * engine_switchover.c - the precopy convergence rule, as a pure function
 * (see engine_switchover.h and docs/migration-protocol.md section 7).
 */
#include <stdint.h>
#include "engine_switchover.h"

static uint64_t
floor_rate(uint64_t r)
{
    return r < VMIG__SW_MIN_RATE ? VMIG__SW_MIN_RATE : r;
}

static uint64_t
max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Bytes dirtied at @rate bytes/s in @ms milliseconds. */
static uint64_t
grown(uint64_t rate, uint64_t ms)
{
    return rate / 1000 * ms + rate % 1000 * ms / 1000;
}

void
vmig__switchover_decide(const struct vmig__sw_in *in, struct vmig__sw_out *out)
{
    uint64_t rate = floor_rate(in->rate);
    uint64_t dev_rate = in->dev_rate == 0 ? rate : floor_rate(in->dev_rate);
    uint64_t ram_grow =
        in->ram_tracked ? grown(in->ram_dirty_rate, in->window_ms) : 0;
    uint64_t ram_room =
        in->ram_max > in->ram_bytes ? in->ram_max - in->ram_bytes : 0;
    uint64_t dev_grow = grown(in->dev_dirty_rate, in->window_ms);
    uint64_t ram, dev, est, dev_ms, ram_ms, xfer_ms, est_ms;
    bool fits, converged, capped;

    if (in->ram_max != 0 && ram_grow > ram_room) {
        ram_grow = ram_room; /* a pass sends each page once */
    }
    ram = in->ram_bytes + ram_grow;
    dev = in->dev_bytes + dev_grow;
    est = ram + dev;
    dev_ms = dev * 1000 / dev_rate;
    ram_ms = ram * 1000 / rate;
    if (in->overlap) {
        /* both at once, each no faster than alone, all of it no faster
         * than the link carrying both */
        uint64_t link = in->link_rate != 0 ? floor_rate(in->link_rate)
                                           : max64(rate, dev_rate);

        xfer_ms = max64(max64(ram_ms, dev_ms), est * 1000 / link);
    } else {
        /* one rate: one division, so no rounding of the parts */
        xfer_ms = dev_rate == rate ? est * 1000 / rate : ram_ms + dev_ms;
    }
    est_ms = in->fixed_ms + (in->ram_tracked ? xfer_ms : dev_ms);
    fits = est_ms <= in->limit_ms && in->init_done;
    converged = fits;
    capped = in->iteration >= in->max_iterations ||
             (in->max_ms != 0 && in->elapsed_ms >= in->max_ms);

    /* fits, but only just, while still converging fast: one more round */
    if (converged && est_ms > in->limit_ms / 2 &&
        (in->prev_est_ms == UINT64_MAX || est_ms * 2 <= in->prev_est_ms)) {
        converged = false;
    }
    out->rate = rate;
    out->est_bytes = est;
    out->grow_bytes = ram_grow + dev_grow;
    out->xfer_ms = xfer_ms;
    out->est_ms = est_ms;
    out->downtime_ms = in->fixed_ms + xfer_ms;
    out->fits = fits;
    out->capped = capped;
    if (converged || (capped && fits)) {
        out->decision = VMIG__SW_GO;
    } else if (!capped) {
        out->decision = VMIG__SW_ITERATE;
    } else if (in->cap_action == VMIG_ENGINE_CAP_ABORT) {
        out->decision = VMIG__SW_ABORT;
    } else {
        out->decision = VMIG__SW_GO_CAPPED;
    }
}
