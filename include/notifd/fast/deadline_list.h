/*
 * deadline_list.h - requests that must be answered by a deadline, on one
 * libuv timer.
 *
 * Entries are kept in order of their due time; the timer is armed for the
 * earliest one only. Requests of one config share one budget, so an entry
 * is nearly always appended at the tail: adding and removing cost O(1),
 * where a uv_timer per request would cost a heap operation each.
 */
#ifndef NOTIFD_DEADLINE_LIST_H
#define NOTIFD_DEADLINE_LIST_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct deadline_entry deadline_entry_t;
typedef void (*deadline_fn)(deadline_entry_t *e);

struct deadline_entry {
    deadline_entry_t *prev, *next;
    uint64_t due_ns;          /* uv_hrtime() */
    deadline_fn fn;
    bool linked;
};

typedef struct deadline_list deadline_list_t;

deadline_list_t *deadline_list_new(uv_loop_t *loop);
/* `fn` runs once, on the loop, at or after due_ns (uv_hrtime), unless the
 * entry is removed first. The entry is unlinked before `fn` runs. */
void deadline_list_add(deadline_list_t *l, deadline_entry_t *e, uint64_t due_ns, deadline_fn fn);
/* Safe on an entry that is not linked. */
void deadline_list_remove(deadline_list_t *l, deadline_entry_t *e);
/* Entries still linked are dropped without their callbacks; the list is
 * freed once libuv has closed its timer. */
void deadline_list_close(deadline_list_t *l);

#endif
