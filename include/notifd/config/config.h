/*
 * config.h - the validated, immutable configuration snapshot.
 *
 * A config file (JSON) is parsed once into a config_t; the rest of the code
 * trusts it. Every problem is reported with its key path ("redis.port: must
 * be an integer in 1..65535") and loading fails if there is any, so a typo
 * never passes silently.
 *
 * Invariants: a loaded config_t is never modified. It is reference-counted:
 * the server holds the current snapshot, each request takes a reference for
 * its whole life, and SIGHUP swaps in a new snapshot (config_swap), so a
 * reload never changes a decision half-way. Acquire/release are thread-safe
 * (the planner thread holds snapshots too).
 */
#ifndef NOTIFD_CONFIG_H
#define NOTIFD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/policy_config.h"
#include "notifd/core/types.h"

#define CONFIG_HOST_MAX 256
#define CONFIG_PATH_MAX 512
#define CONFIG_PREFIX_MAX 64
#define CONFIG_URL_MAX 1024

typedef struct config_endpoint {
    char host[CONFIG_HOST_MAX]; /* numeric or name; IPv6 without brackets */
    int port;
} config_endpoint_t;

typedef struct config_redis {
    char host[CONFIG_HOST_MAX];
    int port;
    char unix_path[108];            /* "" unless redis.unix is set */
    char prefix[CONFIG_PREFIX_MAX];
    char password_file[CONFIG_PATH_MAX];
    char *password;                 /* read from password_file; NULL if none */
    int timeout_ms;                 /* no reply this long while commands are out: Redis is down */
    int connect_timeout_ms;
    int max_in_flight;              /* commands written and not yet answered */
    int max_queued;                 /* commands waiting in notifd for the window */
    int probe_interval_ms;          /* PING an idle connection this often; 0 = never */
    bool tracking;                  /* client-side caching: CLIENT TRACKING on a second connection */
    int reconnect_min_ms;           /* backoff starts here, doubles ... */
    int reconnect_max_ms;           /* ... up to here */
} config_redis_t;

typedef struct config_limits {
    size_t max_line_bytes;          /* longer request lines get line_too_long */
    int max_connections;
    size_t max_output_bytes;        /* per connection, before reading pauses */
    int max_pipeline;               /* unanswered requests per connection before reading pauses */
    int idle_timeout_s;             /* 0 disables */
    int max_candidates;
    int64_t ts_window_s;            /* a request's ts within this of the wall clock; 0: any */
    int admin_max_connections;      /* admin endpoint, in all and per client address */
    int admin_idle_timeout_s;       /* admin connections silent this long are closed */
} config_limits_t;

/* Global rate limits (limits.global, limits.on_error, limits.shadow): per
 * channel and per candidate tag, a rate and a burst, enforced across every
 * instance by a GCRA in Redis inside the record script (decide_record.lua,
 * README "Global rate limits"). */
#define CONFIG_LIMIT_TAGS_MAX 32     /* distinct tag names over all channels */
#define CONFIG_LIMIT_TAG_MAX 64      /* a tag name's bytes, with the NUL */
/* Limiters one send can meet: its channel's and its message's tags'. */
#define CONFIG_LIMITERS_MAX (1 + CONFIG_LIMIT_TAGS_MAX)

typedef struct config_rate_limit {
    bool set;
    double per_second;              /* > 0 */
    int64_t burst;                  /* sends that may go at once after idle, >= 1 */
    bool shadow;                    /* counted, not enforced */
} config_rate_limit_t;

typedef struct config_global_limits {
    bool any;                       /* some limit is set */
    bool fail_closed;               /* limits.on_error: "closed" (default "open") */
    /* [c][0] is channel c's own limit, [c][1 + t] tag t's on channel c. */
    config_rate_limit_t limit[NOTIFD_MAX_CHANNELS][1 + CONFIG_LIMIT_TAGS_MAX];
    int n_tags;
    char tags[CONFIG_LIMIT_TAGS_MAX][CONFIG_LIMIT_TAG_MAX];
    size_t tag_lens[CONFIG_LIMIT_TAGS_MAX];
} config_global_limits_t;

/* The bit of the limited tag `name` (config_global_limits_t.tags), or 0
 * when no limit names it: a candidate's "tags" become a mask of these. */
uint32_t config_limit_tag_bit(const config_global_limits_t *g, const char *name, size_t len);

typedef struct config_planner {
    int64_t interval_s;
    int batch_size;                 /* members per pipelined read/write batch */
    int lease_ms;
    double jitter_frac;             /* valid_until jitter as a fraction of interval */
    bool enabled;                   /* run the timer (ops replan/planner_run work regardless) */
    int poll_s;                     /* how often the worker looks for due members */
    int max_members_per_s;          /* pass rate cap, 0 = as fast as Redis goes */
    int nice;                       /* the worker thread's nice value, 0..19 */
} config_planner_t;

typedef struct config_events {
    char url[CONFIG_URL_MAX];       /* "" = events disabled */
    char spool_dir[CONFIG_PATH_MAX];
    int batch_max;
    int flush_ms;
    int timeout_ms;
    int queue_max;                  /* most events in memory ... */
    int64_t queue_max_bytes;        /* ... and most bytes of them */
    int64_t spool_max_bytes;
    int fsync;                      /* 0 never, 1 per batch */
    int retry_min_ms;               /* delivery retry backoff starts here, doubles ... */
    int retry_max_ms;               /* ... up to here */
} config_events_t;

/* Feedback accepted while Redis cannot take it (docs/feedback-queue.md). */
typedef struct config_feedback {
    char spool_dir[CONFIG_PATH_MAX];
    int queue_max;                  /* most queued events in memory */
    int64_t spool_max_bytes;        /* 0: memory only */
    int64_t live_id_ttl_s;          /* ids for live events without one; 0: none */
} config_feedback_t;

typedef struct config {
    atomic_int refs;
    uint64_t generation;            /* 1 for the first load, +1 per reload */
    char path[CONFIG_PATH_MAX];

    config_endpoint_t listen;
    bool admin_enabled;
    config_endpoint_t admin_listen;
    config_redis_t redis;
    char auth_token_file[CONFIG_PATH_MAX];
    char *auth_token;               /* NULL: no authentication */
    config_planner_t planner;
    config_events_t events;
    config_feedback_t feedback;
    config_limits_t limits;
    config_global_limits_t rate_limits; /* limits.global, limits.on_error, limits.shadow */
    int log_level;                  /* log_level_t */
    int log_sample_every;           /* log one request in N at debug level; 0 = none */
    uint64_t seed;                  /* seeds decision coins with member and opportunity */
    int shutdown_grace_s;

    int n_channels;
    char channels[NOTIFD_MAX_CHANNELS][NOTIFD_CHANNEL_NAME_MAX];

    policy_config_t policy;         /* fast.*, slow.*, features.*, experiments */
} config_t;

/* A list of problems found while loading, each "path: message". */
typedef struct config_errors {
    char **items;
    size_t count;
    size_t cap;
} config_errors_t;

void config_errors_init(config_errors_t *errs);
void config_errors_free(config_errors_t *errs);
void config_errors_add(config_errors_t *errs, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Loads and validates a file. Returns a snapshot with one reference, or NULL
 * with every problem in `errs`. `generation` is stamped into the result. */
config_t *config_load_file(const char *path, uint64_t generation, config_errors_t *errs);

/* Same, from a JSON text. Relative paths in any config (password_file,
 * auth_token_file, spool_dir) are relative to the working directory, which
 * systemd sets with WorkingDirectory=. */
config_t *config_load_string(const char *json_text, uint64_t generation,
                             config_errors_t *errs);

config_t *config_acquire(config_t *cfg);
void config_release(config_t *cfg);

/* Index of a configured channel by name, or -1. */
int config_channel_index(const config_t *cfg, const char *name, size_t len);

/* "host:port" or "[v6]:port" into an endpoint; returns false with a reason. */
bool config_parse_endpoint(const char *text, config_endpoint_t *out, const char **why);

#endif
