"""Liveness under load (README.md, failure table): the scenario a new user tried,
against the real notifd binary and a real redis-server, in virtual time.

- the shipped default config (config/notifd.json), with only what a test
  must set changed: ports, the Redis port, `limits.ts_window_s` 0 (virtual
  time); the Redis timeout, the in-flight window and everything else are
  the binary's and the config file's own;
- one producer connection, `members` members, `weeks` weeks of virtual time
  starting on a Monday;
- each day three pipelines of decides (one per slot, one decide per member)
  and one pipeline of the day's feedback (delivered for every send, then
  open or dismiss, and a visit after some opens), every event with an
  `event_id`;
- a planner pass (`planner_run`) at each week start;
- `neighbours` CPU-bound processes (`yes > /dev/null`) for the whole run;
- optionally, Redis stalled (SIGSTOP, SIGCONT `stall_s` later) `stall_at`
  wall-clock seconds into the run.

After the run it waits for the feedback queue to drain and checks every
accepted feedback event against Redis: its `P evt:{M}:<id>` key is there
(applied), and the member's decayed counts equal the sum of the accepted
events' weights (applied once: a lost event or a doubled one is off by at
least half a count; see docs/feedback-queue.md and src/store/lua/feedback.lua).

As a script it prints the figures (decides sent and degraded, feedback sent,
unavailable, queued, and the log's "connection dropped" lines):

    python3 tests/integration/liveness_scenario.py                   # issue scale
    python3 tests/integration/liveness_scenario.py --notifd /tmp/notifd-before \\
        --members 1500 --weeks 3 --neighbours 2 [--stall-at 20]

Used by tests/integration/test_liveness_acceptance.py (at a smaller default
scale, see there).
"""
import argparse
import calendar
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, Notifd, Redis, ROOT, wait_for  # noqa: E402

DAY = 86400
WEEK = 7 * DAY
# A Monday 00:00 UTC: week starts are ISO week starts for UTC members.
MONDAY = calendar.timegm((2026, 1, 5, 0, 0, 0))
# The three decide slots of a day, seconds into the day.
SLOTS = (9 * 3600, 13 * 3600, 19 * 3600)
CHANNEL = "push"
# Feedback per send: delivered; then open (P_OPEN) or dismiss (P_DISMISS of
# the rest); a visit after P_VISIT of the opens. About 2.5 events a send, as
# in the issue (11,430 feedback events for its sends).
P_OPEN, P_DISMISS, P_VISIT = 0.6, 1.0, 0.9
# And a member visits on its own (no message) on P_ORGANIC of days: feedback
# that does not follow a send, so days whose decides all degrade (a Redis
# stall) still send feedback.
P_ORGANIC = 0.04
# Issue 20's figures: the scale the user ran.
ISSUE_MEMBERS, ISSUE_WEEKS, ISSUE_NEIGHBOURS = 1500, 3, 2
# The member-hash count fields each feedback event adds to (src/store/lua/feedback.lua).
COUNT_FIELDS = {"delivered": (CHANNEL + "_delivered",), "open": (CHANNEL + "_open",),
                "dismiss": (CHANNEL + "_dismiss",), "visit": ("visit_attr", "visit_org")}
DEFAULT_CONFIG = os.path.join(ROOT, "config", "notifd.json")

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In a neighbour's child: SIGKILL when the process that started it dies
    (a test killed by a timeout must not leave `yes` burning a core)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # not Linux: the finally blocks still kill them
        pass


class Neighbours:
    """`n` CPU-bound processes (`yes > /dev/null`); a context manager that
    kills them, by pid, whatever happens."""

    def __init__(self, n):
        self.n = n
        self.procs = []

    def __enter__(self):
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen(["yes"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL,
                                                   preexec_fn=_die_with_parent))
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []

    def __exit__(self, *exc):
        self.kill()
        return False


def shipped_config(notifd, config_path=DEFAULT_CONFIG):
    """The shipped config with only what the harness must set: listen
    ports, the test's Redis, `ts_window_s` 0. Spool dirs stay relative
    (notifd runs in its own temporary directory)."""
    with open(config_path) as f:
        cfg = json.load(f)
    cfg["listen"] = notifd.config["listen"]
    cfg["admin_listen"] = notifd.config["admin_listen"]
    cfg.setdefault("redis", {})
    cfg["redis"]["host"] = "127.0.0.1"
    cfg["redis"]["port"] = notifd.config["redis"]["port"]
    cfg.setdefault("limits", {})["ts_window_s"] = 0
    return cfg


def half_life_s(cfg):
    """features.half_life_days of the config, or the built-in default (28)."""
    return float(cfg.get("features", {}).get("half_life_days", 28)) * DAY


class Result:
    """What a run saw. Counts, per-answer timings for the stall check, the
    Redis check of the feedback, and the daemon's log lines."""

    def __init__(self):
        self.decides = 0
        self.degraded = 0
        self.decide_errors = {}
        self.sends = 0
        self.feedback = 0
        self.recorded = 0
        self.queued = 0
        self.duplicates = 0
        self.unavailable = 0
        self.feedback_errors = {}
        self.planner_runs = []
        self.seconds = 0.0
        self.stall = None          # (sigstop wall time, sigcont wall time), monotonic
        self.stall_decides = []    # (latency s, degraded, answered before SIGCONT) of decides sent in the stall
        self.stall_feedback = []   # (request, answer) of feedback sent in the stall
        self.sent_after_stall = 0  # requests sent after SIGCONT (the stall was mid-run)
        self.queue_stats = None
        self.problems = []         # the Redis check of accepted feedback
        self.dropped_lines = []
        self.log_tail = ""

    def figures(self):
        return {"decides": self.decides, "degraded": self.degraded,
                "decide_errors": self.decide_errors, "sends": self.sends,
                "feedback": self.feedback, "recorded": self.recorded,
                "queued": self.queued, "duplicates": self.duplicates,
                "unavailable": self.unavailable, "feedback_errors": self.feedback_errors,
                "connection_dropped_lines": len(self.dropped_lines),
                "seconds": round(self.seconds, 1)}


def _timed_pipeline(client, reqs):
    """Sends reqs at once (from a thread, so a long pipeline's answers are
    read while it is still being written) and reads one answer each.
    Returns (send start, [(answer, monotonic time read)])."""
    data = b"".join(json.dumps(r).encode() + b"\n" for r in reqs)
    err = []

    def write():
        try:
            client.sock.sendall(data)
        except Exception as e:  # surfaces as a read error or below
            err.append(e)

    t0 = time.monotonic()
    w = threading.Thread(target=write, daemon=True)
    w.start()
    out = []
    try:
        for _ in reqs:
            out.append((client.read_line(), time.monotonic()))
    finally:
        w.join(30)
    if err:
        raise err[0]
    return t0, out


class _Staller(threading.Thread):
    """SIGSTOPs redis-server `at` seconds after start(), SIGCONTs it
    `length` seconds later."""

    def __init__(self, pid, at, length):
        super().__init__(daemon=True)
        self.pid, self.at, self.length = pid, at, length
        self.stopped_at = self.continued_at = None
        self.cancel = threading.Event()

    def run(self):
        if self.cancel.wait(self.at):
            return
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped_at = time.monotonic()
        try:
            self.cancel.wait(self.length)
        finally:
            os.kill(self.pid, signal.SIGCONT)
            self.continued_at = time.monotonic()

    def in_stall(self, t):
        return self.stopped_at is not None and t >= self.stopped_at and (
            self.continued_at is None or t < self.continued_at)

    def finish(self):
        """Ends a stall still going (always SIGCONT) and waits for it."""
        self.cancel.set()
        self.join(60)
        if self.stopped_at is not None and self.continued_at is None:
            os.kill(self.pid, signal.SIGCONT)
            self.continued_at = time.monotonic()


def _drained(notifd):
    s = notifd.request({"op": "stats"})["feedback_queue"]
    return (s["queue_depth"] == 0 and s["spool_segments"] == 0 and not s["replaying"]) and s


def _check_feedback(redis, prefix, accepted, hl):
    """accepted: member -> [(event, ts, event_id)] of the events notifd took
    (recorded or queued). Every id's key must be there and every count
    equal the sum of the events' decayed weights. Returns problems."""
    bad = []
    for m, events in sorted(accepted.items()):
        h = redis.command("HGETALL", "%smember:{%s}" % (prefix, m)) or []
        h = dict(zip(h[0::2], h[1::2]))
        if "updated_at" not in h:
            bad.append("%s: no member hash (%d accepted events)" % (m, len(events)))
            continue
        upd = float(h["updated_at"])
        for ev, fields in COUNT_FIELDS.items():
            want = sum(2.0 ** ((ts - upd) / hl) for e, ts, _ in events if e == ev)
            got = sum(float(h.get(f, 0) or 0) for f in fields)
            if abs(got - want) > 1e-5 * max(1.0, want):
                bad.append("%s %s: %.6f in Redis, %.6f from %d accepted events"
                           % (m, ev, got, want, sum(1 for e in events if e[0] == ev)))
        # The ids, in one round trip per member.
        ids = [eid for _, _, eid in events]
        found = redis.command("EXISTS", *["%sevt:{%s}:%s" % (prefix, m, i) for i in ids])
        if found != len(ids):
            bad.append("%s: %d of %d event ids in Redis" % (m, found, len(ids)))
    return bad


def run(members=ISSUE_MEMBERS, weeks=ISSUE_WEEKS, neighbours=ISSUE_NEIGHBOURS, stall_at=None,
        stall_s=5.0, day_s=0.0, notifd_bin=None, seed=20, progress=None,
        config_path=DEFAULT_CONFIG):
    """Plays the scenario; returns a Result. Starts and stops its own Redis,
    notifd and neighbours (all of them, also on failure).

    day_s: the least wall-clock time a virtual day takes (0: as fast as the
    daemon answers). A stall needs it: unpaced, the issue's three weeks take
    seconds, and a run with Redis stalled degrades through them at once."""
    if notifd_bin:
        harness.NOTIFD_BIN = os.path.abspath(notifd_bin)
    res = Result()
    rng = random.Random(seed)
    names = ["u%05d" % i for i in range(members)]
    redis = Redis().start()
    notifd = None
    staller = None
    try:
        notifd = Notifd(redis.port)
        notifd.config = shipped_config(notifd, config_path)
        prefix = notifd.config["redis"].get("prefix", "notif:")
        hl = half_life_s(notifd.config)
        notifd.start()
        accepted = {}
        with Neighbours(neighbours):
            # Long timeout: a planner pass answers when it is over.
            client = Client(notifd.port, timeout=120)
            try:
                if stall_at is not None:
                    staller = _Staller(redis.proc.pid, stall_at, stall_s)
                t_start = time.monotonic()
                if staller:
                    staller.start()
                _play(client, names, weeks, rng, res, accepted, staller, progress,
                      t_start, day_s)
                res.seconds = time.monotonic() - t_start
            finally:
                client.close()
                if staller:
                    staller.finish()
        if staller and staller.stopped_at is not None:
            res.stall = (staller.stopped_at, staller.continued_at)
        # Everything queued is applied once Redis is back; then check it.
        res.queue_stats = wait_for(lambda: _drained(notifd), timeout=60,
                                   interval=0.1, what="the feedback queue to drain")
        res.problems = _check_feedback(redis, prefix, accepted, hl)
        log = notifd.log_text()
        res.dropped_lines = [l for l in log.splitlines() if "connection dropped" in l]
        res.log_tail = "\n".join(log.splitlines()[-30:])
    finally:
        if staller:
            staller.finish()
        try:
            if notifd:
                notifd.close()
        finally:
            redis.close()
    return res


def _play(client, names, weeks, rng, res, accepted, staller, progress, t_start, day_s):
    rid = 0
    for week in range(weeks):
        week_ts = MONDAY + week * WEEK
        if day_s:
            _sleep_until(t_start + week * 7 * day_s)
        r = client.request({"op": "planner_run", "ts": week_ts})
        res.planner_runs.append(r)
        for day in range(7):
            if day_s:
                _sleep_until(t_start + (week * 7 + day) * day_s)
            day_ts = week_ts + day * DAY
            sends = []  # (member, slot ts, message)
            for slot, at in enumerate(SLOTS):
                ts = day_ts + at
                reqs = []
                for m in names:
                    rid += 1
                    reqs.append({"op": "decide", "id": rid, "member": m, "channel": CHANNEL,
                                 "opportunity": "w%dd%ds%d" % (week, day, slot), "ts": ts,
                                 "candidates": [{"id": "w%dd%ds%d-%d" % (week, day, slot, j),
                                                 "score": round(rng.random(), 4)}
                                                for j in range(3)]})
                t0, answers = _timed_pipeline(client, reqs)
                stalled = staller is not None and staller.in_stall(t0)
                if staller is not None and staller.continued_at is not None \
                        and t0 >= staller.continued_at:
                    res.sent_after_stall += len(reqs)
                for req, (a, t) in zip(reqs, answers):
                    res.decides += 1
                    if not a.get("ok"):
                        code = a.get("error", {}).get("code", "?")
                        res.decide_errors[code] = res.decide_errors.get(code, 0) + 1
                        continue
                    deg = bool(a.get("degraded"))
                    res.degraded += deg
                    if stalled:
                        res.stall_decides.append((t - t0, deg, not (
                            staller.continued_at is not None and t >= staller.continued_at)))
                    if a.get("send"):
                        res.sends += 1
                        sends.append((req["member"], ts, a.get("message")))
            fb = _day_feedback(sends, names, day_ts, week, day, rng)
            if fb:
                t0, answers = _timed_pipeline(client, fb)
                stalled = staller is not None and staller.in_stall(t0)
                if staller is not None and staller.continued_at is not None \
                        and t0 >= staller.continued_at:
                    res.sent_after_stall += len(fb)
                for req, (a, _) in zip(fb, answers):
                    res.feedback += 1
                    if stalled:
                        res.stall_feedback.append((req, a))
                    if a.get("ok"):
                        if a.get("queued"):
                            res.queued += 1
                        elif a.get("recorded"):
                            res.recorded += 1
                        if a.get("duplicate"):
                            res.duplicates += 1
                        if a.get("queued") or a.get("recorded") or a.get("duplicate"):
                            accepted.setdefault(req["member"], []).append(
                                (req["event"], req["ts"], req["event_id"]))
                    else:
                        code = a.get("error", {}).get("code", "?")
                        if code == "unavailable":
                            res.unavailable += 1
                        else:
                            res.feedback_errors[code] = res.feedback_errors.get(code, 0) + 1
            if progress:
                progress("week %d day %d: %s" % (week, day, json.dumps(res.figures())))


def _sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def _day_feedback(sends, names, day_ts, week, day, rng):
    """The day's feedback, in time order: for each send, delivered a minute
    after, open or dismiss ten minutes after, a visit twenty minutes after
    most opens; and the day's organic visits."""
    out = []
    for n, (m, ts, msg) in enumerate(sends):
        base = {"member": m, "message": msg}
        eid = "f-w%dd%d-%d" % (week, day, n)
        out.append(dict(base, op="feedback", channel=CHANNEL, event="delivered", ts=ts + 60,
                        event_id=eid + "-d"))
        x = rng.random()
        if x < P_OPEN:
            out.append(dict(base, op="feedback", channel=CHANNEL, event="open", ts=ts + 600,
                            event_id=eid + "-o"))
            if rng.random() < P_VISIT:
                out.append({"op": "feedback", "member": m, "event": "visit", "ts": ts + 1200,
                            "event_id": eid + "-v"})
        elif x < P_OPEN + (1 - P_OPEN) * P_DISMISS:
            out.append(dict(base, op="feedback", channel=CHANNEL, event="dismiss",
                            ts=ts + 600, event_id=eid + "-x"))
    for m in names:
        if rng.random() < P_ORGANIC:
            out.append({"op": "feedback", "member": m, "event": "visit",
                        "ts": day_ts + rng.randrange(8 * 3600, 22 * 3600),
                        "event_id": "v-w%dd%d-%s" % (week, day, m)})
    out.sort(key=lambda r: r["ts"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=ISSUE_MEMBERS)
    ap.add_argument("--weeks", type=int, default=ISSUE_WEEKS)
    ap.add_argument("--neighbours", type=int, default=ISSUE_NEIGHBOURS,
                    help="CPU-bound `yes > /dev/null` processes for the whole run")
    ap.add_argument("--stall-at", type=float, default=None, metavar="SECONDS",
                    help="SIGSTOP redis-server this many wall-clock seconds into the run")
    ap.add_argument("--stall-s", type=float, default=5.0, help="how long the stall lasts")
    ap.add_argument("--day-s", type=float, default=None, metavar="SECONDS",
                    help="least wall-clock time per virtual day (default 0; 1 with --stall-at)")
    ap.add_argument("--notifd", default=None, metavar="PATH",
                    help="the notifd binary (default: $NOTIFD_BIN or build/notifd)")
    ap.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                    help="the shipped config the run starts from (default: config/notifd.json)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--max-log-lines", type=int, default=40,
                    help="most 'connection dropped' lines printed (first and last halves)")
    ap.add_argument("-v", "--verbose", action="store_true", help="progress per virtual day")
    a = ap.parse_args(argv)
    # SIGTERM unwinds like an exception: Redis, notifd and the neighbours
    # are stopped by run()'s finally blocks (SIGKILL leaves the neighbours
    # to PR_SET_PDEATHSIG).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    progress = (lambda s: print(s, file=sys.stderr, flush=True)) if a.verbose else None
    day_s = a.day_s if a.day_s is not None else (0.0 if a.stall_at is None else 1.0)
    res = run(members=a.members, weeks=a.weeks, neighbours=a.neighbours, stall_at=a.stall_at,
              stall_s=a.stall_s, day_s=day_s, notifd_bin=a.notifd, seed=a.seed,
              progress=progress, config_path=a.config)
    print("notifd: %s, config: %s" % (harness.NOTIFD_BIN, a.config))
    print("members %d, weeks %d, neighbours %d, day %gs, stall %s"
          % (a.members, a.weeks, a.neighbours, day_s,
             "none" if a.stall_at is None else "%gs at %gs" % (a.stall_s, a.stall_at)))
    print("decides sent:        %d" % res.decides)
    print("  degraded:          %d" % res.degraded)
    if res.decide_errors:
        print("  errors:            %s" % res.decide_errors)
    print("  sends:             %d" % res.sends)
    print("feedback sent:       %d" % res.feedback)
    print("  recorded:          %d" % res.recorded)
    print("  queued:            %d" % res.queued)
    print("  unavailable:       %d" % res.unavailable)
    if res.feedback_errors:
        print("  errors:            %s" % res.feedback_errors)
    print("feedback queue after the run: %s" % json.dumps(res.queue_stats))
    print("feedback in Redis: %s" % ("every accepted event applied once" if not res.problems
                                     else "%d problems, e.g. %s" % (len(res.problems),
                                                                     res.problems[:3])))
    print("planner passes: %s" % json.dumps([{k: r.get(k) for k in ("ok", "planned", "seconds")}
                                            for r in res.planner_runs]))
    if res.stall:
        lat = [x[0] for x in res.stall_decides]
        print("stall: %d decides sent during it, %d degraded, slowest answer %.3fs; "
              "%d feedback sent during it, %d queued; %d requests sent after it"
              % (len(res.stall_decides), sum(1 for x in res.stall_decides if x[1]),
                 max(lat) if lat else 0.0, len(res.stall_feedback),
                 sum(1 for _, ans in res.stall_feedback if ans.get("queued")),
                 res.sent_after_stall))
        if not res.sent_after_stall:
            print("  (the run ended before the stall did: a longer --day-s puts it mid-run)")
    elif a.stall_at is not None:
        print("stall: none happened (the run ended before --stall-at)")
    print("run time: %.1fs (the scenario, without startup and the check)" % res.seconds)
    lines = res.dropped_lines
    print("log lines matching 'connection dropped': %d" % len(lines))
    k = a.max_log_lines
    shown = lines if len(lines) <= k else lines[:k // 2] + ["  ... %d more ..." % (
        len(lines) - k)] + lines[-(k - k // 2):]
    for l in shown:
        print("  " + l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
