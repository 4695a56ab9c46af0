# SPDX-License-Identifier: MIT
"""vmiglab - drive vmig agents, their QMP sockets and vmig-faultproxy from a
test: start agents in a private directory, talk QMP (events timestamped as
they arrive), arm proxy rules, wait on conditions (events, states, counters)
with deadlines, never on fixed sleeps.  Python 3 standard library only.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DEADLINE = float(os.environ.get("VMIG_FAULTS_DEADLINE", "60"))


class LabError(Exception):
    pass


class QMPError(Exception):
    def __init__(self, cls, desc):
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


def now():
    """CLOCK_MONOTONIC seconds (what vmig-faultproxy's ms= counts)."""
    return time.monotonic()


def wait_for(cond, timeout=DEADLINE, what="a condition", step=0.02):
    """Poll cond() until it returns something true; its value is returned.
    The step only paces the polling: the deadline is what bounds it."""
    end = now() + timeout
    while True:
        v = cond()
        if v:
            return v
        if now() >= end:
            raise LabError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class QMP:
    """A QMP client on a UNIX socket.  Events are kept in self.events as
    (monotonic time received, event dict)."""

    def __init__(self, path, timeout=DEADLINE):
        self.path = path
        self.sock = None
        self.buf = b""
        self.events = []
        self.next_id = 1
        end = now() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                break
            except OSError:
                s.close()
                if now() >= end:
                    raise LabError("no QMP socket at %s" % path)
                time.sleep(0.02)
        greeting = self._read_obj(timeout)
        if "QMP" not in greeting:
            raise LabError("not a QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return False
        data = self.sock.recv(1 << 20)
        if not data:
            raise LabError("QMP connection %s closed" % self.path)
        self.buf += data
        return True

    def _read_obj(self, timeout):
        end = now() + timeout
        while b"\n" not in self.buf:
            if not self._fill(end - now()) and now() >= end:
                raise LabError("QMP %s: no reply within %.0f s" % (self.path, timeout))
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode())

    def _take(self, obj):
        if "event" in obj:
            self.events.append((now(), obj))
            return None
        return obj

    def cmd(self, name, args=None, timeout=DEADLINE):
        """Execute; return the "return" value or raise QMPError."""
        req = {"execute": name, "id": self.next_id}
        self.next_id += 1
        if args is not None:
            req["arguments"] = args
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while True:
            obj = self._take(self._read_obj(timeout))
            if obj is None:
                continue
            if obj.get("id") != req["id"]:
                continue
            if "error" in obj:
                raise QMPError(obj["error"].get("class"), obj["error"].get("desc"))
            return obj.get("return")

    def poll(self, timeout=0.0):
        """Take in events that arrived (waiting up to timeout for one)."""
        end = now() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self._take(json.loads(line.decode()))
            if not self._fill(end - now()) and now() >= end:
                return

    def find_event(self, name, pred=None, since=0.0):
        for t, ev in self.events:
            if t >= since and ev.get("event") == name and (
                    pred is None or pred(ev.get("data", {}))):
                return t, ev
        return None

    def wait_event(self, name, pred=None, since=0.0, timeout=DEADLINE):
        end = now() + timeout
        while True:
            hit = self.find_event(name, pred, since)
            if hit:
                return hit
            if now() >= end:
                raise LabError("QMP %s: no %s event within %.0f s" % (self.path, name, timeout))
            self.poll(min(0.2, max(end - now(), 0)))


class Agent:
    """A vmig agent process (vmig run / vmig receive)."""

    def __init__(self, lab, name, mode, args, listen_port=None, env=None):
        self.lab = lab
        self.name = name
        self.qmp_path = os.path.join(lab.dir, name + ".qmp")
        self.log_path = os.path.join(lab.dir, name + ".log")
        argv = [lab.vmig, mode, "--qmp", self.qmp_path]
        if mode == "receive":
            argv += ["--listen", "127.0.0.1:%d" % listen_port]
        argv += args
        e = dict(os.environ)
        e["TMPDIR"] = lab.tmpdir
        e.update(env or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=e)
        self.pid = self.proc.pid
        self.port = listen_port
        self.stopped = False
        self.q = None
        self.dev_pids = {}
        try:
            self.q = QMP(self.qmp_path)
        except LabError:
            self.proc.poll()
            raise LabError("%s did not come up: %s" % (name, self.tail()))
        self.refresh_devices()

    def tail(self, n=15):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def refresh_devices(self):
        try:
            for d in self.q.cmd("x-vmig-query-devices"):
                if "pid" in d:
                    self.dev_pids[d["name"]] = d["pid"]
        except (QMPError, LabError, OSError):
            pass
        self.lab.pids.update(self.dev_pids.values())
        return self.dev_pids

    def signal(self, sig):
        os.kill(self.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def cmd(self, name, args=None, timeout=DEADLINE):
        return self.q.cmd(name, args, timeout)

    def status(self):
        """QEMU runstate, or None when the agent is gone or stopped."""
        if not self.alive() or self.stopped:
            return None
        try:
            return self.q.cmd("query-status", timeout=20)["status"]
        except (QMPError, LabError, OSError):
            return None

    def guest(self):
        return self.q.cmd("x-vmig-query-guest")

    def migrate_info(self):
        return self.q.cmd("query-migrate")

    def quit(self, timeout=20):
        if self.alive():
            if self.stopped:
                self.signal(signal.SIGCONT)
            try:
                self.q.cmd("quit", timeout=5)
            except (QMPError, LabError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.q is not None:
            self.q.close()
        self.log.close()


class Proxy:
    """vmig-faultproxy between a source and a destination port."""

    def __init__(self, lab, name, target_port, arms=()):
        self.ctl = os.path.join(lab.dir, name + ".ctl")
        pf = os.path.join(lab.dir, name + ".port")
        self.log_path = os.path.join(lab.dir, name + ".log")
        self.log = open(self.log_path, "w")
        argv = [lab.proxy, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:%d" % target_port,
                "--control", self.ctl, "--port-file", pf, "-v"]
        for a in arms:
            argv += ["--arm", a]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        lab.pids.add(self.proc.pid)
        wait_for(lambda: os.path.exists(pf), 20, "the proxy's port file")
        with open(pf) as f:
            self.port = int(f.read())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_for(lambda: self._connect(), 20, "the proxy's control socket")
        self.buf = b""

    def _connect(self):
        try:
            self.sock.connect(self.ctl)
            return True
        except OSError:
            return False

    def _line(self, timeout):
        end = now() + timeout
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.sock], [], [], max(end - now(), 0))
            if not r:
                raise LabError("proxy: no answer within %.0f s" % timeout)
            data = self.sock.recv(4096)
            if not data:
                raise LabError("proxy control socket closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def command(self, line, timeout=30):
        self.sock.sendall((line + "\n").encode())
        return self._line(timeout)

    def arm(self, rule):
        r = self.command("arm " + rule)
        if not r.startswith("ok "):
            raise LabError("proxy refused rule '%s': %s" % (rule, r))
        return int(r.split()[1])

    def wait(self, rid, timeout=DEADLINE):
        """Wait until rule rid fired; return its record (dict) or None."""
        r = self.command("wait %d %d" % (rid, int(timeout * 1000)), timeout + 5)
        if not r.startswith("fired "):
            return None
        out = {"id": rid}
        for kv in r.split()[2:]:
            k, v = kv.split("=", 1)
            out[k] = int(v) if v.isdigit() else v
        out["t"] = out["ms"] / 1000.0
        return out

    def release(self, d=None):
        return self.command("release" + (" " + d if d else ""))

    def clear(self):
        return self.command("clear")

    def connect(self):
        """A TCP connection through the proxy."""
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def status(self):
        self.sock.sendall(b"status\n")
        lines = []
        while True:
            line = self._line(10)
            if line == "end":
                return lines
            lines.append(line)

    def quit(self):
        try:
            self.command("quit", 5)
        except (LabError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self.log.close()


class Lab:
    """A private directory (also the agents' TMPDIR) and what runs in it."""

    def __init__(self, vmig, proxy, keep=False, name="lab"):
        self.vmig = vmig
        self.proxy = proxy
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="vmig-%s-" % name)
        self.tmpdir = os.path.join(self.dir, "tmp")
        os.mkdir(self.tmpdir)
        self.agents = []
        self.proxies = []
        self.pids = set()

    def agent(self, name, mode, args, listen_port=None, env=None):
        a = Agent(self, name, mode, args, listen_port, env)
        self.agents.append(a)
        self.pids.add(a.pid)
        return a

    def proxy_to(self, name, port, arms=()):
        p = Proxy(self, name, port, arms)
        self.proxies.append(p)
        return p

    def dev_dirs(self):
        return sorted(d for d in os.listdir(self.tmpdir) if d.startswith("vmig-dev-"))

    def live_pids(self):
        """Processes started here that still exist (zombies count: nobody
        reaped them)."""
        out = []
        for p in sorted(self.pids):
            try:
                with open("/proc/%d/stat" % p) as f:
                    st = f.read()
            except OSError:
                continue
            out.append((p, st.rsplit(")", 1)[1].split()[0]))
        return out

    def shutdown(self):
        for p in self.proxies:
            p.quit()
        for a in self.agents:
            a.quit()
        self.proxies = []
        self.agents = []

    def cleanup(self, ok):
        self.shutdown()
        if ok and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Checks:
    """check(cond, what): record and print a failed check; .failures."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        if not cond:
            self.failures.append(what)
            print("FAIL: " + what, flush=True)
        return cond


def grep(pattern, text):
    return re.search(pattern, text or "", re.I | re.S) is not None


def run_cases(vmig, cases, names, failures, check, prefix="", proxy=None):
    """Run each named case (all when none) in a Lab of its own, then check
    that nothing it started is left; a failed case keeps its directory.
    Return the exit status: 1 when any check failed."""
    for name in names or list(cases):
        lab = Lab(vmig, proxy, name=prefix + name)
        n0 = len(failures)
        try:
            cases[name](lab)
        except (LabError, QMPError, KeyError, subprocess.SubprocessError) as e:
            check(False, "%s: %s: %s" % (name, type(e).__name__, e))
        lab.shutdown()
        check(not lab.live_pids(), "%s: processes left: %s" % (name, lab.live_pids()))
        check(not lab.dev_dirs(), "%s: directories left: %s" % (name, lab.dev_dirs()))
        lab.cleanup(len(failures) == n0)
        if len(failures) != n0:
            print("%s: kept %s" % (name, lab.dir))
    print("%s: %d failures" % ("FAIL" if failures else "ok", len(failures)))
    return 1 if failures else 0
