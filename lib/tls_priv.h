/* SPDX-License-Identifier: MIT */
/*
 * tls_priv.h - the credential files TLS reads (tls_files.c: pure parsers,
 * no OpenSSL), shared with tls_creds.c and the unit tests.
 */
#ifndef VMIG_TLS_PRIV_H
#define VMIG_TLS_PRIV_H

#include <stddef.h>
#include <stdint.h>

#define VMIG__PSK_ID_MAX 127           /* identity bytes */
#define VMIG__PSK_KEY_MIN 16           /* 128 bits: shorter keys are refused */
#define VMIG__PSK_KEY_MAX 64           /* 512 bits */
#define VMIG__NAME_LIST_MAX 4096       /* allow-list entries */
#define VMIG__CRED_FILE_MAX (1u << 20) /* any credential file */

/* One keys.psk line. */
struct vmig__psk {
    char id[VMIG__PSK_ID_MAX + 1];
    uint8_t key[VMIG__PSK_KEY_MAX];
    size_t keylen;
};

/*
 * vmig__psk_parse() - Parse a keys.psk text: "identity:hexkey" lines
 * (QEMU's format), LF or CRLF; blank lines and '#' comments skipped.
 * Identities are 1..127 printable bytes without ':', unique; keys 16..64
 * bytes of hex.  On error *@out is untouched and @err names the line.
 * Return: 0 (*@out malloc'ed, *@n entries, at least one), -EINVAL,
 * -E2BIG, -ENOMEM.
 */
int vmig__psk_parse(const char *text, size_t len, struct vmig__psk **out,
                    size_t *n, char *err, size_t errlen);

/*
 * vmig__names_parse() - Parse an allow-list: one name a line (trailing
 * blanks and CR dropped), blank lines and '#' comments skipped.  An empty
 * list is valid (it allows nobody).
 * Return: 0 (*@out: an array of *@n strings, free with
 * vmig__names_free()), -EINVAL (a NUL byte or a line over 1023 bytes),
 * -E2BIG, -ENOMEM.
 */
int vmig__names_parse(const char *text, size_t len, char ***out, size_t *n,
                      char *err, size_t errlen);
void vmig__names_free(char **names, size_t n);

/*
 * vmig__read_file() - Read a whole credential file (at most
 * VMIG__CRED_FILE_MAX bytes), NUL-terminated.  @err says which file and
 * what to do.  Return: 0 (*@out malloc'ed, *@len bytes), -ENOENT,
 * -EACCES, -E2BIG, -ENOMEM, -errno.
 */
int vmig__read_file(const char *path, char **out, size_t *len, char *err,
                    size_t errlen);

#endif /* VMIG_TLS_PRIV_H */
