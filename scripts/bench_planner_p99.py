#!/usr/bin/env python3
"""Fast-path latency with and without a planner pass running.

Starts its own redis-server and notifd (planner timer off), loads --members
members with features (scripts/gen_members.py), then measures decide
latency on one connection, one request at a time, at a fixed rate:
  1. baseline: --seconds of decides, no pass;
  2. during a pass: decides while a planner_run (as of a time that makes
     every member due) runs on another connection; measured only while the
     pass is running.
Prints p50/p99/max of both phases and the ratio of the p99s. The issue's
bound: a running pass must not push the fast path's p99 up by more than 2x.

Usage: scripts/bench_planner_p99.py [--members 300000] [--rate 2000] [--batch 512] [--max-rate 0]
Environment: NOTIFD_BIN (default build/notifd).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_members  # noqa: E402

DUE = 1700000000


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
        return json.loads(self.f.readline())


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
            sys.exit("decide failed: %r" % r)
        i += 1
    return lat, i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=300000)
    ap.add_argument("--rate", type=float, default=2000.0, help="decides per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="baseline duration")
    ap.add_argument("--batch", type=int, default=512, help="planner.batch_size")
    ap.add_argument("--max-rate", type=int, default=0, help="planner.max_members_per_s")
    args = ap.parse_args()
    binary = os.environ.get("NOTIFD_BIN", os.path.join(ROOT, "build", "notifd"))
    work = tempfile.mkdtemp(prefix="bench-p99-")
    rport, port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work, "--logfile", os.path.join(work, "redis.log")]))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", rport)).close()
                break
            except OSError:
                time.sleep(0.05)
        print("loading %d members..." % args.members, file=sys.stderr)
        pipe = subprocess.Popen(["redis-cli", "-p", str(rport), "--pipe"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        gen_members.generate(pipe.stdin, args.members, "b:", DUE)
        pipe.stdin.close()
        pipe.wait()
        cfg = {"listen": "127.0.0.1:%d" % port, "admin_listen": None,
               "redis": {"host": "127.0.0.1", "port": rport, "prefix": "b:"},
               "planner": {"enabled": False, "batch_size": args.batch,
                           "max_members_per_s": args.max_rate},
               "events": {"spool_dir": os.path.join(work, "spool")}, "log_level": "info"}
        with open(os.path.join(work, "notifd.json"), "w") as f:
            json.dump(cfg, f)
        log = open(os.path.join(work, "notifd.log"), "wb")
        procs.append(subprocess.Popen([binary, "-c", os.path.join(work, "notifd.json")],
                                      stdout=log, stderr=log))
        for _ in range(200):
            try:
                c = Conn(port)
                if c.req({"op": "health"}).get("redis", {}).get("ready"):
                    break
            except OSError:
                time.sleep(0.05)
        ts = DUE + 30
        # Warm up, then the baseline.
        t_end = time.perf_counter() + 1.0
        _, i = measure(c, args.rate, lambda: time.perf_counter() > t_end, 0, ts)
        t_end = time.perf_counter() + args.seconds
        base, i = measure(c, args.rate, lambda: time.perf_counter() > t_end, i, ts)

        done = threading.Event()
        result = {}

        def run_pass():
            result["r"] = Conn(port).req({"op": "planner_run", "ts": DUE + 60})
            done.set()
        threading.Thread(target=run_pass, daemon=True).start()
        during, i = measure(c, args.rate, done.is_set, i, ts)
        r = result["r"]
        ms = lambda x: x * 1000.0  # noqa: E731
        print("pass: planned=%d seconds=%.2f members_per_s=%.0f" % (
            r["planned"], r["seconds"], r["planned"] / r["seconds"]))
        for name, xs in (("baseline", base), ("during_pass", during)):
            print("%s decides=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f" % (
                name, len(xs), ms(percentile(xs, 0.5)), ms(percentile(xs, 0.99)), ms(max(xs))))
        print("p99_ratio=%.2f" % (percentile(during, 0.99) / percentile(base, 0.99)))
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
