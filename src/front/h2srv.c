/* h2srv.c - HTTP/2 + gRPC server sessions (the front end). */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <stdarg.h>

#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/h2conn.h"
#include "crisp/list.h"
#include "h2req.h"
#include "crisp/h2srv.h"
#include "crisp/log.h"
#include "crisp/zalloc.h"
#include "crisp/sock.h"

#define CONN_OUT_HIGH (64 * 1024)    /* frames queued per write; the cap on unsent output */
#define STREAM_WINDOW (1 << 20)      /* per-stream receive window */
#define CONN_WINDOW (16 << 20)       /* connection receive window */
#define HELLO_TIMEOUT_S 10            /* TLS + preface + SETTINGS */
#define MAX_HEADER_LIST (64 * 1024)  /* advertised; metadata over it: RESOURCE_EXHAUSTED */
/* Decoded header bytes (HPACK's 32 per field included) at which a request
 * is reset at once: past this nghttp2 decodes the rest of the block without
 * calling crisp, so a block of 1-byte references to one big table entry
 * (an HPACK "bomb") costs next to nothing. */
#define HEADER_LIST_RESET (4 * MAX_HEADER_LIST)
/* Calls that end without an answer because of the client spend a token:
 * a request that was malformed or crisp's HTTP/2 layer had to reset
 * (MadeYouReset, CVE-2025-8671), and a call the client reset within
 * RAPID_RESET_US of making it, before its deadline (Rapid Reset,
 * CVE-2023-44487); a kubelet cancelling a slow call at its deadline spends
 * none. Each connection has ABUSE_BURST tokens and gets ABUSE_PER_S back a
 * second; the process has PROCESS_ABUSE_BURST, PROCESS_ABUSE_PER_S, so
 * that clients reconnecting in a loop cannot add up their bursts. A
 * connection that finds either empty gets GOAWAY ENHANCE_YOUR_CALM. */
#define ABUSE_BURST 50
#define ABUSE_PER_S 10
#define PROCESS_ABUSE_BURST 500
#define PROCESS_ABUSE_PER_S 100
#define RAPID_RESET_US 100000
/* A client reset this close to the call's deadline is the deadline. */
#define DEADLINE_SLACK_US 20000

struct crisp_h2srv_config crisp_h2srv_cfg = {
    .max_msg = 16 << 20,
    .max_streams = 1024,
    .idle_timeout_s = 300,
    .max_conns = 1000,
};

struct fe_conn;

struct fe_stream {
    struct crisp_list link;       /* in fe_conn.streams */
    struct fe_conn *conn;
    int32_t id;
    struct crisp_call *call;
    struct grpc_reader rd;
    struct h2req req;             /* crisp's own HTTP/2 request checks */
    size_t hdr_bytes;             /* decoded header bytes, HPACK-counted */
    const char *reset_why;        /* why crisp reset it, for the log line */
    unsigned abuse_counted : 1;   /* its reset already spent a token */
    unsigned nmsgs;
    char *path;                   /* pathbuf, or malloc'd when longer */
    size_t pathlen;
    char pathbuf[80];
    int64_t timeout_us;
    int http_status;              /* for Trailers-Only errors, 200 otherwise */
    int bad_code;                 /* a header problem found while parsing */
    char bad_msg[256];
    unsigned is_post : 1;
    unsigned is_grpc : 1;
    unsigned resp_submitted : 1;
    unsigned answered_early : 1;  /* status sent before the request ended */
    unsigned reset : 1;           /* RST_STREAM sent: nothing more goes out */
    uint32_t client_rst;          /* the client's RST_STREAM code, +1 (0: none) */
};

struct fe_conn {
    struct crisp_list link;       /* in conns */
    struct crisp_h2conn h2;       /* the socket and the nghttp2 session */
    struct event_base *base;
    struct event *hello_ev;       /* the client's preface and SETTINGS are due */
    struct crisp_list streams;
    struct crisp_budget req_budget;  /* request bytes held for this client */
    struct crisp_budget resp_budget; /* response bytes held for this client */
    double abuse_tokens;
    int64_t abuse_at_us;          /* when the tokens were last counted */
    int64_t active_us;            /* last frame from the client */
    uint64_t id;                  /* for traces: the connection's number */
    int peer_pid, peer_uid;       /* SO_PEERCRED on a unix socket, else -1 */
    char peer[64];
    unsigned closing : 1;
    unsigned dead : 1;
};

static struct crisp_list conns = {&conns, &conns};
static size_t nconns;

static void fe_on_output(struct crisp_call *call);

static const struct crisp_frontend_ops fe_ops = {
    .on_output = fe_on_output,
};

size_t crisp_h2srv_conn_count(void)
{
    return nconns;
}

/* ---- streams -------------------------------------------------------- */

static const struct crisp_budget *refused_by; /* the last admit_request refusal */

/* A request message is about to be stored: it must fit the budgets. */
static int admit_request(void *ud, size_t len)
{
    struct fe_stream *s = ud;
    return crisp_call_charge_request(s->call, len, &refused_by);
}

static struct fe_stream *stream_new(struct fe_conn *c, int32_t id)
{
    struct fe_stream *s = crisp_zalloc(sizeof(*s));
    if (!s)
        return NULL;
    s->call = crisp_call_new(c->base, &fe_ops, s, crisp_h2srv_cfg.max_msg);
    if (!s->call) {
        free(s);
        return NULL;
    }
    s->conn = c;
    s->id = id;
    s->http_status = 200;
    s->timeout_us = -1; /* no grpc-timeout */
    h2req_init(&s->req);
    grpc_reader_init(&s->rd, crisp_h2srv_cfg.max_msg);
    s->rd.admit = admit_request;
    s->rd.admit_ud = s;
    crisp_call_set_budgets(s->call, &c->req_budget, &c->resp_budget);
    s->call->origin = (struct crisp_call_origin){c->id, id, c->peer_pid, c->peer_uid};
    crisp_list_push_front(&c->streams, &s->link);
    return s;
}

/* Detaches the call (cancelling it if unfinished) and frees the stream. */
static void stream_free(struct fe_stream *s, int code, const char *why)
{
    crisp_list_unlink(&s->link);
    struct crisp_call *call = s->call;
    call->fe = NULL;
    call->fe_ctx = NULL;
    crisp_call_detach_budgets(call);
    if (call->state != CRISP_CALL_FINISHED)
        crisp_call_cancel(call, code, why);
    crisp_call_unref(call);
    grpc_reader_free(&s->rd);
    if (s->path != s->pathbuf)
        free(s->path);
    free(s);
}

static void stream_fail(struct fe_stream *s, int http_status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers the stream with an error status now, whatever the request state. */
static void stream_fail(struct fe_stream *s, int http_status, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->call->state == CRISP_CALL_FINISHED)
        return;
    s->http_status = http_status;
    if (s->call->state == CRISP_CALL_RECEIVING)
        s->answered_early = 1;
    crisp_call_cancel(s->call, code, msg);
}

/* ---- response side ---------------------------------------------------- */


#define STATUS_NV_STACK 12

struct status_nv {
    nghttp2_nv *nva;
    size_t n;
    char code[12];
    char *msg;
    char status[4];
    nghttp2_nv stack[STATUS_NV_STACK];
    char msgbuf[160];
};

/* Decimal digits of v (>= 0) into out (NUL-terminated); returns the length. */
static size_t fmt_uint(unsigned v, char *out)
{
    char tmp[12];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

/* grpc-status, grpc-message and the backend's trailers, optionally preceded
 * by :status and content-type (Trailers-Only). */
static int build_status_nv(struct fe_stream *s, int trailers_only, struct status_nv *out)
{
    struct crisp_call *call = s->call;
    size_t extra = call->trailer_md.n + (trailers_only ? call->resp_md.n : 0);
    out->nva = 4 + extra <= STATUS_NV_STACK ? out->stack : malloc((4 + extra) * sizeof(nghttp2_nv));
    out->msg = NULL;
    out->n = 0;
    if (!out->nva)
        return -1;
    if (trailers_only) {
        unsigned st = s->http_status > 0 && s->http_status < 1000 ? (unsigned)s->http_status : 500;
        size_t sl = fmt_uint(st, out->status);
        out->nva[out->n++] = CRISP_NV_LIT(":status", out->status, sl);
        out->nva[out->n++] = CRISP_NV_LIT("content-type", "application/grpc", 16);
    }
    size_t cl = fmt_uint(call->code >= 0 ? (unsigned)call->code : (unsigned)GRPC_UNKNOWN, out->code);
    out->nva[out->n++] = CRISP_NV_LIT("grpc-status", out->code, cl);
    if (call->message) {
        size_t ml = strlen(call->message);
        size_t need = grpc_percent_encode(call->message, ml, NULL, 0);
        out->msg = need < sizeof(out->msgbuf) ? out->msgbuf : malloc(need + 1);
        if (out->msg) {
            grpc_percent_encode(call->message, ml, out->msg, need);
            out->nva[out->n++] = CRISP_NV_LIT("grpc-message", out->msg, need);
        }
    }
    const struct crisp_md *mds[2] = {&call->trailer_md, trailers_only ? &call->resp_md : NULL};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; mds[k] && i < mds[k]->n; i++) {
            const struct crisp_hdr *h = &mds[k]->v[i];
            out->nva[out->n++] = (nghttp2_nv){h->name, h->value, h->namelen, h->valuelen,
                                              NGHTTP2_NV_FLAG_NONE};
        }
    }
    return 0;
}

static void free_status_nv(struct status_nv *nv)
{
    if (nv->nva != nv->stack)
        free(nv->nva);
    if (nv->msg != nv->msgbuf)
        free(nv->msg);
}

/* The response body: tells nghttp2 how much is queued on the call; the
 * bytes themselves are copied once, by send_data_cb, straight from the call's
 * queue into the socket's output (NGHTTP2_DATA_FLAG_NO_COPY). */
static ssize_t data_read_cb(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)buf;
    (void)ud;
    struct fe_stream *s = src->ptr;
    struct crisp_call *call = s->call;
    size_t n = call->out_bytes < length ? call->out_bytes : length;
    if (call->state == CRISP_CALL_FINISHED && n == call->out_bytes) {
        struct status_nv nv;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (build_status_nv(s, 0, &nv) == 0) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(sess, id, nv.nva, nv.n) != 0)
                *flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;
            free_status_nv(&nv);
        }
    } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    return (ssize_t)n;
}

/* Writes one DATA frame: its header, then `length` bytes pulled from the
 * call's queue directly into the socket's output. */
static int send_data_cb(nghttp2_session *sess, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *ud)
{
    (void)sess;
    struct fe_conn *c = ud;
    struct fe_stream *s = src->ptr;
    size_t padlen = frame->data.padlen; /* 0: crisp asks for no padding */
    if (!crisp_h2conn_data_room(&c->h2))
        return NGHTTP2_ERR_WOULDBLOCK;
    uint8_t *dst = crisp_sock_queue_reserve(c->h2.sock, 9 + padlen + length);
    if (!dst)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(dst, framehd, 9);
    dst += 9;
    if (padlen)
        *dst++ = (uint8_t)(padlen - 1);
    if (crisp_call_pull(s->call, dst, length) != length)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (padlen > 1)
        memset(dst + length, 0, padlen - 1);
    return 0;
}

static void submit_trailers_only(struct fe_stream *s)
{
    struct status_nv nv;
    if (build_status_nv(s, 1, &nv) < 0) {
        nghttp2_submit_rst_stream(s->conn->h2.sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nghttp2_submit_response(s->conn->h2.sess, s->id, nv.nva, nv.n, NULL);
    free_status_nv(&nv);
}

static void submit_headers(struct fe_stream *s)
{
    struct crisp_call *call = s->call;
    size_t n = 2 + call->resp_md.n;
    nghttp2_nv stack[16];
    nghttp2_nv *nva = n <= 16 ? stack : calloc(n, sizeof(*nva));
    if (!nva) {
        nghttp2_submit_rst_stream(s->conn->h2.sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nva[0] = CRISP_NV_LIT(":status", "200", 3);
    nva[1] = CRISP_NV_LIT("content-type", "application/grpc", 16);
    for (size_t i = 0; i < call->resp_md.n; i++) {
        const struct crisp_hdr *h = &call->resp_md.v[i];
        nva[2 + i] = (nghttp2_nv){h->name, h->value, h->namelen, h->valuelen,
                                  NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
    nghttp2_submit_response(s->conn->h2.sess, s->id, nva, n, &prd);
    if (nva != stack)
        free(nva);
}

static void fe_on_output(struct crisp_call *call)
{
    struct fe_stream *s = call->fe_ctx;
    if (!s || s->conn->dead || s->reset)
        return;
    if (!s->resp_submitted) {
        if (call->state == CRISP_CALL_FINISHED && !call->out_head) {
            s->resp_submitted = 1;
            submit_trailers_only(s);
        } else if (call->headers_ready) {
            s->resp_submitted = 1;
            submit_headers(s);
        } else {
            return;
        }
    } else {
        nghttp2_session_resume_data(s->conn->h2.sess, s->id);
    }
    crisp_h2conn_schedule_flush(&s->conn->h2);
}

/* ---- request side ----------------------------------------------------- */

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct fe_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct fe_stream *s = stream_new(c, frame->hd.stream_id);
    crisp_h2conn_set_header_stream(&c->h2, frame->hd.stream_id, s);
    if (!s) {
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    nghttp2_session_set_stream_user_data(sess, frame->hd.stream_id, s);
    return 0;
}

#define HDR_IS(name, namelen, lit) ((namelen) == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)

static void note_bad(struct fe_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first problem found in the request's headers, answered once the
 * header block is complete. */
static void note_bad(struct fe_stream *s, int code, const char *fmt, ...)
{
    if (s->bad_code)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->bad_msg, sizeof(s->bad_msg), fmt, ap);
    va_end(ap);
    s->bad_code = code;
}

/* One request header field: kept in the stream (path, method, content
 * type, grpc-timeout, grpc-encoding) or as metadata to relay. */
static void take_header(struct fe_stream *s, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen)
{
    if (HDR_IS(name, namelen, ":path")) {
        if (s->path != s->pathbuf)
            free(s->path);
        s->path = valuelen < sizeof(s->pathbuf) ? s->pathbuf : malloc(valuelen + 1);
        if (!s->path) {
            s->path = s->pathbuf;
            s->pathlen = 0;
            s->pathbuf[0] = 0;
            note_bad(s, GRPC_RESOURCE_EXHAUSTED, "out of memory for :path");
            return;
        }
        memcpy(s->path, value, valuelen);
        s->path[valuelen] = 0;
        s->pathlen = valuelen;
    } else if (HDR_IS(name, namelen, ":method")) {
        s->is_post = HDR_IS(value, valuelen, "POST");
    } else if (HDR_IS(name, namelen, "content-type")) {
        s->is_grpc = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                     (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (HDR_IS(name, namelen, "grpc-timeout")) {
        if (grpc_timeout_parse((const char *)value, valuelen, &s->timeout_us) < 0)
            note_bad(s, GRPC_INVALID_ARGUMENT, "malformed grpc-timeout %s",
                     crisp_logqn((const char *)value, valuelen));
    } else if (HDR_IS(name, namelen, "grpc-encoding")) {
        if (!HDR_IS(value, valuelen, "identity"))
            note_bad(s, GRPC_UNIMPLEMENTED,
                     "grpc-encoding %.*s is not supported (crisp accepts identity only)",
                     (int)(valuelen > 64 ? 64 : valuelen), value);
    } else if (!crisp_md_is_reserved(name, namelen)) {
        if (crisp_md_add(&s->call->req_md, name, namelen, value, valuelen) < 0)
            note_bad(s, GRPC_RESOURCE_EXHAUSTED, "request metadata exceeds %zu bytes",
                     s->call->req_md.max_bytes);
    }
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    (void)sess;
    struct fe_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    int trailers = frame->headers.cat != NGHTTP2_HCAT_REQUEST;
    /* one lookup per header block (on_begin_headers primed it) */
    struct fe_stream *s = crisp_h2conn_header_stream(&c->h2, frame->hd.stream_id);
    if (!s)
        return 0;
    s->hdr_bytes += namelen + valuelen + 32;
    if (s->hdr_bytes > HEADER_LIST_RESET) {
        /* nghttp2 resets the stream and decodes the rest of the block
         * without calling back */
        s->reset_why = "its header list exceeds 256 KiB";
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (h2req_field(&s->req, name, namelen, value, valuelen, trailers) < 0 || trailers)
        return 0; /* a malformed request is refused when its block ends */
    take_header(s, name, namelen, value, valuelen);
    return 0;
}

static int check_request_headers(struct fe_stream *s)
{
    struct crisp_call *call = s->call;
    if (!s->is_post) {
        stream_fail(s, 405, GRPC_INTERNAL, "gRPC requires method POST");
        return -1;
    }
    if (!s->is_grpc) {
        stream_fail(s, 415, GRPC_INVALID_ARGUMENT,
                    "invalid gRPC request content-type (want application/grpc)");
        return -1;
    }
    if (s->bad_code) {
        stream_fail(s, 200, s->bad_code, "%s", s->bad_msg);
        return -1;
    }
    int svc_known = 0;
    call->method = s->path ? crisp_method_lookup(s->path, s->pathlen, &call->api, &svc_known) : NULL;
    if (!call->method) {
        if (svc_known)
            stream_fail(s, 200, GRPC_UNIMPLEMENTED, "unknown method %s", s->path);
        else
            stream_fail(s, 200, GRPC_UNIMPLEMENTED, "unknown service in %s",
                        s->path ? s->path : "(no :path)");
        return -1;
    }
    if (s->timeout_us == 0) {
        /* grpc-go sends 0n for a deadline that passed before the call left */
        stream_fail(s, 200, GRPC_DEADLINE_EXCEEDED, "deadline exceeded before the call started");
        return -1;
    }
    if (s->timeout_us > 0 && crisp_call_set_timeout(call, s->timeout_us) < 0) {
        stream_fail(s, 200, GRPC_RESOURCE_EXHAUSTED, "cannot arm the deadline timer");
        return -1;
    }
    return 0;
}

/* Spends one abuse token (see ABUSE_BURST); a connection out of tokens is
 * told to calm down and closed once the GOAWAY is written. */
/* A client reset that is not a deadline or a change of mind after a while:
 * the call is still running, was made moments ago, and its deadline (if
 * any) is not here. */
static int is_rapid_reset(const struct crisp_call *call)
{
    int64_t now = crisp_now_us();
    return call->state != CRISP_CALL_FINISHED && now - call->start_us < RAPID_RESET_US &&
           (!call->deadline_us || now < call->deadline_us - DEADLINE_SLACK_US);
}

static double process_abuse_tokens = PROCESS_ABUSE_BURST;
static int64_t process_abuse_at_us;

/* Takes a token from a bucket refilled at `rate` a second up to `burst`;
 * returns whether there was one. */
static int take_token(double *tokens, int64_t *at_us, int64_t now, double rate, double burst)
{
    *tokens += (double)(now - *at_us) * rate / 1e6;
    if (*tokens > burst)
        *tokens = burst;
    *at_us = now;
    *tokens -= 1;
    return *tokens >= 0;
}

static void conn_abuse(struct fe_conn *c, const char *what)
{
    int64_t now = crisp_now_us();
    int conn_ok = take_token(&c->abuse_tokens, &c->abuse_at_us, now, ABUSE_PER_S, ABUSE_BURST);
    int proc_ok = take_token(&process_abuse_tokens, &process_abuse_at_us, now, PROCESS_ABUSE_PER_S,
                             PROCESS_ABUSE_BURST);
    if ((conn_ok && proc_ok) || c->closing)
        return;
    c->closing = 1;
    log_warn("conn_abusive", "peer=%s last=%s budget=%s action=goaway_enhance_your_calm "
             "limit=\"%d calls reset or malformed per connection then %d/s, %d per process "
             "then %d/s\"", c->peer, crisp_logq(what), conn_ok ? "process" : "connection",
             ABUSE_BURST, ABUSE_PER_S, PROCESS_ABUSE_BURST, PROCESS_ABUSE_PER_S);
    nghttp2_session_terminate_session(c->h2.sess, NGHTTP2_ENHANCE_YOUR_CALM);
    crisp_h2conn_schedule_flush(&c->h2);
}

/* A request that breaks HTTP/2's rules (RFC 9113 section 8.1.1: malformed)
 * is reset with PROTOCOL_ERROR, as every HTTP/2 server does; the log line
 * says that crisp refused it, and why, with the method and api when its
 * :path names one. */
static void stream_refuse(struct fe_stream *s)
{
    struct crisp_call *call = s->call;
    if (call->state == CRISP_CALL_FINISHED || s->reset)
        return;
    if (!call->method && s->path) {
        int svc_known;
        call->method = crisp_method_lookup(s->path, s->pathlen, &call->api, &svc_known);
    }
    s->reset = 1;
    nghttp2_submit_rst_stream(s->conn->h2.sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
    conn_abuse(s->conn, "malformed request");
    char msg[160];
    snprintf(msg, sizeof(msg),
             "crisp refused a malformed HTTP/2 request (RST_STREAM PROTOCOL_ERROR): %s%s%s",
             h2req_strerror(s->req.err), s->req.field[0] ? " " : "", s->req.field);
    crisp_call_cancel(call, GRPC_INTERNAL, msg);
}

static int on_request_msg(void *ud, uint8_t *msg, size_t len)
{
    struct fe_stream *s = ud;
    if (++s->nmsgs > 1) {
        free(msg);
        stream_fail(s, 200, GRPC_INVALID_ARGUMENT,
                    "%s is a unary-request RPC but the request carries more than one message",
                    s->call->method->name);
        return -1;
    }
    s->call->req = msg;
    s->call->req_len = len;
    return 0;
}

static void end_of_request(struct fe_stream *s)
{
    struct crisp_call *call = s->call;
    if (call->state != CRISP_CALL_RECEIVING)
        return;
    size_t pending = grpc_reader_pending(&s->rd);
    if (pending) {
        stream_fail(s, 200, GRPC_INVALID_ARGUMENT,
                    "truncated gRPC message: the request ended after %zu bytes of a frame", pending);
        return;
    }
    if (s->nmsgs == 0) {
        stream_fail(s, 200, GRPC_INVALID_ARGUMENT, "the request carries no message");
        return;
    }
    crisp_call_dispatch(call);
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct fe_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (!s)
        return 0;
    if (h2req_data(&s->req, len, 0) < 0) {
        stream_refuse(s);
        return 0;
    }
    if (s->call->state != CRISP_CALL_RECEIVING)
        return 0; /* answered already: the rest is dropped */
    int rv = grpc_reader_feed(&s->rd, data, len, on_request_msg, s);
    if (rv == GRPC_E_TOO_LARGE)
        stream_fail(s, 200, GRPC_RESOURCE_EXHAUSTED,
                    "request message of %zu bytes exceeds the limit of %zu bytes (--max-message-size)",
                    s->rd.declared, s->rd.max);
    else if (rv == GRPC_E_COMPRESSED)
        stream_fail(s, 200, GRPC_INTERNAL,
                    "compressed gRPC message without a grpc-encoding crisp accepts");
    else if (rv == GRPC_E_NOMEM)
        stream_fail(s, 200, GRPC_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte request",
                    s->rd.declared);
    else if (rv == GRPC_E_REFUSED)
        stream_fail(s, 200, GRPC_RESOURCE_EXHAUSTED,
                    "request message of %zu bytes refused: the %s already holds %zu bytes of "
                    "requests (cap %zu)", s->rd.declared, refused_by->what, refused_by->used,
                    refused_by->cap);
    return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct fe_conn *c = ud;
    c->active_us = crisp_now_us();
    if (frame->hd.type == NGHTTP2_SETTINGS && c->hello_ev)
        evtimer_del(c->hello_ev); /* the client spoke HTTP/2 in time */
    struct fe_stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
    if (!s)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && h2req_headers_done(&s->req) == 0 &&
            h2req_data(&s->req, 0, end) == 0) {
            if (check_request_headers(s) < 0)
                return 0;
        } else if (frame->headers.cat != NGHTTP2_HCAT_REQUEST && !end) {
            s->req.err = s->req.err ? s->req.err : H2REQ_E_TRAILER_PSEUDO;
            snprintf(s->req.field, sizeof(s->req.field), "(trailers without END_STREAM)");
        } else if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            h2req_data(&s->req, 0, 1);
        }
        break;
    case NGHTTP2_DATA:
        if (end)
            h2req_data(&s->req, 0, 1);
        break;
    case NGHTTP2_RST_STREAM:
        s->client_rst = frame->rst_stream.error_code + 1;
        if (is_rapid_reset(s->call))
            conn_abuse(c, "call reset by the client");
        return 0;
    default:
        return 0;
    }
    if (s->req.err) {
        stream_refuse(s);
        return 0;
    }
    if (end)
        end_of_request(s);
    return 0;
}

static int on_frame_send(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct fe_conn *c = ud;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        /* nghttp2 resetting a stream of its own accord (flow control, a
         * frame the stream's state forbids, a header list crisp refused):
         * crisp's doing, not the client's, but the client's fault */
        struct fe_stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
        if (s && !s->reset && s->call->state != CRISP_CALL_FINISHED) {
            char msg[160];
            s->reset = 1;
            snprintf(msg, sizeof(msg), "crisp's HTTP/2 layer reset the stream (RST_STREAM %s)%s%s",
                     nghttp2_http2_strerror(frame->rst_stream.error_code),
                     s->reset_why ? ": " : "", s->reset_why ? s->reset_why : "");
            crisp_call_cancel(s->call, GRPC_INTERNAL, msg);
            if (!s->abuse_counted)
                conn_abuse(c, "stream reset by crisp's HTTP/2 layer");
        }
        return 0;
    }
    /* Status sent while the client still sends: tell it to stop (gRPC
     * servers answer early errors this way). */
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        !nghttp2_session_get_stream_remote_close(sess, frame->hd.stream_id))
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

/* A frame nghttp2 refused: a stream error it answers with RST_STREAM (the
 * MadeYouReset pattern) spends a token now, while the rest of the client's
 * pipelined frames are still unread, so that a GOAWAY stops them. */
static int on_invalid_frame(nghttp2_session *sess, const nghttp2_frame *frame, int lib_error,
                            void *ud)
{
    struct fe_conn *c = ud;
    struct fe_stream *s = frame->hd.stream_id
                              ? nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id)
                              : NULL;
    if (s && s->abuse_counted)
        return 0;
    if (s)
        s->abuse_counted = 1;
    conn_abuse(c, nghttp2_strerror(lib_error));
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t error_code, void *ud)
{
    struct fe_conn *c = ud;
    crisp_h2conn_forget_stream(&c->h2, id);
    struct fe_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (!s)
        return 0;
    char why[128] = "";
    int code = GRPC_CANCELLED;
    const struct crisp_call *call = s->call;
    int64_t now = crisp_now_us();
    if (call->state == CRISP_CALL_FINISHED) {
        /* nothing to say: the call has its status */
    } else if (s->client_rst && call->deadline_us && now >= call->deadline_us - DEADLINE_SLACK_US) {
        /* grpc-go resets the stream when its own deadline fires, which can
         * come a moment before crisp's timer: that is a deadline */
        code = GRPC_DEADLINE_EXCEEDED;
        snprintf(why, sizeof(why),
                 "deadline exceeded after %.3fs (the client reset the call at its deadline)",
                 (double)(now - call->start_us) / 1e6);
    } else if (s->client_rst) {
        snprintf(why, sizeof(why), "client cancelled the call (RST_STREAM %s)",
                 nghttp2_http2_strerror(s->client_rst - 1));
    } else {
        snprintf(why, sizeof(why), "the client's HTTP/2 connection ended the stream (%s)",
                 nghttp2_http2_strerror(error_code));
    }
    stream_free(s, code, why);
    return 0;
}

/* ---- connection ------------------------------------------------------- */

static void conn_free(struct fe_conn *c)
{
    c->dead = 1;
    while (!crisp_list_empty(&c->streams))
        stream_free(crisp_container_of(c->streams.next, struct fe_stream, link), GRPC_CANCELLED,
                    "client connection closed");
    crisp_list_unlink(&c->link);
    nconns--;
    log_debug("conn_close", "peer=%s", c->peer);
    crisp_h2conn_deinit(&c->h2);
    event_free(c->hello_ev);
    free(c);
}

/* The client's bytes broke HTTP/2 (a connection error): GOAWAY, and the
 * connection ends once it is written. */
static int on_bad_input(void *ud, int rv)
{
    struct fe_conn *c = ud;
    log_info("h2_bad_input", "peer=%s err=%s", c->peer, nghttp2_strerror(rv));
    nghttp2_session_terminate_session(c->h2.sess, NGHTTP2_PROTOCOL_ERROR);
    return 0;
}

static void on_end(void *ud, enum crisp_sock_end how, const char *why)
{
    struct fe_conn *c = ud;
    if (how == CRISP_SOCK_TLS_ERROR)
        log_info("tls_error", "peer=%s err=%s", c->peer, crisp_logq(why));
    else if (how == CRISP_SOCK_ERROR)
        log_warn("h2_send_error", "peer=%s err=%s", c->peer, crisp_logq(why));
    conn_free(c);
}

static const struct crisp_h2conn_cbs h2conn_cbs = {
    .on_bad_input = on_bad_input,
    .on_end = on_end,
};

static int send_settings(struct fe_conn *c)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, crisp_h2srv_cfg.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
        /* gRPC has no use for RFC 7540 priorities (RFC 9218 deprecates
         * them); with this nghttp2 frees each stream as it closes instead
         * of keeping closed ones for the priority tree: 2-3 us less per
         * call with many in flight. */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    int rv = nghttp2_submit_settings(c->h2.sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(c->h2.sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    return rv;
}

static nghttp2_session_callbacks *server_callbacks(void)
{
    static nghttp2_session_callbacks *cbs;
    if (cbs)
        return cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    return cbs;
}

/* nghttp2's HTTP messaging checks are off: they refuse the :authority
 * grpc-go sends over a unix socket (the socket path). h2req.c makes the
 * checks that matter for a gRPC server instead. */
static nghttp2_option *server_options(void)
{
    static nghttp2_option *opt;
    if (!opt && nghttp2_option_new(&opt) == 0)
        nghttp2_option_set_no_http_messaging(opt, 1);
    return opt;
}

/* A peer that connects and never completes TLS or sends the HTTP/2
 * preface would hold a descriptor for ever. */
static void on_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fe_conn *c = arg;
    log_info("conn_hello_timeout", "peer=%s after_s=%d", c->peer, HELLO_TIMEOUT_S);
    conn_free(c);
}

/* Who is calling, on a unix socket: the kubelet, crictl, ... (traces). */
static void peer_credentials(struct fe_conn *c, int fd)
{
    static uint64_t next_id = 1;
    struct ucred cr;
    socklen_t len = sizeof(cr);
    c->id = next_id++;
    c->peer_pid = c->peer_uid = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.pid > 0) {
        c->peer_pid = (int)cr.pid;
        c->peer_uid = (int)cr.uid;
    }
}

void crisp_h2srv_accept(struct event_base *base, evutil_socket_t fd, SSL_CTX *ssl_ctx,
                        const char *peer, void *ud)
{
    (void)ud;
    if (nconns >= crisp_h2srv_cfg.max_conns && !crisp_h2srv_evict_idle("connection limit")) {
        log_warn("conn_refused", "peer=%s connections=%zu why=\"connection limit (--max-connections), "
                 "none idle\"", peer, nconns);
        evutil_closesocket(fd);
        return;
    }
    struct fe_conn *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs = server_callbacks();
    SSL *ssl = NULL;
    if (!c || !cbs || (ssl_ctx && !(ssl = SSL_new(ssl_ctx))))
        goto fail_close;
    c->base = base;
    crisp_list_init(&c->streams);
    crisp_budget_init(&c->req_budget, "connection", crisp_budget_conn_req_cap());
    crisp_budget_init(&c->resp_budget, "connection", crisp_budget_conn_resp_cap());
    c->abuse_tokens = ABUSE_BURST;
    peer_credentials(c, fd);
    c->abuse_at_us = c->active_us = crisp_now_us();
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    if (crisp_h2conn_init(&c->h2, base, CONN_OUT_HIGH, &h2conn_cbs, c) < 0)
        goto fail_close;
    int rv = crisp_h2conn_accept(&c->h2, base, fd, ssl);
    fd = -1; /* owned (or closed) by the socket now */
    if (rv < 0)
        goto fail_h2;
    c->hello_ev = evtimer_new(base, on_hello_timeout, c);
    struct timeval hello = {HELLO_TIMEOUT_S, 0};
    if (!c->hello_ev || evtimer_add(c->hello_ev, &hello) < 0 ||
        crisp_h2conn_session_new(&c->h2, 1, cbs, server_options()) != 0 || send_settings(c) != 0)
        goto fail_h2;
    crisp_list_push_front(&conns, &c->link);
    nconns++;
    log_debug("conn_open", "peer=%s tls=%d", c->peer, ssl_ctx != NULL);
    crisp_h2conn_flush(&c->h2); /* SETTINGS (after the TLS handshake) */
    return;

fail_h2:
    if (c->hello_ev)
        event_free(c->hello_ev);
    crisp_h2conn_deinit(&c->h2);
fail_close:
    if (fd >= 0)
        evutil_closesocket(fd);
    if (ssl && fd >= 0)
        SSL_free(ssl);
    free(c);
    log_error("accept_failed", "peer=%s err=\"out of memory\"", peer);
}

/* ---- idle connections and the connection limit ----------------------- */

static struct event *sweep_ev;

static int conn_is_idle(const struct fe_conn *c)
{
    return crisp_list_empty(&c->streams) && !c->closing;
}

/* GOAWAY (NO_ERROR) and close once written: the client reconnects when it
 * has a call to make. */
static void conn_retire(struct fe_conn *c, const char *why)
{
    log_debug("conn_retire", "peer=%s why=%s idle_s=%.0f", c->peer, crisp_logq(why),
              (double)(crisp_now_us() - c->active_us) / 1e6);
    c->closing = 1;
    nghttp2_session_terminate_session(c->h2.sess, NGHTTP2_NO_ERROR);
    crisp_h2conn_schedule_flush(&c->h2);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    int64_t before = crisp_now_us() - (int64_t)crisp_h2srv_cfg.idle_timeout_s * 1000000;
    crisp_list_for_each(&conns, it) {
        struct fe_conn *c = crisp_container_of(it, struct fe_conn, link);
        if (conn_is_idle(c) && c->active_us < before)
            conn_retire(c, "idle");
    }
}

int crisp_h2srv_start(struct event_base *base)
{
    if (!crisp_h2srv_cfg.idle_timeout_s || sweep_ev)
        return 0;
    struct timeval tv = {crisp_h2srv_cfg.idle_timeout_s < 10 ? 1 : 5, 0};
    sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, NULL);
    return sweep_ev && event_add(sweep_ev, &tv) == 0 ? 0 : -1;
}

int crisp_h2srv_evict_idle(const char *why)
{
    struct fe_conn *lru = NULL;
    crisp_list_for_each(&conns, it) {
        struct fe_conn *c = crisp_container_of(it, struct fe_conn, link);
        if (conn_is_idle(c) && (!lru || c->active_us < lru->active_us))
            lru = c;
    }
    if (!lru)
        return 0;
    log_info("conn_evicted", "peer=%s why=%s idle_s=%.1f connections=%zu", lru->peer,
             crisp_logq(why), (double)(crisp_now_us() - lru->active_us) / 1e6, nconns);
    /* at once: its descriptor is what the new client needs (best effort
     * GOAWAY first) */
    nghttp2_session_terminate_session(lru->h2.sess, NGHTTP2_NO_ERROR);
    if (crisp_h2conn_flush(&lru->h2) == 0)
        conn_free(lru);
    return 1;
}

void crisp_h2srv_shutdown_all(void)
{
    crisp_list_for_each(&conns, it) {
        struct fe_conn *c = crisp_container_of(it, struct fe_conn, link);
        nghttp2_submit_goaway(c->h2.sess, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2.sess),
                              NGHTTP2_NO_ERROR, NULL, 0);
        crisp_h2conn_schedule_flush(&c->h2);
    }
}

void crisp_h2srv_close_all(void)
{
    while (!crisp_list_empty(&conns))
        conn_free(crisp_container_of(conns.next, struct fe_conn, link));
    if (sweep_ev)
        event_free(sweep_ev);
    sweep_ev = NULL;
}
