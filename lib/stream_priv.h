/* SPDX-License-Identifier: MIT */
/*
 * stream_priv.h - byte-level helpers shared by stream_write.c and
 * stream_load.c.  The layout itself is in docs/stream-format.md.
 */
#ifndef VMIG_STREAM_PRIV_H
#define VMIG_STREAM_PRIV_H

#include <stdint.h>
#include "xxh_fast.h"
#include <vmig/byteorder.h>
#include <vmig/stream.h>

/* Seed of the stream-header checksum and of the whole-stream digest. */
#define VMIG__STREAM_SEED 0

/* Fill a 24-byte record header whose check is seeded with @seq. */
static inline void
vmig__rec_header(uint8_t *p, uint32_t type, uint32_t flags, uint64_t len,
                 uint64_t seq)
{
    vmig_put_le32(p, type);
    vmig_put_le32(p + 4, flags);
    vmig_put_le64(p + 8, len);
    vmig_put_le64(p + 16, XXH3_64bits_withSeed(p, 16, seq));
}

#endif /* VMIG_STREAM_PRIV_H */
