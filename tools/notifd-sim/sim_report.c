/*
 * sim_report.c - what notifd-sim prints and writes: the per-cohort
 * comparison table of the hierarchical policy (a) against the calibrated
 * threshold baseline (b), the sweep table (the message-cost frontier), the
 * CSV with every run and cohort, and the gnuplot chart of volume against
 * engagement per cohort.
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

/* Writes <base>.dat and <base>.gp beside the PNG and runs gnuplot on them:
 * one panel per cohort (and overall), sends per member-week on x, visits per
 * member-week on y; hierarchical runs as a line (a sweep traces the
 * frontier), threshold runs as points. */
int sim_report_plot(const char *path, const sim_result_t *runs, int n, bool sweep, char *err,
                    size_t errlen)
{
    char base[600], dat[640], gp[640];
    snprintf(base, sizeof base, "%s", path);
    char *dot = strrchr(base, '.');
    if (dot != NULL && strcmp(dot, ".png") == 0)
        *dot = '\0';
    snprintf(dat, sizeof dat, "%s.dat", base);
    snprintf(gp, sizeof gp, "%s.gp", base);
    FILE *f = fopen(dat, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write %s", dat);
        return -1;
    }
    /* Blocks: for each panel, hierarchical then threshold; gnuplot's
     * `index` picks them (two blank lines separate blocks). */
    for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
        for (int mode = 0; mode < 2; mode++) {
            fprintf(f, "# %s %s\n", cohort_label(k), mode == 0 ? "hierarchical" : "threshold");
            int written = 0;
            for (int i = 0; i < n; i++) {
                const sim_result_t *r = &runs[i];
                if ((strcmp(r->mode, "threshold") == 0) != (mode == 1))
                    continue;
                const sim_cohort_result_t *c = &r->cohort[k];
                fprintf(f, "%.6f %.6f \"%s\"\n", sim_per_member_week(c, c->sends),
                        sim_per_member_week(c, c->visits), r->label);
                written++;
            }
            if (written == 0)
                fprintf(f, "NaN NaN \"\"\n");
            fprintf(f, "\n\n");
        }
    }
    fclose(f);
    f = fopen(gp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write %s", gp);
        return -1;
    }
    fprintf(f, "set terminal png size 1400,1000\nset output '%s'\n", path);
    fprintf(f, "set multiplot layout 2,2 title '%s'\n",
            sweep ? "notifd-sim: volume against engagement (sweep)"
                  : "notifd-sim: hierarchical (a) vs threshold baseline (b)");
    fprintf(f, "set xlabel 'sends per member per week'\nset ylabel 'visits per member per week'\n"
               "set key below\nset grid\nset offsets graph 0.15, graph 0.15, graph 0.2, "
               "graph 0.2\n");
    for (int k = 0; k <= SIM_MAX_COHORTS; k++) {
        int b0 = 2 * k, b1 = 2 * k + 1;
        fprintf(f, "set title '%s'\n", cohort_label(k));
        fprintf(f,
                "plot '%s' index %d using 1:2 with linespoints pt 7 title 'hierarchical', \\\n"
                "     '' index %d using 1:2:3 with labels offset 0,1 notitle, \\\n"
                "     '' index %d using 1:2 with points pt 5 ps 1.5 title 'threshold baseline', \\\n"
                "     '' index %d using 1:2:3 with labels offset 0,-1 notitle\n",
                dat, b0, b0, b1, b1);
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
