"""Plan-level exploration and the permanent holdout, against the real
binary and a real Redis: plans drawn around the argmax carry a propensity
that matches how often they are drawn; answers and events carry it beside
the coin's and the ranker's; holdout members get no paced message, stay
held out across a reload, are marked in events, and their feedback keeps
flowing; bad values of both keys fail --check-config."""
import json
import os
import signal
import subprocess
import tempfile
import unittest

from harness import NOTIFD_BIN, EventSink, Notifd, Redis, sanitizer_report, wait_for

MONDAY = 1795392000  # 2026-11-23 00:00 UTC
DAY = 86400
EPS = 0.5


def hgetall(redis, key):
    flat = redis.command("HGETALL", key)
    return dict(zip(flat[::2], flat[1::2]))


class LearningTestCase(unittest.TestCase):
    overrides = {}

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.sink = EventSink()
        self.addCleanup(self.sink.close)
        self.sink.start()
        self.workdir = tempfile.mkdtemp(prefix="notifd-learning-")
        cfg = {"events": {"url": self.sink.url, "spool_dir": os.path.join(self.workdir, "spool"),
                          "flush_ms": 50, "batch_max": 200},
               "planner": {"enabled": False}, "seed": 11}
        for k, v in self.overrides.items():
            cfg[k] = v
        self.notifd = Notifd(self.redis.port, cfg, workdir=self.workdir)
        self.addCleanup(self.check_sanitizer)
        self.addCleanup(self.notifd.stop)
        self.notifd.start()

    def check_sanitizer(self):
        report = sanitizer_report(self.notifd.log_text())
        if report:
            raise AssertionError("notifd's sanitizer report:\n" + report)

    def pipeline(self, reqs):
        c = self.notifd.client()
        try:
            out = []
            for i in range(0, len(reqs), 200):
                out += c.pipeline(reqs[i:i + 200])
            for r in out:
                self.assertTrue(r["ok"], r)
            return out
        finally:
            c.close()

    def events(self, type_, n, what):
        wait_for(lambda: len([e for e in self.sink.events() if e["type"] == type_]) >= n,
                 timeout=20, what=what)
        return [e for e in self.sink.events() if e["type"] == type_]


class PlanExplorationTest(LearningTestCase):
    # A cost, fatigue prior and grid of their own, so that a change of the
    # defaults' tuning does not move the greedy plan these tests draw around
    # (push 1, email 0).
    overrides = {"slow": {"explore_prob": EPS, "message_cost": 0.01,
                          "priors": {"channels": {"push": {"fatigue": 0.5},
                                                  "email": {"fatigue": 0.5}}},
                          "actions": {"push": [0, 1, 2, 3, 4, 5, 7, 10, 14],
                                      "email": [0, 1, 2, 3, 4, 5, 7]}}}

    def test_drawn_plans_log_honest_propensities(self):
        members = ["m%d" % i for i in range(600)]
        # One visit each: every member joins the schedule with no other
        # history, so every greedy plan is the prior's (push 1, email 0).
        self.pipeline([{"op": "feedback", "member": m, "event": "visit", "ts": MONDAY}
                       for m in members])
        c = self.notifd.client()
        self.addCleanup(c.close)
        run = c.request({"op": "planner_run", "ts": MONDAY + 60})
        self.assertEqual(run["planned"], len(members), run)
        counts = {}
        for m in members:
            h = hgetall(self.redis, "t:plan:{%s}" % m)
            plan = (float(h["push_per_week"]), float(h["email_per_week"]))
            # The greedy plan and its three neighbours: push 0 or 2, email 1.
            self.assertIn(plan, [(1, 0), (0, 0), (2, 0), (1, 1)], h)
            self.assertEqual(h["neighbours"], "3", h)
            gaps = [float(x) for x in h["gaps"].split(",")]
            self.assertEqual(len(gaps), 3, h)
            self.assertTrue(all(x >= 0 for x in gaps), h)
            p = float(h["propensity"])
            if plan == (1, 0):
                self.assertAlmostEqual(p, 1 - EPS, places=12)
                self.assertNotIn("greedy_push", h)
                self.assertNotIn("greedy_email", h)
            else:
                self.assertAlmostEqual(p, EPS / 3, places=12)
                moved = "greedy_push" if plan[0] != 1 else "greedy_email"
                self.assertEqual(float(h[moved]), 1.0 if moved == "greedy_push" else 0.0, h)
            counts[plan] = counts.get(plan, 0) + 1
        # Each action is drawn as often as its propensity says (4 sd).
        n = len(members)
        for plan, k in counts.items():
            p = 1 - EPS if plan == (1, 0) else EPS / 3
            sd = (p * (1 - p) / n) ** 0.5
            self.assertLess(abs(k / n - p), 4 * sd, (plan, k, counts))
        self.assertEqual(len(counts), 4, counts)

        # The same member replanned as of the same time draws the same plan.
        m = next(m for m in members
                 if hgetall(self.redis, "t:plan:{%s}" % m)["push_per_week"] != "1")
        before = hgetall(self.redis, "t:plan:{%s}" % m)
        r = c.request({"op": "replan", "member": m, "ts": MONDAY + 60})
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["plan"]["per_week"]["push"], float(before["push_per_week"]))
        self.assertAlmostEqual(r["plan"]["propensity"], float(before["propensity"]))
        self.assertEqual(r["plan"]["greedy"], {"push": 1.0, "email": 0.0})

        # Decisions carry the plan's propensity beside the coin's and the ranker's.
        decides = [{"op": "decide", "member": mm, "channel": "push", "opportunity": "o-" + mm,
                    "ts": MONDAY + 12 * 3600,
                    "candidates": [{"id": "a", "score": 0.9}, {"id": "b", "score": 0.3}]}
                   for mm in members[:100]]
        answers = self.pipeline(decides)
        evs = {e["member"]: e for e in self.events("decision", 100, "100 decision events")}
        for req, a in zip(decides, answers):
            h = hgetall(self.redis, "t:plan:{%s}" % req["member"])
            self.assertAlmostEqual(a["plan"]["propensity"], float(h["propensity"]), places=12)
            self.assertEqual(a["plan"]["neighbours"], 3)
            self.assertEqual(len(a["plan"]["gaps"]), 3)
            e = evs[req["member"]]
            self.assertAlmostEqual(e["propensities"]["plan"], float(h["propensity"]), places=12)
            if e["send"]:
                self.assertAlmostEqual(e["propensities"]["coin"], e["p_send"])
                self.assertGreater(e["propensities"]["ranker"], 0)
                self.assertAlmostEqual(e["propensities"]["coin"] * e["propensities"]["ranker"],
                                       e["propensity"], places=9)
            elif e["reason"] == "paced_skip":
                self.assertAlmostEqual(e["propensities"]["coin"], 1 - e["p_send"])
                self.assertIsNone(e["propensities"]["ranker"])
            else:
                self.assertEqual(e["propensities"]["coin"], 1.0)
        self.assertTrue(any(e["send"] for e in evs.values()))
        self.assertTrue(any(e["reason"] == "paced_skip" for e in evs.values()))

    def test_no_exploration_writes_no_propensity(self):
        # The same members with exploration switched off by a reload: greedy
        # plans, and no stale propensity survives the rewrite.
        members = ["g%d" % i for i in range(40)]
        self.pipeline([{"op": "feedback", "member": m, "event": "visit", "ts": MONDAY}
                       for m in members])
        c = self.notifd.client()
        self.addCleanup(c.close)
        c.request({"op": "planner_run", "ts": MONDAY + 60})
        self.assertTrue(all("propensity" in hgetall(self.redis, "t:plan:{%s}" % m)
                            for m in members))
        self.notifd.config["slow"]["explore_prob"] = 0
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="reload")
        c2 = self.notifd.client()
        self.addCleanup(c2.close)
        run = c2.request({"op": "planner_run", "ts": MONDAY + 7 * DAY + 60})
        self.assertEqual(run["planned"], len(members), run)
        for m in members:
            h = hgetall(self.redis, "t:plan:{%s}" % m)
            self.assertEqual((h["push_per_week"], h["email_per_week"]), ("1", "0"), h)
            for stale in ("propensity", "neighbours", "gaps", "greedy_push", "greedy_email"):
                self.assertNotIn(stale, h)
        d = c2.request({"op": "decide", "member": members[0], "channel": "push",
                        "opportunity": "x", "ts": MONDAY + 7 * DAY + 43200,
                        "candidates": [{"id": "a", "score": 0.5}]})
        self.assertEqual(d["plan"]["propensity"], 1.0)
        self.assertNotIn("greedy", d["plan"])


class HoldoutTest(LearningTestCase):
    overrides = {"experiments": {"holdout_share": 0.3, "holdout_salt": "hold-test"},
                 "fast": {"unpaced_channels": ["in_app"]}}

    def decide_all(self, members, channel, opp, ts):
        return self.pipeline([{"op": "decide", "member": m, "channel": channel,
                               "opportunity": opp + m, "ts": ts,
                               "candidates": [{"id": opp + "-a", "score": 0.9}]} for m in members])

    def test_holdout_members_get_no_paced_message_and_feedback_flows(self):
        members = ["h%d" % i for i in range(400)]
        # A plan that would send at every opportunity: only the holdout stops it.
        for m in members:
            self.redis.command("HSET", "t:plan:{%s}" % m, "version", "1", "source", "test",
                               "push_per_week", "50", "email_per_week", "50",
                               "valid_until", str(MONDAY + 30 * DAY))
        ts = MONDAY + 12 * 3600
        held = set()
        for channel in ("push", "email"):
            answers = self.decide_all(members, channel, channel, ts)
            reasons = {m: a["reason"] for m, a in zip(members, answers)}
            got = {m for m, r in reasons.items() if r == "holdout"}
            if channel == "push":
                held = got
            self.assertEqual(got, held, "one holdout for every paced channel")
            for m, a in zip(members, answers):
                if m in held:
                    self.assertFalse(a["send"])
                    self.assertEqual(a["propensity"], 1.0)
                    self.assertIsNone(a["message"])
        share = len(held) / len(members)
        self.assertGreater(share, 0.22)
        self.assertLess(share, 0.38)
        self.assertGreater(len(set(members) - held), 0)
        # In-app is unpaced here: outside the policy, so the holdout gets it.
        inapp = self.decide_all(members, "in_app", "i", ts)
        self.assertTrue(all(a["send"] for a in inapp), [a for a in inapp if not a["send"]][:3])

        # Stable across a reload and a restart with the same salt and share.
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="reload")
        again = self.decide_all(members, "push", "r", ts + 3600)
        self.assertEqual({m for m, a in zip(members, again) if a["reason"] == "holdout"}, held)
        self.notifd.stop()
        self.notifd.start()
        again = self.decide_all(members, "push", "s", ts + 7200)
        self.assertEqual({m for m, a in zip(members, again) if a["reason"] == "holdout"}, held)

        # Feedback flows for holdout members: recorded, counted, published.
        some = sorted(held)[:20]
        fb = self.pipeline([{"op": "feedback", "member": m, "event": "visit", "ts": ts + 600}
                            for m in some])
        self.assertTrue(all(r["recorded"] for r in fb))
        for m in some:
            self.assertNotEqual(hgetall(self.redis, "t:member:{%s}" % m), {})
        feedback = self.events("feedback", 20, "feedback events")
        for e in feedback:
            self.assertEqual(e.get("holdout", False), e["member"] in held, e)
        decisions = self.events("decision", len(members), "decision events")
        for e in decisions:
            self.assertEqual(e.get("holdout", False), e["member"] in held, e)
            if e["member"] in held and e["channel"] != "in_app":
                self.assertEqual(e["reason"], "holdout")
        c = self.notifd.client()
        self.addCleanup(c.close)
        stats = c.request({"op": "stats"})
        self.assertIn("holdout", json.dumps(stats))


class CheckConfigTest(unittest.TestCase):
    def check(self, cfg):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        return subprocess.run([NOTIFD_BIN, "-c", f.name, "--check-config"],
                              capture_output=True, text=True, timeout=30)

    def test_bad_values_are_refused_with_their_key(self):
        r = self.check({"slow": {"explore_prob": 0.7}})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("slow.explore_prob: must be a number in [0, 0.5], not 0.7", r.stderr)
        r = self.check({"experiments": {"holdout_share": 0.1}})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("experiments.holdout_salt: is required with holdout_share", r.stderr)
        r = self.check({"slow": {"explore_prob": 0.05},
                        "experiments": {"holdout_share": 0.1, "holdout_salt": "h"}})
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
