"""notifd-sim end to end: a small deterministic population against the real
notifd and a real redis-server (both started by notifd-sim itself).

This checks that the tool works: the output parses, the baseline's volume is
calibrated to within 2% of the hierarchical run's, the same seed gives the
same output twice, and invariants that hold whatever the policies do. It does
NOT check that the hierarchical policy beats the baseline: that is a
measurement (README.md, docs/simulation.md), not a property of a 300-member
run.

Environment: NOTIFD_BIN (set by ctest) is the notifd under test;
NOTIFD_BUILD_DIR (set by ctest) holds notifd-sim.
"""
import csv
import io
import os
import re
import subprocess
import tempfile
import unittest

from harness import NOTIFD_BIN, ROOT

BUILD_DIR = os.environ.get("NOTIFD_BUILD_DIR", os.path.join(ROOT, "build"))
SIM_BIN = os.path.join(BUILD_DIR, "notifd-sim")
COHORTS = ("casual", "regular", "heavy", "overall")
# The default grid's largest values and fast.cap_factor (1): no member can get
# more than that many messages on a channel in a week. notifd-sim checks each
# send against the cap of the plan the reply named (over_cap_<ch>, per member)
# and reports the most any member got in a week and in any 7 days.
WEEKLY_CAP = {"push": 14, "email": 7}
# Over any 7 days: that plus the whole part of plan x (rolling_cap_factor 1.5 - 1).
ROLLING_CAP = {"push": 21, "email": 10}


def run_sim(*args, timeout=240):
    with tempfile.TemporaryDirectory(prefix="notifd-sim-test-") as d:
        csv_path = os.path.join(d, "out.csv")
        proc = subprocess.run([SIM_BIN, "--notifd", NOTIFD_BIN, "--csv", csv_path, *args],
                              capture_output=True, text=True, timeout=timeout)
        rows = []
        if os.path.exists(csv_path):
            with open(csv_path) as f:
                text = f.read()
            rows = list(csv.DictReader(io.StringIO(text)))
        else:
            text = ""
    return proc, text, rows


class SimSmoke(unittest.TestCase):
    ARGS = ("--members", "300", "--weeks", "4", "--warmup", "1", "--seed", "7")

    @classmethod
    def setUpClass(cls):
        # The build always makes notifd-sim: missing is a failure, not a skip.
        if not os.path.exists(SIM_BIN):
            raise AssertionError("notifd-sim is not built (%s)" % SIM_BIN)
        cls.first = run_sim(*cls.ARGS)
        cls.second = run_sim(*cls.ARGS)

    def test_runs_and_prints_the_table(self):
        proc, _, _ = self.first
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for cohort in COHORTS:
            line = [l for l in proc.stdout.splitlines() if l.startswith(cohort + " ")]
            self.assertEqual(len(line), 1, proc.stdout)
            # cohort, members, then 4 groups of (a) (b) lift|diff
            fields = line[0].replace("|", " ").split()
            self.assertEqual(len(fields), 2 + 12, line[0])
            float(fields[2])

    def test_csv_has_every_run_and_cohort(self):
        _, _, rows = self.first
        runs = sorted({r["run"] for r in rows})
        self.assertIn("a", runs)
        self.assertTrue(any(r.startswith("b") for r in runs), runs)
        for run in runs:
            cohorts = {r["cohort"] for r in rows if r["run"] == run}
            self.assertEqual(cohorts, set(COHORTS), run)

    def test_baseline_volume_is_calibrated_within_two_percent(self):
        _, _, rows = self.first
        overall = {r["run"]: r for r in rows if r["cohort"] == "overall"}
        last_b = max((r for r in overall if r.startswith("b")), key=lambda r: int(r[1:]))
        a = float(overall["a"]["sends_pmw"])
        b = float(overall[last_b]["sends_pmw"])
        self.assertGreater(a, 0)
        self.assertLessEqual(abs(b / a - 1), 0.02, (a, b))
        self.assertEqual(overall[last_b]["mode"], "threshold")
        self.assertEqual(overall["a"]["mode"], "hierarchical")

    def test_same_seed_same_output(self):
        self.assertEqual(self.first[0].returncode, 0, self.first[0].stderr)
        self.assertEqual(self.first[0].stdout, self.second[0].stdout)
        self.assertEqual(self.first[1], self.second[1])

    def test_invariants(self):
        _, _, rows = self.first
        for r in rows:
            where = (r["run"], r["cohort"])
            # (Counts cannot be negative: checking that they are not would
            # check nothing. The overall rows must show activity instead.)
            self.assertLessEqual(float(r["optout_rate"]), 1.0, where)
            sends = float(r["sends_pmw"])
            if r["cohort"] == "overall":
                for k in ("opportunities_pmw", "sends_pmw", "opens_pmw", "visits_pmw"):
                    self.assertGreater(float(r[k]), 0.0, (where, k))
            # A send needs an opportunity; per-channel sends add up.
            self.assertLessEqual(sends, float(r["opportunities_pmw"]) + 1e-9, where)
            per_ch = sum(float(r["sends_%s_pmw" % ch]) for ch in WEEKLY_CAP)
            self.assertAlmostEqual(per_ch, sends, places=4, msg=where)
            for ch, cap in WEEKLY_CAP.items():
                self.assertLessEqual(float(r["sends_%s_pmw" % ch]), cap, where)
                if r["mode"] == "hierarchical":
                    # One member at a time (a cohort mean cannot see one
                    # member's breach): no send past the cap of the plan
                    # in force, so no week and no 7 days above the grid's
                    # largest plan either. (The baseline has no cap.)
                    self.assertEqual(int(r["over_cap_%s" % ch]), 0, where)
                    self.assertLessEqual(int(r["max_week_%s" % ch]), cap, where)
                    self.assertLessEqual(int(r["max_7d_%s" % ch]), ROLLING_CAP[ch], where)
            self.assertLessEqual(float(r["clicks_pmw"]), float(r["opens_pmw"]) + 0.05, where)
            self.assertLessEqual(float(r["visits_after_open_pmw"]),
                                 float(r["visits_pmw"]) + 1e-9, where)
        # The overall row is the members-weighted mean of the cohorts.
        for run in {r["run"] for r in rows}:
            by = {r["cohort"]: r for r in rows if r["run"] == run}
            n = sum(int(by[c]["members"]) for c in COHORTS[:3])
            self.assertEqual(n, int(by["overall"]["members"]))
            mean = sum(int(by[c]["members"]) * float(by[c]["sends_pmw"])
                       for c in COHORTS[:3]) / n
            self.assertAlmostEqual(mean, float(by["overall"]["sends_pmw"]), places=4)
        # The per-member check saw sends (it is not vacuous).
        overall_a = [r for r in rows if r["run"] == "a" and r["cohort"] == "overall"][0]
        self.assertGreaterEqual(int(overall_a["max_week_push"]), 1)
        # Hierarchical plans come from the grid (push <= 14, email <= 7).
        for r in rows:
            if r["mode"] == "hierarchical":
                self.assertLessEqual(float(r["plan_push_mean"]), 14.0)
                self.assertLessEqual(float(r["plan_email_mean"]), 7.0)

    def test_sweep_runs_one_hierarchical_run_per_value(self):
        proc, _, rows = run_sim("--members", "100", "--weeks", "2", "--warmup", "1",
                                "--sweep", "slow.message_cost=0.005:0.045:0.04")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        values = sorted({float(r["param_value"]) for r in rows})
        self.assertEqual(values, [0.005, 0.045])
        self.assertTrue(all(r["mode"] == "hierarchical" for r in rows))
        self.assertTrue(all(r["param_key"] == "slow.message_cost" for r in rows))
        self.assertIn("slow.message_cost", proc.stdout)

    def test_frontier_interpolates_between_the_bracketing_baseline_runs(self):
        # 2 costs: hierarchical runs, then threshold runs bracketing them.
        # (Costs low enough that 60 members still get a volume the
        # baseline's calibrator can go below: its sends have a floor in so
        # small a population.)
        proc, _, rows = run_sim("--members", "60", "--weeks", "3", "--warmup", "1",
                                "--frontier", "0.01:0.02:0.01")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        hier = {(float(r["param_value"]), r["cohort"]): r for r in rows
                if r["mode"] == "hierarchical"}
        base = [r for r in rows if r["mode"] == "threshold"]
        self.assertTrue(all(r["param_key"] == "slow.message_cost"
                            for r in rows if r["mode"] == "hierarchical"))
        self.assertTrue(all(r["param_key"] == "fast.threshold.target_send_rate" for r in base))
        # "cost cohort | (a) sends (a) visits | (b) visits at (a)'s sends | diff"
        line = re.compile(r"^([0-9.]+) +(%s) +\| +([0-9.]+) +([0-9.]+) +\| +([0-9.]+|outside)"
                          r" +\| +([-+][0-9.]+%%|n/a)$" % "|".join(COHORTS))
        table = [m.groups() for m in map(line.match, proc.stdout.splitlines()) if m]
        verdicts = dict(l.split()[0:1] + l.split(": ")[1:] for l in proc.stdout.splitlines()
                        if " at least the baseline: " in l)
        self.assertEqual(sorted(float(c) for c in verdicts), [0.01, 0.02], proc.stdout)
        self.assertEqual(len(table), 2 * len(COHORTS), proc.stdout)
        for cost, cohort, sends, visits, at, diff in table:
            a = hier[(float(cost), cohort)]
            self.assertAlmostEqual(float(sends), float(a["sends_pmw"]), places=3)
            self.assertAlmostEqual(float(visits), float(a["visits_pmw"]), places=3)
            # The baseline's own points of this cohort, by volume.
            pts = sorted((float(r["sends_pmw"]), float(r["visits_pmw"]))
                         for r in base if r["cohort"] == cohort)
            x = float(a["sends_pmw"])
            if at == "outside":
                self.assertTrue(x < pts[0][0] or x > pts[-1][0], (cohort, x, pts))
                self.assertNotEqual(cohort, "overall", "the brackets reach every volume")
                continue
            lo = max(p for p in pts if p[0] <= x)
            hi = min(p for p in pts if p[0] >= x)
            self.assertGreaterEqual(float(at), min(lo[1], hi[1]) - 0.0005, (lo, hi))
            self.assertLessEqual(float(at), max(lo[1], hi[1]) + 0.0005, (lo, hi))
            t = (x - lo[0]) / (hi[0] - lo[0]) if hi[0] > lo[0] else 0.0
            # Printed with 3 decimals, and recomputed here from the CSV's
            # rounded figures: within one unit of the last decimal.
            self.assertAlmostEqual(float(at), lo[1] + t * (hi[1] - lo[1]), delta=0.001)
            if cohort == "overall":
                # The verdict is the sign of the overall difference.
                self.assertEqual(verdicts[cost], "no" if diff.startswith("-") else "yes")
        # A frontier fixes both modes and the swept key.
        bad = subprocess.run([SIM_BIN, "--frontier", "0.01:0.03:0.02", "--mode", "threshold"],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)



class SecondMemberModel(unittest.TestCase):
    """--model recovering: fatigue and opt-out load that recover within days,
    responsiveness that drifts. The same members and opportunities, other
    dynamics: the run works, says which model it ran, and the members respond
    differently (drifting responsiveness changes who opens)."""

    ARGS = ("--members", "300", "--weeks", "4", "--warmup", "1", "--seed", "7",
            "--mode", "hierarchical")

    def test_the_recovering_model_runs_and_differs(self):
        if not os.path.exists(SIM_BIN):
            raise AssertionError("notifd-sim is not built (%s)" % SIM_BIN)
        window = run_sim(*self.ARGS)
        recovering = run_sim(*self.ARGS, "--model", "recovering")
        for proc, _text, rows in (window, recovering):
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            self.assertTrue(rows)
        self.assertIn("model recovering", recovering[0].stdout)
        self.assertNotIn("model recovering", window[0].stdout)
        w = {r["cohort"]: r for r in window[2]}
        r = {r["cohort"]: r for r in recovering[2]}
        # The same population, other responses.
        self.assertEqual(w["overall"]["members"], r["overall"]["members"])
        self.assertNotEqual(w["overall"]["opens_pmw"], r["overall"]["opens_pmw"])
        bad = subprocess.run([SIM_BIN, "--model", "sometimes"], capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--model wants window or recovering", bad.stderr)


if __name__ == "__main__":
    unittest.main()
