/* SPDX-License-Identifier: MIT */
/*
 * chan.c - migration channels: the object, plaintext socket I/O, and the
 * bounded waits every transport shares (see chan_priv.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "chan_priv.h"
#include "internal.h"
#include "timeio.h"

#ifndef SIOCOUTQ
#define SIOCOUTQ 0x5411 /* TIOCOUTQ: bytes not yet acknowledged */
#endif

/* ------------------------------------------------------------ plaintext */

static ssize_t
plain_writev(struct vmig_chan *ch, const struct iovec *iov, int niov,
             short *want)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov,
                        .msg_iovlen = (size_t)niov};
    ssize_t n = sendmsg(ch->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (n >= 0) {
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        *want = POLLOUT;
        return -EAGAIN;
    }
    return -errno;
}

static ssize_t
plain_read(struct vmig_chan *ch, void *buf, size_t len, short *want)
{
    ssize_t n = recv(ch->fd, buf, len, MSG_DONTWAIT);

    if (n >= 0) {
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        *want = POLLIN;
        return -EAGAIN;
    }
    return -errno;
}

static int
plain_flush(struct vmig_chan *ch, short *want)
{
    (void)ch;
    (void)want;
    return 0;
}

static bool
plain_buffered(const struct vmig_chan *ch)
{
    (void)ch;
    return false;
}

static void
plain_noop(struct vmig_chan *ch)
{
    (void)ch;
}

static const struct vmig_chan_ops plain_ops = {
    .writev = plain_writev,
    .read = plain_read,
    .flush = plain_flush,
    .buffered = plain_buffered,
    .close_notify = plain_noop,
    .release = plain_noop,
};

/* ------------------------------------------------------------ object */

int
vmig__chan_alloc(vmig_ctx_t *ctx, int fd, const struct vmig_chan_ops *ops,
                 struct vmig_chan **out)
{
    struct vmig_chan *ch;

    if (fd < 0 || out == NULL) {
        return -EINVAL;
    }
    ch = calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return -ENOMEM;
    }
    ch->ops = ops;
    ch->ctx = ctx;
    ch->fd = fd;
    ch->fl_saved = -1;
    *out = ch;
    return 0;
}

int
vmig_chan_plain(vmig_ctx_t *ctx, int fd, struct vmig_chan **out)
{
    return vmig__chan_alloc(ctx, fd, &plain_ops, out);
}

void
vmig_chan_free(struct vmig_chan *ch)
{
    if (ch == NULL) {
        return;
    }
    ch->ops->release(ch);
    if (ch->fl_saved >= 0) {
        (void)fcntl(ch->fd, F_SETFL, ch->fl_saved);
    }
    free(ch);
}

int
vmig_chan_fd(const struct vmig_chan *ch)
{
    return ch->fd;
}

void
vmig_chan_info(const struct vmig_chan *ch, struct vmig_chan_info *out)
{
    *out = ch->info;
}

/* ------------------------------------------------------------ waits */

bool
vmig__chan_cancelled(const int *cancel)
{
    return cancel != NULL && __atomic_load_n(cancel, __ATOMIC_ACQUIRE) != 0;
}

/* Bytes we sent that the peer has not acknowledged yet; -1 when the
 * socket cannot say (not TCP). */
static int
chan_unacked(int fd)
{
    int q;

    return ioctl(fd, SIOCOUTQ, &q) == 0 ? q : -1;
}

void
vmig__chan_share_heard(struct vmig_chan *ch, uint64_t *heard)
{
    ch->heard = heard;
}

/* @ch heard from its peer now: the shared time moves forward (never
 * back: another thread may have stored a later time meanwhile). */
static void
chan_heard(struct vmig_chan *ch, uint64_t now)
{
    uint64_t was;

    if (ch->heard == NULL) {
        return;
    }
    was = __atomic_load_n(ch->heard, __ATOMIC_RELAXED);
    while (was < now &&
           !__atomic_compare_exchange_n(ch->heard, &was, now, true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/*
 * Whether the peer was silent for @timeout_ms (0: never), counting from
 * *@since (this connection's last sign of it) or from the shared time of
 * the migration's other connections when that is later; *@since moves to
 * it then.
 */
static bool
chan_silent(const struct vmig_chan *ch, uint64_t *since,
            unsigned int timeout_ms)
{
    uint64_t now = vmig__mono_ms();

    if (timeout_ms == 0 || now - *since < timeout_ms) {
        return false;
    }
    if (ch->heard != NULL) {
        uint64_t h = __atomic_load_n(ch->heard, __ATOMIC_RELAXED);

        if (h > *since) {
            *since = h;
        }
    }
    return now - *since >= timeout_ms;
}

/*
 * Wait for @events on @ch's socket.  The peer counts as silent only when
 * nothing moved for @timeout_ms: while we wait to read (a CONFIRM, say)
 * the peer may still be taking in what we sent before over a slow link,
 * and every byte it acknowledges starts the wait afresh - as does the
 * peer heard on another connection of the migration (chan_priv.h).  A
 * wait to write ends with -EPIPE when the peer has shut down its own
 * sending side and takes nothing more in: it gave up (a destination does
 * so after its ERROR), and whatever it said before is there to be read.
 */
int
vmig__chan_wait(struct vmig_chan *ch, short events, unsigned int timeout_ms,
                const int *cancel)
{
    int fd = ch->fd;
    uint64_t since = vmig__mono_ms();
    int unacked = chan_unacked(fd);

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int n, q;

        if (events == POLLOUT) {
            pfd.events |= POLLRDHUP;
        }
        if (vmig__chan_cancelled(cancel)) {
            return -ECANCELED;
        }
        n = poll(&pfd, 1, 50);
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
        if (n > 0 && (pfd.revents & (POLLRDHUP | POLLOUT)) == POLLRDHUP) {
            return -EPIPE;
        }
        if (n > 0) {
            /* we wait only after the transport would block: readiness
             * now is the peer's doing (it sent, or took bytes in) */
            chan_heard(ch, vmig__mono_ms());
            return 0;
        }
        q = chan_unacked(fd);
        if (q >= 0 && q < unacked) {
            since = vmig__mono_ms(); /* the peer took bytes in */
            chan_heard(ch, since);
        }
        unacked = q;
        if (chan_silent(ch, &since, timeout_ms)) {
            return -ETIMEDOUT;
        }
    }
}

/*
 * Try first, wait only when the transport says it would block: a socket
 * that keeps up costs no poll per write, and a TLS session may hold
 * decrypted bytes that poll cannot see.
 */
int
vmig__chan_write_all(struct vmig_chan *ch, struct iovec *iov, int niov,
                     unsigned int timeout_ms, const int *cancel,
                     uint64_t *moved)
{
    if (vmig__chan_cancelled(cancel)) {
        return -ECANCELED;
    }
    while (niov > 0) {
        short want = POLLOUT;
        ssize_t n;

        if (iov->iov_len == 0) {
            iov++;
            niov--;
            continue;
        }
        n = ch->ops->writev(ch, iov, niov, &want);
        if (n == -EAGAIN) {
            int ret = vmig__chan_wait(ch, want, timeout_ms, cancel);

            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (n < 0) {
            return (int)n;
        }
        if (moved != NULL) {
            *moved += (uint64_t)n;
        }
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    for (;;) {
        short want = POLLOUT;
        int ret = ch->ops->flush(ch, &want);

        if (ret != -EAGAIN) {
            return ret;
        }
        ret = vmig__chan_wait(ch, want, timeout_ms, cancel);
        if (ret < 0) {
            return ret;
        }
    }
}

/* Read until @len bytes or the end of the stream; *@got says how many. */
static int
read_loop(struct vmig_chan *ch, void *buf, size_t len, unsigned int timeout_ms,
          const int *cancel, size_t *got)
{
    *got = 0;
    if (vmig__chan_cancelled(cancel)) {
        return -ECANCELED;
    }
    while (*got < len) {
        short want = POLLIN;
        ssize_t n = ch->ops->read(ch, (uint8_t *)buf + *got, len - *got, &want);

        if (n == -EAGAIN) {
            int ret = vmig__chan_wait(ch, want, timeout_ms, cancel);

            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (n <= 0) {
            return (int)n;
        }
        chan_heard(ch, vmig__mono_ms());
        *got += (size_t)n;
    }
    return 0;
}

ssize_t
vmig__chan_read_upto(struct vmig_chan *ch, void *buf, size_t len,
                     unsigned int timeout_ms, const int *cancel)
{
    size_t got;
    int ret = read_loop(ch, buf, len, timeout_ms, cancel, &got);

    return ret < 0 ? ret : (ssize_t)got;
}

int
vmig__chan_read_all(struct vmig_chan *ch, void *buf, size_t len,
                    unsigned int timeout_ms, const int *cancel, uint64_t *moved)
{
    size_t got;
    int ret = read_loop(ch, buf, len, timeout_ms, cancel, &got);

    if (moved != NULL) {
        *moved += got;
    }
    if (ret == 0 && got < len) {
        ret = -ECONNRESET;
    }
    return ret;
}

bool
vmig__chan_pending(struct vmig_chan *ch)
{
    struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};

    if (ch->ops->buffered(ch)) {
        return true;
    }
    return poll(&pfd, 1, 0) > 0;
}

void
vmig__chan_shutdown_wr(struct vmig_chan *ch)
{
    ch->ops->close_notify(ch);
    shutdown(ch->fd, SHUT_WR);
}
