"""Integration test harness: a real redis-server and the real notifd binary.

Every test starts its own redis-server on a free port (no persistence) and a
notifd with a config written to a temporary directory, talks to it over real
sockets, and sends it real signals. Nothing here mocks anything.

Environment: NOTIFD_BIN (set by ctest) points at the binary under test.
NOTIFD_WRAPPER, if set, is a command line put in front of notifd, for example
"valgrind --error-exitcode=99" (scripts/valgrind.sh sets it); waits for
startup and shutdown, and the client sockets' default timeout, then last ten
times longer, since a wrapped daemon is slow.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTIFD_BIN = os.environ.get("NOTIFD_BIN", os.path.join(ROOT, "build", "notifd"))
NOTIFD_WRAPPER = shlex.split(os.environ.get("NOTIFD_WRAPPER", ""))
# Startup and shutdown waits are multiplied by this under a wrapper.
WAIT_SCALE = float(os.environ.get("NOTIFD_WAIT_SCALE", 10 if NOTIFD_WRAPPER else 1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_rss_kib(pid):
    """A process's resident set size in KiB (0 when unknown)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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

    def __init__(self, port, timeout=None):
        # Under a wrapper the daemon may go quiet for long stretches.
        timeout = 10.0 * WAIT_SCALE if timeout is None else timeout
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
                      "timeout_ms": 2000, "reconnect_min_ms": 20, "reconnect_max_ms": 200},
            "events": {"spool_dir": os.path.join(self.dir, "spool")},
            "log_level": "debug",
            "shutdown_grace_s": 5,
            # Tests run in virtual time (fixed timestamps years from the
            # wall clock); test_hostile_requests.py checks the default window.
            "limits": {"ts_window_s": 0},
        }
        if NOTIFD_WRAPPER:
            # Under valgrind notifd runs 20-50x slower: no decide deadline
            # unless a test sets one (test_redis_misbehaviour.py skips there).
            self.config["fast"] = {"deadline_ms": 0}
            self.config["redis"]["timeout_ms"] = 20000
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

    def client(self, timeout=None):
        return Client(self.port, timeout)

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
        report = sanitizer_report(self.log_text())
        shutil.rmtree(self.dir, ignore_errors=True)
        if report:
            raise AssertionError("notifd's sanitizer report:\n" + report)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def sanitizer_report(log):
    """The first sanitizer report in a daemon log, or "" (ASan/UBSan builds)."""
    for marker in SANITIZER_MARKERS:
        at = log.find(marker)
        if at >= 0:
            return log[max(0, at - 200):at + 4000]
    return ""


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


# fast.* settings for the plain weighted coin, p = per_week / E: quality at
# the plan's rate with too short a score history to rank. With a tiny
# opportunity prior p is 1, so only the caps stop sends.
PLAIN_COIN = {"pacing": "quality", "quality_quantile": "rate", "quality_history": 1,
              "quality_min_history": 2}


class NotifdTestCase(unittest.TestCase):
    """Starts a Redis and a notifd per test; subclasses set `overrides`."""

    overrides = {}

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.notifd = Notifd(self.redis.port, self.overrides)
        self.addCleanup(self.notifd.close)
        self.notifd.start()

    def client(self, timeout=None):
        c = self.notifd.client(timeout)
        self.addCleanup(c.close)
        return c


class EventSink:
    """A real HTTP endpoint for decision events, in its own process so a test
    can kill it (SIGKILL, mid-request) and start it again on the same port.

    It records every line of every accepted (2xx) POST in received.ndjson and
    one JSON line per answered request in requests.ndjson (status, line
    count, content type, client port: the same port on successive requests
    means the connection was kept alive), and one line per request received
    in started.ndjson, so in_flight() tells whether a request is hanging. What it answers is read per request from
    control.json, so a test switches it between fast, slow (sleep seconds
    before answering) and failing (any status) without restarting it.
    """

    def __init__(self, port=None, workdir=None):
        self.port = port or free_port()
        self.dir = workdir or tempfile.mkdtemp(prefix="notifd-sink-")
        self.received_path = os.path.join(self.dir, "received.ndjson")
        self.requests_path = os.path.join(self.dir, "requests.ndjson")
        self.started_path = os.path.join(self.dir, "started.ndjson")
        self.control_path = os.path.join(self.dir, "control.json")
        self.proc = None
        self.set(status=200, sleep=0)

    @property
    def url(self):
        return "http://127.0.0.1:%d/events" % self.port

    def set(self, status=200, sleep=0, validate=False):
        """validate: answer 400 to a body with any line that is not a JSON
        object, as a strict receiver would (and record nothing of it)."""
        tmp = self.control_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"status": status, "sleep": sleep, "validate": validate}, f)
        os.replace(tmp, self.control_path)

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "event-sink",
                                      str(self.port), self.dir])

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("event sink exited with %s" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, what="the event sink to listen")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def _lines(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        # Only whole lines: the sink may be writing the next one right now.
        return [json.loads(l) for l in data.split(b"\n")[:-1] if l.strip()]

    def events(self):
        return self._lines(self.received_path)

    def requests(self):
        return self._lines(self.requests_path)

    def in_flight(self):
        return len(self._lines(self.started_path)) - len(self.requests())

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _is_json_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _event_sink_main(port, workdir):
    """The EventSink process (python3 harness.py event-sink PORT DIR)."""
    import http.server
    import threading
    lock = threading.Lock()
    received = open(os.path.join(workdir, "received.ndjson"), "ab")
    requests_log = open(os.path.join(workdir, "requests.ndjson"), "ab")
    started_log = open(os.path.join(workdir, "started.ndjson"), "ab")
    control_path = os.path.join(workdir, "control.json")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                started_log.write(b"{}\n")
                started_log.flush()
            try:
                with open(control_path) as f:
                    control = json.load(f)
            except (OSError, ValueError):
                control = {"status": 200, "sleep": 0}
            if control.get("sleep"):
                time.sleep(control["sleep"])
            status = int(control.get("status", 200))
            lines = [l for l in body.split(b"\n") if l.strip()]
            if control.get("validate") and not all(_is_json_object(l) for l in lines):
                status = 400
            with lock:
                if 200 <= status < 300:
                    received.write(b"".join(l + b"\n" for l in lines))
                    received.flush()
                requests_log.write(json.dumps({
                    "status": status, "lines": len(lines), "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "client_port": self.client_address[1]}).encode() + b"\n")
                requests_log.flush()
            reply = b"{}" if status < 400 else b'{"error":"test sink says no"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, fmt, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "event-sink":
        _event_sink_main(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: harness.py event-sink PORT DIR")
