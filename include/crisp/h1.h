/* h1.h - HTTP/1.1 client for engine APIs (Docker Engine API, podman's).
 *
 * A pool of connections to one endpoint (unix socket, or TCP with optional
 * TLS client certificates), one request at a time per connection, idle
 * connections kept for reuse. A request never waits for another one to
 * finish unless the pool is at max_conns: a long call (a pull, a stop with
 * a grace period, an exec) does not hold up short ones. Responses are read
 * by the parser of h1_parser.h; connections are crisp's transport
 * (sock.h). The process must ignore SIGPIPE (a TLS write can raise it), as
 * crisp's main does.
 *
 * Source files (src/http1/): pool.c (the pool, the request queue, this
 * API), conn.c (one connection: connect and TLS through sock.c, sending,
 * reading a response), request_writer.c (a request as bytes),
 * response_parser.c and head.c (the parser).
 *
 * Error contract: functions returning int return 0 or a negative H1_E_*
 * (h1_parser.h). A request's callbacks run from the event loop, never from
 * inside h1_request() itself; after on_done (or h1_cancel) none run again. */
#ifndef CRISP_H1_H
#define CRISP_H1_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "crisp/h1_parser.h"
#include "crisp/md.h"
#include "crisp/net.h"

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
    /* Optional, for h1_write's writer: the kernel has taken more of what
     * h1_write buffered (h1_write_pending went down), at each step while
     * the kernel refuses some and once more when all is out. A writer
     * that stopped at its own cap (an exec's stdin) goes on from here.
     * h1_cancel is allowed inside. */
    void (*on_drain)(struct h1_req *r, void *ud);
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
 * otherwise H1_E_INVALID. Writes are sent at once as far as the kernel
 * takes them, the rest buffered (H1_E_NOMEM past 64 MiB unsent); the
 * half-close happens once they are flushed. H1_E_IO once the connection's
 * sending side has failed. */
int h1_write(struct h1_req *r, const uint8_t *p, size_t n);
int h1_close_write(struct h1_req *r);
/* Bytes h1_write buffered that the kernel has not taken yet (0 when none
 * or not writable): a writer keeps this under a cap of its own and waits
 * for on_drain past it (back-pressure). */
size_t h1_write_pending(const struct h1_req *r);

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
