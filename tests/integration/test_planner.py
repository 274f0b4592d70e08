"""The slow policy's worker and its ops against a real redis-server and the
real binary: replan, planner_run, the schedule, leases shared by two
instances, reload, and members whose features expired.

Every test drives time with explicit `ts`, and turns the timer off
(planner.enabled false) unless the timer is what it tests, so outcomes do
not depend on when a pass happens to start.
"""
import math
import os
import signal
import socket
import sys
import threading
import time
import unittest

from harness import Notifd, NotifdTestCase, Redis, _resp_encode, _resp_read, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts"))
import gen_members  # noqa: E402  (scripts/gen_members.py: RESP for realistic members)

T0 = 1_700_000_000
DAY = 86400
WEEK = 7 * DAY
PREFIX = "t:"
PLAN_FIELDS = {"version", "action", "computed_at", "valid_until", "source", "arm",
               "expires_at", "push_per_week", "email_per_week"}


def total(plan):
    return sum(plan["per_week"].values())


class RedisPipe:
    """One raw connection for bulk loads and reads (pipelined RESP)."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=30)
        self.f = self.sock.makefile("rwb")

    def run(self, commands):
        self.f.write(b"".join(_resp_encode(c) for c in commands))
        self.f.flush()
        return [_resp_read(self.f) for _ in commands]

    def load_members(self, count, due, start=0, features=True):
        """`count` members m<start>.. with realistic features, due at `due`."""
        buf = _Buffer()
        gen_members.generate(buf, count, PREFIX, due, seed=start + 1, start=start,
                             features=features)
        self.f.write(buf.data())
        self.f.flush()
        for _ in range(count * (2 if features else 1)):
            _resp_read(self.f)

    def close(self):
        self.sock.close()


class _Buffer:
    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(b)

    def data(self):
        return b"".join(self.parts)


def member(i):
    return "m%08d" % i


def plan_key(m):
    return "%splan:{%s}" % (PREFIX, m)


def sched_key(m):
    return "%ssched:%d" % (PREFIX, gen_members.schedule_partition(m.encode()))


def cadence_key(m):
    return "%scadence:%d" % (PREFIX, gen_members.schedule_partition(m.encode()))


def phase(m):
    return gen_members.cadence_phase(m.encode())


def phase_next(u, t, interval=WEEK):
    """cadence_next(): the first time after t that phase u comes round."""
    wait = (int(u * interval) - t) % interval
    return t + (wait or interval)


def expected_valid_until(m, computed_at, interval=WEEK, grace=0.05):
    """cadence_valid_until() with the default planner.jitter as the grace."""
    until = max(computed_at + interval, phase_next(phase(m), computed_at + interval // 2))
    return until + int(grace * interval)


def in_window(u, t0, t1, interval=WEEK):
    """Whether phase u came round in (t0, t1] (cadence_window())."""
    if t1 - t0 >= interval:
        return True
    lo, hi = (t0 % interval) / interval, (t1 % interval) / interval
    return lo < u <= hi if lo < hi else (u > lo or u <= hi)


class BusyDecides:
    """Keeps a notifd's fast path busy while in the `with` block: pipelined
    decides in a loop on two connections of their own, so that the pause
    while one client builds its next batch is covered by the other's (the
    planner calls the fast path idle after 100 ms without a command; one
    connection under a sanitizer left such gaps). They are for members with
    no plan, as of `ts`, so each joins the due set of its partition at ts;
    members of partition `avoid` are left out."""

    THREADS = 2

    def __init__(self, test, ts, avoid=None, members=None):
        self.test, self.ts = test, ts
        if members is None:
            members = [m for m in ("busy-%03d" % i for i in range(64))
                       if gen_members.schedule_partition(m.encode()) != avoid]
        self.members = members
        self.stop = threading.Event()
        self.answered = []

    def _run(self, k):
        c = self.test.client()
        n = 0
        while not self.stop.is_set():
            reqs = [{"op": "decide", "member": self.members[(n + i) % len(self.members)],
                     "channel": "push", "opportunity": "busy-%d-%d" % (k, n + i), "ts": self.ts,
                     "candidates": [{"id": "c1", "score": 0.5}]} for i in range(64)]
            replies = c.pipeline(reqs)
            self.answered.append(sum(r["ok"] for r in replies))
            n += 64

    def __enter__(self):
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(self.THREADS)]
        for t in self.threads:
            t.start()
        wait_for(lambda: len(self.answered) >= 3 * self.THREADS, what="decides flowing")
        self.at_enter = len(self.answered)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        self.test.assertEqual(set(self.answered), {64})  # every decide answered
        return False


class PlannerOpsTest(NotifdTestCase):
    overrides = {"planner": {"enabled": False}}

    def pipe(self):
        p = RedisPipe(self.redis)
        self.addCleanup(p.close)
        return p

    def feedback_history(self, c, m, engaged):
        """Four weeks of daily sends and reactions, via the feedback op."""
        reqs = []
        for day in range(28):
            t = T0 + day * DAY
            for ch in ("push", "email"):
                reqs.append({"op": "feedback", "member": m, "channel": ch, "event": "delivered",
                             "ts": t})
                if engaged:
                    reqs.append({"op": "feedback", "member": m, "channel": ch, "event": "open",
                                 "ts": t + 600})
                else:
                    reqs.append({"op": "feedback", "member": m, "channel": ch,
                                 "event": "dismiss", "ts": t + 600})
            if engaged:
                # Visits right after the opens: what the messages bring.
                reqs.append({"op": "feedback", "member": m, "event": "visit", "ts": t + 1200})
            if not engaged and day in (10, 20):
                reqs.append({"op": "feedback", "member": m, "channel": "email",
                             "event": "unsubscribe", "ts": t + 900})
                reqs.append({"op": "feedback", "member": m, "channel": "email",
                             "event": "resubscribe", "ts": t + 1000})
        for r in c.pipeline(reqs):
            self.assertTrue(r["ok"], r)

    def test_engaged_member_gets_a_larger_plan_than_a_fatigued_one(self):
        c = self.client()
        self.feedback_history(c, "engaged", engaged=True)
        self.feedback_history(c, "fatigued", engaged=False)
        ts = T0 + 28 * DAY
        e = c.request({"op": "replan", "member": "engaged", "ts": ts, "id": "e"})
        f = c.request({"op": "replan", "member": "fatigued", "ts": ts})
        self.assertTrue(e["ok"], e)
        self.assertTrue(f["ok"], f)
        self.assertEqual(e["id"], "e")
        self.assertGreater(total(e["plan"]), total(f["plan"]))

        plan = e["plan"]
        self.assertEqual(plan["source"], "planner")
        self.assertEqual(plan["version"], 1)
        self.assertEqual(plan["computed_at"], ts)
        interval = 604800
        self.assertEqual(plan["valid_until"], expected_valid_until("engaged", ts))
        self.assertGreaterEqual(plan["valid_until"], ts + interval)
        self.assertLessEqual(plan["valid_until"], ts + interval * 1.55)
        stored = self.redis.command("HGETALL", plan_key("engaged"))
        h = dict(zip(stored[::2], stored[1::2]))
        self.assertEqual(set(h), PLAN_FIELDS)
        self.assertEqual(h["version"], "1")
        self.assertEqual(h["source"], "planner")
        self.assertEqual(h["arm"], "control")  # no experiments configured
        self.assertEqual(int(h["action"]), plan["action"])
        self.assertEqual(int(h["computed_at"]), ts)
        self.assertEqual(int(h["valid_until"]), plan["valid_until"])
        self.assertEqual(float(h["push_per_week"]), plan["per_week"]["push"])
        self.assertEqual(float(h["email_per_week"]), plan["per_week"]["email"])
        self.assertGreater(self.redis.command("TTL", plan_key("engaged")), interval)
        # The member joins the cadence at its phase.
        self.assertEqual(float(self.redis.command("ZSCORE", cadence_key("engaged"), "engaged")),
                         phase("engaged"))

        for v in (2, 3):
            again = c.request({"op": "replan", "member": "engaged", "ts": ts + v})
            self.assertEqual(again["plan"]["version"], v)
            self.assertEqual(self.redis.command("HGET", plan_key("engaged"), "version"), str(v))
        # The fast path sees the stored plan (decide judges expiry by its ts).
        d = c.request({"op": "decide", "member": "engaged", "channel": "email",
                       "opportunity": "o", "ts": ts + 10,
                       "candidates": [{"id": "c1", "score": 0.5}]})
        self.assertEqual(d["plan"]["version"], 3)
        self.assertEqual(d["plan"]["source"], "planner")
        # (The decide also shows in_app, paced at fast.unplanned_per_week.)
        self.assertEqual(d["plan"]["defaulted"], ["in_app"])
        self.assertEqual({k: v for k, v in d["plan"]["per_week"].items() if k != "in_app"},
                         e["plan"]["per_week"])

    def test_feedback_schedules_the_member_in_the_partition_the_planner_walks(self):
        c = self.client()
        self.assertTrue(c.request({"op": "feedback", "member": "newbie", "channel": "push",
                                   "event": "delivered", "ts": T0})["ok"])
        # gen_members.py computes partitions like schedule.c; both must agree.
        wait_for(lambda: self.redis.command("ZSCORE", sched_key("newbie"), "newbie") is not None,
                 what="member scheduled")
        self.assertEqual(int(self.redis.command("ZSCORE", sched_key("newbie"), "newbie")), T0)

    def test_planner_run_replans_due_members_and_leaves_the_rest(self):
        p = self.pipe()
        p.load_members(10, due=T0, start=0)
        p.load_members(10, due=T0 + 5 * DAY, start=10)
        c = self.client()
        t1 = T0 + 60
        r = c.request({"op": "planner_run", "ts": t1, "id": 7})
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["id"], 7)
        self.assertEqual((r["planned"], r["kept"], r["failed"], r["removed"]), (10, 0, 0, 0))
        self.assertLessEqual(r["partitions"] + r["partitions_skipped"], 10)
        self.assertGreaterEqual(r["partitions"], 1)
        self.assertIsInstance(r["seconds"], float)
        first = [member(i) for i in range(10)]
        for m in first:
            h = p.run([["HGETALL", plan_key(m)]])[0]
            h = dict(zip(h[::2], h[1::2]))
            self.assertEqual(h["version"], "1")
            self.assertEqual(h["source"], "planner")
            self.assertEqual(int(h["computed_at"]), t1)
            self.assertEqual(int(h["valid_until"]), expected_valid_until(m, t1))
            # Planned: out of the due set, into the cadence at its phase.
            self.assertIsNone(self.redis.command("ZSCORE", sched_key(m), m))
            self.assertEqual(float(self.redis.command("ZSCORE", cadence_key(m), m)), phase(m))
        for i in range(10, 20):
            m = member(i)
            self.assertEqual(self.redis.command("EXISTS", plan_key(m)), 0)
            self.assertEqual(int(self.redis.command("ZSCORE", sched_key(m), m)), T0 + 5 * DAY)
            self.assertIsNone(self.redis.command("ZSCORE", cadence_key(m), m))

        # Nothing is planned twice in half a cadence: members whose phase
        # comes round in the next three days keep the plan they just got.
        t2 = t1 + 3 * DAY
        again = c.request({"op": "planner_run", "ts": t2})
        self.assertEqual(again["planned"], 0)
        self.assertEqual(again["kept"], sum(in_window(phase(m), t1, t2) for m in first))

        # The fast path honours the plan.
        d = c.request({"op": "decide", "member": member(0), "channel": "push",
                       "opportunity": "o1", "ts": T0 + 180,
                       "candidates": [{"id": "c1", "score": 0.5}]})
        self.assertTrue(d["ok"], d)
        self.assertEqual(d["plan"]["source"], "planner")
        self.assertEqual(d["plan"]["version"], 1)

        # Later, the rest are due, and so are the first ten whose phase came
        # round since (their plans are more than half a cadence old by then).
        t3 = T0 + 5 * DAY
        later = c.request({"op": "planner_run", "ts": t3})
        replanned = {m for m in first if in_window(phase(m), t2, t3)}
        self.assertEqual(later["planned"], 10 + len(replanned))
        for m in first:
            self.assertEqual(self.redis.command("HGET", plan_key(m), "version"),
                             "2" if m in replanned else "1", m)

    def test_a_member_whose_features_expired_leaves_the_schedule(self):
        p = self.pipe()
        p.load_members(1, due=T0, start=0)
        p.load_members(1, due=T0, start=1, features=False)  # a schedule entry, no features
        ghost = member(1)
        self.assertIsNotNone(self.redis.command("ZSCORE", sched_key(ghost), ghost))
        r = self.client().request({"op": "planner_run", "ts": T0 + 1})
        self.assertEqual((r["planned"], r["failed"], r["removed"]), (1, 0, 1))
        self.assertIsNone(self.redis.command("ZSCORE", sched_key(ghost), ghost))
        self.assertIsNone(self.redis.command("ZSCORE", cadence_key(ghost), ghost))
        self.assertEqual(self.redis.command("EXISTS", plan_key(ghost)), 0)
        # Once in the cadence, it leaves that too when its features go.
        kept = member(0)
        self.assertIsNotNone(self.redis.command("ZSCORE", cadence_key(kept), kept))
        self.redis.command("DEL", "%smember:{%s}" % (PREFIX, kept))
        r = self.client().request({"op": "planner_run", "ts": T0 + 1 + WEEK})
        self.assertEqual((r["planned"], r["failed"], r["removed"]), (0, 0, 1))
        self.assertIsNone(self.redis.command("ZSCORE", cadence_key(kept), kept))

    def test_stale_fields_of_an_older_plan_are_dropped(self):
        p = self.pipe()
        p.load_members(1, due=T0, start=0)
        m = member(0)
        # Another writer's plan with a channel the grid no longer plans.
        p.run([["HSET", plan_key(m), "version", "4", "source", "crm", "push_per_week", "9",
                "in_app_per_week", "3", "note", "x"]])
        r = self.client().request({"op": "planner_run", "ts": T0 + 1})
        self.assertEqual(r["planned"], 1)
        h = p.run([["HGETALL", plan_key(m)]])[0]
        h = dict(zip(h[::2], h[1::2]))
        self.assertEqual(set(h), PLAN_FIELDS)
        self.assertEqual(h["version"], "5")
        self.assertEqual(h["source"], "planner")

    def test_a_replan_writes_what_changed_and_the_plan_is_whole(self):
        # The second write of a plan sends only the fields whose values
        # changed; the stored plan must still be exactly the new one,
        # whatever the old values were (here changed by hand, same fields).
        p = self.pipe()
        p.load_members(1, due=T0, start=0)
        m = member(0)
        r = self.client().request({"op": "planner_run", "ts": T0 + 1})
        self.assertEqual(r["planned"], 1)
        first = p.run([["HGETALL", plan_key(m)]])[0]
        first = dict(zip(first[::2], first[1::2]))
        tampered = {k: "77" for k in first if k.endswith("_per_week")}
        tampered.update({"source": "crm", "action": "123456"})
        p.run([["HSET", plan_key(m)] + [x for kv in tampered.items() for x in kv]])
        r = self.client().request({"op": "planner_run", "ts": T0 + 1 + WEEK})
        self.assertEqual((r["planned"], r["kept"]), (1, 0))
        again = p.run([["HGETALL", plan_key(m)]])[0]
        again = dict(zip(again[::2], again[1::2]))
        self.assertEqual(set(again), set(first))
        self.assertEqual(again["version"], "2")
        self.assertEqual(again["source"], "planner")
        self.assertEqual(int(again["computed_at"]), T0 + 1 + WEEK)
        self.assertNotEqual(again["action"], "123456")
        # The same member's features, a week later: the same plan as a
        # fresh write of it (replan writes every field with the script).
        fresh = self.client().request({"op": "replan", "member": m, "ts": T0 + 1 + WEEK})
        self.assertTrue(fresh["ok"], fresh)
        self.assertEqual(int(again["action"]), fresh["plan"]["action"])
        for k in tampered:
            if k.endswith("_per_week"):
                self.assertEqual(float(again[k]), fresh["plan"]["per_week"][k[:-len("_per_week")]],
                                 k)

    def test_replan_of_an_unknown_member_plans_from_the_priors(self):
        r = self.client().request({"op": "replan", "member": "nobody", "ts": T0})
        self.assertTrue(r["ok"], r)
        self.assertFalse(r["features"])
        self.assertEqual(r["plan"]["version"], 1)
        self.assertGreater(total(r["plan"]), 0)

    def test_a_member_without_history_gets_the_default_plan_and_one_visit_ends_it(self):
        # At the default message cost the priors alone plan nothing; a
        # member of whom nothing is stored gets slow.default_plan instead
        # (half a push a week), and the first thing stored about them (one
        # organic visit) hands them to the argmax.
        c = self.client()
        r = c.request({"op": "replan", "member": "newcomer", "ts": T0})
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["plan"]["per_week"], {"push": 0.5, "email": 0.0})
        self.assertTrue(c.request({"op": "feedback", "member": "newcomer", "event": "visit",
                                   "ts": T0 + 60})["ok"])
        r = c.request({"op": "replan", "member": "newcomer", "ts": T0 + 120})
        self.assertTrue(r["ok"], r)
        self.assertTrue(r["features"])
        self.assertEqual(total(r["plan"]), 0, r["plan"])

    def test_bad_requests(self):
        c = self.client()
        for req, needle in (
            ({"op": "replan"}, "member"),
            ({"op": "replan", "member": ""}, "member"),
            ({"op": "replan", "member": "a\nb"}, "control"),
            ({"op": "replan", "member": "x" * 257}, "member"),
            ({"op": "replan", "member": "a", "ts": "soon"}, "ts"),
            ({"op": "planner_run", "ts": -5}, "ts"),
            ({"op": "planner_run", "ts": [1]}, "ts"),
        ):
            r = c.request(req)
            self.assertFalse(r["ok"], req)
            self.assertEqual(r["error"]["code"], "bad_request", req)
            self.assertIn(needle, r["error"]["message"], req)

    def test_redis_down_is_unavailable(self):
        c = self.client()
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        for req in ({"op": "replan", "member": "a", "ts": T0},
                    {"op": "planner_run", "ts": T0}):
            r = c.request(req)
            self.assertFalse(r["ok"], req)
            self.assertEqual(r["error"]["code"], "unavailable", req)
        self.redis.start()
        wait_for(lambda: self.notifd.health()["redis"]["ready"], what="redis back")
        r = c.request({"op": "planner_run", "ts": T0})
        self.assertTrue(r["ok"], r)

    def test_reload_with_a_higher_message_cost_never_raises_volume(self):
        c = self.client()
        self.feedback_history(c, "casual", engaged=True)
        ts = T0 + 28 * DAY
        before = c.request({"op": "replan", "member": "casual", "ts": ts})["plan"]
        self.assertGreater(total(before), 0)
        volumes = [total(before)]
        for gen, cost in ((2, 0.05), (3, 0.3), (4, 5.0)):
            self.notifd.config["slow"] = {"message_cost": cost}
            self.notifd.write_config()
            self.notifd.signal(signal.SIGHUP)
            wait_for(lambda: self.notifd.health()["config_generation"] == gen,
                     what="generation %d" % gen)
            after = c.request({"op": "replan", "member": "casual", "ts": ts})["plan"]
            self.assertLessEqual(total(after), volumes[-1], (cost, after))
            volumes.append(total(after))
        # The reload did reach the planner: a prohibitive cost plans nothing.
        self.assertEqual(volumes[-1], 0)
        self.assertLess(volumes[-1], volumes[0])
        # And the worker thread uses the reloaded config too (the plan the
        # op just wrote would be kept as current: drop it).
        self.redis.command("DEL", plan_key("casual"))
        self.redis.command("ZADD", sched_key("casual"), ts, "casual")
        r = c.request({"op": "planner_run", "ts": ts})
        self.assertEqual(r["planned"], 1)
        h = self.redis.command("HGETALL", plan_key("casual"))
        h = dict(zip(h[::2], h[1::2]))
        self.assertEqual(float(h["push_per_week"]) + float(h["email_per_week"]), 0)

    def test_a_pass_completes_while_decides_keep_redis_busy(self):
        # The worker gives way to this instance's decides while they wait on
        # Redis, but only for a bounded time per batch: with decides in
        # flight all the time, the pass must still finish, and every decide
        # is answered.
        p = self.pipe()
        p.load_members(3000, due=T0)
        with BusyDecides(self, T0 + 30, members=[member(i) for i in range(3000)]) as busy:
            # A pass's duration is not what is tested: on a loaded machine
            # under a sanitizer it may take longer than a client's default.
            r = self.client(timeout=120).request({"op": "planner_run", "ts": T0 + 60})
            seen_during = len(busy.answered)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["planned"], 3000)
        self.assertGreater(seen_during, busy.at_enter)  # decides kept flowing during the pass
        self.assertGreater(r["chunks_small"], 0)  # and the pass saw them

    def test_sigterm_while_a_pass_is_queued_answers_and_exits(self):
        p = self.pipe()
        p.load_members(2000, due=T0)
        c = self.client()
        c.send({"op": "planner_run", "ts": T0 + 1, "id": 1})
        c.send({"op": "planner_run", "ts": T0 + 2, "id": 2})
        self.notifd.signal(signal.SIGTERM)
        # Both are answered, whichever way the race with the stop goes.
        replies = [c.read_line(), c.read_line()]
        self.assertEqual([r["id"] for r in replies], [1, 2])
        for r in replies:
            self.assertTrue(r["ok"] or r["error"]["code"] == "unavailable", r)
        self.assertEqual(self.notifd.wait(), 0)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


class PlannerScorePriorTest(NotifdTestCase):
    """slow.priors.score_strength: a pass reads each member's recent scores
    from its week hash, and a member whose best moments score high is
    planned more than one whose scores are low, with the same history (none
    sent). Off, a pass sends no HMGET at all. The "opens" calibration plans
    with a factor of 1 until a pass has seen sends, so one pass shows it."""
    overrides = {"planner": {"enabled": False},
                 "slow": {"priors": {"score_strength": 40, "score_calibration": "opens"}}}

    def members_with_scores(self):
        c = self.client()
        for m in ("bright", "dull", "dull2", "dull3", "hostile", "plain"):
            r = c.request({"op": "feedback", "member": m, "event": "visit", "ts": T0})
            self.assertTrue(r["ok"], r)
            wait_for(lambda: self.redis.command("ZSCORE", sched_key(m), m) is not None,
                     what="member scheduled")
        # What decides leave: the ranker's utilities, sigmoid(score) under
        # the default ranker, five significant digits, newest first.
        for m, score in (("bright", 0.8), ("dull", 0.02), ("dull2", 0.02), ("dull3", 0.02)):
            scores = ",".join("%.5g" % sigmoid(score) for _ in range(30))
            self.redis.command("HSET", "%sweek:{%s}" % (PREFIX, m), "push:scores", scores,
                               "push:ewma", "10")
        self.redis.command("HSET", "%sweek:{hostile}" % PREFIX, "push:scores", "x,,1e999,nan",
                           "push:ewma", "-3")
        return c

    def plan(self, m):
        h = self.redis.command("HGETALL", plan_key(m))
        return dict(zip(h[::2], h[1::2]))

    def test_a_member_with_better_scores_is_planned_more_push(self):
        c = self.members_with_scores()
        r = c.request({"op": "planner_run", "ts": T0 + 60})
        self.assertTrue(r["ok"], r)
        self.assertEqual((r["planned"], r["failed"]), (6, 0))
        bright, dull = self.plan("bright"), self.plan("dull")
        self.assertGreater(float(bright["push_per_week"]), float(dull["push_per_week"]))
        # A list with nothing valid in it is no evidence: the plan of a
        # member with no week hash.
        self.assertEqual(self.plan("hostile")["push_per_week"], self.plan("plain")["push_per_week"])


class PlannerScorePriorDefaultTest(PlannerScorePriorTest):
    """The defaults ("prior" calibration): a pass plans with the level of
    top scores the passes before found, so the first has no evidence yet
    and the next one plans with it."""
    overrides = {"planner": {"enabled": False}}

    def test_a_member_with_better_scores_is_planned_more_push(self):
        c = self.members_with_scores()
        r = c.request({"op": "planner_run", "ts": T0 + 60})
        self.assertEqual((r["planned"], r["failed"]), (6, 0))
        self.assertEqual(self.plan("bright")["push_per_week"], self.plan("dull")["push_per_week"])
        r = c.request({"op": "planner_run", "ts": T0 + 60 + WEEK})
        self.assertEqual((r["planned"], r["failed"]), (6, 0))
        self.assertGreater(float(self.plan("bright")["push_per_week"]),
                           float(self.plan("dull")["push_per_week"]))
        self.assertEqual(self.plan("hostile")["push_per_week"], self.plan("plain")["push_per_week"])


class PlannerScorePriorOffTest(PlannerScorePriorTest):
    overrides = {"planner": {"enabled": False}, "slow": {"priors": {"score_strength": 0}}}

    def test_a_member_with_better_scores_is_planned_more_push(self):
        c = self.members_with_scores()
        self.redis.command("CONFIG", "RESETSTAT")
        r = c.request({"op": "planner_run", "ts": T0 + 60})
        self.assertEqual((r["planned"], r["failed"]), (6, 0))
        # Off, the scores change nothing, and are not even read.
        self.assertEqual(self.plan("bright")["push_per_week"], self.plan("dull")["push_per_week"])
        self.assertNotIn("cmdstat_hmget", self.redis.command("INFO", "commandstats"))


class PlannerRateCapTest(NotifdTestCase):
    overrides = {"planner": {"enabled": False, "batch_size": 100, "max_members_per_s": 4000}}

    def test_max_members_per_s_holds_the_pass_back(self):
        p = RedisPipe(self.redis)
        self.addCleanup(p.close)
        p.load_members(1000, due=T0)
        r = self.client().request({"op": "planner_run", "ts": T0 + 1})
        self.assertEqual(r["planned"], 1000)
        # A lower bound only: the pass sleeps to stay at or under the cap.
        self.assertGreaterEqual(r["seconds"], 1000 / 4000)


def task_nice(pid, tid=None):
    """nice value (field 19 of /proc/.../stat) of a process or one thread."""
    path = "/proc/%d/stat" % pid if tid is None else "/proc/%d/task/%s/stat" % (pid, tid)
    with open(path) as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def planner_tids(pid):
    tids = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            if f.read().strip() == "notifd-planner":
                tids.append(tid)
    return tids


class PlannerNiceTest(NotifdTestCase):
    overrides = {"planner": {"enabled": False, "nice": 7}}

    def test_the_worker_thread_runs_at_planner_nice_below_the_rest(self):
        pid = self.notifd.proc.pid
        wait_for(lambda: len(planner_tids(pid)) == 1, what="the planner thread, named")
        tid = planner_tids(pid)[0]
        main = task_nice(pid)
        wait_for(lambda: task_nice(pid, tid) == min(19, main + 7), what="planner nice applied")
        # Only the worker: the loop thread keeps the process's priority.
        self.assertEqual(task_nice(pid), main)
        # A reload applies from the next pass on.
        self.notifd.config["planner"]["nice"] = 12
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="reloaded")
        self.assertTrue(self.client().request({"op": "planner_run", "ts": T0})["ok"])
        self.assertEqual(task_nice(pid, tid), min(19, main + 12))


class PlannerChunksTest(NotifdTestCase):
    """One partition larger than a chunk (4096 members), so the pass queries
    each of its sets several times, updates the schedule in several slices
    per chunk (batch_size 100: slices of 100) and steps over a member it
    cannot plan."""

    overrides = {"planner": {"enabled": False, "batch_size": 100}}
    MEMBERS = 5000
    GHOSTS = 600  # schedule entries without features: "g…" sorts before "m…"

    def setUp(self):
        super().setUp()
        self.pipe = RedisPipe(self.redis)
        self.addCleanup(self.pipe.close)
        self.pipe.load_members(self.MEMBERS, due=T0)
        # Every entry into one partition: the planner walks the partition it
        # leases, whatever the members' hash says.
        self.pipe.run([["DEL"] + ["%ssched:%d" % (PREFIX, n) for n in range(64)]])
        self.key = "%ssched:0" % PREFIX
        self.cadence = "%scadence:0" % PREFIX
        self.members = [member(i) for i in range(self.MEMBERS)]
        entries = self.members + ["g%05d" % i for i in range(self.GHOSTS)]
        self.pipe.run([["ZADD", self.key, str(T0), m] for m in entries])
        self.bad = member(5)
        self.pipe.run([["SET", plan_key(self.bad), "not a hash"]])

    def run_pass(self, ts):
        r = self.client(timeout=120).request({"op": "planner_run", "ts": ts})
        self.assertTrue(r["ok"], r)
        return r

    def versions(self):
        return self.pipe.run([["HGET", plan_key(m), "version"] for m in self.members])

    def test_each_due_member_is_planned_once_and_a_failure_keeps_its_due_time(self):
        r = self.run_pass(T0 + 60)
        self.assertEqual((r["planned"], r["failed"], r["removed"]),
                         (self.MEMBERS - 1, 1, self.GHOSTS))
        good = [m for m in self.members if m != self.bad]
        plans = self.pipe.run([["HMGET", plan_key(m), "version", "valid_until"] for m in good])
        scores = self.pipe.run([["ZSCORE", self.cadence, m] for m in good])
        self.assertEqual({p[0] for p in plans}, {"1"})
        self.assertEqual([int(p[1]) for p in plans],
                         [expected_valid_until(m, T0 + 60) for m in good])
        # Each member joined the cadence at its own phase (the slices sorted
        # by phase kept members and phases together).
        self.assertEqual([float(x) for x in scores], [phase(m) for m in good])
        # Only the failed member is still due; the ghosts are gone.
        self.assertEqual(self.redis.command("ZRANGE", self.key, 0, -1, "WITHSCORES"),
                         [self.bad, str(T0)])

        # It fails again, nobody else gets a second plan.
        again = self.run_pass(T0 + 120)
        self.assertEqual((again["planned"], again["failed"], again["removed"]), (0, 1, 0))
        self.pipe.run([["DEL", plan_key(self.bad)]])
        last = self.run_pass(T0 + 180)
        self.assertEqual((last["planned"], last["failed"]), (1, 0))
        self.assertEqual(self.redis.command("HGET", plan_key(self.bad), "version"), "1")
        self.assertEqual(self.redis.command("ZCARD", self.key), 0)
        self.assertEqual(self.redis.command("ZCARD", self.cadence), self.MEMBERS)

    def test_the_cadence_walk_replans_each_phase_once(self):
        self.pipe.run([["DEL", plan_key(self.bad)]])
        t0 = T0 + 60
        self.assertEqual(self.run_pass(t0)["planned"], self.MEMBERS)
        # A whole cadence later: every member once, in two chunks.
        t1 = t0 + WEEK
        r = self.run_pass(t1)
        self.assertEqual((r["planned"], r["kept"], r["failed"]), (self.MEMBERS, 0, 0))
        self.assertEqual(set(self.versions()), {"2"})
        # Four days on: exactly the members whose phase came round.
        t2 = t1 + 4 * DAY
        due = {m for m in self.members if in_window(phase(m), t1, t2)}
        self.assertGreater(len(due), self.MEMBERS * 0.5)  # more than a chunk
        r = self.run_pass(t2)
        self.assertEqual((r["planned"], r["kept"]), (len(due), 0))
        self.assertEqual(self.versions(), ["3" if m in due else "2" for m in self.members])
        # 3.25 days on, the window reaches the phases planned at t2 again
        # (for its last quarter day): those plans are not half a cadence
        # old, so they are kept, not planned twice. (The window of t2 above
        # wrapped past the end of a cycle: T0 is 5.9 days into one.)
        t3 = t2 + 3 * DAY + 6 * 3600
        r = self.run_pass(t3)
        rest = {m for m in self.members if in_window(phase(m), t2, t3)}
        self.assertGreater(len(rest & due), 0)
        self.assertEqual((r["planned"], r["kept"]), (len(rest - due), len(rest & due)))
        self.assertEqual(self.versions(), ["3" if m in due or m in rest else "2"
                                           for m in self.members])
        # No pass moved the schedule in Redis: the same phases throughout.
        self.assertEqual(self.redis.command("ZCARD", self.cadence), self.MEMBERS)

    def test_a_plan_ttl_is_set_ahead_and_left_while_it_is_long_enough(self):
        self.pipe.run([["DEL", plan_key(self.bad)]])
        self.redis.command("CONFIG", "RESETSTAT")
        t0 = T0 + 60
        self.assertEqual(self.run_pass(t0)["planned"], self.MEMBERS)
        expires = [int(e) for e in self.pipe.run([["HGET", plan_key(m), "expires_at"]
                                                  for m in self.members])]
        ttls = self.pipe.run([["TTL", plan_key(m)] for m in self.members])
        now = time.time()
        for m, e, ttl in zip(self.members, expires, ttls):
            # valid_until + one interval, and two more ahead.
            want = expected_valid_until(m, t0) - t0 + 3 * WEEK
            self.assertAlmostEqual(e - now, want, delta=60)
            self.assertAlmostEqual(ttl, want, delta=60)
        self.assertEqual(self.command_calls("expire"), self.MEMBERS)
        # A cadence later (in as_of; seconds later on the wall clock) every
        # member is planned again, and no TTL needs setting.
        r = self.run_pass(t0 + WEEK)
        self.assertEqual(r["planned"], self.MEMBERS)
        self.assertEqual(self.command_calls("expire"), self.MEMBERS)
        self.assertEqual(self.pipe.run([["HGET", plan_key(m), "expires_at"]
                                        for m in self.members]), [str(e) for e in expires])
        # A stored TTL that is too short by the plan's own account is set again.
        short = self.members[:10]
        self.pipe.run([["HSET", plan_key(m), "expires_at", str(int(now) + 100)] for m in short])
        r = self.run_pass(t0 + 2 * WEEK)
        self.assertEqual(r["planned"], self.MEMBERS)
        self.assertEqual(self.command_calls("expire"), self.MEMBERS + len(short))
        for m in short:
            self.assertGreater(self.redis.command("TTL", plan_key(m)), 3 * WEEK)
            self.assertGreater(int(self.redis.command("HGET", plan_key(m), "expires_at")),
                               now + 3 * WEEK)

    def command_calls(self, name):
        for line in self.redis.command("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_%s:" % name):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def test_while_decides_run_the_walks_go_in_small_steps_to_the_same_result(self):
        # Chunk queries of at most 256 members (PLANNER_BUSY_CHUNK), groups
        # and schedule slices of 16, each slice answered before the next:
        # 5,600 due entries take 22 chunk queries instead of 2.
        far = T0 + 100 * WEEK  # the decides' members join, due long after
        with BusyDecides(self, far, avoid=0):
            r = self.run_pass(T0 + 60)
        self.assertEqual((r["planned"], r["failed"], r["removed"]),
                         (self.MEMBERS - 1, 1, self.GHOSTS))
        self.assertGreaterEqual(r["chunks_small"], 10)
        good = [m for m in self.members if m != self.bad]
        self.assertEqual({p[0] for p in self.pipe.run([["HGET", plan_key(m), "version"]
                                                       for m in good])}, {"1"})
        self.assertEqual([float(x) for x in self.pipe.run([["ZSCORE", self.cadence, m]
                                                           for m in good])],
                         [phase(m) for m in good])
        self.assertEqual(self.redis.command("ZRANGE", self.key, 0, -1, "WITHSCORES"),
                         [self.bad, str(T0)])
        # The cadence walk, every member on one score, continues across
        # small chunks too.
        self.pipe.run([["DEL", plan_key(self.bad)]])
        self.pipe.run([["ZADD", self.cadence, "0.5", m] for m in good])
        with BusyDecides(self, far, avoid=0):
            r = self.run_pass(T0 + 60 + WEEK)
        self.assertEqual((r["planned"], r["kept"], r["failed"]), (self.MEMBERS, 0, 0))
        self.assertGreaterEqual(r["chunks_small"], 10)
        # (The bad member, its plan deleted, was still due: a first plan.)
        self.assertEqual(self.versions(), ["1" if m == self.bad else "2" for m in self.members])
        self.assertEqual(self.redis.command("ZCARD", self.cadence), self.MEMBERS)
        # With the fast path quiet (for longer than the 100 ms it lingers),
        # full steps again: two chunks of 2048 and one of 904.
        time.sleep(0.3)
        r = self.run_pass(T0 + 60 + 2 * WEEK)
        self.assertEqual((r["planned"], r["chunks_small"]), (self.MEMBERS, 0))
        self.assertLessEqual(r["chunks"], 4)

    def test_members_of_one_phase_are_walked_across_chunks(self):
        self.pipe.run([["DEL", plan_key(self.bad)]])
        self.assertEqual(self.run_pass(T0 + 60)["planned"], self.MEMBERS)
        # Every member on one score (a phase written by something else):
        # the second chunk continues at that score, past the first 4096.
        self.pipe.run([["ZADD", self.cadence, "0.5", m] for m in self.members])
        r = self.run_pass(T0 + 60 + WEEK)
        self.assertEqual((r["planned"], r["kept"], r["failed"]), (self.MEMBERS, 0, 0))
        self.assertEqual(set(self.versions()), {"2"})

    def test_a_run_of_one_score_across_the_chunk_boundary_is_walked_once(self):
        # Groups of 30 members per score: the first chunk (4096 members)
        # ends 16 members into a group, more than the 8 whose scores the
        # walk asks for first, so it asks again for more to find where that
        # score starts; the next chunk skips exactly those 16.
        self.pipe.run([["DEL", plan_key(self.bad)]])
        self.assertEqual(self.run_pass(T0 + 60)["planned"], self.MEMBERS)
        self.pipe.run([["ZADD", self.cadence, "%.6f" % (0.1 + (i // 30) * 1e-4), m]
                       for i, m in enumerate(self.members)])
        self.redis.command("CONFIG", "RESETSTAT")
        r = self.run_pass(T0 + 60 + WEEK)
        self.assertEqual((r["planned"], r["kept"], r["failed"]), (self.MEMBERS, 0, 0))
        self.assertEqual(set(self.versions()), {"2"})
        self.assertEqual(r["chunks"], 2 + 1)  # the cadence's two, the empty due set's one


class TwoInstancesTest(unittest.TestCase):
    """Two notifd on one Redis share a pass: each member planned once."""

    COUNT = 10000

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.pipe = RedisPipe(self.redis)
        self.addCleanup(self.pipe.close)

    def start(self, overrides):
        n = Notifd(self.redis.port, overrides)
        self.addCleanup(n.close)
        n.start()
        return n

    def versions(self):
        ms = [member(i) for i in range(self.COUNT)]
        return self.pipe.run([["HGET", plan_key(m), "version"] for m in ms])

    def test_concurrent_planner_runs_plan_each_member_exactly_once(self):
        self.pipe.load_members(self.COUNT, due=T0)
        a = self.start({"planner": {"enabled": False, "batch_size": 100}})
        b = self.start({"planner": {"enabled": False, "batch_size": 100}})
        ca, cb = a.client(), b.client()
        self.addCleanup(ca.close)
        self.addCleanup(cb.close)
        ca.send({"op": "planner_run", "ts": T0 + 1})
        cb.send({"op": "planner_run", "ts": T0 + 1})
        ra, rb = ca.read_line(), cb.read_line()
        self.assertTrue(ra["ok"], ra)
        self.assertTrue(rb["ok"], rb)
        self.assertEqual(ra["planned"] + rb["planned"], self.COUNT, (ra, rb))
        self.assertEqual(ra["failed"] + rb["failed"], 0)
        for r in (ra, rb):
            self.assertLessEqual(r["partitions"] + r["partitions_skipped"], 64)
        self.assertEqual(set(self.versions()), {"1"})
        # Every lease was released.
        self.assertEqual(self.pipe.run([["EXISTS"] + ["%slease:%d" % (PREFIX, n)
                                                      for n in range(64)]])[0], 0)

    def test_timer_passes_of_two_instances_plan_each_member_exactly_once(self):
        now = int(time.time())
        self.pipe.load_members(self.COUNT, due=now - 60, start=0)
        nodes = [self.start({"planner": {"enabled": True, "poll_s": 1, "batch_size": 128}})
                 for _ in range(2)]

        def all_planned():
            return all(v is not None for v in self.versions())
        wait_for(all_planned, timeout=60, interval=0.2, what="every member planned")
        # Two more passes on each instance after that: nothing is due again
        # until the next cadence, so no member gets a second plan.
        seen = [n.log_text().count('msg="planner pass"') for n in nodes]
        for n, k in zip(nodes, seen):
            wait_for(lambda: n.log_text().count('msg="planner pass"') >= k + 2,
                     timeout=30, what="two more timer passes")
        self.assertEqual(set(self.versions()), {"1"})
        planned = 0
        for n in nodes:
            for line in n.log_text().splitlines():
                if 'msg="planner pass"' in line:
                    planned += int(line.split(" planned=")[1].split()[0])
        self.assertEqual(planned, self.COUNT)

if __name__ == "__main__":
    unittest.main()
