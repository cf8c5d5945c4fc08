/* pool.h - inside the HTTP/1.1 client (h1.h): the pool, its requests and
 * its connections, shared by pool.c (the pool, the request queue, the
 * public API) and conn.c (one connection).
 *
 * A connection is CONNECTING (connect, then the TLS handshake, both in
 * sock.c), IDLE (a LIFO stack, reading on so a close is seen at once, idle
 * timer armed) or BUSY (exactly one request). Requests wait in a FIFO
 * queue; a dispatch event hands them idle connections and opens new ones
 * up to max_conns. Every completion (success, error, timeout) is recorded
 * on the request and reported from the request's own done event, so no
 * user callback runs from inside h1_request(), h1_cancel() or the pool's
 * bookkeeping; only on_head/on_body run synchronously from the
 * connection's read callback, with the request marked in_cb so h1_cancel()
 * only flags it and the running frame frees it.
 *
 * Error contract: functions returning a pointer return NULL when out of
 * memory (or when there is none, as said); h1_conn_assign returns 0, or
 * -1 when the connection was closed meanwhile (it must not be touched
 * then); h1_conn_write and h1_conn_can_write return 0 or an H1_E_*. */
#ifndef CRISP_HTTP1_POOL_H
#define CRISP_HTTP1_POOL_H

#include <stdint.h>

#include "crisp/buf.h"
#include "crisp/h1.h"
#include "crisp/list.h"
#include "crisp/sock.h"

#define H1_BODY_MAX_DEFAULT (16u << 20)
#define H1_OUT_MAX (64u << 20)  /* unsent request bytes per connection */
#define H1_IN_MAX (1u << 20)    /* read, not parsed yet (a paused response) */

enum h1_conn_state {
    C_CONNECTING = 0,
    C_IDLE,
    C_BUSY,
};

enum h1_req_state {
    R_QUEUED = 0,
    R_ACTIVE,
    R_DONE,
};

struct h1_conn {
    struct crisp_list link;        /* pool->conns */
    struct crisp_list idle_link;   /* pool->idle, newest first */
    struct h1_pool *pool;
    enum h1_conn_state state;
    unsigned long id;
    struct crisp_sock *sock;
    struct event *tmr;             /* idle timeout */
    struct event *kick_ev;         /* parse buffered input after h1_resume */
    struct h1_req *req;
    struct h1_parser *parser;
    struct crisp_buf in;           /* read but not parsed yet (paused) */
    unsigned long served;          /* responses completed on this connection */
    uint64_t resp_bytes;           /* bytes of the current response */
    int abort_err;                 /* why a parser callback stopped the response */
    char eof_reason[200];          /* why the read side failed (errno or TLS) */
    char wr_reason[200];           /* why the write side failed */
    unsigned eof : 1;              /* the read side ended (EOF or error) */
    unsigned eof_error : 1;        /* ... with an error */
    unsigned wr_dead : 1;          /* a write failed */
    unsigned shut : 1;             /* h1_close_write ran */
};

struct h1_req {
    struct crisp_list qlink;       /* pool->queue */
    struct crisp_list link;        /* pool->reqs: every live request */
    struct h1_pool *pool;
    struct h1_conn *conn;
    struct h1_req_cbs cbs;
    void *ud;
    enum h1_req_state state;
    char what[96];                 /* "GET /v1.41/containers/json" for messages */
    uint8_t *wire;
    size_t wire_len;
    size_t body_max;
    unsigned timeout_ms;
    struct event *done_ev;
    struct event *tmr;
    struct crisp_buf body;
    int err;
    int status;
    char errmsg[320];
    unsigned in_cb;
    unsigned cancelled : 1;
    unsigned retried : 1;
    unsigned fresh : 1;            /* must go on a new connection */
    unsigned paused : 1;
    unsigned head_seen : 1;
    unsigned idempotent : 1;
    unsigned is_head : 1;
    unsigned on_reused : 1;
};

struct h1_pool {
    struct event_base *base;
    struct crisp_addr addr;
    SSL_CTX *tls;
    char host[300];                /* Host header */
    char tls_name[300];            /* SNI / the certificate's name or IP, "" for none */
    char name[320];                /* "unix:///var/run/docker.sock" for messages */
    unsigned max_conns, max_idle, idle_timeout_ms, connect_timeout_ms;
    struct crisp_list conns;
    struct crisp_list idle;        /* newest first */
    struct crisp_list queue;       /* waiting requests, oldest first */
    struct crisp_list reqs;        /* every live request, newest first */
    unsigned nconns, nidle, nconnecting, nqueued;
    struct event *dispatch_ev;
    struct h1_pool_stats stats;
    unsigned long next_id;
    unsigned closing : 1;
};

/* ---- pool.c --------------------------------------------------------------- */

/* The first waiting request, or NULL. */
struct h1_req *h1_queue_first(const struct h1_pool *pool);
void h1_queue_del(struct h1_req *r);
/* A stale keep-alive retry: first in line, on a new connection. */
void h1_queue_retry(struct h1_req *r);
void h1_pool_schedule(struct h1_pool *pool);
/* Records the outcome of a request already detached from its queue and
 * connection; on_done runs from the request's done event. */
void h1_req_finish(struct h1_req *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void h1_req_free(struct h1_req *r);

/* ---- conn.c --------------------------------------------------------------- */

/* Opens a connection (it joins the pool as connecting); NULL when out of
 * memory. */
struct h1_conn *h1_conn_open(struct h1_pool *pool);
/* Closes and frees; a request still on it is detached first. */
void h1_conn_close(struct h1_conn *c);
/* The newest idle connection still usable (dead ones are closed on the
 * way), taken off the idle stack; NULL when none. */
struct h1_conn *h1_conn_take_idle(struct h1_pool *pool);
/* Closes the oldest idle connection; 0 when there is none. */
int h1_conn_close_oldest_idle(struct h1_pool *pool);
/* Sends the request on the connection. Returns -1 when that failed (the
 * connection is closed, the request finished with H1_E_NOMEM). */
int h1_conn_assign(struct h1_conn *c, struct h1_req *r);
/* Detaches the request from its connection and closes the connection. */
void h1_conn_drop(struct h1_req *r);
/* Reading for the request's connection follows its paused flag. */
void h1_conn_follow_pause(struct h1_conn *c);
/* Raw bytes on an upgraded/hijacked stream; its half-close. */
int h1_conn_write(struct h1_conn *c, const uint8_t *p, size_t n);
void h1_conn_close_write(struct h1_conn *c);
/* Bytes written to the connection and not yet taken by the kernel. */
size_t h1_conn_pending(const struct h1_conn *c);
/* Whether the response on c lasts until the connection closes and the
 * sending side is still open (h1_write allowed). */
int h1_conn_can_write(const struct h1_conn *c);

#endif
