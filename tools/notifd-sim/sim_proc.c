/*
 * sim_proc.c - the redis-server and notifd processes a simulated run uses.
 *
 * Each run gets a fresh stack, as tests/integration/harness.py builds one: a
 * temporary directory, a redis-server on a free port with no persistence,
 * and notifd on a generated config (free port, that Redis, a private key
 * prefix, planner timer off so only the virtual-time planner_run passes plan,
 * no plan-validity grace (each weekly pass replans every member), and
 * generous Redis timeouts because a loaded 2-core machine must not turn
 * slow replies into degraded decisions). A fresh Redis and a fresh notifd
 * per run is what makes reruns identical: no features, counters or
 * threshold state carry over.
 *
 * Children get PR_SET_PDEATHSIG so they die with the simulator, and an
 * atexit/signal handler stops the ones it started (by pid, never by name).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define MAX_CHILDREN 8
static volatile pid_t children[MAX_CHILDREN];

static void child_add(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

static void child_forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

static void kill_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0)
            kill(children[i], SIGKILL);
}

static void on_signal(int sig)
{
    kill_children();
    signal(sig, SIG_DFL);
    raise(sig);
}

void sim_proc_install_cleanup(void)
{
    atexit(kill_children);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t spawn(char *const argv[], const char *log_path, const char *cwd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (cwd != NULL && chdir(cwd) != 0)
        _exit(127);
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* One request over a fresh blocking connection; the reply's first line. */
static int ask(int port, const char *req, char *reply, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t r = read(fd, reply + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(reply, '\n', got))
            break;
    }
    reply[got] = '\0';
    close(fd);
    return got > 0 ? 0 : -1;
}

static bool alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

static void stop_pid(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) != 0) {
            child_forget(pid);
            return;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    child_forget(pid);
}

static void tail_log(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char buf[2048];
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, sz > (long)sizeof buf - 1 ? sz - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    size_t l = strlen(err);
    snprintf(err + l, errlen - l, "\n--- %s ---\n%s", path, buf);
}

int sim_stack_start(sim_stack_t *s, const char *notifd_bin, const char *redis_bin,
                    json_t *config, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/notifd-sim-XXXXXX", tmp);
    if (mkdtemp(s->dir) == NULL) {
        snprintf(err, errlen, "mkdtemp %s: %s", s->dir, strerror(errno));
        return -1;
    }
    char path[512], port[16];
    s->redis_port = free_port();
    snprintf(port, sizeof port, "%d", s->redis_port);
    snprintf(path, sizeof path, "%s/redis.log", s->dir);
    char *rargv[] = {(char *)redis_bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", s->dir, NULL};
    s->redis_pid = spawn(rargv, path, NULL);
    if (s->redis_pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    child_add(s->redis_pid);
    char reply[4096];
    bool up = false;
    for (int i = 0; i < 200 && !up; i++) {
        if (!alive(s->redis_pid))
            break;
        up = ask(s->redis_port, "PING\r\n", reply, sizeof reply) == 0 &&
             strncmp(reply, "+PONG", 5) == 0;
        if (!up)
            sleep_ms(25);
    }
    if (!up) {
        snprintf(err, errlen, "redis-server (%s) did not start", redis_bin);
        tail_log(path, err, errlen);
        return -1;
    }

    s->notifd_port = free_port();
    char listen[64], spool[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->notifd_port);
    snprintf(spool, sizeof spool, "%s/spool", s->dir);
    json_object_set_new(config, "listen", json_string(listen));
    json_t *redis = json_object_get(config, "redis");
    if (!json_is_object(redis)) {
        redis = json_object();
        json_object_set_new(config, "redis", redis);
    }
    json_object_set_new(redis, "host", json_string("127.0.0.1"));
    json_object_set_new(redis, "port", json_integer(s->redis_port));
    json_t *events = json_object_get(config, "events");
    if (!json_is_object(events)) {
        events = json_object();
        json_object_set_new(config, "events", events);
    }
    /* The run's own spool, unless --set events.spool_dir keeps the events
     * somewhere that outlives the run (for tools/notifd-ope). */
    if (json_object_get(events, "spool_dir") == NULL)
        json_object_set_new(events, "spool_dir", json_string(spool));
    snprintf(path, sizeof path, "%s/notifd.json", s->dir);
    if (json_dump_file(config, path, JSON_INDENT(1)) != 0) {
        snprintf(err, errlen, "cannot write %s", path);
        return -1;
    }
    char log_path[512];
    snprintf(log_path, sizeof log_path, "%s/notifd.log", s->dir);
    char *nargv[] = {(char *)notifd_bin, "-c", path, NULL};
    s->notifd_pid = spawn(nargv, log_path, s->dir);
    if (s->notifd_pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    child_add(s->notifd_pid);
    up = false;
    for (int i = 0; i < 400 && !up; i++) {
        if (!alive(s->notifd_pid))
            break;
        if (ask(s->notifd_port, "{\"op\":\"health\"}\n", reply, sizeof reply) == 0) {
            json_t *h = json_loads(reply, JSON_DISABLE_EOF_CHECK, NULL);
            up = json_is_true(json_object_get(json_object_get(h, "redis"), "ready"));
            json_decref(h);
        }
        if (!up)
            sleep_ms(25);
    }
    if (!up) {
        snprintf(err, errlen, "notifd (%s) did not become ready", notifd_bin);
        tail_log(log_path, err, errlen);
        return -1;
    }
    return 0;
}

static void remove_tree(const char *dir)
{
    /* The run directory holds only files we created (config, logs, an empty
     * spool directory and Redis's working files): no recursion needed beyond
     * the spool. */
    const char *files[] = {"notifd.json", "notifd.log", "redis.log", "dump.rdb", NULL};
    char p[512];
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/spool", dir);
    rmdir(p);
    rmdir(dir);
}

void sim_stack_stop(sim_stack_t *s, bool keep_dir)
{
    stop_pid(s->notifd_pid);
    stop_pid(s->redis_pid);
    s->notifd_pid = s->redis_pid = 0;
    if (!keep_dir && s->dir[0])
        remove_tree(s->dir);
}

int sim_config_set(json_t *config, const char *key, const char *value, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loads(value, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        v = json_string(value);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    json_t *obj = config;
    char *save = NULL, *part = strtok_r(buf, ".", &save);
    while (part != NULL) {
        char *next = strtok_r(NULL, ".", &save);
        if (next == NULL) {
            json_object_set_new(obj, part, v);
            return 0;
        }
        json_t *child = json_object_get(obj, part);
        if (child == NULL) {
            child = json_object();
            json_object_set_new(obj, part, child);
        } else if (!json_is_object(child)) {
            snprintf(err, errlen, "config key %s: %s is not an object", key, part);
            json_decref(v);
            return -1;
        }
        obj = child;
        part = next;
    }
    json_decref(v);
    snprintf(err, errlen, "empty config key");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Diagnostic dump (plain RESP over one blocking socket)              */

static int resp_line(FILE *f, char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, f) == NULL)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* HGETALL key -> a JSON object of strings (numbers where they parse). */
static json_t *hgetall(FILE *f, const char *key)
{
    fprintf(f, "*2\r\n$7\r\nHGETALL\r\n$%zu\r\n%s\r\n", strlen(key), key);
    fflush(f);
    char line[1024];
    if (resp_line(f, line, sizeof line) != 0 || line[0] != '*')
        return NULL;
    long n = atol(line + 1);
    json_t *obj = json_object();
    char field[512];
    for (long i = 0; i < n; i++) {
        char val[512];
        char *dst = (i % 2 == 0) ? field : val;
        if (resp_line(f, line, sizeof line) != 0 || line[0] != '$')
            break;
        long len = atol(line + 1);
        if (len < 0 || len >= 511 || fread(dst, 1, (size_t)len + 2, f) != (size_t)len + 2)
            break;
        dst[len] = '\0';
        if (i % 2 == 1) {
            char *end;
            double x = strtod(val, &end);
            json_object_set_new(obj, field, *end == '\0' && end != val ? json_real(x)
                                                                       : json_string(val));
        }
    }
    return obj;
}

int sim_dump_members(const sim_member_t *ms, const sim_population_params_t *pp, int redis_port,
                     const char *path, int every, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)redis_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(err, errlen, "dump: cannot connect to redis");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r+");
    FILE *out = fopen(path, "w");
    if (f == NULL || out == NULL) {
        snprintf(err, errlen, "dump: cannot write %s", path);
        if (f)
            fclose(f);
        if (out)
            fclose(out);
        return -1;
    }
    for (int i = 0; i < pp->members; i += every > 0 ? every : 1) {
        const sim_member_t *m = &ms[i];
        char key[64];
        json_t *hidden = json_pack("{s:s,s:f,s:f,s:f,s:f}", "cohort", sim_cohorts[m->cohort].name,
                                   "visit_rate", m->visit_rate, "visit_per_open",
                                   m->visit_per_open, "phi", m->phi, "tolerance", m->tolerance);
        for (int c = 0; c < pp->n_channels; c++) {
            char k[32];
            snprintf(k, sizeof k, "open_%s", sim_channel_defs[pp->channel[c]].name);
            json_object_set_new(hidden, k, json_real(m->open_base[c]));
        }
        snprintf(key, sizeof key, "sim:member:{m%d}", i);
        json_t *features = hgetall(f, key);
        snprintf(key, sizeof key, "sim:plan:{m%d}", i);
        json_t *plan = hgetall(f, key);
        json_t *row = json_pack("{s:i,s:o,s:o*,s:o*}", "member", i, "hidden", hidden,
                                "features", features, "plan", plan);
        json_dumpf(row, out, JSON_COMPACT);
        fputc('\n', out);
        json_decref(row);
    }
    fclose(f);
    fclose(out);
    return 0;
}
