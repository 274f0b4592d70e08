/*
 * decide_record.c - the decide op's record of a send: the arguments of the
 * decide_record script (src/store/lua/), which checks the caps and dedup
 * atomically and stores the answer under the opportunity's idempotency
 * key; and what both records share (keys, week-hash fields). A decision
 * not to send is recorded by decide_skip.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "lua/decide_record.lua.args.h"
#include "notifd/core/calendar.h"
#include "notifd/core/keys.h"
#include "notifd/lib/number_format.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/policy.h"

size_t decide_idem_key(char *key, const config_t *cfg, const decide_request_t *r)
{
    char suffix[MEMBER_ID_MAX + 2];
    suffix[0] = ':';
    memcpy(suffix + 1, r->opportunity, r->opportunity_len);
    return key_member(key, cfg->redis.prefix, "idem", r->member, r->member_len, suffix,
                      r->opportunity_len + 1);
}

/* The recent-scores list after this decision, as comma-separated numbers
 * (one field of the week hash): its best score first, then those the
 * overlay added since the read, then the list as read. The read list is
 * passed through as text: formatting a hundred numbers per decide was a
 * tenth of notifd's CPU. */
static char *scores_text(const member_view_t *v, double best, int keep, const char *raw,
                         size_t raw_len, size_t *len)
{
    size_t added = v->n_recent_new < (size_t)keep - 1 ? v->n_recent_new : (size_t)keep - 1;
    size_t from_raw = (size_t)keep - 1 - added;
    char *s = malloc((added + 1) * (NUMBER_FORMAT_MAX + 1) + raw_len + 2);
    if (s == NULL)
        return NULL;
    /* Five significant digits: plenty for a quantile of utilities, and the
     * list goes through the record script on every decide. */
    size_t at = number_format_g(s, best, DECISION_SCORE_DIGITS);
    for (size_t i = 0; i < added; i++) {
        s[at++] = ',';
        at += number_format_g(s + at, v->recent[i], DECISION_SCORE_DIGITS);
    }
    /* The first from_raw entries of the read list. */
    size_t take = 0, entries = 0;
    while (from_raw > 0 && take < raw_len) {
        const char *comma = memchr(raw + take, ',', raw_len - take);
        size_t stop = comma ? (size_t)(comma - raw) : raw_len;
        if (++entries == from_raw || comma == NULL) {
            take = stop;
            break;
        }
        take = stop + 1;
    }
    if (from_raw > 0 && take > 0) {
        s[at++] = ',';
        memcpy(s + at, raw, take);
        at += take;
    }
    s[at] = '\0';
    *len = at;
    return s;
}

void decide_week_counter_field(char *out, size_t cap, const char *ch, int64_t week,
                               const char *kind)
{
    char wk[NUMBER_FORMAT_MAX];
    number_format_i64(wk, week);
    size_t n = key_field(out, cap, ch, ":");
    n += key_field(out + n, cap - n, wk, "");
    key_field(out + n, cap - n, kind, "");
}

bool decide_week_fields(decide_ctx_t *d, const opportunity_fold_t *fold,
                        const overlay_effect_t *effect, week_fields_t *w)
{
    const char *ch = d->req->cfg->channels[d->r.channel];
    w->n = 0;
    w->scores = NULL;
    w->scores_len = 0;
#define PUT(p, l) (w->argv[w->n] = (p), w->lens[w->n] = (l), w->n++)
    if (fold->store_ewma) {
        PUT(w->f_ewma, key_field(w->f_ewma, sizeof w->f_ewma, ch, ":ewma"));
        PUT(w->v_ewma, (size_t)snprintf(w->v_ewma, sizeof w->v_ewma, "%.17g", fold->ewma));
    }
    if (fold->store_ewma_week) {
        PUT(w->f_ewma_week, key_field(w->f_ewma_week, sizeof w->f_ewma_week, ch, ":ewma_week"));
        PUT(w->v_ewma_week, number_format_i64(w->v_ewma_week, fold->ewma_week));
    }
    if (fold->store_balance) {
        PUT(w->f_bal, key_field(w->f_bal, sizeof w->f_bal, ch, ":bal"));
        PUT(w->v_bal, (size_t)snprintf(w->v_bal, sizeof w->v_bal, "%.17g", fold->balance));
    }
    if (effect->set_first_week) {
        PUT(w->f_first, key_field(w->f_first, sizeof w->f_first, ch, ":first_week"));
        PUT(w->v_first, number_format_i64(w->v_first, effect->first_week));
        PUT(w->f_frac, key_field(w->f_frac, sizeof w->f_frac, ch, ":first_frac"));
        PUT(w->v_frac,
            (size_t)snprintf(w->v_frac, sizeof w->v_frac, "%.6f", effect->first_fraction));
    }
    if (effect->have_score) {
        w->scores = scores_text(&d->view, effect->score, d->fast->quality_history, d->scores_raw,
                                d->scores_raw_len, &w->scores_len);
        if (w->scores == NULL)
            return false;
        PUT(w->f_scores, key_field(w->f_scores, sizeof w->f_scores, ch, ":scores"));
        PUT(w->scores, w->scores_len);
    }
#undef PUT
    return true;
}

void decide_keep_scores(decide_ctx_t *d, week_fields_t *w)
{
    free(d->scores_new);
    d->scores_new = w->scores;
    d->scores_new_len = w->scores_len;
    w->scores = NULL;
}

int decide_rate_limiters(decide_ctx_t *d, const decision_t *dec)
{
    const config_global_limits_t *g = &d->req->cfg->rate_limits;
    int c = d->r.channel, n = 0;
    d->n_limiters = 0;
    if (!g->any || !dec->send)
        return 0;
    if (g->limit[c][0].set)
        d->limiters[n++] = 0;
    uint32_t tags = dec->chosen >= 0 ? d->r.limit_tags[dec->chosen] : 0;
    for (int t = 0; t < g->n_tags; t++)
        if ((tags & (1u << t)) && g->limit[c][1 + t].set)
            d->limiters[n++] = (unsigned char)(1 + t);
    d->n_limiters = n;
    return n;
}

void decide_count_rate_limits(decide_ctx_t *d, const char *codes, size_t n)
{
    for (size_t i = 0; i < n && i < (size_t)d->n_limiters; i++)
        metrics_observe_rate_limit(d->app->metrics, d->r.channel, d->limiters[i], codes[i]);
}

bool decide_rate_limit_unchecked(decide_ctx_t *d, const decision_t *dec)
{
    const config_global_limits_t *g = &d->req->cfg->rate_limits;
    if (!g->fail_closed || decide_rate_limiters(d, dec) == 0)
        return false;
    bool stop = false;
    for (int i = 0; i < d->n_limiters; i++) {
        if (g->limit[d->r.channel][d->limiters[i]].shadow)
            continue;
        metrics_observe_rate_limit(d->app->metrics, d->r.channel, d->limiters[i], 'c');
        stop = true;
    }
    return stop;
}

/* "P limit:<ch>" or "P limit:<ch>:<tag>": a limiter's GCRA state. */
static size_t limiter_key(char *key, size_t cap, const config_t *cfg, int channel, int which)
{
    const config_global_limits_t *g = &cfg->rate_limits;
    int n = which == 0 ? snprintf(key, cap, "%slimit:%s", cfg->redis.prefix, cfg->channels[channel])
                       : snprintf(key, cap, "%slimit:%s:%s", cfg->redis.prefix,
                                  cfg->channels[channel], g->tags[which - 1]);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* ARGV limits: "<on_error> T b s" per limiter (decide_record.lua). */
static size_t limits_spec(char *out, size_t cap, const decide_ctx_t *d)
{
    const config_global_limits_t *g = &d->req->cfg->rate_limits;
    int n = snprintf(out, cap, "%s", g->fail_closed ? "closed" : "open");
    for (int i = 0; i < d->n_limiters && n > 0 && (size_t)n < cap; i++) {
        const config_rate_limit_t *l = &g->limit[d->r.channel][d->limiters[i]];
        n += snprintf(out + n, cap - (size_t)n, " %.17g %lld %d", 1e6 / l->per_second,
                      (long long)l->burst, l->shadow ? 1 : 0);
    }
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Sends the record of decision `dec`; false if it could not. A decision to
 * send goes through the decide_record script (cap checks, sent set, member
 * features, all atomic); any other is recorded by plain commands
 * (decide_skip.c): it has no invariant to check, and a script costs Redis
 * three times what those commands do. */
bool decide_send_record(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                        overlay_effect_t *effect)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    const fast_config_t *fast = d->fast;
    const char *prefix = cfg->redis.prefix;
    const char *ch = cfg->channels[r->channel];
    if (!dec->send)
        return decide_send_skip(d, dec, fold, effect);

    enum { MAXKEYS = 5 + CONFIG_LIMITERS_MAX, FIXED = 20, MAXARGS = MAXKEYS + FIXED + MAX_STALE_FIELDS + 10 };
    const char *argv[MAXARGS];
    size_t lens[MAXARGS];
    int argc = 0;
#define ARG(p, l) (argv[argc] = (p), lens[argc] = (l), argc++)
#define ARGS(p) ARG(p, strlen(p))
    /* Each fixed argument goes where the script's "-- @keys" / "-- @argv"
     * lines name it (lua/<script>.lua.args.h, generated from the .lua):
     * a builder out of step with its script fails here, not in Redis. */
    int nkeys = 0;
#define AT(pos)                                                                                    \
    do {                                                                                           \
        if (argc != (pos))                                                                         \
            goto out_of_step;                                                                      \
    } while (0)
#define KEY(script, name) AT(script##_KEY_##name - 1)
#define ARGV(script, name) AT(nkeys + script##_ARGV_##name - 1)

    char k_idem[KEY_MAX], k_week[KEY_MAX], k_sent[KEY_MAX], k_member[KEY_MAX], k_optout[KEY_MAX];
    char k_limit[CONFIG_LIMITERS_MAX][CONFIG_PREFIX_MAX + NOTIFD_CHANNEL_NAME_MAX +
                                      CONFIG_LIMIT_TAG_MAX + 8];
    char a_limits[16 + CONFIG_LIMITERS_MAX * 48];
    KEY(DECIDE_RECORD, IDEM);
    ARG(k_idem, decide_idem_key(k_idem, cfg, r));
    KEY(DECIDE_RECORD, WEEK);
    ARG(k_week, key_member(k_week, prefix, "week", r->member, r->member_len, "", 0));
    KEY(DECIDE_RECORD, SENT);
    ARG(k_sent, key_member(k_sent, prefix, "sent", r->member, r->member_len, "", 0));
    KEY(DECIDE_RECORD, MEMBER);
    ARG(k_member, key_member(k_member, prefix, "member", r->member, r->member_len, "", 0));
    KEY(DECIDE_RECORD, OPTOUT);
    ARG(k_optout, key_member(k_optout, prefix, "optout", r->member, r->member_len, "", 0));
    /* The send's global rate limiters, the last keys, only if any. */
    KEY(DECIDE_RECORD, LIMITER);
    _Static_assert(DECIDE_RECORD_KEY_LIMITER == DECIDE_RECORD_NKEYS,
                   "the limiter keys come last");
    for (int i = 0; i < d->n_limiters; i++)
        ARG(k_limit[i], limiter_key(k_limit[i], sizeof k_limit[i], cfg, r->channel,
                                    d->limiters[i]));
    nkeys = argc;

    char a_ts[24], a_cap[24], a_idem_ttl[24], a_dedup[24], a_hl[32];
    char a_week_ttl[24], a_member_ttl[24], a_ndel[NUMBER_FORMAT_MAX], f_opp[64], f_sent[64];
    char f_msent[48], f_mlast[48];
    number_format_i64(a_idem_ttl, fast->idempotency_ttl_s);
    number_format_i64(a_week_ttl, WEEK_TTL_S);
    number_format_i64(a_ndel, d->n_stale);
    /* The week's opportunity counter, if this one counts ('' if not). */
    if (dec->reached_coin)
        decide_week_counter_field(f_opp, sizeof f_opp, ch, d->view.week, ":opp");
    else
        f_opp[0] = '\0';
    /* The rolling cap's field and cap: checked against the stored send
     * times, since what was read may miss another instance's send. */
    char f_sends[48], a_rolling[24];
    /* decide_record: see its contract in src/store/lua/decide_record.lua.
     * A send outside the plan (transactional) counts in no week and
     * checks no cap: its sent field, send-times field and caps are
     * empty, and it re-checks the opt-out only if it respects one. */
    const bool paced = !dec->unpaced;
    if (paced)
        decide_week_counter_field(f_sent, sizeof f_sent, ch, d->view.week, ":sent");
    else
        f_sent[0] = '\0';
    number_format_i64(a_ts, r->ts);
    number_format_i64(a_cap, dec->cap);
    number_format_i64(a_dedup, (int64_t)fast->dedup_days * 86400);
    snprintf(a_hl, sizeof a_hl, "%.17g", cfg->policy.half_life_s);
    number_format_i64(a_member_ttl, policy_member_ttl_s(cfg));
    ARGV(DECIDE_RECORD, TS);
    ARGS(a_ts);
    ARGV(DECIDE_RECORD, SENT_FIELD);
    ARGS(f_sent);
    ARGV(DECIDE_RECORD, OPP_FIELD);
    ARGS(f_opp);
    ARGV(DECIDE_RECORD, CAP);
    ARGS(a_cap);
    bool chosen = dec->chosen >= 0; /* a send has chosen a message */
    ARGV(DECIDE_RECORD, MESSAGE);
    ARG(chosen ? r->candidates[dec->chosen].id : "",
        chosen ? r->candidates[dec->chosen].id_len : 0);
    ARGV(DECIDE_RECORD, IDEM_TTL);
    ARGS(a_idem_ttl);
    ARGV(DECIDE_RECORD, DEDUP_S);
    ARGS(a_dedup);
    ARGV(DECIDE_RECORD, ANSWER);
    ARG(d->body, d->body_len);
    ARGV(DECIDE_RECORD, CAPPED_ANSWER);
    ARG(d->capped_body, d->capped_len);
    ARGV(DECIDE_RECORD, HALF_LIFE_S);
    ARGS(a_hl);
    ARGV(DECIDE_RECORD, WEEK_TTL);
    ARGS(a_week_ttl);
    ARGV(DECIDE_RECORD, MEMBER_TTL);
    ARGS(a_member_ttl);
    ARGV(DECIDE_RECORD, SENDS_FIELD);
    if (fast->rolling_cap && paced) {
        key_field(f_sends, sizeof f_sends, ch, ":sends");
        number_format_i64(a_rolling, dec->rolling_cap);
        ARGS(f_sends);
        ARGV(DECIDE_RECORD, ROLLING_CAP);
        ARGS(a_rolling);
    } else {
        ARG("", 0);
        ARGV(DECIDE_RECORD, ROLLING_CAP);
        ARG("", 0);
    }
    ARGV(DECIDE_RECORD, MEMBER_SENT_FIELD);
    ARG(f_msent, key_field(f_msent, sizeof f_msent, ch, "_sent"));
    ARGV(DECIDE_RECORD, MEMBER_LAST_FIELD);
    ARG(f_mlast, key_field(f_mlast, sizeof f_mlast, ch, "_last_sent"));
    ARGV(DECIDE_RECORD, CHANNEL);
    ARGS(paced || fast->transactional_respects_optout ? ch : "");
    ARGV(DECIDE_RECORD, LIMITS);
    if (d->n_limiters > 0 && d->limited_body != NULL) {
        ARG(a_limits, limits_spec(a_limits, sizeof a_limits, d));
        ARGV(DECIDE_RECORD, LIMITED_ANSWER);
        ARG(d->limited_body, d->limited_len);
    } else {
        ARG("", 0);
        ARGV(DECIDE_RECORD, LIMITED_ANSWER);
        ARG("", 0);
    }
    ARGV(DECIDE_RECORD, N_STALE);
    ARGS(a_ndel);
    for (int i = 0; i < d->n_stale; i++)
        ARGS(d->stale[i]);

    /* Week-hash fields computed here, from what was read. */
    week_fields_t wf;
    if (!decide_week_fields(d, fold, effect, &wf))
        return false;
    for (int i = 0; i < wf.n; i++)
        ARG(wf.argv[i], wf.lens[i]);
#undef ARG
#undef ARGS
#undef AT
#undef KEY
#undef ARGV
    policy_state_t *ps = policy_state(d->app);
    int rc = store_eval_until(d->app->store, d->deadline_ns, ps->script_record, decide_on_record,
                              d, nkeys, argc - nkeys, argv, lens);
    decide_keep_scores(d, &wf);
    if (rc != 0) {
        d->cause = decide_refusal_cause(d);
        return false;
    }
    d->record_out = true;
    d->expect_version = d->view.version + 1 > 1000000000 ? 1 : d->view.version + 1;
    effect->seq = store_position(d->app->store);
    return true;

out_of_step: {
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_ERROR, "decide record: arguments out of step with the script",
                "script=decide_record argc=%d", argc);
    return false;
}
}
