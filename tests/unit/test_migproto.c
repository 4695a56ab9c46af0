/* SPDX-License-Identifier: MIT */
/*
 * test_migproto.c - host-to-host stream framing and HELLO codec: round
 * trips, exact byte layout, and hostile input (bad magic, checksum,
 * sequence, limits, truncation).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <vmig/migproto.h>

static void
test_preamble(void **state)
{
    uint8_t p[VMIG_MP_PREAMBLE_LEN];

    (void)state;
    vmig_mp_preamble(p);
    assert_memory_equal(p, "VMIGMS\0\1", 8);
    assert_int_equal(vmig_mp_preamble_check(p), 0);
    p[7] = 2;
    assert_int_equal(vmig_mp_preamble_check(p), -EOPNOTSUPP);
    p[0] = 'X';
    assert_int_equal(vmig_mp_preamble_check(p), -EPROTO);
}

static void
test_header_layout(void **state)
{
    uint8_t h[VMIG_MP_HDR_LEN];
    const void *pl[1] = {"abc"};
    size_t len[1] = {3};
    struct vmig_mp_hdr d;

    (void)state;
    assert_int_equal(vmig_mp_hdr_encode(VMIG_MP_ACK, 0, 7, pl, len, 1, h), 0);
    /* magic "vmfr", type 0x83, flags 0, len 3, seq 7, little-endian */
    assert_memory_equal(
        h, "vmfr\x83\x00\x00\x00\x03\x00\x00\x00\x07\x00\x00\x00", 16);
    assert_int_equal(vmig_mp_hdr_decode(h, &d), 0);
    assert_int_equal(d.type, VMIG_MP_ACK);
    assert_int_equal(d.len, 3);
    assert_int_equal(d.seq, 7);
    assert_int_equal(vmig_mp_verify(h, "abc", 3), 0);
    assert_int_equal(vmig_mp_verify(h, "abd", 3), -EBADMSG);
    h[0] ^= 1;
    assert_int_equal(vmig_mp_hdr_decode(h, &d), -EBADMSG);
    h[0] ^= 1;
    h[6] = 0x80; /* unknown flag bit */
    assert_int_equal(vmig_mp_hdr_decode(h, &d), -EBADMSG);
    h[6] = 0;
    h[8] = 0xff; /* 255 bytes > ACK limit */
    assert_int_equal(vmig_mp_hdr_decode(h, &d), -E2BIG);
    len[0] = 100;
    assert_int_equal(vmig_mp_hdr_encode(VMIG_MP_ACK, 0, 0, pl, len, 1, h),
                     -E2BIG);
    assert_string_equal(vmig_mp_type_name(VMIG_MP_CONFIRM), "CONFIRM");
    assert_string_equal(vmig_mp_type_name(0x3e), "unknown");
}

static struct vmig_mp_hello *
sample_hello(void)
{
    struct vmig_mp_hello *h = calloc(1, sizeof(*h));
    static uint8_t desc[5] = {1, 2, 3, 4, 5};

    assert_non_null(h);
    h->version_min = 1;
    h->version_max = 3;
    h->features = VMIG_MP_FEAT_ZERO_PAGES;
    h->page_size = 4096;
    h->nregions = 1;
    strcpy(h->region[0].name, "ram0");
    h->region[0].size = 1 << 20;
    h->ndevices = 2;
    strcpy(h->dev[0].name, "acc0");
    h->dev[0].mig_flags = 3;
    h->dev[0].desc = desc;
    h->dev[0].desc_len = sizeof(desc);
    strcpy(h->dev[1].name, "nic0");
    h->dev[1].mig_flags = 1;
    h->dev[1].ids = (struct vmig_pci_ids){true, 0x1af4, 0x1041, 1, 2, 9};
    return h;
}

static void
test_hello_roundtrip(void **state)
{
    struct vmig_mp_hello *h = sample_hello(), *d = NULL;
    uint8_t buf[4096];
    ssize_t n;

    (void)state;
    n = vmig_mp_hello_encode(h, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(vmig_mp_hello_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d->version_max, 3);
    assert_int_equal(d->nregions, 1);
    assert_string_equal(d->region[0].name, "ram0");
    assert_int_equal(d->ndevices, 2);
    assert_int_equal(d->dev[0].desc_len, 5);
    assert_memory_equal(d->dev[0].desc, h->dev[0].desc, 5);
    assert_true(d->dev[1].ids.valid);
    assert_int_equal(d->dev[1].ids.device, 0x1041);
    assert_int_equal(d->dev[1].ids.revision, 9);
    vmig_mp_hello_free(d);

    /* every truncation fails cleanly, and so does a trailing byte */
    for (ssize_t cut = 0; cut < n; cut++) {
        d = NULL;
        assert_true(vmig_mp_hello_decode(buf, (size_t)cut, &d) < 0);
        assert_null(d);
    }
    assert_int_equal(vmig_mp_hello_decode(buf, (size_t)n + 1, &d), -EBADMSG);
    /* a too-small output buffer is -E2BIG, not an overflow */
    assert_int_equal(vmig_mp_hello_encode(h, buf, 10), -E2BIG);
    free(h);
}

static void
test_hello_hostile(void **state)
{
    uint8_t buf[64] = {0};
    struct vmig_mp_hello *d = NULL;

    (void)state;
    /* versions, features, flags, page size, then 0xffffffff regions */
    memset(buf + 24, 0xff, 4);
    assert_int_equal(vmig_mp_hello_decode(buf, 28, &d), -E2BIG);
    /* one region whose name length says 60000 */
    memset(buf + 24, 0, 4);
    buf[24] = 1;
    buf[28] = 0x60;
    buf[29] = 0xea;
    assert_int_equal(vmig_mp_hello_decode(buf, 40, &d), -E2BIG);
    /* a name with a control character */
    buf[28] = 2;
    buf[29] = 0;
    buf[30] = 'a';
    buf[31] = '\n';
    assert_int_equal(vmig_mp_hello_decode(buf, 44, &d), -EBADMSG);
    assert_null(d);
}

static void
test_reply_roundtrip(void **state)
{
    struct vmig_mp_hello_reply r = {0}, d;
    uint8_t buf[2048];
    ssize_t n;

    (void)state;
    r.version = 1;
    r.status = EOPNOTSUPP;
    strcpy(r.reason, "device acc0 refused");
    r.ndevices = 2;
    r.dev[0].compatible = true;
    r.dev[1].compatible = false;
    strcpy(r.dev[1].reason, "revision 3 > 2");
    n = vmig_mp_reply_encode(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(vmig_mp_reply_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.status, EOPNOTSUPP);
    assert_string_equal(d.reason, "device acc0 refused");
    assert_true(d.dev[0].compatible);
    assert_false(d.dev[1].compatible);
    assert_string_equal(d.dev[1].reason, "revision 3 > 2");
    for (ssize_t cut = 0; cut < n; cut++) {
        assert_true(vmig_mp_reply_decode(buf, (size_t)cut, &d) < 0);
    }
}

static void
test_conn_frames(void **state)
{
    int sv[2];
    struct vmig_mp_conn *a, *b;
    struct vmig_mp_frame f;
    uint8_t raw[VMIG_MP_HDR_LEN + 4];
    const void *pl[1] = {"data"};
    size_t len[1] = {4};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[0], &a), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[1], &b), 0);
    vmig_mp_conn_set_timeout(a, 2000);
    vmig_mp_conn_set_timeout(b, 2000);
    /* both preambles fit in the socket buffer, so one thread can do it */
    assert_int_equal(vmig_mp_send1(a, VMIG_MP_SETUP, 0, NULL, 0), 0);
    assert_int_equal(vmig_mp_send1(a, VMIG_MP_ACK, 0, "hi", 2), 0);
    assert_int_equal(vmig_mp_recv(b, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_SETUP);
    assert_int_equal(vmig_mp_recv(b, &f), 0);
    assert_int_equal(f.hdr.len, 2);
    assert_memory_equal(f.payload, "hi", 2);

    /* a corrupted payload byte */
    assert_int_equal(vmig_mp_hdr_encode(VMIG_MP_ACK, 0, 2, pl, len, 1, raw), 0);
    memcpy(raw + VMIG_MP_HDR_LEN, (const uint8_t[]){'d', 'b', 't', 'a'}, 4);
    assert_int_equal(write(sv[0], raw, sizeof(raw)), (ssize_t)sizeof(raw));
    assert_int_equal(vmig_mp_recv(b, &f), -EBADMSG);
    vmig_mp_conn_free(b);

    /* a replayed sequence number */
    assert_int_equal(vmig_mp_conn_new(NULL, sv[1], &b), 0);
    vmig_mp_conn_set_timeout(b, 2000);
    assert_int_equal(vmig_mp_hdr_encode(VMIG_MP_ACK, 0, 5, pl, len, 1, raw), 0);
    memcpy(raw + VMIG_MP_HDR_LEN, (const uint8_t[]){'d', 'a', 't', 'a'}, 4);
    assert_int_equal(write(sv[0], raw, sizeof(raw)), (ssize_t)sizeof(raw));
    assert_int_equal(vmig_mp_recv(b, &f), -EBADMSG);

    /* a short read then close: -ECONNRESET */
    assert_int_equal(write(sv[0], raw, 10), 10);
    close(sv[0]);
    assert_int_equal(vmig_mp_recv(b, &f), -ECONNRESET);
    vmig_mp_conn_free(a);
    vmig_mp_conn_free(b);
    close(sv[1]);
}

static void
test_conn_timeout_and_cancel(void **state)
{
    int sv[2], cancel = 0;
    struct vmig_mp_conn *b;
    struct vmig_mp_frame f;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[1], &b), 0);
    vmig_mp_conn_set_timeout(b, 120);
    assert_int_equal(vmig_mp_recv(b, &f), -ETIMEDOUT);
    vmig_mp_conn_set_timeout(b, 0);
    cancel = 1;
    vmig_mp_conn_set_cancel(b, &cancel);
    assert_int_equal(vmig_mp_recv(b, &f), -ECANCELED);
    vmig_mp_conn_free(b);
    close(sv[0]);
    close(sv[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preamble),
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hello_hostile),
        cmocka_unit_test(test_reply_roundtrip),
        cmocka_unit_test(test_conn_frames),
        cmocka_unit_test(test_conn_timeout_and_cancel),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
