/* call.h - one CRI call, from the front end's HEADERS to its trailers.
 *
 * The call is the only object the front end and a backend share. The front
 * end fills the request side (method, metadata, deadline, the request
 * message) and dispatches it; the backend answers through
 * crisp_call_send_headers / crisp_call_send_msg (or crisp_call_send_raw,
 * framed bytes relayed as they arrive) / crisp_call_finish. The
 * front end drains the response queue through crisp_call_pull.
 *
 * Lifetime: reference counted. The front end holds one reference for as long
 * as its stream exists; a backend takes one in its start op and drops it
 * after it has finished the call or been cancelled. After crisp_call_cancel
 * (client gone, deadline) the backend's cancel op runs once; from then on the
 * backend must not touch the call beyond dropping its reference.
 *
 * Back-pressure: crisp_call_out_full() tells a streaming backend to stop
 * reading from its engine; the backend's drained op runs when the front end
 * has written the queue down to half the high-water mark, or when the
 * budget that was full has room again.
 *
 * Budgets (budget.h): the bytes of a call's request, and of its response
 * queue, are charged to its connection's budgets and to the process's. A
 * backend that can hold its engine back (the relay: flow control) reserves
 * response bytes before it lets them come (crisp_call_reserve); whatever is
 * queued beyond a reservation is charged as it is queued. */
#ifndef CRISP_CALL_H
#define CRISP_CALL_H

#include <stdint.h>
#include <stddef.h>
#include <event2/event.h>

#include "crisp/budget.h"
#include "crisp/buf.h"
#include "crisp/md.h"
#include "crisp/method.h"
#include "crisp/observe.h"

struct crisp_call;
struct crisp_backend;

enum crisp_call_state {
    CRISP_CALL_RECEIVING = 0, /* request still arriving */
    CRISP_CALL_DISPATCHED,    /* handed to a backend */
    CRISP_CALL_FINISHED,      /* status known, trailers queued */
};
const char *crisp_call_state_to_str(enum crisp_call_state s);

/* What the front end provides to the call. */
struct crisp_frontend_ops {
    /* Response headers, a message or the status became available. Must not
     * write to the socket from inside this callback (defer it). */
    void (*on_output)(struct crisp_call *call);
};

/* One queued piece of the response: a whole message (prefix[] then the
 * malloc'd message at data) or already-framed bytes relayed as they came
 * (prefix_len 0; data points at raw[], same allocation). */
struct crisp_out_chunk {
    struct crisp_out_chunk *next;
    uint8_t *data;
    size_t len;        /* bytes at data */
    size_t off;        /* bytes already pulled, prefix included */
    uint8_t prefix_len;
    uint8_t prefix[5];
    uint8_t raw[];
};

struct crisp_call {
    uint64_t id;
    uint64_t parent_id;         /* a call crisp made itself: the call it serves */
    unsigned refs;
    enum crisp_call_state state;
    const struct crisp_method *method;
    enum crisp_api api;
    struct event_base *base;

    /* request */
    struct crisp_md req_md;     /* relayable metadata */
    int64_t start_us;           /* monotonic */
    int64_t deadline_us;        /* monotonic, 0 = none */
    struct event *deadline_ev;
    uint8_t *req;               /* the request message, prefix excluded */
    size_t req_len;
    ProtobufCMessage *req_msg;  /* decoded form, see crisp_call_request */
    struct crisp_call_decoder {
        ProtobufCAllocator a;   /* counts and caps what decoding allocates */
        size_t used, cap;
        int refused;            /* the cap (or the process budget) was hit */
    } dec;

    /* response */
    struct crisp_md resp_md;    /* initial metadata from the backend */
    struct crisp_md trailer_md; /* extra trailers from the backend */
    int headers_ready;
    struct crisp_out_chunk *out_head, *out_tail;
    /* budgets: the connection's (NULL when it has none or after
     * crisp_call_detach_budgets) and the process's */
    struct crisp_budget *conn_req, *conn_resp;
    size_t req_charged;         /* request bytes charged */
    size_t resp_held;           /* response bytes charged: credit + queued */
    size_t resp_credit;         /* reserved and not yet queued */
    struct crisp_budget_wait budget_wait;
    size_t out_bytes;
    size_t out_high;            /* high-water mark for back-pressure */
    int out_was_full;           /* reached out_high since the last drained op */
    int whole_msgs;             /* answers as whole messages (crisp_call_set_whole_msgs) */
    size_t max_msg;             /* cap on one response message */
    unsigned nmsgs_out;
    int code;
    char *message;              /* decoded grpc-message, may be NULL */

    /* where it came from (the front end fills it; 0 / -1 when unknown) */
    struct crisp_call_origin {
        uint64_t conn;          /* the client connection's number */
        int32_t stream;         /* its HTTP/2 stream */
        int pid, uid;           /* the peer process on a unix socket (SO_PEERCRED) */
    } origin;
    int64_t routed_us;          /* monotonic: a backend took it (0: none yet) */
    int64_t finished_us;        /* monotonic: the status became known */
    void *obs[CRISP_OBS_SLOTS]; /* each observer's own (observe.h) */

    /* parties */
    const struct crisp_frontend_ops *fe;
    void *fe_ctx;
    struct crisp_backend *backend;
    void *be_ctx;
};

struct crisp_call *crisp_call_new(struct event_base *base,
                                  const struct crisp_frontend_ops *fe,
                                  void *fe_ctx, size_t max_msg);
void crisp_call_ref(struct crisp_call *call);
void crisp_call_unref(struct crisp_call *call);

/* Arms the deadline timer (timeout from grpc-timeout, in µs). */
int crisp_call_set_timeout(struct crisp_call *call, int64_t timeout_us);
/* Remaining time in µs (>= 1), or 0 when the call has no deadline. */
int64_t crisp_call_remaining_us(const struct crisp_call *call);

/* Decodes the request with the method's descriptor (cached). Returns NULL
 * if the bytes are not a valid message, or decoding them would allocate
 * more than the call may (call->dec.refused then). */
ProtobufCMessage *crisp_call_request(struct crisp_call *call);

/* Whether a string field of the request holds a NUL byte, which its
 * decoded form (a C string) would cut there: 1, with the field's path
 * ("config.labels.value") in path; 0 when none does (or the bytes are not
 * the method's message: decoding says so). For backends that read decoded
 * strings; the relay passes the bytes on whole (src/core/pbcheck.c). */
int crisp_call_request_nul(const struct crisp_call *call, char *path, size_t cap);

/* Hands the received call to its backend (chosen by the router). Any
 * failure finishes the call with a status. */
void crisp_call_dispatch(struct crisp_call *call);
/* Starts the call on this backend (a router backend handing a call on to
 * the engine that owns it): call->backend becomes be, counted in
 * be->inflight until the call is freed. */
void crisp_call_start_on(struct crisp_call *call, struct crisp_backend *be);
/* Takes the first queued response message out of a call whose answers come
 * as whole messages (crisp_call_set_whole_msgs): malloc'd, the caller frees
 * it. NULL when none is queued. For calls crisp makes itself (subcall.h). */
uint8_t *crisp_call_take_msg(struct crisp_call *call, size_t *len);
/* Answers must come as whole messages (send_msg/send_pb): set before the
 * call is dispatched. */
void crisp_call_set_whole_msgs(struct crisp_call *call);

/* Backend side. Return 0, or -1 when the call is already finished. */
int crisp_call_send_headers(struct crisp_call *call);
/* Takes ownership of msg (malloc'd) in all cases. */
int crisp_call_send_msg(struct crisp_call *call, uint8_t *msg, size_t len);
int crisp_call_send_pb(struct crisp_call *call, const ProtobufCMessage *m);
/* Queues response bytes that are already gRPC-framed (5-byte prefixes and
 * messages, cut anywhere), copied: a relay forwards DATA as it arrives
 * instead of waiting for whole messages. The caller checks the prefixes
 * (caps, compression) and counts messages in call->nmsgs_out. Not for
 * calls where crisp_call_wants_msgs() is true. */
int crisp_call_send_raw(struct crisp_call *call, const uint8_t *p, size_t len);
/* Whether this call's answers must come as whole messages (send_msg or
 * send_pb) because crisp rewrites them (v1alpha2 Version names the API the
 * client spoke). */
int crisp_call_wants_msgs(const struct crisp_call *call);
/* Finishes the call; message is plain text (may be NULL). Idempotent. */
void crisp_call_finish(struct crisp_call *call, int code, const char *message);
void crisp_call_finishf(struct crisp_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether a streaming backend should stop reading: the queue is at its
 * high-water mark, or a response budget is full (the call then waits on it
 * and the backend's drained op runs when there is room). */
int crisp_call_out_full(struct crisp_call *call);

/* Budgets. The front end attaches its connection's budgets to a new call
 * and detaches them (giving everything back) when its stream goes. */
void crisp_call_set_budgets(struct crisp_call *call, struct crisp_budget *req,
                            struct crisp_budget *resp);
void crisp_call_detach_budgets(struct crisp_call *call);
/* Request bytes about to be stored. Returns 0, or -1 when a budget is
 * full (the budget that refused is named by *which). */
int crisp_call_charge_request(struct crisp_call *call, size_t n, const struct crisp_budget **which);
/* Reserves n response bytes (a backend about to let them come). Returns 0,
 * or -1 when they do not fit: the call then waits, and the backend's
 * drained op runs when there is room. */
int crisp_call_reserve(struct crisp_call *call, size_t n);

/* Front end side. Copies up to n response bytes (prefixed messages) into
 * dst and returns how many; runs the backend's drained op as needed. */
size_t crisp_call_pull(struct crisp_call *call, uint8_t *dst, size_t n);
/* The client went away or the deadline passed: tells the backend, and
 * finishes the call with code/message if it was not finished. */
void crisp_call_cancel(struct crisp_call *call, int code, const char *message);

int64_t crisp_now_us(void);

/* Registers the log line of every call (event=call) as an observer. */
int crisp_call_log_init(void);

#endif
