#!/usr/bin/env bash
# scripts/sim.sh - the standard policy comparison with the member simulator.
#
# Builds notifd and notifd-sim if needed, then runs notifd-sim's comparison:
# 20,000 members x 12 weeks (2 warm-up), (a) the hierarchical slow/fast
# policy on notifd's defaults against (b) the threshold baseline calibrated
# to (a)'s volume, and prints the per-cohort table that README.md quotes.
# notifd-sim starts its own redis-server and notifd for every run (free
# ports, temp dirs), so nothing here touches a running notifd or Redis.
#
# Usage: scripts/sim.sh [notifd-sim options]
#   extra options go to notifd-sim and override the standard ones, e.g.
#     scripts/sim.sh --members 2000 --weeks 6            a quick look
#     scripts/sim.sh --set fast.pacing=budget            another pacing
#     scripts/sim.sh --sweep slow.message_cost=0.005:0.05:0.005   the frontier
#   --plot FILE.png installs gnuplot-nox if it is missing.
# Environment: NOTIFD_BUILD_DIR (default build/; built there if missing),
#   SIM_OUT (default var/sim): where the CSV (and plot) land.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${NOTIFD_BUILD_DIR:-$ROOT/build}"
OUT="${SIM_OUT:-$ROOT/var/sim}"
cd "$ROOT"
source scripts/deps.sh
# stdout is the table (README quotes it): package installs report on stderr.
ensure_packages "${notifd_packages[@]}" >&2
for arg in "$@"; do
  if [ "$arg" = "--plot" ]; then
    ensure_packages gnuplot-nox >&2
  fi
done

if [ ! -x "$BUILD/notifd" ] || [ ! -x "$BUILD/notifd-sim" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target notifd notifd-sim
fi

mkdir -p "$OUT"
# The standard run; later options (from the command line) win.
exec "$BUILD/notifd-sim" --members 20000 --weeks 12 --warmup 2 --seed 1 \
  --csv "$OUT/compare.csv" --notifd "$BUILD/notifd" "$@"
