/* SPDX-License-Identifier: MIT */
/*
 * engine_switchover.h - when precopy stops iterating (engine_switchover.c).
 *
 * A pure function of what the source measured after one precopy
 * iteration: no engine, no clock, no I/O, so every case is a row in a
 * unit test (tests/unit/test_switchover.c).  The transfer rates are
 * inputs: how they are measured (over the last precopy pass, for RAM and
 * per device) is the caller's business.
 */
#ifndef VMIG_ENGINE_SWITCHOVER_H
#define VMIG_ENGINE_SWITCHOVER_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine.h>

/* The rate below which the estimate is made at this rate anyway (bytes/s):
 * a first iteration that moved nothing measurable still gets an estimate. */
#define VMIG__SW_MIN_RATE 1000000ull

enum vmig__sw_decision {
    VMIG__SW_ITERATE = 0, /* one more precopy iteration */
    VMIG__SW_GO,          /* switch over: the estimate fits the limit */
    VMIG__SW_GO_CAPPED,   /* a cap was hit, it does not fit: switch anyway */
    VMIG__SW_ABORT,       /* a cap was hit, it does not fit: give up */
};

/**
 * struct vmig__sw_in - one iteration's measurements.
 * @ram_bytes:     RAM stop-copy would move now: the dirty pages when RAM
 *                 is tracked, all of RAM when not.
 * @ram_tracked:   RAM is precopied.  When not, RAM is a fixed cost of the
 *                 stop whatever precopy does, so only the device part has
 *                 to fit the limit.
 * @dev_bytes:     device data the devices would still produce at the stop
 *                 (MIG_DATA_SIZE, else PRE_COPY initial + dirty bytes).
 * @rate:          measured transfer rate of guest RAM, bytes per second
 *                 (any value; below VMIG__SW_MIN_RATE counts as that).
 * @dev_rate:      the devices' own rate, bytes per second: @dev_bytes over
 *                 the time the devices would take at the rates they showed
 *                 (a device read slower than the wire moves its state
 *                 slower); 0: @rate.  Floored like @rate.
 * @limit_ms:      the downtime limit.
 * @init_done:     every PRE_COPY device sent all its initial data.
 * @iteration:     iterations done, this one included (from 1).
 * @max_iterations: the iteration cap.
 * @elapsed_ms:    precopy time so far.
 * @max_ms:        the time cap; 0: none.
 * @cap_action:    what a cap does when the estimate does not fit.
 * @prev_est_ms:   the previous iteration's @est_ms output; UINT64_MAX
 *                 before the first.
 */
struct vmig__sw_in {
    uint64_t ram_bytes;
    bool ram_tracked;
    uint64_t dev_bytes;
    uint64_t rate;
    uint64_t dev_rate;
    uint64_t limit_ms;
    bool init_done;
    unsigned int iteration;
    unsigned int max_iterations;
    uint64_t elapsed_ms;
    uint64_t max_ms;
    enum vmig_engine_cap_action cap_action;
    uint64_t prev_est_ms;
};

/**
 * struct vmig__sw_out - the decision and the estimates behind it.
 * @decision:    what to do.
 * @fits:        @est_ms is within the limit and @init_done.
 * @capped:      an iteration or time cap was reached.
 * @rate:        the RAM rate the estimates use (at least VMIG__SW_MIN_RATE).
 * @est_bytes:   bytes the stop would move (RAM and devices).
 * @est_ms:      the part that must fit: RAM at @rate plus the devices at
 *               their rate, or only the device part when RAM is not
 *               tracked.  Pass it back as the next iteration's
 *               @prev_est_ms.
 * @downtime_ms: all of @est_bytes, each part at its rate (the expected
 *               downtime).
 */
struct vmig__sw_out {
    enum vmig__sw_decision decision;
    bool fits;
    bool capped;
    uint64_t rate;
    uint64_t est_bytes;
    uint64_t est_ms;
    uint64_t downtime_ms;
};

/*
 * Decide after one precopy iteration.  Switch over when the estimate fits
 * the limit and every device sent its initial data, unless the estimate
 * is still above half the limit while precopy converges fast (it at least
 * halved since the previous iteration, or this is the first): then one
 * more iteration costs little and cuts the downtime well below the limit.
 * At a cap: switch over if it fits, else per @cap_action.
 */
void vmig__switchover_decide(const struct vmig__sw_in *in,
                             struct vmig__sw_out *out);

#endif /* VMIG_ENGINE_SWITCHOVER_H */
