/* SPDX-License-Identifier: MIT */
/*
 * flowtab_stream.h - byte layout of the flowtab migration stream (the data
 * a saving session produces and a resuming session consumes).
 *
 * The stream is a sequence of records, each a 24-byte header followed by
 * @len payload bytes, all little-endian:
 *
 *   HDR    once, first: stream magic/version and the state geometry
 *   CHUNK  any number: chunk @id of the state, @len == chunk size; a chunk
 *          may appear more than once (resent after it changed), the last
 *          copy wins
 *   END    once, last (STOP_COPY only): XXH3-128 of the whole state
 *
 * Record checksum: XXH3-64 (seed 0) over the 24 header bytes with @csum
 * set to zero, followed by the payload.  A type with FT_REC_OPTIONAL set
 * that the loader does not know is skipped; an unknown type without it is
 * refused.  docs/flowtab.md has the full rules.
 */
#ifndef FLOWTAB_STREAM_H
#define FLOWTAB_STREAM_H

#include <stdint.h>

/* "FTABSTM" then the format version in the last byte, so a
 * loader tells a stream format from another before reading further. */
#define FT_STREAM_MAGIC 0x004d545342415446ull /* bytes F T A B S T M 00 */
#define FT_STREAM_VERSION 1u

#define FT_REC_HDR 1u
#define FT_REC_CHUNK 2u
#define FT_REC_END 3u
#define FT_REC_OPTIONAL 0x80000000u

/* Largest payload the loader accepts for an unknown optional record. */
#define FT_REC_OPTIONAL_MAX (1u << 20)

/*
 * struct ft_rec_hdr - the header of every record.
 * @type: FT_REC_*, possibly with FT_REC_OPTIONAL.
 * @len:  payload bytes following the header.
 * @id:   chunk index for CHUNK; 0 otherwise.
 * @csum: XXH3-64 of this header (with @csum = 0) and the payload.
 */
struct ft_rec_hdr {
    uint32_t type;
    uint32_t len;
    uint64_t id;
    uint64_t csum;
};
_Static_assert(sizeof(struct ft_rec_hdr) == 24, "stream ABI");

/*
 * struct ft_rec_stream_hdr - payload of HDR.
 * @magic:       FT_STREAM_MAGIC with the version in the top byte.
 * @chunk_bytes: chunk size (power of two).
 * @rsvd:        zero.
 * @state_bytes: whole state size (a multiple of @chunk_bytes).
 * @nchunks:     state_bytes / chunk_bytes.
 */
struct ft_rec_stream_hdr {
    uint64_t magic;
    uint32_t chunk_bytes;
    uint32_t rsvd;
    uint64_t state_bytes;
    uint64_t nchunks;
};
_Static_assert(sizeof(struct ft_rec_stream_hdr) == 32, "stream ABI");

/*
 * struct ft_rec_end - payload of END.
 * @nchunks:     number of chunks of the state.
 * @records:     CHUNK records the source emitted in this session.
 * @digest_high: XXH3-128 of the whole state, high 64 bits.
 * @digest_low:  low 64 bits.
 */
struct ft_rec_end {
    uint64_t nchunks;
    uint64_t records;
    uint64_t digest_high;
    uint64_t digest_low;
};
_Static_assert(sizeof(struct ft_rec_end) == 32, "stream ABI");

#define FT_STREAM_VERSION_OF(magic) ((uint32_t)((magic) >> 56))
#define FT_STREAM_MAGIC_BASE(magic) ((magic)&0x00ffffffffffffffull)

#endif /* FLOWTAB_STREAM_H */
