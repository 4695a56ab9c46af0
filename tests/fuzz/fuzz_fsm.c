/* SPDX-License-Identifier: MIT */
/*
 * fuzz_fsm.c - any (flags, cur, target, v1 word) either fails cleanly or
 * yields a path that ends at the target through legal arcs only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/fsm.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t flags = 0;
    uint32_t cur = 0, target = 0, word = 0;
    struct vmig_fsm_path p;
    enum vmig_state s;
    char buf[128];

    if (size < 20) {
        return 0;
    }
    memcpy(&flags, data, 8);
    memcpy(&cur, data + 8, 4);
    memcpy(&target, data + 12, 4);
    memcpy(&word, data + 16, 4);
    /* keep small values likely so the interesting cases get hit */
    if (data[0] & 0x80) {
        flags &= 0xf;
        cur &= 0xf;
        target &= 0xf;
    }
    if (vmig_fsm_path(flags, cur, target, &p) == 0) {
        if (p.len < 1 || p.len > VMIG_FSM_PATH_MAX ||
            p.state[0] != (enum vmig_state)cur ||
            p.state[p.len - 1] != (enum vmig_state)target) {
            abort();
        }
        for (unsigned int i = 0; i + 1 < p.len; i++) {
            if (vmig_arc_classify(p.state[i], p.state[i + 1]) ==
                VMIG_ARC_INVALID) {
                abort();
            }
        }
        vmig_fsm_path_format(&p, buf, sizeof(buf));
    } else if (vmig_fsm_next(flags, cur, target, &s) == 0) {
        abort(); /* next succeeded where the path failed */
    }
    if (vmig_v1_decode(word, &s) == 0) {
        uint32_t back;

        if (vmig_v1_encode(s, &back) != 0 ||
            (back & ~(uint32_t)VMIG_V1_NDMA) !=
                (word & ~(uint32_t)VMIG_V1_NDMA)) {
            abort();
        }
    }
    vmig_flags_format(flags, buf, sizeof(buf));
    (void)vmig_state_name(cur);
    return 0;
}
