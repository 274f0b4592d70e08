"""Reading notifd's decision and feedback events into member-weeks.

Input: NDJSON files as the event sink posts them (one event per line), or
spool directories (their events-*.ndjson segments, oldest first). A
member-week is a member's UTC calendar week (Monday 00:00 UTC); its plan is
the one its first decision of the week carried, and its reward counts the
week's feedback: visits, opt-outs (unsubscribe), opens, and the week's
sends. Lines that are not JSON objects are counted and skipped, never
guessed at.
"""
import glob
import json
import os

WEEK = 604800
MONDAY0 = 345600  # 1970-01-05 00:00 UTC, the first Monday of the epoch

METRICS = ("visits", "optouts", "opens", "sends")


def week_of(ts):
    return (int(ts) - MONDAY0) // WEEK


def event_files(paths):
    """Files to read, in order: a directory gives its spool segments."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            segs = sorted(glob.glob(os.path.join(p, "events-*.ndjson")))
            if not segs:
                raise ValueError("%s: no events-*.ndjson segments (not a spool directory?)" % p)
            out += segs
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise ValueError("%s: no such file or directory" % p)
    return out


def read_events(paths, stats):
    """Yields event objects; counts unreadable lines in stats['bad_lines']."""
    for path in event_files(paths):
        with open(path, "rb") as f:
            for raw in f:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    ev = json.loads(raw)
                except ValueError:
                    stats["bad_lines"] = stats.get("bad_lines", 0) + 1
                    continue
                if not isinstance(ev, dict) or "type" not in ev or "member" not in ev:
                    stats["bad_lines"] = stats.get("bad_lines", 0) + 1
                    continue
                yield ev


def plan_channels(plan):
    """The planned channels of a decision's plan, in a fixed order: those
    the planner chose (not `defaulted`), sorted by name."""
    defaulted = set(plan.get("defaulted") or ())
    return tuple(sorted(c for c in plan.get("per_week", {}) if c not in defaulted))


def member_weeks(paths, from_week=None, to_week=None, horizon=1):
    """Returns (units, stats). A unit: member, week, channels, action,
    greedy, k, p0, gaps, holdout, reward {metric: value} (the week's) and
    reward_h (the sum over the week and the horizon - 1 after it). Weeks
    outside [from_week, to_week) are left out; so are member-weeks with no
    decision (nothing says which plan they had), threshold-mode decisions,
    and weeks whose horizon runs past the last week in the logs."""
    if horizon < 1:
        raise ValueError("the horizon must be at least 1 week")
    stats = {"events": 0, "decisions": 0, "feedback": 0, "bad_lines": 0,
             "weeks_without_plan": 0, "dup_events": 0, "weeks_past_the_logs": 0}
    plans = {}
    rewards = {}
    holdout = set()
    seen_ids = set()
    for ev in read_events(paths, stats):
        eid = ev.get("event_id")
        if eid is not None:
            # Delivery is at least once: a redelivered event counts once.
            if eid in seen_ids:
                stats["dup_events"] += 1
                continue
            seen_ids.add(eid)
        stats["events"] += 1
        ts = ev.get("ts")
        if not isinstance(ts, (int, float)):
            stats["bad_lines"] += 1
            continue
        key = (ev["member"], week_of(ts))
        if ev.get("holdout"):
            holdout.add(ev["member"])
        r = rewards.setdefault(key, dict.fromkeys(METRICS, 0.0))
        if ev["type"] == "decision":
            stats["decisions"] += 1
            if ev.get("send"):
                r["sends"] += 1
            plan = ev.get("plan")
            if not isinstance(plan, dict) or ev.get("mode") == "threshold":
                continue
            first = plans.get(key)
            if first is None or ts < first[0]:
                plans[key] = (ts, plan)
        elif ev["type"] == "feedback":
            stats["feedback"] += 1
            kind = ev.get("event")
            if kind == "visit":
                r["visits"] += 1
            elif kind == "unsubscribe":
                r["optouts"] += 1
            elif kind == "open":
                r["opens"] += 1
    units = []
    last_week = max((k[1] for k in rewards), default=None)
    for key, reward in rewards.items():
        member, week = key
        if from_week is not None and week < from_week:
            continue
        if to_week is not None and week >= to_week:
            continue
        if week + horizon - 1 > last_week:
            stats["weeks_past_the_logs"] += 1
            continue
        got = plans.get(key)
        if got is None:
            stats["weeks_without_plan"] += 1
            continue
        plan = got[1]
        chans = plan_channels(plan)
        per_week = plan.get("per_week", {})
        greedy = plan.get("greedy") or {}
        action = tuple(float(per_week[c]) for c in chans)
        units.append({
            "member": member, "week": week, "channels": chans, "action": action,
            "greedy": tuple(float(greedy.get(c, per_week[c])) for c in chans),
            "k": int(plan.get("neighbours", 0) or 0),
            "gaps": [float(x) for x in plan.get("gaps") or ()],
            "p0": float(plan.get("propensity", 1.0)),
            "holdout": member in holdout, "reward": reward,
            # A week with no event of the member's had none of the rewards.
            "reward_h": {m: sum(rewards.get((member, week + j), {}).get(m, 0.0)
                                for j in range(horizon)) for m in METRICS},
        })
    units.sort(key=lambda u: (u["member"], u["week"]))
    return units, stats
