/* SPDX-License-Identifier: MIT */
/*
 * test_stream.c - envelope round trips (property test over random record
 * sizes and random read/write split points), the writer's rules, and the
 * loader's behaviour beyond refusals (device errors, a failing commit,
 * cancel, the API, inspect mode).  The refusal classes are in
 * test_stream_refuse.c.
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
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_commit_failure_and_cancel),
        cmocka_unit_test(test_loader_api),
        cmocka_unit_test(test_inspect_mode),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
