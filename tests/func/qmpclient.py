# SPDX-License-Identifier: MIT
"""A small QMP client written from QEMU's docs/interop/qmp-spec alone.

It shares nothing with the vmig agent (which is C): it is the outside
view a management tool has.  Per the spec it

- reads the greeting {"QMP": {"version": ..., "capabilities": [...]}},
- negotiates with qmp_capabilities (optionally enabling "oob"),
- sends {"execute" | "exec-oob", "arguments", "id"} and matches replies
  by id, keeping every asynchronous event that arrives in between,
- parses the server's output as a stream of JSON values (it does not
  rely on line breaks, though it checks that every value the server
  sends ends in CRLF, as the spec requires).

Python standard library only.
"""
import json
import os
import select
import socket
import time


class QMPError(Exception):
    """An {"error": {"class", "desc"}} reply."""

    def __init__(self, cls, desc, reply=None):
        super().__init__("%s: %s" % (cls, desc))
        self.cls = cls
        self.desc = desc
        self.reply = reply


class QMPClosed(Exception):
    """The server closed the connection."""


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.events = []     # every event received, in order
        self.unmatched = []  # replies nobody waited for (and id-less ones)
        self.raw = []        # every value received, in order
        self.next_id = 0
        self.greeting = self.recv(timeout)
        if "QMP" not in self.greeting:
            raise QMPError("NoGreeting", "not a QMP greeting: %r" %
                           self.greeting, self.greeting)

    # ---------------------------------------------------------- wire

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _parse_one(self):
        """One JSON value from the buffer, or None when incomplete."""
        text = self.buf.lstrip(b" \t\r\n")
        if not text:
            self.buf = b""
            return None
        dec = json.JSONDecoder()
        try:
            s = text.decode("ascii")  # the spec: output is ASCII
        except UnicodeDecodeError as e:
            raise AssertionError("server output is not ASCII: %r" % text) \
                from e
        try:
            obj, end = dec.raw_decode(s)
        except json.JSONDecodeError:
            return None  # incomplete (the server only sends valid JSON)
        rest = text[end:]
        if not rest.startswith(b"\r\n"):
            if len(rest) < 2:
                return None  # wait for the CRLF
            raise AssertionError("a server value does not end in CRLF: %r"
                                 % text[:end + 2])
        self.buf = rest[2:]
        return obj

    def recv(self, timeout=None):
        """The next JSON value the server sends (event or reply)."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            obj = self._parse_one()
            if obj is not None:
                self.raw.append(obj)
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from %s within the deadline"
                                   % self.path)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            data = self.sock.recv(65536)
            if not data:
                raise QMPClosed("the server closed the connection")
            self.buf += data

    # ---------------------------------------------------------- commands

    def request(self, cmd, args=None, oob=False, rid=None):
        """Send a command without waiting; returns its id."""
        if rid is None:
            self.next_id += 1
            rid = "c%d" % self.next_id
        msg = {"exec-oob" if oob else "execute": cmd, "id": rid}
        if args is not None:
            msg["arguments"] = args
        self.send_raw(json.dumps(msg) + "\n")
        return rid

    def reply(self, rid, timeout=None):
        """Wait for the reply with id @rid; events meanwhile are kept."""
        for r in self.unmatched:
            if r.get("id") == rid:
                self.unmatched.remove(r)
                return r
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == rid and ("return" in msg or
                                           "error" in msg):
                return msg
            else:
                self.unmatched.append(msg)

    def result(self, reply):
        if "error" in reply:
            e = reply["error"]
            raise QMPError(e.get("class"), e.get("desc"), reply)
        return reply["return"]

    def cmd(self, cmd, args=None, oob=False, timeout=None):
        return self.result(self.reply(self.request(cmd, args, oob), timeout))

    def negotiate(self, oob=False):
        args = {"enable": ["oob"]} if oob else None
        return self.cmd("qmp_capabilities", args)

    # ---------------------------------------------------------- events

    def wait_event(self, name, pred=None, timeout=None, since=0):
        """The first event @name (with pred(data)) at index >= @since."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        i = since
        while True:
            while i < len(self.events):
                ev = self.events[i]
                i += 1
                if ev["event"] == name and (pred is None or
                                            pred(ev.get("data", {}))):
                    return ev
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if "event" in msg:
                self.events.append(msg)
            else:
                self.unmatched.append(msg)

    def drain(self, seconds):
        """Collect whatever arrives for @seconds."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                msg = self.recv(left)
            except TimeoutError:
                return
            if "event" in msg:
                self.events.append(msg)
            else:
                self.unmatched.append(msg)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(path, oob=False, timeout=30.0):
    q = QMP(path, timeout)
    q.negotiate(oob)
    return q


def wait_socket(path, proc=None, timeout=30.0):
    """Until a server accepts on @path (or @proc exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited (%d) before serving %s" %
                               (proc.args[0], proc.returncode, path))
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise TimeoutError("nothing serves %s" % path)
