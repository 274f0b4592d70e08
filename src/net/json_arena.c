/*
 * json_arena.c - see json_arena.h.
 */
#include "notifd/net/json_arena.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* 32 KiB holds a decide with about thirty candidates; 8192 arenas cover
 * the requests a loaded instance has in flight. Only touched pages become
 * resident: the reservation costs address space, not memory. */
#define ARENA_BYTES (32 * 1024)
#define ARENA_COUNT 8192
#define ARENA_ALIGN 16

struct json_arena {
    json_arena_t *next_free;   /* pool link */
    size_t used;               /* bytes handed out after this header */
    bool spilled;              /* an allocation of its window went to malloc */
};

#define ARENA_HEADER ((sizeof(json_arena_t) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static char *region;           /* ARENA_COUNT * ARENA_BYTES, or NULL */
static char *region_end;
static size_t carved;          /* arenas carved from the region so far */
static json_arena_t *pool;     /* released arenas, most recent first */
static _Thread_local json_arena_t *current;

static void *arena_malloc(size_t n)
{
    json_arena_t *a = current;
    if (a != NULL) {
        size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        if (need <= ARENA_BYTES - ARENA_HEADER - a->used) {
            char *p = (char *)a + ARENA_HEADER + a->used;
            a->used += need;
            ARENA_UNPOISON(p, n);
            return p;
        }
        a->spilled = true;
    }
    return malloc(n);
}

static void arena_free(void *p)
{
    if ((char *)p >= region && (char *)p < region_end)
        return; /* arena memory goes back with its arena */
    free(p);
}

bool json_arena_install(void)
{
    void *r = mmap(NULL, (size_t)ARENA_COUNT * ARENA_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return false;
    region = r;
    region_end = region + (size_t)ARENA_COUNT * ARENA_BYTES;
    ARENA_POISON(region, (size_t)ARENA_COUNT * ARENA_BYTES);
    json_set_alloc_funcs(arena_malloc, arena_free);
    return true;
}

json_arena_t *json_arena_begin(void)
{
    json_arena_t *a = NULL;
    if (pool != NULL) {
        a = pool;
        ARENA_UNPOISON(a, ARENA_HEADER);
        pool = a->next_free;
    } else if (region != NULL && carved < ARENA_COUNT) {
        a = (json_arena_t *)(region + carved++ * ARENA_BYTES);
        ARENA_UNPOISON(a, ARENA_HEADER);
    }
    if (a != NULL) {
        a->next_free = NULL;
        a->used = 0;
        a->spilled = false;
    }
    current = a;
    return a;
}

void json_arena_end(void) { current = NULL; }

void json_arena_release(json_arena_t *a)
{
    if (a == NULL)
        return;
    a->next_free = pool;
    pool = a;
    ARENA_POISON((char *)a + ARENA_HEADER, ARENA_BYTES - ARENA_HEADER);
}

size_t json_arena_used(const json_arena_t *a) { return a ? a->used : 0; }

bool json_arena_holds_all(const json_arena_t *a) { return a != NULL && !a->spilled; }
