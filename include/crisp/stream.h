/* stream.h - the streaming server (src/stream/) and what a backend gives it:
 * kubectl exec, attach and port-forward through crisp.
 *
 * The CRI's Exec, Attach and PortForward calls answer a URL; the client
 * (the kubelet, or the API server through it) connects there and upgrades
 * the HTTP/1.1 connection to SPDY/3.1 or WebSocket. The streaming server
 * owns all of that: the listener, the single-use tokens in the URLs, the
 * upgrade and its protocol negotiation, SPDY and WebSocket framing, and the
 * channel semantics of the kubelet's streaming server (stdin, stdout,
 * stderr, the error channel's metav1.Status, resize; port-forward's data
 * and error stream pairs). It knows no engine: each session runs on a
 * target a backend registered with the token, through the ops below.
 *
 * Flow: a backend's Exec handler calls crisp_stream_register with the
 * request and its target and answers the URL. A client redeems the token
 * (once, before it expires); when the client's channels are ready the
 * server calls target->ops->open; the backend then moves bytes with
 * crisp_stream_output / the input op and ends the session with
 * crisp_stream_exit. Port-forward opens one session per forwarded
 * connection (per SPDY stream pair, or per port of a WebSocket).
 *
 * Callbacks into a backend (the ops) run from the event loop, never from
 * inside a crisp_stream_* call. After close, nothing more is called for
 * that session and the backend must not use its crisp_stream_sess.
 *
 * Error contract: functions returning int return 0 (or 1 where said) on
 * success and a negative CRISP_STREAM_E_* on failure. */
#ifndef CRISP_STREAM_H
#define CRISP_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "crisp/listen.h"

enum {
    CRISP_STREAM_E_OFF = -1,   /* no streaming server runs (--streaming-listen none) */
    CRISP_STREAM_E_NOMEM = -2,
    CRISP_STREAM_E_FULL = -3,  /* too many outstanding tokens (the kubelet's 1000) */
    CRISP_STREAM_E_GONE = -4,  /* the session's client has gone: stop sending */
};

enum crisp_stream_kind {
    CRISP_STREAM_EXEC = 0,
    CRISP_STREAM_ATTACH,
    CRISP_STREAM_PORT_FORWARD,
};

/* What the CRI call asked for (copied by crisp_stream_register). */
struct crisp_stream_req {
    enum crisp_stream_kind kind;
    const char *id;            /* container (exec, attach) or pod sandbox (port-forward) */
    char *const *cmd;          /* exec */
    size_t ncmd;
    int tty, in, out, err;     /* exec, attach: which channels */
    const int32_t *ports;      /* port-forward: the ports asked for (may be none) */
    size_t nports;
};

struct crisp_stream_sess;
struct crisp_stream_target;

/* A backend's side of sessions. */
struct crisp_stream_target_ops {
    /* A session begins: run the exec, attach, or connect to port (port-
     * forward; 0 otherwise). Returns the backend's context, NULL when out
     * of memory (the client gets an error). Results come through
     * crisp_stream_output / crisp_stream_exit. */
    void *(*open)(struct crisp_stream_target *t, const struct crisp_stream_req *req,
                  int32_t port, struct crisp_stream_sess *s);
    /* Bytes from the client (stdin, forwarded data). Return 0, or 1 when
     * they were taken but the backend holds enough: no more input until
     * crisp_stream_input_ready. */
    int (*input)(void *ctx, const uint8_t *p, size_t n);
    /* The client ended its input (stdin closed, its data stream's FIN). */
    void (*input_end)(void *ctx);
    /* A terminal size from the resize channel (exec, attach with tty). */
    void (*resize)(void *ctx, unsigned width, unsigned height);
    /* The client's connection has room again after crisp_stream_output
     * answered 1. */
    void (*output_ready)(void *ctx);
    /* The session is over: after crisp_stream_exit, or because the client
     * went away, reset it, idled out, or crisp is stopping. A backend whose
     * process still runs stops it (an exec is killed). Frees ctx. */
    void (*close)(void *ctx);
};

/* Backends embed this in their own target (one per backend instance); it
 * must outlive crisp_stream_stop. */
struct crisp_stream_target {
    const struct crisp_stream_target_ops *ops;
    const char *name;          /* for logs: "docker:unix:///run/docker.sock" */
};

/* ---- for backends --------------------------------------------------------- */

/* A single-use URL for req on target, written into url ("http://127.0.0.1:
 * 40123/exec/<token>"). 0, CRISP_STREAM_E_OFF, _NOMEM or _FULL. */
int crisp_stream_register(const struct crisp_stream_req *req, struct crisp_stream_target *t,
                          char *url, size_t urllen);

/* Output for the client: chan 1 stdout (or the forwarded data), 2 stderr.
 * Taken (copied) in any case unless the client is gone; returns 0, 1 when
 * the client's connection holds enough (pause until output_ready), or
 * CRISP_STREAM_E_GONE. */
int crisp_stream_output(struct crisp_stream_sess *s, int chan, const uint8_t *p, size_t n);
/* The backend's output ended (the forwarded connection's peer closed its
 * side; exec and attach: optional, crisp_stream_exit ends it all). */
void crisp_stream_output_end(struct crisp_stream_sess *s);
/* After input answered 1: input may come again. */
void crisp_stream_input_ready(struct crisp_stream_sess *s);
/* The session is done: code is the exec's exit code (0 success; attach and
 * port-forward: 0), or err a sentence for the client when it failed (the
 * kubelet's wording is the server's business). close follows from the
 * loop. */
void crisp_stream_exit(struct crisp_stream_sess *s, int code, const char *err);

/* A target goes away (its backend is destroyed): its tokens are forgotten
 * and the connections running its sessions end now (close runs for each
 * before this returns). */
void crisp_stream_forget(struct crisp_stream_target *t);

/* ---- for main.c --------------------------------------------------------------- */

struct crisp_stream_cfg {
    const char *listen;          /* tcp://HOST:PORT (port 0: ephemeral), NULL: off */
    struct crisp_tls_opts tls;   /* cert NULL: plain HTTP */
    unsigned token_ttl_ms;       /* 0: 60 s (the kubelet's) */
    unsigned idle_timeout_ms;    /* 0: 4 h (the kubelet's streaming-connection-idle-timeout) */
    unsigned create_timeout_ms;  /* 0: 30 s for the client's streams to come */
};

/* Starts the listener. 0, or -1 with a reason in err. */
int crisp_stream_start(struct event_base *base, const struct crisp_stream_cfg *cfg, char *err,
                       size_t errlen);
/* "http://127.0.0.1:40123", "" when off. */
const char *crisp_stream_base_url(void);
/* Stops accepting, forgets the tokens, ends every session (the backends'
 * close ops run before this returns) and frees. */
void crisp_stream_stop(void);
/* Open client connections, for shutdown and tests. */
size_t crisp_stream_conn_count(void);

#endif
