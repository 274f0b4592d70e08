/* stored_answer_valid: what may be replayed from an idempotency record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/fast/stored_answer.h"

static bool valid(const char *s) { return stored_answer_valid(s, strlen(s)); }

static void test_an_answer_notifd_writes_is_valid(void **state)
{
    (void)state;
    assert_true(valid("{}"));
    assert_true(valid("{\"send\":true,\"message\":\"m-1\",\"reason\":\"send\",\"p_send\":0.5,"
                      "\"plan\":{\"version\":1,\"per_week\":{\"push\":3.0}},"
                      "\"arm\":{\"slow\":\"control\",\"fast\":\"control\"},\"mode\":\"hierarchical\"}"));
    /* Escaped control characters and non-ASCII text are fine. */
    assert_true(valid("{\"message\":\"a\\nb\\u0001\",\"t\":\"caf\xc3\xa9\"}"));
}

static void test_text_that_would_break_the_line_or_the_reply_is_refused(void **state)
{
    (void)state;
    assert_false(stored_answer_valid(NULL, 0));
    assert_false(valid(""));
    assert_false(valid("{"));
    assert_false(valid("{\"a\":1}\n{\"id\":9,\"ok\":true}"));   /* a second line */
    assert_false(valid("{\"a\":\"x\ny\"}"));                     /* raw newline in a string */
    assert_false(valid("{\"a\":1}\r"));
    assert_false(valid("{\"a\":1}\t"));
    assert_false(valid("{\"a\":1}{\"b\":2}"));                   /* two objects */
    assert_false(valid("{\"a\":1}}"));
    assert_false(valid("[1,2]"));
    assert_false(valid("not json"));
    assert_false(valid("{not json}"));
    assert_false(valid("{\"a\":\"\xff\"}"));                     /* invalid UTF-8 */
    assert_false(valid("{\"a\":1,\"a\":2}"));                    /* duplicate key */
    assert_false(valid("{\"id\":1}"));                           /* the reply's own members */
    assert_false(valid("{\"ok\":false}"));
    /* A NUL inside the length counts as a control byte. */
    assert_false(stored_answer_valid("{\"a\":\"\0\"}", 9));
}

static void test_size_is_bounded(void **state)
{
    (void)state;
    size_t n = STORED_ANSWER_MAX_BYTES + 1;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, ' ', n);
    memcpy(s, "{\"a\":1", 6);
    s[n - 1] = '}';
    assert_false(stored_answer_valid(s, n));
    assert_false(stored_answer_valid(s, 6)); /* "{\"a\":1" alone is cut short */
    s[STORED_ANSWER_MAX_BYTES - 1] = '}';
    assert_true(stored_answer_valid(s, STORED_ANSWER_MAX_BYTES));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_answer_notifd_writes_is_valid),
        cmocka_unit_test(test_text_that_would_break_the_line_or_the_reply_is_refused),
        cmocka_unit_test(test_size_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
