#!/usr/bin/env bash
# scripts/tsan.sh - the integration suite with notifd built under
# ThreadSanitizer, for developers before they call threading work done (CI
# does not run it: under TSan the suite takes far longer than CI's budget).
#
#   scripts/tsan.sh [ctest -R regex]      default: every integration test
#
# notifd runs four threads (loop, planner, event sink, admin HTTP) that share
# the config snapshot, the metrics registry and a few atomics. The harness
# fails a test whose daemon log holds a "WARNING: ThreadSanitizer" report.
# Tests that measure throughput or latency against the clock are left out
# (liveness acceptance, bench and sim smoke): TSan slows notifd 5-15x.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_packages "${notifd_packages[@]}" "${notifd_test_packages[@]}"

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOTIFD_TSAN=ON >/dev/null
cmake --build build-tsan -j"$jobs"
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4 suppressions=$(pwd)/tests/tsan.supp"
# The daemon under TSan needs longer to start and stop (harness.py).
export NOTIFD_WAIT_SCALE=${NOTIFD_WAIT_SCALE:-4}
ctest --test-dir build-tsan --output-on-failure -j"$jobs" --timeout 1200 \
    -R "${1:-^integration\.}" \
    -E "test_liveness_acceptance|test_bench_smoke|test_sim_smoke|test_plan_delivery"
