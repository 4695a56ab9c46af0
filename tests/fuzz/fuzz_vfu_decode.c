/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vfu_decode.c - libFuzzer harness for the pure vfio-user codec:
 * vmig_vfu_decode() on the input (with an fd count and limits taken from
 * its first bytes) and vmig_vfu_caps_parse() on the same bytes as JSON.
 * A decoded message must describe bytes inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/proto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmig_vfu_limits lim = {VMIG_VFU_DEF_MAX_DATA_XFER, 4};
    struct vmig_vfu_caps caps;
    struct vmig_vfu_msg m;
    enum vmig_vfu_perr why;
    unsigned int nfds = 0;

    if (size > 0) {
        nfds = data[0] % 6;
        lim.max_data_xfer = (data[0] & 0x80) ? 64 : lim.max_data_xfer;
        data++;
        size--;
    }
    if (vmig_vfu_decode(data, size, nfds, &lim, &m, &why) == 0) {
        if (m.hdr.size != size || m.len > size - 16 ||
            (m.len > 0 && m.payload != data + 16)) {
            abort();
        }
    } else if (why == VMIG_VFU_PERR_NONE || why >= VMIG_VFU_PERR__COUNT) {
        abort();
    }
    if (vmig_vfu_caps_parse((const char *)data, size, &caps) == 0) {
        char buf[512];

        if (vmig_vfu_caps_format(&caps, buf, sizeof(buf)) < 0) {
            abort();
        }
    }
    return 0;
}
