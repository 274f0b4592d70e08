/*
 * reply_arena.h - hiredis reply objects built in a bump arena.
 *
 * hiredis builds every reply element with its own allocations (object,
 * string copy, element array): a hash of 30 fields is ~60 mallocs and as
 * many frees. Attached to a reader, an arena builds them by bumping a
 * pointer instead, and frees them all at once:
 *   - REPLY_ARENA_MANUAL: the owner calls reply_arena_reset() when it holds
 *     no reply any more (the planner worker, which reads a pipeline group
 *     of replies before it looks at them);
 *   - REPLY_ARENA_PER_REPLY: the arena starts over with every new top-level
 *     reply (an async context, whose reply lives only for its callback).
 * Either way hiredis' freeObject is a no-op: the reader never touches the
 * arena after the last reply it built, so the arena may outlive or
 * be freed after its context, never before its last reply is done.
 *
 * Both rest on one property of hiredis 0.14: redisGetReply() returns as
 * soon as one top-level reply is complete and never starts the next one,
 * and the async layer runs and frees each reply before it parses the next.
 */
#ifndef NOTIFD_REPLY_ARENA_H
#define NOTIFD_REPLY_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/read.h>

typedef enum { REPLY_ARENA_MANUAL, REPLY_ARENA_PER_REPLY } reply_arena_mode_t;

typedef struct reply_arena_block {
    struct reply_arena_block *next;
    size_t used, size;
    char data[];
} reply_arena_block_t;

typedef struct reply_arena {
    reply_arena_block_t *first, *cur;
    size_t block_size;     /* bytes per block (a larger element gets its own) */
    size_t keep_bytes;     /* 0: keep every block; else a reset frees the
                            * blocks after the first once they total more */
    reply_arena_mode_t mode;
    bool failed;           /* out of memory: the reader errors out */
} reply_arena_t;

void reply_arena_init(reply_arena_t *a, reply_arena_mode_t mode, size_t block_size,
                      size_t keep_bytes);
/* Every reply built so far is gone; the blocks are reused. */
void reply_arena_reset(reply_arena_t *a);
/* Frees the blocks; the arena can be used again (it starts empty). */
void reply_arena_free(reply_arena_t *a);
/* Builds the reader's replies in `a` from now on. */
void reply_arena_attach(redisReader *r, reply_arena_t *a);

#endif
