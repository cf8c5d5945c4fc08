/* conn.c - one connection of the HTTP/1.1 client (pool.h): opened through
 * sock.c (connect, TLS), a request sent on it, its response parsed as it
 * is read, then kept for the next request or closed. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crisp/log.h"
#include "head.h"
#include "pool.h"

static const struct h1_parser_cbs conn_parser_cbs;
static const struct crisp_sock_cbs conn_sock_cbs;
static int conn_process(struct h1_conn *c);

static void tv_ms(struct timeval *tv, long ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

/* The request and its connection part (the caller decides the
 * connection's fate). */
static void req_detach(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    if (!c)
        return;
    assert(c->req == r);
    c->req = NULL;
    r->conn = NULL;
}

void h1_conn_drop(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    req_detach(r);
    if (c)
        h1_conn_close(c);
}

/* ---- life --------------------------------------------------------------- */

static void idle_del(struct h1_conn *c)
{
    if (c->state != C_IDLE)
        return;
    crisp_list_unlink(&c->idle_link);
    c->pool->nidle--;
    evtimer_del(c->tmr);
}

void h1_conn_close(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    idle_del(c);
    if (c->state == C_CONNECTING)
        pool->nconnecting--;
    if (c->req)
        req_detach(c->req); /* callers detach it first; be safe anyway */
    crisp_list_unlink(&c->link);
    pool->nconns--;
    if (c->tmr)
        event_free(c->tmr);
    if (c->kick_ev)
        event_free(c->kick_ev);
    crisp_sock_free(c->sock);
    h1_parser_free(c->parser);
    crisp_buf_free(&c->in);
    log_debug("h1_conn_closed", "endpoint=%s conn=%lu served=%lu", pool->name, c->id, c->served);
    free(c);
    if (h1_queue_first(pool) && !pool->closing)
        h1_pool_schedule(pool);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_conn *c = arg;
    assert(c->state == C_IDLE);
    log_debug("h1_idle_timeout", "endpoint=%s conn=%lu", c->pool->name, c->id);
    h1_conn_close(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_process(arg);
}

struct h1_conn *h1_conn_open(struct h1_pool *pool)
{
    struct h1_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->pool = pool;
    c->id = ++pool->next_id;
    c->state = C_CONNECTING;
    crisp_buf_init(&c->in, H1_IN_MAX);
    crisp_list_push_front(&pool->conns, &c->link);
    pool->nconns++;
    pool->nconnecting++;
    c->parser = h1_parser_new(&conn_parser_cbs, c, H1_HEAD_MAX);
    c->tmr = evtimer_new(pool->base, on_idle_timeout, c);
    c->kick_ev = event_new(pool->base, -1, 0, on_kick, c);
    struct crisp_sock_dest d = {
        .sa = (const struct sockaddr *)&pool->addr.ss, .salen = pool->addr.sslen,
        .name = pool->name, .timeout_ms = pool->connect_timeout_ms, .tls = pool->tls,
        .tls_name = pool->tls_name};
    if (c->parser && c->tmr && c->kick_ev)
        c->sock = crisp_sock_open(pool->base, &d, H1_OUT_MAX, &conn_sock_cbs, c);
    if (!c->sock) {
        h1_conn_close(c);
        return NULL;
    }
    return c;
}

/* ---- idle connections --------------------------------------------------- */

/* An idle connection may still be used: nothing arrived on it, not even
 * the end of the stream. Peeking catches a close the loop has not seen. */
static int conn_alive(struct h1_conn *c)
{
    if (c->eof || c->wr_dead || c->in.len)
        return 0;
    int fd = crisp_sock_fd(c->sock);
    if (fd < 0)
        return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    /* Raw bytes on an idle plain connection are garbage; under TLS they
     * may be a session ticket the TLS layer has not read yet. */
    return c->pool->tls != NULL;
}

struct h1_conn *h1_conn_take_idle(struct h1_pool *pool)
{
    struct crisp_list *l;
    while ((l = crisp_list_first(&pool->idle)) != NULL) {
        struct h1_conn *c = crisp_container_of(l, struct h1_conn, idle_link);
        idle_del(c);
        c->state = C_BUSY;
        if (conn_alive(c))
            return c;
        log_debug("h1_idle_dead", "endpoint=%s conn=%lu", pool->name, c->id);
        h1_conn_close(c);
    }
    return NULL;
}

int h1_conn_close_oldest_idle(struct h1_pool *pool)
{
    if (crisp_list_empty(&pool->idle))
        return 0;
    h1_conn_close(crisp_container_of(pool->idle.prev, struct h1_conn, idle_link));
    return 1;
}

/* Hands the connection to a waiting request, or makes it idle. Returns -1
 * when it was closed. */
static int conn_make_idle(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    assert(!c->req && c->in.len == 0);
    crisp_list_for_each(&pool->queue, it) {
        struct h1_req *q = crisp_container_of(it, struct h1_req, qlink);
        if (!q->fresh && !pool->closing)
            return h1_conn_assign(c, q);
    }
    if (pool->nidle >= pool->max_idle)
        h1_conn_close_oldest_idle(pool);
    c->state = C_IDLE;
    crisp_list_push_front(&pool->idle, &c->idle_link);
    pool->nidle++;
    struct timeval tv;
    tv_ms(&tv, pool->idle_timeout_ms);
    evtimer_add(c->tmr, &tv);
    crisp_sock_resume_read(c->sock);
    if (h1_queue_first(pool))
        h1_pool_schedule(pool);
    return 0;
}

/* ---- sending ------------------------------------------------------------ */

int h1_conn_assign(struct h1_conn *c, struct h1_req *r)
{
    struct h1_pool *pool = c->pool;
    assert(!c->req && c->state != C_CONNECTING && c->in.len == 0);
    h1_queue_del(r);
    r->state = R_ACTIVE;
    r->conn = c;
    r->on_reused = c->served > 0;
    c->req = r;
    c->state = C_BUSY;
    c->resp_bytes = 0;
    c->abort_err = 0;
    h1_parser_reset(c->parser);
    if (r->is_head)
        h1_parser_expect_no_body(c->parser);
    pool->stats.requests++;
    if (r->on_reused)
        pool->stats.reused++;
    if (crisp_sock_queue(c->sock, r->wire, r->wire_len) < 0) {
        h1_conn_drop(r);
        h1_req_finish(r, H1_E_NOMEM, "out of memory sending %s", r->what);
        return -1;
    }
    crisp_sock_flush(c->sock); /* a failure comes back through the callbacks */
    if (r->paused)
        crisp_sock_pause_read(c->sock);
    else
        crisp_sock_resume_read(c->sock);
    return 0;
}

void h1_conn_follow_pause(struct h1_conn *c)
{
    if (c->req && c->req->paused) {
        crisp_sock_pause_read(c->sock);
        h1_parser_yield(c->parser);
        return;
    }
    crisp_sock_resume_read(c->sock);
    event_active(c->kick_ev, EV_TIMEOUT, 0);
}

int h1_conn_can_write(const struct h1_conn *c)
{
    if (!h1_parser_reads_until_close(c->parser) || c->shut)
        return H1_E_INVALID;
    return c->wr_dead ? H1_E_IO : 0;
}

int h1_conn_write(struct h1_conn *c, const uint8_t *p, size_t n)
{
    if (crisp_sock_queue(c->sock, p, n) < 0)
        return H1_E_NOMEM;
    crisp_sock_flush(c->sock);
    return 0;
}

size_t h1_conn_pending(const struct h1_conn *c)
{
    return crisp_sock_pending(c->sock);
}

void h1_conn_close_write(struct h1_conn *c)
{
    c->shut = 1;
    if (crisp_sock_shutdown_write(c->sock) < 0)
        log_debug("h1_shutdown_failed", "endpoint=%s conn=%lu", c->pool->name, c->id);
}

/* ---- the response ------------------------------------------------------- */

/* After the request's own callback: it said stop, or cancelled the
 * request (the parser stops), or paused it (the parser yields). */
static int after_user_cb(struct h1_conn *c, int rv)
{
    if (rv < 0) {
        c->abort_err = H1_E_ABORTED;
        return -1;
    }
    if (c->req->cancelled)
        return -1;
    if (c->req->paused)
        h1_parser_yield(c->parser);
    return 0;
}

static int pc_on_head(void *ud, int status, const struct crisp_md *headers)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    r->status = status;
    r->head_seen = 1;
    return after_user_cb(c, r->cbs.on_head ? r->cbs.on_head(r, status, headers, r->ud) : 0);
}

/* A buffered body grows, up to body_max. */
static int buffer_body(struct h1_conn *c, const uint8_t *p, size_t n)
{
    struct h1_req *r = c->req;
    if (r->body.len + n > r->body_max || r->body.len + n < n) {
        c->abort_err = H1_E_TOO_LARGE;
        return -1;
    }
    if (crisp_buf_append(&r->body, p, n) < 0) {
        c->abort_err = H1_E_NOMEM;
        return -1;
    }
    return 0;
}

static int pc_on_body(void *ud, const uint8_t *p, size_t n)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    if (!r->cbs.on_body)
        return buffer_body(c, p, n);
    return after_user_cb(c, r->cbs.on_body(r, p, n, r->ud));
}

static const struct h1_parser_cbs conn_parser_cbs = {
    .on_head = pc_on_head,
    .on_body = pc_on_body,
    .on_complete = NULL,
};

/* The response is complete: hand the connection back or close it. Returns
 * -1 when it was closed. */
static int conn_response_done(struct h1_conn *c)
{
    struct h1_req *r = c->req;
    int reuse = h1_parser_keepalive(c->parser) && !c->eof && !c->wr_dead && !c->shut &&
                !c->pool->closing && c->in.len == 0 && crisp_sock_pending(c->sock) == 0;
    if (!reuse && c->in.len)
        log_debug("h1_extra_bytes", "endpoint=%s conn=%lu bytes=%zu", c->pool->name, c->id,
                  c->in.len);
    c->served++;
    req_detach(r);
    h1_req_finish(r, 0, NULL);
    if (reuse)
        return conn_make_idle(c);
    h1_conn_close(c);
    return -1;
}

/* The parser (or a callback) ended the response with an error. */
static void conn_parse_failed(struct h1_conn *c, int err)
{
    struct h1_pool *pool = c->pool;
    struct h1_req *r = c->req;
    const char *why = h1_parser_why(c->parser);
    char msg[320];
    if (err == H1_E_ABORTED && c->abort_err == H1_E_TOO_LARGE)
        h1_sfmt(msg, sizeof(msg), "the response to %s from %s is larger than the limit of %zu bytes",
                r->what, pool->name, r->body_max);
    else if (err == H1_E_ABORTED && c->abort_err == H1_E_NOMEM)
        h1_sfmt(msg, sizeof(msg), "out of memory buffering the response to %s", r->what);
    else if (err == H1_E_ABORTED)
        h1_sfmt(msg, sizeof(msg), "%s was aborted by its callback", r->what);
    else if (err == H1_E_TOO_LARGE)
        h1_sfmt(msg, sizeof(msg), "the response to %s from %s is too large: %s", r->what,
                pool->name, why);
    else if (err == H1_E_NOMEM)
        h1_sfmt(msg, sizeof(msg), "out of memory reading the response to %s", r->what);
    else
        h1_sfmt(msg, sizeof(msg), "malformed response to %s from %s: %s", r->what, pool->name,
                why);
    if (err == H1_E_ABORTED && c->abort_err)
        err = c->abort_err;
    h1_conn_drop(r);
    h1_req_finish(r, err, "%s", msg);
}

/* Whether a request that failed on a reused connection may go again: the
 * classic keep-alive race, the engine closed the idle connection as the
 * request went out. */
static int may_retry(const struct h1_conn *c, const struct h1_req *r)
{
    int nothing_written = !c->wr_dead && crisp_sock_pending(c->sock) >= r->wire_len;
    return c->resp_bytes == 0 && r->on_reused && !r->retried && !c->pool->closing &&
           (r->idempotent || nothing_written);
}

/* The connection ended (or failed) before the response did. */
static void conn_lost(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    struct h1_req *r = c->req;
    const char *why = c->eof_error ? c->eof_reason : c->wr_dead ? c->wr_reason : NULL;
    if (may_retry(c, r)) {
        log_debug("h1_retry", "endpoint=%s conn=%lu request=%s err=%s", pool->name, c->id,
                  crisp_logq(r->what), crisp_logq(why ? why : "EOF"));
        h1_conn_drop(r);
        h1_queue_retry(r);
        return;
    }
    char reason[220] = "";
    if (why)
        h1_sfmt(reason, sizeof(reason), " (%s)", why);
    uint64_t got = c->resp_bytes;
    h1_conn_drop(r);
    if (got == 0)
        h1_req_finish(r, H1_E_IO, "connection to %s closed before the response to %s%s",
                      pool->name, r->what, reason);
    else
        h1_req_finish(r, H1_E_IO, "connection to %s lost after %llu byte%s of the response to %s%s",
                      pool->name, (unsigned long long)got, plural(got), r->what, reason);
}

/* Feeds bytes to the parser until the response ends, is paused or
 * cancelled, or fails. *used: the bytes consumed. Returns 0 or the
 * parser's error. */
static int conn_feed(struct h1_conn *c, const uint8_t *d, size_t n, size_t *used)
{
    struct h1_req *r = c->req;
    int err = 0;
    r->in_cb++;
    while (*used < n && !r->paused && !r->cancelled && !h1_parser_done(c->parser)) {
        ssize_t k = h1_parser_feed(c->parser, d + *used, n - *used);
        if (k < 0) {
            err = (int)k;
            break;
        }
        *used += (size_t)k;
        c->resp_bytes += (uint64_t)k;
        if (k == 0)
            break;
    }
    r->in_cb--;
    return err;
}

/* After feeding: the request cancelled from a callback, a parse error, the
 * response complete, or the end of the connection. Returns -1 when the
 * connection was closed. */
static int conn_settle(struct h1_conn *c, int err)
{
    struct h1_req *r = c->req;
    if (r->cancelled) {
        h1_conn_drop(r);
        h1_req_free(r);
        return -1;
    }
    if (err) {
        conn_parse_failed(c, err);
        return -1;
    }
    if (h1_parser_done(c->parser))
        return conn_response_done(c);
    if (r->paused || !c->eof || c->in.len)
        return 0;
    /* The read side ended and everything read was parsed. */
    if (h1_parser_reads_until_close(c->parser) && !c->eof_error) {
        h1_parser_eof(c->parser);
        return conn_response_done(c);
    }
    conn_lost(c);
    return -1;
}

static void in_consume(struct crisp_buf *b, size_t n)
{
    assert(n <= b->len);
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* Parses what was kept in c->in. Returns -1 when the connection was
 * closed. */
static int conn_process(struct h1_conn *c)
{
    struct h1_req *r = c->req;
    if (!r || r->paused)
        return 0;
    size_t used = 0;
    int err = conn_feed(c, c->in.data, c->in.len, &used);
    if (used)
        in_consume(&c->in, used);
    return conn_settle(c, err);
}

/* ---- socket callbacks ----------------------------------------------------- */

static int on_sock_data(void *ud, const uint8_t *p, size_t n)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    if (!r) {
        if (c->state != C_IDLE)
            return 0;
        log_debug("h1_idle_closed", "endpoint=%s conn=%lu unexpected_bytes=%zu", c->pool->name,
                  c->id, n);
        h1_conn_close(c);
        return -1;
    }
    if (c->in.len || r->paused) {
        if (crisp_buf_append(&c->in, p, n) < 0)
            return conn_settle(c, H1_E_NOMEM);
        return conn_process(c);
    }
    size_t used = 0;
    int err = conn_feed(c, p, n, &used);
    if (!err && !r->cancelled && used < n && crisp_buf_append(&c->in, p + used, n - used) < 0)
        err = H1_E_NOMEM;
    return conn_settle(c, err);
}

/* A connect (or TLS handshake) failed: why names the endpoint. */
static void connect_failed(struct h1_conn *c, const char *why)
{
    struct h1_pool *pool = c->pool;
    char msg[320];
    h1_sfmt(msg, sizeof(msg), "%s", why);
    pool->stats.connect_failures++;
    log_debug("h1_connect_failed", "endpoint=%s conn=%lu err=%s", pool->name, c->id,
              crisp_logq(msg));
    h1_conn_close(c);
    /* With no working connection the engine is unreachable: every waiting
     * request fails now. Otherwise only the ones this connection was
     * opened for, the others keep their turn. */
    int live = pool->nconns > pool->nconnecting;
    struct h1_req *r;
    while ((r = h1_queue_first(pool)) != NULL && (!live || pool->nqueued > pool->nconnecting)) {
        h1_queue_del(r);
        h1_req_finish(r, H1_E_CONNECT, "%s", msg);
        if (live)
            break;
    }
}

static void on_sock_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct h1_conn *c = ud;
    if (c->state == C_CONNECTING) {
        connect_failed(c, why);
        return;
    }
    c->eof = 1;
    if (how != CRISP_SOCK_EOF || crisp_sock_errno(c->sock)) {
        c->eof_error = 1;
        h1_sfmt(c->eof_reason, sizeof(c->eof_reason), "%s", why);
    }
    if (!c->req) {
        if (c->state == C_IDLE)
            log_debug("h1_idle_closed", "endpoint=%s conn=%lu", c->pool->name, c->id);
        h1_conn_close(c);
        return;
    }
    conn_process(c);
}

/* The write side failed (EPIPE, ECONNRESET): stop writing, but a response
 * may still be there to read. */
static int on_sock_write_error(void *ud, enum crisp_sock_end how, const char *why)
{
    struct h1_conn *c = ud;
    (void)how;
    c->wr_dead = 1;
    h1_sfmt(c->wr_reason, sizeof(c->wr_reason), "%s", why);
    if (c->req)
        return 0;
    h1_conn_close(c);
    return -1;
}

/* Connected (and TLS done): serve the oldest waiting request or idle. */
static int on_sock_connected(void *ud)
{
    struct h1_conn *c = ud;
    struct h1_pool *pool = c->pool;
    pool->nconnecting--;
    pool->stats.conns_opened++;
    c->state = C_BUSY; /* not idle, not connecting: assign or idle below */
    log_debug("h1_conn_open", "endpoint=%s conn=%lu", pool->name, c->id);
    struct h1_req *r = h1_queue_first(pool);
    return r ? h1_conn_assign(c, r) : conn_make_idle(c);
}

/* The socket took more of a blocked queue: a hijacked stream's writer
 * may go on (h1_req_cbs.on_drain). */
static int on_sock_drain(void *ud)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    if (!r || r->cancelled || !r->cbs.on_drain)
        return 0;
    r->in_cb++;
    r->cbs.on_drain(r, r->ud);
    r->in_cb--;
    if (!r->cancelled)
        return 0;
    h1_conn_drop(r);
    h1_req_free(r);
    return -1;
}

static const struct crisp_sock_cbs conn_sock_cbs = {
    .on_data = on_sock_data,
    .on_drain = on_sock_drain,
    .on_connected = on_sock_connected,
    .on_close = on_sock_close,
    .on_write_error = on_sock_write_error,
};
