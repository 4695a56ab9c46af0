/* SPDX-License-Identifier: MIT */
/*
 * proto_reply.c - a server's replies judged against their requests
 * (<vmig/proto_reply.h>).
 *
 * Each check quotes the clause of the specification (QEMU
 * docs/interop/vfio-user.rst) it enforces in the reject's rule, so a
 * refusal reads "what the spec says" + "what the server sent".  The
 * general rule they share is the spec's "Message sizes": a reply's argsz
 * says how big a complete reply is, the payload may be shorter
 * (truncated: the client asks again) or longer (trailing bytes are not
 * part of any field and are ignored).  No I/O here; fields are read with
 * memcpy, so unaligned buffers are fine.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <vmig/proto_reply.h>
#include "internal.h"
#include "proto_priv.h"

static int reject(struct vmig_vfu_reject *why, int err, const char *rule,
                  const char *fmt, ...) VMIG_PRINTF(4, 5);

static int
reject(struct vmig_vfu_reject *why, int err, const char *rule, const char *fmt,
       ...)
{
    va_list ap;

    if (why != NULL) {
        why->rule = rule;
        va_start(ap, fmt);
        vsnprintf(why->seen, sizeof(why->seen), fmt, ap);
        va_end(ap);
    }
    return err;
}

/* ------------------------------------------------------------ VERSION */

int
vmig_vfu_reply_version(const struct vmig_vfu_msg *m,
                       const struct vmig_vfu_version *asked,
                       struct vmig_vfu_version *v, struct vmig_vfu_caps *caps,
                       struct vmig_vfu_reject *why)
{
    const char *json = (const char *)m->payload + sizeof(*v);
    size_t jlen = m->len - sizeof(*v), slen = 0;
    struct vmig_vfu_version got;

    memcpy(&got, m->payload, sizeof(got));
    if (got.major != asked->major) {
        return reject(why, -EOPNOTSUPP,
                      "VERSION: the major version in the reply must be the "
                      "same as proposed",
                      "version %u.%u in reply to %u.%u", got.major, got.minor,
                      asked->major, asked->minor);
    }
    if (got.minor > asked->minor) {
        return reject(why, -EOPNOTSUPP,
                      "VERSION: the minor version in the reply must be equal "
                      "to or less than the minor version proposed",
                      "version %u.%u in reply to %u.%u", got.major, got.minor,
                      asked->major, asked->minor);
    }
    if (jlen > 0) {
        const char *nul = memchr(json, '\0', jlen);

        if (nul == NULL) {
            return reject(why, -EPROTO,
                          "VERSION: the version data is JSON including its "
                          "terminating NUL",
                          "%zu bytes of data without a NUL", jlen);
        }
        slen = (size_t)(nul - json);
        for (size_t i = slen; i < jlen; i++) {
            if (json[i] != '\0') {
                return reject(why, -EPROTO,
                              "VERSION: the version data is one JSON string; "
                              "only NUL padding may follow its NUL",
                              "byte %#x at offset %zu after the JSON's NUL "
                              "at %zu",
                              (unsigned char)json[i], i, slen);
            }
        }
    }
    if (vmig_vfu_caps_parse(slen > 0 ? json : NULL, slen, caps) < 0) {
        return reject(why, -EPROTO,
                      "VERSION: version data is a JSON object whose "
                      "\"capabilities\" object has numbers for max_msg_fds, "
                      "max_data_xfer_size (> 0), max_dma_maps, pgsizes (> 0) "
                      "and a boolean write_multiple",
                      "%.*s", slen > 120 ? 120 : (int)slen, json);
    }
    *v = got;
    return 0;
}

/* ------------------------------------------------------------ info */

int
vmig_vfu_reply_device_info(const struct vmig_vfu_msg *m,
                           struct vmig_vfu_device_info *out,
                           struct vmig_vfu_reject *why)
{
    struct vmig_vfu_device_info di;

    memcpy(&di, m->payload, sizeof(di));
    if (di.num_regions > VMIG_VFU_CLI_MAX_REGIONS ||
        di.num_irqs > VMIG_VFU_CLI_MAX_IRQ_TYPES) {
        return reject(why, -EPROTO,
                      "DEVICE_GET_INFO: vmig handles at most 4096 regions "
                      "and 1024 IRQ types",
                      "num_regions %u, num_irqs %u", di.num_regions,
                      di.num_irqs);
    }
    *out = di;
    return 0;
}

/*
 * Walk a region-info capability chain of @ext bytes (the reply's extent).
 * Headers may come in any order (the spec does not order them), each must
 * lie after the fixed part and inside the reply, and a chain longer than
 * the headers that fit is a loop.  A sparse-mmap capability's areas must
 * lie inside the region.  Returns the sparse capability's area count (0:
 * none) and its offset in *sparse_off, or -EPROTO.
 */
static int
walk_caps(const uint8_t *p, size_t ext, uint32_t *sparse_off,
          struct vmig_vfu_reject *why)
{
    static const char chain_rule[] =
        "DEVICE_GET_REGION_INFO: cap_offset and each capability's next are "
        "offsets of capability headers inside the reply, 0 ending the list";
    uint32_t flags = vmig__rd32(p, 4), off = vmig__rd32(p, 12);
    uint64_t rsize = vmig__rd64(p, 16);
    size_t hops = 0, max_hops;

    *sparse_off = 0;
    if (!(flags & VMIG_VFU_REGION_CAPS) || off == 0) {
        return 0;
    }
    max_hops = (ext - sizeof(struct vmig_vfu_region_info)) /
                   sizeof(struct vmig_vfu_cap_hdr) +
               1;
    while (off != 0) {
        struct vmig_vfu_cap_hdr h;
        uint32_t nr;

        if (off < sizeof(struct vmig_vfu_region_info) ||
            off > ext - sizeof(h)) {
            return reject(why, -EPROTO, chain_rule,
                          "a capability at offset %u of a %zu-byte reply", off,
                          ext);
        }
        if (++hops > max_hops) {
            return reject(why, -EPROTO, chain_rule,
                          "the capability chain loops (offset %u again)", off);
        }
        memcpy(&h, p + off, sizeof(h));
        if (h.id != VMIG_VFU_CAP_SPARSE_MMAP || *sparse_off != 0) {
            off = h.next; /* unknown (or a second sparse one): skipped */
            continue;
        }
        if (h.version < 1 || ext - off < sizeof(struct vmig_vfu_sparse_mmap)) {
            return reject(why, -EPROTO,
                          "DEVICE_GET_REGION_INFO: the sparse mmap "
                          "capability is version 1: {nr_areas, reserved} "
                          "then nr_areas {offset, size}",
                          "version %u, %zu bytes left for it", h.version,
                          ext - off);
        }
        nr = vmig__rd32(p, off + 8);
        if (nr > (ext - off - sizeof(struct vmig_vfu_sparse_mmap)) /
                     sizeof(struct vmig_vfu_sparse_area)) {
            return reject(why, -EPROTO,
                          "DEVICE_GET_REGION_INFO: there will be nr_areas "
                          "pairs of offset and size",
                          "nr_areas %u with room for %zu", nr,
                          (ext - off - sizeof(struct vmig_vfu_sparse_mmap)) /
                              sizeof(struct vmig_vfu_sparse_area));
        }
        for (uint32_t i = 0; i < nr; i++) {
            size_t a = off + sizeof(struct vmig_vfu_sparse_mmap) +
                       (size_t)i * sizeof(struct vmig_vfu_sparse_area);
            uint64_t ao = vmig__rd64(p, a), as = vmig__rd64(p, a + 8);

            if (ao > rsize || as > rsize - ao) {
                return reject(why, -EPROTO,
                              "DEVICE_GET_REGION_INFO: a sparse mmap area is "
                              "a part of the region",
                              "area %u at %#llx+%#llx of a %#llx-byte region",
                              i, (unsigned long long)ao, (unsigned long long)as,
                              (unsigned long long)rsize);
            }
        }
        *sparse_off = off;
        off = h.next;
    }
    return 0;
}

int
vmig_vfu_reply_region_info(const struct vmig_vfu_msg *m, uint32_t index,
                           struct vmig_vfu_region_info *out,
                           struct vmig_vfu_reject *why)
{
    struct vmig_vfu_region_info ri;
    uint32_t sparse;
    size_t ext;
    int ret;

    memcpy(&ri, m->payload, sizeof(ri));
    if (ri.index != index) {
        return reject(why, -EPROTO,
                      "DEVICE_GET_REGION_INFO: index is the index of the "
                      "region being queried",
                      "region %u's info in reply to region %u", ri.index,
                      index);
    }
    if ((ri.flags & VMIG_VFU_REGION_MMAP) && ri.offset + ri.size < ri.offset) {
        return reject(why, -EPROTO,
                      "DEVICE_GET_REGION_INFO: offset is the mmap() offset "
                      "of a region of size bytes",
                      "offset %#llx + size %#llx wraps",
                      (unsigned long long)ri.offset,
                      (unsigned long long)ri.size);
    }
    /* argsz above the payload: truncated, the chain is not here (the
     * client asks again); below it: the rest is padding */
    if (ri.argsz <= m->len) {
        ext = ri.argsz;
        ret = walk_caps(m->payload, ext, &sparse, why);
        if (ret < 0) {
            return ret;
        }
    }
    *out = ri;
    return 0;
}

int
vmig_vfu_region_sparse(const void *info, size_t len,
                       struct vmig_vfu_sparse_area *areas, unsigned int max)
{
    const uint8_t *p = info;
    uint32_t off, nr, argsz;
    size_t ext = len;

    if (info == NULL || len < sizeof(struct vmig_vfu_region_info)) {
        return -EPROTO;
    }
    argsz = vmig__rd32(p, 0);
    if (argsz >= sizeof(struct vmig_vfu_region_info) && argsz < len) {
        ext = argsz; /* what follows argsz is padding */
    }
    if (walk_caps(p, ext, &off, NULL) < 0) {
        return -EPROTO;
    }
    if (off == 0) {
        return 0;
    }
    nr = vmig__rd32(p, off + 8);
    if (areas != NULL) {
        memcpy(areas, p + off + sizeof(struct vmig_vfu_sparse_mmap),
               sizeof(*areas) * (nr < max ? nr : max));
    }
    return (int)(nr > INT32_MAX ? INT32_MAX : nr);
}

int
vmig_vfu_reply_irq_info(const struct vmig_vfu_msg *m, uint32_t index,
                        struct vmig_vfu_irq_info *out,
                        struct vmig_vfu_reject *why)
{
    struct vmig_vfu_irq_info ii;

    memcpy(&ii, m->payload, sizeof(ii));
    if (ii.index != index) {
        return reject(why, -EPROTO,
                      "DEVICE_GET_IRQ_INFO: index is the index of the IRQ "
                      "type being queried",
                      "IRQ index %u's info in reply to index %u", ii.index,
                      index);
    }
    if (ii.count > VMIG_VFU_MAX_IRQ_COUNT) {
        return reject(why, -EPROTO,
                      "DEVICE_GET_IRQ_INFO: vmig handles at most 2048 "
                      "interrupts of one type",
                      "count %u", ii.count);
    }
    *out = ii;
    return 0;
}

/* ------------------------------------------------------------ regions */

static int
same_access(const struct vmig_vfu_msg *m, const struct vmig_vfu_region_rw *req,
            const char *rule, struct vmig_vfu_reject *why)
{
    struct vmig_vfu_region_rw rw;

    memcpy(&rw, m->payload, sizeof(rw));
    if (rw.offset != req->offset || rw.region != req->region) {
        return reject(why, -EPROTO, rule,
                      "a reply for region %u offset %#llx to an access of "
                      "region %u offset %#llx",
                      rw.region, (unsigned long long)rw.offset, req->region,
                      (unsigned long long)req->offset);
    }
    if (rw.count != req->count) {
        return reject(why, -EPROTO, rule, "count %u for an access of %u bytes",
                      rw.count, req->count);
    }
    return 0;
}

int
vmig_vfu_reply_region_read(const struct vmig_vfu_msg *m,
                           const struct vmig_vfu_region_rw *req,
                           const uint8_t **data, struct vmig_vfu_reject *why)
{
    int ret = same_access(m, req,
                          "REGION_READ: the reply echoes offset and region "
                          "and carries count bytes: the data read",
                          why);

    if (ret < 0) {
        return ret;
    }
    /* the decoder saw count bytes after the fixed part; more is padding */
    *data = m->payload + sizeof(struct vmig_vfu_region_rw);
    return 0;
}

int
vmig_vfu_reply_region_write(const struct vmig_vfu_msg *m,
                            const struct vmig_vfu_region_rw *req,
                            struct vmig_vfu_reject *why)
{
    return same_access(m, req,
                       "REGION_WRITE: the reply echoes offset and region, "
                       "count being the bytes written",
                       why);
}

/* ------------------------------------------------------------ features */

long
vmig_vfu_reply_feature(const struct vmig_vfu_msg *m, uint32_t flags,
                       size_t want, const uint8_t **data,
                       struct vmig_vfu_reject *why)
{
    uint32_t rf = vmig__rd32(m->payload, 4);
    size_t have = m->len - sizeof(struct vmig_vfu_feature);

    if ((rf & VMIG_VFU_FEATURE_MASK) != (flags & VMIG_VFU_FEATURE_MASK)) {
        return reject(why, -EPROTO,
                      "DEVICE_FEATURE: the reply payload is the request's "
                      "{argsz, flags}, plus the feature data for GET",
                      "feature %u's reply to a request for feature %u",
                      rf & VMIG_VFU_FEATURE_MASK,
                      flags & VMIG_VFU_FEATURE_MASK);
    }
    if (have < want) {
        return reject(why, -EPROTO,
                      "DEVICE_FEATURE: for getting a feature's data, the "
                      "data is added in the data section",
                      "%zu data bytes where feature %u has %zu", have,
                      flags & VMIG_VFU_FEATURE_MASK, want);
    }
    if (data != NULL) {
        *data = m->payload + sizeof(struct vmig_vfu_feature);
    }
    return (long)have;
}

int
vmig_vfu_reply_log_report(const struct vmig_vfu_msg *m,
                          const struct vmig_vfu_feat_log_report *req,
                          const uint8_t **bitmap, struct vmig_vfu_reject *why)
{
    static const char rule[] =
        "DMA_LOGGING_REPORT: the data field of the response is the "
        "request's {iova, length, page_size} with the bitmap added; bits "
        "outside of the requested range must be zero";
    struct vmig_vfu_feat_log_report got;
    const uint8_t *d;
    uint64_t pages, words;
    long have;

    if (req->page_size == 0 || req->length == 0) {
        return -EINVAL;
    }
    pages = req->length / req->page_size + (req->length % req->page_size != 0);
    words = (pages + 63) / 64;
    have = vmig_vfu_reply_feature(
        m, VMIG_VFU_FEAT_DMA_LOGGING_REPORT | VMIG_VFU_FEATURE_GET, sizeof(got),
        &d, why);
    if (have < 0) {
        return (int)have;
    }
    memcpy(&got, d, sizeof(got));
    if (got.iova != req->iova || got.length != req->length ||
        got.page_size != req->page_size) {
        return reject(
            why, -EPROTO, rule,
            "a report of %#llx+%#llx by %llu for a request of "
            "%#llx+%#llx by %llu",
            (unsigned long long)got.iova, (unsigned long long)got.length,
            (unsigned long long)got.page_size, (unsigned long long)req->iova,
            (unsigned long long)req->length,
            (unsigned long long)req->page_size);
    }
    if ((uint64_t)have - sizeof(got) < words * 8) {
        return reject(why, -EPROTO, rule, "a %llu-byte bitmap for %llu pages",
                      (unsigned long long)((uint64_t)have - sizeof(got)),
                      (unsigned long long)pages);
    }
    d += sizeof(got);
    if (pages % 64 != 0 &&
        vmig__rd64(d, (size_t)(words - 1) * 8) >> (pages % 64)) {
        return reject(why, -EPROTO, rule,
                      "bits set past page %llu in the last bitmap word",
                      (unsigned long long)pages);
    }
    *bitmap = d;
    return 0;
}

/* ------------------------------------------------------------ data */

int
vmig_vfu_reply_mig_read(const struct vmig_vfu_msg *m, uint32_t asked,
                        uint32_t *size, const uint8_t **data,
                        struct vmig_vfu_reject *why)
{
    uint32_t got = vmig__rd32(m->payload, 4);

    if (got > asked) {
        return reject(why, -EPROTO,
                      "MIG_DATA_READ: size is the size of the returned "
                      "migration data, at most the size to read",
                      "size %u in reply to a read of %u", got, asked);
    }
    /* the decoder saw size bytes; bytes after them are padding */
    *size = got;
    *data = m->payload + sizeof(struct vmig_vfu_mig_data);
    return 0;
}

/* clang-format off */
static const char *const layouts[VMIG_VFU_CMD__COUNT] = {
    [VMIG_VFU_CMD_VERSION] = "{u16 major, u16 minor} + optional JSON "
                             "with its NUL",
    [VMIG_VFU_CMD_DMA_MAP] = "no payload",
    [VMIG_VFU_CMD_DMA_UNMAP] = "the request's {argsz, flags, addr, size}",
    [VMIG_VFU_CMD_DEVICE_GET_INFO] = "{argsz >= 16, flags, num_regions, "
                                     "num_irqs}",
    [VMIG_VFU_CMD_DEVICE_GET_REGION_INFO] = "{argsz >= 32, flags, index, "
                                            "cap_offset, u64 size, u64 "
                                            "offset} + capabilities; an fd "
                                            "only with the MMAP flag",
    [VMIG_VFU_CMD_DEVICE_GET_REGION_IO_FDS] = "{argsz, flags, index, count} "
                                              "+ sub-regions",
    [VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO] = "{argsz >= 16, flags, index, count}",
    [VMIG_VFU_CMD_DEVICE_SET_IRQS] = "no payload",
    [VMIG_VFU_CMD_REGION_READ] = "{u64 offset, region, count} + count "
                                 "bytes (count <= max_data_xfer_size)",
    [VMIG_VFU_CMD_REGION_WRITE] = "{u64 offset, region, count}",
    [VMIG_VFU_CMD_DMA_READ] = "{u64 address, u64 count} + count bytes",
    [VMIG_VFU_CMD_DMA_WRITE] = "{u64 address, count}",
    [VMIG_VFU_CMD_DEVICE_RESET] = "no payload",
    [VMIG_VFU_CMD_REGION_WRITE_MULTI] = "{u64 wr_cnt}",
    [VMIG_VFU_CMD_DEVICE_FEATURE] = "{argsz >= 8, flags} + the feature's "
                                    "data for GET; an fd for no kernel "
                                    "feature",
    [VMIG_VFU_CMD_MIG_DATA_READ] = "{argsz, size} + size bytes (size <= "
                                   "max_data_xfer_size)",
    [VMIG_VFU_CMD_MIG_DATA_WRITE] = "no payload",
};
/* clang-format on */

const char *
vmig_vfu_reply_layout(unsigned int cmd)
{
    if (cmd >= VMIG_VFU_CMD__COUNT || layouts[cmd] == NULL) {
        return "?";
    }
    return layouts[cmd];
}
