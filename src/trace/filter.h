/* filter.h - what the trace keeps: its level and filters.
 *
 * A filter is a value: parsed from options or a JSON file, never changed
 * once a trace uses it (a reload builds a new one). No I/O here: the JSON
 * text is the caller's to read.
 *
 *   level        off | summary (no bodies) | full (request and response
 *                decoded)
 *   methods      patterns (fnmatch) on "Version" or "RuntimeService/Version";
 *                a leading '!' excludes; with include patterns a method
 *                must match one, and no exclude pattern
 *   errors-only  calls that did not end OK
 *   mutating-only  calls that change something (not List*, *Status,
 *                Version, *Stats, ImageFsInfo, RuntimeConfig, Stream*,
 *                GetContainerEvents, ListMetricDescriptors)
 *   pod          "NAMESPACE/NAME" (patterns), or "uid:UID": calls about that
 *                pod (its config, or an ID it was given); repeatable
 *   sample       N: of the polling calls (List*, *Status, Version, *Stats,
 *                ImageFsInfo), 1 in N per method is kept; failed ones always
 *   redact-env   container environment values (and verbose info) redacted
 *   subcalls     also the calls crisp makes itself (a router's probes and
 *                fan-out parts)
 *   max-body     JSON bytes of one request or response (a longer one is
 *                cut, marked "@cut") */
#ifndef CRISP_TRACE_FILTER_H
#define CRISP_TRACE_FILTER_H

#include <stddef.h>

#include "crisp/method.h"

#define TRACE_MAX_PATTERNS 32
#define TRACE_MAX_PODS 16
#define TRACE_DEFAULT_MAX_BODY (64 * 1024)

enum trace_level {
    TRACE_OFF = 0,
    TRACE_SUMMARY,
    TRACE_FULL,
};

struct trace_filter {
    enum trace_level level;
    char *methods[TRACE_MAX_PATTERNS];
    size_t nmethods;
    char *pods[TRACE_MAX_PODS];
    size_t npods;
    unsigned errors_only : 1;
    unsigned mutating_only : 1;
    unsigned redact_env : 1;
    unsigned subcalls : 1;
    unsigned sample;   /* 0 or 1: every call */
    size_t max_body;
};

void trace_filter_init(struct trace_filter *f);
void trace_filter_free(struct trace_filter *f);
/* A deep copy; 0 or -1 (out of memory). */
int trace_filter_copy(struct trace_filter *dst, const struct trace_filter *src);

/* One setting by its option name without "trace-" ("level", "methods",
 * "errors-only"...; flags take NULL or "true"/"false"). "methods" and
 * "pod" add to what is there. 0, or -1 with a reason in err. */
int trace_filter_set(struct trace_filter *f, const char *name, const char *value, char *err,
                     size_t errlen);
/* The settings of a JSON object ({"level": "full", "methods": ["!List*"],
 * "errors-only": true, "pod": ["default/web-*"], "sample": 10...}) over f.
 * 0, or -1 with a reason in err (f is then unchanged). */
int trace_filter_load_json(struct trace_filter *f, const char *text, size_t n, char *err,
                           size_t errlen);
/* One line describing the filter, for the log. */
void trace_filter_describe(const struct trace_filter *f, char *out, size_t cap);

const char *trace_level_to_str(enum trace_level l);
int trace_method_is_mutating(const struct crisp_method *m);
int trace_method_is_polling(const struct crisp_method *m);
/* Whether the method passes the method patterns and mutating-only. */
int trace_filter_method(const struct trace_filter *f, const struct crisp_method *m);
/* Whether a pod (any of the three may be NULL) matches one pod pattern. */
int trace_filter_pod(const struct trace_filter *f, const char *ns, const char *name,
                     const char *uid);

#endif
