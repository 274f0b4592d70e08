/*
 * test_json_parse.c - unit tests for the request parser and the spliced
 * ok-reply encoders of src/net/json_parse.c. The parser replaced json_loadb() on
 * the request path for speed, so the reference is jansson itself: every
 * input, valid or not, must be accepted or rejected exactly as
 * json_loadb(JSON_REJECT_DUPLICATES) does, with an equal tree, and numbers
 * must convert to the same doubles as strtod. The ok-reply encoders must
 * produce the bytes the merged-object encoding produced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/net/json_parse.h"
#include "notifd/net/protocol.h"

/* Parses with both and checks they agree; returns whether it parsed. */
static bool agree(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *ref = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    proto_parse_error_t perr = {0};
    json_t *got = proto_parse_line(text, len, &perr);
    if ((ref == NULL) != (got == NULL))
        fail_msg("disagree on %.*s: jansson %s (%s), proto %s (%s)", (int)len, text,
                 ref ? "accepts" : "rejects", ref ? "" : jerr.text, got ? "accepts" : "rejects",
                 got ? "" : perr.text);
    if (ref != NULL && !json_equal(ref, got))
        fail_msg("different trees for %.*s", (int)len, text);
    if (got == NULL) {
        assert_non_null(perr.text);
        assert_true(perr.column >= 1 && perr.column <= len + 1);
    }
    bool ok = got != NULL;
    json_decref(ref);
    json_decref(got);
    return ok;
}

static bool agree_s(const char *text) { return agree(text, strlen(text)); }

static void test_accepts_what_jansson_accepts(void **state)
{
    (void)state;
    const char *valid[] = {
        "{}", "[]", " { } ", "\t[ 1 , 2 ]\r", "{\"a\":1}", "{\"a\":[true,false,null]}",
        "{\"op\":\"decide\",\"id\":12,\"member\":\"m1\",\"ts\":1795709560,"
        "\"candidates\":[{\"id\":\"msg-1\",\"score\":0.734,\"features\":{\"f\":0.1},"
        "\"tags\":[\"promo\"]}]}",
        "[0,-0,1,-1,9223372036854775807,-9223372036854775808]",
        "[0.0,-0.0,1.5,-2.25,1e3,1E-3,1e+2,0.1,0.3,123456789.123456789]",
        "[1.7976931348623157e308,4.9e-324,2.2250738585072014e-308,1e-400]",
        "[12345678901234567890.5,0.12345678901234567890123]",
        "[\"\",\"plain\",\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]",
        "[\"\\u00e9\\u4e2d\\ud83d\\ude00\",\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"]",
        "{\"\\u00e9\":1,\"\xc3\xa9x\":2}", "{\"a\":{\"a\":{\"a\":{}}}}",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (!agree_s(valid[i]))
            fail_msg("rejected valid %s", valid[i]);
}

static void test_rejects_what_jansson_rejects(void **state)
{
    (void)state;
    const char *invalid[] = {
        "", "   ", "1", "\"str\"", "true", "null", "{", "[", "}", "{\"a\"}", "{\"a\":}",
        "{\"a\":1,}", "[1,]", "[1 2]", "{a:1}", "{'a':1}", "[01]", "[1.]", "[.5]", "[+1]",
        "[1e]", "[1e+]", "[-]", "[--1]", "[0x10]", "[NaN]", "[Infinity]", "[1e999]",
        "[-1e999]", "[9223372036854775808]", "[-9223372036854775809]",
        "[123456789012345678901234567890]", "[tru]", "[nul]", "[falsey]", "{\"a\":1}x",
        "{\"a\":1}{}", "{\"a\":1,\"a\":2}", "{\"k\":{\"x\":1,\"x\":1}}", "[\"\\u0000\"]",
        "[\"\\x\"]", "[\"\\u12\"]", "[\"\\ud83d\"]", "[\"\\ude00\"]", "[\"\\ud83dx\"]",
        "[\"unterminated]", "[\"tab\there\"]", "[\"\xc3\"]", "[\"\xc0\xaf\"]",
        "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xff\"]",
        "{\"a\\u0000b\":1}",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        if (agree_s(invalid[i]))
            fail_msg("accepted invalid %s", invalid[i]);
    /* A raw NUL byte inside a string or between tokens. */
    assert_false(agree("[\"a\0b\"]", 7));
    assert_false(agree("[1,\0 2]", 7));
}

static void test_nesting_limit_matches_jansson(void **state)
{
    (void)state;
    for (int depth = JSON_PARSER_MAX_DEPTH - 1; depth <= JSON_PARSER_MAX_DEPTH + 1; depth++) {
        char *s = malloc((size_t)depth * 2 + 1);
        assert_non_null(s);
        memset(s, '[', (size_t)depth);
        memset(s + depth, ']', (size_t)depth);
        agree(s, (size_t)depth * 2);
        free(s);
    }
}

static void test_reals_convert_exactly_like_strtod(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    char text[400], doc[420];
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (!(d == d) || d - d != 0) /* NaN or infinite */
            continue;
        double v = i % 2 ? d : (double)(x % 1000000) / 1000.0;
        switch (i % 4) {
        case 0: snprintf(text, sizeof text, "%.17g", v); break;
        case 1: snprintf(text, sizeof text, "%.3f", v); break;
        case 2: snprintf(text, sizeof text, "%.15g", v); break;
        default: snprintf(text, sizeof text, "%.6e", v); break;
        }
        if (strchr(text, '.') == NULL && strchr(text, 'e') == NULL)
            strcat(text, ".0");
        snprintf(doc, sizeof doc, "[%s]", text);
        proto_parse_error_t perr;
        json_t *got = proto_parse_line(doc, strlen(doc), &perr);
        if (got == NULL)
            continue; /* out of range both ways; agree() covers that */
        double want = strtod(text, NULL);
        double have = json_real_value(json_array_get(got, 0));
        if (memcmp(&want, &have, sizeof want) != 0)
            fail_msg("%s parsed as %.17g, strtod says %.17g", text, have, want);
        json_decref(got);
    }
}

static void test_error_reports_column_of_the_problem(void **state)
{
    (void)state;
    proto_parse_error_t perr;
    assert_null(proto_parse_line("{\"a\":1,\"a\":2}", 13, &perr));
    assert_int_equal(perr.column, 8);
    assert_non_null(strstr(perr.text, "duplicate"));
    assert_null(proto_parse_line("{\"a\":tru}", 9, &perr));
    assert_int_equal(perr.column, 6);
}

/* The reply encoders against the merged-object encoding they replaced. */
static char *merged_line(json_t *id, json_t *body, size_t *len)
{
    json_t *o = json_object();
    json_object_set(o, "id", id ? id : json_null());
    json_object_set_new(o, "ok", json_true());
    if (body)
        json_object_update(o, body);
    char *line = proto_encode_line(o, len);
    json_decref(o);
    return line;
}

static void test_ok_line_matches_merged_encoding(void **state)
{
    (void)state;
    /* Ids the text variant writes itself: each must read as jansson's. */
    json_t *ids[] = {NULL,
                     json_integer(7),
                     json_string("req-\"1\""),
                     json_real(2.5),
                     json_integer(INT64_MIN),
                     json_string("tab\there \x01\x1f caf\xc3\xa9 \\ / \xe2\x80\xa8"),
                     json_real(1.0 / 3.0),
                     json_real(-0.0),
                     json_real(1e300),
                     json_real(2.5e-9),
                     json_real(123456789012345678.0)};
    json_t *bodies[] = {
        NULL, json_object(),
        json_pack("{s:b,s:n,s:s,s:f,s:{s:I,s:s,s:{s:f}}}", "send", 1, "message", "reason", "send",
                  "p_send", 0.1, "plan", "version", (json_int_t)3, "source", "planner",
                  "per_week", "push", 2.0),
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        for (size_t j = 0; j < sizeof bodies / sizeof bodies[0]; j++) {
            size_t l1 = 0, l2 = 0, l3 = 0;
            char *want = merged_line(ids[i], bodies[j], &l1);
            char *got = proto_ok_line(ids[i], bodies[j], &l2);
            assert_non_null(got);
            assert_int_equal(l1, l2);
            assert_memory_equal(want, got, l1);
            /* The text variant, from the body's own encoding. */
            char *body_text = bodies[j] ? json_dumps(bodies[j], JSON_COMPACT |
                                                                 JSON_REAL_PRECISION(15))
                                        : strdup("{}");
            char *got_text = proto_ok_line_text(ids[i], body_text, strlen(body_text), NULL, &l3);
            assert_non_null(got_text);
            assert_int_equal(l1, l3);
            assert_memory_equal(want, got_text, l1);
            free(want);
            free(got);
            free(got_text);
            free(body_text);
        }
    }
    size_t len = 0;
    char *line = proto_ok_line_text(ids[1], "{\"a\":1}\n", 8, "\"duplicate\":true", &len);
    assert_string_equal(line, "{\"id\":7,\"ok\":true,\"a\":1,\"duplicate\":true}\n");
    free(line);
    line = proto_ok_line_text(NULL, "{}", 2, "\"duplicate\":true", &len);
    assert_string_equal(line, "{\"id\":null,\"ok\":true,\"duplicate\":true}\n");
    free(line);
    assert_null(proto_ok_line_text(NULL, "[1]", 3, NULL, &len));
    assert_null(proto_ok_line_text(NULL, "", 0, NULL, &len));
    /* A raw newline inside would split the reply line. */
    assert_null(proto_ok_line_text(NULL, "{\"a\":1}\n{\"b\":2}", 15, NULL, &len));
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        json_decref(ids[i]);
    for (size_t j = 0; j < sizeof bodies / sizeof bodies[0]; j++)
        json_decref(bodies[j]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_what_jansson_accepts),
        cmocka_unit_test(test_rejects_what_jansson_rejects),
        cmocka_unit_test(test_nesting_limit_matches_jansson),
        cmocka_unit_test(test_reals_convert_exactly_like_strtod),
        cmocka_unit_test(test_error_reports_column_of_the_problem),
        cmocka_unit_test(test_ok_line_matches_merged_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
