/* subcall.h - calls crisp makes itself, to one backend.
 *
 * A router backend in front of several engines asks them things no client
 * asked directly: whose is this ID (a status call to each), the parts of a
 * list to merge, the streams to merge, the call it hands on while it waits
 * for the answer (a new sandbox's ID). A subcall is a crisp_call with no
 * client: it takes the deadline and metadata of the call it serves (its
 * parent), its request bytes are its own, and its answers come as whole
 * messages, delivered from the event loop (never from inside the backend
 * that produced them).
 *
 * Lifetime: crisp_subcall_new, then crisp_subcall_start on a backend; then
 * on_msg (optional) for each message and on_done once; the subcall is freed
 * when on_done returns. crisp_subcall_cancel ends it at any time before
 * that, and no callback runs after it. */
#ifndef CRISP_SUBCALL_H
#define CRISP_SUBCALL_H

#include <stddef.h>
#include <stdint.h>

#include "crisp/backend.h"
#include "crisp/call.h"

struct crisp_subcall;

struct crisp_subcall_cbs {
    /* Optional: each response message as it comes; msg is malloc'd and now
     * the callee's. Return 0, or -1 to pause (back-pressure: the backend
     * stops reading its engine) until crisp_subcall_resume. Without it the
     * messages stay queued on sc->call for on_done (crisp_call_take_msg). */
    int (*on_msg)(struct crisp_subcall *sc, uint8_t *msg, size_t len);
    /* The subcall ended: sc->call->code, ->message, ->resp_md, ->trailer_md. */
    void (*on_done)(struct crisp_subcall *sc);
};

struct crisp_subcall {
    struct crisp_call *call; /* the call made; its fe_ctx is the subcall */
    const struct crisp_subcall_cbs *cbs;
    void *ud;                /* the caller's */
    size_t index;            /* the caller's (e.g. which backend) */
    struct crisp_backend *backend;
    struct event *deliver_ev;
    unsigned paused : 1;
};

/* A subcall of `method` with these request bytes (copied), serving parent
 * (its deadline and metadata; NULL: none). NULL when out of memory. */
struct crisp_subcall *crisp_subcall_new(struct event_base *base, const struct crisp_call *parent,
                                        enum crisp_rpc method, const uint8_t *req,
                                        size_t req_len, const struct crisp_subcall_cbs *cbs,
                                        void *ud);
/* Starts it on a backend. A request that does not decode, or a deadline
 * that has passed, ends it (on_done, from the loop). */
void crisp_subcall_start(struct crisp_subcall *sc, struct crisp_backend *be);
void crisp_subcall_cancel(struct crisp_subcall *sc);
void crisp_subcall_resume(struct crisp_subcall *sc);

#endif
