/* job.h - one trace record on its way from the event loop to the writer
 * thread (trace.c makes it, writer.c queues it, record.c formats it).
 *
 * A job is one allocation (the strings in blob[]) plus the bytes it
 * carries (req, resp: malloc'd, the job's). Everything in it is a copy:
 * the call may be gone by the time the thread formats it. */
#ifndef CRISP_TRACE_JOB_H
#define CRISP_TRACE_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "crisp/method.h"
#include "trace/filter.h"

/* A filter in use: jobs made under it hold a reference. */
struct trace_cfg {
    atomic_uint refs;
    struct trace_filter f;
    /* per method, from f: passes the method patterns and mutating-only;
     * is a polling call (sampled) */
    unsigned char keep_method[CRISP_RPC_COUNT];
    unsigned char polling[CRISP_RPC_COUNT];
};

struct trace_cfg *trace_cfg_ref(struct trace_cfg *c);
void trace_cfg_unref(struct trace_cfg *c);

enum trace_job_kind {
    TRACE_JOB_CALL = 0, /* a call's status: its record (unary: with both bodies) */
    TRACE_JOB_MSG,      /* one message of a streamed answer */
};

struct trace_job {
    struct trace_job *next;
    enum trace_job_kind kind;
    struct trace_cfg *cfg;
    const struct crisp_method *method; /* the static table's; NULL: unknown */
    enum crisp_api api;
    uint64_t id, parent, conn;
    int32_t stream;
    int pid, uid;
    int64_t wall_us;        /* the call's start (MSG: the message's time), wall
                             * clock, µs since the epoch */
    int64_t latency_us;     /* start to status (MSG: start to this message) */
    int64_t backend_us;     /* routed to status; -1: never routed */
    int code;
    unsigned nmsgs;         /* response messages (CALL), this one's number (MSG) */
    uint64_t req_bytes, resp_bytes;
    const char *backend, *handler, *message; /* in blob, or NULL */
    /* bodies (carried at the full level, or for the pod filter): a body
     * over the capture cap is not carried, only said to be cut */
    int bodies;             /* the record has bodies: req and resp are carried */
    uint8_t *req;           /* the request message (NULL: cut, or none) */
    size_t req_len;
    uint8_t *resp;          /* one response message (NULL: cut, or none) */
    size_t resp_len;
    uint64_t resp_declared; /* its size from its prefix */
    int has_resp;           /* a response message came */
    size_t size;            /* bytes it is charged in the queue */
    char blob[];
};

void trace_job_free(struct trace_job *j);

#endif
