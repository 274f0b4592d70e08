#!/usr/bin/env bash
# bench.sh - notifd against Redis itself, measured in one run.
#
# Our users choose between notifd and a Lua frequency cap they write into
# Redis themselves; this script puts the two side by side on the same
# machine, in the same minute, at the same concurrency, so the ratios mean
# something even where the absolute numbers do not (a shared or small box).
#
# It starts its own redis-server and notifd on free loopback ports (config
# in a temp dir: events off, admin off, planner timer off, log_level warn),
# loads member features (scripts/gen_members.py) and a pacing plan for every
# benchmark member, then measures:
#   1. redis-benchmark: pipelined GET, and EVALSHA of a Lua frequency cap
#      (INCR, EXPIRE on first use, compare: the script notifd-bench
#      --print-lua-cap prints; keys randomised with __rand_int__), at the
#      same connections and pipelining as step 2, with Redis's CPU per call;
#   2. notifd decide throughput, 10 candidates, closed loop (notifd-bench),
#      with notifd's and Redis's CPU per decide;
#   3. latency at 50% of that throughput, open loop (latency from the
#      intended send time, so queueing is not hidden);
#   3c. the Lua cap at the same rate, open loop, from the same generator
#       (notifd-bench --target lua-cap: same connections, pipelining and
#       schedule), right after step 3: the p99 the decides are held to;
#   4. planner members/s (scripts/bench_planner.sh, 1M members; 10k in
#      --quick), skipped when that script is missing; then (4b) the Lua
#      cap's redis-benchmark once more on a fresh Redis, so the planner's
#      rate is compared with the cap's in the same minutes (the mean of
#      the cap's rate before and after);
#   5. notifd peak RSS (VmHWM) with 1,000 connections at a modest rate;
#   2b. step 2 again after a SIGHUP reload that sets fast.plan_cache_ms=1000;
#   3b. open loop at 5, 10, 20, 30, 40% of step 2's throughput, up to the
#       first whose p99 passes 1 ms: how much load keeps p99 within 1 ms.
# and prints the machine, a table, and every ratio of the performance goals
# (docs/benchmarks.md) with its goal and PASS or FAIL, one line each:
#   ratio NAME = VALUE (goal >= X) PASS|FAIL|n/a
#
# Usage: scripts/bench.sh [--quick] [--runs N] [--connections N]
#                         [--pipeline N] [--duration S] [--members N]
#   --quick   a 2-second smoke run of every step (planner over 10k members);
#             used by tests/integration/test_bench_smoke.py, which checks
#             that the tools work and the output parses, never a speed.
#   --runs N  the whole benchmark N times in a row (each run's output as it
#             goes), then the median of each ratio over the runs, with its
#             goal and PASS or FAIL:  median NAME = VALUE (goal ...) PASS|FAIL
#             The planner's members are generated once and loaded from an
#             RDB snapshot by the later runs (RDB_CACHE, unless set).
# Environment: NOTIFD_BUILD_DIR (default build/; built there if missing),
#   KEEP=1 keeps the temp dir (configs, logs), RDB_CACHE (passed to
#   scripts/bench_planner.sh).
# Every load step is bounded in time; traffic is loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${NOTIFD_BUILD_DIR:-$ROOT/build}"
QUICK=0
RUNS=1
ARGS=() # every option but --runs, for the runs of --runs N
CONNECTIONS=32
PIPELINE=8
DURATION=10
MEMBERS=100000
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1; ARGS+=("$1") ;;
    --runs) RUNS="${2:-}"; shift ;;
    --connections) CONNECTIONS="$2"; ARGS+=("$1" "$2"); shift ;;
    --pipeline) PIPELINE="$2"; ARGS+=("$1" "$2"); shift ;;
    --duration) DURATION="$2"; ARGS+=("$1" "$2"); shift ;;
    --members) MEMBERS="$2"; ARGS+=("$1" "$2"); shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$RUNS" in
'' | *[!0-9]* | 0) echo "bench.sh: --runs needs a positive whole number" >&2; exit 2 ;;
esac

# ---- --runs N: the whole benchmark N times, then the median of each ratio ----
if [ "$RUNS" -gt 1 ]; then
    RUNS_DIR="$(mktemp -d /tmp/notifd-bench-runs.XXXXXX)"
    trap 'rm -rf "$RUNS_DIR"' EXIT
    export RDB_CACHE="${RDB_CACHE:-$RUNS_DIR/planner-members.rdb}"
    for i in $(seq "$RUNS"); do
        echo "######## run $i of $RUNS"
        "$0" "${ARGS[@]}" | tee "$RUNS_DIR/run$i.out"
    done
    echo
    echo "######## median of $RUNS runs ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    python3 "$ROOT/scripts/bench_median.py" "$RUNS_DIR"/run*.out
    exit 0
fi

WARMUP=1
PLANNER_MEMBERS=1000000
RSS_CONNECTIONS=1000
RSS_RATE=2000
if [ "$QUICK" = 1 ]; then
    DURATION=2
    WARMUP=0.5
    MEMBERS=10000
    PLANNER_MEMBERS=10000
fi

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 2; }
done

# ---- build -----------------------------------------------------------------
if [ ! -x "$BUILD/notifd" ] || [ ! -x "$BUILD/notifd-bench" ]; then
    echo "bench.sh: building into $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target notifd notifd-bench >/dev/null
fi
NOTIFD="$BUILD/notifd"
BENCH="$BUILD/notifd-bench"

WORK="$(mktemp -d /tmp/notifd-bench.XXXXXX)"
REDIS_PID=""
NOTIFD_PID=""
cleanup() {
    if [ -n "$NOTIFD_PID" ]; then kill "$NOTIFD_PID" 2>/dev/null || true; wait "$NOTIFD_PID" 2>/dev/null || true; fi
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "bench.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Value of key=value in a line of text ("" if absent).
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" | head -1; }
calc() { python3 -c "import sys; print($1)"; }
# CPU time (user + system) of a process in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
TICK_US=$(calc "1e6 / $(getconf CLK_TCK)")
# CPU microseconds per operation from a tick delta and an operation count.
cpu_us_per() { if [ "${2:-0}" -gt 0 ] 2>/dev/null; then calc "round($1 * $TICK_US / $2, 1)"; else echo nan; fi; }

# ---- machine ---------------------------------------------------------------
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
MEM_GIB="$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)"
echo "== notifd benchmark ($( [ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"), $(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
echo "machine: nproc=$(nproc) cpu=\"${CPU_MODEL:-unknown}\" mem=${MEM_GIB}GiB kernel=$(uname -r)"
echo "machine: load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the box skews absolute numbers; compare ratios)"
echo "software: $(redis-server --version | cut -d' ' -f1-3) notifd=$("$NOTIFD" --version 2>&1 | head -1)"
echo "settings: connections=$CONNECTIONS pipeline=$PIPELINE duration=${DURATION}s warmup=${WARMUP}s members=$MEMBERS (zipf 1.1) candidates=10"

# ---- redis and data ----------------------------------------------------------
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "bench.sh: redis-server did not start" >&2; exit 1; }

# Every benchmark member gets features (as feedback would have left them) and
# a pacing plan in force for the simulated week, as in steady state.
SIM_WEEK=1795392000 # Monday 2026-11-23 00:00 UTC, notifd-bench's simulated week
{
    python3 "$ROOT/scripts/gen_members.py" --count "$MEMBERS" --prefix "b:" --due $((SIM_WEEK + 30 * 86400))
    python3 - "$MEMBERS" "$SIM_WEEK" <<'EOF'
import sys
n, week = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)
buf = []
for i in range(n):
    f = [b"HSET", b"b:plan:{m%08d}" % i, b"version", b"1", b"action", b"%d" % (i % 100),
         b"computed_at", b"%d" % (week - 86400), b"valid_until", b"%d" % (week + 14 * 86400),
         b"source", b"planner", b"push_per_week", b"%d" % (1 + i % 7),
         b"email_per_week", b"%d" % (1 + i % 3)]
    buf.append(b"*%d\r\n" % len(f) + b"".join(bulk(x) for x in f))
    if len(buf) >= 4096:
        out.write(b"".join(buf)); buf.clear()
out.write(b"".join(buf))
EOF
} | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/load.log" 2>&1
grep -q "errors: 0" "$WORK/load.log" || { echo "bench.sh: loading members failed:" >&2; cat "$WORK/load.log" >&2; exit 1; }

# ---- 1. redis-benchmark ------------------------------------------------------
# redis-benchmark counts requests, not seconds: a short calibration run sizes
# the real one to about DURATION seconds, and `timeout` bounds both.
RB_TIMEOUT=$(calc "int($DURATION * 4 + 30)")
redis_bench() { # name, args... -> prints rps p50 p99
    local n=$(( QUICK == 1 ? 20000 : 100000 ))
    local rps
    rps="$(timeout "$RB_TIMEOUT" redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -P "$PIPELINE" \
        -n "$n" -r "$MEMBERS" --csv "$@" 2>/dev/null | tail -1 | cut -d'"' -f4)"
    n="$(calc "max(1000, int(${rps:-1000} * $DURATION))")"
    timeout "$RB_TIMEOUT" redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -P "$PIPELINE" \
        -n "$n" -r "$MEMBERS" --csv "$@" 2>/dev/null | tail -1 |
        tr -d '"' | awk -F, '{print $2, $5, $7}'
}
read -r GET_RPS GET_P50 GET_P99 < <(redis_bench -t get)
# One script for redis-benchmark and notifd-bench --target lua-cap.
LUA_CAP="$("$BENCH" --print-lua-cap)"
LUA_SHA="$(redis-cli -p "$REDIS_PORT" script load "$LUA_CAP")"
# Redis CPU per Lua-cap call: the CPU delta over both runs (calibration and
# sized) divided by the EVALSHA calls Redis counted over the same span.
R0="$(cpu_ticks "$REDIS_PID")"
read -r LUA_RPS LUA_P50 LUA_P99 < <(redis_bench EVALSHA "$LUA_SHA" 1 "cap:{__rand_int__}:week" 5 604800)
R1="$(cpu_ticks "$REDIS_PID")"
LUA_CALLS="$(redis-cli -p "$REDIS_PORT" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')"
LUA_REDIS_US="$(cpu_us_per $((R1 - R0)) "${LUA_CALLS:-0}")"

# ---- notifd ------------------------------------------------------------------
NOTIFD_PORT="$(free_port)"
cat >"$WORK/notifd.json" <<EOF
{
  "listen": "127.0.0.1:$NOTIFD_PORT",
  "admin_listen": null,
  "redis": {"host": "127.0.0.1", "port": $REDIS_PORT, "prefix": "b:", "timeout_ms": 2000},
  "planner": {"enabled": false},
  "events": {"url": null, "spool_dir": "$WORK/spool"},
  "limits": {"max_connections": 20000, "ts_window_s": 0},
  "log_level": "warn",
  "fast": {"ranker": {"default": {"bias": -1.0, "score": 2.0,
           "features": {"freshness": 0.5, "relevance": 1.0, "novelty": 0.3}}}}
}
EOF
# 1,000 connections need as many descriptors in notifd and in notifd-bench.
ulimit -n 4096 2>/dev/null || true
"$NOTIFD" -c "$WORK/notifd.json" 2>"$WORK/notifd.log" &
NOTIFD_PID=$!
ready=0
for _ in $(seq 200); do
    if python3 - "$NOTIFD_PORT" 2>/dev/null <<'EOF'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b'{"op":"health"}\n')
sys.exit(0 if json.loads(s.makefile().readline()).get("redis", {}).get("ready") else 1)
EOF
    then ready=1; break; fi
    sleep 0.05
done
[ "$ready" = 1 ] || { echo "bench.sh: notifd did not become ready:" >&2; cat "$WORK/notifd.log" >&2; exit 1; }
vm() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$NOTIFD_PID/status"; }
RSS_IDLE="$(vm VmRSS)"

run_bench() { # log name, args... -> the one result line
    timeout "$(calc "int($DURATION + $WARMUP + 30)")" "$BENCH" --port "$NOTIFD_PORT" \
        --duration "$DURATION" --warmup "$WARMUP" --members "$MEMBERS" --candidates 10 "${@:2}" \
        2>"$WORK/$1.err" | tail -1
}

# ---- 2. decide throughput ------------------------------------------------------
N0="$(cpu_ticks "$NOTIFD_PID")"
R0="$(cpu_ticks "$REDIS_PID")"
DECIDE_LINE="$(run_bench closed --connections "$CONNECTIONS" --pipeline "$PIPELINE")"
N1="$(cpu_ticks "$NOTIFD_PID")"
R1="$(cpu_ticks "$REDIS_PID")"
DECIDES="$(sed -n 's/^notifd-bench: sent [0-9]*, replies \([0-9]*\),.*/\1/p' "$WORK/closed.err")"
DECIDE_NOTIFD_US="$(cpu_us_per $((N1 - N0)) "${DECIDES:-0}")"
DECIDE_REDIS_US="$(cpu_us_per $((R1 - R0)) "${DECIDES:-0}")"
DECIDE_RPS="$(field decide_rps <<<"$DECIDE_LINE")"
REASONS="$(sed -n 's/^notifd-bench: reasons: //p' "$WORK/closed.err")"

# ---- 3. latency at 50% load ----------------------------------------------------
HALF_RATE="$(calc "max(1, int(${DECIDE_RPS:-0} * 0.5))")"
HALF_LINE="$(run_bench half --connections "$CONNECTIONS" --pipeline "$PIPELINE" --rate "$HALF_RATE")"

# ---- 3c. the Lua cap at the same rate, from the same generator ----------------
LUA_HALF_LINE="$(timeout "$(calc "int($DURATION + $WARMUP + 30)")" "$BENCH" --target lua-cap \
    --port "$REDIS_PORT" --duration "$DURATION" --warmup "$WARMUP" --members "$MEMBERS" \
    --connections "$CONNECTIONS" --pipeline "$PIPELINE" --rate "$HALF_RATE" \
    2>"$WORK/lua_half.err" | tail -1)"

# ---- 3b. the load that keeps p99 within 1 ms -----------------------------------
# Open loop at rising shares of step 2's throughput until p99 passes 1 ms:
# the highest share that stayed within it (0 if even the lowest did not).
OK_SHARE=0
OK_LINE="none"
SHARES="0.05 0.1 0.2 0.3 0.4"
[ "$QUICK" = 1 ] && SHARES="0.05"
for share in $SHARES; do
    rate="$(calc "max(1, int(${DECIDE_RPS:-0} * $share))")"
    line="$(run_bench "share$share" --connections "$CONNECTIONS" --pipeline "$PIPELINE" --rate "$rate")"
    p99="$(field p99_ms <<<"$line")"
    if [ -n "$p99" ] && [ "$(calc "int(float('$p99') <= 1.0)")" = 1 ]; then
        OK_SHARE="$share"
        OK_LINE="rate=$rate $line"
    else
        break
    fi
done

# ---- 5. RSS with 1,000 connections -----------------------------------------------
RSS_RUN_PEAK="$(vm VmHWM)"
# Reset the peak so VmHWM below is the peak of this step (Linux >= 4.0).
echo 5 >"/proc/$NOTIFD_PID/clear_refs" 2>/dev/null || true
RSS_LINE="$(run_bench rss --connections "$RSS_CONNECTIONS" --pipeline 1 --rate "$RSS_RATE")"
RSS_PEAK="$(vm VmHWM)"

# ---- 2b. decide throughput with the plan cache -----------------------------------
# The same closed loop after a reload (SIGHUP) that turns on
# fast.plan_cache_ms: what a plan read per decide costs.
python3 - "$WORK/notifd.json" <<'EOF2'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["fast"]["plan_cache_ms"] = 1000
json.dump(cfg, open(sys.argv[1], "w"))
EOF2
kill -HUP "$NOTIFD_PID"
sleep 0.5
CACHE_LINE="$(run_bench cached --connections "$CONNECTIONS" --pipeline "$PIPELINE")"
CACHE_RPS="$(field decide_rps <<<"$CACHE_LINE")"

kill "$NOTIFD_PID" 2>/dev/null || true
wait "$NOTIFD_PID" 2>/dev/null || true
NOTIFD_PID=""

# ---- 4. planner --------------------------------------------------------------------
# Last, with notifd and this Redis stopped: it starts its own pair, and
# 1M members need the memory.
kill "$REDIS_PID" 2>/dev/null || true
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""
PLANNER_REDIS_US=""
PLANNER_NOTIFD_US=""
if [ -x "$ROOT/scripts/bench_planner.sh" ]; then
    PLANNER_LINE="$(MEMBERS="$PLANNER_MEMBERS" NOTIFD_BIN="$NOTIFD" \
        timeout 1800 "$ROOT/scripts/bench_planner.sh" 2>"$WORK/planner.err" | tail -1 || true)"
    PLANNER_RATE="$(field members_per_s <<<"$PLANNER_LINE")"
    PLANNER_CPU="$(grep '^cpu_us_per_member ' "$WORK/planner.err" | tail -1 || true)"
    PLANNER_REDIS_US="$(field redis <<<"$PLANNER_CPU")"
    PLANNER_NOTIFD_US="$(field notifd <<<"$PLANNER_CPU")"
    PLANNER_ROW="members=$PLANNER_MEMBERS members_per_s=${PLANNER_RATE:-failed}"
    PLANNER_ROW="$PLANNER_ROW redis_us_per_member=${PLANNER_REDIS_US:-nan} notifd_us_per_member=${PLANNER_NOTIFD_US:-nan}"
    [ -n "$PLANNER_RATE" ] || tail -5 "$WORK/planner.err" >&2
else
    PLANNER_RATE=""
    PLANNER_ROW="skipped"
    echo "planner: skipped (scripts/bench_planner.sh missing)"
fi

# ---- 4b. the Lua cap again, after the planner -----------------------------------
# The planner's pass comes minutes after step 1 (loading a million members
# takes a while), and the neighbours on a shared box change rates by up to
# 2x in that time: the planner is compared with the mean of the cap's rate
# before and after it.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis-after.log" &
REDIS_PID=$!
for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
LUA_SHA_AFTER="$(redis-cli -p "$REDIS_PORT" script load "$LUA_CAP")"
read -r LUA_RPS_AFTER _ _ < <(redis_bench EVALSHA "$LUA_SHA_AFTER" 1 "cap:{__rand_int__}:week" 5 604800)
kill "$REDIS_PID" 2>/dev/null || true
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""
LUA_RPS_PLANNER="$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:] if x]; print(round(sum(v)/len(v)) if v else '')" "${LUA_RPS:-}" "${LUA_RPS_AFTER:-}")"

# ---- report --------------------------------------------------------------------------
echo
printf '%-44s %s\n' "step" "result"
printf '%-44s %s\n' "1a redis GET (c=$CONNECTIONS, P=$PIPELINE)" "rps=${GET_RPS:-failed} p50_ms=${GET_P50:-} p99_ms=${GET_P99:-}"
printf '%-44s %s\n' "1b redis EVALSHA Lua cap (c=$CONNECTIONS, P=$PIPELINE)" "rps=${LUA_RPS:-failed} p50_ms=${LUA_P50:-} p99_ms=${LUA_P99:-}"
printf '%-44s %s\n' "2  notifd decide, closed loop" "$DECIDE_LINE"
printf '%-44s %s\n' "2b notifd decide, fast.plan_cache_ms=1000" "$CACHE_LINE"
printf '%-44s %s\n' "3  notifd decide, open loop at $HALF_RATE/s" "$HALF_LINE"
printf '%-44s %s\n' "3c Lua cap in Redis, open loop at $HALF_RATE/s" "$LUA_HALF_LINE"
printf '%-44s %s\n' "3b highest share of step 2 with p99 <= 1 ms" "share=$OK_SHARE $OK_LINE"
printf '%-44s %s\n' "4  planner pass" "$PLANNER_ROW"
printf '%-44s %s\n' "4b redis EVALSHA Lua cap, after the planner" "rps=${LUA_RPS_AFTER:-failed}"
printf '%-44s %s\n' "5  notifd, $RSS_CONNECTIONS connections at $RSS_RATE/s" "$RSS_LINE"
printf '%-44s %s\n' "   notifd RSS" "idle_mib=$RSS_IDLE peak_mib_1000_conns=$RSS_PEAK peak_mib_whole_run=$RSS_RUN_PEAK"
echo "decide reasons (step 2): $REASONS"
echo "cpu per operation (less sensitive to neighbours than rates): lua_cap: redis_us=$LUA_REDIS_US;" \
    "decide: notifd_us=$DECIDE_NOTIFD_US redis_us=$DECIDE_REDIS_US;" \
    "planner member: notifd_us=${PLANNER_NOTIFD_US:-nan} redis_us=${PLANNER_REDIS_US:-nan}"
echo
# A number over another; n/a when either is missing or not a number, or
# the divisor is 0.
ratio() {
    python3 - "${1:-}" "${2:-}" <<'EOF'
import math, sys
try:
    a, b = float(sys.argv[1]), float(sys.argv[2])
    print("n/a" if b == 0 or not math.isfinite(a / b) else round(a / b, 3))
except ValueError:
    print("n/a")
EOF
}
# One line per goal: ratio NAME = VALUE (goal OP X) PASS|FAIL|n/a
goal_line() { # name value op goal
    python3 - "$@" <<'EOF'
import math, sys
name, value, op, goal = sys.argv[1:5]
try:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError
    ok = v >= float(goal) if op == ">=" else v <= float(goal)
    print("ratio %s = %s (goal %s %s) %s" % (name, value, op, goal, "PASS" if ok else "FAIL"))
except ValueError:
    print("ratio %s = n/a (goal %s %s) n/a" % (name, op, goal))
EOF
}
HALF_P99="$(field p99_ms <<<"$HALF_LINE")"
LUA_HALF_P99="$(field p99_ms <<<"$LUA_HALF_LINE")"
echo "other figures:"
echo "  decide_rps / get_rps     = $(ratio "$DECIDE_RPS" "$GET_RPS")"
echo "  with plan cache / lua    = $(ratio "$CACHE_RPS" "$LUA_RPS")"
echo "  planner redis cpu per member / per lua cap call = $(ratio "$PLANNER_REDIS_US" "$LUA_REDIS_US")"
echo "  lua cap rps for the planner = ${LUA_RPS_PLANNER:-n/a} (mean of ${LUA_RPS:-n/a} before, ${LUA_RPS_AFTER:-n/a} after)"
echo "  p99_ms at 50% load       = ${HALF_P99:-n/a} (Lua cap at the same rate: ${LUA_HALF_P99:-n/a})"
echo "  p99 <= 1 ms up to        = $(calc "round($OK_SHARE * 100)")% of step 2's throughput (shares tried: $SHARES)"
echo "goals:"
goal_line decide_rps/lua_cap_rps "$(ratio "$DECIDE_RPS" "$LUA_RPS")" ">=" 0.5
goal_line redis_cpu_per_decide/lua_cap_redis_cpu "$(ratio "$DECIDE_REDIS_US" "$LUA_REDIS_US")" "<=" 2
goal_line notifd_cpu_per_decide/lua_cap_redis_cpu "$(ratio "$DECIDE_NOTIFD_US" "$LUA_REDIS_US")" "<=" 2
goal_line planner_members_per_s/lua_cap_rps "$(ratio "$PLANNER_RATE" "$LUA_RPS_PLANNER")" ">=" 0.5
goal_line open_loop_p99/lua_cap_open_loop_p99 "$(ratio "$HALF_P99" "$LUA_HALF_P99")" "<=" 3
goal_line "rss_mib_at_${RSS_CONNECTIONS}_connections" "${RSS_PEAK:-n/a}" "<=" 32
echo "summary: get_rps=${GET_RPS:-0} lua_cap_rps=${LUA_RPS:-0} decide_rps=${DECIDE_RPS:-0}" \
    "decide_vs_lua=$(ratio "$DECIDE_RPS" "$LUA_RPS") p99_ms_half_load=${HALF_P99:-nan}" \
    "lua_cap_p99_ms_half_load=${LUA_HALF_P99:-nan} lua_cap_rps_after_planner=${LUA_RPS_AFTER:-0}" \
    "planner_members_per_s=${PLANNER_RATE:-nan} planner_redis_us_per_member=${PLANNER_REDIS_US:-nan}" \
    "lua_cap_redis_us=${LUA_REDIS_US:-nan} decide_redis_us=${DECIDE_REDIS_US:-nan}" \
    "decide_notifd_us=${DECIDE_NOTIFD_US:-nan} rss_mib_1000_conns=${RSS_PEAK:-nan}"
