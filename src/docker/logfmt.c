/* logfmt.c - container logs (codec.h): the engine's log stream (GET
 * /containers/{id}/logs?timestamps=1: "<RFC 3339 time> <text>" messages,
 * one per multiplexed frame, or lines of a TTY's raw stream) -> the CRI's
 * log format the kubelet reads ("<time> <stream> <P|F> <text>\n", F ending
 * a line, P a piece of a longer one), with what a resume must skip; and
 * what a CRI log file's tail says about where it stopped. No I/O. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crisp/buf.h"
#include "docker/codec.h"

/* ---- the engine's stream -> CRI lines ------------------------------------------------------ */

void dk_logconv_init(struct dk_logconv *c, int tty, struct crisp_buf *out)
{
    memset(c, 0, sizeof(*c));
    c->tty = tty;
    c->out = out;
    c->in_ts = 1;
    c->stream = 1;
}

void dk_logconv_resume(struct dk_logconv *c, const char *ts, size_t n)
{
    snprintf(c->skip_ts, sizeof(c->skip_ts), "%s", ts);
    c->skip_n = n;
    c->skip_ns = dk_time_ns(ts);
}

/* The last line in the log is of this time (written, or skipped because
 * the log holds it): a later resume skips them all. */
static void count_last(struct dk_logconv *c)
{
    if (strcmp(c->last_ts, c->ts) == 0) {
        c->last_n++;
    } else {
        snprintf(c->last_ts, sizeof(c->last_ts), "%s", c->ts);
        c->last_n = 1;
    }
}

/* Whether a line of this time was written before the resume. */
static int skipped(struct dk_logconv *c)
{
    if (!c->skip_ts[0])
        return 0;
    if (strcmp(c->ts, c->skip_ts) == 0) {
        if (c->skip_n == 0)
            return 0;
        c->skip_n--;
        count_last(c);
        return 1;
    }
    int64_t ns = dk_time_ns(c->ts);
    if (ns && ns < c->skip_ns)
        return 1;
    c->skip_ts[0] = 0; /* past the resume point: no more parsing */
    return 0;
}

/* Whether time a is before time b: as strings when they have one format
 * (dockerd's fixed nanoseconds, podman's whole seconds), else parsed. */
static int ts_before(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la == lb)
        return strcmp(a, b) < 0;
    return dk_time_ns(a) < dk_time_ns(b);
}

/* A line older than the last one of its stream is one the engine gives
 * again (dockerd 20.10 replays a file it rotated to a follower: seen as
 * 40,000 lines twice in 100,000); a stream's own times never go back. */
static int replayed(struct dk_logconv *c)
{
    char *last = c->stream_last[c->stream == 2];
    if (last[0] && ts_before(c->ts, last)) {
        c->replays++;
        return 1;
    }
    snprintf(last, DK_LOG_TS_MAX, "%s", c->ts);
    return 0;
}

/* One CRI line of the message being read: its text so far, F or P; -1
 * (nothing taken) when *out cannot hold it. */
static int emit(struct dk_logconv *c, int full)
{
    size_t len = c->len;
    if (full && len && c->line[len - 1] == '\n')
        len--;
    char head[sizeof(c->ts) + 16];
    size_t tl = strlen(c->ts), hn = tl + 10; /* "<ts> stdout F " */
    memcpy(head, c->ts, tl);
    memcpy(head + tl, c->stream == 2 ? " stderr " : " stdout ", 8);
    head[tl + 8] = full ? 'F' : 'P';
    head[tl + 9] = ' ';
    if (crisp_buf_reserve(c->out, hn + len + 1) < 0)
        return -1; /* never cut: the caller flushes and feeds the rest */
    c->len = 0;
    if (replayed(c) || skipped(c))
        return 0;
    crisp_buf_append(c->out, head, hn);
    crisp_buf_append(c->out, c->line, len);
    crisp_buf_append(c->out, "\n", 1);
    count_last(c);
    c->lines++;
    return 0;
}

/* A byte of a message: its time first (up to the first space), then
 * text; a line longer than DK_LOG_LINE_MAX goes out in P pieces. */
static int message_byte(struct dk_logconv *c, uint8_t b)
{
    if (c->in_ts) {
        if (b != ' ' && c->ts_len < sizeof(c->ts) - 1) {
            c->ts[c->ts_len++] = (char)b;
            return 0;
        }
        c->ts[c->ts_len] = 0;
        c->in_ts = 0;
        if (b == ' ')
            return 0;
    }
    if (c->len == DK_LOG_LINE_MAX && emit(c, 0) < 0)
        return -1;
    c->line[c->len++] = (char)b;
    return 0;
}

/* The message ended: its last piece, F when it ends a line (or the
 * stream: containerd's rule for a last line without its newline); -1 (it
 * stays pending) when *out is full. */
static int message_end(struct dk_logconv *c, int eof)
{
    c->end_pending = 1;
    if ((!c->in_ts || c->ts_len) && emit(c, eof || (c->len && c->line[c->len - 1] == '\n')) < 0)
        return -1;
    c->end_pending = 0;
    c->in_ts = 1;
    c->ts_len = 0;
    c->len = 0;
    return 0;
}

/* k bytes of one message: its time byte by byte, then its text in runs;
 * how many were taken (fewer when *out is full). */
static size_t message_run(struct dk_logconv *c, const uint8_t *p, size_t k)
{
    size_t i = 0;
    for (; i < k && c->in_ts; i++)
        if (message_byte(c, p[i]) < 0)
            return i;
    while (i < k) {
        if (c->len == DK_LOG_LINE_MAX && emit(c, 0) < 0)
            return i;
        size_t take = k - i < DK_LOG_LINE_MAX - c->len ? k - i : DK_LOG_LINE_MAX - c->len;
        memcpy(c->line + c->len, p + i, take);
        c->len += take;
        i += take;
    }
    return i;
}

static int tty_feed(struct dk_logconv *c, const uint8_t *p, size_t n, size_t *used)
{
    for (*used = 0; *used < n;) {
        const uint8_t *nl = memchr(p + *used, '\n', n - *used);
        size_t run = nl ? (size_t)(nl - (p + *used)) + 1 : n - *used;
        size_t got = message_run(c, p + *used, run);
        *used += got;
        if (got < run)
            return -1;
        if (nl && (!c->in_ts || c->ts_len) && message_end(c, 0) < 0)
            return -1;
    }
    return 0;
}

/* Frames: [stream, 0, 0, 0, size32be] then size bytes, one message each. */
static int frames_feed(struct dk_logconv *c, const uint8_t *p, size_t n, size_t *used)
{
    for (*used = 0; *used < n;) {
        if (!c->frame_left) {
            c->hdr[c->hdr_len++] = p[(*used)++];
            if (c->hdr_len < 8)
                continue;
            c->stream = c->hdr[0];
            c->frame_left = ((size_t)c->hdr[4] << 24) | ((size_t)c->hdr[5] << 16) |
                            ((size_t)c->hdr[6] << 8) | c->hdr[7];
            c->hdr_len = 0;
            continue;
        }
        size_t run = c->frame_left < n - *used ? c->frame_left : n - *used;
        size_t got = message_run(c, p + *used, run);
        *used += got;
        c->frame_left -= got;
        if (got < run)
            return -1;
        if (!c->frame_left && message_end(c, 0) < 0)
            return -1;
    }
    return 0;
}

size_t dk_logconv_feed(struct dk_logconv *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    if (c->end_pending && message_end(c, 0) < 0)
        return 0;
    if (c->tty)
        tty_feed(c, p, n, &used);
    else
        frames_feed(c, p, n, &used);
    return used;
}

int dk_logconv_finish(struct dk_logconv *c)
{
    /* a TTY's last line without its newline */
    if (c->end_pending)
        return message_end(c, 0);
    return c->tty && (!c->in_ts || c->ts_len) ? message_end(c, 1) : 0;
}

/* ---- where a CRI log stopped ------------------------------------------------------------- */

static int64_t dk_time_ns_n(const char *s, size_t n)
{
    char t[DK_LOG_TS_MAX];
    assert(n < sizeof(t));
    memcpy(t, s, n);
    t[n] = 0;
    return dk_time_ns(t);
}

int dk_log_tail(const char *buf, size_t n, char ts[DK_LOG_TS_MAX], size_t *count, size_t *complete,
                int *to_start)
{
    size_t end = n;
    while (end && buf[end - 1] != '\n')
        end--; /* a last line without its newline: not whole */
    *complete = end;
    *count = 0;
    *to_start = 0;
    int fixed = ts[0] != 0;
    while (end) {
        size_t start = end - 1;
        while (start && buf[start - 1] != '\n')
            start--;
        size_t tl = strcspn(buf + start, " \n");
        if (start + tl >= end || tl == 0 || tl >= DK_LOG_TS_MAX || !dk_time_ns_n(buf + start, tl))
            break; /* not a CRI line (or cut at the buffer's start) */
        if (ts[0] && (strlen(ts) != tl || memcmp(ts, buf + start, tl) != 0))
            break;
        if (!ts[0]) {
            memcpy(ts, buf + start, tl);
            ts[tl] = 0;
        }
        (*count)++;
        if (start == 0) {
            *to_start = 1; /* every line back to the buffer's start has that time */
            break;
        }
        end = start;
    }
    return ts[0] && (*count || fixed) ? 0 : -1;
}

int dk_log_since(const char *ts, char *out, size_t cap)
{
    int64_t ns = dk_time_ns(ts);
    if (ns <= 0)
        return -1;
    int w = snprintf(out, cap, "%lld.%09lld", (long long)(ns / 1000000000LL),
                     (long long)(ns % 1000000000LL));
    return w > 0 && (size_t)w < cap ? 0 : -1;
}
