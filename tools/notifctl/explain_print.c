/*
 * explain_print.c - the explain op's answer for a person (explain_print.h).
 * Every field is read defensively: a missing or null one prints as "-".
 */
#include "explain_print.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

static const json_t *get(const json_t *o, const char *path)
{
    char key[64];
    while (o != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        o = json_object_get(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

static const char *str(const json_t *o, const char *path)
{
    const char *s = json_string_value(get(o, path));
    return s != NULL ? s : "-";
}

static bool flag(const json_t *o, const char *path) { return json_is_true(get(o, path)); }

/* A number without trailing noise ("3", "0.5", "0.000923"), or "-". */
static const char *num(const json_t *v, char *buf, size_t size)
{
    if (!json_is_number(v))
        return "-";
    snprintf(buf, size, "%.4g", json_number_value(v));
    return buf;
}

/* "2026-11-25 12:00 UTC", or "-". */
static const char *when(const json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v))
        return "-";
    time_t t = (time_t)json_integer_value(v);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        return "-";
    return buf;
}

/* "push 3, email 1" from {"push": 3, "email": 1}. */
static void print_per_week(FILE *out, const json_t *per_week)
{
    const char *k;
    json_t *v;
    bool first = true;
    char b[32];
    json_object_foreach((json_t *)per_week, k, v) {
        fprintf(out, "%s%s %s", first ? "" : ", ", k, num(v, b, sizeof b));
        first = false;
    }
    if (first)
        fputs("-", out);
}

static void print_decision(FILE *out, const json_t *r)
{
    const json_t *d = get(r, "decision");
    char b[32], t[40];
    const char *reason = str(d, "reason");
    if (flag(d, "send"))
        fprintf(out, "decision now: send \"%s\" (p_send %s)\n", str(d, "message"),
                num(get(d, "p_send"), b, sizeof b));
    else if (strcmp(reason, "quiet_hours") == 0)
        fprintf(out, "decision now: no send: quiet_hours, retry at %s\n",
                when(get(d, "retry_at"), t, sizeof t));
    else
        fprintf(out, "decision now: no send: %s (p_send %s)\n", reason,
                num(get(d, "p_send"), b, sizeof b));
}

static void print_plan(FILE *out, const json_t *r)
{
    const json_t *p = get(r, "plan");
    char t[40];
    if (!json_is_object(p)) {
        fprintf(out, "plan: none (threshold mode)\n");
        return;
    }
    if (strcmp(str(p, "in_force"), "stored") == 0) {
        fprintf(out, "plan in force: stored plan v%lld (source %s), valid until %s\n",
                (long long)json_integer_value(get(p, "version")), str(p, "source"),
                json_integer_value(get(p, "valid_until")) == 0
                    ? "it is replaced"
                    : when(get(p, "valid_until"), t, sizeof t));
    } else {
        const json_t *s = get(p, "stored");
        if (json_is_object(s))
            fprintf(out, "plan in force: the default plan (the stored plan v%lld expired %s)\n",
                    (long long)json_integer_value(get(s, "version")),
                    when(get(s, "valid_until"), t, sizeof t));
        else
            fprintf(out, "plan in force: the default plan (no plan stored)\n");
    }
    fputs("  per week: ", out);
    print_per_week(out, get(p, "per_week"));
    const json_t *def = get(p, "defaulted");
    if (json_array_size(def) > 0) {
        fputs(" (from the defaults:", out);
        for (size_t i = 0; i < json_array_size(def); i++)
            fprintf(out, " %s", json_string_value(json_array_get(def, i)));
        fputs(")", out);
    }
    fputc('\n', out);
}

static void print_budget(FILE *out, const json_t *r)
{
    const json_t *b = get(r, "budget");
    char x[32], y[32], z[32];
    if (!flag(b, "paced")) {
        fprintf(out, "budget (%s): not paced; the best message goes whenever allowed\n",
                str(r, "channel"));
    } else {
        fprintf(out, "budget (%s): %lld sent this week of %s planned; %s opportunities so far, "
                     "%s expected a week (%s)\n",
                str(r, "channel"), (long long)json_integer_value(get(b, "sent_this_week")),
                num(get(b, "per_week"), x, sizeof x),
                num(get(b, "opportunities_this_week"), y, sizeof y),
                num(get(b, "expected_opportunities"), z, sizeof z), str(b, "expected_from"));
    }
    bool best = strcmp(str(b, "p_send_for"), "best_candidate") == 0;
    fprintf(out, "  pacing coin now: p_send %s for %s%s%s (strategy %s)",
            num(get(b, "p_send"), x, sizeof x), best ? "the best candidate \"" : "a message "
            "without a score", best ? str(b, "best_candidate") : "", best ? "\"" : "",
            str(b, "strategy"));
    if (!flag(b, "coin_reached"))
        fprintf(out, "; not flipped: %s", str(b, "stopped_by"));
    fputc('\n', out);
    const json_t *caps = get(r, "caps");
    if (!json_is_object(caps)) {
        fprintf(out, "caps: none on this channel\n");
        return;
    }
    fprintf(out, "caps: this week %lld sent of %lld, %lld remain",
            (long long)json_integer_value(get(caps, "weekly.sent")),
            (long long)json_integer_value(get(caps, "weekly.cap")),
            (long long)json_integer_value(get(caps, "weekly.remaining")));
    if (json_is_object(get(caps, "rolling")))
        fprintf(out, "; any 7 days %lld sent of %lld, %lld remain%s",
                (long long)json_integer_value(get(caps, "rolling.sent")),
                (long long)json_integer_value(get(caps, "rolling.cap")),
                (long long)json_integer_value(get(caps, "rolling.remaining")),
                flag(caps, "rolling.enforced") ? "" : " (not enforced: too large)");
    fputc('\n', out);
}

static void print_guardrails(FILE *out, const json_t *r)
{
    const json_t *q = get(r, "quiet_hours");
    char t[40], b[32];
    if (flag(q, "enabled"))
        fprintf(out, "quiet hours: %s-%s member-local; now: %s%s\n", str(q, "start"),
                str(q, "end"), flag(q, "now") ? "yes, until " : "no",
                flag(q, "now") ? when(get(q, "retry_at"), t, sizeof t) : "");
    else
        fprintf(out, "quiet hours: none\n");
    const json_t *cands = get(r, "candidates");
    if (json_array_size(cands) > 0)
        fprintf(out, "candidates (dedup over %lld days):\n",
                (long long)json_integer_value(get(r, "dedup_days")));
    for (size_t i = 0; i < json_array_size(cands); i++) {
        const json_t *c = json_array_get(cands, i);
        fprintf(out, "  %s: ", str(c, "id"));
        if (json_is_integer(get(c, "last_sent")))
            fprintf(out, "last sent %s, ", when(get(c, "last_sent"), t, sizeof t));
        else
            fputs("never sent, ", out);
        if (flag(c, "eligible"))
            fprintf(out, "eligible, utility %s\n", num(get(c, "utility"), b, sizeof b));
        else
            fprintf(out, "not eligible until %s\n", when(get(c, "eligible_at"), t, sizeof t));
    }
    fputs("opt-outs:", out);
    const char *k;
    json_t *v;
    bool any = false;
    json_object_foreach((json_t *)get(r, "optouts"), k, v) {
        if (!flag(v, "opted_out"))
            continue;
        fprintf(out, " %s (%s%s%s)", k, flag(v, "member_hash") ? "member hash" : "",
                flag(v, "member_hash") && flag(v, "durable") ? ", " : "",
                flag(v, "durable") ? "durable" : "");
        any = true;
    }
    fputs(any ? "\n" : " none\n", out);
    fprintf(out, "arms: fast %s, slow %s; holdout: %s\n", str(r, "arms.fast"),
            str(r, "arms.slow"), flag(r, "arms.holdout") ? "yes" : "no");
}

static void print_slow(FILE *out, const json_t *r)
{
    const json_t *s = get(r, "slow");
    char a[32], b[32];
    fprintf(out, "slow policy (arm %s, %s):\n", str(s, "arm"),
            flag(s, "features") ? "from the stored features" : "no features stored: the priors");
    fprintf(out, "  estimate: lift %s, organic visits %s a day",
            num(get(s, "estimate.lift"), a, sizeof a),
            num(get(s, "estimate.visit_rate"), b, sizeof b));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)get(s, "estimate.channels"), k, v) {
        char c[32];
        fprintf(out, "; %s p_open %s fatigue %s opt-out %s%s", k,
                num(get(v, "p_open"), a, sizeof a), num(get(v, "fatigue"), b, sizeof b),
                num(get(v, "unsub_hazard"), c, sizeof c),
                flag(v, "available") ? "" : " (opted out)");
    }
    fputc('\n', out);
    const json_t *top = get(s, "top");
    for (size_t i = 0; i < json_array_size(top); i++) {
        const json_t *t = json_array_get(top, i);
        char u[32], p[6][32];
        fprintf(out, "  action %lld (", (long long)json_integer_value(get(t, "action")));
        print_per_week(out, get(t, "per_week"));
        fprintf(out, "): utility %s = visits %s + opens %s + fatigue %s + cross-fatigue %s + "
                     "opt-out risk %s + cost %s%s\n",
                num(get(t, "utility"), u, sizeof u), num(get(t, "parts.visits"), p[0], 32),
                num(get(t, "parts.opens"), p[1], 32), num(get(t, "parts.fatigue"), p[2], 32),
                num(get(t, "parts.cross_fatigue"), p[3], 32),
                num(get(t, "parts.optout_risk"), p[4], 32),
                num(get(t, "parts.message_cost"), p[5], 32),
                flag(t, "greedy") ? "  <- the planner's choice" : "");
    }
}

void explain_print(FILE *out, const json_t *r)
{
    char t[40];
    fprintf(out, "explain: member %s, channel %s%s, at %s (ts %lld; UTC offset %lld min)\n",
            str(r, "member"), str(r, "channel"),
            flag(r, "channel_defaulted") ? " (the first channel)" : "",
            when(get(r, "ts"), t, sizeof t), (long long)json_integer_value(get(r, "ts")),
            (long long)json_integer_value(get(r, "tz_offset_min")));
    print_decision(out, r);
    print_plan(out, r);
    print_budget(out, r);
    print_guardrails(out, r);
    print_slow(out, r);
    fprintf(out, "(nothing was recorded)\n");
}
