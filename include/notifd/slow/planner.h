/*
 * planner.h - the slow policy's worker: a thread with its own Redis
 * connection that replans every member whose plan is due.
 *
 * The worker never runs on the loop thread and the loop never waits for it.
 * Every planner.poll_s (and once at start) it runs a pass "as of now" when
 * planner.enabled; the planner_run op asks for one pass as of a given time
 * and is answered when that pass is over. A pass walks the schedule
 * partitions (schedule.h), claims each with a Redis lease so a fleet of
 * notifd instances shares the work, and replans, in pipelined batches, the
 * members of a partition whose phase came round since its last pass
 * (cadence.h) and those that joined or lost their plan meanwhile: read
 * features and plan, compute (slow_plan_member, pure), write each plan in
 * one command. docs/planner.md has the whole story (cadence, leases, TTLs,
 * errors, reload, stop).
 *
 * Thread rules: planner_start, planner_request_pass and planner_stop are
 * called on the loop thread; completion callbacks run on the loop thread
 * (handed over with a uv_async_t). The worker reads the config only through
 * app_config_acquire(), once per pass, so a reload applies from the next
 * pass on and never in the middle of one.
 *
 * The plan-write script and its argument layout are shared with the replan
 * op (planner_ops.c), so a plan written by either path is the same hash.
 */
#ifndef NOTIFD_PLANNER_H
#define NOTIFD_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/app.h"
#include "notifd/core/features.h"
#include "notifd/core/policy_config.h"
#include "notifd/core/types.h"

typedef struct planner planner_t;

/* What one pass did. */
typedef struct planner_result {
    uint64_t planned;          /* plans written */
    uint64_t kept;             /* read, but the stored plan is recent and in force */
    uint64_t failed;           /* members whose plan could not be written */
    uint64_t removed;          /* members dropped from the schedule: no features */
    uint64_t chunks;           /* chunk queries of the walks */
    uint64_t chunks_small;     /* ... made in small steps: the fast path was busy */
    int partitions_done;       /* partitions with work this instance walked */
    int partitions_skipped;    /* with work, but leased by another instance */
    int partitions_failed;     /* with work, but a key of theirs is broken (a
                                  key of the wrong type, an error reply): left
                                  for the next pass, the others go on */
    double seconds;
    bool aborted;              /* stopped early: notifd is stopping */
    char error[160];           /* "" or why the pass could not complete (Redis) */
} planner_result_t;

/* Called on the loop thread, exactly once per request. */
typedef void (*planner_done_fn)(const planner_result_t *result, void *arg);

/* Starts the worker thread (loop thread, from policy_start). NULL on error. */
planner_t *planner_start(app_t *app);

/* Queues one pass as of `as_of` (unix seconds): all partitions, everything
 * due up to as_of. Passes run one at a time, in request order, after any pass that
 * is running. `fn` runs later on the loop thread, never synchronously.
 * Returns 0, or -1 (fn not called) when the worker is stopping. */
int planner_request_pass(planner_t *pl, int64_t as_of, planner_done_fn fn, void *arg);

/* Stops the worker: the running pass ends between two batches, waiting
 * requests are answered with `aborted`, the thread is joined, and the
 * handles are closed (the planner is freed by their close callbacks). */
void planner_stop(planner_t *pl);

/* ---- the plan write, shared with the replan op --------------------------- */

/*
 * The plan-write script: one command that replaces a member's plan hash.
 * KEYS[1] plan key; ARGV[1] version to write (the script writes stored + 1
 * instead if the stored version is already >= it, so versions never repeat
 * even when two writers race), ARGV[2] TTL in seconds, ARGV[3..] field/value
 * pairs. DEL then HSET inside one script: never half a plan, and no stale
 * <channel>_per_week from an older grid. Returns the version written.
 */
extern const char planner_script_plan_write[];

/* 3 leading arguments; pairs: 6 fixed fields and a spare, propensity,
 * neighbours and gaps, and per channel <ch>_per_week and greedy_<ch>. */
#define PLANNER_WRITE_MAX_ARGS (3 + 2 * (10 + 2 * NOTIFD_MAX_CHANNELS))

/* Arguments of one plan write (after EVALSHA sha numkeys), argv form. */
typedef struct planner_write_args {
    int argc;                  /* key + ARGV */
    const char *argv[PLANNER_WRITE_MAX_ARGS];
    size_t lens[PLANNER_WRITE_MAX_ARGS];
    char text[1536];           /* the formatted numbers and names argv points into */
} planner_write_args_t;

/* valid_until of the member's plan computed at `computed_at`: until its
 * phase comes round again (cadence_valid_until), at least one interval,
 * plus planner.jitter of an interval as grace for a late pass. */
int64_t planner_valid_until(const config_t *cfg, const char *member, size_t member_len,
                            int64_t computed_at);

/* How long the plan hash must live at least: until valid_until plus one
 * more interval, so the next cadence still finds the previous version to
 * count on. */
int64_t planner_plan_ttl_s(const config_t *cfg, int64_t computed_at, int64_t valid_until);

/* The TTL a plan write sets when it sets one: planner_plan_ttl_s plus
 * PLANNER_TTL_AHEAD intervals, so the next passes find the TTL long
 * enough and leave it (planner_ttl_long_enough): an EXPIRE every third
 * pass instead of every pass. */
#define PLANNER_TTL_AHEAD 2
int64_t planner_plan_ttl_set_s(const config_t *cfg, int64_t computed_at, int64_t valid_until);

/* Whether a stored plan whose `expires_at` field (wall-clock unix s, written
 * with its last TTL) says it lives until then still lives long enough for
 * a new plan (computed_at, valid_until) written at wall-clock `now`. */
bool planner_ttl_long_enough(const config_t *cfg, int64_t expires_at, int64_t computed_at,
                             int64_t valid_until, int64_t now);

/* Plans one member as of `as_of` with its slow parameters `slow` (its
 * arm's or the base): slow_plan_member_explore() with the member's
 * exploration draws (plan_explore_draws, seeded by the config seed), so the
 * planner pass and the replan op plan alike. Fills action, per_week and,
 * when slow->explore_prob > 0, the exploration fields. Returns the action
 * index, or -1 if the grid is empty. */
int planner_plan_member(const config_t *cfg, const slow_config_t *slow, const char *member,
                        size_t member_len, const member_features_t *features, int64_t as_of,
                        plan_t *out);

/* Fills `out` for `plan` (action, per_week, computed_at, valid_until,
 * version and arm set by the caller; source is written as "planner"; arm
 * only when not empty; propensity, neighbours, gaps and greedy_<ch> (where the
 * greedy value differs) only for a drawn plan; expires_at only when not 0: the write sets the TTL
 * ttl_s, which runs out then). `key` and `plan` must outlive the use of
 * `out`. */
void planner_write_args_build(planner_write_args_t *out, const config_t *cfg, const char *key,
                              size_t key_len, const plan_t *plan, int64_t ttl_s,
                              int64_t expires_at);

#endif
