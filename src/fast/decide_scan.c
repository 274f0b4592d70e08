/*
 * decide_scan.c - a decide request straight from its line (decide_scan.h).
 *
 * One pass collects the candidates and features on the stack, their
 * strings still in the line; then one allocation of the exact size takes
 * the arrays and copies of the strings, laid out as decide_request_parse
 * lays them out. Every check that fails returns false: the tree path then
 * reads the line and words the error, so no message is written twice.
 */
#include "notifd/fast/decide_scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct span {
    const unsigned char *s;
    size_t n;
} span_t;

typedef struct scanner {
    const unsigned char *p, *end;
    int depth; /* containers open, the request object included */
} scanner_t;

/* The keys of one object so far: jansson rejects a duplicate key, so the
 * scanner must too, at every level. */
typedef struct keyset {
    span_t keys[DECIDE_SCAN_MAX_KEYS];
    int n;
} keyset_t;

/* What the pass collects: candidates and features with their strings
 * still pointing into the line, and how many string bytes to copy. */
typedef struct collected {
    ranker_candidate_t candidates[DECIDE_SCAN_MAX_CANDIDATES];
    uint32_t limit_tags[DECIDE_SCAN_MAX_CANDIDATES];
    ranker_feature_t features[DECIDE_SCAN_MAX_FEATURES];
    size_t n, n_feat;
    size_t text_bytes; /* the strings' lengths, each with its NUL */
    const config_global_limits_t *limits; /* tags naming a rate limit */
} collected_t;

static void skip_ws(scanner_t *sc)
{
    while (sc->p < sc->end &&
           (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static bool at(const scanner_t *sc, unsigned char c) { return sc->p < sc->end && *sc->p == c; }

static bool span_is(span_t s, const char *word, size_t n)
{
    return s.n == n && memcmp(s.s, word, n) == 0;
}

/* A string at sc->p, its raw bytes between the quotes. Escapes decline
 * (the line has none: decide_scan_line checks first), as does what jansson
 * refuses: a control byte or invalid UTF-8. */
static bool scan_string(scanner_t *sc, span_t *out)
{
    if (!at(sc, '"'))
        return false;
    const unsigned char *p = sc->p + 1, *end = sc->end, *s = p;
    for (;;) {
        while (p < end && json_lex_plain[*p])
            p++;
        if (p >= end)
            return false;
        if (*p == '"')
            break;
        if (*p < 0x80)
            return false; /* a control byte (or a backslash) */
        size_t k = json_lex_utf8_sequence(p, end);
        if (k == 0)
            return false;
        p += k;
    }
    out->s = s;
    out->n = (size_t)(p - s);
    sc->p = p + 1;
    return true;
}

static bool scan_number(scanner_t *sc, json_lex_number_t *out)
{
    if (sc->p >= sc->end || (*sc->p != '-' && (*sc->p < '0' || *sc->p > '9')))
        return false;
    const char *why;
    const unsigned char *why_at;
    const unsigned char *next = json_lex_number(sc->p, sc->end, out, &why, &why_at);
    if (next == NULL)
        return false;
    sc->p = next;
    return true;
}

static double number_value(const json_lex_number_t *n)
{
    return n->is_real ? n->real : (double)n->integer;
}

static bool scan_literal(scanner_t *sc, const char *word, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
        return false;
    sc->p += n;
    return true;
}

static bool keyset_add(keyset_t *ks, span_t key)
{
    for (int i = 0; i < ks->n; i++)
        if (ks->keys[i].n == key.n && (key.n == 0 || ks->keys[i].s[0] == key.s[0]) &&
            memcmp(ks->keys[i].s, key.s, key.n) == 0)
            return false;
    if (ks->n == DECIDE_SCAN_MAX_KEYS)
        return false;
    ks->keys[ks->n++] = key;
    return true;
}

/* Containers: open consumes the bracket (and an empty container whole,
 * leaving *more false); next consumes ',' (more) or the closing bracket. */
static bool container_open(scanner_t *sc, unsigned char open, unsigned char close, bool *more)
{
    if (!at(sc, open) || sc->depth >= DECIDE_SCAN_MAX_DEPTH)
        return false;
    sc->p++;
    sc->depth++;
    skip_ws(sc);
    *more = !at(sc, close);
    if (!*more) {
        sc->p++;
        sc->depth--;
    }
    return true;
}

static bool container_next(scanner_t *sc, unsigned char close, bool *more)
{
    skip_ws(sc);
    if (at(sc, ',')) {
        sc->p++;
        *more = true;
        return true;
    }
    if (!at(sc, close))
        return false;
    sc->p++;
    sc->depth--;
    *more = false;
    return true;
}

/* `"key":`, a key new to `keys`; leaves sc->p at the value. */
static bool object_key(scanner_t *sc, keyset_t *keys, span_t *key)
{
    skip_ws(sc);
    if (!scan_string(sc, key) || !keyset_add(keys, *key))
        return false;
    skip_ws(sc);
    if (!at(sc, ':'))
        return false;
    sc->p++;
    skip_ws(sc);
    return true;
}

static bool skip_value(scanner_t *sc);

static bool skip_object(scanner_t *sc)
{
    keyset_t keys;
    keys.n = 0;
    bool more;
    if (!container_open(sc, '{', '}', &more))
        return false;
    while (more) {
        span_t key;
        if (!object_key(sc, &keys, &key) || !skip_value(sc) || !container_next(sc, '}', &more))
            return false;
    }
    return true;
}

static bool skip_array(scanner_t *sc)
{
    bool more;
    if (!container_open(sc, '[', ']', &more))
        return false;
    while (more)
        if (!skip_value(sc) || !container_next(sc, ']', &more))
            return false;
    return true;
}

/* Any JSON value, checked as the tree parser checks it, and passed over. */
static bool skip_value(scanner_t *sc)
{
    skip_ws(sc);
    if (sc->p >= sc->end)
        return false;
    switch (*sc->p) {
    case '{':
        return skip_object(sc);
    case '[':
        return skip_array(sc);
    case '"': {
        span_t s;
        return scan_string(sc, &s);
    }
    case 't':
        return scan_literal(sc, "true", 4);
    case 'f':
        return scan_literal(sc, "false", 5);
    case 'n':
        return scan_literal(sc, "null", 4);
    default: {
        json_lex_number_t n;
        return scan_number(sc, &n);
    }
    }
}

/* "features": an object of numbers; null was handled by the caller. */
static bool scan_features(scanner_t *sc, collected_t *col)
{
    keyset_t names;
    names.n = 0;
    bool more;
    if (!container_open(sc, '{', '}', &more))
        return false;
    while (more) {
        span_t name;
        json_lex_number_t v;
        if (!object_key(sc, &names, &name) || !scan_number(sc, &v) ||
            col->n_feat == DECIDE_SCAN_MAX_FEATURES)
            return false;
        ranker_feature_t *f = &col->features[col->n_feat++];
        f->name = (const char *)name.s;
        f->name_len = name.n;
        f->value = number_value(&v);
        col->text_bytes += name.n + 1;
        if (!container_next(sc, '}', &more))
            return false;
    }
    return true;
}

/* "tags": an array; its strings that name a global rate limit set their
 * bits in *mask (decide_request_parse's limit_tags), the rest is skipped. */
static bool scan_tags(scanner_t *sc, const config_global_limits_t *g, uint32_t *mask)
{
    bool more;
    if (!container_open(sc, '[', ']', &more))
        return false;
    while (more) {
        skip_ws(sc);
        if (at(sc, '"')) {
            span_t t;
            if (!scan_string(sc, &t))
                return false;
            *mask |= config_limit_tag_bit(g, (const char *)t.s, t.n);
        } else if (!skip_value(sc)) {
            return false;
        }
        if (!container_next(sc, ']', &more))
            return false;
    }
    return true;
}

/* One candidate {id, score, features, tags, priority}. */
static bool scan_candidate(scanner_t *sc, collected_t *col)
{
    keyset_t keys;
    keys.n = 0;
    bool more, have_id = false;
    span_t id = {0};
    double score = 0.0;
    message_priority_t priority = PRIORITY_NORMAL;
    uint32_t tags = 0;
    size_t first_feature = col->n_feat;
    if (col->n == DECIDE_SCAN_MAX_CANDIDATES || !container_open(sc, '{', '}', &more))
        return false;
    while (more) {
        span_t key;
        if (!object_key(sc, &keys, &key))
            return false;
        bool ok;
        if (span_is(key, "id", 2)) {
            ok = scan_string(sc, &id) && id.n > 0 && id.n <= DECIDE_ID_MAX;
            have_id = true;
        } else if (span_is(key, "score", 5)) {
            json_lex_number_t v;
            if (at(sc, 'n')) {
                ok = scan_literal(sc, "null", 4);
            } else {
                ok = scan_number(sc, &v);
                score = ok ? number_value(&v) : 0.0;
            }
        } else if (span_is(key, "features", 8)) {
            ok = at(sc, 'n') ? scan_literal(sc, "null", 4) : scan_features(sc, col);
        } else if (span_is(key, "tags", 4)) {
            ok = at(sc, 'n') ? scan_literal(sc, "null", 4) : scan_tags(sc, col->limits, &tags);
        } else if (span_is(key, "priority", 8)) {
            /* Anything but a class's plain name: the tree path words the error. */
            span_t name;
            ok = at(sc, 'n') ? scan_literal(sc, "null", 4)
                             : scan_string(sc, &name) &&
                                   message_priority_parse((const char *)name.s, name.n, &priority);
        } else {
            ok = skip_value(sc);
        }
        if (!ok || !container_next(sc, '}', &more))
            return false;
    }
    if (!have_id)
        return false;
    ranker_candidate_t *c = &col->candidates[col->n++];
    c->id = (const char *)id.s;
    c->id_len = id.n;
    c->score = score;
    c->priority = priority;
    col->limit_tags[col->n - 1] = tags;
    c->eligible = true;
    c->features = &col->features[first_feature];
    c->n_features = col->n_feat - first_feature;
    col->text_bytes += id.n + 1;
    return true;
}

/* The candidates array at sc->p. */
static bool scan_candidates(scanner_t *sc, collected_t *col)
{
    bool more;
    if (!container_open(sc, '[', ']', &more))
        return false;
    while (more) {
        skip_ws(sc);
        if (!scan_candidate(sc, col) || !container_next(sc, ']', &more))
            return false;
    }
    return true;
}

/* What the pass keeps of the request object's own members. */
typedef struct top_fields {
    bool have_op;
    span_t member, opportunity;
    bool have_member, have_opportunity;
    int channel;
    collected_t *col;
} top_fields_t;

static bool scan_member_value(scanner_t *sc, span_t key, top_fields_t *t, decide_scan_t *out,
                              const config_t *cfg)
{
    span_t s;
    switch (key.n) {
    case 2:
        if (span_is(key, "op", 2)) {
            /* Any other op is the tree path's: stop at once. */
            t->have_op = scan_string(sc, &s) && span_is(s, "decide", 6);
            return t->have_op;
        }
        if (span_is(key, "id", 2)) {
            if (at(sc, '"')) {
                if (!scan_string(sc, &s))
                    return false;
                out->id_kind = DECIDE_SCAN_ID_STRING;
                out->id_text = (const char *)s.s;
                out->id_len = s.n;
                return true;
            }
            out->id_kind = DECIDE_SCAN_ID_NUMBER;
            return scan_number(sc, &out->id_number);
        }
        if (span_is(key, "ts", 2)) {
            if (at(sc, 'n'))
                return scan_literal(sc, "null", 4);
            json_lex_number_t v;
            if (!scan_number(sc, &v))
                return false;
            double x = number_value(&v);
            if (!(x >= 0 && x < 1e11))
                return false;
            out->r.ts = (int64_t)floor(x);
            out->ts_given = true;
            return true;
        }
        break;
    case 6:
        if (span_is(key, "member", 6)) {
            t->have_member = scan_string(sc, &t->member) &&
                             ops_check_member_bytes((const char *)t->member.s, t->member.n) == NULL;
            return t->have_member;
        }
        break;
    case 7:
        if (span_is(key, "channel", 7)) {
            if (!scan_string(sc, &s))
                return false;
            t->channel = config_channel_index(cfg, (const char *)s.s, s.n);
            return t->channel >= 0;
        }
        break;
    case 10:
        if (span_is(key, "candidates", 10)) {
            if (at(sc, 'n'))
                return scan_literal(sc, "null", 4);
            return scan_candidates(sc, t->col) &&
                   t->col->n <= (size_t)cfg->limits.max_candidates;
        }
        break;
    case 11:
        if (span_is(key, "opportunity", 11)) {
            t->have_opportunity = scan_string(sc, &t->opportunity) && t->opportunity.n > 0 &&
                                  t->opportunity.n <= DECIDE_ID_MAX;
            return t->have_opportunity;
        }
        break;
    default:
        break;
    }
    return skip_value(sc);
}

static const char *copy_text(char **text, const char *s, size_t n)
{
    char *out = *text;
    memcpy(out, s, n);
    out[n] = '\0';
    *text += n + 1;
    return out;
}

/* The request from what the pass collected: one allocation of the exact
 * size, the arrays first (as decide_request_parse lays them out), then
 * copies of the strings, which must outlive the line. */
static bool build_request(decide_request_t *r, const top_fields_t *t, const collected_t *col)
{
    size_t n = col->n;
    size_t arrays = n * (sizeof(ranker_candidate_t) + 3 * sizeof(double)) +
                    col->n_feat * sizeof(ranker_feature_t) + n * sizeof(uint32_t);
    size_t text_bytes = col->text_bytes + t->member.n + 1 + t->opportunity.n + 1;
    char *mem = calloc(1, arrays + text_bytes);
    if (mem == NULL)
        return false;
    r->mem = mem;
    char *text = mem + arrays;
    r->member = copy_text(&text, (const char *)t->member.s, t->member.n);
    r->member_len = t->member.n;
    r->opportunity = copy_text(&text, (const char *)t->opportunity.s, t->opportunity.n);
    r->opportunity_len = t->opportunity.n;
    r->channel = t->channel;
    if (n == 0)
        return true; /* no arrays, as decide_request_parse leaves them */
    r->n = n;
    r->candidates = (ranker_candidate_t *)mem;
    r->last_sent = (double *)(mem + n * sizeof(ranker_candidate_t));
    r->utility = r->last_sent + n;
    r->select_prob = r->utility + n;
    r->features = (ranker_feature_t *)(r->select_prob + n);
    r->limit_tags = (uint32_t *)(r->features + col->n_feat);
    memcpy(r->limit_tags, col->limit_tags, n * sizeof(uint32_t));
    for (size_t f = 0; f < col->n_feat; f++) {
        const ranker_feature_t *from = &col->features[f];
        r->features[f].name = copy_text(&text, from->name, from->name_len);
        r->features[f].name_len = from->name_len;
        r->features[f].value = from->value;
    }
    for (size_t i = 0; i < n; i++) {
        const ranker_candidate_t *from = &col->candidates[i];
        ranker_candidate_t *c = &r->candidates[i];
        *c = *from;
        c->id = copy_text(&text, from->id, from->id_len);
        c->features = r->features + (from->features - col->features);
        r->last_sent[i] = -1.0;
    }
    return true;
}

bool decide_scan_line(const char *line, size_t len, const config_t *cfg, decide_scan_t *out)
{
    memset(out, 0, sizeof *out);
    if (memchr(line, '\\', len) != NULL)
        return false;
    collected_t col;
    col.n = col.n_feat = col.text_bytes = 0;
    col.limits = &cfg->rate_limits;
    scanner_t sc = {.p = (const unsigned char *)line, .end = (const unsigned char *)line + len};
    top_fields_t t = {.channel = -1, .col = &col};
    keyset_t keys;
    keys.n = 0;
    bool more;
    skip_ws(&sc);
    if (!container_open(&sc, '{', '}', &more))
        return false;
    while (more) {
        span_t key;
        if (!object_key(&sc, &keys, &key) || !scan_member_value(&sc, key, &t, out, cfg) ||
            !container_next(&sc, '}', &more))
            return false;
    }
    skip_ws(&sc);
    if (sc.p != sc.end || !t.have_op || !t.have_member || t.channel < 0 || !t.have_opportunity)
        return false;
    if (!build_request(&out->r, &t, &col)) {
        memset(out, 0, sizeof *out);
        return false;
    }
    return true;
}

const char *decide_scan_take(decide_scan_t *scan, decide_request_t *r, const config_t *cfg,
                             int64_t now)
{
    *r = scan->r;
    memset(&scan->r, 0, sizeof scan->r);
    if (!scan->ts_given) {
        r->ts = now;
        return NULL;
    }
    return ops_check_ts_window(r->ts, now, cfg->limits.ts_window_s);
}
