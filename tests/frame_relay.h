/* SPDX-License-Identifier: MIT */
/*
 * frame_relay.h - a relay between a migration's source and destination
 * that reads the main direction frame by frame and rewrites one frame as
 * a hostile or older peer would, with a valid checksum, so the receiver's
 * own checks (not the frame checksum) must catch it.  The return path is
 * copied as it is.  Plaintext connections only.  Header-only, for tests.
 */
#ifndef VMIG_TESTS_FRAME_RELAY_H
#define VMIG_TESTS_FRAME_RELAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/byteorder.h>
#include <vmig/migproto.h>

enum fr_mode {
    FR_PASS = 0,
    FR_ZDATA_BODY,    /* the first ZDATA frame: bytes of its zstd body */
    FR_ZDATA_SIZE,    /* the first ZDATA frame: declares more than allowed */
    FR_HELLO_NO_ZSTD, /* HELLO: the zstd feature bit taken away (an older
                       * destination never sees it, so never grants it) */
};

struct frelay {
    int a, b; /* source side, destination side (closed by the relay) */
    enum fr_mode mode;
    int rewritten; /* frames rewritten */
    pthread_t th, back;
};

static inline bool
fr_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool
fr_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static inline void *
fr_back_main(void *arg)
{
    struct frelay *r = arg;
    uint8_t buf[1 << 14];
    ssize_t n;

    while ((n = read(r->b, buf, sizeof(buf))) > 0) {
        if (!fr_write_full(r->a, buf, (size_t)n)) {
            break;
        }
    }
    shutdown(r->a, SHUT_WR);
    return NULL;
}

/* Rewrite the frame (@type, payload @p of @len bytes) per @r->mode;
 * true when it changed. */
static inline bool
fr_rewrite(struct frelay *r, unsigned int type, uint8_t *p, size_t len)
{
    if (r->rewritten > 0) {
        return false;
    }
    switch (r->mode) {
    case FR_ZDATA_BODY:
        if (type != VMIG_MP_ZDATA || len < 16) {
            return false;
        }
        for (size_t i = 8 + (len - 8) / 2; i < len && i < 8 + (len - 8) / 2 + 4;
             i++) {
            p[i] ^= 0xa5;
        }
        return true;
    case FR_ZDATA_SIZE:
        if (type != VMIG_MP_ZDATA || len < 8) {
            return false;
        }
        vmig_put_le32(p + 4, VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX + 1);
        return true;
    case FR_HELLO_NO_ZSTD:
        if (type != VMIG_MP_HELLO || len < 16) {
            return false;
        }
        vmig_put_le64(p + 8, vmig_get_le64(p + 8) & ~VMIG_MP_FEAT_ZSTD);
        return true;
    default:
        return false;
    }
}

static inline void *
fr_main(void *arg)
{
    struct frelay *r = arg;
    uint8_t pre[VMIG_MP_PREAMBLE_LEN], raw[VMIG_MP_HDR_LEN];
    uint8_t *buf = malloc(VMIG_MP_PAYLOAD_MAX);

    if (buf == NULL || pthread_create(&r->back, NULL, fr_back_main, r) != 0) {
        free(buf);
        return NULL;
    }
    if (fr_read_full(r->a, pre, sizeof(pre)) &&
        fr_write_full(r->b, pre, sizeof(pre))) {
        struct vmig_mp_hdr h;

        while (fr_read_full(r->a, raw, sizeof(raw)) &&
               vmig_mp_hdr_decode(raw, &h) == 0 &&
               fr_read_full(r->a, buf, h.len)) {
            if (fr_rewrite(r, h.type, buf, h.len)) {
                const void *pl[1] = {buf};
                size_t pl_len[1] = {h.len};

                r->rewritten++;
                if (vmig_mp_hdr_encode(h.type, h.flags, h.seq, pl, pl_len, 1,
                                       raw) < 0) {
                    break;
                }
            }
            if (!fr_write_full(r->b, raw, sizeof(raw)) ||
                !fr_write_full(r->b, buf, h.len)) {
                break;
            }
        }
    }
    shutdown(r->b, SHUT_WR);
    /* the destination gave up: drain the source until it hangs up, so it
     * reads the destination's ERROR instead of blocking on a full socket */
    while (read(r->a, buf, VMIG_MP_PAYLOAD_MAX) > 0) {
    }
    pthread_join(r->back, NULL);
    shutdown(r->a, SHUT_RDWR);
    shutdown(r->b, SHUT_RDWR);
    close(r->a);
    close(r->b);
    free(buf);
    return NULL;
}

#endif /* VMIG_TESTS_FRAME_RELAY_H */
