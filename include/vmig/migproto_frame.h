/* SPDX-License-Identifier: MIT */
/*
 * migproto_frame.h - the framing of the host-to-host migration stream
 * (part of <vmig/migproto.h>): the preamble, the frame types and limits,
 * the feature and flag bits, and the 24-byte frame header's codec.
 */
#ifndef VMIG_MIGPROTO_FRAME_H
#define VMIG_MIGPROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
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
    VMIG_MP_ZDATA = 0x14,          /* compression: a RAM or DEV_DATA frame */
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
/* zstd compression of RAM and DEV_DATA frames on every connection of the
 * migration (QEMU's multifd-compression zstd; docs/migration-protocol.md
 * section 11).  Offered only when the source wants it, so a source
 * without compression sends the same HELLO as before the feature. */
#define VMIG_MP_FEAT_ZSTD (1ull << 5)
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

#endif /* VMIG_MIGPROTO_FRAME_H */
