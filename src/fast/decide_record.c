/*
 * decide_record.c - the decide op's record: the arguments of the record script
 * (decide_record for a send, decide_skip otherwise; src/store/lua/), which
 * checks the caps and dedup atomically and stores the answer under the
 * opportunity's idempotency key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "lua/decide_record.lua.args.h"
#include "lua/decide_skip.lua.args.h"
#include "notifd/core/calendar.h"
#include "notifd/core/keys.h"
#include "notifd/lib/number_format.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/policy.h"

/* P idem:{M}:<opportunity> */
static size_t idem_key(char *key, const config_t *cfg, const decide_request_t *r)
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

/* "<ch>:<week><kind>": a weekly counter of the week hash (":opp", ":sent"). */
static void week_counter_field(char *out, size_t cap, const char *ch, int64_t week,
                               const char *kind)
{
    char wk[NUMBER_FORMAT_MAX];
    number_format_i64(wk, week);
    size_t n = key_field(out, cap, ch, ":");
    n += key_field(out + n, cap - n, wk, "");
    key_field(out + n, cap - n, kind, "");
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

/* Sends the record script for decision `dec`; false if it could not. A
 * decision to send goes through decide_record (cap checks, sent set,
 * member features); any other through decide_skip, which takes a third of
 * the arguments: most decisions are not to send, and Redis's cost of a
 * script grows with its arguments (src/store/lua/decide_skip.lua). */
bool decide_send_record(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                        overlay_effect_t *effect)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    const fast_config_t *fast = d->fast;
    const char *prefix = cfg->redis.prefix;
    const char *ch = cfg->channels[r->channel];
    const bool full = dec->send;

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
    _Static_assert(DECIDE_RECORD_KEY_IDEM == DECIDE_SKIP_KEY_IDEM &&
                       DECIDE_RECORD_KEY_WEEK == DECIDE_SKIP_KEY_WEEK,
                   "both record scripts take the idempotency and week keys first");
    ARG(k_idem, idem_key(k_idem, cfg, r));
    KEY(DECIDE_RECORD, WEEK);
    ARG(k_week, key_member(k_week, prefix, "week", r->member, r->member_len, "", 0));
    if (full) {
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
    } else {
        AT(DECIDE_SKIP_NKEYS);
    }
    nkeys = argc;

    char a_ts[24], a_cap[24], a_idem_ttl[24], a_dedup[24], a_hl[32];
    char a_week_ttl[24], a_member_ttl[24], a_ndel[NUMBER_FORMAT_MAX], f_opp[64], f_sent[64];
    char f_msent[48], f_mlast[48];
    number_format_i64(a_idem_ttl, fast->idempotency_ttl_s);
    number_format_i64(a_week_ttl, WEEK_TTL_S);
    number_format_i64(a_ndel, d->n_stale);
    /* The week's opportunity counter, if this one counts ('' if not). */
    if (dec->reached_coin)
        week_counter_field(f_opp, sizeof f_opp, ch, d->view.week, ":opp");
    else
        f_opp[0] = '\0';
    /* The rolling cap's field and cap: checked against the stored send
     * times, since what was read may miss another instance's send. */
    char f_sends[48], a_rolling[24];
    if (!full) {
        ARGV(DECIDE_SKIP, ANSWER);
        ARG(d->body, d->body_len);
        ARGV(DECIDE_SKIP, IDEM_TTL);
        ARGS(a_idem_ttl);
        ARGV(DECIDE_SKIP, OPP_FIELD);
        ARGS(f_opp);
        ARGV(DECIDE_SKIP, WEEK_TTL);
        ARGS(a_week_ttl);
        ARGV(DECIDE_SKIP, N_STALE);
    } else {
        /* decide_record: see its contract in src/store/lua/decide_record.lua.
         * A send outside the plan (transactional) counts in no week and
         * checks no cap: its sent field, send-times field and caps are
         * empty, and it re-checks the opt-out only if it respects one. */
        const bool paced = !dec->unpaced;
        if (paced)
            week_counter_field(f_sent, sizeof f_sent, ch, d->view.week, ":sent");
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
    }
    ARGS(a_ndel);
    for (int i = 0; i < d->n_stale; i++)
        ARGS(d->stale[i]);

    /* Week-hash fields computed here, from what was read. */
    char f_ewma[48], v_ewma[32], f_ewma_week[48], v_ewma_week[24];
    char f_first[48], v_first[24], f_frac[48], v_frac[32], f_scores[48];
    if (fold->store_ewma) {
        key_field(f_ewma, sizeof f_ewma, ch, ":ewma");
        snprintf(v_ewma, sizeof v_ewma, "%.17g", fold->ewma);
        ARGS(f_ewma);
        ARGS(v_ewma);
    }
    if (fold->store_ewma_week) {
        key_field(f_ewma_week, sizeof f_ewma_week, ch, ":ewma_week");
        number_format_i64(v_ewma_week, fold->ewma_week);
        ARGS(f_ewma_week);
        ARGS(v_ewma_week);
    }
    char f_bal[48], v_bal[32];
    if (fold->store_balance) {
        key_field(f_bal, sizeof f_bal, ch, ":bal");
        snprintf(v_bal, sizeof v_bal, "%.17g", fold->balance);
        ARGS(f_bal);
        ARGS(v_bal);
    }
    if (effect->set_first_week) {
        key_field(f_first, sizeof f_first, ch, ":first_week");
        number_format_i64(v_first, effect->first_week);
        key_field(f_frac, sizeof f_frac, ch, ":first_frac");
        snprintf(v_frac, sizeof v_frac, "%.6f", effect->first_fraction);
        ARGS(f_first);
        ARGS(v_first);
        ARGS(f_frac);
        ARGS(v_frac);
    }
    char *scores = NULL;
    if (effect->have_score) {
        size_t sl = 0;
        scores = scores_text(&d->view, effect->score, fast->quality_history, d->scores_raw,
                             d->scores_raw_len, &sl);
        if (scores == NULL)
            return false;
        key_field(f_scores, sizeof f_scores, ch, ":scores");
        ARGS(f_scores);
        ARG(scores, sl);
    }
#undef ARG
#undef ARGS
#undef AT
#undef KEY
#undef ARGV
    policy_state_t *ps = policy_state(d->app);
    int rc = store_eval_until(d->app->store, d->deadline_ns,
                              full ? ps->script_record : ps->script_skip, decide_on_record, d, nkeys,
                              argc - nkeys, argv, lens);
    /* Kept for the member cache: the list as this record leaves it. */
    free(d->scores_new);
    d->scores_new = scores;
    d->scores_new_len = scores != NULL ? strlen(scores) : 0;
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
                "script=%s argc=%d", full ? "decide_record" : "decide_skip", argc);
    return false;
}
}
