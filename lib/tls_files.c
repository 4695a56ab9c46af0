/* SPDX-License-Identifier: MIT */
/*
 * tls_files.c - the credential files TLS reads: QEMU's keys.psk and the
 * allow-list of peer names.  Pure parsers over a text already in memory
 * (every input is hostile: bounded lines, no NUL, clear errors).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tls_priv.h"

#define LINE_MAX_BYTES 1023

/* The next line of @text at *@off: [*@start, *@start + *@n), CR and
 * trailing blanks dropped.  Return 0 at the end of the text. */
static int
next_line(const char *text, size_t len, size_t *off, const char **start,
          size_t *n)
{
    const char *p, *nl;
    size_t l;

    if (*off >= len) {
        return 0;
    }
    p = text + *off;
    nl = memchr(p, '\n', len - *off);
    l = nl != NULL ? (size_t)(nl - p) : len - *off;
    *off += l + (nl != NULL ? 1 : 0);
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t')) {
        l--;
    }
    *start = p;
    *n = l;
    return 1;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Make room for one more element of @size in *@v (*@cnt used of *@cap):
 * a new array, the old one wiped (it may hold key material) and freed.
 */
static int
grow(void **v, size_t cnt, size_t *cap, size_t size, const char *what,
     char *err, size_t errlen)
{
    size_t ncap;
    void *nv;

    if (cnt < *cap) {
        return 0;
    }
    if (*cap >= VMIG__NAME_LIST_MAX) {
        snprintf(err, errlen, "more than %d %s", VMIG__NAME_LIST_MAX, what);
        return -E2BIG;
    }
    ncap = *cap == 0 ? 8 : *cap * 2;
    nv = calloc(ncap, size);
    if (nv == NULL) {
        return -ENOMEM;
    }
    if (*v != NULL) {
        memcpy(nv, *v, cnt * size);
        memset(*v, 0, *cap * size);
        free(*v);
    }
    *v = nv;
    *cap = ncap;
    return 0;
}

static bool
skip_line(const char *s, size_t n)
{
    return n == 0 || s[0] == '#';
}

int
vmig__psk_parse(const char *text, size_t len, struct vmig__psk **out, size_t *n,
                char *err, size_t errlen)
{
    struct vmig__psk *v = NULL, *e;
    size_t off = 0, cnt = 0, cap = 0, l;
    unsigned int lineno = 0;
    const char *s, *colon;
    int ret;

    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "a NUL byte: not a text file");
        return -EINVAL;
    }
    while (next_line(text, len, &off, &s, &l)) {
        size_t idlen, hexlen;

        lineno++;
        if (skip_line(s, l)) {
            continue;
        }
        if (l > LINE_MAX_BYTES) {
            snprintf(err, errlen, "line %u: longer than %d bytes", lineno,
                     LINE_MAX_BYTES);
            ret = -EINVAL;
            goto err;
        }
        colon = memchr(s, ':', l);
        if (colon == NULL) {
            snprintf(err, errlen, "line %u: not 'identity:hexkey' (no ':')",
                     lineno);
            ret = -EINVAL;
            goto err;
        }
        idlen = (size_t)(colon - s);
        hexlen = l - idlen - 1;
        if (idlen == 0 || idlen > VMIG__PSK_ID_MAX) {
            snprintf(err, errlen, "line %u: the identity must be 1 to %d bytes",
                     lineno, VMIG__PSK_ID_MAX);
            ret = -EINVAL;
            goto err;
        }
        for (size_t i = 0; i < idlen; i++) {
            if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
                snprintf(err, errlen,
                         "line %u: the identity has a non-printable byte",
                         lineno);
                ret = -EINVAL;
                goto err;
            }
        }
        if (hexlen % 2 != 0 || hexlen / 2 < VMIG__PSK_KEY_MIN ||
            hexlen / 2 > VMIG__PSK_KEY_MAX) {
            snprintf(err, errlen,
                     "line %u: the key must be %d to %d bytes written as an "
                     "even number of hex digits (e.g. 64 digits from "
                     "'openssl rand -hex 32')",
                     lineno, VMIG__PSK_KEY_MIN, VMIG__PSK_KEY_MAX);
            ret = -EINVAL;
            goto err;
        }
        for (size_t i = 0; i < cnt; i++) {
            if (strlen(v[i].id) == idlen && memcmp(v[i].id, s, idlen) == 0) {
                snprintf(err, errlen, "line %u: identity '%.*s' given twice",
                         lineno, (int)idlen, s);
                ret = -EINVAL;
                goto err;
            }
        }
        ret = grow((void **)&v, cnt, &cap, sizeof(*v), "keys", err, errlen);
        if (ret < 0) {
            goto err;
        }
        e = &v[cnt];
        memset(e, 0, sizeof(*e));
        memcpy(e->id, s, idlen);
        for (size_t i = 0; i < hexlen / 2; i++) {
            int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);

            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "line %u: the key is not hex", lineno);
                ret = -EINVAL;
                goto err;
            }
            e->key[i] = (uint8_t)(hi << 4 | lo);
        }
        e->keylen = hexlen / 2;
        cnt++;
    }
    if (cnt == 0) {
        snprintf(err, errlen, "no 'identity:hexkey' line");
        ret = -EINVAL;
        goto err;
    }
    *out = v;
    *n = cnt;
    return 0;

err:
    if (v != NULL) {
        memset(v, 0, cap * sizeof(*v)); /* key material */
    }
    free(v);
    return ret;
}

void
vmig__names_free(char **names, size_t n)
{
    if (names == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

int
vmig__names_parse(const char *text, size_t len, char ***out, size_t *n,
                  char *err, size_t errlen)
{
    char **v = NULL;
    size_t off = 0, cnt = 0, cap = 0, l;
    unsigned int lineno = 0;
    const char *s;
    int ret;

    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "a NUL byte: not a text file");
        return -EINVAL;
    }
    while (next_line(text, len, &off, &s, &l)) {
        lineno++;
        if (skip_line(s, l)) {
            continue;
        }
        if (l > LINE_MAX_BYTES) {
            snprintf(err, errlen, "line %u: longer than %d bytes", lineno,
                     LINE_MAX_BYTES);
            ret = -EINVAL;
            goto err;
        }
        ret = grow((void **)&v, cnt, &cap, sizeof(*v), "names", err, errlen);
        if (ret < 0) {
            goto err;
        }
        v[cnt] = strndup(s, l);
        if (v[cnt] == NULL) {
            ret = -ENOMEM;
            goto err;
        }
        cnt++;
    }
    *out = v;
    *n = cnt;
    return 0;

err:
    vmig__names_free(v, cnt);
    return ret;
}

int
vmig__read_file(const char *path, char **out, size_t *len, char *err,
                size_t errlen)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd, ret;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-ret));
        return ret;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > VMIG__CRED_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", path,
                 VMIG__CRED_FILE_MAX);
        close(fd);
        return -E2BIG;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break; /* shrank while we read: take what is there */
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}
