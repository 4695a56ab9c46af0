/* SPDX-License-Identifier: MIT */
/*
 * engine_switchover.c - the precopy convergence rule, as a pure function
 * (see engine_switchover.h and docs/migration-protocol.md section 7).
 */
#include <stdint.h>
#include "engine_switchover.h"

void
vmig__switchover_decide(const struct vmig__sw_in *in, struct vmig__sw_out *out)
{
    uint64_t rate = in->rate < VMIG__SW_MIN_RATE ? VMIG__SW_MIN_RATE : in->rate;
    uint64_t dev_rate = in->dev_rate == 0                  ? rate
                        : in->dev_rate < VMIG__SW_MIN_RATE ? VMIG__SW_MIN_RATE
                                                           : in->dev_rate;
    uint64_t est = in->dev_bytes + in->ram_bytes;
    uint64_t dev_ms = in->dev_bytes * 1000 / dev_rate;
    /* one rate: one division, so no rounding of the parts */
    uint64_t all_ms = dev_rate == rate ? est * 1000 / rate
                                       : in->ram_bytes * 1000 / rate + dev_ms;
    uint64_t est_ms = in->ram_tracked ? all_ms : dev_ms;
    bool fits = est_ms <= in->limit_ms && in->init_done;
    bool converged = fits;
    bool capped = in->iteration >= in->max_iterations ||
                  (in->max_ms != 0 && in->elapsed_ms >= in->max_ms);

    /* fits, but only just, while still converging fast: one more round */
    if (converged && est_ms > in->limit_ms / 2 &&
        (in->prev_est_ms == UINT64_MAX || est_ms * 2 <= in->prev_est_ms)) {
        converged = false;
    }
    out->rate = rate;
    out->est_bytes = est;
    out->est_ms = est_ms;
    out->downtime_ms = all_ms;
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
