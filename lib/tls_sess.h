/* SPDX-License-Identifier: MIT */
/*
 * tls_sess.h - what the TLS files share: the credentials object
 * (tls_creds.c), what one handshake learnt (tls.c, named in a sentence by
 * tls_names.c), one session (tls_io.c).
 */
#ifndef VMIG_TLS_SESS_H
#define VMIG_TLS_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <vmig/tls.h>
#include "tls_priv.h"

/* Plaintext bytes in one TLS record: smaller pieces are gathered up to it. */
#define RECORD_MAX 16384

struct vmig_tls {
    vmig_ctx_t *ctx;
    SSL_CTX *sctx;
    enum vmig_tls_endpoint endpoint;
    bool psk;
    bool ktls; /* kernel TLS asked: OpenSSL must write to the socket BIO */
    char where[512];    /* the credentials' directory or keys.psk */
    char hostname[256]; /* client x509 */
    char identity[VMIG__PSK_ID_MAX + 1];
    struct vmig__psk *keys; /* client: its own key; server: all */
    size_t nkeys;
    char authz_file[512];
    char **authz; /* server: allowed peer names, or NULL */
    size_t nauthz;
};

/* What one handshake learnt, for naming a failure. */
struct hs {
    struct vmig_tls *t;
    int verr;           /* first certificate verification error */
    char vsubject[256]; /* the certificate it concerns */
    char vnot_before[40];
    char vnot_after[40];
    bool psk_unknown; /* server: the client's identity is unknown */
    bool psk_offered; /* server: the client offered an identity */
    char psk_id[VMIG__PSK_ID_MAX + 1]; /* server: the identity offered */
    uint8_t first[8];                  /* the peer's first bytes */
    size_t nfirst;
};

/* One session (struct vmig_chan's impl). */
struct sess {
    SSL *ssl;
    bool broken;           /* a fatal error: no close_notify */
    int ssl_err;           /* SSL_get_error() of the last failure */
    unsigned long lib_err; /* its last OpenSSL error code, or 0 */
    int sys_err;           /* errno of a SSL_ERROR_SYSCALL */
    bool established;      /* past the verdict: failures are the stream's */
    uint64_t since_update;
    uint8_t stage[RECORD_MAX];
};

/* A session's channel operations and its BIOs (tls_io.c). */
extern const struct vmig_chan_ops vmig__tls_ops;

/* Attach @fd to @ssl: reads from the socket, writes through a buffer
 * flushed per frame (kernel TLS: the socket itself).  0 or -ENOMEM. */
int vmig__tls_attach(SSL *ssl, int fd, bool ktls);

/* Map a failed SSL call: -EAGAIN with the wait in *@want, 0 at the peer's
 * close_notify, or a negative errno (the details kept in @s). */
int vmig__tls_sess_error(struct sess *s, int r, short *want);

/* The handshake findings attached to @ssl (tls_creds.c), or NULL. */
struct hs *vmig__tls_hs(SSL *ssl);
/* Attach @h (NULL: detach).  0, or -ENOMEM. */
int vmig__tls_hs_set(SSL *ssl, struct hs *h);

/* A certificate name as RFC 4514 prints it: "CN=host,O=org". */
void vmig__tls_name_str(const X509_NAME *nm, char *out, size_t len);

/* "the source" or "the destination": the peer of @t's endpoint. */
const char *vmig__tls_peer_role(const struct vmig_tls *t);

/*
 * A failed handshake step named for a person in @why (who refused whom,
 * and what to do about it).  @io: the wait's error (-ETIMEDOUT,
 * -ECANCELED), or 0 when OpenSSL failed.  Return the errno to report.
 * tls_names.c.
 */
int vmig__tls_name_failure(const struct vmig_tls *t, const struct sess *s,
                           const struct hs *h, int io, unsigned int timeout_ms,
                           char *why, size_t len);

#endif /* VMIG_TLS_SESS_H */
