/* SPDX-License-Identifier: MIT */
/*
 * compat_desc.c - libFuzzer harness for descriptor parsing.
 *
 * The input is tried as the binary form and, NUL-terminated, as JSON.
 * Whatever parses must re-encode, re-parse to the same encoding, and be
 * usable in an IS_COMPATIBLE check against itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/compat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
exercise(const struct vmig_compat_desc *d)
{
    struct vmig_compat_desc *back = NULL;
    struct vmig_compat_result res;
    uint8_t *a, *b;
    char *json = NULL;
    int n, m;

    n = vmig_compat_desc_to_bin(d, NULL, 0);
    if (n < 0) {
        abort();
    }
    a = malloc((size_t)n);
    if (a == NULL || vmig_compat_desc_to_bin(d, a, (size_t)n) != n ||
        vmig_compat_desc_from_bin(a, (size_t)n, &back, NULL, 0) != 0) {
        abort();
    }
    m = vmig_compat_desc_to_bin(back, NULL, 0);
    b = malloc((size_t)m);
    if (m != n || b == NULL ||
        vmig_compat_desc_to_bin(back, b, (size_t)m) != m ||
        memcmp(a, b, (size_t)n) != 0) {
        abort();
    }
    vmig_compat_desc_free(back);
    back = NULL;
    if (vmig_compat_desc_to_json(d, &json) != 0 ||
        vmig_compat_desc_from_json(json, &back, NULL, 0) != 0) {
        abort();
    }
    if (vmig_compat_check(d, back, NULL, NULL, &res) < 0) {
        abort();
    }
    vmig_compat_desc_free(back);
    free(json);
    free(a);
    free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmig_compat_desc *d = NULL;
    char err[200];
    char *text;

    if (vmig_compat_desc_from_bin(data, size, &d, err, sizeof(err)) == 0) {
        exercise(d);
        vmig_compat_desc_free(d);
        d = NULL;
    }
    text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    if (vmig_compat_desc_from_json(text, &d, err, sizeof(err)) == 0) {
        exercise(d);
        vmig_compat_desc_free(d);
    }
    free(text);
    return 0;
}
