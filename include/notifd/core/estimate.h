/*
 * estimate.h - a member's response parameters, from features and priors.
 *
 * The slow policy needs, per channel, how likely a message is to be opened,
 * how fast response falls as weekly volume grows (fatigue), and how likely a
 * message is to make the member opt out; and, member-wide, how much an open
 * is worth: the visits it *causes*, not the visits that would have happened
 * anyway. Every parameter is an empirical-Bayes blend of the member's own
 * decayed counts and a population prior (config key slow.priors):
 *
 *     estimate = (data_count + strength * prior) / (data_exposure + strength)
 *
 * so the data weight is n / (n + strength): a member with no history gets the
 * prior exactly, and a long history dominates. docs/slow-policy.md writes out
 * every formula.
 *
 * Invariants: estimate_member() is a pure function of its arguments; every
 * output is finite, probabilities are in [0, 1], rates are >= 0, provided the
 * priors pass slow_priors_check().
 */
#ifndef NOTIFD_ESTIMATE_H
#define NOTIFD_ESTIMATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/features.h"
#include "notifd/core/types.h"

/* Population priors for one channel. Rates are per message sent. */
typedef struct slow_channel_prior {
    double open_rate;        /* P(open) of a message at low weekly volume */
    double dismiss_rate;     /* P(dismiss) per message */
    double unsub_rate;       /* P(opt-out) per message: the opt-out hazard */
    double fatigue;          /* phi0: the j-th message of a week is opened
                                with probability p * e^(-phi (j-1)) */
    double open_strength;    /* prior weight, in pseudo-messages */
    double dismiss_strength; /* also the strength of the fatigue estimate */
    double unsub_strength;
} slow_channel_prior_t;

typedef struct slow_priors {
    slow_channel_prior_t channel[NOTIFD_MAX_CHANNELS]; /* by configured index */
    /* Share of a member's fatigue that follows their dismiss rate:
     * phi = phi0 * ((1 - s) + s * dismiss_rate / prior dismiss_rate). Below 1
     * so a deployment whose producers never report dismissals still keeps a
     * floor of (1 - s) * phi0. */
    double fatigue_from_dismiss;
    /* How firmly a member's open rate on the other channels moves a
     * channel's prior, in pseudo-opens (member_responsiveness). */
    double responsiveness_strength;
    double visit_rate;           /* organic visits per day */
    double visit_rate_strength;  /* in pseudo-days of observation */
    /* Visits an open brings to a member who would not have come anyway; the
     * prior lift of a member with organic rate lambda is this times
     * e^(-lambda W) (lift_prior). */
    double visits_per_open;
    double visits_per_open_strength; /* in pseudo-opens, for the lift */
    double attribution_window_s; /* W: the same window the feedback writer
                                    uses to split visit_attr from visit_org */
    /* Weight of a channel's score-predicted open rate (score_open in the
     * features), in pseudo-messages, next to the population prior's
     * open_strength (default 50); 0 leaves it out and the planner does not
     * read the scores. */
    double score_strength;
    /* How the scores become a rate: score_calibration_mode_t (score_prior.h);
     * the planner applies it, the estimate only sees the rate. */
    int score_calibration;
} slow_priors_t;

/* What estimate_member() infers for one channel. */
typedef struct channel_estimate {
    bool available;      /* false: opted out, nothing may be planned */
    double p_open;       /* P(open) of the first message of a week */
    double responsiveness; /* rho: multiplier of the open_rate prior, from the other channels */
    double open_prior;   /* what p_open is shrunk toward: the population's, with the scores' */
    double fatigue;      /* phi >= 0 */
    double dismiss_rate; /* P(dismiss) per message */
    double unsub_hazard; /* h: P(opt-out) per message */
    double data_weight;  /* n / (n + open_strength), for diagnostics */
} channel_estimate_t;

typedef struct member_estimate {
    int n_channels;
    channel_estimate_t ch[NOTIFD_MAX_CHANNELS];
    double visit_rate;      /* lambda: organic visits per day */
    double visits_per_open; /* r = lambda W + lift: visits within W after an open */
    double visits_anyway;   /* lambda * W: organic visits expected within W */
    double lift;            /* visits an open causes (estimate_lift) */
} member_estimate_t;

/* Documented defaults for one channel: "push", "email", "in_app" have their
 * own; any other name gets the in_app values. */
void slow_channel_prior_defaults(slow_channel_prior_t *out, const char *channel_name);

/* All member-wide defaults, and per-channel defaults by name for the
 * n_channels configured channels (the rest get the generic values). */
void slow_priors_defaults(slow_priors_t *p, const char *const *channel_names,
                          int n_channels);

/* Returns 0 if every prior is in range (rates in [0,1] with open_rate and
 * dismiss_rate > 0, fatigue >= 0, strengths > 0, share in [0,1], window > 0),
 * else -1 with the reason in err[errlen]. */
int slow_priors_check(const slow_priors_t *p, int n_channels, char *err,
                      size_t errlen);

/* How much more (or less) than the population a member opens, judged from
 * the channels other than `channel`: (O + s) / (X + s), where O is the
 * member's opens on the other channels, X the opens the priors expected there
 * for the messages they got, and s = responsiveness_strength. 1 without
 * history elsewhere; the channel's own data are left out, so they enter its
 * estimate once, through its own shrinkage. */
double member_responsiveness(const member_features_t *f, const slow_priors_t *p,
                             int channel);

/* The lift a member with `visits_anyway` = lambda W organic visits per
 * window is expected to have before any of their own opens are seen:
 * visits_per_open * e^(-lambda W), the chance that the visit an open brings
 * is not one the member would have made within W anyway. Decreasing in
 * visits_anyway; visits_per_open at 0. */
double lift_prior(double visits_per_open, double visits_anyway);

/* The visits an open causes: the excess of attributed visits over what would
 * have come anyway, visit_attr - visits_anyway * opens, shrunk per open toward
 * lift_prior() with strength visits_per_open_strength, and floored at 0. With
 * no opens it is the prior; with many, the observed excess per open. */
double estimate_lift(double visit_attr, double opens, double visits_anyway,
                     const slow_priors_t *p);

/* The strength of a channel's open-rate prior, in pseudo-messages:
 * open_strength, plus score_strength when the member's scores predict an
 * open rate (have_score) and score_strength > 0. */
double open_prior_strength(double open_strength, bool have_score, double score_strength);

/* The open-rate prior a member's sends are shrunk toward: the population's
 * (population_prior, open_strength pseudo-messages) pooled with the rate the
 * member's scores predict (score_open, score_strength pseudo-messages):
 *     (open_strength * population_prior + score_strength * score_open)
 *         / (open_strength + score_strength).
 * The population prior alone without scores, with score_strength 0 or with a
 * score_open outside [0, 1]. */
double blend_open_prior(double population_prior, double open_strength, bool have_score,
                        double score_open, double score_strength);

/*
 * Estimates `out` from features already decayed to `now`
 * (features_decay_to) with the same half-life. Channels are f->n_channels.
 */
void estimate_member(member_estimate_t *out, const member_features_t *f,
                     const slow_priors_t *p, int64_t now, double half_life_s);

#endif
