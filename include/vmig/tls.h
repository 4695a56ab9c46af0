/* SPDX-License-Identifier: MIT */
/*
 * tls.h - TLS 1.3 for migration channels (OpenSSL), with the credentials
 * QEMU users already have.
 *
 * Credentials (struct vmig_tls_params):
 *  - x509: a directory in QEMU's tls-creds-x509 layout: ca-cert.pem,
 *    server-cert.pem + server-key.pem (the destination), client-cert.pem +
 *    client-key.pem (the source).  Both sides are authenticated: the
 *    server requires a client certificate signed by the CA, and the client
 *    checks the server's certificate against the CA and the expected host
 *    name (subjectAltName DNS or IP entries, else the CN).
 *  - PSK: a keys.psk file of "identity:hexkey" lines (QEMU's
 *    tls-creds-psk format).  The client uses the key of its identity
 *    (default "qemu", as QEMU's); the server looks the client's identity
 *    up.  Both prove knowledge of the key in the handshake.
 *  - an optional allow-list on the server: a file of peer names, one a
 *    line (a client certificate's subject DN in RFC 4514 form, e.g.
 *    "CN=src.example.com,O=Example", or a PSK identity); blank lines and
 *    lines starting with '#' are ignored.  A peer not listed is refused.
 *
 * The handshake (vmig_tls_handshake()) is TLS 1.3 only, AES-GCM preferred
 * (AES-128, then AES-256, then ChaCha20-Poly1305), no session tickets or
 * resumption.  After it the server checks the allow-list and sends a
 * verdict record; the client waits for it, so a channel exists only once
 * both sides have accepted each other, before any migration byte moves.
 * Every refusal names its cause on both sides where TLS lets the peer
 * know (docs/security.md lists them).
 *
 * A struct vmig_tls holds the loaded credentials (an OpenSSL SSL_CTX) and
 * may be shared by threads making channels at once.
 */
#ifndef VMIG_TLS_H
#define VMIG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <vmig/chan.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

struct vmig_tls;

/* The PSK identity a client uses when none is given (QEMU's default). */
#define VMIG_TLS_DEFAULT_IDENTITY "qemu"

enum vmig_tls_endpoint {
    VMIG_TLS_CLIENT = 0, /* connects: the migration source */
    VMIG_TLS_SERVER,     /* accepts: the migration destination */
};

/**
 * struct vmig_tls_params - credentials and policy of one endpoint.
 * @endpoint:     client (source) or server (destination).
 * @x509_dir:     a QEMU x509 credentials directory, or NULL.
 * @psk_file:     a keys.psk file, or NULL.  Exactly one of @x509_dir and
 *                @psk_file is given.
 * @psk_identity: client with PSK: the identity to use; NULL for "qemu".
 * @hostname:     client with x509: the name the server's certificate must
 *                carry (the host the source connects to).  Required.
 * @authz_file:   server: the allow-list of peer names, or NULL (any peer
 *                the credentials authenticate).
 * @ktls:         ask OpenSSL for kernel TLS offload where the kernel has
 *                it (the session works the same without).
 */
struct vmig_tls_params {
    enum vmig_tls_endpoint endpoint;
    const char *x509_dir;
    const char *psk_file;
    const char *psk_identity;
    const char *hostname;
    const char *authz_file;
    bool ktls;
};

/**
 * vmig_tls_new() - Load credentials for one endpoint.
 * @ctx:    logging context (borrowed; must outlive the object).
 * @p:      parameters; the strings are copied or read at once.
 * @out:    receives the credentials; untouched on failure.
 * @err:    receives why it failed, naming the file and what to do.
 * @errlen: size of @err.
 *
 * Every file is read and checked here (keys match their certificates, the
 * identity is in keys.psk, hex keys are well formed), so a bad setup fails
 * at start, not at the first migration.
 *
 * Return: 0; -EINVAL (bad parameters or a malformed file); -ENOENT (a
 * file is missing); -EACCES (unreadable); -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_tls_new(vmig_ctx_t *ctx,
                                             const struct vmig_tls_params *p,
                                             struct vmig_tls **out, char *err,
                                             size_t errlen);

/**
 * vmig_tls_free() - Free credentials; channels made from them may still
 * be in use (they hold their own reference).  NULL is accepted.
 * @t: credentials.
 */
VMIG_EXPORT void vmig_tls_free(struct vmig_tls *t);

/**
 * vmig_tls_handshake() - Run the TLS handshake on a connected socket and
 * make it a channel.
 * @t:          credentials of this endpoint.
 * @fd:         the connected socket; borrowed (made non-blocking while the
 *              channel lives).
 * @timeout_ms: give up after this long without progress; 0 waits forever.
 * @cancel:     a flag that aborts the wait with -ECANCELED once non-zero
 *              (read atomically), or NULL.
 * @out:        receives the channel; untouched on failure.
 * @why:        receives the reason of a failure, for the user.
 * @whylen:     size of @why.
 *
 * On the client, returns once the server has accepted us; on the server,
 * once the client is authenticated and allowed and knows it.  On failure
 * nothing was read from or written to the peer beyond the handshake.
 *
 * Return: 0; -EACCES (authentication failed or was refused, either way);
 * -EPROTO (the peer does not speak TLS: a plaintext vmig agent or
 * something else); -ECONNRESET (the peer hung up); -ETIMEDOUT;
 * -ECANCELED; -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_tls_handshake(struct vmig_tls *t, int fd,
                                                   unsigned int timeout_ms,
                                                   const int *cancel,
                                                   struct vmig_chan **out,
                                                   char *why, size_t whylen);

/**
 * vmig_tls_ktls_available() - Whether this kernel offers kernel TLS
 * (the "tls" TCP upper-layer protocol), probed on a loopback socket.
 * @why:    receives the reason when not, or NULL.
 * @whylen: size of @why.
 *
 * Return: 1 available, 0 not.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_tls_ktls_available(char *why,
                                                        size_t whylen);

/**
 * struct vmig_tls_setup_params - throwaway credentials for tests and a
 * first setup (vmig tls-setup).
 * @hostnames:     comma-separated names (DNS, or IP addresses) the server
 *                 certificate is valid for; NULL: "localhost,127.0.0.1,::1".
 * @client_cn:     the client certificate's common name; NULL: "vmig-client".
 * @psk_identity:  the identity written to keys.psk; NULL: "qemu".
 * @valid_from_s:  the certificates' notBefore, seconds from now (negative:
 *                 in the past); 0 is now minus one hour (clock skew).
 * @valid_s:       their lifetime in seconds; 0 is 365 days.
 * @ca_dir:        sign with ca-cert.pem + ca-key.pem of this directory
 *                 (copied into the new one) instead of making a new CA;
 *                 NULL: a new CA.
 */
struct vmig_tls_setup_params {
    const char *hostnames;
    const char *client_cn;
    const char *psk_identity;
    long long valid_from_s;
    long long valid_s;
    const char *ca_dir;
};

/**
 * vmig_tls_setup() - Write a CA, server and client certificates and keys
 * (ECDSA P-256), and a keys.psk with a random 256-bit key, into @dir in
 * the layout vmig_tls_new() and QEMU read.  Keys are written 0600.
 * @dir:    an existing directory.
 * @p:      options; NULL for the defaults.
 * @err:    receives why it failed.
 * @errlen: size of @err.
 *
 * The CA's private key stays in @dir as ca-key.pem: fine for a test, to
 * be moved off the hosts for real use (docs/security.md).
 *
 * Return: 0, or a negative errno (-EINVAL, -ENOENT, -EACCES, -ENOMEM).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_tls_setup(const char *dir, const struct vmig_tls_setup_params *p,
               char *err, size_t errlen);

#endif /* VMIG_TLS_H */
