/* record.h - a trace job as one line of JSON (the writer thread's side).
 *
 * Records (JSON Lines; docs in README.md "Tracing"):
 *   {"ts": RFC 3339 UTC µs, "kind": "call", "id", ["parent"], ["conn",
 *    "stream"], ["pid", "uid"], "method", "service", "api", ["backend"],
 *    ["handler"], "code", "status", ["message"], "latency_us",
 *    ["backend_us"], "req_bytes", "resp_bytes", "msgs", ["request"],
 *    ["response"], ["cut"]}
 *   {"ts", "kind": "msg", "id", ..., "n", "at_us", "bytes", ["response"], ["cut"]}
 *   {"ts", "kind": "dropped", "count"}: records lost before this one
 * Bodies (full level) come from decoding the bytes the job carries; with a
 * pod filter the call is decoded to decide, whatever the level. */
#ifndef CRISP_TRACE_RECORD_H
#define CRISP_TRACE_RECORD_H

#include <stdint.h>

#include "trace/jbuf.h"
#include "trace/job.h"
#include "trace/pods.h"

/* Appends the job's line ('\n' included) to out. Returns 1, 0 when the pod
 * filter leaves it out (nothing appended), or out's JBUF_E_* error (out
 * is then cut back to where it was). */
int trace_record_format(struct jbuf *out, const struct trace_job *j, struct trace_pods *pods);
/* The line saying count records were dropped. */
int trace_record_dropped(struct jbuf *out, uint64_t count, int64_t wall_us);
/* RFC 3339, UTC, microseconds: "2025-01-02T03:04:05.000006Z" (28 bytes). */
void trace_format_time(int64_t wall_us, char out[32]);

#endif
