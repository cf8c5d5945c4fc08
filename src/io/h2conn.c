/* h2conn.c - one nghttp2 session on one crisp_sock (see h2conn.h). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crisp/h2conn.h"
#include "crisp/h2mem.h"

static int on_sock_data(void *ud, const uint8_t *data, size_t len);
static int on_sock_drain(void *ud);
static int on_sock_connected(void *ud);
static void on_sock_close(void *ud, enum crisp_sock_end how, const char *why);

static const struct crisp_sock_cbs sock_cbs = {
    .on_data = on_sock_data,
    .on_drain = on_sock_drain,
    .on_connected = on_sock_connected,
    .on_close = on_sock_close,
};

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    crisp_h2conn_flush(arg);
}

int crisp_h2conn_init(struct crisp_h2conn *c, struct event_base *base, size_t out_high,
                      const struct crisp_h2conn_cbs *cbs, void *ud)
{
    assert(cbs && cbs->on_end);
    memset(c, 0, sizeof(*c));
    c->out_high = out_high;
    c->cbs = cbs;
    c->ud = ud;
    c->flush_ev = event_new(base, -1, 0, on_flush_ev, c);
    return c->flush_ev ? 0 : -1;
}

void crisp_h2conn_deinit(struct crisp_h2conn *c)
{
    if (c->sess)
        nghttp2_session_del(c->sess);
    if (c->flush_ev)
        event_free(c->flush_ev);
    if (c->lazy_ev)
        event_free(c->lazy_ev);
    c->lazy_ev = NULL;
    crisp_sock_free(c->sock);
    c->sess = NULL;
    c->flush_ev = NULL;
    c->sock = NULL;
}

int crisp_h2conn_accept(struct crisp_h2conn *c, struct event_base *base, int fd, SSL *ssl)
{
    /* the socket's queue holds one flush's frames and what the kernel left */
    c->sock = crisp_sock_new(base, fd, ssl, 2 * c->out_high, &sock_cbs, c);
    return c->sock ? 0 : -1;
}

int crisp_h2conn_connect(struct crisp_h2conn *c, struct event_base *base,
                         const struct sockaddr *sa, socklen_t salen, unsigned timeout_ms,
                         char *err, size_t errlen)
{
    c->sock = crisp_sock_connect(base, sa, salen, timeout_ms, 2 * c->out_high, &sock_cbs, c,
                                 err, errlen);
    return c->sock ? 0 : -1;
}

int crisp_h2conn_session_new(struct crisp_h2conn *c, int server,
                             const nghttp2_session_callbacks *cbs, const nghttp2_option *opt)
{
    assert(!c->sess);
    if (server)
        return nghttp2_session_server_new3(&c->sess, cbs, c->ud, opt, crisp_h2mem());
    return nghttp2_session_client_new3(&c->sess, cbs, c->ud, opt, crisp_h2mem());
}

/* The connection cannot go on: the owner frees it from on_end. */
static int end(struct crisp_h2conn *c, enum crisp_sock_end how, const char *why)
{
    assert(!c->ended);
    c->ended = 1;
    c->cbs->on_end(c->ud, how, why);
    return -1;
}

/* Hands nghttp2's frames to the socket's queue, up to out_high. Returns
 * the last mem_send result (0: nothing more, < 0: nghttp2's error), or 1
 * when the queue is full; *cap_hit when the socket refused the bytes. */
static ssize_t queue_frames(struct crisp_h2conn *c, int *cap_hit)
{
    ssize_t n = 0;
    while (crisp_sock_pending(c->sock) < c->out_high) {
        const uint8_t *data;
        n = nghttp2_session_mem_send(c->sess, &data);
        if (n <= 0)
            return n;
        if (crisp_sock_queue(c->sock, data, (size_t)n) < 0) {
            *cap_hit = 1;
            return -1;
        }
    }
    return 1;
}

int crisp_h2conn_flush(struct crisp_h2conn *c)
{
    if (!c->sess || c->ended)
        return 0;
    if (c->lazy_ev)
        evtimer_del(c->lazy_ev); /* what it waited for goes now */
    for (;;) {
        int cap_hit = 0;
        c->data_waits = 0;
        ssize_t n = queue_frames(c, &cap_hit);
        if (cap_hit)
            return end(c, CRISP_SOCK_ERROR, "output over its cap");
        if (n < 0)
            return end(c, CRISP_SOCK_ERROR, nghttp2_strerror((int)n));
        int r = crisp_sock_flush(c->sock);
        if (r < 0)
            return 0; /* on_close follows from the loop */
        if (r == 0 || (n == 0 && !c->data_waits))
            break; /* the kernel is full (on_drain resumes), or all is out */
    }
    if (crisp_sock_pending(c->sock) != 0)
        return 0;
    if (!nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess))
        return end(c, CRISP_SOCK_EOF, "the HTTP/2 session ended");
    return c->cbs->on_flushed ? c->cbs->on_flushed(c->ud) : 0;
}

void crisp_h2conn_schedule_flush(struct crisp_h2conn *c)
{
    event_active(c->flush_ev, EV_WRITE, 0);
}

int crisp_h2conn_lazy_input(struct crisp_h2conn *c, struct event_base *base, unsigned us)
{
    c->lazy_us = us;
    if (!c->lazy_ev)
        c->lazy_ev = evtimer_new(base, on_flush_ev, c);
    return c->lazy_ev ? 0 : -1;
}

/* After reading: a flush now, or (lazy) once the delay is over if nothing
 * else flushes first. */
void crisp_h2conn_schedule_lazy(struct crisp_h2conn *c)
{
    if (!c->lazy_ev) {
        crisp_h2conn_schedule_flush(c);
        return;
    }
    if (!nghttp2_session_want_write(c->sess) || evtimer_pending(c->lazy_ev, NULL))
        return;
    struct timeval tv = {0, (suseconds_t)c->lazy_us};
    evtimer_add(c->lazy_ev, &tv);
}

int crisp_h2conn_data_room(struct crisp_h2conn *c)
{
    if (crisp_sock_pending(c->sock) < c->out_high)
        return 1;
    /* mem_send goes on with DATA frames without returning to the flush:
     * stop here until the queue is written */
    c->data_waits = 1;
    return 0;
}

void *crisp_h2conn_header_stream(struct crisp_h2conn *c, int32_t sid)
{
    if (sid != c->hdr_sid) {
        c->hdr_sid = sid;
        c->hdr_stream = nghttp2_session_get_stream_user_data(c->sess, sid);
    }
    return c->hdr_stream;
}

void crisp_h2conn_set_header_stream(struct crisp_h2conn *c, int32_t sid, void *stream)
{
    c->hdr_sid = sid;
    c->hdr_stream = stream;
}

void crisp_h2conn_forget_stream(struct crisp_h2conn *c, int32_t sid)
{
    if (sid == c->hdr_sid) {
        c->hdr_sid = 0;
        c->hdr_stream = NULL;
    }
}

/* ---- socket callbacks ---------------------------------------------------- */

static int on_sock_data(void *ud, const uint8_t *data, size_t len)
{
    struct crisp_h2conn *c = ud;
    if (!c->sess)
        return 0; /* a client before its session: nothing can arrive */
    ssize_t n = nghttp2_session_mem_recv(c->sess, data, len);
    if (n < 0 && (!c->cbs->on_bad_input || c->cbs->on_bad_input(c->ud, (int)n) < 0)) {
        if (!c->cbs->on_bad_input)
            end(c, CRISP_SOCK_ERROR, nghttp2_strerror((int)n));
        return -1;
    }
    /* Scheduled, not written here: the flushes this input caused on other
     * connections (new calls to a runtime, answers to clients) were
     * scheduled first and go out first. */
    crisp_h2conn_schedule_lazy(c);
    return 0;
}

static int on_sock_drain(void *ud)
{
    return crisp_h2conn_flush(ud);
}

static int on_sock_connected(void *ud)
{
    struct crisp_h2conn *c = ud;
    return c->cbs->on_connected ? c->cbs->on_connected(c->ud) : 0;
}

static void on_sock_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct crisp_h2conn *c = ud;
    if (!c->ended)
        end(c, how, why);
}
