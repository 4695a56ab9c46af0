/* SPDX-License-Identifier: MIT */
/*
 * migproto.h - the host-to-host migration stream between two agents.
 *
 * docs/migration-protocol.md is the normative description; this header is
 * its C binding.  Each direction of a connection starts with an 8-byte
 * preamble whose last byte is the framing version, then carries frames:
 * a 24-byte little-endian header {magic, type, flags, length, seq, xxh3}
 * and a payload of at most the per-type limit.  The main direction
 * (source -> destination) carries HELLO, SETUP, RAM, device data, vCPU
 * state and SWITCHOVER; the return direction (destination -> source, on
 * the same TCP connection) carries the HELLO reply, acks, errors and the
 * destination's CONFIRM.
 *
 * The codec functions are pure (no I/O); struct vmig_mp_conn adds blocking
 * I/O over a channel (<vmig/chan.h>: a plaintext socket or a TLS session)
 * with bounded waits, a cancel flag and byte counters.
 */
#ifndef VMIG_MIGPROTO_H
#define VMIG_MIGPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/chan.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

/* Preamble: "VMIGMS" 0x00 then the framing version: a peer that is not
 * vmig, or frames this side cannot parse, is refused before any frame. */
#define VMIG_MP_PREAMBLE_LEN 8
#define VMIG_MP_FRAMING_VERSION 1
/* Protocol versions this implementation speaks (HELLO negotiates). */
#define VMIG_MP_PROTO_MIN 1u
#define VMIG_MP_PROTO_MAX 1u

#define VMIG_MP_HDR_LEN 24
#define VMIG_MP_FRAME_MAGIC 0x72666d76u /* "vmfr" little-endian */
/* Hard cap on any payload; per-type limits are lower. */
#define VMIG_MP_PAYLOAD_MAX (8u << 20)
/* Payload bytes of data carried per RAM or device-data frame. */
#define VMIG_MP_CHUNK_MAX (4u << 20)
#define VMIG_MP_NAME_MAX 63
#define VMIG_MP_REASON_MAX 255
#define VMIG_MP_DESC_MAX (64u << 10)
#define VMIG_MP_CONFIG_MAX (64u << 10)
#define VMIG_MP_VCPU_MAX (1u << 20)
#define VMIG_MP_MAX_REGIONS 16
#define VMIG_MP_MAX_DEVICES 32
#define VMIG_MP_PAGE_SIZE 4096u
/* Connections of one migration at most (the main one included). */
#define VMIG_MP_MAX_CHANNELS 16

/* Frame flags. */
#define VMIG_MP_F_OPTIONAL (1u << 0) /* a receiver may skip an unknown type */
#define VMIG_MP_F__KNOWN VMIG_MP_F_OPTIONAL

/* Frame types: main direction 0x01..0x3f, return path 0x81..0xbf. */
#define VMIG_MP_MAIN_LAST 0x3f
enum vmig_mp_type {
    VMIG_MP_HELLO = 0x01,
    VMIG_MP_SETUP = 0x02,
    VMIG_MP_RAM = 0x03,
    VMIG_MP_RAM_PASS_END = 0x04,
    VMIG_MP_DEV_CONFIG = 0x05,
    VMIG_MP_DEV_DATA = 0x06,
    VMIG_MP_DEV_END = 0x07,
    VMIG_MP_VCPU = 0x08,
    VMIG_MP_SWITCHOVER = 0x09,
    VMIG_MP_ABORT = 0x0a,
    VMIG_MP_SWITCHOVER_REQ = 0x0b, /* precopy: u32 request id, u32 0 */
    VMIG_MP_DEV_RESTART = 0x0c,    /* precopy: u32 device, u32 0 */
    VMIG_MP_GO = 0x0d,             /* commit: u64 migration id, u64 0 */
    VMIG_MP_DONE = 0x0e,           /* commit: u64 migration id, u64 0 */
    VMIG_MP_RECOVER = 0x0f,        /* commit: u64 migration id, u64 0 */
    VMIG_MP_CHANNELS = 0x10,       /* channels: u32 count wanted, u32 0 */
    VMIG_MP_CHANNEL_HELLO = 0x11,  /* first frame of an extra channel */
    VMIG_MP_CHANNEL_SYNC = 0x12,   /* main: the extra channels may start */
    VMIG_MP_CHANNEL_END = 0x13,    /* last frame of an extra channel */
    VMIG_MP_HELLO_REPLY = 0x81,
    VMIG_MP_SETUP_ACK = 0x82,
    VMIG_MP_ACK = 0x83,
    VMIG_MP_ERROR = 0x84,
    VMIG_MP_CONFIRM = 0x85,
    VMIG_MP_SWITCHOVER_ACK = 0x86, /* precopy: u32 request id, u32 0 */
    VMIG_MP_READY = 0x87,          /* commit: u64 migration id, u64 ns */
    VMIG_MP_RECOVER_REPLY = 0x88,  /* commit: id, state, reason */
    VMIG_MP_CHANNELS_ACK = 0x89,   /* channels: count, migration id */
    VMIG_MP_CHANNEL_READY = 0x8a,  /* an extra channel joined */
};

/* HELLO features (negotiated: the reply carries the accepted subset). */
#define VMIG_MP_FEAT_ZERO_PAGES (1ull << 0)
#define VMIG_MP_FEAT_PRECOPY (1ull << 1)
#define VMIG_MP_FEAT_SWITCHOVER_ACK (1ull << 2)
/* The commit protocol: after SWITCHOVER the destination loads everything
 * and answers READY; it resumes only on the source's GO.  A source that
 * sent GO and lost the connection asks again with RECOVER on a new one. */
#define VMIG_MP_FEAT_COMMIT (1ull << 3)
/* Parallel channels (docs/migration-protocol.md section 10).  Offered
 * only when the source wants more than one connection, so a source with
 * one channel sends the same HELLO as before the feature existed. */
#define VMIG_MP_FEAT_CHANNELS (1ull << 4)
/* Features this build takes part in. */
#define VMIG_MP_FEAT__SUPPORTED                                                \
    (VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_PRECOPY |                          \
     VMIG_MP_FEAT_SWITCHOVER_ACK | VMIG_MP_FEAT_COMMIT)

/* HELLO flags.  CHECK_ONLY: answer the compatibility check, then end. */
#define VMIG_MP_HELLO_CHECK_ONLY (1u << 0)

/* RAM frame flags. */
#define VMIG_MP_RAM_ZERO (1u << 0) /* the pages are all zero; no data */
/* DEV_DATA frame flags. */
#define VMIG_MP_DEV_PRECOPY (1u << 0) /* data read in PRE_COPY */
/* RAM_PASS_END flags. */
#define VMIG_MP_PASS_LAST (1u << 0)
/* SWITCHOVER flags. */
#define VMIG_MP_SW_VCPU (1u << 0) /* a VCPU frame was sent */
/* RECOVER_REPLY states: what the destination knows of a migration. */
enum vmig_mp_recover_state {
    VMIG_MP_REC_UNKNOWN = 0,   /* no such migration here */
    VMIG_MP_REC_READY = 1,     /* loaded, paused, still waiting for GO */
    VMIG_MP_REC_RUNNING = 2,   /* it got GO: the VM runs here */
    VMIG_MP_REC_DISCARDED = 3, /* it never got GO and discarded the VM */
};
#define VMIG_MP_REC__LAST VMIG_MP_REC_DISCARDED
/* The device of an ERROR that concerns no device. */
#define VMIG_MP_NO_DEVICE 0xffffffffu
/* Payload bytes before the data of the frames that carry data. */
#define VMIG_MP_RAM_HDR_LEN 24
#define VMIG_MP_DEV_CONFIG_HDR_LEN 8
#define VMIG_MP_DEV_DATA_HDR_LEN 16
#define VMIG_MP_VCPU_HDR_LEN 8
/* RAM pages in one RAM frame at most. */
#define VMIG_MP_RAM_PAGES_MAX (VMIG_MP_CHUNK_MAX / VMIG_MP_PAGE_SIZE)
/* Largest encoding of a message without its data (vmig_mp_msg_encode()). */
#define VMIG_MP_MSG_HEAD_MAX (12 + 2 + VMIG_MP_REASON_MAX)

/**
 * struct vmig_mp_hdr - a decoded frame header.
 * @type:  frame type (enum vmig_mp_type or an unknown optional type).
 * @flags: VMIG_MP_F_*.
 * @len:   payload length.
 * @seq:   frame number in this direction, from 0.
 * @csum:  XXH3-64 of the header's first 16 bytes followed by the payload.
 */
struct vmig_mp_hdr {
    uint16_t type;
    uint16_t flags;
    uint32_t len;
    uint32_t seq;
    uint64_t csum;
};

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
 * vmig_mp_preamble() - The 8 preamble bytes of this implementation.
 * @out: receives them.
 */
VMIG_EXPORT void vmig_mp_preamble(uint8_t out[VMIG_MP_PREAMBLE_LEN]);

/**
 * vmig_mp_preamble_check() - Validate a peer's preamble.
 * @in: the 8 bytes received.
 *
 * Return: 0; -EPROTO when the magic is wrong (not a vmig peer);
 * -EOPNOTSUPP when the framing version is not ours.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_preamble_check(const uint8_t in[VMIG_MP_PREAMBLE_LEN]);

/**
 * vmig_mp_type_name() - "HELLO", "RAM", ... for logs.
 * @type: a frame type.
 *
 * Return: a static string; "unknown" for types this version does not know.
 */
VMIG_EXPORT const char *vmig_mp_type_name(unsigned int type);

/**
 * vmig_mp_type_limit() - The largest payload a frame of @type may carry.
 * @type: a frame type.
 *
 * Return: the limit in bytes; VMIG_MP_PAYLOAD_MAX for unknown types.
 */
VMIG_EXPORT uint32_t vmig_mp_type_limit(unsigned int type);

/**
 * vmig_mp_hdr_encode() - Build a frame header for @payload.
 * @type:    frame type.
 * @flags:   VMIG_MP_F_*.
 * @seq:     the frame's sequence number.
 * @payload: the payload, as @niov pieces (the checksum covers them all).
 * @iov_len: lengths of the pieces.
 * @niov:    number of pieces (0 for an empty payload).
 * @out:     receives the 24 header bytes.
 *
 * Return: 0, or -E2BIG when the payload exceeds the type's limit.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_hdr_encode(unsigned int type, unsigned int flags, uint32_t seq,
                   const void *const *payload, const size_t *iov_len,
                   unsigned int niov, uint8_t out[VMIG_MP_HDR_LEN]);

/**
 * vmig_mp_hdr_decode() - Decode and bound-check a frame header.
 * @in:  24 bytes.
 * @out: receives the header; untouched on failure.
 *
 * Checks the magic, the flags and the length against the type's limit.
 * The checksum is checked by vmig_mp_verify() once the payload is in.
 *
 * Return: 0; -EBADMSG (bad magic or unknown flag bits); -E2BIG (length
 * over the limit).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_hdr_decode(const uint8_t *in,
                                                   struct vmig_mp_hdr *out);

/**
 * vmig_mp_verify() - Check a frame's checksum.
 * @raw:     the 24 raw header bytes as received.
 * @payload: the payload (@len bytes, from the decoded header).
 * @len:     payload length.
 *
 * Return: 0, or -EBADMSG.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_verify(const uint8_t *raw,
                                               const void *payload, size_t len);

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

/* --------------------------------------------------- the other frames */

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

/* ------------------------------------------------------------ connection */

struct vmig_mp_conn;

/**
 * struct vmig_mp_frame - a frame received by vmig_mp_recv().
 * @hdr:     the header.
 * @payload: @hdr.len bytes, owned by the connection; valid until the next
 *           vmig_mp_recv() on it.  For a placed frame (see
 *           vmig_mp_recv_placed()) only the first @head_len bytes.
 * @placed:  the rest of the payload was written where the place callback
 *           said, not into @payload.
 * @head_len: bytes in @payload when @placed.
 */
struct vmig_mp_frame {
    struct vmig_mp_hdr hdr;
    const uint8_t *payload;
    bool placed;
    size_t head_len;
};

/**
 * vmig_mp_place_fn - where the tail of a frame's payload should land.
 * @opaque:   as given to vmig_mp_recv_placed().
 * @hdr:      the frame's header (magic, flags and length checked).
 * @head:     the first head bytes of the payload (not yet checksummed).
 * @tail_len: bytes that remain.
 *
 * Return: a buffer of at least @tail_len bytes, or NULL to receive the
 * frame into the connection's buffer as usual.
 */
typedef void *vmig_mp_place_fn(void *opaque, const struct vmig_mp_hdr *hdr,
                               const uint8_t *head, size_t tail_len);

/**
 * vmig_mp_conn_new() - Wrap a connected stream socket, in plaintext.
 * @ctx: logging context (borrowed).
 * @fd:  the socket; borrowed, never closed by the connection.
 * @out: receives the connection; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_conn_new(vmig_ctx_t *ctx, int fd,
                                                 struct vmig_mp_conn **out);

/**
 * vmig_mp_conn_new_chan() - Run the stream over a channel (plaintext or an
 * established TLS session).
 * @ctx: logging context (borrowed).
 * @ch:  the channel; borrowed: it must outlive the connection.
 * @out: receives the connection; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_conn_new_chan(vmig_ctx_t *ctx, struct vmig_chan *ch,
                      struct vmig_mp_conn **out);

/**
 * vmig_mp_conn_free() - Free a connection (the fd stays open).  NULL is
 * accepted.
 * @c: connection.
 */
VMIG_EXPORT void vmig_mp_conn_free(struct vmig_mp_conn *c);

/**
 * vmig_mp_conn_set_cancel() - Give the connection a flag that aborts any
 * wait with -ECANCELED once it becomes non-zero.
 * @c:      connection.
 * @cancel: flag (read with an atomic load), or NULL for none.
 */
VMIG_EXPORT void vmig_mp_conn_set_cancel(struct vmig_mp_conn *c,
                                         const int *cancel);

/**
 * vmig_mp_conn_set_timeout() - Bound every wait for the peer.
 * @c:  connection.
 * @ms: milliseconds of silence after which a read or write fails with
 *      -ETIMEDOUT; 0 waits forever.
 */
VMIG_EXPORT void vmig_mp_conn_set_timeout(struct vmig_mp_conn *c,
                                          unsigned int ms);

/**
 * vmig_mp_handshake() - Send our preamble and check the peer's.
 * @c: connection.
 *
 * A peer answering with TLS records on a plaintext connection is named as
 * such in the log (one side has TLS credentials, the other not).
 *
 * Return: 0; -EPROTONOSUPPORT when the peer speaks TLS (a TLS handshake
 * or alert came instead of a preamble); an error from
 * vmig_mp_preamble_check() or the socket.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_handshake(struct vmig_mp_conn *c);

/**
 * vmig_mp_send() - Send one frame, payload given as pieces.
 * @c:       connection.
 * @type:    frame type.
 * @flags:   VMIG_MP_F_*.
 * @payload: pieces.
 * @iov_len: their lengths.
 * @niov:    number of pieces (at most 4).
 *
 * Return: 0; -E2BIG; -EPIPE/-ECONNRESET when the peer is gone;
 * -ETIMEDOUT; -ECANCELED.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_send(struct vmig_mp_conn *c, unsigned int type, unsigned int flags,
             const void *const *payload, const size_t *iov_len,
             unsigned int niov);

/**
 * vmig_mp_send1() - vmig_mp_send() with a single piece.
 * @c:     connection.
 * @type:  frame type.
 * @flags: VMIG_MP_F_*.
 * @buf:   payload, or NULL when @len is 0.
 * @len:   payload length.
 *
 * Return: as vmig_mp_send().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_send1(struct vmig_mp_conn *c,
                                              unsigned int type,
                                              unsigned int flags,
                                              const void *buf, size_t len);

/**
 * vmig_mp_recv() - Receive and verify one frame.
 * @c:   connection.
 * @out: receives the frame.
 *
 * Checks magic, flags, length limit, sequence number and checksum before
 * returning; an unknown frame type is returned as is (the caller skips it
 * when it is optional and refuses it otherwise).
 *
 * Return: 0; -ECONNRESET when the peer closed or reset the connection;
 * -EBADMSG (corrupt, wrong sequence); -E2BIG; -ETIMEDOUT; -ECANCELED.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_recv(struct vmig_mp_conn *c,
                                             struct vmig_mp_frame *out);

/**
 * vmig_mp_recv_placed() - vmig_mp_recv() that can receive the bulk of a
 * frame straight into its final place (guest RAM), saving a copy.
 * @c:        connection.
 * @head_len: payload bytes read into the connection's buffer first and
 *            shown to @place; frames not longer than this are received
 *            normally.
 * @place:    decides where the rest goes.
 * @opaque:   for @place.
 * @out:      receives the frame.
 *
 * The checksum and sequence checks are the same as vmig_mp_recv()'s but
 * happen after the tail was written: on -EBADMSG the placed bytes are
 * garbage and the caller must discard them (a destination discards all of
 * guest RAM when a migration fails).
 *
 * Return: as vmig_mp_recv().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_recv_placed(struct vmig_mp_conn *c,
                                                    size_t head_len,
                                                    vmig_mp_place_fn *place,
                                                    void *opaque,
                                                    struct vmig_mp_frame *out);

/**
 * vmig_mp_pending() - Whether the peer has sent something not yet read
 * (a sender polls its return path between frames this way).
 * @c: connection.
 *
 * Return: 1 when bytes (or an EOF/error) are waiting, 0 when not.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_pending(struct vmig_mp_conn *c);

/**
 * vmig_mp_conn_bytes() - Bytes sent and received so far (headers included).
 * @c:    connection.
 * @sent: receives bytes sent, or NULL.
 * @recv: receives bytes received, or NULL.
 */
VMIG_EXPORT void vmig_mp_conn_bytes(const struct vmig_mp_conn *c,
                                    uint64_t *sent, uint64_t *recv);

/**
 * vmig_mp_send_msg() - Encode @m and send it as one frame (flags 0), its
 * data as a second piece, uncopied.
 * @c: connection.
 * @m: message.
 *
 * Return: as vmig_mp_msg_encode() and vmig_mp_send().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mp_send_msg(struct vmig_mp_conn *c,
                                                 const struct vmig_mp_msg *m);

/**
 * vmig_mp_frame_decode() - vmig_mp_msg_decode() of a received frame,
 * placed (vmig_mp_recv_placed()) or not.
 * @f:   the frame.
 * @out: receives the message; untouched on failure.
 *
 * Return: as vmig_mp_msg_decode().
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_frame_decode(const struct vmig_mp_frame *f, struct vmig_mp_msg *out);

#endif /* VMIG_MIGPROTO_H */
