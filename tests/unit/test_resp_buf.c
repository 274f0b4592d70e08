/*
 * test_resp_buf.c - RESP as Redis reads it: lengths in bytes (binary-safe),
 * a NUL kept after the bytes, growth across many commands, clear and reuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/lib/resp_buf.h"

static void test_one_command_is_encoded_byte_for_byte(void **state)
{
    (void)state;
    resp_buf_t b = {0};
    const char *argv[] = {"HSET", "k", "f\r\n\0x"};
    const size_t lens[] = {4, 1, 5};
    resp_buf_argv(&b, 3, argv, lens);
    const char want[] = "*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$5\r\nf\r\n\0x\r\n";
    assert_false(b.failed);
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.p, want, sizeof want - 1);
    assert_int_equal(b.p[b.len], '\0');
    resp_buf_free(&b);
    assert_null(b.p);
}

static void test_integers_and_empty_arguments(void **state)
{
    (void)state;
    resp_buf_t b = {0};
    resp_buf_begin(&b, 3);
    resp_buf_arg(&b, "EXPIRE", 6);
    resp_buf_arg(&b, "", 0);
    resp_buf_arg_i64(&b, -9223372036854775807LL - 1);
    const char want[] = "*3\r\n$6\r\nEXPIRE\r\n$0\r\n\r\n$20\r\n-9223372036854775808\r\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.p, want, sizeof want - 1);
    resp_buf_free(&b);
}

static void test_many_commands_grow_one_buffer_and_clear_keeps_or_frees(void **state)
{
    (void)state;
    resp_buf_t b = {0};
    for (int i = 0; i < 10000; i++) {
        resp_buf_begin(&b, 2);
        resp_buf_arg(&b, "GET", 3);
        resp_buf_arg_i64(&b, i);
    }
    assert_false(b.failed);
    assert_true(b.cap > b.len);
    assert_memory_equal(b.p, "*2\r\n$3\r\nGET\r\n$1\r\n0\r\n", 20);
    size_t cap = b.cap;
    resp_buf_clear(&b, cap); /* within the bound: kept */
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.p[0], '\0');
    resp_buf_clear(&b, 16); /* past it: released */
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
    resp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_command_is_encoded_byte_for_byte),
        cmocka_unit_test(test_integers_and_empty_arguments),
        cmocka_unit_test(test_many_commands_grow_one_buffer_and_clear_keeps_or_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
