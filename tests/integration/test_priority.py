"""Priority classes against the real binary and a real Redis: a
transactional message passes the cap, quiet hours and the coin and spends
no budget; a high one passes only the coin; both respect an opt-out (a
transactional one unless configured otherwise) and dedup."""
import calendar
import unittest
import urllib.request

from harness import PLAIN_COIN, NotifdTestCase

MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))
DAY = 86400
NOON = MONDAY + 12 * 3600


def week(ts):
    """The ISO week index notifd gives ts in UTC (weeks since 1970-01-05)."""
    return (ts - 4 * DAY) // (7 * DAY)


def labelled_metric(notifd, prefix):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % notifd.admin_port,
                                timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
    raise AssertionError("no metric " + prefix)


class PriorityCase(NotifdTestCase):
    # The plain coin with a tiny opportunity prior: p = 1, so only the
    # guardrails stop a normal send. A plan of one push a week.
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5,
                          "quiet_hours": {"start": "22:00", "end": "08:00"}}}

    def setUp(self):
        super().setUp()
        for m in ("p1", "p2", "p3", "p4"):
            self.redis.command("HSET", "t:plan:{%s}" % m, "version", 1, "action", 0,
                               "computed_at", MONDAY, "valid_until", MONDAY + 30 * DAY,
                               "source", "test", "push_per_week", 1, "email_per_week", 1)
        self.c = self.client()

    def decide(self, member, opp, candidates, ts=NOON):
        r = self.c.request({"op": "decide", "member": member, "channel": "push",
                            "opportunity": opp, "ts": ts, "candidates": candidates})
        self.assertTrue(r["ok"], r)
        return r

    def week_state(self, member):
        h = self.redis.command("HGETALL", "t:week:{%s}" % member)
        return {h[i]: h[i + 1] for i in range(0, len(h), 2) if h[i] != "v"}


class PriorityClassesTest(PriorityCase):
    def test_a_member_at_the_cap(self):
        first = self.decide("p1", "o1", [{"id": "n1", "score": 0.5}])
        self.assertTrue(first["send"], first)
        self.assertNotIn("priority", first)  # normal: the field is absent
        capped = self.decide("p1", "o2", [{"id": "n2", "score": 0.5}])
        self.assertEqual(capped["reason"], "cap_reached", capped)
        high = self.decide("p1", "o3", [{"id": "h1", "score": 0.5, "priority": "high"}])
        self.assertEqual(high["reason"], "cap_reached", high)
        self.assertEqual(high["priority"], "high")
        before = self.week_state("p1")
        t = self.decide("p1", "o4", [{"id": "n3", "score": 0.9},
                                     {"id": "reset", "score": 0.1, "priority": "transactional"}])
        self.assertTrue(t["send"], t)
        self.assertEqual(t["message"], "reset")
        self.assertEqual(t["priority"], "transactional")
        self.assertEqual(t["p_send"], 1)
        # No budget spent, no opportunity counted, no send time kept.
        self.assertEqual(self.week_state("p1"), before)
        self.assertEqual(self.redis.command("HGET", "t:week:{p1}", "push:%d:sent" % week(NOON)),
                         "1")
        # But it was sent: the dedup window holds it.
        self.assertIsNotNone(self.redis.command("ZSCORE", "t:sent:{p1}", "reset"))
        again = self.decide("p1", "o5", [{"id": "reset", "priority": "transactional"}])
        self.assertEqual(again["reason"], "all_filtered", again)
        # A retry of the opportunity gets the same answer, recorded once.
        retry = self.decide("p1", "o4", [{"id": "n3", "score": 0.9},
                                         {"id": "reset", "score": 0.1,
                                          "priority": "transactional"}])
        self.assertTrue(retry.get("duplicate"), retry)
        self.assertEqual(retry["message"], "reset")
        self.assertEqual(labelled_metric(
            self.notifd, 'notifd_priority_decisions_total{channel="push",'
                         'priority="transactional",reason="send"}'), 1)
        self.assertEqual(labelled_metric(
            self.notifd, 'notifd_priority_decisions_total{channel="push",'
                         'priority="high",reason="cap_reached"}'), 1)

    def test_a_member_in_quiet_hours(self):
        night = MONDAY + 23 * 3600
        normal = self.decide("p2", "o1", [{"id": "n1", "score": 0.5}], ts=night)
        self.assertEqual(normal["reason"], "quiet_hours", normal)
        high = self.decide("p2", "o2", [{"id": "h1", "priority": "high"}], ts=night)
        self.assertEqual(high["reason"], "quiet_hours", high)
        self.assertIn("retry_at", high)
        t = self.decide("p2", "o3", [{"id": "alert", "priority": "transactional"},
                                     {"id": "h2", "priority": "high"}], ts=night)
        self.assertTrue(t["send"], t)
        self.assertEqual(t["message"], "alert")
        # The plan's week is untouched, so the day's normal send still goes.
        day = self.decide("p2", "o4", [{"id": "n2", "score": 0.5}], ts=night + 10 * 3600)
        self.assertTrue(day["send"], day)

    def test_a_member_who_opted_out(self):
        r = self.c.request({"op": "feedback", "member": "p3", "channel": "push",
                            "event": "unsubscribe", "ts": NOON - 60})
        self.assertTrue(r["ok"], r)
        for prio in ("normal", "high", "transactional"):
            d = self.decide("p3", "o-" + prio, [{"id": "x-" + prio, "priority": prio}])
            self.assertEqual(d["reason"], "unsubscribed", d)
            self.assertFalse(d["send"])

    def test_high_skips_the_coin_and_spends_the_budget(self):
        # A plan of 2 against 1000 expected opportunities: p = 0.002.
        self.redis.command("HSET", "t:plan:{p4}", "push_per_week", 2)
        self.redis.command("HSET", "t:week:{p4}", "push:ewma", 1000,
                           "push:ewma_week", week(NOON) - 1)
        normal = [self.decide("p4", "n%d" % i, [{"id": "n%d" % i, "score": 0.5}])
                  for i in range(20)]
        self.assertLess(sum(d["send"] for d in normal), 3, normal)
        h = self.decide("p4", "h1", [{"id": "n-best", "score": 0.99},
                                     {"id": "h1", "score": 0.1, "priority": "high"}])
        self.assertTrue(h["send"], h)
        self.assertEqual(h["message"], "h1")
        self.assertEqual(h["priority"], "high")
        sent = int(self.redis.command("HGET", "t:week:{p4}", "push:%d:sent" % week(NOON)))
        self.assertEqual(sent, sum(d["send"] for d in normal) + 1)

    def test_an_unknown_class_is_a_bad_request(self):
        for bad in ("urgent", 3, "HIGH"):
            r = self.c.request({"op": "decide", "member": "p1", "channel": "push",
                                "opportunity": "bad", "ts": NOON,
                                "candidates": [{"id": "a", "priority": bad}]})
            self.assertFalse(r["ok"], r)
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertIn('"priority" must be', r["error"]["message"])


class TransactionalUnderAGlobalRateLimitTest(PriorityCase):
    # A global limit protects the provider, not the member: a transactional
    # send counts against it and is stopped by it like any other.
    overrides = {"fast": PriorityCase.overrides["fast"],
                 "limits": {"global": {"push": {"per_second": 0.01, "burst": 1}}}}

    def test_a_transactional_send_meets_the_global_limit(self):
        first = self.decide("p1", "o1", [{"id": "reset-1", "priority": "transactional"}])
        self.assertTrue(first["send"], first)
        second = self.decide("p2", "o2", [{"id": "reset-2", "priority": "transactional"}])
        self.assertEqual((second["send"], second["reason"]), (False, "rate_limited"), second)
        self.assertEqual(second["priority"], "transactional")
        self.assertIn("retry_at", second)


class TransactionalDespiteOptOutTest(PriorityCase):
    overrides = {"fast": {**PriorityCase.overrides["fast"],
                          "transactional_respects_optout": False}}

    def test_configured_to_ignore_an_opt_out(self):
        r = self.c.request({"op": "feedback", "member": "p3", "channel": "push",
                            "event": "unsubscribe", "ts": NOON - 60})
        self.assertTrue(r["ok"], r)
        t = self.decide("p3", "o1", [{"id": "reset", "priority": "transactional"}])
        self.assertTrue(t["send"], t)
        self.assertEqual(t["message"], "reset")
        # Only transactional messages: the rest still see the opt-out.
        high = self.decide("p3", "o2", [{"id": "h", "priority": "high"}])
        self.assertEqual(high["reason"], "unsubscribed", high)


if __name__ == "__main__":
    unittest.main()
