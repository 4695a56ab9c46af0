/* SPDX-License-Identifier: MIT */
/*
 * proto_priv.h - field readers shared by the vfio-user codec files
 * (proto.c: messages alone, proto_reply.c: replies against requests).
 * Host byte order, as the spec requires on AF_UNIX; memcpy, so any
 * alignment is fine.
 */
#ifndef VMIG_PROTO_PRIV_H
#define VMIG_PROTO_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t
vmig__rd32(const uint8_t *p, size_t off)
{
    uint32_t v;

    memcpy(&v, p + off, sizeof(v));
    return v;
}

static inline uint64_t
vmig__rd64(const uint8_t *p, size_t off)
{
    uint64_t v;

    memcpy(&v, p + off, sizeof(v));
    return v;
}

#endif /* VMIG_PROTO_PRIV_H */
