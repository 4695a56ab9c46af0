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
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp_lab as lab  # noqa: E402
from qmp_lab import (PROCS, agent, check, cli, expect_error,  # noqa: E402
                     fail, free_port, params, statuses, wait_until)
from qmp_conn_scenarios import (scenario_limits, scenario_oob,  # noqa: E402,F401
                                scenario_security)
from qmpclient import QMP, QMPClosed, QMPError, connect  # noqa: E402


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
    caps = q.cmd("query-migrate-capabilities")
    expect_error(q, "migrate-set-capabilities", {"capabilities": [
        {"capability": "x-vmig-test-one-phase-stop", "state": True}]},
        "GenericError", "There's a migration process in progress")
    check(q.cmd("query-migrate-capabilities") == caps,
          "a refused migrate-set-capabilities changed the capabilities")
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


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    lab.VMIG = os.path.abspath(sys.argv[1])
    name = sys.argv[2]
    fn = globals().get("scenario_" + name)
    if fn is None:
        sys.stderr.write("unknown scenario %s\n" % name)
        return 2
    lab.TMP = tempfile.mkdtemp(prefix="vmig-qmp-")
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
            print("kept", lab.TMP)
        else:
            shutil.rmtree(lab.TMP, ignore_errors=True)
    print("ok: %s, %d checks" % (name, lab.CHECKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
