/* backend.h - the engine side of crisp, one ops struct per kind of engine.
 *
 * The core never branches on the kind of backend: it calls these ops.
 * A backend is created from a `--backend KIND:URL` argument. */
#ifndef CRISP_BACKEND_H
#define CRISP_BACKEND_H

#include <event2/event.h>

struct crisp_call;
struct crisp_backend;

struct crisp_backend_ops {
    const char *kind; /* "cri", "docker" */
    /* Parses the URL part of --backend and allocates the backend. Returns
     * NULL and writes a reason into err. Must not block or connect. */
    struct crisp_backend *(*create)(struct event_base *base, const char *url,
                                    char *err, size_t errlen);
    /* Starts a call: takes a reference, and eventually finishes the call
     * (crisp_call_finish) or is cancelled; then drops the reference. */
    void (*start)(struct crisp_backend *be, struct crisp_call *call);
    /* The call was cancelled; stop work for it and drop the reference. */
    void (*cancel)(struct crisp_backend *be, struct crisp_call *call);
    /* The call's response queue fell below its low-water mark. */
    void (*drained)(struct crisp_backend *be, struct crisp_call *call);
    /* Stops new work; in-flight calls get UNAVAILABLE. Then frees. */
    void (*destroy)(struct crisp_backend *be);
};

struct crisp_backend {
    const struct crisp_backend_ops *ops;
    char *name; /* "cri:unix:///run/containerd/containerd.sock" */
};

/* Builds a backend from "KIND:URL". NULL and a reason on failure. */
struct crisp_backend *crisp_backend_new(struct event_base *base,
                                        const char *spec, char *err,
                                        size_t errlen);
void crisp_backend_free(struct crisp_backend *be);

extern const struct crisp_backend_ops crisp_backend_cri_ops;
extern const struct crisp_backend_ops crisp_backend_docker_ops;

/* The router: which backend serves a call. One default backend for now;
 * RuntimeClass handlers and ID prefixes come later. */
void crisp_router_set_default(struct crisp_backend *be);
struct crisp_backend *crisp_router_pick(struct crisp_call *call);

#endif
