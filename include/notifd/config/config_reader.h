/*
 * config_reader.h - typed, path-aware accessors used by the config parsers
 * (config.c for the daemon keys, config_policy.c for fast.* and slow.*).
 *
 * Each accessor reads one key of a JSON object, checks its type and range,
 * and on any problem records "path.key: what is wrong" and leaves the output
 * at its default. Parsing therefore never stops at the first problem: the
 * operator sees every mistake in one --check-config run.
 */
#ifndef NOTIFD_CONFIG_READER_H
#define NOTIFD_CONFIG_READER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "notifd/config/config.h"

/* "parent.key" (or "key" when parent is empty) into buf. */
const char *config_path_join(char *buf, size_t cap, const char *parent, const char *key);

/* Records an "unknown key" problem for every key of `obj` not in the
 * NULL-terminated `known` list, suggesting the closest known key. */
void config_check_known(config_errors_t *errs, const json_t *obj, const char *path,
                        const char *const *known);

/* Returns obj[key] if it is an object, NULL if absent or null; records a
 * problem (and returns NULL) for any other type. */
json_t *config_get_object(config_errors_t *errs, json_t *obj, const char *path, const char *key);

/* Each returns true when the key was present and valid (out updated). */
bool config_get_string(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                       char *out, size_t cap, bool allow_null, bool allow_empty);
bool config_get_int(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                    long long min, long long max, long long *out);
bool config_get_double(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                       double min, double max, double *out);
bool config_get_bool(config_errors_t *errs, json_t *obj, const char *path, const char *key,
                     bool *out);

/* A JSON number (integer or real) into a double; false for other types. */
bool config_json_number(const json_t *v, double *out);

#endif
