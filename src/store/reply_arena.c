/*
 * reply_arena.c - hiredis reply objects built in a bump arena (see
 * reply_arena.h).
 */
#include "notifd/store/reply_arena.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

void reply_arena_init(reply_arena_t *a, reply_arena_mode_t mode, size_t block_size,
                      size_t keep_bytes)
{
    memset(a, 0, sizeof *a);
    a->mode = mode;
    a->block_size = block_size;
    a->keep_bytes = keep_bytes;
}

static void *arena_alloc(reply_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    reply_arena_block_t *b = a->cur;
    while (b != NULL && b->used + n > b->size)
        b = b->next;
    if (b == NULL) {
        size_t size = n > a->block_size ? n : a->block_size;
        b = malloc(sizeof *b + size);
        if (b == NULL) {
            a->failed = true;
            return NULL;
        }
        b->used = 0;
        b->size = size;
        /* Appended after cur, so reset() reuses it from the start. */
        if (a->cur == NULL) {
            b->next = NULL;
            a->first = b;
        } else {
            b->next = a->cur->next;
            a->cur->next = b;
        }
    }
    a->cur = b;
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void reply_arena_reset(reply_arena_t *a)
{
    size_t total = 0;
    for (reply_arena_block_t *b = a->first; b != NULL; b = b->next) {
        b->used = 0;
        total += b->size;
    }
    a->cur = a->first;
    a->failed = false;
    if (a->keep_bytes == 0 || total <= a->keep_bytes)
        return;
    /* One huge reply must not pin its memory for the connection's life:
     * keep a single block of the usual size. */
    reply_arena_block_t *keep = NULL, *b = a->first;
    while (b != NULL) {
        reply_arena_block_t *next = b->next;
        if (keep == NULL && b->size == a->block_size) {
            keep = b;
            keep->next = NULL;
        } else {
            free(b);
        }
        b = next;
    }
    a->first = a->cur = keep;
}

void reply_arena_free(reply_arena_t *a)
{
    reply_arena_block_t *b = a->first;
    while (b != NULL) {
        reply_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->first = a->cur = NULL;
    a->failed = false;
}

/* Called first by every constructor: a task without a parent starts a new
 * top-level reply, so in PER_REPLY mode the previous one is done with. */
static reply_arena_t *arena_of(const redisReadTask *task)
{
    reply_arena_t *a = task->privdata;
    if (task->parent == NULL && a->mode == REPLY_ARENA_PER_REPLY)
        reply_arena_reset(a);
    return a;
}

static redisReply *arena_object(reply_arena_t *a, const redisReadTask *task, int type)
{
    redisReply *r = arena_alloc(a, sizeof *r);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->type = type;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *arena_string(const redisReadTask *task, char *str, size_t len)
{
    reply_arena_t *a = arena_of(task);
    char *copy = arena_alloc(a, len + 1);
    if (copy == NULL)
        return NULL;
    redisReply *r = arena_object(a, task, task->type);
    if (r == NULL)
        return NULL;
    memcpy(copy, str, len);
    copy[len] = '\0';
    r->str = copy;
    r->len = len;
    return r;
}

static void *arena_array(const redisReadTask *task, int elements)
{
    reply_arena_t *a = arena_of(task);
    redisReply **el = NULL;
    if (elements > 0 && (el = arena_alloc(a, (size_t)elements * sizeof *el)) == NULL)
        return NULL;
    redisReply *r = arena_object(a, task, REDIS_REPLY_ARRAY);
    if (r == NULL)
        return NULL;
    r->elements = elements > 0 ? (size_t)elements : 0;
    r->element = el;
    return r;
}

static void *arena_integer(const redisReadTask *task, long long value)
{
    redisReply *r = arena_object(arena_of(task), task, REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = value;
    return r;
}

static void *arena_nil(const redisReadTask *task)
{
    return arena_object(arena_of(task), task, REDIS_REPLY_NIL);
}

static void arena_free_object(void *obj) { (void)obj; /* the arena owns it */ }

static redisReplyObjectFunctions arena_functions = {
    arena_string, arena_array, arena_integer, arena_nil, arena_free_object,
};

void reply_arena_attach(redisReader *r, reply_arena_t *a)
{
    r->fn = &arena_functions;
    r->privdata = a;
}
