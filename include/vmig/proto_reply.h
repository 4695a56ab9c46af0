/* SPDX-License-Identifier: MIT */
/*
 * proto_reply.h - a server's replies checked against the request that
 * asked for them (the client's side of the vfio-user specification,
 * QEMU docs/interop/vfio-user.rst).
 *
 * vmig_vfu_decode() judges a message on its own: sizes, counts, flags.
 * The functions here judge what only the request knows: that the reply
 * is for the access asked for (offset, region, index, feature echoed),
 * that the data a count announces is present and no larger than asked,
 * that a capability chain stays inside the reply.
 *
 * They read the specification liberally, as its "Message sizes" section
 * allows: a reply may be longer than the data it carries (trailing bytes
 * are ignored: MIG_DATA_READ padded to the size asked for, the count
 * being `size`), a reply argsz above the payload only says how much room
 * a complete reply needs, unknown capabilities, JSON keys and flag bits
 * are skipped.  What the specification forbids is refused with -EPROTO
 * (-EOPNOTSUPP for an incompatible version) and a struct vmig_vfu_reject
 * naming the clause broken and what the reply had, so that the message a
 * person reads says what to fix.  docs/vfio-user.md lists every decision.
 *
 * Every function takes a message vmig_vfu_decode() accepted as a reply
 * that is not an error reply.  Nothing is allocated; pointers returned
 * point into the message.
 */
#ifndef VMIG_PROTO_REPLY_H
#define VMIG_PROTO_REPLY_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/export.h>
#include <vmig/proto.h>

/* Bounds vmig puts on what a device may announce (not the spec's: a
 * client walks these counts one request each). */
#define VMIG_VFU_CLI_MAX_REGIONS 4096
#define VMIG_VFU_CLI_MAX_IRQ_TYPES 1024

/**
 * struct vmig_vfu_reject - why a reply was refused.
 * @rule: the clause of the specification the reply broke (static text).
 * @seen: what the reply had.
 */
struct vmig_vfu_reject {
    const char *rule;
    char seen[160];
};

/**
 * vmig_vfu_reply_version() - VERSION reply.
 * @m:     the reply.
 * @asked: the version the client proposed.
 * @v:     receives the server's version.
 * @caps:  receives its capabilities (defaults for absent ones; unknown
 *         ones ignored); @caps->ext is what the server accepted, before
 *         masking with what the client offered.
 * @why:   receives the reason on failure.
 *
 * The JSON is optional; when present it ends at its NUL, and only NUL
 * bytes may follow (padding).
 *
 * Return: 0, -EOPNOTSUPP (major differs or minor above the proposal),
 * -EPROTO (malformed data or capabilities).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_version(const struct vmig_vfu_msg *m,
                       const struct vmig_vfu_version *asked,
                       struct vmig_vfu_version *v, struct vmig_vfu_caps *caps,
                       struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_device_info() - DEVICE_GET_INFO reply.
 * @m:   the reply.
 * @out: receives the fixed part (fields after it are ignored).
 * @why: receives the reason on failure.
 *
 * Return: 0, or -EPROTO (more than VMIG_VFU_CLI_MAX_REGIONS regions or
 * VMIG_VFU_CLI_MAX_IRQ_TYPES IRQ types).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_device_info(const struct vmig_vfu_msg *m,
                           struct vmig_vfu_device_info *out,
                           struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_region_info() - DEVICE_GET_REGION_INFO reply.
 * @m:     the reply (with its capability chain, if it fit).
 * @index: the region asked for.
 * @out:   receives the fixed part; out->argsz above the payload means
 *         the capabilities did not fit (ask again with that argsz).
 * @why:   receives the reason on failure.
 *
 * A complete reply's chain is walked: every header inside the reply, no
 * loop, a sparse-mmap capability's areas inside the region.  Unknown
 * capabilities are skipped.
 *
 * Return: 0, or -EPROTO (another region's info, a region whose mmap
 * offset + size wraps, a broken chain).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_region_info(const struct vmig_vfu_msg *m, uint32_t index,
                           struct vmig_vfu_region_info *out,
                           struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_irq_info() - DEVICE_GET_IRQ_INFO reply.
 * @m:     the reply.
 * @index: the IRQ index asked for.
 * @out:   receives the fixed part.
 * @why:   receives the reason on failure.
 *
 * Return: 0, or -EPROTO (another index's info, a count above
 * VMIG_VFU_MAX_IRQ_COUNT).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_irq_info(const struct vmig_vfu_msg *m, uint32_t index,
                        struct vmig_vfu_irq_info *out,
                        struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_region_read() - REGION_READ reply.
 * @m:    the reply.
 * @req:  the request.
 * @data: receives a pointer to req->count bytes of data.
 * @why:  receives the reason on failure.
 *
 * Return: 0, or -EPROTO (another access echoed, a count other than the
 * one asked for).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_region_read(const struct vmig_vfu_msg *m,
                           const struct vmig_vfu_region_rw *req,
                           const uint8_t **data, struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_region_write() - REGION_WRITE reply.
 * @m:   the reply.
 * @req: the request.
 * @why: receives the reason on failure.
 *
 * Return: 0, or -EPROTO (another access echoed, fewer or more bytes
 * written than sent).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_region_write(const struct vmig_vfu_msg *m,
                            const struct vmig_vfu_region_rw *req,
                            struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_feature() - DEVICE_FEATURE reply.
 * @m:     the reply.
 * @flags: the request's flags (feature index | GET/SET/PROBE).
 * @want:  feature-data bytes the caller needs (0: none).
 * @data:  receives a pointer to the data after {argsz, flags}; may be
 *         NULL when @want is 0.
 * @why:   receives the reason on failure.
 *
 * Return: the number of data bytes present (>= @want), or -EPROTO
 * (another feature's reply, less data than the feature's struct).
 */
VMIG_EXPORT VMIG_MUST_CHECK long
vmig_vfu_reply_feature(const struct vmig_vfu_msg *m, uint32_t flags,
                       size_t want, const uint8_t **data,
                       struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_log_report() - DMA_LOGGING_REPORT reply.
 * @m:      the reply.
 * @req:    the request's iova, length and page_size.
 * @bitmap: receives a pointer to the bitmap (ceil(pages / 64) u64).
 * @why:    receives the reason on failure.
 *
 * Return: 0, or -EPROTO (another range echoed, a short bitmap, bits set
 * past the requested range).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_log_report(const struct vmig_vfu_msg *m,
                          const struct vmig_vfu_feat_log_report *req,
                          const uint8_t **bitmap, struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_mig_read() - MIG_DATA_READ reply.
 * @m:     the reply.
 * @asked: the request's size.
 * @size:  receives the byte count (the reply's `size`).
 * @data:  receives a pointer to them.
 * @why:   receives the reason on failure.
 *
 * The count is `size`; bytes after them (a reply padded to @asked) and
 * the reply's argsz are ignored.
 *
 * Return: 0, or -EPROTO (`size` above @asked).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_reply_mig_read(const struct vmig_vfu_msg *m, uint32_t asked,
                        uint32_t *size, const uint8_t **data,
                        struct vmig_vfu_reject *why);

/**
 * vmig_vfu_reply_layout() - The reply layout the specification gives for
 * a command, for messages ("{offset, region, count} + count bytes").
 * @cmd: any number.
 *
 * Return: a static string ("?" for numbers outside the spec).
 */
VMIG_EXPORT const char *vmig_vfu_reply_layout(unsigned int cmd);

#endif /* VMIG_PROTO_REPLY_H */
