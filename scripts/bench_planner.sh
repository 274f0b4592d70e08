#!/usr/bin/env bash
# bench_planner.sh - members replanned per second by one planner pass.
#
# Starts its own redis-server and notifd on free ports, loads N members with
# realistic features and week hashes (the recent scores the score prior
# reads: scripts/gen_members.py --week | redis-cli --pipe), all due,
# then asks notifd for one pass (op planner_run) and prints
#   planner_members=N seconds=S members_per_s=R
# where S is the pass as notifd timed it (leases, reads, planning, writes).
# Not part of ctest: 1M members take a few minutes to load and ~1 GB of
# Redis memory. A quick variant: MEMBERS=10000 scripts/bench_planner.sh.
#
# Environment: MEMBERS (default 1000000), NOTIFD_BIN (default build/notifd),
# BATCH (planner.batch_size, default 64), NICE (planner.nice, default 10),
# REDIS_UNIX=1 (connect over a unix socket), RDB_CACHE=file (see below),
# TWO_PASSES=0 (time the first pass only), STATS=1 (Redis command stats of
# the timed pass), REDIS_ARGS (extra redis-server options, e.g.
# "--latency-tracking no"), PERF_OUT=file (perf profile of both processes),
# KEEP=1 (keep the temp dir), NO_WEEK=1 (members without week hashes: what
# a pass cost before the score prior read them).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MEMBERS="${MEMBERS:-1000000}"
NOTIFD_BIN="${NOTIFD_BIN:-$ROOT/build/notifd}"
BATCH="${BATCH:-64}"
NICE="${NICE-10}"   # NICE= (empty): leave planner.nice out, for builds without it
NICE_JSON=""
[ -n "$NICE" ] && NICE_JSON=", \"nice\": $NICE"
DUE=1700000000
WORK="$(mktemp -d /tmp/bench-planner.XXXXXX)"
REDIS_PID=""
NOTIFD_PID=""

cleanup() {
    [ -n "$NOTIFD_PID" ] && kill "$NOTIFD_PID" 2>/dev/null && wait "$NOTIFD_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x "$NOTIFD_BIN" ] || { echo "no notifd binary at $NOTIFD_BIN (build first)" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
REDIS_PORT="$(free_port)"
PORT="$(free_port)"

# RDB_CACHE=file: load the members from that RDB snapshot when it exists
# (seconds instead of a minute for 1M), else generate them and save it there.
# gen_members.py is deterministic, so both give the same data set; the file
# name should say MEMBERS (e.g. /tmp/planner-1000000.rdb). A snapshot saved
# before the week hashes were part of the data set gets them added (and is
# saved again) rather than measuring a pass that reads nothing.
RDB_CACHE="${RDB_CACHE:-}"
if [ -n "$RDB_CACHE" ] && [ -f "$RDB_CACHE" ]; then cp "$RDB_CACHE" "$WORK/dump.rdb"; fi
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --unixsocket "$WORK/redis.sock" --dir "$WORK" --dbfilename dump.rdb \
    --logfile "$WORK/redis.log" ${REDIS_ARGS:-} &
REDIS_PID=$!
for _ in $(seq 1200); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done

WEEK_ARG=--week
[ "${NO_WEEK:-0}" = 1 ] && WEEK_ARG=""
if [ -f "$WORK/dump.rdb" ]; then
    echo "loaded $(redis-cli -p "$REDIS_PORT" dbsize) keys from $RDB_CACHE" >&2
    if [ -n "$WEEK_ARG" ] && [ "$(redis-cli -p "$REDIS_PORT" exists "b:week:{m00000000}")" = 0 ]; then
        echo "the snapshot has no week hashes: adding them..." >&2
        python3 - "$ROOT/scripts" "$MEMBERS" <<'EOF2' | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/pipe.log"
import sys
sys.path.insert(0, sys.argv[1])
import gen_members, random
rng = random.Random(1 * 1000003 + 17)  # generate()'s week stream for --seed 1
out, buf = sys.stdout.buffer, []
for i in range(int(sys.argv[2])):
    f = gen_members.week_fields(rng)
    key = b"b:week:{m%08d}" % i
    buf.append(b"*%d\r\n" % (2 + len(f)) + gen_members.bulk(b"HSET") + gen_members.bulk(key)
               + b"".join(gen_members.bulk(x) for x in f))
    if len(buf) >= 4096:
        out.write(b"".join(buf)); buf.clear()
out.write(b"".join(buf))
EOF2
        if [ -n "$RDB_CACHE" ]; then
            redis-cli -p "$REDIS_PORT" save >/dev/null && cp "$WORK/dump.rdb" "$RDB_CACHE"
        fi
    fi
else
    echo "loading $MEMBERS members..." >&2
    t0=$(date +%s.%N)
    python3 "$ROOT/scripts/gen_members.py" --count "$MEMBERS" --prefix "b:" --due "$DUE" $WEEK_ARG |
        redis-cli -p "$REDIS_PORT" --pipe >"$WORK/pipe.log"
    t1=$(date +%s.%N)
    echo "loaded in $(python3 -c "print(round($t1-$t0,1))")s: $(tail -1 "$WORK/pipe.log")" >&2
    if [ -n "$RDB_CACHE" ]; then
        redis-cli -p "$REDIS_PORT" save >/dev/null && cp "$WORK/dump.rdb" "$RDB_CACHE"
        rm -f "$WORK/dump.rdb"
    fi
fi

# REDIS_UNIX=1: notifd talks to Redis over a unix socket (same host).
REDIS_UNIX_JSON=""
[ "${REDIS_UNIX:-0}" = 1 ] && REDIS_UNIX_JSON=", \"unix\": \"$WORK/redis.sock\""
cat >"$WORK/notifd.json" <<EOF
{
  "listen": "127.0.0.1:$PORT",
  "admin_listen": null,
  "redis": {"host": "127.0.0.1", "port": $REDIS_PORT, "prefix": "b:"$REDIS_UNIX_JSON},
  "planner": {"enabled": false, "batch_size": $BATCH$NICE_JSON},
  "events": {"spool_dir": "$WORK/spool"},
  "limits": {"ts_window_s": 0},
  "log_level": "info"
}
EOF
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
"$NOTIFD_BIN" -c "$WORK/notifd.json" 2>"$WORK/notifd.log" &
NOTIFD_PID=$!

REDIS_PORT="$REDIS_PORT" python3 - "$PORT" "$MEMBERS" "$DUE" "$NOTIFD_PID" "$REDIS_PID" <<'EOF'
import json, os, socket, sys, time
port, members, due = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pids = {"notifd": int(sys.argv[4]), "redis": int(sys.argv[5])}
def cpu_s(pid, which=(11, 12)):  # user and system time, or one of them
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in which) / os.sysconf("SC_CLK_TCK")
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=600)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("notifd did not start")
        time.sleep(0.05)
f = s.makefile("rwb")
def req(o):
    f.write(json.dumps(o).encode() + b"\n"); f.flush()
    return json.loads(f.readline())
while not req({"op": "health"}).get("redis", {}).get("ready"):
    time.sleep(0.05)
# The first pass writes every plan for the first time; a second pass, one
# cadence later, replaces existing plans (the steady state). Both count.
r0 = None
if os.environ.get("TWO_PASSES", "1") == "1":
    r0 = req({"op": "planner_run", "ts": due + 60})
    if not r0.get("ok"):
        sys.exit("planner_run failed: %r" % r0)
    print("first_pass planner_members=%d seconds=%.3f members_per_s=%.0f" % (
        r0["planned"], r0["seconds"], r0["planned"] / r0["seconds"] if r0["seconds"] else 0),
        file=sys.stderr)
    due += 2 * 604800
if os.environ.get("STATS", "0") == "1":  # Redis command stats of the timed pass only
    import subprocess
    subprocess.run(["redis-cli", "-p", os.environ["REDIS_PORT"], "config", "resetstat"],
                   check=True, stdout=subprocess.DEVNULL)
cpu0 = {k: cpu_s(p) for k, p in pids.items()}
redis_sys0 = cpu_s(pids["redis"], (12,))
if os.environ.get("PERF_OUT"):  # profile both processes during the pass
    import subprocess
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-o", os.environ["PERF_OUT"], "-p",
                             "%d,%d" % (pids["notifd"], pids["redis"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
r = req({"op": "planner_run", "ts": due + 60})
cpu1 = {k: cpu_s(p) for k, p in pids.items()}
redis_sys1 = cpu_s(pids["redis"], (12,))
if os.environ.get("PERF_OUT"):
    perf.send_signal(2)
    perf.wait()
if not r.get("ok"):
    sys.exit("planner_run failed: %r" % r)
print("planner_members=%d seconds=%.3f members_per_s=%.0f failed=%d removed=%d" % (
    r["planned"], r["seconds"], r["planned"] / r["seconds"] if r["seconds"] else 0,
    r["failed"], r["removed"]))
# CPU seconds each process spent during the pass: on a shared machine the
# wall-clock rate depends on the neighbours; CPU per member does not.
# redis_sys: the part of Redis's in the kernel (its socket reads and writes).
print("cpu_us_per_member notifd=%.2f redis=%.2f redis_sys=%.2f" % (
    (cpu1["notifd"] - cpu0["notifd"]) / max(1, r["planned"]) * 1e6,
    (cpu1["redis"] - cpu0["redis"]) / max(1, r["planned"]) * 1e6,
    (redis_sys1 - redis_sys0) / max(1, r["planned"]) * 1e6), file=sys.stderr)
if r["planned"] != members:
    sys.exit("expected %d members planned" % members)
EOF
grep "planner pass" "$WORK/notifd.log" >&2 || true
# STATS=1: what each Redis command cost during the timed pass (usec_per_call
# is the command's own execution; reading, parsing and replying come on top).
if [ "${STATS:-0}" = 1 ]; then
    redis-cli -p "$REDIS_PORT" info commandstats | grep '^cmdstat' >&2
fi
