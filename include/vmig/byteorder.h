/* SPDX-License-Identifier: MIT */
/*
 * byteorder.h - fixed-order integers in byte buffers, at any alignment.
 *
 * Every vmig wire and stream format (the host-to-host migration stream,
 * the device-state envelope, compatibility descriptors, the TLS verdict,
 * the device models' own state) is little-endian except the envelope's
 * magic, which is big-endian so that it reads as text.  These are the one
 * set of helpers all of them use; a device model writing its own state
 * can use them too.  (vfio-user messages are in host order on their UNIX
 * socket and are read with memcpy instead.)
 */
#ifndef VMIG_BYTEORDER_H
#define VMIG_BYTEORDER_H

#include <stdint.h>

static inline void
vmig_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void
vmig_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
vmig_put_le64(uint8_t *p, uint64_t v)
{
    vmig_put_le32(p, (uint32_t)v);
    vmig_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t
vmig_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
vmig_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t
vmig_get_le64(const uint8_t *p)
{
    return (uint64_t)vmig_get_le32(p) | (uint64_t)vmig_get_le32(p + 4) << 32;
}

static inline void
vmig_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t
vmig_get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

#endif /* VMIG_BYTEORDER_H */
