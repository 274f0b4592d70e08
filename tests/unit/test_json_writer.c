/*
 * test_json_writer.c - unit tests for the reply writer (src/core/
 * json_writer.c): its output must be what jansson writes for the same
 * object (compact, reals to 15 digits), strings must round-trip through a
 * JSON parser whatever bytes they hold, and misuse must fail visibly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>

#include "notifd/lib/json_writer.h"

static char *jansson_dump(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    return s;
}

static void test_matches_jansson_for_a_decision_shaped_object(void **state)
{
    (void)state;
    const double reals[] = {0.0, 1.0, 0.1, 1.0 / 3.0, 2.5e-9, 123456789012345678.0, -7.25, 1e300};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        json_writer_t w;
        jw_init(&w);
        jw_object_begin(&w);
        jw_key(&w, "send");
        jw_bool(&w, true);
        jw_key(&w, "message");
        jw_cstring(&w, "m-1");
        jw_key(&w, "none");
        jw_null(&w);
        jw_key(&w, "p_send");
        jw_real(&w, reals[i]);
        jw_key(&w, "plan");
        jw_object_begin(&w);
        jw_key(&w, "version");
        jw_int(&w, -42);
        jw_key(&w, "per_week");
        jw_object_begin(&w);
        jw_object_end(&w);
        jw_object_end(&w);
        jw_key(&w, "no");
        jw_bool(&w, false);
        jw_object_end(&w);
        size_t len;
        char *ours = jw_take(&w, &len);
        assert_non_null(ours);
        assert_int_equal(len, strlen(ours));

        char *theirs = jansson_dump(json_pack("{s:b,s:s,s:n,s:f,s:{s:I,s:{}},s:b}", "send", 1,
                                              "message", "m-1", "none", "p_send", reals[i],
                                              "plan", "version", (json_int_t)-42, "per_week",
                                              "no", 0));
        assert_string_equal(ours, theirs);
        free(ours);
        free(theirs);
    }
}

static void test_strings_round_trip_and_stay_valid_utf8(void **state)
{
    (void)state;
    const char *cases[] = {
        "plain", "quote\" backslash\\ slash/", "\b\f\n\r\t", "\x01\x1f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_writer_t w;
        jw_init(&w);
        jw_object_begin(&w);
        jw_key(&w, "s");
        jw_cstring(&w, cases[i]);
        jw_object_end(&w);
        char *ours = jw_take(&w, NULL);
        json_error_t err;
        json_t *back = json_loads(ours, 0, &err);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "s")), cases[i]);
        char *theirs = jansson_dump(json_pack("{s:s}", "s", cases[i]));
        assert_string_equal(ours, theirs);
        json_decref(back);
        free(ours);
        free(theirs);
    }
}

static void test_invalid_utf8_becomes_replacement_character(void **state)
{
    (void)state;
    /* A lone continuation byte, an overlong "/", a surrogate, a truncated
     * sequence at the end, and a NUL inside the length. */
    const char bad[] = "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\x00" "e\xe2\x82";
    json_writer_t w;
    jw_init(&w);
    jw_string(&w, bad, sizeof bad - 1);
    char *ours = jw_take(&w, NULL);
    json_error_t err;
    json_t *back = json_loads(ours, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    assert_non_null(back);
    size_t n = json_string_length(back);
    const char *v = json_string_value(back);
    const char expect[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                          "d\x00" "e\xef\xbf\xbd\xef\xbf\xbd";
    assert_int_equal(n, sizeof expect - 1);
    assert_memory_equal(v, expect, n);
    json_decref(back);
    free(ours);
}

static void test_every_ascii_byte_and_long_strings_match_jansson(void **state)
{
    (void)state;
    /* Bytes 1..127 (escapes written in place, \u00XX in upper case), then
     * strings long enough to grow the buffer several times. */
    char ascii[128];
    for (int c = 1; c < 128; c++)
        ascii[c - 1] = (char)c;
    ascii[127] = '\0';
    size_t sizes[] = {127, 5000, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *s = malloc(sizes[i] + 1);
        assert_non_null(s);
        for (size_t k = 0; k < sizes[i]; k++)
            s[k] = ascii[k % 127];
        s[sizes[i]] = '\0';
        json_writer_t w;
        jw_init(&w);
        jw_array_begin(&w);
        jw_cstring(&w, s);
        jw_cstring(&w, "x");
        jw_array_end(&w);
        size_t len;
        char *ours = jw_take(&w, &len);
        char *theirs = jansson_dump(json_pack("[s,s]", s, "x"));
        assert_string_equal(ours, theirs);
        assert_int_equal(len, strlen(theirs));
        free(ours);
        free(theirs);
        free(s);
    }
}

static void test_raw_text_goes_in_as_it_is(void **state)
{
    (void)state;
    json_writer_t w;
    jw_init(&w);
    jw_raw(&w, "{\"id\":", 6);
    jw_string(&w, "a", 1);
    jw_raw(&w, ",\"ok\":true}", 11);
    size_t len;
    char *ours = jw_take(&w, &len);
    assert_string_equal(ours, "{\"id\":\"a\",\"ok\":true}");
    assert_int_equal(len, strlen(ours));
    free(ours);
}

static void test_non_finite_real_is_null(void **state)
{
    (void)state;
    json_writer_t w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "a");
    jw_real(&w, NAN);
    jw_key(&w, "b");
    jw_real(&w, INFINITY);
    jw_object_end(&w);
    char *ours = jw_take(&w, NULL);
    assert_string_equal(ours, "{\"a\":null,\"b\":null}");
    free(ours);
}

static void test_arrays_nest_with_objects(void **state)
{
    (void)state;
    json_writer_t w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "a");
    jw_array_begin(&w);
    jw_array_end(&w);
    jw_key(&w, "b");
    jw_array_begin(&w);
    jw_cstring(&w, "x");
    jw_cstring(&w, "y");
    jw_array_end(&w);
    jw_key(&w, "c");
    jw_array_begin(&w);
    jw_array_begin(&w);
    jw_int(&w, 1);
    jw_array_end(&w);
    jw_object_begin(&w);
    jw_object_end(&w);
    jw_array_end(&w);
    jw_object_end(&w);
    char *ours = jw_take(&w, NULL);
    assert_string_equal(ours, "{\"a\":[],\"b\":[\"x\",\"y\"],\"c\":[[1],{}]}");
    free(ours);

    jw_init(&w);
    jw_array_end(&w); /* nothing open */
    assert_null(jw_take(&w, NULL));
}

static void test_misuse_fails_instead_of_writing_bad_json(void **state)
{
    (void)state;
    json_writer_t w;
    jw_init(&w);
    jw_object_end(&w); /* nothing open */
    assert_null(jw_take(&w, NULL));

    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "k");
    jw_key(&w, "k2"); /* a key where a value must come */
    assert_null(jw_take(&w, NULL));

    jw_init(&w);
    for (int i = 0; i <= JSON_WRITER_MAX_DEPTH; i++) {
        jw_object_begin(&w);
        jw_key(&w, "x");
    }
    assert_true(w.failed);
    jw_free(&w);
    assert_null(w.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_jansson_for_a_decision_shaped_object),
        cmocka_unit_test(test_strings_round_trip_and_stay_valid_utf8),
        cmocka_unit_test(test_invalid_utf8_becomes_replacement_character),
        cmocka_unit_test(test_non_finite_real_is_null),
        cmocka_unit_test(test_every_ascii_byte_and_long_strings_match_jansson),
        cmocka_unit_test(test_raw_text_goes_in_as_it_is),
        cmocka_unit_test(test_misuse_fails_instead_of_writing_bad_json),
        cmocka_unit_test(test_arrays_nest_with_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
