#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A destination already receiving a migration refuses a second source at
once (issue 14, defect 4), between real agent processes: while source A
migrates into the destination (held slow by max-bandwidth), source B's
`vmig migrate` and `vmig check` fail within seconds (before: B waited for
its 30 s peer timeout) saying "destination busy"; B keeps running; A's
migration is untouched and completes once its limit is lifted, the guest
verifying on the destination.

usage: test_busy.py VMIG
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG = sys.argv[1]
check = Checks()
# well under the 30 s peer timeout a second source used to wait, and
# generous for a loaded machine (the refusal itself takes milliseconds)
REFUSE_WITHIN = 15.0


def cli(*args):
    r = subprocess.run([VMIG] + list(args), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def case_busy(lab):
    args = ["--ram", "32M", "--device", "acc"]
    a = lab.agent("a", "run", args + ["--acc-requests", "200000"])
    b = lab.agent("b", "run", args)
    dst = lab.agent("dst", "receive", args, free_port())
    to = "127.0.0.1:%d" % dst.port
    t = now()
    a.cmd("migrate-set-parameters", {"max-bandwidth": 256 << 10})
    a.cmd("migrate", {"uri": "tcp:" + to})
    wait_for(lambda: a.migrate_info().get("ram", {}).get("transferred", 0) > 0,
             what="A's migration to move data")
    for verb in ("migrate", "check"):
        t0 = now()
        rc, out = cli(verb, "--qmp", b.qmp_path, "--to", to)
        took = now() - t0
        print("B: vmig %s: rc %d after %.0f ms: %s" % (verb, rc, took * 1000, out.strip()[-300:]))
        check(rc == 1, "vmig %s from B is refused (rc %d)" % (verb, rc))
        check(grep(r"destination busy", out), "vmig %s says the destination is busy: %s" % (verb, out))
        check(took < REFUSE_WITHIN, "vmig %s refused within %.0f s (took %.1f s)" % (verb, REFUSE_WITHIN, took))
    check(b.status() == "running", "B keeps running")
    check(a.migrate_info().get("status") == "active", "A's migration goes on: %s" % a.migrate_info())
    a.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    _, ev = a.q.wait_event("MIGRATION", lambda e: e.get("status") in
                           ("completed", "failed", "cancelled"), since=t)
    check(ev["data"]["status"] == "completed", "A's migration completed: %s" % a.migrate_info())
    wait_for(lambda: dst.status() == "running", what="the destination to run")
    wait_for(lambda: not dst.guest().get("busy"), what="the destination to settle")
    s0 = dst.guest().get("steps", 0)
    wait_for(lambda: dst.guest().get("steps", 0) > s0, what="the guest to run on the destination")
    check(dst.guest().get("verified"), "the guest verifies on the destination")
    check(b.guest().get("verified"), "B's guest verifies")


CASES = {"busy": case_busy}


def main():
    return run_cases(VMIG, CASES, sys.argv[2:], check.failures, check)


if __name__ == "__main__":
    sys.exit(main())
