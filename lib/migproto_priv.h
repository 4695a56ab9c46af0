/* SPDX-License-Identifier: MIT */
/*
 * migproto_priv.h - little-endian cursors shared by the migration stream's
 * codecs (migproto*.c).  A cursor records the first error and turns every
 * later access into a no-op, so a parser checks once at the end.
 */
#ifndef VMIG_MIGPROTO_PRIV_H
#define VMIG_MIGPROTO_PRIV_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <vmig/byteorder.h>

struct mp_w {
    uint8_t *p;
    size_t len;
    size_t cap;
    int err; /* 0 or -E2BIG */
};

struct mp_r {
    const uint8_t *p;
    size_t len;
    size_t off;
    int err; /* 0 or -EBADMSG */
};

static inline void
mp_w_bytes(struct mp_w *w, const void *src, size_t n)
{
    if (w->err != 0) {
        return;
    }
    if (n > w->cap - w->len) {
        w->err = -E2BIG;
        return;
    }
    if (n > 0) {
        memcpy(w->p + w->len, src, n);
    }
    w->len += n;
}

static inline void
mp_w_u8(struct mp_w *w, uint8_t v)
{
    mp_w_bytes(w, &v, 1);
}

static inline void
mp_w_u16(struct mp_w *w, uint16_t v)
{
    uint8_t b[2];

    vmig_put_le16(b, v);
    mp_w_bytes(w, b, 2);
}

static inline void
mp_w_u32(struct mp_w *w, uint32_t v)
{
    uint8_t b[4];

    vmig_put_le32(b, v);
    mp_w_bytes(w, b, 4);
}

static inline void
mp_w_u64(struct mp_w *w, uint64_t v)
{
    uint8_t b[8];

    vmig_put_le64(b, v);
    mp_w_bytes(w, b, 8);
}

static inline const uint8_t *
mp_r_bytes(struct mp_r *r, size_t n)
{
    const uint8_t *p;

    if (r->err != 0 || n > r->len - r->off) {
        r->err = -EBADMSG;
        return NULL;
    }
    p = r->p + r->off;
    r->off += n;
    return p;
}

static inline uint8_t
mp_r_u8(struct mp_r *r)
{
    const uint8_t *p = mp_r_bytes(r, 1);

    return p == NULL ? 0 : p[0];
}

static inline uint16_t
mp_r_u16(struct mp_r *r)
{
    const uint8_t *p = mp_r_bytes(r, 2);

    return p == NULL ? 0 : vmig_get_le16(p);
}

static inline uint32_t
mp_r_u32(struct mp_r *r)
{
    const uint8_t *p = mp_r_bytes(r, 4);

    return p == NULL ? 0 : vmig_get_le32(p);
}

static inline uint64_t
mp_r_u64(struct mp_r *r)
{
    const uint8_t *p = mp_r_bytes(r, 8);

    return p == NULL ? 0 : vmig_get_le64(p);
}

/* A string: u16 length, then the bytes (no terminator). */
static inline void
mp_w_str(struct mp_w *w, const char *s)
{
    size_t n = strlen(s);

    mp_w_u16(w, (uint16_t)n);
    mp_w_bytes(w, s, n);
}

/*
 * Read a string into @out (@cap bytes, NUL-terminated).  Return 0,
 * -EBADMSG (truncated) or -E2BIG (longer than @cap - 1).
 */
static inline int
mp_r_str(struct mp_r *r, char *out, size_t cap)
{
    uint16_t n = mp_r_u16(r);
    const uint8_t *p;

    if (r->err != 0) {
        return r->err;
    }
    if (n >= cap) {
        return -E2BIG;
    }
    p = mp_r_bytes(r, n);
    if (p == NULL) {
        return -EBADMSG;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* The parse consumed everything and met no error. */
static inline int
mp_r_done(const struct mp_r *r)
{
    if (r->err != 0) {
        return r->err;
    }
    return r->off == r->len ? 0 : -EBADMSG;
}

/*
 * The two parts of @m's payload as vmig_mp_send_msg() sends them: the
 * encoded fixed part into @head (@cap bytes; the length is returned, or
 * -errno) and the variable data a frame type carries after it (@tail:
 * not copied; {NULL, 0} when none).  migproto_msg.c.
 */
int vmig__mp_msg_parts(const struct vmig_mp_msg *m, uint8_t *head, size_t cap,
                       struct vmig_mp_data *tail);

#endif /* VMIG_MIGPROTO_PRIV_H */
