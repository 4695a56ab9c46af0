/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tls_files.c - the credential files TLS reads from disk (keys.psk
 * and the allow-list of peer names) on arbitrary bytes: no crash, no
 * leak, and whatever is accepted holds its promises (identities 1..127
 * printable bytes without ':', unique; keys 16..64 bytes; names without
 * a NUL, CR or trailing blank).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tls_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmig__psk *k = NULL;
    char **names = NULL, err[256];
    size_t n;

    if (vmig__psk_parse((const char *)data, size, &k, &n, err, sizeof(err)) ==
        0) {
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(k[i].id);

            if (l == 0 || l > VMIG__PSK_ID_MAX || strchr(k[i].id, ':') ||
                k[i].keylen < VMIG__PSK_KEY_MIN ||
                k[i].keylen > VMIG__PSK_KEY_MAX) {
                abort();
            }
            for (size_t j = 0; j < i; j++) {
                if (strcmp(k[i].id, k[j].id) == 0) {
                    abort();
                }
            }
        }
        free(k);
    }
    if (vmig__names_parse((const char *)data, size, &names, &n, err,
                          sizeof(err)) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(names[i]);

            if (l == 0 || names[i][0] == '#' || names[i][l - 1] == '\r' ||
                names[i][l - 1] == ' ' || names[i][l - 1] == '\t') {
                abort();
            }
        }
        vmig__names_free(names, n);
    }
    return 0;
}
