#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The fault matrix: every fault at every phase of a live migration between
two vmig agents (each with a vmig-acc accelerator server and the guest's
self-checking workload), through vmig-faultproxy.

Each cell starts its own source and destination, reaches its phase by
waiting on what the migration shows (the proxy holding the stream at the
first frame of the phase, QMP events), injects the fault, and then checks,
the same way everywhere:

  one VM     exactly one host runs the VM, the one the cell expects (none
             only when the fault killed the only one);
  guest      on that host the guest's ledger replays and the accelerator
             workload verifies (every request completed once, none wrong)
             and keeps moving (unless the fault killed its device);
  reason     a failed migration's reason names the cause;
  retry      after a failure a new migration completes and verifies;
  clean      no process or vmig-dev-* directory of the cell is left over.

usage: matrix.py --vmig PATH --proxy PATH [--all | --sample | --cells F:P,...]
                 [--jobs N] [--table FILE.md] [--json FILE] [--list] [-v]
Exit status 0 when every cell passed.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import (DEADLINE, Lab, LabError, QMPError, free_port, grep,  # noqa: E402
                     now, wait_for)
from matrix_faults import (FAULT, FAULTS, PEER_TIMEOUT_MS, PHASE,  # noqa: E402
                           PHASES, PRECOPY_PASSES, RECOVER_TIMEOUT_MS, SRC,
                           VM, sample_cells)

# ------------------------------------------------------------------ a cell

class CellFailed(Exception):
    pass


class Cell:
    def __init__(self, opts, fault, phase):
        self.opts = opts
        self.fault = fault
        self.phase = phase
        self.exp = fault.expect(phase)
        self.notes = []
        self.failures = []
        self.hold_rule = None
        self.cli_out = ""
        self.cli_rc = None
        self.t_detect_other = None
        self.t0 = None
        self.t0_real = None
        self.dst_dev_dir = None
        self.src = self.dst = self.proxy = None
        self.observed = "?"
        self.detect_ms = None
        self.downtime_ms = None

    def note(self, s):
        self.notes.append(s)

    def fail(self, s):
        self.failures.append(s)

    def release(self):
        if self.proxy is not None and not self.phase.after:
            self.proxy.release()

    # -- views
    def wire_bytes(self):
        try:
            m = self.src.migrate_info()
            return m.get("ram", {}).get("transferred", 0) + m.get("vfio", {}).get("transferred", 0)
        except (QMPError, LabError, OSError):
            return 0

    def src_done(self):
        return self.src.q.find_event(
            "MIGRATION", lambda d: d.get("status") in ("completed", "failed", "cancelled"),
            since=self.t_mig) is not None

    # -- steps
    def start(self):
        self.lab = Lab(self.opts.vmig, self.opts.proxy, keep=self.opts.keep,
                       name="%s-%s" % (self.fault.name, self.phase.name))
        dport = free_port()
        dargs = getattr(self.fault, "dst_args", None) or VM
        if dargs is not VM:
            dargs = ["--ram", "32M", "--rate", "50000"] + dargs
        before = set(self.lab.dev_dirs())
        self.dst = self.lab.agent("dst", "receive", dargs, dport)
        new = set(self.lab.dev_dirs()) - before
        self.dst_dev_dir = os.path.join(self.lab.tmpdir, new.pop()) if new else None
        self.src = self.lab.agent("src", "run", SRC)
        self.proxy = self.lab.proxy_to("proxy", dport)
        params = {"downtime-limit": 1, "x-vmig-precopy-max-iterations": PRECOPY_PASSES,
                  "x-vmig-precopy-cap-action": "stop-copy", "max-bandwidth": 0}
        start = getattr(self.fault, "start", None)
        if start:
            params.update(start)
        self.src.cmd("migrate-set-parameters", params)
        for a in (self.src, self.dst):
            self.peer_timeout(a)
        # the workload runs before anything happens
        wait_for(lambda: self.acc(self.src).get("completed", 0) > 0, what="the accelerator workload to start")

    def peer_timeout(self, a):
        try:
            a.cmd("migrate-set-parameters", {"x-vmig-peer-timeout": PEER_TIMEOUT_MS,
                                             "x-vmig-recover-timeout": RECOVER_TIMEOUT_MS})
        except QMPError as e:
            self.note("%s: x-vmig-peer-timeout: %s" % (a.name, e.desc))

    def acc(self, a):
        try:
            g = a.guest()
        except (QMPError, LabError, OSError):
            return {}
        if g.get("busy"):
            return {}
        return g.get("accelerator", {}) or {}

    def arm(self):
        ph = self.phase
        if ph.after:
            return
        if self.fault.wire:
            d, spec = ph.wire
            self.hold_rule = self.proxy.arm("%s frame=%s %s" % (d, spec, self.fault.action))
        else:
            d, spec = ph.hold
            self.hold_rule = self.proxy.arm("%s frame=%s hold" % (d, spec))

    def migrate(self):
        self.t_mig = now()
        self.src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % self.proxy.port})

    def reach(self):
        """Wait until the migration is at the phase."""
        ph = self.phase
        if ph.after:
            self.src.q.wait_event("MIGRATION", lambda d: d.get("status") == "completed",
                                  since=self.t_mig)
            self.dst.q.wait_event("MIGRATION", lambda d: d.get("status") == "completed",
                                  since=self.t_mig)
            return
        fired = self.proxy.wait(self.hold_rule)
        if fired is None:
            # the migration ended before reaching the phase
            raise CellFailed("phase %s not reached (source: %s)" % (
                ph.name, self.src_error()))
        if self.fault.wire:
            self.t0 = fired["t"]
            self.t0_real = time.time() - (now() - self.t0)
            return
        if ph.stopped:
            self.src.q.wait_event("STOP", since=self.t_mig)
            # every stop-copy hold names the last pass or a frame only
            # stop-copy sends, so the STOP above places it; precopy may
            # converge before PRECOPY_PASSES when a guest starved on a
            # loaded machine dirtied nothing: noted, not a failure
            it = self.src.migrate_info().get("x-vmig-precopy", {}).get("iterations")
            if it != PRECOPY_PASSES:
                self.note("precopy converged after %s iterations, not %d" % (it, PRECOPY_PASSES))

    def src_error(self):
        try:
            return self.src.migrate_info().get("error-desc", "")
        except (QMPError, LabError, OSError):
            return "(source unreachable)"

    def outcome(self):
        """Wait for the migration's end on the side that can tell."""
        limit = DEADLINE
        final = ("completed", "failed", "cancelled", "postmigrate-unknown")
        if self.src.alive() and not self.src.stopped:
            hit = None
            try:
                hit = self.src.q.wait_event("MIGRATION", lambda d: d.get("status") in final,
                                            since=self.t_mig, timeout=limit)
            except LabError:
                self.fail("the source's migration did not end within %.0f s" % limit)
                return
            t, ev = hit
            status = ev["data"]["status"]
            if status == "postmigrate-unknown":
                status = "unknown"
            if status != "completed" and self.t0 is not None:
                ts = ev.get("timestamp", {})
                real = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
                self.detect_ms = max(0, int((real - self.t0_real) * 1000))
            self.observed = status
        else:
            # the source is gone: the destination must discard
            try:
                t, ev = self.dst.q.wait_event(
                    "MIGRATION", lambda d: d.get("status") in final,
                    since=self.t_mig, timeout=limit)
                st = ev["data"]["status"]
                self.observed = "lost" if st != "completed" else "completed"
                if st != "completed":
                    ts = ev.get("timestamp", {})
                    real = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
                    self.detect_ms = max(0, int((real - self.t0_real) * 1000))
            except LabError:
                self.fail("the destination did not end the migration after the source died")

    def settle(self):
        """Both sides quiet: the destination back to inmigrate or running."""
        def quiet():
            for a in (self.src, self.dst):
                if a.alive() and not a.stopped:
                    try:
                        g = a.guest()
                    except QMPError:
                        continue
                    except (LabError, OSError):
                        continue
                    if g.get("busy"):
                        return False
            return True
        try:
            wait_for(quiet, what="both agents to finish the migration")
        except LabError as e:
            self.fail(str(e))

    def check_vm(self):
        running = []
        for a in (self.src, self.dst):
            if a.status() == "running":
                running.append(a.name)
        want = [] if self.exp.vm == "none" else [self.exp.vm]
        if running != want:
            self.fail("VM runs on %s, expected %s" % (running or "no host", want or "no host"))
        return running

    def check_guest(self, a, device_dead=False):
        g0 = a.guest()
        if not g0.get("verified"):
            self.fail("%s: guest does not verify: %s" % (a.name, g0.get("error")))
        acc = g0.get("accelerator") or {}
        if acc.get("bad", 0) or acc.get("duplicates", 0) or not acc.get("verified", False):
            self.fail("%s: accelerator workload wrong: %s" % (a.name, acc))
        if device_dead:
            return
        c0 = acc.get("completed", 0)
        s0 = g0.get("steps", 0)

        def moved():
            g = a.guest()
            if g.get("busy"):
                return False
            ac = g.get("accelerator") or {}
            # a workload that has finished cannot move: not a stall
            return (ac.get("completed", 0) > c0 or ac.get("finished")) and \
                (g.get("steps", 0) > s0 or g.get("program-finished"))
        try:
            wait_for(moved, what="the guest and its accelerator to make progress on %s" % a.name)
        except LabError as e:
            self.fail(str(e))
            return
        g1 = a.guest()
        if g1.get("program-finished") and (g1.get("accelerator") or {}).get("finished"):
            self.note("%s: both guest workloads had finished: progress not observable"
                      % a.name)

    def check_reason(self):
        if self.exp.reason is None:
            return
        texts = [self.src_error() if self.src.alive() and not self.src.stopped else ""]
        if self.dst.alive():
            try:
                texts.append(self.dst.migrate_info().get("error-desc", ""))
            except (QMPError, LabError, OSError):
                pass
        texts.append(self.cli_out)
        if not any(grep(self.exp.reason, t) for t in texts):
            self.fail("the reason does not name the cause (/%s/): %s" % (self.exp.reason, texts))
        self.reason_text = next((t for t in texts if t), "")

    def retry(self):
        """A new migration completes: to the destination if it is ready,
        else to a new one; from the source if it runs the VM, else a new
        source VM to the destination (it survived)."""
        self.proxy.clear()
        if self.exp.retry == "refused":
            r = subprocess.run([self.lab.vmig, "check", "--qmp", self.src.qmp_path, "--to",
                                "127.0.0.1:%d" % self.dst.port], capture_output=True, text=True,
                               timeout=60)
            if r.returncode == 0 or not grep(r"vfu0.*fail|fail.*vfu0", r.stdout + r.stderr):
                self.fail("vmig check with a failed device did not refuse naming it: %s"
                          % (r.stdout + r.stderr))
            return
        dst = self.dst
        if not dst.alive() or dst.status() != "inmigrate" or self.fault.name == "incompatible-dst" \
                or self.fault.name == "kill-dst-dev":
            dst = self.lab.agent("dst2", "receive", VM, free_port())
            self.peer_timeout(dst)
        src = self.src
        if self.exp.vm != "src":
            src = self.lab.agent("src2", "run", SRC)
            wait_for(lambda: self.acc(src).get("completed", 0) > 0, what="the new source's workload")
        t = now()
        src.cmd("migrate-set-parameters", {"downtime-limit": 300, "max-bandwidth": 0,
                                           "x-vmig-precopy-max-iterations": 0})
        src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
        _, ev = src.q.wait_event("MIGRATION", lambda d: d.get("status") in
                                 ("completed", "failed", "cancelled"), since=t)
        if ev["data"]["status"] != "completed":
            self.fail("the retry %s: %s" % (ev["data"]["status"], src.migrate_info().get("error-desc")))
            return
        wait_for(lambda: not dst.guest().get("busy"), what="the retry's destination to settle")
        self.check_guest(dst)

    def check_clean(self):
        self.lab.shutdown()
        left = []
        try:
            wait_for(lambda: not self.lab.live_pids() and not self.lab.dev_dirs(), 15,
                     "processes and directories to go")
        except LabError:
            left = self.lab.live_pids()
            if left:
                self.fail("processes left over: %s" % left)
            if self.lab.dev_dirs():
                self.fail("directories left over: %s" % self.lab.dev_dirs())

    def run(self):
        ok = False
        try:
            self.start()
            self.arm()
            self.migrate()
            self.reach()
            if not self.fault.wire:
                self.t0 = now()
                self.t0_real = time.time()
            self.fault.inject(self)
            self.outcome()
            if self.exp.alt is not None and self.observed == self.exp.alt.outcome:
                self.note("%s: %s" % (self.observed, self.exp.alt_why))
                self.exp = self.exp.alt
            self.settle()
            running = self.check_vm()
            if self.exp.outcome in ("failed", "cancelled", "lost") and \
                    self.observed != self.exp.outcome:
                self.fail("outcome %s, expected %s" % (self.observed, self.exp.outcome))
            if self.exp.outcome == "completed" and self.observed != "completed":
                self.fail("outcome %s, expected completed (%s)" % (self.observed, self.src_error()))
            if self.exp.paused is False and self.src.q.find_event("STOP", since=self.t_mig):
                self.fail("the source paused its VM")
            for name in running:
                a = self.src if name == "src" else self.dst
                self.check_guest(a, device_dead=self.exp.dev_failed == name)
            if self.observed == "completed":
                try:
                    self.downtime_ms = self.src.migrate_info().get("downtime")
                except (QMPError, LabError, OSError):
                    pass
            if self.exp.outcome != "completed":
                self.check_reason()
            if self.exp.retry and not self.failures:
                self.retry()
            ok = True
        except (LabError, QMPError, CellFailed, OSError, subprocess.SubprocessError) as e:
            self.fail("%s: %s" % (type(e).__name__, e))
            if self.opts.verbose:
                traceback.print_exc()
        finally:
            try:
                self.check_clean()
            except Exception as e:  # noqa: BLE001 - report, never hide
                self.fail("cleanup: %s" % e)
            self.lab.cleanup(ok and not self.failures)
        return self.row()

    def row(self):
        return {
            "fault": self.fault.name, "phase": self.phase.name,
            "expected": "%s (VM on %s)" % (self.exp.outcome, self.exp.vm),
            "observed": self.observed,
            "passed": not self.failures,
            "detect_ms": self.detect_ms, "downtime_ms": self.downtime_ms,
            "failures": self.failures, "notes": self.notes,
            "reason": getattr(self, "reason_text", ""),
            "dir": None if not self.failures else self.lab.dir,
        }


# ------------------------------------------------------------------ driver

def run_one(opts, f, p):
    fault, phase = FAULT[f], PHASE[p]
    exp = fault.expect(phase)
    if exp.na:
        return {"fault": f, "phase": p, "na": exp.na, "passed": True}
    t = now()
    row = Cell(opts, fault, phase).run()
    row["seconds"] = round(now() - t, 1)
    return row


def table(rows, path):
    cells = [r for r in rows if "na" not in r]
    passed = sum(1 for r in cells if r["passed"])
    by = {(r["fault"], r["phase"]): r for r in rows}
    out = ["# Fault matrix results", "",
           "%d cells, %d passed, %d failed (%d fault/phase pairs do not exist)." % (
               len(cells), passed, len(cells) - passed, len(rows) - len(cells)), "",
           "Each entry: outcome (VM location) / time to detect or downtime; "
           "`-` the pair does not exist; FAIL marks a failed check.", "",
           "| fault | " + " | ".join(p.name for p in PHASES) + " |",
           "|---|" + "---|" * len(PHASES)]
    for f in FAULTS:
        line = ["`%s`" % f.name]
        for p in PHASES:
            r = by.get((f.name, p.name))
            if r is None:
                line.append(" ")
            elif "na" in r:
                line.append("-")
            else:
                s = r["observed"]
                if r.get("detect_ms") is not None:
                    s += " %dms" % r["detect_ms"]
                elif r.get("downtime_ms") is not None:
                    s += " dt %dms" % r["downtime_ms"]
                if not r["passed"]:
                    s = "**FAIL** " + s
                line.append(s)
        out.append("| " + " | ".join(line) + " |")
    out += ["", "## Detection time per fault (failed migrations)", "",
            "| fault | cells | min ms | max ms |", "|---|---|---|---|"]
    for f in FAULTS:
        ds = [r["detect_ms"] for r in cells if r["fault"] == f.name and r.get("detect_ms") is not None]
        if ds:
            out.append("| `%s` | %d | %d | %d |" % (f.name, len(ds), min(ds), max(ds)))
    fails = [r for r in cells if not r["passed"]]
    if fails:
        out += ["", "## Failed cells", ""]
        for r in fails:
            out.append("- `%s` x `%s`: %s (kept in %s)" % (r["fault"], r["phase"],
                                                         "; ".join(r["failures"]), r.get("dir")))
    text = "\n".join(out) + "\n"
    if path:
        with open(path, "w") as fh:
            fh.write(text)
    return text, len(cells), passed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vmig", required=True)
    ap.add_argument("--proxy", required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true")
    g.add_argument("--sample", action="store_true")
    g.add_argument("--cells")
    ap.add_argument("--group", help="K/N: only every Nth cell of the selection, from K")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--table")
    ap.add_argument("--json")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)   # F:P, run in a child
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()

    if opts.one:
        f, p = opts.one.split(":")
        print(json.dumps(run_one(opts, f, p)))
        return 0
    if opts.cells:
        sel = [tuple(c.split(":")) for c in opts.cells.split(",")]
    elif opts.all:
        sel = [(f.name, p.name) for f in FAULTS for p in PHASES]
    else:
        sel = sample_cells()
    if opts.group:
        k, n = (int(x) for x in opts.group.split("/"))
        sel = sel[k::n]
    for f, p in sel:
        if f not in FAULT or p not in PHASE:
            print("unknown cell %s:%s" % (f, p), file=sys.stderr)
            return 2
    if opts.list:
        for f, p in sel:
            e = FAULT[f].expect(PHASE[p])
            print("%-18s %-10s %s%s" % (f, p, e.na and "n/a: " + e.na or
                                        "%s (VM on %s)" % (e.outcome, e.vm),
                                        e.alt and " or %s (VM on %s) when %s" % (
                                            e.alt.outcome, e.alt.vm, e.alt_why) or ""))
        return 0

    rows = []
    running = []
    queue = list(sel)
    me = os.path.abspath(__file__)
    base = [sys.executable, me, "--vmig", opts.vmig, "--proxy", opts.proxy]
    if opts.keep:
        base.append("--keep")
    t_all = now()
    while queue or running:
        while queue and len(running) < max(opts.jobs, 1):
            f, p = queue.pop(0)
            if FAULT[f].expect(PHASE[p]).na:
                rows.append(run_one(opts, f, p))
                continue
            pr = subprocess.Popen(base + ["--one", "%s:%s" % (f, p)],
                                  stdout=subprocess.PIPE, text=True)
            running.append((f, p, pr))
        for item in list(running):
            f, p, pr = item
            if pr.poll() is None:
                continue
            running.remove(item)
            out = pr.stdout.read()
            try:
                row = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                row = {"fault": f, "phase": p, "passed": False, "observed": "crash",
                       "failures": ["the cell's runner died: %r" % out[-500:]]}
            rows.append(row)
            mark = "ok  " if row["passed"] else "FAIL"
            extra = "" if row["passed"] else " -- " + "; ".join(row["failures"])
            print("%s %-18s %-10s %-10s %5.1fs%s" % (mark, f, p, row.get("observed", ""),
                                                   row.get("seconds", 0), extra), flush=True)
        time.sleep(0.05)
    text, ncells, npassed = table(rows, opts.table)
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print("fault matrix: %d cells, %d passed, %d failed in %.0f s" % (
        ncells, npassed, ncells - npassed, now() - t_all))
    return 0 if npassed == ncells else 1


if __name__ == "__main__":
    sys.exit(main())
