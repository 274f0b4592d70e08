/*
 * test_protocol.c - unit tests for the producer protocol's wire format
 * (src/net/protocol.c): one compact JSON object per line with exactly one
 * trailing '\n' and keys in insertion order; the error line's shape and the
 * stable error code of every proto_error_t; request ids echoed when they are
 * strings or numbers and replaced by null otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/net/protocol.h"

/* Encodes, checks the single trailing newline, and returns the line. */
static char *encode(json_t *obj, size_t *len)
{
    char *line = proto_encode_line(obj, len);
    assert_non_null(line);
    assert_true(*len >= 1);
    assert_int_equal(strlen(line), *len); /* NUL-terminated, no embedded NUL */
    return line;
}

/* Parses an error line (without its newline) back into JSON. */
static json_t *parse_line(const char *line, size_t len)
{
    assert_true(len >= 1);
    assert_int_equal(line[len - 1], '\n');
    json_error_t jerr;
    json_t *o = json_loadb(line, len - 1, 0, &jerr);
    assert_non_null(o);
    return o;
}

static void test_encode_line_ends_with_exactly_one_newline(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:b,s:s}", "ok", 1, "text", "a\nb");
    size_t len;
    char *line = encode(o, &len);
    assert_int_equal(line[len - 1], '\n');
    /* The '\n' inside the string is escaped, so the only raw newline is last. */
    assert_ptr_equal(strchr(line, '\n'), line + len - 1);
    free(line);
    json_decref(o);
}

static void test_encode_line_is_nul_terminated(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s,s:s,s:s}", "aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd",
                          "eeeeeeee", "ffffffff");
    size_t len;
    char *line = proto_encode_line(o, &len);
    assert_non_null(line);
    assert_int_equal(line[len], '\0');
    free(line);
    json_decref(o);
}

static void test_encode_line_is_compact(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i,s:[i,i],s:{s:s}}", "a", 1, "b", 2, 3, "c", "d", "e");
    size_t len;
    char *line = encode(o, &len);
    assert_string_equal(line, "{\"a\":1,\"b\":[2,3],\"c\":{\"d\":\"e\"}}\n");
    free(line);
    json_decref(o);
}

static void test_encode_line_keeps_insertion_order(void **state)
{
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "zeta", json_integer(1));
    json_object_set_new(o, "alpha", json_integer(2));
    json_object_set_new(o, "mid", json_integer(3));
    size_t len;
    char *line = encode(o, &len);
    assert_string_equal(line, "{\"zeta\":1,\"alpha\":2,\"mid\":3}\n");
    free(line);
    json_decref(o);
}

static void test_encode_line_prints_short_reals(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:f,s:f}", "p", 0.1, "q", 0.25);
    size_t len;
    char *line = encode(o, &len);
    assert_string_equal(line, "{\"p\":0.1,\"q\":0.25}\n");
    free(line);
    json_decref(o);
}

static void test_encode_line_handles_output_larger_than_initial_buffer(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *o = json_pack("{s:s}", "v", big);
    size_t len;
    char *line = encode(o, &len);
    assert_int_equal(len, strlen("{\"v\":\"\"}\n") + sizeof big - 1);
    assert_int_equal(line[len - 1], '\n');
    free(line);
    json_decref(o);
}

static void test_error_line_has_id_ok_and_error_in_order(void **state)
{
    (void)state;
    json_t *id = json_string("r1");
    size_t len;
    char *line = proto_error_line(id, PROTO_BAD_REQUEST, "\"member\" is missing", &len);
    assert_non_null(line);
    assert_string_equal(line, "{\"id\":\"r1\",\"ok\":false,\"error\":{\"code\":\"bad_request\","
                              "\"message\":\"\\\"member\\\" is missing\"}}\n");
    assert_int_equal(len, strlen(line));
    free(line);
    json_decref(id);
}

static void test_error_line_keeps_its_message_when_the_text_is_not_utf8(void **state)
{
    (void)state;
    size_t len;
    /* Redis error text cut mid-character, with a raw newline in it. */
    char *line = proto_error_line(NULL, PROTO_UNAVAILABLE, "redis says \xc3\nno", &len);
    assert_non_null(line);
    assert_string_equal(line, "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"unavailable\","
                              "\"message\":\"redis says ?\\nno\"}}\n");
    assert_int_equal(len, strlen(line));
    free(line);
}

static void test_error_codes_are_the_documented_strings(void **state)
{
    (void)state;
    assert_string_equal(proto_error_code(PROTO_BAD_REQUEST), "bad_request");
    assert_string_equal(proto_error_code(PROTO_LINE_TOO_LONG), "line_too_long");
    assert_string_equal(proto_error_code(PROTO_UNKNOWN_OP), "unknown_op");
    assert_string_equal(proto_error_code(PROTO_UNAUTHORIZED), "unauthorized");
    assert_string_equal(proto_error_code(PROTO_UNAVAILABLE), "unavailable");
    assert_string_equal(proto_error_code(PROTO_INTERNAL), "internal");
}

static void test_out_of_range_error_code_is_internal(void **state)
{
    (void)state;
    assert_string_equal(proto_error_code(PROTO_ERROR_COUNT), "internal");
    assert_string_equal(proto_error_code((proto_error_t)-1), "internal");
}

static void test_error_line_carries_each_code(void **state)
{
    (void)state;
    static const char *const expected[PROTO_ERROR_COUNT] = {
        "bad_request", "line_too_long", "unknown_op", "unauthorized", "unavailable", "internal",
    };
    for (int e = 0; e < PROTO_ERROR_COUNT; e++) {
        size_t len;
        char *line = proto_error_line(NULL, (proto_error_t)e, "why", &len);
        assert_non_null(line);
        json_t *o = parse_line(line, len);
        assert_true(json_is_false(json_object_get(o, "ok")));
        json_t *err = json_object_get(o, "error");
        assert_true(json_is_object(err));
        assert_string_equal(json_string_value(json_object_get(err, "code")), expected[e]);
        assert_string_equal(json_string_value(json_object_get(err, "message")), "why");
        assert_int_equal(json_object_size(err), 2);
        assert_int_equal(json_object_size(o), 3);
        json_decref(o);
        free(line);
    }
}

static void test_error_line_without_id_has_null_id(void **state)
{
    (void)state;
    size_t len;
    char *line = proto_error_line(NULL, PROTO_UNKNOWN_OP, "no such op", &len);
    assert_non_null(line);
    json_t *o = parse_line(line, len);
    json_t *id = json_object_get(o, "id");
    assert_non_null(id);
    assert_true(json_is_null(id));
    json_decref(o);
    free(line);
}

static void test_error_line_echoes_numeric_ids(void **state)
{
    (void)state;
    json_t *ids[] = {json_integer(42), json_integer(-7), json_real(1.5)};
    const char *expected[] = {"{\"id\":42,", "{\"id\":-7,", "{\"id\":1.5,"};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *line = proto_error_line(ids[i], PROTO_INTERNAL, "x", &len);
        assert_non_null(line);
        assert_memory_equal(line, expected[i], strlen(expected[i]));
        free(line);
        json_decref(ids[i]);
    }
}

static void test_error_line_replaces_non_scalar_ids_by_null(void **state)
{
    (void)state;
    json_t *ids[] = {json_true(), json_false(), json_null(), json_object(), json_array()};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        size_t len;
        char *line = proto_error_line(ids[i], PROTO_BAD_REQUEST, "x", &len);
        assert_non_null(line);
        assert_memory_equal(line, "{\"id\":null,", strlen("{\"id\":null,"));
        free(line);
        json_decref(ids[i]);
    }
}

static void test_error_line_does_not_steal_the_id_reference(void **state)
{
    (void)state;
    json_t *id = json_string("keep");
    size_t len;
    char *line = proto_error_line(id, PROTO_BAD_REQUEST, "x", &len);
    assert_non_null(line);
    free(line);
    /* Still ours: one reference, value intact (ASan/valgrind catch misuse). */
    assert_int_equal(id->refcount, 1);
    assert_string_equal(json_string_value(id), "keep");
    json_decref(id);
}

static void test_id_valid_accepts_strings_and_numbers_only(void **state)
{
    (void)state;
    json_t *s = json_string(""), *i = json_integer(0), *r = json_real(0.5);
    json_t *t = json_true(), *n = json_null(), *o = json_object(), *a = json_array();
    assert_true(proto_id_valid(s));
    assert_true(proto_id_valid(i));
    assert_true(proto_id_valid(r));
    assert_false(proto_id_valid(t));
    assert_false(proto_id_valid(n));
    assert_false(proto_id_valid(o));
    assert_false(proto_id_valid(a));
    assert_false(proto_id_valid(NULL));
    json_decref(s);
    json_decref(i);
    json_decref(r);
    json_decref(o);
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_line_ends_with_exactly_one_newline),
        cmocka_unit_test(test_encode_line_is_nul_terminated),
        cmocka_unit_test(test_encode_line_is_compact),
        cmocka_unit_test(test_encode_line_keeps_insertion_order),
        cmocka_unit_test(test_encode_line_prints_short_reals),
        cmocka_unit_test(test_encode_line_handles_output_larger_than_initial_buffer),
        cmocka_unit_test(test_error_line_has_id_ok_and_error_in_order),
        cmocka_unit_test(test_error_line_keeps_its_message_when_the_text_is_not_utf8),
        cmocka_unit_test(test_error_codes_are_the_documented_strings),
        cmocka_unit_test(test_out_of_range_error_code_is_internal),
        cmocka_unit_test(test_error_line_carries_each_code),
        cmocka_unit_test(test_error_line_without_id_has_null_id),
        cmocka_unit_test(test_error_line_echoes_numeric_ids),
        cmocka_unit_test(test_error_line_replaces_non_scalar_ids_by_null),
        cmocka_unit_test(test_error_line_does_not_steal_the_id_reference),
        cmocka_unit_test(test_id_valid_accepts_strings_and_numbers_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
