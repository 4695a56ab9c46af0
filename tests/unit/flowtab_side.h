/* SPDX-License-Identifier: MIT */
/*
 * flowtab_side.h - one flowtab device model on guest RAM with its guest
 * driver, for the model tests (flowtab_side.c): made, driven with traffic
 * (synchronously or through the device's worker thread), moved between
 * states and compared; and the group setup making the context.
 */
#ifndef FLOWTAB_SIDE_H
#define FLOWTAB_SIDE_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include "flowtab_testlib.h"

#define S(x) VMIG_STATE_##x
#define RAM_BYTES (4u << 20)
#define AREA 0x10000u
#define REC(chunk) (sizeof(struct ft_rec_hdr) + (chunk))
#define HDR_REC (sizeof(struct ft_rec_hdr) + sizeof(struct ft_rec_stream_hdr))
#define END_REC (sizeof(struct ft_rec_hdr) + sizeof(struct ft_rec_end))

extern vmig_ctx_t *ctx;

struct side {
    struct ft_ram ram;
    struct ft_model *dev;
    struct ft_guest g;
    struct ft_guest_regs regs;
};

/* A device of @cfg (or of @state bytes in @chunk pieces) on 4 MiB of RAM;
 * its guest driver with @nflows flows; freed. */
void side_new_cfg(struct side *s, const struct ft_config *cfg);
void side_new(struct side *s, uint64_t state, uint32_t chunk, bool no_thread);
void side_guest(struct side *s, uint32_t nflows);
void side_free(struct side *s);
/* Move @d to @st (it must get there); @a and @b hold the same state. */
void set_state(struct ft_model *d, unsigned int st);
void assert_same_state(struct ft_model *a, struct ft_model *b);
/* @n requests posted and completed: processed here (no_thread) or by
 * the device's worker thread. */
void traffic(struct side *s, unsigned int n);
void traffic_threaded(struct side *s, unsigned int n);
/* cmocka group setup and teardown: the context. */
int setup(void **state);
int teardown(void **state);

#endif /* FLOWTAB_SIDE_H */
