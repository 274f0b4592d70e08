/*
 * store.h - the fast path's Redis connection: hiredis async on the libuv loop.
 *
 * One connection per process, pipelined: every request's commands go down
 * the same socket and replies come back in order. What hiredis 0.14 does not
 * do, this module adds:
 *   - reconnect with capped exponential backoff (and jitter), always with a
 *     fresh context;
 *   - per-command timeouts: a timer watches the oldest unanswered command;
 *     past redis.timeout_ms the context is freed, which fails every pending
 *     command at once (callback with reply NULL), and a reconnect follows;
 *   - a handshake (AUTH, SELECT-free, SCRIPT LOAD of registered scripts)
 *     before the store reports READY;
 *   - EVALSHA that falls back to EVAL when Redis lost its script cache.
 *
 * Callbacks always run on the loop thread and always exactly once: with the
 * reply, or with NULL on error, timeout or disconnect. An error reply
 * (REDIS_REPLY_ERROR) is passed through as a reply. store_command() never
 * calls the callback synchronously: when the store is not ready it returns
 * -1 and the caller answers at once (decisions degrade, they never queue
 * behind a dead Redis).
 */
#ifndef NOTIFD_STORE_H
#define NOTIFD_STORE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/config.h"

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
    uint64_t timeouts;      /* contexts dropped because a command was too slow */
    uint64_t disconnects;
    uint64_t reconnects;    /* successful handshakes after the first */
    uint64_t rejected;      /* commands refused because the store was not ready */
    uint64_t rtt_us_sum;    /* round-trip time of answered commands */
    int64_t pending;
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

/* Commands sent so far: the position of the last one in the connection's
 * command stream. Redis runs one connection's commands in order, so a
 * command sent at position p sees the effects of every command before p. */
uint64_t store_position(const store_t *st);

store_state_t store_state(const store_t *st);
const char *store_state_name(store_state_t s);
/* Last connection error ("" if none), for health and logs. */
const char *store_last_error(const store_t *st);
const store_counters_t *store_counters(const store_t *st);

/* Commands sent and not yet answered; safe to call from any thread (the
 * planner thread uses it to give way to the fast path). */
int64_t store_waiting(const store_t *st);
/* When the last command was sent: the loop's uv_now() (CLOCK_MONOTONIC in
 * milliseconds, at most a few ms behind), 0 before the first; safe to call
 * from any thread (the planner tells from it whether the fast path has been
 * busy lately). */
uint64_t store_last_sent_ms(const store_t *st);
/* Observer for round-trip times (histograms live in metrics). */
void store_set_rtt_observer(store_t *st, void (*fn)(void *arg, double seconds), void *arg);

/* Fails all pending commands (callbacks with NULL), closes the connection and
 * frees the store once libuv has closed its handles. */
void store_close(store_t *st);

#endif
