"""The explain op end to end: what a decide would consider, from the real
binary against a real Redis, and that asking changes nothing stored."""
import unittest

from harness import PLAIN_COIN, Notifd, NotifdTestCase, Redis

MONDAY = 1795392000  # 2026-11-23 00:00 UTC, a Monday
DAY = 86400
HOUR = 3600

# The plain coin with a tiny opportunity prior: p = 1, so every decide sends
# until a cap stops it. Weekly cap ceil(3 * 1.5) = 5; over any 7 days
# 5 + floor(3 * (1.5 - 1)) = 6.
FAST = {**PLAIN_COIN, "prior_opportunities_per_week": 0.5, "cap_factor": 1.5,
        "rolling_cap_factor": 1.5, "quiet_hours": {"start": "22:00", "end": "08:00"}}

EXPERIMENTS = {
    "holdout_share": 0.3, "holdout_salt": "hold-explain",
    "fast": {"salt": "fast-x", "arms": [
        {"name": "fresh", "share": 0.5, "set": {"fast.ranker.push.features.freshness": 10}}]},
    "slow": {"salt": "slow-x", "arms": [
        {"name": "cost_x50", "share": 0.5, "set": {"slow.message_cost": 0.5}}]},
}


def set_plan(redis, member, push=3, valid_until=MONDAY + 30 * DAY, prefix="t:"):
    redis.command("HSET", "%splan:{%s}" % (prefix, member), "version", 4, "action", -1,
                  "computed_at", MONDAY - DAY, "valid_until", valid_until, "source", "test",
                  "push_per_week", push, "email_per_week", 1)


def cands(*ids):
    return [{"id": i, "score": 0.5} for i in ids]


def snapshot(redis):
    """Every key's serialized value, and whether it has a TTL (and about
    how long: a second may pass between two snapshots)."""
    out = {}
    for key in sorted(redis.command("KEYS", "*")):
        ttl = redis.command("PTTL", key)
        out[key] = (redis.command("DUMP", key), -1 if ttl < 0 else ttl // 10000)
    return out


class ExplainTest(NotifdTestCase):
    overrides = {"fast": FAST}

    def decide(self, member, opp, ts, ids, channel="push"):
        r = self.client().request({"op": "decide", "member": member, "channel": channel,
                                   "opportunity": opp, "ts": ts, "candidates": cands(*ids)})
        self.assertTrue(r["ok"], r)
        return r

    def explain(self, **req):
        r = self.client().request({"op": "explain", **req})
        self.assertTrue(r["ok"], r)
        self.assertFalse(r["recorded"])
        return r

    def history(self, member):
        """A member in the middle of a week: a plan of 3 pushes, a send on
        the Sunday before, two this week (Monday, Tuesday)."""
        set_plan(self.redis, member)
        for opp, ts, msg in (("o0", MONDAY - 10 * HOUR, "sun"), ("o1", MONDAY + 10 * HOUR, "mon"),
                             ("o2", MONDAY + DAY + 10 * HOUR, "tue")):
            self.assertTrue(self.decide(member, opp, ts, [msg])["send"])

    def test_mid_week_budget_and_caps(self):
        self.history("mid")
        ts = MONDAY + 2 * DAY + 12 * HOUR  # Wednesday noon
        r = self.explain(member="mid", channel="push", ts=ts, candidates=cands("new", "tue"))
        self.assertEqual((r["member"], r["channel"], r["ts"], r["mode"]),
                         ("mid", "push", ts, "hierarchical"))
        plan = r["plan"]
        self.assertEqual(plan["in_force"], "stored")
        self.assertEqual(plan["per_week"]["push"], 3)
        self.assertEqual(plan["stored"]["version"], 4)
        self.assertEqual(plan["valid_until"], MONDAY + 30 * DAY)
        b = r["budget"]
        self.assertTrue(b["paced"])
        self.assertEqual(b["per_week"], 3)
        self.assertEqual(b["sent_this_week"], 2)
        self.assertEqual(b["opportunities_this_week"], 2)
        self.assertEqual(b["p_send_for"], "best_candidate")
        self.assertEqual(b["best_candidate"], "new")
        self.assertTrue(0 <= b["p_send"] <= 1)
        self.assertEqual(r["caps"]["weekly"], {"cap": 5, "sent": 2, "remaining": 3})
        rolling = r["caps"]["rolling"]
        # Sunday's send is in the last 7 days, not in this calendar week.
        self.assertEqual((rolling["cap"], rolling["sent"], rolling["remaining"]), (6, 3, 3))
        self.assertTrue(rolling["enforced"])
        # Without candidates: the coin for a message with no score.
        r2 = self.explain(member="mid", channel="push", ts=ts)
        self.assertEqual(r2["budget"]["p_send_for"], "no_score")
        self.assertIsNone(r2["budget"]["best_candidate"])
        self.assertEqual(r2["decision"]["reason"], "no_candidates")
        self.assertEqual(r2["caps"], r["caps"])

    def test_a_paced_skip_still_names_the_candidate_the_coin_weighed(self):
        # 1000 expected opportunities a week against a plan of 3: p ~ 0.003.
        set_plan(self.redis, "skip")
        week = (MONDAY - 4 * DAY) // (7 * DAY)
        self.redis.command("HSET", "t:week:{skip}", "push:ewma", 1000, "push:ewma_week", week - 1)
        r = self.explain(member="skip", channel="push", ts=MONDAY + 12 * HOUR,
                         candidates=[{"id": "low", "score": 0.1}, {"id": "high", "score": 0.9}])
        self.assertEqual(r["decision"]["reason"], "paced_skip", r["decision"])
        self.assertLess(r["budget"]["p_send"], 0.05)
        self.assertEqual(r["budget"]["best_candidate"], "high")

    def test_the_decision_is_what_the_decide_then_does(self):
        self.history("pred")
        ts = MONDAY + 2 * DAY + 12 * HOUR
        r = self.explain(member="pred", channel="push", ts=ts, opportunity="next",
                         candidates=cands("a", "tue", "b"))
        d = self.decide("pred", "next", ts, ["a", "tue", "b"])
        for k in ("reason", "send", "p_send", "message"):
            self.assertEqual(r["decision"][k], d.get(k), k)

    def test_cap_reached_shows_nothing_remains(self):
        set_plan(self.redis, "full", push=1)  # weekly cap ceil(1.5) = 2
        for i in range(2):
            self.assertTrue(self.decide("full", "f%d" % i, MONDAY + (10 + i) * HOUR, ["m%d" % i])["send"])
        r = self.explain(member="full", channel="push", ts=MONDAY + 14 * HOUR,
                         candidates=cands("x"))
        self.assertEqual(r["caps"]["weekly"], {"cap": 2, "sent": 2, "remaining": 0})
        self.assertEqual(r["decision"]["reason"], "cap_reached")
        self.assertEqual(r["budget"]["p_send"], 0)
        self.assertFalse(r["budget"]["coin_reached"])
        self.assertEqual(r["budget"]["stopped_by"], "cap_reached")

    def test_a_transactional_candidate_in_quiet_hours(self):
        set_plan(self.redis, "tx")
        ts = MONDAY + 23 * HOUR
        c = [{"id": "promo", "score": 0.9}, {"id": "reset", "priority": "transactional"}]
        r = self.explain(member="tx", channel="push", ts=ts, opportunity="t1", candidates=c)
        self.assertEqual(r["decision"]["priority"], "transactional")
        self.assertEqual((r["decision"]["reason"], r["decision"]["message"]), ("send", "reset"))
        self.assertEqual([x["priority"] for x in r["candidates"]], ["normal", "transactional"])
        d = self.client().request({"op": "decide", "member": "tx", "channel": "push",
                                   "opportunity": "t1", "ts": ts, "candidates": c})
        self.assertEqual((d["reason"], d["message"], d["priority"]),
                         ("send", "reset", "transactional"))

    def test_quiet_hours_and_retry_at(self):
        set_plan(self.redis, "night")
        ts = MONDAY + 23 * HOUR
        r = self.explain(member="night", channel="push", ts=ts, candidates=cands("a"))
        q = r["quiet_hours"]
        self.assertEqual((q["enabled"], q["start"], q["end"], q["now"]), (True, "22:00", "08:00", True))
        self.assertEqual(q["retry_at"], MONDAY + DAY + 8 * HOUR)
        self.assertEqual(r["decision"]["reason"], "quiet_hours")
        self.assertEqual(r["decision"]["retry_at"], q["retry_at"])
        # The coin past the quiet hours: what pacing would give at retry.
        self.assertTrue(r["budget"]["coin_reached"])
        d = self.decide("night", "n1", ts, ["a"])
        self.assertEqual(d["reason"], "quiet_hours")
        self.assertEqual(d["retry_at"], q["retry_at"])
        # In the member's time zone: UTC-5 makes 23:00 UTC 18:00 local.
        self.redis.command("HSET", "t:member:{night}", "tz_offset_min", -300)
        q2 = self.explain(member="night", channel="push", ts=ts)["quiet_hours"]
        self.assertFalse(q2["now"])
        self.assertIsNone(q2["retry_at"])

    def test_dedup_state_of_candidates(self):
        set_plan(self.redis, "dd")
        sent_at = MONDAY + 10 * HOUR
        self.assertTrue(self.decide("dd", "o1", sent_at, ["seen"])["send"])
        ts = MONDAY + DAY + 10 * HOUR
        r = self.explain(member="dd", channel="push", ts=ts, candidates=cands("seen", "fresh"))
        by_id = {c["id"]: c for c in r["candidates"]}
        self.assertEqual(by_id["seen"]["last_sent"], sent_at)
        self.assertFalse(by_id["seen"]["eligible"])
        self.assertEqual(by_id["seen"]["eligible_at"], sent_at + 7 * DAY)
        self.assertIsNone(by_id["seen"]["utility"])
        self.assertIsNone(by_id["fresh"]["last_sent"])
        self.assertTrue(by_id["fresh"]["eligible"])
        self.assertIsNotNone(by_id["fresh"]["utility"])
        self.assertEqual(r["budget"]["best_candidate"], "fresh")
        self.assertEqual(r["dedup_days"], 7)
        # Only the already-sent one: all filtered, the coin without a score.
        r2 = self.explain(member="dd", channel="push", ts=ts, candidates=cands("seen"))
        self.assertEqual(r2["decision"]["reason"], "all_filtered")
        self.assertEqual(r2["budget"]["p_send_for"], "no_score")

    def test_optouts_per_channel(self):
        fb = self.client().request({"op": "feedback", "member": "oo", "channel": "email",
                                    "event": "unsubscribe", "ts": MONDAY})
        self.assertTrue(fb["ok"], fb)
        r = self.explain(member="oo", channel="email", ts=MONDAY + HOUR, candidates=cands("a"))
        self.assertTrue(r["optouts"]["email"]["opted_out"])
        self.assertFalse(r["optouts"]["push"]["opted_out"])
        self.assertEqual(r["decision"]["reason"], "unsubscribed")
        # The slow policy plans nothing on email for this member.
        email = r["slow"]["estimate"]["channels"]["email"]
        self.assertFalse(email["available"])
        for a in r["slow"]["top"]:
            self.assertEqual(a["per_week"]["email"], 0)
        # A durable opt-out alone (the member hash gone) still counts.
        self.redis.command("DEL", "t:member:{oo}")
        self.redis.command("HSET", "t:optout:{oo}", "push", "1")
        r = self.explain(member="oo", channel="push", ts=MONDAY + HOUR)
        self.assertTrue(r["optouts"]["push"]["opted_out"])
        self.assertTrue(r["optouts"]["push"]["durable"])

    def test_slow_view_parts_add_up(self):
        set_plan(self.redis, "sv")
        self.redis.command("HSET", "t:member:{sv}", "push_sent", 20, "push_open", 6,
                           "push_delivered", 20, "visit_org", 10, "updated_at", MONDAY)
        r = self.explain(member="sv", ts=MONDAY + HOUR)
        self.assertTrue(r["channel_defaulted"])
        self.assertEqual(r["channel"], "push")
        s = r["slow"]
        self.assertTrue(s["features"])
        self.assertEqual(s["arm"], "control")
        top = s["top"]
        self.assertEqual(len(top), 5)
        self.assertTrue(top[0]["greedy"])
        self.assertEqual(top[0]["action"], s["greedy_action"])
        for a in top[1:]:
            self.assertLessEqual(a["utility"], top[0]["utility"] + 1e-12)
        for a in top:
            parts = a["parts"]
            self.assertAlmostEqual(sum(parts.values()), a["utility"], places=9)
            self.assertGreaterEqual(parts["visits"], 0)
            self.assertLessEqual(parts["message_cost"], 0)
        # The planner plans the greedy action from the same features.
        rp = self.client().request({"op": "replan", "member": "sv", "ts": MONDAY + HOUR})
        self.assertTrue(rp["ok"], rp)
        self.assertEqual(rp["plan"]["action"], s["greedy_action"])
        r2 = self.explain(member="sv", ts=MONDAY + HOUR)
        self.assertEqual(r2["plan"]["action"], s["greedy_action"])
        self.assertEqual(r2["plan"]["stored"]["source"], "planner")

    def test_default_plan_when_none_stored(self):
        r = self.explain(member="newbie", channel="push", ts=MONDAY + 10 * HOUR)
        self.assertEqual(r["plan"]["in_force"], "default")
        self.assertIsNone(r["plan"]["stored"])
        self.assertFalse(r["slow"]["features"])
        # A member without history is planned the default plan, not the best
        # utility, and the slow view says why; the planner agrees.
        s = r["slow"]
        self.assertTrue(s["new_member"])
        self.assertEqual(s["top"][0]["per_week"], {"push": 0.5, "email": 0.0})
        self.assertTrue(s["top"][0]["greedy"])
        self.assertGreater(s["top"][1]["utility"], s["top"][0]["utility"])
        rp = self.client().request({"op": "replan", "member": "newbie", "ts": MONDAY + 10 * HOUR})
        self.assertEqual(rp["plan"]["action"], s["greedy_action"])
        # The slow view of a member with history is the argmax's.
        self.redis.command("HSET", "t:member:{sv2}", "visit_org", 1, "updated_at", MONDAY)
        s2 = self.explain(member="sv2", ts=MONDAY + HOUR)["slow"]
        self.assertFalse(s2["new_member"])
        self.assertEqual(s2["top"][0]["action"], s2["greedy_action"])
        self.assertTrue(all(a["utility"] <= s2["top"][0]["utility"] + 1e-12 for a in s2["top"]))
        # An expired stored plan is shown, and the default is in force.
        set_plan(self.redis, "old", valid_until=MONDAY - DAY)
        r = self.explain(member="old", channel="push", ts=MONDAY + 10 * HOUR)
        self.assertEqual(r["plan"]["in_force"], "default")
        self.assertFalse(r["plan"]["stored"]["in_force"])

    def test_explain_changes_no_stored_state(self):
        self.history("still")
        self.client().request({"op": "feedback", "member": "still", "channel": "email",
                               "event": "unsubscribe", "ts": MONDAY + 11 * HOUR})
        # An opt-out in the member hash only: a decide would copy it to the
        # durable key; an explain must not.
        self.redis.command("HSET", "t:member:{still}", "push_unsub", 1)
        before = snapshot(self.redis)
        self.assertTrue(any("idem" in k for k in before), before.keys())
        c = self.client()
        reqs = []
        for i, ts in enumerate((MONDAY + 2 * DAY + 12 * HOUR, MONDAY + 2 * DAY + 23 * HOUR,
                                MONDAY + 9 * DAY)):
            for ch in ("push", "email", "in_app"):
                reqs.append({"op": "explain", "id": len(reqs), "member": "still", "channel": ch,
                             "ts": ts, "opportunity": "o%d" % i, "candidates": cands("mon", "z")})
        reqs.append({"op": "explain", "id": len(reqs), "member": "still"})
        reqs.append({"op": "explain", "id": len(reqs), "member": "nobody-yet",
                     "candidates": cands("a")})
        for r in c.pipeline(reqs):
            self.assertTrue(r["ok"], r)
        self.assertEqual(snapshot(self.redis), before)

    def test_decide_after_explains_is_the_decide_without_them(self):
        # Two daemons on two Redis servers, with the same history; one is
        # asked to explain many times, the other not. Their next decides
        # answer alike.
        redis2 = Redis().start()
        self.addCleanup(redis2.close)
        notifd2 = Notifd(redis2.port, self.overrides)
        self.addCleanup(notifd2.close)
        notifd2.start()
        ts = MONDAY + 2 * DAY + 12 * HOUR
        answers = []
        for redis, notifd, explains in ((self.redis, self.notifd, 20), (redis2, notifd2, 0)):
            set_plan(redis, "twin")
            c = notifd.client()
            self.addCleanup(c.close)
            for opp, t, msg in (("o1", MONDAY + 10 * HOUR, "mon"),
                                ("o2", MONDAY + DAY + 10 * HOUR, "tue")):
                self.assertTrue(c.request({"op": "decide", "member": "twin", "channel": "push",
                                           "opportunity": opp, "ts": t,
                                           "candidates": cands(msg)})["send"])
            for i in range(explains):
                self.assertTrue(c.request({"op": "explain", "member": "twin", "channel": "push",
                                           "opportunity": "o3", "ts": ts,
                                           "candidates": cands("a", "mon")})["ok"])
            out = []
            for opp, t in (("o3", ts), ("o4", ts + HOUR), ("o5", ts + 2 * HOUR),
                           ("o6", ts + 3 * HOUR)):
                r = c.request({"op": "decide", "member": "twin", "channel": "push",
                               "opportunity": opp, "ts": t, "candidates": cands("a", "b", "mon")})
                out.append({k: r.get(k) for k in ("reason", "send", "p_send", "message")})
            answers.append(out)
        self.assertEqual(answers[0], answers[1])

    def test_hostile_stored_values_are_read_as_the_decide_reads_them(self):
        set_plan(self.redis, "bad")
        self.redis.command("HSET", "t:plan:{bad}", "push_per_week", "1e999", "valid_until", "x")
        self.redis.command("HSET", "t:member:{bad}", "tz_offset_min", 99999, "push_unsub", 7,
                           "push_sent", "nan", "push_open", -3, "updated_at", "soon",
                           "visit_org", "inf")
        self.redis.command("HSET", "t:optout:{bad}", "push", "maybe", "fax", "1")
        self.redis.command("HSET", "t:week:{bad}", "push:2968:sent", "-4", "push:2968:opp", "nan",
                           "push:ewma", "1e400", "push:sends", "x,y,,1e30")
        # (A time from the future is not used: the read takes it as missing,
        # the record script as a recent send, so there the decide itself
        # would pick another message on its second try.)
        self.redis.command("ZADD", "t:sent:{bad}", "-5", "a")
        ts = MONDAY + 2 * DAY + 12 * HOUR
        before = snapshot(self.redis)
        r = self.explain(member="bad", channel="push", ts=ts, opportunity="h",
                         candidates=cands("a", "b"))
        self.assertEqual(snapshot(self.redis), before)
        self.assertEqual(r["tz_offset_min"], 0)
        self.assertFalse(r["optouts"]["push"]["opted_out"])
        d = self.decide("bad", "h", ts, ["a", "b"])
        for k in ("reason", "send", "p_send", "message"):
            self.assertEqual(r["decision"][k], d.get(k), k)

    def test_bad_requests(self):
        c = self.client()
        for req, word in (({}, "member"), ({"member": "a", "channel": "fax"}, "channel"),
                          ({"member": "a", "candidates": 3}, "candidates"),
                          ({"member": "a", "ts": "x"}, "ts")):
            r = c.request({"op": "explain", **req})
            self.assertFalse(r["ok"], r)
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertIn(word, r["error"]["message"])


class ExplainArmsTest(NotifdTestCase):
    overrides = {"fast": FAST, "experiments": EXPERIMENTS}

    def test_arms_and_holdout_are_the_decides(self):
        c = self.client()
        seen_holdout = seen_treated = 0
        for i in range(40):
            m = "arm%d" % i
            set_plan(self.redis, m)
            x = c.request({"op": "explain", "member": m, "channel": "push",
                           "ts": MONDAY + 12 * HOUR, "candidates": cands("a")})
            self.assertTrue(x["ok"], x)
            d = c.request({"op": "decide", "member": m, "channel": "push", "opportunity": "o",
                           "ts": MONDAY + 12 * HOUR, "candidates": cands("a")})
            self.assertEqual({"fast": x["arms"]["fast"], "slow": x["arms"]["slow"]}, d["arm"])
            self.assertEqual(x["slow"]["arm"], d["arm"]["slow"])
            if x["arms"]["holdout"]:
                seen_holdout += 1
                self.assertEqual(x["decision"]["reason"], "holdout")
                self.assertEqual(d["reason"], "holdout")
            else:
                seen_treated += 1
                self.assertNotEqual(d["reason"], "holdout")
        self.assertGreater(seen_holdout, 0)
        self.assertGreater(seen_treated, 0)


class ExplainThresholdModeTest(NotifdTestCase):
    overrides = {"fast": {"mode": "threshold"}}

    def test_threshold_mode_has_no_plan_and_no_caps(self):
        c = self.client()
        req = {"member": "th", "channel": "push", "ts": MONDAY + 12 * HOUR, "opportunity": "o1",
               "candidates": cands("a", "b")}
        before = snapshot(self.redis)
        x = c.request({"op": "explain", **req})
        self.assertTrue(x["ok"], x)
        self.assertEqual(snapshot(self.redis), before)
        self.assertEqual(x["mode"], "threshold")
        self.assertIsNone(x["plan"])
        self.assertIsNone(x["caps"])
        self.assertFalse(x["budget"]["paced"])
        d = c.request({"op": "decide", **req})
        for k in ("reason", "send", "p_send", "message"):
            self.assertEqual(x["decision"][k], d.get(k), k)


class ExplainStoreDownTest(NotifdTestCase):
    def test_dead_redis_is_unavailable(self):
        self.redis.stop()
        r = self.client(timeout=15).request({"op": "explain", "member": "m", "ts": MONDAY})
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["error"]["code"], "unavailable")


if __name__ == "__main__":
    unittest.main()
