"""The Lua scripts of src/store/lua/, loaded from the source tree into a real
redis-server (SCRIPT LOAD) and run with EVALSHA on crafted keys, the
arguments laid out as their callers lay them out (each .lua file's header
lists KEYS[i] and ARGV[i]: decide_record.c's decide_send_record,
feedback.c's feedback_send, planner.c's planner_write_args_build). Also: the helpers
decide_record.lua and feedback.lua both carry are the same text, and the
real notifd loads exactly these files (tests/unit/test_lua_scripts.c checks
the embedded text byte for byte).
"""
import hashlib
import os
import re
import unittest

from harness import ROOT, NotifdTestCase, Redis

LUA_DIR = os.path.join(ROOT, "src", "store", "lua")
SCRIPTS = ("decide_record", "feedback", "plan_write")

T0 = 1_900_000_000
HL = 14 * 86400            # half-life, s
WEEK_TTL = 21 * 86400
MEMBER_TTL = 400 * 86400
IDEM_TTL = 7 * 86400
DEDUP = 30 * 86400
M = "{m1}"
K_IDEM = "t:idem:" + M + ":"
K_WEEK = "t:week:" + M
K_SENT = "t:sent:" + M
K_MEMBER = "t:member:" + M
K_OPTOUT = "t:optout:" + M
K_OPTOUT = "t:optout:" + M
K_LIMIT = "t:limit:push"
K_EVT = "t:evt:" + M + ":"
K_PLAN = "t:plan:" + M
F_SENT, F_OPP, F_SENDS = "push:2900:sent", "push:2900:opp", "push:sends"


def script_text(name):
    with open(os.path.join(LUA_DIR, name + ".lua"), "rb") as f:
        return f.read()


class LuaScriptsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis().start()
        cls.sha = {}
        for name in SCRIPTS:
            text = script_text(name)
            sha = cls.redis.command("SCRIPT", "LOAD", text)
            assert sha == hashlib.sha1(text).hexdigest(), name
            cls.sha[name] = sha

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()

    def setUp(self):
        self.redis.command("FLUSHALL")

    def r(self, *args):
        return self.redis.command(*args)

    def run_script(self, name, keys, argv):
        return self.r("EVALSHA", self.sha[name], len(keys), *keys, *argv)

    def hgetall(self, key):
        flat = self.r("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2]))

    # ---- decide_record: ARGV as decide_send_record() (src/fast/decide_record.c) --

    def record(self, opp, msg, ts=T0, cap=2, window=DEDUP, resp="R", capped="C", sends_field="",
               rolling_cap=-1, counted=True, stale=(), sets=(), limiters=(), limits="",
               limited="L", raw=False, sent_field=F_SENT):
        keys = [K_IDEM + opp, K_WEEK, K_SENT, K_MEMBER, K_OPTOUT, *limiters]
        argv = [ts, sent_field, F_OPP if counted else "", cap, msg, IDEM_TTL, window, resp, capped,
                HL, WEEK_TTL, MEMBER_TTL, sends_field, rolling_cap, "push_sent",
                "push_last_sent", "push", limits, limited if limits else "", len(stale),
                *stale, *sets]
        out = self.run_script("decide_record", keys, argv)
        return out if raw else self.outcome(out)

    def outcome(self, out):
        """A record's outcome; the week hash's version it reports (every
        outcome that writes reports one) is kept in self.version."""
        if out and out[0] in ("sent", "cap", "skip"):
            self.assertEqual(len(out), 2, out)
            self.assertIsInstance(out[1], int, out)
            self.version = out[1]
            return out[:1]
        return out

    def test_decide_record_sends_until_the_weekly_cap(self):
        self.assertEqual(self.record("o1", "a", resp="R1"), ["sent"])
        self.assertEqual(self.record("o2", "b", ts=T0 + 60, resp="R2"), ["sent"])
        self.assertEqual(self.record("o3", "c", ts=T0 + 120, resp="R3", capped="C3"), ["cap"])
        week = self.hgetall(K_WEEK)
        self.assertEqual(week[F_SENT], "2")
        self.assertEqual(week[F_OPP], "3")
        # Each opportunity's stored answer: as decided, or as capped.
        self.assertEqual(self.r("GET", K_IDEM + "o1"), "R1")
        self.assertEqual(self.r("GET", K_IDEM + "o3"), "C3")
        self.assertGreater(self.r("TTL", K_IDEM + "o3"), IDEM_TTL - 10)
        # Only the sends are in the sent set and the member's counts.
        self.assertEqual(self.r("ZRANGE", K_SENT, 0, -1, "WITHSCORES"),
                         ["a", str(T0), "b", str(T0 + 60)])
        member = self.hgetall(K_MEMBER)
        self.assertEqual(member["updated_at"], str(T0))
        self.assertEqual(member["first_seen"], str(T0))
        self.assertEqual(member["push_last_sent"], str(T0 + 60))
        # The weight is written with %.9g: 9 significant digits.
        self.assertAlmostEqual(float(member["push_sent"]), 1 + 2 ** (60 / HL), places=7)
        self.assertGreater(self.r("TTL", K_MEMBER), MEMBER_TTL - 10)
        self.assertGreater(self.r("TTL", K_WEEK), WEEK_TTL - 10)
        self.assertGreater(self.r("TTL", K_SENT), DEDUP - 10)

    def test_decide_record_renews_ttls_and_trims_with_a_weeks_first_send(self):
        # Two calls fewer per send: the sent set is trimmed and its TTL and
        # the member hash's renewed with the channel's first send of a week
        # (and every send outside the plan), and the sent set's TTL is then
        # a week longer than the dedup window, so it outlives every send of
        # that week by at least the window.
        self.r("ZADD", K_SENT, T0 - DEDUP - 1, "old")
        self.assertEqual(self.record("o1", "a", cap=9), ["sent"])
        self.assertGreater(self.r("TTL", K_SENT), DEDUP + 7 * 86400 - 10)
        self.assertGreater(self.r("TTL", K_MEMBER), MEMBER_TTL - 10)
        self.assertEqual(self.r("ZRANGE", K_SENT, 0, -1), ["a"])
        # A later send of the same week renews and trims nothing.
        self.r("EXPIRE", K_SENT, 1000)
        self.r("EXPIRE", K_MEMBER, 1000)
        self.r("ZADD", K_SENT, T0 - DEDUP - 1, "old")
        self.assertEqual(self.record("o2", "b", ts=T0 + 60, cap=9), ["sent"])
        self.assertLessEqual(self.r("TTL", K_SENT), 1000)
        self.assertLessEqual(self.r("TTL", K_MEMBER), 1000)
        self.assertEqual(self.r("ZCARD", K_SENT), 3)
        # The next week's first send does both again ...
        self.assertEqual(self.record("o3", "c", ts=T0 + 120, cap=9,
                                     sent_field="push:2901:sent"), ["sent"])
        self.assertGreater(self.r("TTL", K_SENT), DEDUP + 7 * 86400 - 10)
        self.assertGreater(self.r("TTL", K_MEMBER), MEMBER_TTL - 10)
        self.assertEqual(self.r("ZRANGE", K_SENT, 0, -1), ["a", "b", "c"])
        # ... and so does every send outside the plan (it counts in no week).
        self.r("EXPIRE", K_SENT, 1000)
        self.r("EXPIRE", K_MEMBER, 1000)
        self.assertEqual(self.record("o4", "d", ts=T0 + 180, cap=-1, sent_field=""), ["sent"])
        self.assertGreater(self.r("TTL", K_SENT), DEDUP + 7 * 86400 - 10)
        self.assertGreater(self.r("TTL", K_MEMBER), MEMBER_TTL - 10)

    def test_decide_record_refuses_a_send_after_an_opt_out_and_touches_nothing(self):
        # An opt-out stored after notifd read (or cached) the member's state
        # holds: the send is refused inside the script, nothing is recorded,
        # and notifd decides again on a fresh read.
        self.r("HSET", K_OPTOUT, "push", "1")
        self.assertEqual(self.record("o1", "a", resp="R1"), ["unsubscribed"])
        self.assertIsNone(self.r("GET", K_IDEM + "o1"))
        self.assertEqual(self.hgetall(K_WEEK), {})
        self.assertEqual(self.r("ZCARD", K_SENT), 0)
        # Another channel's opt-out, or a resubscribe, does not stop it.
        self.r("HSET", K_OPTOUT, "push", "0", "email", "1")
        self.assertEqual(self.record("o1", "a", resp="R1"), ["sent"])
        # A retry of a recorded opportunity still gets its stored answer.
        self.r("HSET", K_OPTOUT, "push", "1")
        self.assertEqual(self.record("o1", "a", resp="other"), ["dup", "R1"])
        self.assertEqual(self.record("o1", "b", window=0, resp="other"), ["dup", "R1"])

    def test_decide_record_answers_a_retry_with_the_stored_answer(self):
        self.assertEqual(self.record("o1", "a", resp="R1"), ["sent"])
        before = (self.hgetall(K_WEEK), self.hgetall(K_MEMBER))
        self.assertEqual(self.record("o1", "a", ts=T0 + 5, resp="other"), ["dup", "R1"])
        # Without dedup the retry meets the idempotency key's SET NX GET.
        self.assertEqual(self.record("o1", "b", ts=T0 + 5, window=0, resp="other"),
                         ["dup", "R1"])
        self.assertEqual((self.hgetall(K_WEEK), self.hgetall(K_MEMBER)), before)

    def test_decide_record_rechecks_dedup(self):
        self.assertEqual(self.record("o1", "a"), ["sent"])
        # Another opportunity picked message a, sent within the window.
        self.assertEqual(self.record("o2", "a", ts=T0 + 3600, cap=10), ["sent_already"])
        self.assertIsNone(self.r("GET", K_IDEM + "o2"))
        self.assertEqual(self.hgetall(K_WEEK)[F_OPP], "1")
        # Past the window it may be sent again; the sent set forgets old sends.
        ts = T0 + DEDUP + 1
        self.assertEqual(self.record("o3", "a", ts=ts, cap=10), ["sent"])
        self.assertEqual(self.r("ZSCORE", K_SENT, "a"), str(ts))

    def test_decide_record_enforces_the_rolling_cap(self):
        old, recent = T0 - 8 * 86400, T0 - 3600
        self.r("HSET", K_WEEK, F_SENDS, "%d,%d" % (recent, old))
        self.assertEqual(self.record("o1", "a", sends_field=F_SENDS, rolling_cap=2, cap=10),
                         ["sent"])
        # ts first, then the stored times still within 7 days.
        self.assertEqual(self.r("HGET", K_WEEK, F_SENDS), "%d,%d" % (T0, recent))
        self.assertEqual(self.record("o2", "b", ts=T0 + 1, sends_field=F_SENDS,
                                     rolling_cap=2, cap=10), ["cap"])
        self.assertEqual(self.r("HGET", K_WEEK, F_SENDS), "%d,%d" % (T0, recent))
        self.assertEqual(self.hgetall(K_WEEK)[F_SENT], "1")

    def test_decide_record_deletes_stale_fields_and_sets_pairs(self):
        self.r("HSET", K_WEEK, "push:2898:opp", "4", "push:2898:sent", "1", "keep", "x")
        self.assertEqual(self.record("o1", "a", stale=["push:2898:opp", "push:2898:sent"],
                                     sets=["push:ewma", "0.25", "push:first_week", "2900"]),
                         ["sent"])
        self.assertEqual(self.hgetall(K_WEEK), {"keep": "x", F_OPP: "1", F_SENT: "1",
                                                "push:ewma": "0.25", "push:first_week": "2900",
                                                "v": "1"})

    def test_decide_record_decays_the_members_sends(self):
        # Two half-lives since updated_at: every count is brought to ts.
        self.r("HSET", K_MEMBER, "updated_at", T0 - 2 * HL, "push_sent", "4",
               "email_open", "8", "last_open", T0 - HL)
        self.assertEqual(self.record("o1", "a", counted=False), ["sent"])
        member = self.hgetall(K_MEMBER)
        self.assertEqual(member["updated_at"], str(T0))
        self.assertEqual(member["push_sent"], "2")
        self.assertEqual(member["email_open"], "2")
        self.assertEqual(member["last_open"], str(T0 - HL))
        # A stored time from another era gives way to the present.
        self.r("HSET", K_MEMBER, "updated_at", T0 + 100 * HL, "push_last_sent", T0 + 100 * HL)
        self.assertEqual(self.record("o2", "b", ts=T0 + 10, counted=False), ["sent"])
        member = self.hgetall(K_MEMBER)
        self.assertEqual(member["updated_at"], str(T0 + 10))
        self.assertEqual(member["push_last_sent"], str(T0 + 10))
        self.assertEqual(member["push_sent"], "3")

    # ---- decide_record: global rate limits (a GCRA on Redis's clock) --------

    def limited(self, opp, spec, keys=(K_LIMIT,), **kw):
        """The raw reply of a send that meets limiters `keys` ("T b s" each)."""
        return self.record(opp, opp, window=kw.pop("window", DEDUP), cap=1000,
                           limiters=keys, limits=spec, limited='{"r":1,"retry_at":',
                           raw=True, **kw)

    def redis_now(self):
        s, us = self.r("TIME")
        return int(s) + int(us) / 1e6

    def test_gcra_allows_burst_at_once_then_one_per_emission_interval(self):
        # 1 per 10 s, burst 3: three at once, then limited until 10 s after
        # the first's TAT; the limited answer ends with retry_at.
        spec = "open 10000000 3 0"
        now = self.redis_now()
        outs = [self.limited("o%d" % i, spec) for i in range(5)]
        self.assertEqual([o[0] for o in outs], ["sent"] * 3 + ["rate_limited"] * 2, outs)
        self.assertEqual([o[2] for o in outs], ["a", "a", "a", "l", "l"])
        tat = float(self.r("GET", K_LIMIT))
        self.assertAlmostEqual(tat / 1e6, now + 30, delta=2)
        # TAT + T - b*T = now + 10: retry_at is that, rounded up.
        answer = outs[3][3]
        retry = int(answer[len('{"r":1,"retry_at":'):-1])
        self.assertTrue(answer.endswith("}"), answer)
        self.assertAlmostEqual(retry, now + 10, delta=2)
        # The limited send: its answer stored, no send counted, the
        # opportunity counted, the version moved.
        self.assertEqual(self.r("GET", K_IDEM + "o3"), answer)
        self.assertIsNone(self.r("ZSCORE", K_SENT, "o3"))
        self.assertEqual(self.hgetall(K_WEEK)[F_SENT], "3")
        self.assertEqual(self.hgetall(K_WEEK)[F_OPP], "5")
        self.assertEqual(outs[4][1], 5)
        # Its retry: the stored answer, the limiter untouched.
        self.assertEqual(self.limited("o3", spec), ["dup", answer])
        self.assertEqual(self.limited("o3", spec, window=0), ["dup", answer])
        self.assertEqual(float(self.r("GET", K_LIMIT)), tat)
        # The key expires when its TAT has passed (idle is the empty state).
        self.assertAlmostEqual(self.r("PTTL", K_LIMIT) / 1000, 31, delta=2)

    def test_gcra_refills_at_the_rate_after_idle(self):
        # A TAT in the past is idle: the burst is whole again. A TAT 0.5 T
        # ahead with burst 2 allows one more (0.5 + 1 - 2 <= 0), not two
        # (1.5 + 1 - 2 > 0).
        T = 1000000
        now = self.redis_now()
        self.r("SET", K_LIMIT, "%d" % ((now - 100) * 1e6))
        outs = [self.limited("i%d" % i, "open %d 2 0" % T)[0] for i in range(3)]
        self.assertEqual(outs, ["sent", "sent", "rate_limited"])
        self.r("SET", K_LIMIT, "%d" % (now * 1e6 + 0.5 * T))
        outs = [self.limited("j%d" % i, "open %d 2 0" % T)[0] for i in range(2)]
        self.assertEqual(outs, ["sent", "rate_limited"])

    def test_gcra_limiters_together_and_in_shadow(self):
        K2 = K_LIMIT + ":promo"
        # The tag's limit (burst 1) stops the second: the channel's limiter
        # does not advance for a stopped send.
        spec = "open 1000000000 5 0 1000000000 1 0"
        outs = [self.limited("t%d" % i, spec, keys=(K_LIMIT, K2)) for i in range(3)]
        self.assertEqual([(o[0], o[2]) for o in outs],
                         [("sent", "aa"), ("rate_limited", "al"), ("rate_limited", "al")])
        now = self.redis_now()
        self.assertAlmostEqual(float(self.r("GET", K_LIMIT)) / 1e6, now + 1000, delta=2)
        # In shadow the tag limiter counts ("s") and stops nothing; it does
        # not advance while it would stop.
        self.r("DEL", K_LIMIT, K2)
        spec = "open 1000000000 5 0 1000000000 1 1"
        outs = [self.limited("s%d" % i, spec, keys=(K_LIMIT, K2)) for i in range(3)]
        self.assertEqual([(o[0], o[2]) for o in outs], [("sent", "aa"), ("sent", "as"),
                                                        ("sent", "as")])
        self.assertAlmostEqual(float(self.r("GET", K2)) / 1e6, now + 1000, delta=2)
        self.assertAlmostEqual(float(self.r("GET", K_LIMIT)) / 1e6, now + 3000, delta=2)

    def test_gcra_treats_what_it_reads_as_hostile(self):
        spec = "open 1000000 1 0"
        for i, junk in enumerate(["x", "nan", "-inf", "inf", "-1", "1e300", " 12 3"]):
            self.r("SET", K_LIMIT, junk)
            out = self.limited("h%d" % i, spec)
            self.assertEqual(out[0], "sent", (junk, out))
            self.assertEqual(out[2], "r", (junk, out))
            self.assertAlmostEqual(float(self.r("GET", K_LIMIT)) / 1e6, self.redis_now() + 1,
                                   delta=2)
        # A key of another type cannot be read: open sends, closed stops
        # with a retry_at a second away; the key is left as it is.
        self.r("DEL", K_LIMIT)
        self.r("RPUSH", K_LIMIT, "a")
        self.assertEqual(self.limited("w1", spec)[:3:2], ["sent", "o"])
        out = self.limited("w2", "closed 1000000 1 0")
        self.assertEqual(out[:3:2], ["rate_limited", "c"])
        self.assertAlmostEqual(int(out[3][len('{"r":1,"retry_at":'):-1]),
                               self.redis_now() + 1, delta=2)
        # A shadow limiter never stops a send, even closed.
        self.assertEqual(self.limited("w3", "closed 1000000 1 1")[:3:2], ["sent", "c"])
        self.assertEqual(self.r("TYPE", K_LIMIT), "list")

    def test_gcra_is_not_consulted_when_a_cap_stops_the_send(self):
        self.r("SET", K_LIMIT, "garbage")
        out = self.record("c1", "a", cap=0, limiters=(K_LIMIT,), limits="open 1000000 1 0",
                          raw=True)
        self.assertEqual(out[0], "cap")
        self.assertEqual(len(out), 2, out)
        self.assertEqual(self.r("GET", K_LIMIT), "garbage")

    def test_every_record_that_writes_adds_one_to_the_week_version(self):
        # The member cache's staleness check: a notifd that saw version v
        # and gets v + 1 back knows nobody else wrote the member between.
        # (Decisions not to send add theirs with HINCRBY: decide_skip.c.)
        self.assertEqual(self.record("o2", "a"), ["sent"])
        self.assertEqual(self.version, 1)
        self.assertEqual(self.hgetall(K_WEEK)["v"], "1")
        # Nothing written, no version: a retry, a message sent already.
        self.assertEqual(self.record("o2", "a"), ["dup", "R"])
        self.assertEqual(self.record("o9", "a", ts=T0 + 1), ["sent_already"])
        self.assertEqual(self.hgetall(K_WEEK)["v"], "1")
        # A cap writes (the opportunity, the stored answer): a version.
        self.assertEqual(self.record("o4", "b", cap=1), ["cap"])
        self.assertEqual(self.version, 2)
        # A version that is not a counter starts again rather than failing.
        self.r("HSET", K_WEEK, "v", "not a number")
        self.assertEqual(self.record("o5", "c", ts=T0 + 9 * 86400), ["sent"])
        self.assertEqual(self.version, 1)
        self.r("HSET", K_WEEK, "v", "1000000000")
        self.assertEqual(self.record("o6", "d", ts=T0 + 18 * 86400, cap=5), ["sent"])
        self.assertEqual(self.version, 1)

    # ---- feedback: ARGV as feedback_send() in src/fast/feedback.c builds it ------

    def feedback(self, event, ts=T0, channel="push", tz="", event_id=None):
        keys = [K_MEMBER, K_OPTOUT] + ([K_EVT + event_id] if event_id else [])
        return self.run_script("feedback", keys,
                               [ts, channel, event, HL, 3600, MEMBER_TTL, tz, 86400])

    def test_feedback_applies_events(self):
        self.assertEqual(self.feedback("open", tz="120"), 1)  # the member's first event
        self.assertEqual(self.feedback("delivered", ts=T0 + 1), 0)
        self.assertEqual(self.feedback("visit", ts=T0 + 60), 0)         # within the window
        self.assertEqual(self.feedback("visit", ts=T0 + 7200, channel=""), 0)  # organic
        member = self.hgetall(K_MEMBER)
        self.assertEqual(member["first_seen"], str(T0))
        self.assertEqual(member["updated_at"], str(T0))
        self.assertEqual(member["push_open"], "1")
        self.assertEqual(member["push_last_open"], str(T0))
        self.assertEqual(member["last_open"], str(T0))
        self.assertEqual(member["last_visit"], str(T0 + 7200))
        self.assertEqual(member["tz_offset_min"], "120")
        self.assertAlmostEqual(float(member["push_delivered"]), 2 ** (1 / HL), places=8)
        self.assertAlmostEqual(float(member["visit_attr"]), 2 ** (60 / HL), places=8)
        self.assertAlmostEqual(float(member["visit_org"]), 2 ** (7200 / HL), places=8)
        self.assertGreater(self.r("TTL", K_MEMBER), MEMBER_TTL - 10)

    def test_feedback_unsubscribe_and_resubscribe(self):
        self.assertEqual(self.feedback("unsubscribe"), 1)
        self.assertEqual(self.hgetall(K_OPTOUT), {"push": "1"})
        self.assertEqual(self.r("TTL", K_OPTOUT), -1)
        member = self.hgetall(K_MEMBER)
        self.assertEqual((member["push_unsub"], member["push_unsub_n"]), ("1", "1"))
        self.assertEqual(self.feedback("resubscribe", ts=T0 + 10), 0)
        self.assertEqual(self.r("EXISTS", K_OPTOUT), 0)
        self.assertEqual(self.r("HGET", K_MEMBER, "push_unsub"), "0")

    def test_feedback_counts_an_event_id_once(self):
        self.assertEqual(self.feedback("open", event_id="e1"), 1)
        self.assertEqual(self.feedback("open", ts=T0 + 5, event_id="e1"), -1)
        self.assertEqual(self.feedback("open", event_id="e2"), 0)
        self.assertEqual(self.r("HGET", K_MEMBER, "push_open"), "2")
        self.assertGreater(self.r("TTL", K_EVT + "e1"), 86400 - 10)

    def test_feedback_replaces_a_count_that_is_no_count(self):
        self.r("HSET", K_MEMBER, "updated_at", T0, "push_open", "garbage")
        self.assertEqual(self.feedback("open"), 0)
        self.assertEqual(self.r("HGET", K_MEMBER, "push_open"), "1")

    # ---- plan_write: ARGV as planner_write_args_build() in src/slow/planner.c ----

    def test_plan_write_writes_a_plan_and_never_repeats_a_version(self):
        self.r("HSET", K_PLAN, "stale_per_week", "3")
        self.assertEqual(self.run_script("plan_write", [K_PLAN],
                                         [5, 3600, "action", "1", "source", "planner"]), 5)
        self.assertEqual(self.hgetall(K_PLAN), {"version": "5", "action": "1",
                                                "source": "planner"})
        self.assertGreater(self.r("TTL", K_PLAN), 3590)
        # A writer with an older version still writes a newer one.
        self.assertEqual(self.run_script("plan_write", [K_PLAN], [3, 60, "action", "2"]), 6)
        self.assertEqual(self.hgetall(K_PLAN), {"version": "6", "action": "2"})
        self.assertLessEqual(self.r("TTL", K_PLAN), 60)


def helpers(name):
    """The top-level `local function` definitions of a script, by name."""
    out = {}
    for m in re.finditer(r"^local function (\w+)\(.*?^end$", script_text(name).decode(),
                         re.M | re.S):
        out[m.group(1)] = m.group(0)
    return out


class SharedHelpersTest(unittest.TestCase):
    def test_decide_record_and_feedback_share_their_helpers_verbatim(self):
        record, feedback = helpers("decide_record"), helpers("feedback")
        shared = sorted(set(record) & set(feedback))
        self.assertEqual(shared, ["from_future", "is_count", "rescale", "stored_count",
                                  "stored_time"])
        for name in shared:
            self.assertEqual(record[name], feedback[name], name)



class NotifdLoadsTheFilesTest(NotifdTestCase):
    def test_notifd_loads_exactly_these_scripts(self):
        # The store loads every registered script on connecting, before it
        # reports Redis ready.
        shas = [hashlib.sha1(script_text(n)).hexdigest() for n in SCRIPTS]
        self.assertEqual(self.redis.command("SCRIPT", "EXISTS", *shas), [1] * len(shas))


if __name__ == "__main__":
    unittest.main()
