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

/* Preamble: "VMIGMS" 0x00 then the framing version (seed 000 style). */
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

/* Frame flags. */
#define VMIG_MP_F_OPTIONAL (1u << 0) /* a receiver may skip an unknown type */
#define VMIG_MP_F__KNOWN VMIG_MP_F_OPTIONAL

/* Frame types: main direction 0x01..0x3f, return path 0x81..0xbf. */
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
    VMIG_MP_HELLO_REPLY = 0x81,
    VMIG_MP_SETUP_ACK = 0x82,
    VMIG_MP_ACK = 0x83,
    VMIG_MP_ERROR = 0x84,
    VMIG_MP_CONFIRM = 0x85,
    VMIG_MP_SWITCHOVER_ACK = 0x86, /* precopy: u32 request id, u32 0 */
};

/* HELLO features (negotiated: the reply carries the accepted subset). */
#define VMIG_MP_FEAT_ZERO_PAGES (1ull << 0)
#define VMIG_MP_FEAT_PRECOPY (1ull << 1)
#define VMIG_MP_FEAT_SWITCHOVER_ACK (1ull << 2)
/* Features this build takes part in. */
#define VMIG_MP_FEAT__SUPPORTED                                                \
    (VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_PRECOPY |                          \
     VMIG_MP_FEAT_SWITCHOVER_ACK)

/* HELLO flags.  CHECK_ONLY: answer the compatibility check, then end. */
#define VMIG_MP_HELLO_CHECK_ONLY (1u << 0)

/* RAM frame flags. */
#define VMIG_MP_RAM_ZERO (1u << 0) /* the pages are all zero; no data */
/* DEV_DATA frame flags. */
#define VMIG_MP_DEV_PRECOPY (1u << 0) /* data read in PRE_COPY */
/* RAM_PASS_END flags. */
#define VMIG_MP_PASS_LAST (1u << 0)

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
 * vmig descriptor (DESIGN.md, issue 6: "identified by config-space ids").
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
 * Return: 0, or an error from vmig_mp_preamble_check() (-EPROTO also for
 * a TLS peer) or the socket.
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

#endif /* VMIG_MIGPROTO_H */
