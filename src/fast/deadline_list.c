/*
 * deadline_list.c - see deadline_list.h.
 */
#include "notifd/fast/deadline_list.h"

#include <stdlib.h>

struct deadline_list {
    uv_timer_t timer;
    deadline_entry_t *head, *tail;
    uint64_t armed_for;       /* due_ns the timer is set for, 0 when stopped */
};

static void arm(deadline_list_t *l);

static void unlink_entry(deadline_list_t *l, deadline_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
    e->linked = false;
}

static void on_timer(uv_timer_t *t)
{
    deadline_list_t *l = t->data;
    l->armed_for = 0;
    uint64_t now = uv_hrtime();
    deadline_entry_t *e;
    while ((e = l->head) != NULL && e->due_ns <= now) {
        unlink_entry(l, e);
        e->fn(e);
    }
    arm(l);
}

/* Arms the timer for the head, rounding up to whole milliseconds so that
 * it never fires early. */
static void arm(deadline_list_t *l)
{
    if (l->head == NULL) {
        if (l->armed_for != 0)
            uv_timer_stop(&l->timer);
        l->armed_for = 0;
        return;
    }
    if (l->armed_for == l->head->due_ns)
        return;
    uint64_t now = uv_hrtime();
    uint64_t wait = l->head->due_ns > now ? (l->head->due_ns - now + 999999u) / 1000000u : 0;
    uv_timer_start(&l->timer, on_timer, wait, 0);
    l->armed_for = l->head->due_ns;
}

deadline_list_t *deadline_list_new(uv_loop_t *loop)
{
    deadline_list_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    return l;
}

void deadline_list_add(deadline_list_t *l, deadline_entry_t *e, uint64_t due_ns, deadline_fn fn)
{
    e->due_ns = due_ns;
    e->fn = fn;
    deadline_entry_t *after = l->tail;
    while (after != NULL && after->due_ns > due_ns)
        after = after->prev;
    e->prev = after;
    e->next = after ? after->next : l->head;
    if (e->next)
        e->next->prev = e;
    else
        l->tail = e;
    if (after)
        after->next = e;
    else
        l->head = e;
    e->linked = true;
    if (l->head == e)
        arm(l);
}

void deadline_list_remove(deadline_list_t *l, deadline_entry_t *e)
{
    if (!e->linked)
        return;
    bool was_head = l->head == e;
    unlink_entry(l, e);
    if (was_head && l->head == NULL)
        arm(l);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

void deadline_list_close(deadline_list_t *l)
{
    if (l == NULL)
        return;
    while (l->head != NULL)
        unlink_entry(l, l->head);
    uv_close((uv_handle_t *)&l->timer, on_closed);
}
