#!/usr/bin/env python3
"""scripts/ope_validate.py - notifd-ope against notifd-sim, in full.

Policy A plans with slow.explore_prob (0.3 unless --explore) and keeps its
events; for each policy B of tools/notifd-ope/ope_validate.py's PAIRS
(greedy plans, message_cost 0.015, message_cost 0.005) notifd-sim runs B
and notifd-ope estimates it from A's logs. Prints, per pair and reward
horizon (--horizons, default 1 and 2 weeks: docs/ope.md), B's simulated
visits per member-week, the IPS / SNIPS / DR estimates with 95% intervals,
the same for the difference B - A, whether the DR intervals hold the
simulated values, and the effective sample size. Exit status 1 if a DR
interval of the last horizon misses.

Usage: scripts/ope_validate.py [--members 5000] [--weeks 8] [--warmup 2]
                               [--seed 1] [--explore 0.3] [--mix C:R:H]
Environment: NOTIFD_BUILD_DIR (default build/) holds notifd and notifd-sim.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "notifd-ope"))
import ope_validate as v  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--explore", type=float, default=0.3)
    ap.add_argument("--mix")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--horizons", default="1,2",
                    help="weeks a plan's reward counts over (notifd-ope --horizon), a list")
    a = ap.parse_args()
    build = os.environ.get("NOTIFD_BUILD_DIR", os.path.join(ROOT, "build"))
    sim = os.path.join(build, "notifd-sim")
    if not os.path.exists(sim):
        print("ope_validate: %s is not built (cmake --build build)" % sim, file=sys.stderr)
        return 2
    args = ["--members", str(a.members), "--weeks", str(a.weeks), "--warmup", str(a.warmup),
            "--seed", str(a.seed)]
    try:
        horizons = [int(x) for x in a.horizons.split(",")]
    except ValueError:
        print("ope_validate: --horizons must be a list of integers", file=sys.stderr)
        return 2
    if a.mix:
        args += ["--mix", a.mix]
    run_a, logged, rows = v.validate(sim, os.path.join(build, "notifd"), args, a.warmup,
                                     a.explore, bootstrap=a.bootstrap, horizon=horizons)
    print("A: slow.explore_prob %g, %d members x %d weeks (%d warm-up), seed %d: "
          "%.4f visits per member-week simulated, %.4f from its own logs"
          % (a.explore, a.members, a.weeks, a.warmup, a.seed, float(run_a["visits_pmw"]),
             logged[1]["dr"] if 1 in logged else float("nan")))
    print()
    print("| B | target | horizon | B simulated | IPS [95%] | SNIPS [95%] | DR [95%] "
          "| B − A simulated | DR of B − A [95%] | ESS | in DR intervals |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r, h in [(r, h) for r in rows for h in horizons]:
        e = r["est"][h]

        def c(k):
            return "%.4f [%.4f, %.4f]" % (e[k], e["ci"][k][0], e["ci"][k][1])
        hold = v.inside(r["sim_b"], e["ci"]["dr"]) and v.inside(r["sim_delta"], e["ci"]["d_dr"])
        ok &= hold or h != horizons[-1]
        print("| %s | `%s` | %d | %.4f | %s | %s | %s | %+.4f | %s | %.0f of %d | %s |"
              % (r["label"], r["target"], h, r["sim_b"], c("ips"), c("snips"), c("dr"),
                 r["sim_delta"], c("d_dr"), e["ess"], e["units"], "yes" if hold else "**no**"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
