/* SPDX-License-Identifier: MIT */
/*
 * guestmap.c - where each guest program lives in guest RAM.  One place
 * decides the layout, so the workloads (accwork.c, ftwork.c) and the VM
 * (vm.c) each ask here instead of asking one another:
 *
 *   0 .. prog        the ledger program (testkit: vmig_testkit/guest.h)
 *   prog ..          one GUESTMAP_FT_SLOT per flowtab device (ftwork.c)
 *   RAM/2 ..         with an accelerator: its driver state and rings,
 *   RAM/2 + RAM/8 .. and its workload (accwork.c)
 *
 * The ledger program gets the lower half with an accelerator (all of RAM
 * otherwise), less the flowtab slots at its end.
 */
#include <string.h>
#include "agent.h"

static bool
has_kind(const struct vm_opts *o, const char *kind)
{
    for (unsigned int i = 0; i < o->nvfu; i++) {
        if (strcmp(o->vfu[i].kind, kind) == 0) {
            return true;
        }
    }
    return false;
}

unsigned int
guestmap_ft_count(const struct vm_opts *o)
{
    unsigned int n = 0;

    for (unsigned int i = 0; i < o->nvfu; i++) {
        n += strcmp(o->vfu[i].kind, "flowtab") == 0;
    }
    return n;
}

uint64_t
guestmap_prog_size(const struct vm_opts *o)
{
    uint64_t size = has_kind(o, "acc") ? o->ram_size / 2 : o->ram_size;
    uint64_t ft = (uint64_t)guestmap_ft_count(o) * GUESTMAP_FT_SLOT;

    return size > ft ? (size - ft) & ~(uint64_t)4095 : 0;
}

uint64_t
guestmap_ft_slot(const struct vm_opts *o, unsigned int i)
{
    return guestmap_prog_size(o) + (uint64_t)i * GUESTMAP_FT_SLOT;
}

uint64_t
guestmap_acc_drv(const struct vm_opts *o)
{
    return o->ram_size / 2;
}

uint64_t
guestmap_acc_work(const struct vm_opts *o)
{
    return o->ram_size / 2 + o->ram_size / 8;
}
