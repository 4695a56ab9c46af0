/* SPDX-License-Identifier: MIT */
/*
 * test_stream_golden.c - tests/data/stream-v1.bin, a format-1 envelope
 * written once by this program (`test_stream_golden --write FILE`) and
 * committed.  Every future vmig must keep loading it with exactly these
 * contents (QEMU's old->new migration-compat idea).  While format 1 is the
 * current format, today's writer must also reproduce it byte for byte.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/stream.h>

#define GOLDEN VMIG_TEST_DATA "/stream-v1.bin"

/* The golden device: frozen here, independent of other tests. */
static const uint32_t g_produced[] = {1, 2};
static const uint32_t g_accepted[] = {2};
static const struct vmig_compat_bad g_bad[] = {
    {1, "EQ/AEQ addresses saved wrongly"},
};
static const struct vmig_compat_kv g_params[] = {
    {"qp-count", "16"},
    {"isolation", "none"},
};
static const struct vmig_compat_desc g_desc = {
    .vendor_id = VMIG_VENDOR_PCI(0x19e5),
    .device_type = 0xa256,
    .generation = 3,
    .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
    .compat_flags = VMIG_COMPATF_ACCEPT_OLDER_GEN,
    .stream_version = 2,
    .vendor_version = "golden-device 1.0",
    .produced = g_produced,
    .n_produced = 2,
    .accepted = g_accepted,
    .n_accepted = 1,
    .known_bad = g_bad,
    .n_known_bad = 1,
    .params = g_params,
    .n_params = 2,
};

struct g_rec {
    uint32_t type;
    uint32_t flags;
    uint32_t len;
};

/* 0x280 is optional and unknown to the golden loader: skipped. */
static const struct g_rec g_recs[] = {
    {0x100, VMIG_RECF_MANDATORY, 64},
    {0x200, VMIG_RECF_MULTI, 0},
    {0x200, VMIG_RECF_MULTI, 1000},
    {0x200, VMIG_RECF_MULTI, 5000},
    {0x280, 0, 16},
    {0x300, VMIG_RECF_MULTI | VMIG_RECF_MANDATORY, 7000},
};
#define N_RECS (sizeof(g_recs) / sizeof(g_recs[0]))

static const struct vmig_stream_rule g_rules[] = {
    {0x100, VMIG_RULE_REQUIRED, 64},
    {0x200, VMIG_RULE_MULTI, 0},
    {0x300, VMIG_RULE_MULTI | VMIG_RULE_REQUIRED, 0},
};

static uint8_t
g_byte(size_t rec, uint64_t i)
{
    return (uint8_t)(i * 7 + rec * 37 + (i >> 8));
}

struct g_src {
    size_t idx;
    uint64_t off;
};

static int
g_next(void *opaque, struct vmig_stream_record *rec)
{
    struct g_src *s = opaque;

    if (s->idx == N_RECS) {
        return 0;
    }
    rec->type = g_recs[s->idx].type;
    rec->flags = g_recs[s->idx].flags;
    rec->len = g_recs[s->idx].len;
    s->idx++;
    s->off = 0;
    return 1;
}

static ssize_t
g_read(void *opaque, void *buf, size_t n)
{
    struct g_src *s = opaque;
    uint8_t *p = buf;

    for (size_t i = 0; i < n; i++) {
        p[i] = g_byte(s->idx - 1, s->off + i);
    }
    s->off += n;
    return (ssize_t)n;
}

static const struct vmig_stream_source_ops g_ops = {g_next, g_read};

static int
produce(uint8_t **out, size_t *len)
{
    struct g_src src = {0};
    struct vmig_stream_writer *w;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    ssize_t got;
    int ret;

    *len = 0;
    ret = vmig_stream_writer_new(NULL, &g_desc, 2, &g_ops, &src, &w);
    if (ret < 0 || buf == NULL) {
        free(buf);
        return ret < 0 ? ret : -ENOMEM;
    }
    while ((got = vmig_stream_writer_read(w, buf + *len, 777)) > 0) {
        *len += (size_t)got;
    }
    vmig_stream_writer_free(w);
    *out = buf;
    return (int)got;
}

static uint8_t *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;

    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* The device: one buffer per delivered record, committed as a whole. */
struct g_sink {
    uint32_t type[N_RECS];
    uint8_t *data[N_RECS];
    uint64_t len[N_RECS];
    size_t n;
    int commits;
    int aborts;
};

static int
s_begin(void *opaque, const struct vmig_stream_record *rec)
{
    struct g_sink *k = opaque;

    if (k->n == N_RECS) {
        return -E2BIG;
    }
    k->type[k->n] = rec->type;
    k->data[k->n] = malloc(rec->len ? rec->len : 1);
    k->len[k->n] = 0;
    return 0;
}

static int
s_data(void *opaque, const void *buf, size_t n)
{
    struct g_sink *k = opaque;

    memcpy(k->data[k->n] + k->len[k->n], buf, n);
    k->len[k->n] += n;
    return 0;
}

static int
s_end(void *opaque, const struct vmig_stream_record *rec)
{
    struct g_sink *k = opaque;

    (void)rec;
    k->n++;
    return 0;
}

static int
s_commit(void *opaque)
{
    ((struct g_sink *)opaque)->commits++;
    return 0;
}

static void
s_abort(void *opaque)
{
    ((struct g_sink *)opaque)->aborts++;
}

static const struct vmig_stream_sink_ops s_ops = {s_begin, s_data, s_end,
                                                  s_commit, s_abort};

static void
load_golden(const struct vmig_compat_desc *local, struct g_sink *k,
            struct vmig_stream_info *info)
{
    struct vmig_stream_loader_cfg cfg = {
        .local = local,
        .rules = g_rules,
        .n_rules = 3,
        .sink = &s_ops,
        .sink_opaque = k,
    };
    struct vmig_stream_loader *l;
    size_t len = 0;
    uint8_t *buf = read_file(GOLDEN, &len);

    assert_non_null(buf);
    memset(k, 0, sizeof(*k));
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    for (size_t off = 0; off < len; off += 100) {
        size_t c = len - off < 100 ? len - off : 100;

        assert_int_equal(vmig_stream_loader_write(l, buf + off, c), 0);
    }
    assert_int_equal(vmig_stream_loader_finish(l), 0);
    vmig_stream_loader_info(l, info);
    vmig_stream_loader_free(l);
    free(buf);
}

static void
g_sink_free(struct g_sink *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->data[i]);
    }
}

static void
test_golden_loads(void **state)
{
    struct vmig_stream_info info;
    struct g_sink k;
    size_t want = 0;

    (void)state;
    load_golden(&g_desc, &k, &info);
    assert_int_equal(k.commits, 1);
    assert_int_equal(k.aborts, 0);
    assert_int_equal(info.format, 1);
    assert_int_equal(info.vendor_id, 0x800019e5);
    assert_int_equal(info.device_type, 0xa256);
    assert_int_equal(info.stream_version, 2);
    assert_int_equal(info.records, N_RECS + 2);
    assert_true(info.end_seen);
    assert_int_equal(k.n, N_RECS - 1); /* 0x280 skipped */
    for (size_t i = 0; i < N_RECS; i++) {
        if (g_recs[i].type == 0x280) {
            continue;
        }
        assert_int_equal(k.type[want], g_recs[i].type);
        assert_int_equal(k.len[want], g_recs[i].len);
        for (uint64_t b = 0; b < g_recs[i].len; b++) {
            if (k.data[want][b] != g_byte(i, b)) {
                fail_msg("record %zu byte %llu differs", i,
                         (unsigned long long)b);
            }
        }
        want++;
    }
    g_sink_free(&k);
}

/* Inspection mode sees every record, the unknown optional one included. */
static void
test_golden_inspect(void **state)
{
    struct vmig_stream_info info;
    struct g_sink k;

    (void)state;
    load_golden(NULL, &k, &info);
    assert_int_equal(k.n, N_RECS);
    assert_int_equal(k.type[4], 0x280);
    for (uint64_t b = 0; b < 16; b++) {
        assert_int_equal(k.data[4][b], g_byte(4, b));
    }
    g_sink_free(&k);
}

/* Format 1 is current: today's writer reproduces the file exactly. */
static void
test_golden_writer_stable(void **state)
{
    uint8_t *now, *file;
    size_t now_len = 0, file_len = 0;

    (void)state;
    assert_int_equal(produce(&now, &now_len), 0);
    file = read_file(GOLDEN, &file_len);
    assert_non_null(file);
    assert_int_equal(now_len, file_len);
    assert_memory_equal(now, file, file_len);
    free(now);
    free(file);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_loads),
        cmocka_unit_test(test_golden_inspect),
        cmocka_unit_test(test_golden_writer_stable),
    };

    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        uint8_t *buf;
        size_t len;
        FILE *f;

        if (produce(&buf, &len) < 0 || (f = fopen(argv[2], "wb")) == NULL) {
            return 1;
        }
        fwrite(buf, 1, len, f);
        fclose(f);
        free(buf);
        printf("wrote %zu bytes to %s\n", len, argv[2]);
        return 0;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
