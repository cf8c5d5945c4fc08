/* writer.c - the trace's writer thread (see writer.h). */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crisp/log.h"
#include "trace/record.h"
#include "trace/writer.h"

#define FLUSH_AT (256 * 1024)      /* bytes formatted before a write */
#define OUT_MAX (64u << 20)        /* one batch's text at most */
#define TICK_MS 50

static struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    /* under mu */
    struct trace_job *head, *tail;
    size_t queued, queue_max;
    uint64_t dropped;
    int stop, reopen;
    /* the thread's */
    char *path;
    int fd;
    size_t file_size, max_size;
    unsigned keep;
    uint64_t dropped_said;
    struct trace_pods *pods;
    /* read by anyone */
    atomic_uint_fast64_t records, filtered, bytes, write_errors, rotations;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static int64_t wall_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int is_stdout(void)
{
    return strcmp(W.path, "-") == 0;
}

/* ---- the file --------------------------------------------------------------- */

static int open_file(int extra_flags)
{
    int fd = open(W.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | extra_flags, 0640);
    struct stat st;
    if (fd < 0)
        return -1;
    if (extra_flags & O_NONBLOCK)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    W.file_size = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
    return fd;
}

static void reopen_file(void)
{
    if (is_stdout())
        return;
    if (W.fd >= 0)
        close(W.fd);
    W.fd = open_file(0);
    if (W.fd < 0)
        atomic_fetch_add(&W.write_errors, 1);
}

/* PATH.k -> PATH.k+1 ... PATH -> PATH.1, and a new PATH. */
static void rotate(void)
{
    size_t n = strlen(W.path) + 8;
    char from[n], to[n];
    for (unsigned k = W.keep; k > 1; k--) {
        snprintf(from, n, "%s.%u", W.path, k - 1);
        snprintf(to, n, "%s.%u", W.path, k);
        rename(from, to);
    }
    snprintf(to, n, "%s.1", W.path);
    rename(W.path, to);
    atomic_fetch_add(&W.rotations, 1);
    reopen_file();
}

static void write_all(const char *p, size_t n)
{
    int fd = is_stdout() ? STDOUT_FILENO : W.fd;
    while (n > 0) {
        ssize_t w = fd >= 0 ? write(fd, p, n) : -1;
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            atomic_fetch_add(&W.write_errors, 1);
            return;
        }
        p += w;
        n -= (size_t)w;
        W.file_size += (size_t)w;
        atomic_fetch_add(&W.bytes, (uint64_t)w);
    }
}

/* ---- batches ---------------------------------------------------------------- */

/* Writes out[0, upto) and keeps the rest at the front. */
static void flush_upto(struct jbuf *out, size_t upto)
{
    write_all(out->p, upto);
    memmove(out->p, out->p + upto, out->len - upto);
    jbuf_truncate(out, out->len - upto);
}

/* The record just appended at [mark, len) would take the file past its
 * size: what came before goes to this file, the record to the next. */
static void maybe_rotate(struct jbuf *out, size_t mark)
{
    if (!W.max_size || is_stdout() || W.file_size + out->len <= W.max_size)
        return;
    if (W.file_size + mark == 0)
        return; /* one record over the size: it gets a file of its own */
    flush_upto(out, mark);
    rotate();
}

static void format_one(struct jbuf *out, struct trace_job *j, uint64_t dropped)
{
    size_t mark = out->len;
    if (dropped > W.dropped_said) {
        trace_record_dropped(out, dropped - W.dropped_said, wall_now_us());
        W.dropped_said = dropped;
    }
    int rc = trace_record_format(out, j, W.pods);
    if (rc == 0)
        atomic_fetch_add(&W.filtered, 1);
    else if (rc > 0)
        atomic_fetch_add(&W.records, 1);
    else
        out->err = 0; /* over the batch's cap or out of memory: this record is lost */
    maybe_rotate(out, mark);
    if (out->len >= FLUSH_AT)
        flush_upto(out, out->len);
}

static void write_batch(struct trace_job *list, uint64_t dropped)
{
    struct jbuf out;
    jbuf_init(&out, OUT_MAX);
    while (list) {
        struct trace_job *next = list->next;
        format_one(&out, list, dropped);
        trace_job_free(list);
        list = next;
    }
    if (dropped > W.dropped_said) { /* drops after the last record */
        trace_record_dropped(&out, dropped - W.dropped_said, wall_now_us());
        W.dropped_said = dropped;
    }
    if (out.len)
        flush_upto(&out, out.len);
    jbuf_free(&out);
}

static void wait_tick(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += TICK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&W.cv, &W.mu, &ts);
}

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&W.mu);
        if (!W.head && !W.stop && !W.reopen)
            wait_tick();
        struct trace_job *list = W.head;
        W.head = W.tail = NULL;
        W.queued = 0;
        uint64_t dropped = W.dropped;
        int reopen = W.reopen, stop = W.stop;
        W.reopen = 0;
        pthread_mutex_unlock(&W.mu);
        if (reopen)
            reopen_file();
        write_batch(list, dropped);
        if (stop && !list)
            return NULL;
    }
}

/* ---- the loop's side -------------------------------------------------------- */

static int start_thread(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay the loop's */
    int rc = pthread_create(&W.th, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int trace_writer_start(const struct trace_writer_cfg *c, char *err, size_t errlen)
{
    assert(!W.running);
    W.path = strdup(c->path);
    W.max_size = c->max_size;
    W.keep = c->keep ? c->keep : 1;
    W.queue_max = c->queue_max;
    W.pods = trace_pods_new();
    if (!W.path || !W.pods) {
        snprintf(err, errlen, "out of memory");
        goto fail_mem;
    }
    if (!is_stdout() && (W.fd = open_file(O_NONBLOCK)) < 0) {
        snprintf(err, errlen, "%s: %s", W.path, strerror(errno));
        goto fail_mem;
    }
    pthread_cond_init(&W.cv, NULL);
    if (start_thread() != 0) {
        snprintf(err, errlen, "cannot start the trace writer thread");
        goto fail_thread;
    }
    W.running = 1;
    return 0;
fail_thread:
    pthread_cond_destroy(&W.cv);
    close(W.fd);
    W.fd = -1;
fail_mem:
    trace_pods_free(W.pods);
    free(W.path);
    W.path = NULL;
    W.pods = NULL;
    return -1;
}

int trace_writer_push(struct trace_job *j)
{
    pthread_mutex_lock(&W.mu);
    if (!W.running || W.stop || W.queued + j->size > W.queue_max) {
        W.dropped++;
        pthread_mutex_unlock(&W.mu);
        trace_job_free(j);
        return -1;
    }
    j->next = NULL;
    if (W.tail)
        W.tail->next = j;
    else
        W.head = j;
    W.tail = j;
    size_t before = W.queued;
    W.queued += j->size;
    int wake = before < W.queue_max / 4 && W.queued >= W.queue_max / 4;
    pthread_mutex_unlock(&W.mu);
    if (wake)
        pthread_cond_signal(&W.cv);
    return 0;
}

void trace_writer_reopen(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.mu);
    W.reopen = 1;
    pthread_mutex_unlock(&W.mu);
    pthread_cond_signal(&W.cv);
}

/* Joins the thread within 2 s; 0, or -1 when it hangs (in a write). */
static int join_bounded(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    return pthread_timedjoin_np(W.th, NULL, &ts) == 0 ? 0 : -1;
}

void trace_writer_stop(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.mu);
    W.stop = 1;
    pthread_mutex_unlock(&W.mu);
    pthread_cond_signal(&W.cv);
    if (join_bounded() < 0) {
        log_warn("trace_writer_stuck", "path=%s why=\"a write did not return within 2 s\"",
                 crisp_logq(W.path));
        pthread_detach(W.th);
        W.running = 0;
        return; /* its memory stays with it: the process is ending */
    }
    W.running = 0;
    if (W.fd >= 0)
        close(W.fd);
    W.fd = -1;
    pthread_cond_destroy(&W.cv);
    trace_pods_free(W.pods);
    free(W.path);
    W.pods = NULL;
    W.path = NULL;
    W.stop = 0;
}

void trace_writer_get_stats(struct trace_writer_stats *s)
{
    pthread_mutex_lock(&W.mu);
    s->dropped = W.dropped;
    s->queued = W.queued;
    pthread_mutex_unlock(&W.mu);
    s->records = atomic_load(&W.records);
    s->filtered = atomic_load(&W.filtered);
    s->bytes = atomic_load(&W.bytes);
    s->write_errors = atomic_load(&W.write_errors);
    s->rotations = atomic_load(&W.rotations);
}
