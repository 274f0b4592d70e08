/*
 * sim_model.c - the hidden ground truth of notifd-sim's population.
 *
 * notifd never sees anything defined here: it only sees what a producer
 * would send it (opportunities with candidate scores) and what members do
 * (feedback events). The model is the story of docs/simulation.md told mechanically, with
 * every constant in one of the two tables below or in sim.h, and is written
 * to favour neither policy:
 *
 * - A member belongs to a cohort (casual, regular, heavy) and draws each
 *   parameter from a log-normal spread around the cohort's median.
 * - P(open) of message i on channel c at time t is
 *     min(0.95, open_c * relevance(m, i) * exp(-phi * F(t)))
 *   where relevance is log-normal with mean 1 (item appeal times a
 *   member-item affinity) and F is a fatigue stock: every message adds its
 *   channel's weight and F decays with a mean life of 5 days.
 * - The score a producer sends is a noisy signal of that probability (the
 *   short-term model of the previous single-policy system, which knows the
 *   member's responsiveness and current fatigue but not what a message
 *   *causes*): logit(score) = logit(P(open)) + N(0, 0.6).
 * - Visits: organic visits are a Poisson process (cohort rate); an open is
 *   followed by a visit with probability visit_per_open, and that visit
 *   replaces ("pulls forward") the next organic visit if one was due within a
 *   day. So a heavy member's message-driven visits are mostly visits they
 *   would have made anyway, and a casual member's are nearly all extra.
 * - Opt-out: each message on a channel carries a hazard
 *     unsub_c + 0.01 * max(0, V - tolerance) / tolerance
 *   where V is the messages on that channel in the last 7 days.
 * - Dismissals (the observable "too much"): an unopened message is dismissed
 *   with probability dismiss_c * (1 + 3 * (1 - exp(-phi * F))).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/lib/hash.h"
#include "sim.h"

/* Cohort medians. Casual members visit about twice a month, open a rested
 * push often and follow it with a visit, but tire fast and tolerate few
 * messages; heavy members visit several times a day and open the most (the
 * service is part of their routine), so their opens are what a short-term
 * model scores highest, yet most of their message-driven visits would have
 * happened anyway. */
const cohort_def_t sim_cohorts[SIM_MAX_COHORTS] = {
    {"casual", 0.06, {0.18, 0.09, 0.10}, 0.80, 0.50, 2.0},
    {"regular", 0.50, {0.14, 0.07, 0.10}, 0.60, 0.20, 4.0},
    {"heavy", 2.50, {0.22, 0.11, 0.15}, 0.50, 0.08, 8.0},
};

/* Push: ~1.5 opportunities a day, opened within half an hour, dismissed now
 * and then. Email: one digest most days, opened hours later, rarely
 * dismissed explicitly, weighs less on fatigue. In-app: shown while the
 * member is around; light. */
const channel_def_t sim_channel_defs[SIM_MAX_CHANNELS] = {
    {"push", 1.5, 0.06, 0.0008, 1800.0, 1.0},
    {"email", 0.85, 0.01, 0.0004, 4.0 * 3600.0, 0.6},
    {"in_app", 1.0, 0.02, 0.0002, 600.0, 0.3},
};

int sim_cohort_parse(const char *name)
{
    for (int k = 0; k < SIM_MAX_COHORTS; k++)
        if (strcmp(name, sim_cohorts[k].name) == 0)
            return k;
    return -1;
}

double sim_unit(rng_t *r) { return rng_next_unit(r); }

double sim_normal(rng_t *r)
{
    /* Box-Muller; one of the pair is dropped to keep the stream simple. */
    double u1 = 1.0 - rng_next_unit(r), u2 = rng_next_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double sim_exponential(rng_t *r, double mean) { return -mean * log(1.0 - rng_next_unit(r)); }

int sim_poisson(rng_t *r, double mean)
{
    /* Knuth: fine for the small means used here (a few per day). */
    double limit = exp(-mean), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= rng_next_unit(r);
    } while (p > limit && k < 1000);
    return k - 1;
}

static double normal_from_hash(uint64_t h)
{
    double u1 = 1.0 - hash_to_unit(h), u2 = hash_to_unit(hash_mix64(h ^ 0x9e3779b97f4a7c15ull));
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double sim_item_appeal(uint64_t seed, int32_t item)
{
    uint64_t h = hash_bytes(seed ^ 0x6170706561ull /* "appea" */, &item, sizeof item);
    return SIM_APPEAL_SD * normal_from_hash(h);
}

/* Relevance of an item to a member: log-normal with mean 1 over members and
 * items, stable in (seed, member, item). */
static double relevance(const sim_member_t *m, uint64_t seed, int32_t item)
{
    uint32_t key[2] = {m->idx, (uint32_t)item};
    uint64_t h = hash_bytes(seed ^ 0x616666696eull /* "affin" */, key, sizeof key);
    double z = sim_item_appeal(seed, item) + SIM_AFFINITY_SD * normal_from_hash(h);
    double var = SIM_APPEAL_SD * SIM_APPEAL_SD + SIM_AFFINITY_SD * SIM_AFFINITY_SD;
    return exp(z - 0.5 * var);
}

double sim_fatigue_at(const sim_member_t *m, int64_t t)
{
    if (t <= m->fatigue_ts)
        return m->fatigue;
    double life = m->model == SIM_MODEL_RECOVERING ? SIM_RECOVERY_MEAN_LIFE_S
                                                   : SIM_FATIGUE_MEAN_LIFE_S;
    return m->fatigue * exp(-(double)(t - m->fatigue_ts) / life);
}

/* The recovering model's responsiveness multiplier at t: a log-normal random
 * walk with one step a week from the start, stable in (seed, member, week),
 * so both policies face the same drift; the -sd^2/2 per step keeps its mean
 * at 1. */
static double drift_at(const sim_member_t *m, uint64_t seed, int64_t t)
{
    if (m->model != SIM_MODEL_RECOVERING || t <= SIM_T0)
        return 1.0;
    int64_t weeks = (t - SIM_T0) / SIM_WEEK;
    double z = 0.0;
    for (int64_t w = 1; w <= weeks; w++) {
        uint32_t key[2] = {m->idx, (uint32_t)w};
        z += SIM_DRIFT_SD * normal_from_hash(hash_bytes(seed ^ 0x6472696674ull /* "drift" */,
                                                        key, sizeof key)) -
             0.5 * SIM_DRIFT_SD * SIM_DRIFT_SD;
    }
    return exp(z);
}

void sim_opportunity_rng(rng_t *r, uint64_t seed, const sim_member_t *m, uint32_t opp,
                         uint32_t purpose)
{
    uint32_t key[3] = {m->idx, opp, purpose};
    rng_seed(r, hash_bytes(seed ^ 0x6f70706f72ull /* "oppor" */, key, sizeof key));
}

double sim_open_probability(const sim_member_t *m, uint64_t seed, int c, int32_t item, int64_t t)
{
    double p = m->open_base[c] * drift_at(m, seed, t) * relevance(m, seed, item) *
               exp(-m->phi * sim_fatigue_at(m, t));
    return p < 0.95 ? p : 0.95;
}

static double spread(rng_t *r, double median) { return median * exp(SIM_MEMBER_SD * sim_normal(r)); }

static double clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

sim_member_t *sim_population_create(const sim_population_params_t *pp)
{
    sim_member_t *ms = calloc((size_t)pp->members, sizeof *ms);
    if (ms == NULL)
        return NULL;
    static const int16_t tzs[] = {-480, -300, 0, 60, 330};
    double total = 0.0;
    for (int k = 0; k < SIM_MAX_COHORTS; k++)
        total += pp->mix[k];
    for (int i = 0; i < pp->members; i++) {
        sim_member_t *m = &ms[i];
        m->idx = (uint32_t)i;
        m->model = (uint8_t)pp->model;
        rng_t rng;
        rng_seed(&rng, hash_mix64(pp->seed * 0x100000001b3ull + (uint64_t)i + 1));
        rng_seed(&m->rng_visits, hash_mix64(pp->seed * 0x100000001b3ull + (uint64_t)i + 1) ^
                                     0x7669736974ull /* "visit" */);
        rng_seed(&m->rng_opps, hash_mix64(pp->seed * 0x100000001b3ull + (uint64_t)i + 1) ^
                                   0x6f707073ull /* "opps" */);
        /* Cohort by stratified position, so the mix is exact and a member's
         * cohort does not depend on the population size's rounding. */
        double pos = ((double)i + 0.5) / pp->members * total, acc = 0.0;
        m->cohort = SIM_MAX_COHORTS - 1;
        for (int k = 0; k < SIM_MAX_COHORTS; k++) {
            acc += pp->mix[k];
            if (pos < acc) {
                m->cohort = (uint8_t)k;
                break;
            }
        }
        const cohort_def_t *cd = &sim_cohorts[m->cohort];
        m->tz_offset_min = tzs[(size_t)(sim_unit(&rng) * 5)];
        m->visit_rate = spread(&rng, cd->visit_rate);
        m->visit_per_open = clamp(spread(&rng, cd->visit_per_open), 0.0, 0.95);
        m->phi = spread(&rng, cd->fatigue);
        m->tolerance = spread(&rng, cd->tolerance);
        for (int c = 0; c < pp->n_channels; c++) {
            sim_channel_t ch = pp->channel[c];
            m->open_base[c] = clamp(spread(&rng, cd->open[ch]), 0.0, 0.9);
            m->opp_rate[c] = spread(&rng, sim_channel_defs[ch].opportunities);
        }
        m->next_organic =
            SIM_T0 + (int64_t)(sim_exponential(&m->rng_visits, SIM_DAY / m->visit_rate));
        m->fatigue_ts = SIM_T0;
        m->reply_item = -1;
    }
    return ms;
}

void sim_population_free(sim_member_t *m, int n)
{
    if (m == NULL)
        return;
    for (int i = 0; i < n; i++)
        free(m[i].queue);
    free(m);
}
