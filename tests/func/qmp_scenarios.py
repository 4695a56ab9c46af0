#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The vmig agent driven from outside by an independent QMP client
(qmpclient.py, written from QEMU's qmp-spec): what a management tool
such as libvirt depends on.

usage: qmp_scenarios.py VMIG_BINARY SCENARIO

  migrate   a full migration: pipelined commands without newlines, the
            status set before `migrate` replies (asked in the same write),
            the MIGRATION event sequence and query-migrate members as
            QEMU's, events interleaved with replies, a reconnect mid-way
  refuse    every refusing path changes nothing (all or nothing)
  oob       "oob" offered and negotiated; exec-oob overtakes a busy
            in-band queue; migrate_cancel out of band; vmig cancel
  limits    a 10 MB line: one error then close; 16 idle clients do not
            lock out vmig status / vmig cancel; the CLI names reasons
  security  socket 0600 under umask 000; live socket refused with the
            pid; stale socket replaced; unsafe directories refused;
            other uids refused (SO_PEERCRED); device sockets private;
            stale vmig-dev-* directories of dead agents removed

Waits are on conditions (events, states) with generous deadlines.
"""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpclient import QMP, QMPClosed, QMPError, connect, wait_socket  # noqa

VMIG = None
TMP = None
PROCS = []
CHECKS = 0

VM = ["--ram", "16M", "--dev-state", "256K"]


def log_tail():
    for name in sorted(os.listdir(TMP)):
        if name.endswith(".log"):
            with open(os.path.join(TMP, name), errors="replace") as f:
                lines = f.readlines()[-15:]
            sys.stderr.write("--- %s\n%s" % (name, "".join(lines)))


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    log_tail()
    raise SystemExit(1)


def check(cond, msg):
    global CHECKS
    CHECKS += 1
    if not cond:
        fail(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def agent(name, mode, *extra, env=None, umask=None, wait=True):
    """Start `vmig run` (mode "-") or `vmig receive` on port @mode (None:
    without --listen)."""
    qmp = os.path.join(TMP, name + ".qmp")
    args = [VMIG, "run" if mode == "-" else "receive", "--qmp", qmp] + VM
    if mode not in ("-", None):
        args += ["--listen", "127.0.0.1:%d" % mode]
    args += list(extra)
    e = dict(os.environ, TMPDIR=TMP)
    if env:
        e.update(env)

    def pre():
        if umask is not None:
            os.umask(umask)

    logf = open(os.path.join(TMP, name + ".log"), "w")
    p = subprocess.Popen(args, stderr=logf, stdout=subprocess.DEVNULL,
                         env=e, preexec_fn=pre)
    p.qmp = qmp
    p.logname = os.path.join(TMP, name + ".log")
    PROCS.append(p)
    if wait:
        wait_socket(qmp, p)
    return p


def cli(*args, user=None, timeout=120):
    def pre():
        if user is not None:
            os.setgid(user)
            os.setuid(user)
    r = subprocess.run([VMIG] + list(args), capture_output=True, text=True,
                       timeout=timeout, preexec_fn=pre,
                       env=dict(os.environ, TMPDIR=TMP))
    return r.returncode, r.stdout + r.stderr


def wait_until(what, fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def statuses(q):
    return [e["data"]["status"] for e in q.events if e["event"] == "MIGRATION"]


def params(q):
    return q.cmd("query-migrate-parameters")


# ------------------------------------------------------------ migrate

def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_info_active(info):
    for k in ("setup-time", "total-time", "expected-downtime"):
        check(is_int(info.get(k)), "query-migrate (active) lacks int %s: %r"
              % (k, info))
    check("downtime" not in info, "downtime while active: %r" % info)
    ram = info.get("ram", {})
    for k in ("transferred", "remaining", "total", "duplicate", "normal",
              "normal-bytes", "dirty-sync-count", "page-size"):
        check(is_int(ram.get(k)), "ram.%s missing or not an integer: %r"
              % (k, ram))
    check(isinstance(ram.get("mbps"), (int, float)), "ram.mbps: %r" % ram)
    check(ram["page-size"] == 4096, "page-size %r" % ram["page-size"])
    check(is_int(info.get("vfio", {}).get("transferred")), "vfio: %r" % info)


def scenario_migrate():
    p1, p2 = free_port(), free_port()
    dst = agent("dst", p1)
    src = agent("src", "-")
    dq = connect(dst.qmp)
    check(dq.cmd("query-status")["status"] == "inmigrate", "dst not inmigrate")
    check(statuses(dq) == [], "events before anything happened")

    q = QMP(src.qmp)
    check(q.greeting["QMP"]["capabilities"] == ["oob"],
          "greeting capabilities %r" % q.greeting)
    for k in ("major", "minor", "micro"):
        check(is_int(q.greeting["QMP"]["version"]["qemu"][k]),
              "greeting version %r" % q.greeting)
    # negotiation and a first batch, pipelined in one write, no newlines
    q.send_raw('{"execute":"qmp_capabilities","id":"n"}'
               '{"execute":"query-migrate","id":"q0"}'
               '{"execute": "query-status", "id": {"a": [1]}}')
    check(q.result(q.reply("n")) == {}, "qmp_capabilities")
    check(q.result(q.reply("q0")) == {}, "query-migrate before any: {}")
    st = q.result(q.reply({"a": [1]}))
    check(st == {"status": "running", "singlestep": False, "running": True},
          "query-status %r" % st)

    # parameters, migrate and query-migrate in the same write: the status
    # is set before migrate replies (libvirt needs it), and QEMU's
    # MIGRATION "setup" event comes before the reply
    uri = "tcp:127.0.0.1:%d" % p1
    q.send_raw(json.dumps({"execute": "migrate-set-parameters",
                           "arguments": {"max-bandwidth": 8 << 20,
                                         "downtime-limit": 400},
                           "id": 1}) +
               json.dumps({"execute": "migrate", "arguments": {"uri": uri},
                           "id": 2}) +
               json.dumps({"execute": "query-migrate", "id": 3}))
    check(q.result(q.reply(1)) == {}, "migrate-set-parameters")
    n_before = len(q.raw)
    check(q.result(q.reply(2)) == {}, "migrate")
    info = q.result(q.reply(3))
    check(info.get("status") in ("setup", "active"),
          "query-migrate right after migrate: %r" % info)
    idx_reply = next(i for i, m in enumerate(q.raw) if m.get("id") == 2)
    setup_ev = [i for i, m in enumerate(q.raw)
                if m.get("event") == "MIGRATION" and
                m["data"]["status"] == "setup"]
    check(setup_ev and setup_ev[0] < idx_reply and setup_ev[0] >= n_before - 1,
          "MIGRATION setup should come before migrate's reply: %r" %
          q.raw[n_before - 1:idx_reply + 1])

    # events interleave with replies: poll while it runs
    q.wait_event("MIGRATION", lambda d: d["status"] == "active")
    seen_active = False
    for _ in range(2000):
        info = q.cmd("query-migrate")
        if info["status"] == "active":
            check_info_active(info)
            seen_active = True
        if info["status"] != "active":
            break
        time.sleep(0.02)
        if seen_active:
            break
    check(seen_active, "never saw query-migrate active")

    # reconnect mid-way: a new connection sees the migration and its events
    q.close()
    q = connect(src.qmp)
    info = q.cmd("query-migrate")
    check(info["status"] in ("active", "completed"),
          "after reconnect: %r" % info)
    q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    if info["status"] == "active":
        q.wait_event("MIGRATION", lambda d: d["status"] == "completed",
                     timeout=120)
    info = q.cmd("query-migrate")
    check(info["status"] == "completed", "not completed: %r" % info)
    for k in ("setup-time", "total-time", "downtime"):
        check(is_int(info.get(k)), "completed lacks %s: %r" % (k, info))
    check("expected-downtime" not in info, "expected-downtime after the end")
    check(info["ram"]["remaining"] == 0, "remaining after completion")
    check(info["ram"]["total"] == 16 << 20, "ram.total %r" % info["ram"])
    check(info["total-time"] >= info["downtime"] >= 0, "times %r" % info)
    check(q.cmd("query-status")["status"] == "postmigrate", "source state")

    # the source's whole event sequence on the first connection was
    # setup, active; this one saw the rest: STOP then completed, no
    # "device" (QEMU shows that only with pause-before-switchover)
    names = [e["event"] for e in q.events]
    check("STOP" in names, "no STOP event: %r" % names)
    check(statuses(q)[-1:] == ["completed"], "statuses %r" % statuses(q))
    check("device" not in statuses(q), "a 'device' status: %r" % statuses(q))
    check(names.index("STOP") < len(names) - 1 - names[::-1].index(
        "MIGRATION"), "STOP after completed: %r" % names)

    # the destination: setup (listening), then setup/active/completed,
    # then RESUME; running and verified
    dq.wait_event("MIGRATION", lambda d: d["status"] == "completed",
                  timeout=60)
    dq.wait_event("RESUME", timeout=60)
    ds = statuses(dq)
    check(ds[-2:] == ["active", "completed"], "destination statuses %r" % ds)
    check(dq.cmd("query-status")["status"] == "running", "dst not running")
    g = wait_until("the destination's guest check",
                   lambda: (lambda r: r if not r.get("busy") else None)(
                       dq.cmd("x-vmig-query-guest")))
    check(g["verified"], "guest does not verify on the destination: %r" % g)

    # a refused migrate after completion changes nothing
    try:
        q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % p2,
                          "x-vmig-parameters": {"downtime-limit": 5}})
        fail("migrate after the VM left was accepted")
    except QMPError as e:
        check(e.cls == "GenericError", "class %s" % e.cls)
    check(params(q)["downtime-limit"] == 400, "refused migrate changed it")
    check(q.cmd("query-migrate")["status"] == "completed", "status changed")
    q.close()
    # the source exits by itself once nobody is connected
    try:
        src.wait(60)
    except subprocess.TimeoutExpired:
        fail("the source did not exit after migrating away")
    check(src.returncode == 0, "source exit %d" % src.returncode)
    rc, out = cli("cancel", "--qmp", src.qmp)
    check(rc == 1 and "nothing to cancel" in out,
          "vmig cancel after completion: %d %s" % (rc, out))
    dq.close()


# ------------------------------------------------------------ refuse

def expect_error(q, cmd, args, cls, desc_part, oob=False):
    try:
        r = q.cmd(cmd, args, oob=oob)
    except QMPError as e:
        check(e.cls == cls, "%s %r: class %s, expected %s (%s)" %
              (cmd, args, e.cls, cls, e.desc))
        check(desc_part in e.desc, "%s %r: %r lacks %r" %
              (cmd, args, e.desc, desc_part))
        return
    fail("%s %r was accepted: %r" % (cmd, args, r))


def scenario_refuse():
    p1 = free_port()
    dst = agent("dst", p1)
    src = agent("src", "-")
    q = connect(src.qmp)
    dq = connect(dst.qmp)
    before = params(q)
    mig0 = q.cmd("query-migrate")

    # arguments: unknown, missing, mistyped, out of range, bad values;
    # commands without arguments take none
    for cmd, args, desc in [
        ("query-status", {"bogus": 1}, "Parameter 'bogus' is unexpected"),
        ("query-migrate", {"x": None}, "Parameter 'x' is unexpected"),
        ("migrate_cancel", {"now": True}, "Parameter 'now' is unexpected"),
        ("quit", {"force": True}, "Parameter 'force' is unexpected"),
        ("migrate", {}, "Parameter 'uri' is missing"),
        ("migrate", {"uri": 5}, "Invalid parameter type for 'uri', "
         "expected: string"),
        ("migrate", {"uri": "tcp:127.0.0.1:1", "blk": True},
         "Parameter 'blk' is unexpected"),
        ("migrate", {"uri": "exec:cat"}, "unknown migration protocol"),
        ("migrate", {"uri": "tcp:127.0.0.1:%d" % p1, "resume": True},
         "Cannot resume if there is no paused migration"),
        ("migrate", {"uri": "tcp:127.0.0.1:%d" % p1,
                     "x-vmig-parameters": {"downtime-limit": 9,
                                           "max-bandwidth": "fast"}},
         "Invalid parameter type for 'x-vmig-parameters.max-bandwidth'"),
        ("migrate-set-parameters", {"downtime-limit": 9,
                                    "x-vmig-precopy-cap-action": "later"},
         "does not accept value 'later'"),
        ("migrate-set-parameters", {"max-bandwidth": 1, "downtime-limit":
                                    2000001}, "downtime_limit"),
        ("migrate-set-parameters", {"downtime-limit": 1, "nope": 1},
         "Parameter 'nope' is unexpected"),
        ("migrate-set-parameters", {"x-vmig-precopy": "yes"},
         "expected: boolean"),
        ("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True},
            {"capability": "postcopy-ram", "state": True}]},
         "'capabilities[1].capability' does not accept value"),
        ("migrate-set-capabilities", {"capabilities": [{"capability":
                                                        "events"}]},
         "Parameter 'capabilities[0].state' is missing"),
        ("migrate-incoming", {"uri": "tcp:127.0.0.1:0"},
         "'-incoming' was not specified"),
        ("x-vmig-check-compat", {"uri": "udp:x"}, "unknown migration"),
    ]:
        expect_error(q, cmd, args, "GenericError", desc)
    expect_error(q, "x-vmig-device-reset", {"device": "nope"},
                 "DeviceNotFound", "no vfio-user device named 'nope'")
    expect_error(q, "no-such", None, "CommandNotFound",
                 "The command no-such has not been found")
    expect_error(q, "qmp_capabilities", None, "CommandNotFound",
                 "Capabilities negotiation is already complete")
    check(params(q) == before, "a refused command changed the parameters")
    check(q.cmd("query-migrate") == mig0, "a refused command changed "
          "query-migrate")
    check(statuses(q) == [], "a refused command raised MIGRATION events: %r"
          % statuses(q))
    # migrate_cancel with nothing running: {} and no event (QEMU)
    check(q.cmd("migrate_cancel") == {}, "idle migrate_cancel")
    q.drain(0.3)
    check(statuses(q) == [], "idle migrate_cancel raised %r" % statuses(q))

    # request-level errors (QEMU's qmp_dispatch_check_obj)
    for raw, desc in [
        ('[1]', "QMP input must be a JSON object"),
        ('{"arguments": {}, "id": 7}', "QMP input lacks member 'execute'"),
        ('{"execute": 7, "id": 7}', "QMP input member 'execute' must be a "
         "string"),
        ('{"execute": "query-status", "arguments": [], "id": 7}',
         "QMP input member 'arguments' must be an object"),
        ('{"execute": "query-status", "bogus": 1, "id": 7}',
         "QMP input member 'bogus' is unexpected"),
        ('{"exec-oob": "migrate_cancel", "id": 7}',
         "QMP input member 'exec-oob' is unexpected"),
    ]:
        q.send_raw(raw + "\n")
        r = q.reply(7) if '"id": 7' in raw else q.recv()
        check("error" in r and desc in r["error"]["desc"],
              "%s -> %r" % (raw, r))

    # negotiation: a bad capability leaves the client in negotiation mode
    n = QMP(src.qmp)
    expect_error(n, "qmp_capabilities", {"enable": ["bogus"]},
                 "GenericError", "does not accept value 'bogus'")
    expect_error(n, "query-status", None, "CommandNotFound",
                 "Expecting capabilities negotiation")
    n.negotiate()
    check(n.cmd("query-status")["running"], "after negotiation")
    n.close()

    # the destination refuses to migrate out, and a second listen
    expect_error(dq, "migrate", {"uri": "tcp:127.0.0.1:1"}, "GenericError",
                 "Guest is waiting for an incoming migration")
    expect_error(dq, "migrate-incoming", {"uri": "tcp:127.0.0.1:0"},
                 "GenericError", "already been started")

    # migrate-incoming on a destination started without --listen: bad
    # addresses are refused and leave it waiting; a good one then works
    lone = agent("lone", None)
    lq = connect(lone.qmp)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    for args, desc in [
        ({"uri": "exec:cat"}, "unknown migration protocol"),
        ({"uri": "tcp:127.0.0.1"}, "cannot listen on tcp:127.0.0.1"),
        ({"uri": "tcp:127.0.0.1:%d" % taken.getsockname()[1]},
         "cannot listen"),
    ]:
        expect_error(lq, "migrate-incoming", args, "GenericError", desc)
    taken.close()
    check(lq.cmd("query-migrate") == {}, "a refused migrate-incoming "
          "changed query-migrate")
    check(lq.cmd("query-status")["status"] == "inmigrate", "not waiting")
    p3 = free_port()
    check(lq.cmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % p3}) == {},
          "migrate-incoming")
    lq.wait_event("MIGRATION", lambda d: d["status"] == "setup")
    expect_error(lq, "migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % p3},
                 "GenericError", "already been started")
    lq.close()

    # a second migrate while one runs: refused, nothing changes
    q.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % p1,
                      "x-vmig-parameters": {"max-bandwidth": 2 << 20}})
    q.wait_event("MIGRATION", lambda d: d["status"] == "active")
    mid = params(q)
    check(mid["max-bandwidth"] == 2 << 20, "x-vmig-parameters not applied")
    expect_error(q, "migrate", {"uri": "tcp:127.0.0.1:%d" % p1,
                                "x-vmig-parameters": {"max-bandwidth": 1,
                                                      "downtime-limit": 7}},
                 "GenericError", "There's a migration process in progress")
    expect_error(q, "x-vmig-check-compat", {"uri": "tcp:127.0.0.1:%d" % p1},
                 "GenericError", "")
    check(params(q) == mid, "a refused migrate changed the parameters")
    check(q.cmd("query-migrate")["status"] == "active", "not active")
    # a live change is fine (QEMU allows it), and finishes it
    q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    q.wait_event("MIGRATION", lambda d: d["status"] == "completed",
                 timeout=120)
    check(statuses(q) == ["setup", "active", "completed"],
          "statuses %r" % statuses(q))
    q.close()

    # quit: the reply, then one SHUTDOWN, then the agent exits (QEMU's order)
    rid = dq.request("quit")
    got = []
    try:
        while True:
            got.append(dq.recv(30))
    except QMPClosed:
        pass
    idx = [i for i, m in enumerate(got) if m.get("id") == rid]
    downs = [i for i, m in enumerate(got) if m.get("event") == "SHUTDOWN"]
    check(len(idx) == 1 and got[idx[0]].get("return") == {}, "quit: %r" % got)
    check(len(downs) == 1 and downs[0] > idx[0] and
          got[downs[0]]["data"] == {"guest": False, "reason": "host-qmp-quit"},
          "SHUTDOWN after quit: %r" % got)
    try:
        dst.wait(60)
    except subprocess.TimeoutExpired:
        fail("the agent did not exit after quit")
    check(dst.returncode == 0, "exit status after quit: %d" % dst.returncode)
    dq.close()


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

def scenario_limits():
    src = agent("src", "-")
    # a 10 MB line: exactly one error, then the connection is closed
    q = connect(src.qmp)
    try:
        q.send_raw(b"a" * (10 << 20) + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = []
    try:
        while True:
            got.append(q.recv(30))
    except QMPClosed:
        pass
    except (ConnectionResetError, TimeoutError) as e:
        fail("no clean close after the 10 MB line: %r" % e)
    errs = [m for m in got if "error" in m]
    check(len(errs) == 1, "expected one error for a 10 MB line, got %d: %r"
          % (len(errs), got[:3]))
    check("1048576" in errs[0]["error"]["desc"], "the error: %r" % errs[0])
    q.close()
    # a 10 MB request inside valid JSON: one error, closed
    q = connect(src.qmp)
    try:
        q.send_raw('{"execute": "query-status", "arguments": {"x": "' +
                   "y" * (10 << 20) + '"}}')
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = []
    try:
        while True:
            got.append(q.recv(30))
    except QMPClosed:
        pass
    except ConnectionResetError:
        pass
    check(len([m for m in got if "error" in m]) == 1, "big request: %r" %
          got[:3])
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
    lazy = QMP(src.qmp)
    got = []
    try:
        while True:
            got.append(lazy.recv(60))
    except QMPClosed:
        pass
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
    fake = os.path.join(TMP, "fake.qmp")
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
    rc, out = cli("status", "--qmp", os.path.join(TMP, "none.qmp"))
    check(rc == 1 and "no agent at" in out, "no agent: %s" % out)


# ------------------------------------------------------------ security

def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def scenario_security():
    # created 0600 under umask 000, device sockets and directory private
    a = agent("a", "-", "--device", "testdev", umask=0)
    check(mode(a.qmp) == 0o600, "QMP socket mode %o under umask 000" %
          mode(a.qmp))
    devdirs = [d for d in os.listdir(TMP) if d.startswith("vmig-dev-%d-" %
                                                          a.pid)]
    check(len(devdirs) == 1, "device directory: %r" % os.listdir(TMP))
    dd = os.path.join(TMP, devdirs[0])
    check(mode(dd) == 0o700, "vmig-dev dir mode %o" % mode(dd))
    socks = os.listdir(dd)
    check(socks and all(mode(os.path.join(dd, s)) == 0o600 for s in socks),
          "device sockets %r" % [(s, oct(mode(os.path.join(dd, s))))
                                 for s in socks])

    # a second agent on a live socket refuses, naming the pid
    r = subprocess.run([VMIG, "run", "--qmp", a.qmp] + VM,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TMPDIR=TMP))
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
    fake_dead = os.path.join(TMP, "vmig-dev-999999999-abcdef")
    os.mkdir(fake_dead, 0o700)
    open(os.path.join(fake_dead, "vfu0.sock"), "w").close()
    c = agent("c", "-", "--device", "testdev")
    wait_until("the stale device directory removed",
               lambda: not os.path.exists(fake_dead))
    c2 = subprocess.Popen([VMIG, "run", "--qmp", a.qmp] + VM,
                          stderr=open(os.path.join(TMP, "c2.log"), "w"),
                          env=dict(os.environ, TMPDIR=TMP))
    PROCS.append(c2)
    wait_socket(a.qmp, c2)
    check(connect(a.qmp).cmd("query-status")["running"], "replaced socket")
    with open(os.path.join(TMP, "c2.log")) as f:
        check("stale socket" in f.read(), "stale replacement not logged")

    # a live agent's directory is never taken, whatever its process is
    # called (`vmig demo` starts agents through /proc/self/exe: "exe")
    alias = os.path.join(TMP, "exe")
    os.symlink(VMIG, alias)
    live = subprocess.Popen([alias, "run", "--qmp",
                             os.path.join(TMP, "live.qmp"), "--device",
                             "testdev"] + VM,
                            stderr=open(os.path.join(TMP, "live.log"), "w"),
                            env=dict(os.environ, TMPDIR=TMP))
    PROCS.append(live)
    wait_socket(os.path.join(TMP, "live.qmp"), live)
    livedir = [d for d in os.listdir(TMP)
               if d.startswith("vmig-dev-%d-" % live.pid)]
    check(len(livedir) == 1, "the live agent's device directory")
    other = agent("other", "-", "--device", "testdev")
    check(os.path.isdir(os.path.join(TMP, livedir[0])),
          "a starting agent removed a live agent's device directory")
    devs = connect(os.path.join(TMP, "live.qmp")).cmd("x-vmig-query-devices")
    check(devs[0]["state"] == "RUNNING", "the live agent's device: %r" % devs)
    other.terminate()
    other.wait()

    # something that is not a socket, unsafe directories: refused
    notsock = os.path.join(TMP, "file.qmp")
    open(notsock, "w").close()
    r = subprocess.run([VMIG, "run", "--qmp", notsock] + VM,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "not a socket" in r.stderr,
          "a file at the path: %s" % r.stderr)
    open_dir = os.path.join(TMP, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    r = subprocess.run([VMIG, "run", "--qmp",
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
        os.chmod(TMP, 0o711)
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
        os.chmod(TMP, 0o700)
        # and root may
        rc, out = cli("status", "--qmp", c.qmp)
        check(rc == 0, "root refused: %s" % out)
    else:
        print("not root: the other-uid checks were skipped")


def main():
    global VMIG, TMP
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    VMIG = os.path.abspath(sys.argv[1])
    name = sys.argv[2]
    fn = globals().get("scenario_" + name)
    if fn is None:
        sys.stderr.write("unknown scenario %s\n" % name)
        return 2
    TMP = tempfile.mkdtemp(prefix="vmig-qmp-")
    try:
        fn()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.terminate()
        for p in PROCS:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if os.environ.get("KEEP"):
            print("kept", TMP)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print("ok: %s, %d checks" % (name, CHECKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
