/* SPDX-License-Identifier: MIT */
/*
 * test_proto_reply.c - the client's reply decoders (<vmig/proto_reply.h>):
 * per decoder, what the vfio-user specification allows is accepted
 * (padding, truncation, unknown capabilities and keys, argsz read
 * liberally) and what it forbids is refused with the clause broken.
 *
 * Every reply is built as bytes, run through vmig_vfu_decode() first (as
 * the client does), then through its reply decoder.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vmig/proto_reply.h>

static uint8_t msgbuf[VMIG_VFU_MAX_MSG_SIZE];
static const struct vmig_vfu_limits lim = {1u << 20, 8};

/* Encode a successful reply of @cmd with @p, decode it into @m. */
static void
reply(uint16_t cmd, const void *p, size_t l, unsigned int nfds,
      struct vmig_vfu_msg *m)
{
    struct vmig_vfu_hdr h = {
        .id = 9, .cmd = cmd, .flags = VMIG_VFU_F_TYPE_REPLY};
    enum vmig_vfu_perr why;
    long n = vmig_vfu_encode(msgbuf, sizeof(msgbuf), &h, p, l, NULL, 0);

    assert_true(n >= 16);
    if (vmig_vfu_decode(msgbuf, (size_t)n, nfds, &lim, m, &why) != 0) {
        fail_msg("%s reply of %zu bytes refused by the decoder: %s",
                 vmig_vfu_cmd_name(cmd), l, vmig_vfu_perr_name(why));
    }
}

/* The reject names a rule containing @word and says something. */
static void
said(const struct vmig_vfu_reject *why, const char *word)
{
    assert_non_null(why->rule);
    if (strstr(why->rule, word) == NULL) {
        fail_msg("rule \"%s\" does not mention \"%s\"", why->rule, word);
    }
    assert_true(why->seen[0] != '\0');
}

static void
test_version(void **state)
{
    static const struct vmig_vfu_version asked = {0, 1};
    struct vmig_vfu_version v;
    struct vmig_vfu_caps caps;
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    uint8_t b[256] = {0};
    const char *j = "{\"capabilities\":{\"max_data_xfer_size\":65536,"
                    "\"future\":{\"x\":[1]}},\"vendor\":\"other\"}";
    size_t jl = strlen(j) + 1;

    (void)state;
    /* no JSON at all: the spec's defaults */
    memcpy(b, &asked, 4);
    reply(VMIG_VFU_CMD_VERSION, b, 4, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why), 0);
    assert_int_equal(caps.max_data_xfer_size, 1u << 20);
    assert_int_equal(caps.max_msg_fds, 1);
    /* unknown keys at both levels ignored; a lower minor accepted */
    v.major = 0;
    v.minor = 0;
    memcpy(b, &v, 4);
    memcpy(b + 4, j, jl);
    reply(VMIG_VFU_CMD_VERSION, b, 4 + jl, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why), 0);
    assert_int_equal(v.minor, 0);
    assert_int_equal(caps.max_data_xfer_size, 65536);
    /* NUL padding after the JSON's NUL (the decoder wants the last byte
     * NUL, the reply decoder the string to end at the first) */
    reply(VMIG_VFU_CMD_VERSION, b, 4 + jl + 7, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why), 0);
    assert_int_equal(caps.max_data_xfer_size, 65536);
    /* something other than NUL after it */
    b[4 + jl + 2] = 'x';
    reply(VMIG_VFU_CMD_VERSION, b, 4 + jl + 7, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why),
                     -EPROTO);
    said(&why, "NUL");
    b[4 + jl + 2] = 0;
    /* a known capability of the wrong type */
    {
        const char *bad = "{\"capabilities\":{\"max_msg_fds\":\"16\"}}";

        memcpy(b + 4, bad, strlen(bad) + 1);
        reply(VMIG_VFU_CMD_VERSION, b, 4 + strlen(bad) + 1, 0, &m);
        assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why),
                         -EPROTO);
        said(&why, "capabilities");
    }
    /* another major; a higher minor */
    v.major = 1;
    v.minor = 0;
    memcpy(b, &v, 4);
    reply(VMIG_VFU_CMD_VERSION, b, 4, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why),
                     -EOPNOTSUPP);
    said(&why, "major");
    v.major = 0;
    v.minor = 2;
    memcpy(b, &v, 4);
    reply(VMIG_VFU_CMD_VERSION, b, 4, 0, &m);
    assert_int_equal(vmig_vfu_reply_version(&m, &asked, &v, &caps, &why),
                     -EOPNOTSUPP);
    said(&why, "minor");
}

static void
test_device_info(void **state)
{
    struct vmig_vfu_device_info di = {16, 3, 9, 5}, out;
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    uint8_t b[64] = {0};

    (void)state;
    reply(VMIG_VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), 0, &m);
    assert_int_equal(vmig_vfu_reply_device_info(&m, &out, &why), 0);
    assert_int_equal(out.num_regions, 9);
    assert_int_equal(out.num_irqs, 5);
    /* a newer, longer struct: the fields we know are read, argsz says
     * the complete size */
    di.argsz = 24;
    memcpy(b, &di, sizeof(di));
    reply(VMIG_VFU_CMD_DEVICE_GET_INFO, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_device_info(&m, &out, &why), 0);
    assert_int_equal(out.num_regions, 9);
    di.num_irqs = 100000;
    reply(VMIG_VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), 0, &m);
    assert_int_equal(vmig_vfu_reply_device_info(&m, &out, &why), -EPROTO);
    said(&why, "IRQ");
}

/* A region info reply with @caps bytes of capabilities after it. */
static size_t
region(uint8_t *b, uint32_t argsz, uint32_t flags, uint32_t index,
       uint32_t cap_off, uint64_t size)
{
    struct vmig_vfu_region_info ri = {argsz, flags, index, cap_off, size, 0};

    memcpy(b, &ri, sizeof(ri));
    return sizeof(ri);
}

static void
put_cap(uint8_t *b, uint32_t off, uint16_t id, uint16_t ver, uint32_t next)
{
    struct vmig_vfu_cap_hdr h = {id, ver, next};

    memcpy(b + off, &h, sizeof(h));
}

static void
put_sparse(uint8_t *b, uint32_t off, uint32_t next, uint32_t nr,
           const struct vmig_vfu_sparse_area *a)
{
    uint32_t n2[2] = {nr, 0};

    put_cap(b, off, VMIG_VFU_CAP_SPARSE_MMAP, 1, next);
    memcpy(b + off + 8, n2, 8);
    memcpy(b + off + 16, a, sizeof(*a) * nr);
}

static void
test_region_info(void **state)
{
    static const struct vmig_vfu_sparse_area a[2] = {{0, 4096}, {8192, 8192}};
    struct vmig_vfu_region_info out;
    struct vmig_vfu_sparse_area got[2];
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    uint8_t b[256] = {0};
    const uint32_t caps = VMIG_VFU_REGION_CAPS | VMIG_VFU_REGION_READ;

    (void)state;
    /* no capabilities; a region with no flags at all (unused index) */
    region(b, 32, 0, 3, 0, 0);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 32, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 3, &out, &why), 0);
    assert_int_equal(out.size, 0);
    /* another region's info */
    assert_int_equal(vmig_vfu_reply_region_info(&m, 4, &out, &why), -EPROTO);
    said(&why, "index");
    /* truncated: argsz says 120 bytes are needed, the chain is not here */
    region(b, 120, caps, 0, 32, 16384);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 32, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), 0);
    assert_int_equal(out.argsz, 120);
    /* complete: an unknown capability, then the sparse one, out of order
     * (sparse first in memory, reached second) */
    region(b, 32 + 48 + 8, caps, 0, 80, 16384);
    put_sparse(b, 32, 0, 2, a);
    put_cap(b, 80, 0x77, 3, 32);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 88, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), 0);
    assert_int_equal(vmig_vfu_region_sparse(b, 88, got, 2), 2);
    assert_memory_equal(got, a, sizeof(a));
    /* padded past argsz: the padding is not searched */
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 120, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), 0);
    assert_int_equal(vmig_vfu_region_sparse(b, 120, got, 2), 2);
    /* a loop: the unknown capability points at itself */
    put_cap(b, 80, 0x77, 3, 80);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 88, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), -EPROTO);
    said(&why, "cap_offset");
    assert_int_equal(vmig_vfu_region_sparse(b, 88, got, 2), -EPROTO);
    /* a header past the reply's end */
    put_cap(b, 80, 0x77, 3, 84);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 88, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), -EPROTO);
    /* an area outside the region */
    put_cap(b, 80, 0x77, 3, 32);
    region(b, 88, caps, 0, 80, 12288);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 88, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), -EPROTO);
    said(&why, "sparse");
    /* nr_areas more than fit */
    region(b, 88, caps, 0, 80, 16384);
    put_sparse(b, 32, 0, 2, a);
    b[40] = 3;
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 88, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), -EPROTO);
    said(&why, "nr_areas");
    /* the CAPS flag clear: cap_offset means nothing */
    region(b, 32, VMIG_VFU_REGION_READ, 0, 9999, 4096);
    reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, b, 32, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why), 0);
    assert_int_equal(vmig_vfu_region_sparse(b, 32, got, 2), 0);
    /* an mmap offset that wraps */
    {
        struct vmig_vfu_region_info ri = {32,   VMIG_VFU_REGION_MMAP, 0, 0,
                                          4096, UINT64_MAX - 10};

        reply(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), 1, &m);
        assert_int_equal(vmig_vfu_reply_region_info(&m, 0, &out, &why),
                         -EPROTO);
        said(&why, "mmap");
    }
}

static void
test_irq_info(void **state)
{
    struct vmig_vfu_irq_info ii = {16, 0xff, 2, 4}, out;
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    uint8_t b[32] = {0};

    (void)state;
    /* unknown flag bits are ignored; a longer reply's tail too */
    memcpy(b, &ii, sizeof(ii));
    reply(VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_irq_info(&m, 2, &out, &why), 0);
    assert_int_equal(out.count, 4);
    assert_int_equal(vmig_vfu_reply_irq_info(&m, 1, &out, &why), -EPROTO);
    said(&why, "index");
    ii.count = VMIG_VFU_MAX_IRQ_COUNT + 1;
    reply(VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), 0, &m);
    assert_int_equal(vmig_vfu_reply_irq_info(&m, 2, &out, &why), -EPROTO);
}

static void
test_region_rw(void **state)
{
    static const uint8_t abc[8] = {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'};
    struct vmig_vfu_region_rw req = {0x40, 2, 8}, rw = req;
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    const uint8_t *data;
    uint8_t b[64] = {0};

    (void)state;
    memcpy(b, &rw, sizeof(rw));
    memcpy(b + 16, abc, 8);
    reply(VMIG_VFU_CMD_REGION_READ, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_read(&m, &req, &data, &why), 0);
    assert_memory_equal(data, abc, 8);
    /* padded: still count bytes */
    reply(VMIG_VFU_CMD_REGION_READ, b, 40, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_read(&m, &req, &data, &why), 0);
    assert_memory_equal(data, abc, 8);
    /* a short read, another offset, another region */
    rw.count = 4;
    memcpy(b, &rw, sizeof(rw));
    reply(VMIG_VFU_CMD_REGION_READ, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_read(&m, &req, &data, &why),
                     -EPROTO);
    said(&why, "count");
    rw = req;
    rw.offset = 0x48;
    memcpy(b, &rw, sizeof(rw));
    reply(VMIG_VFU_CMD_REGION_READ, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_read(&m, &req, &data, &why),
                     -EPROTO);
    said(&why, "offset");
    rw = req;
    rw.region = 0;
    memcpy(b, &rw, sizeof(rw));
    reply(VMIG_VFU_CMD_REGION_WRITE, b, 16, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_write(&m, &req, &why), -EPROTO);
    rw = req;
    memcpy(b, &rw, sizeof(rw));
    reply(VMIG_VFU_CMD_REGION_WRITE, b, 16, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_write(&m, &req, &why), 0);
    /* a write reply that echoes the data too: the tail is ignored */
    reply(VMIG_VFU_CMD_REGION_WRITE, b, 24, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_write(&m, &req, &why), 0);
    rw.count = 2;
    memcpy(b, &rw, sizeof(rw));
    reply(VMIG_VFU_CMD_REGION_WRITE, b, 16, 0, &m);
    assert_int_equal(vmig_vfu_reply_region_write(&m, &req, &why), -EPROTO);
    said(&why, "written");
}

static void
test_feature(void **state)
{
    const uint32_t get = VMIG_VFU_FEAT_MIGRATION | VMIG_VFU_FEATURE_GET;
    struct vmig_vfu_feature f = {16, get};
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    const uint8_t *data;
    uint64_t fl = 7;
    uint8_t b[64] = {0};

    (void)state;
    memcpy(b, &f, 8);
    memcpy(b + 8, &fl, 8);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 16, 0, &m);
    assert_int_equal(vmig_vfu_reply_feature(&m, get, 8, &data, &why), 8);
    assert_memory_equal(data, &fl, 8);
    /* longer data (a newer struct) is fine; argsz is not what counts */
    f.argsz = 8;
    memcpy(b, &f, 8);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 32, 0, &m);
    assert_int_equal(vmig_vfu_reply_feature(&m, get, 8, &data, &why), 24);
    /* the data missing */
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 12, 0, &m);
    assert_int_equal(vmig_vfu_reply_feature(&m, get, 8, &data, &why), -EPROTO);
    said(&why, "data");
    /* a SET reply without the echoed data: nothing needed from it */
    f.flags = VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET;
    memcpy(b, &f, 8);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 8, 0, &m);
    assert_int_equal(vmig_vfu_reply_feature(&m, f.flags, 0, NULL, &why), 0);
    /* another feature's reply */
    assert_int_equal(vmig_vfu_reply_feature(&m, get, 0, NULL, &why), -EPROTO);
    said(&why, "flags");
}

static void
test_log_report(void **state)
{
    const struct vmig_vfu_feat_log_report req = {0x100000, 100 * 4096, 4096};
    struct vmig_vfu_feature f = {8 + 24 + 16, VMIG_VFU_FEAT_DMA_LOGGING_REPORT |
                                                  VMIG_VFU_FEATURE_GET};
    struct vmig_vfu_feat_log_report lr = req;
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    const uint8_t *bm;
    uint64_t words[3] = {0x8000000000000001ull, 1ull << 35, 0};
    uint8_t b[128] = {0};

    (void)state;
    memcpy(b, &f, 8);
    memcpy(b + 8, &lr, 24);
    memcpy(b + 32, words, 16);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 48, 0, &m);
    assert_int_equal(vmig_vfu_reply_log_report(&m, &req, &bm, &why), 0);
    assert_memory_equal(bm, words, 16);
    /* padded with an extra word of zeroes */
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 56, 0, &m);
    assert_int_equal(vmig_vfu_reply_log_report(&m, &req, &bm, &why), 0);
    /* a short bitmap */
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 40, 0, &m);
    assert_int_equal(vmig_vfu_reply_log_report(&m, &req, &bm, &why), -EPROTO);
    said(&why, "bitmap");
    /* page 100 set: outside the 100-page range */
    words[1] |= 1ull << 36;
    memcpy(b + 32, words, 16);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 48, 0, &m);
    assert_int_equal(vmig_vfu_reply_log_report(&m, &req, &bm, &why), -EPROTO);
    said(&why, "must be zero");
    /* another range echoed */
    words[1] = 0;
    memcpy(b + 32, words, 16);
    lr.page_size = 8192;
    memcpy(b + 8, &lr, 24);
    reply(VMIG_VFU_CMD_DEVICE_FEATURE, b, 48, 0, &m);
    assert_int_equal(vmig_vfu_reply_log_report(&m, &req, &bm, &why), -EPROTO);
}

static void
test_mig_read(void **state)
{
    static const uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
    struct vmig_vfu_mig_data md = {8 + 5, 5};
    struct vmig_vfu_reject why;
    struct vmig_vfu_msg m;
    const uint8_t *data;
    uint32_t size = 99;
    uint8_t b[128] = {0};

    (void)state;
    memcpy(b, &md, 8);
    memcpy(b + 8, hello, 5);
    reply(VMIG_VFU_CMD_MIG_DATA_READ, b, 13, 0, &m);
    assert_int_equal(vmig_vfu_reply_mig_read(&m, 64, &size, &data, &why), 0);
    assert_int_equal(size, 5);
    assert_memory_equal(data, hello, 5);
    /* padded to the 64 bytes asked for, argsz saying so: size counts */
    md.argsz = 8 + 64;
    memcpy(b, &md, 8);
    reply(VMIG_VFU_CMD_MIG_DATA_READ, b, 8 + 64, 0, &m);
    assert_int_equal(vmig_vfu_reply_mig_read(&m, 64, &size, &data, &why), 0);
    assert_int_equal(size, 5);
    /* an empty reply: no data (the caller decides "for now" or "end") */
    md.size = 0;
    memcpy(b, &md, 8);
    reply(VMIG_VFU_CMD_MIG_DATA_READ, b, 8 + 64, 0, &m);
    assert_int_equal(vmig_vfu_reply_mig_read(&m, 64, &size, &data, &why), 0);
    assert_int_equal(size, 0);
    /* size above what was asked for */
    md.size = 65;
    memcpy(b, &md, 8);
    reply(VMIG_VFU_CMD_MIG_DATA_READ, b, 8 + 65, 0, &m);
    assert_int_equal(vmig_vfu_reply_mig_read(&m, 64, &size, &data, &why),
                     -EPROTO);
    said(&why, "at most");
}

static void
test_layout(void **state)
{
    (void)state;
    assert_non_null(
        strstr(vmig_vfu_reply_layout(VMIG_VFU_CMD_REGION_READ), "count"));
    assert_string_equal(vmig_vfu_reply_layout(14), "?");
    assert_string_equal(vmig_vfu_reply_layout(999), "?");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),     cmocka_unit_test(test_device_info),
        cmocka_unit_test(test_region_info), cmocka_unit_test(test_irq_info),
        cmocka_unit_test(test_region_rw),   cmocka_unit_test(test_feature),
        cmocka_unit_test(test_log_report),  cmocka_unit_test(test_mig_read),
        cmocka_unit_test(test_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
