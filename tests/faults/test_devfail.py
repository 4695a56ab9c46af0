#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A vfio-user device server that dies (issue 14, defects 3 and 5), between
real agent processes:

  idle     the source's test device server is killed: a DEVICE_FAILED event
           names the device, its pid and the signal; x-vmig-query-devices
           and `vmig status` show it failed; the guest and the other device
           go on; `vmig check` and `vmig migrate` are refused naming it;
           after device_del (DEVICE_DELETED) the VM migrates with its other
           device, guest RAM precopied with dirty tracking, and verifies
  dstidle  the destination's device server is killed: `vmig check` from a
           healthy source is refused naming the destination's failed device
  srcmig   the source's accelerator server dies during a migration: it
           fails naming the device, the VM keeps running on the source
  dstmig   the destination's accelerator server dies while it receives: the
           source's reason is the destination's, naming the device

usage: test_devfail.py VMIG [CASE...]
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG = sys.argv[1]
check = Checks()
failures = check.failures


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def cli(*args):
    r = subprocess.run([VMIG] + list(args), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def devices(a):
    return {d["name"]: d for d in a.cmd("x-vmig-query-devices")}


def guest_moves(a, what):
    s0 = a.guest().get("steps", 0)
    wait_for(lambda: a.guest().get("steps", 0) > s0, what="the guest to run on %s %s" % (a.name, what))
    check(a.guest().get("verified"), "%s: the guest verifies %s" % (a.name, what))


def kill_dev(a, name):
    pid = a.refresh_devices()[name]
    t0 = now()
    os.kill(pid, signal.SIGKILL)
    t, ev = a.q.wait_event("DEVICE_FAILED", since=t0, timeout=30)
    d = ev.get("data", {})
    print("%s: %s died; DEVICE_FAILED after %.0f ms" % (a.name, name, (t - t0) * 1000))
    check(d.get("device") == name, "the event names the device: %s" % d)
    check(d.get("pid") == pid, "the event names the pid %d: %s" % (pid, d))
    check(d.get("signal") == 9 and "SIGKILL" in d.get("reason", ""),
          "the event names the signal: %s" % d)
    return t - t0


def case_idle(lab):
    two = ["--ram", "32M", "--device", "testdev,size=2", "--device", "flowtab,state=2"]
    src = lab.agent("src", "run", two)
    dst = lab.agent("dst", "receive", two, free_port())
    kill_dev(src, "vfu0")
    d = devices(src)
    check(d["vfu0"].get("state") == "failed" and "SIGKILL" in d["vfu0"].get("error", ""),
          "x-vmig-query-devices shows the device failed: %s" % d["vfu0"])
    check(d["vfu1"].get("state") == "RUNNING", "the other device runs: %s" % d["vfu1"])
    rc, out = cli("status", "--qmp", src.qmp_path)
    check(rc == 0 and grep(r"vfu0.*failed.*SIGKILL", out), "vmig status shows it failed: %s" % out)
    guest_moves(src, "after its device died")
    rc, out = cli("check", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % dst.port)
    check(rc == 1 and grep(r"vfu0.*failed", out), "vmig check refuses naming it: %s" % out)
    rc, out = cli("migrate", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % dst.port)
    check(rc == 1 and grep(r"vfu0.*failed", out), "vmig migrate refuses naming it: %s" % out)
    check(src.status() == "running", "the VM still runs after the refusals")
    # take it out; the VM migrates with its other device (the flowtab,
    # whose traffic the guest checks)
    t0 = now()
    src.cmd("device_del", {"id": "vfu0"})
    src.q.wait_event("DEVICE_DELETED", lambda e: e.get("device") == "vfu0", since=t0)
    check("vfu0" not in devices(src), "device_del took it out of x-vmig-query-devices")
    one = lab.agent("one", "receive", ["--ram", "32M", "--device", "flowtab,state=2,name=vfu1"],
                    free_port())
    rc, out = cli("check", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % one.port)
    check(rc == 0, "vmig check passes with the other device: %s" % out)
    rc, out = cli("migrate", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % one.port, "--json")
    check(rc == 0, "the VM migrates with its other device: %s" % out[-600:])
    m = src.migrate_info()
    check(m.get("x-vmig-precopy", {}).get("enabled") and m.get("ram", {}).get("dirty-sync-count", 0) > 1,
          "guest RAM was precopied with dirty tracking: %s" % m)
    wait_for(lambda: not one.guest().get("busy"), what="the destination to settle")
    guest_moves(one, "after the migration")
    check(devices(one)["vfu1"].get("state") == "RUNNING", "its device runs on the destination")
    ft = (one.guest().get("flowtab") or [{}])[0]
    check(ft.get("verified") and ft.get("bad") == 0, "its traffic verifies: %s" % ft)


def case_dstidle(lab):
    two = ["--ram", "32M", "--device", "testdev,size=2", "--device", "flowtab,state=2"]
    src = lab.agent("src", "run", two)
    dst = lab.agent("dst", "receive", two, free_port())
    kill_dev(dst, "vfu1")
    rc, out = cli("check", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % dst.port)
    check(rc == 1 and grep(r"vfu1.*failed.*SIGKILL", out),
          "vmig check refuses a destination whose device failed, naming it: %s" % out)
    rc, out = cli("migrate", "--qmp", src.qmp_path, "--to", "127.0.0.1:%d" % dst.port)
    check(rc == 1 and grep(r"vfu1.*failed", out), "so does vmig migrate: %s" % out)
    check(src.status() == "running", "the source runs")


def mig_with_kill(lab, side):
    acc = ["--ram", "32M", "--device", "acc"]
    src = lab.agent("src", "run", acc + ["--acc-requests", "200000"])
    dst = lab.agent("dst", "receive", acc, free_port())
    wait_for(lambda: (src.guest().get("accelerator") or {}).get("completed", 0) > 0,
             what="the accelerator workload to start")
    t = now()
    src.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 20})
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
    wait_for(lambda: src.migrate_info().get("ram", {}).get("transferred", 0) > 0,
             what="the migration to move data")
    kill_dev(src if side == "src" else dst, "vfu0")
    _, ev = src.q.wait_event("MIGRATION", lambda e: e.get("status") in
                             ("completed", "failed", "cancelled"), since=t)
    err = src.migrate_info().get("error-desc", "")
    print("source: %s: %s" % (ev["data"]["status"], err))
    check(ev["data"]["status"] == "failed", "the migration failed")
    wait_for(lambda: not src.guest().get("busy"), what="the source to settle")
    check(src.status() == "running", "the VM runs on the source")
    return src, dst, err


def case_srcmig(lab):
    src, dst, err = mig_with_kill(lab, "src")
    check(grep(r"vfu0.*(failed|died|killed)", err), "the reason names the device's death: %s" % err)
    guest_moves(src, "after its device died mid-migration")


def case_dstmig(lab):
    src, dst, err = mig_with_kill(lab, "dst")
    check(grep(r"destination.*vfu0.*(failed|died|killed)", err),
          "the source's reason is the destination's, naming its device: %s" % err)
    check(dst.status() == "inmigrate", "the destination discarded")
    guest_moves(src, "after the destination's device died")


def case_agentkill(lab):
    """kill -9 of an agent (issue 14, defect 8): its device servers die
    with it and its vmig-dev-* directory goes too, without waiting for the
    next agent's stale clean-up."""
    a = lab.agent("src", "run", ["--ram", "32M", "--device", "acc", "--device", "testdev,size=2"])
    dirs = lab.dev_dirs()
    check(len(dirs) == 1, "the agent made its device directory: %s" % dirs)
    pids = list(a.refresh_devices().values())
    a.signal(signal.SIGKILL)
    a.proc.wait()
    t0 = now()
    wait_for(lambda: not lab.dev_dirs(), 30, "the killed agent's directory to go")
    print("directory gone %.0f ms after the agent died" % ((now() - t0) * 1000))
    wait_for(lambda: not [p for p in pids if os.path.exists("/proc/%d" % p)], 30,
             "its device servers to go")


CASES = {"agentkill": case_agentkill, "idle": case_idle, "dstidle": case_dstidle, "srcmig": case_srcmig,
         "dstmig": case_dstmig}


def main():
    return run_cases(VMIG, CASES, sys.argv[2:], failures, check, "devfail-")


if __name__ == "__main__":
    sys.exit(main())
