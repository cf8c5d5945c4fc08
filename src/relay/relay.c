/* relay.c - relay to another CRI runtime over HTTP/2 (gRPC).
 *
 * A small pool of HTTP/2 client connections (pool_size(): one per CPU, 2 to
 * 4), each multiplexed and reused; a new call goes to the least-loaded ready
 * one, and another connection is opened when every ready one already
 * carries BE_POOL_GROW_AT calls (one connection is a bottleneck in the
 * runtime: containerd serves each connection from one reader/writer pair;
 * more connections than CPUs only split its batches: on 2 CPUs, 4
 * connections cost containerd ~5 us more per call than 2). Request
 * bytes are
 * relayed as they came (v1alpha2 calls go out on the v1 path: the messages
 * are wire-identical). Response DATA is forwarded as it arrives: the 5-byte
 * message prefixes are checked on the way (cap, compression flag; counted
 * for the logs) without buffering the messages, and a stream that ends
 * inside a message is reported as truncated. Only calls whose answer crisp
 * rewrites (crisp_call_wants_msgs) are split into whole messages. Backend
 * metadata, status codes, messages and trailers pass through unchanged.
 *
 * Connection states: CONNECTING -> READY -> (GOAWAY) DRAINING. A failure or
 * a lost connection fails the calls it carried with UNAVAILABLE; when no
 * connection is left in the pool, the calls waiting for one fail too and a
 * timer (100 ms doubling to 2 s) or the next call reconnects. A connection
 * that received GOAWAY leaves the pool and drains its calls while the others
 * (or a new one) take new calls. A connection that fails to open while
 * others are ready costs nothing but a pause in growing the pool.
 *
 * Back-pressure and memory: automatic WINDOW_UPDATEs are off and a stream
 * starts with no window (SETTINGS_INITIAL_WINDOW_SIZE 0). Each call gets
 * BE_STREAM_WINDOW out of its client's response budgets (crisp_call_reserve)
 * before the runtime may send it anything, and received DATA is
 * acknowledged to the stream (consume_stream) only while the call's queue
 * is under its high-water mark and the budgets have room again. So a slow
 * or stalled client holds at most the window plus its call's queue, and
 * all clients together what the budgets allow; the runtime's stream waits
 * instead. The connection window is acknowledged as DATA arrives, so a
 * stalled call never holds up the others on the same connection. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <stdarg.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/grpc_scan.h"
#include "crisp/h2conn.h"
#include "crisp/list.h"
#include "crisp/log.h"
#include "crisp/zalloc.h"
#include "crisp/net.h"
#include "crisp/sock.h"
#include "crisp/version.h"

#define BE_STREAM_WINDOW (128 * 1024) /* granted per call, from its budgets */
#define BE_CONN_WINDOW (64 << 20)
#define BE_OUT_HIGH (64 * 1024) /* frames queued per write; the cap on unsent output */
/* A runtime's PING (grpc-go pings on every call it receives, for its BDP
 * estimate) is acknowledged with the next request rather than by a write of
 * its own: one syscall less per call one at a time. */
#define BE_ACK_DELAY_US 2000
#define BE_BACKOFF_MIN_MS 100
#define BE_BACKOFF_MAX_MS 2000
#define BE_CONNECT_TIMEOUT_S 5
#define BE_POOL_MAX 4          /* connections taking new calls, at most */
#define BE_POOL_GROW_AT 4      /* calls on every ready one before another opens */
#define BE_POOL_GROW_PAUSE_US 1000000 /* after a failed extra connection */

enum cri_conn_state {
    CONN_CONNECTING = 0,
    CONN_READY,
    CONN_DRAINING,
};

static const char *cri_conn_state_to_str(enum cri_conn_state s)
{
    static const char *const names[] = {"connecting", "ready", "draining"};
    return (unsigned)s < 3 ? names[s] : "?";
}

struct cri_be;
struct cri_conn;

struct cri_stream {
    struct crisp_list link; /* in cri_conn.streams, or cri_be.waiting */
    struct cri_conn *conn; /* NULL while waiting for a connection */
    struct crisp_call *call;
    int32_t id;
    size_t req_off;        /* request bytes sent, prefix included */
    uint8_t prefix[GRPC_PREFIX_LEN];
    struct grpc_reader rd; /* whole-message mode (crisp_call_wants_msgs) */
    struct grpc_scan scan; /* raw mode: prefixes checked as DATA passes */
    struct crisp_md hdrs;  /* metadata of the header block being read */
    size_t held;           /* DATA bytes not yet acknowledged to the stream */
    int http_status;
    int code;              /* grpc-status, -1 until seen */
    char *message;
    unsigned grpc_ctype : 1;
    unsigned raw : 1;      /* forward DATA as it comes */
    unsigned opened : 1;   /* its HEADERS went out: nghttp2 has the stream */
    unsigned granted : 1;  /* its window was granted */
};

struct cri_conn {
    struct crisp_list link; /* in cri_be.draining (pool members: in pool[]) */
    struct crisp_h2conn h2; /* the socket and the nghttp2 session */
    struct cri_be *be;
    enum cri_conn_state state;
    struct crisp_list streams;
    unsigned nstreams;
};

struct cri_be {
    struct crisp_backend base;
    struct event_base *evb;
    struct crisp_addr addr;
    struct cri_conn *pool[BE_POOL_MAX]; /* connecting or ready: take new calls */
    unsigned npool;
    unsigned pool_max;          /* pool_size() */
    struct crisp_list draining; /* connections finishing their calls */
    struct crisp_list waiting;  /* calls waiting for a connection to be ready */
    int64_t grow_after_us;     /* no extra connection before (monotonic) */
    struct event *retry_ev;
    int backoff_ms;
    char last_err[256];
    unsigned stopping : 1;
};

static void conn_start(struct cri_be *be);
static void stream_consume(struct cri_stream *s);
static void conn_fail(struct cri_conn *c, const char *why);

/* ---- pool ------------------------------------------------------------- */

static int pool_has(const struct cri_be *be, const struct cri_conn *c)
{
    for (unsigned i = 0; i < be->npool; i++)
        if (be->pool[i] == c)
            return 1;
    return 0;
}

static void pool_del(struct cri_be *be, struct cri_conn *c)
{
    for (unsigned i = 0; i < be->npool; i++) {
        if (be->pool[i] == c) {
            be->pool[i] = be->pool[--be->npool];
            be->pool[be->npool] = NULL;
            return;
        }
    }
}

static unsigned pool_connecting(const struct cri_be *be)
{
    unsigned n = 0;
    for (unsigned i = 0; i < be->npool; i++)
        n += be->pool[i]->state == CONN_CONNECTING;
    return n;
}

/* The connection stops taking new calls (GOAWAY) and finishes its own. */
static void conn_drain(struct cri_conn *c)
{
    if (!pool_has(c->be, c))
        return;
    pool_del(c->be, c);
    c->state = CONN_DRAINING;
    crisp_list_push_front(&c->be->draining, &c->link);
}

/* ---- streams ---------------------------------------------------------- */

static struct cri_stream *stream_new(struct crisp_call *call)
{
    struct cri_stream *s = crisp_zalloc(sizeof(*s));
    if (!s)
        return NULL;
    s->call = call;
    s->code = -1;
    grpc_reader_init(&s->rd, call->max_msg);
    grpc_scan_init(&s->scan, call->max_msg);
    s->raw = !crisp_call_wants_msgs(call);
    crisp_md_init(&s->hdrs, 64 * 1024);
    grpc_prefix_write(s->prefix, call->req_len);
    crisp_call_ref(call);
    call->be_ctx = s;
    return s;
}

/* Detaches the call (after it was finished or cancelled) and frees. */
static void stream_free(struct cri_stream *s)
{
    if (s->call) {
        s->call->be_ctx = NULL;
        crisp_call_unref(s->call);
    }
    grpc_reader_free(&s->rd);
    crisp_md_free(&s->hdrs);
    free(s->message);
    free(s);
}

static void stream_finish(struct cri_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stream_finish(struct cri_stream *s, int code, const char *fmt, ...)
{
    if (!s->call)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    crisp_call_finish(s->call, code, msg);
}

/* ---- request ---------------------------------------------------------- */

static ssize_t req_read_cb(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)sess;
    (void)id;
    (void)ud;
    struct cri_stream *s = src->ptr;
    struct crisp_call *call = s->call;
    size_t total = GRPC_PREFIX_LEN + (call ? call->req_len : 0);
    size_t n = 0;
    while (n < length && s->req_off < GRPC_PREFIX_LEN)
        buf[n++] = s->prefix[s->req_off++];
    if (call && n < length && s->req_off < total) {
        size_t take = total - s->req_off;
        if (take > length - n)
            take = length - n;
        memcpy(buf + n, call->req + (s->req_off - GRPC_PREFIX_LEN), take);
        s->req_off += take;
        n += take;
    }
    if (s->req_off >= total || !call)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}


static void stream_submit(struct cri_conn *c, struct cri_stream *s)
{
    struct crisp_call *call = s->call;
    const struct crisp_md *md = &call->req_md;
    size_t n = 8 + md->n;
    nghttp2_nv stack[24];
    nghttp2_nv *nva = n <= 24 ? stack : calloc(n, sizeof(*nva));
    if (!nva) {
        stream_finish(s, GRPC_RESOURCE_EXHAUSTED, "out of memory relaying the call");
        stream_free(s);
        return;
    }
    static const char ua[] = "crisp/" CRISP_VERSION;
    const char *path = call->method->path;
    size_t k = 0;
    nva[k++] = CRISP_NV_LIT(":method", "POST", 4);
    nva[k++] = CRISP_NV_LIT(":scheme", "http", 4);
    nva[k++] = CRISP_NV_LIT(":path", path, strlen(path));
    nva[k++] = CRISP_NV_LIT(":authority", "localhost", 9);
    nva[k++] = CRISP_NV_LIT("content-type", "application/grpc", 16);
    nva[k++] = CRISP_NV_LIT("te", "trailers", 8);
    nva[k++] = CRISP_NV_LIT("user-agent", ua, sizeof(ua) - 1);
    char tmo[16];
    int64_t left = crisp_call_remaining_us(call);
    if (left > 0) {
        size_t tl = grpc_timeout_format(left, tmo);
        nva[k++] = CRISP_NV_LIT("grpc-timeout", tmo, tl);
    }
    for (size_t i = 0; i < md->n; i++)
        nva[k++] = (nghttp2_nv){md->v[i].name, md->v[i].value, md->v[i].namelen,
                                md->v[i].valuelen, NGHTTP2_NV_FLAG_NONE};
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = req_read_cb};
    int32_t id = nghttp2_submit_request(c->h2.sess, NULL, nva, k, &prd, s);
    if (nva != stack)
        free(nva);
    if (id < 0) {
        stream_finish(s, GRPC_UNAVAILABLE, "backend %s: cannot open a stream: %s",
                      c->be->base.name, nghttp2_strerror(id));
        stream_free(s);
        return;
    }
    s->id = id;
    s->conn = c;
    crisp_list_push_front(&c->streams, &s->link);
    c->nstreams++;
    crisp_h2conn_schedule_flush(&c->h2); /* on_frame_send grants the window */
}

/* ---- response --------------------------------------------------------- */

/* Opens the stream's window, or gives back what was received, once the
 * call's queue and budgets allow; otherwise the call waits and its drained
 * op brings it here again. */
static void stream_consume(struct cri_stream *s)
{
    nghttp2_session *sess = s->conn ? s->conn->h2.sess : NULL;
    if (!sess || !s->call || !s->opened || crisp_call_out_full(s->call))
        return;
    if (!s->granted) {
        if (crisp_call_reserve(s->call, BE_STREAM_WINDOW) < 0)
            return;
        s->granted = 1;
        nghttp2_submit_window_update(sess, NGHTTP2_FLAG_NONE, s->id, BE_STREAM_WINDOW);
    } else {
        if (!s->held || crisp_call_reserve(s->call, s->held) < 0)
            return;
        nghttp2_session_consume_stream(sess, s->id, s->held);
        /* a small answer's few bytes make no WINDOW_UPDATE yet: no write
         * of its own */
        int small = s->held < BE_STREAM_WINDOW / 4;
        s->held = 0;
        if (small) {
            crisp_h2conn_schedule_lazy(&s->conn->h2);
            return;
        }
    }
    crisp_h2conn_schedule_flush(&s->conn->h2);
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    struct cri_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    (void)sess;
    struct cri_stream *s = crisp_h2conn_header_stream(&c->h2, frame->hd.stream_id);
    if (!s)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->http_status = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            s->http_status = s->http_status * 10 + (value[i] - '0');
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        s->grpc_ctype = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int code = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++)
            code = code * 10 + (value[i] - '0');
        s->code = code;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(s->message);
        s->message = valuelen ? grpc_percent_decode((const char *)value, valuelen) : NULL;
    } else if (!crisp_md_is_reserved(name, namelen)) {
        if (crisp_md_add(&s->hdrs, name, namelen, value, valuelen) < 0)
            log_warn("backend_md_dropped", "backend=%s name=%s", s->conn->be->base.name,
                     crisp_logqn((const char *)name, namelen));
    }
    return 0;
}

static void move_md(struct crisp_md *dst, struct crisp_md *src)
{
    for (size_t i = 0; i < src->n; i++)
        crisp_md_add(dst, src->v[i].name, src->v[i].namelen, src->v[i].value,
                     src->v[i].valuelen);
    size_t max = src->max_bytes;
    crisp_md_free(src);
    crisp_md_init(src, max);
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct cri_conn *c = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        log_info("backend_goaway", "backend=%s error=%s", c->be->base.name,
                 nghttp2_http2_strerror(frame->goaway.error_code));
        conn_drain(c);
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct cri_stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
    if (!s || !s->call)
        return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        move_md(&s->call->trailer_md, &s->hdrs);
    } else if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && s->http_status == 200 &&
               s->grpc_ctype) {
        move_md(&s->call->resp_md, &s->hdrs);
        crisp_call_send_headers(s->call);
    }
    return 0;
}

/* A request's HEADERS went out: the stream exists now and can be given its
 * window (a WINDOW_UPDATE in the same write as the request). */
static int on_frame_send(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct cri_stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
    if (s && !s->opened) {
        s->opened = 1;
        stream_consume(s);
    }
    return 0;
}

static int on_resp_msg(void *ud, uint8_t *msg, size_t len)
{
    struct cri_stream *s = ud;
    return crisp_call_send_msg(s->call, msg, len) < 0 ? -1 : 0;
}

static int emit_raw(void *ud, const uint8_t *p, size_t n)
{
    struct cri_stream *s = ud;
    return crisp_call_send_raw(s->call, p, n) < 0 ? GRPC_E_NOMEM : 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct cri_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    /* the connection's window at once: a stalled call holds up no other */
    nghttp2_session_consume_connection(sess, len);
    if (!s || !s->call || s->call->state == CRISP_CALL_FINISHED) {
        nghttp2_session_consume_stream(sess, id, len);
        return 0;
    }
    s->held += len;
    int rv;
    if (s->raw) {
        unsigned before = s->scan.nmsgs;
        rv = grpc_scan_feed(&s->scan, data, len, emit_raw, s);
        s->call->nmsgs_out += s->scan.nmsgs - before;
    } else {
        rv = grpc_reader_feed(&s->rd, data, len, on_resp_msg, s);
    }
    if (rv < 0 && s->call->state != CRISP_CALL_FINISHED) {
        if (rv == GRPC_E_TOO_LARGE)
            stream_finish(s, GRPC_RESOURCE_EXHAUSTED,
                          "response message of %zu bytes exceeds the limit of %zu bytes "
                          "(--max-message-size)", s->raw ? s->scan.declared : s->rd.declared,
                          s->rd.max);
        else if (rv == GRPC_E_COMPRESSED)
            stream_finish(s, GRPC_INTERNAL, "backend sent a compressed message crisp did not ask for");
        else
            stream_finish(s, GRPC_RESOURCE_EXHAUSTED, "out of memory reading a response");
    }
    if (s->call->state == CRISP_CALL_FINISHED) {
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        nghttp2_session_consume_stream(sess, id, s->held);
        s->held = 0;
        return 0;
    }
    stream_consume(s);
    return 0;
}

static void finish_from_close(struct cri_stream *s, uint32_t error_code)
{
    const char *name = s->conn->be->base.name;
    if (s->code >= 0) {
        int cut = s->raw ? grpc_scan_partial(&s->scan) : grpc_reader_pending(&s->rd) > 0;
        if (cut && s->code == GRPC_OK)
            stream_finish(s, GRPC_INTERNAL, "backend %s sent a truncated message", name);
        else
            crisp_call_finish(s->call, s->code, s->message);
    } else if (s->http_status && s->http_status != 200) {
        stream_finish(s, grpc_code_from_http_status(s->http_status),
                      "backend %s answered HTTP %d", name, s->http_status);
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        stream_finish(s, GRPC_UNAVAILABLE, "backend %s refused the stream", name);
    } else if (error_code == NGHTTP2_CANCEL) {
        stream_finish(s, GRPC_CANCELLED, "backend %s cancelled the stream", name);
    } else if (error_code != NGHTTP2_NO_ERROR) {
        stream_finish(s, GRPC_INTERNAL, "backend %s reset the stream (%s)", name,
                      nghttp2_http2_strerror(error_code));
    } else {
        stream_finish(s, GRPC_INTERNAL, "backend %s closed the stream without a grpc-status",
                      name);
    }
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t error_code, void *ud)
{
    struct cri_conn *c = ud;
    crisp_h2conn_forget_stream(&c->h2, id);
    struct cri_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (!s)
        return 0;
    s->held = 0; /* the connection's part was acknowledged as it came */
    if (s->call)
        finish_from_close(s, error_code);
    crisp_list_unlink(&s->link);
    c->nstreams--;
    stream_free(s);
    return 0;
}

/* ---- connection ------------------------------------------------------- */

static void conn_free(struct cri_conn *c)
{
    struct cri_be *be = c->be;
    if (c->state == CONN_DRAINING)
        crisp_list_unlink(&c->link);
    else
        pool_del(be, c);
    crisp_h2conn_deinit(&c->h2);
    free(c);
}

static void fail_waiting(struct cri_be *be, const char *why)
{
    while (!crisp_list_empty(&be->waiting)) {
        struct cri_stream *s = crisp_container_of(be->waiting.next, struct cri_stream, link);
        crisp_list_unlink(&s->link);
        stream_finish(s, GRPC_UNAVAILABLE, "backend %s unavailable: %s", be->base.name, why);
        stream_free(s);
    }
}

static void schedule_retry(struct cri_be *be)
{
    be->backoff_ms = be->backoff_ms ? be->backoff_ms * 2 : BE_BACKOFF_MIN_MS;
    if (be->backoff_ms > BE_BACKOFF_MAX_MS)
        be->backoff_ms = BE_BACKOFF_MAX_MS;
    struct timeval tv = {be->backoff_ms / 1000, (be->backoff_ms % 1000) * 1000};
    evtimer_add(be->retry_ev, &tv);
}

/* The connection is unusable: its calls fail with UNAVAILABLE. */
static void conn_fail(struct cri_conn *c, const char *why)
{
    struct cri_be *be = c->be;
    int was_ready = c->state != CONN_CONNECTING;
    int in_pool = pool_has(be, c);
    /* An extra connection that does not open while others serve is no
     * outage: note it and pause the pool's growth. */
    int extra = !was_ready && in_pool && be->npool > 1;
    snprintf(be->last_err, sizeof(be->last_err), "%s", why);
    if (be->stopping)
        log_debug("backend_closed", "backend=%s", be->base.name);
    else if (was_ready)
        log_warn("backend_lost", "backend=%s state=%s err=%s", be->base.name,
                 cri_conn_state_to_str(c->state), crisp_logq(why));
    else if (extra)
        log_info("backend_connect_failed", "backend=%s err=%s extra=1", be->base.name,
                 crisp_logq(why));
    else if (be->backoff_ms == 0 || CRISP_LOG_ENABLED(CRISP_LOG_DEBUG))
        log_warn("backend_connect_failed", "backend=%s err=%s", be->base.name, crisp_logq(why));
    if (extra)
        be->grow_after_us = crisp_now_us() + BE_POOL_GROW_PAUSE_US;
    while (!crisp_list_empty(&c->streams)) {
        struct cri_stream *s = crisp_container_of(c->streams.next, struct cri_stream, link);
        crisp_list_unlink(&s->link);
        c->nstreams--;
        nghttp2_session_set_stream_user_data(c->h2.sess, s->id, NULL);
        stream_finish(s, GRPC_UNAVAILABLE, "backend %s: %s", be->base.name,
                      was_ready ? "connection lost" : why);
        stream_free(s);
    }
    conn_free(c);
    if (in_pool && !pool_connecting(be) && !be->stopping) {
        /* Nothing left that could take the waiting calls. */
        fail_waiting(be, why);
        if (!be->npool)
            schedule_retry(be);
    }
}

/* A draining connection that finished its calls closes itself. */
static int on_flushed(void *ud)
{
    struct cri_conn *c = ud;
    if (c->state == CONN_DRAINING && crisp_list_empty(&c->streams)) {
        conn_free(c);
        return -1;
    }
    return 0;
}

static int on_bad_input(void *ud, int rv)
{
    conn_fail(ud, nghttp2_strerror(rv));
    return -1;
}

static nghttp2_session_callbacks *client_callbacks(void)
{
    static nghttp2_session_callbacks *cbs;
    if (cbs)
        return cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    return cbs;
}

static int conn_ready(struct cri_conn *c)
{
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return -1;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_callbacks *cbs = client_callbacks();
    int rv = cbs ? crisp_h2conn_session_new(&c->h2, 0, cbs, opt) : -1;
    nghttp2_option_del(opt);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0}, /* granted per call */
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}, /* as the front end (h2srv.c) */
    };
    if (nghttp2_submit_settings(c->h2.sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(c->h2.sess, NGHTTP2_FLAG_NONE, 0, BE_CONN_WINDOW) != 0)
        return -1;
    c->state = CONN_READY;
    return 0;
}

static int on_connected(void *ud)
{
    struct cri_conn *c = ud;
    struct cri_be *be = c->be;
    if (conn_ready(c) < 0) {
        conn_fail(c, "cannot start an HTTP/2 session (out of memory)");
        return -1;
    }
    if (be->backoff_ms)
        log_info("backend_connected", "backend=%s", be->base.name);
    else
        log_debug("backend_connected", "backend=%s", be->base.name);
    be->backoff_ms = 0;
    while (!crisp_list_empty(&be->waiting)) {
        struct cri_stream *s = crisp_container_of(be->waiting.next, struct cri_stream, link);
        crisp_list_unlink(&s->link);
        stream_submit(c, s);
    }
    return crisp_h2conn_flush(&c->h2);
}

static void on_end(void *ud, enum crisp_sock_end how, const char *why)
{
    struct cri_conn *c = ud;
    char buf[256];
    if (how == CRISP_SOCK_TIMEOUT)
        snprintf(buf, sizeof(buf), "connect: timed out after %ds", BE_CONNECT_TIMEOUT_S);
    else if (how == CRISP_SOCK_EOF)
        snprintf(buf, sizeof(buf), "backend closed the connection");
    else
        snprintf(buf, sizeof(buf), "%s", why);
    conn_fail(c, buf);
}

static const struct crisp_h2conn_cbs h2conn_cbs = {
    .on_bad_input = on_bad_input,
    .on_end = on_end,
    .on_connected = on_connected,
    .on_flushed = on_flushed,
};

static void conn_start(struct cri_be *be)
{
    struct cri_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        fail_waiting(be, "out of memory");
        return;
    }
    c->be = be;
    c->state = CONN_CONNECTING;
    crisp_list_init(&c->streams);
    be->pool[be->npool++] = c;
    if (crisp_h2conn_init(&c->h2, be->evb, BE_OUT_HIGH, &h2conn_cbs, c) < 0 ||
        crisp_h2conn_lazy_input(&c->h2, be->evb, BE_ACK_DELAY_US) < 0) {
        conn_fail(c, "out of memory");
        return;
    }
    char why[256];
    if (crisp_h2conn_connect(&c->h2, be->evb, (struct sockaddr *)&be->addr.ss, be->addr.sslen,
                             BE_CONNECT_TIMEOUT_S * 1000, why, sizeof(why)) < 0)
        conn_fail(c, why);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cri_be *be = arg;
    if (!be->npool)
        conn_start(be);
}

/* ---- ops -------------------------------------------------------------- */

/* One connection per CPU crisp may run on, 2 to BE_POOL_MAX. */
static unsigned pool_size(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
    return n < 2 ? 2 : n > BE_POOL_MAX ? BE_POOL_MAX : (unsigned)n;
}

static struct crisp_backend *cri_create(struct event_base *evb,
                                        const struct crisp_backend_spec *spec, char *err,
                                        size_t errlen)
{
    const char *url = spec->url;
    struct cri_be *be = calloc(1, sizeof(*be));
    if (!be) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (crisp_addr_parse(url, &be->addr, err, errlen) < 0)
        goto fail;
    if (be->addr.kind == CRISP_ADDR_FD) {
        snprintf(err, errlen, "a cri backend needs unix:// or tcp://, not %s", url);
        goto fail;
    }
    be->evb = evb;
    be->pool_max = pool_size();
    crisp_list_init(&be->waiting);
    crisp_list_init(&be->draining);
    be->retry_ev = evtimer_new(evb, on_retry, be);
    if (!be->retry_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    be->base.ops = &crisp_backend_cri_ops;
    size_t nl = strlen(url) + 5;
    be->base.name = malloc(nl);
    if (!be->base.name) {
        snprintf(err, errlen, "out of memory");
        event_free(be->retry_ev);
        goto fail;
    }
    snprintf(be->base.name, nl, "cri:%s", url);
    /* Connect at once, so the first call finds the connection ready. */
    conn_start(be);
    return &be->base;
fail:
    free(be);
    return NULL;
}

/* Up: a connection of the pool is ready (metrics). */
static int cri_health(struct crisp_backend *base)
{
    struct cri_be *be = (struct cri_be *)base;
    for (unsigned i = 0; i < be->npool; i++)
        if (be->pool[i]->state == CONN_READY)
            return 1;
    return 0;
}

static void cri_start(struct crisp_backend *base, struct crisp_call *call)
{
    struct cri_be *be = (struct cri_be *)base;
    struct cri_stream *s = stream_new(call);
    if (!s) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory relaying the call");
        return;
    }
    struct cri_conn *best = NULL;
    for (unsigned i = 0; i < be->npool;) {
        struct cri_conn *c = be->pool[i];
        if (c->state == CONN_READY && !nghttp2_session_check_request_allowed(c->h2.sess)) {
            /* GOAWAY arrived but the frame callback has not moved it yet. */
            conn_drain(c);
            continue;
        }
        if (c->state == CONN_READY && (!best || c->nstreams < best->nstreams))
            best = c;
        i++;
    }
    if (best) {
        if (best->nstreams >= BE_POOL_GROW_AT && be->npool < be->pool_max &&
            !pool_connecting(be) && crisp_now_us() >= be->grow_after_us)
            conn_start(be);
        stream_submit(best, s);
        return;
    }
    crisp_list_push_back(&be->waiting, &s->link);
    if (!pool_connecting(be)) {
        /* In backoff: try now rather than fail a call the backend may be
         * back for; the timer keeps running as the fallback. */
        evtimer_del(be->retry_ev);
        conn_start(be);
    }
}

static void cri_cancel(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    struct cri_stream *s = call->be_ctx;
    if (!s)
        return;
    if (!s->conn) {
        crisp_list_unlink(&s->link);
        stream_free(s);
        return;
    }
    /* The stream stays until nghttp2 closes it; only the call goes. */
    nghttp2_submit_rst_stream(s->conn->h2.sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    s->call = NULL;
    call->be_ctx = NULL;
    crisp_call_unref(call);
    crisp_h2conn_schedule_flush(&s->conn->h2);
}

static void cri_drained(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    struct cri_stream *s = call->be_ctx;
    if (s)
        stream_consume(s);
}

static void cri_destroy(struct crisp_backend *base)
{
    struct cri_be *be = (struct cri_be *)base;
    be->stopping = 1;
    fail_waiting(be, "crisp is shutting down");
    while (!crisp_list_empty(&be->draining))
        conn_fail(crisp_container_of(be->draining.next, struct cri_conn, link),
                  "crisp is shutting down");
    while (be->npool)
        conn_fail(be->pool[0], "crisp is shutting down");
    evtimer_del(be->retry_ev);
    event_free(be->retry_ev);
    free(be->base.name);
    free(be);
}

const struct crisp_backend_ops crisp_backend_cri_ops = {
    .kind = "cri",
    .url_help = "cri:unix:///run/containerd/containerd.sock (another CRI runtime)\n"
                "cri:tcp://host:port (plain HTTP/2)",
    .create = cri_create,
    .start = cri_start,
    .cancel = cri_cancel,
    .drained = cri_drained,
    .destroy = cri_destroy,
    .health = cri_health,
};
