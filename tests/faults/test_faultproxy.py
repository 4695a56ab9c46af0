#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""vmig-faultproxy against a plain TCP peer written here: every action
(hold/release, cut, reset, truncate, flip, stall, throttle, latency), at a
byte offset, at once and at frames of a synthetic vmig stream, the control
socket's errors and the signals.  Timing is only ever checked as a lower
bound (a loaded machine makes things slower, never faster).

usage: test_faultproxy.py PROXY-BINARY
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, Lab, LabError, now, wait_for  # noqa: E402

PROXY = sys.argv[1]
check = Checks()
failures = check.failures


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, flush=True)


class Sink:
    """The target: accepts connections, records what each one received,
    can send on the return path."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            rec = {"sock": c, "data": bytearray(), "eof": False, "err": None}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._read, args=(rec,), daemon=True).start()

    def _read(self, rec):
        while True:
            try:
                d = rec["sock"].recv(65536)
            except OSError as e:
                rec["err"] = e
                rec["eof"] = True
                return
            if not d:
                rec["eof"] = True
                return
            with self.lock:
                rec["data"] += d

    def conn(self, n):
        """The connection number n (0-based) once it arrived."""
        wait_for(lambda: len(self.conns) > n, 20, "connection %d at the sink" % n)
        return self.conns[n]


def proxy(sink, *arms):
    """A proxy to the sink, in a lab directory of its own."""
    lab = Lab(None, PROXY, name="fp-test")
    p = lab.proxy_to("proxy", sink.port, arms)
    p.cmd = p.command
    p.lab = lab
    return p


def close(p):
    p.lab.cleanup(not failures)


def open_conn(sink, p, data):
    """A connection through @p sending @data; its record at the sink."""
    n0 = len(sink.conns)
    s = p.connect()
    s.sendall(data)
    return s, sink.conn(n0)


def recv_until_eof(s, timeout=20):
    out = bytearray()
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return bytes(out), "eof"
            out += d
    except ConnectionResetError:
        return bytes(out), "reset"
    except socket.timeout:
        return bytes(out), "timeout"


def frame(ftype, payload, seq):
    hdr = struct.pack("<IHHII", 0x72666D76, ftype, 0, len(payload), seq)
    return hdr + b"\0" * 8 + payload


def vmig_stream():
    """preamble, HELLO, RAM pass 1 x3, RAM_PASS_END 1, RAM pass 2,
    RAM_PASS_END 2 LAST, DEV_DATA precopy, DEV_DATA stop-copy, SWITCHOVER."""
    out = bytearray(b"VMIGMS\0\x01")
    offs = {}
    seq = 0

    def add(name, t, p):
        nonlocal seq
        offs.setdefault(name, []).append(len(out))
        out.extend(frame(t, p, seq))
        seq += 1
    add("HELLO", 0x01, b"h" * 40)
    for i in range(3):
        add("RAM1", 0x03, struct.pack("<IIQII", 0, 0, i * 4096, 1, 1) + bytes([i]) * 4096)
    add("END1", 0x04, struct.pack("<IIQ", 1, 0, 3))
    add("RAM2", 0x03, struct.pack("<IIQII", 0, 0, 0, 1, 2) + b"\x07" * 4096)
    add("END2", 0x04, struct.pack("<IIQ", 2, 1, 1))
    add("PRE", 0x06, struct.pack("<IIQ", 0, 1, 0) + b"p" * 100)
    add("SC", 0x06, struct.pack("<IIQ", 0, 0, 100) + b"s" * 100)
    add("SW", 0x09, b"\0" * 32)
    return bytes(out), offs


def test_offset_flip_and_truncate(sink):
    data = os.urandom(200000)
    p = proxy(sink, "fwd at=1000 flip 5 2", "fwd at=150000 truncate 7")
    s, rec = open_conn(sink, p, data)
    wait_for(lambda: rec["eof"], 20, "the truncated stream's end")
    got = bytes(rec["data"])
    check(len(got) == 150007, "truncate 7 at 150000 delivers 150007 bytes (got %d)" % len(got))
    diff = [i for i in range(len(got)) if got[i] != data[i]]
    check(diff == [1005], "one byte differs, at 1005 (got %s)" % diff[:5])
    check(got[1005] == data[1005] ^ 4, "bit 2 flipped")
    s.close()
    close(p)


def test_hold_release_and_wait(sink):
    data = os.urandom(50000)
    p = proxy(sink)
    r = p.cmd("arm fwd at=20000 hold")
    check(r == "ok 1", "arm answers ok 1 (%s)" % r)
    n0 = len(sink.conns)
    s = p.connect()
    s.sendall(data)
    w = p.cmd("wait 1 20000")
    check(w.startswith("fired 1 conn=1 dir=fwd offset=20000 ms="), "wait reports the hold: " + w)
    rec = sink.conn(n0)
    wait_for(lambda: len(rec["data"]) == 20000, 20, "the bytes before the hold")
    st = p.status()
    check(len(st) == 1 and "held" in st[0], "status shows the hold: %s" % st)
    check(len(rec["data"]) == 20000, "nothing passes a hold")
    check(p.cmd("release") == "ok", "release answers ok")
    wait_for(lambda: len(rec["data"]) == 50000, 20, "everything after the release")
    check(bytes(rec["data"]) == data, "the stream is intact after hold/release")
    s.close()
    close(p)


def test_cut_reset_signal(sink):
    p = proxy(sink)
    s, rec = open_conn(sink, p, b"x" * 1000)
    wait_for(lambda: len(rec["data"]) == 1000, 20, "data before the cut")
    check(p.cmd("arm both now cut").startswith("ok"), "arm now cut")
    _, how = recv_until_eof(s)
    check(how in ("eof", "reset"), "the source sees the cut (%s)" % how)
    wait_for(lambda: rec["eof"], 20, "the target sees the cut")
    s.close()
    s, rec = open_conn(sink, p, b"y" * 10)
    wait_for(lambda: len(rec["data"]) == 10, 20, "a new connection")
    check(p.cmd("arm fwd now reset").startswith("ok"), "arm now reset")
    _, how = recv_until_eof(s)
    check(how == "reset", "reset gives the source a TCP reset (%s)" % how)
    s.close()
    s, _ = open_conn(sink, p, b"z")
    p.proc.send_signal(signal.SIGUSR1)
    _, how = recv_until_eof(s)
    check(how in ("eof", "reset"), "SIGUSR1 cuts (%s)" % how)
    s.close()
    close(p)


def test_stall_throttle_latency(sink):
    p = proxy(sink)
    s, rec = open_conn(sink, p, b"a")
    wait_for(lambda: len(rec["data"]) == 1, 20, "the first byte")
    p.cmd("arm fwd now stall 400")
    t = now()
    s.sendall(b"b")
    wait_for(lambda: len(rec["data"]) == 2, 20, "the stalled byte")
    check(now() - t >= 0.35, "a 400 ms stall holds the byte at least that long (%.3f)" % (now() - t))
    p.cmd("arm fwd now throttle 100000")
    t = now()
    s.sendall(b"c" * 100000)
    wait_for(lambda: len(rec["data"]) == 100002, 30, "the throttled bytes")
    check(now() - t >= 0.8, "100 kB at 100 kB/s take about 1 s (%.3f)" % (now() - t))
    p.cmd("arm fwd now throttle 0")
    p.cmd("arm fwd now latency 300")
    t = now()
    s.sendall(b"d")
    wait_for(lambda: len(rec["data"]) == 100003, 20, "the delayed byte")
    check(now() - t >= 0.25, "300 ms latency (%.3f)" % (now() - t))
    check(p.cmd("clear") == "ok", "clear")
    s.close()
    close(p)


def test_frames(sink):
    stream, offs = vmig_stream()
    p = proxy(sink)
    rules = {
        "RAM:pass=1:nth=2": offs["RAM1"][1],
        "RAM:pass=2|RAM_PASS_END:pass=2": offs["RAM2"][0],
        "RAM_PASS_END:last": offs["END2"][0],
        "DEV_DATA:stopcopy|DEV_END": offs["SC"][0],
        "DEV_DATA:precopy": offs["PRE"][0],
        "SWITCHOVER": offs["SW"][0],
    }
    ids = {}
    for spec in rules:
        r = p.cmd("arm fwd frame=%s hold" % spec)
        check(r.startswith("ok "), "arm %s: %s" % (spec, r))
        ids[spec] = int(r.split()[1])
    n0 = len(sink.conns)
    s = p.connect()
    # byte by byte in places: a frame header split across reads
    s.sendall(stream[:30])
    time.sleep(0.05)
    s.sendall(stream[30:])
    rec = sink.conn(n0)
    for spec in sorted(rules, key=lambda k: rules[k]):
        w = p.cmd("wait %d 20000" % ids[spec])
        check(("offset=%d " % rules[spec]) in w, "%s fires at %d: %s" % (spec, rules[spec], w))
        wait_for(lambda: len(rec["data"]) == rules[spec], 20, "the bytes before %s" % spec)
        p.cmd("release")
    wait_for(lambda: len(rec["data"]) == len(stream), 20, "the whole stream")
    check(bytes(rec["data"]) == stream, "the stream is intact")
    s.close()
    close(p)
    # not a vmig stream: frame rules never fire, bytes flow
    p = proxy(sink, "fwd frame=RAM hold")
    s, rec = open_conn(sink, p, b"GET / HTTP/1.0\r\n\r\n" * 100)
    wait_for(lambda: len(rec["data"]) == 1800, 20, "a non-vmig stream")
    s.close()
    close(p)


def test_control_errors(sink):
    p = proxy(sink)
    for bad in ("arm", "arm fwd", "arm sideways now cut", "arm fwd sometime cut",
                "arm fwd now explode", "arm fwd frame=NOPE hold", "arm fwd frame=RAM:pass=x hold",
                "arm both at=5 cut", "arm fwd now stall", "arm fwd now flip 1 9",
                "frobnicate", "wait 99"):
        r = p.cmd(bad)
        check(r.startswith("error"), "'%s' is refused: %s" % (bad, r))
    check(p.cmd("arm fwd now hold").startswith("ok"), "the proxy still answers")
    close(p)
    r = subprocess.run([PROXY, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1",
                        "--arm", "fwd bogus"], capture_output=True, text=True)
    check(r.returncode == 2 and "bogus" in r.stderr, "a bad --arm is a usage error naming it")
    r = subprocess.run([PROXY], capture_output=True, text=True)
    check(r.returncode == 2, "no arguments: usage error")


def main():
    sink = Sink()
    for t in (test_offset_flip_and_truncate, test_hold_release_and_wait, test_cut_reset_signal,
              test_stall_throttle_latency, test_frames, test_control_errors):
        try:
            t(sink)
        except LabError as e:
            check(False, "%s: %s" % (t.__name__, e))
    print("%s: %d failures" % ("FAIL" if failures else "ok", len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
