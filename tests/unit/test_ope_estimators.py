"""Unit tests of tools/notifd-ope: the estimators' maths on hand-computed
and synthetic logs with a known truth, the member-week reader, and the
command line's errors."""
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import unittest

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "notifd-ope")
sys.path.insert(0, TOOL)

import ope_estimators as est  # noqa: E402
import ope_logs  # noqa: E402

GRID = [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 14.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0]]


class NeighboursAndTargets(unittest.TestCase):
    def test_neighbours_follow_notifds_order_and_the_grid(self):
        self.assertEqual(est.neighbours((2.0, 1.0), GRID),
                         [(1.0, 1.0), (3.0, 1.0), (2.0, 0.0), (2.0, 2.0)])
        self.assertEqual(est.neighbours((7.0, 0.0), GRID), [(5.0, 0.0), (10.0, 0.0), (7.0, 1.0)])
        self.assertEqual(est.neighbours((0.0, 0.0), GRID), [(1.0, 0.0), (0.0, 1.0)])

    def test_explore_target_is_notifds_draw(self):
        t = est.target_explore(0.2)
        p = t.probs((2.0, 1.0), 4, GRID)
        self.assertAlmostEqual(sum(p.values()), 1.0)
        self.assertAlmostEqual(p[(2.0, 1.0)], 0.8)
        self.assertAlmostEqual(p[(3.0, 1.0)], 0.05)
        # No neighbour allowed: certain.
        self.assertEqual(t.probs((2.0, 1.0), 0, GRID), {(2.0, 1.0): 1.0})
        with self.assertRaises(ValueError):
            est.target_explore(1.5)

    def test_shift_target_moves_one_grid_step_and_stops_at_the_ends(self):
        up = est.target_shift(0, +1, "up")
        self.assertEqual(up.probs((5.0, 1.0), 3, GRID), {(7.0, 1.0): 1.0})
        self.assertEqual(up.probs((14.0, 1.0), 3, GRID), {(14.0, 1.0): 1.0})
        down = est.target_shift(1, -1, "down")
        self.assertEqual(down.probs((5.0, 0.0), 3, GRID), {(5.0, 0.0): 1.0})


class CostTarget(unittest.TestCase):
    def test_another_cost_moves_to_the_neighbour_it_favours(self):
        g = (2.0, 1.0)  # neighbours: (1,1), (3,1), (2,0), (2,2)
        gaps = [0.02, 0.004, 0.012, 0.03]
        # Same cost: the greedy plan.
        self.assertEqual(est.target_cost(0.0).probs(g, 4, GRID, gaps), {g: 1.0})
        # Cheaper by 0.005: one more push gains 0.005 - 0.004 > 0.
        self.assertEqual(est.target_cost(-0.005).probs(g, 4, GRID, gaps), {(3.0, 1.0): 1.0})
        # Dearer by 0.015: one fewer email saves 0.015 - 0.012, one fewer
        # push 0.015 - 0.02 < 0: the email goes.
        self.assertEqual(est.target_cost(0.015).probs(g, 4, GRID, gaps), {(2.0, 0.0): 1.0})
        # Dearer by 0.025: both gain; the larger gain wins.
        self.assertEqual(est.target_cost(0.025).probs(g, 4, GRID, gaps), {(2.0, 0.0): 1.0})
        # An exact tie goes to fewer messages.
        self.assertEqual(est.target_cost(0.012).probs(g, 4, GRID, gaps), {(2.0, 0.0): 1.0})
        # No gaps logged, or not one per neighbour: the greedy plan.
        self.assertEqual(est.target_cost(0.5).probs(g, 4, GRID, None), {g: 1.0})
        self.assertEqual(est.target_cost(0.5).probs(g, 4, GRID, [0.1]), {g: 1.0})


class Estimates(unittest.TestCase):
    def test_hand_computed_sums(self):
        # Weights 2, 0, 1 with rewards 3, 5, 1: IPS (6 + 0 + 1)/3, SNIPS 7/3,
        # ESS 3^2 / 5.
        e = est.estimates_from_sums(3, 3.0, 7.0, 7.0, 5.0, 9.0)
        self.assertAlmostEqual(e["ips"], 7 / 3)
        self.assertAlmostEqual(e["snips"], 7 / 3)
        self.assertAlmostEqual(e["ess"], 9 / 5)
        self.assertAlmostEqual(e["logged"], 3.0)
        self.assertAlmostEqual(e["d_ips"], 7 / 3 - 3.0)
        e = est.estimates_from_sums(2, 0.0, 0.0, 0.0, 0.0, 1.0)
        self.assertTrue(math.isnan(e["snips"]))  # no support: not a number, not 0
        self.assertEqual(e["ess"], 0.0)

    def test_ess_of_equal_and_of_one_dominant_weight(self):
        self.assertAlmostEqual(est.estimates_from_sums(100, 100.0, 0, 0, 100.0)["ess"], 100.0)
        e = est.estimates_from_sums(100, 99 * 0.01 + 100, 0, 0, 99 * 1e-4 + 1e4)["ess"]
        self.assertLess(e, 1.1)

    def test_percentile_interpolates(self):
        self.assertEqual(est.percentile([1.0, 2.0, 3.0, 4.0], 0.5), 2.5)
        self.assertEqual(est.percentile([1.0, 2.0, 3.0], 0.0), 1.0)
        self.assertEqual(est.percentile([1.0, 2.0, 3.0], 1.0), 3.0)

    def test_broken_propensity_is_an_error(self):
        u = {"member": "a", "week": 1, "action": (1.0, 0.0), "greedy": (1.0, 0.0), "k": 3,
             "p0": 0.0, "reward": {"visits": 1.0}}
        with self.assertRaises(ValueError):
            est.unit_terms([u], est.target_greedy(), "visits", GRID)


def synthetic_logs(n_members, weeks, eps, seed):
    """A known world: each member has a baseline b (spread like notifd-sim's
    cohorts) and a plan's push value v adds 0.3*v - 0.05*v^2 visits a week,
    plus Poisson-like noise. Plans are drawn as notifd draws them."""
    rng = random.Random(seed)
    effect = lambda v: 0.3 * v - 0.05 * v * v  # noqa: E731
    units = []
    truth = {"greedy": 0.0, "up": 0.0, "down": 0.0}
    for m in range(n_members):
        b = rng.choice([0.5, 4.0, 18.0]) * math.exp(rng.gauss(0, 0.3))
        g = (rng.choice([1.0, 2.0, 3.0]), 0.0)
        nb = est.neighbours(g, GRID)
        for w in range(weeks):
            if rng.random() < eps:
                a, p0 = nb[rng.randrange(len(nb))], eps / len(nb)
            else:
                a, p0 = g, 1 - eps
            r = max(0.0, b + effect(a[0]) + rng.gauss(0, math.sqrt(b + 1)))
            units.append({"member": "m%d" % m, "week": w, "action": a, "greedy": g,
                          "k": len(nb), "p0": p0, "holdout": False, "reward": {"visits": r}})
            # The truth of each target, by the same noise-free formula
            # (the clip at 0 is rare enough to leave out).
            truth["greedy"] += b + effect(g[0])
            up = GRID[0][GRID[0].index(g[0]) + 1]
            down = GRID[0][GRID[0].index(g[0]) - 1]
            truth["up"] += b + effect(up)
            truth["down"] += b + effect(down)
    n = len(units)
    return units, {k: v / n for k, v in truth.items()}


class SyntheticTruth(unittest.TestCase):
    def test_every_estimator_finds_the_truth_and_dr_is_tightest(self):
        units, truth = synthetic_logs(3000, 4, 0.3, seed=5)
        on_policy = sum(u["reward"]["visits"] for u in units) / len(units)
        targets = {"greedy": est.target_greedy(), "up": est.target_shift(0, +1, "up"),
                   "down": est.target_shift(0, -1, "down")}
        for name, t in targets.items():
            r = est.evaluate(units, t, "visits", GRID, bootstrap=100, seed=2)
            for k in ("ips", "snips", "dr"):
                lo, hi = r["ci"][k]
                self.assertLess(lo, truth[name], (name, k, r[k], truth[name], lo, hi))
                self.assertGreater(hi, truth[name], (name, k, r[k], truth[name], lo, hi))
            # The difference from the logged policy, whose spread is the
            # weekly noise only for DR: its interval is the narrowest.
            d_true = truth[name] - on_policy
            lo, hi = r["ci"]["d_dr"]
            self.assertLess(lo, d_true + 0.05, (name, r["d_dr"], d_true, lo, hi))
            self.assertGreater(hi, d_true - 0.05, (name, r["d_dr"], d_true, lo, hi))
            width = {k: r["ci"][k][1] - r["ci"][k][0] for k in ("d_ips", "d_snips", "d_dr")}
            self.assertLess(width["d_dr"], width["d_ips"], width)
            self.assertLess(width["d_dr"], width["d_snips"], width)
            # ESS: about the units that follow the target.
            self.assertGreater(r["ess"], 0.3 * r["matched"])
            self.assertLessEqual(r["ess"], r["matched"] + 1e-9)
        # The estimates tell the targets apart the way the truth does.
        dr = {n: est.evaluate(units, t, "visits", GRID, bootstrap=0)["dr"]
              for n, t in targets.items()}
        self.assertEqual(sorted(dr, key=dr.get), sorted(truth, key=truth.get))

    def test_weights_are_wrong_if_propensities_are_ignored(self):
        # The same logs with every propensity claimed as 1: IPS is biased
        # (far from the truth), so the test above can fail.
        units, truth = synthetic_logs(3000, 4, 0.3, seed=5)
        for u in units:
            u["p0"] = 1.0
        r = est.evaluate(units, est.target_shift(0, +1, "up"), "visits", GRID, bootstrap=0)
        self.assertLess(r["ips"], 0.5 * truth["up"])


class CarryOver(unittest.TestCase):
    def test_a_horizon_of_two_weeks_sees_next_weeks_fatigue(self):
        # Each push a week brings 0.3 visits that week and costs 0.2 the
        # week after (fatigue). Steady state of "one push more": +0.1 a
        # week; its own week alone says +0.3.
        rng = random.Random(9)
        units = []
        eps = 0.4
        for m in range(4000):
            b = rng.choice([0.5, 4.0, 18.0])
            g = (2.0, 0.0)
            nb = est.neighbours(g, GRID)
            prev = g
            rows = []
            for w in range(6):
                if rng.random() < eps:
                    a, p0 = nb[rng.randrange(len(nb))], eps / len(nb)
                else:
                    a, p0 = g, 1 - eps
                r = b + 0.3 * a[0] - 0.2 * prev[0] + rng.gauss(0, 0.5)
                rows.append((w, a, p0, r))
                prev = a
            for i, (w, a, p0, r) in enumerate(rows[:-1]):
                units.append({"member": "m%d" % m, "week": w, "action": a, "greedy": g,
                              "k": len(nb), "p0": p0, "reward": {"visits": r},
                              "reward_h": {"visits": r + rows[i + 1][3]}})
        up = est.target_shift(0, +1, "up")
        two = est.evaluate(units, up, "visits", GRID, bootstrap=100)
        lo, hi = two["ci"]["d_dr"]
        # Relative to the logged policy (mean push 2 + 0.4 * 0), one push
        # more every week: +1 push -> +0.3 - 0.2 = +0.1.
        self.assertLess(lo, 0.1)
        self.assertGreater(hi, 0.1)
        for u in units:
            del u["reward_h"]
        one = est.evaluate(units, up, "visits", GRID, bootstrap=100)
        lo, hi = one["ci"]["d_dr"]
        self.assertGreater(lo, 0.2)  # its own week only: the fatigue is missed
        self.assertAlmostEqual(one["logged"], two["logged"])


class Pooling(unittest.TestCase):
    def test_equal_groups_pool_to_their_mean_and_noisy_ones_shrink(self):
        # No spread beyond the noise: tau2 0, everything at the mean.
        mu, tau2, post = est.eb_pool({"a": (1.0, 1.0, 10), "b": (1.2, 1.0, 10),
                                      "c": (0.8, 1.0, 10)})
        self.assertAlmostEqual(mu, 1.0)
        self.assertEqual(tau2, 0.0)
        self.assertAlmostEqual(post["a"], 1.0)
        # Real spread: precise groups keep their value, a noisy one shrinks
        # toward the mean, the more the noisier.
        groups = {"x": (0.0, 0.001, 100), "y": (2.0, 0.001, 100), "z": (10.0, 25.0, 2)}
        mu, tau2, post = est.eb_pool(groups)
        self.assertGreater(tau2, 0.5)
        self.assertAlmostEqual(post["x"], 0.0, places=2)
        self.assertAlmostEqual(post["y"], 2.0, places=2)
        self.assertLess(post["z"], 5.0)
        self.assertGreater(post["z"], mu)
        self.assertEqual(est.eb_pool({}), (est.eb_pool({})[0], 0.0, {}))
        # A group with no spread (no event at all) takes the pooled mean.
        mu, _tau2, post = est.eb_pool({"a": (1.0, 0.01, 50), "b": (2.0, 0.01, 50),
                                       "quiet": (0.0, 0.0, 20)})
        self.assertAlmostEqual(post["quiet"], mu)

    def test_group_differences_recover_each_groups_dose_response(self):
        # Two kinds of members: one more push is worth +0.5 a week to
        # greedy (1, 0) members and -0.2 to greedy (3, 0) members.
        rng = random.Random(4)
        units = []
        eps = 0.5
        for m in range(3000):
            g = (1.0, 0.0) if m % 2 else (3.0, 0.0)
            slope = 0.5 if m % 2 else -0.2
            b = rng.choice([1.0, 5.0])
            nb = est.neighbours(g, GRID)
            for w in range(4):
                if rng.random() < eps:
                    a, p0 = nb[rng.randrange(len(nb))], eps / len(nb)
                else:
                    a, p0 = g, 1 - eps
                r = b + slope * (a[0] - g[0]) + rng.gauss(0, 0.3)
                units.append({"member": "m%d" % m, "week": w, "action": a, "greedy": g,
                              "k": len(nb), "p0": p0, "reward": {"visits": r}})
        up = est.target_shift(0, +1, "up")
        raw = est.group_differences(units, up, "visits", GRID, key=lambda u: u["greedy"])
        # The logged push is one step down or up with equal probability
        # (e/3 each; the steps are 1 message on this part of the grid), so
        # its mean is the greedy value and one step up differs by the slope.
        for g, slope in (((1.0, 0.0), 0.5), ((3.0, 0.0), -0.2)):
            d, var, n = raw[g]
            expected = slope
            self.assertLess(abs(d - expected), 4 * math.sqrt(var) + 0.02, (g, d, expected))
        _mu, _tau2, post = est.eb_pool(raw)
        self.assertGreater(post[(1.0, 0.0)], 0.3)
        self.assertLess(post[(3.0, 0.0)], 0.0)


class Reader(unittest.TestCase):
    MON = 1795392000

    def write(self, events):
        d = tempfile.mkdtemp(prefix="ope-test-")
        path = os.path.join(d, "events-00000000000000000001.ndjson")
        with open(path, "w") as f:
            for e in events:
                f.write(e if isinstance(e, str) else json.dumps(e))
                f.write("\n")
        return d

    def decision(self, member, ts, eid, push=2.0, p=0.9, greedy=None, send=False, **kw):
        plan = {"version": 1, "source": "planner", "per_week": {"push": push, "email": 0.0,
                                                                 "in_app": 7.0},
                "propensity": p, "defaulted": ["in_app"]}
        if greedy is not None:
            plan["neighbours"] = 3
            plan["greedy"] = greedy
        e = {"type": "decision", "ts": ts, "member": member, "channel": "push", "send": send,
             "plan": plan, "mode": "hierarchical", "event_id": eid}
        e.update(kw)
        return e

    def test_member_weeks_from_a_spool(self):
        mon = self.MON
        d = self.write([
            self.decision("a", mon + 100, "e1", push=3.0, p=0.1, greedy={"push": 2.0,
                                                                          "email": 0.0},
                          send=True),
            self.decision("a", mon + 200, "e2", push=3.0, p=0.1, greedy={"push": 2.0,
                                                                          "email": 0.0}),
            {"type": "feedback", "ts": mon + 300, "member": "a", "event": "visit",
             "event_id": "f1"},
            {"type": "feedback", "ts": mon + 300, "member": "a", "event": "visit",
             "event_id": "f1"},  # redelivered: counted once
            {"type": "feedback", "ts": mon + 400, "member": "a", "event": "unsubscribe",
             "channel": "push", "event_id": "f2"},
            {"type": "feedback", "ts": mon + 7 * 86400 - 1, "member": "a", "event": "visit",
             "event_id": "f3"},
            {"type": "feedback", "ts": mon + 7 * 86400, "member": "a", "event": "visit",
             "event_id": "f4"},  # next week, which has no decision
            self.decision("h", mon + 100, "e3", holdout=True, reason="holdout"),
            "not json",
            "[1, 2]",
        ])
        units, stats = ope_logs.member_weeks([d])
        self.assertEqual(stats["bad_lines"], 2)
        self.assertEqual(stats["dup_events"], 1)
        self.assertEqual(stats["weeks_without_plan"], 1)
        a = [u for u in units if u["member"] == "a"]
        self.assertEqual(len(a), 1)
        u = a[0]
        self.assertEqual(u["channels"], ("email", "push"))  # in_app was defaulted
        self.assertEqual(u["action"], (0.0, 3.0))
        self.assertEqual(u["greedy"], (0.0, 2.0))
        self.assertEqual((u["k"], u["p0"]), (3, 0.1))
        self.assertEqual(u["reward"], {"visits": 2.0, "optouts": 1.0, "opens": 0.0,
                                       "sends": 1.0})
        h = [u for u in units if u["member"] == "h"][0]
        self.assertTrue(h["holdout"])
        self.assertFalse(u["holdout"])
        self.assertEqual(h["greedy"], h["action"])  # not drawn: greedy is the plan

    def test_horizon_sums_the_following_weeks_and_drops_the_last(self):
        mon, wk = self.MON, 7 * 86400
        evs = [self.decision("a", mon + i * wk + 100, "d%d" % i) for i in range(3)]
        evs += [{"type": "feedback", "ts": mon + i * wk + 200, "member": "a", "event": "visit",
                 "event_id": "v%d-%d" % (i, j)} for i in range(3) for j in range(i + 1)]
        units, stats = ope_logs.member_weeks([self.write(evs)], horizon=2)
        self.assertEqual([u["reward"]["visits"] for u in units], [1.0, 2.0])
        self.assertEqual([u["reward_h"]["visits"] for u in units], [3.0, 5.0])
        self.assertEqual(stats["weeks_past_the_logs"], 1)
        with self.assertRaises(ValueError):
            ope_logs.member_weeks([self.write(evs)], horizon=0)

    def test_week_window(self):
        d = self.write([self.decision("a", self.MON + 100, "e1"),
                        self.decision("a", self.MON + 7 * 86400 + 100, "e2")])
        w = ope_logs.week_of(self.MON)
        self.assertEqual(ope_logs.week_of(self.MON - 1), w - 1)
        units, _ = ope_logs.member_weeks([d], from_week=w + 1)
        self.assertEqual([u["week"] for u in units], [w + 1])


class CommandLine(unittest.TestCase):
    def run_tool(self, *args):
        return subprocess.run([sys.executable, os.path.join(TOOL, "notifd-ope"), *args],
                              capture_output=True, text=True, timeout=60)

    def test_bad_input_is_a_clear_error(self):
        r = self.run_tool("/nonexistent/spool")
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/spool: no such file or directory", r.stderr)
        d = tempfile.mkdtemp(prefix="ope-test-")
        r = self.run_tool(d)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no events-*.ndjson segments", r.stderr)
        path = os.path.join(d, "events-00000000000000000001.ndjson")
        with open(path, "w") as f:
            f.write(json.dumps(Reader().decision("a", Reader.MON, "e1")) + "\n")
        r = self.run_tool("--target", "shift:sms=+1", d)
        self.assertEqual(r.returncode, 2)
        self.assertIn("sms is not a planned channel", r.stderr)
        r = self.run_tool("--target", "softmax", d)
        self.assertEqual(r.returncode, 2)
        r = self.run_tool("--grid", "push=3,1", d)
        self.assertEqual(r.returncode, 2)
        self.assertIn("must start at 0 and increase", r.stderr)
        r = self.run_tool("--json", "--target", "greedy", "--target", "logged", d)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        self.assertEqual([x["kind"] for x in lines].count("estimate"), 4)


if __name__ == "__main__":
    unittest.main()
