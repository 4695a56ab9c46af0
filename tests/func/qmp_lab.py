# SPDX-License-Identifier: MIT
"""The QMP scenarios' lab (qmp_scenarios.py): vmig agents started with a QMP
socket in the run's temporary directory (and stopped at the end), the CLI,
counted checks that fail with the agents' last log lines, and waiting on a
condition.  VMIG and TMP are set by qmp_scenarios.py's main.
"""
import os
import socket
import subprocess
import sys
import time

from qmpclient import QMPError, wait_socket  # noqa

VMIG = None
TMP = None
PROCS = []
CHECKS = 0

VM = ["--ram", "16M", "--dev-state", "256K"]


def log_tail():
    for name in sorted(os.listdir(TMP)):
        if name.endswith(".log"):
            with open(os.path.join(TMP, name), errors="replace") as f:
                lines = f.readlines()[-15:]
            sys.stderr.write("--- %s\n%s" % (name, "".join(lines)))


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    log_tail()
    raise SystemExit(1)


def check(cond, msg):
    global CHECKS
    CHECKS += 1
    if not cond:
        fail(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def agent(name, mode, *extra, env=None, umask=None, wait=True):
    """Start `vmig run` (mode "-") or `vmig receive` on port @mode (None:
    without --listen)."""
    qmp = os.path.join(TMP, name + ".qmp")
    args = [VMIG, "run" if mode == "-" else "receive", "--qmp", qmp] + VM
    if mode not in ("-", None):
        args += ["--listen", "127.0.0.1:%d" % mode]
    args += list(extra)
    e = dict(os.environ, TMPDIR=TMP)
    if env:
        e.update(env)

    def pre():
        if umask is not None:
            os.umask(umask)

    logf = open(os.path.join(TMP, name + ".log"), "w")
    p = subprocess.Popen(args, stderr=logf, stdout=subprocess.DEVNULL,
                         env=e, preexec_fn=pre)
    p.qmp = qmp
    p.logname = os.path.join(TMP, name + ".log")
    PROCS.append(p)
    if wait:
        wait_socket(qmp, p)
    return p


def cli(*args, user=None, timeout=120):
    def pre():
        if user is not None:
            os.setgid(user)
            os.setuid(user)
    r = subprocess.run([VMIG] + list(args), capture_output=True, text=True,
                       timeout=timeout, preexec_fn=pre,
                       env=dict(os.environ, TMPDIR=TMP))
    return r.returncode, r.stdout + r.stderr


def wait_until(what, fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def statuses(q):
    return [e["data"]["status"] for e in q.events if e["event"] == "MIGRATION"]


def params(q):
    return q.cmd("query-migrate-parameters")


def expect_error(q, cmd, args, cls, desc_part, oob=False):
    try:
        r = q.cmd(cmd, args, oob=oob)
    except QMPError as e:
        check(e.cls == cls, "%s %r: class %s, expected %s (%s)" %
              (cmd, args, e.cls, cls, e.desc))
        check(desc_part in e.desc, "%s %r: %r lacks %r" %
              (cmd, args, e.desc, desc_part))
        return
    fail("%s %r was accepted: %r" % (cmd, args, r))
