/* SPDX-License-Identifier: MIT */
/*
 * tls_creds.c - TLS credentials (struct vmig_tls, an SSL_CTX): QEMU's
 * x509 directory or a keys.psk, the allow-list, every file checked at
 * load; the OpenSSL callbacks that use them during a handshake
 * (certificate verification noted for naming a failure, the PSK offered
 * by the client and looked up by the server).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <vmig/tls.h>
#include "internal.h"
#include "tls_priv.h"
#include "tls_sess.h"

/* With read-ahead, the socket is read this much at a time. */
#define READ_BUFFER (256u << 10)

static int ex_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
    ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

struct hs *
vmig__tls_hs(SSL *ssl)
{
    return ex_idx < 0 ? NULL : SSL_get_ex_data(ssl, ex_idx);
}

int
vmig__tls_hs_set(SSL *ssl, struct hs *h)
{
    return ex_idx >= 0 && SSL_set_ex_data(ssl, ex_idx, h) == 1 ? 0 : -ENOMEM;
}

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

void
vmig__tls_name_str(const X509_NAME *nm, char *out, size_t len)
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
    struct hs *h = ssl != NULL ? vmig__tls_hs(ssl) : NULL;
    /* name the peer's own certificate, whichever link of its chain failed */
    X509 *cert = X509_STORE_CTX_get0_cert(x);

    if (!ok && h != NULL && h->verr == 0) {
        h->verr = X509_STORE_CTX_get_error(x);
        if (cert != NULL) {
            vmig__tls_name_str(X509_get_subject_name(cert), h->vsubject,
                               sizeof(h->vsubject));
            asn1_time_str(X509_get0_notBefore(cert), h->vnot_before,
                          sizeof(h->vnot_before));
            asn1_time_str(X509_get0_notAfter(cert), h->vnot_after,
                          sizeof(h->vnot_after));
        }
    }
    return ok;
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
    struct hs *h = vmig__tls_hs(ssl);
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
    struct hs *h = vmig__tls_hs(ssl);

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
