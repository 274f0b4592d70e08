/*
 * store_internal.h - what the two halves of the store share (store.h is the
 * contract): store.c holds the connection (connect, handshake, liveness,
 * reconnect, close); store_commands.c the commands (the window, the queue,
 * replies, resends). Nothing outside src/store includes it.
 */
#ifndef NOTIFD_STORE_INTERNAL_H
#define NOTIFD_STORE_INTERNAL_H

#include <hiredis/async.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "notifd/lib/resp_buf.h"
#include "notifd/store/reply_arena.h"
#include "notifd/store/store.h"

#define STORE_MAX_SCRIPTS 16

/* Pending commands are recycled through a freelist, buffers included: a
 * decide sends about five, and a malloc/free per command buys nothing. */
#define STORE_FREE_CMDS_MAX 4096
/* A command buffer is kept for reuse unless one huge command grew it. */
#define STORE_BUF_KEEP_BYTES 4096
/* Likewise hiredis' reply buffer. */
#define STORE_READER_KEEP_BYTES (1024 * 1024)
/* Replies are built in an arena that starts over with each reply (a decide
 * reads ~50 reply elements, each a malloc and a free otherwise:
 * docs/benchmarks.md, "Profile notes"). One block holds any usual reply; a
 * huge one gets its own, freed again once the arena passes this. */
#define STORE_ARENA_BLOCK (64 * 1024)
#define STORE_ARENA_KEEP_BYTES (1024 * 1024)
/* A command written this often without an answer is failed rather than
 * sent again: it may be what keeps taking Redis down. */
#define STORE_MAX_ATTEMPTS 3

typedef struct pending_cmd {
    struct pending_cmd *prev, *next;
    store_t *st;
    store_reply_fn fn;
    void *privdata;
    uint64_t sent_ns;        /* last written */
    uint64_t deadline_ns;    /* 0: none */
    resp_buf_t cmd;          /* the command in RESP */
    int script;              /* registered script of an EVALSHA, else -1 */
    int attempts;            /* times written */
    bool internal;           /* handshake, reload or probe: outside the window, never resent */
} pending_cmd_t;

typedef struct cmd_list {
    pending_cmd_t *head, *tail;
    int64_t n;
} cmd_list_t;

typedef struct store_script {
    char name[32];
    char *body;
    char sha[41];
    bool loaded;
} store_script_t;

/* Client-side caching (store_tracking.c): a second connection subscribed
 * to Redis's invalidation channel, and the main connection tracked with
 * its invalidations redirected there. */
typedef struct store_tracker {
    bool wanted;                 /* redis.tracking */
    redisAsyncContext *ac;       /* the subscribed connection */
    long long client_id;         /* its CLIENT ID, 0 until known */
    bool subscribed;
    uv_timer_t retry;
    int backoff_ms;
    bool enabling;               /* CLIENT TRACKING sent on the main connection */
    uint64_t epoch;              /* != 0 while the main connection is tracked */
    uint64_t epochs;             /* epochs handed out */
    store_invalidate_fn fn;
    void *arg;
} store_tracker_t;

struct store {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    store_state_t state;
    bool closing;
    bool configured;
    bool ever_ready;

    /* connection settings (copied: the config snapshot may be released) */
    char host[CONFIG_HOST_MAX];
    int port;
    char unix_path[108];
    char *password;
    int timeout_ms;
    int connect_timeout_ms;
    int reconnect_min_ms, reconnect_max_ms;
    int backoff_ms;
    int max_in_flight;
    int max_queued;
    int probe_interval_ms;

    uint64_t connect_started_ns;
    uint64_t last_progress_ns;   /* last reply, or when the first command went out */
    uint64_t last_write_ns;      /* any command, internal ones too (probes) */
    uv_timer_t watchdog;         /* liveness, connect timeout, expiry, probes */
    bool watchdog_running;
    uv_timer_t retry;            /* reconnect backoff */
    int handles_open;

    cmd_list_t inflight;
    cmd_list_t queue;
    int64_t user_in_flight;      /* inflight minus internal commands: the window */
    /* Where the next command of a lost connection goes back into the
     * queue: after those of the same connection already put back, before
     * everything that was never written. */
    pending_cmd_t *requeue_after;
    uint64_t position;           /* callers' commands accepted so far (store_position) */
    uint64_t queue_changes;      /* unlinks from the queue (store_expire_queued) */
    bool pumping;
    bool congested;
    bool dropping_hung;          /* drop_context for no progress: see settle_unanswered */
    void (*drain_fn)(void *);
    void *drain_arg;

    int handshake_steps;         /* handshake replies still expected */
    bool handshake_failed;
    bool reloading;              /* SCRIPT LOADs after NOSCRIPT are out */
    int reload_steps;

    store_script_t scripts[STORE_MAX_SCRIPTS];
    int n_scripts;

    pending_cmd_t *free_cmds;    /* recycled pending_cmd_t, singly linked by next */
    int n_free_cmds;
    /* Reply objects of every context: a reply lives only for its callback,
     * and a context is gone before the next one connects. */
    reply_arena_t arena;

    char last_error[256];
    store_counters_t counters;
    /* counters.pending and when the last command was sent (uv_now), for
     * other threads (store_waiting, store_last_sent_ms). */
    atomic_int_fast64_t waiting;
    atomic_uint_fast64_t last_sent_ms;
    void (*rtt_fn)(void *, double);
    void *rtt_arg;
    uint64_t rng;
    uint64_t conn_gen;           /* main contexts made so far */
    store_tracker_t tracker;
};

/* store_tracking.c */
void store_tracking_init(store_t *st);
/* Starts, or stops, the second connection per st->tracker.wanted. */
void store_tracking_configure(store_t *st, bool wanted, bool address_changed);
/* The main connection is ready: track it, if the second one is up. */
void store_tracking_main_ready(store_t *st);
/* The main connection is gone: nothing it read is tracked any more. */
void store_tracking_main_lost(store_t *st);
void store_tracking_close(store_t *st);
/* store_commands.c */
void store_counts_changed(store_t *st);
void store_queue_unlink(store_t *st, pending_cmd_t *p);
/* Fails a command that is on no list: its callback gets NULL. */
void store_cmd_fail(store_t *st, pending_cmd_t *p);
/* Writes queued commands while the window has room. */
void store_pump(store_t *st);
/* Fails queued commands whose deadline passed (no connection is ready). */
void store_expire_queued(store_t *st);
/* The same, or with all_with_deadline every queued command that has a
 * caller's deadline (Redis was declared hung: see settle_unanswered). */
void store_fail_queued(store_t *st, bool all_with_deadline);
/* Handshake, reload and probe commands: out at once, outside the window. */
bool store_send_internal(store_t *st, store_reply_fn fn, void *privdata, int argc,
                         const char **argv, const size_t *lens);

/* store.c */
void store_watchdog_ensure(store_t *st);
/* The current context died under us: what follows is a reconnect. */
void store_context_lost(store_t *st, const char *why);
void store_drop_context(store_t *st, const char *why);
/* After NOSCRIPT: EVAL until each SCRIPT LOAD is back. */
void store_scripts_reload(store_t *st);

#endif
