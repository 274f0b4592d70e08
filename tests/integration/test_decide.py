"""The fast policy end to end: decide, feedback and plan against a real
redis-server and the real binary."""
import calendar
import json
import random
import signal
import socket
import threading
import time
import unittest

from harness import PLAIN_COIN, Client, Notifd, NotifdTestCase, Redis, wait_for

MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))  # a Monday, 00:00 UTC
DAY = 86400
WEEK = 7 * DAY


def candidates(n=5, prefix="msg"):
    return [{"id": "%s-%d" % (prefix, i), "score": 0.1 + 0.15 * i,
             "features": {"freshness": 1.0 - 0.1 * i}, "tags": ["t"]} for i in range(n)]


def set_plan(redis, member, push, version=1, valid_until=0, source="test", prefix="t:"):
    redis.command("HSET", "%splan:{%s}" % (prefix, member), "version", version, "action", -1,
                  "computed_at", MONDAY, "valid_until", valid_until, "source", source,
                  "push_per_week", push, "email_per_week", 1)


class PacingTest(NotifdTestCase):
    # Budget pacing: the week's sends track the plan with the least variance.
    overrides = {"fast": {"pacing": "budget"}}

    def test_plan_of_five_is_kept_in_the_second_week_spread_and_capped(self):
        members = ["m%03d" % i for i in range(200)]
        for m in members:
            set_plan(self.redis, m, 5)
        rnd = random.Random(7)
        reqs = []
        for day in range(14):
            for k in range(10):
                for m in members:
                    ts = MONDAY + day * DAY + rnd.randrange(DAY)
                    reqs.append((ts, m, "d%d-%d" % (day, k)))
        reqs.sort()
        c = self.client()
        sends = {}  # (member, week) -> [days]
        times = {}  # member -> [ts of every send]
        for i in range(0, len(reqs), 500):
            # Fresh messages every time: with the same five, dedup alone
            # would stop a member at five sends and hide the cap.
            batch = [{"op": "decide", "id": j, "member": m, "channel": "push", "opportunity": o,
                      "ts": ts, "candidates": candidates(prefix=o)}
                     for j, (ts, m, o) in enumerate(reqs[i:i + 500])]
            for (ts, m, o), r in zip(reqs[i:i + 500], c.pipeline(batch)):
                self.assertTrue(r["ok"], r)
                self.assertEqual(r["plan"]["source"], "test")
                if r["send"]:
                    sends.setdefault((m, (ts - MONDAY) // WEEK), []).append((ts - MONDAY) % WEEK // DAY)
                    times.setdefault(m, []).append(ts)
        cap = 5  # ceil(5 * fast.cap_factor), cap_factor 1 by default
        for m in members:
            for w in (0, 1):
                self.assertLessEqual(len(sends.get((m, w), [])), cap, m)
            # fast.rolling_cap (on by default): 5 + floor(5 * (1.5 - 1)) = 7
            # over any 7 days.
            rolling = 7
            ts = sorted(times.get(m, []))
            for i in range(len(ts) - rolling):
                self.assertGreaterEqual(ts[i + rolling] - ts[i], WEEK, (m, ts))
        # The cap is reached, so the bound above is the one that binds.
        self.assertEqual(max(len(v) for v in sends.values()), cap)
        week2 = [len(sends.get((m, 1), [])) for m in members]
        mean = sum(week2) / len(week2)
        self.assertAlmostEqual(mean, 5.0, delta=0.5)
        # Spread: the second week's sends fall on many different days.
        days_used = [len(set(sends.get((m, 1), []))) for m in members]
        self.assertGreaterEqual(sum(days_used) / len(days_used), 3.5)
        first_half = sum(1 for m in members for d in sends.get((m, 1), []) if d < 3.5)
        self.assertGreater(first_half, 0.25 * sum(week2))
        self.assertLess(first_half, 0.75 * sum(week2))


    def test_a_members_decisions_pipelined_together_spend_the_budget_once(self):
        # Every decision of a member is in flight at once: each read goes out
        # before any record. Without the in-flight overlay every read would
        # see "nothing sent yet" and budget pacing would send up to the cap
        # (5) for everyone. Fresh messages each time, so that dedup does not
        # stop anyone first.
        members = ["hot%02d" % i for i in range(60)]
        for m in members:
            set_plan(self.redis, m, 5)
        reqs = []
        for m in members:
            for k in range(40):
                reqs.append({"op": "decide", "id": len(reqs), "member": m, "channel": "push",
                             "opportunity": "o%d" % k, "ts": MONDAY + WEEK + 3600 * (k + 1),
                             "candidates": candidates(prefix="o%d" % k)})
        replies = self.client().pipeline(reqs)
        sent = {}
        for q, r in zip(reqs, replies):
            self.assertTrue(r["ok"], r)
            sent[q["member"]] = sent.get(q["member"], 0) + (1 if r["send"] else 0)
        mean = sum(sent.values()) / len(members)
        self.assertGreater(mean, 3.5)
        self.assertLess(mean, 4.6)
        self.assertLessEqual(max(sent.values()), 5)  # the cap
        # With the overlay about a third reach the cap (measured: 23 of 60).
        self.assertLess(sum(1 for m in members if sent.get(m, 0) >= 5), len(members) * 3 // 5)


class CapTest(NotifdTestCase):
    # The plain coin with a tiny opportunity prior makes p = 1: only the
    # atomic cap can stop the sends. The 7-day window holds the weekly cap
    # and no more (no slack), so it binds as soon as two weeks meet.
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5,
                          "cap_factor": 1.5, "rolling_cap_factor": 1.0,
                          "rolling_cap_min_slack": 0}}

    def test_many_connections_on_one_member_never_exceed_the_cap(self):
        set_plan(self.redis, "hot", 2)  # cap = ceil(2 * 1.5) = 3
        results = []
        lock = threading.Lock()

        def hammer(worker):
            c = self.notifd.client()
            reqs = [{"op": "decide", "member": "hot", "channel": "push",
                     "opportunity": "w%d-%d" % (worker, i), "ts": MONDAY + 3600 + i,
                     "candidates": candidates(3, "w%d-%d" % (worker, i))} for i in range(50)]
            out = c.pipeline(reqs)
            c.close()
            with lock:
                results.extend(out)

        threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
        self.run_threads(threads)
        self.assert_capped(results, 400, "hot")

    def test_two_instances_on_one_redis_never_exceed_the_cap(self):
        set_plan(self.redis, "shared", 2)
        other = Notifd(self.redis.port, self.overrides)
        self.addCleanup(other.close)
        other.start()
        results = []
        lock = threading.Lock()

        def hammer(port, worker):
            c = Client(port)
            reqs = [{"op": "decide", "member": "shared", "channel": "push",
                     "opportunity": "i%d-%d" % (worker, i), "ts": MONDAY + 3600 + i,
                     "candidates": candidates(3, "i%d-%d" % (worker, i))} for i in range(50)]
            out = c.pipeline(reqs)
            c.close()
            with lock:
                results.extend(out)

        threads = [threading.Thread(target=hammer, args=(port, w))
                   for w, port in enumerate([self.notifd.port, other.port] * 4)]
        self.run_threads(threads)
        self.assert_capped(results, 400, "shared")

    def run_threads(self, threads):
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def test_the_cap_holds_over_any_seven_days_across_a_week_boundary(self):
        set_plan(self.redis, "edge", 2)  # cap = ceil(2 * 1.5) = 3
        c = self.client()
        sunday = MONDAY + 6 * DAY + 12 * 3600

        def decide(opp, ts):
            r = c.request({"op": "decide", "member": "edge", "channel": "push",
                           "opportunity": opp, "ts": ts, "candidates": candidates(3, opp)})
            self.assertTrue(r["ok"], r)
            return r

        def sends():
            fields = self.redis.command("HGETALL", "t:week:{edge}")
            return [int(x) for x in dict(zip(fields[::2], fields[1::2]))["push:sends"].split(",")]

        self.assertEqual([decide("sun%d" % i, sunday + i)["send"] for i in range(4)],
                         [True, True, True, False])
        self.assertEqual(sends(), [sunday + 2, sunday + 1, sunday])
        # A new calendar week, but the three sends are hours old.
        monday = decide("mon", MONDAY + WEEK + 9 * 3600)
        self.assertEqual((monday["send"], monday["reason"]), (False, "cap_reached"))
        self.assertEqual(decide("sat", sunday + 6 * DAY)["reason"], "cap_reached")
        # Seven days after them the window has room again.
        self.assertTrue(decide("later", sunday + 7 * DAY + 10)["send"])
        self.assertEqual(sends(), [sunday + 7 * DAY + 10])  # the old ones aged out

    def test_the_rolling_cap_holds_for_decisions_in_flight_together(self):
        # Four Sunday and four Monday decides in one pipeline: every read
        # goes out before any record, so the Monday ones learn of the Sunday
        # sends only through the overlay. Per calendar week 3 + 3 could go.
        set_plan(self.redis, "burst", 2)  # cap = ceil(2 * 1.5) = 3
        sunday = MONDAY + 6 * DAY + 12 * 3600
        reqs = [{"op": "decide", "id": i, "member": "burst", "channel": "push",
                 "opportunity": "b%d" % i, "ts": (sunday if i < 4 else MONDAY + WEEK + 9 * 3600) + i,
                 "candidates": candidates(3, "b%d" % i)} for i in range(8)]
        replies = self.client().pipeline(reqs)
        self.assertTrue(all(r["ok"] for r in replies), replies)
        self.assertEqual(sum(1 for r in replies if r["send"]), 3)
        self.assertEqual([r["reason"] for r in replies[4:]], ["cap_reached"] * 4)

    def assert_capped(self, results, n, member):
        sent = [r for r in results if r["send"]]
        self.assertEqual(len(results), n)
        self.assertEqual(len(sent), 3)  # cap = ceil(2 * 1.5)
        self.assertTrue(any(r["reason"] == "cap_reached" for r in results))
        week = self.redis.command("HGETALL", "t:week:{%s}" % member)
        fields = dict(zip(week[::2], week[1::2]))
        sent_counts = [int(v) for k, v in fields.items() if k.endswith(":sent")]
        self.assertEqual(sent_counts, [3])


class RollingCapSlackTest(NotifdTestCase):
    # The window with a minimum slack: the weekly cap plus the whole part of
    # half the plan, at least one more (fast.rolling_cap_min_slack). p = 1.
    overrides = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5,
                          "rolling_cap_min_slack": 1}}

    def decide(self, c, member, opp, ts):
        r = c.request({"op": "decide", "member": member, "channel": "push",
                       "opportunity": opp, "ts": ts, "candidates": candidates(3, opp)})
        self.assertTrue(r["ok"], r)
        return r

    def test_a_plan_of_one_may_send_on_sunday_and_monday(self):
        set_plan(self.redis, "one", 1)
        c = self.client()
        sunday = MONDAY + 6 * DAY + 12 * 3600
        self.assertTrue(self.decide(c, "one", "sun", sunday)["send"])
        self.assertEqual(self.decide(c, "one", "sun2", sunday + 60)["reason"], "cap_reached")
        # Its week's send need not wait 7 days after last week's.
        self.assertTrue(self.decide(c, "one", "mon", MONDAY + WEEK + 9 * 3600)["send"])

    def test_a_plan_of_one_and_a_half_gets_at_most_three_in_seven_days(self):
        set_plan(self.redis, "oneh", 1.5)  # weekly cap 2, window 2 + max(0, 1) = 3
        c = self.client()
        sunday = MONDAY + 6 * DAY + 12 * 3600
        self.assertEqual([self.decide(c, "oneh", "sun%d" % i, sunday + i)["send"]
                          for i in range(3)], [True, True, False])
        monday = MONDAY + WEEK + 9 * 3600
        self.assertTrue(self.decide(c, "oneh", "mon0", monday)["send"])
        second = self.decide(c, "oneh", "mon1", monday + 60)
        self.assertEqual((second["send"], second["reason"]), (False, "cap_reached"))

    def test_by_default_a_plan_of_one_waits_seven_days(self):
        self.notifd.stop()
        fast = {k: v for k, v in self.overrides["fast"].items() if k != "rolling_cap_min_slack"}
        self.notifd = Notifd(self.redis.port, {"fast": fast})
        self.addCleanup(self.notifd.close)
        self.notifd.start()
        set_plan(self.redis, "strict", 1)
        c = self.client()
        sunday = MONDAY + 6 * DAY + 12 * 3600
        self.assertTrue(self.decide(c, "strict", "sun", sunday)["send"])
        self.assertEqual(self.decide(c, "strict", "mon", MONDAY + WEEK + 9 * 3600)["reason"],
                         "cap_reached")
        self.assertTrue(self.decide(c, "strict", "next-sun", sunday + 7 * DAY)["send"])


class RollingCapAcrossInstancesTest(NotifdTestCase):
    # As CapTest (p = 1), with a command timeout long enough to hold the
    # records back in Redis for a moment.
    overrides = {"fast": dict(CapTest.overrides["fast"]), "redis": {"timeout_ms": 5000}}

    def test_two_instances_deciding_at_once_hold_the_rolling_cap(self):
        # Two sends on Sunday, then one Monday decide on each of two
        # instances while Redis holds writes back (CLIENT PAUSE WRITE): both
        # read two sends, below the cap of 3, and both records run after.
        # Per calendar week both could go; over any 7 days only one may.
        set_plan(self.redis, "pair", 2)  # cap = ceil(2 * 1.5) = 3
        other = Notifd(self.redis.port, self.overrides)
        self.addCleanup(other.close)
        other.start()
        sunday = MONDAY + 6 * DAY + 12 * 3600
        c = self.client()
        for i in range(2):
            r = c.request({"op": "decide", "member": "pair", "channel": "push",
                           "opportunity": "sun%d" % i, "ts": sunday + i,
                           "candidates": candidates(3, "sun%d" % i)})
            self.assertTrue(r["send"], r)
        replies = {}

        def monday(port, i):
            replies[i] = Client(port).request(
                {"op": "decide", "member": "pair", "channel": "push", "opportunity": "mon%d" % i,
                 "ts": MONDAY + WEEK + 9 * 3600 + i, "candidates": candidates(3, "mon%d" % i)})

        self.redis.command("CLIENT", "PAUSE", "400", "WRITE")
        threads = [threading.Thread(target=monday, args=(port, i))
                   for i, port in enumerate([self.notifd.port, other.port])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertTrue(all(r["ok"] for r in replies.values()), replies)
        self.assertEqual(sorted(r["send"] for r in replies.values()), [False, True], replies)
        self.assertEqual([r["reason"] for r in replies.values() if not r["send"]], ["cap_reached"])
        fields = self.redis.command("HGETALL", "t:week:{pair}")
        times = [int(x) for x in dict(zip(fields[::2], fields[1::2]))["push:sends"].split(",")]
        self.assertEqual(len(times), 3)
        self.assertEqual(sorted(times)[:2], [sunday, sunday + 1])


class DecideBehaviourTest(NotifdTestCase):
    overrides = {"fast": {"quiet_hours": {"start": "22:00", "end": "08:00"}, "dedup_days": 7}}

    def decide(self, member="ann", opp="o1", ts=None, cands=None, channel="push", **extra):
        req = {"op": "decide", "id": opp, "member": member, "channel": channel,
               "opportunity": opp, "ts": ts if ts is not None else MONDAY + 12 * 3600,
               "candidates": candidates() if cands is None else cands}
        req.update(extra)
        return self.client().request(req)

    def test_every_key_a_decide_writes_expires(self):
        # Counted and uncounted decides (quiet hours stop before the coin),
        # sends and skips: nothing may be left without a TTL.
        set_plan(self.redis, "ttl", 14)
        for k in range(12):
            self.decide(member="ttl", opp="t%d" % k, ts=MONDAY + 9 * 3600 + 60 * k)
        self.decide(member="ttl", opp="q", ts=MONDAY + 23 * 3600)
        keys = self.redis.command("KEYS", "t:*{ttl}*")
        self.assertTrue(any(k.startswith("t:week:") for k in keys), keys)
        for k in keys:
            if k.startswith("t:plan:"):
                continue  # written by the test, not by notifd
            ttl = self.redis.command("TTL", k)
            self.assertGreater(ttl, 0, k)

    def test_response_has_every_contract_field(self):
        r = self.decide()
        for k in ("send", "message", "reason", "p_send", "propensity", "plan", "arm"):
            self.assertIn(k, r)
        self.assertEqual(r["plan"]["source"], "default")
        self.assertEqual(set(r["arm"]), {"slow", "fast"})
        self.assertGreaterEqual(r["p_send"], 0.0)
        self.assertLessEqual(r["p_send"], 1.0)

    def test_retried_opportunity_returns_the_stored_decision_and_counts_once(self):
        set_plan(self.redis, "ann", 14)
        first = self.decide(opp="retry-me")
        again = [self.decide(opp="retry-me") for _ in range(3)]
        for r in again:
            self.assertTrue(r.get("duplicate"))
            for k in ("send", "message", "reason", "p_send", "propensity"):
                self.assertEqual(r[k], first[k])
        week = self.redis.command("HGETALL", "t:week:{ann}")
        fields = dict(zip(week[::2], week[1::2]))
        opp = [int(v) for k, v in fields.items() if k.endswith(":opp")]
        self.assertEqual(opp, [1])

    def test_same_inputs_give_the_same_decision_on_another_member_key(self):
        # Determinism: the coin depends on (seed, member, opportunity) only.
        set_plan(self.redis, "x1", 3)
        r1 = self.decide(member="x1", opp="same")
        self.redis.command("DEL", "t:idem:{x1}:same", "t:week:{x1}")
        r2 = self.decide(member="x1", opp="same")
        self.assertEqual((r1["send"], r1["p_send"]), (r2["send"], r2["p_send"]))

    def test_unsubscribed_channel(self):
        fb = self.client().request({"op": "feedback", "member": "ann", "channel": "push",
                                    "event": "unsubscribe", "ts": MONDAY})
        self.assertTrue(fb["ok"], fb)
        r = self.decide()
        self.assertEqual(r["reason"], "unsubscribed")
        self.assertFalse(r["send"])
        # The other channel is not affected (whatever its plan allows).
        self.assertNotEqual(self.decide(channel="email", opp="e1")["reason"], "unsubscribed")
        self.client().request({"op": "feedback", "member": "ann", "channel": "push",
                               "event": "resubscribe", "ts": MONDAY + 60})
        self.assertNotEqual(self.decide(opp="o2")["reason"], "unsubscribed")

    def test_quiet_hours_in_member_local_time_with_retry_at(self):
        r = self.decide(ts=MONDAY + 23 * 3600)  # 23:00 UTC
        self.assertEqual(r["reason"], "quiet_hours")
        self.assertEqual(r["retry_at"], MONDAY + DAY + 8 * 3600)
        # A member at UTC-5 is at 18:00 local then: not quiet.
        self.client().request({"op": "feedback", "member": "bob", "event": "visit",
                               "ts": MONDAY, "tz_offset_min": -300})
        r = self.decide(member="bob", ts=MONDAY + 23 * 3600)
        self.assertNotEqual(r["reason"], "quiet_hours")

    def test_no_candidates_and_all_filtered(self):
        self.assertEqual(self.decide(cands=[])["reason"], "no_candidates")
        set_plan(self.redis, "ann", 14)
        sent = None
        for i in range(40):
            r = self.decide(opp="s%d" % i, cands=candidates(1, "only"), ts=MONDAY + 9 * 3600 + i)
            if r["send"]:
                sent = r
                break
        self.assertIsNotNone(sent)
        r = self.decide(opp="after", cands=candidates(1, "only"), ts=MONDAY + 10 * 3600)
        self.assertEqual(r["reason"], "all_filtered")

    def test_external_plan_is_honoured_and_expired_plan_falls_back(self):
        set_plan(self.redis, "ann", 9, version=4, source="crm", valid_until=MONDAY + DAY)
        r = self.decide(ts=MONDAY + 12 * 3600)
        # in_app, which the slow policy does not plan, is paced at
        # fast.unplanned_per_week, and the answer says so.
        self.assertEqual(r["plan"], {"version": 4, "source": "crm",
                                     "per_week": {"push": 9.0, "email": 1.0, "in_app": 7.0},
                                     "propensity": 1.0, "defaulted": ["in_app"]})
        r = self.decide(opp="later", ts=MONDAY + 2 * DAY + 12 * 3600)
        self.assertEqual(r["plan"]["source"], "default")
        p = self.client().request({"op": "plan", "member": "nobody"})
        self.assertEqual(p["plan"]["source"], "default")

    def test_in_app_is_paced_at_the_unplanned_rate(self):
        # No channel is unbounded: in_app, outside the slow policy's grid,
        # is paced and capped at fast.unplanned_per_week (7).
        sends = 0
        for i in range(40):
            r = self.decide(channel="in_app", opp="ia%d" % i, ts=MONDAY + 9 * 3600 + 60 * i,
                            cands=candidates(5, "ia%d" % i))
            self.assertEqual(r["plan"]["per_week"]["in_app"], 7.0, r)
            self.assertEqual(r["plan"]["defaulted"], ["in_app"], r)
            self.assertLess(r["p_send"], 1.0, r)
            sends += r["send"]
        self.assertLessEqual(sends, 7)


class UnpacedChannelTest(NotifdTestCase):
    overrides = {"fast": {"unpaced_channels": ["in_app"]}}

    def test_an_unpaced_channel_sends_the_best_message(self):
        c = self.client()
        for i in range(10):
            r = c.request({"op": "decide", "member": "ann", "channel": "in_app",
                           "opportunity": "ia%d" % i, "ts": MONDAY + 9 * 3600 + i,
                           "candidates": candidates(5, "ia%d" % i)})
            self.assertTrue(r["send"], r)
            self.assertEqual(r["message"], "ia%d-4" % i)  # the highest score
            self.assertEqual(r["p_send"], 1.0)
            self.assertNotIn("in_app", r["plan"]["per_week"])

    def test_bad_requests_are_explained(self):
        c = self.client()
        bad = [
            {"op": "decide", "member": "", "channel": "push", "opportunity": "o"},
            {"op": "decide", "member": "a\u0001b", "channel": "push", "opportunity": "o"},
            {"op": "decide", "member": "a", "channel": "sms", "opportunity": "o"},
            {"op": "decide", "member": "a", "channel": "push"},
            {"op": "decide", "member": "a", "channel": "push", "opportunity": "o", "ts": "x"},
            {"op": "decide", "member": "a", "channel": "push", "opportunity": "o",
             "candidates": [{"score": 1}]},
            {"op": "decide", "member": "a", "channel": "push", "opportunity": "o",
             "candidates": [{"id": "m", "features": {"f": "high"}}]},
            {"op": "feedback", "member": "a", "channel": "push", "event": "exploded"},
        ]
        for req in bad:
            r = c.request(req)
            self.assertEqual(r["error"]["code"], "bad_request", req)
            self.assertTrue(len(r["error"]["message"]) > 10)

    def test_feedback_updates_member_features(self):
        c = self.client()
        for ev in ("delivered", "open", "click", "dismiss"):
            self.assertTrue(c.request({"op": "feedback", "member": "fx", "channel": "email",
                                       "event": ev, "ts": MONDAY + 100})["ok"])
        self.assertTrue(c.request({"op": "feedback", "member": "fx", "event": "visit",
                                   "ts": MONDAY + 200})["ok"])
        self.assertTrue(c.request({"op": "feedback", "member": "fx", "event": "visit",
                                   "ts": MONDAY + 5 * DAY})["ok"])
        h = self.redis.command("HGETALL", "t:member:{fx}")
        f = dict(zip(h[::2], h[1::2]))
        # Counts are stored as of updated_at; decay them to the last event.
        half_life = 28 * DAY
        now = MONDAY + 5 * DAY
        scale = 2 ** (-(now - int(f["updated_at"])) / half_life)

        def count(k):
            return float(f[k]) * scale

        for k in ("email_delivered", "email_open", "email_click", "email_dismiss"):
            self.assertAlmostEqual(count(k), 2 ** (-(now - MONDAY - 100) / half_life), delta=0.01)
        self.assertAlmostEqual(count("visit_attr"), 2 ** (-(now - MONDAY - 200) / half_life),
                               delta=0.01)  # right after an open
        self.assertAlmostEqual(count("visit_org"), 1.0, delta=0.01)  # days later
        self.assertEqual(int(f["last_open"]), MONDAY + 100)
        ttl = self.redis.command("TTL", "t:member:{fx}")
        self.assertGreater(ttl, 80 * DAY)


class RecentScoresTest(NotifdTestCase):
    # Quality pacing keeps the last 5 best utilities per member and channel.
    overrides = {"fast": {"pacing": "quality", "quality_history": 5}}

    def reqs(self, member):
        # One candidate per decide, each scoring higher than the one before,
        # so the best utilities rise with time.
        return [{"op": "decide", "id": i, "member": member, "channel": "push",
                 "opportunity": "o%d" % i, "ts": MONDAY + 9 * 3600 + 60 * i,
                 "candidates": [{"id": "m%d" % i, "score": 0.05 + 0.1 * i}]}
                for i in range(8)]

    def scores(self, member):
        h = self.redis.command("HGETALL", "t:week:{%s}" % member)
        return [float(x) for x in dict(zip(h[::2], h[1::2]))["push:scores"].split(",")]

    def test_the_list_is_newest_first_bounded_and_the_same_pipelined(self):
        set_plan(self.redis, "one", 3)
        set_plan(self.redis, "all", 3)
        c = self.client()
        for q in self.reqs("one"):
            self.assertTrue(c.request(q)["ok"])
        one = self.scores("one")
        self.assertEqual(len(one), 5)
        self.assertEqual(one, sorted(one, reverse=True))  # newest (highest) first
        self.assertGreater(one[0], one[-1])
        # All eight in flight together: each record builds on the ones
        # before it (the overlay), so the list ends up the same.
        for r in c.pipeline(self.reqs("all")):
            self.assertTrue(r["ok"], r)
        self.assertEqual(self.scores("all"), one)


class RecordTest(NotifdTestCase):
    # A decision to send is recorded by decide_record, any other by the
    # smaller decide_skip: both must leave the same state behind.
    def decide(self, member, opp, ts=MONDAY + 12 * 3600):
        return self.client().request({"op": "decide", "member": member, "channel": "push",
                                      "opportunity": opp, "ts": ts, "candidates": candidates()})

    def week(self, member):
        h = self.redis.command("HGETALL", "t:week:{%s}" % member)
        return dict(zip(h[::2], h[1::2]))

    def test_a_skip_records_the_answer_counts_once_and_drops_folded_weeks(self):
        week = (MONDAY + 12 * 3600 - 4 * DAY) // WEEK  # weeks start on Thursday 1970-01-01
        set_plan(self.redis, "sk", 0)  # a cap of 0: reaches the coin, never sends
        # Fields of weeks the EWMA has folded in, and one it still reads.
        self.redis.command("HSET", "t:week:{sk}", "push:%d:opp" % (week - 5), 7,
                           "push:%d:sent" % (week - 3), 1, "push:%d:opp" % (week - 1), 4)
        first = self.decide("sk", "s1")
        self.assertEqual((first["send"], first["reason"]), (False, "cap_reached"), first)
        again = self.decide("sk", "s1")
        self.assertTrue(again.get("duplicate"), again)
        self.assertEqual(again["reason"], "cap_reached")
        # The retry counted again and put its score first again; both are
        # taken back once its SET found the stored answer, before the
        # answer goes out (src/fast/decide_skip.c).
        f = self.week("sk")
        self.assertEqual(f.get("push:%d:opp" % week), "1", f)
        self.assertNotIn("push:%d:opp" % (week - 5), f)
        self.assertNotIn("push:%d:sent" % (week - 3), f)
        self.assertEqual(f.get("push:%d:opp" % (week - 1)), "4", f)
        self.assertEqual(len(f["push:scores"].split(",")), 1, f)  # quality pacing's history
        self.assertIn("push:first_week", f)
        # The TTL is the one follow-up the answer does not wait for.
        wait_for(lambda: self.redis.command("TTL", "t:week:{sk}") > 14 * DAY, 2.0)
        stored = self.redis.command("GET", "t:idem:{sk}:s1")
        self.assertEqual(json.loads(stored)["reason"], "cap_reached")
        self.assertGreater(self.redis.command("TTL", "t:idem:{sk}:s1"), 0)
        # Nothing a send would touch.
        self.assertEqual(self.redis.command("EXISTS", "t:sent:{sk}"), 0)
        self.assertNotIn("push:%d:sent" % week, f)

    def test_a_skip_starts_unusable_week_counters_again(self):
        # Someone wrote a version and a count that are no counters (or one
        # beyond the readers' range): HINCRBY fails (or overshoots), and the
        # field starts again at 1, as the record script started it, so the
        # next skip counts on instead of failing every decide of the member.
        # The repair is answered before the decide is.
        week = (MONDAY + 12 * 3600 - 4 * DAY) // WEEK
        opp = "push:%d:opp" % week
        for member, v, n in (("bc", "garbage", "1.5"), ("big", "1000000000", "1000000000")):
            set_plan(self.redis, member, 0)
            self.redis.command("HSET", "t:week:{%s}" % member, "v", v, opp, n)
            out = self.decide(member, "b1")
            self.assertEqual((out["send"], out["reason"]), (False, "cap_reached"), out)
            f = self.week(member)
            self.assertEqual((f.get("v"), f.get(opp)), ("1", "1"), (member, f))
            out = self.decide(member, "b2")
            self.assertEqual(out["reason"], "cap_reached", out)
            f = self.week(member)
            self.assertEqual((f.get("v"), f.get(opp)), ("2", "2"), (member, f))

    def test_a_skip_on_a_week_key_of_another_type_answers_degraded(self):
        # Not a hash: the read fails (WRONGTYPE), so the decide degrades,
        # and nothing is stored for the opportunity, so a retry after the
        # key is repaired is decided afresh.
        set_plan(self.redis, "wt", 0)
        self.redis.command("SET", "t:week:{wt}", "a string")
        out = self.decide("wt", "w1")
        self.assertEqual(out["reason"], "degraded", out)
        self.assertEqual(self.redis.command("EXISTS", "t:idem:{wt}:w1"), 0)
        self.redis.command("DEL", "t:week:{wt}")
        out = self.decide("wt", "w1")
        self.assertEqual(out["reason"], "cap_reached", out)

    def test_a_skip_before_the_coin_counts_nothing(self):
        set_plan(self.redis, "nc", 5)
        r = self.client().request({"op": "decide", "member": "nc", "channel": "push",
                                   "opportunity": "n1", "ts": MONDAY + 12 * 3600,
                                   "candidates": []})
        self.assertEqual(r["reason"], "no_candidates", r)
        self.assertFalse(any(k.endswith(":opp") for k in self.week("nc")), self.week("nc"))
        self.assertEqual(json.loads(self.redis.command("GET", "t:idem:{nc}:n1"))["reason"],
                         "no_candidates")

    def test_sends_and_skips_of_one_member_share_the_week(self):
        week = (MONDAY + 12 * 3600 - 4 * DAY) // WEEK
        set_plan(self.redis, "mix", 2)  # a weekly cap of 3
        c = self.client()
        sent = [c.request({"op": "decide", "member": "mix", "channel": "push",
                           "opportunity": "x%d" % i, "ts": MONDAY + 9 * 3600 + 600 * i,
                           "candidates": candidates(prefix="c%d" % i)})["send"]
                for i in range(12)]
        self.assertIn(True, sent)
        self.assertIn(False, sent)
        f = self.week("mix")
        self.assertEqual(f["push:%d:opp" % week], "12", f)
        self.assertEqual(int(f["push:%d:sent" % week]), sent.count(True), f)
        self.assertEqual(len(f["push:sends"].split(",")), sent.count(True), f)
        self.assertEqual(len(f["push:scores"].split(",")), 12, f)
        self.assertEqual(self.redis.command("ZCARD", "t:sent:{mix}"), sent.count(True))


    def test_a_send_adds_to_the_members_decayed_sends(self):
        half_life = 28 * DAY
        set_plan(self.redis, "fs", 100, valid_until=MONDAY + 400 * DAY)  # slow.max_per_week
        t1 = MONDAY + 10 * 3600
        c = self.client()
        sends = []
        for k, ts in enumerate((t1, t1 + DAY, t1 + 60 * DAY)):
            r = c.request({"op": "decide", "member": "fs", "channel": "push",
                           "opportunity": "f%d" % k, "ts": ts,
                           "candidates": candidates(prefix="f%d" % k)})
            self.assertTrue(r["send"], r)
            sends.append(ts)
            if k == 0:
                self.assertTrue(c.request({"op": "feedback", "member": "fs", "channel": "push",
                                           "event": "open", "ts": t1 + 7200})["ok"])
            h = self.redis.command("HGETALL", "t:member:{fs}")
            f = dict(zip(h[::2], h[1::2]))
            # Counts are stored as of updated_at: decay them to this send.
            scale = 2 ** (-(ts - int(f["updated_at"])) / half_life)
            want = sum(2 ** (-(ts - t) / half_life) for t in sends)
            self.assertAlmostEqual(float(f["push_sent"]) * scale, want, delta=1e-6)
            self.assertEqual(int(f["push_last_sent"]), ts)
            self.assertEqual(int(f["first_seen"]), t1)
            self.assertAlmostEqual(float(f["push_open"]) * scale,
                                   2 ** (-(ts - t1 - 7200) / half_life), delta=1e-6)
            self.assertGreater(self.redis.command("TTL", "t:member:{fs}"), 80 * DAY)
        # Sixty days on, past a half-life: every count was brought to that
        # send, so updated_at moved there.
        self.assertEqual(int(f["updated_at"]), t1 + 60 * DAY)
        self.assertEqual(self.redis.command("ZCARD", "t:sent:{fs}"), 1)  # 7-day dedup window


class PlanCacheTest(NotifdTestCase):
    # Without client tracking the cache's age is the staleness the operator
    # chose: a plan written elsewhere is not seen while the cached one is
    # fresh. (With tracking, the default, see PlanCacheTrackingTest.)
    overrides = {"redis": {"tracking": False}, "fast": {"plan_cache_ms": 600000}}

    def decide(self, opp, ts=MONDAY + 12 * 3600, member="cat"):
        return self.client().request({"op": "decide", "member": member, "channel": "push",
                                      "opportunity": opp, "ts": ts, "candidates": candidates()})

    def test_a_read_plan_is_reused_until_replaced_here_or_out_of_force(self):
        set_plan(self.redis, "cat", 3, version=1, valid_until=MONDAY + WEEK)
        self.assertEqual(self.decide("o1")["plan"]["version"], 1)
        # Another writer's plan is not seen while the cached one is fresh...
        set_plan(self.redis, "cat", 4, version=2, valid_until=MONDAY + 2 * WEEK)
        self.assertEqual(self.decide("o2")["plan"]["version"], 1)
        # ...but is once the cached plan is no longer in force at ts.
        r = self.decide("o3", ts=MONDAY + WEEK + 3600)
        self.assertEqual(r["plan"]["version"], 2)
        # This instance's replan drops the cached plan at once.
        rp = self.client().request({"op": "replan", "member": "cat", "ts": MONDAY + WEEK + 7200})
        self.assertTrue(rp["ok"], rp)
        r = self.decide("o4", ts=MONDAY + WEEK + 7300)
        self.assertEqual(r["plan"]["version"], rp["plan"]["version"])
        self.assertEqual(r["plan"]["source"], "planner")

    def test_members_without_a_plan_are_not_cached(self):
        self.assertEqual(self.decide("o1", member="new")["plan"]["source"], "default")
        set_plan(self.redis, "new", 2, version=7)
        self.assertEqual(self.decide("o2", member="new")["plan"]["version"], 7)


class PlanCacheTrackingTest(NotifdTestCase):
    # The default: plans (and member state) are cached, and Redis reports
    # every change another connection makes, so a plan written by any
    # writer is seen within milliseconds, not after the cache's age.
    overrides = {"fast": {"plan_cache_ms": 600000}}

    def decide(self, opp, ts=MONDAY + 12 * 3600, member="cat"):
        return self.client().request({"op": "decide", "member": member, "channel": "push",
                                      "opportunity": opp, "ts": ts, "candidates": candidates()})

    def test_another_writers_plan_is_seen_within_milliseconds(self):
        set_plan(self.redis, "cat", 3, version=1, valid_until=MONDAY + WEEK)
        self.assertEqual(self.decide("o1")["plan"]["version"], 1)
        self.assertEqual(self.decide("o2")["plan"]["version"], 1)  # from the cache
        set_plan(self.redis, "cat", 4, version=2, valid_until=MONDAY + 2 * WEEK)
        started = time.monotonic()
        n = [2]

        def seen():
            n[0] += 1
            return self.decide("o%d" % n[0])["plan"]["version"] == 2
        wait_for(seen, timeout=2.0, interval=0.001, what="the new plan")
        self.assertLess(time.monotonic() - started, 0.5)
        # And it stays seen (no stale fill put the old one back).
        self.assertEqual(self.decide("later")["plan"]["version"], 2)

    def test_an_external_hset_under_load_is_seen_within_milliseconds(self):
        members = ["l%03d" % i for i in range(100)]
        for m in members + ["cat"]:
            set_plan(self.redis, m, 3, version=1, valid_until=MONDAY + WEEK)
        stop = threading.Event()
        done = []

        def load():
            c = Client(self.notifd.port)
            k = 0
            while not stop.is_set():
                batch = [{"op": "decide", "member": m, "channel": "push",
                          "opportunity": "load%d-%s" % (k, m), "ts": MONDAY + 12 * 3600,
                          "candidates": candidates()} for m in members]
                k += 1
                done.extend(r["ok"] for r in c.pipeline(batch))
            c.close()
        t = threading.Thread(target=load)
        t.start()
        try:
            wait_for(lambda: len(done) > 1000, what="load")
            self.assertEqual(self.decide("o1")["plan"]["version"], 1)
            self.assertEqual(self.decide("o2")["plan"]["version"], 1)
            for v in (2, 3, 4):
                # Under load, one HSET from another connection, then decides.
                set_plan(self.redis, "cat", 3 + v, version=v, valid_until=MONDAY + WEEK)
                started = time.monotonic()
                n = [0]

                def seen():
                    n[0] += 1
                    return self.decide("v%d-%d" % (v, n[0]))["plan"]["version"] == v
                wait_for(seen, timeout=2.0, interval=0.001, what="plan version %d" % v)
                self.assertLess(time.monotonic() - started, 0.25)
        finally:
            stop.set()
            t.join()
        self.assertTrue(all(done))
        self.assertGreater(self.metric("notifd_member_cache_hits_total"), 100)

    def test_members_without_a_plan_are_not_cached(self):
        self.assertEqual(self.decide("o1", member="new")["plan"]["source"], "default")
        set_plan(self.redis, "new", 2, version=7)
        self.assertEqual(self.decide("o2", member="new")["plan"]["version"], 7)

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.notifd.admin_port,
                                    timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(line.split()[1])
        raise AssertionError("no " + name)

    def tracking(self):
        return self.metric("notifd_redis_tracking")

    def test_a_lost_tracking_connection_drops_the_caches_until_it_is_back(self):
        wait_for(lambda: self.tracking() == 1, what="tracking on")
        set_plan(self.redis, "cat", 3, version=1, valid_until=MONDAY + WEEK)
        self.assertEqual(self.decide("o1")["plan"]["version"], 1)
        self.assertEqual(self.decide("o2")["plan"]["version"], 1)
        # Kill the subscribed connection: invalidations can no longer come.
        # notifd counts the flush that follows as one invalidation.
        flushes = self.metric("notifd_redis_invalidations_total")
        self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        wait_for(lambda: self.metric("notifd_redis_invalidations_total") > flushes,
                 what="the caches dropped")
        # A plan written now must not hide behind the cache, tracked or not:
        # while tracking is down plans are read, and once it is back the
        # cache starts empty.
        set_plan(self.redis, "cat", 4, version=2, valid_until=MONDAY + 2 * WEEK)
        self.assertEqual(self.decide("o3")["plan"]["version"], 2)
        wait_for(lambda: self.tracking() == 1, timeout=10, what="tracking back")
        self.assertEqual(self.decide("o4")["plan"]["version"], 2)
        # And tracking works again: another writer's plan is seen.
        set_plan(self.redis, "cat", 5, version=3, valid_until=MONDAY + 2 * WEEK)
        n = [4]

        def seen():
            n[0] += 1
            return self.decide("o%d" % n[0])["plan"]["version"] == 3
        wait_for(seen, timeout=2.0, interval=0.001, what="the plan after tracking came back")


class ThresholdModeTest(NotifdTestCase):
    overrides = {"fast": {"mode": "threshold", "threshold": {"target_send_rate": 0.2,
                                                             "initial": 0.5}}}

    def test_threshold_mode_calibrates_to_the_target_rate_without_plans(self):
        rnd = random.Random(3)
        c = self.client()
        reqs = []
        for i in range(3000):
            cands = [{"id": "c%d-%d" % (i, k), "score": rnd.random()} for k in range(3)]
            reqs.append({"op": "decide", "member": "u%d" % (i % 300), "channel": "push",
                         "opportunity": "t%d" % i, "ts": MONDAY + 9 * 3600 + i,
                         "candidates": cands})
        replies = []
        for i in range(0, len(reqs), 500):
            replies += c.pipeline(reqs[i:i + 500])
        self.assertTrue(all(r["ok"] for r in replies))
        self.assertTrue(all(r["plan"] is None for r in replies))
        self.assertTrue(all(r["mode"] == "threshold" for r in replies))
        late = replies[1500:]
        rate = sum(r["send"] for r in late) / len(late)
        self.assertAlmostEqual(rate, 0.2, delta=0.05)


class StoreDownTest(unittest.TestCase):
    def run_with(self, policy):
        redis = Redis().start()
        self.addCleanup(redis.close)
        n = Notifd(redis.port, {"fast": {"on_store_error": policy}})
        self.addCleanup(n.close)
        n.start()
        c = n.client()
        self.addCleanup(c.close)
        req = {"op": "decide", "member": "z", "channel": "push", "opportunity": "o",
               "ts": MONDAY + 12 * 3600, "candidates": candidates()}
        self.assertTrue(c.request(req)["ok"])
        redis.stop()
        t0 = time.monotonic()
        r = c.request(dict(req, opportunity="o2"))
        self.assertLess(time.monotonic() - t0, 5.0)
        return r, redis, n, c, req

    def test_redis_stopped_mid_test_degrades_and_recovers(self):
        r, redis, n, c, req = self.run_with("skip")
        self.assertTrue(r["ok"])
        self.assertEqual(r["reason"], "degraded")
        self.assertFalse(r["send"])
        # Feedback is queued, not refused (docs/feedback-queue.md).
        fb = c.request({"op": "feedback", "member": "z", "channel": "push", "event": "open"})
        self.assertEqual((fb["ok"], fb["recorded"], fb["queued"]), (True, False, True), fb)
        redis.start()
        wait_for(lambda: n.health()["redis"]["ready"], what="reconnect")
        r = c.request(dict(req, opportunity="o3"))
        self.assertNotEqual(r["reason"], "degraded")

    def test_default_plan_policy_decides_without_redis(self):
        r, *_ = self.run_with("default_plan")
        self.assertTrue(r["degraded"])
        self.assertEqual(r["plan"]["source"], "default")
        self.assertIn(r["reason"], ("send", "paced_skip"))

    def test_stalled_redis_times_out_within_the_configured_timeout(self):
        redis = Redis().start()
        self.addCleanup(redis.close)
        n = Notifd(redis.port, {"redis": {"timeout_ms": 100}})
        self.addCleanup(n.close)
        n.start()
        c = n.client()
        self.addCleanup(c.close)
        # DEBUG SLEEP blocks Redis; the decide must not wait for it.
        threading.Thread(target=lambda: redis.command("DEBUG", "SLEEP", "2"), daemon=True).start()
        time.sleep(0.2)
        t0 = time.monotonic()
        r = c.request({"op": "decide", "member": "s", "channel": "push", "opportunity": "o",
                       "ts": MONDAY + 12 * 3600, "candidates": candidates()})
        elapsed = time.monotonic() - t0
        self.assertEqual(r["reason"], "degraded")
        self.assertLess(elapsed, 1.5)
        s = c.request({"op": "stats"})
        self.assertGreaterEqual(s["redis"]["timeouts"], 1)
        wait_for(lambda: n.health()["redis"]["ready"], timeout=15, what="recovery")


if __name__ == "__main__":
    unittest.main()
