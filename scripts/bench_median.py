#!/usr/bin/env python3
"""The median of each goal ratio over several scripts/bench.sh runs.

Reads the outputs of the runs (files named on the command line) and, for
every line `ratio NAME = VALUE (goal OP X) PASS|FAIL|n/a` they contain,
prints in the order first seen:

  median NAME = MEDIAN (goal OP X) PASS|FAIL   runs: V1 V2 ...

A run whose value is n/a (a step that failed) is left out of that median;
a ratio no run measured is printed as n/a. One run on a shared machine
moves with its neighbours; the median of three is what the goals are
judged on (docs/benchmarks.md). Used by `scripts/bench.sh --runs N`.
"""
import re
import statistics
import sys

LINE = re.compile(r"^ratio (\S+) = (\S+) \(goal (>=|<=) ([\d.]+)\) (PASS|FAIL|n/a)$")


def medians(texts):
    """[(name, op, goal, median or None, [values])] over the runs' outputs."""
    values, goals, order = {}, {}, []
    for text in texts:
        for line in text.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            name = m.group(1)
            if name not in goals:
                order.append(name)
                goals[name] = (m.group(3), m.group(4))
            if m.group(2) != "n/a":
                values.setdefault(name, []).append(float(m.group(2)))
    out = []
    for name in order:
        vs = values.get(name, [])
        out.append((name, goals[name][0], goals[name][1],
                    statistics.median(vs) if vs else None, vs))
    return out


def main(paths):
    texts = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    for name, op, goal, med, vs in medians(texts):
        if med is None:
            print("median %s = n/a (goal %s %s) n/a   runs: none measured" % (name, op, goal))
            continue
        ok = med >= float(goal) if op == ">=" else med <= float(goal)
        print("median %s = %.3f (goal %s %s) %s   runs: %s" % (
            name, med, op, goal, "PASS" if ok else "FAIL", " ".join("%.3f" % v for v in vs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
