/* backend.h - the engine side of crisp, one ops struct per kind of engine.
 *
 * The core never branches on the kind of backend: it calls these ops. A
 * backend is a value: an instance made from its kind, its URL and its own
 * options, holding its own configuration, so one process may hold several
 * of the same kind (two dockerds, a dockerd and a podman, two CRI runtimes).
 * Each kind declares its options (as haproxy's modules register their own
 * keywords); the command line and the configuration file offer them without
 * knowing any kind by name. */
#ifndef CRISP_BACKEND_H
#define CRISP_BACKEND_H

#include <stddef.h>
#include <event2/event.h>

struct crisp_call;
struct crisp_backend;

/* An option a backend kind declares: --NAME VALUE on the command line. */
struct crisp_backend_opt {
    const char *name;    /* "pod-infra-image" */
    const char *arg;     /* what the value is, for --help: "IMAGE" */
    const char *help;    /* the rest of the --help line(s), '\n' between lines */
    unsigned repeatable : 1;
};

/* One option given to an instance. */
struct crisp_backend_arg {
    const struct crisp_backend_opt *opt;
    const char *value;
};

/* What an instance is made from. */
struct crisp_backend_spec {
    const char *url;                     /* the part after "KIND:" */
    const struct crisp_backend_arg *args; /* options of this kind only, in order */
    size_t nargs;
};

struct crisp_backend_ops {
    const char *kind;     /* "cri", "docker" */
    const char *url_help; /* --help lines on the URLs it takes */
    const struct crisp_backend_opt *opts; /* ends with a NULL name; NULL: none */
    /* The option through which the kind maps RuntimeClass handlers to its
     * engine's runtimes itself ("NAME=RUNTIME"), or NULL: a router then
     * rewrites the handler in the request to the engine's runtime name. */
    const char *handler_option;
    /* 1 when the kind answers Exec, Attach and PortForward with URLs of
     * crisp's streaming server (which is not started for a crisp whose
     * only backend's kind does not). */
    unsigned serves_streams : 1;
    /* Checks the spec and allocates the instance. Returns NULL and writes
     * a reason (naming the option at fault) into err. Must not block (a
     * connection may start in the background). */
    struct crisp_backend *(*create)(struct event_base *base, const struct crisp_backend_spec *spec,
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
    /* Optional (metrics): 1 when the engine is reachable now, 0 when not;
     * NULL: the kind cannot tell without a call. */
    int (*health)(struct crisp_backend *be);
};

struct crisp_backend {
    const struct crisp_backend_ops *ops;
    char *name;        /* "cri:unix:///run/containerd/containerd.sock" */
    unsigned inflight; /* calls started on it and not yet freed (call.c) */
};

/* Every kind crisp knows, for --help and option parsing. */
size_t crisp_backend_kind_count(void);
const struct crisp_backend_ops *crisp_backend_kind_at(size_t i);
/* The kind named by the part of "KIND:URL" before the colon; NULL and a
 * reason in err when there is no colon or no such kind. *url is set to
 * the part after the colon. */
const struct crisp_backend_ops *crisp_backend_kind_of(const char *kind_url, const char **url,
                                                      char *err, size_t errlen);

/* Builds an instance from "KIND:URL" and its options. An option the kind
 * does not declare, or given twice when not repeatable, is refused here.
 * NULL and a reason on failure. */
struct crisp_backend *crisp_backend_new(struct event_base *base, const char *kind_url,
                                        const struct crisp_backend_arg *args, size_t nargs,
                                        char *err, size_t errlen);
void crisp_backend_free(struct crisp_backend *be);
/* The instances crisp_backend_new made and crisp_backend_free has not
 * freed yet (the first 64), for metrics. */
size_t crisp_backend_count(void);
struct crisp_backend *crisp_backend_at(size_t i);

extern const struct crisp_backend_ops crisp_backend_cri_ops;
extern const struct crisp_backend_ops crisp_backend_docker_ops;

/* The router: which backend instance serves a call: the default one, the
 * --backend instance or, with --config, the mux (src/mux), a backend that
 * routes each call on to its children by handler and by ID. */
void crisp_router_set_default(struct crisp_backend *be);
struct crisp_backend *crisp_router_pick(struct crisp_call *call);

#endif
