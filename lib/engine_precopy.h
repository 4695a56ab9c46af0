/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy.h - the source's precopy phase (engine_precopy.c), run
 * by the phases of engine_src.c over the migration's struct eng_src.
 */
#ifndef VMIG_ENGINE_PRECOPY_H
#define VMIG_ENGINE_PRECOPY_H

#include <stdbool.h>
#include "engine_src_state.h"

/*
 * Precopy was accepted, is not disabled, and there is something to
 * precopy: a device with PRE_COPY, or RAM the VMM tracks writes to.
 */
bool vmig__pc_wanted(const struct eng_src *s);

/*
 * Start tracking RAM writes, move PRE_COPY devices into PRE_COPY (sets
 * s->touched), then iterate until the switchover decision says go (0),
 * or fail (-ETIME when a cap aborts, -ENODEV when a device reset aborts).
 */
int vmig__pc_run(struct eng_src *s);

/*
 * The last RAM pass is one of dirty pages: precopy ran and the VMM
 * tracks RAM writes.  Otherwise all of RAM moves at stop-copy as pass 1.
 */
bool vmig__pc_dirty_pass(const struct eng_src *s);

/*
 * With the vCPUs paused and devices stopped: the pages dirtied since the
 * last precopy pass into the bitmaps (nothing without a dirty pass).
 * Quick (a bitmap sync, and a dirty log read per device that logs its
 * DMA): done before any device's data is read, so no device is asked
 * for its log while its state streams.
 */
int vmig__pc_final_collect(struct eng_src *s);

/* Those pages as the last pass, flagged LAST, on the main connection. */
int vmig__pc_final_send(struct eng_src *s);

/* Stop RAM tracking and free the bitmaps; safe to call twice. */
void vmig__pc_end(struct eng_src *s);

#endif /* VMIG_ENGINE_PRECOPY_H */
