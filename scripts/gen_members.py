#!/usr/bin/env python3
"""Writes Redis protocol (RESP) for N members with realistic features, due in
the planner's schedule, to stdout: pipe it into `redis-cli --pipe`.

Used by scripts/bench_planner.sh (1M members) and the planner integration
tests (10k members). Per member: one HSET of `P member:{M}` with the fields
the feedback script writes (decayed counts per channel, last times, visits,
first_seen, updated_at, time zone), and one ZADD of the member into its
schedule partition `P sched:<n>`, due at --due. With --week, also the week
hash `P week:{M}` as decides leave it for the planner's score prior
(`slow.priors.score_strength`, on by default): each channel's recent best
utilities (`<ch>:scores`, 100 for push, 60 for email) and its opportunity
EWMA (`<ch>:ewma`), drawn from a stream of their own so the features stay
those of a run without --week. Deterministic for a given --seed, so a
benchmark run can be repeated exactly.

The partition function is notifd's schedule_partition() (src/slow/schedule.c,
src/lib/hash.c), reimplemented here; a mismatch would only make members
land in the wrong partition, which tests/integration/test_planner.py would
catch (the planner finds every member it was given).
"""
import argparse
import random
import sys

M64 = (1 << 64) - 1
SCHEDULE_SEED = 0x736368656475
SCHEDULE_PARTITIONS = 64


def hash_mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


_SEED_MIX = hash_mix64(SCHEDULE_SEED)


def schedule_partition(member: bytes) -> int:
    h = 0xCBF29CE484222325 ^ _SEED_MIX
    for b in member:
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= len(member)
    return hash_mix64(h) % SCHEDULE_PARTITIONS


def _hash_bytes(seed: int, data: bytes) -> int:
    h = 0xCBF29CE484222325 ^ hash_mix64(seed)
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= len(data)
    return hash_mix64(h)


def cadence_phase(member: bytes) -> float:
    """The member's phase in the planner's cadence: cadence_phase() in
    src/core/cadence.c."""
    return (_hash_bytes(0x636164656E6365, member) >> 11) * 2.0 ** -53


def bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def member_fields(rng, now):
    """Field/value pairs as the feedback script would have left them."""
    kind = rng.random()
    out = []
    first_seen = now - rng.randint(3, 400) * 86400
    for ch, base_open in ((b"push", 0.10), (b"email", 0.06)):
        if rng.random() < 0.1:
            continue  # never messaged on this channel
        sent = rng.uniform(0.5, 30.0)
        delivered = sent * rng.uniform(0.85, 1.0)
        if kind < 0.25:      # engaged
            open_ = delivered * rng.uniform(0.2, 0.6)
        elif kind < 0.5:     # fatigued
            open_ = delivered * rng.uniform(0.0, 0.03)
        else:
            open_ = delivered * rng.uniform(0.3, 1.7) * base_open
        click = open_ * rng.uniform(0.0, 0.5)
        dismiss = delivered * (rng.uniform(0.2, 0.6) if kind >= 0.25 and kind < 0.5
                               else rng.uniform(0.0, 0.1))
        out += [ch + b"_sent", b"%.9g" % sent, ch + b"_delivered", b"%.9g" % delivered,
                ch + b"_open", b"%.9g" % open_, ch + b"_click", b"%.9g" % click,
                ch + b"_dismiss", b"%.9g" % dismiss,
                ch + b"_last_sent", b"%d" % (now - rng.randint(0, 14 * 86400))]
        if open_ > 0.01:
            out += [ch + b"_last_open", b"%d" % (now - rng.randint(0, 30 * 86400))]
        if rng.random() < 0.02:
            out += [ch + b"_unsub", b"1", ch + b"_unsub_n", b"%.9g" % rng.uniform(0.5, 1.0)]
    out += [b"visit_org", b"%.9g" % rng.uniform(0.0, 40.0),
            b"visit_attr", b"%.9g" % rng.uniform(0.0, 8.0),
            b"last_visit", b"%d" % (now - rng.randint(0, 20 * 86400)),
            b"first_seen", b"%d" % first_seen,
            b"updated_at", b"%d" % (now - rng.randint(0, 7 * 86400)),
            b"tz_offset_min", b"%d" % rng.choice((-480, -300, 0, 60, 120, 330, 540))]
    return out


def week_fields(rng):
    """The week hash's fields the planner's score prior reads: recent best
    utilities, newest first, five significant digits (as decide writes
    them), and the opportunities-a-week EWMA, per channel."""
    out = []
    for ch, n, level, ewma in ((b"push", 100, 0.55, 10.0), (b"email", 60, 0.45, 6.0)):
        top = level + rng.uniform(-0.25, 0.25)  # members differ in their best moments
        scores = b",".join(b"%.5g" % min(0.99, max(0.01, rng.gauss(top, 0.12)))
                           for _ in range(n))
        out += [ch + b":scores", scores, ch + b":ewma", b"%.9g" % (ewma * rng.uniform(0.5, 1.5))]
    return out


def generate(out, count, prefix, due, seed=1, start=0, now=None, features=True, week=False):
    rng = random.Random(seed)
    week_rng = random.Random(seed * 1000003 + 17)
    now = due if now is None else now
    p = prefix.encode()
    buf = []
    hset = bulk(b"HSET")
    zadd = bulk(b"ZADD")
    due_b = bulk(b"%d" % due)
    for i in range(start, start + count):
        m = b"m%08d" % i
        if features:
            fields = member_fields(rng, now)
            parts = [b"*%d\r\n" % (2 + len(fields)), hset, bulk(p + b"member:{" + m + b"}")]
            parts += [bulk(f) for f in fields]
            buf.append(b"".join(parts))
        if week:
            fields = week_fields(week_rng)
            parts = [b"*%d\r\n" % (2 + len(fields)), hset, bulk(p + b"week:{" + m + b"}")]
            parts += [bulk(f) for f in fields]
            buf.append(b"".join(parts))
        buf.append(b"*4\r\n" + zadd + bulk(p + b"sched:%d" % schedule_partition(m)) + due_b
                   + bulk(m))
        if len(buf) >= 4096:
            out.write(b"".join(buf))
            buf.clear()
    out.write(b"".join(buf))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--start", type=int, default=0, help="first member index")
    ap.add_argument("--prefix", default="notif:")
    ap.add_argument("--due", type=int, required=True, help="due time (unix s) in the schedule")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--week", action="store_true",
                    help="also each member's week hash (recent scores, opportunity EWMA)")
    args = ap.parse_args()
    generate(sys.stdout.buffer, args.count, args.prefix, args.due, args.seed, args.start,
             week=args.week)


if __name__ == "__main__":
    main()
