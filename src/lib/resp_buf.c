/*
 * resp_buf.c - see resp_buf.h.
 */
#include "notifd/lib/resp_buf.h"

#include <stdlib.h>
#include <string.h>

#include "notifd/lib/number_format.h"

bool resp_buf_reserve(resp_buf_t *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void header(resp_buf_t *b, char kind, size_t n)
{
    if (!resp_buf_reserve(b, 24))
        return;
    b->p[b->len++] = kind;
    b->len += number_format_i64(b->p + b->len, (int64_t)n);
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
    b->p[b->len] = '\0';
}

void resp_buf_begin(resp_buf_t *b, int argc) { header(b, '*', (size_t)argc); }

void resp_buf_arg(resp_buf_t *b, const char *s, size_t n)
{
    header(b, '$', n);
    if (!resp_buf_reserve(b, n + 2))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
    b->p[b->len] = '\0';
}

void resp_buf_arg_i64(resp_buf_t *b, int64_t v)
{
    char t[NUMBER_FORMAT_MAX];
    resp_buf_arg(b, t, number_format_i64(t, v));
}

void resp_buf_argv(resp_buf_t *b, int argc, const char *const *argv, const size_t *lens)
{
    resp_buf_begin(b, argc);
    for (int i = 0; i < argc; i++)
        resp_buf_arg(b, argv[i], lens[i]);
}

void resp_buf_clear(resp_buf_t *b, size_t keep_bytes)
{
    b->len = 0;
    b->failed = false;
    if (b->cap > keep_bytes) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    } else if (b->p != NULL) {
        b->p[0] = '\0';
    }
}

void resp_buf_free(resp_buf_t *b)
{
    free(b->p);
    *b = (resp_buf_t){0};
}
