/* SPDX-License-Identifier: MIT */
/*
 * migproto_zstd.h - a connection's compression (migproto_zstd.c), used
 * by the frame I/O of migproto.c.
 */
#ifndef VMIG_MIGPROTO_ZSTD_H
#define VMIG_MIGPROTO_ZSTD_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>

struct mp_zstd;

/* A compressor/decompressor for @method (VMIG_MP_COMPRESS_ZSTD) at
 * @level (0: 1): 0, -EINVAL or -ENOMEM. */
int vmig__mpz_new(unsigned int method, int level, struct mp_zstd **out);
void vmig__mpz_free(struct mp_zstd *z);
/* Payload bytes of compressible frames sent, and what they took. */
void vmig__mpz_bytes(const struct mp_zstd *z, uint64_t *raw, uint64_t *packed);

/*
 * A frame of @type with the payload @payload: its ZDATA payload in *@out
 * (valid until the next call) and that length, or 0 when it goes as it
 * is (not RAM or DEV_DATA, too short, or not smaller compressed).
 */
size_t vmig__mpz_pack(struct mp_zstd *z, unsigned int type,
                      const void *const *payload, const size_t *iov_len,
                      unsigned int niov, const uint8_t **out);

/*
 * The ZDATA payload @p (@len bytes) of frame @seq: the carried frame's
 * type and payload (valid until the next call), or -EBADMSG (logged)
 * when it is malformed, corrupt or not exactly its declared size;
 * -ENOMEM.
 */
int vmig__mpz_unpack(struct mp_zstd *z, vmig_ctx_t *ctx, uint32_t seq,
                     const uint8_t *p, size_t len, unsigned int *type,
                     const uint8_t **raw, size_t *raw_len);

#endif /* VMIG_MIGPROTO_ZSTD_H */
