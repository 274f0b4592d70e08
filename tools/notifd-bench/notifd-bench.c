/*
 * notifd-bench - a load generator for notifd's decide op.
 *
 * One file of about a thousand lines, on purpose: it is a standalone
 * developer tool, not linked into notifd, and its parts (request generation,
 * connections, both load loops, the report) all work on one run state that
 * would otherwise need a header of its own only this program includes.
 *
 * It opens --connections TCP connections to notifd and sends realistic
 * decide requests: --candidates candidates each with an upstream score, three
 * features and a tag; members drawn from a Zipf distribution (exponent
 * --zipf, 1.1 by default) over --members ids, so a few members are hot and
 * most are rarely seen, as in real traffic; an opportunity id unique per
 * request (and per run, so repeated runs against one Redis never hit the
 * idempotency records of an earlier run); member ids m00000000, m00000001, ...
 * (rank 1 first), the ids scripts/gen_members.py writes; and a "ts" that advances through
 * one simulated week over the run, so weekly windows, caps and pacing move.
 *
 * Two ways to apply load:
 *   - closed loop (default): each connection keeps --pipeline requests in
 *     flight and sends a new one for each reply. This finds the maximum
 *     throughput; its latencies are those of a saturated server.
 *   - open loop (--rate R): requests are due at fixed intended times
 *     (start + i/R), spread over the connections, each connection carrying
 *     at most --pipeline of them at once. Latency is measured from the
 *     intended send time, not from when the request actually left, so a
 *     server that falls behind (and the queue that builds in front of it,
 *     here or in the kernel) shows in the percentiles instead of silently
 *     slowing the sender down ("coordinated omission"). Sends are timed with
 *     a nanosecond timerfd rather than libuv's millisecond timers, whose
 *     lag alone would be a millisecond of fake latency (Linux; elsewhere the
 *     millisecond timer is used and the lag is counted honestly).
 *
 * Two targets (--target):
 *   - notifd (default): decide requests to notifd's producer port, as above;
 *   - lua-cap: the Lua frequency cap our users would otherwise write into
 *     Redis, driven in Redis itself over RESP: one EVALSHA per request
 *     (INCR, EXPIRE on first use, compare; the script is LUA_CAP_SCRIPT,
 *     loaded with SCRIPT LOAD on every connection first) on a key with a
 *     uniformly random member number, cap:{000000012345}:week, as
 *     redis-benchmark's -r writes it. Same connections, pipelining and
 *     open-loop schedule as a decide run, so the p99 of decides and of the
 *     cap at one rate come from one generator and one clock.
 *
 * The first --warmup seconds are not measured. After --duration seconds of
 * measurement no new request is started; replies still owed are awaited for
 * up to 5 s, and those that never come count as errors.
 *
 * Output: diagnostics (reason mix, achieved rate) on stderr, and exactly one
 * line on stdout:
 *   decide_rps=... p50_ms=... p90_ms=... p99_ms=... p999_ms=... errors=...
 * (lua_cap_rps=... instead of decide_rps=... with --target lua-cap)
 * where errors = replies with "ok":false (Redis error replies for the cap) +
 * protocol errors (unparsable or out-of-order replies, lost connections,
 * replies never received). --print-lua-cap prints the cap's script and
 * exits, so scripts/bench.sh runs redis-benchmark on the very same one. Exit code
 * 0 whenever it could connect (errors are reported, not fatal), 1 when it
 * could not connect, 2 on bad usage.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/timerfd.h>
#endif

#include "notifd/lib/latency_histogram.h"
#include "notifd/lib/rng.h"

#define NS_PER_S 1000000000ull
#define READ_BUF 65536            /* a reply is ~400 bytes; many fit */
#define DRAIN_LIMIT_NS (5 * NS_PER_S)
#define CONNECT_LIMIT_MS 10000
#define SIM_WEEK_START 1795392000 /* Monday 2026-11-23 00:00 UTC */
#define SIM_WEEK_S (7 * 86400)
#define CATALOGUE_MIN 500         /* distinct message ids candidates come from */

/* The Lua cap of --target lua-cap: at most ARGV[1] per key, the key living
 * ARGV[2] seconds from its first use. LUA_CAP_SHA is its SHA1; the SCRIPT
 * LOAD reply of every connection is checked against it, so an edit of one
 * without the other fails the run instead of measuring NOSCRIPT errors. */
static const char LUA_CAP_SCRIPT[] = "local n = redis.call(\"INCR\", KEYS[1])\n"
                                     "if n == 1 then redis.call(\"EXPIRE\", KEYS[1], ARGV[2]) end\n"
                                     "if n > tonumber(ARGV[1]) then return 0 end\n"
                                     "return 1";
#define LUA_CAP_SHA "d28558dfd0c2691e042d8f63ac3b43b4f7e5750d"
#define LUA_CAP_LIMIT "5"
#define LUA_CAP_TTL_S "604800"

enum { TARGET_NOTIFD, TARGET_LUA_CAP };

/* ------------------------------------------------------------------ */
/* Options                                                            */

typedef struct options {
    const char *host;
    int port;
    int connections;
    int pipeline;
    double duration_s;
    double warmup_s;
    int candidates;
    uint64_t members;
    const char *channel;
    double rate;      /* requests/s over all connections; 0 = closed loop */
    uint64_t seed;
    double zipf_s;
    int target;       /* TARGET_NOTIFD or TARGET_LUA_CAP */
} options_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: notifd-bench [options]\n"
            "  --host H          notifd address (default 127.0.0.1)\n"
            "  --port P          producer port (default 7400)\n"
            "  --connections N   TCP connections (default 16)\n"
            "  --pipeline N      requests in flight per connection (default 16)\n"
            "  --duration S      measured seconds (default 10; fractions allowed)\n"
            "  --warmup S        unmeasured seconds first (default 1)\n"
            "  --candidates K    candidates per request (default 10)\n"
            "  --members N       distinct member ids, Zipf-distributed (default 100000)\n"
            "  --zipf S          Zipf exponent of member popularity (default 1.1)\n"
            "  --channel C       channel of every request (default push)\n"
            "  --rate R          open loop: R requests/s in total, latency from the\n"
            "                    intended send time (default: closed loop)\n"
            "  --seed N          seed of the request stream (default 1)\n"
            "  --target T        notifd (default), or lua-cap: EVALSHA of the Lua cap in\n"
            "                    the Redis at --host/--port, random member keys\n"
            "  --print-lua-cap   print the Lua cap's script and exit\n"
            "Prints one line: decide_rps=... p50_ms=... p90_ms=... p99_ms=... p999_ms=... "
            "errors=...\n"
            "(lua_cap_rps=... first with --target lua-cap)\n");
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(x >= lo && x <= hi))
        return false;
    *out = x;
    return true;
}

static bool parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.host = "127.0.0.1", .port = 7400, .connections = 16, .pipeline = 16,
                     .duration_s = 10, .warmup_s = 1, .candidates = 10, .members = 100000,
                     .channel = "push", .rate = 0, .seed = 1, .zipf_s = 1.1,
                     .target = TARGET_NOTIFD};
    enum { O_HOST = 256, O_PORT, O_CONN, O_PIPE, O_DUR, O_WARM, O_CAND, O_MEM, O_ZIPF, O_CHAN,
           O_RATE, O_SEED, O_TARGET, O_PRINT_LUA, O_HELP };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"connections", required_argument, NULL, O_CONN},
        {"pipeline", required_argument, NULL, O_PIPE},
        {"duration", required_argument, NULL, O_DUR},
        {"warmup", required_argument, NULL, O_WARM},
        {"candidates", required_argument, NULL, O_CAND},
        {"members", required_argument, NULL, O_MEM},
        {"zipf", required_argument, NULL, O_ZIPF},
        {"channel", required_argument, NULL, O_CHAN},
        {"rate", required_argument, NULL, O_RATE},
        {"seed", required_argument, NULL, O_SEED},
        {"target", required_argument, NULL, O_TARGET},
        {"print-lua-cap", no_argument, NULL, O_PRINT_LUA},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int ch;
    double x;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (ch) {
        case O_HOST: o->host = optarg; break;
        case O_PORT:
            if (parse_double(optarg, 1, 65535, &x)) o->port = (int)x; else bad = "--port";
            break;
        case O_CONN:
            if (parse_double(optarg, 1, 100000, &x)) o->connections = (int)x;
            else bad = "--connections";
            break;
        case O_PIPE:
            if (parse_double(optarg, 1, 100000, &x)) o->pipeline = (int)x; else bad = "--pipeline";
            break;
        case O_DUR:
            if (!parse_double(optarg, 0.01, 86400, &o->duration_s)) bad = "--duration";
            break;
        case O_WARM:
            if (!parse_double(optarg, 0, 3600, &o->warmup_s)) bad = "--warmup";
            break;
        case O_CAND:
            if (parse_double(optarg, 0, 10000, &x)) o->candidates = (int)x;
            else bad = "--candidates";
            break;
        case O_MEM:
            if (parse_double(optarg, 1, 1e12, &x)) o->members = (uint64_t)x; else bad = "--members";
            break;
        case O_ZIPF:
            if (!parse_double(optarg, 0.01, 10, &o->zipf_s) || fabs(o->zipf_s - 1.0) < 1e-9)
                bad = "--zipf (a positive exponent other than exactly 1)";
            break;
        case O_CHAN:
            if (strlen(optarg) == 0 || strlen(optarg) > 64 || strpbrk(optarg, "\"\\") != NULL)
                bad = "--channel";
            else
                o->channel = optarg;
            break;
        case O_RATE:
            if (!parse_double(optarg, 0, 1e8, &o->rate)) bad = "--rate";
            break;
        case O_SEED:
            if (parse_double(optarg, 0, 1.8e19, &x)) o->seed = (uint64_t)x; else bad = "--seed";
            break;
        case O_TARGET:
            if (strcmp(optarg, "notifd") == 0)
                o->target = TARGET_NOTIFD;
            else if (strcmp(optarg, "lua-cap") == 0)
                o->target = TARGET_LUA_CAP;
            else
                bad = "--target (notifd or lua-cap)";
            break;
        case O_PRINT_LUA: fputs(LUA_CAP_SCRIPT, stdout); exit(0);
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return false;
        }
        if (bad != NULL) {
            fprintf(stderr, "notifd-bench: bad value for %s: %s\n", bad, optarg);
            return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "notifd-bench: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Zipf sampling                                                      */

/* Rejection-inversion sampling (Hörmann and Derflinger, 1996) of ranks
 * 1..n with P(k) ~ k^-s: O(1) time and memory for any n, so --members can
 * be in the billions without a CDF table. Follows the formulation of Apache
 * Commons' RejectionInversionZipfSampler. */
typedef struct zipf {
    double s, n;
    double h_x1, h_n, cut;
} zipf_t;

static double helper_log1p_div(double x) /* log1p(x)/x, stable near 0 */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double helper_expm1_div(double x) /* expm1(x)/x, stable near 0 */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

static double zipf_h_integral(const zipf_t *z, double x)
{
    double lx = log(x);
    return helper_expm1_div((1.0 - z->s) * lx) * lx;
}

static double zipf_h(const zipf_t *z, double x) { return exp(-z->s * log(x)); }

static double zipf_h_integral_inverse(const zipf_t *z, double x)
{
    double t = x * (1.0 - z->s);
    if (t < -1.0)
        t = -1.0; /* guards rounding at the upper end */
    return exp(helper_log1p_div(t) * x);
}

static void zipf_init(zipf_t *z, uint64_t n, double s)
{
    z->s = s;
    z->n = (double)n;
    z->h_x1 = zipf_h_integral(z, 1.5) - 1.0;
    z->h_n = zipf_h_integral(z, z->n + 0.5);
    z->cut = 2.0 - zipf_h_integral_inverse(z, zipf_h_integral(z, 2.5) - zipf_h(z, 2.0));
}

static uint64_t zipf_sample(const zipf_t *z, rng_t *rng)
{
    for (;;) {
        double u = z->h_n + rng_next_unit(rng) * (z->h_x1 - z->h_n);
        double x = zipf_h_integral_inverse(z, u);
        double k = floor(x + 0.5);
        if (k < 1.0)
            k = 1.0;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->cut || u >= zipf_h_integral(z, k + 0.5) - zipf_h(z, k))
            return (uint64_t)k;
    }
}

/* ------------------------------------------------------------------ */
/* State                                                              */

typedef struct inflight {
    uint64_t id;
    uint64_t t0_ns; /* actual send time (closed loop) or intended (open loop) */
    bool setup;     /* SCRIPT LOAD of --target lua-cap: answered, never measured */
} inflight_t;

typedef struct bench bench_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    bench_t *b;
    int index;
    bool connected, closed, writing, dirty;
    struct conn *dirty_next;
    char *wbuf;             /* requests gathered, not yet handed to libuv */
    size_t wlen, wcap;
    char *fbuf;             /* the buffer libuv is writing now */
    size_t flen, fcap;
    inflight_t *q;          /* ring of requests awaiting replies, in order */
    size_t q_head, q_len, q_cap;
    char rbuf[READ_BUF];
    size_t rlen;
    uint64_t seq;
} conn_t;

enum { PHASE_CONNECTING, PHASE_RUNNING, PHASE_DRAINING, PHASE_DONE };

enum { R_SEND, R_PACED_SKIP, R_CAP, R_QUIET, R_NO_CAND, R_FILTERED, R_UNSUB, R_DEGRADED,
       R_OTHER, R_COUNT };
static const char *const reason_names[R_COUNT] = {
    "send", "paced_skip", "cap_reached", "quiet_hours", "no_candidates", "all_filtered",
    "unsubscribed", "degraded", "other",
};

struct bench {
    options_t o;
    uv_loop_t *loop;
    conn_t *conns;
    int n_connected, n_closed;
    int phase;
    bool connect_failed;
    char connect_error[160];
    uv_timer_t ticker;
    uint64_t start_ns, measure_ns, end_ns, drain_deadline_ns;
    rng_t rng;
    zipf_t zipf;
    char nonce[20];
    uint64_t catalogue;
    uint64_t next_id;
    conn_t *dirty;

    /* open loop */
    bool open_loop;
    uint64_t issued;         /* requests sent so far (they are due in index order) */
    uint64_t total_due;      /* requests intended before end_ns */
    int rr;                  /* round-robin cursor over connections */
#ifdef __linux__
    int tfd;
    uv_poll_t tpoll;
#else
    uv_timer_t tfallback;
#endif
    bool timer_open;

    /* results */
    latency_histogram_t *hist;
    uint64_t done_in_window;
    uint64_t not_ok, protocol_errors, unfinished;
    uint64_t reasons[R_COUNT];
    uint64_t sent_total, replies_total;
};

static void conn_fail(conn_t *c, const char *why);
static void schedule_next_send(bench_t *b, uint64_t now);

/* ------------------------------------------------------------------ */
/* Request encoding                                                   */

/* Hand-rolled formatting: the generator shares two cores with notifd and
 * Redis, and printf's float formatting would cost it several microseconds
 * per request. */
static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* At least `width` digits, zero-padded. */
static char *put_u64_padded(char *p, uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 || n < width);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* A number in [0, 1) with three decimals from 0..999. */
static char *put_milli(char *p, uint64_t milli)
{
    *p++ = '0';
    *p++ = '.';
    *p++ = (char)('0' + milli / 100);
    *p++ = (char)('0' + milli / 10 % 10);
    *p++ = (char)('0' + milli % 10);
    return p;
}

static size_t request_max_bytes(const options_t *o)
{
    return 512 + strlen(o->channel) + (size_t)o->candidates * 160;
}

static bool wbuf_reserve(conn_t *c, size_t more)
{
    if (c->wlen + more <= c->wcap)
        return true;
    size_t cap = c->wcap ? c->wcap : 16384;
    while (cap < c->wlen + more)
        cap *= 2;
    char *nb = realloc(c->wbuf, cap);
    if (nb == NULL)
        return false;
    c->wbuf = nb;
    c->wcap = cap;
    return true;
}

static bool queue_push(conn_t *c, uint64_t id, uint64_t t0, bool setup)
{
    if (c->q_len == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 64;
        inflight_t *nq = malloc(cap * sizeof *nq);
        if (nq == NULL)
            return false;
        for (size_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = nq;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] = (inflight_t){id, t0, setup};
    c->q_len++;
    return true;
}

static void mark_dirty(conn_t *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->b->dirty;
    c->b->dirty = c;
}

/* A RESP bulk string. */
static char *put_bulk(char *p, const char *s, size_t n)
{
    *p++ = '$';
    p = put_u64(p, n);
    p = put_str(p, "\r\n");
    memcpy(p, s, n);
    p += n;
    return put_str(p, "\r\n");
}

/* --target lua-cap: SCRIPT LOAD first on every connection; the requests
 * after it on the same connection find the script loaded (Redis answers a
 * connection in order). */
static bool conn_add_script_load(conn_t *c)
{
    if (!wbuf_reserve(c, sizeof LUA_CAP_SCRIPT + 64) || !queue_push(c, 0, 0, true))
        return false;
    char *p = c->wbuf + c->wlen;
    p = put_str(p, "*3\r\n");
    p = put_bulk(p, "SCRIPT", 6);
    p = put_bulk(p, "LOAD", 4);
    p = put_bulk(p, LUA_CAP_SCRIPT, sizeof LUA_CAP_SCRIPT - 1);
    c->wlen = (size_t)(p - c->wbuf);
    mark_dirty(c);
    return true;
}

/* --target lua-cap: one EVALSHA of the cap on a random member's key. */
static bool conn_add_lua_cap(conn_t *c, uint64_t t0)
{
    bench_t *b = c->b;
    if (!wbuf_reserve(c, 160) || !queue_push(c, ++b->next_id, t0, false))
        return false;
    char key[40], *k = key;
    k = put_str(k, "cap:{");
    k = put_u64_padded(k, rng_next_u64(&b->rng) % b->o.members, 12);
    k = put_str(k, "}:week");
    char *p = c->wbuf + c->wlen;
    p = put_str(p, "*6\r\n");
    p = put_bulk(p, "EVALSHA", 7);
    p = put_bulk(p, LUA_CAP_SHA, sizeof LUA_CAP_SHA - 1);
    p = put_bulk(p, "1", 1);
    p = put_bulk(p, key, (size_t)(k - key));
    p = put_bulk(p, LUA_CAP_LIMIT, sizeof LUA_CAP_LIMIT - 1);
    p = put_bulk(p, LUA_CAP_TTL_S, sizeof LUA_CAP_TTL_S - 1);
    c->wlen = (size_t)(p - c->wbuf);
    b->sent_total++;
    mark_dirty(c);
    return true;
}

/* Appends one request to c's write buffer. `t0` is the instant its latency
 * is measured from; `now` places a decide in the simulated week. */
static bool conn_add_request(conn_t *c, uint64_t t0, uint64_t now)
{
    bench_t *b = c->b;
    const options_t *o = &b->o;
    if (o->target == TARGET_LUA_CAP)
        return conn_add_lua_cap(c, t0);
    if (!wbuf_reserve(c, request_max_bytes(o)))
        return false;
    uint64_t id = ++b->next_id;
    if (!queue_push(c, id, t0, false))
        return false;
    double total_s = o->warmup_s + o->duration_s;
    double elapsed_s = (double)(now - b->start_ns) / 1e9;
    if (elapsed_s > total_s)
        elapsed_s = total_s;
    uint64_t ts = SIM_WEEK_START + (uint64_t)(elapsed_s / total_s * (SIM_WEEK_S - 1));
    uint64_t member = zipf_sample(&b->zipf, &b->rng);

    char *p = c->wbuf + c->wlen;
    p = put_str(p, "{\"op\":\"decide\",\"id\":");
    p = put_u64(p, id);
    /* m00000000 is the most popular member: the ids scripts/gen_members.py
     * loads features for, so bench.sh can give every member a history. */
    p = put_str(p, ",\"member\":\"m");
    p = put_u64_padded(p, member - 1, 8);
    p = put_str(p, "\",\"channel\":\"");
    p = put_str(p, o->channel);
    p = put_str(p, "\",\"opportunity\":\"");
    p = put_str(p, b->nonce);
    *p++ = '-';
    p = put_u64(p, (uint64_t)c->index);
    *p++ = '-';
    p = put_u64(p, ++c->seq);
    p = put_str(p, "\",\"ts\":");
    p = put_u64(p, ts);
    p = put_str(p, ",\"candidates\":[");
    /* K distinct messages from the catalogue: a random start and a stride
     * coprime with the catalogue size. */
    uint64_t r = rng_next_u64(&b->rng);
    uint64_t start = r % b->catalogue;
    for (int k = 0; k < o->candidates; k++) {
        uint64_t msg = (start + (uint64_t)k * 37u) % b->catalogue;
        uint64_t bits = rng_next_u64(&b->rng);
        if (k > 0)
            *p++ = ',';
        p = put_str(p, "{\"id\":\"msg-");
        p = put_u64(p, msg);
        p = put_str(p, "\",\"score\":");
        p = put_milli(p, (bits & 0xffff) % 1000);
        p = put_str(p, ",\"features\":{\"freshness\":");
        p = put_milli(p, ((bits >> 16) & 0xffff) % 1000);
        p = put_str(p, ",\"relevance\":");
        p = put_milli(p, ((bits >> 32) & 0xffff) % 1000);
        p = put_str(p, ",\"novelty\":");
        p = put_milli(p, (bits >> 48) % 1000);
        p = put_str(p, (msg & 1) ? "},\"tags\":[\"promo\"]}" : "},\"tags\":[\"social\"]}");
    }
    p = put_str(p, "]}\n");
    c->wlen = (size_t)(p - c->wbuf);
    b->sent_total++;
    mark_dirty(c);
    return true;
}

/* ------------------------------------------------------------------ */
/* Writing: one write per connection per loop turn                    */

static void conn_flush(conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    c->writing = false;
    c->flen = 0;
    if (status < 0) {
        if (!c->closed)
            conn_fail(c, uv_strerror(status));
        return;
    }
    conn_flush(c);
}

static void conn_flush(conn_t *c)
{
    if (c->closed || c->writing || c->wlen == 0)
        return;
    uv_buf_t buf = uv_buf_init(c->wbuf, (unsigned)c->wlen);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == (int)c->wlen) {
        c->wlen = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_fail(c, uv_strerror(n));
        return;
    }
    size_t off = n > 0 ? (size_t)n : 0;
    /* Hand the rest to libuv in the spare buffer; keep gathering in wbuf. */
    size_t rest = c->wlen - off;
    if (c->fcap < rest) {
        char *nb = realloc(c->fbuf, rest);
        if (nb == NULL) {
            conn_fail(c, "out of memory");
            return;
        }
        c->fbuf = nb;
        c->fcap = rest;
    }
    memcpy(c->fbuf, c->wbuf + off, rest);
    c->flen = rest;
    c->wlen = 0;
    c->writing = true;
    c->write_req.data = c;
    uv_buf_t wb = uv_buf_init(c->fbuf, (unsigned)c->flen);
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
    if (rc < 0) {
        c->writing = false;
        conn_fail(c, uv_strerror(rc));
    }
}

static void flush_dirty(bench_t *b)
{
    while (b->dirty != NULL) {
        conn_t *c = b->dirty;
        b->dirty = c->dirty_next;
        c->dirty = false;
        conn_flush(c);
    }
}

/* ------------------------------------------------------------------ */
/* Load: closed and open loop                                         */

static void closed_loop_refill(conn_t *c, uint64_t now)
{
    while (!c->closed && c->q_len < (size_t)c->b->o.pipeline) {
        if (!conn_add_request(c, now, now)) {
            conn_fail(c, "out of memory");
            return;
        }
    }
}

static uint64_t intended_ns(const bench_t *b, uint64_t i)
{
    return b->start_ns + (uint64_t)((double)i * 1e9 / b->o.rate);
}

/* Sends every request whose intended time has come, as long as some
 * connection has room in its window; the rest wait (their latency keeps
 * growing from the intended time). */
static void open_loop_issue(bench_t *b, uint64_t now)
{
    if (b->phase != PHASE_RUNNING && b->phase != PHASE_DRAINING)
        return;
    int n = b->o.connections;
    while (b->issued < b->total_due && intended_ns(b, b->issued) <= now) {
        conn_t *c = NULL;
        for (int tries = 0; tries < n; tries++) {
            conn_t *cand = &b->conns[b->rr];
            b->rr = (b->rr + 1) % n;
            if (!cand->closed && cand->q_len < (size_t)b->o.pipeline) {
                c = cand;
                break;
            }
        }
        if (c == NULL)
            break; /* every window full: replies will call us again */
        if (!conn_add_request(c, intended_ns(b, b->issued), now)) {
            conn_fail(c, "out of memory");
            continue;
        }
        b->issued++;
    }
    flush_dirty(b);
    schedule_next_send(b, now);
}

#ifdef __linux__
static void on_timerfd(uv_poll_t *h, int status, int events)
{
    bench_t *b = h->data;
    uint64_t expirations;
    if (read(b->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        return;
    open_loop_issue(b, uv_hrtime());
}
#else
static void on_fallback_timer(uv_timer_t *t) { open_loop_issue(t->data, uv_hrtime()); }
#endif

/* Arms the send timer for the next intended send time. */
static void schedule_next_send(bench_t *b, uint64_t now)
{
    if (!b->open_loop || b->issued >= b->total_due || b->phase == PHASE_DONE)
        return;
    uint64_t due = intended_ns(b, b->issued);
    uint64_t wait = due > now ? due - now : 1;
#ifdef __linux__
    /* uv_hrtime and timerfd both use CLOCK_MONOTONIC: arm relatively. */
    struct itimerspec its = {{0, 0}, {(time_t)(wait / NS_PER_S), (long)(wait % NS_PER_S)}};
    timerfd_settime(b->tfd, 0, &its, NULL);
#else
    uv_timer_start(&b->tfallback, on_fallback_timer, (wait + 999999) / 1000000, 0);
#endif
}

/* ------------------------------------------------------------------ */
/* Reading replies                                                    */

static int classify_reason(const char *line, size_t len)
{
    static const char key[] = "\"reason\":\"";
    const char *p = memmem(line, len, key, sizeof key - 1);
    if (p == NULL)
        return R_OTHER;
    p += sizeof key - 1;
    const char *end = memchr(p, '"', (size_t)(line + len - p));
    if (end == NULL)
        return R_OTHER;
    size_t n = (size_t)(end - p);
    for (int r = 0; r < R_OTHER; r++)
        if (strlen(reason_names[r]) == n && memcmp(reason_names[r], p, n) == 0)
            return r;
    return R_OTHER;
}

/* Counts a request's latency when it was due inside the measured window. */
static void record_latency(bench_t *b, const inflight_t *req, uint64_t now)
{
    if (req->t0_ns >= b->measure_ns) {
        latency_histogram_record(b->hist, now > req->t0_ns ? now - req->t0_ns : 0);
        if (now <= b->end_ns)
            b->done_in_window++;
    }
}

/* One reply line: it must answer the oldest request of this connection
 * ({"id":<that id>,"ok":...}); anything else is a protocol error. */
static void handle_reply(conn_t *c, const char *line, size_t len, uint64_t now)
{
    bench_t *b = c->b;
    if (c->q_len == 0) {
        b->protocol_errors++;
        return;
    }
    inflight_t req = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    b->replies_total++;

    static const char id_prefix[] = "{\"id\":";
    if (len < sizeof id_prefix || memcmp(line, id_prefix, sizeof id_prefix - 1) != 0) {
        b->protocol_errors++;
        return;
    }
    const char *p = line + sizeof id_prefix - 1, *end = line + len;
    uint64_t id = 0;
    while (p < end && *p >= '0' && *p <= '9')
        id = id * 10 + (uint64_t)(*p++ - '0');
    if (id != req.id) {
        b->protocol_errors++;
        return;
    }
    static const char ok_true[] = ",\"ok\":true", ok_false[] = ",\"ok\":false";
    if ((size_t)(end - p) >= sizeof ok_true - 1 && memcmp(p, ok_true, sizeof ok_true - 1) == 0) {
        b->reasons[classify_reason(line, len)]++;
    } else if ((size_t)(end - p) >= sizeof ok_false - 1 &&
               memcmp(p, ok_false, sizeof ok_false - 1) == 0) {
        b->not_ok++;
        if (b->not_ok <= 3)
            fprintf(stderr, "notifd-bench: error reply: %.*s\n", (int)(len > 300 ? 300 : len),
                    line);
    } else {
        b->protocol_errors++;
        return;
    }
    record_latency(b, &req, now);
}

/* --target lua-cap: one RESP reply (`type` and the rest of its first line;
 * a bulk string's payload for '$'), answering the oldest request of c. */
static void handle_resp_reply(conn_t *c, char type, const char *line, size_t len, uint64_t now)
{
    bench_t *b = c->b;
    if (c->q_len == 0) {
        b->protocol_errors++;
        return;
    }
    inflight_t req = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    if (req.setup) {
        if (type != '$' || len != sizeof LUA_CAP_SHA - 1 || memcmp(line, LUA_CAP_SHA, len) != 0) {
            b->protocol_errors++;
            fprintf(stderr, "notifd-bench: SCRIPT LOAD answered %c%.*s, not the cap's SHA1\n",
                    type, (int)(len > 200 ? 200 : len), line);
        }
        return;
    }
    b->replies_total++;
    if (type == ':' && len == 1 && (line[0] == '0' || line[0] == '1')) {
        b->reasons[line[0] == '1' ? R_SEND : R_CAP]++;
    } else if (type == '-') {
        b->not_ok++;
        if (b->not_ok <= 3)
            fprintf(stderr, "notifd-bench: error reply: %.*s\n", (int)(len > 300 ? 300 : len),
                    line);
    } else {
        b->protocol_errors++;
        return;
    }
    record_latency(b, &req, now);
}

/* Handles every whole reply line in c->rbuf; returns the bytes consumed. */
static size_t read_reply_lines(conn_t *c, uint64_t now)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->rbuf + start, '\n', c->rlen - start);
        if (nl == NULL)
            break;
        size_t len = (size_t)(nl - (c->rbuf + start));
        handle_reply(c, c->rbuf + start, len, now);
        start += len + 1;
    }
    return start;
}

/* Handles every whole RESP reply in c->rbuf (the cap answers integers,
 * errors and one bulk string; nothing nests); returns the bytes consumed.
 * A reply Redis would never send here counts as a protocol error. */
static size_t read_resp_replies(conn_t *c, uint64_t now)
{
    size_t start = 0;
    while (start < c->rlen) {
        const char *p = c->rbuf + start, *end = c->rbuf + c->rlen;
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (cr == NULL || cr + 1 >= end)
            break; /* the line is not all here yet */
        if (cr[1] != '\n' || (*p != ':' && *p != '-' && *p != '+' && *p != '$')) {
            conn_fail(c, "unexpected bytes from Redis");
            return c->rlen;
        }
        size_t line_len = (size_t)(cr - p) - 1;
        if (*p == '$') {
            uint64_t n = 0;
            const char *q = p + 1;
            while (q < cr && *q >= '0' && *q <= '9')
                n = n * 10 + (uint64_t)(*q++ - '0');
            if (q != cr || q == p + 1 || n > READ_BUF / 2) {
                conn_fail(c, "unexpected bulk string from Redis");
                return c->rlen;
            }
            if ((uint64_t)(end - (cr + 2)) < n + 2)
                break;
            handle_resp_reply(c, '$', cr + 2, (size_t)n, now);
            start = (size_t)(cr + 2 + n + 2 - c->rbuf);
        } else {
            handle_resp_reply(c, *p, p + 1, line_len, now);
            start = (size_t)(cr + 2 - c->rbuf);
        }
    }
    return start;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(READ_BUF - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = s->data;
    bench_t *b = c->b;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "notifd closed the connection" : uv_strerror((int)nread));
        return;
    }
    uint64_t now = uv_hrtime();
    c->rlen += (size_t)nread;
    size_t start = b->o.target == TARGET_LUA_CAP ? read_resp_replies(c, now)
                                                 : read_reply_lines(c, now);
    if (start > 0) {
        memmove(c->rbuf, c->rbuf + start, c->rlen - start);
        c->rlen -= start;
    } else if (c->rlen == READ_BUF) {
        conn_fail(c, "reply line longer than the read buffer");
        return;
    }
    if (b->phase == PHASE_RUNNING && !b->open_loop)
        closed_loop_refill(c, now);
    if (b->open_loop)
        open_loop_issue(b, now); /* room in a window: send what is overdue */
    else
        flush_dirty(b);
}

/* ------------------------------------------------------------------ */
/* Connections and phases                                             */

static void on_closed(uv_handle_t *h) { (void)h; }

static void conn_fail(conn_t *c, const char *why)
{
    if (c->closed)
        return;
    bench_t *b = c->b;
    c->closed = true;
    b->n_closed++;
    if (b->phase != PHASE_DONE) {
        b->protocol_errors += c->q_len;
        if (b->n_closed <= 3)
            fprintf(stderr, "notifd-bench: connection %d lost: %s (%zu replies owed)\n",
                    c->index, why, c->q_len);
    }
    c->q_len = 0;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void finish(bench_t *b)
{
    if (b->phase == PHASE_DONE)
        return;
    b->phase = PHASE_DONE;
    for (int i = 0; i < b->o.connections; i++) {
        conn_t *c = &b->conns[i];
        b->unfinished += c->q_len;
        c->q_len = 0;
        if (!c->closed) {
            c->closed = true;
            uv_close((uv_handle_t *)&c->tcp, on_closed);
        }
    }
    if (b->open_loop && b->total_due > b->issued)
        b->unfinished += b->total_due - b->issued;
    uv_close((uv_handle_t *)&b->ticker, on_closed);
    if (b->timer_open) {
#ifdef __linux__
        uv_close((uv_handle_t *)&b->tpoll, on_closed);
#else
        uv_close((uv_handle_t *)&b->tfallback, on_closed);
#endif
    }
}

static bool all_answered(const bench_t *b)
{
    if (b->open_loop && b->issued < b->total_due && b->n_closed < b->o.connections)
        return false;
    for (int i = 0; i < b->o.connections; i++)
        if (!b->conns[i].closed && b->conns[i].q_len > 0)
            return false;
    return true;
}

static void start_load(bench_t *b);

/* Every 10 ms: phase changes, and the connect deadline. */
static void on_tick(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = uv_hrtime();
    switch (b->phase) {
    case PHASE_CONNECTING:
        if (now - b->start_ns > (uint64_t)CONNECT_LIMIT_MS * 1000000u) {
            b->connect_failed = true;
            snprintf(b->connect_error, sizeof b->connect_error,
                     "only %d of %d connections established in %d s", b->n_connected,
                     b->o.connections, CONNECT_LIMIT_MS / 1000);
            finish(b);
        }
        break;
    case PHASE_RUNNING:
        if (now >= b->end_ns) {
            b->phase = PHASE_DRAINING;
            b->drain_deadline_ns = now + DRAIN_LIMIT_NS;
        }
        if (b->n_closed == b->o.connections)
            finish(b);
        break;
    case PHASE_DRAINING:
        if (all_answered(b) || now >= b->drain_deadline_ns || b->n_closed == b->o.connections)
            finish(b);
        break;
    default:
        break;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    bench_t *b = c->b;
    if (b->phase != PHASE_CONNECTING) {
        return;
    }
    if (status < 0) {
        b->connect_failed = true;
        snprintf(b->connect_error, sizeof b->connect_error, "%s", uv_strerror(status));
        c->closed = true;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        finish(b);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        b->connect_failed = true;
        snprintf(b->connect_error, sizeof b->connect_error, "%s", uv_strerror(rc));
        finish(b);
        return;
    }
    if (b->o.target == TARGET_LUA_CAP) {
        if (!conn_add_script_load(c)) {
            conn_fail(c, "out of memory");
            return;
        }
        flush_dirty(b);
    }
    if (++b->n_connected == b->o.connections)
        start_load(b);
}

static void start_load(bench_t *b)
{
    uint64_t now = uv_hrtime();
    b->phase = PHASE_RUNNING;
    b->start_ns = now;
    b->measure_ns = now + (uint64_t)(b->o.warmup_s * 1e9);
    b->end_ns = b->measure_ns + (uint64_t)(b->o.duration_s * 1e9);
    if (b->open_loop) {
        b->total_due = (uint64_t)ceil((double)(b->end_ns - b->start_ns) * b->o.rate / 1e9);
        open_loop_issue(b, now);
    } else {
        for (int i = 0; i < b->o.connections; i++)
            closed_loop_refill(&b->conns[i], now);
        flush_dirty(b);
    }
}

static void raise_fd_limit(int wanted)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)wanted + 64;
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

int main(int argc, char **argv)
{
    static bench_t bench;
    bench_t *b = &bench;
    if (!parse_options(argc, argv, &b->o))
        return 2;
    const options_t *o = &b->o;
    raise_fd_limit(o->connections);
    b->loop = uv_default_loop();
    b->open_loop = o->rate > 0;
    b->hist = malloc(sizeof *b->hist);
    b->conns = calloc((size_t)o->connections, sizeof *b->conns);
    if (b->hist == NULL || b->conns == NULL) {
        fprintf(stderr, "notifd-bench: out of memory\n");
        return 1;
    }
    latency_histogram_reset(b->hist);
    rng_seed(&b->rng, o->seed);
    zipf_init(&b->zipf, o->members, o->zipf_s);
    b->catalogue = (uint64_t)o->candidates * 2 > CATALOGUE_MIN ? (uint64_t)o->candidates * 2
                                                               : CATALOGUE_MIN;
    if (b->catalogue % 37 == 0)
        b->catalogue++; /* keep the stride coprime, so candidates stay distinct */
    /* The run nonce keeps opportunity ids unique across runs against the same
     * Redis: a repeated id would be answered from the idempotency record. */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    snprintf(b->nonce, sizeof b->nonce, "%" PRIx64,
             ((uint64_t)wall.tv_sec * 1000003u + (uint64_t)wall.tv_nsec / 1000u) ^
                 ((uint64_t)getpid() << 40));

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof port, "%d", o->port);
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(b->loop, &gai, NULL, o->host, port, &hints);
    if (rc != 0) {
        fprintf(stderr, "notifd-bench: cannot resolve %s: %s\n", o->host, uv_strerror(rc));
        return 1;
    }

    if (b->open_loop) {
#ifdef __linux__
        /* Default timer slack (50 us) would blur the send schedule. */
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->tfd < 0 || uv_poll_init(b->loop, &b->tpoll, b->tfd) != 0) {
            fprintf(stderr, "notifd-bench: timerfd: %s\n", strerror(errno));
            return 1;
        }
        b->tpoll.data = b;
        uv_poll_start(&b->tpoll, UV_READABLE, on_timerfd);
#else
        uv_timer_init(b->loop, &b->tfallback);
        b->tfallback.data = b;
#endif
        b->timer_open = true;
    }
    uv_timer_init(b->loop, &b->ticker);
    b->ticker.data = b;
    b->start_ns = uv_hrtime();
    uv_timer_start(&b->ticker, on_tick, 10, 10);

    for (int i = 0; i < o->connections; i++) {
        conn_t *c = &b->conns[i];
        c->b = b;
        c->index = i;
        uv_tcp_init(b->loop, &c->tcp);
        c->tcp.data = c;
        c->connect_req.data = c;
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, gai.addrinfo->ai_addr, on_connect);
        if (rc != 0) {
            b->connect_failed = true;
            snprintf(b->connect_error, sizeof b->connect_error, "%s", uv_strerror(rc));
            /* Close what was opened so far; the loop then runs dry. */
            for (int j = 0; j <= i; j++) {
                b->conns[j].closed = true;
                uv_close((uv_handle_t *)&b->conns[j].tcp, on_closed);
            }
            b->phase = PHASE_DONE;
            uv_close((uv_handle_t *)&b->ticker, on_closed);
            if (b->timer_open) {
#ifdef __linux__
                uv_close((uv_handle_t *)&b->tpoll, on_closed);
#else
                uv_close((uv_handle_t *)&b->tfallback, on_closed);
#endif
            }
            break;
        }
    }
    uv_freeaddrinfo(gai.addrinfo);
    uv_run(b->loop, UV_RUN_DEFAULT);
#ifdef __linux__
    if (b->open_loop)
        close(b->tfd);
#endif

    if (b->connect_failed && b->n_connected < o->connections) {
        fprintf(stderr, "notifd-bench: cannot connect to %s:%d: %s\n", o->host, o->port,
                b->connect_error);
        return 1;
    }

    uint64_t errors = b->not_ok + b->protocol_errors + b->unfinished;
    double window_s = o->duration_s;
    double rps = (double)b->done_in_window / window_s;
    const latency_histogram_t *h = b->hist;
    if (o->target == TARGET_LUA_CAP)
        fprintf(stderr,
                "notifd-bench: Lua cap in Redis, %s, %d connections x %d in flight, %" PRIu64
                " member keys (uniform)\n",
                b->open_loop ? "open loop" : "closed loop", o->connections, o->pipeline,
                o->members);
    else
        fprintf(stderr,
                "notifd-bench: %s, %d connections x %d in flight, %d candidates, %" PRIu64
                " members (zipf %.2f), channel %s\n",
                b->open_loop ? "open loop" : "closed loop", o->connections, o->pipeline,
                o->candidates, o->members, o->zipf_s, o->channel);
    if (b->open_loop)
        fprintf(stderr, "notifd-bench: target %.0f req/s, achieved %.0f req/s\n", o->rate, rps);
    fprintf(stderr,
            "notifd-bench: sent %" PRIu64 ", replies %" PRIu64 ", measured %" PRIu64
            ", mean %.3f ms, max %.3f ms\n",
            b->sent_total, b->replies_total, h->total, ms((uint64_t)latency_histogram_mean(h)),
            ms(h->total ? h->max : 0));
    fprintf(stderr, "notifd-bench: reasons:");
    if (o->target == TARGET_LUA_CAP)
        fprintf(stderr, " allowed=%" PRIu64 " capped=%" PRIu64, b->reasons[R_SEND],
                b->reasons[R_CAP]);
    else
        for (int r = 0; r < R_COUNT; r++)
            if (b->reasons[r] > 0)
                fprintf(stderr, " %s=%" PRIu64, reason_names[r], b->reasons[r]);
    fprintf(stderr, "\nnotifd-bench: errors: not_ok=%" PRIu64 " protocol=%" PRIu64
                    " unanswered=%" PRIu64 "\n",
            b->not_ok, b->protocol_errors, b->unfinished);
    printf("%s=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%" PRIu64 "\n",
           o->target == TARGET_LUA_CAP ? "lua_cap_rps" : "decide_rps", rps,
           ms(latency_histogram_quantile(h, 0.50)), ms(latency_histogram_quantile(h, 0.90)),
           ms(latency_histogram_quantile(h, 0.99)), ms(latency_histogram_quantile(h, 0.999)),
           errors);
    free(b->hist);
    for (int i = 0; i < o->connections; i++) {
        free(b->conns[i].wbuf);
        free(b->conns[i].fbuf);
        free(b->conns[i].q);
    }
    free(b->conns);
    uv_loop_close(b->loop);
    return 0;
}
