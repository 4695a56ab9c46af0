/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy_rate.h - the measurements the source's precopy
 * (engine_precopy.c) feeds the switchover decision (engine_switchover.c),
 * in engine_precopy_rate.c.
 */
#ifndef VMIG_ENGINE_PRECOPY_RATE_H
#define VMIG_ENGINE_PRECOPY_RATE_H

#include <stdbool.h>
#include <stdint.h>
#include "engine_src_state.h"
#include "engine_switchover.h"

/* Keep @bytes moved in @ns as the rate in *@rate, when enough moved to
 * measure one (a smaller pass measures its fixed costs more). */
void vmig__pc_note_rate(uint64_t *rate, uint64_t bytes, uint64_t ns);

/* The devices' pending stop-copy bytes, and in *@rate the rate they would
 * move at (each at its last burst's rate, @fallback before it has one). */
uint64_t vmig__pc_dev_pending(const struct eng_src *s, uint64_t fallback,
                              uint64_t *rate);

/* The decision's other inputs, measured over the iteration that ended at
 * @t_meas (@dev_read bytes read from the devices in it; @restarted: a
 * device restarted its stream): dirty rates, window, fixed cost, overlap. */
void vmig__pc_sw_measure(struct eng_src *s, struct vmig__sw_in *in,
                         uint64_t t_meas, uint64_t dev_read, bool restarted);

/* The decision's inputs and outcome, for the debug log. */
void vmig__pc_sw_log(const struct eng_src *s, unsigned int it,
                     const struct vmig__sw_in *in,
                     const struct vmig__sw_out *out, uint64_t dev_rate);

#endif /* VMIG_ENGINE_PRECOPY_RATE_H */
