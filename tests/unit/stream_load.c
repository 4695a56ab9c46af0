/* SPDX-License-Identifier: MIT */
/*
 * stream_load.c - loading and refusing envelopes for the stream tests
 * (stream_load.h).
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

int
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

void
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

uint8_t desc_bin[1024];
size_t desc_len;

void
good_prefix(struct raw *r, uint32_t version)
{
    raw_header(r, 1, test_desc.vendor_id, test_desc.device_type, version, 0);
    raw_record(r, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY, desc_bin, desc_len);
}

const uint8_t cfg_payload[] = "config-space";

void
good_stream(struct raw *r)
{
    good_prefix(r, 2);
    raw_record(r, T_CONFIG, VMIG_RECF_MANDATORY, cfg_payload,
               sizeof(cfg_payload));
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "q0", 2);
    raw_record(r, T_QUEUES, VMIG_RECF_MULTI, "q1", 2);
    raw_end(r);
}

int
setup(void **state)
{
    int n = vmig_compat_desc_to_bin(&test_desc, desc_bin, sizeof(desc_bin));

    (void)state;
    assert_true(n > 0 && (size_t)n <= sizeof(desc_bin));
    desc_len = (size_t)n;
    return 0;
}
