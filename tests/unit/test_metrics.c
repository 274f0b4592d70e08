/*
 * test_metrics.c - unit tests for the metrics registry and its Prometheus
 * renderer (src/admin/metrics.c, src/admin/metrics_render.c): label escaping, cumulative histogram buckets
 * with +Inf equal to _count, decision series per configured channel, the
 * out-of-range guard, planner and readiness bookkeeping, and NULL safety.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/admin/metrics.h"

/* The whole line that starts with `prefix` (a series name with labels). */
static const char *find_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, n) == 0)
            return p;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static double value_of(const char *text, const char *series)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s ", series);
    const char *line = find_line(text, prefix);
    assert_non_null(line);
    return strtod(line + strlen(prefix), NULL);
}

static char *render(metrics_t *m)
{
    char *text = NULL;
    size_t len = metrics_render(m, &text);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

static void test_escape_label(void **state)
{
    (void)state;
    char out[64];
    metrics_escape_label("a\"b\\c\nd", out);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    metrics_escape_label("", out);
    assert_string_equal(out, "");
}

static void test_histogram_is_cumulative_and_inf_equals_count(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    metrics_observe_redis_rtt(m, 0.00001);  /* first bucket */
    metrics_observe_redis_rtt(m, 0.0003);   /* le=0.0005 */
    metrics_observe_redis_rtt(m, 0.0003);
    metrics_observe_redis_rtt(m, 7.0);      /* +Inf only */
    char *text = render(m);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_bucket{le=\"5e-05\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_bucket{le=\"0.00025\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_bucket{le=\"0.0005\"}"), 3);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_bucket{le=\"1\"}"), 3);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_bucket{le=\"+Inf\"}"), 4);
    assert_int_equal((int)value_of(text, "notifd_redis_rtt_seconds_count"), 4);
    double sum = value_of(text, "notifd_redis_rtt_seconds_sum");
    assert_true(sum > 7.0006 && sum < 7.0007);
    free(text);
    metrics_free(m);
}

static void test_decisions_per_configured_channel(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    const char names[2][NOTIFD_CHANNEL_NAME_MAX] = {"push", "we\"ird"};
    metrics_set_channel_names(m, names, 2);
    metrics_observe_decision(m, 0, METRICS_MODE_THRESHOLD, METRICS_REASON_CAP_REACHED, 0.001);
    metrics_observe_decision(m, 0, METRICS_MODE_THRESHOLD, METRICS_REASON_CAP_REACHED, 0.001);
    metrics_observe_decision(m, 1, METRICS_MODE_HIERARCHICAL, METRICS_REASON_SEND, 0.001);
    char *text = render(m);
    assert_int_equal((int)value_of(text, "notifd_decisions_total{channel=\"push\",mode=\"threshold\","
                                         "reason=\"cap_reached\"}"), 2);
    assert_int_equal((int)value_of(text, "notifd_decisions_total{channel=\"we\\\"ird\","
                                         "mode=\"hierarchical\",reason=\"send\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_decide_duration_seconds_count{mode=\"threshold\"}"),
                     2);
    /* Only configured channels are rendered. */
    assert_null(find_line(text, "notifd_decisions_total{channel=\"\""));
    free(text);
    metrics_free(m);
}

static void test_rate_limits_by_channel_tag_and_shadow(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    const char names[1][NOTIFD_CHANNEL_NAME_MAX] = {"push"};
    const char tags[2][CONFIG_LIMIT_TAG_MAX] = {"promo", "digest"};
    metrics_set_channel_names(m, names, 1);
    metrics_set_limit_tag_names(m, tags, 2);
    metrics_observe_rate_limit(m, 0, 0, 'l');
    metrics_observe_rate_limit(m, 0, 0, 'a'); /* allowed: not counted */
    metrics_observe_rate_limit(m, 0, 1, 's');
    metrics_observe_rate_limit(m, 0, 1, 's');
    metrics_observe_rate_limit(m, 0, 2, 'o');
    metrics_observe_rate_limit(m, 0, 2, 'c');
    metrics_observe_rate_limit(m, 0, 0, 'r');
    metrics_observe_rate_limit(m, 0, 0, '?');                      /* invalid */
    metrics_observe_rate_limit(m, 0, CONFIG_LIMIT_TAGS_MAX + 1, 'l'); /* invalid */
    metrics_observe_decision(m, 0, METRICS_MODE_HIERARCHICAL, METRICS_REASON_RATE_LIMITED, 0.001);
    char *text = render(m);
    assert_int_equal((int)value_of(text, "notifd_rate_limited_total{channel=\"push\",tag=\"\","
                                         "shadow=\"false\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_rate_limited_total{channel=\"push\","
                                         "tag=\"promo\",shadow=\"true\"}"), 2);
    assert_int_equal((int)value_of(text, "notifd_rate_limit_errors_total{channel=\"push\","
                                         "tag=\"digest\",action=\"open\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_rate_limit_errors_total{channel=\"push\","
                                         "tag=\"digest\",action=\"closed\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_rate_limit_errors_total{channel=\"push\","
                                         "tag=\"\",action=\"reset\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_decisions_total{channel=\"push\","
                                         "mode=\"hierarchical\",reason=\"rate_limited\"}"), 1);
    assert_int_equal((int)value_of(text, "notifd_metrics_invalid_observations_total"), 2);
    free(text);
    metrics_free(m);
}

static void test_out_of_range_observations_are_counted_not_stored(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    metrics_observe_decision(m, NOTIFD_MAX_CHANNELS, 0, 0, 0.0);
    metrics_observe_decision(m, 0, 2, 0, 0.0);
    metrics_observe_decision(m, 0, 0, METRICS_REASON_COUNT, 0.0);
    metrics_observe_decision(m, -1, 0, 0, 0.0);
    metrics_events_add(m, METRICS_EVENT_COUNT, 1);
    char *text = render(m);
    assert_int_equal((int)value_of(text, "notifd_metrics_invalid_observations_total"), 5);
    free(text);
    metrics_free(m);
}

static void test_reason_names_round_trip(void **state)
{
    (void)state;
    for (int r = 0; r < METRICS_REASON_COUNT; r++)
        assert_int_equal(metrics_reason_from_name(metrics_reason_name((metrics_reason_t)r)), r);
    assert_int_equal(metrics_reason_from_name("paced_skip"), METRICS_REASON_PACED_SKIP);
    assert_int_equal(metrics_reason_from_name("nope"), -1);
    assert_int_equal(metrics_reason_from_name(NULL), -1);
}

static void test_planner_progress(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    metrics_planner_pass_started(m);
    metrics_planner_member_planned(m, 100);
    metrics_planner_member_planned(m, 50);
    char *text = render(m);
    assert_int_equal((int)value_of(text, "notifd_planner_passes_running"), 1);
    assert_int_equal((int)value_of(text, "notifd_planner_members_planned_total"), 150);
    free(text);
    metrics_planner_pass_finished(m, 2.5, 150, 3);
    metrics_planner_pass_finished(m, 1.0, 0, 0); /* unmatched: running stays at 0 */
    text = render(m);
    assert_int_equal((int)value_of(text, "notifd_planner_passes_running"), 0);
    assert_int_equal((int)value_of(text, "notifd_planner_members_planned_total"), 150);
    assert_int_equal((int)value_of(text, "notifd_planner_members_failed_total"), 3);
    assert_true(value_of(text, "notifd_planner_pass_seconds_total") == 3.5);
    assert_int_equal((int)value_of(text, "notifd_planner_partitions_failed_total"), 0);
    free(text);
    metrics_planner_partition_failed(m);
    metrics_planner_partition_failed(m);
    metrics_planner_partition_failed(NULL); /* no registry: nothing */
    text = render(m);
    assert_int_equal((int)value_of(text, "notifd_planner_partitions_failed_total"), 2);
    free(text);
    metrics_free(m);
}

static void test_readiness_reasons(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    char why[256];
    store_counters_t sc = {0};
    assert_false(metrics_ready(m, why, sizeof why));
    assert_non_null(strstr(why, "config"));
    metrics_publish_config(m, 1, 0, 0);
    metrics_publish_store(m, STORE_CONNECTING, "connection refused", &sc);
    assert_false(metrics_ready(m, why, sizeof why));
    assert_non_null(strstr(why, "state=connecting"));
    assert_non_null(strstr(why, "connection refused"));
    metrics_publish_store(m, STORE_READY, "", &sc);
    assert_true(metrics_ready(m, why, sizeof why));
    metrics_publish_stopping(m, true);
    assert_false(metrics_ready(m, why, sizeof why));
    assert_non_null(strstr(why, "stopping"));
    metrics_free(m);
}

static void test_null_registry_is_a_no_op(void **state)
{
    (void)state;
    char *text = (char *)1;
    assert_int_equal(metrics_render(NULL, &text), 0);
    assert_null(text);
    metrics_observe_request(NULL, OP_HEALTH, true, PROTO_INTERNAL, 0.1);
    metrics_observe_decision(NULL, 0, 0, 0, 0.1);
    metrics_observe_redis_rtt(NULL, 0.1);
    metrics_planner_pass_started(NULL);
    metrics_events_add(NULL, METRICS_EVENT_SENT, 1);
    metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_label),
        cmocka_unit_test(test_histogram_is_cumulative_and_inf_equals_count),
        cmocka_unit_test(test_decisions_per_configured_channel),
        cmocka_unit_test(test_rate_limits_by_channel_tag_and_shadow),
        cmocka_unit_test(test_out_of_range_observations_are_counted_not_stored),
        cmocka_unit_test(test_reason_names_round_trip),
        cmocka_unit_test(test_planner_progress),
        cmocka_unit_test(test_readiness_reasons),
        cmocka_unit_test(test_null_registry_is_a_no_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
