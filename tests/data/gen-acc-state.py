#!/usr/bin/env python3
# Writes the accelerator's golden state payloads (acc-state-v1.bin,
# acc-state-v2.bin) from the layout in docs/acc.md alone, independently of
# the C code; tests/unit/test_acc_model_state.c requires v2 to load
# bit-exactly and v1 to be refused as known bad.
import os
import struct
import sys


def crc32c(data):
    c = 0xffffffff
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff


def payload(version=2, qps=2, swap=False):
    hdr = struct.pack('<QIHHIIII', 0x4d56434341535400 | version,
                      112 + 48 * qps + 4, 0xacce, 0x0005, qps, 1, 1, 0)

    def addr(v):
        # version 1's bug: the 32-bit halves swapped
        if swap:
            return struct.pack('<II', v >> 32, v & 0xffffffff)
        return struct.pack('<Q', v)

    g = (struct.pack('<IIIIQ', 1, 0, 1, 0, 1234) + addr(0x2000) +
         struct.pack('<IIII', 64, 3, 5, 1) + addr(0x3000) +
         struct.pack('<IIII', 16, 0, 0, 1) + struct.pack('<II', 0, 0))
    q = b''
    for i in range(qps):
        q += struct.pack('<QQIIIIIIII', 0x10000 + i * 0x4000,
                         0x12000 + i * 0x4000, 32, 64, 1, 1, 7, 12, 40, 45)
    b = hdr + g + q
    return b + struct.pack('<I', crc32c(b))


out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)
with open(os.path.join(out, 'acc-state-v2.bin'), 'wb') as f:
    f.write(payload())
with open(os.path.join(out, 'acc-state-v1.bin'), 'wb') as f:
    f.write(payload(version=1, swap=True))
