/*
 * resp_buf.h - Redis commands written straight into RESP, the one encoder
 * of the fast path's store (store.c) and the planner's pipeline (planner.c).
 *
 * hiredis formats argv commands with sdscatfmt per argument, which showed in
 * both profiles; these write each argument with one memcpy. The buffer
 * grows by doubling and keeps a NUL after its bytes (hiredis 0.14 finds a
 * formatted command's name with strchr()). After an allocation failure the
 * buffer is marked failed and ignores further writes.
 */
#ifndef NOTIFD_LIB_RESP_BUF_H
#define NOTIFD_LIB_RESP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct resp_buf {
    char *p;
    size_t len, cap;
    bool failed;
} resp_buf_t;

/* Room for n more bytes (and the NUL); false (and failed) when out of memory. */
bool resp_buf_reserve(resp_buf_t *b, size_t n);
/* A command of argc arguments: resp_buf_begin, then argc resp_buf_arg*. */
void resp_buf_begin(resp_buf_t *b, int argc);
void resp_buf_arg(resp_buf_t *b, const char *s, size_t n);
void resp_buf_arg_i64(resp_buf_t *b, int64_t v);
void resp_buf_argv(resp_buf_t *b, int argc, const char *const *argv, const size_t *lens);
/* Empties the buffer, keeping its memory unless it grew past keep_bytes. */
void resp_buf_clear(resp_buf_t *b, size_t keep_bytes);
void resp_buf_free(resp_buf_t *b);

#endif
