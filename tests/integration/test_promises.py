"""Promises a producer relies on, each against the real binary and a real
Redis: the plan op judged as of its ts, dedup held across instances, ..."""
import calendar
import threading
import unittest

from harness import PLAIN_COIN, Client, Notifd, NotifdTestCase

MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))
DAY = 86400


class PlanOpTsTest(NotifdTestCase):
    def test_the_plan_op_judges_validity_as_of_its_ts(self):
        self.redis.command("HSET", "t:plan:{m1}", "version", 4, "action", 7,
                           "computed_at", MONDAY, "valid_until", MONDAY + 7 * DAY,
                           "source", "planner", "push_per_week", 3, "email_per_week", 1)
        c = self.client()
        inside = c.request({"op": "plan", "member": "m1", "ts": MONDAY + 6 * DAY})
        self.assertTrue(inside["ok"], inside)
        self.assertEqual(inside["plan"]["source"], "planner")
        self.assertEqual(inside["plan"]["per_week"]["push"], 3)
        after = c.request({"op": "plan", "member": "m1", "ts": MONDAY + 7 * DAY})
        self.assertEqual(after["plan"]["source"], "default", after)
        # What a decide at that ts would use, too.
        d = c.request({"op": "decide", "member": "m1", "channel": "push", "opportunity": "o1",
                       "ts": MONDAY + 7 * DAY, "candidates": [{"id": "a", "score": 0.5}]})
        self.assertEqual(d["plan"]["source"], "default", d)
        bad = c.request({"op": "plan", "member": "m1", "ts": "soon"})
        self.assertEqual(bad["error"]["code"], "bad_request", bad)


class DedupAcrossInstancesTest(NotifdTestCase):
    # p = 1 (the plain coin, a tiny opportunity prior) and a cap far away:
    # only dedup can stop a send. A long command timeout lets Redis hold the
    # records back for a moment.
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5},
                 "slow": {"default_plan": {"push": 20}}, "redis": {"timeout_ms": 5000}}

    def test_two_instances_deciding_at_once_never_send_a_message_twice(self):
        other = Notifd(self.redis.port, self.overrides)
        self.addCleanup(other.close)
        other.start()
        members = ["d%02d" % i for i in range(30)]
        replies = {}

        def burst(k, port):
            c = Client(port)
            replies[k] = c.pipeline([
                {"op": "decide", "id": m, "member": m, "channel": "push",
                 "opportunity": "%s-%d" % (m, k), "ts": MONDAY + 9 * 3600,
                 "candidates": [{"id": "promo", "score": 0.9}]} for m in members])
            c.close()

        # Both instances read every member's sent set before either records.
        self.redis.command("CLIENT", "PAUSE", "400", "WRITE")
        threads = [threading.Thread(target=burst, args=(k, port))
                   for k, port in enumerate([self.notifd.port, other.port])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, m in enumerate(members):
            a, b = replies[0][i], replies[1][i]
            self.assertTrue(a["ok"] and b["ok"], (a, b))
            self.assertEqual(sorted([a["send"], b["send"]]), [False, True], (m, a, b))
            loser = b if a["send"] else a
            self.assertEqual(loser["reason"], "all_filtered", loser)
            self.assertEqual(int(float(self.redis.command("HGET", "t:week:{%s}" % m,
                                                          "push:%d:sent" % week(MONDAY)))), 1)
        # A retry of the opportunity that sent gets its answer back.
        m = members[0]
        k = 0 if replies[0][0]["send"] else 1
        c = Client([self.notifd.port, other.port][k])
        self.addCleanup(c.close)
        again = c.request(
            {"op": "decide", "member": m, "channel": "push", "opportunity": "%s-%d" % (m, k),
             "ts": MONDAY + 9 * 3600, "candidates": [{"id": "promo", "score": 0.9}]})
        self.assertTrue(again["send"], again)
        self.assertTrue(again.get("duplicate"), again)


class FeedbackEventIdTest(NotifdTestCase):
    def test_a_repeated_event_id_is_answered_duplicate_and_counted_once(self):
        c = self.client()
        ev = {"op": "feedback", "member": "f1", "channel": "push", "event": "open",
              "ts": MONDAY + 3600, "event_id": "evt-1"}
        first = c.request(ev)
        self.assertEqual((first["ok"], first["recorded"], first.get("duplicate")),
                         (True, True, None), first)
        for _ in range(3):
            again = c.request(ev)
            self.assertEqual((again["recorded"], again.get("duplicate")), (True, True), again)
        opens = lambda: float(self.redis.command("HGET", "t:member:{f1}", "push_open"))
        self.assertAlmostEqual(opens(), 1.0, places=6)
        # Another id, or none, counts.
        r = c.request({**ev, "event_id": "evt-2"})
        self.assertIsNone(r.get("duplicate"), r)
        del ev["event_id"]
        c.request(ev)
        c.request(ev)
        self.assertAlmostEqual(opens(), 4.0, places=6)
        # The id is remembered for features.event_id_ttl_s (2 days).
        ttl = self.redis.command("TTL", "t:evt:{f1}:evt-1")
        self.assertTrue(2 * DAY - 60 <= ttl <= 2 * DAY, ttl)
        for bad in ("", 7, "x" * 257, "a\nb"):
            r = c.request({**ev, "event_id": bad})
            self.assertEqual(r["error"]["code"], "bad_request", (bad, r))


class DurableOptOutTest(NotifdTestCase):
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5}}

    def decide(self, c, member, opp):
        return c.request({"op": "decide", "member": member, "channel": "push",
                          "opportunity": opp, "ts": MONDAY + 9 * 3600,
                          "candidates": [{"id": "x-" + opp, "score": 0.5}]})

    def expire_every_key_with_a_ttl(self, member):
        """What Redis does to a quiet member once the TTLs pass."""
        gone = 0
        for k in self.redis.command("KEYS", "t:*{%s}*" % member):
            if self.redis.command("TTL", k) >= 0:
                self.redis.command("DEL", k)
                gone += 1
        return gone

    def test_an_unsubscribe_holds_until_a_resubscribe_whatever_expires(self):
        c = self.client()
        self.assertTrue(self.decide(c, "u1", "o1")["send"])
        r = c.request({"op": "feedback", "member": "u1", "channel": "push",
                       "event": "unsubscribe", "ts": MONDAY + 9 * 3600 + 10})
        self.assertTrue(r["ok"], r)
        self.assertEqual(self.decide(c, "u1", "o2")["reason"], "unsubscribed")
        self.assertGreater(self.expire_every_key_with_a_ttl("u1"), 2)
        self.assertEqual(self.decide(c, "u1", "o3")["reason"], "unsubscribed")
        # Only push: email is not opted out.
        e = c.request({"op": "decide", "member": "u1", "channel": "email", "opportunity": "e1",
                       "ts": MONDAY + 9 * 3600, "candidates": [{"id": "e", "score": 0.5}]})
        self.assertNotEqual(e["reason"], "unsubscribed", e)
        c.request({"op": "feedback", "member": "u1", "channel": "push",
                   "event": "resubscribe", "ts": MONDAY + 9 * 3600 + 20})
        self.assertNotEqual(self.decide(c, "u1", "o4")["reason"], "unsubscribed")
        self.expire_every_key_with_a_ttl("u1")
        self.assertNotEqual(self.decide(c, "u1", "o5")["reason"], "unsubscribed")

    def test_an_opt_out_kept_only_in_the_member_hash_is_made_durable(self):
        # Recorded before the durable key existed.
        self.redis.command("HSET", "t:member:{u2}", "push_unsub", 1, "updated_at", MONDAY)
        self.redis.command("EXPIRE", "t:member:{u2}", 3600)
        c = self.client()
        self.assertEqual(self.decide(c, "u2", "o1")["reason"], "unsubscribed")
        self.assertEqual(self.redis.command("HGET", "t:optout:{u2}", "push"), "1")
        self.assertEqual(self.redis.command("TTL", "t:optout:{u2}"), -1)
        self.expire_every_key_with_a_ttl("u2")
        self.assertEqual(self.decide(c, "u2", "o2")["reason"], "unsubscribed")


def week(ts):
    """The ISO week index notifd gives ts in UTC (weeks since 1970-01-05)."""
    return (ts - 4 * DAY) // (7 * DAY)



class FractionBalanceTest(NotifdTestCase):
    """A plan's fraction is a chance each week; the balance of extra sends
    that holds it to the plan's mean lives in the week hash and folds once
    a week (docs/fast-policy.md)."""
    overrides = {"fast": {"pacing": "budget", "prior_opportunities_per_week": 14}}

    def decide(self, c, opp, ts):
        r = c.request({"op": "decide", "member": "f1", "channel": "push", "opportunity": opp,
                       "ts": ts, "candidates": [{"id": opp, "score": 0.5}]})
        self.assertTrue(r["ok"], r)
        return r

    def balance(self):
        v = self.redis.command("HGET", "t:week:{f1}", "push:bal")
        return None if v is None else float(v)

    def test_a_week_folds_into_the_balance_and_a_whole_plan_clears_it(self):
        self.redis.command("HSET", "t:plan:{f1}", "version", 1, "computed_at", MONDAY,
                           "valid_until", MONDAY + 30 * DAY, "source", "test",
                           "push_per_week", 0.5, "email_per_week", 0)
        c = self.client()
        # Week W: six opportunities, the first on Monday at 09:00.
        sent = sum(self.decide(c, "w0-%d" % i, MONDAY + i * DAY + 9 * 3600)["send"]
                   for i in range(6))
        self.assertIsNone(self.balance())  # nothing folded yet
        # The first decide of week W+1 folds W: it owed 0.5 for the share of
        # the week seen (from Monday 09:00), and sent `sent`.
        r = self.decide(c, "w1-0", MONDAY + 7 * DAY + 9 * 3600)
        self.assertIsNotNone(self.balance(), (r, self.redis.command("HGETALL", "t:week:{f1}")))
        seen = 1 - 9 * 3600 / (7 * DAY)
        self.assertAlmostEqual(self.balance(), 0.5 * seen - sent, places=6)
        # Folded once: the rest of the week leaves it as it is.
        self.redis.command("HSET", "t:week:{f1}", "push:bal", "0.25")
        self.decide(c, "w1-1", MONDAY + 8 * DAY + 9 * 3600)
        self.assertEqual(self.balance(), 0.25)
        # A whole plan owes no extra sends: its first decide clears it.
        self.redis.command("HSET", "t:plan:{f1}", "version", 2, "push_per_week", 2)
        self.decide(c, "w1-2", MONDAY + 9 * DAY + 9 * 3600)
        self.assertEqual(self.balance(), 0.0)


def metric(notifd, name):
    """One unlabelled sample of notifd's /metrics."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % notifd.admin_port,
                                timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError("no metric " + name)


class CachedViewsAcrossInstancesTest(NotifdTestCase):
    # A member decided recently is decided on the member cache, without a
    # read. Another instance's writes reach that view only through the
    # record script, which re-checks every promise: here each one is broken
    # on purpose behind a warm cache, and must still hold.
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5},
                 "slow": {"default_plan": {"push": 20}}}
    members = ["c%02d" % i for i in range(20)]

    def setUp(self):
        super().setUp()
        for m in self.members:
            # A plan in force: a member with none is never cached.
            self.redis.command("HSET", "t:plan:{%s}" % m, "version", 1, "action", 0,
                               "computed_at", MONDAY, "valid_until", MONDAY + 14 * DAY,
                               "source", "planner", "push_per_week", 3, "email_per_week", 1)
        self.other = Notifd(self.redis.port, self.overrides)
        self.addCleanup(self.other.close)
        self.other.start()

    def decide(self, notifd, m, opp, ts, ids):
        c = Client(notifd.port)
        try:
            r = c.request({"op": "decide", "member": m, "channel": "push", "opportunity": opp,
                           "ts": ts, "candidates": [{"id": i, "score": 0.9} for i in ids]})
        finally:
            c.close()
        self.assertTrue(r["ok"], r)
        return r

    def warm(self, ts):
        # Two decides each on this instance: the second is on the cache.
        for k in range(2):
            for m in self.members:
                self.decide(self.notifd, m, "warm%d-%s" % (k, m), ts + k, ["w%d" % k])

    def opt_out_elsewhere(self, ts):
        """Every member unsubscribes from push through the other instance."""
        for m in self.members:
            c = Client(self.other.port)
            fb = c.request({"op": "feedback", "member": m, "channel": "push",
                            "event": "unsubscribe", "ts": ts})
            c.close()
            self.assertTrue(fb["ok"], fb)

    def test_a_warm_cache_never_sends_what_another_instance_sent(self):
        ts = MONDAY + 9 * 3600
        self.warm(ts)
        hits = metric(self.notifd, "notifd_member_cache_hits_total")
        self.assertGreaterEqual(hits, len(self.members))
        for m in self.members:
            self.assertTrue(self.decide(self.other, m, "b-" + m, ts + 10, ["promo"])["send"])
        for m in self.members:
            r = self.decide(self.notifd, m, "a-" + m, ts + 20, ["promo"])
            self.assertFalse(r["send"], r)
            self.assertEqual(r["reason"], "all_filtered", r)
        self.assertGreater(metric(self.notifd, "notifd_member_cache_hits_total"), hits)
        self.assertGreaterEqual(metric(self.notifd, "notifd_member_cache_conflicts_total"),
                                len(self.members))
        for m in self.members:
            self.assertEqual(self.redis.command("ZSCORE", "t:sent:{%s}" % m, "promo"),
                             str(ts + 10))

    def test_a_warm_cache_holds_the_weekly_cap_reached_elsewhere(self):
        ts = MONDAY + 9 * 3600
        self.warm(ts)  # two sends each: cap = 3 (ceil(3 * cap_factor 1))
        for m in self.members:
            self.assertTrue(self.decide(self.other, m, "b-" + m, ts + 10, ["x"])["send"])
        for m in self.members:
            r = self.decide(self.notifd, m, "a-" + m, ts + 20, ["y"])
            self.assertEqual((r["send"], r["reason"]), (False, "cap_reached"), r)
            sent = self.redis.command("HGET", "t:week:{%s}" % m, "push:%d:sent" % week(MONDAY))
            self.assertEqual(sent, "3")
        # The conflict dropped each member's view: the next decide reads, and
        # knows the cap without asking the script.
        for m in self.members:
            r = self.decide(self.notifd, m, "a2-" + m, ts + 30, ["z"])
            self.assertEqual(r["reason"], "cap_reached", r)

    def test_a_warm_cache_holds_an_opt_out_recorded_elsewhere(self):
        ts = MONDAY + 9 * 3600
        self.warm(ts)
        self.opt_out_elsewhere(ts + 5)
        for m in self.members:
            r = self.decide(self.notifd, m, "a-" + m, ts + 20, ["fresh"])
            self.assertEqual((r["send"], r["reason"]), (False, "unsubscribed"), r)
            self.assertIsNone(self.redis.command("ZSCORE", "t:sent:{%s}" % m, "fresh"))


if __name__ == "__main__":
    unittest.main()


class OptOutConflictWithoutAReadTest(CachedViewsAcrossInstancesTest):
    """Without client tracking a warm member cache learns of another
    instance's opt-out only from the record script's refusal; the decide
    then runs again with it, and Redis sees no second read."""
    overrides = {**CachedViewsAcrossInstancesTest.overrides, "redis": {"tracking": False}}

    def command_calls(self, name):
        for line in self.redis.command("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_%s:" % name):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def reads(self):
        # Every read of a decide takes the candidates' send times or the
        # whole sent set, one command each.
        return self.command_calls("zmscore") + self.command_calls("zrevrange")

    def test_an_opt_out_refused_by_the_script_is_decided_without_a_read(self):
        ts = MONDAY + 9 * 3600
        self.warm(ts)
        self.opt_out_elsewhere(ts + 5)
        conflicts = metric(self.notifd, "notifd_member_cache_conflicts_total")
        reads = self.reads()
        for m in self.members:
            r = self.decide(self.notifd, m, "a-" + m, ts + 20, ["fresh"])
            self.assertEqual((r["send"], r["reason"]), (False, "unsubscribed"), r)
            self.assertIsNone(self.redis.command("ZSCORE", "t:sent:{%s}" % m, "fresh"))
        self.assertEqual(metric(self.notifd, "notifd_member_cache_conflicts_total") - conflicts,
                         len(self.members))
        self.assertEqual(self.reads(), reads, "a refused send was decided again on a new read")
        # The answer was recorded as decided: a retry gets it back.
        m = self.members[0]
        again = self.decide(self.notifd, m, "a-" + m, ts + 20, ["fresh"])
        self.assertEqual((again["reason"], again.get("duplicate")), ("unsubscribed", True))

