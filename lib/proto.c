/* SPDX-License-Identifier: MIT */
/*
 * proto.c - the vfio-user codec: total decoding, encoding, capabilities.
 *
 * No I/O happens here.  Every command has one descriptor with the fixed
 * payload sizes of its request and reply, the fds each may carry, and a
 * validator for the variable part; vmig_vfu_decode() applies the generic
 * checks (header, msg_size, fixed part, fds) and then the validator.
 * Fields are read with memcpy so unaligned buffers are fine.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <vmig/proto.h>
#include "internal.h"
#include "proto_priv.h"

typedef int (*validate_fn)(const struct vmig_vfu_msg *m,
                           const struct vmig_vfu_limits *lim,
                           enum vmig_vfu_perr *why);

struct proto_desc {
    const char *name;
    uint32_t req_min;   /* fixed part of the request payload */
    uint32_t reply_min; /* fixed part of a successful reply */
    uint8_t req_fds;    /* fds a request may carry (SET_IRQS: per count) */
    uint8_t reply_fds;
    validate_fn req;
    validate_fn reply;
};

static int
fail(enum vmig_vfu_perr *why, enum vmig_vfu_perr w, int err)
{
    *why = w;
    return err;
}

/* argsz sits at offset 0 of most payloads and must cover the struct. */
static int
check_argsz(const struct vmig_vfu_msg *m, uint32_t min, enum vmig_vfu_perr *why)
{
    if (vmig__rd32(m->payload, 0) < min) {
        return fail(why, VMIG_VFU_PERR_ARGSZ, -EINVAL);
    }
    return 0;
}

static int
v_version(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
          enum vmig_vfu_perr *why)
{
    size_t jlen = m->len - sizeof(struct vmig_vfu_version);

    (void)lim;
    if (jlen == 0) {
        return 0;
    }
    if (jlen > VMIG_VFU_MAX_VERSION_JSON) {
        return fail(why, VMIG_VFU_PERR_COUNT, -E2BIG);
    }
    /* The JSON is a C string: it must end with its NUL inside the msg. */
    if (m->payload[m->len - 1] != '\0') {
        return fail(why, VMIG_VFU_PERR_BAD_DATA, -EINVAL);
    }
    return 0;
}

static int
v_dma_map(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
          enum vmig_vfu_perr *why)
{
    uint32_t flags = vmig__rd32(m->payload, 4);

    (void)lim;
    if (check_argsz(m, sizeof(struct vmig_vfu_dma_map), why) < 0) {
        return -EINVAL;
    }
    if (flags & ~(VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    return 0;
}

static int
v_dma_unmap(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
            enum vmig_vfu_perr *why)
{
    uint32_t flags = vmig__rd32(m->payload, 4);

    (void)lim;
    if (check_argsz(m, sizeof(struct vmig_vfu_dma_unmap), why) < 0) {
        return -EINVAL;
    }
    if (flags & ~VMIG_VFU_DMA_UNMAP_ALL) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    return 0;
}

/* Requests whose payload is {argsz, ...} with argsz >= the fixed part. */
static int
v_argsz16(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
          enum vmig_vfu_perr *why)
{
    (void)lim;
    return check_argsz(m, 16, why);
}

static int
v_argsz32(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
          enum vmig_vfu_perr *why)
{
    (void)lim;
    return check_argsz(m, 32, why);
}

static int
v_region_info_reply(const struct vmig_vfu_msg *m,
                    const struct vmig_vfu_limits *lim, enum vmig_vfu_perr *why)
{
    uint32_t flags = vmig__rd32(m->payload, 4);
    uint32_t cap_off = vmig__rd32(m->payload, 12);

    if (v_argsz32(m, lim, why) < 0) {
        return -EINVAL;
    }
    /* A capability chain must start inside what was sent. */
    /* A full reply (argsz fits) with caps must point inside itself; a
     * truncated one only tells the client how much room to ask for. */
    if ((flags & VMIG_VFU_REGION_CAPS) && cap_off != 0 &&
        vmig__rd32(m->payload, 0) <= m->len &&
        (cap_off < sizeof(struct vmig_vfu_region_info) ||
         cap_off > m->len - sizeof(struct vmig_vfu_cap_hdr))) {
        return fail(why, VMIG_VFU_PERR_BAD_DATA, -EINVAL);
    }
    if (m->nfds > 0 && !(flags & VMIG_VFU_REGION_MMAP)) {
        return fail(why, VMIG_VFU_PERR_FDS, -EPROTO);
    }
    return 0;
}

static int
v_set_irqs(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
           enum vmig_vfu_perr *why)
{
    uint32_t flags = vmig__rd32(m->payload, 4);
    uint32_t start = vmig__rd32(m->payload, 12);
    uint32_t count = vmig__rd32(m->payload, 16);
    uint32_t data = flags & VMIG_VFU_IRQ_DATA_MASK;
    uint32_t action = flags & VMIG_VFU_IRQ_ACTION_MASK_ALL;

    (void)lim;
    if (check_argsz(m, sizeof(struct vmig_vfu_irq_set), why) < 0) {
        return -EINVAL;
    }
    /* Exactly one data type and exactly one action, nothing else. */
    if ((flags & ~(VMIG_VFU_IRQ_DATA_MASK | VMIG_VFU_IRQ_ACTION_MASK_ALL)) ||
        data == 0 || (data & (data - 1)) || action == 0 ||
        (action & (action - 1))) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    if (count > VMIG_VFU_MAX_IRQ_COUNT || start > VMIG_VFU_MAX_IRQ_COUNT ||
        start + count > VMIG_VFU_MAX_IRQ_COUNT) {
        return fail(why, VMIG_VFU_PERR_COUNT, -E2BIG);
    }
    if (data == VMIG_VFU_IRQ_DATA_BOOL) {
        if (m->len != sizeof(struct vmig_vfu_irq_set) + count) {
            return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
        }
    } else if (m->len != sizeof(struct vmig_vfu_irq_set)) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    if (data == VMIG_VFU_IRQ_DATA_EVENTFD) {
        /* Either one fd per sub-index or none (de-assign). */
        if (m->nfds != 0 && m->nfds != count) {
            return fail(why, VMIG_VFU_PERR_FDS, -EPROTO);
        }
    } else if (m->nfds != 0) {
        return fail(why, VMIG_VFU_PERR_FDS, -EPROTO);
    }
    return 0;
}

static int
v_xfer(uint64_t count, const struct vmig_vfu_limits *lim,
       enum vmig_vfu_perr *why)
{
    if (count > lim->max_data_xfer) {
        return fail(why, VMIG_VFU_PERR_COUNT, -E2BIG);
    }
    return 0;
}

/* REGION_READ request, REGION_WRITE reply: no data follows. */
static int
v_region_nodata(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
                enum vmig_vfu_perr *why)
{
    return v_xfer(vmig__rd32(m->payload, 12), lim, why);
}

/* REGION_WRITE request: exactly count bytes follow. */
static int
v_region_data(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
              enum vmig_vfu_perr *why)
{
    uint32_t count = vmig__rd32(m->payload, 12);

    if (v_xfer(count, lim, why) < 0) {
        return -E2BIG;
    }
    if (m->len != sizeof(struct vmig_vfu_region_rw) + (size_t)count) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

/*
 * A reply whose u32 count at @count_off announces data after @fixed
 * bytes: at least that many must be there.  A reply padded past them is
 * accepted (the spec's "Message sizes": trailing bytes belong to no
 * field; servers pad MIG_DATA_READ replies to the size asked for).
 */
static int
v_data_reply(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
             enum vmig_vfu_perr *why, size_t count_off, size_t fixed)
{
    uint32_t count = vmig__rd32(m->payload, count_off);

    if (v_xfer(count, lim, why) < 0) {
        return -E2BIG;
    }
    if (m->len < fixed + (size_t)count) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

static int
v_region_read_reply(const struct vmig_vfu_msg *m,
                    const struct vmig_vfu_limits *lim, enum vmig_vfu_perr *why)
{
    return v_data_reply(m, lim, why, 12, sizeof(struct vmig_vfu_region_rw));
}

static int
v_dma_nodata(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
             enum vmig_vfu_perr *why)
{
    uint64_t count = vmig__rd64(m->payload, 8);

    if (v_xfer(count, lim, why) < 0) {
        return -E2BIG;
    }
    if (m->len != sizeof(struct vmig_vfu_dma_rw)) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

static int
v_dma_data(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
           enum vmig_vfu_perr *why)
{
    uint64_t count = vmig__rd64(m->payload, 8);

    if (v_xfer(count, lim, why) < 0) {
        return -E2BIG;
    }
    if (m->len != sizeof(struct vmig_vfu_dma_rw) + count) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

/*
 * DMA_WRITE reply: the spec's table shows a 4-byte count after the
 * address (12 bytes) while requests use 8; accept both, nothing more.
 */
static int
v_dma_write_reply(const struct vmig_vfu_msg *m,
                  const struct vmig_vfu_limits *lim, enum vmig_vfu_perr *why)
{
    (void)lim;
    if (m->len != 12 && m->len != 16) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

static int
v_write_multi(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
              enum vmig_vfu_perr *why)
{
    uint64_t n = vmig__rd64(m->payload, 0);

    (void)lim;
    if (n == 0 || n > VMIG_VFU_MAX_WRITE_MULTI) {
        return fail(why, VMIG_VFU_PERR_COUNT, -E2BIG);
    }
    if (m->len != sizeof(struct vmig_vfu_write_multi) +
                      n * sizeof(struct vmig_vfu_write_one)) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    for (uint64_t i = 0; i < n; i++) {
        size_t off = sizeof(struct vmig_vfu_write_multi) +
                     i * sizeof(struct vmig_vfu_write_one);
        uint32_t c = vmig__rd32(m->payload, off + 12);

        if (c == 0 || c > 8) {
            return fail(why, VMIG_VFU_PERR_COUNT, -E2BIG);
        }
    }
    return 0;
}

static int
v_feature(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
          enum vmig_vfu_perr *why)
{
    uint32_t flags = vmig__rd32(m->payload, 4);
    uint32_t ops = flags & (VMIG_VFU_FEATURE_GET | VMIG_VFU_FEATURE_SET |
                            VMIG_VFU_FEATURE_PROBE);

    (void)lim;
    if (check_argsz(m, sizeof(struct vmig_vfu_feature), why) < 0) {
        return -EINVAL;
    }
    if ((flags & ~(VMIG_VFU_FEATURE_MASK | ops)) || ops == 0 ||
        ops == (VMIG_VFU_FEATURE_GET | VMIG_VFU_FEATURE_SET)) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    return 0;
}

static int
v_feature_reply(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
                enum vmig_vfu_perr *why)
{
    (void)lim;
    /* The bulk channel reply carries the channel's fd. */
    if (m->nfds > 0 && (vmig__rd32(m->payload, 4) & VMIG_VFU_FEATURE_MASK) !=
                           VMIG_VFU_FEAT_X_BULK_CHANNEL) {
        return fail(why, VMIG_VFU_PERR_FDS, -EPROTO);
    }
    return 0;
}

static int
v_mig_read(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
           enum vmig_vfu_perr *why)
{
    if (check_argsz(m, sizeof(struct vmig_vfu_mig_data), why) < 0) {
        return -EINVAL;
    }
    return v_xfer(vmig__rd32(m->payload, 4), lim, why);
}

/* MIG_DATA_READ reply: argsz is not checked, for the reason below. */
static int
v_mig_read_reply(const struct vmig_vfu_msg *m,
                 const struct vmig_vfu_limits *lim, enum vmig_vfu_perr *why)
{
    return v_data_reply(m, lim, why, 4, sizeof(struct vmig_vfu_mig_data));
}

/* MIG_DATA_WRITE request: exactly size bytes follow. */
static int
v_mig_data(const struct vmig_vfu_msg *m, const struct vmig_vfu_limits *lim,
           enum vmig_vfu_perr *why)
{
    uint32_t size = vmig__rd32(m->payload, 4);

    /*
     * argsz is not checked against size: libvfio-user-era peers disagree
     * on its meaning; the byte count is taken from size, as libvfio-user
     * does (we send argsz = 8 + size on writes).
     */
    if (v_xfer(size, lim, why) < 0) {
        return -E2BIG;
    }
    if (m->len != sizeof(struct vmig_vfu_mig_data) + (size_t)size) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    return 0;
}

#define RW sizeof(struct vmig_vfu_region_rw)
#define DRW sizeof(struct vmig_vfu_dma_rw)

/* clang-format off */
static const struct proto_desc proto_table[VMIG_VFU_CMD__COUNT] = {
    [VMIG_VFU_CMD_VERSION] = { "VERSION", 4, 4, 0, 1,
                               v_version, v_version },
    [VMIG_VFU_CMD_DMA_MAP] = { "DMA_MAP", 32, 0, 1, 0, v_dma_map, NULL },
    [VMIG_VFU_CMD_DMA_UNMAP] = { "DMA_UNMAP", 24, 0, 0, 0,
                                 v_dma_unmap, NULL },
    [VMIG_VFU_CMD_DEVICE_GET_INFO] = { "DEVICE_GET_INFO", 16, 16, 0, 0,
                                       v_argsz16, v_argsz16 },
    [VMIG_VFU_CMD_DEVICE_GET_REGION_INFO] = { "DEVICE_GET_REGION_INFO",
                                              32, 32, 0, 1, v_argsz32,
                                              v_region_info_reply },
    [VMIG_VFU_CMD_DEVICE_GET_REGION_IO_FDS] = { "DEVICE_GET_REGION_IO_FDS",
                                                16, 16, 0, VMIG_VFU_MAX_FDS,
                                                v_argsz16, v_argsz16 },
    [VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO] = { "DEVICE_GET_IRQ_INFO", 16, 16,
                                           0, 0, v_argsz16, v_argsz16 },
    [VMIG_VFU_CMD_DEVICE_SET_IRQS] = { "DEVICE_SET_IRQS", 20, 0,
                                       VMIG_VFU_MAX_FDS, 0, v_set_irqs,
                                       NULL },
    [VMIG_VFU_CMD_REGION_READ] = { "REGION_READ", RW, RW, 0, 0,
                                   v_region_nodata, v_region_read_reply },
    [VMIG_VFU_CMD_REGION_WRITE] = { "REGION_WRITE", RW, RW, 0, 0,
                                    v_region_data, v_region_nodata },
    [VMIG_VFU_CMD_DMA_READ] = { "DMA_READ", DRW, DRW, 0, 0,
                                v_dma_nodata, v_dma_data },
    [VMIG_VFU_CMD_DMA_WRITE] = { "DMA_WRITE", DRW, 12, 0, 0,
                                 v_dma_data, v_dma_write_reply },
    [VMIG_VFU_CMD_DEVICE_RESET] = { "DEVICE_RESET", 0, 0, 0, 0,
                                    NULL, NULL },
    [VMIG_VFU_CMD_REGION_WRITE_MULTI] = { "REGION_WRITE_MULTI", 8, 8, 0, 0,
                                          v_write_multi, NULL },
    [VMIG_VFU_CMD_DEVICE_FEATURE] = { "DEVICE_FEATURE", 8, 8, 0, 1,
                                      v_feature, v_feature_reply },
    [VMIG_VFU_CMD_MIG_DATA_READ] = { "MIG_DATA_READ", 8, 8, 0, 0,
                                     v_mig_read, v_mig_read_reply },
    [VMIG_VFU_CMD_MIG_DATA_WRITE] = { "MIG_DATA_WRITE", 8, 0, 0, 0,
                                      v_mig_data, NULL },
};

static const char *const perr_names[VMIG_VFU_PERR__COUNT] = {
    [VMIG_VFU_PERR_NONE] = "ok",
    [VMIG_VFU_PERR_SHORT_HEADER] = "short header",
    [VMIG_VFU_PERR_SIZE_MISMATCH] = "size mismatch",
    [VMIG_VFU_PERR_SHORT_PAYLOAD] = "payload shorter than its fixed part",
    [VMIG_VFU_PERR_ARGSZ] = "argsz too small",
    [VMIG_VFU_PERR_COUNT] = "count too large",
    [VMIG_VFU_PERR_FDS] = "wrong number of file descriptors",
    [VMIG_VFU_PERR_UNKNOWN_CMD] = "unknown command",
    [VMIG_VFU_PERR_BAD_FLAGS] = "bad flags",
    [VMIG_VFU_PERR_BAD_DATA] = "malformed data",
};
/* clang-format on */

const char *
vmig_vfu_cmd_name(unsigned int cmd)
{
    if (cmd >= VMIG_VFU_CMD__COUNT || proto_table[cmd].name == NULL) {
        return "UNKNOWN";
    }
    return proto_table[cmd].name;
}

const char *
vmig_vfu_perr_name(enum vmig_vfu_perr why)
{
    if ((unsigned int)why >= VMIG_VFU_PERR__COUNT) {
        return "unknown";
    }
    return perr_names[why];
}

int
vmig_vfu_decode(const void *buf, size_t len, unsigned int nfds,
                const struct vmig_vfu_limits *lim, struct vmig_vfu_msg *out,
                enum vmig_vfu_perr *why)
{
    static const struct vmig_vfu_limits def = {VMIG_VFU_DEF_MAX_DATA_XFER,
                                               VMIG_VFU_DEF_MAX_FDS};
    enum vmig_vfu_perr dummy;
    const struct proto_desc *d;
    struct vmig_vfu_msg m;
    uint32_t type;
    bool reply;
    int ret;

    if (why == NULL) {
        why = &dummy;
    }
    *why = VMIG_VFU_PERR_NONE;
    if (lim == NULL) {
        lim = &def;
    }
    if (buf == NULL || len < sizeof(struct vmig_vfu_hdr)) {
        return fail(why, VMIG_VFU_PERR_SHORT_HEADER, -EPROTO);
    }
    memset(&m, 0, sizeof(m));
    memcpy(&m.hdr, buf, sizeof(m.hdr));
    if (m.hdr.size != len || len > VMIG_VFU_MAX_MSG_SIZE) {
        return fail(why, VMIG_VFU_PERR_SIZE_MISMATCH, -EPROTO);
    }
    m.len = len - sizeof(struct vmig_vfu_hdr);
    m.payload = m.len > 0 ? (const uint8_t *)buf + sizeof(m.hdr) : NULL;
    m.nfds = nfds;
    if (m.hdr.cmd >= VMIG_VFU_CMD__COUNT ||
        proto_table[m.hdr.cmd].name == NULL) {
        return fail(why, VMIG_VFU_PERR_UNKNOWN_CMD, -ENOSYS);
    }
    d = &proto_table[m.hdr.cmd];
    type = m.hdr.flags & VMIG_VFU_F_TYPE_MASK;
    if (type > VMIG_VFU_F_TYPE_REPLY ||
        (m.hdr.flags &
         ~(VMIG_VFU_F_TYPE_MASK | VMIG_VFU_F_NO_REPLY | VMIG_VFU_F_ERROR))) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    reply = type == VMIG_VFU_F_TYPE_REPLY;
    if (nfds > VMIG_VFU_MAX_FDS || nfds > lim->max_fds ||
        nfds > (reply ? d->reply_fds : d->req_fds)) {
        return fail(why, VMIG_VFU_PERR_FDS, -EPROTO);
    }
    if (reply && (m.hdr.flags & VMIG_VFU_F_ERROR)) {
        /* "If an error occurs, the reply must only include the header";
         * anything more is ignored rather than trusted. */
        m.len = 0;
        m.payload = NULL;
        *out = m;
        return 0;
    }
    if (reply && (m.hdr.flags & VMIG_VFU_F_NO_REPLY)) {
        return fail(why, VMIG_VFU_PERR_BAD_FLAGS, -EINVAL);
    }
    if (m.len < (reply ? d->reply_min : d->req_min)) {
        return fail(why, VMIG_VFU_PERR_SHORT_PAYLOAD, -EPROTO);
    }
    ret = reply ? (d->reply ? d->reply(&m, lim, why) : 0)
                : (d->req ? d->req(&m, lim, why) : 0);
    if (ret < 0) {
        return ret;
    }
    *out = m;
    return 0;
}

long
vmig_vfu_encode(void *buf, size_t cap, const struct vmig_vfu_hdr *hdr,
                const void *p1, size_t l1, const void *p2, size_t l2)
{
    struct vmig_vfu_hdr h = *hdr;
    size_t total = sizeof(h);

    if (l1 > VMIG_VFU_MAX_MSG_SIZE || l2 > VMIG_VFU_MAX_MSG_SIZE) {
        return -E2BIG;
    }
    total += l1 + l2;
    if (total > cap || total > VMIG_VFU_MAX_MSG_SIZE) {
        return -E2BIG;
    }
    h.size = (uint32_t)total;
    memcpy(buf, &h, sizeof(h));
    if (l1 > 0) {
        memcpy((uint8_t *)buf + sizeof(h), p1, l1);
    }
    if (l2 > 0) {
        memcpy((uint8_t *)buf + sizeof(h) + l1, p2, l2);
    }
    return (long)total;
}

void
vmig_vfu_caps_default(struct vmig_vfu_caps *caps)
{
    memset(caps, 0, sizeof(*caps));
    caps->max_msg_fds = VMIG_VFU_DEF_MAX_FDS;
    caps->max_data_xfer_size = VMIG_VFU_DEF_MAX_DATA_XFER;
    caps->max_dma_maps = VMIG_VFU_DEF_MAX_DMA_MAPS;
    caps->pgsizes = VMIG_VFU_DEF_PGSIZES;
}

/* A JSON number that fits in [lo, hi]; absent leaves *v alone. */
static int
caps_u64(struct json_object *o, const char *key, uint64_t lo, uint64_t hi,
         uint64_t *v)
{
    struct json_object *x;
    int64_t n;

    if (!json_object_object_get_ex(o, key, &x)) {
        return 0;
    }
    if (!json_object_is_type(x, json_type_int)) {
        return -EINVAL;
    }
    n = json_object_get_int64(x);
    if (n < 0 || (uint64_t)n < lo || (uint64_t)n > hi) {
        return -EINVAL;
    }
    *v = (uint64_t)n;
    return 0;
}

static int
caps_bool(struct json_object *o, const char *key, bool *v)
{
    struct json_object *x;

    if (!json_object_object_get_ex(o, key, &x)) {
        return 0;
    }
    if (!json_object_is_type(x, json_type_boolean)) {
        return -EINVAL;
    }
    *v = json_object_get_boolean(x);
    return 0;
}

static int
caps_from_object(struct json_object *c, struct vmig_vfu_caps *caps)
{
    struct json_object *x;
    uint64_t v;
    bool b;

    v = caps->max_msg_fds;
    if (caps_u64(c, "max_msg_fds", 0, UINT32_MAX, &v) < 0) {
        return -EINVAL;
    }
    caps->max_msg_fds = (uint32_t)v;
    v = caps->max_data_xfer_size;
    if (caps_u64(c, "max_data_xfer_size", 1, UINT32_MAX, &v) < 0) {
        return -EINVAL;
    }
    caps->max_data_xfer_size = (uint32_t)v;
    v = caps->max_dma_maps;
    if (caps_u64(c, "max_dma_maps", 0, UINT32_MAX, &v) < 0) {
        return -EINVAL;
    }
    caps->max_dma_maps = (uint32_t)v;
    v = caps->pgsizes;
    if (caps_u64(c, "pgsizes", 1, INT64_MAX, &v) < 0) {
        return -EINVAL;
    }
    caps->pgsizes = v;
    if (caps_bool(c, "write_multiple", &caps->write_multiple) < 0) {
        return -EINVAL;
    }
    /* The old spec's migration object: accepted, never required. */
    if (json_object_object_get_ex(c, "migration", &x)) {
        caps->legacy_migration = true;
    }
    if (json_object_object_get_ex(c, "x-vmig", &x)) {
        if (!json_object_is_type(x, json_type_object)) {
            return -EINVAL;
        }
        b = false;
        if (caps_bool(x, "precopy_info", &b) < 0) {
            return -EINVAL;
        }
        caps->ext |= b ? VMIG_VFU_EXT_PRECOPY_INFO : 0;
        b = false;
        if (caps_bool(x, "bulk_data", &b) < 0) {
            return -EINVAL;
        }
        caps->ext |= b ? VMIG_VFU_EXT_BULK_DATA : 0;
    }
    return 0;
}

int
vmig_vfu_caps_parse(const char *json, size_t len, struct vmig_vfu_caps *out)
{
    struct json_tokener *tok;
    struct json_object *root, *c;
    struct vmig_vfu_caps caps;
    int ret = 0;

    vmig_vfu_caps_default(&caps);
    if (len == 0) {
        *out = caps;
        return 0;
    }
    if (json == NULL) {
        return -EINVAL;
    }
    if (len > VMIG_VFU_MAX_VERSION_JSON) {
        return -E2BIG;
    }
    if (memchr(json, '\0', len) != NULL) {
        return -EINVAL;
    }
    tok = json_tokener_new_ex(16);
    if (tok == NULL) {
        return -ENOMEM;
    }
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (root == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        ret = -EINVAL;
        goto out;
    }
    if (!json_object_is_type(root, json_type_object)) {
        ret = -EINVAL;
        goto out;
    }
    if (json_object_object_get_ex(root, "capabilities", &c)) {
        if (!json_object_is_type(c, json_type_object)) {
            ret = -EINVAL;
            goto out;
        }
        ret = caps_from_object(c, &caps);
    }
    if (ret == 0) {
        *out = caps;
    }
out:
    json_object_put(root);
    json_tokener_free(tok);
    return ret;
}

int
vmig_vfu_caps_format(const struct vmig_vfu_caps *caps, char *buf, size_t cap)
{
    char ext[96] = "";
    int n;

    if (caps->ext != 0) {
        n = snprintf(ext, sizeof(ext),
                     ",\"x-vmig\":{\"precopy_info\":%s,\"bulk_data\":%s}",
                     (caps->ext & VMIG_VFU_EXT_PRECOPY_INFO) ? "true" : "false",
                     (caps->ext & VMIG_VFU_EXT_BULK_DATA) ? "true" : "false");
        if (n < 0 || (size_t)n >= sizeof(ext)) {
            return -E2BIG;
        }
    }
    n = snprintf(buf, cap,
                 "{\"capabilities\":{\"max_msg_fds\":%u,"
                 "\"max_data_xfer_size\":%u,\"max_dma_maps\":%u,"
                 "\"pgsizes\":%llu,\"write_multiple\":%s%s}}",
                 caps->max_msg_fds, caps->max_data_xfer_size,
                 caps->max_dma_maps, (unsigned long long)caps->pgsizes,
                 caps->write_multiple ? "true" : "false", ext);
    if (n < 0 || (size_t)n >= cap) {
        return -E2BIG;
    }
    return n;
}
