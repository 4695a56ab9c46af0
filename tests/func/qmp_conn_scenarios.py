# SPDX-License-Identifier: MIT
"""QMP scenarios about reaching the agent (qmp_scenarios.py runs them):
out-of-band commands, limits on lines and clients, and the socket's
security.  See qmp_scenarios.py for what each checks.
"""
import json
import os
import signal
import socket
import stat
import subprocess
import time

import qmp_lab as lab
from qmp_lab import (PROCS, VM, agent, check, cli, expect_error, fail,
                     free_port, statuses, wait_until)
from qmpclient import QMP, QMPClosed, connect, wait_socket


# ------------------------------------------------------------ oob

def scenario_oob():
    p1 = free_port()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4)  # accepts (kernel backlog) and never answers
    dst = agent("dst", p1)
    src = agent("src", "-")
    q = connect(src.qmp, oob=True)
    # exec-oob of a command that does not allow it
    expect_error(q, "query-migrate-parameters", None, "GenericError",
                 "The command query-migrate-parameters does not support OOB",
                 oob=True)
    # a slow in-band command (a check against a peer that never answers)
    # and, behind it in the same write, an out-of-band migrate_cancel: the
    # cancel's reply overtakes it
    q.send_raw(json.dumps({"execute": "x-vmig-check-compat",
                           "arguments": {"uri": "tcp:127.0.0.1:%d" %
                                         hole.getsockname()[1]},
                           "id": "slow"}) +
               json.dumps({"exec-oob": "migrate_cancel", "id": "fast"}))
    t0 = time.monotonic()
    r = q.reply("fast", timeout=10)
    check(r.get("return") == {}, "oob migrate_cancel: %r" % r)
    check(time.monotonic() - t0 < 5, "the oob reply waited for the queue")
    check(not any(m.get("id") == "slow" for m in q.raw),
          "the slow command answered first?")
    # another client negotiates and runs out of band meanwhile, and the
    # CLI's status and cancel get through
    t0 = time.monotonic()
    c2 = connect(src.qmp, oob=True)
    check(c2.cmd("migrate-cancel", oob=True) == {}, "second client's cancel")
    check(c2.cmd("query-status", oob=True)["running"], "oob query-status")
    check(time.monotonic() - t0 < 5, "another client waited for the queue")
    c2.close()
    rc, out = cli("status", "--qmp", src.qmp, "--json", timeout=20)
    check(rc == 0 and '"running"' in out, "vmig status, busy monitor: %s"
          % out)
    rc, out = cli("cancel", "--qmp", src.qmp, timeout=20)
    check(rc == 1 and "nothing to cancel" in out, "vmig cancel, busy "
          "monitor: %s" % out)
    check(time.monotonic() - t0 < 15, "the CLI waited for the busy monitor")
    check(not any(m.get("id") == "slow" for m in q.raw),
          "the slow command ended early: the monitor was not busy")
    # let the slow one end: the peer hangs up
    conn, _ = hole.accept()
    conn.close()
    hole.close()
    r = q.reply("slow", timeout=120)
    check("error" in r, "check against a silent peer: %r" % r)

    # a real cancel, out of band, of a slow migration
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % p1,
                      "x-vmig-parameters": {"max-bandwidth": 1 << 20}})
    q.wait_event("MIGRATION", lambda d: d["status"] == "active")
    check(q.cmd("migrate_cancel", oob=True) == {}, "cancel")
    q.wait_event("MIGRATION", lambda d: d["status"] == "cancelled",
                 timeout=60)
    check(statuses(q) == ["setup", "active", "cancelling", "cancelled"],
          "statuses %r" % statuses(q))
    info = q.cmd("query-migrate")
    check(info["status"] == "cancelled" and "error-desc" in info,
          "query-migrate after cancel %r" % info)
    check(q.cmd("query-status")["status"] == "running", "source running")

    # a cancel while the migration is still in setup (its peer accepted
    # the connection but never answers): cancelled at once
    hole2 = socket.socket()
    hole2.bind(("127.0.0.1", 0))
    hole2.listen(4)
    n = len(q.events)
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % hole2.getsockname()[1]})
    check(q.cmd("query-migrate", oob=True)["status"] == "setup",
          "a migration to a silent peer left setup")
    t0 = time.monotonic()
    check(q.cmd("migrate_cancel", oob=True) == {}, "cancel in setup")
    q.wait_event("MIGRATION", lambda d: d["status"] == "cancelled",
                 timeout=60, since=n)
    check(time.monotonic() - t0 < 10, "a cancel in setup took %.1f s" %
          (time.monotonic() - t0))
    check([e["data"]["status"] for e in q.events[n:]
           if e["event"] == "MIGRATION"] ==
          ["setup", "cancelling", "cancelled"],
          "statuses of a cancel in setup: %r" % statuses(q))
    check(q.cmd("query-status")["status"] == "running", "source running")
    hole2.close()

    # a cancel while still connecting (the peer's accept queue is full,
    # so our SYNs are dropped and connect() would wait for minutes)
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(full.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)  # let the kernel settle the fillers' handshakes
    n = len(q.events)
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % full.getsockname()[1]})
    time.sleep(0.5)  # it is connecting (a fixed wait is fine: no outcome
    # depends on it; the cancel must work whenever it comes)
    check(q.cmd("query-migrate", oob=True)["status"] == "setup",
          "still connecting to a full peer: %r" % q.cmd("query-migrate"))
    t0 = time.monotonic()
    check(q.cmd("migrate_cancel", oob=True) == {}, "cancel while connecting")
    q.wait_event("MIGRATION", lambda d: d["status"] == "cancelled",
                 timeout=60, since=n)
    check(time.monotonic() - t0 < 10, "a cancel while connecting took "
          "%.1f s" % (time.monotonic() - t0))
    info = q.cmd("query-migrate")
    check("cancelled before the migration started" in
          info.get("error-desc", ""), "error-desc %r" % info)
    for f in fillers:
        f.close()
    full.close()

    # vmig cancel (out of band) of a running migration, then once more
    n = len(q.events)
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % p1})
    q.wait_event("MIGRATION", lambda d: d["status"] == "active", since=n)
    rc, out = cli("cancel", "--qmp", src.qmp)
    check(rc == 0 and "cancelled" in out, "vmig cancel: %d %s" % (rc, out))
    rc, out = cli("cancel", "--qmp", src.qmp)
    check(rc == 1 and "nothing to cancel" in out and "cancelled" in out,
          "vmig cancel with nothing running: %d %s" % (rc, out))
    # and the VM still migrates afterwards
    q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    n = len(q.events)
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % p1})
    q.wait_event("MIGRATION", lambda d: d["status"] == "completed",
                 timeout=120, since=n)
    q.close()


# ------------------------------------------------------------ limits

def stuff(q, total=3 << 19, quiet=0.3, cap=30.0):
    """Send one endless line without blocking: @total bytes, or fewer if
    the agent stops reading (nothing goes for @quiet seconds); the bytes
    sent. The agent is left with input it has not read."""
    q.sock.setblocking(False)
    chunk, sent = b"a" * 65536, 0
    last = time.monotonic()
    end = last + cap
    try:
        while (sent < total and time.monotonic() - last < quiet and
               time.monotonic() < end):
            try:
                sent += q.sock.send(chunk)
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError) as e:
                fail("the agent hung up on a client still sending, after "
                     "%d bytes (its input unread, the reply can be lost): "
                     "%r" % (sent, e))
    finally:
        q.sock.setblocking(True)
    return sent


def until_closed(q, what, wait, data=None):
    """Send @data (the agent may hang up while it is sent), then collect
    every message until the agent closes the connection cleanly (EOF, not a
    reset, which could lose its last line), within @wait seconds a message."""
    if data is not None:
        try:
            q.send_raw(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
    got = []
    try:
        while True:
            got.append(q.recv(wait))
    except QMPClosed:
        pass
    except (ConnectionResetError, TimeoutError) as e:
        fail("no clean close after %s: %r" % (what, e))
    return got


def scenario_limits():
    src = agent("src", "-")
    # a 10 MB line: exactly one error, then the connection is closed
    q = connect(src.qmp)
    got = until_closed(q, "the 10 MB line", 30, b"a" * (10 << 20) + b"\n")
    errs = [m for m in got if "error" in m]
    check(len(errs) == 1, "expected one error for a 10 MB line, got %d: %r"
          % (len(errs), got[:3]))
    check("1048576" in errs[0]["error"]["desc"], "the error: %r" % errs[0])
    q.close()
    # a 10 MB request inside valid JSON: one error, closed
    q = connect(src.qmp)
    got = until_closed(q, "the 10 MB request", 30,
                       '{"execute": "query-status", "arguments": {"x": "' +
                       "y" * (10 << 20) + '"}}')
    check(len([m for m in got if "error" in m]) == 1, "big request: %r" %
          got[:3])
    q.close()
    # a client that stops sending mid-way with its input still unread by
    # the agent, then reads: the error, then a clean EOF, not a reset
    q = connect(src.qmp)
    check(stuff(q) > (1 << 20), "the agent read too little")
    got = until_closed(q, "the stuffed socket", 30)
    check(len([m for m in got if "error" in m]) == 1, "stuffed: %r" % got[:3])
    # many small requests without newlines are fine
    q = connect(src.qmp)
    q.send_raw("".join(json.dumps({"execute": "query-status", "id": i})
                       for i in range(300)))
    for i in range(300):
        check(q.reply(i).get("return", {}).get("running"), "pipelined %d" % i)
    ids = [m["id"] for m in q.raw if isinstance(m.get("id"), int)]
    check(ids == list(range(300)), "replies out of order")
    q.close()

    # a client that never reads its replies is dropped, the rest go on
    hog = connect(src.qmp)
    req = "".join(json.dumps({"execute": "query-commands", "id": i})
                  for i in range(200))
    try:
        for _ in range(200):
            hog.send_raw(req)
    except (BrokenPipeError, ConnectionResetError):
        pass
    wait_until("the non-reading client dropped",
               lambda: "left 8388608 bytes" in open(src.logname).read())
    hog.close()
    check(connect(src.qmp).cmd("query-status")["running"], "after the hog")

    # a client that never negotiates is told so and closed (10 s)
    got = until_closed(QMP(src.qmp), "no qmp_capabilities", 60)
    check(any("timed out waiting for qmp_capabilities" in
              m.get("error", {}).get("desc", "") for m in got),
          "negotiation timeout: %r" % got)

    # 16 idle clients (negotiated and not) do not lock management out
    idle = [QMP(src.qmp) for _ in range(8)] + \
        [connect(src.qmp) for _ in range(8)]
    for _ in range(3):
        rc, out = cli("status", "--qmp", src.qmp, "--json")
        check(rc == 0 and '"running"' in out, "vmig status with 16 idle "
              "clients: %d %s" % (rc, out))
    rc, out = cli("cancel", "--qmp", src.qmp)
    check("nothing to cancel" in out, "vmig cancel with 16 idle: %s" % out)
    evicted = 0
    for c in idle:
        try:
            c.drain(0.2)
        except (QMPClosed, ConnectionResetError):
            evicted += 1
    check(evicted >= 1, "no idle client was evicted")
    for c in idle:
        c.close()
    with open(src.logname) as f:
        check("evicting" in f.read(), "eviction not logged")

    # the CLI names the reason, never a bare "Protocol error"
    fake = os.path.join(lab.TMP, "fake.qmp")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(fake)
    srv.listen(1)
    import threading

    def garbage():
        c, _ = srv.accept()
        c.sendall(b"this is not QMP\r\n")
        time.sleep(0.5)
        c.close()
    t = threading.Thread(target=garbage)
    t.start()
    rc, out = cli("status", "--qmp", fake)
    t.join()
    srv.close()
    check(rc == 1 and "Protocol error" not in out and "not JSON" in out,
          "garbage server: %d %s" % (rc, out))
    rc, out = cli("status", "--qmp", os.path.join(lab.TMP, "none.qmp"))
    check(rc == 1 and "no agent at" in out, "no agent: %s" % out)


# ------------------------------------------------------------ security

def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def scenario_security():
    # created 0600 under umask 000, device sockets and directory private
    a = agent("a", "-", "--device", "testdev", umask=0)
    check(mode(a.qmp) == 0o600, "QMP socket mode %o under umask 000" %
          mode(a.qmp))
    devdirs = [d for d in os.listdir(lab.TMP) if d.startswith("vmig-dev-%d-" %
                                                          a.pid)]
    check(len(devdirs) == 1, "device directory: %r" % os.listdir(lab.TMP))
    dd = os.path.join(lab.TMP, devdirs[0])
    check(mode(dd) == 0o700, "vmig-dev dir mode %o" % mode(dd))
    socks = os.listdir(dd)
    check(socks and all(mode(os.path.join(dd, s)) == 0o600 for s in socks),
          "device sockets %r" % [(s, oct(mode(os.path.join(dd, s))))
                                 for s in socks])

    # a second agent on a live socket refuses, naming the pid
    r = subprocess.run([lab.VMIG, "run", "--qmp", a.qmp] + VM,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TMPDIR=lab.TMP))
    check(r.returncode == 1 and "in use by pid %d" % a.pid in r.stderr,
          "second agent on a live socket: %d %s" % (r.returncode, r.stderr))
    check(connect(a.qmp).cmd("query-status")["running"], "first agent hurt")

    # the agent killed: its socket is stale and is replaced; its device
    # directory goes at once (its reaper notices the death), and one left
    # by an agent that died without a reaper is removed by the next agent
    # that starts
    a.send_signal(signal.SIGKILL)
    a.wait()
    check(os.path.exists(a.qmp), "socket gone after SIGKILL?")
    wait_until("the killed agent's device directory removed",
               lambda: not os.path.exists(dd))
    fake_dead = os.path.join(lab.TMP, "vmig-dev-999999999-abcdef")
    os.mkdir(fake_dead, 0o700)
    open(os.path.join(fake_dead, "vfu0.sock"), "w").close()
    c = agent("c", "-", "--device", "testdev")
    wait_until("the stale device directory removed",
               lambda: not os.path.exists(fake_dead))
    c2 = subprocess.Popen([lab.VMIG, "run", "--qmp", a.qmp] + VM,
                          stderr=open(os.path.join(lab.TMP, "c2.log"), "w"),
                          env=dict(os.environ, TMPDIR=lab.TMP))
    PROCS.append(c2)
    wait_socket(a.qmp, c2)
    check(connect(a.qmp).cmd("query-status")["running"], "replaced socket")
    with open(os.path.join(lab.TMP, "c2.log")) as f:
        check("stale socket" in f.read(), "stale replacement not logged")

    # a live agent's directory is never taken, whatever its process is
    # called (`vmig demo` starts agents through /proc/self/exe: "exe")
    alias = os.path.join(lab.TMP, "exe")
    os.symlink(lab.VMIG, alias)
    live = subprocess.Popen([alias, "run", "--qmp",
                             os.path.join(lab.TMP, "live.qmp"), "--device",
                             "testdev"] + VM,
                            stderr=open(os.path.join(lab.TMP, "live.log"), "w"),
                            env=dict(os.environ, TMPDIR=lab.TMP))
    PROCS.append(live)
    wait_socket(os.path.join(lab.TMP, "live.qmp"), live)
    livedir = [d for d in os.listdir(lab.TMP)
               if d.startswith("vmig-dev-%d-" % live.pid)]
    check(len(livedir) == 1, "the live agent's device directory")
    other = agent("other", "-", "--device", "testdev")
    check(os.path.isdir(os.path.join(lab.TMP, livedir[0])),
          "a starting agent removed a live agent's device directory")
    devs = connect(os.path.join(lab.TMP, "live.qmp")).cmd("x-vmig-query-devices")
    check(devs[0]["state"] == "RUNNING", "the live agent's device: %r" % devs)
    other.terminate()
    other.wait()

    # something that is not a socket, unsafe directories: refused
    notsock = os.path.join(lab.TMP, "file.qmp")
    open(notsock, "w").close()
    r = subprocess.run([lab.VMIG, "run", "--qmp", notsock] + VM,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "not a socket" in r.stderr,
          "a file at the path: %s" % r.stderr)
    open_dir = os.path.join(lab.TMP, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    r = subprocess.run([lab.VMIG, "run", "--qmp",
                        os.path.join(open_dir, "q")] + VM,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "writable by other users" in r.stderr,
          "world-writable dir: %s" % r.stderr)
    os.chmod(open_dir, 0o1777)  # sticky, like /tmp: fine
    sticky = agent("sticky", "-")
    sticky.terminate()
    sticky.wait()

    # other users: refused by SO_PEERCRED even if the socket is opened up
    if os.geteuid() == 0:
        nobody = 65534
        os.chmod(lab.TMP, 0o711)
        os.chmod(c.qmp, 0o666)
        rc, out = cli("status", "--qmp", c.qmp, user=nobody)
        check(rc == 1 and "permission denied" in out and
              "uid %d" % nobody in out, "another uid: %d %s" % (rc, out))
        with open(c.logname) as f:
            check("refused a client" in f.read() and
                  "uid %d" % nobody in open(c.logname).read(),
                  "refusal not logged")
        os.chmod(c.qmp, 0o600)
        rc, out = cli("status", "--qmp", c.qmp, user=nobody)
        check(rc == 1 and "permission denied" in out, "0600 socket, other "
              "uid: %s" % out)
        os.chmod(lab.TMP, 0o700)
        # and root may
        rc, out = cli("status", "--qmp", c.qmp)
        check(rc == 0, "root refused: %s" % out)
    else:
        print("not root: the other-uid checks were skipped")
