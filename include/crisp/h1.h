/* h1.h - HTTP/1.1 client for engine APIs (Docker Engine API, podman's).
 *
 * Two layers:
 *  - h1_parser: a response parser that does no I/O. Bytes in, callbacks
 *    out: status line and headers, body bytes (de-chunked), end of message.
 *    Bodies are delimited by Content-Length, chunked encoding, or the end of
 *    the connection (also after "101 Switching Protocols", where the body
 *    is the raw upgraded stream).
 *  - h1_pool: a pool of connections to one endpoint (unix socket, or TCP
 *    with optional TLS client certificates), one request at a time per
 *    connection, idle connections kept for reuse. A request never waits for
 *    another one to finish unless the pool is at max_conns: a long call (a
 *    pull, a stop with a grace period, an exec) does not hold up short ones.
 *
 * Writes go through bufferevents (writev): the process must ignore SIGPIPE,
 * as crisp's main does.
 *
 * Error contract: functions returning int return 0 or a negative H1_E_*.
 * A request's callbacks run from the event loop, never from inside
 * h1_request() itself; after on_done (or h1_cancel) none run again. */
#ifndef CRISP_H1_H
#define CRISP_H1_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "crisp/md.h"
#include "crisp/net.h"

enum {
    H1_E_PARSE = -1,     /* malformed response */
    H1_E_TOO_LARGE = -2, /* headers or buffered body over the cap */
    H1_E_NOMEM = -3,
    H1_E_CONNECT = -4,   /* could not connect (message says why) */
    H1_E_IO = -5,        /* connection lost mid-request */
    H1_E_TIMEOUT = -6,
    H1_E_ABORTED = -7,   /* a callback asked to stop */
    H1_E_INVALID = -8,   /* bad request (CR/LF in a header, ...) or call in the wrong state */
};
const char *h1_strerror(int err);

/* ---- parser (no I/O) ---------------------------------------------------- */

struct h1_parser;
struct h1_parser_cbs {
    /* Status line and headers done. Headers are lowercased names. Return
     * <0 to stop. */
    int (*on_head)(void *ud, int status, const struct crisp_md *headers);
    int (*on_body)(void *ud, const uint8_t *p, size_t n);
    /* The message ended (not called for read-until-close bodies: the
     * caller calls h1_parser_eof). */
    int (*on_complete)(void *ud);
};

/* head_max caps the status line + headers. */
struct h1_parser *h1_parser_new(const struct h1_parser_cbs *cbs, void *ud, size_t head_max);
void h1_parser_free(struct h1_parser *p);
/* Tell the parser the request was HEAD or the status has no body (also
 * allowed from inside on_head). 204, 304 and 1xx never have a body anyway;
 * interim 1xx responses other than 101 are skipped (no on_head). */
void h1_parser_expect_no_body(struct h1_parser *p);
/* Returns bytes consumed (>= 0) or H1_E_*. Stops after one message: bytes
 * after its end are not consumed (and later feeds return 0). A callback
 * returning <0 makes it return H1_E_ABORTED. After an error every call
 * returns the same error. */
ssize_t h1_parser_feed(struct h1_parser *p, const uint8_t *data, size_t n);
/* The connection closed: completes a read-until-close body (on_complete
 * runs from here, returns 0), returns 0 after a complete message, or
 * H1_E_IO if the message was cut short (or never started). */
int h1_parser_eof(struct h1_parser *p);
/* Whether the connection may carry another request after this message:
 * 0 until the head is parsed, after an error, for a read-until-close body
 * (101 included), "Connection: close", HTTP/1.0 without keep-alive, or both
 * Content-Length and Transfer-Encoding. */
int h1_parser_keepalive(const struct h1_parser *p);

/* ---- pool --------------------------------------------------------------- */

struct h1_pool;
struct h1_req;

struct h1_pool_opts {
    const struct crisp_addr *addr; /* unix or tcp */
    SSL_CTX *tls;                  /* client TLS context, or NULL */
    const char *host;              /* Host header ("docker" for unix) */
    unsigned max_conns;            /* 0: 64 */
    unsigned max_idle;             /* 0: 8 */
    unsigned idle_timeout_ms;      /* 0: 30000 */
    unsigned connect_timeout_ms;   /* 0: 5000 */
};

struct h1_pool *h1_pool_new(struct event_base *base, const struct h1_pool_opts *o,
                            char *err, size_t errlen);
/* Fails every request in flight (on_done with H1_E_ABORTED; a request
 * already finished gets its own result) and frees. Not from inside a
 * callback of this pool's requests. */
void h1_pool_free(struct h1_pool *pool);

struct h1_req_cbs {
    /* Optional. Return <0 to abort the request (on_done gets H1_E_ABORTED). */
    int (*on_head)(struct h1_req *r, int status, const struct crisp_md *headers, void *ud);
    /* Optional: streamed body. When NULL the body is buffered (up to
     * body_max) and handed to on_done. */
    int (*on_body)(struct h1_req *r, const uint8_t *p, size_t n, void *ud);
    /* Always called once, unless h1_cancel came first. err: 0 or H1_E_*;
     * errmsg: a sentence for status messages (NULL when err == 0); status:
     * the HTTP status (0 if none arrived); body: the buffered body (NUL
     * terminated, owned by the request, valid during the call; "" when
     * empty; NULL when err != 0 or the body was streamed). A non-2xx
     * status is not an error: err is 0 and the body holds the engine's
     * {"message": ...}. */
    void (*on_done)(struct h1_req *r, int err, const char *errmsg, int status,
                    const uint8_t *body, size_t body_len, void *ud);
};

struct h1_req_opts {
    const char *method;          /* "GET", "POST", ... */
    const char *target;          /* "/v1.41/containers/json?all=1" */
    const struct crisp_md *headers; /* extra headers, or NULL */
    const char *content_type;    /* for a body, e.g. "application/json" */
    const uint8_t *body;         /* request body, copied; may be NULL */
    size_t body_len;
    size_t body_max;             /* cap on a buffered body; 0: 16 MiB */
    unsigned timeout_ms;         /* 0: none (the call's deadline rules) */
    int upgrade;                 /* send Connection: Upgrade, Upgrade: tcp */
};

/* Queues a request. Returns NULL on out-of-memory only; every other
 * failure is reported through on_done. The request is freed when on_done
 * returns: do not use it after that. Header names or values with CR/LF,
 * a target with spaces or control bytes: on_done with H1_E_INVALID. Host,
 * Content-Length, Transfer-Encoding, Connection and Upgrade are the
 * client's own headers; the same names in opts.headers are dropped (so is
 * Content-Type when opts.content_type is set). A User-Agent in opts.headers
 * replaces crisp's.
 * A request that fails on a reused keep-alive connection before any
 * response byte arrived is retried once on a new connection when it is
 * GET/HEAD or none of it was written. timeout_ms counts from here. */
struct h1_req *h1_request(struct h1_pool *pool, const struct h1_req_opts *o,
                          const struct h1_req_cbs *cbs, void *ud);
/* Abandons a request: no callback runs after this. A connection with a
 * response in progress is closed, not reused. Safe from inside callbacks
 * (the request's own included); the request is freed once no callback of
 * it is running. */
void h1_cancel(struct h1_req *r);
/* Back-pressure for streamed bodies: stop/start reading the socket. A pause
 * from inside on_body takes effect at once (no more on_body until resume);
 * resume delivers what was already read from the loop, never from inside
 * h1_resume. Allowed at any time before on_done. */
void h1_pause(struct h1_req *r);
void h1_resume(struct h1_req *r);

/* After a 101 upgrade (opts.upgrade): write raw bytes to the stream, and
 * half-close it (shutdown SHUT_WR; for TLS, close_notify). Allowed once
 * on_head ran for any response whose body lasts until the connection closes
 * (101, or dockerd's "200 application/vnd.docker.raw-stream" hijack);
 * otherwise H1_E_INVALID. Writes are buffered; the half-close happens once
 * they are flushed. */
int h1_write(struct h1_req *r, const uint8_t *p, size_t n);
int h1_close_write(struct h1_req *r);

/* Number of open connections (connecting + busy + idle), for tests and
 * metrics. */
unsigned h1_pool_conns(const struct h1_pool *pool);

/* Counters since h1_pool_new, for tests and metrics. */
struct h1_pool_stats {
    unsigned long conns_opened;    /* connections established */
    unsigned long connect_failures;
    unsigned long requests;        /* requests sent on a connection */
    unsigned long reused;          /* ... of which on a kept-alive connection */
    unsigned long retries;         /* stale keep-alive retries */
    unsigned idle;                 /* idle connections now */
};
void h1_pool_get_stats(const struct h1_pool *pool, struct h1_pool_stats *st);

#endif
