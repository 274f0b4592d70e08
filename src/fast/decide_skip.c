/*
 * decide_skip.c - the record of a decision not to send, as plain commands.
 *
 * A decision not to send has no invariant to check: it cannot pass a cap,
 * send a message twice or reach a member who opted out. So it needs no
 * script, only one pipelined group of commands on the member's keys:
 *
 *   SET     P idem:{M}:<opportunity> <answer> NX GET EX <ttl>   the idempotency record
 *   HINCRBY P week:{M} v 1                                     the week hash's version
 *   HINCRBY P week:{M} <ch>:<week>:opp 1                       if the opportunity counts
 *   HDEL    P week:{M} <fields of weeks the EWMA folded in>    if any
 *   HSET    P week:{M} <fields notifd computed>                if any
 *
 * That costs Redis about a third of what the decide_skip script it
 * replaces did (docs/benchmarks.md): a script pays for every argument and
 * every redis.call on top of the commands themselves.
 *
 * What the script's atomicity gave, the replies give back:
 *  - a retry (the SET finds a stored answer) gets that answer, and what it
 *    wrote again is taken back: the opportunity it counted (HINCRBY -1)
 *    and the score it put first in the recent-scores list (the list is set
 *    to the rest; the version stays one higher, which no reader minds);
 *  - a counter that is not an integer (someone wrote one) fails its
 *    HINCRBY and is set to 1, where the script started it again at 1;
 *  - the version one above the view's says nobody else wrote the member in
 *    between; anything else drops the member's cached view;
 *  - the week hash's TTL is set when the version or this week's count is 1
 *    (the hash was created, or a week begins), as the script did.
 * The producer is answered once the repairs and the retry's take-back are
 * answered too (they are rare: corrupt data, a retry), so what it reads
 * back from Redis after the answer is already right; the TTL is not
 * waited for.
 * Another decide of the member may run between these commands; each of
 * them is atomic, and what they write are counters and values notifd
 * computed, so the interleaving loses nothing a reader relies on.
 */
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "notifd/admin/metrics.h"
#include "notifd/core/keys.h"
#include "notifd/lib/number_format.h"
#include "notifd/log.h"

/* The largest counter or version the stored-field parsers accept
 * (stored_fields.h): one beyond starts again from 1. */
#define SKIP_COUNTER_MAX 1000000000LL

static void on_ignored(redisReply *reply, void *privdata)
{
    (void)reply;
    (void)privdata;
}

static void skip_reply_done(decide_ctx_t *d);

static void on_followup(redisReply *reply, void *privdata)
{
    (void)reply;
    skip_reply_done(privdata);
}

/* A follow-up command on the member's week hash: a repair, a count taken
 * back (awaited: `wait`), a TTL (not). Losing one loses a TTL or one count,
 * never an answer; a refused one is logged. */
static void week_command(decide_ctx_t *d, bool wait, const char *verb, const char *field,
                         const char *value)
{
    const char *argv[4] = {verb, d->skip_week, field, value};
    size_t lens[4] = {strlen(verb), strlen(d->skip_week), field ? strlen(field) : 0,
                      value ? strlen(value) : 0};
    int argc = field == NULL ? 2 : value == NULL ? 3 : 4;
    if (store_command(d->app->store, wait ? on_followup : on_ignored, wait ? d : NULL, argc,
                      argv, lens) == 0) {
        if (wait)
            d->skip_waiting++;
        return;
    }
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "decide: a week-hash follow-up could not be sent", "command=%s",
                verb);
}

/* A week counter that is not an integer (or beyond the parsers' range)
 * starts again from 1, as the record script started it. */
static void restart_counter(decide_ctx_t *d, const char *field)
{
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "decide: week counter unusable, started again at 1", "field=%s",
                field);
    week_command(d, true, "HSET", field, "1");
}

static bool is_wrongtype(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0;
}

/* One reply of the group, a repair or a take-back is in; the last one
 * sends what the replies call for and, once that is answered too, ends the
 * record. */
static void skip_reply_done(decide_ctx_t *d)
{
    if (--d->skip_waiting > 0)
        return;
    if (!d->skip_followed) {
        d->skip_followed = true;
        if (d->skip_expire)
            week_command(d, false, "EXPIRE", d->skip_ttl, NULL);
        /* A retry recorded its opportunity again: take it back. */
        if (d->skip_dup != NULL && d->skip_counted)
            week_command(d, true, "HINCRBY", d->skip_opp_field, "-1");
        if (d->skip_dup != NULL && d->skip_scores_field[0] != '\0' && d->scores_new != NULL) {
            const char *rest = strchr(d->scores_new, ',');
            if (rest != NULL)
                week_command(d, true, "HSET", d->skip_scores_field, rest + 1);
            else
                week_command(d, true, "HDEL", d->skip_scores_field, NULL);
        }
        if (d->skip_waiting > 0)
            return;
    }
    decide_on_skip_recorded(d);
}

static void on_idem(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    if (reply == NULL) {
        d->skip_failed = true;
        d->skip_cause = METRICS_DEGRADED_CONNECTION;
    } else if (reply->type == REDIS_REPLY_STRING) {
        d->skip_dup = malloc(reply->len + 1);
        if (d->skip_dup != NULL) {
            memcpy(d->skip_dup, reply->str, reply->len);
            d->skip_dup[reply->len] = '\0';
            d->skip_dup_len = reply->len;
        } else {
            d->skip_failed = true;
            d->skip_cause = METRICS_DEGRADED_INTERNAL;
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_ERROR, "decide record failed", "error=\"%s\"", reply->str);
        d->skip_failed = true;
        d->skip_cause = METRICS_DEGRADED_ERROR_REPLY;
    } else if (reply->type != REDIS_REPLY_NIL) {
        d->skip_failed = true;
        d->skip_cause = METRICS_DEGRADED_INTERNAL;
    }
    skip_reply_done(d);
}

static void on_version(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER ||
        reply->integer != d->expect_version)
        d->skip_stale = true;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer < 1 || reply->integer > SKIP_COUNTER_MAX)
            restart_counter(d, "v");
        else if (reply->integer == 1)
            d->skip_expire = true; /* the hash was created */
    } else if (reply != NULL && !is_wrongtype(reply)) {
        restart_counter(d, "v");
    }
    skip_reply_done(d);
}

static void on_opportunity(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        d->skip_counted = true;
        if (reply->integer < 1 || reply->integer > SKIP_COUNTER_MAX) {
            d->skip_stale = true;
            restart_counter(d, d->skip_opp_field);
        } else if (reply->integer == 1) {
            d->skip_expire = true; /* the week's first: the hash lives on */
        }
    } else {
        d->skip_stale = true;
        if (reply != NULL && !is_wrongtype(reply)) {
            restart_counter(d, d->skip_opp_field);
            d->skip_counted = true;
        }
    }
    skip_reply_done(d);
}

static void on_fields(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        d->skip_stale = true;
    skip_reply_done(d);
}

bool decide_send_skip(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                      overlay_effect_t *effect)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    store_t *st = d->app->store;
    const char *ch = cfg->channels[r->channel];

    week_fields_t wf;
    if (!decide_week_fields(d, fold, effect, &wf))
        return false;
    bool counts = dec->reached_coin;
    int commands = 2 + (counts ? 1 : 0) + (d->n_stale > 0 ? 1 : 0) + (wf.n > 0 ? 1 : 0);
    if (!store_room(st, commands)) {
        decide_keep_scores(d, &wf);
        d->cause = decide_refusal_cause(d);
        return false;
    }

    char k_idem[KEY_MAX], a_ttl[NUMBER_FORMAT_MAX];
    size_t idem_len = decide_idem_key(k_idem, cfg, r);
    size_t week_len = key_member(d->skip_week, cfg->redis.prefix, "week", r->member,
                                 r->member_len, "", 0);
    number_format_i64(a_ttl, d->fast->idempotency_ttl_s);
    number_format_i64(d->skip_ttl, WEEK_TTL_S);
    if (counts)
        decide_week_counter_field(d->skip_opp_field, sizeof d->skip_opp_field, ch, d->view.week,
                                  ":opp");
    else
        d->skip_opp_field[0] = '\0';

    d->skip_scores_field[0] = '\0';
    if (wf.scores != NULL)
        memcpy(d->skip_scores_field, wf.f_scores, sizeof wf.f_scores);
    d->skip_waiting = 0;
    d->skip_failed = d->skip_counted = d->skip_stale = d->skip_expire = false;
    d->skip_followed = false;
    free(d->skip_dup);
    d->skip_dup = NULL;
    uint64_t until = d->deadline_ns;
    int sent = 0;
    {
        const char *argv[] = {"SET", k_idem, d->body, "NX", "GET", "EX", a_ttl};
        size_t lens[] = {3, idem_len, d->body_len, 2, 3, 2, strlen(a_ttl)};
        sent += store_command_until(st, until, on_idem, d, 7, argv, lens) == 0;
    }
    if (sent == 0) {
        /* Refused despite the room (out of memory): nothing went. */
        decide_keep_scores(d, &wf);
        d->cause = decide_refusal_cause(d);
        return false;
    }
    {
        const char *argv[] = {"HINCRBY", d->skip_week, "v", "1"};
        size_t lens[] = {7, week_len, 1, 1};
        sent += store_command_until(st, until, on_version, d, 4, argv, lens) == 0;
    }
    if (counts) {
        const char *argv[] = {"HINCRBY", d->skip_week, d->skip_opp_field, "1"};
        size_t lens[] = {7, week_len, strlen(d->skip_opp_field), 1};
        sent += store_command_until(st, until, on_opportunity, d, 4, argv, lens) == 0;
    }
    if (d->n_stale > 0) {
        const char *argv[2 + MAX_STALE_FIELDS];
        size_t lens[2 + MAX_STALE_FIELDS];
        argv[0] = "HDEL", lens[0] = 4;
        argv[1] = d->skip_week, lens[1] = week_len;
        for (int i = 0; i < d->n_stale; i++)
            argv[2 + i] = d->stale[i], lens[2 + i] = strlen(d->stale[i]);
        sent += store_command_until(st, until, on_fields, d, 2 + d->n_stale, argv, lens) == 0;
    }
    if (wf.n > 0) {
        const char *argv[2 + 12];
        size_t lens[2 + 12];
        argv[0] = "HSET", lens[0] = 4;
        argv[1] = d->skip_week, lens[1] = week_len;
        for (int i = 0; i < wf.n; i++)
            argv[2 + i] = wf.argv[i], lens[2 + i] = wf.lens[i];
        sent += store_command_until(st, until, on_fields, d, 2 + wf.n, argv, lens) == 0;
    }
    decide_keep_scores(d, &wf);
    /* A follow-up the store refused after the SET went (out of memory
     * only: the room was checked) leaves the view unknown. */
    if (sent < commands)
        d->skip_stale = true;
    d->skip_waiting = sent;
    d->record_out = true;
    d->expect_version = d->view.version + 1 > SKIP_COUNTER_MAX ? 1 : d->view.version + 1;
    effect->seq = store_position(st);
    return true;
}
