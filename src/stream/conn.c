/* conn.c - one client connection of the streaming server (sx.h): the
 * request head, the token, the upgrade to SPDY/3.1 or WebSocket (or SPDY
 * inside WebSocket), channels over either, back-pressure both ways, and an
 * orderly end. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "crisp/h1_parser.h"
#include "crisp/log.h"
#include "crisp/sock.h"
#include "stream/spdy.h"
#include "stream/sx.h"
#include "stream/text.h"

#define CONN_OUT_MAX (16u << 20)   /* the socket's queue: SX_OUT_HIGH plus one message */
#define CONN_IN_MAX (512u * 1024)  /* read while paused, not yet taken: a read or two */
#define CONNS_MAX 1024             /* client connections at once */
#define HEAD_MAX (64 * 1024)
#define HEAD_TIMEOUT_MS 10000      /* to send the request head */
#define LINGER_MS 5000             /* after our last byte, for the client's close */
#define WS_MSG_MAX (4u << 20)      /* one WebSocket message in */
#define SPDY_CHUNK CRISP_SOCK_READ_MAX /* one DATA frame out: a whole read of the engine's */

enum c_state { C_HEAD = 0, C_OPEN, C_CLOSING };

struct sx_conn {
    struct crisp_list link;          /* in conns */
    struct event_base *base;
    struct crisp_sock *sock;
    char id[24];
    enum c_state state;
    struct h1_reqp *reqp;
    struct sx_ticket *ticket;
    char *query;
    enum sx_proto proto;
    int rc_version;                  /* exec/attach: 1..5 */
    int base64;                      /* WebSocket base64 channel flavour */
    struct spdy *spdy;
    uint32_t spdy_last;              /* the highest stream the client opened */
    wslay_event_context_ptr ws;
    const uint8_t *ws_in;            /* what wslay's recv callback reads from */
    size_t ws_in_len, ws_in_used;
    struct sx_rc *rc;
    struct sx_pf *pf;
    struct crisp_list sessions;
    struct crisp_buf in;             /* read while paused */
    struct crisp_buf tmp;            /* a frame or message being built */
    struct event *timer;             /* head, stream creation, idle, linger */
    struct event *kick;              /* input again, from the loop */
    struct event *flush;             /* DATA queued in this loop turn goes out in one write */
    struct event *reap;              /* deferred session closes and the end */
    unsigned in_paused : 1, out_waiters : 1, dead : 1, created : 1;
    /* flow counters, in the debug log at the end (stream_conn_flow) */
    uint64_t bytes_in, bytes_out;    /* on the client's socket, framing included */
    uint64_t in_pauses, out_stops;   /* a backend could not take input; output past high */
    uint64_t in_paused_us, out_stopped_us;
    uint64_t t_in_paused, t_out_stopped;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct crisp_list conns = {&conns, &conns};
static size_t nconns;
static unsigned long next_id;

static void conn_end(struct sx_conn *c, const char *why);

static void arm(struct sx_conn *c, unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- plain HTTP answers (before any upgrade) --------------------------------------- */

/* Answers and closes: "HTTP/1.1 <status>" with a text body. */
static void answer(struct sx_conn *c, const char *status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer(struct sx_conn *c, const char *status, const char *extra, const char *fmt, ...)
{
    char body[1024], head[2048];
    va_list ap;
    va_start(ap, fmt);
    int bl = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (bl < 0 || (size_t)bl >= sizeof(body))
        bl = (int)strlen(body);
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "X-Content-Type-Options: nosniff\r\n%sContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n", status, extra ? extra : "", bl);
    crisp_sock_queue(c->sock, head, (size_t)hl);
    crisp_sock_queue(c->sock, body, (size_t)bl);
    log_info("stream_refused", "conn=%s status=%s why=%s", c->id, crisp_logq(status),
             crisp_logqn(body, (size_t)bl));
    sx_finish(c);
}

/* ---- output ------------------------------------------------------------------------ */

static void out_flush(struct sx_conn *c)
{
    if (crisp_sock_flush(c->sock) < 0)
        event_active(c->reap, EV_TIMEOUT, 0); /* the sock's on_close follows */
}

/* A WebSocket message (wslay copies it). */
static int ws_put(struct sx_conn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    struct wslay_event_msg m = {opcode, p, n};
    if (wslay_event_queue_msg(c->ws, &m) != 0 || wslay_event_send(c->ws) != 0)
        return -1;
    out_flush(c);
    return 0;
}

/* SPDY frames built in c->tmp go out: straight, or in a WebSocket message. */
static int spdy_out(struct sx_conn *c)
{
    int rv = 0;
    if (c->proto == SX_WS_SPDY)
        rv = ws_put(c, WSLAY_BINARY_FRAME, c->tmp.data, c->tmp.len);
    else if (crisp_sock_queue(c->sock, c->tmp.data, c->tmp.len) < 0)
        rv = -1;
    else {
        c->bytes_out += c->tmp.len;
        out_flush(c);
    }
    crisp_buf_reset(&c->tmp);
    return rv;
}

static int ws_channel_msg(struct sx_conn *c, uint32_t ch, const uint8_t *p, size_t n)
{
    crisp_buf_reset(&c->tmp);
    size_t need = c->base64 ? 2 + (n + 2) / 3 * 4 : 1 + n;
    if (crisp_buf_reserve(&c->tmp, need) < 0)
        return -1;
    if (c->base64) {
        c->tmp.data[0] = (uint8_t)('0' + ch);
        c->tmp.len = 1 + sx_b64_encode((char *)c->tmp.data + 1, p, n);
    } else {
        c->tmp.data[0] = (uint8_t)ch;
        if (n)
            memcpy(c->tmp.data + 1, p, n);
        c->tmp.len = 1 + n;
    }
    int rv = ws_put(c, c->base64 ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME, c->tmp.data, c->tmp.len);
    crisp_buf_reset(&c->tmp);
    return rv;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct sx_conn *c = arg;
    if (!c->dead)
        out_flush(c);
}

/* DATA frames written straight into the socket's queue (one copy). They go
 * out at the end of the loop's turn, with whatever the other sessions
 * queued meanwhile: one write and one wake-up of the client for the
 * reads of several pod connections (crisp_stream_output flushes at once
 * when the queue is past SX_OUT_HIGH). */
static int spdy_send_direct(struct sx_conn *c, uint32_t h, const uint8_t *p, size_t n)
{
    do {
        size_t k = n < SPDY_CHUNK ? n : SPDY_CHUNK;
        uint8_t *dst = crisp_sock_queue_reserve(c->sock, 8 + k);
        if (!dst)
            return -1;
        spdy_data_head(dst, h, 0, k);
        c->bytes_out += 8 + k;
        if (k)
            memcpy(dst + 8, p, k);
        p += k;
        n -= k;
    } while (n);
    event_active(c->flush, EV_TIMEOUT, 0);
    return 0;
}

int sx_send(struct sx_conn *c, uint32_t h, const uint8_t *p, size_t n)
{
    if (c->dead || c->state != C_OPEN)
        return -1;
    if (c->proto == SX_WS)
        return ws_channel_msg(c, h, p, n);
    if (c->proto == SX_SPDY)
        return spdy_send_direct(c, h, p, n);
    do { /* the frames of one piece go out with one write */
        size_t k = n < SPDY_CHUNK ? n : SPDY_CHUNK;
        if (spdy_put_data(&c->tmp, h, 0, p, k) < 0)
            return -1;
        p += k;
        n -= k;
    } while (n);
    return spdy_out(c);
}

int sx_fin(struct sx_conn *c, uint32_t h)
{
    if (c->dead || c->state != C_OPEN || c->proto == SX_WS)
        return c->dead ? -1 : 0;
    if (spdy_put_data(&c->tmp, h, SPDY_FLAG_FIN, NULL, 0) < 0)
        return -1;
    return spdy_out(c);
}

void sx_reset(struct sx_conn *c, uint32_t h, uint32_t status)
{
    if (c->dead || c->state != C_OPEN || c->proto == SX_WS)
        return;
    if (spdy_put_rst(&c->tmp, h, status) == 0)
        spdy_out(c);
}

int sx_out_full(const struct sx_conn *c)
{
    return crisp_sock_pending(c->sock) > SX_OUT_HIGH;
}

/* ---- sessions ---------------------------------------------------------------------- */

void sx_sess_init(struct sx_conn *c, struct crisp_stream_sess *s, struct crisp_stream_target *t)
{
    memset(s, 0, sizeof(*s));
    s->c = c;
    s->target = t;
    crisp_list_push_back(&c->sessions, &s->link);
}

int sx_sess_open(struct crisp_stream_sess *s, const struct crisp_stream_req *req, int32_t port)
{
    assert(!s->opened);
    s->opened = 1;
    s->ctx = s->target->ops->open(s->target, req, port, s);
    return s->ctx ? 0 : -1;
}

/* The backend's close, now; the session leaves the connection. */
static void sess_close_now(struct crisp_stream_sess *s)
{
    crisp_list_unlink(&s->link);
    void *ctx = s->ctx;
    s->ctx = NULL;
    if (ctx)
        s->target->ops->close(ctx);
    if (s->on_closed)
        s->on_closed(s);
}

void sx_sess_close(struct crisp_stream_sess *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    event_active(s->c->reap, EV_TIMEOUT, 0);
}

int crisp_stream_output(struct crisp_stream_sess *s, int chan, const uint8_t *p, size_t n)
{
    assert(chan == 1 || chan == 2);
    struct sx_conn *c = s->c;
    if (c->dead || c->state != C_OPEN || s->exited || s->closing)
        return CRISP_STREAM_E_GONE;
    if (!(s->out_set & (1u << chan)))
        return 0; /* a channel the client did not open: dropped, as the kubelet does */
    if (sx_send(c, s->out[chan], p, n) < 0)
        return CRISP_STREAM_E_GONE;
    arm(c, sx_idle_timeout_ms());
    if (!sx_out_full(c))
        return 0;
    out_flush(c); /* a queue still past SX_OUT_HIGH now is one the kernel refused: on_drain follows */
    if (!sx_out_full(c))
        return 0;
    s->out_blocked = 1;
    if (!c->out_waiters) {
        c->out_stops++;
        c->t_out_stopped = now_us();
    }
    c->out_waiters = 1;
    return 1;
}

void crisp_stream_output_end(struct crisp_stream_sess *s)
{
    if (!s->c->dead && !s->exited && !s->closing && s->on_output_end)
        s->on_output_end(s);
}

void crisp_stream_input_ready(struct crisp_stream_sess *s)
{
    struct sx_conn *c = s->c;
    s->in_blocked = 0;
    crisp_list_for_each(&c->sessions, it) {
        struct crisp_stream_sess *o = crisp_container_of(it, struct crisp_stream_sess, link);
        if (o->in_blocked && !o->closing)
            return;
    }
    if (c->in_paused) {
        c->in_paused = 0;
        c->in_paused_us += now_us() - c->t_in_paused;
        event_active(c->kick, EV_TIMEOUT, 0);
    }
}

void crisp_stream_exit(struct crisp_stream_sess *s, int code, const char *err)
{
    if (s->exited || s->closing)
        return;
    s->exited = 1;
    if (!s->c->dead && s->on_exit)
        s->on_exit(s, code, err);
    sx_sess_close(s);
}

void sx_pause_input(struct sx_conn *c)
{
    if (!c->in_paused) {
        c->in_pauses++;
        c->t_in_paused = now_us();
    }
    c->in_paused = 1;
    crisp_sock_pause_read(c->sock);
    if (c->spdy)
        spdy_yield(c->spdy);
}

enum sx_proto sx_conn_proto(const struct sx_conn *c)
{
    return c->proto;
}

const char *sx_conn_id(const struct sx_conn *c)
{
    return c->id;
}

struct event_base *sx_conn_base(const struct sx_conn *c)
{
    return c->base;
}

const struct sx_ticket *sx_conn_ticket(const struct sx_conn *c)
{
    return c->ticket;
}

const char *sx_conn_query(const struct sx_conn *c)
{
    return c->query ? c->query : "";
}

/* ---- SPDY in ------------------------------------------------------------------------- */

static int on_syn_stream(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *hdrs)
{
    struct sx_conn *c = ud;
    if (id > c->spdy_last)
        c->spdy_last = id;
    /* spdystream's server side replies to every stream at once */
    if (spdy_put_syn_reply(c->spdy, &c->tmp, id, 0, NULL) < 0 || spdy_out(c) < 0)
        return -1;
    arm(c, c->created ? sx_idle_timeout_ms() : sx_create_timeout_ms());
    return c->rc ? sx_rc_stream(c->rc, id, hdrs) : sx_pf_stream(c->pf, id, hdrs);
}

static int on_spdy_data(void *ud, uint32_t id, const uint8_t *p, size_t n)
{
    struct sx_conn *c = ud;
    if (c->created)
        arm(c, sx_idle_timeout_ms());
    return c->rc ? sx_rc_data(c->rc, id, p, n) : sx_pf_data(c->pf, id, p, n);
}

static int on_spdy_fin(void *ud, uint32_t id)
{
    struct sx_conn *c = ud;
    return c->rc ? sx_rc_fin(c->rc, id) : sx_pf_fin(c->pf, id);
}

static int on_spdy_rst(void *ud, uint32_t id, uint32_t status)
{
    struct sx_conn *c = ud;
    log_debug("stream_spdy_rst", "conn=%s stream=%u status=%u", c->id, id, status);
    if (c->rc)
        return sx_rc_fin(c->rc, id);
    sx_pf_reset(c->pf, id);
    return 0;
}

static int on_spdy_ping(void *ud, uint32_t id)
{
    struct sx_conn *c = ud;
    if (spdy_put_ping(&c->tmp, id) < 0)
        return -1;
    return spdy_out(c);
}

static int on_spdy_goaway(void *ud, uint32_t last, uint32_t status)
{
    struct sx_conn *c = ud;
    log_debug("stream_spdy_goaway", "conn=%s last=%u status=%u", c->id, last, status);
    return 0;
}

static const struct spdy_cbs conn_spdy_cbs = {
    .on_syn_stream = on_syn_stream,
    .on_data = on_spdy_data,
    .on_fin = on_spdy_fin,
    .on_rst = on_spdy_rst,
    .on_ping = on_spdy_ping,
    .on_goaway = on_spdy_goaway,
};

/* ---- WebSocket in ---------------------------------------------------------------------- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    struct sx_conn *c = ud;
    size_t left = c->ws_in_len - c->ws_in_used;
    if (!left || c->in_paused || c->state != C_OPEN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = left < len ? left : len;
    memcpy(buf, c->ws_in + c->ws_in_used, k);
    c->ws_in_used += k;
    return (ssize_t)k;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    struct sx_conn *c = ud;
    if (crisp_sock_queue(c->sock, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    c->bytes_out += len;
    return (ssize_t)len;
}

/* A channel message: its channel byte (base64: a digit), the payload. */
static int ws_channel_in(struct sx_conn *c, const uint8_t *m, size_t n)
{
    if (n == 0)
        return 0;
    uint32_t ch = c->base64 ? (uint32_t)(m[0] - '0') : m[0];
    if (c->rc && c->rc_version == 5 && m[0] == 255)
        return n == 2 ? sx_rc_fin(c->rc, m[1]) : 0; /* v5: the client closes a channel */
    if (!c->base64)
        return c->rc ? sx_rc_data(c->rc, ch, m + 1, n - 1) : sx_pf_data(c->pf, ch, m + 1, n - 1);
    uint8_t *dec = malloc(n);
    ssize_t dl = dec ? sx_b64_decode(dec, (const char *)m + 1, n - 1) : -1;
    int rv = 0;
    if (dl >= 0)
        rv = c->rc ? sx_rc_data(c->rc, ch, dec, (size_t)dl) : sx_pf_data(c->pf, ch, dec, (size_t)dl);
    else
        log_info("stream_ws_bad_base64", "conn=%s channel=%u", c->id, ch);
    free(dec);
    return rv;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    struct sx_conn *c = ud;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        log_debug("stream_ws_close", "conn=%s status=%u", c->id, arg->status_code);
        conn_end(c, "the client closed the WebSocket");
        return;
    }
    if (arg->opcode != WSLAY_BINARY_FRAME && arg->opcode != WSLAY_TEXT_FRAME)
        return;
    arm(c, sx_idle_timeout_ms());
    int rv;
    if (c->proto == SX_WS_SPDY)
        rv = spdy_feed(c->spdy, arg->msg, arg->msg_length) == (ssize_t)arg->msg_length ? 0 : -1;
    else
        rv = ws_channel_in(c, arg->msg, arg->msg_length);
    if (rv < 0)
        conn_end(c, c->spdy && *spdy_why(c->spdy) ? spdy_why(c->spdy) : "bad message");
}

static const struct wslay_event_callbacks conn_ws_cbs = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_msg_recv_callback = ws_msg,
};

/* ---- the upgrade ------------------------------------------------------------------------ */

static const char *const rc_protos[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
                                        "v3.channel.k8s.io", "v2.channel.k8s.io",
                                        "channel.k8s.io"};
static const char *const pf_protos[] = {"portforward.k8s.io"};
static const char *const rc_ws_protos[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
                                           "v4.base64.channel.k8s.io", "channel.k8s.io",
                                           "base64.channel.k8s.io"};
static const char *const pf_ws_protos[] = {"v4.channel.k8s.io", "v4.base64.channel.k8s.io",
                                           "SPDY/3.1+portforward.k8s.io"};

static int proto_version(const char *p)
{
    return p[0] == 'v' ? p[1] - '0' : 1;
}

/* SPDY: X-Stream-Protocol-Version, as httpstream.Handshake; 403 when none
 * matches, the client's offers and ours in the message. */
static int spdy_negotiate(struct sx_conn *c, const struct crisp_md *h, const char **chosen)
{
    int pf = c->ticket->req.kind == CRISP_STREAM_PORT_FORWARD;
    const char *const *sp = pf ? pf_protos : rc_protos;
    size_t n = pf ? 1 : sizeof(rc_protos) / sizeof(rc_protos[0]);
    int rv = sx_negotiate(h, "x-stream-protocol-version", sp, n, chosen);
    if (rv == 0)
        *chosen = ""; /* no negotiation: v1 (exec), as the kubelet */
    if (rv >= 0)
        return 0;
    char offers[512], extra[512] = "";
    sx_offers(h, "x-stream-protocol-version", offers, sizeof(offers));
    for (size_t i = 0, o = 0; i < n && o < sizeof(extra); i++)
        o += (size_t)snprintf(extra + o, sizeof(extra) - o,
                              "X-Accepted-Stream-Protocol-Versions: %s\r\n", sp[i]);
    answer(c, "403 Forbidden", extra,
           "unable to upgrade: unable to negotiate protocol: client supports [%s], server "
           "supports [%s]\n", offers, pf ? "portforward.k8s.io" :
           "v5.channel.k8s.io v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io");
    return -1;
}

static int start_channels(struct sx_conn *c, int version)
{
    c->rc_version = version;
    if (c->ticket->req.kind != CRISP_STREAM_PORT_FORWARD)
        c->rc = sx_rc_new(c, version, c->base64);
    else
        c->pf = sx_pf_new(c);
    return c->rc || c->pf ? 0 : -1;
}

static int upgrade_spdy(struct sx_conn *c, const struct crisp_md *h)
{
    const char *chosen;
    if (spdy_negotiate(c, h, &chosen) < 0)
        return -1;
    char resp[256];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     "Upgrade: SPDY/3.1\r\n%s%s%s\r\n", *chosen ? "X-Stream-Protocol-Version: " : "",
                     chosen, *chosen ? "\r\n" : "");
    c->proto = SX_SPDY;
    c->spdy = spdy_new(&conn_spdy_cbs, c);
    if (!c->spdy || start_channels(c, proto_version(chosen)) < 0 ||
        crisp_sock_queue(c->sock, resp, (size_t)n) < 0)
        return -1;
    log_info("stream_upgraded", "conn=%s proto=spdy version=%s", c->id, crisp_logq(chosen));
    if (c->pf)
        sx_conn_created(c); /* port-forward's pairs come when the client's users connect */
    else
        arm(c, sx_create_timeout_ms());
    out_flush(c);
    return 0;
}

static int ws_start(struct sx_conn *c, const char *chosen)
{
    c->proto = strncmp(chosen, "SPDY/3.1+", 9) == 0 ? SX_WS_SPDY : SX_WS;
    c->base64 = strstr(chosen, "base64") != NULL;
    if (wslay_event_context_server_init(&c->ws, &conn_ws_cbs, c) != 0)
        return -1;
    wslay_event_config_set_max_recv_msg_length(c->ws, WS_MSG_MAX);
    if (c->proto == SX_WS_SPDY && !(c->spdy = spdy_new(&conn_spdy_cbs, c)))
        return -1;
    return start_channels(c, c->proto == SX_WS_SPDY ? 1 : proto_version(chosen));
}

static int upgrade_ws(struct sx_conn *c, const struct crisp_md *h)
{
    const char *key = sx_hdr(h, "sec-websocket-key"), *ver = sx_hdr(h, "sec-websocket-version");
    char accept[29];
    if (!key || !ver || strcmp(ver, "13") != 0 || sx_ws_accept(key, accept) < 0) {
        answer(c, "400 Bad Request", "Sec-WebSocket-Version: 13\r\n",
               "Bad Request: a WebSocket upgrade needs Sec-WebSocket-Key and version 13\n");
        return -1;
    }
    int pf = c->ticket->req.kind == CRISP_STREAM_PORT_FORWARD;
    const char *chosen = "";
    int rv = sx_negotiate(h, "sec-websocket-protocol", pf ? pf_ws_protos : rc_ws_protos,
                          pf ? 3 : 5, &chosen);
    if (rv < 0) {
        char offers[512];
        sx_offers(h, "sec-websocket-protocol", offers, sizeof(offers));
        answer(c, "403 Forbidden", NULL, "requested protocol(s) are not supported: [%s]\n", offers);
        return -1;
    }
    char resp[384];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept,
                     *chosen ? "Sec-WebSocket-Protocol: " : "", chosen, *chosen ? "\r\n" : "");
    if (ws_start(c, chosen) < 0 || crisp_sock_queue(c->sock, resp, (size_t)n) < 0)
        return -1;
    log_info("stream_upgraded", "conn=%s proto=websocket subprotocol=%s", c->id, crisp_logq(chosen));
    out_flush(c);
    arm(c, sx_idle_timeout_ms());
    if (c->proto == SX_WS_SPDY) {
        sx_conn_created(c); /* pairs come when the client's users connect */
        return 0;
    }
    return c->rc ? sx_rc_ws_open(c->rc) : sx_pf_ws_open(c->pf, c->base64);
}

/* The head is complete: route, redeem, upgrade. -1 when the connection
 * ends (answered, or out of memory). */
static int head_done(struct sx_conn *c)
{
    const char *m = h1_reqp_method(c->reqp), *query;
    const struct crisp_md *h = h1_reqp_fields(c->reqp);
    enum crisp_stream_kind kind;
    char token[SX_TOKEN_MAX + 1];
    uint64_t blen;
    if (sx_route(h1_reqp_target(c->reqp), &kind, token, &query) < 0 ||
        !(c->ticket = sx_redeem(token, kind))) {
        answer(c, "404 Not Found", NULL, "404 page not found\n");
        return -1;
    }
    c->query = strdup(query);
    if (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0) {
        answer(c, "405 Method Not Allowed", NULL, "405: Method Not Allowed\n");
        return -1;
    }
    if (h1_reqp_body(c->reqp, &blen) || blen) {
        answer(c, "400 Bad Request", NULL, "a streaming request carries no body\n");
        return -1;
    }
    c->state = C_OPEN;
    int conn_up = sx_hdr_has(h, "connection", "upgrade");
    if (conn_up && sx_hdr_has(h, "upgrade", "websocket"))
        return upgrade_ws(c, h);
    if (conn_up && sx_hdr_has(h, "upgrade", "SPDY/3.1"))
        return upgrade_spdy(c, h);
    c->state = C_HEAD;
    answer(c, "400 Bad Request", NULL, "unable to upgrade: missing upgrade headers in request\n");
    return -1;
}

/* ---- input ------------------------------------------------------------------------------- */

/* Takes what it can of p; returns the bytes taken, -1 when the connection
 * ends (conn_end ran or must run). */
static ssize_t take_input(struct sx_conn *c, const uint8_t *p, size_t n)
{
    if (c->state == C_CLOSING)
        return (ssize_t)n; /* lingering: what the client still says is dropped */
    if (c->state == C_HEAD) {
        ssize_t k = h1_reqp_feed(c->reqp, p, n);
        if (k < 0) {
            answer(c, k == H1_E_TOO_LARGE ? "431 Request Header Fields Too Large" : "400 Bad Request",
                   NULL, "%s\n", h1_reqp_why(c->reqp));
            return (ssize_t)n;
        }
        if (h1_reqp_done(c->reqp) && head_done(c) < 0 && c->state != C_CLOSING)
            return -1;
        return k;
    }
    if (c->proto == SX_SPDY) {
        ssize_t k = spdy_feed(c->spdy, p, n);
        if (k < 0)
            log_info("stream_spdy_error", "conn=%s err=%s", c->id, crisp_logq(spdy_why(c->spdy)));
        return k;
    }
    c->ws_in = p;
    c->ws_in_len = n;
    c->ws_in_used = 0;
    int rv = wslay_event_recv(c->ws);
    if (rv == 0 && wslay_event_want_write(c->ws))
        rv = wslay_event_send(c->ws);
    out_flush(c);
    if (rv != 0)
        log_info("stream_ws_error", "conn=%s err=%d", c->id, rv);
    return rv == 0 && !c->dead ? (ssize_t)c->ws_in_used : -1;
}

/* Feeds p until taken or paused; keeps the rest in c->in. -1 when the
 * connection ended. */
static int feed(struct sx_conn *c, const uint8_t *p, size_t n, int from_in)
{
    size_t used = 0;
    while (used < n && !c->in_paused && !c->dead) {
        ssize_t k = take_input(c, p + used, n - used);
        if (k < 0 || c->dead) {
            conn_end(c, "protocol error");
            return -1;
        }
        if (k == 0 && c->state != C_HEAD)
            break;
        used += (size_t)k;
        if (k == 0)
            break;
    }
    if (from_in) {
        memmove(c->in.data, c->in.data + used, c->in.len - used);
        c->in.len -= used;
        return 0;
    }
    if (used < n && crisp_buf_append(&c->in, p + used, n - used) < 0) {
        conn_end(c, "input past its cap");
        return -1;
    }
    return 0;
}

static int on_sock_data(void *ud, const uint8_t *p, size_t n)
{
    struct sx_conn *c = ud;
    c->bytes_in += n;
    if (c->in.len || c->in_paused) {
        if (crisp_buf_append(&c->in, p, n) < 0) {
            conn_end(c, "input past its cap");
            return -1;
        }
        return 0;
    }
    return feed(c, p, n, 0) < 0 ? -1 : 0;
}

/* Input may go on (crisp_stream_input_ready): what was kept, then the socket. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct sx_conn *c = arg;
    if (c->dead || c->in_paused)
        return;
    if (c->in.len && feed(c, c->in.data, c->in.len, 1) < 0)
        return;
    if (!c->in_paused && !c->dead)
        crisp_sock_resume_read(c->sock);
}

static int on_sock_drain(void *ud)
{
    struct sx_conn *c = ud;
    if (!c->out_waiters || crisp_sock_pending(c->sock) > SX_OUT_LOW)
        return 0;
    c->out_waiters = 0;
    c->out_stopped_us += now_us() - c->t_out_stopped;
    crisp_list_for_each(&c->sessions, it) {
        struct crisp_stream_sess *s = crisp_container_of(it, struct crisp_stream_sess, link);
        if (s->out_blocked && s->ctx && !s->closing) {
            s->out_blocked = 0;
            s->target->ops->output_ready(s->ctx);
        }
    }
    return 0;
}

static void on_sock_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct sx_conn *c = ud;
    conn_end(c, c->state == C_CLOSING ? NULL : why);
}

static const struct crisp_sock_cbs conn_sock_cbs = {
    .on_data = on_sock_data,
    .on_drain = on_sock_drain,
    .on_close = on_sock_close,
};

/* ---- the end -------------------------------------------------------------------------------- */

static void conn_free(struct sx_conn *c)
{
    if (c->bytes_in || c->bytes_out)
        log_debug("stream_conn_flow", "conn=%s bytes_in=%llu bytes_out=%llu in_pauses=%llu "
                  "in_paused_ms=%llu out_stops=%llu out_stopped_ms=%llu", c->id,
                  (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
                  (unsigned long long)c->in_pauses, (unsigned long long)(c->in_paused_us / 1000),
                  (unsigned long long)c->out_stops, (unsigned long long)(c->out_stopped_us / 1000));
    crisp_list_unlink(&c->link);
    nconns--;
    sx_rc_free(c->rc);
    sx_pf_free(c->pf);
    spdy_free(c->spdy);
    if (c->ws)
        wslay_event_context_free(c->ws);
    h1_reqp_free(c->reqp);
    sx_ticket_free(c->ticket);
    free(c->query);
    crisp_buf_free(&c->in);
    crisp_buf_free(&c->tmp);
    if (c->timer)
        event_free(c->timer);
    if (c->kick)
        event_free(c->kick);
    if (c->flush)
        event_free(c->flush);
    if (c->reap)
        event_free(c->reap);
    crisp_sock_free(c->sock);
    free(c);
}

/* Every session's backend is told (now), then the connection goes. */
static void close_sessions(struct sx_conn *c)
{
    struct crisp_list *it;
    while ((it = crisp_list_first(&c->sessions)))
        sess_close_now(crisp_container_of(it, struct crisp_stream_sess, link));
}

/* The connection is over: the client went (why says how; NULL for the
 * expected end), a protocol error, a timeout. Sessions end, then it is
 * freed from the loop. */
static void conn_end(struct sx_conn *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (why)
        log_info("stream_conn_end", "conn=%s sessions=%d why=%s", c->id,
                 !crisp_list_empty(&c->sessions), crisp_logq(why));
    event_active(c->reap, EV_TIMEOUT, 0);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct sx_conn *c = arg;
    if (c->dead) {
        close_sessions(c);
        conn_free(c);
        return;
    }
    struct crisp_list *it = c->sessions.next, *next;
    for (; it != &c->sessions; it = next) {
        next = it->next;
        struct crisp_stream_sess *s = crisp_container_of(it, struct crisp_stream_sess, link);
        if (s->closing)
            sess_close_now(s); /* may free s (portforward pairs) */
    }
    if (c->pf && c->proto == SX_WS && !sx_pf_live(c->pf) && c->state == C_OPEN)
        sx_finish(c); /* WebSocket port-forward: done with its last port */
}

void sx_finish(struct sx_conn *c)
{
    if (c->dead || c->state == C_CLOSING)
        return;
    if (c->state == C_OPEN && c->spdy && spdy_put_goaway(&c->tmp, c->spdy_last, 0) == 0)
        spdy_out(c);
    if (c->state == C_OPEN && c->ws && wslay_event_queue_close(c->ws, 1000, NULL, 0) == 0) {
        wslay_event_send(c->ws);
    }
    c->state = C_CLOSING;
    crisp_sock_shutdown_write(c->sock);
    out_flush(c);
    arm(c, LINGER_MS);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sx_conn *c = arg;
    if (c->state == C_CLOSING) {
        conn_end(c, NULL);
    } else if (c->state == C_HEAD) {
        conn_end(c, "no request head in time");
    } else if (!c->created && c->rc) {
        sx_rc_timeout(c->rc);
    } else {
        log_info("stream_idle_timeout", "conn=%s idle_ms=%u", c->id, sx_idle_timeout_ms());
        sx_finish(c);
        conn_end(c, "idle");
    }
}

/* ---- accept ----------------------------------------------------------------------------------- */

void sx_conn_accept(struct event_base *base, int fd, SSL_CTX *ssl_ctx, const char *peer, void *ud)
{
    SSL *ssl = ssl_ctx ? SSL_new(ssl_ctx) : NULL;
    struct sx_conn *c = nconns < CONNS_MAX && (ssl || !ssl_ctx) ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        log_warn("stream_conn_refused", "listener=%s why=%s", peer,
                 nconns >= CONNS_MAX ? "\"too many streaming connections\"" : "\"out of memory\"");
        SSL_free(ssl);
        close(fd);
        return;
    }
    c->base = base;
    snprintf(c->id, sizeof(c->id), "s%lu", ++next_id);
    crisp_list_init(&c->sessions);
    crisp_list_push_back(&conns, &c->link);
    nconns++;
    crisp_buf_init(&c->in, CONN_IN_MAX);
    crisp_buf_init(&c->tmp, CONN_OUT_MAX);
    c->reqp = h1_reqp_new(HEAD_MAX);
    c->timer = evtimer_new(base, on_timer, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    c->flush = event_new(base, -1, 0, on_flush, c);
    c->reap = event_new(base, -1, 0, on_reap, c);
    c->sock = crisp_sock_new(base, fd, ssl, CONN_OUT_MAX, &conn_sock_cbs, c);
    if (!c->reqp || !c->timer || !c->kick || !c->flush || !c->reap || !c->sock) {
        log_warn("stream_conn_refused", "listener=%s why=\"out of memory\"", peer);
        conn_free(c); /* no callback of it has run */
        return;
    }
    crisp_sock_set_read_size(c->sock, CRISP_SOCK_READ_MAX);
    arm(c, HEAD_TIMEOUT_MS);
    log_debug("stream_conn", "conn=%s listener=%s", c->id, peer);
}

void sx_conns_close_all(void)
{
    struct crisp_list *it;
    while ((it = crisp_list_first(&conns))) {
        struct sx_conn *c = crisp_container_of(it, struct sx_conn, link);
        c->dead = 1;
        close_sessions(c);
        conn_free(c);
    }
}

void sx_conns_forget(struct crisp_stream_target *t)
{
    struct crisp_list *it = conns.next, *next;
    for (; it != &conns; it = next) {
        next = it->next;
        struct sx_conn *c = crisp_container_of(it, struct sx_conn, link);
        if (!c->ticket || c->ticket->target != t)
            continue;
        log_info("stream_conn_end", "conn=%s why=\"its backend %s is gone\"", c->id, t->name);
        c->dead = 1;
        close_sessions(c);
        conn_free(c);
    }
}

size_t sx_conns_count(void)
{
    return nconns;
}

void sx_conn_created(struct sx_conn *c)
{
    c->created = 1;
    arm(c, sx_idle_timeout_ms());
}
