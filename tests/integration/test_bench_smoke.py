"""Smoke test of the benchmark tools: `scripts/bench.sh --quick` runs every
step for about two seconds (redis-benchmark GET and Lua cap, notifd-bench
closed and open loop against notifd and against the Lua cap in Redis, the
planner over 10k members, 1,000 connections) and its output must parse,
including one line per performance goal with its verdict. It never checks
a speed: CI machines are shared and slow, and a timed test would fail for
reasons that are not bugs.

Also checks notifd-bench's own contract: one result line, exit code 1 when
it cannot connect, and its Lua-cap target against a real Redis (the cap's
script loaded and run, its answers counted).
"""
import os
import re
import subprocess
import unittest

from harness import NOTIFD_BIN, ROOT, Redis, free_port

BUILD_DIR = os.environ.get("NOTIFD_BUILD_DIR", os.path.dirname(NOTIFD_BIN))
BENCH_BIN = os.path.join(BUILD_DIR, "notifd-bench")
RESULT = re.compile(r"decide_rps=(\d+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) "
                    r"p999_ms=([\d.]+) errors=(\d+)$")
LUA_RESULT = re.compile(r"lua_cap_rps=(\d+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) "
                        r"p999_ms=([\d.]+) errors=(\d+)$")
GOAL = re.compile(r"^ratio (\S+) = (\S+) \(goal (>=|<=) ([\d.]+)\) (PASS|FAIL|n/a)$")
# Every ratio of the performance goals (docs/benchmarks.md), with its goal.
GOALS = {
    "decide_rps/lua_cap_rps": (">=", 0.5),
    "redis_cpu_per_decide/lua_cap_redis_cpu": ("<=", 2),
    "notifd_cpu_per_decide/lua_cap_redis_cpu": ("<=", 2),
    "planner_members_per_s/lua_cap_rps": (">=", 0.5),
    "open_loop_p99/lua_cap_open_loop_p99": ("<=", 3),
    "rss_mib_at_1000_connections": ("<=", 32),
}


def check_goal_lines(test, out, prefix="ratio"):
    """The lines `<prefix> NAME = VALUE (goal OP X) PASS|FAIL`: one per goal,
    each measured (a number), its goal the documented one, and its verdict
    the comparison of the two. Returns {name: value}."""
    pattern = re.compile(GOAL.pattern.replace("^ratio ", "^" + prefix + " ").rstrip("$") +
                         r"(\s+runs: [\d. ]+)?$")
    found = {}
    for line in out.splitlines():
        m = pattern.match(line)
        if m is None:
            test.assertFalse(line.startswith(prefix + " "), "unparsable: " + line)
            continue
        name, value, op, goal, verdict = m.group(1, 2, 3, 4, 5)
        test.assertNotIn(name, found, "twice: " + line)
        test.assertIn(name, GOALS, line)
        test.assertEqual((op, float(goal)), GOALS[name], line)
        test.assertNotEqual(value, "n/a", "not measured: " + line)
        v = float(value)
        test.assertGreater(v, 0, line)
        test.assertEqual(verdict, "PASS" if (v >= float(goal) if op == ">=" else v <= float(goal))
                         else "FAIL", line)
        found[name] = v
    test.assertEqual(sorted(found), sorted(GOALS), out)
    return found


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
        # Step 3c: the Lua cap in Redis at step 3's rate, from notifd-bench.
        m = re.search(r"^3c Lua cap in Redis, open loop at (\d+)/s\s+(.*)$", out, re.M)
        self.assertIsNotNone(m, out)
        step3 = re.search(r"^3  notifd decide, open loop at (\d+)/s", out, re.M)
        self.assertIsNotNone(step3, out)
        self.assertEqual(m.group(1), step3.group(1), "3c runs at step 3's rate")
        lua = LUA_RESULT.search(m.group(2))
        self.assertIsNotNone(lua, m.group(0))
        self.assertTrue(int(lua.group(1)) > 0 or float(lua.group(2)) > 0, m.group(0))
        self.assertRegex(out, r"4b redis EVALSHA Lua cap, after the planner\s+rps=[\d.]+")
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
        m = re.search(r"4  planner pass\s+members=\d+ members_per_s=(\d+) "
                      r"redis_us_per_member=([\d.]+) notifd_us_per_member=([\d.]+)", out)
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(1)), 0, out)
        self.assertGreater(float(m.group(2)), 0, out)
        # One line per goal, each measured, with its verdict.
        check_goal_lines(self, out)
        self.assertRegex(out, r"peak_mib_1000_conns=[\d.]+")
        summary = [line for line in out.splitlines() if line.startswith("summary: ")]
        self.assertEqual(len(summary), 1, out)
        fields = dict(kv.split("=", 1) for kv in summary[0][len("summary: "):].split())
        for key in ("get_rps", "lua_cap_rps", "decide_rps", "decide_vs_lua", "p99_ms_half_load",
                    "lua_cap_p99_ms_half_load", "lua_cap_rps_after_planner",
                    "planner_members_per_s", "planner_redis_us_per_member", "lua_cap_redis_us",
                    "decide_redis_us", "decide_notifd_us", "rss_mib_1000_conns"):
            self.assertIn(key, fields)
        for key in ("get_rps", "lua_cap_rps", "decide_rps", "decide_vs_lua", "p99_ms_half_load",
                    "lua_cap_p99_ms_half_load", "rss_mib_1000_conns"):
            self.assertGreater(float(fields[key]), 0, summary[0])

    def test_median_of_runs(self):
        # scripts/bench.sh --runs N prints the median of each goal ratio over
        # its runs (scripts/bench_median.py); a run's n/a is left out.
        import tempfile
        runs = [
            "ratio a/b = 0.4 (goal >= 0.5) FAIL\nratio p99 = 2.5 (goal <= 3) PASS\n"
            "ratio rss = n/a (goal <= 32) n/a\n",
            "noise\nratio a/b = 0.6 (goal >= 0.5) PASS\nratio p99 = 3.5 (goal <= 3) FAIL\n"
            "ratio rss = n/a (goal <= 32) n/a\n",
            "ratio a/b = 0.45 (goal >= 0.5) FAIL\nratio p99 = 1.0 (goal <= 3) PASS\n"
            "ratio rss = n/a (goal <= 32) n/a\n",
        ]
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, text in enumerate(runs):
                paths.append(os.path.join(d, "run%d.out" % i))
                with open(paths[-1], "w") as f:
                    f.write(text)
            p = subprocess.run(["python3", os.path.join(ROOT, "scripts", "bench_median.py")] +
                               paths, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode().splitlines(), [
            "median a/b = 0.450 (goal >= 0.5) FAIL   runs: 0.400 0.600 0.450",
            "median p99 = 2.500 (goal <= 3) PASS   runs: 2.500 3.500 1.000",
            "median rss = n/a (goal <= 32) n/a   runs: none measured",
        ])

    def test_runs_rejects_a_bad_count(self):
        for bad in ("0", "x", "-1"):
            p = subprocess.run([os.path.join(ROOT, "scripts", "bench.sh"), "--runs", bad],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"--runs", p.stderr)

    def test_lua_cap_target_runs_the_cap_in_redis(self):
        redis = Redis().start()
        try:
            script = subprocess.run([BENCH_BIN, "--print-lua-cap"], stdout=subprocess.PIPE,
                                    timeout=60, check=True).stdout
            self.assertIn(b"INCR", script)
            # Ten keys, a cap of 5 each: most calls are capped, and every
            # one is answered.
            p = subprocess.run([BENCH_BIN, "--target", "lua-cap", "--port", str(redis.port),
                                "--duration", "0.5", "--warmup", "0.1", "--members", "10",
                                "--connections", "4", "--pipeline", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            lines = p.stdout.decode().splitlines()
            self.assertEqual(len(lines), 1, lines)
            m = LUA_RESULT.match(lines[0])
            self.assertIsNotNone(m, lines[0])
            self.assertEqual(int(m.group(6)), 0, p.stderr)
            allowed = re.search(rb"reasons: allowed=(\d+) capped=(\d+)", p.stderr)
            self.assertIsNotNone(allowed, p.stderr)
            self.assertEqual(int(allowed.group(1)), 10 * 5, p.stderr)  # the cap held
            self.assertGreater(int(allowed.group(2)), 0, p.stderr)
            self.assertEqual(redis.command("EVALSHA", "d28558dfd0c2691e042d8f63ac3b43b4f7e5750d",
                                           1, "cap:{000000000003}:week", 5, 604800), 0)
            # Open loop at a rate, from the same generator.
            p = subprocess.run([BENCH_BIN, "--target", "lua-cap", "--port", str(redis.port),
                                "--duration", "0.5", "--warmup", "0", "--members", "1000",
                                "--rate", "2000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            m = LUA_RESULT.match(p.stdout.decode().strip())
            self.assertIsNotNone(m, p.stdout)
            self.assertIn(b"target 2000 req/s", p.stderr)
        finally:
            redis.close()

    def test_lua_cap_target_checks_the_scripts_sha1(self):
        # A server whose SCRIPT LOAD answers another SHA1 (a Lua cap edited
        # on one side only) fails the run's error count instead of being
        # measured as NOSCRIPT replies.
        import socket
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]

        def serve():
            conns = []
            try:
                while True:
                    c, _ = srv.accept()
                    conns.append(c)
                    c.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
            except OSError:
                pass
            finally:
                for c in conns:
                    c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            p = subprocess.run([BENCH_BIN, "--target", "lua-cap", "--port", str(port),
                                "--duration", "0.2", "--warmup", "0", "--connections", "2",
                                "--pipeline", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        finally:
            srv.close()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"not the cap's SHA1", p.stderr)
        m = LUA_RESULT.match(p.stdout.decode().strip())
        self.assertIsNotNone(m, p.stdout)
        self.assertGreater(int(m.group(6)), 0, p.stderr)

    def test_lua_cap_target_rejects_bad_usage(self):
        p = subprocess.run([BENCH_BIN, "--target", "memcached"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--target", p.stderr)


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
