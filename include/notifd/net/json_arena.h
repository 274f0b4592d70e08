/*
 * json_arena.h - request trees parsed into a per-request arena.
 *
 * jansson allocates every value, key and hash table separately; for a
 * decide with ten candidates that is over a hundred malloc/free pairs, and
 * freeing the tree was a quarter of notifd's CPU per decide in the profile.
 * While a request line is parsed, jansson's allocations come from an arena
 * that belongs to the request, and the arena goes back to a pool in one
 * step when the request ends: the tree is not walked to be freed unless
 * part of it had to be allocated outside the arena.
 *
 * How it stays safe:
 *   - arena memory is a fixed range of reserved address space, so the free
 *     function knows an arena pointer by its address (two compares) and
 *     passes every other pointer to free(); allocations outside a parse
 *     window, on any thread, are plain malloc;
 *   - the parse window is open only on the loop thread, inside
 *     json_arena_begin()/json_arena_end();
 *   - values of a request tree must not outlive the request: code copies
 *     what it keeps (events get copies, never references). Under
 *     AddressSanitizer a released arena is poisoned, so a reference that
 *     escaped is reported as a use after free.
 *   - when the pool is empty or a tree outgrows its arena, the rest of the
 *     allocations are plain malloc.
 */
#ifndef NOTIFD_JSON_ARENA_H
#define NOTIFD_JSON_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct json_arena json_arena_t;

/* Installs the allocator in jansson. Call once, before any jansson use
 * (other threads included). Returns false (and changes nothing) if the
 * address range cannot be reserved; arenas are then never used. */
bool json_arena_install(void);

/* Opens a parse window with a fresh arena (NULL: none available, the parse
 * then uses malloc). Loop thread only; windows do not nest. */
json_arena_t *json_arena_begin(void);
/* Closes the parse window. */
void json_arena_end(void);
/* Returns an arena to the pool, after every value in it has been released. */
void json_arena_release(json_arena_t *a);

/* True if every allocation of the arena's parse window came from the
 * arena: a tree parsed in it then needs no json_decref, since releasing the
 * arena frees it all (walking a ten-candidate tree only to decrement its
 * reference counts was a tenth of notifd's CPU per decide). */
bool json_arena_holds_all(const json_arena_t *a);

/* Bytes an arena holds now (tests). */
size_t json_arena_used(const json_arena_t *a);

#endif
