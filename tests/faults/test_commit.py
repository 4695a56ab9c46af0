#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The commit protocol between real agents (docs/migration-protocol.md
section 6, docs/faults.md): the destination resumes only on the source's
GO, and a source that sent GO never resumes on its own.  Each case breaks
the connection through vmig-faultproxy at one step of the commit and
checks that exactly one VM runs (or, when nobody can know, none until the
operator says so) and that the guest verifies there:

  go-lost      GO cut on its way: the destination holds the loaded VM, the
               source asks again (RECOVER), learns "waiting for GO", sends
               GO again: completed, the VM on the destination
  unknown      CONFIRM lost and the destination killed: the source cannot
               learn the outcome and stays paused (postmigrate-unknown);
               `vmig recover` asks again and still cannot; `vmig recover
               --destination-gone` resumes it on the source
  src-gone     the source killed after the destination's READY: the
               destination holds the VM paused, refuses another source
               meanwhile ("busy"), discards it when its recovery window
               ends (never having run it), then takes a new migration
  cancel-wish  a cancel after GO is too late, but GO never arrived: when
               the source asks again and learns the destination still
               waits for GO it tells it to discard, and resumes itself

usage: test_commit.py VMIG PROXY [CASE...]
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG = sys.argv[1]
PROXY = sys.argv[2]
check = Checks()
VM = ["--ram", "32M", "--device", "acc", "--rate", "50000"]
# Every fault here is a cut or a kill, which the other side sees at once:
# the peer timeout only bounds a hang.  At 3 s it failed whole migrations
# on a loaded machine ("the source was silent for 3000 ms").
PEER_MS = 30000
# how long a source asks again, and a destination holds a loaded VM, when
# the test waits for that to end (unknown, src-gone: the hold's end)
RECOVER_MS = 4000
# a hold the test needs a source (or another one) to reach in time on a
# loaded machine; the pass path does not wait for its end
HOLD_MS = 20000
FINAL = ("completed", "failed", "cancelled", "postmigrate-unknown")


def cli(*args):
    r = subprocess.run([VMIG] + list(args), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def acc_done(a):
    g = a.guest()
    return (g.get("accelerator") or {}).get("completed", 0) if not g.get("busy") else 0


def setup(lab, src_requests=200000, recover_ms=RECOVER_MS):
    dst = lab.agent("dst", "receive", VM, free_port())
    src = lab.agent("src", "run", VM + ["--acc-requests", str(src_requests)])
    px = lab.proxy_to("proxy", dst.port)
    for a in (src, dst):
        a.cmd("migrate-set-parameters", {"x-vmig-peer-timeout": PEER_MS,
                                         "x-vmig-recover-timeout": recover_ms})
    wait_for(lambda: acc_done(src) > 0, what="the source's workload to start")
    return src, dst, px


def runs_and_verifies(a, what):
    """a runs the VM, its guest verifies and makes progress."""
    wait_for(lambda: a.status() == "running", what="%s to run the VM" % what)
    wait_for(lambda: not a.guest().get("busy"), what="%s to settle" % what)
    g = a.guest()
    acc = g.get("accelerator") or {}
    check(g.get("verified"), "%s: the guest verifies: %s" % (what, g.get("error")))
    check(acc.get("verified") and not acc.get("bad") and not acc.get("duplicates"),
          "%s: the accelerator workload verifies: %s" % (what, acc))
    s0, c0 = g.get("steps", 0), acc.get("completed", 0)

    def moved():
        g = a.guest()
        ac = g.get("accelerator") or {}
        # a ledger program that filled its ledger cannot step any more
        # (a VM up for long on a loaded machine): its accelerator must move
        return (g.get("steps", 0) > s0 or g.get("program-finished")) and \
            (ac.get("completed", 0) > c0 or ac.get("finished"))
    wait_for(moved, what="%s: the guest to make progress" % what)


def seen(a, name, pred, since):
    """Whether agent a sent event name since then (taking in what its QMP
    socket holds first: events are stamped as they are read)."""
    a.q.poll(0.2)
    return a.q.find_event(name, pred, since) is not None


def end_of(a, since):
    _, ev = a.q.wait_event("MIGRATION", lambda d: d.get("status") in FINAL, since=since)
    return ev["data"]["status"]


def case_go_lost(lab):
    src, dst, px = setup(lab, recover_ms=HOLD_MS)
    px.arm("fwd frame=GO cut")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    st = end_of(src, t)
    check(st == "completed", "the source completed after asking again: %s %s"
          % (st, src.migrate_info().get("error-desc")))
    check(src.q.find_event("MIGRATION", lambda d: d.get("status") == "recovering", since=t),
          "the source went through 'recovering'")
    check(seen(dst, "MIGRATION", lambda d: d.get("status") == "recovering", t),
          "the destination held the VM ('recovering') before GO came again")
    check(src.status() != "running", "the source does not run the VM")
    runs_and_verifies(dst, "destination")


def case_unknown(lab):
    src, dst, px = setup(lab)
    rid = px.arm("back frame=CONFIRM hold")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    check(px.wait(rid) is not None, "CONFIRM reached the proxy")
    # the destination runs the VM (it got GO), then dies; its CONFIRM,
    # held by the proxy, is dropped with the connection
    dst.signal(signal.SIGKILL)
    dst.proc.wait()
    px.command("arm both now cut")
    st = end_of(src, t)
    info = src.migrate_info()
    check(st == "postmigrate-unknown", "the outcome is unknown to the source: %s" % st)
    check(grep(r"vmig recover", info.get("error-desc", "")),
          "query-migrate tells the operator what to do: %s" % info.get("error-desc"))
    check(src.status() != "running", "the source did not resume on its own")
    rc, out = cli("migrate", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % px.port)
    check(rc != 0 and grep(r"unknown|recover", out), "a new migrate is refused: %s" % out)
    rc, out = cli("recover", "--qmp", src.qmp_path)
    check(rc != 0 and grep(r"postmigrate-unknown|unknown", out),
          "vmig recover cannot learn it either: rc %d %s" % (rc, out))
    check(src.status() != "running", "still paused after vmig recover")
    rc, out = cli("recover", "--qmp", src.qmp_path, "--destination-gone")
    check(rc == 0, "vmig recover --destination-gone: rc %d %s" % (rc, out))
    runs_and_verifies(src, "source")


def case_src_gone(lab):
    # the other source must try the destination while it holds the VM:
    # that agent is up before the hold begins, and the hold (HOLD_MS)
    # outlasts a `vmig migrate` started on a loaded machine
    src, dst, px = setup(lab, recover_ms=HOLD_MS)
    other = lab.agent("other", "run", VM + ["--acc-requests", "200000"])
    rid = px.arm("back frame=READY hold")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    check(px.wait(rid) is not None, "READY reached the proxy")
    src.signal(signal.SIGKILL)
    src.proc.wait()
    px.release()
    dst.q.wait_event("MIGRATION", lambda d: d.get("status") == "recovering", since=t)
    # meanwhile another source is turned away at once
    rc, out = cli("migrate", "--qmp", other.qmp_path, "--to", "127.0.0.1:%d" % dst.port)
    check(rc != 0 and grep(r"busy", out), "another source is refused as busy: %s" % out)
    st = end_of(dst, t)
    info = dst.migrate_info()
    check(st == "failed", "the destination discarded the VM: %s" % st)
    check(grep(r"source gone", info.get("error-desc", "")),
          "its reason names the cause: %s" % info.get("error-desc"))
    check(not seen(dst, "RESUME", None, t), "the destination never resumed the VM")
    check(dst.status() == "inmigrate", "the destination waits for a migration again")
    # the refused attempt's events have all come in before the next one
    other.q.wait_event("MIGRATION", lambda d: d.get("status") == "failed", since=t)
    t2 = now()
    other.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
    check(end_of(other, t2) == "completed", "a new source then migrates in: %s"
          % other.migrate_info().get("error-desc"))
    runs_and_verifies(dst, "destination")


def source_log(a):
    with open(a.log_path) as f:
        return f.read()


def case_cancel_wish(lab):
    # the cancel must reach the source while it still waits for the answer
    # to GO (a `vmig cancel` started on a loaded machine took more than
    # the 3 s peer timeout this test had: "nothing to cancel ... the last
    # one: recovering"), so the connection is cut only once the source
    # took the wish; then the source must reach the destination within
    # its hold
    src, dst, px = setup(lab, recover_ms=HOLD_MS)
    rid = px.arm("fwd frame=GO hold")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    check(px.wait(rid) is not None, "GO reached the proxy")
    cancel = subprocess.Popen([VMIG, "cancel", "--qmp", src.qmp_path],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: cancel.poll() is not None or
             grep(r"migrate_cancel: too late to cancel", source_log(src)),
             what="the source to take the cancel after GO")
    px.command("arm both now cut")
    # vmig cancel follows the source through its recovery to the end
    out = cancel.communicate(timeout=PEER_MS / 1000 + HOLD_MS / 1000)[0]
    print("vmig cancel: rc %d: %s" % (cancel.returncode, out.strip()))
    check(cancel.returncode == 0 and grep(r"migration cancelled", out),
          "vmig cancel reports the cancel applied: rc %d %s" % (cancel.returncode, out))
    st = end_of(src, t)
    check(st == "cancelled", "the cancel applied once the destination said it "
          "never got GO: %s %s" % (st, src.migrate_info().get("error-desc")))
    end_of(dst, t)
    check(not seen(dst, "RESUME", None, t), "the destination never resumed the VM")
    check(dst.status() == "inmigrate", "the destination discarded it")
    runs_and_verifies(src, "source")


CASES = {"go-lost": case_go_lost, "unknown": case_unknown, "src-gone": case_src_gone,
         "cancel-wish": case_cancel_wish}


def main():
    return run_cases(VMIG, CASES, sys.argv[3:], check.failures, check, proxy=PROXY)


if __name__ == "__main__":
    sys.exit(main())
