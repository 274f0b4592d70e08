/*
 * utility.c - evaluating and maximising the slow policy's utility (see
 * utility.h and docs/slow-policy.md).
 *
 * Why it is cheap: U is a sum of one term per planned channel, each a
 * function of that channel's volume only, plus a term in the total volume.
 * utility_argmax() therefore evaluates each channel's term once per allowed
 * value (10 + 8 exp() calls on the default grid), and the 80 actions are then
 * sums of table entries using the per-action value indices and totals the
 * grid precomputed. Nothing is allocated; the scratch row lives on the stack.
 */
#include "notifd/lib/errbuf.h"
#include "notifd/core/utility.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

void slow_weights_defaults(slow_weights_t *w)
{
    /* Utility is in incremental visits. An open is worth a tenth of a visit
     * on top of what it causes; an opt-out costs ten visits (the channel's
     * future: a casual member's push brings about 0.4 visits a week); the
     * universal cost of 0.01 per message keeps typical members in the middle
     * of the grid and members whose messages cause nothing (daily visitors)
     * near zero. Fatigue 0.05: fatigue outlives the week it is caused in, and
     * at 0.01 its term was a few percent of a message's value, so members
     * whose messages cause many visits (casual ones) were planned past the
     * point where they tire and opt out. Opt-out 10 rather than 5: the
     * members a message moves most are the ones who opt out most, and at 5
     * the planner bought their visits with more opt-outs than the baseline
     * causes at the same volume (notifd-sim, docs/simulation.md). */
    *w = (slow_weights_t){
        .incremental_visit = 1.0,
        .open = 0.1,
        .fatigue = 0.05,
        .cross_fatigue = 0.5,
        .optout = 10.0,
        /* 0.035 with half a message a week in the grid: with a plan's
         * fraction a chance at the member's best moments (pacing.c), casual
         * members are planned 0.5 or 1 a week and regular ones little, which
         * is where notifd-sim's lift over the baseline is (docs/simulation.md,
         * "Fractional plans as a chance", "A message cost of 0.035"). At
         * 0.01 every member was planned whole messages a week, each one
         * forced out by Sunday. It was 0.03 while a member sent nothing
         * taught the planner nothing: above 0.03 the priors alone plan
         * nothing. The score prior now learns from every decide, and a
         * member without any history gets the default plan
         * (actions.h, new_member_action), so 0.035 strands no one. */
        .message_cost = 0.035,
    };
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        w->channel_cost[c] = 1.0;
}


static int check_weight(double v, const char *name, char *err, size_t errlen)
{
    if (!isfinite(v) || v < 0.0)
        return errbuf_fail(err, errlen, "%s must be finite and >= 0, got %g", name, v);
    return 0;
}

int slow_weights_check(const slow_weights_t *w, char *err, size_t errlen)
{
    if (check_weight(w->incremental_visit, "incremental_visit", err, errlen) ||
        check_weight(w->open, "open", err, errlen) ||
        check_weight(w->fatigue, "fatigue", err, errlen) ||
        check_weight(w->cross_fatigue, "cross_fatigue", err, errlen) ||
        check_weight(w->optout, "optout", err, errlen) ||
        check_weight(w->message_cost, "message_cost", err, errlen))
        return -1;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        if (check_weight(w->channel_cost[c], "channel_cost", err, errlen))
            return -1;
    return 0;
}

/* Per-channel coefficients of U that do not depend on the volume. */
typedef struct channel_coef {
    bool available;
    double value;  /* (w_inc * lift + w_open) * p: worth of the week's 1st message */
    double phi;    /* response decay per extra message */
    double damp;   /* 1 / (1 - e^-phi), or 0 when phi is ~0 (then A(n) = n) */
    double quad;   /* w_fatigue * phi / 2: own fatigue per n^2 */
    double linear; /* w_optout * h + message_cost * m: per message */
} channel_coef_t;

static void channel_coef_init(channel_coef_t *k, const slow_weights_t *w,
                              const member_estimate_t *e, int channel)
{
    const channel_estimate_t *ce = &e->ch[channel];
    k->available = ce->available;
    k->value = (w->incremental_visit * e->lift + w->open) * ce->p_open;
    k->phi = ce->fatigue;
    k->damp = k->phi > 1e-12 ? -1.0 / expm1(-k->phi) : 0.0;
    k->quad = 0.5 * w->fatigue * k->phi;
    k->linear = w->optout * ce->unsub_hazard + w->message_cost * w->channel_cost[channel];
}

/* Channel c's own term of U at n messages per week. Exactly 0 at n = 0 (so the
 * zero action has U = 0 whatever the estimates), -INFINITY on an opted-out
 * channel otherwise. */
static double channel_term(const channel_coef_t *k, double n)
{
    if (n == 0.0)
        return 0.0;
    if (!k->available)
        return -INFINITY;
    double a = k->damp > 0.0 ? -expm1(-k->phi * n) * k->damp : n;
    return k->value * a - k->quad * n * n - k->linear * n;
}

/* Coefficient of N^2 in U (negated): cross-channel fatigue. Depends on the
 * fatigue estimates only, never on engagement or opt-out risk. */
static double cross_coef(const slow_weights_t *w, const member_estimate_t *e,
                         const action_grid_t *g)
{
    double phi_sum = 0.0;
    for (int k = 0; k < g->n_channels; k++)
        phi_sum += e->ch[g->channel[k]].fatigue;
    return 0.5 * w->fatigue * w->cross_fatigue * phi_sum / g->n_channels;
}

void utility_parts(const slow_weights_t *w, const member_estimate_t *e, const action_grid_t *g,
                   int action, utility_parts_t *out)
{
    *out = (utility_parts_t){0};
    double u = 0.0;
    for (int k = 0; k < g->n_channels; k++) {
        int c = g->channel[k];
        channel_coef_t coef;
        channel_coef_init(&coef, w, e, c);
        double n = g->values[k][g->value_index[action][k]];
        /* The total: the same operations in the same order as
         * utility_argmax(), so the two agree to the last bit. */
        u += channel_term(&coef, n);
        if (n == 0.0)
            continue;
        if (!coef.available) {
            out->optout_blocked = true;
            continue;
        }
        /* The same term taken apart (channel_coef_init, channel_term). */
        double a = coef.damp > 0.0 ? -expm1(-coef.phi * n) * coef.damp : n;
        double p = e->ch[c].p_open;
        out->visits += w->incremental_visit * e->lift * p * a;
        out->opens += w->open * p * a;
        out->fatigue -= coef.quad * n * n;
        out->optout -= w->optout * e->ch[c].unsub_hazard * n;
        out->cost -= w->message_cost * w->channel_cost[c] * n;
    }
    double total = g->total[action];
    double cross = cross_coef(w, e, g) * (total * total);
    out->cross_fatigue = cross != 0.0 ? -cross : 0.0;
    out->total = u - cross;
}

double utility_evaluate(const slow_weights_t *w, const member_estimate_t *e,
                        const action_grid_t *g, int action)
{
    utility_parts_t parts;
    utility_parts(w, e, g, action, &parts);
    return parts.total;
}

int utility_argmax(const slow_weights_t *w, const member_estimate_t *e,
                   const action_grid_t *g, double *utilities_out)
{
    double term[ACTION_GRID_MAX_CHANNELS][ACTION_GRID_MAX_VALUES];
    for (int k = 0; k < g->n_channels; k++) {
        channel_coef_t coef;
        channel_coef_init(&coef, w, e, g->channel[k]);
        for (int i = 0; i < g->n_values[k]; i++)
            term[k][i] = channel_term(&coef, g->values[k][i]);
    }
    double cc = cross_coef(w, e, g);

    double scratch[ACTION_GRID_MAX_ACTIONS];
    double *u = utilities_out != NULL ? utilities_out : scratch;
    double best = -INFINITY;
    for (int a = 0; a < g->n_actions; a++) {
        /* Same operations in the same order as utility_evaluate(), so the
         * two agree to the last bit. */
        double s = 0.0;
        for (int k = 0; k < g->n_channels; k++)
            s += term[k][g->value_index[a][k]];
        double total = g->total[a];
        s -= cc * (total * total);
        u[a] = s;
        if (s > best)
            best = s;
    }

    /* Two passes so "within UTILITY_TIE_EPS of the best" is measured from the
     * true maximum, not from whichever action a single pass met first. */
    int choice = 0;
    for (int a = 0; a < g->n_actions; a++) {
        if (!(u[a] >= best - UTILITY_TIE_EPS))
            continue;
        if (!(u[choice] >= best - UTILITY_TIE_EPS) || g->total[a] < g->total[choice])
            choice = a;
    }
    return choice;
}
