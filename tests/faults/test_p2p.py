#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What the two-phase P2P quiesce buys, between real agent processes
(issue 14, defect 11).

One VM with two vmig-flowtab devices, fa and fb, each the other's P2P peer
(--device flowtab,name=fa,peer=fb and the converse): the guest forwards
every packet, so each device keeps posting records into the other's P2P
window, with up to 16384 in flight (the guest driver's flow control).
The guest's counters are the devices' statistics blocks in guest RAM:
p2p_tx (records sent) and p2p_rx (records received);
x-vmig-query-guest quiesces P2P (RUNNING_P2P) before it reads them, so
sent - received summed over the VM is exactly the records lost.

- two-phase (the default switchover: every device to PRE_COPY_P2P before
  any goes to STOP_COPY): the destination's counters add up, loss == 0;
- one-phase (capability x-vmig-test-one-phase-stop, the test knob that
  skips the P2P phase): fa is saved while fb still forwards into it; fa
  refuses those writes, fb counts them sent, and the destination's
  counters show loss > 0.  The loss needs records in flight at the
  switchover, which the guest's traffic gives; should one attempt happen
  to find none, the case tries again (up to ONE_PHASE_TRIES migrations)
  and fails only when none loses a record.

Both migrations must complete and the guest verify on the destination
(every completion checked); the counters are checked on the source
before migrating too (P2P working, nothing lost).  A P2P phase that no
longer quiesces shows as loss in the two-phase case; a knob that no
longer skips it, as no loss in the one-phase case.

usage: test_p2p.py VMIG [two-phase|one-phase]...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, free_port, now, run_cases, wait_for  # noqa: E402

VMIG = sys.argv[1]
check = Checks()
ONE_PHASE_TRIES = 8
CAP = "x-vmig-test-one-phase-stop"
# flowtab state kept small: the migration's bytes are not the point
ARGS = ["--ram", "32M", "--rate", "50000",
        "--device", "flowtab,name=fa,peer=fb,state=4",
        "--device", "flowtab,name=fb,peer=fa,state=4"]


def p2p(agent):
    """(sent, received, per-device report) from the guest's counters, once
    the agent answers (not busy) and both devices were quiesced."""
    def ready():
        g = agent.guest()
        if g.get("busy"):
            return None
        devs = {d["name"]: d for d in g.get("flowtab", [])}
        if sorted(devs) != ["fa", "fb"] or not all(
                d.get("started") and "p2p-sent" in d for d in devs.values()):
            return None
        return g, devs
    g, devs = wait_for(ready, what="the guest's flowtab report on %s" % agent.name)
    check(all(d.get("p2p-quiesced") for d in devs.values()),
          "%s: both devices quiesced for the count: %s" % (agent.name, devs))
    check(g.get("verified"), "%s: the guest verifies: %s" % (agent.name, g))
    sent = sum(d["p2p-sent"] for d in devs.values())
    recv = sum(d["p2p-received"] for d in devs.values())
    return sent, recv, devs


def migrate_once(lab, tag, one_phase):
    src = lab.agent("src-" + tag, "run", ARGS)
    dst = lab.agent("dst-" + tag, "receive", ARGS, free_port())
    # P2P flowing both ways on the source, and nothing lost there
    wait_for(lambda: all(d["p2p-received"] > 2000 for d in p2p(src)[2].values()),
             what="P2P records flowing both ways on the source")
    sent, recv, devs = p2p(src)
    check(sent == recv, "%s: source counters add up before migrating: "
          "sent %d, received %d" % (tag, sent, recv))
    print("%s: source: sent %d, received %d, in flight before the count %s" % (
        tag, sent, recv, [d.get("p2p-in-flight") for _, d in sorted(devs.items())]),
        flush=True)
    caps = src.cmd("query-migrate-capabilities")
    check({"capability": CAP, "state": False} in caps, "%s is off by default: %s" % (CAP, caps))
    if one_phase:
        src.cmd("migrate-set-capabilities",
                {"capabilities": [{"capability": CAP, "state": True}]})
        caps = src.cmd("query-migrate-capabilities")
        check({"capability": CAP, "state": True} in caps, "%s set: %s" % (CAP, caps))
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
    _, ev = src.q.wait_event("MIGRATION", lambda e: e.get("status") in
                             ("completed", "failed", "cancelled"), since=t)
    check(ev["data"]["status"] == "completed",
          "%s: migration completed: %s" % (tag, src.migrate_info()))
    wait_for(lambda: dst.status() == "running", what="the destination to run")
    # traffic goes on at the destination: more records sent after the count
    s0 = p2p(dst)[0]
    wait_for(lambda: p2p(dst)[0] > s0, what="P2P traffic on the destination")
    sent, recv, devs = p2p(dst)
    lost = sent - recv
    print("%s: destination: sent %d, received %d, lost %d (%s)" % (
        tag, sent, recv, lost, ", ".join(
            "%s sent %d received %d" % (n, d["p2p-sent"], d["p2p-received"])
            for n, d in sorted(devs.items()))), flush=True)
    src.quit()
    dst.quit()
    return lost


def case_two_phase(lab):
    lost = migrate_once(lab, "two", False)
    check(lost == 0, "two-phase stop: no P2P record lost (lost %d)" % lost)


def case_one_phase(lab):
    losses = []
    for i in range(ONE_PHASE_TRIES):
        losses.append(migrate_once(lab, "one%d" % i, True))
        check(losses[-1] >= 0, "one-phase stop: never more received than sent (%d)" % losses[-1])
        if losses[-1] > 0:
            break
    print("one-phase losses per attempt: %s" % losses, flush=True)
    check(any(x > 0 for x in losses),
          "one-phase stop loses P2P records (losses %s)" % losses)


CASES = {"two-phase": case_two_phase, "one-phase": case_one_phase}


def main():
    return run_cases(VMIG, CASES, sys.argv[2:], check.failures, check, prefix="p2p-")


if __name__ == "__main__":
    sys.exit(main())
