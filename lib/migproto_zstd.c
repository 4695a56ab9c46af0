/* SPDX-License-Identifier: MIT */
/*
 * migproto_zstd.c - compression of the migration stream's data frames
 * (QEMU's multifd-compression zstd): a RAM or DEV_DATA frame goes as a
 * ZDATA frame {u32 type, u32 raw length, one zstd frame} when that is
 * smaller, and comes back out as the frame it carries.  Each connection
 * has its own contexts, so channels compress in parallel.
 * Wire format: docs/migration-protocol.md section 11.
 *
 * The receiving side trusts nothing in a ZDATA frame: the declared raw
 * length is bounded by the carried type's limit, the zstd frame must
 * declare that same content size and carry zstd's content checksum (so a
 * corrupt body that still decodes is caught), be the whole payload, and
 * decompress
 * into a buffer of exactly that size to exactly that size.  A frame that
 * claims little and expands to more (a decompression bomb) fails on the
 * buffer's end, never writing past it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <zstd.h>
#include <vmig/byteorder.h>
#include <vmig/migproto.h>
#include "internal.h"
#include "migproto_zstd.h"

/* The largest payload a ZDATA frame may carry once decompressed. */
#define RAW_MAX (VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX)
#define ZHEAD 8

struct mp_zstd {
    int level;
    ZSTD_CCtx *cc;
    ZSTD_DCtx *dc;
    uint8_t *out; /* ZDATA payload being sent: head + zstd frame */
    uint8_t *in;  /* the payload of the last ZDATA frame received */
    uint64_t raw, packed;
};

int
vmig__mpz_new(unsigned int method, int level, struct mp_zstd **out)
{
    struct mp_zstd *z;

    if (method != VMIG_MP_COMPRESS_ZSTD || level < 0 ||
        level > ZSTD_maxCLevel()) {
        return -EINVAL;
    }
    z = calloc(1, sizeof(*z));
    if (z == NULL) {
        return -ENOMEM;
    }
    z->level = level == 0 ? 1 : level;
    *out = z;
    return 0;
}

void
vmig__mpz_free(struct mp_zstd *z)
{
    if (z == NULL) {
        return;
    }
    ZSTD_freeCCtx(z->cc);
    ZSTD_freeDCtx(z->dc);
    free(z->out);
    free(z->in);
    free(z);
}

void
vmig__mpz_bytes(const struct mp_zstd *z, uint64_t *raw, uint64_t *packed)
{
    if (raw != NULL) {
        *raw = z != NULL ? z->raw : 0;
    }
    if (packed != NULL) {
        *packed = z != NULL ? z->packed : 0;
    }
}

/* Compress @niov pieces (@total bytes) into z->out after the head;
 * the zstd frame's length, or 0 when it would not be smaller. */
static size_t
pack_pieces(struct mp_zstd *z, const void *const *payload,
            const size_t *iov_len, unsigned int niov, size_t total)
{
    ZSTD_outBuffer ob = {.dst = z->out + ZHEAD, .size = total - ZHEAD};
    size_t r;

    if (ZSTD_isError(ZSTD_CCtx_reset(z->cc, ZSTD_reset_session_only)) ||
        ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(z->cc, total))) {
        return 0;
    }
    for (unsigned int i = 0; i < niov; i++) {
        ZSTD_inBuffer ib = {.src = payload[i], .size = iov_len[i]};

        while (ib.pos < ib.size) {
            r = ZSTD_compressStream2(z->cc, &ob, &ib, ZSTD_e_continue);
            if (ZSTD_isError(r) || (ob.pos == ob.size && ib.pos < ib.size)) {
                return 0; /* no smaller than the frame itself */
            }
        }
    }
    for (;;) {
        ZSTD_inBuffer none = {.src = NULL, .size = 0};

        r = ZSTD_compressStream2(z->cc, &ob, &none, ZSTD_e_end);
        if (ZSTD_isError(r)) {
            return 0;
        }
        if (r == 0) {
            return ob.pos;
        }
        if (ob.pos == ob.size) {
            return 0;
        }
    }
}

size_t
vmig__mpz_pack(struct mp_zstd *z, unsigned int type, const void *const *payload,
               const size_t *iov_len, unsigned int niov, const uint8_t **out)
{
    size_t total = 0, n;

    if (type != VMIG_MP_RAM && type != VMIG_MP_DEV_DATA) {
        return 0;
    }
    for (unsigned int i = 0; i < niov; i++) {
        total += iov_len[i];
    }
    if (total < VMIG_MP_ZDATA_MIN || total > RAW_MAX) {
        return 0;
    }
    if (z->cc == NULL) {
        z->cc = ZSTD_createCCtx();
        if (z->cc == NULL ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cc, ZSTD_c_compressionLevel,
                                                z->level)) ||
            ZSTD_isError(
                ZSTD_CCtx_setParameter(z->cc, ZSTD_c_contentSizeFlag, 1)) ||
            ZSTD_isError(
                ZSTD_CCtx_setParameter(z->cc, ZSTD_c_checksumFlag, 1))) {
            return 0; /* out of memory: send it as it is */
        }
    }
    if (z->out == NULL) {
        z->out = malloc(ZHEAD + RAW_MAX);
        if (z->out == NULL) {
            return 0;
        }
    }
    z->raw += total;
    n = pack_pieces(z, payload, iov_len, niov, total);
    if (n == 0) {
        z->packed += total;
        return 0;
    }
    vmig_put_le32(z->out, type);
    vmig_put_le32(z->out + 4, (uint32_t)total);
    z->packed += ZHEAD + n;
    *out = z->out;
    return ZHEAD + n;
}

/* A zstd frame (RFC 8878 section 3.1.1: magic, then the frame header
 * descriptor) whose descriptor sets Content_Checksum_flag (bit 2). */
static bool
has_checksum(const uint8_t *p, size_t len)
{
    return len >= 5 && vmig_get_le32(p) == ZSTD_MAGICNUMBER &&
           (p[4] & 0x04) != 0;
}

int
vmig__mpz_unpack(struct mp_zstd *z, vmig_ctx_t *ctx, uint32_t seq,
                 const uint8_t *p, size_t len, unsigned int *type,
                 const uint8_t **raw, size_t *raw_len)
{
    struct vmig_mp_msg m;
    unsigned long long declared;
    size_t r;
    int ret;

    ret = vmig_mp_msg_decode(VMIG_MP_ZDATA, p, len, &m);
    if (ret < 0) {
        vmig_err(ctx,
                 "stream: frame %u: malformed compressed frame (a carried "
                 "type other than RAM or DEV_DATA, or a size over its "
                 "limit); the migration fails, the source keeps running",
                 seq);
        return -EBADMSG;
    }
    declared = ZSTD_getFrameContentSize(m.zdata.data.ptr, m.zdata.data.len);
    if (!has_checksum(m.zdata.data.ptr, m.zdata.data.len) ||
        declared != m.zdata.raw_len ||
        ZSTD_findFrameCompressedSize(m.zdata.data.ptr, m.zdata.data.len) !=
            m.zdata.data.len) {
        vmig_err(ctx,
                 "stream: frame %u: compressed frame is not one zstd frame "
                 "of the declared %u bytes with its content checksum; the "
                 "migration fails, the source keeps running",
                 seq, m.zdata.raw_len);
        return -EBADMSG;
    }
    if (z->dc == NULL) {
        z->dc = ZSTD_createDCtx();
        if (z->dc == NULL) {
            return -ENOMEM;
        }
    }
    if (z->in == NULL) {
        z->in = malloc(RAW_MAX);
        if (z->in == NULL) {
            return -ENOMEM;
        }
    }
    r = ZSTD_decompressDCtx(z->dc, z->in, m.zdata.raw_len, m.zdata.data.ptr,
                            m.zdata.data.len);
    if (ZSTD_isError(r) || r != m.zdata.raw_len) {
        vmig_err(ctx,
                 "stream: frame %u: compressed frame does not decompress "
                 "to its declared %u bytes (%s); the migration fails, the "
                 "source keeps running",
                 seq, m.zdata.raw_len,
                 ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short");
        return -EBADMSG;
    }
    *type = m.zdata.type;
    *raw = z->in;
    *raw_len = r;
    return 0;
}
