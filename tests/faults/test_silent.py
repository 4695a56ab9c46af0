#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A peer that goes silent during stop-copy is detected within the
downtime budget plus the peer timeout, which is a parameter (issue 14,
defect 6: QMP x-vmig-peer-timeout; it was a fixed 30 s).  Between real
agent processes through vmig-faultproxy: the source sets a 2 s peer
timeout (the destination 6 s, so the source detects first), precopy is
off so the stream's second RAM frame is inside stop-copy (the VM
paused), and the proxy stalls it for 10 minutes.  The source must
fail naming the timeout within the downtime limit + 2 s (plus slack for
a loaded machine, far below 30 s), roll back so the VM runs and
verifies there, the destination discard and keep listening, and a retry
straight to it complete.

usage: test_silent.py VMIG VMIG-FAULTPROXY
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, QMPError, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG, PROXY = sys.argv[1], sys.argv[2]
check = Checks()
PEER_TIMEOUT_MS = 2000
DST_PEER_TIMEOUT_MS = 3 * PEER_TIMEOUT_MS
DOWNTIME_MS = 300
# time to detect = downtime budget + peer timeout + this slack (a loaded
# machine's scheduling); the fixed 30 s timeout could never meet it
SLACK_S = 8.0


def case_stopcopy(lab):
    args = ["--ram", "32M", "--device", "acc"]
    src = lab.agent("src", "run", args + ["--acc-requests", "200000"])
    dst = lab.agent("dst", "receive", args, free_port())
    # the source is the side under test: the destination waits longer, so
    # its own timeout cannot fire first and hang up (the source would then
    # see only "Connection reset by peer" instead of its silence)
    for a, ms in ((src, PEER_TIMEOUT_MS), (dst, DST_PEER_TIMEOUT_MS)):
        a.cmd("migrate-set-parameters", {"x-vmig-peer-timeout": ms})
        got = a.cmd("query-migrate-parameters").get("x-vmig-peer-timeout")
        check(got == ms, "%s: x-vmig-peer-timeout reads back %s" % (a.name, got))
    # out of range: refused, nothing changed
    try:
        src.cmd("migrate-set-parameters", {"x-vmig-peer-timeout": 3600001, "downtime-limit": 77})
        check(False, "x-vmig-peer-timeout 3600001 accepted")
    except QMPError as e:
        check(grep("x-vmig-peer-timeout", e.desc), "the refusal names the parameter: %s" % e.desc)
    check(src.cmd("query-migrate-parameters").get("downtime-limit") != 77,
          "a refused migrate-set-parameters changed nothing")
    src.cmd("migrate-set-parameters", {"x-vmig-precopy": False, "downtime-limit": DOWNTIME_MS})
    px = lab.proxy_to("px", dst.port)
    rid = px.arm("fwd frame=RAM:nth=2 stall 600000")
    wait_for(lambda: (src.guest().get("accelerator") or {}).get("completed", 0) > 0,
             what="the accelerator workload to start")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    fired = px.wait(rid, 120)
    check(fired is not None, "the proxy stalled the stop-copy stream")
    _, ev = src.q.wait_event("MIGRATION", lambda e: e.get("status") in
                             ("completed", "failed", "cancelled"), since=t, timeout=120)
    took = now() - (fired["t"] if fired else t)
    err = src.migrate_info().get("error-desc", "")
    print("source: %s after %.0f ms of silence: %s" % (ev["data"]["status"], took * 1000, err))
    check(ev["data"]["status"] == "failed", "the migration failed")
    limit = (DOWNTIME_MS + PEER_TIMEOUT_MS) / 1000.0 + SLACK_S
    check(took < limit, "detected within %.1f s (took %.1f s)" % (limit, took))
    check(grep(r"timed out|timeout|silent", err), "the reason names the silence: %s" % err)
    wait_for(lambda: not src.guest().get("busy"), what="the source to settle")
    check(src.status() == "running", "the VM runs on the source")
    s0 = src.guest().get("steps", 0)
    wait_for(lambda: src.guest().get("steps", 0) > s0, what="the guest to run on the source")
    check(src.guest().get("verified"), "the guest verifies on the source")
    # with parallel channels the stall may hit an extra channel: then the
    # destination either times out itself (failed) or first gets the
    # source's ABORT on the healthy main channel (cancelled)
    wait_for(lambda: dst.migrate_info().get("status") in ("failed", "cancelled", "setup"),
             what="the destination to give the migration up")
    check(dst.status() == "inmigrate", "the destination discarded and waits")
    # a retry, straight to the destination, completes
    px.clear()
    t = now()
    src.cmd("migrate-set-parameters", {"x-vmig-precopy": True})
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
    _, ev = src.q.wait_event("MIGRATION", lambda e: e.get("status") in
                             ("completed", "failed", "cancelled"), since=t, timeout=120)
    check(ev["data"]["status"] == "completed", "the retry completed: %s" % src.migrate_info())
    wait_for(lambda: dst.status() == "running", what="the destination to run")
    wait_for(lambda: not dst.guest().get("busy"), what="the destination to settle")
    check(dst.guest().get("verified"), "the guest verifies on the destination")


CASES = {"stopcopy": case_stopcopy}


def main():
    return run_cases(VMIG, CASES, sys.argv[3:], check.failures, check, "silent-", PROXY)


if __name__ == "__main__":
    sys.exit(main())
