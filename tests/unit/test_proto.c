/* SPDX-License-Identifier: MIT */
/*
 * test_proto.c - vfio-user codec: round trips and rejections per command.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vmig/proto.h>

#define CMD VMIG_VFU_F_TYPE_COMMAND
#define REPLY VMIG_VFU_F_TYPE_REPLY

static uint8_t msgbuf[VMIG_VFU_MAX_MSG_SIZE];
static const struct vmig_vfu_limits lim = {1u << 20, 8};

/* Encode cmd/flags/payload, decode it, check the outcome. */
static void
chk(uint16_t cmd, uint32_t flags, const void *p, size_t l, unsigned int nfds,
    int want, enum vmig_vfu_perr want_why)
{
    struct vmig_vfu_hdr h = {.id = 0x1234, .cmd = cmd, .flags = flags};
    struct vmig_vfu_msg m;
    enum vmig_vfu_perr why = VMIG_VFU_PERR__COUNT;
    long n = vmig_vfu_encode(msgbuf, sizeof(msgbuf), &h, p, l, NULL, 0);
    int rc;

    assert_true(n >= 16);
    memset(&m, 0xa5, sizeof(m));
    rc = vmig_vfu_decode(msgbuf, (size_t)n, nfds, &lim, &m, &why);
    if (rc != want || why != want_why) {
        fail_msg("%s flags %#x len %zu: rc %d (%s), want %d (%s)",
                 vmig_vfu_cmd_name(cmd), flags, l, rc, vmig_vfu_perr_name(why),
                 want, vmig_vfu_perr_name(want_why));
    }
    if (want == 0) {
        assert_int_equal(m.hdr.id, 0x1234);
        assert_int_equal(m.hdr.cmd, cmd);
        assert_int_equal(m.hdr.size, (uint32_t)n);
        if (!(flags & VMIG_VFU_F_ERROR)) {
            assert_int_equal(m.len, l);
            if (l > 0) {
                assert_memory_equal(m.payload, p, l);
            }
        }
        assert_int_equal(m.nfds, nfds);
    }
}

#define OK(cmd, fl, p, l, nfds) chk(cmd, fl, p, l, nfds, 0, VMIG_VFU_PERR_NONE)
#define BAD(cmd, fl, p, l, nfds, rc, w)                                        \
    chk(cmd, fl, p, l, nfds, rc, VMIG_VFU_PERR_##w)

static void
test_header(void **state)
{
    struct vmig_vfu_hdr h = {.id = 1, .cmd = VMIG_VFU_CMD_DEVICE_RESET};
    struct vmig_vfu_msg m;
    enum vmig_vfu_perr why;
    uint8_t b[32] = {0};

    (void)state;
    assert_int_equal(vmig_vfu_decode(NULL, 0, 0, NULL, &m, &why), -EPROTO);
    assert_int_equal(why, VMIG_VFU_PERR_SHORT_HEADER);
    assert_int_equal(vmig_vfu_decode(b, 15, 0, NULL, &m, &why), -EPROTO);
    assert_int_equal(why, VMIG_VFU_PERR_SHORT_HEADER);
    /* msg_size disagrees with the bytes present, both ways */
    h.size = 17;
    memcpy(b, &h, sizeof(h));
    assert_int_equal(vmig_vfu_decode(b, 16, 0, NULL, &m, &why), -EPROTO);
    assert_int_equal(why, VMIG_VFU_PERR_SIZE_MISMATCH);
    h.size = 16;
    memcpy(b, &h, sizeof(h));
    assert_int_equal(vmig_vfu_decode(b, 20, 0, NULL, &m, &why), -EPROTO);
    assert_int_equal(why, VMIG_VFU_PERR_SIZE_MISMATCH);
    assert_int_equal(vmig_vfu_decode(b, 16, 0, NULL, &m, NULL), 0);
    /* unknown commands: 0, the retired 14, past the end */
    BAD(0, CMD, NULL, 0, 0, -ENOSYS, UNKNOWN_CMD);
    BAD(14, CMD, NULL, 0, 0, -ENOSYS, UNKNOWN_CMD);
    BAD(19, CMD, NULL, 0, 0, -ENOSYS, UNKNOWN_CMD);
    BAD(0xffff, CMD, NULL, 0, 0, -ENOSYS, UNKNOWN_CMD);
    /* type 2, reserved bits, NO_REPLY on a reply */
    BAD(VMIG_VFU_CMD_DEVICE_RESET, 2, NULL, 0, 0, -EINVAL, BAD_FLAGS);
    BAD(VMIG_VFU_CMD_DEVICE_RESET, 0x40, NULL, 0, 0, -EINVAL, BAD_FLAGS);
    BAD(VMIG_VFU_CMD_DEVICE_RESET, REPLY | VMIG_VFU_F_NO_REPLY, NULL, 0, 0,
        -EINVAL, BAD_FLAGS);
    OK(VMIG_VFU_CMD_DEVICE_RESET, CMD | VMIG_VFU_F_NO_REPLY, NULL, 0, 0);
    OK(VMIG_VFU_CMD_DEVICE_RESET, REPLY, NULL, 0, 0);
    /* fds where none are allowed; more than the limit */
    BAD(VMIG_VFU_CMD_DEVICE_RESET, CMD, NULL, 0, 1, -EPROTO, FDS);
    BAD(VMIG_VFU_CMD_DEVICE_RESET, CMD, NULL, 0, 9, -EPROTO, FDS);
    /* an error reply carries only the header; extra bytes are dropped */
    OK(VMIG_VFU_CMD_DMA_MAP, REPLY | VMIG_VFU_F_ERROR, "junk", 4, 0);
    assert_string_equal(vmig_vfu_cmd_name(15), "REGION_WRITE_MULTI");
    assert_string_equal(vmig_vfu_cmd_name(14), "UNKNOWN");
    assert_string_equal(vmig_vfu_perr_name(VMIG_VFU_PERR_COUNT),
                        "count too large");
}

static void
test_version(void **state)
{
    uint8_t b[64];
    struct vmig_vfu_version v = {0, 1};
    const char *j = "{\"capabilities\":{}}";

    (void)state;
    memcpy(b, &v, 4);
    OK(VMIG_VFU_CMD_VERSION, CMD, b, 4, 0);
    memcpy(b + 4, j, strlen(j) + 1);
    OK(VMIG_VFU_CMD_VERSION, CMD, b, 4 + strlen(j) + 1, 0);
    OK(VMIG_VFU_CMD_VERSION, REPLY, b, 4 + strlen(j) + 1, 0);
    /* not NUL-terminated */
    BAD(VMIG_VFU_CMD_VERSION, CMD, b, 4 + strlen(j), 0, -EINVAL, BAD_DATA);
    BAD(VMIG_VFU_CMD_VERSION, CMD, b, 3, 0, -EPROTO, SHORT_PAYLOAD);
}

static void
test_dma_map_unmap(void **state)
{
    struct vmig_vfu_dma_map mp = {32, VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE, 0,
                                  0x10000, 0x1000};
    struct vmig_vfu_dma_unmap um = {24, 0, 0x10000, 0x1000};

    (void)state;
    OK(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, sizeof(mp), 1);
    OK(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, sizeof(mp), 0);
    OK(VMIG_VFU_CMD_DMA_MAP, REPLY, NULL, 0, 0);
    BAD(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, sizeof(mp), 2, -EPROTO, FDS);
    BAD(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, 31, 0, -EPROTO, SHORT_PAYLOAD);
    mp.argsz = 16;
    BAD(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, sizeof(mp), 0, -EINVAL, ARGSZ);
    mp.argsz = 32;
    mp.flags = 4;
    BAD(VMIG_VFU_CMD_DMA_MAP, CMD, &mp, sizeof(mp), 0, -EINVAL, BAD_FLAGS);

    OK(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, sizeof(um), 0);
    OK(VMIG_VFU_CMD_DMA_UNMAP, REPLY, &um, sizeof(um), 0);
    um.flags = VMIG_VFU_DMA_UNMAP_ALL;
    OK(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, sizeof(um), 0);
    um.flags = 1;
    BAD(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, sizeof(um), 0, -EINVAL, BAD_FLAGS);
    um.flags = 0;
    um.argsz = 8;
    BAD(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, sizeof(um), 0, -EINVAL, ARGSZ);
    BAD(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, 20, 0, -EPROTO, SHORT_PAYLOAD);
    BAD(VMIG_VFU_CMD_DMA_UNMAP, CMD, &um, sizeof(um), 1, -EPROTO, FDS);
}

static void
test_info(void **state)
{
    struct vmig_vfu_device_info di = {16, 0, 0, 0};
    struct vmig_vfu_irq_info ii = {16, 0, 0, 0};
    struct vmig_vfu_region_io_fds io = {16, 0, 0, 0};
    uint8_t b[128] = {0};
    struct vmig_vfu_region_info ri = {32, 0, 0, 0, 4096, 0};

    (void)state;
    OK(VMIG_VFU_CMD_DEVICE_GET_INFO, CMD, &di, sizeof(di), 0);
    OK(VMIG_VFU_CMD_DEVICE_GET_INFO, REPLY, &di, sizeof(di), 0);
    BAD(VMIG_VFU_CMD_DEVICE_GET_INFO, CMD, &di, 12, 0, -EPROTO, SHORT_PAYLOAD);
    di.argsz = 4;
    BAD(VMIG_VFU_CMD_DEVICE_GET_INFO, CMD, &di, sizeof(di), 0, -EINVAL, ARGSZ);
    BAD(VMIG_VFU_CMD_DEVICE_GET_INFO, REPLY, &di, sizeof(di), 0, -EINVAL,
        ARGSZ);

    OK(VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, CMD, &ii, sizeof(ii), 0);
    OK(VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, REPLY, &ii, sizeof(ii), 0);
    ii.argsz = 15;
    BAD(VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, CMD, &ii, sizeof(ii), 0, -EINVAL,
        ARGSZ);
    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_IO_FDS, CMD, &io, sizeof(io), 0);
    BAD(VMIG_VFU_CMD_DEVICE_GET_REGION_IO_FDS, CMD, &io, 8, 0, -EPROTO,
        SHORT_PAYLOAD);

    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, CMD, &ri, sizeof(ri), 0);
    BAD(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, CMD, &ri, sizeof(ri), 1, -EPROTO,
        FDS);
    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, &ri, sizeof(ri), 0);
    /* mmap-able region: the fd rides on the reply */
    ri.flags = VMIG_VFU_REGION_MMAP;
    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, &ri, sizeof(ri), 1);
    ri.flags = 0;
    BAD(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, &ri, sizeof(ri), 1, -EPROTO,
        FDS);
    /* capability chain pointing outside the reply */
    ri.flags = VMIG_VFU_REGION_CAPS;
    ri.argsz = 64;
    ri.cap_offset = 60;
    memcpy(b, &ri, sizeof(ri));
    BAD(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, b, 64, 0, -EINVAL,
        BAD_DATA);
    ri.cap_offset = 8;
    memcpy(b, &ri, sizeof(ri));
    BAD(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, b, 64, 0, -EINVAL,
        BAD_DATA);
    ri.cap_offset = 32;
    memcpy(b, &ri, sizeof(ri));
    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, b, 64, 0);
    /* truncated reply: argsz says how much room is needed */
    ri.argsz = 128;
    memcpy(b, &ri, sizeof(ri));
    OK(VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, REPLY, b, 32, 0);
}

static void
test_set_irqs(void **state)
{
    uint8_t b[64] = {0};
    struct vmig_vfu_irq_set s = {20, 0, 0, 0, 2};

    (void)state;
    s.flags = VMIG_VFU_IRQ_DATA_EVENTFD | VMIG_VFU_IRQ_ACTION_TRIGGER;
    OK(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 2);
    OK(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0);
    OK(VMIG_VFU_CMD_DEVICE_SET_IRQS, REPLY, NULL, 0, 0);
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 1, -EPROTO, FDS);
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 3, -EPROTO, FDS);
    s.flags = VMIG_VFU_IRQ_DATA_BOOL | VMIG_VFU_IRQ_ACTION_MASK;
    memcpy(b, &s, sizeof(s));
    OK(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, b, 22, 0);
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, b, 21, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, b, 22, 1, -EPROTO, FDS);
    s.flags = VMIG_VFU_IRQ_DATA_NONE | VMIG_VFU_IRQ_ACTION_UNMASK;
    memcpy(b, &s, sizeof(s));
    OK(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, b, 20, 0);
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, b, 21, 0, -EPROTO, SIZE_MISMATCH);
    /* two data types; two actions; none; unknown bit */
    s.flags = VMIG_VFU_IRQ_DATA_NONE | VMIG_VFU_IRQ_DATA_BOOL |
              VMIG_VFU_IRQ_ACTION_MASK;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -EINVAL,
        BAD_FLAGS);
    s.flags = VMIG_VFU_IRQ_DATA_NONE | VMIG_VFU_IRQ_ACTION_MASK |
              VMIG_VFU_IRQ_ACTION_TRIGGER;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -EINVAL,
        BAD_FLAGS);
    s.flags = 0;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -EINVAL,
        BAD_FLAGS);
    s.flags = VMIG_VFU_IRQ_DATA_NONE | VMIG_VFU_IRQ_ACTION_MASK | 0x40;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -EINVAL,
        BAD_FLAGS);
    s.flags = VMIG_VFU_IRQ_DATA_NONE | VMIG_VFU_IRQ_ACTION_MASK;
    s.count = VMIG_VFU_MAX_IRQ_COUNT + 1;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -E2BIG, COUNT);
    s.count = 1;
    s.start = UINT32_MAX;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -E2BIG, COUNT);
    s.start = 0;
    s.argsz = 19;
    BAD(VMIG_VFU_CMD_DEVICE_SET_IRQS, CMD, &s, sizeof(s), 0, -EINVAL, ARGSZ);
}

static void
test_region_rw(void **state)
{
    static uint8_t b[(1u << 20) + 64];
    struct vmig_vfu_region_rw rw = {0x100, 0, 4};
    struct vmig_vfu_write_multi wm = {2};
    struct vmig_vfu_write_one w1 = {0, 0, 4, {1, 2, 3, 4}};

    (void)state;
    OK(VMIG_VFU_CMD_REGION_READ, CMD, &rw, sizeof(rw), 0);
    memcpy(b, &rw, sizeof(rw));
    OK(VMIG_VFU_CMD_REGION_READ, REPLY, b, 20, 0);
    /* a reply padded past its count bytes: the padding is ignored */
    OK(VMIG_VFU_CMD_REGION_READ, REPLY, b, 28, 0);
    BAD(VMIG_VFU_CMD_REGION_READ, REPLY, b, 19, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_REGION_READ, REPLY, b, 16, 0, -EPROTO, SIZE_MISMATCH);
    OK(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 20, 0);
    BAD(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 24, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 12, 0, -EPROTO, SHORT_PAYLOAD);
    OK(VMIG_VFU_CMD_REGION_WRITE, REPLY, &rw, sizeof(rw), 0);
    /* count above max_data_xfer_size, with or without the bytes */
    rw.count = (1u << 20) + 1;
    BAD(VMIG_VFU_CMD_REGION_READ, CMD, &rw, sizeof(rw), 0, -E2BIG, COUNT);
    memcpy(b, &rw, sizeof(rw));
    BAD(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 16 + rw.count, 0, -E2BIG, COUNT);
    rw.count = 1u << 20;
    memcpy(b, &rw, sizeof(rw));
    OK(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 16 + rw.count, 0);
    /* lying count: huge value, few bytes */
    rw.count = UINT32_MAX;
    memcpy(b, &rw, sizeof(rw));
    BAD(VMIG_VFU_CMD_REGION_WRITE, CMD, b, 20, 0, -E2BIG, COUNT);

    memcpy(b, &wm, 8);
    memcpy(b + 8, &w1, 24);
    memcpy(b + 32, &w1, 24);
    OK(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 56, 0);
    OK(VMIG_VFU_CMD_REGION_WRITE_MULTI, REPLY, &wm, 8, 0);
    BAD(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 55, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 4, 0, -EPROTO, SHORT_PAYLOAD);
    wm.wr_cnt = 0;
    memcpy(b, &wm, 8);
    BAD(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 8, 0, -E2BIG, COUNT);
    wm.wr_cnt = UINT64_MAX / 24 + 2; /* would overflow n * 24 */
    memcpy(b, &wm, 8);
    BAD(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 56, 0, -E2BIG, COUNT);
    wm.wr_cnt = 2;
    memcpy(b, &wm, 8);
    w1.count = 9;
    memcpy(b + 32, &w1, 24);
    BAD(VMIG_VFU_CMD_REGION_WRITE_MULTI, CMD, b, 56, 0, -E2BIG, COUNT);
}

static void
test_dma_rw(void **state)
{
    uint8_t b[64] = {0};
    struct vmig_vfu_dma_rw d = {0x1000, 8};

    (void)state;
    OK(VMIG_VFU_CMD_DMA_READ, CMD, &d, sizeof(d), 0);
    BAD(VMIG_VFU_CMD_DMA_READ, CMD, b, 24, 0, -EPROTO, SIZE_MISMATCH);
    memcpy(b, &d, sizeof(d));
    OK(VMIG_VFU_CMD_DMA_READ, REPLY, b, 24, 0);
    BAD(VMIG_VFU_CMD_DMA_READ, REPLY, b, 23, 0, -EPROTO, SIZE_MISMATCH);
    OK(VMIG_VFU_CMD_DMA_WRITE, CMD, b, 24, 0);
    BAD(VMIG_VFU_CMD_DMA_WRITE, CMD, b, 16, 0, -EPROTO, SIZE_MISMATCH);
    OK(VMIG_VFU_CMD_DMA_WRITE, REPLY, b, 16, 0);
    OK(VMIG_VFU_CMD_DMA_WRITE, REPLY, b, 12, 0);
    BAD(VMIG_VFU_CMD_DMA_WRITE, REPLY, b, 20, 0, -EPROTO, SIZE_MISMATCH);
    d.count = UINT64_MAX;
    memcpy(b, &d, sizeof(d));
    BAD(VMIG_VFU_CMD_DMA_WRITE, CMD, b, 24, 0, -E2BIG, COUNT);
    BAD(VMIG_VFU_CMD_DMA_READ, CMD, b, 16, 0, -E2BIG, COUNT);
}

static void
test_feature(void **state)
{
    uint8_t b[64] = {0};
    struct vmig_vfu_feature f = {16, VMIG_VFU_FEAT_MIGRATION |
                                         VMIG_VFU_FEATURE_GET};

    (void)state;
    OK(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0);
    memcpy(b, &f, sizeof(f));
    OK(VMIG_VFU_CMD_DEVICE_FEATURE, REPLY, b, 16, 0);
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, REPLY, b, 16, 1, -EPROTO, FDS);
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, b, 4, 0, -EPROTO, SHORT_PAYLOAD);
    f.flags = VMIG_VFU_FEAT_X_BULK_CHANNEL | VMIG_VFU_FEATURE_GET;
    memcpy(b, &f, sizeof(f));
    OK(VMIG_VFU_CMD_DEVICE_FEATURE, REPLY, b, 8, 1);
    f.flags = 2 | VMIG_VFU_FEATURE_GET | VMIG_VFU_FEATURE_SET;
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0, -EINVAL, BAD_FLAGS);
    f.flags |= VMIG_VFU_FEATURE_PROBE;
    OK(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0);
    f.flags = 2;
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0, -EINVAL, BAD_FLAGS);
    f.flags = 2 | VMIG_VFU_FEATURE_SET | (1u << 19);
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0, -EINVAL, BAD_FLAGS);
    f.flags = 2 | VMIG_VFU_FEATURE_SET;
    f.argsz = 7;
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 0, -EINVAL, ARGSZ);
    BAD(VMIG_VFU_CMD_DEVICE_FEATURE, CMD, &f, sizeof(f), 1, -EPROTO, FDS);
}

static void
test_mig_data(void **state)
{
    uint8_t b[64] = {0};
    struct vmig_vfu_mig_data d = {8, 16};

    (void)state;
    OK(VMIG_VFU_CMD_MIG_DATA_READ, CMD, &d, sizeof(d), 0);
    d.argsz = 4;
    BAD(VMIG_VFU_CMD_MIG_DATA_READ, CMD, &d, sizeof(d), 0, -EINVAL, ARGSZ);
    d.argsz = 8;
    d.size = (1u << 20) + 1;
    BAD(VMIG_VFU_CMD_MIG_DATA_READ, CMD, &d, sizeof(d), 0, -E2BIG, COUNT);
    d.size = 4;
    memcpy(b, &d, sizeof(d));
    OK(VMIG_VFU_CMD_MIG_DATA_READ, REPLY, b, 12, 0);
    OK(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 12, 0);
    /* a reply padded to the size asked for: size counts, the rest is
     * ignored; fewer bytes than size are still refused */
    OK(VMIG_VFU_CMD_MIG_DATA_READ, REPLY, b, 40, 0);
    BAD(VMIG_VFU_CMD_MIG_DATA_READ, REPLY, b, 11, 0, -EPROTO, SIZE_MISMATCH);
    /* a request is exact: data past size is refused */
    BAD(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 13, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 11, 0, -EPROTO, SIZE_MISMATCH);
    BAD(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 6, 0, -EPROTO, SHORT_PAYLOAD);
    /* argsz = 8 + size (libvfio-user) or anything else: size decides */
    d.argsz = 12;
    memcpy(b, &d, sizeof(d));
    OK(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 12, 0);
    d.argsz = 0;
    memcpy(b, &d, sizeof(d));
    OK(VMIG_VFU_CMD_MIG_DATA_WRITE, CMD, b, 12, 0);
    OK(VMIG_VFU_CMD_MIG_DATA_WRITE, REPLY, NULL, 0, 0);
}

static void
test_caps(void **state)
{
    struct vmig_vfu_caps c, d;
    char buf[512];
    int n;

    (void)state;
    assert_int_equal(vmig_vfu_caps_parse(NULL, 0, &c), 0);
    assert_int_equal(c.max_msg_fds, 1);
    assert_int_equal(c.max_data_xfer_size, 1u << 20);
    c.max_msg_fds = 16;
    c.max_data_xfer_size = 4u << 20;
    c.pgsizes = 4096 | (2u << 20);
    c.write_multiple = true;
    c.ext = VMIG_VFU_EXT__ALL;
    n = vmig_vfu_caps_format(&c, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(vmig_vfu_caps_parse(buf, (size_t)n, &d), 0);
    assert_int_equal(d.max_msg_fds, 16);
    assert_int_equal(d.max_data_xfer_size, 4u << 20);
    assert_true(d.pgsizes == c.pgsizes);
    assert_true(d.write_multiple);
    assert_int_equal(d.ext, VMIG_VFU_EXT__ALL);
    assert_int_equal(vmig_vfu_caps_format(&c, buf, 10), -E2BIG);

#define P(s) vmig_vfu_caps_parse(s, strlen(s), &d)
    /* legacy migration object, unknown caps: accepted */
    assert_int_equal(P("{\"capabilities\":{\"migration\":{\"pgsize\":4096,"
                       "\"max_bitmap_size\":1},\"twin_socket\":{},"
                       "\"future\":[1,2]}}"),
                     0);
    assert_true(d.legacy_migration);
    assert_int_equal(d.ext, 0);
    assert_int_equal(P("{}"), 0);
    assert_int_equal(P(""), 0);
    assert_int_equal(P("[]"), -EINVAL);
    assert_int_equal(P("{"), -EINVAL);
    assert_int_equal(P("{} x"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":1}"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"max_msg_fds\":\"8\"}}"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"max_msg_fds\":-1}}"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"max_data_xfer_size\":0}}"),
                     -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"pgsizes\":0}}"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"write_multiple\":1}}"), -EINVAL);
    assert_int_equal(P("{\"capabilities\":{\"x-vmig\":true}}"), -EINVAL);
    assert_int_equal(vmig_vfu_caps_parse("{}\0", 3, &d), -EINVAL);
#undef P
}

static void
test_sparse_caps(void **state)
{
    uint8_t b[256] = {0};
    struct vmig_vfu_region_info ri = {0, VMIG_VFU_REGION_CAPS, 1, 32, 16384, 0};
    struct vmig_vfu_cap_hdr other = {99, 1, 40};
    struct vmig_vfu_sparse_mmap sm = {{VMIG_VFU_CAP_SPARSE_MMAP, 1, 0}, 2, 0};
    struct vmig_vfu_sparse_area a[2] = {{0, 4096}, {8192, 4096}}, out[2];

    (void)state;
    memcpy(b, &ri, sizeof(ri));
    memcpy(b + 32, &other, sizeof(other));
    memcpy(b + 40, &sm, sizeof(sm));
    memcpy(b + 56, a, sizeof(a));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), 2);
    assert_memory_equal(out, a, sizeof(a));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 1), 2);
    assert_int_equal(vmig_vfu_region_sparse(b, 88, NULL, 0), 2);
    /* areas cut off by the end of the reply */
    assert_int_equal(vmig_vfu_region_sparse(b, 80, out, 2), -EPROTO);
    assert_int_equal(vmig_vfu_region_sparse(b, 20, out, 2), -EPROTO);
    /* a chain pointing back at itself */
    other.next = 32;
    memcpy(b + 32, &other, sizeof(other));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), -EPROTO);
    /* a chain pointing past the end, or into the fixed part */
    other.next = 1000;
    memcpy(b + 32, &other, sizeof(other));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), -EPROTO);
    ri.cap_offset = 8;
    memcpy(b, &ri, sizeof(ri));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), -EPROTO);
    /* no CAPS flag, or a chain without the sparse capability */
    ri.flags = 0;
    memcpy(b, &ri, sizeof(ri));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), 0);
    ri.flags = VMIG_VFU_REGION_CAPS;
    ri.cap_offset = 32;
    other.next = 0;
    memcpy(b, &ri, sizeof(ri));
    memcpy(b + 32, &other, sizeof(other));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), 0);
    /* a huge nr_areas */
    other.next = 40;
    memcpy(b + 32, &other, sizeof(other));
    sm.nr_areas = UINT32_MAX;
    memcpy(b + 40, &sm, sizeof(sm));
    assert_int_equal(vmig_vfu_region_sparse(b, 88, out, 2), -EPROTO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),        cmocka_unit_test(test_version),
        cmocka_unit_test(test_dma_map_unmap), cmocka_unit_test(test_info),
        cmocka_unit_test(test_set_irqs),      cmocka_unit_test(test_region_rw),
        cmocka_unit_test(test_dma_rw),        cmocka_unit_test(test_feature),
        cmocka_unit_test(test_mig_data),      cmocka_unit_test(test_caps),
        cmocka_unit_test(test_sparse_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
