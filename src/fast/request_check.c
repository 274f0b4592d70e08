/*
 * request.c - validation of producer requests (see request.h).
 */
#include "notifd/fast/request_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/core/keys.h"



const char *ops_check_member(const json_t *member)
{
    if (!json_is_string(member))
        return "\"member\" must be a string";
    return ops_check_member_bytes(json_string_value(member), json_string_length(member));
}

const char *ops_check_member_bytes(const char *member, size_t len)
{
    const unsigned char *s = (const unsigned char *)member;
    if (len == 0 || len > MEMBER_ID_MAX)
        return "\"member\" must be 1..256 bytes";
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return "\"member\" must not contain control characters";
        if (s[i] == '{' || s[i] == '}')
            return "\"member\" must not contain '{' or '}' (they delimit it in Redis keys)";
    }
    return NULL;
}

bool ops_get_ts_at(const json_t *root, int64_t now, int64_t window, int64_t *ts,
                   const char **why)
{
    json_t *v = json_object_get(root, "ts");
    if (v == NULL || json_is_null(v)) {
        *ts = now;
        return true;
    }
    double x;
    if (json_is_integer(v))
        x = (double)json_integer_value(v);
    else if (json_is_real(v))
        x = json_real_value(v);
    else {
        *why = "\"ts\" must be unix seconds (a number)";
        return false;
    }
    if (!(x >= 0 && x < 1e11)) {
        *why = "\"ts\" must be unix seconds between 0 and 1e11";
        return false;
    }
    *ts = (int64_t)floor(x);
    *why = ops_check_ts_window(*ts, now, window);
    return *why == NULL;
}

const char *ops_check_ts_window(int64_t ts, int64_t now, int64_t window)
{
    if (window > 0 && (ts > now + window || ts < now - window))
        return "\"ts\" is too far from the server's clock (limits.ts_window_s)";
    return NULL;
}

/* The fields of one candidate object, found in one walk over its keys
 * (no hash lookups: a decide has ten candidates of four or five keys). */
typedef struct candidate_fields {
    json_t *id, *score, *features, *tags, *priority;
} candidate_fields_t;

static candidate_fields_t candidate_fields(json_t *c)
{
    candidate_fields_t f = {0};
    const char *key;
    json_t *v;
    json_object_foreach(c, key, v) {
        switch (key[0]) {
        case 'i':
            if (strcmp(key, "id") == 0)
                f.id = v;
            break;
        case 's':
            if (strcmp(key, "score") == 0)
                f.score = v;
            break;
        case 'f':
            if (strcmp(key, "features") == 0)
                f.features = v;
            break;
        case 't':
            if (strcmp(key, "tags") == 0)
                f.tags = v;
            break;
        case 'p':
            if (strcmp(key, "priority") == 0)
                f.priority = v;
            break;
        default:
            break;
        }
    }
    return f;
}

/* The candidate's tags that name a global rate limit, as a mask
 * (config_limit_tag_bit); other tags and non-strings are the producer's. */
static uint32_t limit_tags(const json_t *tags, const config_global_limits_t *g)
{
    uint32_t mask = 0;
    size_t i;
    json_t *t;
    if (g->n_tags == 0 || !json_is_array(tags))
        return 0;
    json_array_foreach(tags, i, t)
        if (json_is_string(t))
            mask |= config_limit_tag_bit(g, json_string_value(t), json_string_length(t));
    return mask;
}

static const char *parse_candidates(decide_request_t *d, json_t *arr, int max_candidates,
                                    const config_global_limits_t *limits)
{
    if (arr == NULL || json_is_null(arr))
        return NULL;
    if (!json_is_array(arr))
        return "\"candidates\" must be an array";
    size_t n = json_array_size(arr);
    if (n > (size_t)max_candidates)
        return "too many candidates (limits.max_candidates)";
    if (n == 0)
        return NULL;
    candidate_fields_t small[64];
    candidate_fields_t *fields = n <= 64 ? small : malloc(n * sizeof *fields);
    if (fields == NULL)
        return "out of memory";
    const char *why = NULL;
    size_t n_feat = 0;
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) {
        if (!json_is_object(c)) {
            why = "each candidate must be an object {id, score, features, tags, priority}";
            goto out;
        }
        fields[i] = candidate_fields(c);
        json_t *f = fields[i].features;
        if (f != NULL && !json_is_null(f)) {
            if (!json_is_object(f)) {
                why = "candidate \"features\" must be an object of numbers";
                goto out;
            }
            n_feat += json_object_size(f);
        }
    }
    /* One allocation for every per-candidate array. */
    size_t bytes = n * (sizeof(ranker_candidate_t) + 3 * sizeof(double)) +
                   n_feat * sizeof(ranker_feature_t) + n * sizeof(uint32_t);
    char *mem = calloc(1, bytes);
    if (mem == NULL) {
        why = "out of memory";
        goto out;
    }
    d->mem = mem;
    d->candidates = (ranker_candidate_t *)mem;
    d->last_sent = (double *)(mem + n * sizeof(ranker_candidate_t));
    d->utility = d->last_sent + n;
    d->select_prob = d->utility + n;
    d->features = (ranker_feature_t *)(d->select_prob + n);
    d->limit_tags = (uint32_t *)(d->features + n_feat);
    d->n = n;
    size_t fi = 0;
    for (i = 0; i < n; i++) {
        const candidate_fields_t *cf = &fields[i];
        json_t *id = cf->id;
        if (!json_is_string(id) || json_string_length(id) == 0 ||
            json_string_length(id) > DECIDE_ID_MAX) {
            why = "each candidate needs an \"id\": a string of 1..256 bytes";
            goto out;
        }
        double sc = 0.0;
        if (cf->score != NULL && !json_is_null(cf->score)) {
            if (!json_is_number(cf->score)) {
                why = "candidate \"score\" must be a number";
                goto out;
            }
            sc = json_number_value(cf->score);
            if (!isfinite(sc)) {
                why = "candidate \"score\" must be finite";
                goto out;
            }
        }
        if (cf->tags != NULL && !json_is_null(cf->tags) && !json_is_array(cf->tags)) {
            why = "candidate \"tags\" must be an array";
            goto out;
        }
        message_priority_t prio = PRIORITY_NORMAL;
        if (cf->priority != NULL && !json_is_null(cf->priority) &&
            !(json_is_string(cf->priority) &&
              message_priority_parse(json_string_value(cf->priority),
                                     json_string_length(cf->priority), &prio))) {
            why = "candidate \"priority\" must be \"transactional\", \"high\" or \"normal\"";
            goto out;
        }
        ranker_candidate_t *rc = &d->candidates[i];
        rc->priority = prio;
        rc->id = json_string_value(id);
        rc->id_len = json_string_length(id);
        rc->score = sc;
        d->limit_tags[i] = limit_tags(cf->tags, limits);
        rc->eligible = true;
        rc->features = &d->features[fi];
        d->last_sent[i] = -1.0;
        const char *name;
        json_t *v;
        if (cf->features != NULL && json_is_object(cf->features)) {
            json_object_foreach(cf->features, name, v) {
                if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                    why = "candidate feature values must be finite numbers";
                    goto out;
                }
                d->features[fi].name = name;
                d->features[fi].name_len = strlen(name);
                d->features[fi].value = json_number_value(v);
                fi++;
                rc->n_features++;
            }
        }
    }
out:
    if (fields != small)
        free(fields);
    return why;
}

const char *decide_request_parse(decide_request_t *out, json_t *root, const config_t *cfg,
                                 int64_t now)
{
    memset(out, 0, sizeof *out);
    json_t *member = json_object_get(root, "member");
    const char *why = ops_check_member(member);
    if (why != NULL)
        return why;
    out->member = json_string_value(member);
    out->member_len = json_string_length(member);
    json_t *ch = json_object_get(root, "channel");
    out->channel = json_is_string(ch) ? config_channel_index(cfg, json_string_value(ch),
                                                             json_string_length(ch))
                                      : -1;
    if (out->channel < 0)
        return "\"channel\" must be a configured channel (see \"channels\" in the config)";
    json_t *opp = json_object_get(root, "opportunity");
    if (!json_is_string(opp) || json_string_length(opp) == 0 ||
        json_string_length(opp) > DECIDE_ID_MAX)
        return "\"opportunity\" must be a string id of 1..256 bytes (it makes retries "
               "idempotent)";
    out->opportunity = json_string_value(opp);
    out->opportunity_len = json_string_length(opp);
    if (!ops_get_ts_at(root, now, cfg->limits.ts_window_s, &out->ts, &why))
        return why;
    return parse_candidates(out, json_object_get(root, "candidates"), cfg->limits.max_candidates,
                            &cfg->rate_limits);
}

void decide_request_free(decide_request_t *r)
{
    free(r->mem);
    r->mem = NULL;
}
