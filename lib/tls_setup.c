/* SPDX-License-Identifier: MIT */
/*
 * tls_setup.c - throwaway TLS credentials (vmig_tls_setup()): a CA, a
 * server and a client certificate with ECDSA P-256 keys, and a keys.psk,
 * in the layout QEMU's tls-creds-x509 / tls-creds-psk objects read.
 *
 * The certificates carry what vmig_tls_handshake() checks: the server's
 * subjectAltName (DNS names and IP addresses) and serverAuth, the
 * client's clientAuth, the CA's basicConstraints.  Validity can be moved
 * into the past or the future, so tests can make expired and not yet
 * valid certificates signed by a good CA.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <vmig/tls.h>
#include "internal.h"

#define CA_LIFETIME_S (10ll * 365 * 86400)
#define DEFAULT_LIFETIME_S (365ll * 86400)

static int
fail(char *err, size_t errlen, int ret, const char *what)
{
    unsigned long e = ERR_peek_last_error();

    snprintf(err, errlen, "%s: %s", what,
             e != 0 ? ERR_reason_error_string(e) : strerror(-ret));
    ERR_clear_error();
    return ret;
}

/* Open @dir/@name for writing with @mode (whatever the umask). */
static FILE *
open_out(const char *dir, const char *name, mode_t mode, char *err,
         size_t errlen)
{
    char path[1024];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || fchmod(fd, mode) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

static int
close_out(FILE *f, const char *dir, const char *name, char *err, size_t errlen)
{
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
        return -EIO;
    }
    return 0;
}

static int
write_key(const char *dir, const char *name, EVP_PKEY *k, char *err,
          size_t errlen)
{
    FILE *f = open_out(dir, name, 0600, err, errlen);
    int ok;

    if (f == NULL) {
        return -EACCES;
    }
    ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (close_out(f, dir, name, err, errlen) < 0) {
        return -EIO;
    }
    return ok == 1 ? 0 : fail(err, errlen, -EIO, name);
}

static int
write_cert(const char *dir, const char *name, X509 *c, char *err, size_t errlen)
{
    FILE *f = open_out(dir, name, 0644, err, errlen);
    int ok;

    if (f == NULL) {
        return -EACCES;
    }
    ok = PEM_write_X509(f, c);
    if (close_out(f, dir, name, err, errlen) < 0) {
        return -EIO;
    }
    return ok == 1 ? 0 : fail(err, errlen, -EIO, name);
}

static int
add_ext(X509 *c, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL) {
        return -EINVAL;
    }
    ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -EINVAL;
}

/* "DNS:a,IP:127.0.0.1,..." from "a,127.0.0.1,...". */
static int
san_list(const char *names, char *out, size_t len)
{
    const char *p = names;
    size_t o = 0;

    out[0] = '\0';
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char one[256];
        struct in6_addr a6;
        struct in_addr a4;
        int w;

        if (n == 0 || n >= sizeof(one)) {
            return -EINVAL;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (strchr(one, ':') != NULL && inet_pton(AF_INET6, one, &a6) != 1) {
            return -EINVAL; /* only an IPv6 address may hold a ':' */
        }
        w = snprintf(out + o, len - o, "%s%s:%s", o > 0 ? "," : "",
                     inet_pton(AF_INET, one, &a4) == 1 ||
                             inet_pton(AF_INET6, one, &a6) == 1
                         ? "IP"
                         : "DNS",
                     one);
        if (w < 0 || (size_t)w >= len - o) {
            return -E2BIG;
        }
        o += (size_t)w;
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return o > 0 ? 0 : -EINVAL;
}

/* The first name of a comma list, for a subject CN. */
static void
first_name(const char *names, char *out, size_t len)
{
    const char *end = strchr(names, ',');
    size_t n = end != NULL ? (size_t)(end - names) : strlen(names);

    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), names);
}

static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, long long from_s,
          long long life_s)
{
    X509 *c = X509_new();
    X509_NAME *nm;
    ASN1_INTEGER *serial;
    unsigned char sn[16];
    BIGNUM *bn;
    time_t now = time(NULL);
    bool ok;

    if (c == NULL) {
        return NULL;
    }
    nm = X509_get_subject_name(c);
    ok =
        X509_set_version(c, 2) == 1 &&
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
                                   (const unsigned char *)"vmig", -1, -1,
                                   0) == 1 &&
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) == 1 &&
        X509_set_issuer_name(c, issuer != NULL ? X509_get_subject_name(issuer)
                                               : nm) == 1 &&
        X509_set_pubkey(c, key) == 1 &&
        X509_time_adj_ex(X509_getm_notBefore(c), 0, (long)from_s, &now) !=
            NULL &&
        X509_time_adj_ex(X509_getm_notAfter(c),
                         (int)((from_s + life_s) / 86400),
                         (long)((from_s + life_s) % 86400), &now) != NULL &&
        RAND_bytes(sn, sizeof(sn)) == 1;
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    sn[0] &= 0x7f; /* a positive serial */
    bn = BN_bin2bn(sn, sizeof(sn), NULL);
    serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    ok = serial != NULL && X509_set_serialNumber(c, serial) == 1;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static int
sign(X509 *c, EVP_PKEY *ikey)
{
    return X509_sign(c, ikey, EVP_sha256()) > 0 ? 0 : -EINVAL;
}

static int
load_ca(const char *dir, X509 **ca, EVP_PKEY **cakey, char *err, size_t errlen)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/ca-cert.pem", dir);
    f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof(path), "%s/ca-key.pem", dir);
    f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*ca == NULL || *cakey == NULL) {
        return fail(err, errlen, -EINVAL, "the CA to sign with");
    }
    return 0;
}

static int
write_psk(const char *dir, const char *identity, char *err, size_t errlen)
{
    unsigned char key[32];
    FILE *f;

    if (strchr(identity, ':') != NULL || identity[0] == '\0') {
        snprintf(err, errlen, "PSK identity '%s': empty or has a ':'",
                 identity);
        return -EINVAL;
    }
    if (RAND_bytes(key, sizeof(key)) != 1) {
        return fail(err, errlen, -EIO, "random key");
    }
    f = open_out(dir, "keys.psk", 0600, err, errlen);
    if (f == NULL) {
        return -EACCES;
    }
    fprintf(f, "%s:", identity);
    for (size_t i = 0; i < sizeof(key); i++) {
        fprintf(f, "%02x", key[i]);
    }
    fprintf(f, "\n");
    memset(key, 0, sizeof(key));
    return close_out(f, dir, "keys.psk", err, errlen);
}

int
vmig_tls_setup(const char *dir, const struct vmig_tls_setup_params *p,
               char *err, size_t errlen)
{
    static const struct vmig_tls_setup_params defaults = {0};
    const char *hosts, *ccn, *ident;
    long long from, life;
    char san[1024], cn[256];
    EVP_PKEY *cakey = NULL, *skey = NULL, *ckey = NULL;
    X509 *ca = NULL, *sc = NULL, *cc = NULL;
    int ret;

    if (dir == NULL) {
        snprintf(err, errlen, "no directory");
        return -EINVAL;
    }
    if (p == NULL) {
        p = &defaults;
    }
    hosts = p->hostnames != NULL ? p->hostnames : "localhost,127.0.0.1,::1";
    ccn = p->client_cn != NULL ? p->client_cn : "vmig-client";
    ident =
        p->psk_identity != NULL ? p->psk_identity : VMIG_TLS_DEFAULT_IDENTITY;
    from = p->valid_from_s != 0 ? p->valid_from_s : -3600;
    life = p->valid_s != 0 ? p->valid_s : DEFAULT_LIFETIME_S;
    if (san_list(hosts, san, sizeof(san)) < 0) {
        snprintf(err, errlen, "bad host name list '%s'", hosts);
        return -EINVAL;
    }
    first_name(hosts, cn, sizeof(cn));
    ERR_clear_error();
    if (p->ca_dir != NULL) {
        ret = load_ca(p->ca_dir, &ca, &cakey, err, errlen);
        if (ret < 0) {
            goto out;
        }
    } else {
        unsigned char tag[4];
        char cacn[64];

        /* a name of its own: two test CAs must not be mistaken for each
         * other when a verifier looks the issuer up by name */
        if (RAND_bytes(tag, sizeof(tag)) != 1) {
            ret = fail(err, errlen, -EIO, "random CA name");
            goto out;
        }
        snprintf(cacn, sizeof(cacn), "vmig test CA %02x%02x%02x%02x", tag[0],
                 tag[1], tag[2], tag[3]);
        cakey = EVP_EC_gen("P-256");
        ca = cakey != NULL ? make_cert(cakey, cacn, NULL, -3600, CA_LIFETIME_S)
                           : NULL;
        if (ca == NULL ||
            add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
            add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign") <
                0 ||
            add_ext(ca, ca, NID_subject_key_identifier, "hash") < 0 ||
            sign(ca, cakey) < 0) {
            ret = fail(err, errlen, -EINVAL, "making the CA");
            goto out;
        }
    }
    skey = EVP_EC_gen("P-256");
    ckey = EVP_EC_gen("P-256");
    sc = skey != NULL ? make_cert(skey, cn, ca, from, life) : NULL;
    cc = ckey != NULL ? make_cert(ckey, ccn, ca, from, life) : NULL;
    if (sc == NULL || cc == NULL ||
        add_ext(sc, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(sc, ca, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(sc, ca, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(sc, ca, NID_subject_alt_name, san) < 0 ||
        add_ext(sc, ca, NID_authority_key_identifier, "keyid") < 0 ||
        sign(sc, cakey) < 0 ||
        add_ext(cc, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(cc, ca, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(cc, ca, NID_ext_key_usage, "clientAuth") < 0 ||
        add_ext(cc, ca, NID_authority_key_identifier, "keyid") < 0 ||
        sign(cc, cakey) < 0) {
        ret = fail(err, errlen, -EINVAL, "making the certificates");
        goto out;
    }
    ret = write_cert(dir, "ca-cert.pem", ca, err, errlen);
    if (ret == 0) {
        ret = write_key(dir, "ca-key.pem", cakey, err, errlen);
    }
    if (ret == 0) {
        ret = write_cert(dir, "server-cert.pem", sc, err, errlen);
    }
    if (ret == 0) {
        ret = write_key(dir, "server-key.pem", skey, err, errlen);
    }
    if (ret == 0) {
        ret = write_cert(dir, "client-cert.pem", cc, err, errlen);
    }
    if (ret == 0) {
        ret = write_key(dir, "client-key.pem", ckey, err, errlen);
    }
    if (ret == 0) {
        ret = write_psk(dir, ident, err, errlen);
    }
out:
    X509_free(ca);
    X509_free(sc);
    X509_free(cc);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(skey);
    EVP_PKEY_free(ckey);
    ERR_clear_error();
    return ret;
}
