/*
 * test_util.h - helpers the unit tests share (include after cmocka.h).
 */
#ifndef NOTIFD_TEST_UTIL_H
#define NOTIFD_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "notifd/config/config.h"

/* |a - b| <= tol, printing both values (to 17 digits) when not. */
#define assert_close(a, b, tol)                                                              \
    do {                                                                                     \
        const double a_ = (a), b_ = (b);                                                     \
        if (!(fabs(a_ - b_) <= (tol))) {                                                     \
            print_error("%s = %.17g, expected %.17g +- %g\n", #a, a_, b_, (double)(tol));    \
            fail();                                                                          \
        }                                                                                    \
    } while (0)

/* Loads a config text as generation 1. With `errs`, its problems are left
 * there (errs is initialised here); without, they are printed and freed. */
static inline config_t *test_load_config(const char *json, config_errors_t *errs)
{
    config_errors_t own;
    config_errors_t *e = errs != NULL ? errs : &own;
    config_errors_init(e);
    config_t *cfg = config_load_string(json, 1, e);
    if (errs == NULL) {
        for (size_t i = 0; i < own.count; i++)
            fprintf(stderr, "config: %s\n", own.items[i]);
        config_errors_free(&own);
    }
    return cfg;
}

/* True when one of the reported problems contains `needle`. */
static inline bool test_has_error(const config_errors_t *errs, const char *needle)
{
    for (size_t i = 0; i < errs->count; i++)
        if (strstr(errs->items[i], needle) != NULL)
            return true;
    return false;
}

#endif
