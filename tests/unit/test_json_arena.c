/*
 * test_json_arena.c - unit tests for src/net/json_arena.c: a request tree
 * parsed in a window comes from the arena and needs no json_decref; a tree
 * that outgrows the arena, or a window without an arena, is reported as not
 * held whole (its tree must be decref'd); released arenas are reused clean.
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

#include "notifd/net/json_arena.h"
#include "notifd/net/json_parse.h"
#include "notifd/net/protocol.h"

static json_t *parse_in(json_arena_t **arena, const char *text)
{
    proto_parse_error_t err;
    *arena = json_arena_begin();
    json_t *root = proto_parse_line(text, strlen(text), &err);
    json_arena_end();
    assert_non_null(root);
    return root;
}

static void test_a_small_tree_is_held_whole(void **state)
{
    (void)state;
    json_arena_t *a;
    json_t *root = parse_in(&a, "{\"op\":\"decide\",\"candidates\":[{\"id\":\"m1\",\"score\":0.5}]}");
    assert_non_null(a);
    assert_true(json_arena_used(a) > 0);
    assert_true(json_arena_holds_all(a));
    assert_string_equal(json_string_value(json_object_get(root, "op")), "decide");
    json_arena_release(a); /* no json_decref: the arena held it all */
}

static void test_a_tree_that_outgrows_the_arena_is_not(void **state)
{
    (void)state;
    /* Far more than one arena (32 KiB) of values. */
    size_t n = 5000, cap = n * 16 + 16, at = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    text[at++] = '[';
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(text + at, cap - at, "%s\"v%zu\"", i ? "," : "", i);
    text[at++] = ']';
    text[at] = '\0';
    json_arena_t *a;
    json_t *root = parse_in(&a, text);
    assert_non_null(a);
    assert_false(json_arena_holds_all(a));
    assert_int_equal(json_array_size(root), n);
    json_decref(root); /* frees the malloc'd part (ASan/valgrind check it) */
    json_arena_release(a);
    free(text);
    /* The released arena comes back clean. */
    json_t *small = parse_in(&a, "{\"a\":1}");
    assert_true(json_arena_holds_all(a));
    (void)small;
    json_arena_release(a);
}

static void test_no_arena_is_not_held_whole(void **state)
{
    (void)state;
    assert_false(json_arena_holds_all(NULL));
}

int main(void)
{
    if (!json_arena_install()) {
        fprintf(stderr, "cannot reserve the arena region\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_small_tree_is_held_whole),
        cmocka_unit_test(test_a_tree_that_outgrows_the_arena_is_not),
        cmocka_unit_test(test_no_arena_is_not_held_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
