#!/usr/bin/env bash
# scripts/plan_delivery.sh - what a producer gets from a written plan: the
# realised/plan table, strategy x scenario (tests/integration/plan_delivery.py
# describes the scenarios and the promises; test_plan_delivery.py holds
# every row to them). Each row runs its own redis-server and notifd on free
# ports, in virtual time, in the default configuration but for fast.pacing.
#
# Usage: scripts/plan_delivery.sh [strategy,...] [scenario,...] [fast.KEY=JSON ...]
#   e.g. scripts/plan_delivery.sh quality b_repeated fast.cap_factor=1.5
# Environment: NOTIFD_BUILD_DIR (default build/; built there if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${NOTIFD_BUILD_DIR:-$ROOT/build}"
cd "$ROOT"
source scripts/deps.sh
ensure_packages "${notifd_packages[@]}" >&2
if [ ! -x "$BUILD/notifd" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target notifd >&2
fi
NOTIFD_BIN="$BUILD/notifd" exec python3 - "$@" <<'PY'
import json, sys
sys.path.insert(0, "tests/integration")
import harness, plan_delivery as pd

args = sys.argv[1:]
strategies = args.pop(0).split(",") if args and "=" not in args[0] else list(pd.STRATEGIES)
names = args.pop(0).split(",") if args and "=" not in args[0] else [s.name for s in pd.SCENARIOS]
fast = {}
for kv in args:
    key, value = kv.split("=", 1)
    fast[key.split(".", 1)[1]] = json.loads(value)
print(pd.TABLE_HEAD)
failed = 0
for strategy in strategies:
    for scenario in pd.SCENARIOS:
        if scenario.name not in names:
            continue
        redis = harness.Redis().start()
        notifd = harness.Notifd(redis.port, {"fast": {"pacing": strategy, **fast},
                                             "log_level": "warn"}).start()
        try:
            counts, halves = pd.run(notifd, redis, scenario)
        finally:
            notifd.close()
            redis.close()
        summary, over = pd.summarise(scenario, counts, halves, fast.get("cap_factor", 1.0))
        print(pd.format_rows(strategy, scenario, summary), flush=True)
        for problem in pd.problems(scenario, summary, over, counts, halves):
            failed += 1
            print("|  | broken: %s |" % problem, flush=True)
print("\n%d broken promises" % failed)
PY
