# SPDX-License-Identifier: MIT
"""The fault matrix's axes (matrix.py runs the cells): the phases of a live
migration where a fault lands (each with where the proxy holds the stream
and where a wire fault is armed), the faults themselves (each: the outcome
it must end in at each phase, and how it is injected into a running cell),
the sample (every fault once, every phase at least twice) and the agents'
timeouts the expectations rely on.
"""
import os
import shutil
import signal
import subprocess
import time

from vmiglab import LabError, QMPError, free_port, now, wait_for

PEER_TIMEOUT_MS = 3000
# the commit protocol's recovery window (x-vmig-recover-timeout): how long
# a source that lost the answer to GO asks again, and how long a
# destination holds a loaded VM whose source vanished before GO
RECOVER_TIMEOUT_MS = 15000
PRECOPY_PASSES = 3          # precopy iterations before the cap switches over
FINAL_PASS = PRECOPY_PASSES + 1
# The guest's ledger program runs 524032 steps in 32 MiB and then has
# finished (its steps stop moving); at 4000 steps/s it outlasts the
# longest cell (a throttled migration, a minute or two under load), so
# its progress stays observable after every migration
VM = ["--ram", "32M", "--device", "acc", "--rate", "4000"]
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
