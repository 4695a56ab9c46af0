#!/usr/bin/env python3
# Regenerate the seed corpus of fuzz_vfu_server (see the harness for the
# input format: control byte + message, repeated).
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpus", "vfu_server")
os.makedirs(out, exist_ok=True)


def msg(cmd, payload=b"", flags=0, ctl=0, mid=2):
    return bytes([ctl]) + struct.pack("<HHII I", mid, cmd, 16 + len(payload),
                                      flags, 0) + payload


def feat(flags, data=b"", argsz=None):
    return msg(16, struct.pack("<II", argsz or 8 + len(data) + 64, flags) +
               data)


GET, SET, PROBE = 1 << 16, 1 << 17, 1 << 18
state = lambda s: feat(2 | SET, struct.pack("<II", s, 0))
seeds = {
    "version-again": msg(1, struct.pack("<HH", 0, 1) + b'{"capabilities":{"migration":{}}}\0'),
    "info": msg(4, struct.pack("<IIII", 16, 0, 0, 0)) +
            msg(5, struct.pack("<IIIIQQ", 32, 0, 1, 0, 0, 0)) +
            msg(7, struct.pack("<IIII", 16, 0, 0, 0)) +
            msg(6, struct.pack("<IIII", 16, 0, 0, 0)),
    "dma": msg(2, struct.pack("<IIQQQ", 32, 3, 0, 0x10000, 0x10000), ctl=1) +
           msg(2, struct.pack("<IIQQQ", 32, 3, 0, 0x40000, 0x1000)) +
           msg(10, struct.pack("<QII", 0, 0, 8) + struct.pack("<Q", 0x10010)) +
           msg(10, struct.pack("<QII", 0, 0, 8) + struct.pack("<Q", 0x40010)) +
           msg(3, struct.pack("<IIQQ", 24, 0, 0x10000, 0x10000)) +
           msg(3, struct.pack("<IIQQ", 24, 2, 0, 0)),
    "irqs": msg(8, struct.pack("<IIIII", 20, 4 | 32, 0, 0, 2), ctl=2) +
            msg(8, struct.pack("<IIIII", 22, 2 | 8, 0, 0, 2) + b"\1\0") +
            msg(10, struct.pack("<QII", 0, 0, 8) + struct.pack("<Q", 1)) +
            msg(8, struct.pack("<IIIII", 20, 1 | 16, 0, 0, 1)) +
            msg(8, struct.pack("<IIIII", 20, 1 | 32, 0, 0, 0)),
    "region": msg(9, struct.pack("<QII", 0, 0, 16)) +
              msg(9, struct.pack("<QII", 0, 1, 64)) +
              msg(10, struct.pack("<QII", 8, 0, 1) + b"\x5a") +
              msg(15, struct.pack("<Q", 2) +
                  struct.pack("<QII", 16, 0, 4) + b"abcd\0\0\0\0" +
                  struct.pack("<QII", 24, 0, 8) + b"12345678"),
    "mig-save": feat(1 | GET) + state(6) + feat(0xf001 | GET) +
                feat(9 | GET) + msg(17, struct.pack("<II", 8, 3000)) +
                state(3) + msg(17, struct.pack("<II", 8, 4096)) +
                msg(17, struct.pack("<II", 8, 4096)) + state(1) +
                msg(17, struct.pack("<II", 8, 16)),
    "mig-resume": state(4) + msg(18, struct.pack("<II", 12, 4) + b"data") +
                  state(2) + msg(13) + state(4) +
                  msg(18, struct.pack("<II", 8, 3) + b"xyz") + state(1),
    "mig-reset": state(3) + msg(17, struct.pack("<II", 8, 100)) + msg(13) +
                 msg(17, struct.pack("<II", 8, 100)),
    "logging": msg(2, struct.pack("<IIQQQ", 32, 3, 0, 0x10000, 0x10000), ctl=1) +
               feat(6 | SET, struct.pack("<QII", 4096, 1, 0) +
                    struct.pack("<QQ", 0x10000, 0x10000)) +
               msg(10, struct.pack("<QII", 0, 0, 8) + struct.pack("<Q", 0x10100)) +
               feat(8 | GET, struct.pack("<QQQ", 0x10000, 0x10000, 4096)) +
               feat(7 | SET) + feat(6 | SET | PROBE),
    "garbage": b"\0" + bytes(range(256)) * 2,
    "bad-flags": msg(4, struct.pack("<IIII", 16, 0, 0, 0), flags=0x40) +
                 msg(16, struct.pack("<II", 8, 2 | GET | SET)) +
                 msg(8, struct.pack("<IIIII", 20, 3 | 32, 0, 0, 1)),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
with open(os.path.join(out, "no-version"), "wb") as f:
    f.write(b"\xff" + msg(4, struct.pack("<IIII", 16, 0, 0, 0))[1:])
