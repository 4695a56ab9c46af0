/* SPDX-License-Identifier: MIT */
/*
 * flowtab_state.c - the model's state memory: allocation, power-on
 * contents, and the dirty chunks an open saving session must resend.
 * The model, the worker and the migration callbacks all write the state
 * through these, and this file calls none of them.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "flowtab_priv.h"

uint8_t *
ft__big_alloc(uint64_t len, bool populate)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0),
                   -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

void
ft__big_free(uint8_t *p, uint64_t len)
{
    if (p != NULL) {
        munmap(p, len);
    }
}

void
ft__mark_dirty(struct ft_model *d, uint64_t off, uint64_t len)
{
    if (!d->save.open) {
        return;
    }
    for (uint64_t c = off >> d->chunk_shift;
         c <= (off + len - 1) >> d->chunk_shift; c++) {
        if (!bit_test(d->save.unsent, c) && !bit_test(d->save.dirty, c)) {
            bit_set(d->save.dirty, c);
            d->save.ndirty++;
        }
    }
}

struct ft_ctrl *
ft__ctrl_w(struct ft_model *d)
{
    ft__mark_dirty(d, 0, sizeof(struct ft_ctrl));
    return C(d);
}

void
ft__state_power_on(struct ft_model *d)
{
    struct ft_ctrl *c;

    memset(d->state, 0, d->state_bytes);
    c = C(d);
    c->magic = FT_CTRL_MAGIC;
    c->capacity = d->capacity;
}
