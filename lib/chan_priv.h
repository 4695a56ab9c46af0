/* SPDX-License-Identifier: MIT */
/*
 * chan_priv.h - the channel object behind <vmig/chan.h>, shared by
 * chan.c (the object, plaintext I/O, bounded waits) and tls_io.c (TLS I/O).
 *
 * I/O is non-blocking behind an ops table: an op moves what it can and
 * returns -EAGAIN with the poll event it waits for (a TLS write may need
 * to read first, and the reverse); the vmig__chan_*_all() helpers wait
 * for that event in slices, honouring a timeout and a cancel flag.
 */
#ifndef VMIG_CHAN_PRIV_H
#define VMIG_CHAN_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <vmig/chan.h>

struct vmig_chan_ops {
    /* Send from @iov; return bytes taken (> 0), or -EAGAIN with *@want
     * set to POLLIN/POLLOUT, or a negative errno (-EPIPE: peer gone). */
    ssize_t (*writev)(struct vmig_chan *ch, const struct iovec *iov, int niov,
                      short *want);
    /* Receive into @buf; bytes (> 0), 0 at the peer's end of stream,
     * -EAGAIN with *@want, or a negative errno. */
    ssize_t (*read)(struct vmig_chan *ch, void *buf, size_t len, short *want);
    /* Push out what writev() buffered above the socket: 0 when all is
     * out, -EAGAIN with *@want, or a negative errno.  Called at the end
     * of every vmig__chan_write_all(), so a frame never waits in a
     * buffer while we wait for the peer. */
    int (*flush)(struct vmig_chan *ch, short *want);
    /* Bytes already received and buffered above the socket. */
    bool (*buffered)(const struct vmig_chan *ch);
    /* Say goodbye politely before a half-close (TLS close_notify). */
    void (*close_notify)(struct vmig_chan *ch);
    /* Release what the transport holds (not the fd, not @ch). */
    void (*release)(struct vmig_chan *ch);
};

struct vmig_chan {
    const struct vmig_chan_ops *ops;
    vmig_ctx_t *ctx;
    int fd;
    int fl_saved; /* file status flags to restore, or -1 */
    void *impl;   /* the transport's own state (tls_io.c: its session) */
    struct vmig_chan_info info;
    uint64_t *heard; /* the peer's clock shared with the migration's other
                      * connections, or NULL (vmig__chan_share_heard()) */
};

/* Allocate a channel over @fd with @ops (the caller fills impl, info). */
int vmig__chan_alloc(vmig_ctx_t *ctx, int fd, const struct vmig_chan_ops *ops,
                     struct vmig_chan **out);

/*
 * The connections of one migration share one "last heard from the peer"
 * time.  The peer timeout is about the peer, not about one connection:
 * with parallel channels the main connection can rightly sit silent
 * while an extra channel carries a device's state (and the reverse), and
 * that must not fail a healthy migration.  So:
 *
 * - every connection of a migration points @heard at the same word, a
 *   CLOCK_MONOTONIC time in ms owned by the migration (struct eng_mc),
 *   updated atomically (the maximum wins) whenever any of them hears
 *   from the peer: bytes read, bytes the peer acknowledged, or readiness
 *   after a wait;
 * - a wait ends with -ETIMEDOUT only when neither its own connection nor
 *   the shared time heard from the peer for @timeout_ms: when its own
 *   wait expires it counts again from the shared time if that is later.
 *   A stall of every connection times out exactly as one connection
 *   alone does.
 *
 * @heard NULL (the default): the connection counts on its own.  The
 * sharing ends with the stream over the connection (vmig_mp_conn_free()),
 * before the word's owner frees it.
 */
void vmig__chan_share_heard(struct vmig_chan *ch, uint64_t *heard);

/*
 * Wait until @ch's socket is ready for @events, in 50 ms slices so a
 * cancel is seen promptly; fail after @timeout_ms (0: never) without
 * hearing from the peer (see vmig__chan_share_heard()).
 * Return: 0, -ETIMEDOUT, -ECANCELED, -EPIPE, or -errno from poll.
 */
int vmig__chan_wait(struct vmig_chan *ch, short events, unsigned int timeout_ms,
                    const int *cancel);

/* Whether @cancel (may be NULL) is raised. */
bool vmig__chan_cancelled(const int *cancel);

/*
 * Write all of @iov (modified: advanced past what was sent) / read
 * exactly @len bytes.  @moved (may be NULL) is increased by every byte
 * moved, also on failure.  Return: 0; -ECONNRESET when the peer ended
 * the stream first (read); -ETIMEDOUT; -ECANCELED; a negative errno.
 */
int vmig__chan_write_all(struct vmig_chan *ch, struct iovec *iov, int niov,
                         unsigned int timeout_ms, const int *cancel,
                         uint64_t *moved);
int vmig__chan_read_all(struct vmig_chan *ch, void *buf, size_t len,
                        unsigned int timeout_ms, const int *cancel,
                        uint64_t *moved);

/*
 * Read up to @len bytes, stopping early only at the end of the stream.
 * Return: the bytes read (< @len: the peer ended the stream), or a
 * negative errno as vmig__chan_read_all().
 */
ssize_t vmig__chan_read_upto(struct vmig_chan *ch, void *buf, size_t len,
                             unsigned int timeout_ms, const int *cancel);

/* Something was received and not yet read (or the peer ended/failed). */
bool vmig__chan_pending(struct vmig_chan *ch);

/* TLS close_notify where it applies, then shutdown(SHUT_WR). */
void vmig__chan_shutdown_wr(struct vmig_chan *ch);

#endif /* VMIG_CHAN_PRIV_H */
