/* docker_logs.c - container logs the kubelet can rotate: crisp follows
 * each container's log stream (GET /containers/{id}/logs?follow=1&
 * timestamps=1) and writes it in the CRI's format at the kubelet's
 * log_path itself (logfmt.c translates), as containerd's shim does.
 *
 *   StartContainer   opens log_path (its folder made, as containerd does;
 *                    a file there is appended to) before the start, then
 *                    follows the new container from its first line.
 *   ReopenContainerLog  the kubelet renamed log_path: the follower opens a
 *                    new file there; the renamed one does not grow.
 *   crisp starting   every container with a log path is followed again
 *                    from where its log stops: the last line's time in
 *                    log_path (or, when empty, in the newest rotated file
 *                    the kubelet left beside it), the lines of that time
 *                    skipped as many times as the file holds them. Nothing
 *                    is stored: the log file is the record.
 *   the stream ends  (the container stopped, the engine went away) the
 *                    container is inspected: followed again if it runs
 *                    (from the last line written), else done.
 *
 * One follower per container log, one engine connection each (their own
 * pool); a file another process follows (flock) is left to it. Every 30 s
 * the running containers crisp made are listed, and one that has no
 * follower gets one (an engine back after an outage, a container started
 * by another crisp). cri-dockerd's containers keep its links. */
#define _GNU_SOURCE /* asprintf */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

#define OUT_MAX (1u << 20)        /* CRI lines waiting for write() */
#define FEED_MAX (64u * 1024)     /* stream bytes converted at once */
#define FLUSH_AT (256u * 1024)    /* lines written at once at most */
#define TAIL_MAX (64u << 20)      /* at most this much of a log read back to resume */
#define RETRY_MAX_S 30
#define SCAN_S 30

struct dk_logf {
    struct crisp_list link;      /* in be->logfs */
    struct dk_be *be;
    char id[80];
    char *path;
    int fd;                      /* -1: closed */
    int tty;
    int have_tty;                /* tty known (an inspect said) */
    struct h1_req *req;          /* the log stream, or an inspect */
    struct dk_logconv *conv;
    struct crisp_buf out;
    struct event *retry;
    struct event *flush;         /* writes what the last reads converted */
    unsigned tries;
    char since[40];              /* the stream's since= ("0": from the start) */
    int streamed;                /* a stream ended well: done once it does not run */
    int final;                   /* ... after one more read from the last line */
    char written_ts[DK_LOG_TS_MAX]; /* the last line written, and how many of its time */
    size_t written_n;
};

/* ---- files ------------------------------------------------------------------------------ */

/* mkdir -p of path's folder. */
static int make_dirs(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    char *dir = dirname(copy);
    int rv = 0;
    for (char *p = dir + 1; rv == 0; p++) {
        if (*p != '/' && *p)
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            rv = -1;
        *p = c;
        if (!c)
            break;
    }
    free(copy);
    return rv;
}

/* log_path opened for appending (a link there replaced, its folder
 * made); locked too when lock. */
static int open_log(const char *path, int lock, int *fd, char *err, size_t errlen)
{
    struct stat st;
    *fd = -1;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        unlink(path); /* an older crisp's (or cri-dockerd's) link to the engine's file */
    if (make_dirs(path) < 0 ||
        (*fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640)) < 0) {
        snprintf(err, errlen, "cannot open the container log %s: %s", path, strerror(errno));
        return -1;
    }
    if (lock && flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "the container log %s is written by another process", path);
        close(*fd);
        *fd = -1;
        return -2;
    }
    return 0;
}

int dk_log_open(const char *path, int *fd, char *err, size_t errlen)
{
    return open_log(path, 1, fd, err, errlen);
}

/* The newest file the kubelet's rotation left beside path
 * (<log>.<YYYYMMDD-hhmmss>, not yet compressed); malloc'd, NULL if none. */
static char *newest_rotated(const char *path)
{
    char *copy = strdup(path), *copy2 = strdup(path), *best = NULL;
    const char *dir = copy ? dirname(copy) : "";
    DIR *d = copy && copy2 ? opendir(dir) : NULL;
    const char *base = copy2 ? basename(copy2) : "";
    size_t bl = strlen(base);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl <= bl + 1 || strncmp(e->d_name, base, bl) != 0 || e->d_name[bl] != '.' ||
            (nl > 3 && strcmp(e->d_name + nl - 3, ".gz") == 0) ||
            (nl > 4 && strcmp(e->d_name + nl - 4, ".tmp") == 0))
            continue;
        if (!best || strcmp(e->d_name, best) > 0) {
            free(best);
            best = strdup(e->d_name);
        }
    }
    char *full = NULL;
    if (best && asprintf(&full, "%s/%s", dir, best) < 0)
        full = NULL;
    if (d)
        closedir(d);
    free(best);
    free(copy);
    free(copy2);
    return full;
}

/* Where the log file at path stops: its last line's time (or, ts given,
 * that time's lines) and how many lines of that time it ends with, read
 * back in a growing window (podman's whole-second times: thousands of
 * lines may share one); *whole: the file holds nothing else. A last line
 * cut by a crash is dropped (when wfd, the file being appended to, is that
 * file). 0, or -1: none. */
static int file_tail(const char *path, int wfd, char ts[DK_LOG_TS_MAX], size_t *count, int *whole)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rv = -1, to_start = 0;
    struct stat st;
    char *buf = NULL;
    size_t n = 0, complete = 0;
    *whole = 0;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        for (size_t win = 64 * 1024;; win *= 2) {
            n = st.st_size < (off_t)win ? (size_t)st.st_size : win;
            char *nb = realloc(buf, n);
            if (!nb || pread(fd, nb, n, st.st_size - (off_t)n) != (ssize_t)n) {
                buf = nb ? nb : buf;
                rv = -1;
                break;
            }
            buf = nb;
            char t[DK_LOG_TS_MAX];
            snprintf(t, sizeof(t), "%s", ts);
            rv = dk_log_tail(buf, n, t, count, &complete, &to_start);
            if (rv == 0)
                snprintf(ts, DK_LOG_TS_MAX, "%s", t);
            if (rv < 0 || !to_start || n == (size_t)st.st_size || win >= TAIL_MAX)
                break;
        }
        *whole = rv == 0 && to_start && n == (size_t)st.st_size;
    }
    if (rv == 0 && complete < n && wfd >= 0)
        (void)!ftruncate(wfd, st.st_size - (off_t)(n - complete)); /* re-written whole */
    free(buf);
    if (fd >= 0)
        close(fd);
    return rv;
}

/* Where the log at path stops, or (empty, or all of one time) where the
 * newest file the kubelet rotated out before it stops: the resume point. */
static int log_tail(const char *path, int wfd, char ts[DK_LOG_TS_MAX], size_t *count)
{
    int whole = 0;
    ts[0] = 0;
    *count = 0;
    int found = file_tail(path, wfd, ts, count, &whole) == 0;
    if (found && !whole)
        return 0;
    char *rotated = newest_rotated(path);
    size_t more = 0;
    int w2;
    if (rotated && file_tail(rotated, -1, ts, &more, &w2) == 0) {
        *count += more; /* the same time across the rotation */
        found = 1;
    }
    free(rotated);
    return found ? 0 : -1;
}

/* ---- followers ---------------------------------------------------------------------------- */

static void follow_start(struct dk_logf *f);
static void follow_later(struct dk_logf *f);
static void resume_point(struct dk_logf *f);
static int flush_out(struct dk_logf *f);
static void on_flush(evutil_socket_t fd, short what, void *arg);

static struct dk_logf *logf_find(struct dk_be *be, const char *id)
{
    crisp_list_for_each(&be->logfs, it) {
        struct dk_logf *f = crisp_container_of(it, struct dk_logf, link);
        if (strcmp(f->id, id) == 0)
            return f;
    }
    return NULL;
}

static void logf_free(struct dk_logf *f)
{
    crisp_list_unlink(&f->link);
    if (f->req)
        h1_cancel(f->req);
    if (f->retry)
        event_free(f->retry);
    if (f->flush) {
        event_free(f->flush);
        if (f->fd >= 0)
            flush_out(f); /* what was read is written */
    }
    if (f->fd >= 0)
        close(f->fd);
    crisp_buf_free(&f->out);
    free(f->conv);
    free(f->path);
    free(f);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    follow_start(arg);
}

static struct dk_logf *logf_new(struct dk_be *be, const char *id, const char *path, int fd)
{
    struct dk_logf *f = calloc(1, sizeof(*f));
    if (f) {
        f->conv = malloc(sizeof(*f->conv));
        f->path = strdup(path);
        f->retry = evtimer_new(be->evb, on_retry, f);
        f->flush = evtimer_new(be->evb, on_flush, f);
    }
    if (!f || !f->conv || !f->path || !f->retry || !f->flush || strlen(id) >= sizeof(f->id)) {
        if (f) {
            f->fd = -1;
            logf_free(f); /* in no list yet */
        }
        log_warn("container_log_lost", "container=%s why=\"out of memory\"", id);
        return NULL;
    }
    f->be = be;
    f->fd = fd;
    snprintf(f->id, sizeof(f->id), "%s", id);
    snprintf(f->since, sizeof(f->since), "0");
    crisp_buf_init(&f->out, OUT_MAX);
    dk_logconv_init(f->conv, 0, &f->out);
    crisp_list_push_front(&be->logfs, &f->link);
    return f;
}

/* Writes the converted lines; -1 (logged) when the file will not take them. */
static int flush_out(struct dk_logf *f)
{
    size_t off = 0;
    if (f->fd < 0 && f->out.len) {
        crisp_buf_reset(&f->out); /* no file (a reopen failed): resumed once there is */
        return -1;
    }
    while (off < f->out.len) {
        ssize_t w = write(f->fd, f->out.data + off, f->out.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            log_warn("container_log_write_failed", "container=%s path=%s why=%s", f->id,
                     crisp_logq(f->path), crisp_logq(strerror(errno)));
            crisp_buf_reset(&f->out);
            return -1;
        }
        off += (size_t)w;
    }
    if (f->out.cap > FEED_MAX)
        crisp_buf_free(&f->out); /* a burst's memory given back */
    crisp_buf_reset(&f->out);
    snprintf(f->written_ts, sizeof(f->written_ts), "%s", f->conv->last_ts);
    f->written_n = f->conv->last_n;
    return 0;
}

/* Lines are written once the loop has read what is ready (one write for
 * a burst of the engine's small frames), or at FLUSH_AT bytes. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_logf *f = arg;
    if (flush_out(f) < 0 && f->req) {
        h1_cancel(f->req); /* resumed later from the last line written */
        f->req = NULL;
        resume_point(f);
        follow_later(f);
    }
}

static int on_log_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    (void)r;
    struct dk_logf *f = ud;
    while (n || f->conv->end_pending) {
        size_t used = dk_logconv_feed(f->conv, p, n < FEED_MAX ? n : FEED_MAX);
        if ((f->out.len >= FLUSH_AT || used < (n < FEED_MAX ? n : FEED_MAX) || f->conv->end_pending) &&
            flush_out(f) < 0)
            return -1; /* aborted: resumed later from the last line written */
        p += used;
        n -= used;
    }
    if (f->out.len && !evtimer_pending(f->flush, NULL)) {
        struct timeval now = {0, 0};
        evtimer_add(f->flush, &now);
    }
    return 0;
}

/* The next stream starts from the last line written (the same skip
 * rule as a resume after a restart); nothing written yet: as before. */
static void resume_point(struct dk_logf *f)
{
    char keep_ts[DK_LOG_TS_MAX];
    size_t keep_n = f->conv->skip_n;
    snprintf(keep_ts, sizeof(keep_ts), "%s", f->conv->skip_ts);
    dk_logconv_init(f->conv, f->tty, &f->out);
    if (f->written_ts[0] && dk_log_since(f->written_ts, f->since, sizeof(f->since)) == 0)
        dk_logconv_resume(f->conv, f->written_ts, f->written_n);
    else if (keep_ts[0])
        dk_logconv_resume(f->conv, keep_ts, keep_n); /* still skipping the first resume's */
}

static void on_log_done(struct h1_req *r, int err, const char *errmsg, int status,
                        const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    (void)body;
    (void)len;
    struct dk_logf *f = ud;
    f->req = NULL;
    evtimer_del(f->flush);
    if (!err)
        dk_logconv_finish(f->conv);
    flush_out(f);
    if (!err && status == 404) {
        logf_free(f); /* the container is gone */
        return;
    }
    if (err || status != 200)
        log_debug("container_log_stream", "container=%s status=%d why=%s", f->id, status,
                  crisp_logq(err ? errmsg : "engine error"));
    else
        f->tries = 0, f->streamed = 1;
    resume_point(f);
    f->have_tty = 0; /* inspect again: running or done */
    if (err || status != 200)
        follow_later(f);
    else
        follow_start(f);
}

static const struct h1_req_cbs log_cbs = {.on_body = on_log_body, .on_done = on_log_done};

static void follow_stream(struct dk_logf *f)
{
    char *target = NULL;
    if (asprintf(&target, "/v%s/containers/%s/logs?follow=1&stdout=1&stderr=1&timestamps=1&since=%s",
                 f->be->api, f->id, f->since) < 0) {
        follow_later(f);
        return;
    }
    struct h1_req_opts o = {.method = "GET", .target = target};
    f->req = h1_request(f->be->log_pool, &o, &log_cbs, f);
    free(target);
    if (!f->req)
        follow_later(f);
}

/* The container's inspect: followed while it runs or has logs to give. */
static void on_follow_inspect(struct h1_req *r, int err, const char *errmsg, int status,
                              const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_logf *f = ud;
    f->req = NULL;
    if (!err && status == 404) {
        logf_free(f);
        return;
    }
    cJSON *j = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    if (!j) {
        log_debug("container_log_inspect", "container=%s status=%d why=%s", f->id, status,
                  crisp_logq(err ? errmsg : "engine error"));
        follow_later(f);
        return;
    }
    int running = dk_entry_running(j);
    f->tty = dk_bool(dk_obj(j, "Config"), "Tty");
    f->conv->tty = f->tty;
    f->have_tty = 1;
    cJSON_Delete(j);
    if (running || !f->streamed || !f->final) {
        /* an exited one: read once more from the last line written, then
         * done (dockerd may end a follower's stream at the container's exit
         * before the last line without a newline is in its file) */
        f->final = !running && f->streamed;
        follow_stream(f);
    } else {
        logf_free(f);
    }
}

static const struct h1_req_cbs inspect_cbs = {.on_done = on_follow_inspect};

static void follow_start(struct dk_logf *f)
{
    assert(!f->req);
    char err[512];
    if (f->fd < 0 && dk_log_open(f->path, &f->fd, err, sizeof(err)) < 0) {
        log_debug("container_log_reopen", "container=%s why=%s", f->id, crisp_logq(err));
        follow_later(f);
        return;
    }
    if (f->have_tty) {
        follow_stream(f);
        return;
    }
    char target[200];
    snprintf(target, sizeof(target), "/v%s/containers/%s/json", f->be->api, f->id);
    struct h1_req_opts o = {.method = "GET", .target = target, .timeout_ms = 30000};
    f->req = h1_request(f->be->pool, &o, &inspect_cbs, f);
    if (!f->req)
        follow_later(f);
}

static void follow_later(struct dk_logf *f)
{
    unsigned s = f->tries < 5 ? 1u << f->tries : RETRY_MAX_S;
    struct timeval tv = {s < RETRY_MAX_S ? s : RETRY_MAX_S, 0};
    f->tries++;
    if (evtimer_add(f->retry, &tv) < 0)
        logf_free(f);
}

void dk_log_follow(struct dk_be *be, const char *id, const char *path, int fd, int tty)
{
    struct dk_logf *old = logf_find(be, id);
    if (old)
        logf_free(old);
    struct dk_logf *f = logf_new(be, id, path, fd);
    if (!f) {
        close(fd);
        return;
    }
    f->tty = tty;
    f->have_tty = 1;
    f->conv->tty = tty;
    follow_start(f);
}

/* Follows a container found running (or exited) with a log path, from
 * where its log stops; -1 (err) when its log cannot be opened (another
 * process follows it: -2). */
static int follow_resume(struct dk_be *be, const char *id, const char *path, char *err, size_t errlen)
{
    char ts[DK_LOG_TS_MAX];
    size_t count = 0;
    int fd, rv;
    if (logf_find(be, id))
        return 0;
    if ((rv = dk_log_open(path, &fd, err, errlen)) < 0)
        return rv;
    struct dk_logf *f = logf_new(be, id, path, fd);
    if (!f) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int found = log_tail(path, fd, ts, &count) == 0;
    if (found && dk_log_since(ts, f->since, sizeof(f->since)) == 0)
        dk_logconv_resume(f->conv, ts, count);
    log_debug("container_log_resume", "container=%s since=%s skip=%zu", id, f->since,
              found ? count : 0);
    follow_start(f);
    return 0;
}

int dk_log_reopen(struct dk_be *be, const char *id, const char *path, char *err, size_t errlen)
{
    struct dk_logf *f = logf_find(be, id);
    if (!f) /* crisp restarted before it resumed this one */
        return follow_resume(be, id, path, err, errlen) == -1 ? -1 : 0;
    int fd;
    if (open_log(f->path, 0, &fd, err, errlen) < 0)
        return -1;
    if (f->fd >= 0)
        close(f->fd); /* the renamed file: no longer written (and its lock gone) */
    f->fd = -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "the container log %s is written by another process", f->path);
        close(fd);
        return -1;
    }
    f->fd = fd;
    return 0;
}

void dk_log_forget(struct dk_be *be, const char *id)
{
    struct dk_logf *f = logf_find(be, id);
    if (f)
        logf_free(f);
}

/* ---- finding the containers to follow ------------------------------------------------------ */

static void scan_later(struct dk_be *be, unsigned s)
{
    struct timeval tv = {s, 0};
    evtimer_add(be->log_scan, &tv);
}

/* Follows the logs of the containers of a listing not followed yet (the
 * running ones only, when running_only). */
static void scan_list(struct dk_be *be, const cJSON *list, int running_only)
{
    const cJSON *c;
    char why[512];
    cJSON_ArrayForEach(c, list) {
        if (running_only && !dk_entry_running(c))
            continue;
        /* crisp's own containers (cri-dockerd's keep their links) */
        const char *path = dk_str(dk_entry_labels(c), DK_LABEL_LOGPATH);
        if (*path && *dk_str(dk_entry_labels(c), DK_LABEL_CREATED) &&
            follow_resume(be, dk_str(c, "Id"), path, why, sizeof(why)) == -1 && !be->log_scanned_all)
            log_warn("container_log_lost", "container=%s why=%s", dk_str(c, "Id"), crisp_logq(why));
    }
}

static void on_scan(struct h1_req *r, int err, const char *errmsg, int status,
                    const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    (void)errmsg;
    struct dk_be *be = ud;
    be->log_scan_req = NULL;
    cJSON *list = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    scan_list(be, list, 0);
    if (list)
        be->log_scanned_all = 1;
    cJSON_Delete(list);
    scan_later(be, SCAN_S);
}

static const struct h1_req_cbs scan_cbs = {.on_done = on_scan};

/* The first scan lists every container (an exited one's last lines may be
 * missing from its log), later ones the running; the view's listing (every
 * container) when it holds one, without an engine call. */
static void scan(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_be *be = arg;
    if (!be->api[0]) {
        dk_version_refresh(be);
        scan_later(be, 1);
        return;
    }
    const cJSON *view = dk_view_get(be, DK_VIEW_CONTAINERS);
    if (view) {
        scan_list(be, view, be->log_scanned_all);
        be->log_scanned_all = 1;
        scan_later(be, SCAN_S);
        return;
    }
    char *q = dk_label_filters(DK_TYPE_CONTAINER, NULL, 0, NULL), *target = NULL;
    if (!q || asprintf(&target, "/v%s/containers/json?%sfilters=%s", be->api,
                       be->log_scanned_all ? "" : "all=1&", q) < 0)
        target = NULL;
    free(q);
    struct h1_req_opts o = {.method = "GET", .target = target, .timeout_ms = 60000};
    be->log_scan_req = target ? h1_request(be->pool, &o, &scan_cbs, be) : NULL;
    free(target);
    if (!be->log_scan_req)
        scan_later(be, SCAN_S);
}

int dk_logs_init(struct dk_be *be)
{
    crisp_list_init(&be->logfs);
    be->log_scan = evtimer_new(be->evb, scan, be);
    if (!be->log_scan)
        return -1;
    scan_later(be, 0);
    return 0;
}

void dk_logs_free(struct dk_be *be)
{
    struct crisp_list *it;
    while ((it = crisp_list_first(&be->logfs)))
        logf_free(crisp_container_of(it, struct dk_logf, link));
    if (be->log_scan_req)
        h1_cancel(be->log_scan_req);
    if (be->log_scan)
        event_free(be->log_scan);
}
