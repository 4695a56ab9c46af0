/* SPDX-License-Identifier: MIT */
/*
 * tls.c - TLS 1.3 migration channels with OpenSSL (<vmig/tls.h>): the
 * handshake and its verdict, and the kernel TLS probe.
 *
 * Credentials are loaded once into an SSL_CTX (struct vmig_tls,
 * tls_creds.c).  Each channel is one SSL session over a non-blocking
 * socket (tls_io.c), driven by the bounded waits of chan.c.  After the TLS
 * handshake the server sends a verdict record as its first application
 * data:
 *
 *   "VMIGTLS" 0x01 | u32 status (0 accepted, else a positive errno) |
 *   u16 reason length | reason (at most 255 bytes)       (little-endian)
 *
 * In TLS 1.3 a client finishes its handshake before the server has
 * checked the client's certificate, so only the verdict tells the client
 * it was accepted; it also carries refusals TLS has no alert for (a peer
 * name missing from the allow-list).  No migration byte moves before it.
 *
 * Refusals are named from what OpenSSL reports: our own certificate
 * checks (a verify callback keeps the first error and the certificate it
 * concerns), the PSK lookup, the peer's alerts, and the first bytes the
 * peer sent (a plaintext vmig agent starts with its "VMIGMS" preamble).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <vmig/byteorder.h>
#include <vmig/tls.h>
#include "chan_priv.h"
#include "internal.h"
#include "timeio.h"
#include "tls_sess.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define VERDICT_HDR 14
static const uint8_t verdict_magic[8] = {'V', 'M', 'I', 'G', 'T', 'L', 'S', 1};
#define VERDICT_REASON_MAX 255
/* After a refusal: drain what the peer still sends, so our close does not
 * turn into a reset that destroys the alert or verdict before it is read. */
#define LINGER_MS 500

/* ------------------------------------------------------------ handshake */

/* Record the peer's first bytes as they are read (see foreign() in
 * tls_names.c). */
static long
peek_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
        int ret, size_t *processed)
{
    struct hs *h = (struct hs *)BIO_get_callback_arg(b);

    (void)len;
    (void)argi;
    (void)argl;
    if (h != NULL && oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 &&
        processed != NULL && argp != NULL) {
        size_t take = *processed;

        if (take > sizeof(h->first) - h->nfirst) {
            take = sizeof(h->first) - h->nfirst;
        }
        memcpy(h->first + h->nfirst, argp, take);
        h->nfirst += take;
    }
    return ret;
}

/* A plaintext peer gets a TLS alert it can recognise (protocol_version). */
static void
alert_plaintext_peer(int fd)
{
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70};

    (void)send(fd, alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void
linger_fd(int fd)
{
    uint8_t junk[4096];

    shutdown(fd, SHUT_WR);
    vmig__fd_drain(fd, LINGER_MS, junk, sizeof(junk));
}

static int
send_verdict(struct vmig_chan *ch, int status, const char *reason,
             unsigned int timeout_ms, const int *cancel)
{
    uint8_t buf[VERDICT_HDR + VERDICT_REASON_MAX];
    size_t n = strnlen(reason, VERDICT_REASON_MAX);
    struct iovec iov;

    memcpy(buf, verdict_magic, sizeof(verdict_magic));
    vmig_put_le32(buf + 8, (uint32_t)status);
    vmig_put_le16(buf + 12, (uint16_t)n);
    memcpy(buf + VERDICT_HDR, reason, n);
    iov.iov_base = buf;
    iov.iov_len = VERDICT_HDR + n;
    return vmig__chan_write_all(ch, &iov, 1, timeout_ms, cancel, NULL);
}

/* Client: wait for the server's verdict. */
static int
recv_verdict(struct vmig_chan *ch, unsigned int timeout_ms, const int *cancel,
             char *why, size_t len)
{
    uint8_t hdr[VERDICT_HDR];
    char reason[VERDICT_REASON_MAX + 1];
    uint32_t status;
    size_t n;
    int ret;

    ret = vmig__chan_read_all(ch, hdr, sizeof(hdr), timeout_ms, cancel, NULL);
    if (ret < 0) {
        return ret;
    }
    if (memcmp(hdr, verdict_magic, sizeof(verdict_magic)) != 0) {
        snprintf(why, len,
                 "the destination is not a vmig agent (no TLS verdict)");
        return -EPROTO;
    }
    status = vmig_get_le32(hdr + 8);
    n = vmig_get_le16(hdr + 12);
    if (n > VERDICT_REASON_MAX) {
        snprintf(why, len, "the destination's TLS verdict is malformed");
        return -EPROTO;
    }
    ret = vmig__chan_read_all(ch, reason, n, timeout_ms, cancel, NULL);
    if (ret < 0) {
        return ret;
    }
    reason[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)reason[i] < 0x20 ||
            (unsigned char)reason[i] > 0x7e) {
            reason[i] = '?';
        }
    }
    if (status != 0) {
        snprintf(why, len, "the destination refused us: %s",
                 n > 0 ? reason
                       : strerror(status < 4096 ? (int)status : EACCES));
        return -EACCES;
    }
    return 0;
}

static bool
authz_allows(const struct vmig_tls *t, const char *peer, const char *oneline)
{
    for (size_t i = 0; i < t->nauthz; i++) {
        if (strcmp(t->authz[i], peer) == 0 ||
            (oneline[0] != '\0' && strcmp(t->authz[i], oneline) == 0)) {
            return true;
        }
    }
    return false;
}

/* After the handshake: who is the peer (certificate subject or identity). */
static void
peer_name(const struct vmig_tls *t, SSL *ssl, const struct hs *h, char *peer,
          size_t len, char *oneline, size_t olen)
{
    X509 *c;

    peer[0] = '\0';
    oneline[0] = '\0';
    if (t->psk) {
        snprintf(peer, len, "%s",
                 t->endpoint == VMIG_TLS_SERVER ? h->psk_id : t->identity);
        return;
    }
    c = SSL_get1_peer_certificate(ssl);
    if (c != NULL) {
        vmig__tls_name_str(X509_get_subject_name(c), peer, len);
        if (X509_NAME_oneline(X509_get_subject_name(c), oneline, (int)olen) ==
            NULL) {
            oneline[0] = '\0';
        }
        X509_free(c);
    }
}

static int
drive(struct vmig_chan *ch, struct sess *s, unsigned int timeout_ms,
      const int *cancel)
{
    for (;;) {
        short want = POLLIN;
        int r, ret;

        ERR_clear_error();
        r = SSL_do_handshake(s->ssl);
        if (r == 1) {
            return 0;
        }
        ret = vmig__tls_sess_error(s, r, &want);
        if (ret != -EAGAIN) {
            return 1; /* OpenSSL failed: named from s and hs */
        }
        ret = vmig__chan_wait(ch, want, timeout_ms, cancel);
        if (ret < 0) {
            return ret;
        }
    }
}

static int
set_expected_host(SSL *ssl, const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (inet_pton(AF_INET, host, &a4) == 1 ||
        inet_pton(AF_INET6, host, &a6) == 1) {
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                   ? 0
                   : -EINVAL;
    }
    if (SSL_set1_host(ssl, host) != 1 ||
        SSL_set_tlsext_host_name(ssl, host) != 1) {
        return -EINVAL;
    }
    return 0;
}

int
vmig_tls_handshake(struct vmig_tls *t, int fd, unsigned int timeout_ms,
                   const int *cancel, struct vmig_chan **out, char *why,
                   size_t whylen)
{
    struct hs h = {.t = t};
    struct vmig_chan *ch = NULL;
    struct sess *s;
    char peer[256], oneline[256];
    BIO *rbio;
    int fl, ret;

    if (whylen > 0) {
        why[0] = '\0';
    }
    ret = vmig__chan_alloc(t->ctx, fd, &vmig__tls_ops, &ch);
    if (ret < 0) {
        snprintf(why, whylen, "%s", strerror(-ret));
        return ret;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        free(ch);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    ch->impl = s;
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK) == 0) {
        ch->fl_saved = fl;
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    ERR_clear_error();
    s->ssl = SSL_new(t->sctx);
    if (s->ssl == NULL || vmig__tls_attach(s->ssl, fd, t->ktls) < 0 ||
        vmig__tls_hs_set(s->ssl, &h) != 0) {
        snprintf(why, whylen, "OpenSSL: cannot make a session");
        ret = -ENOMEM;
        goto fail_quiet;
    }
    rbio = SSL_get_rbio(s->ssl);
    BIO_set_callback_arg(rbio, (char *)&h);
    BIO_set_callback_ex(rbio, peek_cb);
    if (t->endpoint == VMIG_TLS_CLIENT) {
        SSL_set_connect_state(s->ssl);
        if (!t->psk && set_expected_host(s->ssl, t->hostname) < 0) {
            snprintf(why, whylen, "bad host name '%s'", t->hostname);
            ret = -EINVAL;
            goto fail_quiet;
        }
    } else {
        SSL_set_accept_state(s->ssl);
    }
    ret = drive(ch, s, timeout_ms, cancel);
    BIO_set_callback_ex(rbio, NULL);
    BIO_set_callback_arg(rbio, NULL);
    if (ret != 0) {
        ret = vmig__tls_name_failure(t, s, &h, ret < 0 ? ret : 0, timeout_ms,
                                     why, whylen);
        goto fail;
    }
    if (t->psk && SSL_session_reused(s->ssl) != 1) {
        snprintf(why, whylen, "%s did not use the pre-shared key",
                 vmig__tls_peer_role(t));
        ret = -EACCES;
        goto fail;
    }
    peer_name(t, s->ssl, &h, peer, sizeof(peer), oneline, sizeof(oneline));
    if (t->endpoint == VMIG_TLS_SERVER) {
        if (t->authz != NULL && !authz_allows(t, peer, oneline)) {
            char told[VERDICT_REASON_MAX + 1];

            /* the peer learns why, not where our files are */
            snprintf(told, sizeof(told),
                     "'%s' is not in the destination's allow-list", peer);
            snprintf(why, whylen, "'%s' is not in the allow-list %s", peer,
                     t->authz_file);
            (void)send_verdict(ch, EACCES, told, 1000, NULL);
            ret = -EACCES;
            goto fail;
        }
        ret = send_verdict(ch, 0, "", timeout_ms, cancel);
    } else {
        ret = recv_verdict(ch, timeout_ms, cancel, why, whylen);
        if (ret < 0 && why[0] == '\0') {
            if (ret == -EBADMSG) {
                ret = vmig__tls_name_failure(t, s, &h, 0, timeout_ms, why,
                                             whylen);
            } else {
                ret = vmig__tls_name_failure(t, s, &h, ret, timeout_ms, why,
                                             whylen);
            }
        }
    }
    if (ret < 0) {
        if (why[0] == '\0') {
            snprintf(why, whylen, "TLS verdict: %s", strerror(-ret));
        }
        goto fail;
    }
    (void)vmig__tls_hs_set(s->ssl, NULL);
    s->established = true;
    ch->info.tls = true;
    ch->info.psk = t->psk;
    snprintf(ch->info.version, sizeof(ch->info.version), "%s",
             SSL_get_version(s->ssl));
    snprintf(ch->info.cipher, sizeof(ch->info.cipher), "%s",
             SSL_CIPHER_get_name(SSL_get_current_cipher(s->ssl)));
    snprintf(ch->info.peer, sizeof(ch->info.peer), "%s", peer);
    ch->info.ktls_tx = BIO_get_ktls_send(SSL_get_wbio(s->ssl)) == 1;
    ch->info.ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(s->ssl)) == 1;
    vmig_info(t->ctx, "tls: %s authenticated as '%s' (%s, %s%s%s)",
              vmig__tls_peer_role(t), peer, ch->info.version, ch->info.cipher,
              ch->info.ktls_tx ? ", kTLS send" : "",
              ch->info.ktls_rx ? ", kTLS receive" : "");
    *out = ch;
    return 0;

fail:
    /* the caller reports it (why); the details stay at debug level */
    vmig_dbg(t->ctx, "tls: refused: %s", why);
    if (t->endpoint == VMIG_TLS_SERVER) {
        if (ret == -EPROTO) {
            alert_plaintext_peer(fd);
        }
        linger_fd(fd);
    }
fail_quiet:
    if (s->ssl != NULL) {
        (void)vmig__tls_hs_set(s->ssl, NULL);
    }
    ERR_clear_error();
    vmig_chan_free(ch);
    return ret;
}

/* ------------------------------------------------------------ kTLS probe */

int
vmig_tls_ktls_available(char *why, size_t whylen)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    const char *step = "socket";
    int l, c = -1, ok = 0;

    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
        goto out;
    }
    step = "connect";
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
        goto out;
    }
    step = NULL;
    if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0) {
        ok = 1;
    }
out:
    if (!ok && why != NULL && step != NULL) {
        snprintf(why, whylen, "cannot probe on loopback (%s): %s", step,
                 strerror(errno));
    } else if (!ok && why != NULL) {
        snprintf(why, whylen,
                 "the kernel has no 'tls' TCP upper-layer protocol "
                 "(setsockopt TCP_ULP: %s; needs CONFIG_TLS, modprobe tls)",
                 strerror(errno));
    }
    if (c >= 0) {
        close(c);
    }
    if (l >= 0) {
        close(l);
    }
    return ok;
}
