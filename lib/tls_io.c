/* SPDX-License-Identifier: MIT */
/*
 * tls_io.c - one TLS session as a migration channel (struct vmig_chan's
 * operations): records written and read over the non-blocking socket,
 * with the waits left to chan.c; the socket BIOs a session is given.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "chan_priv.h"
#include "internal.h"
#include "tls_sess.h"

/*
 * Records are collected above the socket and written this many bytes at a
 * time: one write per 16 KiB record costs more than the encryption on a
 * busy host (every loopback write runs the TCP stack and wakes the peer).
 */
#define WRITE_BUFFER (256u << 10)
/* TLS 1.3 AES-GCM keys are good for about 2^24.5 full records (RFC 8446
 * section 5.5); renew ours long before: every 64 GiB sent. */
#define KEY_UPDATE_BYTES (64ull << 30)

/*
 * SSL_get_error() needs an empty error queue before each I/O call.  Ours is
 * left empty after every failure (sess_fail() drains it), so on the data
 * path only peek: clearing costs a walk of the whole queue per record.
 */
static void
err_queue_empty(void)
{
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

static void
sess_fail(struct sess *s, int ssl_err)
{
    unsigned long e, last = 0;

    while ((e = ERR_get_error()) != 0) {
        last = e;
    }
    s->ssl_err = ssl_err;
    s->lib_err = last;
    s->sys_err = errno;
    if (ssl_err == SSL_ERROR_SSL || ssl_err == SSL_ERROR_SYSCALL) {
        s->broken = true;
    }
}

int
vmig__tls_sess_error(struct sess *s, int r, short *want)
{
    int err = SSL_get_error(s->ssl, r);

    switch (err) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        sess_fail(s, err);
        return 0;
    case SSL_ERROR_SYSCALL:
        sess_fail(s, err);
        return s->sys_err != 0 ? -s->sys_err : -ECONNRESET;
    default:
        /* a record that does not authenticate, a peer's alert, ... */
        sess_fail(s, err);
        return -EBADMSG;
    }
}

static ssize_t
tls_writev(struct vmig_chan *ch, const struct iovec *iov, int niov, short *want)
{
    struct sess *s = ch->impl;
    const void *p;
    size_t len, n = 0;
    int r;

    /*
     * A large piece goes straight to SSL_write; small ones (a frame
     * header and the start of its payload) are gathered into one record.
     * After -EAGAIN the caller retries with the same iovecs, so the
     * gathered bytes are the same, as OpenSSL requires.
     */
    if (iov[0].iov_len >= RECORD_MAX) {
        p = iov[0].iov_base;
        len = iov[0].iov_len;
    } else {
        len = 0;
        for (int i = 0; i < niov && len < RECORD_MAX; i++) {
            size_t take = iov[i].iov_len < RECORD_MAX - len ? iov[i].iov_len
                                                            : RECORD_MAX - len;

            memcpy(s->stage + len, iov[i].iov_base, take);
            len += take;
        }
        p = s->stage;
    }
    err_queue_empty();
    r = SSL_write_ex(s->ssl, p, len, &n);
    if (r <= 0) {
        int ret = vmig__tls_sess_error(s, r, want);

        return ret == 0 ? -EPIPE : ret;
    }
    s->since_update += n;
    if (s->since_update >= KEY_UPDATE_BYTES && !ch->info.ktls_tx) {
        s->since_update = 0;
        if (SSL_key_update(s->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
            ERR_clear_error();
            vmig_dbg(ch->ctx, "tls: key update not scheduled");
        }
    }
    return (ssize_t)n;
}

static ssize_t
tls_read(struct vmig_chan *ch, void *buf, size_t len, short *want)
{
    struct sess *s = ch->impl;
    size_t n = 0;
    int r;

    err_queue_empty();
    r = SSL_read_ex(s->ssl, buf, len, &n);
    if (r <= 0) {
        int ret = vmig__tls_sess_error(s, r, want);

        if (ret == -EBADMSG && s->established) {
            /* a record that does not authenticate: tampering, or the
             * peer's alert; the caller fails the migration */
            vmig_err(ch->ctx, "tls: %s",
                     s->lib_err != 0 ? ERR_reason_error_string(s->lib_err)
                                     : "session failed");
        }
        return ret;
    }
    return (ssize_t)n;
}

static int
tls_flush(struct vmig_chan *ch, short *want)
{
    struct sess *s = ch->impl;
    BIO *w = SSL_get_wbio(s->ssl);

    if (BIO_wpending(w) == 0) {
        return 0;
    }
    if (BIO_flush(w) == 1) {
        return 0;
    }
    if (BIO_should_retry(w)) {
        *want = POLLOUT;
        return -EAGAIN;
    }
    s->broken = true;
    return errno != 0 ? -errno : -EPIPE;
}

static bool
tls_buffered(const struct vmig_chan *ch)
{
    const struct sess *s = ch->impl;

    return SSL_has_pending(s->ssl) == 1;
}

static void
tls_close_notify(struct vmig_chan *ch)
{
    struct sess *s = ch->impl;

    if (!s->broken && SSL_is_init_finished(s->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl); /* non-blocking: best effort */
        ERR_clear_error();
    }
}

static void
tls_release(struct vmig_chan *ch)
{
    struct sess *s = ch->impl;

    if (s != NULL) {
        SSL_free(s->ssl);
        free(s);
        ch->impl = NULL;
    }
}

const struct vmig_chan_ops vmig__tls_ops = {
    .writev = tls_writev,
    .read = tls_read,
    .flush = tls_flush,
    .buffered = tls_buffered,
    .close_notify = tls_close_notify,
    .release = tls_release,
};

/*
 * Reads come from the socket; writes go through a buffer BIO on top of it
 * (WRITE_BUFFER), flushed by tls_flush() at the end of every frame.  Kernel
 * TLS needs OpenSSL to write to the socket BIO itself.
 */
int
vmig__tls_attach(SSL *ssl, int fd, bool ktls)
{
    BIO *sock, *buf;

    if (ktls) {
        return SSL_set_fd(ssl, fd) == 1 ? 0 : -ENOMEM;
    }
    sock = BIO_new_socket(fd, BIO_NOCLOSE);
    buf = BIO_new(BIO_f_buffer());
    if (sock == NULL || buf == NULL ||
        BIO_set_write_buffer_size(buf, WRITE_BUFFER) != 1 ||
        BIO_up_ref(sock) != 1) {
        BIO_free(sock);
        BIO_free(buf);
        return -ENOMEM;
    }
    BIO_push(buf, sock);         /* the chain owns one reference of sock */
    SSL_set_bio(ssl, sock, buf); /* the session owns the other, and buf */
    return 0;
}
