/* SPDX-License-Identifier: MIT */
/*
 * migproto_conn.h - a migration stream connection (part of
 * <vmig/migproto.h>): blocking frame I/O over a channel (<vmig/chan.h>: a
 * plaintext socket or a TLS session) with bounded waits, a cancel flag and
 * byte counters.
 */
#ifndef VMIG_MIGPROTO_CONN_H
#define VMIG_MIGPROTO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/chan.h>
#include <vmig/ctx.h>
#include <vmig/export.h>
#include <vmig/migproto_frame.h>
#include <vmig/migproto_msg.h>

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

/* Compression methods of vmig_mp_conn_set_compress(). */
enum vmig_mp_compress {
    VMIG_MP_COMPRESS_NONE = 0,
    VMIG_MP_COMPRESS_ZSTD = 1,
};
/* Frames whose payload is shorter than this are never compressed. */
#define VMIG_MP_ZDATA_MIN 512u

/**
 * vmig_mp_conn_set_compress() - Compress data frames both ways, as the
 * two sides negotiated (VMIG_MP_FEAT_ZSTD).
 * @c:      connection.
 * @method: VMIG_MP_COMPRESS_NONE (the default: a ZDATA frame received is
 *          then -EPROTO) or VMIG_MP_COMPRESS_ZSTD.
 * @level:  zstd level for what this side sends (1..19); 0: 1.
 *
 * With zstd, vmig_mp_send() sends a RAM or DEV_DATA frame of at least
 * VMIG_MP_ZDATA_MIN bytes as a ZDATA frame when that is smaller (as is
 * otherwise), and vmig_mp_recv() / vmig_mp_recv_placed() hand back a
 * ZDATA frame received as the frame it carries (never placed).  A ZDATA
 * frame that does not decompress to exactly its declared size, the size
 * its zstd frame declares, at most the carried type's limit, or lacks
 * zstd's content checksum, is -EBADMSG: nothing larger is ever written.
 *
 * Return: 0; -EINVAL (unknown method or level); -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mp_conn_set_compress(struct vmig_mp_conn *c, unsigned int method,
                          int level);

/**
 * vmig_mp_conn_zbytes() - What compression did on this connection's sends.
 * @c:      connection.
 * @raw:    receives the payload bytes of the frames it could compress
 *          (RAM and DEV_DATA of at least VMIG_MP_ZDATA_MIN), or NULL.
 * @packed: receives the payload bytes those frames took on the wire
 *          (compressed or not), or NULL.
 */
VMIG_EXPORT void vmig_mp_conn_zbytes(const struct vmig_mp_conn *c,
                                     uint64_t *raw, uint64_t *packed);

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

#endif /* VMIG_MIGPROTO_CONN_H */
