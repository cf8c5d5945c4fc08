/* trace.h - protocol tracing: every CRI call decoded, timed and filtered,
 * written as JSON Lines (src/trace; README.md "Tracing").
 *
 * The tracer is an observer of calls (observe.h). On the event loop it
 * only decides (method patterns, errors, mutating calls, sampling), copies
 * what a record needs (the request bytes, the response bytes teed as they
 * pass, capped) and queues it; decoding to JSON, the pod filter, redaction
 * and the file are the writer thread's (writer.h). Without --trace nothing
 * is registered and the call path is untouched. */
#ifndef CRISP_TRACE_H
#define CRISP_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "crisp/opt.h"

/* --trace PATH and the --trace-* options. */
extern const struct crisp_opt_module crisp_trace_module;

/* Starts tracing when --trace was given (0 and nothing otherwise): opens
 * the file, starts the writer, registers the observer. -1 with a reason. */
int crisp_trace_start(struct event_base *base, char *err, size_t errlen);
/* SIGHUP: the --trace-filter file is read again (a bad one keeps the
 * running filter, the log says why) and the trace file reopened. */
void crisp_trace_reload(void);
/* Writes what is queued and stops (shutdown). */
void crisp_trace_stop(void);

struct crisp_trace_stats {
    int on;                 /* --trace was given */
    uint64_t records, dropped, filtered, bytes, write_errors, rotations;
    size_t queued;
};
void crisp_trace_get_stats(struct crisp_trace_stats *s);

#endif
