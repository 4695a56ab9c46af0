/* SPDX-License-Identifier: MIT */
/*
 * migproto_msg.h - every migration frame but HELLO and HELLO_REPLY (part of
 * <vmig/migproto.h>): one struct per layout, one encoder and one decoder.
 */
#ifndef VMIG_MIGPROTO_MSG_H
#define VMIG_MIGPROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/export.h>
#include <vmig/migproto_frame.h>

/*
 * Every frame but HELLO and HELLO_REPLY has a fixed layout: integer fields,
 * then for some a string (u16 length, at most VMIG_MP_REASON_MAX bytes) or
 * data (the rest of the payload).  struct vmig_mp_msg holds any of them;
 * docs/migration-protocol.md gives each layout.  Data is never copied: a
 * decoded message points into the payload, and an encoded one is sent as
 * its head (vmig_mp_msg_encode()) followed by the data.
 */

/**
 * struct vmig_mp_data - bytes a message carries after its fields.
 * @ptr: the bytes; NULL when they are elsewhere (a placed frame) or none.
 * @len: how many.
 */
struct vmig_mp_data {
    const uint8_t *ptr;
    size_t len;
};

/* SETUP: what the source is about to send (informational). */
struct vmig_mp_setup {
    uint64_t ram_bytes;
    uint64_t dev_bytes; /* estimate; 0: unknown */
};

/* RAM: @npages pages at @offset of region @region; no data when ZERO. */
struct vmig_mp_ram {
    uint32_t region;
    uint32_t flags; /* VMIG_MP_RAM_* */
    uint64_t offset;
    uint32_t npages; /* 1 .. VMIG_MP_RAM_PAGES_MAX */
    uint32_t pass;   /* from 1 */
    struct vmig_mp_data data;
};

/* RAM_PASS_END: pass @pass sent @pages pages. */
struct vmig_mp_pass_end {
    uint32_t pass;
    uint32_t flags; /* VMIG_MP_PASS_* */
    uint64_t pages;
};

/* DEV_CONFIG: the VMM-owned config of device @dev (a source index). */
struct vmig_mp_dev_config {
    uint32_t dev;
    struct vmig_mp_data data;
};

/* DEV_DATA: device @dev's stream bytes from @offset (at least one). */
struct vmig_mp_dev_data {
    uint32_t dev;
    uint32_t flags; /* VMIG_MP_DEV_* */
    uint64_t offset;
    struct vmig_mp_data data;
};

/* DEV_END: device @dev's stream was @total bytes with XXH3-64 @digest. */
struct vmig_mp_dev_end {
    uint32_t dev;
    uint64_t total;
    uint64_t digest;
};

/* VCPU: the VMM's opaque vCPU state. */
struct vmig_mp_vcpu {
    uint32_t index;
    struct vmig_mp_data data;
};

/* SWITCHOVER: everything was sent; the source paused at @pause_ns. */
struct vmig_mp_switchover {
    uint64_t ram_bytes;
    uint32_t ndevices;
    uint32_t flags;    /* VMIG_MP_SW_* */
    uint64_t pause_ns; /* CLOCK_REALTIME */
};

/* ABORT (source) and SETUP_ACK (destination; @err 0: ready). */
struct vmig_mp_status {
    uint32_t err; /* a positive errno; ABORT: 1..4095, SETUP_ACK: 0..4095 */
    char reason[VMIG_MP_REASON_MAX + 1];
};

/* SWITCHOVER_REQ and SWITCHOVER_ACK: request @id, from 1. */
struct vmig_mp_swreq {
    uint32_t id;
};

/* DEV_RESTART: device @dev starts its precopy stream again. */
struct vmig_mp_dev_restart {
    uint32_t dev;
};

/* CHANNELS (@count connections wanted, 2..VMIG_MP_MAX_CHANNELS) and
 * CHANNELS_ACK (@count granted, 1..; the migration id the extra channels
 * join with: 128 random bits, @id_hi then @id_lo on the wire). */
struct vmig_mp_channels {
    uint32_t count;
    uint64_t id_hi;
    uint64_t id_lo;
};

/* CHANNEL_HELLO (migration id, this channel's @index 1..@count-1, the
 * @count granted), CHANNEL_READY (@index) and CHANNEL_END (@index, the
 * data frames sent on it before, @frames). */
struct vmig_mp_channel {
    uint64_t id_hi;
    uint64_t id_lo;
    uint32_t index;
    uint32_t count;
    uint64_t frames;
};

/* ZDATA: a RAM or DEV_DATA frame (@type) whose whole payload, @raw_len
 * bytes, is the zstd frame in @data (its content size declared). */
struct vmig_mp_zdata {
    uint32_t type;
    uint32_t raw_len;
    struct vmig_mp_data data;
};

/* ACK: frame @seq of type @type was handled; @value depends on the type. */
struct vmig_mp_ack {
    uint32_t type;
    uint32_t seq;
    uint64_t value;
};

/* ERROR: the destination failed (@err 1..4095) over device @dev. */
struct vmig_mp_error {
    uint32_t err;
    uint32_t dev; /* a source index, or VMIG_MP_NO_DEVICE */
    char reason[VMIG_MP_REASON_MAX + 1];
};

/* CONFIRM: the VM runs on the destination. */
struct vmig_mp_confirm {
    uint64_t resume_ns;     /* CLOCK_REALTIME when the vCPUs resumed */
    uint64_t switchover_ns; /* SWITCHOVER received -> vCPUs resumed */
    uint64_t ram_bytes;     /* received */
    uint64_t dev_bytes;     /* received */
};

/* READY: the destination loaded everything; it waits for GO. */
struct vmig_mp_ready {
    uint64_t id;      /* the migration's id (from 1), chosen here */
    uint64_t load_ns; /* SWITCHOVER received -> ready */
};

/* GO, DONE, RECOVER: about migration @id (from 1). */
struct vmig_mp_mig_id {
    uint64_t id;
};

/* RECOVER_REPLY: what the destination knows of migration @id. */
struct vmig_mp_recover_reply {
    uint64_t id;
    uint32_t state; /* enum vmig_mp_recover_state */
    char reason[VMIG_MP_REASON_MAX + 1];
};

/**
 * struct vmig_mp_msg - one frame's payload, decoded.
 * @type: the frame type, which says which member is valid.
 */
struct vmig_mp_msg {
    unsigned int type;
    union {
        struct vmig_mp_setup setup;
        struct vmig_mp_ram ram;
        struct vmig_mp_pass_end pass_end;
        struct vmig_mp_dev_config dev_config;
        struct vmig_mp_dev_data dev_data;
        struct vmig_mp_dev_end dev_end;
        struct vmig_mp_vcpu vcpu;
        struct vmig_mp_switchover switchover;
        struct vmig_mp_status abort;
        struct vmig_mp_swreq switchover_req;
        struct vmig_mp_dev_restart dev_restart;
        struct vmig_mp_status setup_ack;
        struct vmig_mp_ack ack;
        struct vmig_mp_error error;
        struct vmig_mp_confirm confirm;
        struct vmig_mp_swreq switchover_ack;
        struct vmig_mp_ready ready;
        struct vmig_mp_mig_id go;
        struct vmig_mp_mig_id done;
        struct vmig_mp_mig_id recover;
        struct vmig_mp_recover_reply recover_reply;
        struct vmig_mp_channels channels; /* CHANNELS, CHANNELS_ACK */
        struct vmig_mp_channel channel;   /* CHANNEL_HELLO, _READY, _END */
        struct vmig_mp_zdata zdata;
    };
};

/**
 * vmig_mp_type_known() - Whether this version knows frame type @type.
 * @type: a frame type.
 *
 * Return: true for every enum vmig_mp_type value.
 */
VMIG_EXPORT bool vmig_mp_type_known(unsigned int type);

/**
 * vmig_mp_msg_encode() - Serialize @m without its data.
 * @m:   message; @m->type says which member is used.
 * @buf: receives the payload's head: the fields, and the string if the
 *       frame has one; the data, if the frame carries data, follows it on
 *       the wire (vmig_mp_send_msg() sends both).
 * @cap: size of @buf; VMIG_MP_MSG_HEAD_MAX is always enough.
 *
 * The values are checked as vmig_mp_msg_decode() checks them: what this
 * encodes, a peer decodes.
 *
 * Return: the head's length; -EINVAL (HELLO, HELLO_REPLY or an unknown
 * type; a value out of its range; data that does not match the fields);
 * -E2BIG (@cap too small).
 */
VMIG_EXPORT VMIG_MUST_CHECK ssize_t
vmig_mp_msg_encode(const struct vmig_mp_msg *m, void *buf, size_t cap);

/**
 * vmig_mp_msg_decode() - Parse and check a payload of type @type.
 * @type: frame type.
 * @buf:  the payload.
 * @len:  its length.
 * @out:  receives the message, pointing into @buf for its data; untouched
 *        on failure.
 *
 * Strict: a payload shorter or longer than its layout, an unknown flag
 * bit, a reserved field that is not 0, a count or errno out of its range,
 * or data that does not match the fields (a RAM frame's page count) is
 * refused.  Reasons have control characters replaced by '?'.  Whether the
 * values make sense for this migration (a region or device that exists,
 * an offset in order) is the receiver's to check.
 *
 * Return: 0; -EBADMSG (malformed); -EINVAL (HELLO, HELLO_REPLY, unknown
 * type).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_msg_decode(unsigned int type,
                                                   const void *buf, size_t len,
                                                   struct vmig_mp_msg *out);

/**
 * vmig_mp_msg_decode_head() - vmig_mp_msg_decode() when only the head of
 * a payload is at hand (the rest is still on the socket, or was placed
 * elsewhere): the fields are checked against the whole length.
 * @type:     frame type.
 * @head:     the first @head_len payload bytes.
 * @head_len: at least the fields' length, at most @len.
 * @len:      the whole payload's length.
 * @out:      receives the message; its data pointer is NULL unless
 *            @head_len is @len.  Untouched on failure.
 *
 * Return: as vmig_mp_msg_decode(); -EBADMSG too when the head does not
 * hold every field or the type has no data.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_msg_decode_head(unsigned int type, const void *head, size_t head_len,
                        size_t len, struct vmig_mp_msg *out);

#endif /* VMIG_MIGPROTO_MSG_H */
