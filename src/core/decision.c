/*
 * decision.c - the fast policy as a pure function (see decision.h).
 */
#include "notifd/core/decision.h"

#include <math.h>
#include <string.h>

#include "notifd/core/calendar.h"
#include "notifd/lib/number_format.h"
#include "notifd/lib/number_parse.h"
#include "notifd/core/pacing.h"
#include "notifd/lib/rng.h"

static const char *const reason_names[REASON_COUNT] = {
#define REASON_NAME(id, name) [REASON_##id] = name,
    DECISION_REASONS(REASON_NAME)
#undef REASON_NAME
};

const char *decision_reason_name(decision_reason_t r)
{
    return (r >= 0 && r < REASON_COUNT) ? reason_names[r] : "unknown";
}

/* A guardrail outcome is certain given the state, so its propensity is 1. */
static void finish_guardrail(decision_t *out, decision_reason_t reason)
{
    out->reason = reason;
    out->send = false;
    out->chosen = -1;
    out->p_send = 0.0;
    out->propensity = 1.0;
}

/* When, as a share of the week, the 7-day cap last made room before ts:
 * the rolling-th latest send before ts plus 7 days, if that falls in this
 * week; 0 when the cap is not enforced or did not block this week. */
static double unblocked_from(const decision_input_t *in, int64_t rolling)
{
    if (rolling <= 0 || in->recent_sends == NULL || (size_t)rolling > in->n_recent_sends)
        return 0.0;
    int64_t bound = in->ts; /* the k-th latest send before ts, by selection */
    int64_t kth = INT64_MIN;
    for (int64_t k = 0; k < rolling; k++) {
        kth = INT64_MIN;
        for (size_t i = 0; i < in->n_recent_sends; i++)
            if (in->recent_sends[i] < bound && in->recent_sends[i] > kth)
                kth = in->recent_sends[i];
        if (kth == INT64_MIN)
            return 0.0; /* fewer than `rolling` sends before ts */
        bound = kth;
    }
    const int64_t week_start = calendar_week_start(in->ts, in->tz_offset_min);
    const int64_t free_at = kth + DECISION_ROLLING_WINDOW_S;
    if (free_at <= week_start)
        return 0.0;
    return pacing_week_fraction_elapsed(&in->fast->pacing, free_at - week_start);
}

/* Marks the candidates sent within the dedup window ineligible; returns
 * how many remain. */
static size_t mark_eligible(const decision_input_t *in)
{
    size_t eligible = 0;
    double dedup_after = (double)in->ts - (double)in->fast->dedup_days * 86400.0;
    for (size_t i = 0; i < in->n_candidates; i++) {
        bool recent = in->fast->dedup_days > 0 && in->last_sent_ts != NULL &&
                      in->last_sent_ts[i] >= 0 && in->last_sent_ts[i] > dedup_after;
        in->candidates[i].eligible = !recent;
        eligible += !recent;
    }
    return eligible;
}

/* The highest class among the eligible candidates (normal when none). */
static message_priority_t top_class(const decision_input_t *in)
{
    message_priority_t top = PRIORITY_NORMAL;
    for (size_t i = 0; i < in->n_candidates; i++)
        if (in->candidates[i].eligible && in->candidates[i].priority > top)
            top = in->candidates[i].priority;
    return top;
}

/* Only the class considered competes: the others are set aside. */
static void keep_class(const decision_input_t *in, message_priority_t top)
{
    for (size_t i = 0; i < in->n_candidates; i++)
        if (in->candidates[i].priority != top)
            in->candidates[i].eligible = false;
}

/* The best of the candidates still eligible, as ranker_choose picks it;
 * fills best_score. Draws from rng first, so the coin's draw follows. */
static int rank(const decision_input_t *in, rng_t *rng, decision_t *out)
{
    int chosen = ranker_choose(&in->fast->ranker[in->channel], &in->fast->exploration,
                               in->member_open_rate, in->candidates, in->n_candidates, rng,
                               in->utility, in->select_prob);
    double best = -INFINITY;
    for (size_t i = 0; i < in->n_candidates; i++)
        if (in->candidates[i].eligible && in->utility[i] > best)
            best = in->utility[i];
    /* The best utility as the recent-scores list keeps it (five significant
     * digits): compared with its own earlier values at full precision, a
     * repeated message that rounded up would rank below itself and never
     * clear the quality bar. */
    out->best_score = decision_round_score(best);
    out->chosen = chosen;
    return chosen;
}

/* A transactional message: the best one goes now, whatever the coin, the
 * caps, quiet hours and the holdout say, and it spends no budget. It is not
 * an opportunity of the plan, so it leaves pacing's history alone. */
static void send_transactional(const decision_input_t *in, decision_t *out)
{
    rng_t rng;
    rng_seed_decision(&rng, in->seed, in->member, in->member_len, in->opportunity,
                      in->opportunity_len);
    keep_class(in, PRIORITY_TRANSACTIONAL);
    int chosen = rank(in, &rng, out);
    out->unpaced = true;
    out->reason = REASON_SEND;
    out->send = true;
    out->p_send = 1.0;
    out->propensity = in->select_prob[chosen];
}

void decision_evaluate(const decision_input_t *in, decision_t *out)
{
    const fast_config_t *fast = in->fast;
    *out = (decision_t){.chosen = -1, .cap = -1, .rolling_cap = -1, .propensity = 1.0};

    size_t eligible = mark_eligible(in);
    const message_priority_t top = top_class(in);
    out->priority = top;
    const bool transactional = top == PRIORITY_TRANSACTIONAL;
    if (in->unsubscribed && !(transactional && !fast->transactional_respects_optout)) {
        finish_guardrail(out, REASON_UNSUBSCRIBED);
        return;
    }
    if (transactional) {
        send_transactional(in, out);
        return;
    }
    int64_t retry_at = 0;
    if (calendar_in_quiet_hours(&fast->quiet_hours, in->ts, in->tz_offset_min, &retry_at)) {
        finish_guardrail(out, REASON_QUIET_HOURS);
        out->retry_at = retry_at;
        return;
    }
    if (in->n_candidates == 0) {
        finish_guardrail(out, REASON_NO_CANDIDATES);
        return;
    }
    if (eligible == 0) {
        finish_guardrail(out, REASON_ALL_FILTERED);
        return;
    }
    /* The permanent holdout gets nothing the policy paces: every channel in
     * threshold mode, every planned or defaulted channel in hierarchical
     * mode. An unpaced channel (fast.unpaced_channels) is outside the
     * policy, so it still goes. Certain given the member: propensity 1. */
    if (in->holdout && (fast->mode == FAST_MODE_THRESHOLD || in->plan == NULL ||
                        plan_has_channel(in->plan, in->channel))) {
        finish_guardrail(out, REASON_HOLDOUT);
        return;
    }

    /* Draw order is fixed (ranking, then the coin) so a replay of the same
     * inputs reproduces the same decision. */
    rng_t rng;
    rng_seed_decision(&rng, in->seed, in->member, in->member_len, in->opportunity,
                      in->opportunity_len);
    const bool high = top == PRIORITY_HIGH;
    if (high)
        keep_class(in, PRIORITY_HIGH);
    int chosen = rank(in, &rng, out);
    const double best = out->best_score;
    out->have_best = true;
    out->reached_coin = true;
    double p_select = chosen >= 0 ? in->select_prob[chosen] : 0.0;

    if (fast->mode == FAST_MODE_THRESHOLD || in->plan == NULL) {
        /* The previous system: deterministic given the calibrated threshold,
         * which a high-priority message passes as it passes the coin. */
        bool send = high || in->threshold == NULL || threshold_should_send(in->threshold, best);
        out->p_send = send ? 1.0 : 0.0;
        out->send = send;
        out->reason = send ? REASON_SEND : REASON_PACED_SKIP;
        out->propensity = send ? p_select : 1.0;
        if (!send)
            out->chosen = -1;
        return;
    }

    double p;
    if (!plan_has_channel(in->plan, in->channel)) {
        /* An unplanned channel (in-app by default) is not paced: the best
         * message goes whenever the guardrails allow. */
        p = 1.0;
    } else {
        double per_week = in->plan->per_week[in->channel];
        out->cap = (int64_t)pacing_weekly_cap(per_week, fast->cap_factor);
        if ((int64_t)in->sent_this_week >= out->cap) {
            finish_guardrail(out, REASON_CAP_REACHED);
            return;
        }
        /* A cap over the last 7 days, whatever the calendar says. Only
         * caps the kept send times can prove are enforced this way. */
        if (fast->rolling_cap) {
            int64_t rolling = decision_rolling_cap(out->cap, per_week, fast->rolling_cap_factor,
                                                   fast->rolling_cap_min_slack);
            if (rolling <= DECISION_MAX_RECENT_SENDS) {
                out->rolling_cap = rolling;
                if ((int64_t)decision_sends_in_window(in->recent_sends, in->n_recent_sends,
                                                      in->ts) >= rolling) {
                    finish_guardrail(out, REASON_CAP_REACHED);
                    return;
                }
            }
        }
        int64_t week = calendar_week_index(in->ts, in->tz_offset_min);
        pacing_input_t pin = {
            .per_week = per_week,
            .sent_this_week = in->sent_this_week,
            .fraction_balance = in->fraction_balance,
            /* Only a fraction's chance looks at it (pacing.h). */
            .unblocked_from = pacing_extra_share(per_week, 0.0) > 0.0
                                  ? unblocked_from(in, out->rolling_cap)
                                  : 0.0,
            .expected_opportunities = in->expected_opportunities,
            .seconds_into_week = calendar_seconds_into_week(in->ts, in->tz_offset_min),
            .week_index = week,
            .member_phase = pacing_member_phase(in->seed, in->member, in->member_len,
                                                in->channel_name, strlen(in->channel_name)),
            .best_score = best,
            .recent_best_scores = in->recent_best,
            .n_recent = in->n_recent,
        };
        /* A high-priority message skips the coin, not the caps above, and
         * its send spends the week's budget like any other. */
        p = high ? 1.0 : pacing_send_probability(&fast->pacing, &pin);
    }
    double u = rng_next_unit(&rng);
    out->p_send = p;
    out->send = u < p;
    if (out->send) {
        out->reason = REASON_SEND;
        out->propensity = p * p_select;
    } else {
        out->reason = REASON_PACED_SKIP;
        out->propensity = 1.0 - p;
        out->chosen = -1;
    }
}

size_t decision_sends_in_window(const int64_t *times, size_t n, int64_t ts)
{
    size_t count = 0;
    for (size_t i = 0; times != NULL && i < n; i++)
        count += times[i] > ts - DECISION_ROLLING_WINDOW_S && times[i] < ts + DECISION_ROLLING_WINDOW_S;
    return count;
}

int64_t decision_rolling_cap(int64_t weekly_cap, double per_week, double factor, int min_slack)
{
    if (!(per_week > 0.0))
        return weekly_cap;
    double extra = per_week * (factor - 1.0);
    if (!(extra > 0.0))
        extra = 0.0;
    if (extra > 1e6)
        extra = 1e6;
    int64_t slack = (int64_t)floor(extra + 1e-9);
    return weekly_cap + (slack > min_slack ? slack : min_slack);
}

double decision_round_score(double x)
{
    char buf[NUMBER_FORMAT_MAX];
    double r;
    if (!isfinite(x))
        return x;
    size_t n = number_format_g(buf, x, DECISION_SCORE_DIGITS);
    return number_parse(buf, n, &r) ? r : x;
}
/* Week indexes beyond this (a hostile or corrupt store: real ones are a
 * few 10^5) fold nothing, so no week arithmetic below can overflow. */
#define FOLD_WEEK_LIMIT ((int64_t)1 << 40)

static bool week_sane(int64_t w) { return w > -FOLD_WEEK_LIMIT && w < FOLD_WEEK_LIMIT; }

/* A week's opportunity count as the EWMA takes it: anything but a finite
 * count >= 0 is no opportunity. */
static double sane_count(double x) { return x >= 0 && isfinite(x) ? x : 0.0; }

void decision_fold_history(const opportunity_history_t *h, int64_t week, double alpha,
                           double per_week, opportunity_fold_t *out)
{
    *out = (opportunity_fold_t){0};
    bool have = h->have_ewma && h->ewma >= 0 && isfinite(h->ewma);
    double ewma = have ? h->ewma : 0.0;
    /* A whole plan (or none) has no balance: pacing_balance_update() gives
     * 0 for it, and a stored one left over from a fractional plan is
     * cleared below. */
    const bool fractional = pacing_extra_share(per_week, 0.0) > 0.0;
    const double stored = h->have_balance && isfinite(h->balance) ? h->balance : 0.0;
    double balance = fractional ? stored : 0.0;
    bool have_ewma_week = h->have_ewma_week && week_sane(h->ewma_week);
    if (!h->have_first_week || !week_sane(h->first_week) || !week_sane(week)) {
        out->expected = have ? ewma : -1.0;
        out->balance = balance;
        out->store_balance = h->have_balance ? balance != h->balance : balance != 0.0;
        return;
    }
    /* Weeks after `week` (first_week or ewma_week from the future, as an
     * out-of-order ts sees them) leave nothing to fold: from > week - 1. */
    int64_t last = have_ewma_week ? h->ewma_week : h->first_week - 1;
    int64_t from = last + 1 > week - 2 ? last + 1 : week - 2;
    bool value_changed = false;
    for (int64_t wk = from; wk <= week - 1; wk++) {
        if (wk < h->first_week)
            continue;
        double count = sane_count(h->counts[wk - (week - 2)]);
        double seen = 1.0;
        if (wk == h->first_week) {
            seen = h->first_fraction > 0 && h->first_fraction <= 1 ? h->first_fraction : 1.0;
            if (seen < 0.25) {
                last = wk;
                continue;
            }
            count /= seen;
        }
        ewma = pacing_ewma_update(ewma, have, count, alpha);
        have = true;
        value_changed = true;
        /* A week without an opportunity could not have sent: it owes
         * nothing. counts[] holds weeks W-2..W, sent_before W-1 and W-2. */
        if (fractional && count > 0.0) {
            double sent = (double)h->sent_before[week - 1 - wk];
            balance = pacing_balance_update(balance, per_week, sent, seen);
        }
        last = wk;
    }
    if (!have_ewma_week || last != h->ewma_week) {
        if (last >= h->first_week) {
            out->store_ewma_week = true;
            out->ewma_week = last;
        }
    }
    if (value_changed) {
        out->store_ewma = true;
        out->ewma = ewma;
    }
    out->expected = have ? ewma : -1.0;
    out->balance = balance;
    /* Written when it moved (a NaN stored never equals anything). */
    out->store_balance = h->have_balance ? balance != h->balance : balance != 0.0;
}
