/*
 * store.h - the fast path's Redis connection: hiredis async on the libuv loop.
 *
 * One connection per process, pipelined: every request's commands go down
 * the same socket and replies come back in order. What hiredis 0.14 does not
 * do, this module adds (docs/operations.md, "Redis liveness"):
 *   - a window: at most redis.max_in_flight commands are written and not yet
 *     answered; the rest wait in notifd, in order, up to redis.max_queued.
 *     Above half of that the store reports congestion, and the server stops
 *     reading producers' sockets until the queue is down to a quarter;
 *   - liveness, not latency: Redis is declared down only when it makes no
 *     progress, i.e. no reply for redis.timeout_ms while commands are
 *     outstanding (an idle connection is probed with PING every
 *     redis.probe_interval_ms). A command's wait behind earlier commands is
 *     never a reason;
 *   - reconnect with capped exponential backoff (and jitter), always with a
 *     fresh context. Commands Redis has not answered are not failed by a
 *     reconnect: they are sent again, in order, on the new connection, unless
 *     their deadline passed first (every write notifd sends is idempotent:
 *     decision records by opportunity, feedback by event id);
 *   - a handshake (AUTH, SCRIPT LOAD of registered scripts, PING) before the
 *     store reports READY;
 *   - EVALSHA that is resent as EVAL when Redis lost its script cache, and a
 *     reload of the cache: the caller never sees NOSCRIPT;
 *   - READONLY (a replica answering writes): the command fails with that
 *     error reply and the connection is rebuilt.
 *
 * Callbacks always run on the loop thread and always exactly once: with the
 * reply, or with NULL when the command's deadline passed, the connection
 * could not be rebuilt in time, or the store closed. An error reply
 * (REDIS_REPLY_ERROR) is passed through as a reply. store_command() never
 * calls the callback synchronously: when the store is not ready or its queue
 * is full it returns -1 and the caller answers at once (decisions degrade,
 * they never queue behind a dead Redis).
 */
#ifndef NOTIFD_STORE_H
#define NOTIFD_STORE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/config/config.h"

typedef enum store_state {
    STORE_DISCONNECTED = 0,
    STORE_CONNECTING = 1, /* TCP connect or handshake under way */
    STORE_READY = 2,
} store_state_t;

typedef struct store store_t;

typedef void (*store_reply_fn)(redisReply *reply, void *privdata);

typedef struct store_counters {
    uint64_t commands;
    uint64_t replies;
    uint64_t errors;        /* error replies, failed commands */
    uint64_t timeouts;      /* contexts dropped because Redis made no progress */
    uint64_t disconnects;
    uint64_t reconnects;    /* successful handshakes after the first */
    uint64_t rejected;      /* commands refused: store not ready or queue full */
    uint64_t queue_full;    /* of those, refused because redis.max_queued was reached */
    uint64_t resent;        /* unanswered commands sent again after a reconnect */
    uint64_t expired;       /* commands failed unsent because their deadline passed */
    uint64_t noscript;      /* EVALSHA answered NOSCRIPT and resent as EVAL */
    uint64_t readonly;      /* READONLY replies (connection rebuilt) */
    uint64_t probes;        /* PINGs sent on an idle connection */
    uint64_t congestions;   /* times the queue passed its high-water mark */
    uint64_t rtt_us_sum;    /* round-trip time of answered commands */
    uint64_t invalidations; /* keys Redis reported changed (client tracking; a flush counts one) */
    bool tracking;          /* Redis tracks what this connection reads (store_tracking_epoch != 0) */
    int64_t pending;        /* in flight + queued */
    int64_t in_flight;      /* written and not yet answered */
    int64_t queued;         /* waiting in notifd for the window */
} store_counters_t;

/* A script registered before store_start(); its SHA is loaded on every
 * (re)connect. Returns the script id (>= 0) or -1. */
int store_register_script(store_t *st, const char *name, const char *body);

store_t *store_create(uv_loop_t *loop);
/* Applies connection settings; reconnects if address, password or database
 * settings changed. The first call starts connecting. */
void store_configure(store_t *st, const config_t *cfg);
/* Sends a command (argv form, binary-safe). Returns 0 if queued (callback
 * will run exactly once), -1 if the store is not ready (callback not run). */
int store_command(store_t *st, store_reply_fn fn, void *privdata, int argc,
                  const char **argv, const size_t *argvlen);
/* EVALSHA of a registered script with keys and args (argv form). */
int store_eval(store_t *st, int script, store_reply_fn fn, void *privdata, int nkeys,
               int nargs, const char **argv, const size_t *argvlen);
/* The same with a deadline (uv_hrtime() nanoseconds, 0 = none): a command
 * still waiting in notifd's queue at its deadline is never sent and fails
 * (callback with NULL), and after a lost connection it is sent again only
 * before its deadline. A command without one gets redis.timeout_ms from the
 * moment the connection was lost. */
int store_command_until(store_t *st, uint64_t deadline_ns, store_reply_fn fn, void *privdata,
                        int argc, const char **argv, const size_t *argvlen);
int store_eval_until(store_t *st, uint64_t deadline_ns, int script, store_reply_fn fn,
                     void *privdata, int nkeys, int nargs, const char **argv,
                     const size_t *argvlen);

/* True while more than half of redis.max_queued commands wait in notifd:
 * producers should not be read. `fn` runs (on the loop) when the queue is
 * back down to a quarter. */
bool store_congested(const store_t *st);
/* True while redis.max_queued commands wait: new ones are refused. */
bool store_queue_full(const store_t *st);
/* Whether n more commands would all be accepted now (the store is ready
 * and the window and the queue have room for them): a caller that sends a
 * group of commands checks first, so that a full queue never cuts a group
 * in two. */
bool store_room(const store_t *st, int n);
void store_set_drain_observer(store_t *st, void (*fn)(void *arg), void *arg);

/* Commands sent so far: the position of the last one in the connection's
 * command stream. Redis runs one connection's commands in order, so a
 * command sent at position p sees the effects of every command before p. */
uint64_t store_position(const store_t *st);

store_state_t store_state(const store_t *st);
const char *store_state_name(store_state_t s);
/* Last connection error ("" if none), for health and logs. */
const char *store_last_error(const store_t *st);
const store_counters_t *store_counters(const store_t *st);

/* Commands accepted and not yet answered (in flight and queued); safe to call from any thread (the
 * planner thread uses it to give way to the fast path). */
int64_t store_waiting(const store_t *st);
/* When the last command was sent: the loop's uv_now() (CLOCK_MONOTONIC in
 * milliseconds, at most a few ms behind), 0 before the first; safe to call
 * from any thread (the planner tells from it whether the fast path has been
 * busy lately). */
uint64_t store_last_sent_ms(const store_t *st);
/* Observer for round-trip times (histograms live in metrics). */
void store_set_rtt_observer(store_t *st, void (*fn)(void *arg, double seconds), void *arg);

/* Client-side caching (redis.tracking), in OPTIN mode. While the epoch is
 * not 0, a read that follows the command CLIENT CACHING yes (sent as its
 * own command, just before) is tracked: the next change another connection
 * makes to a key it read is reported through fn(arg, key, len), once (read
 * it again to hear of later ones). This connection's own writes are not
 * reported (NOLOOP); fn(arg, NULL, 0) means "everything": a FLUSHALL, or
 * tracking was lost. The epoch changes each time tracking is established
 * again, so a caller can tell whether a reply it holds came from a read
 * Redis still tracks: one sent while the epoch it has now was in force. */
typedef void (*store_invalidate_fn)(void *arg, const char *key, size_t len);
void store_set_invalidation_handler(store_t *st, store_invalidate_fn fn, void *arg);
uint64_t store_tracking_epoch(const store_t *st);

/* Fails all pending commands (callbacks with NULL), closes the connection and
 * frees the store once libuv has closed its handles. */
void store_close(store_t *st);

#endif
