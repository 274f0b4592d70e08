/*
 * sim_driver.c - one simulated run: the population lives W weeks in virtual
 * time against a real notifd.
 *
 * Time advances a UTC day at a time. At the start of each day every member
 * gets the day's opportunities (per channel, Poisson, at member-local hours)
 * and, at each week start, notifd runs one planner pass (planner_run with
 * ts = the week start). The day is then played in rounds: in each round
 * every member with something left before midnight sends, in time order,
 * the feedback events that are due (delivered, open, click, dismiss,
 * unsubscribe, visits) up to and including its next decide, and all members'
 * requests of the round go out pipelined over the connections. When every
 * reply is in, each member's decide reply is turned into what the member
 * does (sim_model.c's hidden truth), which queues new feedback events.
 * Rounds repeat until nobody has anything left that day; events later than
 * midnight carry over.
 *
 * One decide per member per round keeps each member's requests strictly
 * sequential (notifd sees its own counters and features exactly as a
 * producer would leave them) while thousands of members are in flight at
 * once. Replies are stored by tag and processed in member order after the
 * round, and every random draw comes from the member's own generator, so the
 * outcome does not depend on the timing of the replies.
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/core/calendar.h"
#include "notifd/core/decision.h"
#include "sim.h"

typedef struct driver {
    sim_member_t *ms;
    const sim_population_params_t *pp;
    const sim_run_params_t *rp;
    sim_net_t *net;
    int nconn;
    int64_t measure_from;
    char line[4096];
    uint64_t decides, feedbacks, errors, degraded;
    char first_error[512];
} driver_t;

enum { REPLY_FEEDBACK = 0, REPLY_DECIDE = 1 };

/* ------------------------------------------------------------------ */
/* Per-member event queue                                             */

static bool event_before(const sim_event_t *a, const sim_event_t *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->seq < b->seq);
}

static void queue_insert(sim_member_t *m, sim_event_t ev)
{
    if (m->queue_len == m->queue_cap) {
        int cap = m->queue_cap ? m->queue_cap * 2 : 16;
        sim_event_t *q = realloc(m->queue, (size_t)cap * sizeof *q);
        if (q == NULL) {
            fprintf(stderr, "notifd-sim: out of memory\n");
            exit(1);
        }
        m->queue = q;
        m->queue_cap = cap;
    }
    int i = m->queue_len;
    while (i > 0 && event_before(&ev, &m->queue[i - 1])) {
        m->queue[i] = m->queue[i - 1];
        i--;
    }
    m->queue[i] = ev;
    m->queue_len++;
}

static sim_event_t queue_pop(sim_member_t *m)
{
    sim_event_t ev = m->queue[0];
    memmove(m->queue, m->queue + 1, (size_t)(m->queue_len - 1) * sizeof *m->queue);
    m->queue_len--;
    return ev;
}

static void schedule(sim_member_t *m, int64_t ts, sim_event_type_t type, int channel, int32_t item,
                     uint32_t opp)
{
    sim_event_t ev = {.ts = ts, .type = (uint8_t)type, .channel = (int8_t)channel, .item = item,
                      .seq = m->seq++, .opp = opp};
    queue_insert(m, ev);
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */

static const char *channel_name(const driver_t *d, int c)
{
    return sim_channel_defs[d->pp->channel[c]].name;
}

static bool measured(const driver_t *d, int64_t ts) { return ts >= d->measure_from; }

static void push_line(driver_t *d, sim_member_t *m, uint32_t kind, int len)
{
    if (len <= 0 || (size_t)len >= sizeof d->line) {
        fprintf(stderr, "notifd-sim: request too long\n");
        exit(1);
    }
    sim_net_push(d->net, (int)(m->idx % (uint32_t)d->nconn), (m->idx << 1) | kind, d->line,
                 (size_t)len);
}

static int tz_suffix(sim_member_t *m, char *buf, size_t cap)
{
    if (m->tz_sent) {
        buf[0] = '\0';
        return 0;
    }
    m->tz_sent = true;
    return snprintf(buf, cap, ",\"tz_offset_min\":%d", m->tz_offset_min);
}

static void send_feedback(driver_t *d, sim_member_t *m, const sim_event_t *ev, const char *event)
{
    char tz[40];
    tz_suffix(m, tz, sizeof tz);
    int len;
    if (ev->channel < 0)
        len = snprintf(d->line, sizeof d->line,
                       "{\"op\":\"feedback\",\"member\":\"m%u\",\"event\":\"%s\",\"ts\":%lld%s}",
                       m->idx, event, (long long)ev->ts, tz);
    else
        len = snprintf(d->line, sizeof d->line,
                       "{\"op\":\"feedback\",\"member\":\"m%u\",\"channel\":\"%s\",\"event\":"
                       "\"%s\",\"message\":\"t%d\",\"ts\":%lld%s}",
                       m->idx, channel_name(d, ev->channel), event, (int)ev->item,
                       (long long)ev->ts, tz);
    push_line(d, m, REPLY_FEEDBACK, len);
    d->feedbacks++;
}

static double logit(double p) { return log(p / (1.0 - p)); }

/* The candidate list of an opportunity: distinct fresh items (released in
 * the last SIM_FRESH_DAYS days), each with its true P(open) kept for the
 * member's reaction and a noisy score sent to notifd. */
static void send_decide(driver_t *d, sim_member_t *m, const sim_event_t *ev)
{
    int64_t day = (ev->ts - SIM_T0) / SIM_DAY;
    int32_t lo = (int32_t)(day * SIM_ITEMS_PER_DAY);
    int32_t span = SIM_FRESH_DAYS * SIM_ITEMS_PER_DAY;
    int k = d->pp->candidates;
    rng_t rng;
    sim_opportunity_rng(&rng, d->pp->seed, m, ev->opp, 0);
    int len = snprintf(d->line, sizeof d->line,
                       "{\"op\":\"decide\",\"member\":\"m%u\",\"channel\":\"%s\",\"opportunity\":"
                       "\"o%u\",\"ts\":%lld,\"candidates\":[",
                       m->idx, channel_name(d, ev->channel), ev->opp, (long long)ev->ts);
    for (int j = 0; j < k; j++) {
        int32_t item;
        bool dup;
        do {
            item = lo + (int32_t)(sim_unit(&rng) * span);
            dup = false;
            for (int i = 0; i < j; i++)
                dup |= m->cand_item[i] == item;
        } while (dup);
        double p = sim_open_probability(m, d->pp->seed, ev->channel, item, ev->ts);
        if (p < 1e-6)
            p = 1e-6;
        double z = logit(p) + SIM_SCORE_NOISE * sim_normal(&rng);
        double score = 1.0 / (1.0 + exp(-z));
        m->cand_item[j] = item;
        m->cand_p[j] = p;
        len += snprintf(d->line + len, sizeof d->line - (size_t)len,
                        "%s{\"id\":\"t%d\",\"score\":%.6f}", j ? "," : "", (int)item, score);
    }
    m->n_cand = k;
    len += snprintf(d->line + len, sizeof d->line - (size_t)len, "]}");
    push_line(d, m, REPLY_DECIDE, len);
    m->decide_pending = true;
    m->decide = *ev;
    m->reply_item = -2;
    m->reply_plan = -1.0;
    d->decides++;
}

static void visit(driver_t *d, sim_member_t *m, int64_t ts, bool caused)
{
    sim_event_t ev = {.ts = ts, .channel = -1, .item = -1};
    send_feedback(d, m, &ev, "visit");
    if (measured(d, ts)) {
        m->counts.visits++;
        m->counts.visits_caused += caused;
    }
}

/* Sends member m's due events in time order up to and including its next
 * decide; returns whether anything was sent. */
static bool member_round(driver_t *d, sim_member_t *m, int64_t day_end)
{
    bool sent = false;
    for (;;) {
        int64_t tq = m->queue_len ? m->queue[0].ts : INT64_MAX;
        int64_t to = m->next_organic;
        if ((tq < to ? tq : to) >= day_end)
            return sent;
        if (to < tq) {
            visit(d, m, to, false);
            m->next_organic =
                to + 1 + (int64_t)sim_exponential(&m->rng_visits, SIM_DAY / m->visit_rate);
            sent = true;
            continue;
        }
        sim_event_t ev = queue_pop(m);
        int c = ev.channel;
        bool meas = measured(d, ev.ts);
        switch ((sim_event_type_t)ev.type) {
        case EV_DECIDE:
            /* A producer does not ask about a channel the member left. */
            if (m->unsub[c])
                continue;
            send_decide(d, m, &ev);
            return true;
        case EV_DELIVERED:
            send_feedback(d, m, &ev, "delivered");
            break;
        case EV_OPEN:
            send_feedback(d, m, &ev, "open");
            m->counts.opens += meas;
            break;
        case EV_CLICK:
            send_feedback(d, m, &ev, "click");
            m->counts.clicks += meas;
            break;
        case EV_DISMISS:
            send_feedback(d, m, &ev, "dismiss");
            m->counts.dismisses += meas;
            break;
        case EV_UNSUB:
            send_feedback(d, m, &ev, "unsubscribe");
            m->unsub[c] = true;
            if (meas) {
                m->counts.unsubs++;
                m->counts.opted_out = true;
            }
            break;
        case EV_VISIT_CAUSED:
            visit(d, m, ev.ts, true);
            /* The visit an open brings replaces the next organic one if that
             * was due within a day anyway: it only came earlier. The organic
             * sequence itself is the same in every run; this skips one. */
            if (m->next_organic <= ev.ts + SIM_PULL_FORWARD_S)
                m->next_organic +=
                    1 + (int64_t)sim_exponential(&m->rng_visits, SIM_DAY / m->visit_rate);
            break;
        }
        sent = true;
    }
}

/* ------------------------------------------------------------------ */
/* Replies                                                            */

static const char *const reason_names[] = {
    "send", "paced_skip", "cap_reached", "quiet_hours", "no_candidates",
    "all_filtered", "unsubscribed", "degraded", NULL,
};

static void note_error(driver_t *d, const char *line, size_t len)
{
    if (d->errors++ == 0)
        snprintf(d->first_error, sizeof d->first_error, "%.*s", (int)(len < 400 ? len : 400),
                 line);
}

static void on_reply(void *arg, uint32_t tag, const char *line, size_t len)
{
    driver_t *d = arg;
    if ((tag & 1) == REPLY_FEEDBACK) {
        /* Compact JSON from notifd: "ok":true appears verbatim. */
        if (memmem(line, len, "\"ok\":true", 9) == NULL && memmem(line, len, "\"ok\": true", 10) == NULL)
            note_error(d, line, len);
        return;
    }
    sim_member_t *m = &d->ms[tag >> 1];
    json_t *r = json_loadb(line, len, 0, NULL);
    if (r == NULL || !json_is_true(json_object_get(r, "ok"))) {
        note_error(d, line, len);
        json_decref(r);
        return;
    }
    const char *reason = json_string_value(json_object_get(r, "reason"));
    m->reply_reason = -1;
    for (int i = 0; reason != NULL && reason_names[i]; i++)
        if (strcmp(reason, reason_names[i]) == 0)
            m->reply_reason = i;
    if (json_is_true(json_object_get(r, "degraded")) || m->reply_reason == 7)
        d->degraded++;
    m->reply_item = -1;
    /* The plan in force (hierarchical mode): what the slow policy chose. */
    json_t *pw = json_object_get(json_object_get(r, "plan"), "per_week");
    json_t *planned = json_object_get(pw, channel_name(d, m->decide.channel));
    m->reply_plan = json_is_number(planned) ? json_number_value(planned) : -1.0;
    if (json_is_number(planned) && measured(d, m->decide.ts)) {
        m->counts.plan_sum[m->decide.channel] += json_number_value(planned);
        m->counts.plan_n[m->decide.channel]++;
    }
    const char *msg = json_string_value(json_object_get(r, "message"));
    if (json_is_true(json_object_get(r, "send")) && msg != NULL && msg[0] == 't') {
        int32_t item = (int32_t)atoi(msg + 1);
        for (int j = 0; j < m->n_cand; j++)
            if (m->cand_item[j] == item)
                m->reply_item = j;
    }
    json_decref(r);
}

static int recent_volume(const sim_member_t *m, int c, int64_t t)
{
    int v = 0;
    for (int i = 0; i < SIM_RING; i++)
        v += m->delivered[c][i] > 0 && m->delivered[c][i] > t - SIM_WEEK;
    return v;
}

/* The recovering model's opt-out load on c at t, for the delivery at t
 * (already in the ring): that delivery counts 1, as in the 7-day count;
 * each earlier one e^(-age / mean life) * 7 days / mean life, so that a
 * steady rate gives the same load as the 7-day count (1 + 7 days' worth)
 * while a burst is forgiven within days instead of a week. */
static double recovering_volume(const sim_member_t *m, int c, int64_t t)
{
    double earlier = 0.0;
    bool self = false;
    for (int i = 0; i < SIM_RING; i++) {
        int64_t at = m->delivered[c][i];
        if (at <= 0 || at > t)
            continue;
        if (at == t && !self) {
            self = true; /* this delivery */
            continue;
        }
        earlier += exp(-(double)(t - at) / SIM_RECOVERY_MEAN_LIFE_S);
    }
    return (self ? 1.0 : 0.0) + earlier * SIM_WEEK / SIM_RECOVERY_MEAN_LIFE_S;
}

/* After a send at t (already in the ring): the member's sends on c in its
 * calendar week and in the 7 days up to t, against the cap of the plan the
 * reply named. notifd must never let the week past the cap, nor the 7 days
 * past the 7-day cap (the weekly cap plus the whole part of plan x
 * (rolling_cap_factor - 1), at least rolling_cap_min_slack; only with fast.rolling_cap, and for caps it
 * keeps enough send times for). */
/* The hard cap as README.md states it, ceil(per_week x cap_factor), with the
 * same allowance for float noise; written out here, not taken from notifd's
 * pacing_weekly_cap(), so a change there cannot move the check with it. */
static uint32_t stated_cap(double per_week, double cap_factor)
{
    const double x = per_week * cap_factor;
    return x > 0.0 ? (uint32_t)ceil(x - 1e-9 * fmax(1.0, x)) : 0;
}

static void note_cap(const driver_t *d, sim_member_t *m, int c, int64_t t)
{
    const int64_t week = calendar_week_index(t, m->tz_offset_min);
    uint32_t in_week = 0, in_7d = (uint32_t)recent_volume(m, c, t);
    for (int i = 0; i < SIM_RING; i++)
        in_week += m->delivered[c][i] > 0 &&
                   calendar_week_index(m->delivered[c][i], m->tz_offset_min) == week;
    sim_counts_t *n = &m->counts;
    if (in_week > n->max_week[c])
        n->max_week[c] = in_week;
    if (in_7d > n->max_7d[c])
        n->max_7d[c] = in_7d;
    if (m->reply_plan < 0.0 || !(d->rp->cap_factor > 0.0))
        return;
    const uint32_t cap = stated_cap(m->reply_plan, d->rp->cap_factor);
    /* README.md: the weekly cap plus the whole part of plan x (factor - 1),
     * and at least fast.rolling_cap_min_slack more for a plan above 0. */
    const double extra = m->reply_plan * (d->rp->rolling_cap_factor - 1.0);
    uint32_t slack = extra > 0.0 ? (uint32_t)floor(extra + 1e-9) : 0;
    if (m->reply_plan > 0.0 && slack < (uint32_t)d->rp->rolling_cap_min_slack)
        slack = (uint32_t)d->rp->rolling_cap_min_slack;
    const uint32_t cap_7d = cap + slack;
    const bool rolling = d->rp->rolling_cap && cap_7d <= DECISION_MAX_RECENT_SENDS;
    if (in_week > cap || (rolling && in_7d > cap_7d))
        n->over_cap[c]++;
}

/* What the member does with the decide's outcome: the hidden truth. */
static void member_react(driver_t *d, sim_member_t *m)
{
    m->decide_pending = false;
    const sim_event_t *ev = &m->decide;
    int c = ev->channel;
    int64_t t = ev->ts;
    bool meas = measured(d, t);
    if (m->reply_item == -2)
        return; /* an error reply: counted, nothing delivered */
    m->counts.opportunities[c] += meas;
    if (m->reply_item < 0)
        return;
    m->counts.sends[c] += meas;
    const channel_def_t *cd = &sim_channel_defs[d->pp->channel[c]];
    int32_t item = m->cand_item[m->reply_item];
    double p_open = m->cand_p[m->reply_item];

    m->fatigue = sim_fatigue_at(m, t) + cd->fatigue_weight;
    m->fatigue_ts = t;
    m->delivered[c][m->delivered_head[c]] = t;
    m->delivered_head[c] = (uint8_t)((m->delivered_head[c] + 1) % SIM_RING);
    if (meas)
        note_cap(d, m, c, t);
    double tired = 1.0 - exp(-m->phi * m->fatigue);

    /* A fixed number of draws in a fixed order, from the opportunity's own
     * generator: the same send meets the same luck under either policy. */
    rng_t rng;
    sim_opportunity_rng(&rng, d->pp->seed, m, ev->opp, 1);
    double u_open = sim_unit(&rng), u_click = sim_unit(&rng), u_visit = sim_unit(&rng);
    double u_dismiss = sim_unit(&rng), u_unsub = sim_unit(&rng);
    double open_delay = sim_exponential(&rng, cd->react_delay_s);
    double visit_delay = sim_exponential(&rng, 1200.0);

    uint32_t o = ev->opp;
    schedule(m, t + 1, EV_DELIVERED, c, item, o);
    int64_t reacted = t + 2;
    if (u_open < p_open) {
        int64_t t_open = t + 2 + (int64_t)(open_delay < 3 * SIM_DAY ? open_delay : 3 * SIM_DAY);
        schedule(m, t_open, EV_OPEN, c, item, o);
        if (u_click < SIM_CLICK_GIVEN_OPEN)
            schedule(m, t_open + 60, EV_CLICK, c, item, o);
        if (u_visit < m->visit_per_open)
            schedule(m, t_open + 61 + (int64_t)visit_delay, EV_VISIT_CAUSED, -1, -1, o);
        reacted = t_open;
    } else {
        double pd = cd->dismiss * (1.0 + 3.0 * tired);
        if (u_dismiss < (pd < 0.9 ? pd : 0.9)) {
            reacted = t + 2 + (int64_t)open_delay;
            schedule(m, reacted, EV_DISMISS, c, item, o);
        }
    }
    double volume = m->model == SIM_MODEL_RECOVERING ? recovering_volume(m, c, t)
                                                     : (double)recent_volume(m, c, t);
    double excess = (volume - m->tolerance) / m->tolerance;
    double hazard = cd->unsub + SIM_OPTOUT_SLOPE * (excess > 0.0 ? excess : 0.0);
    if (u_unsub < hazard)
        schedule(m, reacted + 120, EV_UNSUB, c, item, o);
}

/* ------------------------------------------------------------------ */
/* The run                                                            */

static void start_day(driver_t *d, sim_member_t *m, int64_t day_start)
{
    /* Opportunities are exogenous: drawn whether or not the member still
     * listens on the channel (a left channel's are dropped when due), so
     * every run sees the same ones. */
    for (int c = 0; c < d->pp->n_channels; c++) {
        int k = sim_poisson(&m->rng_opps, m->opp_rate[c]);
        for (int j = 0; j < k; j++) {
            /* Email goes out with the morning digest; push and in-app any
             * time from 08:00 to 22:00 member-local. */
            double u = sim_unit(&m->rng_opps);
            double tod = d->pp->channel[c] == CH_EMAIL ? 9 * 3600 + u * 3600
                                                       : 8 * 3600 + u * 14 * 3600;
            int64_t ts = day_start + (int64_t)tod - (int64_t)m->tz_offset_min * 60;
            schedule(m, ts, EV_DECIDE, c, -1, m->opp_seq++);
        }
    }
}

static int planner_run(driver_t *d, int64_t ts, char *err, size_t errlen)
{
    char req[128];
    snprintf(req, sizeof req, "{\"op\":\"planner_run\",\"ts\":%lld}", (long long)ts);
    json_t *r = sim_net_request(d->net, req, err, errlen);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *s = json_dumps(r, JSON_COMPACT);
        snprintf(err, errlen, "planner_run at ts=%lld failed: %s", (long long)ts, s ? s : "?");
        free(s);
        rc = -1;
    } else if (d->rp->verbose) {
        fprintf(stderr, "  planner_run ts=%lld planned=%lld\n", (long long)ts,
                (long long)json_integer_value(json_object_get(r, "planned")));
    }
    json_decref(r);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void aggregate(const driver_t *d, sim_result_t *out)
{
    int measured_weeks = d->rp->weeks - d->rp->warmup_weeks;
    for (int i = 0; i < d->pp->members; i++) {
        const sim_member_t *m = &d->ms[i];
        for (int k = 0; k < 2; k++) {
            sim_cohort_result_t *r = &out->cohort[k == 0 ? m->cohort : SIM_MAX_COHORTS];
            const sim_counts_t *n = &m->counts;
            r->members++;
            r->member_weeks += measured_weeks;
            for (int c = 0; c < d->pp->n_channels; c++) {
                r->opportunities += n->opportunities[c];
                r->sends += n->sends[c];
                r->sends_ch[c] += n->sends[c];
                r->plan_sum[c] += n->plan_sum[c];
                r->plan_n[c] += n->plan_n[c];
                r->max_week[c] = fmax(r->max_week[c], n->max_week[c]);
                r->max_7d[c] = fmax(r->max_7d[c], n->max_7d[c]);
                r->over_cap[c] += n->over_cap[c];
            }
            r->opens += n->opens;
            r->clicks += n->clicks;
            r->dismisses += n->dismisses;
            r->visits += n->visits;
            r->visits_caused += n->visits_caused;
            r->unsubs += n->unsubs;
            r->opted_out += n->opted_out;
        }
    }
}

int sim_run(sim_net_t *net, const sim_population_params_t *pp, const sim_run_params_t *rp,
            sim_result_t *out, char *err, size_t errlen)
{
    driver_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -1;
    d->pp = pp;
    d->rp = rp;
    d->net = net;
    d->nconn = sim_net_connections(net);
    d->measure_from = SIM_T0 + (int64_t)rp->warmup_weeks * SIM_WEEK;
    d->ms = sim_population_create(pp);
    if (d->ms == NULL) {
        free(d);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    double t_start = now_s(), t_week = t_start;
    uint64_t decides_week = 0;
    int rc = 0;
    for (int day = 0; day < rp->weeks * 7 && rc == 0; day++) {
        int64_t day_start = SIM_T0 + (int64_t)day * SIM_DAY;
        if (rp->planner && day % 7 == 0 && planner_run(d, day_start, err, errlen) != 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < pp->members; i++)
            start_day(d, &d->ms[i], day_start);
        for (;;) {
            bool any = false;
            for (int i = 0; i < pp->members; i++)
                any |= member_round(d, &d->ms[i], day_start + SIM_DAY);
            if (!any)
                break;
            if (sim_net_exchange(net, on_reply, d, err, errlen) != 0) {
                rc = -1;
                break;
            }
            for (int i = 0; i < pp->members; i++)
                if (d->ms[i].decide_pending)
                    member_react(d, &d->ms[i]);
        }
        if (d->errors > 0) {
            snprintf(err, errlen, "notifd answered %llu requests with errors; the first: %s",
                     (unsigned long long)d->errors, d->first_error);
            rc = -1;
        }
        if (rp->verbose && day % 7 == 6) {
            double t = now_s();
            fprintf(stderr, "  week %d done: %.1f s, %.0f decides/s\n", day / 7 + 1, t - t_week,
                    (double)(d->decides - decides_week) / (t - t_week));
            t_week = t;
            decides_week = d->decides;
        }
    }
    if (rc == 0 && rp->dump_path != NULL)
        rc = sim_dump_members(d->ms, pp, rp->redis_port, rp->dump_path, rp->dump_every, err,
                              errlen);
    if (rc == 0) {
        aggregate(d, out);
        out->decides = d->decides;
        out->feedbacks = d->feedbacks;
        out->errors = d->errors;
        out->degraded = d->degraded;
        out->seconds = now_s() - t_start;
        out->measured_weeks = rp->weeks - rp->warmup_weeks;
        out->n_channels = pp->n_channels;
        for (int c = 0; c < pp->n_channels; c++)
            snprintf(out->channel[c], sizeof out->channel[c], "%s", channel_name(d, c));
    }
    sim_population_free(d->ms, pp->members);
    free(d);
    return rc;
}
