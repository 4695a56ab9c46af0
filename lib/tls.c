/* SPDX-License-Identifier: MIT */
/*
 * tls.c - TLS 1.3 migration channels with OpenSSL (<vmig/tls.h>).
 *
 * Credentials are loaded once into an SSL_CTX (struct vmig_tls).  Each
 * channel is one SSL session over a non-blocking socket, driven by the
 * bounded waits of chan.c.  After the TLS handshake the server sends a
 * verdict record as its first application data:
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <vmig/byteorder.h>
#include <vmig/tls.h>
#include "chan_priv.h"
#include "internal.h"
#include "timeio.h"
#include "tls_priv.h"
#include "tls_sess.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define VERDICT_HDR 14
static const uint8_t verdict_magic[8] = {'V', 'M', 'I', 'G', 'T', 'L', 'S', 1};
#define VERDICT_REASON_MAX 255
/*
 * Records are collected above the socket and written this many bytes at a
 * time: one write per 16 KiB record costs more than the encryption on a
 * busy host (every loopback write runs the TCP stack and wakes the peer).
 */
#define WRITE_BUFFER (256u << 10)
/* With read-ahead, the socket is read this much at a time. */
#define READ_BUFFER (256u << 10)
/* TLS 1.3 AES-GCM keys are good for about 2^24.5 full records (RFC 8446
 * section 5.5); renew ours long before: every 64 GiB sent. */
#define KEY_UPDATE_BYTES (64ull << 30)
/* After a refusal: drain what the peer still sends, so our close does not
 * turn into a reset that destroys the alert or verdict before it is read. */
#define LINGER_MS 500

static int ex_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
    ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct hs *
hs_of(SSL *ssl)
{
    return ex_idx < 0 ? NULL : SSL_get_ex_data(ssl, ex_idx);
}

/* ------------------------------------------------------------ session I/O */

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

/* Map a failed SSL call: -EAGAIN with the wait, or an errno. */
static int
sess_error(struct sess *s, int r, short *want)
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
        int ret = sess_error(s, r, want);

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
        int ret = sess_error(s, r, want);

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

static const struct vmig_chan_ops tls_ops = {
    .writev = tls_writev,
    .read = tls_read,
    .flush = tls_flush,
    .buffered = tls_buffered,
    .close_notify = tls_close_notify,
    .release = tls_release,
};

/* ------------------------------------------------------------ callbacks */

/* What @b holds as a string (at most @len - 1 bytes); frees @b. */
static void
bio_str(BIO *b, bool ok, char *out, size_t len)
{
    int n = ok ? BIO_read(b, out, (int)len - 1) : 0;

    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}

static void
asn1_time_str(const ASN1_TIME *tm, char *out, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());

    out[0] = '\0';
    if (b != NULL) {
        bio_str(b, tm != NULL && ASN1_TIME_print(b, tm) == 1, out, len);
    }
}

/* A name as RFC 4514 (2253) prints it: "CN=host,O=org". */
static void
name_str(const X509_NAME *nm, char *out, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());

    out[0] = '\0';
    if (b != NULL) {
        bio_str(
            b, nm != NULL && X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0,
            out, len);
    }
}

/* Keep the first verification error and the certificate it is about. */
static int
verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct hs *h = ssl != NULL ? hs_of(ssl) : NULL;
    /* name the peer's own certificate, whichever link of its chain failed */
    X509 *cert = X509_STORE_CTX_get0_cert(x);

    if (!ok && h != NULL && h->verr == 0) {
        h->verr = X509_STORE_CTX_get_error(x);
        if (cert != NULL) {
            name_str(X509_get_subject_name(cert), h->vsubject,
                     sizeof(h->vsubject));
            asn1_time_str(X509_get0_notBefore(cert), h->vnot_before,
                          sizeof(h->vnot_before));
            asn1_time_str(X509_get0_notAfter(cert), h->vnot_after,
                          sizeof(h->vnot_after));
        }
    }
    return ok;
}

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

/* An external PSK as a TLS 1.3 session: AES-128-GCM with SHA-256. */
static SSL_SESSION *
psk_session(SSL *ssl, const struct vmig__psk *k)
{
    static const unsigned char aes128gcm[] = {0x13, 0x01};
    const SSL_CIPHER *c = SSL_CIPHER_find(ssl, aes128gcm);
    SSL_SESSION *sess;

    if (c == NULL) {
        return NULL;
    }
    sess = SSL_SESSION_new();
    if (sess == NULL) {
        return NULL;
    }
    if (SSL_SESSION_set1_master_key(sess, k->key, k->keylen) != 1 ||
        SSL_SESSION_set_cipher(sess, c) != 1 ||
        SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION) != 1) {
        SSL_SESSION_free(sess);
        return NULL;
    }
    return sess;
}

static int
psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
           SSL_SESSION **sessp)
{
    struct hs *h = hs_of(ssl);
    SSL_SESSION *sess;

    *sessp = NULL;
    if (h == NULL || h->t->nkeys != 1) {
        return 0;
    }
    sess = psk_session(ssl, &h->t->keys[0]);
    if (sess == NULL) {
        return 0;
    }
    if (md != NULL &&
        md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(sess))) {
        /* after a HelloRetryRequest for another hash: offer nothing */
        SSL_SESSION_free(sess);
        return 1;
    }
    *id = (const unsigned char *)h->t->keys[0].id;
    *idlen = strlen(h->t->keys[0].id);
    *sessp = sess;
    return 1;
}

static int
psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen,
            SSL_SESSION **sessp)
{
    struct hs *h = hs_of(ssl);

    *sessp = NULL;
    if (h == NULL) {
        return 0;
    }
    h->psk_offered = true;
    snprintf(h->psk_id, sizeof(h->psk_id), "%.*s",
             (int)(idlen < VMIG__PSK_ID_MAX ? idlen : VMIG__PSK_ID_MAX),
             (const char *)id);
    for (size_t i = 0; i < sizeof(h->psk_id) && h->psk_id[i] != '\0'; i++) {
        if ((unsigned char)h->psk_id[i] < 0x20 ||
            (unsigned char)h->psk_id[i] > 0x7e) {
            h->psk_id[i] = '?'; /* the peer's bytes go to our log */
        }
    }
    for (size_t i = 0; i < h->t->nkeys; i++) {
        const struct vmig__psk *k = &h->t->keys[i];

        if (strlen(k->id) == idlen && memcmp(k->id, id, idlen) == 0) {
            *sessp = psk_session(ssl, k);
            return *sessp != NULL;
        }
    }
    h->psk_unknown = true;
    return 1; /* no session: the handshake fails, named by psk_unknown */
}

/* ------------------------------------------------------------ credentials */

static int
load_fail(struct vmig_tls *t, char *err, size_t errlen, int ret,
          const char *fmt, const char *what)
{
    unsigned long e = ERR_peek_last_error();

    snprintf(err, errlen, fmt, what,
             e != 0 ? ERR_reason_error_string(e) : strerror(-ret));
    ERR_clear_error();
    (void)t;
    return ret;
}

/* A file must exist before OpenSSL is asked to read it (clearer errors). */
static int
need_file(const char *dir, const char *name, char *path, size_t plen, char *err,
          size_t errlen)
{
    struct stat st;

    snprintf(path, plen, "%s/%s", dir, name);
    if (stat(path, &st) < 0) {
        int ret = -errno;

        snprintf(err, errlen,
                 "%s: %s (an x509 credentials directory holds ca-cert.pem, "
                 "server-cert.pem, server-key.pem, client-cert.pem and "
                 "client-key.pem; 'vmig tls-setup DIR' makes a test set)",
                 path, strerror(-ret));
        return ret;
    }
    return 0;
}

static void
warn_key_mode(struct vmig_tls *t, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
        vmig_warn(t->ctx,
                  "tls: %s is readable by other users (mode %03o): "
                  "chmod 600 it",
                  path, (unsigned int)(st.st_mode & 0777));
    }
}

static int
load_x509(struct vmig_tls *t, const char *dir, char *err, size_t errlen)
{
    const char *who = t->endpoint == VMIG_TLS_SERVER ? "server" : "client";
    char ca[600], cert[600], key[600], name[32];
    int ret;

    ret = need_file(dir, "ca-cert.pem", ca, sizeof(ca), err, errlen);
    snprintf(name, sizeof(name), "%s-cert.pem", who);
    if (ret == 0) {
        ret = need_file(dir, name, cert, sizeof(cert), err, errlen);
    }
    snprintf(name, sizeof(name), "%s-key.pem", who);
    if (ret == 0) {
        ret = need_file(dir, name, key, sizeof(key), err, errlen);
    }
    if (ret < 0) {
        return ret;
    }
    if (SSL_CTX_load_verify_locations(t->sctx, ca, NULL) != 1) {
        return load_fail(t, err, errlen, -EINVAL,
                         "%s: not a CA certificate: %s", ca);
    }
    if (SSL_CTX_use_certificate_chain_file(t->sctx, cert) != 1) {
        return load_fail(t, err, errlen, -EINVAL, "%s: not a certificate: %s",
                         cert);
    }
    if (SSL_CTX_use_PrivateKey_file(t->sctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) ==
            X509_R_KEY_VALUES_MISMATCH) {
            return load_fail(t, err, errlen, -EINVAL,
                             "%s does not belong to the certificate: %s", key);
        }
        return load_fail(t, err, errlen, -EINVAL, "%s: not a private key: %s",
                         key);
    }
    if (SSL_CTX_check_private_key(t->sctx) != 1) {
        return load_fail(t, err, errlen, -EINVAL,
                         "%s does not belong to the certificate: %s", key);
    }
    warn_key_mode(t, key);
    SSL_CTX_set_verify(t->sctx,
                       t->endpoint == VMIG_TLS_SERVER
                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                           : SSL_VERIFY_PEER,
                       verify_cb);
    return 0;
}

static int
load_psk(struct vmig_tls *t, const struct vmig_tls_params *p, char *err,
         size_t errlen)
{
    struct vmig__psk *keys;
    char perr[256];
    size_t n, len;
    char *text;
    int ret;

    ret = vmig__read_file(p->psk_file, &text, &len, err, errlen);
    if (ret < 0) {
        return ret;
    }
    ret = vmig__psk_parse(text, len, &keys, &n, perr, sizeof(perr));
    memset(text, 0, len);
    free(text);
    if (ret < 0) {
        snprintf(err, errlen, "%s: %s", p->psk_file, perr);
        return ret;
    }
    warn_key_mode(t, p->psk_file);
    if (t->endpoint == VMIG_TLS_SERVER) {
        t->keys = keys;
        t->nkeys = n;
        SSL_CTX_set_psk_find_session_callback(t->sctx, psk_find_cb);
        /* no certificate here: a client without our key cannot finish */
        SSL_CTX_set_verify(t->sctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    snprintf(t->identity, sizeof(t->identity), "%s",
             p->psk_identity != NULL ? p->psk_identity
                                     : VMIG_TLS_DEFAULT_IDENTITY);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].id, t->identity) == 0) {
            t->keys = malloc(sizeof(*t->keys));
            if (t->keys == NULL) {
                ret = -ENOMEM;
                break;
            }
            t->keys[0] = keys[i];
            t->nkeys = 1;
            break;
        }
    }
    memset(keys, 0, n * sizeof(*keys));
    free(keys);
    if (ret < 0) {
        return ret;
    }
    if (t->nkeys == 0) {
        snprintf(err, errlen,
                 "%s: no key for identity '%s' (give --tls-identity, or add "
                 "a line '%s:HEXKEY')",
                 p->psk_file, t->identity, t->identity);
        return -EINVAL;
    }
    SSL_CTX_set_psk_use_session_callback(t->sctx, psk_use_cb);
    /* a certificate instead of our key fails: nothing to trust it with */
    SSL_CTX_set_verify(t->sctx, SSL_VERIFY_PEER, verify_cb);
    return 0;
}

static int
load_authz(struct vmig_tls *t, const char *path, char *err, size_t errlen)
{
    char perr[256];
    size_t len;
    char *text;
    int ret;

    ret = vmig__read_file(path, &text, &len, err, errlen);
    if (ret < 0) {
        return ret;
    }
    ret =
        vmig__names_parse(text, len, &t->authz, &t->nauthz, perr, sizeof(perr));
    free(text);
    if (ret < 0) {
        snprintf(err, errlen, "%s: %s", path, perr);
        return ret;
    }
    if (t->nauthz == 0) {
        vmig_warn(t->ctx, "tls: %s lists nobody: every peer is refused", path);
    }
    snprintf(t->authz_file, sizeof(t->authz_file), "%s", path);
    return 0;
}

int
vmig_tls_new(vmig_ctx_t *ctx, const struct vmig_tls_params *p,
             struct vmig_tls **out, char *err, size_t errlen)
{
    static const char suites[] = "TLS_AES_128_GCM_SHA256:"
                                 "TLS_AES_256_GCM_SHA384:"
                                 "TLS_CHACHA20_POLY1305_SHA256";
    struct vmig_tls *t;
    int ret;

    if (p == NULL || out == NULL ||
        (p->x509_dir == NULL) == (p->psk_file == NULL)) {
        snprintf(err, errlen,
                 "give either an x509 credentials directory or a keys.psk "
                 "file");
        return -EINVAL;
    }
    if (p->endpoint == VMIG_TLS_CLIENT && p->x509_dir != NULL &&
        (p->hostname == NULL || p->hostname[0] == '\0')) {
        snprintf(err, errlen,
                 "x509: the host name the destination's certificate must "
                 "carry is missing (--tls-hostname)");
        return -EINVAL;
    }
    if (p->authz_file != NULL && p->endpoint != VMIG_TLS_SERVER) {
        snprintf(err, errlen, "an allow-list applies to the destination only");
        return -EINVAL;
    }
    pthread_once(&ex_once, ex_init);
    if (ex_idx < 0) {
        snprintf(err, errlen, "OpenSSL: no ex_data index");
        return -ENOMEM;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    t->ctx = ctx;
    t->endpoint = p->endpoint;
    t->psk = p->psk_file != NULL;
    snprintf(t->where, sizeof(t->where), "%s",
             t->psk ? p->psk_file : p->x509_dir);
    if (p->hostname != NULL) {
        snprintf(t->hostname, sizeof(t->hostname), "%s", p->hostname);
    }
    ERR_clear_error();
    t->sctx = SSL_CTX_new(p->endpoint == VMIG_TLS_SERVER ? TLS_server_method()
                                                         : TLS_client_method());
    if (t->sctx == NULL) {
        ret = load_fail(t, err, errlen, -ENOMEM, "%s: %s", "OpenSSL");
        goto err;
    }
    if (SSL_CTX_set_min_proto_version(t->sctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(t->sctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(t->sctx, suites) != 1 ||
        SSL_CTX_set_num_tickets(t->sctx, 0) != 1) {
        ret = load_fail(t, err, errlen, -EINVAL, "%s: %s", "OpenSSL setup");
        goto err;
    }
    SSL_CTX_set_options(t->sctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_IGNORE_UNEXPECTED_EOF |
                                     (p->ktls ? SSL_OP_ENABLE_KTLS : 0));
    SSL_CTX_set_mode(t->sctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(t->sctx, SSL_SESS_CACHE_OFF);
    t->ktls = p->ktls;
    if (!p->ktls) {
        /* fewer, larger reads of the socket (kTLS reads records itself) */
        SSL_CTX_set_read_ahead(t->sctx, 1);
        SSL_CTX_set_default_read_buffer_len(t->sctx, READ_BUFFER);
    }
    ret = t->psk ? load_psk(t, p, err, errlen)
                 : load_x509(t, p->x509_dir, err, errlen);
    if (ret == 0 && p->authz_file != NULL) {
        ret = load_authz(t, p->authz_file, err, errlen);
    }
    if (ret < 0) {
        goto err;
    }
    vmig_dbg(ctx, "tls: %s credentials loaded from %s", t->psk ? "PSK" : "x509",
             t->where);
    *out = t;
    return 0;

err:
    vmig_tls_free(t);
    return ret;
}

void
vmig_tls_free(struct vmig_tls *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->sctx);
    if (t->keys != NULL) {
        memset(t->keys, 0, t->nkeys * sizeof(*t->keys));
        free(t->keys);
    }
    vmig__names_free(t->authz, t->nauthz);
    free(t);
}

/* ------------------------------------------------------------ handshake */

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
        name_str(X509_get_subject_name(c), peer, len);
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
        ret = sess_error(s, r, &want);
        if (ret != -EAGAIN) {
            return 1; /* OpenSSL failed: named from s and hs */
        }
        ret = vmig__chan_wait(ch->fd, want, timeout_ms, cancel);
        if (ret < 0) {
            return ret;
        }
    }
}

/*
 * Reads come from the socket; writes go through a buffer BIO on top of it
 * (WRITE_BUFFER), flushed by tls_flush() at the end of every frame.  Kernel
 * TLS needs OpenSSL to write to the socket BIO itself.
 */
static int
attach(SSL *ssl, int fd, bool ktls)
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
    ret = vmig__chan_alloc(t->ctx, fd, &tls_ops, &ch);
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
    if (s->ssl == NULL || attach(s->ssl, fd, t->ktls) < 0 ||
        SSL_set_ex_data(s->ssl, ex_idx, &h) != 1) {
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
    SSL_set_ex_data(s->ssl, ex_idx, NULL);
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
        SSL_set_ex_data(s->ssl, ex_idx, NULL);
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
