#!/usr/bin/env python3
# Regenerate the seed corpus of fuzz_vfu_client: scripted server replies
# to the harness's fixed call sequence (request ids 1, 2, 3, ...).
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpus", "vfu_client")
os.makedirs(out, exist_ok=True)


def m(mid, cmd, p=b"", flags=1, err=0):
    return struct.pack("<HHIII", mid, cmd, 16 + len(p), flags, err) + p


caps = (b'{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,'
        b'"x-vmig":{"precopy_info":true,"bulk_data":false}}}\0')
version = m(1, 1, struct.pack("<HH", 0, 1) + caps)
feat = lambda mid, flags, d: m(mid, 16, struct.pack("<II", 8 + len(d), flags) + d)
script = [
    version,
    m(2, 2),                                            # DMA_MAP
    m(100, 11, struct.pack("<QQ", 0x10000, 16), flags=0),  # server DMA_READ
    m(101, 12, struct.pack("<QQ", 0x10010, 4) + b"abcd", flags=0),
    m(3, 4, struct.pack("<IIII", 16, 3, 2, 1)),         # DEVICE_GET_INFO
    m(4, 5, struct.pack("<IIIIQQ", 32, 3, 0, 0, 4096, 0)),
    m(5, 5, struct.pack("<IIIIQQ", 80, 15, 1, 0, 65536, 0)),
    m(6, 5, struct.pack("<IIIIQQ", 80, 15, 1, 32, 65536, 0) +
      struct.pack("<HHIII", 1, 1, 0, 2, 0) + struct.pack("<QQQQ", 0, 4096, 8192, 4096)),
    m(7, 7, struct.pack("<IIII", 16, 1, 0, 1)),
    m(8, 9, struct.pack("<QII", 0, 0, 64) + bytes(64)),
    m(9, 10, struct.pack("<QII", 0, 0, 8)),
    feat(10, 1 | (1 << 16), struct.pack("<Q", 7)),
    feat(11, 2 | (1 << 16), struct.pack("<II", 2, 0)),
    feat(12, 2 | (1 << 17), struct.pack("<II", 3, 0)),
    feat(13, 0xf001 | (1 << 16), struct.pack("<QQ", 100, 0)),
    m(14, 17, struct.pack("<II", 12, 4) + b"wxyz"),
    m(15, 17, struct.pack("<II", 16, 8) + b"12345678"),
    m(16, 17, struct.pack("<II", 8, 0)),
    m(17, 18),
    feat(18, 8 | (1 << 16), struct.pack("<QQQ", 0x10000, 8192, 4096) + struct.pack("<Q", 3)),
]
seeds = {
    "happy": b"".join(script),
    "version-only": version,
    "errors": version + b"".join(m(i, c, flags=0x21, err=22) for i, c in
                                 [(2, 2), (3, 4), (4, 5), (5, 5), (6, 7)]),
    "bad-version": m(1, 1, struct.pack("<HH", 1, 0)),
    "stray": version + m(77, 4, struct.pack("<IIII", 16, 0, 0, 0)) + m(2, 2),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
