"""Validating notifd-ope against notifd-sim: policy A (exploring plans) is
run with its events kept; each policy B is run as its own configuration;
notifd-ope estimates B from A's logs, and the estimate must hold B's
simulated value in its interval.

Both runs face the same members, opportunities and luck (notifd-sim's common
random numbers), so B - A is the policy difference alone: the sharp check is
that the interval of the estimated *difference* holds it, beside the wider
check on B's value itself.

Used by scripts/ope_validate.py (the full table) and
tests/integration/test_ope_sim.py (one small pair).
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OPE = os.path.join(HERE, "notifd-ope")

# Pairs: (label, notifd-ope target, notifd-sim overrides that run B).
PAIRS = [
    ("greedy plans", "greedy", ["slow.explore_prob=0"]),
    ("message_cost 0.015", "cost:+0.005", ["slow.message_cost=0.015"]),
    ("message_cost 0.005", "cost:-0.005", ["slow.message_cost=0.005"]),
]


def run_sim(sim_bin, notifd_bin, args, sets, events_dir=None, timeout=3600):
    """One hierarchical run; returns the overall row of its CSV."""
    with tempfile.TemporaryDirectory(prefix="ope-validate-") as d:
        csv_path = os.path.join(d, "run.csv")
        cmd = [sim_bin, "--mode", "hierarchical", "--csv", csv_path, *args]
        if notifd_bin:
            cmd += ["--notifd", notifd_bin]
        # No decide deadline: on a loaded machine a late decide would be
        # answered "degraded", and notifd-sim refuses a run with any.
        cmd += ["--set", "fast.deadline_ms=0"]
        for s in sets:
            cmd += ["--set", s]
        if events_dir:
            # An endpoint nobody listens on: every event lands in the spool.
            cmd += ["--set", "events.url=http://127.0.0.1:9/",
                    "--set", "events.spool_dir=" + events_dir, "--set", "events.fsync=never"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError("notifd-sim failed (%d): %s" % (proc.returncode, proc.stderr[-2000:]))
        with open(csv_path) as f:
            rows = [r for r in csv.DictReader(f) if r["cohort"] == "overall"]
        return rows[-1]


def estimate(events_dir, targets, warmup, bootstrap=200, horizon=1):
    cmd = [sys.executable, OPE, "--json", "--metric", "visits", "--skip-weeks", str(warmup),
           "--bootstrap", str(bootstrap), "--horizon", str(horizon)]
    for t in targets:
        cmd += ["--target", t]
    proc = subprocess.run(cmd + [events_dir], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError("notifd-ope failed: %s" % proc.stderr)
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    return {e["target"]: e for e in out if e["kind"] == "estimate"}


def validate(sim_bin, notifd_bin, args, warmup, explore, pairs=PAIRS, workdir=None,
             bootstrap=200, horizon=1):
    """Runs A and every B; returns (A's overall row, A's logged estimate,
    rows of {label, target, sim_b, sim_delta, est}). horizon may be a list:
    then est (and the logged estimate) are {horizon: estimate}, all from
    the same runs."""
    if workdir is None:
        # The events are hundreds of MB at a full run's size: gone afterwards.
        with tempfile.TemporaryDirectory(prefix="ope-validate-") as d:
            return validate(sim_bin, notifd_bin, args, warmup, explore, pairs, d, bootstrap,
                            horizon)
    events = os.path.join(workdir, "events-a")
    a = run_sim(sim_bin, notifd_bin, args, ["slow.explore_prob=%g" % explore], events)
    horizons = horizon if isinstance(horizon, list) else [horizon]
    by_h = {h: estimate(events, ["logged"] + [p[1] for p in pairs], warmup, bootstrap, h)
            for h in horizons}

    def pick(target):
        if isinstance(horizon, list):
            return {h: by_h[h][target] for h in horizons}
        return by_h[horizon][target]
    rows = []
    for label, target, sets in pairs:
        b = run_sim(sim_bin, notifd_bin, args, sets)
        sim_b = float(b["visits_pmw"])
        rows.append({"label": label, "target": target, "sim_b": sim_b,
                     "sim_delta": sim_b - float(a["visits_pmw"]), "est": pick(target)})
    return a, pick("logged"), rows


def inside(x, ci):
    return ci[0] <= x <= ci[1]
