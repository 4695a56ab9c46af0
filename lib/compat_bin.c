/* SPDX-License-Identifier: MIT */
/*
 * compat_bin.c - the binary form of a device descriptor
 * (docs/stream-format.md, "Descriptor record"), and copying a descriptor
 * through it.  The device-state envelope carries this form, so its
 * decoder sees bytes straight from a peer: every count and length is
 * checked against both its limit and the bytes actually left before
 * anything is allocated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/byteorder.h>
#include <vmig/compat.h>
#include "compat_priv.h"
#include "internal.h"

struct wbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
};

static void
put(struct wbuf *w, const void *src, size_t n)
{
    if (n > 0 && w->p != NULL && w->len + n <= w->cap) {
        memcpy(w->p + w->len, src, n);
    }
    w->len += n;
}

static void
put_u16(struct wbuf *w, uint16_t v)
{
    uint8_t b[2];

    vmig_put_le16(b, v);
    put(w, b, 2);
}

static void
put_u32(struct wbuf *w, uint32_t v)
{
    uint8_t b[4];

    vmig_put_le32(b, v);
    put(w, b, 4);
}

static void
put_str(struct wbuf *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    put_u16(w, (uint16_t)n);
    put(w, s, n);
}

static void
put_versions(struct wbuf *w, const uint32_t *list, size_t n)
{
    put_u16(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u32(w, list[i]);
    }
}

int
vmig_compat_desc_to_bin(const struct vmig_compat_desc *d, void *buf, size_t cap)
{
    struct wbuf w = {.p = NULL, .cap = cap, .len = 0};
    int ret;

    ret = vmig_compat_desc_validate(d, NULL, 0);
    if (ret < 0) {
        return -EINVAL;
    }
    /* Measure first; write only when everything fits. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (buf == NULL || w.len > cap) {
                break;
            }
            w.p = buf;
            w.len = 0;
        }
        put_u16(&w, VMIG__COMPAT_BIN_LAYOUT);
        put_u16(&w, 0);
        put_u32(&w, d->vendor_id);
        put_u32(&w, d->device_type);
        put_u32(&w, d->generation);
        put_u32(&w, d->mig_flags);
        put_u32(&w, d->compat_flags);
        put_u32(&w, d->stream_version);
        put_str(&w, d->vendor_version);
        put_versions(&w, d->produced, d->n_produced);
        put_versions(&w, d->accepted, d->n_accepted);
        put_u16(&w, (uint16_t)d->n_known_bad);
        for (size_t i = 0; i < d->n_known_bad; i++) {
            put_u32(&w, d->known_bad[i].version);
            put_str(&w, d->known_bad[i].reason);
        }
        put_u16(&w, (uint16_t)d->n_params);
        for (size_t i = 0; i < d->n_params; i++) {
            put_str(&w, d->params[i].key);
            put_str(&w, d->params[i].value);
        }
        if (w.len > VMIG_COMPAT_BIN_MAX) {
            return -E2BIG;
        }
    }
    return (int)w.len;
}

struct rbuf {
    const uint8_t *p;
    size_t len;
    size_t off;
    char *err;
    size_t errlen;
};

static int
need(struct rbuf *r, size_t n, const char *what)
{
    if (r->len - r->off < n) {
        vmig__errf(r->err, r->errlen,
                   "descriptor truncated at byte %zu reading %s", r->off, what);
        return -EBADMSG;
    }
    return 0;
}

static int
get_u16(struct rbuf *r, uint16_t *v, const char *what)
{
    int ret = need(r, 2, what);

    if (ret == 0) {
        *v = vmig_get_le16(r->p + r->off);
        r->off += 2;
    }
    return ret;
}

static int
get_u32(struct rbuf *r, uint32_t *v, const char *what)
{
    int ret = need(r, 4, what);

    if (ret == 0) {
        *v = vmig_get_le32(r->p + r->off);
        r->off += 4;
    }
    return ret;
}

/* A length-prefixed string; @key selects the key charset. */
static int
get_str(struct rbuf *r, char **out, size_t max, int key, const char *what)
{
    uint16_t n;
    char *s;
    int ret;

    ret = get_u16(r, &n, what);
    if (ret < 0) {
        return ret;
    }
    if (n > max) {
        vmig__errf(r->err, r->errlen, "%s: length %u exceeds %zu", what, n,
                   max);
        return -E2BIG;
    }
    ret = need(r, n, what);
    if (ret < 0) {
        return ret;
    }
    ret = key ? vmig__compat_key_ok((const char *)r->p + r->off, n)
              : vmig__compat_str_ok((const char *)r->p + r->off, n, max);
    if (ret < 0) {
        vmig__errf(r->err, r->errlen, "%s: invalid characters", what);
        return -EBADMSG;
    }
    s = malloc((size_t)n + 1);
    if (s == NULL) {
        return -ENOMEM;
    }
    memcpy(s, r->p + r->off, n);
    s[n] = '\0';
    r->off += n;
    *out = s;
    return 0;
}

static int
get_count(struct rbuf *r, size_t *n, size_t min_each, const char *what)
{
    uint16_t c;
    int ret;

    ret = get_u16(r, &c, what);
    if (ret < 0) {
        return ret;
    }
    if (c > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(r->err, r->errlen, "%s: %u entries, at most %d", what, c,
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    /* Refuse counts the remaining bytes cannot possibly hold. */
    ret = need(r, (size_t)c * min_each, what);
    if (ret < 0) {
        return ret;
    }
    *n = c;
    return 0;
}

static int
get_versions(struct rbuf *r, const uint32_t **out, size_t *n, const char *what)
{
    uint32_t *list;
    int ret;

    ret = get_count(r, n, 4, what);
    if (ret < 0 || *n == 0) {
        return ret;
    }
    list = calloc(*n, sizeof(*list));
    if (list == NULL) {
        *n = 0;
        return -ENOMEM;
    }
    *out = list;
    for (size_t i = 0; i < *n; i++) {
        ret = get_u32(r, &list[i], what);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int
decode(struct rbuf *r, struct vmig_compat_desc *d)
{
    uint16_t layout, reserved;
    char *s = NULL;
    int ret;

    ret = get_u16(r, &layout, "layout");
    if (ret < 0) {
        return ret;
    }
    if (layout != VMIG__COMPAT_BIN_LAYOUT) {
        vmig__errf(r->err, r->errlen,
                   "descriptor layout %u is not supported (this build "
                   "reads layout %d)",
                   layout, VMIG__COMPAT_BIN_LAYOUT);
        return -EBADMSG;
    }
    if ((ret = get_u16(r, &reserved, "reserved")) < 0 ||
        (ret = get_u32(r, &d->vendor_id, "vendor-id")) < 0 ||
        (ret = get_u32(r, &d->device_type, "device-type")) < 0 ||
        (ret = get_u32(r, &d->generation, "generation")) < 0 ||
        (ret = get_u32(r, &d->mig_flags, "migration-flags")) < 0 ||
        (ret = get_u32(r, &d->compat_flags, "compat-flags")) < 0 ||
        (ret = get_u32(r, &d->stream_version, "stream-version")) < 0) {
        return ret;
    }
    if (reserved != 0) {
        vmig__errf(r->err, r->errlen, "reserved field is 0x%x, not 0",
                   reserved);
        return -EBADMSG;
    }
    ret = get_str(r, &s, VMIG_COMPAT_STR_MAX, 0, "vendor-version");
    if (ret < 0) {
        return ret;
    }
    d->vendor_version = s;
    ret = get_versions(r, &d->produced, &d->n_produced, "produced");
    if (ret < 0) {
        return ret;
    }
    ret = get_versions(r, &d->accepted, &d->n_accepted, "accepted");
    if (ret < 0) {
        return ret;
    }

    size_t n;
    ret = get_count(r, &n, 6, "known-bad");
    if (ret < 0) {
        return ret;
    }
    if (n > 0) {
        struct vmig_compat_bad *bad = calloc(n, sizeof(*bad));

        if (bad == NULL) {
            return -ENOMEM;
        }
        d->known_bad = bad;
        for (size_t i = 0; i < n; i++) {
            ret = get_u32(r, &bad[i].version, "known-bad version");
            if (ret < 0) {
                return ret;
            }
            ret = get_str(r, &s, VMIG_COMPAT_STR_MAX, 0, "known-bad reason");
            if (ret < 0) {
                return ret;
            }
            bad[i].reason = s;
            d->n_known_bad = i + 1;
        }
    }
    ret = get_count(r, &n, 5, "params");
    if (ret < 0) {
        return ret;
    }
    if (n > 0) {
        struct vmig_compat_kv *kv = calloc(n, sizeof(*kv));

        if (kv == NULL) {
            return -ENOMEM;
        }
        d->params = kv;
        for (size_t i = 0; i < n; i++) {
            d->n_params = i + 1;
            ret = get_str(r, &s, VMIG_COMPAT_KEY_MAX, 1, "params key");
            if (ret < 0) {
                return ret;
            }
            kv[i].key = s;
            ret = get_str(r, &s, VMIG_COMPAT_STR_MAX, 0, "params value");
            if (ret < 0) {
                return ret;
            }
            kv[i].value = s;
        }
    }
    if (r->off != r->len) {
        vmig__errf(r->err, r->errlen,
                   "%zu unexpected bytes after the "
                   "descriptor",
                   r->len - r->off);
        return -EBADMSG;
    }
    return 0;
}

int
vmig_compat_desc_from_bin(const void *buf, size_t len,
                          struct vmig_compat_desc **out, char *err,
                          size_t errlen)
{
    struct rbuf r = {.p = buf, .len = len, .err = err, .errlen = errlen};
    struct vmig_compat_desc *d;
    char verr[160];
    int ret;

    if ((buf == NULL && len > 0) || out == NULL) {
        return -EINVAL;
    }
    if (len > VMIG_COMPAT_BIN_MAX) {
        vmig__errf(err, errlen, "descriptor is %zu bytes, at most %d", len,
                   VMIG_COMPAT_BIN_MAX);
        return -E2BIG;
    }
    d = vmig__compat_alloc();
    if (d == NULL) {
        return -ENOMEM;
    }
    ret = decode(&r, d);
    if (ret == 0) {
        /* Semantic rules (duplicates, version 0, unknown flag bits). */
        ret = vmig_compat_desc_validate(d, verr, sizeof(verr));
        if (ret < 0) {
            vmig__errf(err, errlen, "%s", verr);
            ret = ret == -E2BIG ? -E2BIG : -EBADMSG;
        }
    }
    if (ret < 0) {
        vmig_compat_desc_free(d);
        return ret;
    }
    *out = d;
    return 0;
}

/* ------------------------------------------------------------ copy */

int
vmig_compat_desc_dup(const struct vmig_compat_desc *desc,
                     struct vmig_compat_desc **out)
{
    uint8_t *buf;
    int len, ret;

    if (out == NULL) {
        return -EINVAL;
    }
    len = vmig_compat_desc_to_bin(desc, NULL, 0);
    if (len < 0) {
        return len;
    }
    buf = malloc((size_t)len);
    if (buf == NULL) {
        return -ENOMEM;
    }
    ret = vmig_compat_desc_to_bin(desc, buf, (size_t)len);
    if (ret >= 0) {
        ret = vmig_compat_desc_from_bin(buf, (size_t)len, out, NULL, 0);
    }
    free(buf);
    return ret < 0 ? ret : 0;
}
