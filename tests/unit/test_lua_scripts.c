/*
 * test_lua_scripts.c - the Lua scripts built into notifd are the files of
 * src/store/lua/, byte for byte: the embedding (src/store/lua/embed.cmake) loses,
 * adds or mangles nothing, and no stale copy is linked. Also checks the C
 * constants the scripts spell out as numbers, and that every .lua file in
 * src/store/lua/ is one of the scripts checked here.
 *
 * NOTIFD_LUA_DIR (the source tree's src/store/lua) comes from the top-level
 * CMakeLists.txt; the files are read when the test runs.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/decision.h"
#include "notifd/slow/planner.h"
#include "notifd/store/redis_scripts.h"

#ifndef NOTIFD_LUA_DIR
#error "NOTIFD_LUA_DIR must name the source tree's src/store/lua (top-level CMakeLists.txt)"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

static const struct {
    const char *file;
    const char *text;
} scripts[] = {
    {"decide_record.lua", redis_script_decide_record},
    {"feedback.lua", redis_script_feedback},
    {"plan_write.lua", planner_script_plan_write},
};
#define N_SCRIPTS (sizeof scripts / sizeof scripts[0])

/* The whole file; *len its length. */
static char *read_file(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", NOTIFD_LUA_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void test_embedded_text_is_the_file(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SCRIPTS; i++) {
        size_t len;
        char *file = read_file(scripts[i].file, &len);
        size_t elen = strlen(scripts[i].text);
        if (elen != len || memcmp(file, scripts[i].text, len) != 0) {
            size_t at = 0;
            while (at < len && at < elen && file[at] == scripts[i].text[at])
                at++;
            free(file);
            fail_msg("%s: embedded text (%zu bytes) differs from the file (%zu bytes) at byte %zu",
                     scripts[i].file, elen, len, at);
        }
        free(file);
    }
}

/* The two limits decide_record enforces in Redis are C constants; the
 * script spells them out as the macros expand. */
static void test_decide_record_spells_the_c_constants(void **state)
{
    (void)state;
    assert_non_null(strstr(redis_script_decide_record,
                           "if x and x > ts - " STR(DECISION_ROLLING_WINDOW_S) " and x < ts + "
                           STR(DECISION_ROLLING_WINDOW_S) " then\n"));
    assert_non_null(strstr(redis_script_decide_record,
                           "if #sends < " STR(DECISION_MAX_RECENT_SENDS) " then "));
}

/* A new .lua file in src/store/lua must be added to scripts[] (and so be checked). */
static void test_every_lua_file_is_checked(void **state)
{
    (void)state;
    DIR *d = opendir(NOTIFD_LUA_DIR);
    assert_non_null(d);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".lua") != 0)
            continue;
        size_t i = 0;
        while (i < N_SCRIPTS && strcmp(scripts[i].file, e->d_name) != 0)
            i++;
        if (i == N_SCRIPTS) {
            closedir(d);
            fail_msg("%s/%s is not in this test's scripts[]", NOTIFD_LUA_DIR, e->d_name);
        }
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, N_SCRIPTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_text_is_the_file),
        cmocka_unit_test(test_decide_record_spells_the_c_constants),
        cmocka_unit_test(test_every_lua_file_is_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
