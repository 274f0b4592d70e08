"""The plan cache across a reload that reorders `channels`,
against a real redis-server and the real binary.

A plan is held by channel index (the config's `channels` order). Decides
read under the old config and answered after the reload must not leave
plans parsed in the old order for the decides of the new config: with
push and email swapped, a push decide would use the email plan.
"""
import json
import signal
import unittest

from harness import NotifdTestCase, wait_for
from test_decide import MONDAY, WEEK, candidates

IN_FLIGHT = 30
PAUSE_MS = 3000


class PlanCacheReloadTest(NotifdTestCase):
    overrides = {"fast": {"plan_cache_ms": 600000, "deadline_ms": 0},
                 "channels": ["push", "email", "in_app"],
                 "redis": {"timeout_ms": 5000}}

    def decide(self, opp, ts):
        return {"op": "decide", "member": "swap", "channel": "push", "opportunity": opp,
                "ts": ts, "candidates": candidates()}

    def test_decides_in_flight_across_a_channel_swap_leave_no_plan_of_the_old_order(self):
        self.redis.command("HSET", "t:plan:{swap}", "version", 1, "action", -1,
                           "computed_at", MONDAY, "valid_until", MONDAY + 4 * WEEK,
                           "source", "test", "push_per_week", 0, "email_per_week", 5)
        ts = MONDAY + 12 * 3600
        c = self.client()
        # Hold Redis so the decides below are read under generation 1 and
        # answered only after the reload to generation 2.
        self.redis.command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        c.send_raw(b"".join(
            (json.dumps(self.decide("old-%d" % i, ts)) + "\n").encode()
            for i in range(IN_FLIGHT)))
        # Each decide's reads (plan, member, week, ...) went out under
        # generation 1 and wait on the paused Redis.
        wait_for(lambda: self.notifd.health()["redis"]["pending"] >= 3 * IN_FLIGHT,
                 what="every decide's reads waiting on the paused Redis")
        self.notifd.config["channels"] = ["email", "push", "in_app"]
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="generation 2")
        # The race this test is about: reloaded while they still wait.
        self.assertGreater(self.notifd.health()["redis"]["pending"], 0)
        old = [c.read_line() for _ in range(IN_FLIGHT)]
        for r in old:  # answered with their own snapshot: push is push
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["plan"]["per_week"]["push"], 0, r)

        new = c.pipeline([self.decide("new-%d" % i, ts + 60 + i) for i in range(IN_FLIGHT)])
        for r in new:
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["plan"]["per_week"], {"push": 0, "email": 5, "in_app": 7}, r)
        self.assertEqual(sum(r["send"] for r in new), 0)


if __name__ == "__main__":
    unittest.main()
