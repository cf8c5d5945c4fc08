/* client.c - crispctl's gRPC client: HTTP/2 (nghttp2) over a blocking
 * socket, dialled as the kubelet does (a unix socket path; or TCP with TLS
 * and ALPN h2). One call at a time on one connection; each call polls with
 * its deadline and resets its stream (CANCEL) when it passes. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "version.gen.h"

#define READ_BUF (64 * 1024)

struct call_state {
    int32_t stream;
    const uint8_t *body;       /* the framed request */
    size_t body_len, body_off;
    struct grpc_reader rd;
    ctl_msg_fn on_msg;
    void *ud;
    struct ctl_result *r;
    int http_status, have_status, done, cancelled;
};

struct ctl_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nghttp2_session *h2;
    char authority[128];
    struct call_state *cur;
    int broken;
    char why[256];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void broke(struct ctl_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void broke(struct ctl_conn *c, const char *fmt, ...)
{
    va_list ap;
    if (c->broken)
        return;
    c->broken = 1;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
}

/* ---- dialling ------------------------------------------------------------------ */

static int dial_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return snprintf(err, errlen, "socket path too long: %s", path), -1;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    snprintf(err, errlen, "connect %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static int dial_tcp(const char *hostport, char *host, size_t hostlen, char *err, size_t errlen)
{
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!colon || (size_t)(colon - hostport) >= hostlen)
        return snprintf(err, errlen, "want tcp://HOST:PORT, not %s", hostport), -1;
    snprintf(host, hostlen, "%.*s", (int)(colon - hostport), hostport);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    int rc = getaddrinfo(host, colon + 1, &hints, &res), fd = -1;
    if (rc != 0)
        return snprintf(err, errlen, "%s: %s", host, gai_strerror(rc)), -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            snprintf(err, errlen, "connect %s: %s", hostport, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int tls_setup(struct ctl_conn *c, const char *host, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x02h2";
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return snprintf(err, errlen, "TLS: out of memory"), -1;
    SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof(alpn) - 1);
    if (ctl.tls_ca ? SSL_CTX_load_verify_locations(c->ctx, ctl.tls_ca, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(c->ctx) != 1)
        return snprintf(err, errlen, "TLS: cannot load CA %s", ctl.tls_ca ? ctl.tls_ca : ""), -1;
    if (ctl.tls_cert && (SSL_CTX_use_certificate_chain_file(c->ctx, ctl.tls_cert) != 1 ||
                         SSL_CTX_use_PrivateKey_file(c->ctx, ctl.tls_key ? ctl.tls_key : ctl.tls_cert,
                                                     SSL_FILETYPE_PEM) != 1))
        return snprintf(err, errlen, "TLS: cannot load %s", ctl.tls_cert), -1;
    SSL_CTX_set_verify(c->ctx, ctl.tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    const char *name = ctl.tls_server_name ? ctl.tls_server_name : host;
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, name) ||
        !SSL_set1_host(c->ssl, name))
        return snprintf(err, errlen, "TLS: setup failed"), -1;
    if (SSL_connect(c->ssl) != 1) {
        const char *why = ERR_reason_error_string(ERR_get_error());
        snprintf(err, errlen, "TLS handshake with %s: %s", host, why ? why : "failed");
        return -1;
    }
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0)
        return snprintf(err, errlen, "%s did not agree to HTTP/2 (ALPN h2)", host), -1;
    return 0;
}

/* ---- I/O ----------------------------------------------------------------------- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s;
    (void)flags;
    struct ctl_conn *c = ud;
    size_t off = 0;
    while (off < len) {
        ssize_t n = c->ssl ? SSL_write(c->ssl, data + off, (int)(len - off))
                           : send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && !c->ssl && errno == EINTR)
            continue;
        if (n <= 0) {
            broke(c, "the connection broke while sending");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        off += (size_t)n;
    }
    return (ssize_t)len;
}

/* Waits for input until the deadline; then feeds nghttp2. 1 when it read,
 * 0 at the deadline, -1 when the connection ended. */
static int read_some(struct ctl_conn *c, int64_t deadline_us)
{
    static uint8_t buf[READ_BUF];
    if (!(c->ssl && SSL_pending(c->ssl))) {
        int64_t left = deadline_us - now_us();
        struct pollfd p = {c->fd, POLLIN, 0};
        int rc = poll(&p, 1, left > 0 ? (int)((left + 999) / 1000) : 0);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return errno == EINTR ? 1 : (broke(c, "poll: %s", strerror(errno)), -1);
    }
    ssize_t n = c->ssl ? SSL_read(c->ssl, buf, sizeof(buf)) : recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && !c->ssl && errno == EINTR)
        return 1;
    if (n <= 0) {
        broke(c, "the server closed the connection");
        return -1;
    }
    if (nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0) {
        broke(c, "HTTP/2 protocol error from the server");
        return -1;
    }
    return 1;
}

/* ---- nghttp2 callbacks ------------------------------------------------------- */

static struct call_state *cur_of(struct ctl_conn *c, int32_t stream)
{
    return c->cur && c->cur->stream == stream ? c->cur : NULL;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)flags;
    struct call_state *cs = cur_of(ud, f->hd.stream_id);
    if (!cs)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0)
        cs->http_status = atoi((const char *)value);
    else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        cs->r->code = atoi((const char *)value);
        cs->have_status = 1;
    } else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(cs->r->message);
        cs->r->message = grpc_percent_decode((const char *)value, vl);
    }
    return 0;
}

static int on_message(void *ud, uint8_t *msg, size_t len)
{
    struct call_state *cs = ud;
    cs->r->nmsgs++;
    if (cs->on_msg) {
        int rc = cs->on_msg(cs->ud, msg, len);
        free(msg);
        return rc < 0 ? -100 : 0;
    }
    free(cs->r->msg);
    cs->r->msg = msg;
    cs->r->msg_len = len;
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data,
                   size_t len, void *ud)
{
    (void)flags;
    struct call_state *cs = cur_of(ud, stream);
    if (!cs || cs->cancelled)
        return 0;
    int rc = grpc_reader_feed(&cs->rd, data, len, on_message, cs);
    if (rc < 0) {
        cs->cancelled = 1;
        cs->r->code = rc == -100 ? GRPC_CANCELLED : GRPC_RESOURCE_EXHAUSTED;
        cs->have_status = 1;
        free(cs->r->message);
        cs->r->message = strdup(rc == -100 ? "cancelled" : "a response message over the cap");
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t stream, uint32_t code, void *ud)
{
    (void)s;
    struct call_state *cs = cur_of(ud, stream);
    if (!cs)
        return 0;
    cs->done = 1;
    if (!cs->have_status) {
        cs->r->code = cs->http_status && cs->http_status != 200
                          ? grpc_code_from_http_status(cs->http_status) : GRPC_INTERNAL;
        free(cs->r->message);
        char m[96];
        snprintf(m, sizeof(m), "no grpc-status (HTTP %d, stream closed with code %u)",
                 cs->http_status, code);
        cs->r->message = strdup(m);
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)stream;
    (void)ud;
    struct call_state *cs = src->ptr;
    size_t n = cs->body_len - cs->body_off < len ? cs->body_len - cs->body_off : len;
    memcpy(buf, cs->body + cs->body_off, n);
    cs->body_off += n;
    if (cs->body_off == cs->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- connections ------------------------------------------------------------------ */

static int session_new(struct ctl_conn *c)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rc = nghttp2_session_client_new(&c->h2, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0)
        return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24},
                                   {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 1 << 26);
    return nghttp2_session_send(c->h2) == 0 ? 0 : -1;
}

struct ctl_conn *ctl_connect(const char *endpoint, char *err, size_t errlen)
{
    struct ctl_conn *c = calloc(1, sizeof(*c));
    char host[256] = "localhost";
    if (!c)
        return snprintf(err, errlen, "out of memory"), NULL;
    int tcp = strncmp(endpoint, "tcp://", 6) == 0;
    const char *path = strncmp(endpoint, "unix://", 7) == 0 ? endpoint + 7 : endpoint;
    c->fd = tcp ? dial_tcp(endpoint + 6, host, sizeof(host), err, errlen)
                : dial_unix(path, err, errlen);
    if (c->fd < 0)
        goto fail;
    /* the kubelet's grpc-go sends the socket path; a TLS peer gets its name */
    snprintf(c->authority, sizeof(c->authority), "%s", tcp ? endpoint + 6 : "localhost");
    if (tcp && tls_setup(c, host, err, errlen) < 0)
        goto fail;
    if (session_new(c) < 0) {
        snprintf(err, errlen, "HTTP/2 session setup failed with %s", endpoint);
        goto fail;
    }
    return c;
fail:
    ctl_close(c);
    return NULL;
}

void ctl_close(struct ctl_conn *c)
{
    if (!c)
        return;
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

void ctl_result_free(struct ctl_result *r)
{
    free(r->message);
    free(r->msg);
    *r = (struct ctl_result){0};
}

static int submit(struct ctl_conn *c, struct call_state *cs, const char *path, double timeout_s)
{
    char tmo[16] = "", ua[64];
    snprintf(ua, sizeof(ua), "crispctl/%s", CRISP_VERSION);
    nghttp2_nv nv[8];
    size_t n = 0;
#define NV(k, v) nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
    NV(":method", "POST");
    NV(":scheme", c->ssl ? "https" : "http");
    NV(":path", path);
    NV(":authority", c->authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    NV("user-agent", ua);
    if (timeout_s > 0) {
        grpc_timeout_format((int64_t)(timeout_s * 1e6), tmo);
        NV("grpc-timeout", tmo);
    }
#undef NV
    nghttp2_data_provider dp = {.source.ptr = cs, .read_callback = read_body};
    cs->stream = nghttp2_submit_request(c->h2, NULL, nv, n, &dp, cs);
    return cs->stream < 0 ? -1 : 0;
}

/* Runs the session until the call is over or its deadline passes. */
static void run(struct ctl_conn *c, struct call_state *cs, int64_t deadline_us)
{
    while (!cs->done && !c->broken) {
        if (nghttp2_session_send(c->h2) != 0) {
            broke(c, "the connection broke while sending");
            break;
        }
        int rc = read_some(c, deadline_us);
        if (rc == 0 && !cs->cancelled) {
            cs->cancelled = 1;
            cs->have_status = 1;
            cs->r->code = GRPC_DEADLINE_EXCEEDED;
            free(cs->r->message);
            cs->r->message = strdup("crispctl: the call's deadline passed");
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, cs->stream, NGHTTP2_CANCEL);
            deadline_us = now_us() + 1000000; /* a second for the reset to go out */
        } else if (rc == 0) {
            break;
        }
    }
}

int ctl_call(struct ctl_conn *c, const char *path, const uint8_t *req, size_t len,
             double timeout_s, ctl_msg_fn on_msg, void *ud, struct ctl_result *r)
{
    struct call_state cs = {.on_msg = on_msg, .ud = ud, .r = r};
    int64_t t0 = now_us(), deadline = timeout_s > 0 ? t0 + (int64_t)(timeout_s * 1e6)
                                                    : t0 + (int64_t)86400 * 1000000 * 365;
    *r = (struct ctl_result){.code = GRPC_UNKNOWN};
    uint8_t *body = malloc(len + GRPC_PREFIX_LEN);
    if (!body)
        return r->code = GRPC_RESOURCE_EXHAUSTED, r->message = strdup("out of memory"), -1;
    grpc_prefix_write(body, len);
    memcpy(body + GRPC_PREFIX_LEN, req, len);
    cs.body = body;
    cs.body_len = len + GRPC_PREFIX_LEN;
    grpc_reader_init(&cs.rd, ctl.max_msg);
    c->cur = &cs;
    if (!c->broken && submit(c, &cs, path, timeout_s) < 0)
        broke(c, "cannot start a stream");
    run(c, &cs, deadline);
    c->cur = NULL;
    grpc_reader_free(&cs.rd);
    free(body);
    r->elapsed_us = now_us() - t0;
    if (!cs.done && c->broken) {
        r->code = GRPC_UNAVAILABLE;
        free(r->message);
        r->message = strdup(c->why);
        return -1;
    }
    return 0;
}
