#!/usr/bin/env python3
"""Planner throughput of two (or more) builds or configs, measured in turns.

On a shared machine the neighbours change a pass's rate by 2x from one run
to the next, so comparing two runs of scripts/bench_planner.sh minutes apart
says little. This script loads --members members once (scripts/gen_members.py,
or an RDB snapshot), starts one notifd per variant against the same Redis,
lets the first variant write every plan (a first pass, not counted), then
runs steady-state passes in turn — B, A, B, A, ... each one cadence after
the last, so every pass replaces the plans the previous one wrote — and
prints per pass:

  name members_per_s redis_cpu_us notifd_cpu_us cmd_us sched_us
       redis_busy queued idle load

redis_cpu_us and notifd_cpu_us: CPU each process spent per member;
cmd_us: Redis time inside commands per member (INFO commandstats; commands
inside MULTI/EXEC count twice, in EXEC and in their own line), sched_us
the part of it in ZADD and ZRANGEBYSCORE; redis_busy, queued, idle: shares
of the pass's wall time that Redis's main thread spent on a CPU, runnable
but waiting for a CPU (other processes had both cores), and asleep waiting
for commands (/proc/PID/task/PID/schedstat). busy + queued near 1 means
Redis was the limit (queued: the host was); a large idle means notifd did
not keep it fed. load: the 1-minute load average after the pass.

Usage: scripts/bench_planner_ab.py [--members 1000000] [--rounds 3]
           [--rdb-cache FILE] NAME:BINARY:BATCH:NICE[:VAR=VALUE,...] ...
  NICE "-" leaves planner.nice out (builds that predate it); VAR=VALUE pairs
  go into that notifd's environment, except UNIX=1, which connects it to
  Redis over a unix socket (redis.unix) instead of TCP, e.g.
  scripts/bench_planner_ab.py --rdb-cache /tmp/planner-1000000.rdb \\
      old:/tmp/notifd-old:512:- new:build/notifd:64:10
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_members  # noqa: E402

DUE = 1700000000
WEEK = 604800


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedstat(pid):
    """(seconds on the CPU, seconds runnable but waiting for a CPU) of the
    process's main thread: Redis's command thread."""
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        run_ns, wait_ns = f.read().split()[:2]
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True).stdout


def command_usec(port):
    out = {}
    for line in redis_cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line.split(":", 1)
            out[name[len("cmdstat_"):]] = int(dict(kv.split("=") for kv in rest.split(","))["usec"])
    return out


def start_redis(work, members, rdb_cache):
    port = free_port()
    if rdb_cache and os.path.exists(rdb_cache):
        shutil.copy(rdb_cache, os.path.join(work, "dump.rdb"))
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", work,
                             "--dbfilename", "dump.rdb", "--unixsocket",
                             os.path.join(work, "redis.sock"),
                             "--logfile", os.path.join(work, "redis.log")])
    while redis_cli(port, "ping").strip() != "PONG":
        time.sleep(0.2)
    if not os.path.exists(os.path.join(work, "dump.rdb")):
        print("loading %d members..." % members, file=sys.stderr)
        pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        gen_members.generate(pipe.stdin, members, "b:", DUE)
        pipe.stdin.close()
        pipe.wait()
        if rdb_cache:
            redis_cli(port, "save")
            shutil.copy(os.path.join(work, "dump.rdb"), rdb_cache)
    return proc, port


class Variant:
    def __init__(self, spec, work, rport):
        # NAME:BINARY:BATCH:NICE[:VAR=VALUE,...] (environment of that notifd)
        parts = spec.split(":")
        self.name, binary, batch, nice = parts[:4]
        env = dict(os.environ)
        if len(parts) > 4 and parts[4]:
            env.update(kv.split("=", 1) for kv in parts[4].split(","))
        # UNIX=1 in that list: the variant talks to Redis over its unix socket
        # (redis.unix) instead of TCP.
        unix = env.pop("UNIX", "0") == "1"
        planner = {"enabled": False, "batch_size": int(batch)}
        if nice != "-":
            planner["nice"] = int(nice)
        port = free_port()
        cfg = {"listen": "127.0.0.1:%d" % port, "admin_listen": None,
               "redis": {"host": "127.0.0.1", "port": rport, "prefix": "b:"},
               "planner": planner, "log_level": "warn", "limits": {"ts_window_s": 0},
               "events": {"spool_dir": os.path.join(work, "spool-" + self.name)}}
        if unix:
            cfg["redis"]["unix"] = os.path.join(work, "redis.sock")
        path = os.path.join(work, self.name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.log = open(os.path.join(work, self.name + ".log"), "w")
        self.proc = subprocess.Popen([binary, "-c", path], stderr=self.log, env=env)
        for _ in range(200):
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=900)
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit("%s did not start" % self.name)
        self.f = self.sock.makefile("rwb")

    def run_pass(self, as_of):
        self.f.write(json.dumps({"op": "planner_run", "ts": as_of}).encode() + b"\n")
        self.f.flush()
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            sys.exit("%s: planner_run failed: %r" % (self.name, r))
        return r


def measured_pass(v, as_of, redis_pid, rport):
    c0, r0, u0 = cpu_s(v.proc.pid), cpu_s(redis_pid), command_usec(rport)
    s0 = schedstat(redis_pid)
    r = v.run_pass(as_of)
    c1, r1, u1 = cpu_s(v.proc.pid), cpu_s(redis_pid), command_usec(rport)
    s1 = schedstat(redis_pid)
    n = max(1, r["planned"])
    cmd = sum(u1[k] - u0.get(k, 0) for k in u1) / n
    sched = sum(u1.get(k, 0) - u0.get(k, 0) for k in ("zadd", "zrangebyscore")) / n
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    rate = r["planned"] / r["seconds"]
    # Shares of the pass's wall time for Redis's main thread: on the CPU
    # (busy), runnable but waiting for a CPU (queued: other processes had
    # the cores), and the rest, idle: waiting for notifd's commands.
    busy = (s1[0] - s0[0]) / r["seconds"]
    queued = (s1[1] - s0[1]) / r["seconds"]
    print("%-8s members_per_s=%6.0f redis_cpu_us=%5.2f notifd_cpu_us=%4.2f cmd_us=%5.2f "
          "sched_us=%4.2f redis_busy=%.2f queued=%.2f idle=%.2f load=%s" % (
              v.name, rate, (r1 - r0) / n * 1e6, (c1 - c0) / n * 1e6, cmd, sched,
              busy, queued, max(0.0, 1 - busy - queued), load), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rdb-cache", help="load members from / save them to this RDB file")
    ap.add_argument("variants", nargs="+", help="NAME:BINARY:BATCH:NICE")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-ab-")
    redis, rport = start_redis(work, args.members, args.rdb_cache)
    variants = []
    try:
        variants = [Variant(spec, work, rport) for spec in args.variants]
        as_of = DUE + 60
        variants[0].run_pass(as_of)  # writes every plan: the steady state starts here
        order = (variants[1:] + variants[:1]) * args.rounds
        for v in order:
            as_of += 2 * WEEK
            measured_pass(v, as_of, redis.pid, rport)
    finally:
        for v in variants:
            v.proc.terminate()
            v.proc.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
