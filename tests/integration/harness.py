"""Integration test harness: a real redis-server and the real notifd binary.

Every test starts its own redis-server on a free port (no persistence) and a
notifd with a config written to a temporary directory, talks to it over real
sockets, and sends it real signals. Nothing here mocks anything.

Environment: NOTIFD_BIN (set by ctest) points at the binary under test.
NOTIFD_WRAPPER, if set, is a command line put in front of notifd, for example
"valgrind --error-exitcode=99" (scripts/valgrind.sh sets it); waits for
startup and shutdown then last ten times longer, since a wrapped daemon is
slow to start and to exit.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTIFD_BIN = os.environ.get("NOTIFD_BIN", os.path.join(ROOT, "build", "notifd"))
NOTIFD_WRAPPER = shlex.split(os.environ.get("NOTIFD_WRAPPER", ""))
# Startup and shutdown waits are multiplied by this under a wrapper.
WAIT_SCALE = 10 if NOTIFD_WRAPPER else 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


class Redis:
    """A private redis-server: started, stopped, restarted on one port."""

    def __init__(self, port=None, password=None):
        self.port = port or free_port()
        self.password = password
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="notifd-redis-")

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--enable-debug-command", "local",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, what="redis-server to answer PING")
        return self

    def ping(self):
        try:
            return self.command("PING") in ("PONG", b"PONG")
        except OSError:
            return False

    def command(self, *args):
        """One command over a fresh connection; returns the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rwb")
            if self.password:
                f.write(_resp_encode(["AUTH", self.password]))
                f.flush()
                _resp_read(f)
            f.write(_resp_encode(list(args)))
            f.flush()
            return _resp_read(f)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP reply %r" % line)


class Client:
    """A producer connection: newline-delimited JSON, pipelining allowed."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("notifd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, obj):
        self.send(obj)
        return self.read_line()

    def pipeline(self, objs):
        self.sock.sendall(b"".join(json.dumps(o).encode() + b"\n" for o in objs))
        return [self.read_line() for _ in objs]

    def close(self):
        self.sock.close()


class Notifd:
    """The real binary on a generated config; stderr is kept for asserts."""

    def __init__(self, redis_port, overrides=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="notifd-test-")
        self.port = free_port()
        self.admin_port = free_port()
        self.config = {
            "listen": "127.0.0.1:%d" % self.port,
            "admin_listen": "127.0.0.1:%d" % self.admin_port,
            "redis": {"host": "127.0.0.1", "port": redis_port, "prefix": "t:",
                      "timeout_ms": 200, "reconnect_min_ms": 20, "reconnect_max_ms": 200},
            "events": {"spool_dir": os.path.join(self.dir, "spool")},
            "log_level": "debug",
            "shutdown_grace_s": 5,
        }
        _merge(self.config, overrides or {})
        self.config_path = os.path.join(self.dir, "notifd.json")
        self.log_path = os.path.join(self.dir, "notifd.log")
        self.proc = None

    def write_config(self, config=None, raw=None):
        with open(self.config_path, "w") as f:
            f.write(raw if raw is not None else json.dumps(config or self.config, indent=1))

    def start(self, wait_ready=True, extra_args=()):
        self.write_config()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*NOTIFD_WRAPPER, NOTIFD_BIN, "-c", self.config_path,
                                      *extra_args],
                                     stdout=self.log, stderr=self.log, cwd=self.dir)
        wait_for(self._listening, timeout=10.0 * WAIT_SCALE, what="notifd to listen")
        if wait_ready:
            wait_for(lambda: self.health().get("redis", {}).get("ready"),
                     timeout=10.0 * WAIT_SCALE, what="redis ready")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("notifd exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def client(self):
        return Client(self.port)

    def request(self, obj):
        """One request over its own short-lived connection."""
        c = self.client()
        try:
            return c.request(obj)
        finally:
            c.close()

    def health(self):
        return self.request({"op": "health"})

    def signal(self, signo):
        self.proc.send_signal(signo)

    def wait(self, timeout=15):
        return self.proc.wait(timeout=timeout * WAIT_SCALE)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15 * WAIT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


class NotifdTestCase(unittest.TestCase):
    """Starts a Redis and a notifd per test; subclasses set `overrides`."""

    overrides = {}

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.notifd = Notifd(self.redis.port, self.overrides)
        self.addCleanup(self.notifd.close)
        self.notifd.start()

    def client(self):
        c = self.notifd.client()
        self.addCleanup(c.close)
        return c
