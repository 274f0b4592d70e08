#!/usr/bin/env python3
"""Redis instructions per decide against per Lua-cap call, counted by callgrind.

On a shared machine the CPU time an operation costs moves with the
neighbours by up to 2x from one minute to the next; the instructions Redis
executes for it do not. This script runs redis-server under valgrind's
callgrind, loads the benchmark members of scripts/bench.sh (features and a
plan for each), and counts the instructions Redis executes:

  lua_cap   redis-benchmark EVALSHA of the Lua frequency cap of
            scripts/bench.sh (INCR, EXPIRE on first use, compare), at the
            same connections and pipelining as the decides;
  decide    notifd-bench closed loop (10 candidates, Zipf members) through
            each notifd binary given, against a fresh copy of the same data.

It prints per binary the instructions per decide, their ratio to the Lua
cap's per call (what bounds a fleet's decides per Redis core against the
cap's calls per core), and where they go (request parsing, the record
scripts, each read command, the rest). Counting starts after loading and
stops before shutdown, so only the measured traffic is in the figures.
Callgrind counts user-space instructions: the kernel's share of Redis's
I/O is in neither figure.

With --notifd-too, notifd runs under callgrind as well and its own
instructions per decide are printed (notifd_instr_per_decide).

Usage: scripts/bench_redis_instr.py [--members 100000] [--duration 4]
           [--connections 32] [--pipeline 8] [--notifd-too]
           [NAME:PATH/TO/notifd ...]
NAME:PATH defaults to this:build/notifd; notifd-bench is taken from beside
each notifd. Needs valgrind; a run takes about a minute per binary.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM_WEEK = 1795392000  # notifd-bench's simulated week (scripts/bench.sh)
LUA_CAP = ('local n = redis.call("INCR", KEYS[1])\n'
           'if n == 1 then redis.call("EXPIRE", KEYS[1], ARGV[2]) end\n'
           'if n > tonumber(ARGV[1]) then return 0 end\n'
           'return 1')
# Inclusive costs shown per decide: (label, callgrind function name).
PARTS = [("parse requests", "processMultibulkBuffer"), ("EVALSHA", "evalShaCommand"),
         ("  Lua arguments", "lua_pushlstring"), ("  redis.call", "scriptCall"),
         ("HGETALL", "hgetallCommand"), ("HMGET", "hmgetCommand"), ("ZMSCORE", "zmscoreCommand")]
# The rest: the event loop, reading and writing (user space only: callgrind
# does not see the kernel's share of I/O, for the cap or for the decides).
TOP_LEVEL = ("parse requests", "EVALSHA", "HGETALL", "HMGET", "ZMSCORE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def wait_redis(port, proc, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit("redis-server exited early (see its log)")
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.2)
    raise SystemExit("redis-server did not answer")


def load_data(work, members):
    """An RDB with the members of scripts/bench.sh: features and a plan each."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", work,
                             "--logfile", os.path.join(work, "load.log")])
    try:
        wait_redis(port, proc)
        gen = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "gen_members.py"),
                                "--count", str(members), "--prefix", "b:",
                                "--due", str(SIM_WEEK + 30 * 86400)], stdout=subprocess.PIPE)
        feed = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=gen.stdout,
                              capture_output=True, text=True)
        gen.wait()
        plans = bytearray()
        for i in range(members):
            f = [b"HSET", b"b:plan:{m%08d}" % i, b"version", b"1", b"action", b"%d" % (i % 100),
                 b"computed_at", b"%d" % (SIM_WEEK - 86400), b"valid_until",
                 b"%d" % (SIM_WEEK + 14 * 86400), b"source", b"planner",
                 b"push_per_week", b"%d" % (1 + i % 7), b"email_per_week", b"%d" % (1 + i % 3)]
            plans += b"*%d\r\n" % len(f) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in f)
        feed2 = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=bytes(plans),
                               capture_output=True)
        if "errors: 0" not in feed.stdout or b"errors: 0" not in feed2.stdout:
            raise SystemExit("loading members failed: %s %s" % (feed.stdout, feed2.stdout))
        cli(port, "save")
    finally:
        proc.terminate()
        proc.wait()
    return os.path.join(work, "dump.rdb")


def count_instructions(pid, out_dir, run):
    """Instructions process `pid` (under callgrind, dumping into out_dir)
    executes while run() runs: the path of the dump."""
    before = set(os.listdir(out_dir))
    ctl = ["callgrind_control", "-i"]
    subprocess.run(ctl + ["on", str(pid)], check=True, capture_output=True)
    try:
        run()
    finally:
        subprocess.run(ctl + ["off", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(100):
        new = [f for f in set(os.listdir(out_dir)) - before if f.startswith("callgrind.out")]
        if new:
            time.sleep(0.5)  # let the dump finish
            return os.path.join(out_dir, sorted(new)[-1])
        time.sleep(0.1)
    raise SystemExit("callgrind wrote no dump")


class CallgrindRedis:
    def __init__(self, work, rdb, name):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        shutil.copy(rdb, os.path.join(self.dir, "dump.rdb"))
        self.port = free_port()
        self.out = os.path.join(self.dir, "callgrind.out")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=" + self.out + ".%p", "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=open(os.path.join(self.dir, "redis.log"), "w"), stderr=subprocess.STDOUT)
        wait_redis(self.port, self.proc, 300)

    def count(self, run):
        """Instructions Redis executes while run() runs, and the dump file."""
        return count_instructions(self.proc.pid, self.dir, run)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def annotate(dump):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))
    parts = {}
    for label, fn in PARTS:
        m = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\S*:%s \[" % re.escape(fn), out, re.M)
        parts[label] = int(m.group(1).replace(",", "")) if m else 0
    return total, parts


def lua_cap(redis, args):
    sha = cli(redis.port, "script", "load", LUA_CAP)
    n = args.lua_calls

    def run():
        subprocess.run(["redis-benchmark", "-p", str(redis.port), "-c", str(args.connections),
                        "-P", str(args.pipeline), "-n", str(n), "-r", str(args.members), "-q",
                        "EVALSHA", sha, "1", "cap:{__rand_int__}:week", "5", "604800"],
                       check=True, capture_output=True)
    total, _ = annotate(redis.count(run))
    calls = int(re.search(r"cmdstat_evalsha:calls=(\d+)", cli(redis.port, "info", "commandstats"))
                .group(1))
    return total / calls


def decides(redis, notifd, work, name, args):
    port = free_port()
    cfg = os.path.join(work, name, "notifd.json")
    with open(cfg, "w") as f:
        f.write('{"listen": "127.0.0.1:%d", "admin_listen": null,'
                ' "redis": {"host": "127.0.0.1", "port": %d, "prefix": "b:", "timeout_ms": 20000},'
                ' "planner": {"enabled": false}, "events": {"url": null, "spool_dir": "%s"},'
                ' "log_level": "warn", "limits": {"ts_window_s": 0}, "fast": {"deadline_ms": 0, "ranker": {"default": {"bias": -1.0,'
                ' "score": 2.0, "features": {"freshness": 0.5, "relevance": 1.0,'
                ' "novelty": 0.3}}}}}' % (port, redis.port, os.path.join(work, name, "spool")))
    ndir = os.path.join(work, name, "notifd")
    os.makedirs(ndir)
    wrap = (["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=" + os.path.join(ndir, "callgrind.out.%p")]
            if args.notifd_too else [])
    proc = subprocess.Popen(wrap + [notifd, "-c", cfg], stderr=open(cfg + ".log", "w"))
    bench = os.path.join(os.path.dirname(notifd), "notifd-bench")
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(3.0 if args.notifd_too else 1.0)  # notifd loads its scripts on connect
        result = {}

        def bench_run():
            r = subprocess.run([bench, "--port", str(port), "--duration", str(args.duration),
                                "--warmup", "0", "--members", str(args.members),
                                "--candidates", "10", "--connections", str(args.connections),
                                "--pipeline", str(args.pipeline)],
                               capture_output=True, text=True)
            result["err"], result["out"] = r.stderr, r.stdout

        def run():
            if args.notifd_too:
                result["notifd_dump"] = count_instructions(proc.pid, ndir, bench_run)
            else:
                bench_run()
        dump = redis.count(run)
    finally:
        proc.terminate()
        proc.wait()
    m = re.search(r"replies (\d+)", result["err"])
    line = result["out"].strip().splitlines()[-1] if result["out"].strip() else ""
    errors = re.search(r"errors=(\d+)", line)
    n = int(m.group(1)) if m else 0
    if n == 0:
        raise SystemExit("%s: no decides answered:\n%s" % (name, result["err"]))
    total, parts = annotate(dump)
    if "notifd_dump" in result:
        parts["notifd"], _ = annotate(result["notifd_dump"])
    reasons = re.search(r"reasons: (.*)", result["err"])
    return n, int(errors.group(1)) if errors else -1, total, parts, \
        reasons.group(1) if reasons else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=100000)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--pipeline", type=int, default=8)
    ap.add_argument("--lua-calls", type=int, default=20000)
    ap.add_argument("--notifd-too", action="store_true",
                    help="also run notifd under callgrind and count its instructions per decide")
    ap.add_argument("builds", nargs="*", default=["this:" + os.path.join(ROOT, "build", "notifd")])
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "redis-server",
                 "redis-benchmark"):
        if shutil.which(tool) is None:
            raise SystemExit("bench_redis_instr: %s not found (apt-get install valgrind "
                             "redis-server)" % tool)
    work = tempfile.mkdtemp(prefix="notifd-redis-instr.")
    try:
        rdb = load_data(work, args.members)
        print("connections=%d pipeline=%d members=%d (zipf 1.1) candidates=10"
              % (args.connections, args.pipeline, args.members))
        for i, spec in enumerate(args.builds):
            name, _, path = spec.partition(":")
            run_dir = "%d-%s" % (i, name)
            redis = CallgrindRedis(work, rdb, run_dir)
            try:
                cap = lua_cap(redis, args)
                n, errors, total, parts, reasons = decides(redis, os.path.abspath(path), work, run_dir, args)
            finally:
                redis.stop()
            per = total / n
            print("%s: lua_cap_instr_per_call=%.0f decide_instr_per_decide=%.0f ratio=%.2f "
                  "decides=%d errors=%d" % (name, cap, per, per / cap, n, errors))
            print("  reasons: " + reasons)
            notifd_total = parts.pop("notifd", None)
            parts["other"] = total - sum(parts[k] for k in TOP_LEVEL)
            print("  per decide: " + " ".join("%s=%.0f" % (k.strip().replace(" ", "_"), v / n)
                                              for k, v in parts.items()))
            if notifd_total is not None:
                print("  notifd_instr_per_decide=%.0f" % (notifd_total / n))
    finally:
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


if __name__ == "__main__":
    main()
