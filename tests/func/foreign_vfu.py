#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A foreign vfio-user device server for vmig's tests.

Written from the vfio-user specification (QEMU docs/interop/vfio-user.rst)
alone, with its own codec: it shares no code, no header and no assumption
with lib/vfu_server.c or lib/proto.c, so a wrong assumption vmig's client
makes about servers shows up here.  It is deliberately a *minimal* server,
the kind other libraries produce:

- migration flags STOP_COPY only (--pre-copy adds PRE_COPY); no P2P;
- no vmig extensions: VERSION offers none (an unknown "x-vmig" capability
  is ignored, as the spec says), and DEVICE_FEATURE answers EOPNOTSUPP for
  every feature the spec does not list;
- no DMA logging (DMA_LOGGING_START/STOP/REPORT: EOPNOTSUPP);
- MIG_DATA_READ replies are padded to the size asked for (the count is in
  `size`), VERSION's JSON is followed by NUL padding;
- DEVICE_RESET is refused (EBUSY) in STOP;
- asked for a state it did not advertise (or any state number outside the
  spec, or ERROR), it prints why and exits with status 3 - a client that
  probes states it was not offered fails loudly here.

Regions: BAR0 (4 KiB of device memory, read/write), BAR2 (64 KiB,
read/write, mmap-able through a memfd, with a capability chain: an
unknown capability, then a sparse-mmap one exposing its second half),
config space (region 7: vendor 0x1af4, device 0x10f0, revision 1,
subsystem 0x1af4:0x0042), 9 regions in all.  IRQs: INTx (1), MSI (0),
MSI-X (2).

State: --state-mib MiB of bytes seeded from --seed, plus BAR0 and BAR2.
While the device runs it changes a 64-byte run of its state every
--tick-ms (20) milliseconds (so a stale copy shows).  Its migration data is its own format: a header,
64 KiB chunk records (all of them, then those changed since they were
sent, in PRE_COPY), the BARs, and an end record with a SHA-256 digest of
the whole state; the destination checks every chunk arrived and the digest
matches on RESUMING -> STOP (else the SET fails and the device goes to
ERROR).  With --report FILE it appends "save DIGEST" when the end of its
STOP_COPY data is read, and "restore DIGEST" when a state is loaded.

usage: foreign_vfu.py --socket-path=PATH [--state-mib=N] [--seed=N]
                      [--pre-copy] [--report=FILE] [--xfer=BYTES]
                      [--tick-ms=N]
Connections are served one after another; the device state survives a
client's disconnection (the spec's "Client Disconnection").  SIGTERM ends
it with status 0.
"""

import argparse
import array
import errno
import hashlib
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

# ---------------------------------------------------------------- codec
# Every message: {u16 id, u16 command, u32 size, u32 flags, u32 error},
# host byte order (the spec: "all data is in the endianness of the host").
HDR = struct.Struct("=HHIII")
T_COMMAND, T_REPLY = 0x0, 0x1
F_NO_REPLY, F_ERROR = 0x10, 0x20

VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_REGION_IO_FDS, GET_IRQ_INFO, SET_IRQS, REGION_READ = 6, 7, 8, 9
REGION_WRITE, DMA_READ, DMA_WRITE, RESET, WRITE_MULTI = 10, 11, 12, 13, 15
FEATURE, MIG_READ, MIG_WRITE = 16, 17, 18

# DEVICE_FEATURE flags and the features the spec lists
FEAT_MASK, FEAT_GET, FEAT_SET, FEAT_PROBE = 0xFFFF, 1 << 16, 1 << 17, 1 << 18
FT_MIGRATION, FT_STATE = 1, 2
FT_LOG_START, FT_LOG_STOP, FT_LOG_REPORT = 6, 7, 8

# vfio_device_mig_state, as the spec's table numbers them
ERROR, STOP, RUNNING, STOP_COPY, RESUMING = 0, 1, 2, 3, 4
RUNNING_P2P, PRE_COPY, PRE_COPY_P2P = 5, 6, 7
NAMES = {ERROR: "ERROR", STOP: "STOP", RUNNING: "RUNNING",
         STOP_COPY: "STOP_COPY", RESUMING: "RESUMING",
         RUNNING_P2P: "RUNNING_P2P", PRE_COPY: "PRE_COPY",
         PRE_COPY_P2P: "PRE_COPY_P2P"}
MIG_STOP_COPY, MIG_PRE_COPY = 1 << 0, 1 << 2

# the spec's "Direct State Transitions" (arcs touching PRE_COPY only
# when it is supported)
ARCS = [(RUNNING, STOP), (STOP_COPY, STOP), (RESUMING, STOP),
        (PRE_COPY, RUNNING), (STOP, RUNNING), (RUNNING, PRE_COPY),
        (STOP, STOP_COPY), (PRE_COPY, STOP_COPY), (STOP, RESUMING)]
SAVING = (PRE_COPY, STOP_COPY)

CHUNK = 64 * 1024
BAR0_SIZE, BAR2_SIZE, CFG_SIZE = 4096, 64 * 1024, 256
NREGIONS, NIRQS = 9, 5
IRQ_COUNTS = {0: 1, 1: 0, 2: 2, 3: 0, 4: 0}
MAX_FDS = 8

REC_HDR, REC_CHUNK, REC_BAR, REC_END = 0x4E475246, 1, 2, 3  # "FRGN"
REC = struct.Struct("=III")


class Bye(Exception):
    """The connection is over (EOF, garbage, a stall)."""


def log(msg):
    sys.stderr.write("foreign-vfu: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- device
class Device:
    def __init__(self, opts):
        self.o = opts
        self.flags = MIG_STOP_COPY | (MIG_PRE_COPY if opts.pre_copy else 0)
        self.states = {STOP, RUNNING, STOP_COPY, RESUMING}
        if opts.pre_copy:
            self.states.add(PRE_COPY)
        n = opts.state_mib << 20
        self.mem = bytearray(random.Random(opts.seed).randbytes(n))
        self.nchunks = (n + CHUNK - 1) // CHUNK
        self.bar0 = bytearray(BAR0_SIZE)
        self.bar0[0:8] = struct.pack("=Q", opts.seed)
        self.bar2fd = os.memfd_create("foreign-bar2")
        os.ftruncate(self.bar2fd, BAR2_SIZE)
        self.cfg = bytearray(CFG_SIZE)
        struct.pack_into("=HH", self.cfg, 0, 0x1AF4, 0x10F0)
        self.cfg[8] = 1
        struct.pack_into("=HH", self.cfg, 0x2C, 0x1AF4, 0x0042)
        self.state = RUNNING
        self.save = None  # the saving session
        self.resume = None  # the resuming session's bytes
        self.ticks = 0
        self.last_tick = time.monotonic()

    # -- state
    def bar2(self):
        return os.pread(self.bar2fd, BAR2_SIZE, 0)

    def digest(self):
        h = hashlib.sha256()
        h.update(self.mem)
        h.update(self.bar0)
        h.update(self.bar2())
        return h.hexdigest()

    def running(self):
        return self.state in (RUNNING, PRE_COPY)

    def tick(self):
        """The device at work: a 64-byte run of its state changes."""
        now = time.monotonic()
        if not self.running() or now - self.last_tick < self.o.tick_ms / 1e3:
            return
        self.last_tick = now
        self.ticks += 1
        pos = (self.ticks * 2654435761) % (len(self.mem) - 64)
        self.mem[pos:pos + 64] = hashlib.sha256(
            struct.pack("=Q", self.ticks)).digest() * 2
        if self.save is not None:
            self.save.touched(pos // CHUNK)
            self.save.touched((pos + 63) // CHUNK)

    def report(self, what):
        d = self.digest()
        log("%s digest %s" % (what, d))
        if self.o.report:
            with open(self.o.report, "a") as f:
                f.write("%s %s\n" % (what, d))

    # -- arcs: each is one step the spec defines
    def arc(self, to):
        fr = self.state
        if to in SAVING and fr not in SAVING:
            self.save = Saver(self)  # a new session
        if fr in SAVING and to not in SAVING:
            self.save = None  # the session ends
        if to == RESUMING:
            self.resume = bytearray()
        if fr == RESUMING:
            data, self.resume = self.resume, None
            err = self.load(bytes(data))
            if err:
                log("RESUMING -> STOP: the data is %s; now ERROR" % err)
                self.state = ERROR
                return errno.EINVAL
            self.report("restore")
        self.state = to
        return 0

    def path(self, to):
        """The shortest path of direct arcs, saving states only at its
        ends (the spec's "Complex State Transitions")."""
        arcs = [a for a in ARCS if a[0] in self.states and a[1] in self.states]
        seen, todo = {self.state: [self.state]}, [self.state]
        while todo:
            nxt = []
            for s in todo:
                if s != self.state and s in SAVING:
                    continue  # no saving state inside a path
                for a, b in arcs:
                    if a == s and b not in seen:
                        seen[b] = seen[s] + [b]
                        nxt.append(b)
            todo = nxt
        return seen.get(to)

    def set_state(self, to):
        if to not in self.states:
            log("asked for state %s (%d), which this device did not "
                "advertise (flags %#x): a VMM may only ask for states the "
                "migration flags allow; exiting" %
                (NAMES.get(to, "?"), to, self.flags))
            sys.exit(3)
        if self.state == STOP_COPY and to == PRE_COPY:
            return errno.EINVAL  # the spec: explicitly not allowed
        if self.state == ERROR:
            return errno.EINVAL  # only DEVICE_RESET leaves ERROR
        p = self.path(to)
        if p is None:
            return errno.EINVAL
        for s in p[1:]:
            err = self.arc(s)
            if err:
                return err
        return 0

    def reset(self):
        if self.state == STOP:
            return errno.EBUSY  # deliberately: some servers do this
        self.save = None
        self.resume = None
        self.state = RUNNING
        return 0

    # -- restore
    def load(self, data):
        if len(data) < 16:
            return "short"
        magic, n, chunk = REC.unpack_from(data, 0)
        if magic != REC_HDR or n != len(self.mem) or chunk != CHUNK:
            return "not this device's (header %#x, %d bytes)" % (magic, n)
        mem = bytearray(len(self.mem))
        bar0, bar2 = None, None
        have = bytearray(self.nchunks)
        off, end = 12, None
        while off < len(data):
            if len(data) - off < REC.size:
                return "cut in a record header"
            tag, idx, ln = REC.unpack_from(data, off)
            off += REC.size
            body = data[off:off + ln]
            if len(body) != ln:
                return "cut in a record"
            off += ln
            if tag == REC_CHUNK and idx < self.nchunks and \
                    ln == min(CHUNK, len(mem) - idx * CHUNK):
                mem[idx * CHUNK:idx * CHUNK + ln] = body
                have[idx] = 1
            elif tag == REC_BAR and idx == 0 and ln == BAR0_SIZE:
                bar0 = body
            elif tag == REC_BAR and idx == 2 and ln == BAR2_SIZE:
                bar2 = body
            elif tag == REC_END and ln == 32 and off == len(data):
                end = body
            else:
                return "a bad record (tag %d index %d length %d)" % (
                    tag, idx, ln)
        if end is None or bar0 is None or bar2 is None or \
                min(have, default=1) == 0:
            return "incomplete"
        h = hashlib.sha256()
        h.update(mem)
        h.update(bar0)
        h.update(bar2)
        if h.digest() != end:
            return "inconsistent (digest)"
        self.mem, self.bar0 = mem, bytearray(bar0)
        os.pwrite(self.bar2fd, bar2, 0)
        return None


class Saver:
    """One saving session: the data is produced as it is read."""

    def __init__(self, dev):
        self.d = dev
        self.buf = bytearray(REC.pack(REC_HDR, len(dev.mem), CHUNK))
        self.next = 0  # next chunk of the initial pass
        self.dirty = set()
        self.final = False  # BARs and the end record queued
        self.ended = False  # ... and read out

    def touched(self, i):
        if i < self.next:
            self.dirty.add(i)

    def chunk(self, i):
        m = self.d.mem
        body = m[i * CHUNK:(i + 1) * CHUNK]
        self.buf += REC.pack(REC_CHUNK, i, len(body)) + body

    def read(self, n, stopcopy):
        while len(self.buf) < n:
            if self.next < self.d.nchunks:
                self.chunk(self.next)
                self.next += 1
            elif self.dirty:
                self.chunk(self.dirty.pop())
            elif stopcopy and not self.final:
                b2 = self.d.bar2()
                self.buf += REC.pack(REC_BAR, 0, BAR0_SIZE) + self.d.bar0
                self.buf += REC.pack(REC_BAR, 2, BAR2_SIZE) + b2
                self.buf += REC.pack(REC_END, 0, 32) + bytes.fromhex(
                    self.d.digest())
                self.final = True
            else:
                break
        out = bytes(self.buf[:n])
        del self.buf[:n]
        if stopcopy and self.final and not self.buf and not self.ended:
            self.ended = True
            self.d.report("save")
        return out


# ---------------------------------------------------------------- server
class Conn:
    def __init__(self, sock, dev, opts):
        self.s = sock
        self.d = dev
        self.o = opts
        self.versioned = False
        self.maps = []
        self.irqfds = {}

    def close(self):
        for fds in self.irqfds.values():
            for fd in fds:
                os.close(fd)
        self.irqfds = {}
        self.maps = []  # the spec: a client's mappings go with it
        self.s.close()

    # -- I/O
    def recv_exact(self, n, fds):
        out = bytearray()
        while len(out) < n:
            data, anc, _, _ = self.s.recvmsg(
                n - len(out), socket.CMSG_SPACE(MAX_FDS * 4))
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % 4])
                    fds.extend(a)
            if not data:
                raise Bye("EOF")
            out += data
        return bytes(out)

    def recv_msg(self):
        fds = []
        self.s.settimeout(None)
        h = self.recv_exact(HDR.size, fds)
        mid, cmd, size, flags, _ = HDR.unpack(h)
        limit = self.o.xfer + 4096
        if size < HDR.size or size > limit:
            raise Bye("message size %d" % size)
        self.s.settimeout(10)  # a stall mid-message ends the connection
        body = self.recv_exact(size - HDR.size, fds) if size > 16 else b""
        return mid, cmd, flags, body, fds

    def send(self, mid, cmd, payload=b"", err=0, fds=None):
        flags = T_REPLY | (F_ERROR if err else 0)
        if err:
            payload = b""  # "the reply message must only include the header"
        msg = HDR.pack(mid, cmd, HDR.size + len(payload), flags, err) + payload
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    array.array("i", fds).tobytes())]
        n = self.s.sendmsg([msg], anc)  # the fds go with the first byte
        if n < len(msg):
            self.s.sendall(msg[n:])

    # -- commands; each returns (errno, payload[, fds])
    def c_version(self, body, fds):
        if self.versioned:
            return errno.EBUSY, b""
        if len(body) < 4:
            return errno.EINVAL, b""
        major, minor = struct.unpack_from("=HH", body)
        if major != 0:
            raise Bye("client proposes major %d" % major)
        if len(body) > 4:
            try:
                j = body[4:].split(b"\0", 1)[0].decode()
                if j:
                    json.loads(j)
            except (UnicodeDecodeError, ValueError):
                return errno.EINVAL, b""
        self.versioned = True
        caps = {"capabilities": {"max_msg_fds": MAX_FDS,
                                 "max_data_xfer_size": self.o.xfer,
                                 "pgsizes": 4096}}
        data = json.dumps(caps).encode() + b"\0" * 4  # NUL and padding
        return 0, struct.pack("=HH", 0, min(minor, 1)) + data

    def c_dma_map(self, body, fds):
        for fd in fds:
            os.close(fd)  # this device does no DMA
        if len(body) < 32:
            return errno.EINVAL, b""
        _, flags, _, addr, size = struct.unpack_from("=IIQQQ", body)
        if flags & ~3 or size == 0 or addr + size > 1 << 64:
            return errno.EINVAL, b""
        for a, s in self.maps:
            if addr < a + s and a < addr + size:
                return errno.EEXIST, b""
        self.maps.append((addr, size))
        return 0, b""

    def c_dma_unmap(self, body, fds):
        if len(body) < 24:
            return errno.EINVAL, b""
        _, flags, addr, size = struct.unpack_from("=IIQQ", body)
        if flags == 2 and addr == 0 and size == 0:
            self.maps = []
        elif flags == 0 and (addr, size) in self.maps:
            self.maps.remove((addr, size))
        else:
            return errno.ENOENT if flags == 0 else errno.EINVAL, b""
        return 0, body[:24]

    def c_info(self, body, fds):
        return 0, struct.pack("=IIII", 16, 0x3, NREGIONS, NIRQS)

    def region(self, i):
        """(flags, size, caps bytes, mmap fd)"""
        if i == 0:
            return 0x3, BAR0_SIZE, b"", None
        if i == 2:
            # an unknown capability first, then sparse mmap: the second
            # half of BAR2 may be mapped
            sparse = struct.pack("=HHIII", 1, 1, 0, 1, 0) + struct.pack(
                "=QQ", BAR2_SIZE // 2, BAR2_SIZE // 2)
            unknown = struct.pack("=HHI", 0x7F00, 1, 32 + 16) + b"\xee" * 8
            return 0xF, BAR2_SIZE, unknown + sparse, self.d.bar2fd
        if i == 7:
            return 0x3, CFG_SIZE, b"", None
        return 0, 0, b"", None

    def c_region_info(self, body, fds):
        if len(body) < 32:
            return errno.EINVAL, b""
        argsz, _, index = struct.unpack_from("=III", body)
        if index >= NREGIONS:
            return errno.EINVAL, b""
        flags, size, caps, fd = self.region(index)
        need = 32 + len(caps)
        cap_off = 32 if caps else 0
        info = struct.pack("=IIIIQQ", need, flags, index, cap_off, size, 0)
        if argsz >= need:
            info += caps  # room for the chain, else argsz says what it needs
        return 0, info, [fd] if fd is not None else None

    def c_irq_info(self, body, fds):
        if len(body) < 16:
            return errno.EINVAL, b""
        _, _, index, _ = struct.unpack_from("=IIII", body)
        if index >= NIRQS:
            return errno.EINVAL, b""
        return 0, struct.pack("=IIII", 16, 0x9, index, IRQ_COUNTS[index])

    def c_set_irqs(self, body, fds):
        if len(body) < 20:
            for fd in fds:
                os.close(fd)
            return errno.EINVAL, b""
        _, flags, index, start, count = struct.unpack_from("=IIIII", body)
        data, action = flags & 0x7, flags & 0x38
        bad = (flags & ~0x3F or data not in (1, 2, 4) or
               action not in (8, 16, 32) or index >= NIRQS or
               start + count > IRQ_COUNTS[index] and count != 0)
        if bad or (data == 4 and fds and len(fds) != count):
            for fd in fds:
                os.close(fd)
            return errno.EINVAL, b""
        if data == 4 and action == 32:
            for v in range(start, start + count):
                for fd in self.irqfds.pop((index, v), []):
                    os.close(fd)
            for k, fd in enumerate(fds):
                self.irqfds[(index, start + k)] = [fd]
        else:
            for fd in fds:
                os.close(fd)
        return 0, b""

    def area(self, region, off, count):
        if self.d.state in (STOP_COPY, RESUMING, ERROR):
            return errno.EBUSY, None
        flags, size, _, _ = self.region(region)
        if size == 0 or off + count > size or count > self.o.xfer:
            return errno.EINVAL, None
        return 0, flags

    def c_region_read(self, body, fds):
        if len(body) < 16:
            return errno.EINVAL, b""
        off, region, count = struct.unpack_from("=QII", body)
        err, flags = self.area(region, off, count)
        if err or not flags & 1:
            return err or errno.EINVAL, b""
        src = {0: self.d.bar0, 2: self.d.bar2(), 7: self.d.cfg}[region]
        return 0, body[:16] + bytes(src[off:off + count])

    def c_region_write(self, body, fds):
        if len(body) < 16:
            return errno.EINVAL, b""
        off, region, count = struct.unpack_from("=QII", body)
        err, flags = self.area(region, off, count)
        if err or not flags & 2 or len(body) != 16 + count:
            return err or errno.EINVAL, b""
        data = body[16:]
        if region == 0:
            self.d.bar0[off:off + count] = data
        elif region == 2:
            os.pwrite(self.d.bar2fd, data, off)
        else:
            self.d.cfg[off:off + count] = data
        return 0, body[:16]

    def c_reset(self, body, fds):
        return self.d.reset(), b""

    def c_feature(self, body, fds):
        if len(body) < 8:
            return errno.EINVAL, b""
        argsz, flags = struct.unpack_from("=II", body)
        feat, ops = flags & FEAT_MASK, flags & ~FEAT_MASK
        if ops & ~(FEAT_GET | FEAT_SET | FEAT_PROBE) or not ops or \
                ops == FEAT_GET | FEAT_SET:
            return errno.EINVAL, b""
        if feat == FT_MIGRATION and not ops & FEAT_SET:
            if ops & FEAT_PROBE:
                return 0, body[:8]
            return 0, struct.pack("=IIQ", 16, flags, self.d.flags)
        if feat == FT_STATE:
            if ops & FEAT_PROBE:
                return 0, body[:8]
            if ops == FEAT_GET:
                return 0, struct.pack("=IIII", 16, flags, self.d.state, 0)
            if len(body) < 16:
                return errno.EINVAL, b""
            (to,) = struct.unpack_from("=I", body, 8)
            err = self.d.set_state(to)
            return err, struct.pack("=IIII", 16, flags, self.d.state, 0)
        return errno.EOPNOTSUPP, b""  # DMA logging and everything else

    def c_mig_read(self, body, fds):
        if len(body) < 8:
            return errno.EINVAL, b""
        _, size = struct.unpack_from("=II", body)
        if self.d.state not in SAVING or self.d.save is None:
            return errno.EINVAL, b""
        if size > self.o.xfer:
            return errno.E2BIG, b""
        data = self.d.save.read(size, self.d.state == STOP_COPY)
        # padded to the size asked for; size says how much is data
        return 0, struct.pack("=II", 8 + size, len(data)) + data + \
            b"\0" * (size - len(data))

    def c_mig_write(self, body, fds):
        if len(body) < 8:
            return errno.EINVAL, b""
        _, size = struct.unpack_from("=II", body)
        if self.d.state != RESUMING or self.d.resume is None:
            return errno.EINVAL, b""
        if len(body) != 8 + size or size > self.o.xfer:
            return errno.EINVAL, b""
        self.d.resume += body[8:]
        return 0, b""

    HANDLERS = {VERSION: c_version, DMA_MAP: c_dma_map,
                DMA_UNMAP: c_dma_unmap, GET_INFO: c_info,
                GET_REGION_INFO: c_region_info, GET_IRQ_INFO: c_irq_info,
                SET_IRQS: c_set_irqs, REGION_READ: c_region_read,
                REGION_WRITE: c_region_write, RESET: c_reset,
                FEATURE: c_feature, MIG_READ: c_mig_read,
                MIG_WRITE: c_mig_write}

    def serve_one(self):
        mid, cmd, flags, body, fds = self.recv_msg()
        if flags & 0xF != T_COMMAND:
            for fd in fds:
                os.close(fd)
            return  # a reply to nothing we sent: dropped
        h = self.HANDLERS.get(cmd)
        if h is None or (not self.versioned and cmd != VERSION):
            for fd in fds:
                os.close(fd)
            r = (errno.ENOSYS if h is None else errno.EINVAL, b"")
        else:
            r = h(self, body, fds)
        if not flags & F_NO_REPLY:
            self.send(mid, cmd, r[1], r[0], r[2] if len(r) > 2 else None)


def serve(lsock, dev, opts):
    while True:
        r, _, _ = select.select([lsock], [], [], 0.02)
        dev.tick()
        if not r:
            continue
        s, _ = lsock.accept()
        log("client connected")
        c = Conn(s, dev, opts)
        try:
            while True:
                r, _, _ = select.select([s], [], [], 0.02)
                dev.tick()
                if r:
                    c.serve_one()
        except (Bye, OSError) as e:
            log("client gone (%s); device stays in %s" %
                (e, NAMES[dev.state]))
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket-path")
    ap.add_argument("--fd", type=int)
    ap.add_argument("--state-mib", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pre-copy", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--xfer", type=int, default=1 << 20)
    ap.add_argument("--tick-ms", type=int, default=20)
    opts = ap.parse_args()
    if (opts.socket_path is None) == (opts.fd is None) or \
            not 1 <= opts.state_mib <= 1024 or opts.xfer < 4096 or \
            opts.tick_ms < 1:
        ap.error("exactly one of --socket-path/--fd; --state-mib 1..1024; "
                 "--xfer >= 4096; --tick-ms >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if opts.fd is not None:
        lsock = socket.socket(fileno=opts.fd)
    else:
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(opts.socket_path)
        lsock.listen(1)
    dev = Device(opts)
    log("serving %d MiB, flags %#x, on %s" %
        (opts.state_mib, dev.flags, opts.socket_path or "fd %d" % opts.fd))
    try:
        serve(lsock, dev, opts)
    finally:
        if opts.socket_path:
            try:
                os.unlink(opts.socket_path)
            except OSError:
                pass


if __name__ == "__main__":
    main()
