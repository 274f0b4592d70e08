/*
 * redis_uv.h - hiredis async attached to a libuv loop, with the writes of
 * one loop turn sent together.
 */
#ifndef NOTIFD_REDIS_UV_H
#define NOTIFD_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches `ac` to `loop` (instead of hiredis' adapters/libuv.h). Returns
 * REDIS_OK, or REDIS_ERR (the context is then not attached and is still the
 * caller's to free). The adapter frees itself when hiredis frees `ac`. */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
