/* SPDX-License-Identifier: MIT */
/*
 * test_stream.c - envelope round trips (property test over random record
 * sizes and random read/write split points) and every refusal class: each
 * gives its errno, its class, a message naming the problem, and leaves the
 * device's committed state untouched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "unit/raw_stream.h"
#include "unit/stream_util.h"

/* ------------------------------------------------------------ helpers */

/* Load @buf split into random pieces (or one piece when @rng is NULL). */
static int
load(const struct vmig_compat_desc *local, const uint8_t *buf, size_t len,
     uint64_t *rng, struct fake_sink *k, enum vmig_stream_err *kind, char *msg,
     size_t msglen)
{
    struct vmig_stream_loader_cfg cfg = {
        .local = local,
        .rules = test_rules,
        .n_rules = sizeof(test_rules) / sizeof(test_rules[0]),
        .sink = &fake_sink_ops,
        .sink_opaque = k,
    };
    struct vmig_stream_loader *l;
    size_t off = 0;
    int ret;

    ret = vmig_stream_loader_new(NULL, &cfg, &l);
    assert_int_equal(ret, 0);
    while (off < len) {
        size_t c = len - off;

        if (rng != NULL) {
            uint64_t pick = splitmix64(rng) % 4;
            size_t cap = pick == 0   ? 1
                         : pick == 1 ? 13
                         : pick == 2 ? 700
                                     : 70000;

            c = 1 + (size_t)(splitmix64(rng) % cap);
            c = c < len - off ? c : len - off;
        }
        ret = vmig_stream_loader_write(l, buf + off, c);
        if (ret < 0) {
            break;
        }
        off += c;
    }
    if (ret == 0) {
        ret = vmig_stream_loader_finish(l);
    }
    snprintf(msg, msglen, "%s", vmig_stream_loader_error(l, kind));
    vmig_stream_loader_free(l);
    return ret;
}

static void
expect_refused(const struct vmig_compat_desc *local, const struct raw *r,
               int err, enum vmig_stream_err kind, const char *substr)
{
    struct fake_sink k;
    enum vmig_stream_err got_kind;
    char msg[512];
    int ret;

    /* One piece, then byte by byte: the verdict must not depend on the
     * segmentation. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t rng = 99;

        fake_sink_init(&k);
        ret = load(local, r->p, r->len, pass ? &rng : NULL, &k, &got_kind, msg,
                   sizeof(msg));
        if (ret != err || got_kind != kind || strstr(msg, substr) == NULL) {
            print_error("got %d (%s) \"%s\", want %d (%s) \"%s\"\n", ret,
                        vmig_stream_err_name(got_kind), msg, err,
                        vmig_stream_err_name(kind), substr);
        }
        assert_int_equal(ret, err);
        assert_int_equal(got_kind, kind);
        assert_non_null(strstr(msg, substr));
        assert_true(fake_sink_untouched(&k));
        assert_int_equal(k.aborts, 1);
        fake_sink_fini(&k);
    }
}

static uint8_t desc_bin[1024];
static size_t desc_len;

static void
good_prefix(struct raw *r, uint32_t version)
{
    raw_header(r, 1, test_desc.vendor_id, test_desc.device_type, version, 0);
    raw_record(r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin, desc_len);
}

static const uint8_t cfg_payload[] = "config-space";

static void
good_stream(struct raw *r)
{
    good_prefix(r, 2);
    raw_record(r, T_CONFIG, VMIG_RECF_MANDATORY, cfg_payload,
               sizeof(cfg_payload));
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "q0", 2);
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "q1", 2);
    raw_end(r);
}

static int
setup(void **state)
{
    int n = vmig_compat_desc_to_bin(&test_desc, desc_bin, sizeof(desc_bin));

    (void)state;
    assert_true(n > 0 && (size_t)n <= sizeof(desc_bin));
    desc_len = (size_t)n;
    return 0;
}

/* ------------------------------------------------------------ round trips */

static void
test_raw_builder_agrees(void **state)
{
    struct raw r;
    struct fake_sink k;
    enum vmig_stream_err kind;
    char msg[256];

    (void)state;
    good_stream(&r);
    fake_sink_init(&k);
    assert_int_equal(
        load(&test_desc, r.p, r.len, NULL, &k, &kind, msg, sizeof(msg)), 0);
    assert_int_equal(k.commits, 1);
    assert_int_equal(k.aborts, 0);
    assert_int_equal(k.n_committed, 3);
    assert_int_equal(k.committed[0].type, T_CONFIG);
    assert_int_equal(k.committed[0].len, sizeof(cfg_payload));
    assert_true(k.committed[0].hash ==
                XXH3_64bits(cfg_payload, sizeof(cfg_payload)));
    fake_sink_fini(&k);
    raw_free(&r);
}

/* Random records, random writer buffer sizes, random device read sizes,
 * random loader write sizes: the bytes never depend on the splits and the
 * device always stages exactly what the source had. */
static void
test_roundtrip_property(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        struct fake_rec recs[24];
        size_t n = 0;
        uint64_t rng = seed * 7919;
        uint8_t *ref = NULL;
        size_t ref_len = 0;

        recs[n++] = (struct fake_rec){T_CONFIG, VMIG_RECF_MANDATORY,
                                      splitmix64(&rng) % 300, seed};
        for (int t = 0; t < 2; t++) {
            size_t cnt = (size_t)(splitmix64(&rng) % 8);

            for (size_t i = 0; i < cnt; i++) {
                uint64_t kind = splitmix64(&rng) % 5;
                uint64_t len = kind == 0   ? 0
                               : kind == 1 ? 1 + splitmix64(&rng) % 16
                               : kind == 2 ? splitmix64(&rng) % 5000
                               : kind == 3 ? splitmix64(&rng) % 70000
                                           : splitmix64(&rng) % 400000;

                recs[n] =
                    (struct fake_rec){t ? T_RAM : T_QUEUES,
                                      VMIG_RECF_MULTI | (uint32_t)(kind & 1),
                                      len, seed * 100 + n};
                n++;
            }
        }
        /* Unsplit reference bytes. */
        assert_int_equal(produce_all(&test_desc, 0, recs, n, &ref, &ref_len),
                         0);

        struct fake_src src = {.recs = recs,
                               .n = n,
                               .rng = seed,
                               .max_read = 1 + (unsigned)(seed % 5) * 3000};
        struct vmig_stream_writer *w;
        struct vmig_stream_loader *l;
        struct fake_sink k;
        struct vmig_stream_loader_cfg cfg = {
            .local = &test_desc,
            .rules = test_rules,
            .n_rules = 3,
            .sink = &fake_sink_ops,
            .sink_opaque = &k,
        };
        uint8_t buf[9000];
        size_t total = 0;
        ssize_t got;

        fake_sink_init(&k);
        assert_int_equal(vmig_stream_writer_new(NULL, &test_desc, 0,
                                                &fake_src_ops, &src, &w),
                         0);
        assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
        for (;;) {
            size_t want = 1 + (size_t)(splitmix64(&rng) %
                                       (seed % 3 == 0 ? 7 : sizeof(buf)));

            got = vmig_stream_writer_read(w, buf, want);
            assert_true(got >= 0);
            if (got == 0) {
                break;
            }
            assert_true((size_t)got <= want);
            assert_memory_equal(buf, ref + total, (size_t)got);
            /* Re-split what the writer gave before loading it. */
            for (size_t off = 0; off < (size_t)got;) {
                size_t c = 1 + (size_t)(splitmix64(&rng) % 5000);

                c = c < (size_t)got - off ? c : (size_t)got - off;
                assert_int_equal(vmig_stream_loader_write(l, buf + off, c), 0);
                off += c;
            }
            total += (size_t)got;
        }
        assert_int_equal(total, ref_len);
        assert_int_equal(vmig_stream_writer_offset(w), ref_len);
        assert_int_equal(vmig_stream_loader_compat_state(l), 1);
        assert_int_equal(k.commits, 0); /* nothing before finish */
        assert_int_equal(vmig_stream_loader_finish(l), 0);
        assert_int_equal(k.commits, 1);
        assert_int_equal(k.aborts, 0);
        assert_int_equal(k.n_committed, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(k.committed[i].type, recs[i].type);
            assert_int_equal(k.committed[i].len, recs[i].len);
            assert_true(k.committed[i].hash ==
                        pattern_hash(recs[i].seed, recs[i].len));
        }
        struct vmig_stream_info info;

        vmig_stream_loader_info(l, &info);
        assert_true(info.end_seen);
        assert_int_equal(info.records, n + 2);
        assert_int_equal(info.offset, ref_len);
        assert_int_equal(info.stream_version, 2);
        vmig_stream_loader_free(l);
        assert_int_equal(k.aborts, 0);
        vmig_stream_writer_free(w);
        fake_sink_fini(&k);
        free(ref);
    }
}

/* The compatibility part is complete, and judged, as soon as the header
 * and DESCRIPTOR arrived: a destination can answer during PRE_COPY. */
static void
test_compat_part_first(void **state)
{
    struct fake_rec recs[] = {{T_CONFIG, VMIG_RECF_MANDATORY, 100000, 5}};
    struct vmig_stream_loader_cfg cfg = {
        .local = &test_desc, .rules = test_rules, .n_rules = 3};
    struct fake_src src = {.recs = recs, .n = 1};
    struct vmig_stream_writer *w;
    struct vmig_stream_loader *l;
    uint8_t buf[4096];
    size_t compat;

    (void)state;
    assert_int_equal(
        vmig_stream_writer_new(NULL, &test_desc, 0, &fake_src_ops, &src, &w),
        0);
    compat = vmig_stream_writer_compat_size(w);
    assert_true(compat < sizeof(buf));
    assert_int_equal(vmig_stream_writer_read(w, buf, compat), (ssize_t)compat);
    assert_int_equal(src.idx, 0); /* the device was not asked for state */
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    assert_int_equal(vmig_stream_loader_write(l, buf, compat - 1), 0);
    assert_int_equal(vmig_stream_loader_compat_state(l), 0);
    assert_null(vmig_stream_loader_source(l));
    assert_int_equal(vmig_stream_loader_write(l, buf + compat - 1, 1), 0);
    assert_int_equal(vmig_stream_loader_compat_state(l), 1);
    assert_non_null(vmig_stream_loader_source(l));
    assert_string_equal(vmig_stream_loader_source(l)->vendor_version,
                        "hisi-acc 2.0 fw 1.7");
    vmig_stream_loader_free(l);
    vmig_stream_writer_free(w);
}

/* PRE_COPY: the device may have nothing now (-EAGAIN) and more later. */
static int eagain_next_calls;

static int
eagain_next(void *opaque, struct vmig_stream_record *rec)
{
    if (eagain_next_calls++ % 3 != 2) {
        return -EAGAIN;
    }
    return fake_next(opaque, rec);
}

static void
test_writer_eagain(void **state)
{
    static const struct vmig_stream_source_ops ops = {eagain_next, fake_read};
    struct fake_rec recs[] = {{T_CONFIG, VMIG_RECF_MANDATORY, 10, 1},
                              {T_RAM, VMIG_RECF_MULTI, 10, 2}};
    struct fake_src src = {.recs = recs, .n = 2};
    struct vmig_stream_writer *w;
    uint8_t *ref = NULL, buf[1 << 12];
    size_t ref_len = 0, total = 0;
    int eagains = 0;

    (void)state;
    assert_int_equal(produce_all(&test_desc, 0, recs, 2, &ref, &ref_len), 0);
    assert_int_equal(
        vmig_stream_writer_new(NULL, &test_desc, 0, &ops, &src, &w), 0);
    for (int i = 0; i < 100; i++) {
        ssize_t got = vmig_stream_writer_read(w, buf, sizeof(buf));

        if (got == -EAGAIN) {
            eagains++;
            continue;
        }
        assert_true(got >= 0);
        if (got == 0) {
            break;
        }
        assert_memory_equal(buf, ref + total, (size_t)got);
        total += (size_t)got;
    }
    assert_int_equal(total, ref_len);
    assert_true(eagains >= 2);
    vmig_stream_writer_free(w);
    free(ref);
}

/* The writer refuses to emit what a loader must refuse. */
static void
test_writer_rules(void **state)
{
    struct fake_rec order[] = {{T_RAM, 0, 1, 1}, {T_CONFIG, 0, 1, 1}};
    struct fake_rec dup[] = {{T_CONFIG, 0, 1, 1}, {T_CONFIG, 0, 1, 1}};
    struct fake_rec low[] = {{0x20, 0, 1, 1}};
    struct fake_rec flags[] = {{T_CONFIG, 0x80, 1, 1}};
    uint8_t *out;
    size_t len;

    (void)state;
    assert_int_equal(produce_all(&test_desc, 0, order, 2, &out, &len), -EINVAL);
    assert_int_equal(produce_all(&test_desc, 0, dup, 2, &out, &len), -EINVAL);
    assert_int_equal(produce_all(&test_desc, 0, low, 1, &out, &len), -EINVAL);
    assert_int_equal(produce_all(&test_desc, 0, flags, 1, &out, &len), -EINVAL);
    /* A version the device does not produce. */
    assert_int_equal(produce_all(&test_desc, 7, low, 0, &out, &len), -EINVAL);
}

/* ------------------------------------------------------------ refusals */

static void
test_bad_magic(void **state)
{
    struct raw r;

    (void)state;
    good_stream(&r);
    memcpy(r.p, "QEVMDEV", 7);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_MAGIC,
                   "not a vmig device-state stream");
    raw_free(&r);
}

static void
test_unknown_format(void **state)
{
    struct raw r;

    (void)state;
    raw_header(&r, 2, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin,
               desc_len);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_FORMAT,
                   "stream format version 2 is not supported");
    raw_free(&r);
}

static void
test_header_checksum(void **state)
{
    struct raw r;

    (void)state;
    good_stream(&r);
    r.p[9] ^= 0x01; /* vendor id */
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_HEADER_CSUM,
                   "stream header checksum mismatch");
    raw_free(&r);
}

static void
test_header_flags(void **state)
{
    struct raw r;

    (void)state;
    raw_header(&r, 1, test_desc.vendor_id, test_desc.device_type, 2, 4);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_FLAGS,
                   "stream header flags 0x4");
    raw_free(&r);
}

/* A version fixed after a bug must refuse the buggy one, naming
 * the version and the reason. */
static void
test_known_bad_version(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_KNOWN_BAD,
                   "stream version 1 is known bad: EQ/AEQ addresses saved "
                   "wrongly; refusing");
    raw_free(&r);
}

static void
test_unaccepted_version(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 3);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_VERSION,
                   "stream version 3 is not accepted by this device");
    raw_free(&r);
}

static void
test_identity_mismatch(void **state)
{
    struct vmig_compat_desc other = test_desc;
    uint8_t bin[1024];
    struct raw r;
    int n;

    (void)state;
    other.vendor_id = VMIG_VENDOR_PCI(0x8086);
    n = vmig_compat_desc_to_bin(&other, bin, sizeof(bin));
    assert_true(n > 0);
    raw_header(&r, 1, other.vendor_id, other.device_type, 2, 0);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, bin, (size_t)n);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_INCOMPATIBLE,
                   "source vendor PCI 0x8086 differs from destination vendor "
                   "PCI 0x19e5");
    raw_free(&r);

    /* Same device, different resources (hisi's vf_qm_check_match). */
    struct vmig_compat_kv params[] = {{"qp-count", "32"},
                                      {"isolation", "shared"}};
    other = test_desc;
    other.params = params;
    n = vmig_compat_desc_to_bin(&other, bin, sizeof(bin));
    assert_true(n > 0);
    raw_header(&r, 1, other.vendor_id, other.device_type, 2, 0);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, bin, (size_t)n);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_INCOMPATIBLE,
                   "resource parameter qp-count differs: source \"32\", "
                   "destination \"64\"");
    raw_free(&r);
}

static void
test_descriptor_contradicts_header(void **state)
{
    struct raw r;

    (void)state;
    raw_header(&r, 1, test_desc.vendor_id, 0x1234, 2, 0);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin,
               desc_len);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_DESCRIPTOR,
                   "contradicts the stream header");
    raw_free(&r);
}

static void
test_descriptor_missing_or_malformed(void **state)
{
    struct raw r;

    (void)state;
    raw_header(&r, 1, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "x", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_DESCRIPTOR,
                   "must start with the mandatory DESCRIPTOR record");
    raw_free(&r);

    raw_header(&r, 1, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin,
               desc_len - 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_DESCRIPTOR,
                   "DESCRIPTOR record is malformed: descriptor truncated");
    raw_free(&r);

    good_prefix(&r, 2);
    raw_record(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin,
               desc_len);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_DUPLICATE,
                   "a second DESCRIPTOR record");
    raw_free(&r);
}

static void
test_record_header_checksum(void **state)
{
    struct raw r;
    size_t at;

    (void)state;
    good_stream(&r);
    at = 32 + 24 + desc_len + 8; /* first device record header */
    r.p[at + 8] ^= 0x40;         /* its length */
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_RECORD_CSUM,
                   "record 1: header checksum mismatch");
    raw_free(&r);
}

static void
test_payload_checksum(void **state)
{
    struct raw r;
    size_t at;

    (void)state;
    good_stream(&r);
    at = 32 + 24 + desc_len + 8 + 24 + 3; /* inside cfg_payload */
    r.p[at] ^= 0x01;
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_PAYLOAD_CSUM,
                   "record 1 (type 0x100, 13 bytes): payload checksum "
                   "mismatch");
    raw_free(&r);
}

/* Records swapped whole, each intact: the per-position seed catches it. */
static void
test_records_moved(void **state)
{
    struct raw a;
    size_t rec_a, rec_len;
    uint8_t tmp[64];

    (void)state;
    good_prefix(&a, 2);
    raw_record(&a, T_CONFIG, VMIG_RECF_MANDATORY, "AAAA", 4);
    raw_record(&a, T_QUEUES, VMIG_RECF_MULTI, "BBBB", 4);
    raw_record(&a, T_QUEUES, VMIG_RECF_MULTI, "CCCC", 4);
    raw_end(&a);
    rec_len = 24 + 4 + 8;
    rec_a = 32 + 24 + desc_len + 8 + rec_len; /* first T_QUEUES */
    memcpy(tmp, a.p + rec_a, rec_len);
    memmove(a.p + rec_a, a.p + rec_a + rec_len, rec_len);
    memcpy(a.p + rec_a + rec_len, tmp, rec_len);
    expect_refused(&test_desc, &a, -EBADMSG, VMIG_STREAM_E_RECORD_CSUM,
                   "record 2: header checksum mismatch");
    raw_free(&a);
}

static void
test_too_big(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    /* A header claiming 1 TiB, followed by 4 bytes: refused at once. */
    raw_record_claim(&r, T_CONFIG, VMIG_RECF_MANDATORY, "abcd", 4, 1ull << 40);
    expect_refused(&test_desc, &r, -E2BIG, VMIG_STREAM_E_TOO_BIG,
                   "claims 1099511627776 payload bytes, over the limit of "
                   "1073741824");
    raw_free(&r);

    raw_header(&r, 1, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record_claim(&r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, "", 0,
                     1ull << 20);
    expect_refused(&test_desc, &r, -E2BIG, VMIG_STREAM_E_TOO_BIG,
                   "DESCRIPTOR record claims 1048576 bytes");
    raw_free(&r);
}

static void
test_out_of_order(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_QUEUES, VMIG_RECF_MULTI, "q", 1);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_ORDER,
                   "type 0x100 after type 0x200");
    raw_free(&r);
}

static void
test_duplicate(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_DUPLICATE,
                   "type 0x100 appears again but it is not marked MULTI");
    raw_free(&r);

    /* Marked MULTI by the source, but this device takes it once. */
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MULTI, "c", 1);
    raw_record(&r, T_CONFIG, VMIG_RECF_MULTI, "c", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_DUPLICATE,
                   "this device takes it only once");
    raw_free(&r);
}

static void
test_unknown_records(void **state)
{
    struct raw r;
    struct fake_sink k;
    enum vmig_stream_err kind;
    char msg[256];

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_record(&r, T_OPTIONAL_NEW, VMIG_RECF_MANDATORY, "new", 3);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EOPNOTSUPP, VMIG_STREAM_E_UNKNOWN_MANDATORY,
                   "mandatory record type 0x250 is unknown to this device");
    raw_free(&r);

    /* Optional: skipped (checksum still verified), never delivered. */
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_record(&r, T_OPTIONAL_NEW, 0, "new", 3);
    raw_record(&r, T_RAM, VMIG_RECF_MULTI, "ram", 3);
    raw_end(&r);
    fake_sink_init(&k);
    assert_int_equal(
        load(&test_desc, r.p, r.len, NULL, &k, &kind, msg, sizeof(msg)), 0);
    assert_int_equal(k.n_committed, 2);
    assert_int_equal(k.committed[0].type, T_CONFIG);
    assert_int_equal(k.committed[1].type, T_RAM);
    fake_sink_fini(&k);
    /* ... and a corrupt skipped record is still caught. */
    r.p[r.len - 56 - 8 - 3 - 24 - 8 - 1] ^= 0x10; /* "new"'s last byte */
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_PAYLOAD_CSUM,
                   "record 2 (type 0x250");
    raw_free(&r);
}

static void
test_missing_required(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_QUEUES, VMIG_RECF_MULTI, "q", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_MISSING,
                   "required record type 0x100 is missing");
    raw_free(&r);
}

static void
test_end_record(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_end_bad(&r, 0, 0, 0x1);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_DIGEST,
                   "whole-stream digest mismatch");
    raw_free(&r);

    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_end_bad(&r, 1, 0, 0);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_END,
                   "END record says 3 records");
    raw_free(&r);

    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY, "c", 1);
    raw_record(&r, VMIG_REC_END, VMIG_RECF_MANDATORY, "short", 5);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_END,
                   "END record has length 5");
    raw_free(&r);
}

static void
test_record_flags(void **state)
{
    struct raw r;

    (void)state;
    good_prefix(&r, 2);
    raw_record(&r, T_CONFIG, VMIG_RECF_MANDATORY | 0x100, "c", 1);
    raw_end(&r);
    expect_refused(&test_desc, &r, -EBADMSG, VMIG_STREAM_E_FLAGS,
                   "has undefined flag bits 0x100");
    raw_free(&r);
}

static void
test_data_after_end(void **state)
{
    struct raw r;

    (void)state;
    good_stream(&r);
    raw_put(&r, "x", 1);
    expect_refused(&test_desc, &r, -EPROTO, VMIG_STREAM_E_AFTER_END,
                   "1 unexpected bytes after the END record");
    raw_free(&r);
}

/* Every proper prefix is a truncated stream: -ENODATA at finish. */
static void
test_truncation_every_prefix(void **state)
{
    struct raw r;

    (void)state;
    good_stream(&r);
    for (size_t cut = 0; cut < r.len; cut++) {
        struct fake_sink k;
        enum vmig_stream_err kind;
        char msg[512];

        fake_sink_init(&k);
        assert_int_equal(
            load(&test_desc, r.p, cut, NULL, &k, &kind, msg, sizeof(msg)),
            -ENODATA);
        assert_int_equal(kind, VMIG_STREAM_E_TRUNCATED);
        assert_non_null(strstr(msg, "truncated"));
        assert_true(fake_sink_untouched(&k));
        assert_int_equal(k.aborts, 1);
        fake_sink_fini(&k);
    }
    raw_free(&r);
}

/* Every single-bit flip anywhere is caught, and nothing is committed. */
static void
test_every_bit_flip(void **state)
{
    struct raw r;

    (void)state;
    good_stream(&r);
    for (size_t at = 0; at < r.len; at++) {
        for (int bit = 0; bit < 8; bit += 3) {
            struct fake_sink k;
            enum vmig_stream_err kind;
            char msg[512];
            int ret;

            r.p[at] ^= (uint8_t)(1u << bit);
            fake_sink_init(&k);
            ret =
                load(&test_desc, r.p, r.len, NULL, &k, &kind, msg, sizeof(msg));
            if (ret == 0) {
                print_error("flip at byte %zu bit %d not detected\n", at, bit);
            }
            assert_true(ret < 0);
            assert_true(kind != VMIG_STREAM_OK);
            assert_true(fake_sink_untouched(&k));
            assert_int_equal(k.aborts, 1);
            fake_sink_fini(&k);
            r.p[at] ^= (uint8_t)(1u << bit);
        }
    }
    raw_free(&r);
}

/* A device that refuses to stage a record fails the stream with its own
 * errno; a commit failure aborts. */
static void
test_device_errors(void **state)
{
    struct raw r;
    struct fake_sink k;
    enum vmig_stream_err kind;
    char msg[256];

    (void)state;
    good_stream(&r);
    fake_sink_init(&k);
    k.fail_begin_type = T_QUEUES;
    assert_int_equal(
        load(&test_desc, r.p, r.len, NULL, &k, &kind, msg, sizeof(msg)), -EIO);
    assert_int_equal(kind, VMIG_STREAM_E_DEVICE);
    assert_non_null(strstr(msg, "the device refused record type 0x200"));
    assert_true(fake_sink_untouched(&k));
    assert_int_equal(k.aborts, 1);
    fake_sink_fini(&k);
    raw_free(&r);
}

static int
failing_commit(void *opaque)
{
    (void)opaque;
    return -ENOSPC;
}

/* A commit that fails is followed by abort; a loader dropped mid-stream
 * (the migration was cancelled) aborts and never commits. */
static void
test_commit_failure_and_cancel(void **state)
{
    struct vmig_stream_sink_ops ops = fake_sink_ops;
    struct vmig_stream_loader_cfg cfg = {
        .local = &test_desc,
        .rules = test_rules,
        .n_rules = 3,
        .sink = &ops,
    };
    struct vmig_stream_loader *l;
    enum vmig_stream_err kind;
    struct fake_sink k;
    struct raw r;

    (void)state;
    good_stream(&r);
    fake_sink_init(&k);
    cfg.sink_opaque = &k;
    ops.commit = failing_commit;
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    assert_int_equal(vmig_stream_loader_write(l, r.p, r.len), 0);
    assert_int_equal(vmig_stream_loader_finish(l), -ENOSPC);
    assert_non_null(strstr(vmig_stream_loader_error(l, &kind),
                           "the device failed to apply"));
    assert_int_equal(kind, VMIG_STREAM_E_DEVICE);
    assert_int_equal(k.aborts, 1);
    vmig_stream_loader_free(l);
    assert_int_equal(k.aborts, 1);
    fake_sink_fini(&k);

    fake_sink_init(&k);
    ops.commit = sink_commit;
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    assert_int_equal(vmig_stream_loader_write(l, r.p, r.len - 10), 0);
    assert_int_equal(k.aborts, 0);
    vmig_stream_loader_free(l);
    assert_int_equal(k.aborts, 1);
    assert_true(fake_sink_untouched(&k));
    fake_sink_fini(&k);
    raw_free(&r);
}

/* API misuse and sticky errors. */
static void
test_loader_api(void **state)
{
    struct vmig_stream_loader_cfg cfg = {.local = &test_desc};
    struct vmig_stream_rule bad_rules[] = {{0x10, 0, 0}};
    struct vmig_stream_loader *l;
    struct raw r;

    (void)state;
    assert_int_equal(vmig_stream_loader_new(NULL, NULL, &l), -EINVAL);
    cfg.rules = bad_rules;
    cfg.n_rules = 1;
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), -EINVAL);
    cfg.rules = NULL;
    cfg.n_rules = 0;
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    good_stream(&r);
    r.p[0] ^= 0xff;
    assert_int_equal(vmig_stream_loader_write(l, r.p, r.len), -EBADMSG);
    assert_int_equal(vmig_stream_loader_write(l, r.p, 1), -EBADMSG);
    assert_int_equal(vmig_stream_loader_compat_state(l), -EBADMSG);
    assert_int_equal(vmig_stream_loader_finish(l), -EBADMSG);
    assert_int_equal(vmig_stream_loader_finish(l), -EBUSY);
    vmig_stream_loader_free(l);
    raw_free(&r);
    assert_string_equal(vmig_stream_err_name(VMIG_STREAM_E_DIGEST), "digest");
    assert_string_equal(vmig_stream_err_name(VMIG_STREAM_E__COUNT), "unknown");
}

/* Inspection mode (no local descriptor) takes any identity and version and
 * delivers every record, unknown ones included. */
static void
test_inspect_mode(void **state)
{
    struct raw r;
    struct fake_sink k;
    enum vmig_stream_err kind;
    char msg[256];

    (void)state;
    good_prefix(&r, 1); /* known bad for test_desc, fine for inspection */
    raw_record(&r, 0x7777, VMIG_RECF_MANDATORY, "zz", 2);
    raw_end(&r);
    fake_sink_init(&k);
    assert_int_equal(load(NULL, r.p, r.len, NULL, &k, &kind, msg, sizeof(msg)),
                     0);
    assert_int_equal(k.n_committed, 1);
    assert_int_equal(k.committed[0].type, 0x7777);
    fake_sink_fini(&k);
    raw_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_builder_agrees),
        cmocka_unit_test(test_roundtrip_property),
        cmocka_unit_test(test_compat_part_first),
        cmocka_unit_test(test_writer_eagain),
        cmocka_unit_test(test_writer_rules),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_unknown_format),
        cmocka_unit_test(test_header_checksum),
        cmocka_unit_test(test_header_flags),
        cmocka_unit_test(test_known_bad_version),
        cmocka_unit_test(test_unaccepted_version),
        cmocka_unit_test(test_identity_mismatch),
        cmocka_unit_test(test_descriptor_contradicts_header),
        cmocka_unit_test(test_descriptor_missing_or_malformed),
        cmocka_unit_test(test_record_header_checksum),
        cmocka_unit_test(test_payload_checksum),
        cmocka_unit_test(test_records_moved),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_unknown_records),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_end_record),
        cmocka_unit_test(test_record_flags),
        cmocka_unit_test(test_data_after_end),
        cmocka_unit_test(test_truncation_every_prefix),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_commit_failure_and_cancel),
        cmocka_unit_test(test_loader_api),
        cmocka_unit_test(test_inspect_mode),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
