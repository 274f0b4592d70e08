"""Plan delivery: what a producer gets from a written plan, strategy by
strategy and scenario by scenario, against the real binary and a real Redis
in virtual time.

Each scenario writes a plan into `P plan:{M}` for every member (as another
system would), then plays weeks of push opportunities through notifd and
counts the sends per member and week. `run()` returns the counts;
`check()` holds them to the promises README.md states for every strategy:

- from the second week on, the mean sends per member and week lie within
  +-10% of the plan, and the median member within +-1 send;
- where opportunities are spread evenly over the week, the first half of
  the week (Monday to Thursday noon) carries 30-70% of its sends;
- the hard cap is never exceeded in any member's week.

Used by tests/integration/test_plan_delivery.py (the table-driven test) and
scripts/plan_delivery.sh (prints the realised/plan table).
"""
import calendar
import random
import statistics
import threading

WEEK = 7 * 86400
DAY = 86400
# A Monday 00:00 UTC (members are in UTC: weeks are ISO weeks).
MONDAY = calendar.timegm((2026, 1, 5, 0, 0, 0))
HALF_WEEK = 3 * DAY + DAY // 2  # Monday 00:00 to Thursday 12:00

STRATEGIES = ("uniform", "budget", "quality")


class Scenario:
    """One world: who is offered what, when, and which plan is written."""

    name = ""
    weeks = 3
    per_week = 5.0
    # Weeks (0-based) whose counts are held to the plan.
    measured_from = 1
    # Whether the first half of the week is checked for 30-70% of sends.
    spread_check = True

    def plan_for(self, member_index):
        return self.per_week

    def opportunity_times(self, week, day):
        """Seconds into the day of the day's opportunities (ascending)."""
        return [9 * 3600 + k * 4000 for k in range(10)]

    def candidates(self, member, week, day, k, rng):
        return [{"id": "w%dd%d-%d-%d" % (week, day, k, j), "score": round(rng.random(), 4)}
                for j in range(8)]

    def plan_rewrites(self):
        """[(ts, member_index -> per_week)]: plans rewritten mid-run."""
        return []

    def expected(self, member_index, week):
        """The plan a member's week is held to."""
        return self.plan_for(member_index)

    def cap_plan(self, member_index, week):
        """The plan whose cap bounds a member's week."""
        return self.expected(member_index, week)

    def extra_problems(self, counts, halves):
        return []

    def connections(self):
        return 1

    def members(self, default):
        return default


class Fresh(Scenario):
    name = "a_fresh"


class Repeated(Scenario):
    """The day's catalogue offered at every opportunity: once the best is
    sent, dedup removes it and the rest score 0.2."""
    name = "b_repeated"

    def candidates(self, member, week, day, k, rng):
        return [{"id": "w%dd%d-%d" % (week, day, j), "score": 0.9 if j == 0 else 0.2}
                for j in range(8)]


class Bunched(Scenario):
    """Ten opportunities a day, all between 18:00 and 20:00."""
    name = "c_bunched"

    def opportunity_times(self, week, day):
        return [18 * 3600 + k * 720 for k in range(10)]


class Fractional(Scenario):
    """Half the members on 0.5 a week, half on 1.5; the mean of a
    fractional plan needs many weeks to show, so more members and weeks."""
    name = "d_fractional"
    weeks = 5

    def plan_for(self, member_index):
        return 0.5 if member_index % 2 == 0 else 1.5

    def opportunity_times(self, week, day):
        return [9 * 3600 + k * 9000 for k in range(4)]

    def members(self, default):
        # A mean of 0.5 a week within 10% needs hundreds of member-weeks.
        return 10 * default


class RateChange(Scenario):
    """Ten opportunities a day for three weeks, twenty for three, then five:
    each change is held to the plan from its second week on."""
    name = "e_rate_change"
    weeks = 9

    def per_day(self, week):
        return 10 if week < 3 else (20 if week < 6 else 5)

    def opportunity_times(self, week, day):
        n = self.per_day(week)
        return [9 * 3600 + k * (36000 // n) for k in range(n)]

    def measured(self, week):
        # The first week learns the rate; each change gets a week to settle.
        return week not in (0, 3, 6)


class Rewrite(Scenario):
    """Plans rewritten on Thursday 12:00 of the second week: 5 -> 2 for half
    the members, 2 -> 5 for the other half. The weeks after it are held to
    the new plan; the rest of the rewrite week follows the new plan too (see
    extra_problems)."""
    name = "f_rewrite"
    weeks = 4
    REWRITE_AT = MONDAY + WEEK + HALF_WEEK

    def plan_for(self, member_index):
        return 5.0 if member_index % 2 == 0 else 2.0

    def new_plan(self, member_index):
        return 2.0 if member_index % 2 == 0 else 5.0

    def plan_rewrites(self):
        return [(self.REWRITE_AT, self.new_plan)]

    def measured(self, week):
        return week != 1

    def expected(self, member_index, week):
        return self.plan_for(member_index) if week == 0 else self.new_plan(member_index)

    def cap_plan(self, member_index, week):
        if week == 1:
            return max(self.plan_for(member_index), self.new_plan(member_index))
        return self.expected(member_index, week)

    def extra_problems(self, counts, halves):
        """After the rewrite, the members' sends in the rest of the week lie
        between the new plan's rate for the half week left and what the new
        plan leaves of the week's budget, give or take 20%: a strategy may
        spend the new week's plan at its rate or top the week up to it, but
        not keep to the old plan."""
        bad = []
        for old, new in ((5.0, 2.0), (2.0, 5.0)):
            idx = [i for i in range(len(counts)) if self.plan_for(i) == old]
            before = statistics.mean(halves[i][1] for i in idx)
            after = statistics.mean(counts[i][1] - halves[i][1] for i in idx)
            rate = new * 0.5
            budget = max(0.0, new - before)
            lo, hi = 0.8 * min(rate, budget), 1.2 * max(rate, budget) + 0.05
            if not lo <= after <= hi:
                bad.append("plan %g -> %g: %.2f sends after the rewrite, not in [%.2f, %.2f]"
                           % (old, new, after, lo, hi))
        return bad


class Pipelined(Scenario):
    """Three producer connections send one member's opportunities at once."""
    name = "g_pipelined"

    def connections(self):
        return 3


SCENARIOS = [Fresh(), Repeated(), Bunched(), Fractional(), RateChange(), Rewrite(), Pipelined()]


def write_plan(redis, member, per_week, ts, valid_s=30 * DAY):
    redis.command("HSET", "t:plan:{%s}" % member, "version", ts, "action", -1,
                  "computed_at", ts, "valid_until", ts + valid_s, "source", "producer",
                  "push_per_week", repr(float(per_week)))


def run(notifd, redis, scenario, members=40, seed=7):
    """Plays the scenario; returns counts[member_index][week] and caps
    (the hard cap each answer reported, per member and week)."""
    rng = random.Random(seed)
    names = ["m%04d" % i for i in range(scenario.members(members))]
    # Valid for 30 days, or the whole run if longer.
    valid_s = max(30 * DAY, (scenario.weeks + 1) * WEEK)
    for i, m in enumerate(names):
        write_plan(redis, m, scenario.plan_for(i), MONDAY - DAY, valid_s)
    rewrites = sorted(scenario.plan_rewrites())
    counts = [[0] * scenario.weeks for _ in names]
    halves = [[0] * scenario.weeks for _ in names]
    clients = [notifd.client() for _ in range(scenario.connections())]
    try:
        for week in range(scenario.weeks):
            for day in range(7):
                for k, t in enumerate(scenario.opportunity_times(week, day)):
                    ts = MONDAY + week * WEEK + day * DAY + t
                    while rewrites and rewrites[0][0] <= ts:
                        at, plan = rewrites.pop(0)
                        for i, m in enumerate(names):
                            write_plan(redis, m, plan(i), at, valid_s)
                    reqs = [{"op": "decide", "id": i, "member": m, "channel": "push",
                             "opportunity": "o%d-%d-%d" % (week, day, k), "ts": ts,
                             "candidates": scenario.candidates(m, week, day, k, rng)}
                            for i, m in enumerate(names)]
                    for r in _send(clients, reqs):
                        if not r.get("ok"):
                            raise AssertionError("decide failed: %r" % r)
                        if r["send"]:
                            i = r["id"]
                            counts[i][week] += 1
                            if day * DAY + t < HALF_WEEK:
                                halves[i][week] += 1
    finally:
        for c in clients:
            c.close()
    return counts, halves


def _send(clients, reqs):
    """Pipelines reqs over the clients at once (request i on client
    i % n), so one member's decisions may be in flight on several."""
    if len(clients) == 1:
        return clients[0].pipeline(reqs)
    parts = [reqs[j::len(clients)] for j in range(len(clients))]
    out = [None] * len(clients)

    def go(j):
        out[j] = clients[j].pipeline(parts[j])

    threads = [threading.Thread(target=go, args=(j,)) for j in range(len(clients))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [r for part in out for r in part]


def measured_weeks(scenario):
    f = getattr(scenario, "measured", None)
    return [w for w in range(scenario.weeks)
            if w >= scenario.measured_from and (f is None or f(w))]


def summarise(scenario, counts, halves, cap_factor=1.0):
    """Per plan value: realised mean / plan, median, first-half share, worst
    week against the cap."""
    import math
    groups = {}
    for i, row in enumerate(counts):
        for w in measured_weeks(scenario):
            plan = scenario.expected(i, w)
            g = groups.setdefault(plan, {"weeks": [], "first_half": 0, "total": 0})
            g["weeks"].append(row[w])
            g["first_half"] += halves[i][w]
            g["total"] += row[w]
    out = []
    for plan, g in sorted(groups.items()):
        out.append({
            "plan": plan,
            "mean": statistics.mean(g["weeks"]),
            "median": statistics.median(g["weeks"]),
            "first_half": g["first_half"] / g["total"] if g["total"] else float("nan"),
            "max": max(g["weeks"]),
            "n": len(g["weeks"]),
        })
    # The hard cap holds in every member's every week, measured or not.
    worst = 0.0
    for i, row in enumerate(counts):
        for w, n in enumerate(row):
            cap = math.ceil(scenario.cap_plan(i, w) * cap_factor - 1e-9)
            worst = max(worst, n - cap)
    return out, worst


def problems(scenario, summary, worst_over_cap, counts, halves):
    """The promises a summary breaks, as messages (empty: all kept)."""
    bad = []
    for s in summary:
        if abs(s["mean"] - s["plan"]) > 0.1 * s["plan"]:
            bad.append("plan %.2f: mean %.3f is not within 10%%" % (s["plan"], s["mean"]))
        if abs(s["median"] - s["plan"]) > 1.0:
            bad.append("plan %.2f: median %.1f is not within 1" % (s["plan"], s["median"]))
        if scenario.spread_check and s["plan"] >= 2 and not 0.3 <= s["first_half"] <= 0.7:
            bad.append("plan %.2f: first half of the week has %.0f%% of sends"
                       % (s["plan"], 100 * s["first_half"]))
    bad += scenario.extra_problems(counts, halves)
    if worst_over_cap > 0:
        bad.append("a member's week exceeded the hard cap by %d" % worst_over_cap)
    return bad


def format_rows(strategy, scenario, summary):
    """The table's rows of one strategy and scenario."""
    return "\n".join(
        "| %s | %s | %g | %.2f | %.0f%% | %g | %.0f%% | %d |"
        % (strategy, scenario.name, s["plan"], s["mean"], 100 * s["mean"] / s["plan"],
           s["median"], 100 * s["first_half"], s["max"]) for s in summary)


TABLE_HEAD = ("| strategy | scenario | plan/week | mean sends | of plan | median | "
              "first half | most in a week |\n|---|---|---|---|---|---|---|---|")
