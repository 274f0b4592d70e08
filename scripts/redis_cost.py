#!/usr/bin/env python3
"""What candidate planner commands cost Redis, per member.

Starts its own redis-server, loads --members members with features
(scripts/gen_members.py) and a plan hash for each (the 8 fields the planner
writes, with a TTL), then for each variant sends --sample random members in
pipelined batches of --batch, one batch at a time, and prints the CPU time
Redis's main thread spent per member (INFO cpu, used_cpu_*_main_thread).
Rounds alternate the variants, so a noisy neighbour hits all of them.

The client never parses replies: each batch ends with an ECHO of a random
token, and the batch is over when the token comes back. So the client's
speed does not matter; only Redis's CPU is measured.

Variants (per member):
  hgetall_member   HGETALL member:{M}                  (what the planner does)
  hmget_features   HMGET member:{M} <the 25 fields the estimator reads>
  hgetall_plan     HGETALL plan:{M}                    (what the planner does)
  hmget_plan_hlen  HMGET plan:{M} <8 plan fields> + HLEN plan:{M}
  hget_version     HGET plan:{M} version               (too little: no stale-field check)
  hset_expire      HSET plan:{M} <8 fields> + EXPIRE   (what the planner does)
  hset_expire_each HSET + EXPIRE with values that differ per member
  lua_write        one EVALSHA per batch doing HSET + EXPIRE for every member
  lua_write_each   the same with values that differ per member, per-member
                   errors (pcall) returned: what a batch plan-write script costs
  hset_pexpireat   HSET plan:{M} <8 fields> + PEXPIREAT
  exists           EXISTS member:{M}                   (the cost of a cold key lookup)
  read_write       HGETALL plan:{M} + HSET <8 fields> + EXPIRE: the plan part of the
                   read-then-write planner (its write right after the read, so warm)
  multi_write      MULTI, HINCRBY version 1, HSET <7 fields>, EXPIRE, EXEC: a plan
                   write without reading the plan first
  multi_write_hdel the same with HDEL in_app_per_week (a configured, unplanned channel)
  multi_write_hlen the same with HDEL and HLEN (extra-field check)
  batch_multi      one MULTI/EXEC per batch around HINCRBY, HSET, EXPIRE per member
  batch_multi_hdel the same with HDEL in_app_per_week per member
  dump_member      DUMP member:{M}                     (serialized hash instead of HGETALL)
  dump_plan        DUMP plan:{M}
  hlen_member      HLEN member:{M}                     (a cold lookup plus the hash header)

Usage: scripts/redis_cost.py [--members 1000000] [--sample 200000] [--batch 512]
           [--rounds 3] [--rdb-cache FILE] [variant ...]
"""
import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_members  # noqa: E402

PREFIX = b"b:"
CHANNELS = (b"push", b"email", b"in_app")
FEATURES = [c + b"_" + s for c in CHANNELS
            for s in (b"sent", b"delivered", b"open", b"click", b"dismiss", b"unsub_n", b"unsub")
            ] + [b"visit_org", b"visit_attr", b"first_seen", b"updated_at"]
PLAN = [b"version", b"3", b"action", b"17", b"computed_at", b"1701209660",
        b"valid_until", b"1701900000", b"source", b"planner", b"arm", b"control",
        b"push_per_week", b"3", b"email_per_week", b"1"]
LUA_WRITE = (b"for i = 1, #KEYS do redis.call('HSET', KEYS[i], unpack(ARGV, 2)) "
             b"redis.call('EXPIRE', KEYS[i], ARGV[1]) end return #KEYS")
# The realistic batch script: field names in the script, 8 values per member
# (as the planner would send them: every member's plan differs).
LUA_WRITE_EACH = (b"local f = {'version', 'action', 'computed_at', 'valid_until', 'source', "
                  b"'arm', 'push_per_week', 'email_per_week'} "
                  b"local out = {} "
                  b"for i = 1, #KEYS do local b = 1 + (i - 1) * 8 "
                  b"local r = redis.pcall('HSET', KEYS[i], f[1], ARGV[b + 1], f[2], ARGV[b + 2], "
                  b"f[3], ARGV[b + 3], f[4], ARGV[b + 4], f[5], ARGV[b + 5], f[6], ARGV[b + 6], "
                  b"f[7], ARGV[b + 7], f[8], ARGV[b + 8]) "
                  b"if type(r) == 'table' and r.err then out[i] = r.err "
                  b"else redis.pcall('EXPIRE', KEYS[i], ARGV[1]) out[i] = 1 end end return out")
VARIANTS = ["hgetall_member", "hmget_features", "hgetall_plan", "hmget_plan_hlen",
            "hget_version", "hset_expire", "hset_expire_each", "lua_write", "lua_write_each",
            "hset_pexpireat", "exists", "read_write", "multi_write", "multi_write_hdel",
            "multi_write_hlen", "batch_multi", "batch_multi_hdel", "dump_member", "dump_plan",
            "hlen_member"]


def resp(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Raw:
    """A pipelined connection that waits for a batch by an ECHOed token."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))

    def batch(self, payload):
        token = b"tok%016x" % random.getrandbits(64)
        self.s.sendall(payload + resp(b"ECHO", token))
        tail = b""
        while token not in tail:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("redis closed the connection")
            tail = (tail + chunk)[-64:]

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.s.recv(1 << 20)


def main_thread_cpu(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "cpu"],
                         capture_output=True, text=True, check=True).stdout
    d = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return float(d["used_cpu_user_main_thread"]) + float(d["used_cpu_sys_main_thread"])


def plan_values(m):
    """The 8 plan values of member m, different per member like real plans."""
    i = int(m[1:])
    return [b"%d" % (i % 7 + 2), b"%d" % (i % 63), b"1701209660", b"%d" % (1701813000 + i % 30240),
            b"planner", b"control", b"%d" % (i % 8), b"%d" % (i % 4)]


def plan_pairs(m):
    out = []
    for f, v in zip(PLAN[0::2], plan_values(m)):
        out += [f, v]
    return out


def commands(variant, m):
    member_key = PREFIX + b"member:{" + m + b"}"
    plan_key = PREFIX + b"plan:{" + m + b"}"
    if variant == "hgetall_member":
        return resp(b"HGETALL", member_key)
    if variant == "hmget_features":
        return resp(b"HMGET", member_key, *FEATURES)
    if variant == "hgetall_plan":
        return resp(b"HGETALL", plan_key)
    if variant == "hmget_plan_hlen":
        return resp(b"HMGET", plan_key, *PLAN[0::2]) + resp(b"HLEN", plan_key)
    if variant == "hget_version":
        return resp(b"HGET", plan_key, b"version")
    if variant == "hset_expire":
        return resp(b"HSET", plan_key, *PLAN) + resp(b"EXPIRE", plan_key, b"1300000")
    if variant == "hset_expire_each":
        return resp(b"HSET", plan_key, *plan_pairs(m)) + resp(b"EXPIRE", plan_key, b"1300000")
    if variant == "hset_pexpireat":
        return resp(b"HSET", plan_key, *PLAN) + resp(b"PEXPIREAT", plan_key, b"4000000000000")
    if variant == "exists":
        return resp(b"EXISTS", member_key)
    if variant == "dump_member":
        return resp(b"DUMP", member_key)
    if variant == "dump_plan":
        return resp(b"DUMP", plan_key)
    if variant == "hlen_member":
        return resp(b"HLEN", member_key)
    if variant == "read_write":
        return (resp(b"HGETALL", plan_key) + resp(b"HSET", plan_key, *plan_pairs(m)) +
                resp(b"EXPIRE", plan_key, b"1300000"))
    if variant.startswith(("multi_write", "batch_multi")):
        cmds = (resp(b"HINCRBY", plan_key, b"version", b"1") +
                resp(b"HSET", plan_key, *plan_pairs(m)[2:]))
        if variant.endswith(("_hdel", "_hlen")):
            cmds += resp(b"HDEL", plan_key, b"in_app_per_week")
        cmds += resp(b"EXPIRE", plan_key, b"1300000")
        if variant.endswith("_hlen"):
            cmds += resp(b"HLEN", plan_key)
        if variant.startswith("multi_write"):
            cmds = resp(b"MULTI") + cmds + resp(b"EXEC")
        return cmds
    raise ValueError(variant)


def run_variant(conn, port, variant, members, batch, shas):
    c0 = main_thread_cpu(port)
    for i in range(0, len(members), batch):
        group = members[i:i + batch]
        if variant == "lua_write":
            keys = [PREFIX + b"plan:{" + m + b"}" for m in group]
            payload = resp(b"EVALSHA", shas[0], b"%d" % len(keys), *keys, b"1300000", *PLAN)
        elif variant == "lua_write_each":
            keys = [PREFIX + b"plan:{" + m + b"}" for m in group]
            values = [v for m in group for v in plan_values(m)]
            payload = resp(b"EVALSHA", shas[1], b"%d" % len(keys), *keys, b"1300000", *values)
        else:
            payload = b"".join(commands(variant, m) for m in group)
            if variant.startswith("batch_multi"):
                payload = resp(b"MULTI") + payload + resp(b"EXEC")
        conn.batch(payload)
    return (main_thread_cpu(port) - c0) / len(members) * 1e6


def load(port, work, n, rdb_cache):
    if rdb_cache and os.path.exists(rdb_cache):
        return
    print("loading %d members and plans..." % n, file=sys.stderr)
    pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    gen_members.generate(pipe.stdin, n, PREFIX.decode(), 1700000000)
    buf = []
    for i in range(n):
        key = PREFIX + b"plan:{m%08d}" % i
        buf.append(resp(b"HSET", key, *PLAN) + resp(b"EXPIRE", key, b"1300000"))
        if len(buf) >= 4096:
            pipe.stdin.write(b"".join(buf))
            buf.clear()
    pipe.stdin.write(b"".join(buf))
    pipe.stdin.close()
    pipe.wait()
    if rdb_cache:
        subprocess.run(["redis-cli", "-p", str(port), "save"], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copy(os.path.join(work, "dump.rdb"), rdb_cache)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000000)
    ap.add_argument("--sample", type=int, default=200000, help="members per variant and round")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rdb-cache", help="load from / save to this RDB file")
    ap.add_argument("variants", nargs="*", default=VARIANTS)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="redis-cost-")
    port = free_port()
    if args.rdb_cache and os.path.exists(args.rdb_cache):
        shutil.copy(args.rdb_cache, os.path.join(work, "dump.rdb"))
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work,
                              "--dbfilename", "dump.rdb",
                              "--logfile", os.path.join(work, "redis.log")])
    try:
        for _ in range(1200):
            try:
                if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                  text=True).stdout.strip() == "PONG":
                    break
            except OSError:
                pass
            time.sleep(0.1)
        load(port, work, args.members, args.rdb_cache)
        conn = Raw(port)
        shas = [conn.call(b"SCRIPT", b"LOAD", script).split(b"\r\n")[1]
                for script in (LUA_WRITE, LUA_WRITE_EACH)]
        rng = random.Random(7)
        results = {v: [] for v in args.variants}
        for r in range(args.rounds):
            for v in args.variants:
                sample = [b"m%08d" % rng.randrange(args.members) for _ in range(args.sample)]
                results[v].append(run_variant(conn, port, v, sample, args.batch, shas))
                print("round %d %-16s %6.2f us/member" % (r, v, results[v][-1]), file=sys.stderr)
        for v in args.variants:
            xs = sorted(results[v])
            print("%-16s redis_cpu_us_per_member median=%.2f min=%.2f max=%.2f" % (
                v, xs[len(xs) // 2], xs[0], xs[-1]))
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
