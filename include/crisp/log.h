/* log.h - structured log lines on stderr.
 *
 * One line per event: `ts=<RFC3339 µs> level=<lvl> event=<name> key=value...`.
 * Values that may hold spaces or quotes go through crisp_logq(), which
 * returns a quoted, escaped copy in one of a few rotating static buffers
 * (crisp is single-threaded; a quoted value lives until 8 more are made). */
#ifndef CRISP_LOG_H
#define CRISP_LOG_H

enum crisp_log_level {
    CRISP_LOG_ERROR = 0,
    CRISP_LOG_WARN,
    CRISP_LOG_INFO,
    CRISP_LOG_DEBUG,
};

extern enum crisp_log_level crisp_log_threshold;

const char *crisp_log_level_to_str(enum crisp_log_level lvl);
/* Returns 0 and sets *out, or -1 for an unknown name. */
int crisp_log_level_from_str(const char *s, enum crisp_log_level *out);

void crisp_log(enum crisp_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quote and escape a value for a log line; truncated at 400 bytes. */
const char *crisp_logq(const char *s);
const char *crisp_logqn(const char *s, size_t n);

#define CRISP_LOG_ENABLED(lvl) ((lvl) <= crisp_log_threshold)
#define log_error(ev, ...) crisp_log(CRISP_LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) crisp_log(CRISP_LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)                                                      \
    do {                                                                       \
        if (CRISP_LOG_ENABLED(CRISP_LOG_INFO))                                 \
            crisp_log(CRISP_LOG_INFO, ev, __VA_ARGS__);                        \
    } while (0)
#define log_debug(ev, ...)                                                     \
    do {                                                                       \
        if (CRISP_LOG_ENABLED(CRISP_LOG_DEBUG))                                \
            crisp_log(CRISP_LOG_DEBUG, ev, __VA_ARGS__);                       \
    } while (0)

#endif
