"""notifd-ope validated against notifd-sim, small and fast: a population
plans with exploration (slow.explore_prob 0.3) and keeps its events; the
same population runs again with greedy plans. notifd-ope, reading only the
first run's events, must (1) reproduce the first run's own visits per
member-week from its logs, and (2) hold the greedy run's simulated visits,
and the difference between the runs, in its DR intervals (two-week reward
horizon). The full table,
three pairs and a larger population, is scripts/ope_validate.py."""
import os
import sys
import unittest

from harness import NOTIFD_BIN, ROOT

sys.path.insert(0, os.path.join(ROOT, "tools", "notifd-ope"))
import ope_validate as v  # noqa: E402

BUILD_DIR = os.environ.get("NOTIFD_BUILD_DIR", os.path.join(ROOT, "build"))
SIM_BIN = os.path.join(BUILD_DIR, "notifd-sim")


class OpeAgainstSimulator(unittest.TestCase):
    def test_greedy_plans_estimated_from_exploring_logs(self):
        if not os.path.exists(SIM_BIN):
            raise AssertionError("notifd-sim is not built (%s)" % SIM_BIN)
        args = ["--members", "600", "--weeks", "4", "--warmup", "1", "--seed", "3"]
        a, logged, rows = v.validate(SIM_BIN, NOTIFD_BIN, args, warmup=1, explore=0.3,
                                     pairs=v.PAIRS[:1], bootstrap=200, horizon=[1, 2])
        # The logs account for every measured visit of run A.
        self.assertAlmostEqual(logged[1]["dr"], float(a["visits_pmw"]), places=3)
        r = rows[0]
        # The two-week horizon (docs/ope.md): a plan's effect outlives its week.
        e = r["est"][2]
        self.assertTrue(v.inside(r["sim_b"], e["ci"]["dr"]), (r["sim_b"], e["dr"], e["ci"]["dr"]))
        self.assertTrue(v.inside(r["sim_delta"], e["ci"]["d_dr"]),
                        (r["sim_delta"], e["d_dr"], e["ci"]["d_dr"]))
        # The greedy plan is logged with propensity 0.7: about 70% of the
        # member-weeks support it, and its weights 1/0.7 give an ESS of them.
        self.assertGreater(e["matched"], 0.6 * e["units"])
        self.assertLess(e["matched"], 0.8 * e["units"])
        self.assertGreater(e["ess"], 0.9 * e["matched"])
        # The difference interval is much narrower than the value's: the
        # population's spread cancels (what makes the check sharp).
        self.assertLess(e["ci"]["d_dr"][1] - e["ci"]["d_dr"][0],
                        0.5 * (e["ci"]["dr"][1] - e["ci"]["dr"][0]))


if __name__ == "__main__":
    unittest.main()
