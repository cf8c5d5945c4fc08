/* pool.c - the HTTP/1.1 client's pool (h1.h): requests, their queue and
 * timeouts, dispatch onto connections (conn.c), and the public API. How
 * the pieces fit: pool.h. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/log.h"
#include "head.h"
#include "pool.h"
#include "request_writer.h"

static struct h1_req *req_of(struct crisp_list *qlink)
{
    return crisp_container_of(qlink, struct h1_req, qlink);
}

/* ---- the queue ---------------------------------------------------------- */

struct h1_req *h1_queue_first(const struct h1_pool *pool)
{
    struct crisp_list *l = crisp_list_first(&pool->queue);
    return l ? req_of(l) : NULL;
}

void h1_queue_del(struct h1_req *r)
{
    assert(crisp_list_is_linked(&r->qlink));
    crisp_list_unlink(&r->qlink);
    r->pool->nqueued--;
}

static void queue_push(struct h1_req *r)
{
    r->state = R_QUEUED;
    crisp_list_push_back(&r->pool->queue, &r->qlink);
    r->pool->nqueued++;
}

void h1_queue_retry(struct h1_req *r)
{
    struct h1_pool *pool = r->pool;
    assert(!r->conn && !r->retried);
    r->retried = 1;
    r->fresh = 1;
    r->state = R_QUEUED;
    pool->stats.retries++;
    crisp_list_push_front(&pool->queue, &r->qlink);
    pool->nqueued++;
    h1_pool_schedule(pool);
}

/* ---- requests ----------------------------------------------------------- */

void h1_req_free(struct h1_req *r)
{
    assert(!crisp_list_is_linked(&r->qlink) && !r->conn);
    crisp_list_unlink(&r->link);
    if (r->done_ev)
        event_free(r->done_ev);
    if (r->tmr)
        event_free(r->tmr);
    crisp_buf_free(&r->body);
    free(r->wire);
    free(r);
}

void h1_req_finish(struct h1_req *r, int err, const char *fmt, ...)
{
    assert(!r->conn);
    if (r->state == R_DONE)
        return;
    r->state = R_DONE;
    r->err = err;
    if (err && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
        va_end(ap);
    }
    if (r->tmr)
        evtimer_del(r->tmr);
    event_active(r->done_ev, EV_TIMEOUT, 0);
}

/* The buffered body, NUL-terminated, for on_done (NULL when streamed or
 * failed; "" when empty and no room). */
static const uint8_t *req_body(struct h1_req *r)
{
    if (r->err || r->cbs.on_body)
        return NULL;
    /* Room for the NUL was kept: the buffer's cap is body_max + 1. */
    if (crisp_buf_reserve(&r->body, 1) == 0) {
        r->body.data[r->body.len] = 0;
        return r->body.data;
    }
    if (r->body.len == 0)
        return (const uint8_t *)"";
    r->err = H1_E_NOMEM;
    snprintf(r->errmsg, sizeof(r->errmsg), "out of memory buffering the response of %s",
             r->what);
    return NULL;
}

static void req_deliver(struct h1_req *r)
{
    if (r->cancelled || !r->cbs.on_done)
        return;
    const uint8_t *body = req_body(r);
    size_t len = body ? r->body.len : 0;
    r->in_cb++;
    r->cbs.on_done(r, r->err, r->err ? r->errmsg : NULL, r->status, body, len, r->ud);
    r->in_cb--;
}

static void on_req_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_req *r = arg;
    req_deliver(r);
    h1_req_free(r);
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_req *r = arg;
    struct h1_pool *pool = r->pool;
    if (r->state == R_QUEUED) {
        h1_queue_del(r);
        h1_req_finish(r, H1_E_TIMEOUT, "%s to %s timed out after %u ms waiting for a connection",
                      r->what, pool->name, r->timeout_ms);
    } else if (r->state == R_ACTIVE) {
        int started = r->conn && r->conn->resp_bytes > 0;
        h1_conn_drop(r);
        h1_req_finish(r, H1_E_TIMEOUT, "%s to %s timed out after %u ms%s", r->what, pool->name,
                      r->timeout_ms, started ? "" : " without a response");
    }
}

static struct h1_req *req_alloc(struct h1_pool *pool, const struct h1_req_opts *o,
                                const struct h1_req_cbs *cbs, void *ud)
{
    struct h1_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->pool = pool;
    if (cbs)
        r->cbs = *cbs;
    r->ud = ud;
    r->body_max = o->body_max ? o->body_max : H1_BODY_MAX_DEFAULT;
    crisp_buf_init(&r->body, r->body_max + 1);
    r->timeout_ms = o->timeout_ms;
    r->done_ev = event_new(pool->base, -1, 0, on_req_done, r);
    if (r->timeout_ms)
        r->tmr = evtimer_new(pool->base, on_req_timeout, r);
    if (!r->done_ev || (r->timeout_ms && !r->tmr)) {
        h1_req_free(r);
        return NULL;
    }
    crisp_list_push_front(&pool->reqs, &r->link);
    return r;
}

static void req_describe(struct h1_req *r, const char *method, const char *target)
{
    h1_sfmt(r->what, sizeof(r->what), "%.16s %.70s%s", method, target ? target : "",
            target && strlen(target) > 70 ? "..." : "");
    r->idempotent = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    r->is_head = !strcmp(method, "HEAD");
}

struct h1_req *h1_request(struct h1_pool *pool, const struct h1_req_opts *o,
                          const struct h1_req_cbs *cbs, void *ud)
{
    struct h1_req *r = req_alloc(pool, o, cbs, ud);
    if (!r)
        return NULL;
    req_describe(r, o->method ? o->method : "GET", o->target);
    if (pool->closing) {
        h1_req_finish(r, H1_E_ABORTED, "the HTTP client for %s is closing", pool->name);
        return r;
    }
    char why[128];
    int rv = h1_request_write(o, pool->host, &r->wire, &r->wire_len, why, sizeof(why));
    if (rv == H1_E_NOMEM) {
        h1_req_free(r);
        return NULL;
    }
    if (rv < 0) {
        h1_req_finish(r, rv, "invalid request %s: %s", r->what, why);
        return r;
    }
    if (r->tmr) {
        struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
        evtimer_add(r->tmr, &tv);
    }
    queue_push(r);
    h1_pool_schedule(pool);
    return r;
}

void h1_cancel(struct h1_req *r)
{
    if (!r || r->cancelled)
        return;
    r->cancelled = 1;
    if (r->in_cb)
        return; /* the frame running its callback frees it */
    if (r->state == R_QUEUED)
        h1_queue_del(r);
    else if (r->state == R_ACTIVE)
        h1_conn_drop(r);
    h1_req_free(r);
}

void h1_pause(struct h1_req *r)
{
    if (!r || r->paused)
        return;
    r->paused = 1;
    if (r->conn)
        h1_conn_follow_pause(r->conn);
}

void h1_resume(struct h1_req *r)
{
    if (!r || !r->paused)
        return;
    r->paused = 0;
    if (r->conn)
        h1_conn_follow_pause(r->conn);
}

static int req_can_write(struct h1_req *r)
{
    if (!r || r->state != R_ACTIVE || !r->conn || !r->head_seen || r->cancelled)
        return H1_E_INVALID;
    return h1_conn_can_write(r->conn);
}

int h1_write(struct h1_req *r, const uint8_t *p, size_t n)
{
    int rv = req_can_write(r);
    return rv < 0 ? rv : h1_conn_write(r->conn, p, n);
}

size_t h1_write_pending(const struct h1_req *r)
{
    return r && r->conn ? h1_conn_pending(r->conn) : 0;
}

int h1_close_write(struct h1_req *r)
{
    int rv = req_can_write(r);
    if (rv < 0)
        return rv;
    h1_conn_close_write(r->conn);
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

/* Waiting requests take idle connections; returns how many need a new
 * one. */
static unsigned assign_idle(struct h1_pool *pool)
{
    unsigned want = 0;
    crisp_list_for_each(&pool->queue, it) {
        struct h1_req *r = req_of(it);
        struct h1_conn *c = r->fresh ? NULL : h1_conn_take_idle(pool);
        if (c)
            h1_conn_assign(c, r);
        else
            want++;
    }
    return want;
}

static void open_conns(struct h1_pool *pool, unsigned want)
{
    while (pool->nconnecting < want) {
        if (pool->nconns >= pool->max_conns) {
            /* Only a retry refuses idle connections: make room for it. */
            if (!h1_conn_close_oldest_idle(pool))
                break;
            continue;
        }
        if (h1_conn_open(pool))
            continue;
        struct h1_req *q = h1_queue_first(pool);
        if (pool->nconns == 0 && q) {
            h1_queue_del(q);
            h1_req_finish(q, H1_E_NOMEM, "out of memory connecting to %s", pool->name);
        }
        break;
    }
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_pool *pool = arg;
    if (!pool->closing)
        open_conns(pool, assign_idle(pool));
}

void h1_pool_schedule(struct h1_pool *pool)
{
    if (!pool->closing)
        event_active(pool->dispatch_ev, EV_TIMEOUT, 0);
}

/* ---- the pool ----------------------------------------------------------- */

static unsigned addr_port(const struct crisp_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

/* The endpoint's name for messages, the Host header, and the name the
 * server certificate is checked against (the address's host, or the Host
 * header for a unix socket). */
static int pool_names(struct h1_pool *pool, const struct h1_pool_opts *o)
{
    const struct crisp_addr *a = &pool->addr;
    unsigned port = addr_port(a);
    int v6 = strchr(a->host, ':') != NULL;
    const char *l = v6 ? "[" : "", *r = v6 ? "]" : "";
    if (a->kind == CRISP_ADDR_UNIX)
        h1_sfmt(pool->name, sizeof(pool->name), "unix://%s", a->path);
    else
        h1_sfmt(pool->name, sizeof(pool->name), "tcp://%s%s%s:%u", l, a->host, r, port);
    if (o->host)
        h1_sfmt(pool->host, sizeof(pool->host), "%s", o->host);
    else if (a->kind == CRISP_ADDR_UNIX)
        snprintf(pool->host, sizeof(pool->host), "docker");
    else
        h1_sfmt(pool->host, sizeof(pool->host), "%s%s%s:%u", l, a->host, r, port);
    if (!pool->host[0] || !h1_value_ok((const uint8_t *)pool->host, strlen(pool->host)))
        return -1;
    h1_sfmt(pool->tls_name, sizeof(pool->tls_name), "%s",
            a->kind == CRISP_ADDR_TCP && a->host[0] ? a->host : pool->host);
    return 0;
}

static void pool_limits(struct h1_pool *pool, const struct h1_pool_opts *o)
{
    pool->max_conns = o->max_conns ? o->max_conns : 64;
    pool->max_idle = o->max_idle ? o->max_idle : 8;
    pool->idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 30000;
    pool->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    if (pool->max_idle > pool->max_conns)
        pool->max_idle = pool->max_conns;
}

struct h1_pool *h1_pool_new(struct event_base *base, const struct h1_pool_opts *o, char *err,
                            size_t errlen)
{
    if (!o || !o->addr ||
        (o->addr->kind != CRISP_ADDR_UNIX && o->addr->kind != CRISP_ADDR_TCP)) {
        snprintf(err, errlen, "the HTTP client needs a unix:// or tcp:// address");
        return NULL;
    }
    struct h1_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        goto fail_oom;
    pool->base = base;
    pool->addr = *o->addr;
    crisp_list_init(&pool->conns);
    crisp_list_init(&pool->idle);
    crisp_list_init(&pool->queue);
    crisp_list_init(&pool->reqs);
    pool_limits(pool, o);
    if (pool_names(pool, o) < 0) {
        snprintf(err, errlen, "bad Host header value");
        goto fail_pool;
    }
    pool->dispatch_ev = event_new(base, -1, 0, on_dispatch, pool);
    if (!pool->dispatch_ev)
        goto fail_pool_oom;
    if (o->tls) {
        SSL_CTX_up_ref(o->tls);
        pool->tls = o->tls;
    }
    return pool;
fail_pool_oom:
    free(pool);
fail_oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
fail_pool:
    free(pool);
    return NULL;
}

/* A request still in flight when the pool goes: ABORTED (one that
 * finished keeps its own result). */
static void abandon(struct h1_req *r)
{
    struct h1_pool *pool = r->pool;
    if (r->state == R_QUEUED)
        h1_queue_del(r);
    else if (r->state == R_ACTIVE)
        h1_conn_drop(r);
    if (r->state == R_DONE)
        return;
    r->state = R_DONE;
    r->err = H1_E_ABORTED;
    h1_sfmt(r->errmsg, sizeof(r->errmsg), "%s abandoned: the HTTP client for %s was closed",
            r->what, pool->name);
}

void h1_pool_free(struct h1_pool *pool)
{
    if (!pool)
        return;
    pool->closing = 1;
    event_del(pool->dispatch_ev);
    struct crisp_list *l;
    while ((l = crisp_list_first(&pool->reqs)) != NULL) {
        struct h1_req *r = crisp_container_of(l, struct h1_req, link);
        abandon(r);
        req_deliver(r);
        h1_req_free(r);
    }
    while ((l = crisp_list_first(&pool->conns)) != NULL)
        h1_conn_close(crisp_container_of(l, struct h1_conn, link));
    assert(pool->nconns == 0 && pool->nidle == 0 && pool->nqueued == 0);
    event_free(pool->dispatch_ev);
    if (pool->tls)
        SSL_CTX_free(pool->tls);
    free(pool);
}

unsigned h1_pool_conns(const struct h1_pool *pool)
{
    return pool->nconns;
}

void h1_pool_get_stats(const struct h1_pool *pool, struct h1_pool_stats *st)
{
    *st = pool->stats;
    st->idle = pool->nidle;
}
