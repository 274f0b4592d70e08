#!/usr/bin/env bash
# scripts/test.sh - installs what is missing, lints the Lua scripts, builds,
# and runs every test: first a normal build (warnings are errors), then the
# same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_packages "${notifd_packages[@]}" "${notifd_test_packages[@]}"

jobs=$(nproc 2>/dev/null || echo 2)

echo "== luacheck (src/store/lua: the Redis scripts)"
luacheck --no-color --config src/store/lua/.luacheckrc src/store/lua

echo "== build (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOTIFD_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNOTIFD_WERROR=ON -DNOTIFD_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j"$jobs"
