/*
 * sim_net.c - pipelined newline-delimited JSON over several TCP connections.
 *
 * The driver works in rounds: it pushes every request of a round (thousands
 * of members, each a few feedback events and one decide) onto the
 * connections, then sim_net_exchange() writes them all and reads every reply
 * with poll(), reading while it writes so that neither side's buffers can
 * fill up and stall the other (notifd stops reading a connection whose
 * replies are not being read). Replies come back in request order per
 * connection, which is how each is matched to its tag.
 *
 * Plain non-blocking sockets and poll() rather than libuv: the tool has one
 * thing to do at a time (a round), so a loop that owns the whole exchange is
 * simpler than callbacks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim.h"

#define SIM_NET_MAX_CONN 64

typedef struct sim_conn {
    int fd;
    char *out;
    size_t out_len, out_cap, out_off;
    char *in;
    size_t in_len, in_cap;
    uint32_t *tags;
    size_t n_tags, tags_cap, replies;
} sim_conn_t;

struct sim_net {
    int n;
    sim_conn_t conn[SIM_NET_MAX_CONN];
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

sim_net_t *sim_net_open(int port, int connections, char *err, size_t errlen)
{
    if (connections < 1 || connections > SIM_NET_MAX_CONN) {
        snprintf(err, errlen, "connections must be 1..%d", SIM_NET_MAX_CONN);
        return NULL;
    }
    sim_net_t *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    for (int i = 0; i < connections; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            snprintf(err, errlen, "cannot connect to notifd on port %d: %s", port,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            n->n = i;
            sim_net_close(n);
            return NULL;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        n->conn[i].fd = fd;
    }
    n->n = connections;
    return n;
}

void sim_net_close(sim_net_t *n)
{
    if (n == NULL)
        return;
    for (int i = 0; i < n->n; i++) {
        close(n->conn[i].fd);
        free(n->conn[i].out);
        free(n->conn[i].in);
        free(n->conn[i].tags);
    }
    free(n);
}

int sim_net_connections(const sim_net_t *n) { return n->n; }

void sim_net_push(sim_net_t *n, int conn, uint32_t tag, const char *line, size_t len)
{
    sim_conn_t *c = &n->conn[conn];
    if (grow((void **)&c->out, &c->out_cap, c->out_len + len + 1, 1) != 0 ||
        grow((void **)&c->tags, &c->tags_cap, c->n_tags + 1, sizeof *c->tags) != 0) {
        fprintf(stderr, "notifd-sim: out of memory\n");
        exit(1);
    }
    memcpy(c->out + c->out_len, line, len);
    c->out[c->out_len + len] = '\n';
    c->out_len += len + 1;
    c->tags[c->n_tags++] = tag;
}

/* Hands every complete line in the input buffer to fn. */
static void drain_lines(sim_conn_t *c, sim_reply_fn fn, void *arg)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->in + start, '\n', c->in_len - start);
        if (nl == NULL)
            break;
        size_t len = (size_t)(nl - (c->in + start));
        if (c->replies < c->n_tags)
            fn(arg, c->tags[c->replies], c->in + start, len);
        c->replies++;
        start += len + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
}

int sim_net_exchange(sim_net_t *n, sim_reply_fn fn, void *arg, char *err, size_t errlen)
{
    struct pollfd pfd[SIM_NET_MAX_CONN];
    int rc = 0;
    for (;;) {
        int active = 0;
        for (int i = 0; i < n->n; i++) {
            sim_conn_t *c = &n->conn[i];
            pfd[i].fd = c->fd;
            pfd[i].events = 0;
            pfd[i].revents = 0;
            if (c->out_off < c->out_len)
                pfd[i].events |= POLLOUT;
            if (c->replies < c->n_tags)
                pfd[i].events |= POLLIN;
            if (pfd[i].events)
                active++;
            else
                pfd[i].fd = -1;
        }
        if (active == 0)
            break;
        if (poll(pfd, (nfds_t)n->n, 60000) <= 0) {
            snprintf(err, errlen, "notifd did not answer for 60 s");
            rc = -1;
            break;
        }
        for (int i = 0; i < n->n && rc == 0; i++) {
            sim_conn_t *c = &n->conn[i];
            if (pfd[i].revents & POLLOUT) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0)
                    c->out_off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    snprintf(err, errlen, "write to notifd: %s", strerror(errno));
                    rc = -1;
                }
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (grow((void **)&c->in, &c->in_cap, c->in_len + 65536, 1) != 0) {
                    snprintf(err, errlen, "out of memory");
                    rc = -1;
                    break;
                }
                ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
                if (r > 0) {
                    c->in_len += (size_t)r;
                    drain_lines(c, fn, arg);
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    snprintf(err, errlen, "notifd closed the connection");
                    rc = -1;
                }
            }
        }
        if (rc != 0)
            break;
    }
    for (int i = 0; i < n->n; i++) {
        sim_conn_t *c = &n->conn[i];
        c->out_len = c->out_off = 0;
        c->n_tags = c->replies = 0;
    }
    return rc;
}

static void keep_reply(void *arg, uint32_t tag, const char *line, size_t len)
{
    (void)tag;
    json_t **out = arg;
    json_decref(*out);
    *out = json_loadb(line, len, 0, NULL);
}

json_t *sim_net_request(sim_net_t *n, const char *line, char *err, size_t errlen)
{
    json_t *reply = NULL;
    sim_net_push(n, 0, 0, line, strlen(line));
    if (sim_net_exchange(n, keep_reply, &reply, err, errlen) != 0) {
        json_decref(reply);
        return NULL;
    }
    if (reply == NULL)
        snprintf(err, errlen, "notifd's reply is not JSON");
    return reply;
}
