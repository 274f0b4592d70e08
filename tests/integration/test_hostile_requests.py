"""Requests that would reach across members or across eras, against the real
binary and a real Redis: member ids that could forge another member's keys,
and a `ts` far from the wall clock, or stored times from such a ts."""
import os
import sys
import time
import unittest

from harness import PLAIN_COIN, NotifdTestCase, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts"))
import gen_members  # noqa: E402  (schedule partitions computed as schedule.c does)

PREFIX = "t:"
YEAR = 365 * 86400
YEAR_3000 = 32503680000


def sched_key(m):
    return "%ssched:%d" % (PREFIX, gen_members.schedule_partition(m.encode()))


def decide(member, opportunity, ts=None, msg="m1"):
    r = {"op": "decide", "member": member, "channel": "push", "opportunity": opportunity,
         "candidates": [{"id": msg, "score": 0.9}]}
    if ts is not None:
        r["ts"] = ts
    return r


class MemberIdCollisionTest(NotifdTestCase):
    # Every decision is sent and recorded, so a collision would show.
    overrides = {"slow": {"default_plan": {"push": 50}},
                 "fast": {**PLAIN_COIN, "prior_opportunities_per_week": 1}}

    def test_braces_in_member_ids_are_refused_by_every_op(self):
        c = self.client()
        first = c.request(decide("alice", "x}:o1", msg="alice-secret-msg-1"))
        self.assertTrue(first["ok"], first)
        # Keys are "P<kind>:{member}<suffix>": "alice}:x" with opportunity
        # "o1" would name alice's idempotency record for "x}:o1".
        forged = c.request(decide("alice}:x", "o1"))
        self.assertFalse(forged["ok"], forged)
        self.assertEqual(forged["error"]["code"], "bad_request")
        self.assertIn("'{' or '}'", forged["error"]["message"])
        self.assertNotIn("alice-secret", str(forged))
        for m in ("{alice", "al{i}ce", "}"):
            for req in (decide(m, "o2"),
                        {"op": "feedback", "member": m, "channel": "push", "event": "open"},
                        {"op": "plan", "member": m},
                        {"op": "replan", "member": m},
                        {"op": "explain", "member": m}):
                r = c.request(req)
                self.assertFalse(r["ok"], (req, r))
                self.assertEqual(r["error"]["code"], "bad_request", (req, r))
        # Nothing was stored for the forged id: every key but alice's own
        # idempotency record (which is "t:idem:{alice}:x}:o1").
        keys = self.redis.command("KEYS", "t:*")
        self.assertEqual([k for k in keys if "alice}:x" in k and not k.startswith("t:idem:")],
                         [])
        # Other bytes stay admitted: ids are binary-safe apart from these.
        ok = c.request(decide("bob:x]y[z", "o1"))
        self.assertTrue(ok["ok"], ok)


class TsWindowTest(NotifdTestCase):
    def setUp(self):
        super().setUp()
        # The harness runs tests in virtual time (window 0); this test holds
        # notifd's shipped default.
        self.notifd.stop()
        del self.notifd.config["limits"]["ts_window_s"]
        self.notifd.start()

    def test_a_ts_outside_the_default_window_is_refused_by_every_op(self):
        c = self.client()
        now = int(time.time())
        for ts in (YEAR_3000, now + YEAR + 3600, now - YEAR - 3600, 1_700_000_000 - 3 * YEAR):
            for req in (decide("m1", "o-%d" % ts, ts=ts),
                        {"op": "feedback", "member": "m1", "channel": "push",
                         "event": "open", "ts": ts},
                        {"op": "replan", "member": "m1", "ts": ts},
                        {"op": "explain", "member": "m1", "ts": ts},
                        {"op": "planner_run", "ts": ts}):
                r = c.request(req)
                self.assertFalse(r["ok"], (req, r))
                self.assertEqual(r["error"]["code"], "bad_request", (req, r))
                self.assertIn("ts_window_s", r["error"]["message"])
        # Nothing about m1 was written.
        self.assertEqual(self.redis.command("KEYS", "t:*{m1}*"), [])
        # Within the window every op takes it.
        for ts in (now, now + YEAR - 3600, now - YEAR + 3600):
            r = c.request(decide("m1", "w-%d" % ts, ts=ts))
            self.assertTrue(r["ok"], r)
        r = c.request({"op": "feedback", "member": "m1", "channel": "push", "event": "open",
                       "ts": now - 60})
        self.assertTrue(r["ok"], r)


class FutureStoredTimesTest(NotifdTestCase):
    """Values written from another era (before the window existed, or by a
    bad clock) must not erase the present."""
    # Passes run when the test says (planner_run), not on the timer.
    overrides = {"planner": {"enabled": False}}

    def test_a_future_updated_at_does_not_zero_new_events(self):
        c = self.client()
        now = int(time.time())
        key = "t:member:{m2}"
        self.redis.command("HSET", key, "updated_at", YEAR_3000, "push_open", "0.001",
                           "push_delivered", "3", "last_open", YEAR_3000,
                           "push_last_open", YEAR_3000)
        for i in range(5):
            r = c.request({"op": "feedback", "member": "m2", "channel": "push",
                           "event": "open", "ts": now + i})
            self.assertTrue(r["ok"], r)
        h = self.redis.command("HGETALL", key)
        h = dict(zip(h[::2], h[1::2]))
        # The five opens count (almost) in full: the stored era was replaced
        # by the present, not used to weigh the present down to zero.
        self.assertGreater(float(h["push_open"]), 4.9)
        self.assertLessEqual(int(h["updated_at"]), now + 5)
        self.assertLessEqual(int(h["last_open"]), now + 5)
        self.assertLessEqual(int(h["push_last_open"]), now + 5)
        # A visit right after an open is attributed to it again.
        r = c.request({"op": "feedback", "member": "m2", "event": "visit", "ts": now + 10})
        self.assertTrue(r["ok"], r)
        self.assertGreater(float(self.redis.command("HGET", key, "visit_attr") or 0), 0.9)

    def test_a_send_with_a_future_updated_at_counts_in_full(self):
        c = self.client()
        now = int(time.time())
        self.redis.command("HSET", "t:member:{m3}", "updated_at", YEAR_3000, "push_sent", "2",
                           "push_last_sent", YEAR_3000)
        self.redis.command("HSET", "t:plan:{m3}", "version", 1, "computed_at", now,
                           "valid_until", now + 7 * 86400, "push_per_week", 100,
                           "source", "test")
        r = c.request({**decide("m3", "o1", ts=now), "candidates": [{"id": "a", "score": 1}]})
        self.assertTrue(r["ok"], r)
        self.assertTrue(r["send"], r)
        h = self.redis.command("HGETALL", "t:member:{m3}")
        h = dict(zip(h[::2], h[1::2]))
        self.assertAlmostEqual(float(h["push_sent"]), 3.0, places=3)
        self.assertEqual(int(h["push_last_sent"]), now)
        self.assertEqual(int(h["updated_at"]), now)

    def test_a_future_due_time_is_brought_back_by_the_next_decide(self):
        c = self.client()
        now = int(time.time())
        r = c.request(decide("m4", "o1", ts=now))
        self.assertTrue(r["ok"], r)
        key = sched_key("m4")
        wait_for(lambda: self.redis.command("ZSCORE", key, "m4") is not None,
                 what="m4 scheduled")
        self.assertEqual(int(self.redis.command("ZSCORE", key, "m4")), now)
        # A due time from another era would keep m4 off every pass.
        self.redis.command("ZADD", key, "XX", YEAR_3000, "m4")
        r = c.request(decide("m4", "o2", ts=now + 1))
        self.assertTrue(r["ok"], r)
        wait_for(lambda: int(self.redis.command("ZSCORE", key, "m4")) == now + 1,
                 what="m4 due again now")
        # An earlier due time is kept: a member waits for no later decide.
        r = c.request(decide("m4", "o3", ts=now + 2))
        self.assertTrue(r["ok"], r)
        self.redis.command("PING")
        time.sleep(0.05)
        self.assertEqual(int(self.redis.command("ZSCORE", key, "m4")), now + 1)

    def test_a_plan_computed_in_another_era_is_not_in_force_and_is_replanned(self):
        c = self.client()
        now = int(time.time())
        self.redis.command("HSET", "t:plan:{m5}", "version", 9, "action", 3,
                           "computed_at", YEAR_3000, "valid_until", YEAR_3000 + 7 * 86400,
                           "push_per_week", 14, "email_per_week", 0, "source", "planner")
        r = c.request({"op": "feedback", "member": "m5", "channel": "push",
                       "event": "delivered", "ts": now})
        self.assertTrue(r["ok"], r)
        r = c.request(decide("m5", "o1", ts=now))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["plan"]["source"], "default", r)
        p = c.request({"op": "plan", "member": "m5"})
        self.assertEqual(p["plan"]["source"], "default", p)
        # The next pass replans m5 instead of keeping the plan from the future.
        run = c.request({"op": "planner_run", "ts": now + 60})
        self.assertTrue(run["ok"], run)
        self.assertEqual(run["kept"], 0, run)
        self.assertGreaterEqual(run["planned"], 1, run)
        self.assertEqual(int(self.redis.command("HGET", "t:plan:{m5}", "computed_at")), now + 60)


if __name__ == "__main__":
    unittest.main()
