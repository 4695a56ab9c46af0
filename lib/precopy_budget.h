/* SPDX-License-Identifier: MIT */
/*
 * precopy_budget.h - how many bytes one precopy read burst of a device
 * may carry: the one rule the engine's precopy rounds (engine_precopy.c)
 * and the vfio-user backend's bursts (engine_vfu_data.c) both follow.
 */
#ifndef VMIG_PRECOPY_BUDGET_H
#define VMIG_PRECOPY_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

/* A burst's bytes when the device gives no sizing at all. */
#define VMIG__PC_BURST_MAX (64ull << 20)

/* What a device said about its pending data as a burst starts. */
struct vmig__pc_sizing {
    bool info;               /* PRECOPY_INFO answered: */
    uint64_t initial, dirty; /*   its initial and dirty bytes */
    bool size;               /* else a stop-copy size estimate answered: */
    uint64_t bytes;          /*   MIG_DATA_SIZE */
};

/*
 * The rule: what PRECOPY_INFO reports pending (initial + dirty, the bound
 * VFIO_MIG_GET_PRECOPY_INFO gives a VMM); without it the stop-copy size
 * estimate when non-zero, at most VMIG__PC_BURST_MAX; else
 * VMIG__PC_BURST_MAX.  So a device dirtying its state faster than it is
 * read still ends each burst, and what it dirtied meanwhile goes in the
 * next one.
 */
uint64_t vmig__pc_burst_budget(const struct vmig__pc_sizing *s);

/*
 * The bytes an engine precopy round lets a device send when it reads in
 * chunks of @chunk: its burst under the rule, plus the one read that
 * finds the burst over (a backend applying the rule ends its own burst
 * inside the round).  Never 0.
 */
uint64_t vmig__pc_round_budget(const struct vmig__pc_sizing *s, uint64_t chunk);

#endif /* VMIG_PRECOPY_BUDGET_H */
