/* SPDX-License-Identifier: MIT */
/*
 * stream_priv.h - byte-level helpers shared by stream_write.c and
 * stream_load.c.  The layout itself is in docs/stream-format.md.
 */
#ifndef VMIG_STREAM_PRIV_H
#define VMIG_STREAM_PRIV_H

#include <stdint.h>
#include <xxhash.h>
#include <vmig/stream.h>

/* Seed of the stream-header checksum and of the whole-stream digest. */
#define VMIG__STREAM_SEED 0

static inline void
vmig__put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
vmig__put_le64(uint8_t *p, uint64_t v)
{
    vmig__put_le32(p, (uint32_t)v);
    vmig__put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
vmig__get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t
vmig__get_le64(const uint8_t *p)
{
    return (uint64_t)vmig__get_le32(p) | (uint64_t)vmig__get_le32(p + 4) << 32;
}

static inline void
vmig__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t
vmig__get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Fill a 24-byte record header whose check is seeded with @seq. */
static inline void
vmig__rec_header(uint8_t *p, uint32_t type, uint32_t flags, uint64_t len,
                 uint64_t seq)
{
    vmig__put_le32(p, type);
    vmig__put_le32(p + 4, flags);
    vmig__put_le64(p + 8, len);
    vmig__put_le64(p + 16, XXH3_64bits_withSeed(p, 16, seq));
}

#endif /* VMIG_STREAM_PRIV_H */
