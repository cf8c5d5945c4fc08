/* log.c - structured log lines on stderr. */
#include <stdarg.h>
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

void crisp_log(enum crisp_log_level lvl, const char *event, const char *fmt, ...)
{
    if (lvl > crisp_log_threshold)
        return;
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
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
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
