/* SPDX-License-Identifier: MIT */
/*
 * test_compat.c - IS_COMPATIBLE matrix (vendor, type, version, known-bad,
 * resources, generations, migration flags, driver overrides), each with
 * its reason text; descriptor JSON and binary round trips and hostile
 * inputs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vmig/compat.h>

static const uint32_t v12[] = {1, 2};
static const uint32_t v2[] = {2};
static const uint32_t v23[] = {2, 3};
static const uint32_t v3[] = {3};
static const struct vmig_compat_bad bad1[] = {
    {1, "EQ/AEQ addresses saved wrongly"},
};
static const struct vmig_compat_kv params_a[] = {
    {"qp-count", "64"},
    {"isolation", "shared"},
};

/* Generation 2, emits and loads version 2, refuses known-bad 1. */
static struct vmig_compat_desc
base(void)
{
    struct vmig_compat_desc d = {
        .vendor_id = VMIG_VENDOR_PCI(0x19e5),
        .device_type = 0xa255,
        .generation = 2,
        .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
        .stream_version = 2,
        .vendor_version = "fw 1.7",
        .produced = v2,
        .n_produced = 1,
        .accepted = v2,
        .n_accepted = 1,
        .known_bad = bad1,
        .n_known_bad = 1,
        .params = params_a,
        .n_params = 2,
    };
    return d;
}

static void
expect(const struct vmig_compat_desc *dst, const struct vmig_compat_desc *src,
       const struct vmig_compat_ops *ops, void *opaque, int want,
       enum vmig_compat_why why, uint32_t version, const char *reason)
{
    struct vmig_compat_result res;
    int ret = vmig_compat_check(dst, src, ops, opaque, &res);

    if (ret != want || strcmp(res.reason, reason) != 0) {
        print_error("got %d (%s) \"%s\"\nwant %d (%s) \"%s\"\n", ret,
                    vmig_compat_why_name(res.why), res.reason, want,
                    vmig_compat_why_name(why), reason);
    }
    assert_int_equal(ret, want);
    assert_int_equal(res.why, why);
    assert_int_equal(res.compatible, want == 1);
    assert_int_equal(res.stream_version, version);
    assert_string_equal(res.reason, reason);
}

static void
test_same(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2");
}

static void
test_vendor(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.vendor_id = VMIG_VENDOR_PCI(0x8086);
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_VENDOR, 0,
           "source vendor PCI 0x8086 differs from destination vendor PCI "
           "0x19e5");
    /* Same low 16 bits, but one is not a PCI id. */
    s.vendor_id = 0x19e5;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_VENDOR, 0,
           "source vendor 0x000019e5 differs from destination vendor PCI "
           "0x19e5");
}

static void
test_type(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.device_type = 0xa256;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_TYPE, 0,
           "source device type 0xa256 differs from destination device type "
           "0xa255");
}

static void
test_version(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.stream_version = 3;
    s.produced = v3;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_VERSION, 0,
           "no common stream version: source can emit 3, destination "
           "accepts 2");
    /* A source that can also emit 2 gets 2. */
    s.produced = v23;
    s.n_produced = 2;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2");
}

/* A version found buggy after release: an old source emitting only the
 * known-bad version is refused. */
static void
test_known_bad(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.stream_version = 1;
    s.produced = NULL;
    s.n_produced = 0;
    s.known_bad = NULL;
    s.n_known_bad = 0;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_KNOWN_BAD, 0,
           "stream version 1 is known bad: EQ/AEQ addresses saved wrongly; "
           "refusing");
    /* Even when the destination lists 1 as accepted, known bad wins. */
    d.accepted = v12;
    d.n_accepted = 2;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_KNOWN_BAD, 0,
           "stream version 1 is known bad: EQ/AEQ addresses saved wrongly; "
           "refusing");
    /* A source that emits 1 and 2 migrates with 2. */
    s.stream_version = 2;
    s.produced = v12;
    s.n_produced = 2;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2");
}

static void
test_params(void **state)
{
    struct vmig_compat_desc d = base(), s = base();
    struct vmig_compat_kv sp[] = {{"qp-count", "32"}, {"isolation", "shared"}};
    struct vmig_compat_kv missing[] = {{"qp-count", "64"}};
    struct vmig_compat_kv extra[] = {
        {"qp-count", "64"}, {"isolation", "shared"}, {"sriov", "on"}};

    (void)state;
    s.params = sp;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_PARAM, 0,
           "resource parameter qp-count differs: source \"32\", destination "
           "\"64\"");
    s.params = missing;
    s.n_params = 1;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_PARAM, 0,
           "resource parameter isolation differs: source (absent), "
           "destination \"shared\"");
    s.params = extra;
    s.n_params = 3;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_PARAM, 0,
           "resource parameter sriov differs: source \"on\", destination "
           "(absent)");
}

/* A driver whose destination may have at least as many queue pairs. */
static bool
qp_at_least(void *opaque, const char *key, const char *src, const char *dst)
{
    (void)opaque;
    if (strcmp(key, "qp-count") == 0 && src && dst) {
        return atoi(dst) >= atoi(src);
    }
    return src && dst && strcmp(src, dst) == 0;
}

static void
test_params_driver(void **state)
{
    static const struct vmig_compat_ops ops = {.param_ok = qp_at_least};
    struct vmig_compat_desc d = base(), s = base();
    struct vmig_compat_kv sp[] = {{"qp-count", "32"}, {"isolation", "shared"}};
    struct vmig_compat_kv big[] = {{"qp-count", "128"},
                                   {"isolation", "shared"}};

    (void)state;
    s.params = sp;
    expect(&d, &s, &ops, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2");
    s.params = big;
    expect(&d, &s, &ops, NULL, 0, VMIG_COMPAT_PARAM, 0,
           "resource parameter qp-count differs: source \"128\", "
           "destination \"64\"");
}

/* An older hardware generation lands on a newer one when the newer one
 * declares it; not the other way. */
static void
test_old_to_new(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.generation = 1;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_OLDER_GEN, 0,
           "source generation 1 is older than destination generation 2, and "
           "the destination does not declare that it accepts older "
           "generations");
    d.compat_flags = VMIG_COMPATF_ACCEPT_OLDER_GEN;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2 (older generation 1 accepted by "
           "generation 2)");
}

/* newer -> older refused unless the newer one emits the older version. */
static void
test_new_to_old(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.generation = 3;
    s.stream_version = 3;
    s.produced = v3;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_NEWER_GEN, 0,
           "source generation 3 is newer than destination generation 2 and "
           "cannot emit the destination's stream version 2");
    s.produced = v23;
    s.n_produced = 2;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2 (newer generation 3 emits the "
           "version generation 2 loads)");
}

static void
test_mig_flags(void **state)
{
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.mig_flags |= VMIG_MIGF_P2P;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_MIG_FLAGS, 0,
           "source supports P2P (RUNNING_P2P) but the destination does not");
    s.mig_flags = VMIG_MIGF_PRE_COPY;
    expect(&d, &s, NULL, NULL, 0, VMIG_COMPAT_MIG_FLAGS, 0,
           "source does not support STOP_COPY migration");
    /* PRE_COPY on one side only is fine. */
    s.mig_flags = VMIG_MIGF_STOP_COPY;
    expect(&d, &s, NULL, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: stream version 2");
}

/* The driver has the last word, e.g. on the opaque vendor version. */
static void
fw_decide(void *opaque, const struct vmig_compat_desc *dst,
          const struct vmig_compat_desc *src, struct vmig_compat_result *res)
{
    (void)opaque;
    if (res->compatible && strcmp(src->vendor_version, "fw 0.9") == 0) {
        res->compatible = false;
        snprintf(res->reason, sizeof(res->reason),
                 "firmware %s cannot migrate to %s", src->vendor_version,
                 dst->vendor_version);
    }
    if (!res->compatible && res->why == VMIG_COMPAT_TYPE &&
        src->device_type == 0xa256) {
        res->compatible = true; /* a sibling type it knows how to load */
    }
}

static void
silent_no(void *opaque, const struct vmig_compat_desc *dst,
          const struct vmig_compat_desc *src, struct vmig_compat_result *res)
{
    (void)opaque;
    (void)dst;
    (void)src;
    res->compatible = false;
}

static void
test_driver_decide(void **state)
{
    static const struct vmig_compat_ops ops = {.decide = fw_decide};
    static const struct vmig_compat_ops no = {.decide = silent_no};
    struct vmig_compat_desc d = base(), s = base();

    (void)state;
    s.vendor_version = "fw 0.9";
    expect(&d, &s, &ops, NULL, 0, VMIG_COMPAT_DRIVER, 0,
           "firmware fw 0.9 cannot migrate to fw 1.7");
    s = base();
    s.device_type = 0xa256;
    expect(&d, &s, &ops, NULL, 1, VMIG_COMPAT_OK, 2,
           "compatible: accepted by the device driver (stream version 2)");
    s = base();
    expect(&d, &s, &no, NULL, 0, VMIG_COMPAT_DRIVER, 0,
           "refused by the device driver");
}

static void
test_invalid(void **state)
{
    struct vmig_compat_desc d = base(), s = base();
    struct vmig_compat_kv dup[] = {{"a", "1"}, {"a", "2"}};
    struct vmig_compat_result res;

    (void)state;
    s.params = dup;
    assert_int_equal(vmig_compat_check(&d, &s, NULL, NULL, &res), -EINVAL);
    assert_int_equal(res.why, VMIG_COMPAT_INVALID);
    assert_string_equal(res.reason,
                        "source descriptor: params: key \"a\" listed twice");
    s = base();
    s.stream_version = 5; /* not among produced */
    assert_int_equal(vmig_compat_check(&d, &s, NULL, NULL, &res), -EINVAL);
    assert_non_null(strstr(res.reason, "not among the produced versions"));
    assert_int_equal(vmig_compat_check(&d, NULL, NULL, NULL, &res), -EINVAL);
    assert_int_equal(vmig_compat_check(&d, &s, NULL, NULL, NULL), -EINVAL);
}

/* ------------------------------------------------------------ encodings */

static void
assert_desc_equal(const struct vmig_compat_desc *a,
                  const struct vmig_compat_desc *b)
{
    assert_int_equal(a->vendor_id, b->vendor_id);
    assert_int_equal(a->device_type, b->device_type);
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->mig_flags, b->mig_flags);
    assert_int_equal(a->compat_flags, b->compat_flags);
    assert_int_equal(a->stream_version, b->stream_version);
    assert_string_equal(a->vendor_version ? a->vendor_version : "",
                        b->vendor_version ? b->vendor_version : "");
    assert_int_equal(a->n_produced, b->n_produced);
    assert_int_equal(a->n_accepted, b->n_accepted);
    assert_int_equal(a->n_known_bad, b->n_known_bad);
    assert_int_equal(a->n_params, b->n_params);
    for (size_t i = 0; i < a->n_produced; i++) {
        assert_int_equal(a->produced[i], b->produced[i]);
    }
    for (size_t i = 0; i < a->n_accepted; i++) {
        assert_int_equal(a->accepted[i], b->accepted[i]);
    }
    for (size_t i = 0; i < a->n_known_bad; i++) {
        assert_int_equal(a->known_bad[i].version, b->known_bad[i].version);
        assert_string_equal(a->known_bad[i].reason, b->known_bad[i].reason);
    }
    for (size_t i = 0; i < a->n_params; i++) {
        assert_string_equal(vmig_compat_desc_param(b, a->params[i].key),
                            a->params[i].value);
    }
}

static void
test_binary_roundtrip(void **state)
{
    struct vmig_compat_desc d = base(), *back;
    uint8_t buf[1024];
    int n;

    (void)state;
    d.compat_flags = VMIG_COMPATF_ACCEPT_OLDER_GEN;
    d.produced = v12;
    d.n_produced = 2;
    n = vmig_compat_desc_to_bin(&d, NULL, 0);
    assert_true(n > 0);
    assert_int_equal(vmig_compat_desc_to_bin(&d, buf, (size_t)n - 1), n);
    assert_int_equal(vmig_compat_desc_to_bin(&d, buf, sizeof(buf)), n);
    assert_int_equal(vmig_compat_desc_from_bin(buf, (size_t)n, &back, NULL, 0),
                     0);
    assert_desc_equal(&d, back);
    vmig_compat_desc_free(back);

    /* Every truncation and every trailing byte is refused. */
    for (int cut = 0; cut < n; cut++) {
        back = NULL;
        assert_true(
            vmig_compat_desc_from_bin(buf, (size_t)cut, &back, NULL, 0) < 0);
        assert_null(back);
    }
    buf[n] = 0;
    assert_int_equal(
        vmig_compat_desc_from_bin(buf, (size_t)n + 1, &back, NULL, 0),
        -EBADMSG);
}

static void
test_binary_hostile(void **state)
{
    struct vmig_compat_desc d = base(), *back = NULL;
    uint8_t buf[1024];
    char err[200];
    int n;

    (void)state;
    n = vmig_compat_desc_to_bin(&d, buf, sizeof(buf));
    assert_true(n > 0);
    /* Layout version 2. */
    buf[0] = 2;
    assert_int_equal(
        vmig_compat_desc_from_bin(buf, (size_t)n, &back, err, sizeof(err)),
        -EBADMSG);
    assert_non_null(strstr(err, "descriptor layout 2 is not supported"));
    buf[0] = 1;
    /* A vendor-version length of 65535 with 20 bytes present. */
    buf[28] = 0xff;
    buf[29] = 0xff;
    assert_int_equal(
        vmig_compat_desc_from_bin(buf, (size_t)n, &back, err, sizeof(err)),
        -E2BIG);
    assert_non_null(strstr(err, "vendor-version: length 65535 exceeds 255"));
    buf[28] = 6;
    buf[29] = 0;
    /* A control character in the vendor version. */
    buf[30] = '\n';
    assert_int_equal(
        vmig_compat_desc_from_bin(buf, (size_t)n, &back, err, sizeof(err)),
        -EBADMSG);
    assert_non_null(strstr(err, "vendor-version: invalid characters"));
    assert_null(back);
    assert_int_equal(vmig_compat_desc_from_bin(buf, VMIG_COMPAT_BIN_MAX + 1,
                                               &back, err, sizeof(err)),
                     -E2BIG);
}

static void
test_json_roundtrip(void **state)
{
    struct vmig_compat_desc d = base(), *back;
    char *json, err[200];

    (void)state;
    assert_int_equal(vmig_compat_desc_to_json(&d, &json), 0);
    assert_non_null(strstr(json, "\"vendor-id\":2147490277"));
    assert_non_null(strstr(json,
                           "\"known-bad\":[{\"version\":1,\"reason\":\"EQ/AEQ "
                           "addresses saved wrongly\"}]"));
    assert_int_equal(vmig_compat_desc_from_json(json, &back, err, sizeof(err)),
                     0);
    assert_desc_equal(&d, back);
    vmig_compat_desc_free(back);
    free(json);
}

static void
json_refused(const char *text, int want, const char *msg)
{
    struct vmig_compat_desc *back = NULL;
    char err[200] = "";
    int ret = vmig_compat_desc_from_json(text, &back, err, sizeof(err));

    if (ret != want || strstr(err, msg) == NULL) {
        print_error("%s\n -> %d \"%s\", want %d \"%s\"\n", text, ret, err, want,
                    msg);
    }
    assert_int_equal(ret, want);
    assert_non_null(strstr(err, msg));
    assert_null(back);
}

static void
test_json_hostile(void **state)
{
    (void)state;
    json_refused("{", -EBADMSG, "not valid JSON");
    json_refused("[1]", -EBADMSG, "expected a JSON object");
    json_refused("{\"vendor-id\":1,\"device-type\":1}", -EBADMSG,
                 "\"stream-version\" is required");
    json_refused("{\"vendor-id\":1,\"device-type\":1,\"stream-version\":1,"
                 "\"colour\":\"red\"}",
                 -EBADMSG, "unknown or repeated member \"colour\"");
    json_refused("{\"vendor-id\":-1,\"device-type\":1,\"stream-version\":1}",
                 -EBADMSG, "vendor-id: out of range");
    json_refused("{\"vendor-id\":4294967296,\"device-type\":1,"
                 "\"stream-version\":1}",
                 -EBADMSG, "vendor-id: out of range");
    json_refused("{\"vendor-id\":\"x\",\"device-type\":1,"
                 "\"stream-version\":1}",
                 -EBADMSG, "vendor-id: expected an integer");
    json_refused("{\"vendor-id\":1,\"device-type\":1,\"stream-version\":1,"
                 "\"params\":{\"a b\":\"1\"}}",
                 -EBADMSG, "params: key \"a b\"");
    json_refused("{\"vendor-id\":1,\"device-type\":1,\"stream-version\":1,"
                 "\"known-bad\":[{\"version\":1}]}",
                 -EBADMSG, "known-bad[0]: expected");
    json_refused("{\"vendor-id\":1,\"device-type\":1,\"stream-version\":2,"
                 "\"produced\":[1]}",
                 -EBADMSG, "stream-version 2 is not among the produced");
    json_refused("[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]", -EBADMSG,
                 "not valid JSON");
    json_refused("{\"vendor-id\":1,\"device-type\":1,\"stream-version\":1} x",
                 -EBADMSG, "not valid JSON");

    struct vmig_compat_desc *ok = NULL;
    assert_int_equal(
        vmig_compat_desc_from_json("{\"vendor-id\":1,\"device-type\":1,"
                                   "\"stream-version\":1}\n",
                                   &ok, NULL, 0),
        0);
    assert_int_equal(ok->n_params, 0);
    vmig_compat_desc_free(ok);
}

static void
test_dup_and_param(void **state)
{
    struct vmig_compat_desc d = base(), *copy;

    (void)state;
    assert_int_equal(vmig_compat_desc_dup(&d, &copy), 0);
    assert_desc_equal(&d, copy);
    assert_string_equal(vmig_compat_desc_param(copy, "isolation"), "shared");
    assert_null(vmig_compat_desc_param(copy, "nope"));
    vmig_compat_desc_free(copy);
    vmig_compat_desc_free(NULL);
    assert_string_equal(vmig_compat_why_name(VMIG_COMPAT_PARAM), "param");
    assert_string_equal(vmig_compat_why_name(VMIG_COMPAT__COUNT), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_vendor),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_known_bad),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_params_driver),
        cmocka_unit_test(test_old_to_new),
        cmocka_unit_test(test_new_to_old),
        cmocka_unit_test(test_mig_flags),
        cmocka_unit_test(test_driver_decide),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_binary_hostile),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_json_hostile),
        cmocka_unit_test(test_dup_and_param),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
