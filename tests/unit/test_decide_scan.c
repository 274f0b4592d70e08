/*
 * test_decide_scan.c - unit tests for the decide scanner
 * (src/fast/decide_scan.c): what it fills for the requests producers send,
 * that it owns its strings, and which lines it leaves to the tree path.
 * Every line it accepts is also read by the tree path and the two requests
 * must be equal (the fuzz target fuzz_decide_scan.c does the same on
 * random input).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "notifd/config/config.h"
#include "notifd/fast/decide_scan.h"
#include "notifd/fast/request_check.h"
#include "notifd/net/json_parse.h"

#define NOW 1800000000

static config_t *cfg;

static int setup(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    cfg = config_load_string("{\"limits\":{\"max_candidates\":3,\"ts_window_s\":86400,"
                             "\"global\":{\"push\":{\"tags\":{\"promo\":{\"per_second\":1,"
                             "\"burst\":1},\"x\":{\"per_second\":1,\"burst\":1}}}}}}",
                             1, &errs);
    config_errors_free(&errs);
    return cfg == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    config_release(cfg);
    return 0;
}

/* The tree path's request for the same line; it must accept it. */
static void tree_request(const char *line, decide_request_t *out, json_t **root)
{
    proto_parse_error_t perr;
    *root = proto_parse_line(line, strlen(line), &perr);
    assert_non_null(*root);
    assert_null(decide_request_parse(out, *root, cfg, NOW));
}

static void assert_same_request(const decide_request_t *t, const decide_request_t *s)
{
    assert_int_equal(t->member_len, s->member_len);
    assert_memory_equal(t->member, s->member, t->member_len);
    assert_int_equal(t->opportunity_len, s->opportunity_len);
    assert_memory_equal(t->opportunity, s->opportunity, t->opportunity_len);
    assert_int_equal(t->channel, s->channel);
    assert_int_equal(t->ts, s->ts);
    assert_int_equal(t->n, s->n);
    for (size_t i = 0; i < t->n; i++) {
        const ranker_candidate_t *a = &t->candidates[i], *b = &s->candidates[i];
        assert_int_equal(a->id_len, b->id_len);
        assert_memory_equal(a->id, b->id, a->id_len);
        assert_memory_equal(&a->score, &b->score, sizeof a->score);
        assert_int_equal(a->n_features, b->n_features);
        assert_true(b->eligible);
        for (size_t f = 0; f < a->n_features; f++) {
            assert_int_equal(a->features[f].name_len, b->features[f].name_len);
            assert_memory_equal(a->features[f].name, b->features[f].name,
                                a->features[f].name_len);
            assert_memory_equal(&a->features[f].value, &b->features[f].value, sizeof(double));
        }
        assert_true(s->last_sent[i] == -1.0);
        assert_int_equal(t->limit_tags[i], s->limit_tags[i]);
    }
}

/* Scans `line` (which must be accepted), checks it against the tree path,
 * and leaves the scanner's request in *out. */
static void scan_ok(const char *line, decide_scan_t *scan, decide_request_t *out)
{
    assert_true(decide_scan_line(line, strlen(line), cfg, scan));
    decide_request_t tree;
    json_t *root;
    tree_request(line, &tree, &root);
    assert_null(decide_scan_take(scan, out, cfg, NOW));
    assert_same_request(&tree, out);
    decide_request_free(&tree);
    json_decref(root);
}

static void test_fills_a_typical_decide(void **state)
{
    (void)state;
    const char *line =
        "{\"op\":\"decide\",\"id\":\"req-7\",\"member\":\"ann\",\"channel\":\"email\","
        "\"opportunity\":\"o-1\",\"ts\":1800000000.75,\"candidates\":["
        "{\"id\":\"m1\",\"score\":0.25,\"features\":{\"f1\":1,\"f2\":-2.5e-3},\"tags\":[\"x\"]},"
        "{\"id\":\"m2\",\"score\":3},{\"id\":\"caf\xc3\xa9\",\"score\":null,\"features\":null}]}";
    decide_scan_t scan;
    decide_request_t r;
    scan_ok(line, &scan, &r);
    assert_int_equal(scan.id_kind, DECIDE_SCAN_ID_STRING);
    assert_int_equal(scan.id_len, 5);
    assert_memory_equal(scan.id_text, "req-7", 5);
    assert_string_equal(r.member, "ann");
    assert_string_equal(r.opportunity, "o-1");
    assert_int_equal(r.channel, config_channel_index(cfg, "email", 5));
    assert_int_equal(r.ts, 1800000000);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.candidates[0].n_features, 2);
    assert_true(r.candidates[0].features[1].value == -2.5e-3);
    assert_true(r.candidates[1].score == 3.0);
    assert_int_equal(r.candidates[1].n_features, 0);
    assert_string_equal(r.candidates[2].id, "caf\xc3\xa9");
    assert_true(r.candidates[2].score == 0.0);
    assert_int_equal(r.limit_tags[0], 2u); /* "x", the second limited tag */
    assert_int_equal(r.limit_tags[1], 0u);
    decide_request_free(&r);
}

/* A candidate's "tags" that name a global rate limit become a mask; other
 * tags, and values that are no strings, are the producer's own. */
static void test_limited_tags_become_a_mask(void **state)
{
    (void)state;
    const char *line =
        "{\"op\":\"decide\",\"member\":\"ann\",\"channel\":\"push\",\"opportunity\":\"o\","
        "\"candidates\":[{\"id\":\"a\",\"tags\":[\"promo\",3,{\"promo\":1},[\"x\"],\"x\","
        "\"promo\",\"other\",null,true]},{\"id\":\"b\",\"tags\":null},"
        "{\"id\":\"c\",\"tags\":[\"prom\",\"promos\",\"\"]}]}";
    decide_scan_t scan;
    decide_request_t r;
    scan_ok(line, &scan, &r);
    assert_int_equal(r.limit_tags[0], 3u);
    assert_int_equal(r.limit_tags[1], 0u);
    assert_int_equal(r.limit_tags[2], 0u);
    decide_request_free(&r);
}

static void test_optional_fields(void **state)
{
    (void)state;
    decide_scan_t scan;
    decide_request_t r;
    /* No id, no ts (the clock's), no candidates; keys in any order, blanks. */
    scan_ok(" { \"member\" : \"m\" , \"channel\":\"push\",\"opportunity\":\"o\","
            "\"op\":\"decide\" } ",
            &scan, &r);
    assert_int_equal(scan.id_kind, DECIDE_SCAN_ID_NONE);
    assert_int_equal(r.ts, NOW);
    assert_int_equal(r.n, 0);
    decide_request_free(&r);
    scan_ok("{\"op\":\"decide\",\"id\":-12,\"member\":\"m\",\"channel\":\"push\",\"opportunity\":"
            "\"o\",\"ts\":null,\"candidates\":null,\"extra\":{\"a\":[1,{\"b\":false}]}}",
            &scan, &r);
    assert_int_equal(scan.id_kind, DECIDE_SCAN_ID_NUMBER);
    assert_false(scan.id_number.is_real);
    assert_int_equal(scan.id_number.integer, -12);
    decide_request_free(&r);
    scan_ok("{\"op\":\"decide\",\"id\":2.5,\"member\":\"m\",\"channel\":\"push\",\"opportunity\":"
            "\"o\",\"candidates\":[]}",
            &scan, &r);
    assert_true(scan.id_number.is_real && scan.id_number.real == 2.5);
    decide_request_free(&r);
}

static void test_strings_outlive_the_line(void **state)
{
    (void)state;
    char line[] = "{\"op\":\"decide\",\"member\":\"ann\",\"channel\":\"push\",\"opportunity\":"
                  "\"o1\",\"candidates\":[{\"id\":\"a\",\"features\":{\"f\":1}}]}";
    decide_scan_t scan;
    decide_request_t r;
    assert_true(decide_scan_line(line, strlen(line), cfg, &scan));
    assert_null(decide_scan_take(&scan, &r, cfg, NOW));
    memset(line, 'x', sizeof line - 1); /* the framer reuses its buffer */
    assert_string_equal(r.member, "ann");
    assert_string_equal(r.opportunity, "o1");
    assert_string_equal(r.candidates[0].id, "a");
    assert_memory_equal(r.candidates[0].features[0].name, "f", 1);
    decide_request_free(&r);
}

static void test_ts_window_is_checked_at_take(void **state)
{
    (void)state;
    const char *line = "{\"op\":\"decide\",\"member\":\"m\",\"channel\":\"push\",\"opportunity\":"
                       "\"o\",\"ts\":1700000000}";
    decide_scan_t scan;
    decide_request_t r, tree;
    assert_true(decide_scan_line(line, strlen(line), cfg, &scan));
    const char *why = decide_scan_take(&scan, &r, cfg, NOW);
    assert_non_null(why);
    json_t *root = proto_parse_line(line, strlen(line), NULL);
    assert_string_equal(why, decide_request_parse(&tree, root, cfg, NOW));
    decide_request_free(&r);
    decide_request_free(&tree);
    json_decref(root);
}

/* The start of a valid decide, for the lines below to finish. */
#define HEAD "{\"op\":\"decide\",\"member\":\"m\",\"channel\":\"push\",\"opportunity\":\"o\""

static void test_leaves_to_the_tree_path(void **state)
{
    (void)state;
    static const char *const lines[] = {
        /* not a decide */
        "{\"op\":\"feedback\",\"member\":\"m\",\"channel\":\"push\",\"opportunity\":\"o\"}",
        "{\"member\":\"m\",\"channel\":\"push\",\"opportunity\":\"o\"}",
        "[{\"op\":\"decide\"}]",
        /* escapes are the tree's to undo */
        "{\"op\":\"decide\",\"member\":\"m\\u0041\",\"channel\":\"push\",\"opportunity\":\"o\"}",
        /* invalid JSON */
        HEAD ",}",
        HEAD "} x",
        HEAD ",\"id\":01}",
        HEAD ",\"ts\":1e400}",
        "{\"op\":\"decide\",\"member\":\"m\xff\",\"channel\":\"push\",\"opportunity\":\"o\"}",
        HEAD "",
        /* duplicate keys, at every level */
        "{\"op\":\"decide\",\"op\":\"decide\",\"member\":\"m\",\"channel\":\"push\","
        "\"opportunity\":\"o\"}",
        HEAD ",\"x\":{\"a\":1,\"a\":2}}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\",\"id\":\"b\"}]}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\",\"features\":{\"f\":1,\"f\":2}}]}",
        /* invalid decides */
        "{\"op\":\"decide\",\"member\":\"m{1}\",\"channel\":\"push\",\"opportunity\":\"o\"}",
        "{\"op\":\"decide\",\"member\":\"m\",\"channel\":\"sms\",\"opportunity\":\"o\"}",
        "{\"op\":\"decide\",\"member\":\"m\",\"channel\":\"push\",\"opportunity\":\"\"}",
        "{\"op\":\"decide\",\"member\":\"m\",\"channel\":\"push\"}",
        HEAD ",\"id\":null}",
        HEAD ",\"ts\":-1}",
        HEAD ",\"ts\":\"1\"}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"},{\"id\":\"d\"}]}",
        HEAD ",\"candidates\":"
        "[{\"score\":1}]}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\",\"score\":\"1\"}]}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\",\"tags\":{}}]}",
        HEAD ",\"candidates\":"
        "[{\"id\":\"a\",\"features\":{\"f\":true}}]}",
        HEAD ",\"candidates\":[1]}",
        HEAD ",\"candidates\":{}}",
        /* beyond the scanner's own bounds (valid for the tree) */
        HEAD ",\"x\":"
        "[[[[[[[[1]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        decide_scan_t scan;
        if (decide_scan_line(lines[i], strlen(lines[i]), cfg, &scan)) {
            print_error("accepted: %s\n", lines[i]);
            fail();
        }
        assert_null(scan.r.mem);
    }
}

static void test_key_count_bound(void **state)
{
    (void)state;
    /* DECIDE_SCAN_MAX_KEYS keys in one object: accepted; one more: declined. */
    for (int extra = DECIDE_SCAN_MAX_KEYS - 4; extra <= DECIDE_SCAN_MAX_KEYS - 3; extra++) {
        char line[4096];
        int n = snprintf(line, sizeof line, "{\"op\":\"decide\",\"member\":\"m\",\"channel\":"
                                            "\"push\",\"opportunity\":\"o\"");
        for (int k = 0; k < extra; k++)
            n += snprintf(line + n, sizeof line - (size_t)n, ",\"k%d\":%d", k, k);
        snprintf(line + n, sizeof line - (size_t)n, "}");
        decide_scan_t scan;
        bool ok = decide_scan_line(line, strlen(line), cfg, &scan);
        assert_int_equal(ok, 4 + extra <= DECIDE_SCAN_MAX_KEYS);
        decide_request_free(&scan.r);
    }
}

static void test_candidate_bound(void **state)
{
    (void)state;
    /* Up to DECIDE_SCAN_MAX_CANDIDATES the scan takes a decide; one more
     * goes to the tree, which accepts it (limits.max_candidates 1000). */
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *big = config_load_string("{\"limits\":{\"max_candidates\":1000}}", 1, &errs);
    config_errors_free(&errs);
    assert_non_null(big);
    for (int n = DECIDE_SCAN_MAX_CANDIDATES; n <= DECIDE_SCAN_MAX_CANDIDATES + 1; n++) {
        size_t cap = 256 + (size_t)n * 64;
        char *line = malloc(cap);
        assert_non_null(line);
        int at = snprintf(line, cap, "{\"op\":\"decide\",\"member\":\"m\",\"channel\":"
                                     "\"push\",\"opportunity\":\"o\",\"candidates\":[");
        for (int k = 0; k < n; k++)
            at += snprintf(line + at, cap - (size_t)at, "%s{\"id\":\"c%d\",\"score\":%d}",
                           k ? "," : "", k, k);
        snprintf(line + at, cap - (size_t)at, "]}");
        decide_scan_t scan;
        bool ok = decide_scan_line(line, strlen(line), big, &scan);
        assert_int_equal(ok, n <= DECIDE_SCAN_MAX_CANDIDATES);
        if (ok) {
            assert_int_equal(scan.r.n, (size_t)n);
            char last[16];
            snprintf(last, sizeof last, "c%d", n - 1);
            assert_string_equal(scan.r.candidates[n - 1].id, last);
        }
        decide_request_free(&scan.r);
        json_t *root = proto_parse_line(line, strlen(line), NULL);
        decide_request_t tree;
        assert_null(decide_request_parse(&tree, root, big, NOW));
        decide_request_free(&tree);
        json_decref(root);
        free(line);
    }
    config_release(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fills_a_typical_decide),
        cmocka_unit_test(test_limited_tags_become_a_mask),
        cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_strings_outlive_the_line),
        cmocka_unit_test(test_ts_window_is_checked_at_take),
        cmocka_unit_test(test_leaves_to_the_tree_path),
        cmocka_unit_test(test_key_count_bound),
        cmocka_unit_test(test_candidate_bound),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
