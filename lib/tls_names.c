/* SPDX-License-Identifier: MIT */
/*
 * tls_names.c - a failed TLS handshake named in a sentence a person can
 * act on: a peer that is not TLS or not vmig, a certificate refused (and
 * why: expired, unknown issuer, wrong name), a PSK identity or key the
 * peer does not know, an alert, a timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "internal.h"
#include "tls_sess.h"

const char *
vmig__tls_peer_role(const struct vmig_tls *t)
{
    return t->endpoint == VMIG_TLS_SERVER ? "the source" : "the destination";
}

/* Not TLS at all?  A plaintext vmig agent opens with "VMIGMS". */
static int
foreign(const struct vmig_tls *t, const struct hs *h, char *why, size_t len)
{
    if (h->nfirst == 0 || (h->first[0] == 0x16 || h->first[0] == 0x15)) {
        return 0;
    }
    if (h->nfirst >= 6 && memcmp(h->first, "VMIGMS", 6) == 0) {
        snprintf(why, len,
                 "%s speaks plaintext: it has no TLS credentials while we "
                 "require TLS (give it --tls-creds DIR or --tls-psk FILE too)",
                 vmig__tls_peer_role(t));
    } else {
        snprintf(why, len,
                 "%s does not speak TLS (its first bytes are %02x %02x ...)",
                 vmig__tls_peer_role(t), h->first[0],
                 h->nfirst > 1 ? h->first[1] : 0);
    }
    return -EPROTO;
}

/* Our check of the peer's certificate failed. */
static int
cert_refused(const struct vmig_tls *t, const struct hs *h, char *why,
             size_t len)
{
    const char *whose = t->endpoint == VMIG_TLS_SERVER
                            ? "the source's certificate"
                            : "the destination's certificate";

    switch (h->verr) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        snprintf(why, len, "%s '%s' has expired (notAfter %s)", whose,
                 h->vsubject, h->vnot_after);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        snprintf(why, len,
                 "%s '%s' is not yet valid (notBefore %s; are both hosts' "
                 "clocks right?)",
                 whose, h->vsubject, h->vnot_before);
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(why, len,
                 "%s '%s' is not valid for host '%s' (--tls-hostname; by "
                 "default the host in --to)",
                 whose, h->vsubject, t->hostname);
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        if (t->psk) {
            snprintf(why, len,
                     "%s answered with a certificate, not with our "
                     "pre-shared key: it uses x509 credentials",
                     vmig__tls_peer_role(t));
        } else {
            snprintf(why, len,
                     "%s '%s' is not signed by our CA (%s/ca-cert.pem): it "
                     "comes from another CA",
                     whose, h->vsubject, t->where);
        }
        break;
    default:
        snprintf(why, len, "%s '%s' is refused: %s", whose, h->vsubject,
                 X509_verify_cert_error_string(h->verr));
        break;
    }
    return -EACCES;
}

/* The peer refused us with a TLS alert. */
static int
alert_refused(const struct vmig_tls *t, int alert, char *why, size_t len)
{
    const char *who = vmig__tls_peer_role(t);

    switch (alert) {
    case SSL_AD_UNKNOWN_CA:
        snprintf(why, len,
                 "%s does not trust our certificate: %s is not signed by "
                 "its CA%s",
                 who,
                 t->endpoint == VMIG_TLS_SERVER ? "server-cert.pem"
                                                : "client-cert.pem",
                 t->endpoint == VMIG_TLS_SERVER ? " (or it uses a PSK)" : "");
        break;
    case SSL_AD_CERTIFICATE_EXPIRED:
        snprintf(why, len, "%s says our certificate has expired", who);
        break;
    case SSL_AD_BAD_CERTIFICATE:
        snprintf(why, len,
                 "%s rejected our certificate (not yet valid, not for this "
                 "use, or unusable: its log says which)",
                 who);
        break;
    case SSL_AD_CERTIFICATE_REQUIRED:
        snprintf(why, len, "%s requires a client certificate", who);
        break;
    case SSL_AD_DECRYPT_ERROR:
        if (t->psk) {
            snprintf(why, len,
                     "wrong pre-shared key: %s has another key for identity "
                     "'%s'",
                     who, t->identity);
        } else {
            snprintf(why, len, "%s could not verify our signature", who);
        }
        break;
    case SSL_AD_HANDSHAKE_FAILURE:
        if (t->psk && t->endpoint == VMIG_TLS_CLIENT) {
            snprintf(why, len,
                     "%s refused the handshake: it does not know PSK "
                     "identity '%s' (not in its keys.psk), or it uses "
                     "certificates",
                     who, t->identity);
        } else {
            snprintf(why, len,
                     "%s refused the handshake: no credentials in common "
                     "(one side uses certificates, the other a PSK?)",
                     who);
        }
        break;
    case SSL_AD_ILLEGAL_PARAMETER:
        if (t->psk && t->endpoint == VMIG_TLS_CLIENT) {
            /* what OpenSSL answers when our PSK binder does not verify */
            snprintf(why, len,
                     "wrong pre-shared key: %s could not verify our key for "
                     "identity '%s'",
                     who, t->identity);
        } else {
            snprintf(why, len, "%s refused the handshake (illegal parameter)",
                     who);
        }
        break;
    case SSL_AD_PROTOCOL_VERSION:
        snprintf(why, len, "%s does not speak TLS 1.3", who);
        break;
    default:
        snprintf(why, len, "%s refused the session (TLS alert '%s')", who,
                 SSL_alert_desc_string_long(alert));
        break;
    }
    return -EACCES;
}

/*
 * Name the failure of a handshake step.  @io: the wait's error (-ETIMEDOUT,
 * -ECANCELED), or 0 when OpenSSL failed.
 */
int
vmig__tls_name_failure(const struct vmig_tls *t, const struct sess *s,
                       const struct hs *h, int io, unsigned int timeout_ms,
                       char *why, size_t len)
{
    int reason = s->lib_err != 0 ? ERR_GET_REASON(s->lib_err) : 0;
    int ret;

    if (io == -ETIMEDOUT) {
        snprintf(why, len, "no TLS handshake from %s within %u ms",
                 vmig__tls_peer_role(t), timeout_ms);
        return io;
    }
    if (io == -ECANCELED) {
        snprintf(why, len, "cancelled during the TLS handshake");
        return io;
    }
    ret = foreign(t, h, why, len);
    if (ret < 0) {
        return ret;
    }
    if (h->psk_unknown) {
        snprintf(why, len, "%s used PSK identity '%s', which is not in %s",
                 vmig__tls_peer_role(t), h->psk_id, t->where);
        return -EACCES;
    }
    if (reason == SSL_R_BINDER_DOES_NOT_VERIFY) {
        snprintf(why, len,
                 "wrong pre-shared key: %s knows identity '%s' but its key "
                 "differs from ours in %s",
                 vmig__tls_peer_role(t), h->psk_id, t->where);
        return -EACCES;
    }
    if (h->verr != 0) {
        return cert_refused(t, h, why, len);
    }
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(why, len,
                 "%s sent no certificate (it needs client-cert.pem and "
                 "client-key.pem, or it uses a PSK)",
                 vmig__tls_peer_role(t));
        return -EACCES;
    }
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
        return alert_refused(t, reason - SSL_AD_REASON_OFFSET, why, len);
    }
    if (t->psk && t->endpoint == VMIG_TLS_SERVER && !h->psk_offered &&
        s->ssl_err == SSL_ERROR_SSL) {
        snprintf(why, len,
                 "%s offered no pre-shared key (it may use certificates "
                 "while we use %s)",
                 vmig__tls_peer_role(t), t->where);
        return -EACCES;
    }
    if (s->ssl_err == SSL_ERROR_SYSCALL ||
        s->ssl_err == SSL_ERROR_ZERO_RETURN ||
        reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        snprintf(why, len,
                 "%s closed the connection during the TLS handshake%s",
                 vmig__tls_peer_role(t),
                 t->endpoint == VMIG_TLS_CLIENT
                     ? " (is it a vmig agent? its log may say why)"
                     : "");
        return -ECONNRESET;
    }
    snprintf(why, len, "TLS handshake with %s failed: %s",
             vmig__tls_peer_role(t),
             s->lib_err != 0 ? ERR_reason_error_string(s->lib_err)
                             : "unknown error");
    return -EACCES;
}
