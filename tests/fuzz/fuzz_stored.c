/*
 * fuzz_stored.c - fuzz target: everything notifd reads back from Redis,
 * through the same pure parsers decide and the planner use, then the
 * decisions made on what was parsed.
 *
 * Input: a first byte choosing the config and the decision's ts, then lines
 * "<k><field>=<value>" where k says whose field it is:
 *   p  the plan hash          (plan_parse_hash)
 *   m  the member hash        (the decide's HMGET, and the planner's features)
 *   w  the week hash          (stored_read_week_field, for channel push; and
 *                             push:scores, push:ewma for the score prior)
 *   s  a sent-set score       (stored_read_sent_time; field ignored)
 * e.g. "wpush:first_week=-9223372036854775808". The decide's fold, its
 * decision and the planner's plan must then hold their invariants: no
 * crash or undefined behaviour, probabilities in [0, 1], counts finite and
 * within their ranges. Built as a libFuzzer binary with clang and
 * -DNOTIFD_FUZZ=ON, otherwise replayed over corpus/stored by replay_main.c.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/core/calendar.h"
#include "notifd/config/config.h"
#include "notifd/core/decision.h"
#include "notifd/core/features.h"
#include "notifd/core/plan.h"
#include "notifd/core/score_prior.h"
#include "notifd/core/slow_policy.h"
#include "notifd/core/stored_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAIRS 64
#define N_CANDIDATES 3

static const char *const config_texts[] = {
    "{}",
    ("{\"fast\":{\"pacing\":\"quality\",\"rolling_cap\":true,"
     "\"quiet_hours\":{\"start\":\"22:00\",\"end\":\"08:00\"}}}"),
    "{\"fast\":{\"pacing\":\"uniform\",\"rolling_cap\":false,\"dedup_days\":0}}",
    "{\"fast\":{\"mode\":\"threshold\"}}",
};
#define N_CONFIGS (sizeof config_texts / sizeof config_texts[0])

static config_t *fuzz_config(size_t i)
{
    static config_t *cfgs[N_CONFIGS];
    if (cfgs[i] == NULL) {
        config_errors_t errs;
        config_errors_init(&errs);
        cfgs[i] = config_load_string(config_texts[i], 1, &errs);
        config_errors_free(&errs);
        if (cfgs[i] == NULL)
            abort();
    }
    return cfgs[i];
}

typedef struct pairs {
    const char *f[MAX_PAIRS], *v[MAX_PAIRS];
    size_t fl[MAX_PAIRS], vl[MAX_PAIRS];
    size_t n;
} pairs_t;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool in01(double x) { return x >= 0.0 && x <= 1.0; }

/* The value of member field `name`, as HMGET would answer (NULL: nil). */
static const char *member_value(const pairs_t *m, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->fl[i] == nl && memcmp(m->f[i], name, nl) == 0) {
            found = m->v[i]; /* HSET: the last one wins */
            *len = m->vl[i];
        }
    return found;
}

static void check_plan(const plan_t *p, const config_t *cfg)
{
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        if (plan_has_channel(p, c))
            check(p->per_week[c] >= 0 && p->per_week[c] <= cfg->policy.slow.max_per_week);
    check(p->version >= 0 && p->computed_at >= 0 && p->valid_until >= 0);
}

static void decide(const config_t *cfg, int64_t ts, const pairs_t *plan_pairs,
                   const pairs_t *member, const pairs_t *week, const double *sent_scores,
                   size_t n_sent)
{
    const fast_config_t *fast = &cfg->policy.fast;
    const char *names[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < cfg->n_channels; c++)
        names[c] = cfg->channels[c];
    stored_invalid_t invalid = {{0}};

    plan_t plan;
    bool have_plan = plan_parse_hash(&plan, names, cfg->n_channels, cfg->policy.slow.max_per_week,
                                     plan_pairs->f, plan_pairs->fl, plan_pairs->v,
                                     plan_pairs->vl, plan_pairs->n, &invalid);
    if (have_plan)
        check_plan(&plan, cfg);
    if (!have_plan || !plan_in_force(&plan, ts))
        plan_make_default(&plan, cfg->policy.slow.default_mask,
                          cfg->policy.slow.default_per_week);

    const char *mv[STORED_MEMBER_FIELDS];
    size_t ml[STORED_MEMBER_FIELDS] = {0};
    static const char *const member_fields[STORED_MEMBER_FIELDS] = {
        "tz_offset_min", "push_unsub", "push_open", "push_click", "push_sent", "push_delivered"};
    for (int i = 0; i < STORED_MEMBER_FIELDS; i++)
        mv[i] = member_value(member, member_fields[i], &ml[i]);
    stored_member_t sm;
    stored_read_member(mv, ml, &sm, &invalid);
    check(sm.tz_offset_min >= STORED_TZ_MIN && sm.tz_offset_min <= STORED_TZ_MAX);
    check(sm.open_rate == -1.0 || in01(sm.open_rate));

    int push = config_channel_index(cfg, "push", 4);
    member_view_t view = {.channel = push, .week = calendar_week_index(ts, sm.tz_offset_min)};
    if (fast->pacing.strategy == PACING_QUALITY)
        view.max_recent = (size_t)fast->quality_history;
    stored_week_t w = {.view = &view};
    for (size_t i = 0; i < week->n; i++)
        stored_read_week_field(&w, "push", 4, week->f[i], week->fl[i], week->v[i], week->vl[i],
                               &invalid);
    check(w.n_stale >= 0 && w.n_stale <= STORED_MAX_STALE);
    for (int i = 0; i < 3; i++)
        check(view.history.counts[i] >= 0 && isfinite(view.history.counts[i]));
    check(view.sent_this_week <= 1000000000u);
    check(view.n_sends <= DECISION_MAX_RECENT_SENDS && view.n_recent <= PACING_MAX_RECENT);
    for (size_t i = 0; i < view.n_recent; i++)
        check(isfinite(view.recent[i]));

    opportunity_fold_t fold;
    decision_fold_history(&view.history, view.week, fast->pacing.ewma_alpha, 2.5, &fold);
    check(isfinite(fold.expected));
    check(!fold.store_ewma || (isfinite(fold.ewma) && fold.ewma >= 0));
    check(!fold.store_ewma_week || fold.ewma_week < view.week);

    static const char *const ids[N_CANDIDATES] = {"a", "b", "c"};
    ranker_candidate_t cands[N_CANDIDATES];
    double last_sent[N_CANDIDATES], utility[N_CANDIDATES], select_prob[N_CANDIDATES];
    for (size_t i = 0; i < N_CANDIDATES; i++) {
        cands[i] = (ranker_candidate_t){.id = ids[i], .id_len = 1, .score = 0.2 * (double)i};
        last_sent[i] = i < n_sent ? sent_scores[i] : -1.0;
    }
    threshold_state_t th;
    threshold_init(&th, fast->threshold_initial);
    bool th_mode = fast->mode == FAST_MODE_THRESHOLD;
    decision_input_t in = {
        .fast = fast, .seed = cfg->seed, .member = "m", .member_len = 1,
        .opportunity = "o", .opportunity_len = 1, .channel_name = "push", .channel = push,
        .ts = ts, .tz_offset_min = sm.tz_offset_min, .plan = th_mode ? NULL : &plan,
        .unsubscribed = sm.unsubscribed, .member_open_rate = sm.open_rate,
        .candidates = cands, .n_candidates = N_CANDIDATES, .last_sent_ts = last_sent,
        .utility = utility, .select_prob = select_prob,
        .sent_this_week = view.sent_this_week, .recent_sends = view.sends,
        .n_recent_sends = view.n_sends, .expected_opportunities = fold.expected,
        .recent_best = view.recent, .n_recent = view.n_recent,
        .threshold = th_mode ? &th : NULL,
    };
    decision_t dec;
    decision_evaluate(&in, &dec);
    check(dec.reason >= 0 && dec.reason < REASON_COUNT);
    check(in01(dec.p_send) && in01(dec.propensity));
    check(dec.chosen >= -1 && dec.chosen < N_CANDIDATES);
    check(!dec.send || dec.chosen >= 0);
    if (dec.have_best)
        for (size_t i = 0; i < N_CANDIDATES; i++)
            check(!cands[i].eligible || in01(select_prob[i]));
    check(stored_invalid_total(&invalid) <= 10 * MAX_PAIRS * (PACING_MAX_RECENT + 40));
}

/* The score prior's path (planner_scores.c): the week hash's push:scores
 * and push:ewma into the member's score-predicted open rate, both ways. */
static void score_member(const config_t *cfg, const pairs_t *week, member_features_t *mf)
{
    int push = config_channel_index(cfg, "push", 4);
    const char *scores = NULL, *ewma = NULL;
    size_t sl = 0, el = 0;
    for (size_t i = 0; i < week->n; i++) {
        if (week->fl[i] == 11 && memcmp(week->f[i], "push:scores", 11) == 0) {
            scores = week->v[i];
            sl = week->vl[i];
        } else if (week->fl[i] == 9 && memcmp(week->f[i], "push:ewma", 9) == 0) {
            ewma = week->v[i];
            el = week->vl[i];
        }
    }
    if (push < 0 || scores == NULL)
        return;
    double list[PACING_MAX_RECENT], opp = 28.0, x, top, q;
    size_t n = score_prior_parse_list(scores, sl, list, PACING_MAX_RECENT, &mf->invalid);
    check(n <= PACING_MAX_RECENT);
    if (ewma != NULL && stored_parse_real(STORED_EWMA, ewma, el, &x, &mf->invalid) && x > 0)
        opp = x;
    if (!score_prior_channel_top_mean(list, n, opp, &cfg->policy.fast.ranker[push], &top))
        return;
    check(isfinite(top));
    score_calibration_t cal = {0};
    score_calibration_add(&cal, mf->ch[push].open, mf->ch[push].sent, top);
    check(isfinite(score_calibration_factor(&cal)) && score_calibration_factor(&cal) >= 0);
    if (score_prior_relative_rate(top, score_calibration_level(&cal), 0.1, &q))
        check(in01(q));
    if (score_prior_open_rate(top, score_calibration_factor(&cal), &q)) {
        check(in01(q));
        mf->ch[push].score_open = q;
        mf->ch[push].has |= FEATURES_HAS_SCORE_OPEN;
    }
}

/* The planner's path: the member hash as features, then the slow policy;
 * then again with the score prior on. */
static void plan_member(const config_t *cfg, int64_t ts, const pairs_t *member,
                        const pairs_t *week)
{
    const char *names[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < cfg->n_channels; c++)
        names[c] = cfg->channels[c];
    member_features_t mf;
    features_init(&mf);
    int bad = features_parse_hash(&mf, names, cfg->n_channels, member->f, member->fl, member->v,
                                  member->vl, member->n);
    check(bad >= 0 && (uint32_t)bad == stored_invalid_total(&mf.invalid));
    for (int c = 0; c < cfg->n_channels; c++) {
        const channel_features_t *ch = &mf.ch[c];
        check(ch->sent >= 0 && ch->open >= 0 && ch->click >= 0 && ch->dismiss >= 0 &&
              ch->delivered >= 0 && ch->unsub_n >= 0 && isfinite(ch->sent + ch->open +
              ch->click + ch->dismiss + ch->delivered + ch->unsub_n));
    }
    check(!(mf.has & FEATURES_HAS_TZ) ||
          (mf.tz_offset_min >= STORED_TZ_MIN && mf.tz_offset_min <= STORED_TZ_MAX));
    const slow_config_t *slow = &cfg->policy.slow;
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    int action = slow_plan_member(&slow->weights, &slow->priors, &slow->grid, &mf, ts,
                                  cfg->policy.half_life_s, &plan);
    check(action >= 0 && action < slow->grid.n_actions);
    check_plan(&plan, cfg);
    check(features_exposure_days(&mf, ts, cfg->policy.half_life_s) >= 0);

    score_member(cfg, week, &mf);
    slow_priors_t priors = slow->priors;
    priors.score_strength = 50.0;
    member_estimate_t e;
    memset(&plan, 0, sizeof plan);
    action = slow_plan_member_ex(&slow->weights, &priors, &slow->grid, &mf, ts,
                                 cfg->policy.half_life_s, &plan, &e);
    check(action >= 0 && action < slow->grid.n_actions);
    check_plan(&plan, cfg);
    for (int c = 0; c < cfg->n_channels; c++)
        check(in01(e.ch[c].p_open) && in01(e.ch[c].open_prior));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const config_t *cfg = fuzz_config(data[0] % N_CONFIGS);
    /* Noon or late evening of a Monday in 2026, or the edges of the ts range. */
    static const int64_t times[] = {1795435200, 1795474800, 0, 99999999999, 1795392000};
    int64_t ts = times[(data[0] / N_CONFIGS) % (sizeof times / sizeof times[0])];

    pairs_t plan = {.n = 0}, member = {.n = 0}, week = {.n = 0};
    double sent[N_CANDIDATES];
    size_t n_sent = 0;
    stored_invalid_t ignored = {{0}};
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop - p >= 1) {
            char kind = p[0];
            const char *f = p + 1;
            const char *eq = memchr(f, '=', (size_t)(stop - f));
            const char *v = eq ? eq + 1 : NULL; /* no '=': a nil / non-string value */
            size_t fl = (size_t)((eq ? eq : stop) - f), vl = v ? (size_t)(stop - v) : 0;
            pairs_t *into = kind == 'p' ? &plan : kind == 'm' ? &member : kind == 'w' ? &week : NULL;
            if (into != NULL && into->n < MAX_PAIRS) {
                into->f[into->n] = f;
                into->fl[into->n] = fl;
                into->v[into->n] = v;
                into->vl[into->n] = vl;
                into->n++;
            } else if (kind == 's' && n_sent < N_CANDIDATES) {
                double x = -1.0;
                if (v != NULL)
                    stored_read_sent_time(v, vl, &x, &ignored);
                sent[n_sent++] = x;
            }
        }
        p = nl ? nl + 1 : end;
    }
    decide(cfg, ts, &plan, &member, &week, sent, n_sent);
    plan_member(cfg, ts, &member, &week);
    return 0;
}
