/* Unit tests: a queued feedback record is the event it was made from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/config/config.h"
#include "notifd/fast/feedback.h"

static config_t *load_config(void)
{
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_string("{}", 1, &errs);
    assert_non_null(cfg);
    config_errors_free(&errs);
    return cfg;
}

/* Parses `text` as a request, makes its record, and parses the record back
 * (as a replay does: no ts window). */
static json_t *round_trip(const config_t *cfg, const char *text, feedback_fields_t *in,
                          feedback_fields_t *out, json_t **req)
{
    const char *why = NULL;
    *req = json_loads(text, 0, NULL);
    assert_non_null(*req);
    assert_true(feedback_parse(*req, cfg, 1000, 0, in, &why));
    json_t *rec = feedback_record(cfg, in, "q:00000000000000ff:9");
    char *line = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    json_t *back = json_loads(line, 0, NULL);
    free(line);
    assert_true(feedback_parse(back, cfg, 0, 0, out, &why));
    return back;
}

static void test_a_record_keeps_every_field(void **state)
{
    (void)state;
    config_t *cfg = load_config();
    feedback_fields_t in, out;
    json_t *req;
    json_t *back = round_trip(cfg,
                              "{\"member\":\"m1\",\"channel\":\"email\",\"event\":\"click\","
                              "\"ts\":1795435200.7,\"tz_offset_min\":-300,\"message\":\"a\","
                              "\"event_id\":\"mine\"}",
                              &in, &out, &req);
    assert_string_equal(out.member, "m1");
    assert_int_equal(out.channel, in.channel);
    assert_string_equal(out.event, "click");
    assert_int_equal(out.ts, 1795435200);
    assert_string_equal(out.tz, "-300");
    assert_string_equal(out.message, "a");
    assert_string_equal(out.event_id, "mine"); /* the producer's id wins */
    json_decref(back);
    json_decref(req);
    config_release(cfg);
}

static void test_a_record_without_id_gets_the_generated_one_and_a_resolved_ts(void **state)
{
    (void)state;
    config_t *cfg = load_config();
    feedback_fields_t in, out;
    json_t *req;
    json_t *back = round_trip(cfg, "{\"member\":\"m2\",\"event\":\"visit\"}", &in, &out, &req);
    assert_int_equal(out.channel, -1);
    assert_int_equal(out.ts, 1000); /* the time it was accepted, not the replay's */
    assert_string_equal(out.tz, "");
    assert_null(out.message);
    assert_string_equal(out.event_id, "q:00000000000000ff:9");
    json_decref(back);
    json_decref(req);
    config_release(cfg);
}

static void test_a_record_with_an_unknown_channel_is_not_valid(void **state)
{
    (void)state;
    config_t *cfg = load_config();
    feedback_fields_t f;
    const char *why = NULL;
    json_t *rec = json_loads("{\"member\":\"m\",\"channel\":\"fax\",\"event\":\"open\","
                             "\"ts\":5,\"event_id\":\"q:1:1\"}", 0, NULL);
    assert_false(feedback_parse(rec, cfg, 0, 0, &f, &why));
    assert_non_null(strstr(why, "channel"));
    json_decref(rec);
    config_release(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_record_keeps_every_field),
        cmocka_unit_test(test_a_record_without_id_gets_the_generated_one_and_a_resolved_ts),
        cmocka_unit_test(test_a_record_with_an_unknown_channel_is_not_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
