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
import shutil
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import (DEADLINE, Lab, LabError, QMPError, free_port, grep,  # noqa: E402
                     now, wait_for)

PEER_TIMEOUT_MS = 3000
# the commit protocol's recovery window (x-vmig-recover-timeout): how long
# a source that lost the answer to GO asks again, and how long a
# destination holds a loaded VM whose source vanished before GO
RECOVER_TIMEOUT_MS = 15000
PRECOPY_PASSES = 3          # precopy iterations before the cap switches over
FINAL_PASS = PRECOPY_PASSES + 1
VM = ["--ram", "32M", "--device", "acc", "--rate", "50000"]
SRC = VM + ["--acc-requests", "200000"]


class Phase:
    def __init__(self, name, label, hold, wire, stopped=False, after=False):
        self.name = name
        self.label = label
        self.hold = hold        # (dir, frame spec): where the stream is held
        self.wire = wire        # (dir, frame spec): where a wire fault hits
        self.stopped = stopped  # the source VM is paused there
        self.after = after      # after completion: no stream any more


PHASES = [
    Phase("connect", "connect/compat (HELLO answered)",
          ("back", "HELLO_REPLY"), ("fwd", "HELLO")),
    Phase("setup", "setup (destination devices RESUMING)",
          ("back", "SETUP_ACK"), ("fwd", "SETUP")),
    Phase("pass1", "precopy pass 1",
          ("fwd", "RAM:pass=1:nth=2"), ("fwd", "RAM:pass=1:nth=2")),
    Phase("pass2", "precopy pass 2",
          ("fwd", "RAM:pass=2|RAM_PASS_END:pass=2"),
          ("fwd", "RAM:pass=2|RAM_PASS_END:pass=2")),
    Phase("switchover", "switchover (VM paused, devices stopped)",
          ("fwd", "RAM:pass=%d|RAM_PASS_END:last|VCPU" % FINAL_PASS),
          ("fwd", "RAM:pass=%d|RAM_PASS_END:last|VCPU" % FINAL_PASS),
          stopped=True),
    Phase("sc-ram", "stop-copy RAM",
          ("fwd", "RAM:pass=%d:nth=2|RAM_PASS_END:last" % FINAL_PASS),
          ("fwd", "RAM:pass=%d:nth=2|RAM_PASS_END:last" % FINAL_PASS),
          stopped=True),
    Phase("sc-dev", "stop-copy device state",
          ("fwd", "DEV_DATA:stopcopy|DEV_END"),
          ("fwd", "DEV_DATA:stopcopy|DEV_END"), stopped=True),
    Phase("confirm", "resume/confirm (destination resumed on GO, CONFIRM in flight)",
          ("back", "CONFIRM"), ("back", "CONFIRM")),
    Phase("after", "just after completion", None, None, after=True),
]
PHASE = {p.name: p for p in PHASES}
PRE = ("connect", "setup", "pass1", "pass2")
STOPCOPY = ("switchover", "sc-ram", "sc-dev")


class Expect:
    """What a cell must end in.  vm: "src", "dst" or "none"."""

    def __init__(self, outcome, vm, reason=None, retry=False, na=None,
                 dev_failed=None, paused=None, alt=None, alt_why=None):
        # completed, failed, cancelled, refused, lost (no cell expects
        # "unknown": a source that committed and could not learn the
        # outcome, tests/faults/test_commit.py)
        self.outcome = outcome
        self.vm = vm
        self.reason = reason        # regex the failure reason must match
        self.retry = retry
        self.na = na                # why the cell does not exist
        self.dev_failed = dev_failed  # "src"/"dst": the VM's device died there
        self.paused = paused        # None: any; False: the VM never paused
        # the one other defined outcome, where the fault can land on either
        # side of the point of no return (alt_why says when), checked the
        # same way as the first
        self.alt = alt
        self.alt_why = alt_why


def na(why):
    return Expect("n/a", None, na=why)


COMPLETED = Expect("completed", "dst")
CONN_RE = r"connect|closed|reset|broken|end of|EOF|hung up|gone|peer"
SILENT_RE = r"timed out|timeout|silent|no answer|not respond"


def rolled_back(reason, **kw):
    return Expect("failed", "src", reason, retry=True, **kw)


# ------------------------------------------------------------------ faults
#
# Each fault: expect(phase) -> Expect, and inject(cell) which runs with the
# stream held at the phase's hold point (or, for wire faults, armed at the
# wire point) and may release the hold itself.

class Fault:
    name = ""
    label = ""
    wire = False   # a proxy fault: armed at the phase's wire point

    def expect(self, ph):
        raise NotImplementedError

    def inject(self, cell):
        raise NotImplementedError


class KillAgent(Fault):
    def __init__(self, side, sig):
        self.side, self.sig = side, sig
        verb = "kill -9" if sig == signal.SIGKILL else "SIGSTOP"
        self.name = ("kill-" if sig == signal.SIGKILL else "stop-") + side
        self.label = "%s %s agent" % (verb, "source" if side == "src" else "destination")

    def expect(self, ph):
        p = ph.name
        if self.side == "src" and self.sig == signal.SIGKILL:
            if p in ("confirm", "after"):
                return COMPLETED          # the destination runs it already
            # before GO (the commit protocol): the destination never runs
            # it; a destination that got as far as READY holds it for the
            # recovery window, then discards it
            return Expect("lost", "none", CONN_RE, retry=True)
        if self.side == "src":              # SIGSTOP until the peer gives up
            if p in ("confirm", "after"):
                return COMPLETED
            return rolled_back(CONN_RE + "|" + SILENT_RE)
        if self.sig == signal.SIGKILL:      # destination killed
            if p in ("confirm", "after"):
                # it ran there (GO) and died; its CONFIRM, held by the
                # proxy, still reaches the source
                return Expect("completed", "none")
            return rolled_back(CONN_RE)
        if p in ("confirm", "after"):       # destination stopped a while
            return COMPLETED
        return rolled_back(SILENT_RE)

    def inject(self, cell):
        a = cell.src if self.side == "src" else cell.dst
        a.signal(self.sig)
        if self.sig == signal.SIGKILL:
            a.proc.wait()
            cell.release()
            return
        # SIGSTOP: until the other side noticed (or a bounded time when
        # nothing can notice: the migration is past the point of no return)
        cell.release()
        p = cell.phase.name
        if p in ("confirm", "after"):
            if self.side == "src" and p == "confirm":
                cell.dst.q.wait_event("MIGRATION", lambda d: d.get("status") == "completed",
                                      since=cell.t_mig)
            else:
                time.sleep(1.0)   # the fault's duration, not a wait
        else:
            other = cell.dst if self.side == "src" else cell.src
            try:
                other.q.wait_event("MIGRATION",
                                   lambda d: d.get("status") in ("failed", "cancelled"),
                                   since=cell.t0, timeout=PEER_TIMEOUT_MS / 1000 * 5 + 10)
                cell.t_detect_other = other.q.find_event(
                    "MIGRATION", lambda d: d.get("status") in ("failed", "cancelled"),
                    since=cell.t0)[0]
            except LabError:
                cell.note("the peer did not notice the stopped agent")
        a.signal(signal.SIGCONT)


class DevFault(Fault):
    def __init__(self, side, sig):
        self.side, self.sig = side, sig
        verb = "kill -9" if sig == signal.SIGKILL else "SIGSTOP"
        self.name = ("kill-" if sig == signal.SIGKILL else "stop-") + side + "-dev"
        self.label = "%s %s device server" % (verb, "source" if side == "src" else "destination")

    def expect(self, ph):
        p = ph.name
        if self.sig == signal.SIGSTOP:
            return COMPLETED                 # stopped 1 s: a hiccup
        dev_re = r"vfu0.*(died|exit|kill|signal)|(died|exit|kill|signal).*vfu0"
        if self.side == "src":
            if p in ("confirm", "after"):
                return COMPLETED            # its state was already sent
            # the VM keeps running here without its device; a retry is
            # refused naming the failed device.  In stop-copy the source
            # may already have read all of the device's state and sent
            # SWITCHOVER into the socket buffers while the proxy holds
            # the stream: then the migration completes (one VM, on dst)
            alt = None
            if p in STOPCOPY:
                alt = COMPLETED
            return Expect("failed", "src", dev_re, retry="refused", dev_failed="src", alt=alt,
                          alt_why="the device's state had all been read and SWITCHOVER sent "
                                  "before it died")
        if p in ("confirm", "after"):
            return Expect("completed", "dst", dev_failed="dst")
        return rolled_back(dev_re)

    def inject(self, cell):
        a = cell.src if self.side == "src" else cell.dst
        pid = a.dev_pids.get("vfu0")
        if pid is None:
            raise LabError("no device server pid on %s" % a.name)
        t0 = now()
        os.kill(pid, self.sig)
        if self.sig == signal.SIGSTOP:
            time.sleep(1.0)   # the fault's duration, not a wait
            os.kill(pid, signal.SIGCONT)
        else:
            # the agent has noticed the death before the stream moves on:
            # the cell's outcome does not depend on who wins that race
            t, _ = a.q.wait_event("DEVICE_FAILED", since=t0, timeout=30)
            cell.note("%s: DEVICE_FAILED after %.0f ms" % (a.name, (t - t0) * 1000))
        cell.release()


class WireFault(Fault):
    """At confirm the destination runs the VM (it got GO): a source that
    loses CONFIRM asks again on a new connection and completes."""
    wire = True

    def __init__(self, name, label, action, completes=False, reason=CONN_RE):
        self.name, self.label, self.action = name, label, action
        self.completes = completes
        self.reason = reason

    def expect(self, ph):
        if ph.after:
            return na("no migration stream exists after completion")
        if self.completes or ph.name == "confirm":
            return COMPLETED
        return rolled_back(self.reason)

    def inject(self, cell):
        pass   # armed at the wire point; nothing more to do


class DeviceReset(Fault):
    name = "device-reset"
    label = "device reset (x-vmig-device-reset on the source)"

    def expect(self, ph):
        if ph.name in STOPCOPY:
            return rolled_back(r"reset")
        return COMPLETED

    def inject(self, cell):
        try:
            cell.src.cmd("x-vmig-device-reset", {"device": "vfu0"})
        except QMPError as e:
            cell.note("reset refused: %s" % e.desc)
        cell.release()


class Cancel(Fault):
    name = "cancel"
    label = "vmig cancel"

    def expect(self, ph):
        if ph.name in ("confirm", "after"):
            return COMPLETED     # past GO a cancel cannot apply
        return Expect("cancelled", "src", r"cancel", retry=True)

    def inject(self, cell):
        r = subprocess.run([cell.lab.vmig, "cancel", "--qmp", cell.src.qmp_path],
                           capture_output=True, text=True, timeout=30)
        cell.cli_out = r.stdout + r.stderr
        cell.cli_rc = r.returncode
        cell.release()


class SetParam(Fault):
    def __init__(self, name, label, start, value):
        self.name, self.label, self.start, self.value = name, label, start, value

    def expect(self, ph):
        return COMPLETED

    def inject(self, cell):
        cell.src.cmd("migrate-set-parameters", self.value)
        cell.release()
        if self.name == "bandwidth-lower" and not cell.phase.after:
            # still moving at the lower rate (or done), then unlimited again
            w0 = cell.wire_bytes()
            wait_for(lambda: cell.wire_bytes() > w0 + 64 * 1024 or cell.src_done(),
                     what="progress at the lowered bandwidth")
            cell.src.cmd("migrate-set-parameters", {"max-bandwidth": 0})


class SecondMigrate(Fault):
    name = "second-migrate"
    label = "a second vmig migrate"

    def expect(self, ph):
        return COMPLETED

    def inject(self, cell):
        spare = free_port()
        r = subprocess.run([cell.lab.vmig, "migrate", "--qmp", cell.src.qmp_path,
                            "--to", "127.0.0.1:%d" % spare, "--downtime-limit", "777"],
                           capture_output=True, text=True, timeout=60)
        cell.cli_out = r.stdout + r.stderr
        cell.cli_rc = r.returncode
        if r.returncode == 0:
            cell.fail("the second migrate was not refused")
        cell.release()


class Incompatible(Fault):
    name = "incompatible-dst"
    label = "an incompatible destination (acc with 2 queue pairs)"
    dst_args = ["--device", "acc,qps=2"]

    def expect(self, ph):
        if ph.name != "connect":
            return na("refused at HELLO: no later phase is reached")
        return Expect("failed", "src", r"qp-count", retry=True, paused=False)

    def inject(self, cell):
        cell.release()


class DstDirRemoved(Fault):
    name = "dst-dir-removed"
    label = "the destination's device socket directory removed"

    def expect(self, ph):
        return COMPLETED

    def inject(self, cell):
        # the destination's directory: the one its device socket lives in
        sock = cell.dst_dev_dir
        if sock and os.path.isdir(sock):
            shutil.rmtree(sock)
        else:
            cell.note("no destination device directory found")
        cell.release()


FAULTS = [
    KillAgent("src", signal.SIGKILL),
    KillAgent("src", signal.SIGSTOP),
    KillAgent("dst", signal.SIGKILL),
    KillAgent("dst", signal.SIGSTOP),
    DevFault("src", signal.SIGKILL),
    DevFault("src", signal.SIGSTOP),
    DevFault("dst", signal.SIGKILL),
    DevFault("dst", signal.SIGSTOP),
    WireFault("cut", "proxy: connection cut (FIN)", "cut"),
    WireFault("reset", "proxy: connection reset (RST)", "reset"),
    WireFault("truncate", "proxy: stream truncated mid-frame", "truncate 30"),
    WireFault("flip", "proxy: one bit flipped", "flip 30 3",
              reason=r"corrupt|checksum|bad message|bad header"),
    WireFault("stall-short", "proxy: stall 1 s (below the peer timeout)", "stall 1000",
              completes=True),
    WireFault("stall-long", "proxy: stall 3x the peer timeout", "stall %d" % (3 * PEER_TIMEOUT_MS),
              reason=SILENT_RE),
    WireFault("throttle", "proxy: throttle to 1 MiB/s", "throttle 1M", completes=True),
    WireFault("latency", "proxy: 100 ms latency", "latency 100", completes=True),
    DeviceReset(),
    Cancel(),
    SetParam("bandwidth-lower", "max-bandwidth lowered to 1 MB/s (then lifted)", None,
             {"max-bandwidth": 1000000}),
    SetParam("bandwidth-raise", "max-bandwidth raised from 2 MB/s to unlimited",
             {"max-bandwidth": 2000000}, {"max-bandwidth": 0}),
    SetParam("downtime-lower", "downtime-limit lowered to 1 ms", {"downtime-limit": 300},
             {"downtime-limit": 1}),
    SetParam("downtime-raise", "downtime-limit raised to 2000 s", None,
             {"downtime-limit": 2000000}),
    SecondMigrate(),
    Incompatible(),
    DstDirRemoved(),
]
FAULT = {f.name: f for f in FAULTS}


def sample_cells():
    """Every fault once and every phase at least twice: fault i at phase
    (i mod 9), moved on to the next phase where the cell does not exist."""
    out = []
    for i, f in enumerate(FAULTS):
        for k in range(len(PHASES)):
            ph = PHASES[(i + k) % len(PHASES)]
            if f.expect(ph).na is None:
                out.append((f.name, ph.name))
                break
    return out


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
        try:
            wait_for(lambda: (self.acc(a).get("completed", 0) > c0 or self.acc(a).get("finished"))
                     and a.guest().get("steps", 0) > s0,
                     what="the guest and its accelerator to make progress on %s" % a.name)
        except LabError as e:
            self.fail(str(e))

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
