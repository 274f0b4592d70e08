/*
 * notifd-sim - a member simulator that measures notifd's policies end to end.
 *
 * It starts its own redis-server and notifd for every run (sim_proc.c),
 * plays a synthetic population with a hidden ground truth (sim_model.c)
 * against notifd in virtual time (sim_driver.c), and reports per cohort what
 * the policy achieved: sends, opens, visits (the long-term engagement
 * metric) and opt-outs per member per week (sim_report.c).
 *
 * Modes:
 *   compare (default)  (a) the hierarchical slow/fast policy, then (b) the
 *                      threshold baseline with fast.threshold.target_send_rate
 *                      calibrated so that (b)'s realised volume is within
 *                      --tolerance (2%) of (a)'s: start from (a)'s sends per
 *                      opportunity, rerun (b) scaling the rate by the volume
 *                      ratio until it is close enough. Prints the per-cohort
 *                      table with the lift of (a) over (b).
 *   --sweep KEY=a:b:step  one run per value of a config key (for example
 *                      slow.message_cost), hierarchical unless --mode
 *                      threshold: the volume / engagement / opt-out frontier.
 *   --frontier a:b:step  the hierarchical policy at each slow.message_cost,
 *                      then the threshold baseline at target rates that
 *                      bracket all their volumes; per cost and cohort, the
 *                      baseline's visits interpolated at (a)'s volume, and
 *                      whether overall (a) is at least the baseline.
 *   --mode hierarchical|threshold  a single run.
 *
 * Determinism: the population's randomness is the simulator's own, seeded by
 * --seed; notifd is given the same seed and decides deterministically; every
 * run has a fresh Redis and notifd. Hierarchical decisions depend only on
 * the member's own state, so several connections are fine; the threshold
 * baseline's calibrator is shared by all members and updated in the order
 * decides reach it, so threshold runs use one connection, whose order is
 * exactly the simulator's.
 *
 * Exit codes: 0 done, 1 a run failed, 2 bad usage.
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

#define MAX_SETS 32
#define MAX_RUNS 64

typedef struct options {
    sim_population_params_t pop;
    sim_run_params_t run;
    const char *mode;
    const char *notifd_bin;
    const char *redis_bin;
    const char *csv;
    const char *plot;
    const char *sweep;
    const char *frontier;
    const char *sets[MAX_SETS];
    int n_sets;
    double target_rate;
    double tolerance;
    int max_calibration;
    bool keep;
} options_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: notifd-sim [options]\n"
            "  --members N          population size (20000)\n"
            "  --weeks W            simulated weeks (12)\n"
            "  --warmup K           first weeks excluded from the results (2)\n"
            "  --seed S             seed of the population and of notifd (1)\n"
            "  --mix C:R:H          cohort shares casual:regular:heavy (0.5:0.35:0.15)\n"
            "  --model M            window (default): fatigue lasts days, opt-outs by the\n"
            "                       last 7 days' volume; recovering: fatigue and opt-out\n"
            "                       load recover within days, responsiveness drifts weekly\n"
            "  --channels LIST      push,email[,in_app] (push,email)\n"
            "  --candidates K       candidates per opportunity (5)\n"
            "  --connections N      connections for hierarchical runs (4; threshold uses 1)\n"
            "  --mode M             compare (default), hierarchical or threshold\n"
            "  --sweep KEY=a:b:step one run per value of a config key, e.g.\n"
            "                       slow.message_cost=0.002:0.05:0.004\n"
            "  --frontier a:b:step  hierarchical runs over slow.message_cost, threshold\n"
            "                       runs bracketing their volumes, and the baseline's\n"
            "                       visits interpolated at each cost's volume\n"
            "  --set KEY=VALUE      config override for every run (repeatable), e.g.\n"
            "                       fast.pacing=quality; VALUE is JSON or a string\n"
            "  --target-rate R      threshold target send rate (compare: first guess)\n"
            "  --tolerance T        volume match for compare (0.02)\n"
            "  --max-calibration N  threshold runs at most (5)\n"
            "  --csv FILE           write every run and cohort as CSV\n"
            "  --plot FILE.png      volume against engagement per cohort (gnuplot)\n"
            "  --notifd BIN         notifd binary (default: $NOTIFD_BIN, else beside notifd-sim)\n"
            "  --redis-server BIN   redis-server binary (redis-server)\n"
            "  --keep               keep each run's directory (config, logs)\n"
            "  --dump FILE          hierarchical runs: write every 10th member's features,\n"
            "                       plan and hidden parameters as JSON lines (diagnostic)\n"
            "  -v, --verbose        progress on stderr\n");
}

static int parse_mix(const char *s, double mix[SIM_MAX_COHORTS])
{
    double a, b, c;
    char tail;
    if (sscanf(s, "%lf:%lf:%lf%c", &a, &b, &c, &tail) != 3 || a < 0 || b < 0 || c < 0 ||
        a + b + c <= 0)
        return -1;
    mix[0] = a;
    mix[1] = b;
    mix[2] = c;
    return 0;
}

static int parse_channels(const char *s, sim_population_params_t *pp)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    pp->n_channels = 0;
    char *save = NULL;
    for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int c = 0; c < SIM_MAX_CHANNELS; c++)
            if (strcmp(p, sim_channel_defs[c].name) == 0)
                found = c;
        if (found < 0 || pp->n_channels >= SIM_MAX_CHANNELS)
            return -1;
        for (int c = 0; c < pp->n_channels; c++)
            if ((int)pp->channel[c] == found)
                return -1;
        pp->channel[pp->n_channels++] = (sim_channel_t)found;
    }
    return pp->n_channels > 0 ? 0 : -1;
}

/* notifd beside this binary (both live in the build directory). */
static const char *default_notifd(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("NOTIFD_BIN");
    if (env != NULL && env[0] != '\0')
        return env;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(path, sizeof path, "%s/notifd", dirname(self));
        if (access(path, X_OK) == 0)
            return path;
    }
    return "notifd";
}

static json_t *base_config(const options_t *o, const char *mode)
{
    json_t *ch = json_array();
    for (int c = 0; c < o->pop.n_channels; c++)
        json_array_append_new(ch, json_string(sim_channel_defs[o->pop.channel[c]].name));
    /* Only what the simulation needs differs from the defaults: the policy
     * itself (fast.*, slow.*) is notifd's default unless --set says so. */
    return json_pack(
        "{s:n,s:s,s:I,s:o,s:{s:s,s:i,s:i},s:{s:b,s:f},s:{s:s,s:i},s:{s:i,s:i}}", "admin_listen",
        "log_level", "warn", "seed", (json_int_t)o->pop.seed, "channels", ch, "redis", "prefix",
        "sim:", "timeout_ms", 30000, "connect_timeout_ms", 5000, "planner", "enabled", 0,
        "jitter", 0.0, "fast", "mode", mode,
        /* The simulator never retries, and idempotency records would
         * otherwise pile up by the million within their (wall-clock) TTL. */
        "idempotency_ttl_s", 120, "limits", "idle_timeout_s", 0,
        /* Virtual time: the simulated weeks are not the wall clock's. */
        "ts_window_s", 0);
}

/* One run on a fresh stack. */
static int run_one(const options_t *o, const char *mode, const char *key, const char *value,
                   double target_rate, const char *label, sim_result_t *out)
{
    char err[4096] = "";
    json_t *cfg = base_config(o, mode);
    for (int i = 0; i < o->n_sets; i++) {
        char k[256];
        const char *eq = strchr(o->sets[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - o->sets[i]), o->sets[i]);
        if (sim_config_set(cfg, k, eq + 1, err, sizeof err) != 0) {
            fprintf(stderr, "notifd-sim: %s\n", err);
            json_decref(cfg);
            return -1;
        }
    }
    if (key != NULL && sim_config_set(cfg, key, value, err, sizeof err) != 0) {
        fprintf(stderr, "notifd-sim: %s\n", err);
        json_decref(cfg);
        return -1;
    }
    bool threshold = strcmp(mode, "threshold") == 0;
    if (threshold && target_rate > 0) {
        char v[32];
        snprintf(v, sizeof v, "%.6f", target_rate);
        sim_config_set(cfg, "fast.threshold.target_send_rate", v, err, sizeof err);
    }
    memset(out, 0, sizeof *out);
    snprintf(out->label, sizeof out->label, "%s", label);
    snprintf(out->mode, sizeof out->mode, "%s", mode);
    snprintf(out->param_key, sizeof out->param_key, "%s", key ? key : "");
    out->param_value = value ? atof(value) : 0.0;
    json_t *th = json_object_get(json_object_get(json_object_get(cfg, "fast"), "threshold"),
                                 "target_send_rate");
    out->target_send_rate = threshold ? (json_is_number(th) ? json_number_value(th) : 0.1) : 0.0;
    /* The cap each send is checked against (notifd's defaults: 1, on, 1.5, 0);
     * the threshold baseline has no plan and so no cap. */
    json_t *fast = json_object_get(cfg, "fast");
    json_t *cf = json_object_get(fast, "cap_factor"), *rcap = json_object_get(fast, "rolling_cap");
    const double cap_factor = json_is_number(cf) ? json_number_value(cf) : 1.0;
    const bool rolling_cap = json_is_boolean(rcap) ? json_is_true(rcap) : true;
    json_t *rf = json_object_get(fast, "rolling_cap_factor");
    const double rolling_cap_factor = json_is_number(rf) ? json_number_value(rf) : 1.5;
    json_t *rs = json_object_get(fast, "rolling_cap_min_slack");
    const int rolling_cap_min_slack = json_is_integer(rs) ? (int)json_integer_value(rs) : 0;

    sim_stack_t stack;
    int rc = sim_stack_start(&stack, o->notifd_bin, o->redis_bin, cfg, err, sizeof err);
    json_decref(cfg);
    if (rc != 0) {
        fprintf(stderr, "notifd-sim: %s\n", err);
        sim_stack_stop(&stack, true);
        return -1;
    }
    sim_run_params_t rp = o->run;
    rp.redis_port = stack.redis_port;
    if (threshold)
        rp.dump_path = NULL;
    rp.planner = !threshold;
    rp.cap_factor = threshold ? 0.0 : cap_factor;
    rp.rolling_cap = rolling_cap;
    rp.rolling_cap_factor = rolling_cap_factor;
    rp.rolling_cap_min_slack = rolling_cap_min_slack;
    rp.connections = threshold ? 1 : o->run.connections;
    sim_net_t *net = sim_net_open(stack.notifd_port, rp.connections, err, sizeof err);
    if (net != NULL)
        rc = sim_run(net, &o->pop, &rp, out, err, sizeof err);
    else
        rc = -1;
    sim_net_close(net);
    if (rc == 0 && out->degraded > 0) {
        snprintf(err, sizeof err,
                 "%llu decisions were degraded (notifd lost Redis): the run does not measure "
                 "the policy",
                 (unsigned long long)out->degraded);
        rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "notifd-sim: run %s failed: %s (files kept in %s)\n", label, err,
                stack.dir);
    sim_stack_stop(&stack, o->keep || rc != 0);
    if (rc == 0) {
        const sim_cohort_result_t *all = &out->cohort[SIM_MAX_COHORTS];
        fprintf(stderr,
                "notifd-sim: run %-14s %-12s sends/member/week %.4f visits %.4f  "
                "(%llu decides, %llu feedback, %.1f s)%s%s\n",
                label, mode, sim_per_member_week(all, all->sends),
                sim_per_member_week(all, all->visits), (unsigned long long)out->decides,
                (unsigned long long)out->feedbacks, out->seconds, o->keep ? " kept " : "",
                o->keep ? stack.dir : "");
    }
    return rc;
}

static double overall_sends(const sim_result_t *r)
{
    return sim_per_member_week(&r->cohort[SIM_MAX_COHORTS], r->cohort[SIM_MAX_COHORTS].sends);
}

static double overall_rate(const sim_result_t *r)
{
    const sim_cohort_result_t *c = &r->cohort[SIM_MAX_COHORTS];
    return c->opportunities > 0 ? c->sends / c->opportunities : 0.0;
}

static void print_header(const options_t *o, FILE *f)
{
    int counts[SIM_MAX_COHORTS] = {0};
    double total = o->pop.mix[0] + o->pop.mix[1] + o->pop.mix[2];
    for (int i = 0; i < o->pop.members; i++) {
        double pos = ((double)i + 0.5) / o->pop.members * total, acc = 0;
        int k = SIM_MAX_COHORTS - 1;
        for (int j = 0; j < SIM_MAX_COHORTS; j++) {
            acc += o->pop.mix[j];
            if (pos < acc) {
                k = j;
                break;
            }
        }
        counts[k]++;
    }
    fprintf(f, "notifd-sim: %d members (casual %d, regular %d, heavy %d), %d weeks (%d warm-up), "
               "seed %llu, channels",
            o->pop.members, counts[0], counts[1], counts[2], o->run.weeks, o->run.warmup_weeks,
            (unsigned long long)o->pop.seed);
    for (int c = 0; c < o->pop.n_channels; c++)
        fprintf(f, "%s%s", c ? "," : " ", sim_channel_defs[o->pop.channel[c]].name);
    if (o->pop.model == SIM_MODEL_RECOVERING)
        fprintf(f, "; model recovering");
    for (int i = 0; i < o->n_sets; i++)
        fprintf(f, "%s%s", i ? ", " : "; overrides: ", o->sets[i]);
    fprintf(f, "\n");
}

static int do_compare(const options_t *o, sim_result_t *runs, int *n_runs)
{
    sim_result_t *a = &runs[(*n_runs)++];
    if (run_one(o, "hierarchical", NULL, NULL, 0, "a", a) != 0)
        return 1;
    double rate = o->target_rate > 0 ? o->target_rate : overall_rate(a);
    sim_result_t *b = NULL;
    double ratio = 0;
    for (int i = 0; i < o->max_calibration && *n_runs < MAX_RUNS; i++) {
        char label[32];
        snprintf(label, sizeof label, "b%d", i + 1);
        b = &runs[(*n_runs)++];
        if (run_one(o, "threshold", NULL, NULL, rate, label, b) != 0)
            return 1;
        ratio = overall_sends(b) / overall_sends(a);
        fprintf(stderr, "notifd-sim: calibration %d: target_send_rate %.6f gives %.2f%% of (a)'s volume\n",
                i + 1, rate, 100.0 * ratio);
        if (fabs(ratio - 1.0) <= o->tolerance || !(overall_sends(b) > 0))
            break;
        /* Volume is close to proportional to the rate: one step usually
         * lands within the tolerance, and the calibrator tracks any rate. */
        rate *= overall_sends(a) / overall_sends(b);
        if (rate > 1.0)
            rate = 1.0;
    }
    print_header(o, stdout);
    printf("(a) hierarchical (notifd defaults%s)\n(b) threshold baseline: "
           "fast.threshold.target_send_rate %.6f, volume %.2f%% of (a)'s%s\n\n",
           o->n_sets ? " + overrides" : "", b->target_send_rate, 100.0 * ratio,
           fabs(ratio - 1.0) <= o->tolerance ? "" : " (NOT within tolerance)");
    sim_report_compare(stdout, a, b);
    return fabs(ratio - 1.0) <= o->tolerance ? 0 : 1;
}

/* "a:b:step" -> the number of values a, a + step, ... <= b; -1 if malformed. */
static int parse_range(const char *s, double *lo, double *step)
{
    double hi;
    char tail;
    if (sscanf(s, "%lf:%lf:%lf%c", lo, &hi, step, &tail) != 3 || !(*step > 0) || hi < *lo)
        return -1;
    return (int)floor((hi - *lo) / *step + 1e-9) + 1;
}

static int do_sweep(const options_t *o, sim_result_t *runs, int *n_runs)
{
    char key[128];
    double lo, step;
    const char *eq = strchr(o->sweep, '=');
    int steps = eq != NULL ? parse_range(eq + 1, &lo, &step) : -1;
    if (eq == NULL || (size_t)(eq - o->sweep) >= sizeof key || steps < 1) {
        fprintf(stderr, "notifd-sim: --sweep wants KEY=a:b:step with step > 0 and a <= b\n");
        return 2;
    }
    snprintf(key, sizeof key, "%.*s", (int)(eq - o->sweep), o->sweep);
    const char *mode = strcmp(o->mode, "threshold") == 0 ? "threshold" : "hierarchical";
    if (steps > MAX_RUNS) {
        fprintf(stderr, "notifd-sim: --sweep gives %d runs, at most %d\n", steps, MAX_RUNS);
        return 2;
    }
    for (int i = 0; i < steps; i++) {
        char value[32], label[48];
        snprintf(value, sizeof value, "%.6g", lo + i * step);
        snprintf(label, sizeof label, "%s", value);
        if (run_one(o, mode, key, value, o->target_rate, label, &runs[(*n_runs)++]) != 0)
            return 1;
    }
    print_header(o, stdout);
    printf("sweep of %s (%s mode)\n\n", key, mode);
    sim_report_sweep(stdout, runs, *n_runs);
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The threshold target rates of a frontier: each hierarchical run's sends
 * per opportunity (the rate that gives about its volume, as in compare's
 * first guess), plus one 25% below the lowest and one 25% above the highest,
 * so that every hierarchical volume falls between two baseline runs and the
 * comparison interpolates, never extrapolates. Ascending, without repeats
 * or zeros (a rate of 0 is no baseline). Returns how many. */
static int frontier_rates(const sim_result_t *a, int na, double *rates)
{
    int n = 0;
    for (int i = 0; i < na; i++)
        if (overall_rate(&a[i]) > 0)
            rates[n++] = overall_rate(&a[i]);
    if (n == 0)
        return 0;
    qsort(rates, (size_t)n, sizeof *rates, cmp_double);
    double lowest = rates[0] * 0.75, highest = fmin(rates[n - 1] * 1.25, 1.0);
    rates[n++] = lowest;
    rates[n++] = highest;
    qsort(rates, (size_t)n, sizeof *rates, cmp_double);
    /* Rates are passed to notifd with 6 decimals: equal there is a repeat. */
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || rates[i] - rates[m - 1] >= 5e-7)
            rates[m++] = rates[i];
    return m;
}

static int cmp_rate(const void *x, const void *y)
{
    return cmp_double(&((const sim_result_t *)x)->target_send_rate,
                      &((const sim_result_t *)y)->target_send_rate);
}

/* The index of the run with the least (sign 1) or most (sign -1) overall
 * volume. */
static int extreme_volume(const sim_result_t *r, int n, int sign)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (sign * (overall_sends(&r[i]) - overall_sends(&r[best])) < 0)
            best = i;
    return best;
}

static int run_baseline_at(const options_t *o, double rate, sim_result_t *out)
{
    char value[32], label[48];
    snprintf(value, sizeof value, "%.6f", rate);
    snprintf(label, sizeof label, "b@%s", value);
    return run_one(o, "threshold", "fast.threshold.target_send_rate", value, 0, label, out);
}

/* A threshold run's volume is close to proportional to its rate but not
 * exactly (compare needs a calibration step for it), so the planned brackets may fall short of (a)'s lowest or highest overall
 * volume. Then one more run past that end, the rate scaled by the volume
 * still missing and 25% beyond, at most FRONTIER_EXTEND times per end. */
#define FRONTIER_EXTEND 2
static int extend_brackets(const options_t *o, const sim_result_t *a, int na, sim_result_t *b,
                           int *nb)
{
    for (int sign = 1; sign >= -1; sign -= 2) {
        const double want = overall_sends(&a[extreme_volume(a, na, sign)]);
        for (int t = 0; t < FRONTIER_EXTEND; t++) {
            const sim_result_t *end = &b[extreme_volume(b, *nb, sign)];
            const double have = overall_sends(end);
            if (sign * (want - have) >= 0 || !(have > 0))
                break;
            double rate = end->target_send_rate * want / have * (sign > 0 ? 0.75 : 1.25);
            if (run_baseline_at(o, fmin(rate, 1.0), &b[(*nb)++]) != 0)
                return 1;
        }
    }
    return 0;
}

static int do_frontier(const options_t *o, sim_result_t *runs, int *n_runs)
{
    double lo, step;
    int steps = parse_range(o->frontier, &lo, &step);
    if (steps < 1) {
        fprintf(stderr, "notifd-sim: --frontier wants a:b:step with step > 0 and a <= b\n");
        return 2;
    }
    /* Each cost's rate, the two brackets and their extensions. */
    const int most = 2 * steps + 2 + 2 * FRONTIER_EXTEND;
    if (most > MAX_RUNS) {
        fprintf(stderr, "notifd-sim: --frontier gives up to %d runs, at most %d\n", most,
                MAX_RUNS);
        return 2;
    }
    for (int i = 0; i < steps; i++) {
        char value[32];
        snprintf(value, sizeof value, "%.6g", lo + i * step);
        if (run_one(o, "hierarchical", "slow.message_cost", value, 0, value,
                    &runs[(*n_runs)++]) != 0)
            return 1;
    }
    double rates[MAX_RUNS];
    int n_rates = frontier_rates(runs, steps, rates);
    sim_result_t *b = runs + steps;
    int nb = 0;
    for (int j = 0; j < n_rates; j++)
        if (run_baseline_at(o, rates[j], &b[nb++]) != 0)
            return 1;
    int rc = nb > 0 ? extend_brackets(o, runs, steps, b, &nb) : 0;
    *n_runs += nb;
    if (rc != 0)
        return rc;
    /* Named b1, b2, ... in order of rate (the plot's labels). */
    qsort(b, (size_t)nb, sizeof *b, cmp_rate);
    for (int j = 0; j < nb; j++)
        snprintf(b[j].label, sizeof b[j].label, "b%d", j + 1);
    print_header(o, stdout);
    printf("frontier: (a) hierarchical over slow.message_cost, (b) threshold baseline over "
           "fast.threshold.target_send_rate (%d runs bracketing (a)'s volumes)\n\n",
           nb);
    sim_report_sweep(stdout, runs, steps);
    printf("\n");
    sim_report_sweep(stdout, b, nb);
    printf("\n(b)'s visits interpolated linearly at (a)'s sends, per cohort on that cohort's "
           "own threshold runs\n(\"outside\": (a)'s volume is outside the baseline's range "
           "there)\n\n");
    sim_report_frontier(stdout, runs, steps, b, nb);
    return 0;
}

int main(int argc, char **argv)
{
    options_t o = {
        .pop = {.members = 20000, .mix = {0.5, 0.35, 0.15}, .candidates = 5, .seed = 1},
        .run = {.weeks = 12, .warmup_weeks = 2, .connections = 4},
        .mode = "compare",
        .redis_bin = "redis-server",
        .tolerance = 0.02,
        .max_calibration = 5,
    };
    parse_channels("push,email", &o.pop);
    static const struct option longopts[] = {
        {"members", required_argument, 0, 'm'}, {"weeks", required_argument, 0, 'w'},
        {"warmup", required_argument, 0, 'W'}, {"seed", required_argument, 0, 's'},
        {"mix", required_argument, 0, 'x'}, {"channels", required_argument, 0, 'c'},
        {"model", required_argument, 0, 'X'},
        {"candidates", required_argument, 0, 'k'}, {"connections", required_argument, 0, 'n'},
        {"mode", required_argument, 0, 'M'}, {"sweep", required_argument, 0, 'S'},
        {"frontier", required_argument, 0, 'F'},
        {"set", required_argument, 0, 'e'}, {"target-rate", required_argument, 0, 'r'},
        {"tolerance", required_argument, 0, 't'}, {"max-calibration", required_argument, 0, 'C'},
        {"csv", required_argument, 0, 'o'}, {"plot", required_argument, 0, 'p'},
        {"notifd", required_argument, 0, 'N'}, {"redis-server", required_argument, 0, 'R'},
        {"keep", no_argument, 0, 'K'}, {"dump", required_argument, 0, 'D'}, {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.pop.members = atoi(optarg); break;
        case 'w': o.run.weeks = atoi(optarg); break;
        case 'W': o.run.warmup_weeks = atoi(optarg); break;
        case 's': o.pop.seed = strtoull(optarg, NULL, 10); break;
        case 'x':
            if (parse_mix(optarg, o.pop.mix) != 0) {
                fprintf(stderr, "notifd-sim: --mix wants casual:regular:heavy shares\n");
                return 2;
            }
            break;
        case 'X':
            if (strcmp(optarg, "window") == 0) {
                o.pop.model = SIM_MODEL_WINDOW;
            } else if (strcmp(optarg, "recovering") == 0) {
                o.pop.model = SIM_MODEL_RECOVERING;
            } else {
                fprintf(stderr, "notifd-sim: --model wants window or recovering, not %s\n",
                        optarg);
                return 2;
            }
            break;
        case 'c':
            if (parse_channels(optarg, &o.pop) != 0) {
                fprintf(stderr, "notifd-sim: --channels wants a list of push, email, in_app\n");
                return 2;
            }
            break;
        case 'k': o.pop.candidates = atoi(optarg); break;
        case 'n': o.run.connections = atoi(optarg); break;
        case 'M': o.mode = optarg; break;
        case 'S': o.sweep = optarg; break;
        case 'F': o.frontier = optarg; break;
        case 'e':
            if (strchr(optarg, '=') == NULL || o.n_sets >= MAX_SETS) {
                fprintf(stderr, "notifd-sim: --set wants KEY=VALUE\n");
                return 2;
            }
            o.sets[o.n_sets++] = optarg;
            break;
        case 'r': o.target_rate = atof(optarg); break;
        case 't': o.tolerance = atof(optarg); break;
        case 'C': o.max_calibration = atoi(optarg); break;
        case 'o': o.csv = optarg; break;
        case 'p': o.plot = optarg; break;
        case 'N': o.notifd_bin = optarg; break;
        case 'R': o.redis_bin = optarg; break;
        case 'K': o.keep = true; break;
        case 'D':
            o.run.dump_path = optarg;
            o.run.dump_every = 10;
            break;
        case 'v': o.run.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || o.pop.members < 1 || o.run.weeks < 1 || o.run.warmup_weeks < 0 ||
        o.run.warmup_weeks >= o.run.weeks || o.pop.candidates < 1 ||
        o.pop.candidates > SIM_MAX_CANDIDATES || o.max_calibration < 1 ||
        (unsigned)o.pop.members > (UINT32_MAX >> 1) ||
        (strcmp(o.mode, "compare") && strcmp(o.mode, "hierarchical") &&
         strcmp(o.mode, "threshold")) ||
        /* A frontier runs both modes over fixed keys. */
        (o.frontier != NULL && (o.sweep != NULL || strcmp(o.mode, "compare") != 0))) {
        usage(stderr);
        return 2;
    }
    if (o.notifd_bin == NULL)
        o.notifd_bin = default_notifd();
    sim_proc_install_cleanup();

    static sim_result_t runs[MAX_RUNS];
    int n_runs = 0, rc;
    if (o.frontier != NULL) {
        rc = do_frontier(&o, runs, &n_runs);
    } else if (o.sweep != NULL) {
        rc = do_sweep(&o, runs, &n_runs);
    } else if (strcmp(o.mode, "compare") == 0) {
        rc = do_compare(&o, runs, &n_runs);
    } else {
        rc = run_one(&o, o.mode, NULL, NULL, o.target_rate, o.mode, &runs[n_runs++]) ? 1 : 0;
        if (rc == 0) {
            print_header(&o, stdout);
            printf("single %s run\n\n", o.mode);
            sim_report_compare(stdout, &runs[0], &runs[0]);
        }
    }
    if (rc == 2)
        return 2;
    char err[1024];
    if (n_runs > 0 && o.csv != NULL && sim_report_csv(o.csv, runs, n_runs, err, sizeof err) != 0) {
        fprintf(stderr, "notifd-sim: %s\n", err);
        rc = 1;
    }
    if (n_runs > 0 && o.plot != NULL) {
        /* compare: (a) and the calibrated (b) only; sweep and frontier:
         * every run. */
        sim_result_t sel[2];
        const sim_result_t *p = runs;
        int np = n_runs;
        sim_plot_kind_t kind = o.frontier != NULL ? SIM_PLOT_FRONTIER
                               : o.sweep != NULL  ? SIM_PLOT_SWEEP
                                                  : SIM_PLOT_COMPARE;
        if (kind == SIM_PLOT_COMPARE && strcmp(o.mode, "compare") == 0 && n_runs >= 2) {
            sel[0] = runs[0];
            sel[1] = runs[n_runs - 1];
            snprintf(sel[0].label, sizeof sel[0].label, "(a)");
            snprintf(sel[1].label, sizeof sel[1].label, "(b)");
            p = sel;
            np = 2;
        }
        if (sim_report_plot(o.plot, p, np, kind, err, sizeof err) != 0)
            fprintf(stderr, "notifd-sim: plot: %s\n", err);
    }
    return rc;
}
