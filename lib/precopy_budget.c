/* SPDX-License-Identifier: MIT */
/*
 * precopy_budget.c - the precopy burst budget rule (precopy_budget.h).
 */
#include "precopy_budget.h"

static uint64_t
add_sat(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

uint64_t
vmig__pc_burst_budget(const struct vmig__pc_sizing *s)
{
    if (s->info) {
        return add_sat(s->initial, s->dirty);
    }
    if (s->size && s->bytes > 0) {
        return s->bytes < VMIG__PC_BURST_MAX ? s->bytes : VMIG__PC_BURST_MAX;
    }
    return VMIG__PC_BURST_MAX;
}

uint64_t
vmig__pc_round_budget(const struct vmig__pc_sizing *s, uint64_t chunk)
{
    uint64_t b = add_sat(vmig__pc_burst_budget(s), chunk);

    return b > 0 ? b : 1;
}
