/*
 * sim.h - notifd-sim's modules and the types they share.
 *
 * notifd-sim drives a real notifd (and a real redis-server it starts) over
 * TCP in virtual time: a synthetic population whose responses come from a
 * hidden ground truth (sim_model.c) asks notifd to decide on every
 * opportunity and reports what each member does with what was sent
 * (sim_driver.c), through pipelined connections (sim_net.c) to processes it
 * starts (sim_proc.c); sim_main.c runs the hierarchical policy and the
 * calibrated threshold baseline (or a sweep of one config key, or the
 * frontier of both over slow.message_cost) and
 * sim_report.c prints the tables, the CSV and the plot.
 *
 * Invariants:
 * - All randomness of the population comes from per-member generators seeded
 *   from (--seed, member index) and from stable hashes, never from the order
 *   in which replies arrive, so a run is reproducible bit for bit.
 * - A member's requests are strictly ordered: all on one connection, and the
 *   next decide is sent only after the previous decide's reply was read (so
 *   notifd's weekly counters and features are exactly as a real producer
 *   would leave them).
 */
#ifndef NOTIFD_SIM_H
#define NOTIFD_SIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/lib/rng.h"

#define SIM_MAX_CHANNELS 3
#define SIM_MAX_COHORTS 3
#define SIM_MAX_CANDIDATES 16
#define SIM_RING 32            /* deliveries remembered per channel (7-day volume) */
#define SIM_DAY 86400
#define SIM_WEEK (7 * SIM_DAY)
/* Monday 2025-01-06 00:00 UTC: virtual time starts at a week boundary. */
#define SIM_T0 1736121600LL

/* ------------------------------------------------------------------ */
/* The hidden model (sim_model.c)                                      */

typedef enum { CH_PUSH, CH_EMAIL, CH_IN_APP } sim_channel_t;

typedef struct cohort_def {
    const char *name;
    double visit_rate;      /* organic visits per day (member median) */
    double open[SIM_MAX_CHANNELS]; /* P(open) of an average message to a rested member */
    double visit_per_open;  /* P(a visit follows an open within the hour) */
    double fatigue;         /* phi: P(open) is multiplied by exp(-phi * F) */
    double tolerance;       /* messages per week on a channel before opt-out risk rises */
} cohort_def_t;

typedef struct channel_def {
    const char *name;
    double opportunities;   /* per day (member mean) */
    double dismiss;         /* P(dismiss | not opened) of a rested member */
    double unsub;           /* P(opt out) per message within tolerance */
    double react_delay_s;   /* mean delay of an open or dismiss */
    double fatigue_weight;  /* how much one message adds to F */
} channel_def_t;

extern const cohort_def_t sim_cohorts[SIM_MAX_COHORTS];
extern const channel_def_t sim_channel_defs[SIM_MAX_CHANNELS];

/* Global constants of the ground truth, documented in docs/simulation.md. */
#define SIM_FATIGUE_MEAN_LIFE_S (5.0 * SIM_DAY) /* F decays as e^(-t/5 days) */
#define SIM_OPTOUT_SLOPE 0.01    /* extra hazard per unit of relative excess volume */
/* The second member model (--model recovering): fatigue and the opt-out
 * load recover with this mean life instead of 5 days and a 7-day window,
 * and responsiveness drifts week by week. */
#define SIM_RECOVERY_MEAN_LIFE_S (2.0 * SIM_DAY)
#define SIM_DRIFT_SD 0.15        /* sd of the weekly log-step of responsiveness */

typedef enum sim_model {
    SIM_MODEL_WINDOW = 0,     /* fatigue mean life 5 days, opt-outs by the last 7 days */
    SIM_MODEL_RECOVERING = 1, /* recovery in a few days, drifting responsiveness */
} sim_model_t;
#define SIM_PULL_FORWARD_S SIM_DAY /* a caused visit replaces an organic one this close */
#define SIM_CLICK_GIVEN_OPEN 0.4
#define SIM_SCORE_NOISE 0.6      /* sd of the score's error, in logits */
#define SIM_APPEAL_SD 0.5        /* item appeal, in logs of relevance */
#define SIM_AFFINITY_SD 0.7      /* member-item affinity, in logs of relevance */
#define SIM_ITEMS_PER_DAY 40
#define SIM_FRESH_DAYS 14
#define SIM_MEMBER_SD 0.35       /* member spread around the cohort median (log scale) */

typedef enum {
    EV_DECIDE, EV_DELIVERED, EV_OPEN, EV_CLICK, EV_DISMISS, EV_UNSUB, EV_VISIT_CAUSED,
} sim_event_type_t;

typedef struct sim_event {
    int64_t ts;
    uint8_t type;
    int8_t channel;
    int32_t item;           /* message (catalog item), -1 none */
    uint32_t seq;           /* per-member counter: stable ordering of equal times */
    uint32_t opp;           /* the member's opportunity number (decides) */
} sim_event_t;

/* Outcome counts of one member over the measured weeks. */
typedef struct sim_counts {
    uint32_t opportunities[SIM_MAX_CHANNELS]; /* decides asked */
    uint32_t sends[SIM_MAX_CHANNELS];
    uint32_t opens, clicks, dismisses, visits, visits_caused;
    uint32_t unsubs;                          /* channel opt-outs */
    bool opted_out;                           /* of any channel */
    double plan_sum[SIM_MAX_CHANNELS];        /* planned per_week seen in decide replies */
    uint32_t plan_n[SIM_MAX_CHANNELS];
    /* The hard cap, one member at a time (cohort means cannot see one
     * member's breach): the most sends in one calendar week (member-local)
     * and in any 7 days, and the sends that went past the cap of the plan
     * in force (sim_run_params_t.cap_factor). */
    uint32_t max_week[SIM_MAX_CHANNELS], max_7d[SIM_MAX_CHANNELS];
    uint32_t over_cap[SIM_MAX_CHANNELS];
} sim_counts_t;

typedef struct sim_member {
    uint32_t idx;
    uint8_t cohort;
    uint8_t model;           /* sim_model_t */
    int16_t tz_offset_min;
    bool tz_sent;
    /* hidden, fixed */
    double visit_rate, visit_per_open, phi, tolerance;
    double open_base[SIM_MAX_CHANNELS];
    double opp_rate[SIM_MAX_CHANNELS];
    /* Hidden, evolving. Separate streams so that both policies face the
     * same opportunities, candidates, score noise and organic visits, and
     * the same message at the same opportunity meets the same draws
     * (common random numbers: differences between runs are the policies'). */
    rng_t rng_visits;        /* organic visit times */
    rng_t rng_opps;          /* opportunity counts and times */
    uint32_t opp_seq;        /* opportunities generated so far */
    double fatigue;          /* F as of fatigue_ts */
    int64_t fatigue_ts;
    int64_t delivered[SIM_MAX_CHANNELS][SIM_RING];
    uint8_t delivered_head[SIM_MAX_CHANNELS];
    bool unsub[SIM_MAX_CHANNELS];
    int64_t next_organic;
    uint32_t seq;
    /* pending events (sorted by ts, then seq) */
    sim_event_t *queue;
    int queue_len, queue_cap;
    /* the decide in flight */
    bool decide_pending;
    sim_event_t decide;
    int n_cand;
    int32_t cand_item[SIM_MAX_CANDIDATES];
    double cand_p[SIM_MAX_CANDIDATES];
    int reply_item;          /* -1: no send; -2: no reply (error) */
    double reply_plan;       /* the reply's plan per_week for the channel, -1: none */
    int reply_reason;
    sim_counts_t counts;
} sim_member_t;

typedef struct sim_population_params {
    int members;
    double mix[SIM_MAX_COHORTS];
    int n_channels;
    sim_channel_t channel[SIM_MAX_CHANNELS];
    int candidates;
    uint64_t seed;
    sim_model_t model;
} sim_population_params_t;

sim_member_t *sim_population_create(const sim_population_params_t *pp);
void sim_population_free(sim_member_t *m, int n);
/* Item appeal (log scale), stable in (seed, item). */
double sim_item_appeal(uint64_t seed, int32_t item);
/* True P(open) of `item` sent to `m` on channel slot `c` at time t. */
double sim_open_probability(const sim_member_t *m, uint64_t seed, int c, int32_t item,
                            int64_t t);
/* Fatigue stock at t (decayed from fatigue_ts). */
double sim_fatigue_at(const sim_member_t *m, int64_t t);
/* The generator of one opportunity's draws (purpose 0: candidates and
 * scores, 1: the member's reaction), stable in (seed, member, opportunity). */
void sim_opportunity_rng(rng_t *r, uint64_t seed, const sim_member_t *m, uint32_t opp,
                         uint32_t purpose);
double sim_unit(rng_t *r);
double sim_normal(rng_t *r);
double sim_exponential(rng_t *r, double mean);
int sim_poisson(rng_t *r, double mean);
int sim_cohort_parse(const char *name);

/* ------------------------------------------------------------------ */
/* Pipelined connections (sim_net.c)                                   */

typedef struct sim_net sim_net_t;
/* Called for each reply line, in each connection's request order. */
typedef void (*sim_reply_fn)(void *arg, uint32_t tag, const char *line, size_t len);

sim_net_t *sim_net_open(int port, int connections, char *err, size_t errlen);
void sim_net_close(sim_net_t *n);
int sim_net_connections(const sim_net_t *n);
/* Appends one request line (without its newline) to connection `conn`. */
void sim_net_push(sim_net_t *n, int conn, uint32_t tag, const char *line, size_t len);
/* Sends everything pushed and reads every reply; -1 on a lost connection. */
int sim_net_exchange(sim_net_t *n, sim_reply_fn fn, void *arg, char *err, size_t errlen);
/* One request, one reply (on connection 0); returns the parsed reply or NULL. */
json_t *sim_net_request(sim_net_t *n, const char *line, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Processes (sim_proc.c)                                              */

typedef struct sim_stack {
    char dir[256];
    int redis_port, notifd_port;
    int redis_pid, notifd_pid;
} sim_stack_t;

/* Starts a fresh redis-server and a notifd on `config` (listen and redis
 * fields are filled in here). */
int sim_stack_start(sim_stack_t *s, const char *notifd_bin, const char *redis_bin,
                    json_t *config, char *err, size_t errlen);
void sim_stack_stop(sim_stack_t *s, bool keep_dir);
/* Sets a dotted key ("slow.message_cost") in a config object; the value is
 * JSON if it parses as JSON, else a string. */
int sim_config_set(json_t *config, const char *key, const char *value, char *err,
                   size_t errlen);
void sim_proc_install_cleanup(void);

/* ------------------------------------------------------------------ */
/* One simulated run (sim_driver.c)                                    */

typedef struct sim_run_params {
    int weeks, warmup_weeks;
    int connections;
    bool planner;            /* planner_run at each week start */
    bool verbose;
    const char *dump_path;   /* see sim_dump_members() */
    int dump_every;
    int redis_port;
    /* The run's fast.cap_factor and fast.rolling_cap, to check each send
     * against the cap of the plan in force (cap_factor 0: no check). */
    double cap_factor;
    bool rolling_cap;
    double rolling_cap_factor;      /* the 7-day cap: ceil(plan x this), >= the weekly cap */
    int rolling_cap_min_slack;      /* ... and at least this above it, for a plan above 0 */
} sim_run_params_t;

/* Aggregates of one cohort (index SIM_MAX_COHORTS = everyone). */
typedef struct sim_cohort_result {
    int members;
    double member_weeks;
    double opportunities, sends, sends_ch[SIM_MAX_CHANNELS];
    double opens, clicks, dismisses, visits, visits_caused, unsubs, opted_out;
    double plan_sum[SIM_MAX_CHANNELS], plan_n[SIM_MAX_CHANNELS]; /* hierarchical only */
    /* Of any one member (sim_counts_t): maxima, and the sum of over_cap. */
    double max_week[SIM_MAX_CHANNELS], max_7d[SIM_MAX_CHANNELS], over_cap[SIM_MAX_CHANNELS];
} sim_cohort_result_t;

typedef struct sim_result {
    char label[64];
    char mode[16];
    char param_key[64];
    double param_value;
    double target_send_rate;   /* threshold runs */
    int n_channels;
    char channel[SIM_MAX_CHANNELS][8];
    int measured_weeks;
    sim_cohort_result_t cohort[SIM_MAX_COHORTS + 1];
    uint64_t decides, feedbacks, errors, degraded;
    double seconds;
} sim_result_t;

/* dump_path: at the end, every dump_every-th member's feature and plan
 * hashes (read straight from Redis on redis_port) and hidden parameters, one
 * JSON object per line; a diagnostic for "why did the policy do that". */
int sim_run(sim_net_t *net, const sim_population_params_t *pp, const sim_run_params_t *rp,
            sim_result_t *out, char *err, size_t errlen);
int sim_dump_members(const sim_member_t *ms, const sim_population_params_t *pp, int redis_port,
                     const char *path, int every, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Output (sim_report.c)                                               */

double sim_per_member_week(const sim_cohort_result_t *c, double x);
void sim_report_compare(FILE *f, const sim_result_t *a, const sim_result_t *b);
void sim_report_sweep(FILE *f, const sim_result_t *runs, int n);
/* Linear interpolation of y at x through the points (xs[i], ys[i]), taken
 * in order of x whatever their order in the arrays; NaN when x lies outside
 * [min xs, max xs] (a comparison with measured runs, never an
 * extrapolation). Pure: no state, no output. */
double sim_interpolate(const double *xs, const double *ys, int n, double x);
/* For each hierarchical run of a (a slow.message_cost sweep), per cohort:
 * its sends and visits per member-week, the baseline's visits interpolated
 * at that volume on the threshold runs b, the difference, and whether
 * overall it is at least the baseline. */
void sim_report_frontier(FILE *f, const sim_result_t *a, int na, const sim_result_t *b, int nb);
int sim_report_csv(const char *path, const sim_result_t *runs, int n, char *err, size_t errlen);
typedef enum sim_plot_kind {
    SIM_PLOT_COMPARE,   /* (a) and the calibrated (b) */
    SIM_PLOT_SWEEP,     /* one mode over a config key */
    SIM_PLOT_FRONTIER,  /* both modes' frontiers in every panel */
} sim_plot_kind_t;
int sim_report_plot(const char *path, const sim_result_t *runs, int n, sim_plot_kind_t kind,
                    char *err, size_t errlen);

#endif
