/*
 * fuzz_decide_scan.c - differential fuzz target: the decide scanner
 * (src/fast/decide_scan.c) against the tree path it stands in for
 * (proto_parse_line, itself checked against jansson by fuzz_request.c,
 * then decide_request_parse).
 *
 * Each input line goes through both. The scanner may decline any line
 * (the server then takes the tree path), but a line it accepts must be a
 * decide the tree path accepts too, with the same "id", and the two
 * requests must be equal field by field, bit for bit; the ts window
 * check, the one the scanner leaves to decide_scan_take, must give the
 * same answer. Any difference aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/config/config.h"
#include "notifd/fast/decide_scan.h"
#include "notifd/fast/request_check.h"
#include "notifd/net/json_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The clock both paths check "ts" against. */
#define FUZZ_NOW 1800000000

static config_t *fuzz_config(void)
{
    static config_t *cfg;
    if (cfg == NULL) {
        config_errors_t errs;
        config_errors_init(&errs);
        /* Limited tags, so a candidate's "tags" mask is compared too. */
        cfg = config_load_string("{\"limits\":{\"max_candidates\":50,\"ts_window_s\":86400,"
                                 "\"global\":{\"push\":{\"tags\":{\"x\":{\"per_second\":1,"
                                 "\"burst\":1},\"promo\":{\"per_second\":1,\"burst\":1}}}}}}",
                                 1, &errs);
        config_errors_free(&errs);
        if (cfg == NULL)
            abort();
    }
    return cfg;
}

static void same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len != b_len || (a_len > 0 && memcmp(a, b, a_len) != 0))
        abort();
}

static void same_double(double a, double b)
{
    if (memcmp(&a, &b, sizeof a) != 0)
        abort();
}

static void same_id(const decide_scan_t *scan, const json_t *id)
{
    switch (scan->id_kind) {
    case DECIDE_SCAN_ID_NONE:
        if (id != NULL)
            abort();
        break;
    case DECIDE_SCAN_ID_STRING:
        if (!json_is_string(id))
            abort();
        same_bytes(scan->id_text, scan->id_len, json_string_value(id), json_string_length(id));
        break;
    case DECIDE_SCAN_ID_NUMBER:
        if (scan->id_number.is_real) {
            if (!json_is_real(id))
                abort();
            same_double(scan->id_number.real, json_real_value(id));
        } else if (!json_is_integer(id) || json_integer_value(id) != scan->id_number.integer) {
            abort();
        }
        break;
    }
}

static void same_request(const decide_request_t *t, const decide_request_t *s)
{
    same_bytes(t->member, t->member_len, s->member, s->member_len);
    same_bytes(t->opportunity, t->opportunity_len, s->opportunity, s->opportunity_len);
    if (t->channel != s->channel || t->ts != s->ts || t->n != s->n)
        abort();
    for (size_t i = 0; i < t->n; i++) {
        const ranker_candidate_t *a = &t->candidates[i], *b = &s->candidates[i];
        same_bytes(a->id, a->id_len, b->id, b->id_len);
        same_double(a->score, b->score);
        if (a->eligible != b->eligible || a->priority != b->priority ||
            a->n_features != b->n_features || t->limit_tags[i] != s->limit_tags[i])
            abort();
        for (size_t f = 0; f < a->n_features; f++) {
            same_bytes(a->features[f].name, a->features[f].name_len, b->features[f].name,
                       b->features[f].name_len);
            same_double(a->features[f].value, b->features[f].value);
        }
        same_double(t->last_sent[i], s->last_sent[i]);
        same_double(t->utility[i], s->utility[i]);
        same_double(t->select_prob[i], s->select_prob[i]);
    }
}

static void check_line(const char *line, size_t len)
{
    const config_t *cfg = fuzz_config();
    decide_scan_t scan;
    bool scanned = decide_scan_line(line, len, cfg, &scan);
    proto_parse_error_t perr;
    json_t *root = proto_parse_line(line, len, &perr);
    if (!scanned) {
        json_decref(root);
        return;
    }
    json_t *op = json_object_get(root, "op");
    if (!json_is_object(root) || !json_is_string(op) ||
        strcmp(json_string_value(op), "decide") != 0)
        abort();
    same_id(&scan, json_object_get(root, "id"));
    decide_request_t tree, fast;
    const char *tree_why = decide_request_parse(&tree, root, cfg, FUZZ_NOW);
    const char *fast_why = decide_scan_take(&scan, &fast, cfg, FUZZ_NOW);
    /* The scanner leaves only the ts window: the tree path must agree on it. */
    if ((tree_why == NULL) != (fast_why == NULL) ||
        (tree_why != NULL && strcmp(tree_why, fast_why) != 0))
        abort();
    if (tree_why == NULL)
        same_request(&tree, &fast);
    decide_request_free(&tree);
    decide_request_free(&fast);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One request per line, as the server frames them. */
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl != NULL ? nl : end;
        check_line(p, (size_t)(stop - p));
        p = stop + (nl != NULL);
    }
    return 0;
}
