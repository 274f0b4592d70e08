/*
 * config_reader.c - typed accessors that collect every problem with its key
 * path (see config_reader.h), and the error list itself.
 */
#include "notifd/config/config_reader.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_errors_init(config_errors_t *errs) { memset(errs, 0, sizeof *errs); }

void config_errors_free(config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->items[i]);
    free(errs->items);
    memset(errs, 0, sizeof *errs);
}

void config_errors_add(config_errors_t *errs, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char line[800];
    snprintf(line, sizeof line, "%s: %s", (path && path[0]) ? path : "(config)", msg);
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        char **items = realloc(errs->items, cap * sizeof *items);
        if (items == NULL)
            return; /* out of memory: the load still fails, the caller sees count > 0 */
        errs->items = items;
        errs->cap = cap;
    }
    char *copy = strdup(line);
    if (copy != NULL)
        errs->items[errs->count++] = copy;
}

const char *config_path_join(char *buf, size_t cap, const char *parent, const char *key)
{
    if (parent == NULL || parent[0] == '\0')
        snprintf(buf, cap, "%s", key);
    else
        snprintf(buf, cap, "%s.%s", parent, key);
    return buf;
}

/* Levenshtein distance, for "did you mean" hints on unknown keys. Keys are
 * short, so the quadratic table on the stack is fine. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

void config_check_known(config_errors_t *errs, const json_t *obj, const char *path,
                        const char *const *known)
{
    const char *key;
    json_t *value;
    char kp[256];
    json_object_foreach((json_t *)obj, key, value) {
        const char *best = NULL;
        size_t best_d = 3; /* suggest only close matches */
        bool found = false;
        for (const char *const *k = known; *k != NULL; k++) {
            if (strcmp(key, *k) == 0) {
                found = true;
                break;
            }
            size_t d = edit_distance(key, *k);
            if (d < best_d) {
                best_d = d;
                best = *k;
            }
        }
        if (found)
            continue;
        config_path_join(kp, sizeof kp, path, key);
        if (best != NULL)
            config_errors_add(errs, kp, "unknown key (did you mean \"%s\"?)", best);
        else
            config_errors_add(errs, kp, "unknown key");
    }
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

json_t *config_get_object(config_errors_t *errs, json_t *obj, const char *path, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        char kp[256];
        config_errors_add(errs, config_path_join(kp, sizeof kp, path, key),
                          "must be an object, not %s", json_type_name(v));
        return NULL;
    }
    return v;
}

bool config_get_string(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                       char *out, size_t cap, bool allow_null, bool allow_empty)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return false;
    char kp[256];
    config_path_join(kp, sizeof kp, path, key);
    if (json_is_null(v)) {
        if (!allow_null) {
            config_errors_add(errs, kp, "must be a string, not null");
            return false;
        }
        out[0] = '\0';
        return true;
    }
    if (!json_is_string(v)) {
        config_errors_add(errs, kp, "must be a string, not %s", json_type_name(v));
        return false;
    }
    size_t len = json_string_length(v);
    if (len == 0 && !allow_empty) {
        config_errors_add(errs, kp, "must not be empty");
        return false;
    }
    if (len >= cap) {
        config_errors_add(errs, kp, "is too long (%zu bytes, at most %zu)", len, cap - 1);
        return false;
    }
    if (memchr(json_string_value(v), '\0', len) != NULL) {
        config_errors_add(errs, kp, "must not contain NUL bytes");
        return false;
    }
    memcpy(out, json_string_value(v), len + 1);
    return true;
}

bool config_get_int(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                    long long min, long long max, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return false;
    char kp[256];
    config_path_join(kp, sizeof kp, path, key);
    if (!json_is_integer(v)) {
        config_errors_add(errs, kp, "must be an integer in %lld..%lld, not %s", min, max,
                          json_type_name(v));
        return false;
    }
    long long x = json_integer_value(v);
    if (x < min || x > max) {
        config_errors_add(errs, kp, "must be an integer in %lld..%lld, not %lld", min, max, x);
        return false;
    }
    *out = x;
    return true;
}

bool config_json_number(const json_t *v, double *out)
{
    if (json_is_integer(v)) {
        *out = (double)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        *out = json_real_value(v);
        return true;
    }
    return false;
}

bool config_get_double(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                       double min, double max, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return false;
    char kp[256];
    config_path_join(kp, sizeof kp, path, key);
    double x;
    if (!config_json_number(v, &x)) {
        config_errors_add(errs, kp, "must be a number in [%g, %g], not %s", min, max,
                          json_type_name(v));
        return false;
    }
    if (!isfinite(x) || x < min || x > max) {
        config_errors_add(errs, kp, "must be a number in [%g, %g], not %g", min, max, x);
        return false;
    }
    *out = x;
    return true;
}

bool config_get_bool(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                     bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return false;
    if (!json_is_boolean(v)) {
        char kp[256];
        config_errors_add(errs, config_path_join(kp, sizeof kp, path, key),
                          "must be true or false, not %s", json_type_name(v));
        return false;
    }
    *out = json_is_true(v);
    return true;
}
