/* SPDX-License-Identifier: MIT */
/*
 * migproto_hello.h - HELLO and HELLO_REPLY, the migration stream's
 * negotiation (part of <vmig/migproto.h>): what the source offers (protocol
 * versions, features, guest RAM regions, devices and their compatibility
 * descriptors) and the destination's verdicts.
 */
#ifndef VMIG_MIGPROTO_HELLO_H
#define VMIG_MIGPROTO_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/export.h>
#include <vmig/migproto_frame.h>

/**
 * struct vmig_pci_ids - a device's PCI identity, for devices that carry no
 * vmig compatibility descriptor (a server built on another library is
 * identified by the ids in its config space).
 * @valid: the other fields are meaningful.
 */
struct vmig_pci_ids {
    bool valid;
    uint16_t vendor;
    uint16_t device;
    uint16_t subsys_vendor;
    uint16_t subsys_device;
    uint8_t revision;
};

/**
 * struct vmig_mp_region - one guest RAM region as HELLO describes it.
 */
struct vmig_mp_region {
    char name[VMIG_MP_NAME_MAX + 1];
    uint64_t size;
};

/**
 * struct vmig_mp_dev - one device as HELLO describes it.
 * @desc: the device's compatibility descriptor (opaque here), owned by the
 *        enclosing struct vmig_mp_hello; NULL when @desc_len is 0.
 */
struct vmig_mp_dev {
    char name[VMIG_MP_NAME_MAX + 1];
    uint64_t mig_flags;
    struct vmig_pci_ids ids;
    uint32_t desc_len;
    uint8_t *desc;
};

/**
 * struct vmig_mp_hello - the HELLO payload.
 */
struct vmig_mp_hello {
    uint32_t version_min;
    uint32_t version_max;
    uint64_t features;
    uint32_t flags;
    uint32_t page_size;
    uint32_t nregions;
    struct vmig_mp_region region[VMIG_MP_MAX_REGIONS];
    uint32_t ndevices;
    struct vmig_mp_dev dev[VMIG_MP_MAX_DEVICES];
};

/**
 * struct vmig_mp_verdict - the destination's answer for one device.
 */
struct vmig_mp_verdict {
    bool compatible;
    char reason[VMIG_MP_REASON_MAX + 1];
};

/**
 * struct vmig_mp_hello_reply - the HELLO_REPLY payload.
 * @version:  the chosen protocol version; 0 when none is common.
 * @features: the accepted subset of the offered features.
 * @status:   0 when the migration may go on, else a positive errno.
 * @reason:   why, when @status is not 0.
 */
struct vmig_mp_hello_reply {
    uint32_t version;
    uint64_t features;
    uint32_t status;
    char reason[VMIG_MP_REASON_MAX + 1];
    uint32_t ndevices;
    struct vmig_mp_verdict dev[VMIG_MP_MAX_DEVICES];
};

/**
 * vmig_mp_hello_encode() - Serialize @h.
 * @h:   hello; counts must be within the VMIG_MP_MAX_* limits.
 * @buf: output buffer.
 * @cap: its size.
 *
 * Return: the payload length, or -EINVAL (bad counts or names), -E2BIG
 * (@cap too small).
 */
VMIG_EXPORT VMIG_MUST_CHECK ssize_t
vmig_mp_hello_encode(const struct vmig_mp_hello *h, void *buf, size_t cap);

/**
 * vmig_mp_hello_decode() - Parse a HELLO payload.
 * @buf: payload.
 * @len: its length.
 * @out: receives a hello; free it with vmig_mp_hello_free().  Untouched on
 *       failure.
 *
 * Every count, name and length is bounded; trailing bytes are an error.
 *
 * Return: 0, -EBADMSG (truncated, trailing bytes, bad name), -E2BIG (a
 * count or length over its limit), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_hello_decode(const void *buf, size_t len, struct vmig_mp_hello **out);

/**
 * vmig_mp_hello_free() - Free a decoded hello.  NULL is accepted.
 * @h: hello from vmig_mp_hello_decode().
 */
VMIG_EXPORT void vmig_mp_hello_free(struct vmig_mp_hello *h);

/**
 * vmig_mp_reply_encode() - Serialize a HELLO_REPLY.
 * @r:   reply.
 * @buf: output.
 * @cap: its size.
 *
 * Return: the payload length, -EINVAL or -E2BIG.
 */
VMIG_EXPORT VMIG_MUST_CHECK ssize_t vmig_mp_reply_encode(
    const struct vmig_mp_hello_reply *r, void *buf, size_t cap);

/**
 * vmig_mp_reply_decode() - Parse a HELLO_REPLY payload.
 * @buf: payload.
 * @len: its length.
 * @out: receives the reply; untouched on failure.
 *
 * Return: 0, -EBADMSG, -E2BIG.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_reply_decode(const void *buf, size_t len,
                     struct vmig_mp_hello_reply *out);

#endif /* VMIG_MIGPROTO_HELLO_H */
