#!/usr/bin/env python3
"""Fast-path latency with and without a planner pass running.

Starts its own redis-server and notifd (planner timer off), loads --members
members with features (scripts/gen_members.py), then measures decide
latency on one connection, one request at a time, at a fixed rate, in
alternating phases:
  baseline 0, pass 0, baseline 1, pass 1, ..., baseline N
where a baseline is --seconds of decides with no pass, and a pass phase is
decides while a planner_run (as of a time that makes every member due)
runs on another connection, measured only while the pass runs. Pass 0
writes every plan for the first time; later passes replace them (the
steady state), as in scripts/bench_planner.sh.

Prints p50/p99/max of every phase and, per pass, the ratio of its p99 to
the mean p99 of the baselines right before and after it: on a shared
machine the baseline itself moves, so a pass is compared with its own
neighbours. The issue's bound: a running pass must not push the fast
path's p99 up by more than 2x.

With --diagnose it also prints, per phase, where a decide's time went:
the share of decides that took notifd over 1 ms and of Redis round trips
over 0.5 ms (notifd's /metrics histograms), the commands Redis's slow log
caught over --slow-us, and each thread's CPU time and run-queue wait
(/proc/PID/task/TID/schedstat) for redis-server and notifd.

Usage: scripts/bench_planner_p99.py [--members 300000] [--rate 2000]
           [--seconds 5] [--passes 2] [--batch 64] [--nice 10] [--max-rate 0]
           [--diagnose [--slow-us 300]]
Environment: NOTIFD_BIN (default build/notifd).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_members  # noqa: E402

DUE = 1700000000
WEEK = 604800


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rwb")

    def req(self, o):
        self.f.write(json.dumps(o).encode() + b"\n")
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise BenchError("notifd closed the connection")
        return json.loads(line)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def measure(c, rate, until, start_i, ts):
    """Decides at `rate`/s until until() is true; returns latencies (s)."""
    lat = []
    period = 1.0 / rate
    nxt = time.perf_counter()
    i = start_i
    while not until():
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        nxt += period
        m = "m%08d" % (i % 100000)
        t0 = time.perf_counter()
        r = c.req({"op": "decide", "member": m, "channel": "push", "opportunity": "o%d" % i,
                   "ts": ts, "candidates": [{"id": "c1", "score": 0.5},
                                            {"id": "c2", "score": 0.3}]})
        lat.append(time.perf_counter() - t0)
        if not r.get("ok"):
            raise BenchError("decide failed: %r" % r)
        i += 1
    return lat, i


class Diagnosis:
    """Per-phase figures of where a decide's time went (--diagnose)."""

    def __init__(self, admin_port, redis_port, pids, slow_us):
        self.admin_port, self.redis_port, self.pids = admin_port, redis_port, pids
        self.redis_cli("CONFIG", "SET", "slowlog-log-slower-than", str(slow_us))
        self.redis_cli("CONFIG", "SET", "slowlog-max-len", "100000")
        self.slow_us = slow_us
        self.start()

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-2", "--json", "-p", str(self.redis_port)] + list(args),
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def buckets(self):
        """{(family, le): cumulative count} of the two histograms, over all labels."""
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port).read()
        out = {}
        for line in text.decode().splitlines():
            for fam in ("notifd_decide_duration_seconds", "notifd_redis_rtt_seconds"):
                if line.startswith(fam + "_bucket{"):
                    le = line.split('le="')[1].split('"')[0]
                    out[(fam, le)] = out.get((fam, le), 0) + float(line.rsplit(" ", 1)[1])
        return out

    def threads(self):
        """{process/thread name: (ns on a CPU, ns runnable but waiting)}."""
        out = {}
        for name, pid in self.pids.items():
            try:
                for tid in os.listdir("/proc/%d/task" % pid):
                    with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                        comm = f.read().strip()
                    with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                        run, wait = map(int, f.read().split()[:2])
                    key = "%s/%s" % (name, comm)
                    r0, w0 = out.get(key, (0, 0))
                    out[key] = (r0 + run, w0 + wait)
            except OSError:
                pass
        return out

    def start(self):
        self.redis_cli("SLOWLOG", "RESET")
        self.b0, self.t0 = self.buckets(), self.threads()

    def phase_end(self, name):
        b1, t1 = self.buckets(), self.threads()

        def over(fam, le):
            total = b1.get((fam, "+Inf"), 0) - self.b0.get((fam, "+Inf"), 0)
            under = b1.get((fam, le), 0) - self.b0.get((fam, le), 0)
            return 100.0 * (total - under) / total if total else 0.0
        slow = {}
        for entry in self.redis_cli("SLOWLOG", "GET", "100000"):
            cmd, us = str(entry[3][0]).upper(), int(entry[2])
            n, mx = slow.get(cmd, (0, 0))
            slow[cmd] = (n + 1, max(mx, us))
        cpu = ["%s run=%.0fms wait=%.0fms" % (k, (v[0] - self.t0.get(k, (0, 0))[0]) / 1e6,
                                             (v[1] - self.t0.get(k, (0, 0))[1]) / 1e6)
               for k, v in sorted(t1.items()) if v[0] - self.t0.get(k, (0, 0))[0] > 1e7]
        print("diag %s decides_over_1ms=%.1f%% redis_rtt_over_0.5ms=%.1f%%" % (
            name, over("notifd_decide_duration_seconds", "0.001"),
            over("notifd_redis_rtt_seconds", "0.0005")))
        print("diag %s slowlog_over_%dus: %s" % (name, self.slow_us, ", ".join(
            "%s x%d max %dus" % (c, n, mx)
            for c, (n, mx) in sorted(slow.items(), key=lambda kv: -kv[1][0])) or "none"))
        print("diag %s threads: %s" % (name, "; ".join(cpu)), flush=True)
        self.start()


def start_redis(work, port, members):
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", work, "--logfile", os.path.join(work, "redis.log")])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    print("loading %d members..." % members, file=sys.stderr)
    pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    gen_members.generate(pipe.stdin, members, "b:", DUE)
    pipe.stdin.close()
    pipe.wait()
    return proc


def start_notifd(binary, work, port, rport, args, admin_port=None):
    cfg = {"listen": "127.0.0.1:%d" % port,
           "admin_listen": "127.0.0.1:%d" % admin_port if admin_port else None,
           "redis": {"host": "127.0.0.1", "port": rport, "prefix": "b:"},
           "planner": {"enabled": False, "batch_size": args.batch,
                       "max_members_per_s": args.max_rate},
           "events": {"spool_dir": os.path.join(work, "spool")}, "log_level": "info",
           "limits": {"ts_window_s": 0}}  # virtual time
    if args.nice >= 0:  # -1: leave it out, for builds without planner.nice
        cfg["planner"]["nice"] = args.nice
    with open(os.path.join(work, "notifd.json"), "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(work, "notifd.log"), "wb")
    proc = subprocess.Popen([binary, "-c", os.path.join(work, "notifd.json")],
                            stdout=log, stderr=log)
    for _ in range(200):
        try:
            c = Conn(port)
            if c.req({"op": "health"}).get("redis", {}).get("ready"):
                return proc, c
        except (OSError, BenchError):
            pass
        time.sleep(0.05)
    raise BenchError("notifd did not become ready")


def run_phases(c, port, args, diag=None):
    """Alternating baseline and pass phases; returns (baselines, passes)."""
    ts = DUE + 30
    t_end = time.perf_counter() + 1.0  # warm-up
    _, i = measure(c, args.rate, lambda: time.perf_counter() > t_end, 0, ts)
    baselines, passes = [], []
    if diag:
        diag.start()
    for k in range(args.passes + 1):
        t_end = time.perf_counter() + args.seconds
        lat, i = measure(c, args.rate, lambda: time.perf_counter() > t_end, i, ts)
        baselines.append(lat)
        if diag:
            diag.phase_end("baseline_%d" % k)
        if k == args.passes:
            break
        done = threading.Event()
        result = {}

        def run_pass(as_of=DUE + 60 + 2 * WEEK * k):
            try:
                result["r"] = Conn(port).req({"op": "planner_run", "ts": as_of})
            except Exception as e:  # reported by the main thread
                result["error"] = e
            done.set()
        threading.Thread(target=run_pass, daemon=True).start()
        lat, i = measure(c, args.rate, done.is_set, i, ts)
        if "error" in result:
            raise BenchError("planner_run: %s" % result["error"])
        if not result["r"].get("ok"):
            raise BenchError("planner_run failed: %r" % result["r"])
        passes.append((result["r"], lat))
        if diag:
            diag.phase_end("pass_%d" % k)
    return baselines, passes


def report(baselines, passes):
    def ms(x):
        return x * 1000.0

    def line(name, xs):
        print("%s decides=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f" % (
            name, len(xs), ms(percentile(xs, 0.5)), ms(percentile(xs, 0.99)), ms(max(xs))))
    ratios = []
    for k, (r, lat) in enumerate(passes):
        line("baseline_%d" % k, baselines[k])
        print("pass_%d planned=%d seconds=%.2f members_per_s=%.0f" % (
            k, r["planned"], r["seconds"], r["planned"] / r["seconds"]))
        line("during_pass_%d" % k, lat)
        around = (percentile(baselines[k], 0.99) + percentile(baselines[k + 1], 0.99)) / 2
        ratios.append(percentile(lat, 0.99) / around)
    line("baseline_%d" % len(passes), baselines[-1])
    print("p99_ratio " + " ".join("pass_%d=%.2f" % (k, x) for k, x in enumerate(ratios)) +
          " median=%.2f" % statistics.median(ratios))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=300000)
    ap.add_argument("--rate", type=float, default=2000.0, help="decides per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="each baseline's duration")
    ap.add_argument("--passes", type=int, default=2, help="planner passes measured")
    ap.add_argument("--batch", type=int, default=64, help="planner.batch_size")
    ap.add_argument("--nice", type=int, default=10, help="planner.nice")
    ap.add_argument("--max-rate", type=int, default=0, help="planner.max_members_per_s")
    ap.add_argument("--diagnose", action="store_true",
                    help="per phase: notifd's histograms, Redis's slow log, threads' CPU")
    ap.add_argument("--slow-us", type=int, default=300, help="slow log threshold (--diagnose)")
    args = ap.parse_args()
    binary = os.environ.get("NOTIFD_BIN", os.path.join(ROOT, "build", "notifd"))
    work = tempfile.mkdtemp(prefix="bench-p99-")
    rport, port = free_port(), free_port()
    procs = []
    try:
        procs.append(start_redis(work, rport, args.members))
        admin_port = free_port() if args.diagnose else None
        notifd, c = start_notifd(binary, work, port, rport, args, admin_port)
        procs.append(notifd)
        diag = None
        if args.diagnose:
            diag = Diagnosis(admin_port, rport, {"redis": procs[0].pid, "notifd": notifd.pid},
                             args.slow_us)
        report(*run_phases(c, port, args, diag))
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        if len(procs) > 1 and procs[1].poll() is not None:
            print("notifd exited with %s" % procs[1].returncode, file=sys.stderr)
        log = os.path.join(work, "notifd.log")
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                sys.stderr.write("".join(f.readlines()[-20:]))
        sys.exit(1)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
