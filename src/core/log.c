/* log.c - structured log lines on stderr. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "crisp/log.h"

enum crisp_log_level crisp_log_threshold = CRISP_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *crisp_log_level_to_str(enum crisp_log_level lvl)
{
    if ((unsigned)lvl < sizeof(level_names) / sizeof(level_names[0]))
        return level_names[lvl];
    return "?";
}

int crisp_log_level_from_str(const char *s, enum crisp_log_level *out)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum crisp_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = CRISP_LOG_WARN;
        return 0;
    }
    return -1;
}

/* ---- rate limit ------------------------------------------------------------ *
 * A flood of one event (a client resetting calls in a loop, a backend down
 * under a busy kubelet) must not become megabytes of log per second: each
 * event name may write RATE_BURST lines at once and RATE_PER_S a second
 * after that (info, warn and error lines; debug lines are the operator's
 * explicit choice and are not limited). What is dropped is counted and
 * reported in one `log_suppressed` line once the flood is over. */
#define RATE_BURST 200
#define RATE_PER_S 50
#define RATE_SLOTS 64
#define SUMMARY_AFTER_US 1000000

struct rate_slot {
    const char *event;     /* the literal's address: events are literals */
    double tokens;
    int64_t at_us;         /* when tokens were counted */
    int64_t first_drop_us; /* first line dropped since the last summary */
    unsigned long dropped;
};

static struct rate_slot rate_slots[RATE_SLOTS];
static unsigned pending_summaries;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct rate_slot *slot_for(const char *event)
{
    size_t h = ((size_t)event >> 4) % RATE_SLOTS;
    for (size_t i = 0; i < RATE_SLOTS; i++) {
        struct rate_slot *sl = &rate_slots[(h + i) % RATE_SLOTS];
        if (sl->event == event)
            return sl;
        if (!sl->event) {
            sl->event = event;
            sl->tokens = RATE_BURST;
            sl->at_us = mono_us();
            return sl;
        }
    }
    return NULL; /* more events than slots: not limited */
}

static void write_line(enum crisp_log_level lvl, const char *event, const char *fmt, va_list ap);

static void log_summary(struct rate_slot *sl, int64_t now)
{
    char buf[160];
    snprintf(buf, sizeof(buf), "what=%s dropped=%lu over_s=%.1f limit=\"%d lines, then %d/s\"",
             sl->event, sl->dropped, (double)(now - sl->first_drop_us) / 1e6, RATE_BURST,
             RATE_PER_S);
    sl->dropped = 0;
    pending_summaries--;
    crisp_log(CRISP_LOG_WARN, "log_suppressed", "%s", buf);
}

/* Summaries of floods that ended (nothing dropped for a second). */
static void flush_summaries(int64_t now)
{
    for (size_t i = 0; i < RATE_SLOTS && pending_summaries; i++)
        if (rate_slots[i].dropped && now - rate_slots[i].first_drop_us >= SUMMARY_AFTER_US)
            log_summary(&rate_slots[i], now);
}

/* Whether a line of this event may be written now. */
static int rate_allows(const char *event)
{
    struct rate_slot *sl = slot_for(event);
    if (!sl)
        return 1;
    int64_t now = mono_us();
    sl->tokens += (double)(now - sl->at_us) * RATE_PER_S / 1e6;
    if (sl->tokens > RATE_BURST)
        sl->tokens = RATE_BURST;
    sl->at_us = now;
    if (sl->tokens >= 1) {
        sl->tokens -= 1;
        return 1;
    }
    if (!sl->dropped++) {
        sl->first_drop_us = now;
        pending_summaries++;
    }
    return 0;
}

void crisp_log(enum crisp_log_level lvl, const char *event, const char *fmt, ...)
{
    if (lvl > crisp_log_threshold)
        return;
    if (pending_summaries && strcmp(event, "log_suppressed") != 0)
        flush_summaries(mono_us());
    if (lvl != CRISP_LOG_DEBUG && !rate_allows(event))
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(lvl, event, fmt, ap);
    va_end(ap);
}

static void write_line(enum crisp_log_level lvl, const char *event, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec,
                     crisp_log_level_to_str(lvl), event);
    if (n < 0)
        return;
    if (fmt && *fmt && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

#define LOGQ_SLOTS 8
#define LOGQ_MAX 400

const char *crisp_logqn(const char *s, size_t n)
{
    static char slots[LOGQ_SLOTS][LOGQ_MAX * 2 + 8];
    static unsigned next;
    char *out = slots[next++ % LOGQ_SLOTS];
    size_t o = 0;
    out[o++] = '"';
    if (!s)
        n = 0;
    for (size_t i = 0; i < n && i < LOGQ_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    if (n > LOGQ_MAX) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}

const char *crisp_logq(const char *s)
{
    return crisp_logqn(s, s ? strlen(s) : 0);
}
