/*
 * estimate.c - empirical-Bayes response parameters of a member (see
 * estimate.h and docs/slow-policy.md).
 *
 * Every estimate has the form (count + strength * prior) / (n + strength):
 * the posterior mean of a Beta (rates per message) or Gamma (visits per day)
 * prior with that many pseudo-observations. It costs a handful of divisions
 * and one expm1 (inside features_exposure_days), which matters because the
 * planner runs it for every member every week.
 */
#include "notifd/lib/errbuf.h"
#include "notifd/core/estimate.h"
#include "notifd/core/score_prior.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The prior value blended with `count` observed over `n` trials. */
static double shrink(double count, double n, double prior, double strength)
{
    return (count + strength * prior) / (n + strength);
}

static double min2(double a, double b) { return a < b ? a : b; }
static double max2(double a, double b) { return a > b ? a : b; }

void slow_channel_prior_defaults(slow_channel_prior_t *out, const char *channel_name)
{
    /* Push: a few percent open, dismissals are common. Email: rarely
     * dismissed explicitly, opt-outs rarer per message. The strengths say how
     * many messages of a member's own history count as much as the
     * population: opt-outs are rare events, so their prior is held far more
     * firmly.
     * fatigue (phi0) is how fast the response falls with each extra message
     * of a week, whatever the cause. Part is the member tiring; the larger
     * part, with quality pacing, is selection: the fast policy sends the
     * week's best opportunities first, so the second message of a week is a
     * worse one than the first, and a plan delivered in full must send
     * each week's last one whatever the week's moments were. 1.5 (each
     * extra message worth ~22% of the one before): at 0.5 (~60%, what
     * notifd-sim measures between its cohorts for opens per send, 0.45 to
     * 0.75 from one weekly message to two) the planner bought volume the
     * baseline spends better: at message costs of 0.02 and below it lost to
     * the baseline at the same volume, at 1.5 it beats it at every cost
     * from 0.005 to 0.05 (not at 0), with the same lift at the default cost
     * (docs/simulation.md, "A fatigue prior of 1.5"). 0.2 and 0.3 planned
     * every responsive member up to its opt-out tolerance. Email has fewer
     * opportunities to pick from (a digest a day), so it selects no better
     * than push. */
    if (channel_name != NULL && strcmp(channel_name, "push") == 0) {
        *out = (slow_channel_prior_t){
            .open_rate = 0.10, .dismiss_rate = 0.10, .unsub_rate = 0.002,
            .fatigue = 1.50, .open_strength = 20.0, .dismiss_strength = 20.0,
            .unsub_strength = 500.0,
        };
    } else if (channel_name != NULL && strcmp(channel_name, "email") == 0) {
        *out = (slow_channel_prior_t){
            .open_rate = 0.06, .dismiss_rate = 0.02, .unsub_rate = 0.001,
            .fatigue = 1.50, .open_strength = 20.0, .dismiss_strength = 50.0,
            .unsub_strength = 1000.0,
        };
    } else {
        *out = (slow_channel_prior_t){
            .open_rate = 0.05, .dismiss_rate = 0.05, .unsub_rate = 0.0005,
            .fatigue = 0.10, .open_strength = 20.0, .dismiss_strength = 20.0,
            .unsub_strength = 1000.0,
        };
    }
}

void slow_priors_defaults(slow_priors_t *p, const char *const *channel_names,
                          int n_channels)
{
    memset(p, 0, sizeof(*p));
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        const char *name = channel_names != NULL && c < n_channels ? channel_names[c]
                                                                   : NULL;
        slow_channel_prior_defaults(&p->channel[c], name);
    }
    p->fatigue_from_dismiss = 0.75;
    /* Five opens' worth: a member must show a handful of opens on push
     * before their email prior moves much, and a few dozen before it roughly
     * follows. At 2, every member who opened a few pushes was planned email
     * as well, and email sends, opened half as often, cost visits
     * (docs/simulation.md). */
    p->responsiveness_strength = 5.0;
    /* A mixed population: casual members visit about monthly, heavy ones
     * daily; 0.3 a day is a typical member. Two weeks of observation count as
     * much as the prior. */
    p->visit_rate = 0.3;
    p->visit_rate_strength = 14.0;
    /* An opened message is followed by a visit within the window most of the
     * time; 10 opens of evidence count as much as the prior. */
    p->visits_per_open = 0.6;
    p->visits_per_open_strength = 10.0;
    /* A day: long enough that a member who visits daily would have come back
     * within it anyway, which is what makes their reminders non-incremental. */
    p->attribution_window_s = NOTIFD_SECONDS_PER_DAY;
    /* The score prior (score_prior.h): the member's recent best scores,
     * as 50 pseudo-messages next to the population's 20, ranking members
     * around the population prior ("prior" calibration). In notifd-sim it
     * found the regular members worth a message: their loss against the
     * baseline halved in every world it was not tuned on, and the overall
     * lift rose (docs/simulation.md, "A score prior for the members
     * planned nothing"). The "opens" calibration raised every member's
     * rate and the volume threefold, and lost. */
    p->score_strength = 50.0;
    p->score_calibration = SCORE_CALIBRATION_PRIOR;
}


static bool in_unit(double x) { return x >= 0.0 && x <= 1.0; }
static bool positive(double x) { return isfinite(x) && x > 0.0; }

int slow_priors_check(const slow_priors_t *p, int n_channels, char *err,
                      size_t errlen)
{
    if (n_channels < 1 || n_channels > NOTIFD_MAX_CHANNELS)
        return errbuf_fail(err, errlen, "channel count %d out of range", n_channels);
    for (int c = 0; c < n_channels; c++) {
        const slow_channel_prior_t *q = &p->channel[c];
        if (!in_unit(q->open_rate) || !(q->open_rate > 0.0))
            return errbuf_fail(err, errlen, "channel %d: open_rate must be in (0, 1]", c);
        if (!in_unit(q->dismiss_rate) || !(q->dismiss_rate > 0.0))
            return errbuf_fail(err, errlen, "channel %d: dismiss_rate must be in (0, 1]", c);
        if (!in_unit(q->unsub_rate))
            return errbuf_fail(err, errlen, "channel %d: unsub_rate must be in [0, 1]", c);
        if (!isfinite(q->fatigue) || q->fatigue < 0.0 || q->fatigue > 10.0)
            return errbuf_fail(err, errlen, "channel %d: fatigue must be in [0, 10]", c);
        if (!positive(q->open_strength) || !positive(q->dismiss_strength) ||
            !positive(q->unsub_strength))
            return errbuf_fail(err, errlen, "channel %d: strengths must be > 0", c);
    }
    if (!in_unit(p->fatigue_from_dismiss))
        return errbuf_fail(err, errlen, "fatigue_from_dismiss must be in [0, 1]");
    if (!positive(p->responsiveness_strength))
        return errbuf_fail(err, errlen, "responsiveness_strength must be > 0");
    if (!isfinite(p->visit_rate) || p->visit_rate < 0.0)
        return errbuf_fail(err, errlen, "visit_rate must be >= 0");
    if (!isfinite(p->visits_per_open) || p->visits_per_open < 0.0)
        return errbuf_fail(err, errlen, "visits_per_open must be >= 0");
    if (!positive(p->visit_rate_strength) || !positive(p->visits_per_open_strength))
        return errbuf_fail(err, errlen, "visit strengths must be > 0");
    if (!isfinite(p->score_strength) || p->score_strength < 0.0)
        return errbuf_fail(err, errlen, "score_strength must be >= 0");
    if (!positive(p->attribution_window_s))
        return errbuf_fail(err, errlen, "attribution_window_s must be > 0");
    return 0;
}

double lift_prior(double visits_per_open, double visits_anyway)
{
    /* A visit an open brings is extra only if the member would not have come
     * within the window anyway: with organic visits at rate lambda (Poisson)
     * that is the chance of none in W, e^(-lambda W). */
    return visits_per_open * exp(-max2(0.0, visits_anyway));
}

double estimate_lift(double visit_attr, double opens, double visits_anyway,
                     const slow_priors_t *p)
{
    /* The data are the visits inside windows beyond what would have come
     * anyway, summed over the opens; that excess, not the raw count, is
     * shrunk, toward a prior that already knows a frequent visitor gains
     * little. Shrinking the raw count toward a fixed visits_per_open instead
     * (as before) put every member with few opens near 0.6 - lambda W: a
     * member who visits every other day got about 0.1 where the truth in
     * notifd-sim is 0.36, and was planned almost nothing. */
    double excess = visit_attr - visits_anyway * opens;
    double prior = lift_prior(p->visits_per_open, visits_anyway);
    return max2(0.0, shrink(excess, opens, prior, p->visits_per_open_strength));
}

/* Whether the score evidence counts: switched on, and a probability. */
static bool score_counts(bool have_score, double score_open, double score_strength)
{
    return have_score && score_strength > 0.0 && isfinite(score_strength) &&
           score_open >= 0.0 && score_open <= 1.0;
}

double open_prior_strength(double open_strength, bool have_score, double score_strength)
{
    return open_strength + (score_counts(have_score, 0.5, score_strength) ? score_strength : 0.0);
}

double blend_open_prior(double population_prior, double open_strength, bool have_score,
                        double score_open, double score_strength)
{
    /* Two sources of pseudo-messages: the population's (open_strength of
     * them at its rate) and the member's own scores' (score_strength at the
     * rate they predict). The member's sends then count against both
     * through the one shrinkage, so data still override the scores. */
    if (!score_counts(have_score, score_open, score_strength))
        return population_prior;
    return (open_strength * population_prior + score_strength * score_open) /
           (open_strength + score_strength);
}

/* Messages the member faced on a channel and the opens among them (a click
 * implies an open; events beyond the messages are capped, see below). */
static double channel_messages(const channel_features_t *x) { return max2(x->sent, x->delivered); }
static double channel_opens(const channel_features_t *x)
{
    return min2(max2(x->open, x->click), channel_messages(x));
}

double member_responsiveness(const member_features_t *f, const slow_priors_t *p,
                             int channel)
{
    /* A member who opens push three times as often as the population will
     * open email more often than the population too (a member effect shared
     * by channels). Without this, a channel the member was never planned on
     * keeps its population prior for good, while the planned channel's
     * estimate comes from messages the fast policy picked for relevance: the
     * planner then compares a selected rate with an unselected one and never
     * tries the second channel. */
    double opens = 0.0, expected = 0.0;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        if (c == channel)
            continue;
        opens += channel_opens(&f->ch[c]);
        expected += p->channel[c].open_rate * channel_messages(&f->ch[c]);
    }
    const double s = p->responsiveness_strength;
    return (opens + s) / (expected + s);
}

void estimate_member(member_estimate_t *out, const member_features_t *f,
                     const slow_priors_t *p, int64_t now, double half_life_s)
{
    memset(out, 0, sizeof(*out));
    out->n_channels = f->n_channels;

    /* All NOTIFD_MAX_CHANNELS entries are estimated (unused ones are zero
     * counts, hence the prior), so a grid channel beyond f->n_channels gets
     * the prior rather than an all-zero, unavailable estimate. */
    double opens_all = 0.0;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        const channel_features_t *x = &f->ch[c];
        const slow_channel_prior_t *q = &p->channel[c];
        channel_estimate_t *e = &out->ch[c];

        /* Sends are what notifd decided; deliveries can exceed them when
         * another system also sends on the channel. Either way the larger
         * is the number of messages the member actually faced. A click
         * implies an open even if the open was not reported. Capping events
         * at n keeps every rate a probability when feedback arrives for
         * messages notifd never saw. */
        double n = channel_messages(x);
        double opens = max2(x->open, x->click);
        opens_all += opens;

        e->available = !x->unsub;
        e->responsiveness = member_responsiveness(f, p, c);
        double open_prior = min2(1.0, q->open_rate * e->responsiveness);
        bool scored = (x->has & FEATURES_HAS_SCORE_OPEN) != 0;
        double strength = open_prior_strength(q->open_strength, scored, p->score_strength);
        e->open_prior = blend_open_prior(open_prior, q->open_strength, scored, x->score_open,
                                         p->score_strength);
        e->p_open = shrink(channel_opens(x), n, e->open_prior, strength);
        e->dismiss_rate = shrink(min2(x->dismiss, n), n, q->dismiss_rate,
                                 q->dismiss_strength);
        e->unsub_hazard = shrink(min2(x->unsub_n, n), n, q->unsub_rate,
                                 q->unsub_strength);
        /* slow_priors_check() demands dismiss_rate > 0 only for configured
         * channels; an unused slot with a zero prior just keeps phi0. */
        double dismiss_ratio = q->dismiss_rate > 0.0 ? e->dismiss_rate / q->dismiss_rate
                                                     : 1.0;
        e->fatigue = q->fatigue * ((1.0 - p->fatigue_from_dismiss) +
                                   p->fatigue_from_dismiss * dismiss_ratio);
        e->data_weight = n / (n + strength);
    }

    /* Organic visit rate: visits outside attribution windows per day spent
     * outside them. Each open opens a window of W, so about opens * W of the
     * decayed exposure is not organic time (overlapping windows make this an
     * overestimate, clamped at 0, which only lends the prior more weight). */
    double window_days = p->attribution_window_s / NOTIFD_SECONDS_PER_DAY;
    double exposure = features_exposure_days(f, now, half_life_s);
    double organic_days = max2(0.0, exposure - opens_all * window_days);
    out->visit_rate = shrink(f->visit_org, organic_days, p->visit_rate,
                             p->visit_rate_strength);

    /* What would have come anyway: visit_attr counts every visit inside a
     * window, so its counterfactual is the expected *number* of organic
     * visits in W, lambda * W. */
    out->visits_anyway = out->visit_rate * window_days;
    out->lift = estimate_lift(f->visit_attr, opens_all, out->visits_anyway, p);
    out->visits_per_open = out->visits_anyway + out->lift;
}
