"""Smoke test of the benchmark tools: `scripts/bench.sh --quick` runs every
step for about two seconds (redis-benchmark GET and Lua cap, notifd-bench
closed and open loop, the planner over 10k members, 1,000 connections) and
its output must parse. It never checks a speed: CI machines are shared and
slow, and a timed test would fail for reasons that are not bugs.

Also checks notifd-bench's own contract: one result line, exit code 1 when
it cannot connect.
"""
import os
import re
import subprocess
import unittest

from harness import NOTIFD_BIN, ROOT, free_port

BUILD_DIR = os.environ.get("NOTIFD_BUILD_DIR", os.path.dirname(NOTIFD_BIN))
BENCH_BIN = os.path.join(BUILD_DIR, "notifd-bench")
RESULT = re.compile(r"decide_rps=(\d+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) "
                    r"p999_ms=([\d.]+) errors=(\d+)$")


class BenchSmokeTest(unittest.TestCase):
    def test_quick_run_prints_every_step_and_parses(self):
        env = dict(os.environ, NOTIFD_BUILD_DIR=BUILD_DIR)
        p = subprocess.run([os.path.join(ROOT, "scripts", "bench.sh"), "--quick"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=280)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertRegex(out, r"machine: nproc=\d+ cpu=")
        # Steps 1a and 1b: redis-benchmark numbers.
        self.assertRegex(out, r"1a redis GET .* rps=[\d.]+ ")
        self.assertRegex(out, r"1b redis EVALSHA Lua cap .* rps=[\d.]+ ")
        # Steps 2, 2b, 3, 5: notifd-bench lines that parse and show decisions.
        rows = [line for line in out.splitlines() if re.match(r"^(2 |2b|3 |5 )", line)]
        self.assertEqual(len(rows), 4, out)
        for row in rows:
            m = RESULT.search(row)
            self.assertIsNotNone(m, row)
            if row.startswith(("2 ", "2b")):
                # Closed loop: every request is answered before the next
                # goes out, so decisions were made and none failed.
                self.assertGreater(int(m.group(1)), 0, row)
                self.assertEqual(int(m.group(6)), 0, row)
            else:
                # Open loop: requests still unanswered when the run ends
                # count as errors, and how many depends on the machine's
                # speed (a sanitizer build on a busy box falls behind). On
                # a saturated box it can answer the requests only after the
                # 2-second window (rate 0, latencies of seconds); replies
                # arrived and were measured either way.
                self.assertTrue(int(m.group(1)) > 0 or float(m.group(2)) > 0, row)
        # Step 4: the planner figure (scripts/bench_planner.sh is part of
        # the tree: its "skipped" line would be a regression, not a pass).
        m = re.search(r"4  planner pass\s+members=\d+ members_per_s=(\d+)", out)
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(1)), 0, out)
        self.assertRegex(out, r"peak_mib_1000_conns=[\d.]+")
        summary = [line for line in out.splitlines() if line.startswith("summary: ")]
        self.assertEqual(len(summary), 1, out)
        fields = dict(kv.split("=", 1) for kv in summary[0][len("summary: "):].split())
        for key in ("get_rps", "lua_cap_rps", "decide_rps", "decide_vs_lua", "p99_ms_half_load",
                    "planner_members_per_s", "rss_mib_1000_conns"):
            self.assertIn(key, fields)
        for key in ("get_rps", "lua_cap_rps", "decide_rps", "decide_vs_lua", "p99_ms_half_load",
                    "rss_mib_1000_conns"):
            self.assertGreater(float(fields[key]), 0, summary[0])

    def test_bench_reports_failure_to_connect(self):
        p = subprocess.run([BENCH_BIN, "--port", str(free_port()), "--duration", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot connect", p.stderr)
        self.assertEqual(p.stdout, b"")

    def test_bench_rejects_bad_usage(self):
        p = subprocess.run([BENCH_BIN, "--connections", "zero"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
