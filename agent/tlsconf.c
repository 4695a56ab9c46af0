/* SPDX-License-Identifier: MIT */
/*
 * tlsconf.c - the agent's TLS settings (QMP tls-creds, tls-hostname,
 * tls-authz, x-vmig-tls-identity; CLI --tls-creds, --tls-psk, ...) turned
 * into <vmig/tls.h> credentials, and the rule that keeps a destination
 * from listening in plaintext beyond this host.
 *
 * tls-creds names credentials the way QEMU's tls-creds objects find them:
 * a directory with ca-cert.pem (x509), or a directory with keys.psk
 * (QEMU's tls-creds-psk dir), or a keys.psk file itself.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "agent.h"

bool
agent_tls_enabled(const struct agent_tls *cfg)
{
    return cfg->creds[0] != '\0';
}

static bool
is_file(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Which kind @creds is; the keys.psk path into @psk when PSK. */
static int
creds_kind(const char *creds, bool *psk, char *pskpath, size_t len, char *err,
           size_t errlen)
{
    struct stat st;
    char p[600];

    if (stat(creds, &st) < 0) {
        snprintf(err, errlen,
                 "TLS credentials %s: %s (make a test set with 'vmig "
                 "tls-setup DIR')",
                 creds, strerror(errno));
        return -ENOENT;
    }
    if (S_ISREG(st.st_mode)) {
        *psk = true;
        snprintf(pskpath, len, "%s", creds);
        return 0;
    }
    snprintf(p, sizeof(p), "%s/ca-cert.pem", creds);
    if (S_ISDIR(st.st_mode) && is_file(p)) {
        *psk = false;
        return 0;
    }
    snprintf(p, sizeof(p), "%s/keys.psk", creds);
    if (S_ISDIR(st.st_mode) && is_file(p)) {
        *psk = true;
        snprintf(pskpath, len, "%s", p);
        return 0;
    }
    snprintf(err, errlen,
             "TLS credentials %s: neither an x509 directory (ca-cert.pem, "
             "server-cert.pem, server-key.pem, client-cert.pem, "
             "client-key.pem) nor keys.psk (make a test set with 'vmig "
             "tls-setup DIR')",
             creds);
    return -EINVAL;
}

int
agent_tls_make(const struct agent_tls *cfg, vmig_ctx_t *ctx,
               enum vmig_tls_endpoint ep, const char *host,
               struct vmig_tls **out, char *err, size_t errlen)
{
    struct vmig_tls_params p = {.endpoint = ep};
    char pskpath[600];
    bool psk;
    int ret;

    *out = NULL;
    if (!agent_tls_enabled(cfg)) {
        return 0;
    }
    ret = creds_kind(cfg->creds, &psk, pskpath, sizeof(pskpath), err, errlen);
    if (ret < 0) {
        return ret;
    }
    if (psk) {
        p.psk_file = pskpath;
        p.psk_identity = cfg->identity[0] != '\0' ? cfg->identity : NULL;
    } else {
        p.x509_dir = cfg->creds;
        p.hostname = cfg->hostname[0] != '\0' ? cfg->hostname : host;
    }
    if (ep == VMIG_TLS_SERVER && cfg->authz[0] != '\0') {
        p.authz_file = cfg->authz;
    }
    p.ktls = cfg->ktls;
    return vmig_tls_new(ctx, &p, out, err, errlen);
}

int
agent_tls_check_creds(const char *creds, char *err, size_t errlen)
{
    char pskpath[600];
    bool psk;

    if (creds[0] == '\0') {
        return 0;
    }
    return creds_kind(creds, &psk, pskpath, sizeof(pskpath), err, errlen);
}

static bool
loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
                a->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

int
agent_tls_listen_ok(const struct agent_tls *cfg, const struct sockaddr *sa,
                    const char *where, char *err, size_t errlen)
{
    if (agent_tls_enabled(cfg) || cfg->insecure || loopback(sa)) {
        return 0;
    }
    snprintf(err, errlen,
             "refusing to accept migrations on %s in plaintext: anyone who "
             "can reach it could push a VM into this host.  Create "
             "credentials with 'vmig tls-setup DIR' (copy them to both "
             "hosts) and give --tls-creds DIR or --tls-psk DIR/keys.psk to "
             "both agents; or pass --insecure to accept plaintext anyway",
             where);
    return -EACCES;
}
