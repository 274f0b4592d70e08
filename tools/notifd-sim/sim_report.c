/*
 * sim_report.c - what notifd-sim prints and writes: the per-cohort
 * comparison table of the hierarchical policy (a) against the calibrated
 * threshold baseline (b), the sweep table (the message-cost frontier), the
 * frontier table (the baseline's visits interpolated at each hierarchical
 * run's volume), the CSV with every run and cohort, and the gnuplot chart of
 * volume against engagement per cohort.
 *
 * Every rate is per member per measured week (warm-up weeks excluded), over
 * all members of the cohort including those who opted out, so a policy that
 * drives members away pays for it in the averages.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *cohort_label(int k) { return k < SIM_MAX_COHORTS ? sim_cohorts[k].name : "overall"; }

double sim_per_member_week(const sim_cohort_result_t *c, double x)
{
    return c->member_weeks > 0 ? x / c->member_weeks : 0.0;
}

static double share(const sim_cohort_result_t *c, double x)
{
    return c->members > 0 ? x / c->members : 0.0;
}

static void lift(char *buf, size_t cap, double a, double b)
{
    if (b > 0)
        snprintf(buf, cap, "%+.1f%%", 100.0 * (a - b) / b);
    else
        snprintf(buf, cap, "n/a");
}

void sim_report_compare(FILE *f, const sim_result_t *a, const sim_result_t *b)
{
    fprintf(f, "%-8s %7s | %-22s | %-22s | %-22s | %-22s\n", "cohort", "members",
            "sends/member/week", "opens/member/week", "visits/member/week", "opt-out rate");
    fprintf(f, "%-8s %7s | %6s %6s %8s | %6s %6s %8s | %6s %6s %8s | %6s %6s %8s\n", "", "",
            "(a)", "(b)", "lift", "(a)", "(b)", "lift", "(a)", "(b)", "lift", "(a)", "(b)",
            "diff");
    for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
        const sim_cohort_result_t *x = &a->cohort[k], *y = &b->cohort[k];
        if (x->members == 0)
            continue;
        double sa = sim_per_member_week(x, x->sends), sb = sim_per_member_week(y, y->sends);
        double oa = sim_per_member_week(x, x->opens), ob = sim_per_member_week(y, y->opens);
        double va = sim_per_member_week(x, x->visits), vb = sim_per_member_week(y, y->visits);
        double qa = share(x, x->opted_out), qb = share(y, y->opted_out);
        char l1[16], l2[16], l3[16];
        lift(l1, sizeof l1, sa, sb);
        lift(l2, sizeof l2, oa, ob);
        lift(l3, sizeof l3, va, vb);
        fprintf(f, "%-8s %7d | %6.3f %6.3f %8s | %6.3f %6.3f %8s | %6.3f %6.3f %8s | %6.4f %6.4f %+8.4f\n",
                cohort_label(k), x->members, sa, sb, l1, oa, ob, l2, va, vb, l3, qa, qb, qa - qb);
    }
}

void sim_report_sweep(FILE *f, const sim_result_t *runs, int n)
{
    if (n == 0)
        return;
    int w = (int)strlen(runs[0].param_key);
    if (w < 12)
        w = 12;
    fprintf(f, "%-*s | %-31s |", w, "", "overall (per member per week)");
    for (int k = 0; k < SIM_MAX_COHORTS; k++)
        fprintf(f, " %-22s |", cohort_label(k));
    fprintf(f, "\n%-*s | %6s %6s %6s %9s |", w, runs[0].param_key, "sends", "opens", "visits",
            "opt-out");
    for (int k = 0; k < SIM_MAX_COHORTS; k++)
        fprintf(f, " %6s %6s %8s |", "sends", "visits", "opt-out");
    fprintf(f, "\n");
    for (int i = 0; i < n; i++) {
        const sim_result_t *r = &runs[i];
        const sim_cohort_result_t *o = &r->cohort[SIM_MAX_COHORTS];
        fprintf(f, "%-*g | %6.3f %6.3f %6.3f %9.4f |", w, r->param_value,
                sim_per_member_week(o, o->sends), sim_per_member_week(o, o->opens),
                sim_per_member_week(o, o->visits), share(o, o->opted_out));
        for (int k = 0; k < SIM_MAX_COHORTS; k++) {
            const sim_cohort_result_t *c = &r->cohort[k];
            fprintf(f, " %6.3f %6.3f %8.4f |", sim_per_member_week(c, c->sends),
                    sim_per_member_week(c, c->visits), share(c, c->opted_out));
        }
        fprintf(f, "\n");
    }
}

double sim_interpolate(const double *xs, const double *ys, int n, double x)
{
    /* The nearest point at or below x and the nearest at or above it: no
     * sorting, and the points may come in any order. */
    int below = -1, above = -1;
    for (int i = 0; i < n; i++) {
        if (xs[i] <= x && (below < 0 || xs[i] > xs[below]))
            below = i;
        if (xs[i] >= x && (above < 0 || xs[i] < xs[above]))
            above = i;
    }
    if (below < 0 || above < 0)
        return NAN;
    if (xs[above] == xs[below])
        return ys[below];
    double t = (x - xs[below]) / (xs[above] - xs[below]);
    return ys[below] + t * (ys[above] - ys[below]);
}

/* The baseline's visits per member-week in cohort k at `sends` per
 * member-week, read off the threshold runs' own points of that cohort (a
 * cohort's volume under the baseline is not the overall one's, so each
 * cohort has its own frontier). NaN: outside the runs' range. */
static double baseline_visits_at(const sim_result_t *b, int nb, int k, double sends)
{
    double *xs = malloc(sizeof *xs * (size_t)(nb > 0 ? nb : 1));
    double *ys = malloc(sizeof *ys * (size_t)(nb > 0 ? nb : 1));
    double v = NAN;
    if (xs != NULL && ys != NULL) {
        for (int j = 0; j < nb; j++) {
            const sim_cohort_result_t *c = &b[j].cohort[k];
            xs[j] = sim_per_member_week(c, c->sends);
            ys[j] = sim_per_member_week(c, c->visits);
        }
        v = sim_interpolate(xs, ys, nb, sends);
    }
    free(xs);
    free(ys);
    return v;
}

void sim_report_frontier(FILE *f, const sim_result_t *a, int na, const sim_result_t *b, int nb)
{
    fprintf(f, "%-8s %-8s | %9s %10s | %14s | %8s\n", "", "", "(a)", "(a)", "(b) visits",
            "visits");
    fprintf(f, "%-8s %-8s | %9s %10s | %14s | %8s\n", "cost", "cohort", "sends", "visits",
            "at (a)'s sends", "(a)-(b)");
    for (int i = 0; i < na; i++) {
        const sim_result_t *r = &a[i];
        double overall_a = 0, overall_b = NAN;
        for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
            const sim_cohort_result_t *c = &r->cohort[k];
            if (c->members == 0)
                continue;
            double sa = sim_per_member_week(c, c->sends), va = sim_per_member_week(c, c->visits);
            double vb = baseline_visits_at(b, nb, k, sa);
            char diff[16];
            if (isnan(vb))
                snprintf(diff, sizeof diff, "n/a");
            else
                snprintf(diff, sizeof diff, "%+.2f%%", vb > 0 ? 100.0 * (va - vb) / vb : 0.0);
            if (isnan(vb))
                fprintf(f, "%-8g %-8s | %9.3f %10.3f | %14s | %8s\n", r->param_value,
                        cohort_label(k), sa, va, "outside", diff);
            else
                fprintf(f, "%-8g %-8s | %9.3f %10.3f | %14.3f | %8s\n", r->param_value,
                        cohort_label(k), sa, va, vb, diff);
            if (k == SIM_MAX_COHORTS) {
                overall_a = va;
                overall_b = vb;
            }
        }
        /* The verdict is on the unrounded values; outside the baseline's
         * range there is no measured baseline to compare with. */
        fprintf(f, "%-8g at least the baseline: %s\n\n", r->param_value,
                isnan(overall_b) ? "outside the baseline's range"
                                 : overall_a >= overall_b ? "yes" : "no");
    }
}

int sim_report_csv(const char *path, const sim_result_t *runs, int n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write %s", path);
        return -1;
    }
    fprintf(f, "run,mode,param_key,param_value,target_send_rate,cohort,members,measured_weeks,"
               "opportunities_pmw,sends_pmw");
    for (int c = 0; n > 0 && c < runs[0].n_channels; c++)
        fprintf(f, ",sends_%s_pmw", runs[0].channel[c]);
    fprintf(f, ",opens_pmw,clicks_pmw,dismisses_pmw,visits_pmw,visits_after_open_pmw,"
               "optout_rate,unsubs_per_member");
    for (int c = 0; n > 0 && c < runs[0].n_channels; c++)
        fprintf(f, ",plan_%s_mean", runs[0].channel[c]);
    for (int c = 0; n > 0 && c < runs[0].n_channels; c++)
        fprintf(f, ",max_week_%s,max_7d_%s,over_cap_%s", runs[0].channel[c], runs[0].channel[c],
                runs[0].channel[c]);
    fprintf(f, "\n");
    for (int i = 0; i < n; i++) {
        const sim_result_t *r = &runs[i];
        for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
            const sim_cohort_result_t *c = &r->cohort[k];
            if (c->members == 0)
                continue;
            fprintf(f, "%s,%s,%s,%.6g,%.6g,%s,%d,%d,%.6f,%.6f", r->label, r->mode, r->param_key,
                    r->param_value, r->target_send_rate, cohort_label(k), c->members,
                    r->measured_weeks, sim_per_member_week(c, c->opportunities),
                    sim_per_member_week(c, c->sends));
            for (int ch = 0; ch < r->n_channels; ch++)
                fprintf(f, ",%.6f", sim_per_member_week(c, c->sends_ch[ch]));
            fprintf(f, ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f", sim_per_member_week(c, c->opens),
                    sim_per_member_week(c, c->clicks), sim_per_member_week(c, c->dismisses),
                    sim_per_member_week(c, c->visits), sim_per_member_week(c, c->visits_caused),
                    share(c, c->opted_out), share(c, c->unsubs));
            /* Mean planned messages per week over the member's decides (an
             * empty field in threshold mode, which has no plan). */
            for (int ch = 0; ch < r->n_channels; ch++) {
                if (c->plan_n[ch] > 0)
                    fprintf(f, ",%.4f", c->plan_sum[ch] / c->plan_n[ch]);
                else
                    fprintf(f, ",");
            }
            /* One member's worst week and 7 days, and sends past the cap. */
            for (int ch = 0; ch < r->n_channels; ch++)
                fprintf(f, ",%.0f,%.0f,%.0f", c->max_week[ch], c->max_7d[ch], c->over_cap[ch]);
            fprintf(f, "\n");
        }
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s", path);
        return -1;
    }
    return 0;
}

/* The runs of one mode in order of cohort k's sends (insertion sort: a few
 * dozen runs at most), so that a line through them is that cohort's
 * frontier. Returns how many. */
static int runs_by_sends(const sim_result_t *runs, int n, bool threshold, int k, int *idx)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if ((strcmp(runs[i].mode, "threshold") == 0) != threshold)
            continue;
        const sim_cohort_result_t *c = &runs[i].cohort[k];
        double s = sim_per_member_week(c, c->sends);
        int j = m++;
        for (; j > 0; j--) {
            const sim_cohort_result_t *p = &runs[idx[j - 1]].cohort[k];
            if (sim_per_member_week(p, p->sends) <= s)
                break;
            idx[j] = idx[j - 1];
        }
        idx[j] = i;
    }
    return m;
}

/* Writes <base>.dat and <base>.gp beside the PNG and runs gnuplot on them:
 * one panel per cohort (and overall), sends per member-week on x, visits per
 * member-week on y; hierarchical runs as a line (a sweep traces the
 * frontier), threshold runs as points, joined by a dashed line in a frontier
 * plot (the baseline's own frontier, which the table interpolates on). */
int sim_report_plot(const char *path, const sim_result_t *runs, int n, sim_plot_kind_t kind,
                    char *err, size_t errlen)
{
    char base[600], dat[640], gp[640];
    snprintf(base, sizeof base, "%s", path);
    char *dot = strrchr(base, '.');
    if (dot != NULL && strcmp(dot, ".png") == 0)
        *dot = '\0';
    snprintf(dat, sizeof dat, "%s.dat", base);
    snprintf(gp, sizeof gp, "%s.gp", base);
    int *idx = malloc(sizeof *idx * (size_t)(n > 0 ? n : 1));
    FILE *f = idx != NULL ? fopen(dat, "w") : NULL;
    if (f == NULL) {
        free(idx);
        snprintf(err, errlen, "cannot write %s", dat);
        return -1;
    }
    /* Blocks: for each panel, hierarchical then threshold; gnuplot's
     * `index` picks them (two blank lines separate blocks). */
    for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
        for (int mode = 0; mode < 2; mode++) {
            fprintf(f, "# %s %s\n", cohort_label(k), mode == 0 ? "hierarchical" : "threshold");
            /* Hierarchical runs in run order (a sweep's line follows its
             * key), threshold runs in order of volume. */
            int written = 0;
            if (mode == 1) {
                written = runs_by_sends(runs, n, true, k, idx);
            } else {
                for (int i = 0; i < n; i++)
                    if (strcmp(runs[i].mode, "threshold") != 0)
                        idx[written++] = i;
            }
            for (int j = 0; j < written; j++) {
                const sim_result_t *r = &runs[idx[j]];
                const sim_cohort_result_t *c = &r->cohort[k];
                fprintf(f, "%.6f %.6f \"%s\"\n", sim_per_member_week(c, c->sends),
                        sim_per_member_week(c, c->visits), r->label);
            }
            if (written == 0)
                fprintf(f, "NaN NaN \"\"\n");
            fprintf(f, "\n\n");
        }
    }
    fclose(f);
    free(idx);
    f = fopen(gp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write %s", gp);
        return -1;
    }
    /* noenhanced: the titles hold config keys, whose underscores gnuplot
     * would otherwise set as subscripts. */
    fprintf(f, "set terminal png size 1400,1000 noenhanced\nset output '%s'\n", path);
    static const char *const titles[] = {
        [SIM_PLOT_COMPARE] = "notifd-sim: hierarchical (a) vs threshold baseline (b)",
        [SIM_PLOT_SWEEP] = "notifd-sim: volume against engagement (sweep)",
        [SIM_PLOT_FRONTIER] = "notifd-sim: the frontier: hierarchical over slow.message_cost "
                              "vs threshold baseline over target_send_rate",
    };
    fprintf(f, "set multiplot layout 2,2 title '%s'\n", titles[kind]);
    fprintf(f, "set xlabel 'sends per member per week'\nset ylabel 'visits per member per week'\n"
               "set key below\nset grid\nset offsets graph 0.15, graph 0.15, graph 0.2, "
               "graph 0.2\n");
    for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
        int b0 = 2 * k, b1 = 2 * k + 1;
        fprintf(f, "set title '%s'\n", cohort_label(k));
        fprintf(f,
                "plot '%s' index %d using 1:2 with linespoints pt 7 title 'hierarchical', \\\n"
                "     '' index %d using 1:2:3 with labels offset 0,1 notitle, \\\n"
                "     '' index %d using 1:2 with %s pt 5 ps 1.5 title 'threshold baseline', \\\n"
                "     '' index %d using 1:2:3 with labels offset 0,-1 notitle\n",
                dat, b0, b0, b1, kind == SIM_PLOT_FRONTIER ? "linespoints dt 2" : "points", b1);
    }
    fprintf(f, "unset multiplot\n");
    fclose(f);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        snprintf(err, errlen,
                 "gnuplot is not installed (apt-get install gnuplot-nox; scripts/sim.sh does "
                 "it); the script is %s",
                 gp);
        return -1;
    }
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gp);
    if (system(cmd) != 0) {
        snprintf(err, errlen, "gnuplot failed on %s", gp);
        return -1;
    }
    return 0;
}
