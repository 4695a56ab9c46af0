/* SPDX-License-Identifier: MIT */
/*
 * fuzz_migproto.c - the stream's frame header, HELLO and HELLO_REPLY
 * decoders and the decoder of every other frame type on arbitrary bytes:
 * no crash, no leak, and anything accepted re-encodes (a fixed-layout
 * frame to exactly the same bytes, unless a reason string had control
 * characters replaced).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/migproto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmig_mp_hdr h;
    struct vmig_mp_hello *hello = NULL;
    struct vmig_mp_hello_reply *reply;
    static uint8_t out[1 << 20];

    if (size >= VMIG_MP_HDR_LEN && vmig_mp_hdr_decode(data, &h) == 0 &&
        h.len <= size - VMIG_MP_HDR_LEN) {
        if (vmig_mp_verify(data, data + VMIG_MP_HDR_LEN, h.len) == 0) {
            out[0] = 1;
        }
    }
    if (vmig_mp_hello_decode(data, size, &hello) == 0) {
        if (vmig_mp_hello_encode(hello, out, sizeof(out)) < 0) {
            abort();
        }
        vmig_mp_hello_free(hello);
    }
    for (unsigned int t = 0; t < 256; t++) {
        struct vmig_mp_msg m;
        ssize_t n;

        if (vmig_mp_msg_decode(t, data, size, &m) < 0) {
            continue;
        }
        n = vmig_mp_msg_encode(&m, out, sizeof(out));
        if (n < 0 || (size_t)n > size) {
            abort();
        }
        /* frames with a string: control characters come back as '?' */
        if (t != VMIG_MP_ABORT && t != VMIG_MP_SETUP_ACK &&
            t != VMIG_MP_ERROR && t != VMIG_MP_RECOVER_REPLY &&
            memcmp(out, data, (size_t)n) != 0) {
            abort();
        }
    }
    reply = malloc(sizeof(*reply));
    if (reply != NULL) {
        if (vmig_mp_reply_decode(data, size, reply) == 0 &&
            vmig_mp_reply_encode(reply, out, sizeof(out)) < 0) {
            abort();
        }
        free(reply);
    }
    return 0;
}
