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
 * @ram_dirty_rate: bytes of guest RAM the VM dirtied per second over the
 *                 last pass (the dirty pages collected over the time
 *                 since the collection before); ignored when RAM is not
 *                 tracked (all of it moves anyway).
 * @dev_dirty_rate: bytes of device data the devices produced per second
 *                 over the last pass (what they have pending now, plus
 *                 what was read from them, minus what they had pending
 *                 after the pass before).
 * @ram_max:       bytes of guest RAM: a pass never sends more, however
 *                 much is dirtied in the window; 0: no bound.
 * @window_ms:     how long the VM is taken to keep running after the
 *                 measurement: pages and device data dirtied meanwhile
 *                 move at the stop too.  The caller gives at least the
 *                 last pass's duration.
 * @fixed_ms:      the switchover's fixed cost, whatever the bytes: the
 *                 pause, the devices' stop arcs, the last dirty
 *                 collection, the resume on the destination.
 * @overlap:       the devices' stop-copy data and the last RAM pass travel
 *                 at the same time (parallel channels: device data on the
 *                 extra channels, RAM on the main one): the transfer takes
 *                 the longer of the two, bounded below by all of it over
 *                 @link_rate; otherwise one after the other (the sum).
 * @link_rate:     the shared link's rate, bytes per second, for @overlap;
 *                 0: the faster of the RAM and device rates (nothing
 *                 measured the link carrying both at once).
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
    uint64_t ram_dirty_rate;
    uint64_t dev_dirty_rate;
    uint64_t ram_max;
    uint64_t window_ms;
    uint64_t fixed_ms;
    bool overlap;
    uint64_t link_rate;
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
 * @est_bytes:   bytes the stop would move (RAM and devices): what is
 *               pending now plus @grow_bytes.
 * @grow_bytes:  of @est_bytes, what the VM dirties during @window_ms
 *               (RAM at @ram_dirty_rate when tracked, up to @ram_max in
 *               all, devices at @dev_dirty_rate).
 * @xfer_ms:     the transfer of @est_bytes: RAM at @rate, the devices at
 *               their rate, added (one connection) or overlapped
 *               (@overlap: the longer part, at least all of it at the
 *               link rate).
 * @est_ms:      the part that must fit: @fixed_ms plus @xfer_ms, or plus
 *               only the device part when RAM is not tracked.  Pass it
 *               back as the next iteration's @prev_est_ms.
 * @downtime_ms: @fixed_ms plus @xfer_ms (the expected downtime).
 */
struct vmig__sw_out {
    enum vmig__sw_decision decision;
    bool fits;
    bool capped;
    uint64_t rate;
    uint64_t est_bytes;
    uint64_t grow_bytes;
    uint64_t xfer_ms;
    uint64_t est_ms;
    uint64_t downtime_ms;
};

/*
 * Decide after one precopy iteration.  The estimate: the switchover's
 * fixed cost plus the transfer of what is pending now and what the VM
 * dirties in the window before the pause, each part at its rate.  Switch
 * over when the estimate fits the limit and every device sent its initial
 * data, unless the estimate is still above half the limit while precopy
 * converges fast (it at least halved since the previous iteration, or
 * this is the first): then one more iteration costs little and cuts the
 * downtime well below the limit.  At a cap: switch over if it fits, else
 * per @cap_action.
 */
void vmig__switchover_decide(const struct vmig__sw_in *in,
                             struct vmig__sw_out *out);

#endif /* VMIG_ENGINE_SWITCHOVER_H */
