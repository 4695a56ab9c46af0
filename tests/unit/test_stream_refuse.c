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
#include <string.h>
#include <cmocka.h>
#include "unit/raw_stream.h"
#include "unit/stream_util.h"
#include "unit/stream_load.h"

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

int
main(void)
{
    const struct CMUnitTest tests[] = {
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
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
