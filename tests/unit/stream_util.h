/* SPDX-License-Identifier: MIT */
/*
 * stream_util.h - a fake device for envelope tests: a lazy record source
 * (payload computed from a seed and the byte position, never stored) and
 * a staging sink whose committed "device state" only changes on commit.
 */
#ifndef VMIG_TEST_STREAM_UTIL_H
#define VMIG_TEST_STREAM_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <vmig/compat.h>
#include <vmig/stream.h>

struct fake_rec {
    uint32_t type;
    uint32_t flags;
    uint64_t len;
    uint64_t seed;
};

static inline uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Byte @pos of a record seeded @seed. */
static inline uint8_t
pattern_byte(uint64_t seed, uint64_t pos)
{
    uint64_t s = seed ^ (pos >> 3) * 0x100000001b3ull;

    return (uint8_t)(splitmix64(&s) >> (8 * (pos & 7)));
}

static inline void
pattern_fill(uint64_t seed, uint64_t pos, uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = pattern_byte(seed, pos + i);
    }
}

static inline uint64_t
pattern_hash(uint64_t seed, uint64_t len)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t buf[4096];
    uint64_t pos = 0, h;

    XXH3_64bits_reset(st);
    while (pos < len) {
        size_t c = len - pos < sizeof(buf) ? (size_t)(len - pos) : sizeof(buf);

        pattern_fill(seed, pos, buf, c);
        XXH3_64bits_update(st, buf, c);
        pos += c;
    }
    h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

struct fake_src {
    const struct fake_rec *recs;
    size_t n;
    size_t idx;        /* next record to describe */
    uint64_t off;      /* bytes of the current record already read */
    unsigned max_read; /* cap per read() call, 0 = none */
    uint64_t rng;      /* for random read sizes when max_read != 0 */
};

static inline int
fake_next(void *opaque, struct vmig_stream_record *rec)
{
    struct fake_src *s = opaque;

    if (s->idx == s->n) {
        return 0;
    }
    rec->type = s->recs[s->idx].type;
    rec->flags = s->recs[s->idx].flags;
    rec->len = s->recs[s->idx].len;
    s->idx++;
    s->off = 0;
    return 1;
}

static inline ssize_t
fake_read(void *opaque, void *buf, size_t n)
{
    struct fake_src *s = opaque;
    const struct fake_rec *r = &s->recs[s->idx - 1];

    if (s->max_read != 0) {
        size_t cap = 1 + (size_t)(splitmix64(&s->rng) % s->max_read);

        n = n < cap ? n : cap;
    }
    pattern_fill(r->seed, s->off, buf, n);
    s->off += n;
    return (ssize_t)n;
}

static const struct vmig_stream_source_ops fake_src_ops = {
    .next = fake_next,
    .read = fake_read,
};

#define FAKE_MAX_STAGED 256

struct staged {
    uint32_t type;
    uint32_t flags;
    uint64_t len;
    uint64_t hash;
};

/* The "device": staged records plus a committed state that only commit()
 * replaces. */
struct fake_sink {
    struct staged staged[FAKE_MAX_STAGED];
    size_t n_staged;
    uint64_t got; /* bytes of the open record */
    XXH3_state_t *h;
    struct staged committed[FAKE_MAX_STAGED];
    size_t n_committed;
    int commits;
    int aborts;
    int fail_begin_type; /* begin() refuses this type with -EIO */
};

static inline void
fake_sink_init(struct fake_sink *k)
{
    memset(k, 0, sizeof(*k));
    k->h = XXH3_createState();
    /* A recognisable prior device state. */
    k->committed[0].type = 0xdead;
    k->committed[0].len = 42;
    k->n_committed = 1;
}

static inline void
fake_sink_fini(struct fake_sink *k)
{
    XXH3_freeState(k->h);
}

static inline int
fake_sink_untouched(const struct fake_sink *k)
{
    return k->commits == 0 && k->n_committed == 1 &&
           k->committed[0].type == 0xdead && k->committed[0].len == 42;
}

static inline int
sink_begin(void *opaque, const struct vmig_stream_record *rec)
{
    struct fake_sink *k = opaque;

    if (k->n_staged == FAKE_MAX_STAGED) {
        return -E2BIG;
    }
    if (k->fail_begin_type != 0 && rec->type == (uint32_t)k->fail_begin_type) {
        return -EIO;
    }
    k->staged[k->n_staged].type = rec->type;
    k->staged[k->n_staged].flags = rec->flags;
    k->staged[k->n_staged].len = rec->len;
    k->got = 0;
    XXH3_64bits_reset(k->h);
    return 0;
}

static inline int
sink_data(void *opaque, const void *buf, size_t n)
{
    struct fake_sink *k = opaque;

    XXH3_64bits_update(k->h, buf, n);
    k->got += n;
    return 0;
}

static inline int
sink_end(void *opaque, const struct vmig_stream_record *rec)
{
    struct fake_sink *k = opaque;

    if (k->got != rec->len) {
        return -EINVAL;
    }
    k->staged[k->n_staged].hash = XXH3_64bits_digest(k->h);
    k->n_staged++;
    return 0;
}

static inline int
sink_commit(void *opaque)
{
    struct fake_sink *k = opaque;

    memcpy(k->committed, k->staged, sizeof(k->staged));
    k->n_committed = k->n_staged;
    k->commits++;
    return 0;
}

static inline void
sink_abort(void *opaque)
{
    struct fake_sink *k = opaque;

    k->n_staged = 0;
    k->aborts++;
}

static const struct vmig_stream_sink_ops fake_sink_ops = {
    .begin = sink_begin,
    .data = sink_data,
    .end = sink_end,
    .commit = sink_commit,
    .abort = sink_abort,
};

/* A descriptor shaped like hisi_acc's, with a known-bad version 1. */
static const uint32_t test_produced[] = {2};
static const uint32_t test_accepted[] = {2};
static const struct vmig_compat_bad test_bad[] = {
    {1, "EQ/AEQ addresses saved wrongly"},
};
static const struct vmig_compat_kv test_params[] = {
    {"qp-count", "64"},
    {"isolation", "shared"},
};
static const struct vmig_compat_desc test_desc = {
    .vendor_id = VMIG_VENDOR_PCI(0x19e5),
    .device_type = 0xa255,
    .generation = 2,
    .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
    .stream_version = 2,
    .vendor_version = "hisi-acc 2.0 fw 1.7",
    .produced = test_produced,
    .n_produced = 1,
    .accepted = test_accepted,
    .n_accepted = 1,
    .known_bad = test_bad,
    .n_known_bad = 1,
    .params = test_params,
    .n_params = 2,
};

/* Device record types the test device knows. */
#define T_CONFIG 0x100u
#define T_QUEUES 0x200u
#define T_RAM 0x300u
#define T_OPTIONAL_NEW 0x250u /* unknown to the loader, optional */

static const struct vmig_stream_rule test_rules[] = {
    {T_CONFIG, VMIG_RULE_REQUIRED, 0},
    {T_QUEUES, VMIG_RULE_MULTI, 0},
    {T_RAM, VMIG_RULE_MULTI, 0},
};

/* Write a whole stream into a malloc'ed buffer. */
static inline int
produce_all(const struct vmig_compat_desc *desc, uint32_t version,
            const struct fake_rec *recs, size_t n, uint8_t **out,
            size_t *out_len)
{
    struct fake_src src = {.recs = recs, .n = n};
    struct vmig_stream_writer *w;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    ssize_t got;
    int ret;

    ret = vmig_stream_writer_new(NULL, desc, version, &fake_src_ops, &src, &w);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    for (;;) {
        if (cap - len < 4096) {
            uint8_t *nb = realloc(buf, cap * 2);

            if (nb == NULL) {
                got = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        got = vmig_stream_writer_read(w, buf + len, cap - len);
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    vmig_stream_writer_free(w);
    if (got < 0) {
        free(buf);
        return (int)got;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

#endif /* VMIG_TEST_STREAM_UTIL_H */
