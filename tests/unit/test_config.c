/*
 * test_config.c - unit tests for loading and validating the configuration
 * (src/config/config.c, src/config/config_reader.c) through config_load_string() and
 * config_load_file(): the documented defaults, each kind of problem reported
 * with its key path, every problem of a file reported in one pass, secrets
 * read from their files, and reference counting of the snapshot.
 *
 * The policy sections (fast, slow, features, experiments) belong to
 * config_policy.c; here only their top-level keys are checked to exist.
 *
 * Config texts are written with single quotes for readability; load() turns
 * them into JSON double quotes before parsing.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/core/score_prior.h"
#include "notifd/config/config.h"
#include "notifd/log.h"
#include "notifd/core/stored_fields.h"

/* ---- helpers ---------------------------------------------------------- */

/* Loads a single-quoted config text; errs must be initialised. */
static config_t *load(const char *quoted, config_errors_t *errs)
{
    char *text = strdup(quoted);
    assert_non_null(text);
    for (char *p = text; *p; p++)
        if (*p == '\'')
            *p = '"';
    config_t *cfg = test_load_config(text, errs);
    free(text);
    return cfg;
}

/* Prints the problems so a failing test says what was reported. */
static void print_errors(const config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        print_message("  problem: %s\n", errs->items[i]);
}

/* Asserts the text loads cleanly; the caller releases the result. */
static config_t *load_ok(const char *quoted)
{
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load(quoted, &errs);
    print_errors(&errs);
    assert_int_equal(errs.count, 0);
    assert_non_null(cfg);
    config_errors_free(&errs);
    return cfg;
}

/* Asserts the text fails with exactly one problem, equal to `expected`. */
static void expect_error(const char *quoted, const char *expected)
{
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load(quoted, &errs);
    print_errors(&errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0], expected);
    config_errors_free(&errs);
}

/* Asserts exactly one problem that starts with `prefix`. */
static void expect_error_prefix(const char *quoted, const char *prefix)
{
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load(quoted, &errs);
    print_errors(&errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    assert_memory_equal(errs.items[0], prefix, strlen(prefix));
    config_errors_free(&errs);
}

static bool has_error(const config_errors_t *errs, const char *expected)
{
    for (size_t i = 0; i < errs->count; i++)
        if (strcmp(errs->items[i], expected) == 0)
            return true;
    return false;
}

/* A temporary file with `content`; the path is written into `path`. */
static void temp_file(char *path, size_t cap, const char *content)
{
    snprintf(path, cap, "/tmp/notifd-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
}

/* ---- defaults --------------------------------------------------------- */

static void test_empty_config_has_documented_defaults(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_string_equal(cfg->listen.host, "127.0.0.1");
    assert_int_equal(cfg->listen.port, 7400);
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_listen.host, "127.0.0.1");
    assert_int_equal(cfg->admin_listen.port, 7401);
    assert_string_equal(cfg->redis.host, "127.0.0.1");
    assert_int_equal(cfg->redis.port, 6379);
    assert_string_equal(cfg->redis.prefix, "notif:");
    assert_null(cfg->redis.password);
    assert_null(cfg->auth_token);
    assert_int_equal(cfg->planner.interval_s, 604800);
    assert_int_equal(cfg->planner.batch_size, 64);
    assert_int_equal(cfg->planner.nice, 10);
    assert_string_equal(cfg->events.url, "");
    assert_string_equal(cfg->events.spool_dir, "var/spool");
    assert_int_equal(cfg->limits.max_line_bytes, 65536);
    assert_int_equal(cfg->limits.admin_max_connections, 64);
    assert_int_equal(cfg->limits.admin_idle_timeout_s, 5);
    assert_int_equal(cfg->log_level, LOG_INFO);
    config_release(cfg);
}

static void test_default_channels_are_push_email_in_app(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_int_equal(cfg->n_channels, 3);
    assert_string_equal(cfg->channels[0], "push");
    assert_string_equal(cfg->channels[1], "email");
    assert_string_equal(cfg->channels[2], "in_app");
    config_release(cfg);
}

static void test_generation_is_stamped(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_string("{}", 42, &errs);
    assert_non_null(cfg);
    assert_int_equal(cfg->generation, 42);
    config_release(cfg);
    config_errors_free(&errs);
}

static void test_shipped_default_config_file_loads(void **state)
{
    (void)state;
    /* config/notifd.json, found from this source file's absolute path. */
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strstr(path, "/tests/unit/test_config.c");
    assert_non_null(slash);
    snprintf(slash, sizeof path - (size_t)(slash - path), "/config/notifd.json");
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_file(path, 1, &errs);
    print_errors(&errs);
    assert_int_equal(errs.count, 0);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->listen.port, 7400);
    assert_string_equal(cfg->redis.prefix, "notif:");
    assert_int_equal(cfg->limits.max_line_bytes, 65536);
    assert_int_equal(cfg->planner.interval_s, 604800);
    config_release(cfg);
    config_errors_free(&errs);
}

static void test_missing_config_file_is_reported(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_file("/nonexistent/notifd.json", 1, &errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    const char *prefix = "(config): cannot load \"/nonexistent/notifd.json\"";
    assert_memory_equal(errs.items[0], prefix, strlen(prefix));
    config_errors_free(&errs);
}

static void test_values_override_defaults(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'listen': '0.0.0.0:9000', 'redis': {'port': 6380, 'prefix': 'x:'},"
                            " 'limits': {'max_line_bytes': 1024}, 'log_level': 'warn',"
                            " 'planner': {'jitter': 0, 'enabled': false}}");
    assert_string_equal(cfg->listen.host, "0.0.0.0");
    assert_int_equal(cfg->listen.port, 9000);
    assert_int_equal(cfg->redis.port, 6380);
    assert_string_equal(cfg->redis.prefix, "x:");
    assert_int_equal(cfg->limits.max_line_bytes, 1024);
    assert_int_equal(cfg->log_level, LOG_WARN);
    assert_true(cfg->planner.jitter_frac == 0.0);
    assert_false(cfg->planner.enabled);
    config_release(cfg);
}

/* ---- unknown keys ------------------------------------------------------ */

static void test_unknown_top_level_key_is_reported_with_hint(void **state)
{
    (void)state;
    expect_error("{'lisen': '127.0.0.1:7400'}", "lisen: unknown key (did you mean \"listen\"?)");
}

static void test_unknown_nested_key_is_reported_with_path_and_hint(void **state)
{
    (void)state;
    expect_error("{'redis': {'prefx': 'a:'}}",
                 "redis.prefx: unknown key (did you mean \"prefix\"?)");
}

static void test_unknown_key_far_from_any_known_has_no_hint(void **state)
{
    (void)state;
    expect_error("{'limits': {'completely_different': 1}}",
                 "limits.completely_different: unknown key");
}

static void test_policy_sections_are_known_top_level_keys(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'fast': {}, 'slow': {}, 'features': {}, 'experiments': {}}");
    config_release(cfg);
}

/* ---- types -------------------------------------------------------------- */

static void test_string_key_with_wrong_type(void **state)
{
    (void)state;
    expect_error("{'redis': {'host': 5}}", "redis.host: must be a string, not an integer");
}

static void test_string_key_rejects_null_unless_nullable(void **state)
{
    (void)state;
    expect_error("{'redis': {'host': null}}", "redis.host: must be a string, not null");
}

static void test_string_key_rejects_empty_string(void **state)
{
    (void)state;
    expect_error("{'events': {'spool_dir': ''}}", "events.spool_dir: must not be empty");
}

static void test_string_key_rejects_too_long_value(void **state)
{
    (void)state;
    char text[256];
    /* redis.prefix holds at most 63 bytes. */
    snprintf(text, sizeof text, "{'redis': {'prefix': '%064d'}}", 0);
    expect_error(text, "redis.prefix: is too long (64 bytes, at most 63)");
}

static void test_int_key_with_wrong_type(void **state)
{
    (void)state;
    expect_error("{'redis': {'port': '6379'}}",
                 "redis.port: must be an integer in 1..65535, not a string");
}

static void test_int_key_rejects_real(void **state)
{
    (void)state;
    expect_error("{'redis': {'port': 6379.0}}",
                 "redis.port: must be an integer in 1..65535, not a number");
}

static void test_bool_key_with_wrong_type(void **state)
{
    (void)state;
    expect_error("{'planner': {'enabled': 'yes'}}",
                 "planner.enabled: must be true or false, not a string");
}

static void test_number_key_with_wrong_type(void **state)
{
    (void)state;
    expect_error("{'planner': {'jitter': '0.1'}}",
                 "planner.jitter: must be a number in [0, 0.5], not a string");
}

static void test_section_with_wrong_type(void **state)
{
    (void)state;
    expect_error("{'redis': ['127.0.0.1']}", "redis: must be an object, not an array");
}

static void test_log_level_with_unknown_name(void **state)
{
    (void)state;
    expect_error("{'log_level': 'verbose'}",
                 "log_level: must be \"debug\", \"info\", \"warn\" or \"error\"");
}

static void test_root_must_be_an_object(void **state)
{
    (void)state;
    expect_error("[1, 2]", "(config): the config must be a JSON object");
}

/* ---- ranges ------------------------------------------------------------- */

static void test_int_below_range(void **state)
{
    (void)state;
    expect_error("{'redis': {'port': 0}}", "redis.port: must be an integer in 1..65535, not 0");
}

static void test_int_above_range(void **state)
{
    (void)state;
    expect_error("{'redis': {'port': 65536}}",
                 "redis.port: must be an integer in 1..65535, not 65536");
}

static void test_int_range_bounds_are_inclusive(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'redis': {'port': 65535}, 'limits': {'max_line_bytes': 256}}");
    assert_int_equal(cfg->redis.port, 65535);
    assert_int_equal(cfg->limits.max_line_bytes, 256);
    config_release(cfg);
}

static void test_max_line_bytes_below_minimum(void **state)
{
    (void)state;
    expect_error("{'limits': {'max_line_bytes': 255}}",
                 "limits.max_line_bytes: must be an integer in 256..67108864, not 255");
}

static void test_admin_limits_are_read_and_checked(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'limits': {'admin_max_connections': 8, 'admin_idle_timeout_s': 1}}");
    assert_int_equal(cfg->limits.admin_max_connections, 8);
    assert_int_equal(cfg->limits.admin_idle_timeout_s, 1);
    config_release(cfg);
    expect_error("{'limits': {'admin_max_connections': 0}}",
                 "limits.admin_max_connections: must be an integer in 1..4096, not 0");
    expect_error("{'limits': {'admin_idle_timeout_s': 0}}",
                 "limits.admin_idle_timeout_s: must be an integer in 1..3600, not 0");
}

static void test_feedback_queue_keys_have_defaults_and_ranges(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_string_equal(cfg->feedback.spool_dir, "var/feedback-spool");
    assert_int_equal(cfg->feedback.queue_max, 10000);
    assert_int_equal(cfg->feedback.spool_max_bytes, 1LL << 30);
    assert_int_equal(cfg->feedback.live_id_ttl_s, 60);
    config_release(cfg);
    cfg = load_ok("{'feedback': {'spool_dir': 'q', 'queue_max': 1, 'spool_max_bytes': 0, "
                  "'live_id_ttl_s': 0}}");
    assert_string_equal(cfg->feedback.spool_dir, "q");
    assert_int_equal(cfg->feedback.queue_max, 1);
    assert_int_equal(cfg->feedback.spool_max_bytes, 0);
    assert_int_equal(cfg->feedback.live_id_ttl_s, 0);
    config_release(cfg);
    expect_error_prefix("{'feedback': {'queue_max': 0}}", "feedback.queue_max:");
    expect_error_prefix("{'feedback': {'spool_max_bytes': -1}}", "feedback.spool_max_bytes:");
    expect_error_prefix("{'feedback': {'live_id_ttl_s': 86401}}", "feedback.live_id_ttl_s:");
    expect_error_prefix("{'feedback': {'queue_mx': 3}}", "feedback.queue_mx:");
    /* The two spools name their segments alike. */
    expect_error("{'events': {'spool_dir': 'x'}, 'feedback': {'spool_dir': 'x'}}",
                 "feedback.spool_dir: must differ from events.spool_dir");
}

static void test_planner_interval_zero_is_out_of_range(void **state)
{
    (void)state;
    expect_error("{'planner': {'interval_s': 0}}",
                 "planner.interval_s: must be an integer in 1..31622400, not 0");
}

static void test_planner_nice_is_a_nice_value(void **state)
{
    (void)state;
    expect_error("{'planner': {'nice': -5}}",
                 "planner.nice: must be an integer in 0..19, not -5");
    expect_error("{'planner': {'nice': 20}}",
                 "planner.nice: must be an integer in 0..19, not 20");
}

static void test_number_above_range(void **state)
{
    (void)state;
    expect_error("{'planner': {'jitter': 0.6}}",
                 "planner.jitter: must be a number in [0, 0.5], not 0.6");
}

/* ---- endpoints ---------------------------------------------------------- */

static void test_ipv6_listen_in_brackets_is_accepted(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'listen': '[::1]:7400'}");
    assert_string_equal(cfg->listen.host, "::1");
    assert_int_equal(cfg->listen.port, 7400);
    config_release(cfg);
}

static void test_ipv6_listen_without_brackets_is_rejected(void **state)
{
    (void)state;
    expect_error("{'listen': '::1:7400'}",
                 "listen: \"::1:7400\": an IPv6 address must be written in brackets: "
                 "\"[::1]:7400\"");
}

static void test_hostname_listen_is_accepted(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'listen': 'localhost:80'}");
    assert_string_equal(cfg->listen.host, "localhost");
    assert_int_equal(cfg->listen.port, 80);
    config_release(cfg);
}

static void test_listen_without_port_is_rejected(void **state)
{
    (void)state;
    expect_error("{'listen': '127.0.0.1'}", "listen: \"127.0.0.1\": expected \"host:port\"");
}

static void test_listen_with_non_string_is_rejected(void **state)
{
    (void)state;
    expect_error("{'listen': 7400}", "listen: must be a \"host:port\" string");
}

static void test_endpoint_forms_with_bad_port_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http",
        "127.0.0.1:80x", "127.0.0.1:-1", "127.0.0.1: 80", "127.0.0.1:+80", "[::1]:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config_endpoint_t ep = {{0}, 0};
        const char *why = NULL;
        print_message("  endpoint %s\n", bad[i]);
        assert_false(config_parse_endpoint(bad[i], &ep, &why));
        assert_string_equal(why, "the port must be a number in 1..65535");
        assert_int_equal(ep.port, 0);
    }
}

static void test_endpoint_forms_with_bad_host_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {":7400", "[]:7400", "[::1]7400", "[::1", "7400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config_endpoint_t ep = {{0}, 0};
        const char *why = NULL;
        print_message("  endpoint %s\n", bad[i]);
        assert_false(config_parse_endpoint(bad[i], &ep, &why));
        assert_non_null(why);
        assert_int_equal(ep.port, 0);
    }
}

static void test_admin_listen_equal_to_listen_is_rejected(void **state)
{
    (void)state;
    expect_error("{'listen': '127.0.0.1:9000', 'admin_listen': '127.0.0.1:9000'}",
                 "admin_listen: must differ from listen");
}

static void test_listen_on_default_admin_port_is_rejected(void **state)
{
    (void)state;
    expect_error("{'listen': '127.0.0.1:7401'}", "admin_listen: must differ from listen");
}

static void test_admin_listen_null_disables_admin(void **state)
{
    (void)state;
    /* With admin disabled, its default address no longer conflicts. */
    config_t *cfg = load_ok("{'listen': '127.0.0.1:7401', 'admin_listen': null}");
    assert_false(cfg->admin_enabled);
    assert_int_equal(cfg->listen.port, 7401);
    config_release(cfg);
}

static void test_admin_listen_with_wrong_type_mentions_null(void **state)
{
    (void)state;
    expect_error("{'admin_listen': false}", "admin_listen: must be a \"host:port\" string or null");
}

/* ---- redis -------------------------------------------------------------- */

static void test_prefix_with_open_brace_is_rejected(void **state)
{
    (void)state;
    expect_error("{'redis': {'prefix': 'n{x'}}", "redis.prefix: must not contain '{' or '}'");
}

static void test_prefix_with_close_brace_is_rejected(void **state)
{
    (void)state;
    expect_error("{'redis': {'prefix': 'n}'}}", "redis.prefix: must not contain '{' or '}'");
}

static void test_reconnect_min_above_max_is_rejected(void **state)
{
    (void)state;
    expect_error("{'redis': {'reconnect_min_ms': 300, 'reconnect_max_ms': 200}}",
                 "redis.reconnect_min_ms: must not exceed redis.reconnect_max_ms (200)");
}

static void test_reconnect_min_equal_to_max_is_accepted(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'redis': {'reconnect_min_ms': 200, 'reconnect_max_ms': 200}}");
    assert_int_equal(cfg->redis.reconnect_min_ms, 200);
    assert_int_equal(cfg->redis.reconnect_max_ms, 200);
    config_release(cfg);
}

/* ---- channels ----------------------------------------------------------- */

static void test_custom_channels_are_loaded_in_order(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'channels': ['push', 'email', 'sms_2']}");
    assert_int_equal(cfg->n_channels, 3);
    assert_int_equal(config_channel_index(cfg, "sms_2", 5), 2);
    assert_int_equal(config_channel_index(cfg, "email", 5), 1);
    assert_int_equal(config_channel_index(cfg, "in_app", 6), -1);
    config_release(cfg);
}

static void test_channel_index_matches_whole_names_only(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_int_equal(config_channel_index(cfg, "pus", 3), -1);
    assert_int_equal(config_channel_index(cfg, "pushy", 4), 0); /* length-bounded */
    assert_int_equal(config_channel_index(cfg, "in_app", 6), 2);
    config_release(cfg);
}

static void test_duplicate_channel_is_rejected(void **state)
{
    (void)state;
    expect_error("{'channels': ['push', 'email', 'push']}",
                 "channels[2]: \"push\" is listed twice");
}

static void test_invalid_channel_names_are_each_rejected(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load("{'channels': ['push', 'email', 'Push', '', 'a-b',"
                         " 'abcdefghijklmnop', 7]}", &errs);
    print_errors(&errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 5);
    for (size_t i = 2; i <= 6; i++) {
        char expected[128];
        snprintf(expected, sizeof expected,
                 "channels[%zu]: must be a name of 1..15 characters [a-z0-9_]", i);
        assert_true(has_error(&errs, expected));
    }
    config_errors_free(&errs);
}

static void test_empty_channel_list_is_rejected(void **state)
{
    (void)state;
    expect_error("{'channels': []}", "channels: must be an array of 1..8 channel names");
}

static void test_channels_not_an_array_is_rejected(void **state)
{
    (void)state;
    expect_error("{'channels': 'push'}", "channels: must be an array of 1..8 channel names");
}

/* ---- events ------------------------------------------------------------- */

static void test_events_url_without_http_scheme_is_rejected(void **state)
{
    (void)state;
    expect_error("{'events': {'url': 'collector.internal/events'}}",
                 "events.url: must start with http:// or https://");
}

static void test_events_url_with_other_scheme_is_rejected(void **state)
{
    (void)state;
    expect_error("{'events': {'url': 'ftp://collector/events'}}",
                 "events.url: must start with http:// or https://");
}

static void test_events_url_http_and_https_are_accepted(void **state)
{
    (void)state;
    config_t *a = load_ok("{'events': {'url': 'http://127.0.0.1:8080/events'}}");
    config_t *b = load_ok("{'events': {'url': 'https://collector/events'}}");
    assert_string_equal(a->events.url, "http://127.0.0.1:8080/events");
    assert_string_equal(b->events.url, "https://collector/events");
    config_release(a);
    config_release(b);
}

static void test_events_url_null_disables_events(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{'events': {'url': null}}");
    assert_string_equal(cfg->events.url, "");
    config_release(cfg);
}

static void test_events_fsync_accepts_batch_and_never(void **state)
{
    (void)state;
    config_t *never = load_ok("{'events': {'fsync': 'never'}}");
    config_t *batch = load_ok("{'events': {'fsync': 'batch'}}");
    assert_int_equal(never->events.fsync, 0);
    assert_int_equal(batch->events.fsync, 1);
    config_release(never);
    config_release(batch);
}

static void test_events_fsync_rejects_other_values(void **state)
{
    (void)state;
    expect_error("{'events': {'fsync': 'always'}}",
                 "events.fsync: must be \"batch\" or \"never\"");
    expect_error("{'events': {'fsync': true}}", "events.fsync: must be \"batch\" or \"never\"");
}

static void test_events_queue_max_bytes_defaults_to_64_mib_and_is_bounded(void **state)
{
    (void)state;
    config_t *def = load_ok("{}");
    config_t *set = load_ok("{'events': {'queue_max_bytes': 2097152}}");
    assert_int_equal(def->events.queue_max_bytes, 64 << 20);
    assert_int_equal(set->events.queue_max_bytes, 2 << 20);
    config_release(def);
    config_release(set);
    expect_error("{'events': {'queue_max_bytes': 1000}}",
                 "events.queue_max_bytes: must be an integer in 1048576..1099511627776, not 1000");
}

/* ---- secrets ------------------------------------------------------------ */

static void test_missing_password_file_is_reported(void **state)
{
    (void)state;
    expect_error("{'redis': {'password_file': '/nonexistent/redis.pass'}}",
                 "redis.password_file: cannot read \"/nonexistent/redis.pass\": "
                 "No such file or directory");
}

static void test_password_file_is_read_and_trimmed(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path, "s3cret \t\r\nsecond line\n");
    char text[256];
    snprintf(text, sizeof text, "{'redis': {'password_file': '%s'}}", path);
    config_t *cfg = load_ok(text);
    assert_non_null(cfg->redis.password);
    assert_string_equal(cfg->redis.password, "s3cret");
    assert_string_equal(cfg->redis.password_file, path);
    config_release(cfg);
    unlink(path);
}

static void test_auth_token_file_is_read(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path, "tok-123\n");
    char text[256];
    snprintf(text, sizeof text, "{'auth_token_file': '%s'}", path);
    config_t *cfg = load_ok(text);
    assert_non_null(cfg->auth_token);
    assert_string_equal(cfg->auth_token, "tok-123");
    config_release(cfg);
    unlink(path);
}

static void test_empty_token_file_is_rejected(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path, "");
    char text[256], expected[256];
    snprintf(text, sizeof text, "{'auth_token_file': '%s'}", path);
    snprintf(expected, sizeof expected, "auth_token_file: \"%s\" is empty", path);
    expect_error(text, expected);
    unlink(path);
}

static void test_whitespace_only_token_file_is_rejected(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path, " \t\n");
    char text[256], expected[256];
    snprintf(text, sizeof text, "{'auth_token_file': '%s'}", path);
    snprintf(expected, sizeof expected, "auth_token_file: \"%s\" is empty", path);
    expect_error(text, expected);
    unlink(path);
}

/* ---- JSON syntax ---------------------------------------------------------- */

static void test_invalid_json_reports_line_and_column(void **state)
{
    (void)state;
    expect_error_prefix("{\n  'listen': ,\n}", "(config): invalid JSON at line 2 column 13:");
}

static void test_duplicate_keys_are_rejected(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load("{'seed': 1, 'seed': 2}", &errs);
    print_errors(&errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.items[0], "invalid JSON"));
    assert_non_null(strstr(errs.items[0], "duplicate"));
    config_errors_free(&errs);
}

/* ---- several problems ----------------------------------------------------- */

static void test_every_problem_of_a_file_is_reported(void **state)
{
    (void)state;
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = load("{'lisen': '127.0.0.1:1',"
                         " 'admin_listen': '::1:7401',"
                         " 'redis': {'port': '6379', 'prefx': 'a', 'prefix': '{a}',"
                         "           'reconnect_min_ms': 900, 'reconnect_max_ms': 100},"
                         " 'limits': {'max_line_bytes': 10},"
                         " 'events': {'url': 'collector', 'fsync': 'sometimes'},"
                         " 'channels': ['push', 'email', 'push'],"
                         " 'log_level': 'loud'}",
                         &errs);
    print_errors(&errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 11);
    assert_true(has_error(&errs, "lisen: unknown key (did you mean \"listen\"?)"));
    assert_true(has_error(&errs, "admin_listen: \"::1:7401\": an IPv6 address must be "
                                 "written in brackets: \"[::1]:7400\""));
    assert_true(has_error(&errs, "redis.port: must be an integer in 1..65535, not a string"));
    assert_true(has_error(&errs, "redis.prefx: unknown key (did you mean \"prefix\"?)"));
    assert_true(has_error(&errs, "redis.prefix: must not contain '{' or '}'"));
    assert_true(has_error(&errs, "redis.reconnect_min_ms: must not exceed "
                                 "redis.reconnect_max_ms (100)"));
    assert_true(has_error(&errs, "limits.max_line_bytes: must be an integer in "
                                 "256..67108864, not 10"));
    assert_true(has_error(&errs, "events.url: must start with http:// or https://"));
    assert_true(has_error(&errs, "events.fsync: must be \"batch\" or \"never\""));
    assert_true(has_error(&errs, "channels[2]: \"push\" is listed twice"));
    assert_true(has_error(&errs, "log_level: must be \"debug\", \"info\", \"warn\" or \"error\""));
    config_errors_free(&errs);
}

/* ---- reference counting --------------------------------------------------- */

static void test_acquire_adds_a_reference_to_the_same_snapshot(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_int_equal(atomic_load(&cfg->refs), 1);
    config_t *again = config_acquire(cfg);
    assert_ptr_equal(again, cfg);
    assert_int_equal(atomic_load(&cfg->refs), 2);
    config_release(again);
    config_release(cfg);
}

static void test_snapshot_survives_until_last_release(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path, "pw\n");
    char text[256];
    snprintf(text, sizeof text, "{'redis': {'password_file': '%s'}}", path);
    config_t *cfg = load_ok(text);
    unlink(path);
    config_t *held = config_acquire(config_acquire(cfg));
    config_release(cfg);
    config_release(cfg);
    /* Still alive: under ASan or valgrind a premature free fails here. */
    assert_int_equal(atomic_load(&held->refs), 1);
    assert_string_equal(held->redis.password, "pw");
    assert_int_equal(held->listen.port, 7400);
    config_release(held); /* the last reference frees it; a leak shows in valgrind */
}

static void test_release_of_null_is_a_no_op(void **state)
{
    (void)state;
    config_release(NULL);
}

/* slow.max_per_week bounds every per-week value notifd will plan or honour. */
static void test_max_per_week_defaults_to_100_and_covers_the_default_grid(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_true(cfg->policy.slow.max_per_week == STORED_PER_WEEK_DEFAULT);
    config_release(cfg);
    cfg = load_ok("{'slow': {'max_per_week': 200, 'actions': {'push': [0, 150], 'email': [0]}}}");
    assert_true(cfg->policy.slow.max_per_week == 200);
    config_release(cfg);
    expect_error("{'slow': {'actions': {'push': [0, 1, 150], 'email': [0, 1]}}}",
                 "slow.actions: push: 150 messages per week is above slow.max_per_week (100)");
    expect_error("{'slow': {'max_per_week': 20, 'default_plan': {'email': 21}}}",
                 "slow.default_plan.email: 21 messages per week is above slow.max_per_week (20)");
    expect_error_prefix("{'slow': {'max_per_week': 0}}", "slow.max_per_week: ");
    expect_error_prefix("{'slow': {'max_per_week': 1001}}", "slow.max_per_week: ");
    expect_error("{'experiments': {'slow': {'salt': 's', 'arms': [{'name': 'a', 'share': 0.5, "
                 "'set': {'slow.max_per_week': 5}}]}}}",
                 "experiments.slow.arms[0].set.slow.max_per_week: can only be set in the base "
                 "slow section: stored plans of every arm are read against it");
}

static void test_a_slow_arm_must_plan_every_channel_the_base_plans(void **state)
{
    (void)state;
    expect_error("{'experiments': {'slow': {'salt': 's', 'arms': [{'name': 'a', 'share': 0.5, "
                 "'set': {'slow.actions': {'email': [0, 1]}}}]}}}",
                 "experiments.slow.arms[0].set.slow.actions: leaves out push, which slow.actions "
                 "plans: the arm's members would get it unpaced (give it a list, e.g. [0])");
    config_release(load_ok("{'experiments': {'slow': {'salt': 's', 'arms': [{'name': 'a', "
                           "'share': 0.5, 'set': {'slow.actions': {'push': [0, 2], "
                           "'email': [0]}}}]}}}"));
}

/* Producer controls and the 7-day window's slack (config_policy.c). */
static void test_priority_and_rolling_slack_keys_have_defaults_and_ranges(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_true(cfg->policy.fast.transactional_respects_optout);
    assert_int_equal(cfg->policy.fast.rolling_cap_min_slack, 0);
    config_release(cfg);
    cfg = load_ok("{'fast': {'transactional_respects_optout': false, "
                  "'rolling_cap_min_slack': 1}}");
    assert_false(cfg->policy.fast.transactional_respects_optout);
    assert_int_equal(cfg->policy.fast.rolling_cap_min_slack, 1);
    config_release(cfg);
    expect_error("{'fast': {'rolling_cap_min_slack': 33}}",
                 "fast.rolling_cap_min_slack: must be an integer in 0..32, not 33");
    expect_error("{'fast': {'rolling_cap_min_slack': -1}}",
                 "fast.rolling_cap_min_slack: must be an integer in 0..32, not -1");
    expect_error_prefix("{'fast': {'rolling_cap_min_slack': 0.5}}",
                        "fast.rolling_cap_min_slack: must be an integer");
    expect_error("{'fast': {'transactional_respects_optout': 'no'}}",
                 "fast.transactional_respects_optout: must be true or false, not a string");
}

static void test_explore_prob_defaults_to_0_and_is_bounded(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_true(cfg->policy.slow.explore_prob == 0.0);
    config_release(cfg);
    cfg = load_ok("{'slow': {'explore_prob': 0.1}, 'experiments': {'slow': {'salt': 's', "
                  "'arms': [{'name': 'learn', 'share': 0.5, 'set': {'slow.explore_prob': 0.3}}]}}}");
    assert_true(cfg->policy.slow.explore_prob == 0.1);
    assert_true(cfg->policy.slow_arms[0].explore_prob == 0.3);
    config_release(cfg);
    expect_error("{'slow': {'explore_prob': 0.6}}",
                 "slow.explore_prob: must be a number in [0, 0.5], not 0.6");
    expect_error("{'slow': {'explore_prob': -0.1}}",
                 "slow.explore_prob: must be a number in [0, 0.5], not -0.1");
    expect_error_prefix("{'slow': {'explore_prob': 'often'}}", "slow.explore_prob: ");
    expect_error("{'experiments': {'slow': {'salt': 's', 'arms': [{'name': 'a', 'share': 0.5, "
                 "'set': {'slow.explore_prob': 1}}]}}}",
                 "experiments.slow.arms[0].set.slow.explore_prob: must be a number in [0, 0.5], "
                 "not 1");
}

/* slow.priors.score_strength: 50 by default, 0 turns it off, a weight >= 0
 * otherwise, and an experiment arm may set it on its own;
 * score_calibration one of two, "prior" by default. */
static void test_score_strength_defaults_to_50_and_is_bounded(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_true(cfg->policy.slow.priors.score_strength == 50.0);
    config_release(cfg);
    cfg = load_ok("{'slow': {'priors': {'score_strength': 0}}}");
    assert_true(cfg->policy.slow.priors.score_strength == 0.0);
    config_release(cfg);
    cfg = load_ok("{'slow': {'priors': {'score_strength': 20}}, 'experiments': {'slow': "
                  "{'salt': 's', 'arms': [{'name': 'scores', 'share': 0.5, "
                  "'set': {'slow.priors.score_strength': 5}}]}}}");
    assert_true(cfg->policy.slow.priors.score_strength == 20.0);
    assert_true(cfg->policy.slow_arms[0].priors.score_strength == 5.0);
    config_release(cfg);
    expect_error_prefix("{'slow': {'priors': {'score_strength': -1}}}",
                        "slow.priors.score_strength: ");
    expect_error_prefix("{'slow': {'priors': {'score_strength': 1e7}}}",
                        "slow.priors.score_strength: ");
    expect_error_prefix("{'slow': {'priors': {'score_strength': 'high'}}}",
                        "slow.priors.score_strength: ");
    cfg = load_ok("{}");
    assert_int_equal(cfg->policy.slow.priors.score_calibration, SCORE_CALIBRATION_PRIOR);
    config_release(cfg);
    cfg = load_ok("{'slow': {'priors': {'score_calibration': 'opens'}}}");
    assert_int_equal(cfg->policy.slow.priors.score_calibration, SCORE_CALIBRATION_OPENS);
    config_release(cfg);
    expect_error("{'slow': {'priors': {'score_calibration': 'level'}}}",
                 "slow.priors.score_calibration: must be \"opens\" or \"prior\"");
    expect_error_prefix("{'slow': {'priors': {'score_calibration': 1}}}",
                        "slow.priors.score_calibration: ");
}

static void test_holdout_needs_its_own_salt_and_a_bounded_share(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_true(cfg->policy.holdout_share == 0.0);
    config_release(cfg);
    cfg = load_ok("{'experiments': {'holdout_share': 0.05, 'holdout_salt': 'hold-2026'}}");
    assert_true(cfg->policy.holdout_share == 0.05);
    assert_string_equal(cfg->policy.holdout_salt, "hold-2026");
    config_release(cfg);
    expect_error("{'experiments': {'holdout_share': 0.05}}",
                 "experiments.holdout_salt: is required with holdout_share: it fixes who is "
                 "held out");
    expect_error("{'experiments': {'holdout_share': 0.6, 'holdout_salt': 'h'}}",
                 "experiments.holdout_share: must be a number in [0, 0.5], not 0.6");
    expect_error("{'experiments': {'holdout_share': 0.05, 'holdout_salt': 's', "
                 "'slow': {'salt': 's'}}}",
                 "experiments.holdout_salt: must differ from the layers' salts, or the holdout "
                 "would be a slice of an arm instead of a sample of every arm");
    expect_error("{'experiments': {'holdout_share': 0.05, 'holdout_salt': ''}}",
                 "experiments.holdout_salt: must not be empty");
}


/* ---- global rate limits (limits.global, on_error, shadow) -------------- */

static void test_rate_limits_default_to_none_failing_open(void **state)
{
    (void)state;
    config_t *cfg = load_ok("{}");
    assert_false(cfg->rate_limits.any);
    assert_false(cfg->rate_limits.fail_closed);
    assert_int_equal(cfg->rate_limits.n_tags, 0);
    config_release(cfg);
}

static void test_rate_limits_per_channel_and_tag(void **state)
{
    (void)state;
    config_t *cfg = load_ok(
        "{'limits': {'on_error': 'closed', 'global': {"
        "'push': {'per_second': 50, 'burst': 100, 'tags': {'promo': {'per_second': 5,"
        " 'burst': 10, 'shadow': true}}},"
        "'email': {'shadow': true, 'tags': {'digest': {'per_second': 0.5, 'burst': 1},"
        " 'promo': {'per_second': 1, 'burst': 2}}}}}}");
    const config_global_limits_t *g = &cfg->rate_limits;
    assert_true(g->any);
    assert_true(g->fail_closed);
    assert_int_equal(g->n_tags, 2);
    assert_string_equal(g->tags[0], "promo");
    assert_string_equal(g->tags[1], "digest");
    assert_int_equal(config_limit_tag_bit(g, "promo", 5), 1u);
    assert_int_equal(config_limit_tag_bit(g, "digest", 6), 2u);
    assert_int_equal(config_limit_tag_bit(g, "prom", 4), 0u);
    int push = config_channel_index(cfg, "push", 4), email = config_channel_index(cfg, "email", 5);
    assert_true(g->limit[push][0].set);
    assert_true(g->limit[push][0].per_second == 50.0);
    assert_int_equal(g->limit[push][0].burst, 100);
    assert_false(g->limit[push][0].shadow);
    assert_true(g->limit[push][1].set && g->limit[push][1].shadow);
    assert_false(g->limit[push][2].set);
    assert_false(g->limit[email][0].set);
    /* A channel entry's shadow covers its tags. */
    assert_true(g->limit[email][1].set && g->limit[email][1].shadow);
    assert_true(g->limit[email][2].set && g->limit[email][2].shadow);
    assert_true(g->limit[email][2].per_second == 0.5);
    config_release(cfg);
    cfg = load_ok("{'limits': {'shadow': true, 'global': {'push': {'per_second': 1, 'burst': 1}}}}");
    assert_true(cfg->rate_limits.limit[0][0].shadow);
    config_release(cfg);
}

static void test_rate_limits_bad_values_are_reported(void **state)
{
    (void)state;
    expect_error("{'limits': {'global': {'sms': {'per_second': 1, 'burst': 1}}}}",
                 "limits.global.sms: is not a configured channel (see \"channels\")");
    expect_error_prefix("{'limits': {'global': {'push': {'per_second': 0, 'burst': 1}}}}",
                        "limits.global.push.per_second: ");
    expect_error_prefix("{'limits': {'global': {'push': {'per_second': 1, 'burst': 0}}}}",
                        "limits.global.push.burst: ");
    expect_error_prefix("{'limits': {'global': {'push': {'per_second': 1, 'burst': 1.5}}}}",
                        "limits.global.push.burst: ");
    expect_error("{'limits': {'global': {'push': {'per_second': 1}}}}",
                 "limits.global.push: needs both \"per_second\" (a rate per second) and "
                 "\"burst\" (an integer >= 1)");
    expect_error("{'limits': {'global': {'push': {}}}}",
                 "limits.global.push: sets no limit: give per_second and burst, or tags");
    expect_error_prefix("{'limits': {'global': {'push': {'per_second': 1, 'burst': 1, "
                        "'brust': 1}}}}", "limits.global.push.brust: unknown key");
    expect_error_prefix("{'limits': {'global': {'push': {'tags': {'a b': {'per_second': 1, "
                        "'burst': 1}}}}}}", "limits.global.push.tags.a b: a tag name");
    expect_error("{'limits': {'global': {'push': {'per_second': 0.001, 'burst': 1000000}}}}",
                 "limits.global.push: burst / per_second must be at most 30 days of sends");
    expect_error("{'limits': {'on_error': 'maybe'}}",
                 "limits.on_error: must be \"open\" or \"closed\"");
    expect_error_prefix("{'limits': {'shadow': 1}}", "limits.shadow: must be true or false");
    expect_error_prefix("{'limits': {'global': {'push': 5}}}", "limits.global.push: must be an object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explore_prob_defaults_to_0_and_is_bounded),
        cmocka_unit_test(test_priority_and_rolling_slack_keys_have_defaults_and_ranges),
        cmocka_unit_test(test_holdout_needs_its_own_salt_and_a_bounded_share),
        cmocka_unit_test(test_empty_config_has_documented_defaults),
        cmocka_unit_test(test_max_per_week_defaults_to_100_and_covers_the_default_grid),
        cmocka_unit_test(test_a_slow_arm_must_plan_every_channel_the_base_plans),
        cmocka_unit_test(test_score_strength_defaults_to_50_and_is_bounded),
        cmocka_unit_test(test_default_channels_are_push_email_in_app),
        cmocka_unit_test(test_generation_is_stamped),
        cmocka_unit_test(test_shipped_default_config_file_loads),
        cmocka_unit_test(test_missing_config_file_is_reported),
        cmocka_unit_test(test_values_override_defaults),
        cmocka_unit_test(test_unknown_top_level_key_is_reported_with_hint),
        cmocka_unit_test(test_unknown_nested_key_is_reported_with_path_and_hint),
        cmocka_unit_test(test_unknown_key_far_from_any_known_has_no_hint),
        cmocka_unit_test(test_policy_sections_are_known_top_level_keys),
        cmocka_unit_test(test_string_key_with_wrong_type),
        cmocka_unit_test(test_string_key_rejects_null_unless_nullable),
        cmocka_unit_test(test_string_key_rejects_empty_string),
        cmocka_unit_test(test_string_key_rejects_too_long_value),
        cmocka_unit_test(test_int_key_with_wrong_type),
        cmocka_unit_test(test_int_key_rejects_real),
        cmocka_unit_test(test_bool_key_with_wrong_type),
        cmocka_unit_test(test_number_key_with_wrong_type),
        cmocka_unit_test(test_section_with_wrong_type),
        cmocka_unit_test(test_log_level_with_unknown_name),
        cmocka_unit_test(test_root_must_be_an_object),
        cmocka_unit_test(test_int_below_range),
        cmocka_unit_test(test_int_above_range),
        cmocka_unit_test(test_int_range_bounds_are_inclusive),
        cmocka_unit_test(test_max_line_bytes_below_minimum),
        cmocka_unit_test(test_admin_limits_are_read_and_checked),
        cmocka_unit_test(test_feedback_queue_keys_have_defaults_and_ranges),
        cmocka_unit_test(test_planner_interval_zero_is_out_of_range),
        cmocka_unit_test(test_planner_nice_is_a_nice_value),
        cmocka_unit_test(test_number_above_range),
        cmocka_unit_test(test_ipv6_listen_in_brackets_is_accepted),
        cmocka_unit_test(test_ipv6_listen_without_brackets_is_rejected),
        cmocka_unit_test(test_hostname_listen_is_accepted),
        cmocka_unit_test(test_listen_without_port_is_rejected),
        cmocka_unit_test(test_listen_with_non_string_is_rejected),
        cmocka_unit_test(test_endpoint_forms_with_bad_port_are_rejected),
        cmocka_unit_test(test_endpoint_forms_with_bad_host_are_rejected),
        cmocka_unit_test(test_admin_listen_equal_to_listen_is_rejected),
        cmocka_unit_test(test_listen_on_default_admin_port_is_rejected),
        cmocka_unit_test(test_admin_listen_null_disables_admin),
        cmocka_unit_test(test_admin_listen_with_wrong_type_mentions_null),
        cmocka_unit_test(test_prefix_with_open_brace_is_rejected),
        cmocka_unit_test(test_prefix_with_close_brace_is_rejected),
        cmocka_unit_test(test_reconnect_min_above_max_is_rejected),
        cmocka_unit_test(test_reconnect_min_equal_to_max_is_accepted),
        cmocka_unit_test(test_custom_channels_are_loaded_in_order),
        cmocka_unit_test(test_channel_index_matches_whole_names_only),
        cmocka_unit_test(test_duplicate_channel_is_rejected),
        cmocka_unit_test(test_invalid_channel_names_are_each_rejected),
        cmocka_unit_test(test_empty_channel_list_is_rejected),
        cmocka_unit_test(test_channels_not_an_array_is_rejected),
        cmocka_unit_test(test_events_url_without_http_scheme_is_rejected),
        cmocka_unit_test(test_events_url_with_other_scheme_is_rejected),
        cmocka_unit_test(test_events_url_http_and_https_are_accepted),
        cmocka_unit_test(test_events_url_null_disables_events),
        cmocka_unit_test(test_events_fsync_accepts_batch_and_never),
        cmocka_unit_test(test_events_fsync_rejects_other_values),
        cmocka_unit_test(test_events_queue_max_bytes_defaults_to_64_mib_and_is_bounded),
        cmocka_unit_test(test_missing_password_file_is_reported),
        cmocka_unit_test(test_password_file_is_read_and_trimmed),
        cmocka_unit_test(test_auth_token_file_is_read),
        cmocka_unit_test(test_empty_token_file_is_rejected),
        cmocka_unit_test(test_whitespace_only_token_file_is_rejected),
        cmocka_unit_test(test_invalid_json_reports_line_and_column),
        cmocka_unit_test(test_duplicate_keys_are_rejected),
        cmocka_unit_test(test_every_problem_of_a_file_is_reported),
        cmocka_unit_test(test_acquire_adds_a_reference_to_the_same_snapshot),
        cmocka_unit_test(test_snapshot_survives_until_last_release),
        cmocka_unit_test(test_release_of_null_is_a_no_op),
        cmocka_unit_test(test_rate_limits_default_to_none_failing_open),
        cmocka_unit_test(test_rate_limits_per_channel_and_tag),
        cmocka_unit_test(test_rate_limits_bad_values_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
