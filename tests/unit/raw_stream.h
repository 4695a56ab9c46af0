/* SPDX-License-Identifier: MIT */
/*
 * raw_stream.h - an independent envelope builder written from
 * docs/stream-format.md (not from lib/), so tests can craft streams that
 * are well-sealed but wrong in one specific way.
 */
#ifndef VMIG_TEST_RAW_STREAM_H
#define VMIG_TEST_RAW_STREAM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct raw {
    uint8_t *p;
    size_t len;
    size_t cap;
    XXH3_state_t *digest;
    uint64_t seq;
};

static inline void
raw_put(struct raw *r, const void *src, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = (r->len + n) * 2 + 256;
        uint8_t *np = realloc(r->p, cap);

        if (np == NULL) {
            abort();
        }
        r->p = np;
        r->cap = cap;
    }
    memcpy(r->p + r->len, src, n);
    r->len += n;
}

static inline void
raw_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline void
raw_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Stream header: "VMIGDEV" + @format, then the identity, then the check. */
static inline void
raw_header(struct raw *r, uint8_t format, uint32_t vendor, uint32_t type,
           uint32_t version, uint32_t flags)
{
    uint8_t h[32];

    memset(r, 0, sizeof(*r));
    r->digest = XXH3_createState();
    XXH3_64bits_reset_withSeed(r->digest, 0);
    memcpy(h, "VMIGDEV", 7);
    h[7] = format;
    raw_le32(h + 8, vendor);
    raw_le32(h + 12, type);
    raw_le32(h + 16, version);
    raw_le32(h + 20, flags);
    raw_le64(h + 24, XXH3_64bits_withSeed(h, 24, 0));
    XXH3_64bits_update(r->digest, h, 32);
    raw_put(r, h, 32);
}

/* A record with correct checks; @claim_len is what the header says
 * (normally @len). */
static inline void
raw_record_claim(struct raw *r, uint32_t type, uint32_t flags,
                 const void *payload, size_t len, uint64_t claim_len)
{
    uint8_t h[24], t[8];

    raw_le32(h, type);
    raw_le32(h + 4, flags);
    raw_le64(h + 8, claim_len);
    raw_le64(h + 16, XXH3_64bits_withSeed(h, 16, r->seq));
    raw_le64(t, XXH3_64bits_withSeed(payload, len, r->seq));
    raw_put(r, h, 24);
    if (len > 0) {
        raw_put(r, payload, len);
    }
    raw_put(r, t, 8);
    XXH3_64bits_update(r->digest, h, 24);
    XXH3_64bits_update(r->digest, t, 8);
    r->seq++;
}

static inline void
raw_record(struct raw *r, uint32_t type, uint32_t flags, const void *payload,
           size_t len)
{
    raw_record_claim(r, type, flags, payload, len, len);
}

/* END with the true values XOR'ed with the given deltas. */
static inline void
raw_end_bad(struct raw *r, uint64_t d_count, uint64_t d_bytes,
            uint64_t d_digest)
{
    uint8_t pl[24];
    uint64_t seq = r->seq;
    XXH3_state_t *d = r->digest;

    raw_le64(pl, seq ^ d_count);
    raw_le64(pl + 8, (uint64_t)r->len ^ d_bytes);
    raw_le64(pl + 16, XXH3_64bits_digest(d) ^ d_digest);
    raw_record(r, 2, 1, pl, sizeof(pl));
}

static inline void
raw_end(struct raw *r)
{
    raw_end_bad(r, 0, 0, 0);
}

static inline void
raw_free(struct raw *r)
{
    XXH3_freeState(r->digest);
    free(r->p);
    memset(r, 0, sizeof(*r));
}

#endif /* VMIG_TEST_RAW_STREAM_H */
