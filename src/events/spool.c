/*
 * spool.c - the event sink's on-disk buffer (see spool.h for the layout and
 * the invariants).
 *
 * The index is a sorted array of (sequence, size) for the segments on disk;
 * appends only ever add at the end, so it stays sorted without searching.
 * The directory is opened once and kept as a file descriptor: fsyncing it
 * is what makes a segment's creation or removal survive a power cut, and
 * the *at() calls keep working if the daemon's working directory moves.
 */
#include "notifd/events/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <jansson.h>

typedef struct spool_segment {
    uint64_t seq;
    uint64_t size;
} spool_segment_t;

struct spool {
    char dir[4096];
    int dir_fd;
    uint64_t segment_bytes;
    spool_segment_t *segs;          /* ascending by seq */
    size_t n_segs, cap_segs;
    uint64_t bytes;                 /* sum of segs[].size */
    uint64_t next_seq;
    int active_fd;                  /* -1: no active segment */
    uint64_t active_seq;
};

void spool_segment_name(char *out, size_t cap, uint64_t seq)
{
    snprintf(out, cap, "events-%020" PRIu64 ".ndjson", seq);
}

bool spool_parse_segment_name(const char *name, uint64_t *seq)
{
    static const char prefix[] = "events-", suffix[] = ".ndjson";
    size_t n = strlen(name), p = sizeof prefix - 1, s = sizeof suffix - 1;
    if (n != p + 20 + s || strncmp(name, prefix, p) != 0 || strcmp(name + p + 20, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = p; i < p + 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *seq = v;
    return true;
}

bool spool_line_is_event(const char *line, size_t len, size_t max_len)
{
    if (len > max_len)
        return false; /* checked first: a huge line is never parsed */
    json_error_t err;
    /* No flags: trailing bytes after the object are an error, and jansson
     * rejects invalid UTF-8 and overly deep nesting on its own. */
    json_t *v = json_loadb(line, len, 0, &err);
    bool ok = json_is_object(v);
    json_decref(v);
    return ok;
}

spool_run_t spool_next_run(const char *buf, size_t len, size_t off, const spool_run_limits_t *lim,
                           size_t *end, size_t *n_lines)
{
    size_t at = off, n = 0;
    spool_run_t kind = SPOOL_RUN_END;
    while (at < len) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t stop = nl ? (size_t)(nl - buf) : len;    /* the line without its newline */
        size_t next = nl ? stop + 1 : len;
        spool_run_t line_kind = spool_line_is_event(buf + at, stop - at, lim->max_line_bytes)
                                    ? SPOOL_RUN_EVENTS
                                    : SPOOL_RUN_BAD;
        if (kind != SPOOL_RUN_END && line_kind != kind)
            break;
        if (line_kind == SPOOL_RUN_EVENTS && n > 0 &&
            (n >= lim->max_lines || next - off > lim->max_bytes))
            break; /* a batch always takes its first line, however long */
        kind = line_kind;
        at = next;
        n++;
    }
    *end = at;
    *n_lines = n;
    return kind;
}

/* mkdir -p: the default spool_dir ("var/spool") is relative and usually
 * does not exist on a fresh install. */
static int make_dirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return -errno;
        tmp[i] = saved;
    }
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const spool_segment_t *)a)->seq, y = ((const spool_segment_t *)b)->seq;
    return x < y ? -1 : x > y;
}

static int index_add(spool_t *sp, uint64_t seq, uint64_t size)
{
    if (sp->n_segs == sp->cap_segs) {
        size_t cap = sp->cap_segs ? sp->cap_segs * 2 : 16;
        spool_segment_t *s = realloc(sp->segs, cap * sizeof *s);
        if (s == NULL)
            return -ENOMEM;
        sp->segs = s;
        sp->cap_segs = cap;
    }
    sp->segs[sp->n_segs++] = (spool_segment_t){seq, size};
    sp->bytes += size;
    return 0;
}

static spool_segment_t *index_find(spool_t *sp, uint64_t seq)
{
    for (size_t i = 0; i < sp->n_segs; i++)
        if (sp->segs[i].seq == seq)
            return &sp->segs[i];
    return NULL;
}

static void index_forget(spool_t *sp, uint64_t seq)
{
    spool_segment_t *s = index_find(sp, seq);
    if (s == NULL)
        return;
    sp->bytes -= s->size;
    size_t i = (size_t)(s - sp->segs);
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->n_segs - i - 1) * sizeof *s);
    sp->n_segs--;
}

spool_t *spool_open(const char *dir, uint64_t segment_bytes, char *why, size_t why_size)
{
    spool_t *sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        snprintf(why, why_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    sp->dir_fd = -1;
    sp->active_fd = -1;
    sp->segment_bytes = segment_bytes ? segment_bytes : 1;
    sp->next_seq = 1;
    if (strlen(dir) >= sizeof sp->dir) {
        snprintf(why, why_size, "path too long");
        free(sp);
        errno = ENAMETOOLONG;
        return NULL;
    }
    snprintf(sp->dir, sizeof sp->dir, "%s", dir);
    int rc = make_dirs(dir);
    if (rc != 0) {
        snprintf(why, why_size, "cannot create the directory: %s", strerror(-rc));
        free(sp);
        errno = -rc;
        return NULL;
    }
    sp->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = sp->dir_fd < 0 ? NULL : fdopendir(dup(sp->dir_fd));
    if (d == NULL) {
        int e = errno;
        snprintf(why, why_size, "cannot open the directory: %s", strerror(e));
        spool_close(sp);
        errno = e;
        return NULL;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        struct stat st;
        if (!spool_parse_segment_name(de->d_name, &seq))
            continue;
        if (fstatat(sp->dir_fd, de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (index_add(sp, seq, (uint64_t)st.st_size) != 0) {
            closedir(d);
            snprintf(why, why_size, "out of memory");
            spool_close(sp);
            errno = ENOMEM;
            return NULL;
        }
        if (seq >= sp->next_seq)
            sp->next_seq = seq + 1;
    }
    closedir(d);
    if (sp->n_segs > 1)
        qsort(sp->segs, sp->n_segs, sizeof *sp->segs, cmp_seg);
    return sp;
}

static void seal_active(spool_t *sp)
{
    if (sp->active_fd >= 0)
        close(sp->active_fd);
    sp->active_fd = -1;
}

void spool_close(spool_t *sp)
{
    if (sp == NULL)
        return;
    seal_active(sp);
    if (sp->dir_fd >= 0)
        close(sp->dir_fd);
    free(sp->segs);
    free(sp);
}

/* Pieces per writev(2): Linux's IOV_MAX (which <limits.h> shows only to
 * X/Open builds). */
#define WRITEV_MAX 1024

/* Writes all of `iov` at the end of `fd` (consuming `iov`), syncing if
 * asked; on any failure truncates back to where the file ended before, so
 * no partial line stays. */
static int append_all(int fd, struct iovec *iov, int iovcnt, bool sync)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    off_t before = st.st_size;
    int err = 0;
    for (;;) {
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            break;
        ssize_t w = writev(fd, iov, iovcnt < WRITEV_MAX ? iovcnt : WRITEV_MAX);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? -errno : -EIO;
            break;
        }
        for (size_t left = (size_t)w; left > 0;) {
            size_t k = left < iov->iov_len ? left : iov->iov_len;
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
            left -= k;
            if (iov->iov_len == 0) {
                iov++;
                iovcnt--;
            }
        }
    }
    if (err == 0 && sync && fdatasync(fd) != 0)
        err = -errno;
    if (err != 0 && ftruncate(fd, before) != 0) {
        /* Nothing better to do: the caller reports err and keeps the data;
         * a replay dead-letters the torn tail. */
    }
    return err;
}

int spool_append(spool_t *sp, const char *data, size_t len, bool sync, int64_t max_bytes)
{
    struct iovec one = {(void *)data, len};
    return spool_appendv(sp, &one, 1, sync, max_bytes);
}

int spool_appendv(spool_t *sp, struct iovec *iov, int iovcnt, bool sync, int64_t max_bytes)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (max_bytes >= 0 && sp->bytes + len > (uint64_t)max_bytes)
        return SPOOL_FULL;
    bool created = false;
    if (sp->active_fd < 0) {
        char name[SPOOL_SEGMENT_NAME_MAX];
        uint64_t seq = sp->next_seq;
        spool_segment_name(name, sizeof name, seq);
        int fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
                        0640);
        if (fd < 0)
            return -errno;
        int rc = index_add(sp, seq, 0);
        if (rc != 0) {
            close(fd);
            unlinkat(sp->dir_fd, name, 0);
            return rc;
        }
        sp->next_seq = seq + 1;
        sp->active_fd = fd;
        sp->active_seq = seq;
        created = true;
    }
    int rc = append_all(sp->active_fd, iov, iovcnt, sync);
    if (rc == 0 && created && sync && fsync(sp->dir_fd) != 0)
        rc = -errno;
    spool_segment_t *s = index_find(sp, sp->active_seq);
    if (rc != 0) {
        if (created) {
            /* Leave no empty segment behind. */
            char name[SPOOL_SEGMENT_NAME_MAX];
            spool_segment_name(name, sizeof name, sp->active_seq);
            seal_active(sp);
            unlinkat(sp->dir_fd, name, 0);
            index_forget(sp, sp->active_seq);
            sp->next_seq = sp->active_seq; /* reuse: the name is free again */
        }
        return rc;
    }
    s->size += len;
    sp->bytes += len;
    if (s->size >= sp->segment_bytes)
        seal_active(sp);
    return 0;
}

bool spool_oldest(spool_t *sp, uint64_t *seq)
{
    if (sp->n_segs == 0)
        return false;
    *seq = sp->segs[0].seq;
    if (sp->active_fd >= 0 && sp->active_seq == *seq)
        seal_active(sp);
    return true;
}

int spool_read(spool_t *sp, uint64_t seq, size_t max_bytes, char **buf, size_t *len)
{
    char name[SPOOL_SEGMENT_NAME_MAX];
    spool_segment_name(name, sizeof name, seq);
    int fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return -EFBIG;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *b = malloc(size + 1);
    if (b == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? -errno : -EIO;
            free(b);
            close(fd);
            return e;
        }
        got += (size_t)r;
    }
    close(fd);
    b[size] = '\0';
    *buf = b;
    *len = size;
    return 0;
}

int spool_remove(spool_t *sp, uint64_t seq)
{
    char name[SPOOL_SEGMENT_NAME_MAX];
    spool_segment_name(name, sizeof name, seq);
    if (sp->active_fd >= 0 && sp->active_seq == seq)
        seal_active(sp);
    int rc = unlinkat(sp->dir_fd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    index_forget(sp, seq);
    return rc;
}

int spool_quarantine(spool_t *sp, uint64_t seq)
{
    char name[SPOOL_SEGMENT_NAME_MAX], to[SPOOL_SEGMENT_NAME_MAX + 16];
    spool_segment_name(name, sizeof name, seq);
    snprintf(to, sizeof to, "quarantine-%s", name);
    if (sp->active_fd >= 0 && sp->active_seq == seq)
        seal_active(sp);
    int rc = renameat(sp->dir_fd, name, sp->dir_fd, to) == 0 ? 0 : -errno;
    index_forget(sp, seq);
    return rc;
}

int spool_dead_letter(spool_t *sp, const char *data, size_t len, bool sync)
{
    int fd = openat(sp->dir_fd, SPOOL_DEAD_LETTER_NAME,
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    struct iovec one = {(void *)data, len};
    int rc = append_all(fd, &one, 1, sync);
    close(fd);
    return rc;
}

uint64_t spool_bytes(const spool_t *sp) { return sp->bytes; }
size_t spool_segments(const spool_t *sp) { return sp->n_segs; }
const char *spool_dir(const spool_t *sp) { return sp->dir; }
