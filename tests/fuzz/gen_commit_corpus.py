#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds for fuzz_commit (tests/fuzz/fuzz_commit.c): byte 0 the side (0 a
destination, 1 a source), then records {u8 type, u8 flags, u16 len, payload};
flag 2 puts the migration id in the payload's first 8 bytes, type 0xff
separates the first connection from the recovery connection.
usage: gen_commit_corpus.py DIR"""
import os
import struct
import sys

GO, DONE, RECOVER, ABORT, HELLO = 0x0D, 0x0E, 0x0F, 0x0A, 0x01
CONFIRM, ERROR, READY, RECOVER_REPLY = 0x85, 0x84, 0x87, 0x88
SEP = 0xFF
ID = 2


def rec(t, payload=b"", flags=0):
    return struct.pack("<BBH", t, flags, len(payload)) + payload


def mig_id(i=0):
    return struct.pack("<QQ", i, 0)


def text(s):
    """A reason string: u16 length, then the bytes."""
    return struct.pack("<H", len(s)) + s


def reply(i, state, reason=b"seed"):
    return struct.pack("<QII", i, state, 0) + text(reason)


SEEDS = {
    # a hostile source after READY
    "dst-go-right-later": b"\0" + rec(SEP) + rec(RECOVER, mig_id(), ID) +
    rec(GO, mig_id(), ID) + rec(DONE, mig_id(), ID),
    "dst-go-wrong-id": b"\0" + rec(GO, mig_id(77)),
    "dst-done-before-go": b"\0" + rec(DONE, mig_id(1)),
    "dst-abort": b"\0" + rec(ABORT, struct.pack("<I", 125) + text(b"bye")),
    "dst-recover-unknown": b"\0" + rec(SEP) + rec(RECOVER, mig_id(5)),
    "dst-hello-while-held": b"\0" + rec(SEP) + rec(HELLO, b"x"),
    "dst-recover-go-twice": b"\0" + rec(SEP) + rec(RECOVER, mig_id(), ID) +
    rec(GO, mig_id(), ID) + rec(GO, mig_id(), ID),
    # a hostile destination after SWITCHOVER
    "src-ready-confirm": b"\1" + rec(READY, mig_id(5)) + rec(CONFIRM, bytes(32)),
    "src-ready-error": b"\1" + rec(READY, mig_id(5)) +
    rec(ERROR, struct.pack("<II", 5, 0xFFFFFFFF) + text(b"no")),
    "src-ready-zero-id": b"\1" + rec(READY, mig_id(0)),
    "src-recover-running": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(RECOVER_REPLY, reply(0, 2), ID),
    "src-recover-ready-confirm": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(RECOVER_REPLY, reply(0, 1), ID) + rec(CONFIRM, bytes(32)),
    "src-recover-discarded": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(RECOVER_REPLY, reply(0, 3), ID),
    "src-recover-unknown": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(RECOVER_REPLY, reply(0, 0), ID),
    "src-recover-wrong-id": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(RECOVER_REPLY, reply(6, 2)),
    "src-recover-busy": b"\1" + rec(READY, mig_id(5)) + rec(SEP) +
    rec(ERROR, struct.pack("<II", 16, 0xFFFFFFFF) + text(b"busy")),
}

if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
