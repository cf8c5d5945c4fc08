/* observe.h - observers of calls: the log line, tracing, metrics.
 *
 * The call object reports what happens to it to the observers that asked
 * for it: the request is in and decoded (START), a backend took it (ROUTED),
 * a response message was queued whole (MSG_OUT) or relayed bytes were
 * queued as they came (RAW_OUT: gRPC-framed, cut anywhere), the status is
 * known (FINISH), the call is about to be freed (FREE). A hook costs one
 * test of a global mask when no observer wants that event.
 *
 * Observers run inside the call's code paths: they must not block, must not
 * touch the call beyond reading it and their own slot (call->obs[slot]),
 * and must not finish or cancel it. They are registered once, at start. */
#ifndef CRISP_OBSERVE_H
#define CRISP_OBSERVE_H

#include <stddef.h>
#include <stdint.h>

struct crisp_call;

enum crisp_obs_event {
    CRISP_OBS_START = 1u << 0,   /* p, n: the request message */
    CRISP_OBS_ROUTED = 1u << 1,  /* call->backend is set */
    CRISP_OBS_MSG_OUT = 1u << 2, /* p, n: one whole response message */
    CRISP_OBS_RAW_OUT = 1u << 3, /* p, n: relayed response bytes, framed */
    CRISP_OBS_FINISH = 1u << 4,  /* call->code, call->message */
    CRISP_OBS_FREE = 1u << 5,
};

#define CRISP_OBS_SLOTS 4

struct crisp_observer {
    const char *name;
    unsigned events; /* enum crisp_obs_event bits */
    void (*on_event)(struct crisp_observer *o, unsigned ev, struct crisp_call *call,
                     const uint8_t *p, size_t n);
    void *ud;
    unsigned slot;   /* its index in call->obs[], set when registered */
};

extern unsigned crisp_obs_mask;

/* Registers an observer (at most CRISP_OBS_SLOTS). 0, or -1 when full. */
int crisp_observe(struct crisp_observer *o);
/* Changes what an observer wants (e.g. tracing turned off at run time). */
void crisp_observe_events(struct crisp_observer *o, unsigned events);
void crisp_obs_emit(struct crisp_call *call, unsigned ev, const uint8_t *p, size_t n);

#define CRISP_OBS(call, ev, p, n)                                              \
    do {                                                                       \
        if (crisp_obs_mask & (ev))                                             \
            crisp_obs_emit((call), (ev), (p), (n));                            \
    } while (0)

#endif
