/*
 * test_decide_body.c - unit tests for the decide answer's text
 * (src/fast/decide_body.c): written as fixed text around the values, it
 * must be byte for byte what jansson writes for the same object (compact,
 * reals to 15 digits, keys in order), since retries get the stored text
 * back and clients compare answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "notifd/config/config.h"
#include "notifd/fast/decide_body.h"

static config_t *cfg;

static int setup(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    cfg = config_load_string("{}", 1, &errs);
    config_errors_free(&errs);
    return cfg == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    config_release(cfg);
    return 0;
}

/* The same answer built as a jansson object, the order of decide_body.h. */
static char *reference(const decide_body_t *b)
{
    json_t *o = json_object();
    json_object_set_new(o, "send", json_boolean(b->send));
    json_object_set_new(o, "message", b->send && b->message
                                          ? json_stringn(b->message, b->message_len)
                                          : json_null());
    json_object_set_new(o, "reason", json_string(decision_reason_name(b->reason)));
    json_object_set_new(o, "p_send",
                        json_real(b->reason == REASON_CAP_REACHED ||
                                          b->reason == REASON_RATE_LIMITED
                                      ? 0.0
                                      : b->dec->p_send));
    json_object_set_new(o, "propensity",
                        json_real(b->send || b->reason == REASON_PACED_SKIP ? b->dec->propensity
                                                                            : 1.0));
    if (b->plan != NULL) {
        json_t *per_week = json_object(), *plan = json_object();
        json_object_set_new(plan, "version", json_integer(b->plan->version));
        json_object_set_new(plan, "source", json_string(b->plan->source));
        for (int c = 0; c < cfg->n_channels; c++)
            if (plan_has_channel(b->plan, c))
                json_object_set_new(per_week, cfg->channels[c], json_real(b->plan->per_week[c]));
        json_object_set_new(plan, "per_week", per_week);
        json_object_set_new(plan, "propensity", json_real(plan_action_propensity(b->plan)));
        if (b->plan->explore_neighbours > 0) {
            json_t *greedy = json_object();
            json_object_set_new(plan, "neighbours", json_integer(b->plan->explore_neighbours));
            for (int c = 0; c < cfg->n_channels; c++)
                if (plan_has_channel(b->plan, c) && !(b->plan->defaulted_mask & (1u << c)))
                    json_object_set_new(greedy, cfg->channels[c],
                                        json_real(plan_greedy_per_week(b->plan, c)));
            json_object_set_new(plan, "greedy", greedy);
            if (b->plan->n_gaps > 0) {
                json_t *gaps = json_array();
                for (int j = 0; j < b->plan->n_gaps; j++)
                    json_array_append_new(gaps, json_real(b->plan->utility_gap[j]));
                json_object_set_new(plan, "gaps", gaps);
            }
        }
        if (b->plan->defaulted_mask) {
            json_t *d = json_array();
            for (int c = 0; c < cfg->n_channels; c++)
                if (b->plan->defaulted_mask & (1u << c))
                    json_array_append_new(d, json_string(cfg->channels[c]));
            json_object_set_new(plan, "defaulted", d);
        }
        json_object_set_new(o, "plan", plan);
    } else {
        json_object_set_new(o, "plan", json_null());
    }
    json_object_set_new(o, "arm", json_pack("{s:s,s:s}", "slow", b->slow_arm, "fast",
                                            b->fast_arm));
    json_object_set_new(o, "mode", json_string(b->threshold_mode ? "threshold" : "hierarchical"));
    if (b->reason == REASON_QUIET_HOURS || b->reason == REASON_RATE_LIMITED)
        json_object_set_new(o, "retry_at", json_integer(b->dec->retry_at));
    if (b->degraded)
        json_object_set_new(o, "degraded", json_true());
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    return text;
}

static void check(const decide_body_t *b)
{
    size_t len;
    char *ours = decide_body_text(b, &len);
    char *theirs = reference(b);
    assert_non_null(ours);
    assert_string_equal(ours, theirs);
    assert_int_equal(len, strlen(theirs));
    free(ours);
    free(theirs);
}

static void test_every_shape_matches_jansson(void **state)
{
    (void)state;
    decision_t dec;
    memset(&dec, 0, sizeof dec);
    dec.p_send = 1.0 / 3.0;
    dec.propensity = 0.0125;
    dec.retry_at = 1800003600;
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    plan.version = 42;
    snprintf(plan.source, sizeof plan.source, "%s", "planner");
    const decision_reason_t reasons[] = {REASON_SEND, REASON_PACED_SKIP, REASON_CAP_REACHED,
                                         REASON_QUIET_HOURS, REASON_DEGRADED,
                                         REASON_RATE_LIMITED};
    /* Plans with no channel, some, all; with and without defaulted ones. */
    const unsigned masks[] = {0u, 1u, 5u, 7u};
    for (size_t r = 0; r < sizeof reasons / sizeof reasons[0]; r++) {
        for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
            for (int variant = 0; variant < 5; variant++) {
                plan.planned_mask = masks[m];
                plan.defaulted_mask = variant == 1 ? (~masks[m] & 7u) : 0u;
                /* 3, 4: a plan drawn by exploration, with and without gaps. */
                plan.explore_neighbours = variant >= 3 ? 4 : 0;
                plan.propensity = 0.0375;
                plan.n_gaps = variant == 3 ? 4 : 0;
                for (int j = 0; j < 4; j++)
                    plan.utility_gap[j] = 0.125 * (j + 1) - 1e-7;
                for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
                    plan.greedy_per_week[c] = 2.0 + 0.5 * c;
                for (int c = 0; c < cfg->n_channels; c++)
                    plan.per_week[c] = c == 0 ? 3.0 : 2.5e-9 * (c + 1);
                decide_body_t b = {
                    .cfg = cfg, .dec = &dec, .reason = reasons[r],
                    .send = reasons[r] == REASON_SEND,
                    .message = "msg-\"7\"\n", .message_len = 8,
                    .plan = variant == 2 ? NULL : &plan,
                    .slow_arm = "control", .fast_arm = "arm \xc3\xa9",
                    .threshold_mode = variant == 2, .degraded = reasons[r] == REASON_DEGRADED,
                };
                check(&b);
            }
        }
    }
}

/* A rate-limited answer as the record script gets it: the text up to
 * "retry_at":, which the script completes with the time and '}'. */
static void test_rate_limited_text_stops_at_retry_at_for_the_script(void **state)
{
    (void)state;
    decision_t dec;
    memset(&dec, 0, sizeof dec);
    dec.p_send = 1.0;
    dec.propensity = 1.0;
    dec.retry_at = 1800000123;
    decide_body_t b = {.cfg = cfg, .dec = &dec, .reason = REASON_RATE_LIMITED,
                       .slow_arm = "control", .fast_arm = "control"};
    size_t whole_len, open_len;
    char *whole = decide_body_text(&b, &whole_len);
    b.retry_at_open = true;
    char *open = decide_body_text(&b, &open_len);
    assert_non_null(whole);
    assert_non_null(open);
    const char *tail = "\"retry_at\":";
    assert_true(open_len > strlen(tail));
    assert_memory_equal(open + open_len - strlen(tail), tail, strlen(tail));
    /* What the script appends makes the whole answer. */
    char joined[4096];
    snprintf(joined, sizeof joined, "%s1800000123}", open);
    assert_string_equal(joined, whole);
    free(whole);
    free(open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_shape_matches_jansson),
        cmocka_unit_test(test_rate_limited_text_stops_at_retry_at_for_the_script),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
