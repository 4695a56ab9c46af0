#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Parallel channels (multifd-channels) between real agent processes.

cut: both agents with 3 channels, a vfio-user test device and an
     in-process one; vmig-faultproxy relays every connection and cuts the
     first one to carry device data at stop-copy (an extra channel: with
     channels the main connection carries none).  The migration must fail as a whole: the source
     rolls back and runs on, verified; the destination discards and keeps
     waiting; a retry straight to the destination completes with every
     device and the guest verified there.
tls: the same over TLS (a pre-shared key): every extra connection does its
     own handshake and must be accepted; the migration completes.
one: the source wants 3 channels, the destination allows 1: one
     connection, as before channels; completes.

usage: test_channels.py VMIG VMIG-FAULTPROXY [CASE...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmiglab import Checks, QMPError, free_port, grep, now, run_cases, wait_for  # noqa: E402

VMIG, PROXY = sys.argv[1], sys.argv[2]
check = Checks()
ARGS = ["--ram", "32M", "--devices", "1", "--dev-state", "8M", "--device", "testdev,size=16"]


def finish(agent, since, timeout=180):
    _, ev = agent.q.wait_event("MIGRATION", lambda e: e.get("status") in
                               ("completed", "failed", "cancelled"),
                               since=since, timeout=timeout)
    return ev["data"]["status"]


def landed(src, dst, since):
    st = finish(src, since)
    check(st == "completed", "the migration completed: %s" % src.migrate_info())
    wait_for(lambda: dst.status() == "running", what="the destination to run")
    wait_for(lambda: not dst.guest().get("busy"), what="the destination to settle")
    check(dst.guest().get("verified"), "the guest verifies on the destination")


def params(a, n):
    a.cmd("migrate-set-parameters", {"multifd-channels": n, "x-vmig-precopy": False})
    got = a.cmd("query-migrate-parameters").get("multifd-channels")
    check(got == n, "%s: multifd-channels reads back %s" % (a.name, got))


def case_cut(lab):
    src = lab.agent("src", "run", ARGS)
    dst = lab.agent("dst", "receive", ARGS, free_port())
    params(src, 3)
    params(dst, 3)
    # out of range: refused, nothing changed
    for bad in (0, 17):
        try:
            src.cmd("migrate-set-parameters", {"multifd-channels": bad})
            check(False, "multifd-channels %d accepted" % bad)
        except QMPError as e:
            check(grep("multifd-channels", e.desc), "refusal names the parameter: %s" % e.desc)
    check(src.cmd("query-migrate-parameters").get("multifd-channels") == 3,
          "a refused value changed nothing")
    px = lab.proxy_to("px", dst.port)
    rid = px.arm("fwd frame=DEV_DATA cut")
    wait_for(lambda: src.guest().get("steps", 0) > 0, what="the guest to run")
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    fired = px.wait(rid, 120)
    check(fired is not None and fired.get("conn", 1) != 1,
          "the proxy cut an extra channel in its device data: %s" % fired)
    st = finish(src, t)
    err = src.migrate_info().get("error-desc", "")
    print("source: %s: %s" % (st, err))
    check(st == "failed", "the migration failed as a whole")
    wait_for(lambda: not src.guest().get("busy"), what="the source to settle")
    check(src.status() == "running", "the VM runs on the source")
    s0 = src.guest().get("steps", 0)
    wait_for(lambda: src.guest().get("steps", 0) > s0, what="the guest to run on the source")
    check(src.guest().get("verified"), "the guest verifies on the source")
    wait_for(lambda: dst.migrate_info().get("status") in ("failed", "setup"),
             what="the destination to give the migration up")
    check(dst.status() == "inmigrate", "the destination discarded and waits")
    px.clear()
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst.port})
    landed(src, dst, t)


def write_psk(lab):
    path = os.path.join(lab.dir, "keys.psk")
    with open(path, "w") as f:
        f.write("qemu:%s\n" % os.urandom(32).hex())
    os.chmod(path, 0o600)
    return path


def case_tls(lab):
    psk = write_psk(lab)
    tls = ["--tls-psk", psk]
    src = lab.agent("src", "run", ARGS + tls)
    dst = lab.agent("dst", "receive", ARGS + tls, free_port())
    params(src, 3)
    params(dst, 3)
    px = lab.proxy_to("px", dst.port)
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    landed(src, dst, t)
    info = src.migrate_info()
    check(info.get("x-vmig-tls", {}).get("enabled"), "the migration used TLS")
    check(info.get("ram", {}).get("multifd-bytes", 0) > 16 << 20,
          "the extra connections carried the devices: multifd-bytes %s" %
          info.get("ram", {}).get("multifd-bytes"))
    with open(px.log_path) as f:
        opened = [ln for ln in f if grep(r"conn \d+: open", ln)]
    check(len(opened) == 3, "three connections, each with its handshake: %s" % opened)


def case_one(lab):
    src = lab.agent("src", "run", ARGS)
    dst = lab.agent("dst", "receive", ARGS, free_port())
    params(src, 3)
    params(dst, 1)
    px = lab.proxy_to("px", dst.port)
    t = now()
    src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % px.port})
    landed(src, dst, t)
    with open(px.log_path) as f:
        opened = [ln for ln in f if grep(r"conn \d+: open", ln)]
    check(len(opened) == 1, "one connection only: %s" % opened)


CASES = {"cut": case_cut, "tls": case_tls, "one": case_one}


def main():
    return run_cases(VMIG, CASES, sys.argv[3:], check.failures, check, "channels-", PROXY)


if __name__ == "__main__":
    sys.exit(main())
