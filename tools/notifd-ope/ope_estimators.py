"""Off-policy estimators for notifd's plan-level logs: pure functions, no I/O.

A *unit* is one member-week: the plan the planner drew (action), the greedy
plan it was drawn around, K (its valid neighbours), the logged propensity
p0 of the action, and the week's reward (visits, opt-outs, ...). A *target*
policy gives the probability of any action given the greedy plan and K.

With w = pi1(a | x) / p0 (the importance weight) over n units:

    IPS    = (1/n) sum w r                         unbiased, high variance
    SNIPS  = sum w r / sum w                       self-normalised: bounded, small bias
    DR     = (1/n) sum [ sum_a pi1(a|x) q(x,a) + w (r - q(x,a_logged)) ]
                                                   unbiased if either q or p0 is right
    ESS    = (sum w)^2 / sum w^2                   units the estimate is worth

Each estimate also comes as a *difference* from the logged policy's own
mean (the on-policy value, mean r): delta = estimate - mean r, computed on the
same units and the same bootstrap replicates. Members differ far more from
one another (a heavy member visits 30 times as often as a casual one) than
one week's plan changes anything, and the difference cancels that: DR's
delta is (1/n) sum [(sum_a pi1 q(a) - q(a_i)) + (w - 1)(r - q(a_i))], whose
spread is the weekly residual's, not the population's.

A plan's effect outlives its week (fatigue, opt-outs, what the features
learn from the sends). With a horizon of H weeks a unit's reward R is the
sum of its week's and the next H - 1 weeks' rewards, its weight still its
own week's plan's: the difference then holds the plan's effect on its week
and on the H - 1 after it, which, if effects add up and fade within H
weeks, is what changing every week's plan changes a week's reward by. The
value is reported as the logged policy's weekly mean plus that difference
(H = 1: exactly the estimators above).

Confidence intervals are percentile intervals of a bootstrap that resamples
*members* (a member's weeks are not independent), using per-member sums so a
replicate costs one pass over the members.
"""
import math
import random

# ---- actions and targets ------------------------------------------------------


def neighbours(greedy, grid):
    """Actions one planned channel one grid step from `greedy` (tuples of
    per-week values in channel order; grid: one sorted value list per
    channel), down before up, channel by channel: notifd's order."""
    out = []
    for k, v in enumerate(greedy):
        values = grid[k]
        if v not in values:
            continue
        i = values.index(v)
        for j in (i - 1, i + 1):
            if 0 <= j < len(values):
                a = list(greedy)
                a[k] = values[j]
                out.append(tuple(a))
    return out


class Target:
    """A target policy over plans: probs(greedy, K, grid) -> {action: p}
    (and the logged utility gaps when uses_gaps is set)."""

    uses_gaps = False

    def __init__(self, name, probs):
        self.name = name
        self.probs = probs

    def probs_for(self, u, grid):
        if self.uses_gaps:
            return self.probs(u["greedy"], u["k"], grid, u.get("gaps"))
        return self.probs(u["greedy"], u["k"], grid)


def target_greedy():
    return Target("greedy", lambda g, k, grid: {g: 1.0})


def target_explore(eps):
    """notifd's exploring planner at another slow.explore_prob."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError("explore probability must be in [0, 1], not %r" % eps)

    def probs(g, k, grid):
        nb = neighbours(g, grid)
        if k <= 0 or not nb or eps == 0:
            return {g: 1.0}
        # K from the log counts only the neighbours notifd allowed (never an
        # opted-out channel's); the grid may hold more. A logged neighbour
        # always had eps / K; the rest of the grid's are not in the support.
        out = {g: 1.0 - eps}
        for a in nb:
            out[a] = eps / k
        if len(nb) != k:
            # Which neighbours were refused is not logged: keep the total
            # mass right for DR's direct term by spreading it evenly.
            for a in nb:
                out[a] = eps / len(nb)
        return out
    return Target("explore:%g" % eps, probs)


def target_shift(channel_index, step, label):
    """The greedy plan with one channel moved `step` grid steps (+1 one
    message more on the grid, -1 one fewer); the greedy plan where the grid
    ends."""
    def probs(g, k, grid):
        values = grid[channel_index]
        if g[channel_index] not in values:
            return {g: 1.0}
        i = values.index(g[channel_index]) + step
        if not 0 <= i < len(values):
            return {g: 1.0}
        a = list(g)
        a[channel_index] = values[i]
        return {tuple(a): 1.0}
    return Target(label, probs)


def target_cost(delta, label=None):
    """The greedy planner at slow.message_cost + delta, among the logged
    plan's greedy action and its neighbours: U'(a) = U(a) - delta * M(a),
    with U(g) - U(neighbour j) the logged gap j and M the messages a week
    (every channel's cost multiplier 1, notifd's default). Ties go to fewer
    messages, as notifd's argmax does. A plan logged without gaps keeps its
    greedy action. For a small delta the argmax moves at most one step, so
    this is the policy notifd would run at that cost; a larger delta moves
    some members further than the neighbourhood, which this cannot see."""
    def probs(g, k, grid, gaps=None):
        nb = neighbours(g, grid)
        if not gaps or len(gaps) != len(nb):
            return {g: 1.0}
        best, best_u, best_m = g, 0.0, sum(g)
        for a, gap in zip(nb, gaps):
            u = -gap - delta * (sum(a) - sum(g))
            m = sum(a)
            if u > best_u + 1e-12 or (abs(u - best_u) <= 1e-12 and m < best_m):
                best, best_u, best_m = a, u, m
        return {best: 1.0}
    t = Target(label or "cost:%+g" % delta, probs)
    t.uses_gaps = True
    return t


# ---- the reward model for DR ---------------------------------------------------


def horizon_reward(u, metric):
    """R: the unit's reward over its horizon (its own week's without one)."""
    return u.get("reward_h", u["reward"])[metric]


def fit_reward_model(units, metric, shrink=20.0):
    """q(x, a) = b_member + tau(greedy, a).

    b_member is the member's mean reward over its *other* logged weeks
    (leave one out, so a unit's own reward never enters its baseline; the
    global mean for a member seen once). tau is the mean of (r - b) over
    units with the same greedy plan and action, shrunk toward 0 with
    `shrink` pseudo-units: an empirical-Bayes cell effect. The baseline
    takes out most of the between-member variance, which is what makes DR's
    interval narrow; tau carries the dose-response."""
    by_member = {}
    for u in units:
        s = by_member.setdefault(u["member"], [0.0, 0])
        s[0] += horizon_reward(u, metric)
        s[1] += 1
    total = sum(s[0] for s in by_member.values())
    count = sum(s[1] for s in by_member.values())
    global_mean = total / count if count else 0.0

    def baseline(u):
        s, n = by_member[u["member"]]
        if n <= 1:
            return global_mean
        return (s - horizon_reward(u, metric)) / (n - 1)

    cells = {}
    for u in units:
        c = cells.setdefault((u["greedy"], u["action"]), [0.0, 0])
        c[0] += horizon_reward(u, metric) - baseline(u)
        c[1] += 1

    def tau(g, a):
        c = cells.get((g, a))
        if c is None:
            return 0.0
        return c[0] / (c[1] + shrink)

    def q(u, a):
        return baseline(u) + tau(u["greedy"], a)
    return q


# ---- estimates -------------------------------------------------------------------


def unit_terms(units, target, metric, grid, q=None):
    """Per unit: (member, w, w*R, dr_term, R, r): R over the horizon, r the
    week's own reward. Units whose logged propensity is
    not in (0, 1] are an error: the log is broken, not the estimate."""
    out = []
    for u in units:
        p0 = u["p0"]
        if not (0.0 < p0 <= 1.0):
            raise ValueError("member %s week %s: logged propensity %r is not in (0, 1]"
                             % (u["member"], u["week"], p0))
        pi = target.probs_for(u, grid)
        w = pi.get(u["action"], 0.0) / p0
        r = horizon_reward(u, metric)
        if q is not None:
            direct = sum(p * q(u, a) for a, p in pi.items())
            dr = direct + w * (r - q(u, u["action"]))
        else:
            dr = w * r
        out.append((u["member"], w, w * r, dr, r, u["reward"][metric]))
    return out


NAN = float("nan")


def estimates_from_sums(n, sw, swr, sdr, sw2, sr=0.0, sr1=None):
    """IPS, SNIPS, DR, ESS and the on-policy weekly mean from the sums over
    units, and each estimate's difference from the on-policy mean (d_*).
    sr sums R (the horizon's reward), sr1 the weeks' own (= sr without a
    horizon); each value is the weekly mean plus its difference."""
    if sr1 is None:
        sr1 = sr
    if n == 0:
        return {"ips": NAN, "snips": NAN, "dr": NAN, "ess": 0.0, "logged": NAN,
                "d_ips": NAN, "d_snips": NAN, "d_dr": NAN}
    logged = sr1 / n
    d_ips = (swr - sr) / n
    d_snips = swr / sw - sr / n if sw > 0 else NAN
    d_dr = (sdr - sr) / n
    return {
        "ips": logged + d_ips,
        "snips": logged + d_snips,
        "dr": logged + d_dr,
        "ess": sw * sw / sw2 if sw2 > 0 else 0.0,
        "logged": logged,
        "d_ips": d_ips,
        "d_snips": d_snips,
        "d_dr": d_dr,
    }


def member_sums(terms):
    """Per member: [n, sum w, sum w R, sum dr, sum w^2, sum R, sum r]."""
    sums = {}
    for member, w, wr, dr, r, r1 in terms:
        s = sums.setdefault(member, [0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        s[0] += 1
        s[1] += w
        s[2] += wr
        s[3] += dr
        s[4] += w * w
        s[5] += r
        s[6] += r1
    return list(sums.values())


def percentile(sorted_values, q):
    """Linear interpolation between order statistics (q in [0, 1])."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def evaluate(units, target, metric, grid, bootstrap=200, level=0.95, seed=1, use_dr=True):
    """Point estimates, ESS, differences from the logged mean and bootstrap
    intervals of one target."""
    q = fit_reward_model(units, metric) if use_dr else None
    terms = unit_terms(units, target, metric, grid, q)
    return evaluate_terms(terms, target.name, metric, len(units), bootstrap, level, seed)


def evaluate_terms(terms, name, metric, n_units, bootstrap=200, level=0.95, seed=1):
    """evaluate() from unit_terms() output."""
    per_member = member_sums(terms)
    tot = [sum(s[i] for s in per_member) for i in range(7)]
    point = estimates_from_sums(*tot)
    rng = random.Random(seed)
    keys = ("ips", "snips", "dr", "d_ips", "d_snips", "d_dr")
    reps = {k: [] for k in keys}
    m = len(per_member)
    for _ in range(bootstrap if m else 0):
        acc = [0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        for _j in range(m):
            s = per_member[rng.randrange(m)]
            for i in range(7):
                acc[i] += s[i]
        e = estimates_from_sums(*acc)
        for k in keys:
            if not math.isnan(e[k]):
                reps[k].append(e[k])
    alpha = (1.0 - level) / 2.0
    ci = {}
    for k, v in reps.items():
        v.sort()
        ci[k] = (percentile(v, alpha), percentile(v, 1.0 - alpha)) if v else (NAN, NAN)
    return {"target": name, "metric": metric, "units": n_units, "members": m,
            "matched": sum(1 for t in terms if t[1] > 0), **point, "ci": ci}


def mean_difference(a, b, bootstrap=200, level=0.95, seed=1):
    """mean(a) - mean(b) of two groups of per-member (sum, count) pairs, with
    a bootstrap interval resampling members within each group."""
    def mean(groups):
        s = sum(g[0] for g in groups)
        n = sum(g[1] for g in groups)
        return s / n if n else float("nan")
    point = mean(a) - mean(b)
    rng = random.Random(seed)
    reps = []
    for _ in range(bootstrap if a and b else 0):
        ra = [a[rng.randrange(len(a))] for _j in range(len(a))]
        rb = [b[rng.randrange(len(b))] for _j in range(len(b))]
        reps.append(mean(ra) - mean(rb))
    reps.sort()
    alpha = (1.0 - level) / 2.0
    return point, (percentile(reps, alpha), percentile(reps, 1.0 - alpha))


# ---- dose-response by group, pooled ---------------------------------------------


def group_differences(units, target, metric, grid, key, q=None):
    """Per group (key(unit)): the DR difference of `target` from the logged
    policy, (1/n) sum (dr_i - R_i), with its variance from member clusters
    (a member's weeks are not independent). Returns {group: (d, var, n)}."""
    q = q or fit_reward_model(units, metric)
    groups = {}
    for u, t in zip(units, unit_terms(units, target, metric, grid, q)):
        groups.setdefault(key(u), []).append((t[0], t[3] - t[4]))
    out = {}
    for g, rows in groups.items():
        n = len(rows)
        d = sum(x for _m, x in rows) / n
        per_member = {}
        for m, x in rows:
            per_member[m] = per_member.get(m, 0.0) + (x - d)
        var = sum(s * s for s in per_member.values()) / (n * n)
        out[g] = (d, var, n)
    return out


def eb_pool(estimates):
    """Empirical-Bayes pooling of noisy group estimates {g: (d, var, n)}:
    d_g ~ N(theta_g, var_g), theta_g ~ N(mu, tau2). mu is the precision-
    weighted mean, tau2 the method-of-moments between-group variance
    (DerSimonian-Laird, floored at 0); each group's posterior mean is
    mu + tau2 / (tau2 + var_g) * (d_g - mu): a group with little data leans
    on the others, one with much data keeps its own. Returns
    (mu, tau2, {g: posterior mean}); a group with zero variance gets mu."""
    items = [(g, d, v) for g, (d, v, _n) in estimates.items() if v > 0 and not math.isnan(d)]
    if not items:
        return NAN, 0.0, {}
    w = [1.0 / v for _g, _d, v in items]
    sw = sum(w)
    mu_fixed = sum(wi * d for wi, (_g, d, _v) in zip(w, items)) / sw
    qstat = sum(wi * (d - mu_fixed) ** 2 for wi, (_g, d, _v) in zip(w, items))
    k = len(items)
    denom = sw - sum(wi * wi for wi in w) / sw
    tau2 = max(0.0, (qstat - (k - 1)) / denom) if k > 1 and denom > 0 else 0.0
    wr = [1.0 / (v + tau2) for _g, _d, v in items]
    mu = sum(wi * d for wi, (_g, d, _v) in zip(wr, items)) / sum(wr)
    post = {g: mu + (tau2 / (tau2 + v)) * (d - mu) for g, d, v in items}
    # A group whose estimate has no spread at all (no event in any of its
    # weeks, e.g. no opt-out) says nothing about its noise: it takes the
    # pooled mean rather than an exact 0.
    for g, (d, v, _n) in estimates.items():
        if g not in post and not math.isnan(d):
            post[g] = mu
    return mu, tau2, post
