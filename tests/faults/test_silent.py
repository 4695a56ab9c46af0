#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A peer that goes silent during stop-copy is detected within the
downtime budget plus the peer timeout, which is a parameter (issue 14,
defect 6: QMP x-vmig-peer-timeout; it was a fixed 30 s).  Between real
agent processes through vmig-faultproxy, with two connections (the main
one and an extra channel): precopy is off so the stream's second RAM
frame is inside stop-copy (the VM paused), and the proxy stalls it for
10 minutes.  Both orderings of the two agents' timeouts:

  src-first       the source's peer timeout is 2 s, the destination's
                  6 s: the source must fail naming its own timeout
                  within the downtime limit + 2 s (plus slack for a
                  loaded machine, far below 30 s)
  dst-first       the destination's is 2 s, the source's 30 s, the stall
                  on the main connection: the destination gives up first
                  and hangs up; within the same limit the source must
                  fail naming the destination's reason (its ERROR frame:
                  the source was silent), not a bare 'Connection reset by
                  peer' nor, 30 s on, its own timeout
  dst-first-chan  the same with the stall on the extra channel
  equal           both 2 s: either may give up first; the source must
                  name a timeout, its own or the destination's, never a
                  bare reset

In each the source rolls back so the VM runs and verifies there, the
destination discards and keeps listening, and a retry straight to it
completes, with the same peer timeouts.

usage: test_silent.py VMIG VMIG-FAULTPROXY
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, QMPError, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG, PROXY = sys.argv[1], sys.argv[2]
check = Checks()
PEER_TIMEOUT_MS = 2000
LONG_TIMEOUT_MS = 3 * PEER_TIMEOUT_MS
# the source's timeout when the destination is to give up first: far
# beyond the time allowed to detect, so the source must learn of the
# stall from the destination, not from its own timeout
SRC_LONG_TIMEOUT_MS = 30000
DOWNTIME_MS = 300
# time to detect = downtime budget + peer timeout + this slack (a loaded
# machine's scheduling); the fixed 30 s timeout could never meet it
SLACK_S = 8.0


def stall_case(lab, src_ms, dst_ms, reason_re, reason_what, conn=None):
    """The stop-copy stall with these peer timeouts, on proxy connection
    @conn (1: the main one; None: whichever carries the second RAM frame);
    the source's error must match @reason_re (what it names:
    @reason_what)."""
    args = ["--ram", "32M", "--device", "acc"]
    src = lab.agent("src", "run", args + ["--acc-requests", "200000"])
    dst = lab.agent("dst", "receive", args, free_port())
    for a, ms in ((src, src_ms), (dst, dst_ms)):
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
    src.cmd("migrate-set-parameters", {"multifd-channels": 2})
    rid = px.arm("%sfwd frame=RAM:nth=2 stall 600000" % ("conn=%d " % conn if conn else ""))
    wait_for(lambda: (src.guest().get("accelerator") or {}).get("completed", 0) > 0,
             what="the accelerator workload to start")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    fired = px.wait(rid, 120)
    check(fired is not None, "the proxy stalled the stop-copy stream")
    print("stalled: %s" % fired)
    _, ev = src.q.wait_event("MIGRATION", lambda e: e.get("status") in
                             ("completed", "failed", "cancelled"), since=t, timeout=120)
    took = now() - (fired["t"] if fired else t)
    err = src.migrate_info().get("error-desc", "")
    print("source: %s after %.0f ms of silence: %s" % (ev["data"]["status"], took * 1000, err))
    check(ev["data"]["status"] == "failed", "the migration failed")
    limit = (DOWNTIME_MS + min(src_ms, dst_ms)) / 1000.0 + SLACK_S
    check(took < limit, "detected within %.1f s (took %.1f s)" % (limit, took))
    check(grep(reason_re, err), "the reason names %s: %s" % (reason_what, err))
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
    # a retry, straight to the destination, completes with the same short
    # peer timeouts: a connection that waits while another carries data
    # hears the peer through it (the connections share one peer clock)
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


def case_src_first(lab):
    # the source's own timeout fires first: it names the silence itself
    stall_case(lab, PEER_TIMEOUT_MS, LONG_TIMEOUT_MS,
               r"timed out|timeout|silent", "the silence")


def case_dst_first(lab):
    # the destination gives up first (the stall is on the main connection,
    # where a timeout used to end without an ERROR) and hangs up: its
    # ERROR must reach the source ahead of the hangup, and the source
    # must report it, soon after it was sent
    stall_case(lab, SRC_LONG_TIMEOUT_MS, PEER_TIMEOUT_MS,
               r"^destination: .*(silent|timed out)",
               "the destination's reason", conn=1)


def case_dst_first_chan(lab):
    # the same with the stall on the extra channel: the destination's
    # channel times out, and its other connections close with data unread
    stall_case(lab, SRC_LONG_TIMEOUT_MS, PEER_TIMEOUT_MS,
               r"^destination: .*(silent|timed out)",
               "the destination's reason", conn=2)


def case_equal(lab):
    # a race: whichever gives up first, the source names a timeout
    stall_case(lab, PEER_TIMEOUT_MS, PEER_TIMEOUT_MS,
               r"timed out|silent", "the silence, its own or the destination's")


CASES = {"src-first": case_src_first, "dst-first": case_dst_first,
         "dst-first-chan": case_dst_first_chan, "equal": case_equal}


def main():
    return run_cases(VMIG, CASES, sys.argv[3:], check.failures, check, "silent-", PROXY)


if __name__ == "__main__":
    sys.exit(main())
