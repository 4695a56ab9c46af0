/* SPDX-License-Identifier: MIT */
/*
 * test_stream_refuse.c - every refusal class of the envelope loader: each
 * gives its errno, its class, a message naming the problem, and leaves the
 * device's committed state untouched, whatever the segmentation of the
 * input (every prefix, every bit flip included).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <string.h>
#include <cmocka.h>
#include "unit/raw_stream.h"
#include "unit/stream_util.h"
#include "unit/stream_load.h"

/* ------------------------------------------------------------ refusals */

/*
 * One refusal: the stream is what @build writes or, without @build,
 * good_prefix(@version, 2 when 0), @recs and an END record that is right,
 * has its record count or its digest one bit off, or is left out; loading
 * it gives @err, @kind and a message containing @msg (expect_refused()
 * also checks that the verdict does not depend on how the stream is cut
 * into writes and that nothing is committed).  Every case in the table
 * is one cmocka test that checks each of its refusals (check_refusal()).
 */
struct rec {
    uint32_t type;
    uint32_t flags;
    const char *payload; /* its length: strlen(); NULL: the descriptor */
};

enum end { END_OK, END_COUNT, END_DIGEST, END_NONE };

struct refusal {
    void (*build)(struct raw *r);
    uint32_t version;
    struct rec recs[3]; /* up to a zero type */
    enum end end;
    int err;
    enum vmig_stream_err kind;
    const char *msg;
};

/* A test case: up to three refusals of one class. */
struct refusal_case {
    const char *name;
    struct refusal v[3]; /* up to a zero err */
};

static void
build_bad_magic(struct raw *r)
{
    good_stream(r);
    memcpy(r->p, "QEVMDEV", 7);
}

/* The header with @format, @device_type and @flags, the DESCRIPTOR
 * record's first @dlen bytes (none when @dlen is negative), END. */
static void
header_desc_end(struct raw *r, uint8_t format, uint32_t device_type,
                uint32_t flags, ssize_t dlen)
{
    raw_header(r, format, test_desc.vendor_id, device_type, 2, flags);
    if (dlen >= 0) {
        raw_record(r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin,
                   (size_t)dlen);
    }
    raw_end(r);
}

static void
build_unknown_format(struct raw *r)
{
    header_desc_end(r, 2, test_desc.device_type, 0, (ssize_t)desc_len);
}

static void
build_header_checksum(struct raw *r)
{
    good_stream(r);
    r->p[9] ^= 0x01; /* vendor id */
}

static void
build_header_flags(struct raw *r)
{
    header_desc_end(r, 1, test_desc.device_type, 4, -1);
}

/* A stream from a device described by @other. */
static void
other_device(struct raw *r, const struct vmig_compat_desc *other)
{
    uint8_t bin[1024];
    int n = vmig_compat_desc_to_bin(other, bin, sizeof(bin));

    assert_true(n > 0);
    raw_header(r, 1, other->vendor_id, other->device_type, 2, 0);
    raw_record(r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, bin, (size_t)n);
    raw_end(r);
}

static void
build_other_vendor(struct raw *r)
{
    struct vmig_compat_desc other = test_desc;

    other.vendor_id = VMIG_VENDOR_PCI(0x8086);
    other_device(r, &other);
}

/* Same device, different resources (hisi's vf_qm_check_match). */
static void
build_other_params(struct raw *r)
{
    struct vmig_compat_kv params[] = {{"qp-count", "32"},
                                      {"isolation", "shared"}};
    struct vmig_compat_desc other = test_desc;

    other.params = params;
    other_device(r, &other);
}

static void
build_descriptor_contradicts(struct raw *r)
{
    header_desc_end(r, 1, 0x1234, 0, (ssize_t)desc_len);
}

static void
build_descriptor_missing(struct raw *r)
{
    raw_header(r, 1, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record(r, T_CONFIG, VMIG_RECF_MANDATORY, "x", 1);
    raw_end(r);
}

static void
build_descriptor_truncated(struct raw *r)
{
    header_desc_end(r, 1, test_desc.device_type, 0, (ssize_t)desc_len - 1);
}

static void
build_record_header_checksum(struct raw *r)
{
    size_t at = 32 + 24 + desc_len + 8; /* first device record header */

    good_stream(r);
    r->p[at + 8] ^= 0x40; /* its length */
}

static void
build_payload_checksum(struct raw *r)
{
    good_stream(r);
    r->p[32 + 24 + desc_len + 8 + 24 + 3] ^= 0x01; /* inside cfg_payload */
}

/* Records swapped whole, each intact: the per-position seed catches it. */
static void
build_records_moved(struct raw *r)
{
    size_t rec_len = 24 + 4 + 8;
    size_t rec_a = 32 + 24 + desc_len + 8 + rec_len; /* first T_QUEUES */
    uint8_t tmp[64];

    good_prefix(r, 2);
    raw_record(r, T_CONFIG, VMIG_RECF_MANDATORY, "AAAA", 4);
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "BBBB", 4);
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "CCCC", 4);
    raw_end(r);
    memcpy(tmp, r->p + rec_a, rec_len);
    memmove(r->p + rec_a, r->p + rec_a + rec_len, rec_len);
    memcpy(r->p + rec_a + rec_len, tmp, rec_len);
}

/* A header claiming 1 TiB, followed by 4 bytes: refused at once. */
static void
build_record_too_big(struct raw *r)
{
    good_prefix(r, 2);
    raw_record_claim(r, T_CONFIG, VMIG_RECF_MANDATORY, "abcd", 4, 1ull << 40);
}

static void
build_descriptor_too_big(struct raw *r)
{
    raw_header(r, 1, test_desc.vendor_id, test_desc.device_type, 2, 0);
    raw_record_claim(r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, "", 0,
                     1ull << 20);
}

static void
build_data_after_end(struct raw *r)
{
    good_stream(r);
    raw_put(r, "x", 1);
}

#define MAND VMIG_RECF_MANDATORY
#define MULTI VMIG_RECF_MULTI

static const struct refusal_case refusals[] = {
    {"test_bad_magic",
     {{.build = build_bad_magic,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_MAGIC,
       .msg = "not a vmig device-state stream"}}},
    {"test_unknown_format",
     {{.build = build_unknown_format,
       .err = -EOPNOTSUPP,
       .kind = VMIG_STREAM_E_FORMAT,
       .msg = "stream format version 2 is not supported"}}},
    {"test_header_checksum",
     {{.build = build_header_checksum,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_HEADER_CSUM,
       .msg = "stream header checksum mismatch"}}},
    {"test_header_flags",
     {{.build = build_header_flags,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_FLAGS,
       .msg = "stream header flags 0x4"}}},
    /* a version fixed after a bug must refuse the buggy one, naming the
     * version and the reason */
    {"test_known_bad_version",
     {{.version = 1,
       .err = -EOPNOTSUPP,
       .kind = VMIG_STREAM_E_KNOWN_BAD,
       .msg = "stream version 1 is known bad: EQ/AEQ addresses saved "
              "wrongly; refusing"}}},
    {"test_unaccepted_version",
     {{.version = 3,
       .err = -EOPNOTSUPP,
       .kind = VMIG_STREAM_E_VERSION,
       .msg = "stream version 3 is not accepted by this device"}}},
    {"test_identity_mismatch",
     {{.build = build_other_vendor,
       .err = -EOPNOTSUPP,
       .kind = VMIG_STREAM_E_INCOMPATIBLE,
       .msg = "source vendor PCI 0x8086 differs from destination vendor "
              "PCI 0x19e5"},
      {.build = build_other_params,
       .err = -EOPNOTSUPP,
       .kind = VMIG_STREAM_E_INCOMPATIBLE,
       .msg = "resource parameter qp-count differs: source \"32\", "
              "destination \"64\""}}},
    {"test_descriptor_contradicts_header",
     {{.build = build_descriptor_contradicts,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_DESCRIPTOR,
       .msg = "contradicts the stream header"}}},
    {"test_descriptor_missing_or_malformed",
     {{.build = build_descriptor_missing,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_DESCRIPTOR,
       .msg = "must start with the mandatory DESCRIPTOR record"},
      {.build = build_descriptor_truncated,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_DESCRIPTOR,
       .msg = "DESCRIPTOR record is malformed: descriptor truncated"},
      {.recs = {{VMIG_REC_DESCRIPTOR, MAND, NULL}},
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_DUPLICATE,
       .msg = "a second DESCRIPTOR record"}}},
    {"test_record_header_checksum",
     {{.build = build_record_header_checksum,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_RECORD_CSUM,
       .msg = "record 1: header checksum mismatch"}}},
    {"test_payload_checksum",
     {{.build = build_payload_checksum,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_PAYLOAD_CSUM,
       .msg = "record 1 (type 0x100, 13 bytes): payload checksum "
              "mismatch"}}},
    {"test_records_moved",
     {{.build = build_records_moved,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_RECORD_CSUM,
       .msg = "record 2: header checksum mismatch"}}},
    {"test_too_big",
     {{.build = build_record_too_big,
       .err = -E2BIG,
       .kind = VMIG_STREAM_E_TOO_BIG,
       .msg = "claims 1099511627776 payload bytes, over the limit of "
              "1073741824"},
      {.build = build_descriptor_too_big,
       .err = -E2BIG,
       .kind = VMIG_STREAM_E_TOO_BIG,
       .msg = "DESCRIPTOR record claims 1048576 bytes"}}},
    {"test_out_of_order",
     {{.recs = {{T_QUEUES, MULTI, "q"}, {T_CONFIG, MAND, "c"}},
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_ORDER,
       .msg = "type 0x100 after type 0x200"}}},
    {"test_duplicate",
     {{.recs = {{T_CONFIG, MAND, "c"}, {T_CONFIG, MAND, "c"}},
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_DUPLICATE,
       .msg = "type 0x100 appears again but it is not marked MULTI"},
      /* marked MULTI by the source, but this device takes it once */
      {.recs = {{T_CONFIG, MULTI, "c"}, {T_CONFIG, MULTI, "c"}},
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_DUPLICATE,
       .msg = "this device takes it only once"}}},
    {"test_missing_required",
     {{.recs = {{T_QUEUES, MULTI, "q"}},
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_MISSING,
       .msg = "required record type 0x100 is missing"}}},
    {"test_end_record",
     {{.recs = {{T_CONFIG, MAND, "c"}},
       .end = END_DIGEST,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_DIGEST,
       .msg = "whole-stream digest mismatch"},
      {.recs = {{T_CONFIG, MAND, "c"}},
       .end = END_COUNT,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_END,
       .msg = "END record says 3 records"},
      {.recs = {{T_CONFIG, MAND, "c"}, {VMIG_REC_END, MAND, "short"}},
       .end = END_NONE,
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_END,
       .msg = "END record has length 5"}}},
    {"test_record_flags",
     {{.recs = {{T_CONFIG, MAND | 0x100, "c"}},
       .err = -EBADMSG,
       .kind = VMIG_STREAM_E_FLAGS,
       .msg = "has undefined flag bits 0x100"}}},
    {"test_data_after_end",
     {{.build = build_data_after_end,
       .err = -EPROTO,
       .kind = VMIG_STREAM_E_AFTER_END,
       .msg = "1 unexpected bytes after the END record"}}},
};

#define N_REFUSALS (sizeof(refusals) / sizeof(refusals[0]))

/* Build each refusal of the case in *@state and check its verdict. */
static void
check_refusal(void **state)
{
    const struct refusal_case *c = *state;

    for (const struct refusal *v = c->v; v < c->v + 3 && v->err != 0; v++) {
        struct raw r;

        if (v->build != NULL) {
            v->build(&r);
        } else {
            good_prefix(&r, v->version != 0 ? v->version : 2);
            for (const struct rec *x = v->recs; x < v->recs + 3 && x->type;
                 x++) {
                raw_record(&r, x->type, x->flags,
                           x->payload ? x->payload : (const void *)desc_bin,
                           x->payload ? strlen(x->payload) : desc_len);
            }
            if (v->end != END_NONE) {
                raw_end_bad(&r, v->end == END_COUNT, 0, v->end == END_DIGEST);
            }
        }
        expect_refused(&test_desc, &r, v->err, v->kind, v->msg);
        raw_free(&r);
    }
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

int
main(void)
{
    struct CMUnitTest tests[N_REFUSALS + 3];
    size_t n = 0;

    for (size_t i = 0; i < N_REFUSALS; i++) {
        tests[n++] = (struct CMUnitTest){
            .name = refusals[i].name,
            .test_func = check_refusal,
            .initial_state = (void *)&refusals[i],
        };
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_unknown_records);
    tests[n++] =
        (struct CMUnitTest)cmocka_unit_test(test_truncation_every_prefix);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_every_bit_flip);
    return cmocka_run_group_tests(tests, setup, NULL);
}
