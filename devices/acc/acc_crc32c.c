/* SPDX-License-Identifier: MIT */
/*
 * acc_crc32c.c - CRC-32C (Castagnoli), table driven, slicing by 8.
 *
 * Polynomial 0x1edc6f41, processed bit-reflected (0x82f63b78), initial
 * value and final xor 0xffffffff: the CRC used by iSCSI, ext4 and SSE4.2's
 * crc32 instruction.  Table k holds the CRC of a byte followed by k zero
 * bytes, so eight input bytes are folded with eight look-ups.  The tables
 * are computed once, on first use.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "acc_model.h"

#define CRC32C_POLY_REFLECTED 0x82f63b78u

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int b = 0; b < 8; b++) {
            c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        }
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int k = 1; k < 8; k++) {
            uint32_t prev = crc_tab[k - 1][i];

            crc_tab[k][i] = (prev >> 8) ^ crc_tab[0][prev & 0xffu];
        }
    }
}

uint32_t
acc_crc32c(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t c = ~crc;

    (void)pthread_once(&crc_once, crc_init);
    while (n >= 8) {
        /* Bytes are combined little-endian by hand: no alignment needed. */
        uint32_t lo = c ^ ((uint32_t)s[0] | (uint32_t)s[1] << 8 |
                           (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24);

        c = crc_tab[7][lo & 0xffu] ^ crc_tab[6][(lo >> 8) & 0xffu] ^
            crc_tab[5][(lo >> 16) & 0xffu] ^ crc_tab[4][lo >> 24] ^
            crc_tab[3][s[4]] ^ crc_tab[2][s[5]] ^ crc_tab[1][s[6]] ^
            crc_tab[0][s[7]];
        s += 8;
        n -= 8;
    }
    while (n-- > 0) {
        c = (c >> 8) ^ crc_tab[0][(c ^ *s++) & 0xffu];
    }
    return ~c;
}
