"""Experiments: independent slow and fast layers, end to end."""
import signal
import unittest

from harness import PLAIN_COIN, NotifdTestCase, wait_for

MONDAY = 1795392000  # 2026-11-23 00:00 UTC
DAY = 86400

EXPERIMENTS = {
    "fast": {"salt": "fast-2026-11", "arms": [
        {"name": "fresh", "share": 0.5, "set": {"fast.ranker.push.features.freshness": 10}}]},
    "slow": {"salt": "slow-2026-11", "arms": [
        {"name": "cost_x50", "share": 0.5, "set": {"slow.message_cost": 0.5}}]},
}

# The high-score candidate is stale; the fresh one scores lower.
CANDIDATES = [{"id": "popular", "score": 0.9, "features": {"freshness": 0.0}},
              {"id": "fresh", "score": 0.5, "features": {"freshness": 1.0}}]


class ExperimentsTest(NotifdTestCase):
    overrides = {"experiments": EXPERIMENTS, "fast": {**PLAIN_COIN,
                                                      "prior_opportunities_per_week": 1}}

    def decide(self, c, member, opp):
        return c.request({"op": "decide", "member": member, "channel": "push",
                          "opportunity": opp, "ts": MONDAY + 12 * 3600,
                          "candidates": CANDIDATES})

    def plan(self, member, push=3):
        self.redis.command("HSET", "t:plan:{%s}" % member, "version", 1, "source", "test",
                           "push_per_week", push, "email_per_week", 1, "valid_until", 0)

    def test_arms_are_reported_stable_and_split_by_share(self):
        c = self.client()
        members = ["mem%d" % i for i in range(400)]
        first = {m: self.decide(c, m, "a")["arm"] for m in members}
        fast_share = sum(a["fast"] == "fresh" for a in first.values()) / len(members)
        slow_share = sum(a["slow"] == "cost_x50" for a in first.values()) / len(members)
        self.assertGreater(fast_share, 0.4)
        self.assertLess(fast_share, 0.6)
        self.assertGreater(slow_share, 0.4)
        self.assertLess(slow_share, 0.6)
        for a in first.values():
            self.assertIn(a["fast"], ("fresh", "control"))
            self.assertIn(a["slow"], ("cost_x50", "control"))
        # Stable across a reload (the same config written again).
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="reload")
        c2 = self.client()
        for m in members[:100]:
            self.assertEqual(self.decide(c2, m, "b")["arm"], first[m])
        # The two layers are not the same split.
        same = sum((a["fast"] == "fresh") == (a["slow"] == "cost_x50") for a in first.values())
        self.assertGreater(same, 120)
        self.assertLess(same, 280)
        stats = c2.request({"op": "stats"})["experiments"]
        self.assertIn("fresh", stats["fast"])
        self.assertIn("control", stats["slow"])
        self.assertEqual(sum(v["decisions"] for v in stats["fast"].values()), 500)

    def test_fast_arm_changes_ranking_and_leaves_plans_untouched(self):
        c = self.client()
        members = ["r%d" % i for i in range(60)]
        for m in members:
            self.plan(m)
        chosen = {}
        for m in members:
            r = self.decide(c, m, "x")
            self.assertTrue(r["send"], r)  # p = 3/1 clamps to 1
            chosen[m] = (r["arm"]["fast"], r["message"])
        for arm, msg in chosen.values():
            self.assertEqual(msg, "fresh" if arm == "fresh" else "popular")
        self.assertEqual({a for a, _ in chosen.values()}, {"fresh", "control"})
        for m in members:
            p = c.request({"op": "plan", "member": m})["plan"]
            self.assertEqual((p["version"], p["source"], p["per_week"]["push"]), (1, "test", 3.0))

    def test_slow_arm_with_higher_cost_lowers_only_its_plans(self):
        c = self.client()
        members = ["s%d" % i for i in range(80)]
        # Identical, engaged histories for everyone.
        reqs = []
        for m in members:
            for day in range(21):
                ts = MONDAY - 21 * DAY + day * DAY
                for ch in ("push", "email"):
                    reqs.append({"op": "feedback", "member": m, "channel": ch,
                                 "event": "delivered", "ts": ts})
                    reqs.append({"op": "feedback", "member": m, "channel": ch,
                                 "event": "open", "ts": ts + 60})
                if day % 7 == 0:
                    reqs.append({"op": "feedback", "member": m, "event": "visit",
                                 "ts": ts + 600})
        for i in range(0, len(reqs), 1000):
            self.assertTrue(all(r["ok"] for r in c.pipeline(reqs[i:i + 1000])))
        totals = {"cost_x50": set(), "control": set()}
        for m in members:
            r = c.request({"op": "replan", "member": m, "ts": MONDAY})
            self.assertTrue(r["ok"], r)
            arm = self.decide(c, m, "arm-probe")["arm"]["slow"]
            per_week = r["plan"]["per_week"]
            totals[arm].add(per_week.get("push", 0) + per_week.get("email", 0))
            stored = self.redis.command("HGET", "t:plan:{%s}" % m, "arm")
            self.assertEqual(stored, arm)
        # Same history, so one plan per arm; the expensive arm plans fewer.
        self.assertEqual(len(totals["control"]), 1)
        self.assertEqual(len(totals["cost_x50"]), 1)
        self.assertLess(max(totals["cost_x50"]), min(totals["control"]))


if __name__ == "__main__":
    unittest.main()
