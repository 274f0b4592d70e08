#!/usr/bin/env bash
# scripts/valgrind.sh - runs the test suite under valgrind memcheck, for
# developers (CI does not run it: it takes minutes, and the ASan build in
# scripts/test.sh catches most of the same bugs).
#
#   scripts/valgrind.sh [--unit-only | --integration-only] BUILD_DIR [TEST_PY...]
#
# BUILD_DIR is a build without sanitizers (valgrind and ASan do not mix),
# brought up to date before the tests run, for example one made with
#   cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug && cmake --build build-vg
#
# 1. Every unit test binary BUILD_DIR/tests/test_* runs under memcheck.
# 2. Every integration test (tests/integration/test_*.py, or only the TEST_PY
#    files given) runs with the daemon under memcheck: the harness puts
#    $NOTIFD_WRAPPER in front of the notifd command and waits ten times
#    longer for startup and shutdown. Each daemon process writes its report
#    to its own file, since the daemon's stderr is the test's log.
#
# Definite and indirect leaks count as errors; "still reachable" (libraries'
# global state) and "possibly lost" do not. A failing test, a memcheck
# error, or a leak makes the script print a summary and exit 1. Reports are
# kept in BUILD_DIR/valgrind/ (printed at the end when something failed).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

run_unit=1
run_integration=1
case "${1:-}" in
--unit-only) run_integration=0; shift ;;
--integration-only) run_unit=0; shift ;;
esac
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
build=$(cd "$1" && pwd)
shift
if [ $# -gt 0 ]; then
    integration_tests=("$@")
else
    integration_tests=("$root"/tests/integration/test_*.py)
fi

if ! command -v valgrind >/dev/null; then
    echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
    exit 2
fi
if [ -x "$build/notifd" ] && ldd "$build/notifd" | grep -q libasan; then
    echo "valgrind.sh: $build is a sanitizer build; use a build without -DNOTIFD_SANITIZE" >&2
    exit 2
fi

# Bring the build up to date first: a build directory left from an earlier
# checkout tests old code and reports nothing about the new.
if [ -f "$build/CMakeCache.txt" ]; then
    cmake --build "$build" -j"$(nproc)" >/dev/null || {
        echo "valgrind.sh: building $build failed" >&2
        exit 2
    }
fi

vg=(valgrind --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99
    --track-origins=yes --num-callers=30)
out="$build/valgrind"
rm -rf "$out"
mkdir -p "$out"

declare -a summary
failed=0

# A report with errors ends with "ERROR SUMMARY: N errors", N > 0 (the
# counted leak kinds are included in N). A process killed with SIGKILL leaves
# no summary and counts as clean: the harness only kills a daemon that did
# not stop in time, and then the test itself fails.
report_has_errors() {
    grep -Eq 'ERROR SUMMARY: [1-9]' "$1"
}

if [ "$run_unit" = 1 ]; then
    shopt -s nullglob
    units=("$build"/tests/test_*)
    shopt -u nullglob
    [ ${#units[@]} -gt 0 ] || { echo "valgrind.sh: no unit tests in $build/tests" >&2; exit 2; }
    for bin in "${units[@]}"; do
        [ -x "$bin" ] && [ -f "$bin" ] || continue
        name=$(basename "$bin")
        log="$out/unit.$name.log"
        echo "== unit $name"
        "${vg[@]}" --log-file="$log" "$bin" >"$out/unit.$name.out" 2>&1
        rc=$?
        if [ $rc -eq 99 ] || report_has_errors "$log"; then
            summary+=("VALGRIND  unit $name  ($log)")
            failed=1
        elif [ $rc -ne 0 ]; then
            summary+=("FAILED    unit $name  (exit $rc, $out/unit.$name.out)")
            failed=1
        else
            summary+=("ok        unit $name")
        fi
    done
fi

if [ "$run_integration" = 1 ]; then
    for test in "${integration_tests[@]}"; do
        name=$(basename "$test" .py)
        logdir="$out/$name"
        mkdir -p "$logdir"
        echo "== integration $name (notifd under valgrind; slow)"
        NOTIFD_BIN="$build/notifd" NOTIFD_BUILD_DIR="$build" \
            NOTIFD_WRAPPER="${vg[*]} --log-file=$logdir/notifd.%p.log" \
            python3 "$test" >"$logdir/test.out" 2>&1
        rc=$?
        bad=()
        for log in "$logdir"/notifd.*.log; do
            [ -e "$log" ] || continue
            report_has_errors "$log" && bad+=("$log")
        done
        if [ ${#bad[@]} -gt 0 ]; then
            summary+=("VALGRIND  integration $name  (${bad[*]})")
            failed=1
        fi
        if [ $rc -ne 0 ]; then
            summary+=("FAILED    integration $name  (exit $rc, $logdir/test.out)")
            failed=1
        elif [ ${#bad[@]} -eq 0 ]; then
            n=$(ls "$logdir"/notifd.*.log 2>/dev/null | wc -l)
            summary+=("ok        integration $name  ($n notifd runs)")
        fi
    done
fi

echo
echo "== valgrind summary ($out)"
printf '%s\n' "${summary[@]}"
if [ "$failed" != 0 ]; then
    echo
    for log in "$out"/unit.*.log "$out"/*/notifd.*.log; do
        [ -e "$log" ] && report_has_errors "$log" || continue
        echo "---- $log"
        head -n 200 "$log"
    done
    exit 1
fi
echo "no errors"
