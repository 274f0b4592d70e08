/*
 * notifctl.c - the operator CLI: one request over the producer protocol
 * (TCP, newline-delimited JSON; see README.md), one answer printed.
 *
 * It is a plain blocking client with a deadline: every connect, write and
 * read waits in poll() for at most what is left of --timeout-ms, so a hung
 * notifd costs an operator at most that long. When a token file is given,
 * the auth line and the request are pipelined on one connection, which the
 * protocol allows, and the two answers are read in order.
 *
 * Exit codes are for scripts: 0 the server answered ok:true, 1 it answered
 * ok:false (the error code and message are printed), 2 bad usage (including
 * an unreadable token file or bad JSON on stdin for `decide`), 3 no answer
 * (cannot connect, timeout, connection closed, a reply that is not JSON).
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "explain_print.h"
#include "notifd/version.h"

enum { EXIT_OK = 0, EXIT_SERVER_ERROR = 1, EXIT_USAGE = 2, EXIT_NO_ANSWER = 3 };

#define MAX_REPLY_BYTES (16u * 1024u * 1024u)
#define MAX_TOKEN_BYTES 4096

typedef struct options {
    const char *host;
    const char *port;
    const char *token_file;
    bool json;
    long timeout_ms;
    const char *ts;
    const char *message;
    const char *channel;
    const char *candidates;
} options_t;

/* The command table: what each command sends. `fields` names the positional
 * arguments, in order, as request fields. */
typedef struct command {
    const char *name;
    const char *op;
    int nargs;
    const char *fields[3];
    bool takes_ts;
    bool takes_message;
    const char *synopsis;
    const char *help;
    bool takes_channel;    /* --channel and --candidates (explain) */
} command_t;

static const command_t commands[] = {
    {"health", "health", 0, {NULL}, false, false, "health",
     "status, Redis state, version, uptime", false},
    {"stats", "stats", 0, {NULL}, false, false, "stats",
     "counters: requests, errors, connections, Redis", false},
    {"plan", "plan", 1, {"member"}, false, false, "plan MEMBER",
     "the member's stored plan (or the default plan)", false},
    {"replan", "replan", 1, {"member"}, true, false, "replan MEMBER [--ts T]",
     "run the slow policy for MEMBER now and store the plan", false},
    {"decide", "decide", 0, {NULL}, true, false, "decide [--ts T] < request.json",
     "one decision; the request object is read from stdin", false},
    {"feedback", "feedback", 3, {"member", "channel", "event"}, true, true,
     "feedback MEMBER CHANNEL EVENT [--message ID] [--ts T]",
     "record delivered/open/click/dismiss/unsubscribe/resubscribe/visit", false},
    {"planner-run", "planner_run", 0, {NULL}, true, false, "planner-run [--ts T]",
     "one planner pass as of T (default now)", false},
    {"explain", "explain", 1, {"member"}, true, false,
     "explain MEMBER [--channel C] [--ts T] [--candidates ID,...]",
     "what a decide would consider now, recording nothing", true},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: notifctl [OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Talks to a running notifd over its producer protocol and prints the answer.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-52s %s\n", commands[i].synopsis, commands[i].help);
    fprintf(out,
            "\n"
            "Options:\n"
            "  --host H          notifd host (default 127.0.0.1)\n"
            "  --port P          notifd port (default 7400)\n"
            "  --token-file F    file holding the auth token (when auth_token_file is set)\n"
            "  --json            print the raw JSON response instead of key: value lines\n"
            "  --timeout-ms N    give up after N ms: connect, send and answer (default 5000)\n"
            "  --ts T            unix seconds for replan, decide, feedback, planner-run,\n"
            "                    explain\n"
            "  --message ID      message id for feedback\n"
            "  --channel C       channel for explain (default: the first configured)\n"
            "  --candidates IDS  comma-separated message ids for explain (dedup, coin)\n"
            "  -h, --help        print this help;  -V, --version  print the version\n"
            "\n"
            "Exit codes: 0 ok, 1 notifd answered with an error, 2 bad usage,\n"
            "3 no answer (cannot connect, timeout, connection closed).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "notifctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'notifctl --help'.\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- deadline-bound socket I/O ------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, remaining_ms(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -1 : rc;
    }
}

/* Connects to the first address that accepts within the deadline; returns a
 * non-blocking socket or -1 with a reason in `why`. */
static int connect_deadline(const char *host, const char *port, int64_t deadline, char *why,
                            size_t why_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(why, why_size, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    snprintf(why, why_size, "no address for %s", host);
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, why_size, "socket: %s", strerror(errno));
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w == 0) {
                snprintf(why, why_size, "timed out connecting to %s:%s", host, port);
                close(fd);
                fd = -1;
                break; /* the deadline is spent for every other address too */
            }
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            rc = (w < 0 || err != 0) ? -1 : 0;
            errno = err != 0 ? err : errno;
        }
        if (rc == 0)
            break;
        snprintf(why, why_size, "cannot connect to %s:%s: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static bool send_all(int fd, const char *data, size_t len, int64_t deadline, char *why,
                     size_t why_size)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(why, why_size, "send failed: %s", strerror(errno));
            return false;
        }
        if (wait_fd(fd, POLLOUT, deadline) <= 0) {
            snprintf(why, why_size, "timed out sending the request");
            return false;
        }
    }
    return true;
}

/* A receive buffer; reply lines are cut from its front. */
typedef struct reader {
    char *buf;
    size_t len;
    size_t cap;
} reader_t;

/* Reads one reply line (without its newline) into a new string; NULL with a
 * reason on timeout, close or error. */
static char *read_line(int fd, reader_t *r, int64_t deadline, char *why, size_t why_size)
{
    for (;;) {
        char *nl = r->len > 0 ? memchr(r->buf, '\n', r->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - r->buf);
            char *line = strndup(r->buf, n);
            memmove(r->buf, nl + 1, r->len - n - 1);
            r->len -= n + 1;
            if (line == NULL)
                snprintf(why, why_size, "out of memory");
            return line;
        }
        if (r->len >= MAX_REPLY_BYTES) {
            snprintf(why, why_size, "reply longer than %u bytes", MAX_REPLY_BYTES);
            return NULL;
        }
        if (r->cap - r->len < 4096) {
            size_t cap = r->cap ? r->cap * 2 : 65536;
            char *b = realloc(r->buf, cap);
            if (b == NULL) {
                snprintf(why, why_size, "out of memory");
                return NULL;
            }
            r->buf = b;
            r->cap = cap;
        }
        ssize_t n = recv(fd, r->buf + r->len, r->cap - r->len, 0);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            snprintf(why, why_size, "notifd closed the connection before answering");
            return NULL;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(why, why_size, "receive failed: %s", strerror(errno));
            return NULL;
        }
        if (wait_fd(fd, POLLIN, deadline) <= 0) {
            snprintf(why, why_size, "timed out waiting for the answer");
            return NULL;
        }
    }
}

/* ---- output -------------------------------------------------------------- */

static bool is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

static void print_scalar(FILE *out, const json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), out);
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
    fputs(s != NULL ? s : "?", out);
    free(s);
}

/* key: value lines, nested keys joined with dots ("redis.state: ready"); an
 * array of scalars stays on one line, other arrays are indexed ("x[0].id"). */
static void print_flat(FILE *out, const char *prefix, const json_t *v)
{
    char key[512];
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        if (json_object_size(v) == 0) {
            fprintf(out, "%s: {}\n", prefix);
            return;
        }
        json_object_foreach((json_t *)v, k, child) {
            snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", k);
            print_flat(out, key, child);
        }
        return;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        bool scalars = true;
        json_array_foreach(v, i, child) scalars = scalars && is_scalar(child);
        if (scalars) {
            fprintf(out, "%s: ", prefix);
            if (json_array_size(v) == 0)
                fputs("[]", out);
            json_array_foreach(v, i, child) {
                if (i > 0)
                    fputs(", ", out);
                print_scalar(out, child);
            }
            fputc('\n', out);
            return;
        }
        json_array_foreach(v, i, child) {
            snprintf(key, sizeof key, "%s[%zu]", prefix, i);
            print_flat(out, key, child);
        }
        return;
    }
    fprintf(out, "%s: ", prefix);
    print_scalar(out, v);
    fputc('\n', out);
}

/* Prints one response; returns the exit code it stands for. */
static int report(const char *line, const json_t *resp, const command_t *cmd, bool raw)
{
    json_t *ok = json_object_get(resp, "ok");
    bool success = json_is_true(ok);
    if (raw) {
        printf("%s\n", line);
        return success ? EXIT_OK : EXIT_SERVER_ERROR;
    }
    if (success && strcmp(cmd->op, "explain") == 0) {
        explain_print(stdout, resp);
        return EXIT_OK;
    }
    if (success) {
        const char *k;
        json_t *v;
        bool any = false;
        json_object_foreach((json_t *)resp, k, v) {
            if (strcmp(k, "id") == 0 || strcmp(k, "ok") == 0)
                continue;
            print_flat(stdout, k, v);
            any = true;
        }
        if (!any)
            printf("ok\n");
        return EXIT_OK;
    }
    json_t *err = json_object_get(resp, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    fprintf(stderr, "notifctl: %s failed: %s: %s\n", cmd->name, code ? code : "error",
            msg ? msg : "(no message)");
    if (code != NULL && strcmp(code, "unknown_op") == 0)
        fprintf(stderr, "notifctl: this notifd does not implement op \"%s\"; "
                        "it may be older than this notifctl\n", cmd->op);
    return EXIT_SERVER_ERROR;
}

/* ---- request building ---------------------------------------------------- */

static bool parse_ts(const char *text, json_int_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0)
        return false;
    *out = (json_int_t)v;
    return true;
}

/* Reads the token: the file's first line, without surrounding whitespace. */
static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "notifctl: cannot read token file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[MAX_TOKEN_BYTES + 2];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t len = strcspn(s, "\r\n");
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0) {
        fprintf(stderr, "notifctl: token file %s is empty\n", path);
        return NULL;
    }
    return strndup(s, len);
}

/* Builds the request object, or returns NULL after printing a usage error. */
static json_t *build_request(const command_t *cmd, char **args, const options_t *o)
{
    json_t *req;
    if (strcmp(cmd->name, "decide") == 0) {
        json_error_t jerr;
        req = json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr);
        if (req == NULL) {
            fprintf(stderr, "notifctl: decide reads a JSON request object from stdin: "
                            "line %d: %s\n", jerr.line, jerr.text);
            return NULL;
        }
        if (!json_is_object(req)) {
            fprintf(stderr, "notifctl: decide reads a JSON object from stdin\n");
            json_decref(req);
            return NULL;
        }
        json_object_set_new(req, "op", json_string(cmd->op));
    } else {
        req = json_pack("{s:s}", "op", cmd->op);
        for (int i = 0; i < cmd->nargs; i++)
            json_object_set_new(req, cmd->fields[i], json_string(args[i]));
    }
    if (json_object_get(req, "id") == NULL)
        json_object_set_new(req, "id", json_string("notifctl"));
    if (o->ts != NULL) {
        json_int_t ts;
        if (!parse_ts(o->ts, &ts)) {
            usage_error("--ts wants unix seconds (a non-negative integer), not \"%s\"", o->ts);
            json_decref(req);
            return NULL;
        }
        json_object_set_new(req, "ts", json_integer(ts));
    }
    if (o->message != NULL)
        json_object_set_new(req, "message", json_string(o->message));
    if (o->channel != NULL)
        json_object_set_new(req, "channel", json_string(o->channel));
    if (o->candidates != NULL) {
        /* Ids without scores: what explain shows of them is their dedup
         * state and the coin for the best of them. */
        json_t *arr = json_array();
        const char *s = o->candidates;
        while (*s != '\0') {
            size_t n = strcspn(s, ",");
            if (n > 0)
                json_array_append_new(arr, json_pack("{s:s%}", "id", s, n));
            s += n + (s[n] == ',');
        }
        json_object_set_new(req, "candidates", arr);
    }
    return req;
}

/* ---- main ---------------------------------------------------------------- */

static const command_t *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Sends the request (after auth if a token is set) and prints the answer. */
static int exchange(const options_t *o, const char *token, const char *request,
                    const command_t *cmd)
{
    char why[256];
    int64_t deadline = now_ms() + o->timeout_ms;
    int fd = connect_deadline(o->host, o->port, deadline, why, sizeof why);
    if (fd < 0) {
        fprintf(stderr, "notifctl: %s\n", why);
        return EXIT_NO_ANSWER;
    }
    char *auth_line = NULL;
    if (token != NULL) {
        json_t *auth = json_pack("{s:s,s:s,s:s}", "op", "auth", "id", "notifctl-auth", "token",
                                 token);
        char *s = json_dumps(auth, JSON_COMPACT);
        json_decref(auth);
        if (s != NULL && asprintf(&auth_line, "%s\n", s) < 0)
            auth_line = NULL;
        free(s);
    }
    char *req_line = NULL;
    if (asprintf(&req_line, "%s\n", request) < 0)
        req_line = NULL;
    int rc = EXIT_NO_ANSWER;
    reader_t r = {0};
    char *line = NULL;
    if (req_line == NULL || (token != NULL && auth_line == NULL)) {
        fprintf(stderr, "notifctl: out of memory\n");
        goto out;
    }
    if ((auth_line != NULL && !send_all(fd, auth_line, strlen(auth_line), deadline, why,
                                        sizeof why)) ||
        !send_all(fd, req_line, strlen(req_line), deadline, why, sizeof why)) {
        fprintf(stderr, "notifctl: %s\n", why);
        goto out;
    }
    for (int i = token != NULL ? 0 : 1; i < 2; i++) {
        free(line);
        line = read_line(fd, &r, deadline, why, sizeof why);
        if (line == NULL) {
            fprintf(stderr, "notifctl: %s\n", why);
            goto out;
        }
        json_error_t jerr;
        json_t *resp = json_loads(line, 0, &jerr);
        if (!json_is_object(resp)) {
            fprintf(stderr, "notifctl: the answer is not a JSON object: %s\n", line);
            json_decref(resp);
            goto out;
        }
        if (i == 0 && !json_is_true(json_object_get(resp, "ok"))) {
            static const command_t auth_cmd = {.name = "auth", .op = "auth"};
            rc = report(line, resp, &auth_cmd, o->json);
            json_decref(resp);
            goto out;
        }
        if (i == 1)
            rc = report(line, resp, cmd, o->json);
        json_decref(resp);
    }
out:
    free(line);
    free(r.buf);
    free(auth_line);
    free(req_line);
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_HOST = 256, OPT_PORT, OPT_TOKEN, OPT_JSON, OPT_TIMEOUT, OPT_TS, OPT_MESSAGE,
           OPT_CHANNEL, OPT_CANDIDATES };
    static const struct option long_opts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"token-file", required_argument, NULL, OPT_TOKEN},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"ts", required_argument, NULL, OPT_TS},
        {"message", required_argument, NULL, OPT_MESSAGE},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"candidates", required_argument, NULL, OPT_CANDIDATES},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    options_t o = {.host = "127.0.0.1", .port = "7400", .timeout_ms = 5000};
    opterr = 0; /* we print our own messages */
    int opt;
    while ((opt = getopt_long(argc, argv, ":hV", long_opts, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case OPT_HOST: o.host = optarg; break;
        case OPT_PORT: {
            long p = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || p < 1 || p > 65535)
                return usage_error("--port wants 1..65535, not \"%s\"", optarg);
            o.port = optarg;
            break;
        }
        case OPT_TOKEN: o.token_file = optarg; break;
        case OPT_JSON: o.json = true; break;
        case OPT_TIMEOUT:
            o.timeout_ms = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || o.timeout_ms < 1 || o.timeout_ms > 3600000)
                return usage_error("--timeout-ms wants 1..3600000, not \"%s\"", optarg);
            break;
        case OPT_TS: o.ts = optarg; break;
        case OPT_MESSAGE: o.message = optarg; break;
        case OPT_CHANNEL: o.channel = optarg; break;
        case OPT_CANDIDATES: o.candidates = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf("notifctl %s\n", NOTIFD_VERSION); return EXIT_OK;
        case ':': return usage_error("option %s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "no command given");
    const command_t *cmd = find_command(argv[optind]);
    if (cmd == NULL)
        return usage_error("unknown command \"%s\"", argv[optind]);
    int nargs = argc - optind - 1;
    if (nargs != cmd->nargs) {
        fprintf(stderr, "notifctl: %s takes %d argument%s; usage: notifctl %s\n", cmd->name,
                cmd->nargs, cmd->nargs == 1 ? "" : "s", cmd->synopsis);
        return EXIT_USAGE;
    }
    if (o.ts != NULL && !cmd->takes_ts)
        return usage_error("--ts does not apply to %s", cmd->name);
    if (o.message != NULL && !cmd->takes_message)
        return usage_error("--message does not apply to %s", cmd->name);
    if (o.channel != NULL && !cmd->takes_channel)
        return usage_error("--channel does not apply to %s", cmd->name);
    if (o.candidates != NULL && !cmd->takes_channel)
        return usage_error("--candidates does not apply to %s", cmd->name);

    char *token = NULL;
    if (o.token_file != NULL && (token = read_token(o.token_file)) == NULL)
        return EXIT_USAGE;
    json_t *req = build_request(cmd, argv + optind + 1, &o);
    if (req == NULL) {
        free(token);
        return EXIT_USAGE;
    }
    char *request = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (request == NULL) {
        free(token);
        fprintf(stderr, "notifctl: out of memory\n");
        return EXIT_NO_ANSWER;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = exchange(&o, token, request, cmd);
    free(request);
    free(token);
    return rc;
}
