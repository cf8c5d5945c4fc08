/* metrics.c - Prometheus metrics over HTTP (see crisp/metrics.h).
 *
 * The counting is an observer of calls (client calls only: the calls crisp
 * makes itself show in their parent's outcome); the text is rendered on
 * each scrape, from the counters, the live backends and the tracer's
 * counters (text format 0.0.4). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/h2srv.h"
#include "crisp/log.h"
#include "crisp/metrics.h"
#include "crisp/net.h"
#include "crisp/trace.h"
#include "crisp/version.h"
#include "trace/metrics_priv.h"

#define NCODES 18                   /* 0..16, and 17: any other */
#define NMETHODS (CRISP_RPC_COUNT + 1) /* the last: a method crisp does not know */
#define MAX_BACKENDS 64             /* names counted apart; more share "other" */
#define NBUCKETS 19

static const int64_t bucket_us[NBUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000};

struct be_stats {
    char *name;
    uint64_t calls[NMETHODS][NCODES];
    int down;                       /* its last call ended UNAVAILABLE */
};

static struct {
    struct be_stats *bes[MAX_BACKENDS];
    size_t nbes;
    struct {
        uint64_t buckets[NBUCKETS + 1]; /* the last: +Inf only */
        uint64_t sum_us, count;
    } hist[NMETHODS];
    uint64_t inflight;
    const char *listen;
    struct evhttp *http;
    char unix_path[108];
    int64_t started_wall;
} M;

/* ---- counting ---------------------------------------------------------------- */

static struct be_stats *be_stats_of(const char *name)
{
    const char *key = name ? name : "none";
    for (size_t i = 0; i < M.nbes; i++)
        if (strcmp(M.bes[i]->name, key) == 0)
            return M.bes[i];
    if (M.nbes == MAX_BACKENDS)
        key = "other";
    for (size_t i = 0; i < M.nbes; i++)
        if (strcmp(M.bes[i]->name, key) == 0)
            return M.bes[i];
    struct be_stats *b = calloc(1, sizeof(*b));
    if (!b || !(b->name = strdup(key))) {
        free(b);
        return NULL;
    }
    if (M.nbes < MAX_BACKENDS)
        M.bes[M.nbes++] = b;
    return b;
}

static unsigned bucket_of(int64_t us)
{
    unsigned i = 0;
    while (i < NBUCKETS && us > bucket_us[i])
        i++;
    return i;
}

void metrics_count(const struct crisp_call *call)
{
    size_t m = call->method ? (size_t)call->method->id : CRISP_RPC_COUNT;
    unsigned code = call->code >= 0 && call->code < NCODES - 1 ? (unsigned)call->code : NCODES - 1;
    int64_t us = call->finished_us - call->start_us;
    struct be_stats *b = be_stats_of(call->backend ? call->backend->name : NULL);
    if (b) {
        b->calls[m][code]++;
        if (call->backend)
            b->down = call->code == GRPC_UNAVAILABLE;
    }
    M.hist[m].buckets[bucket_of(us)]++;
    M.hist[m].sum_us += (uint64_t)(us > 0 ? us : 0);
    M.hist[m].count++;
}

static struct crisp_observer counter;

static void on_event(struct crisp_observer *o, unsigned ev, struct crisp_call *call,
                     const uint8_t *p, size_t n)
{
    (void)p;
    (void)n;
    if (call->parent_id)
        return;
    if (ev == CRISP_OBS_START) {
        call->obs[o->slot] = &M; /* counted in flight */
        M.inflight++;
        return;
    }
    if (call->obs[o->slot]) {
        call->obs[o->slot] = NULL;
        M.inflight--;
    }
    metrics_count(call);
}

static struct crisp_observer counter = {
    .name = "metrics",
    .events = CRISP_OBS_START | CRISP_OBS_FINISH,
    .on_event = on_event,
};

void metrics_reset(void)
{
    for (size_t i = 0; i < M.nbes; i++) {
        free(M.bes[i]->name);
        free(M.bes[i]);
    }
    M.nbes = 0;
    memset(M.hist, 0, sizeof(M.hist));
    M.inflight = 0;
}

/* ---- the text ------------------------------------------------------------------ */

/* A label value: backslash, quote and newline escaped. */
static void put_label(struct jbuf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            jbuf_putc(out, '\\');
        if (*s == '\n')
            jbuf_puts(out, "\\n");
        else
            jbuf_putc(out, *s);
    }
}

static void put_help(struct jbuf *out, const char *name, const char *type, const char *help)
{
    jbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *method_name(size_t m)
{
    return m < CRISP_RPC_COUNT ? crisp_method_at(m)->name : "unknown";
}

static void render_calls(struct jbuf *out)
{
    put_help(out, "crisp_calls_total", "counter",
             "CRI calls finished, by method, backend and gRPC status.");
    for (size_t b = 0; b < M.nbes; b++) {
        for (size_t m = 0; m < NMETHODS; m++) {
            for (unsigned c = 0; c < NCODES; c++) {
                if (!M.bes[b]->calls[m][c])
                    continue;
                jbuf_printf(out, "crisp_calls_total{method=\"%s\",backend=\"", method_name(m));
                put_label(out, M.bes[b]->name);
                jbuf_printf(out, "\",code=\"%s\"} %" PRIu64 "\n",
                            c < NCODES - 1 ? grpc_code_to_str((int)c) : "OTHER",
                            M.bes[b]->calls[m][c]);
            }
        }
    }
}

static void render_histograms(struct jbuf *out)
{
    put_help(out, "crisp_call_duration_seconds", "histogram",
             "Time from a call's request to its status, by method.");
    for (size_t m = 0; m < NMETHODS; m++) {
        if (!M.hist[m].count)
            continue;
        uint64_t cum = 0;
        for (unsigned i = 0; i <= NBUCKETS; i++) {
            cum += M.hist[m].buckets[i];
            if (i < NBUCKETS)
                jbuf_printf(out, "crisp_call_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %"
                            PRIu64 "\n", method_name(m), (double)bucket_us[i] / 1e6, cum);
            else
                jbuf_printf(out, "crisp_call_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %"
                            PRIu64 "\n", method_name(m), cum);
        }
        jbuf_printf(out, "crisp_call_duration_seconds_sum{method=\"%s\"} %.6f\n", method_name(m),
                    (double)M.hist[m].sum_us / 1e6);
        jbuf_printf(out, "crisp_call_duration_seconds_count{method=\"%s\"} %" PRIu64 "\n",
                    method_name(m), M.hist[m].count);
    }
}

/* Up: the kind's own health check, else the outcome of its last call. */
static int backend_up(struct crisp_backend *be)
{
    if (be->ops->health)
        return be->ops->health(be);
    for (size_t i = 0; i < M.nbes; i++)
        if (strcmp(M.bes[i]->name, be->name) == 0)
            return !M.bes[i]->down;
    return 1;
}

static void render_backends(struct jbuf *out)
{
    put_help(out, "crisp_backend_up", "gauge",
             "1 when the engine is reachable (the relay: a connection is ready; others: "
             "its last call did not end UNAVAILABLE).");
    for (size_t i = 0; i < crisp_backend_count(); i++) {
        jbuf_puts(out, "crisp_backend_up{backend=\"");
        put_label(out, crisp_backend_at(i)->name);
        jbuf_printf(out, "\"} %d\n", backend_up(crisp_backend_at(i)));
    }
    put_help(out, "crisp_backend_calls_in_flight", "gauge", "Calls started on a backend and not yet over.");
    for (size_t i = 0; i < crisp_backend_count(); i++) {
        jbuf_puts(out, "crisp_backend_calls_in_flight{backend=\"");
        put_label(out, crisp_backend_at(i)->name);
        jbuf_printf(out, "\"} %u\n", crisp_backend_at(i)->inflight);
    }
}

static void put_value(struct jbuf *out, const char *name, const char *type, const char *help,
                      uint64_t v)
{
    put_help(out, name, type, help);
    jbuf_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void render_trace(struct jbuf *out)
{
    struct crisp_trace_stats t;
    crisp_trace_get_stats(&t);
    if (!t.on)
        return;
    put_value(out, "crisp_trace_records_total", "counter", "Trace records written.", t.records);
    put_value(out, "crisp_trace_dropped_total", "counter",
              "Trace records dropped: the queue to the disk was full.", t.dropped);
    put_value(out, "crisp_trace_filtered_total", "counter",
              "Trace records the pod filter left out.", t.filtered);
    put_value(out, "crisp_trace_bytes_total", "counter", "Bytes of trace written.", t.bytes);
    put_value(out, "crisp_trace_write_errors_total", "counter",
              "Trace writes that failed (their records are lost).", t.write_errors);
    put_value(out, "crisp_trace_rotations_total", "counter", "Trace files rotated.", t.rotations);
    put_value(out, "crisp_trace_queue_bytes", "gauge", "Trace records waiting for the disk.",
              t.queued);
}

void metrics_render(struct jbuf *out)
{
    put_help(out, "crisp_info", "gauge", "crisp's version.");
    jbuf_puts(out, "crisp_info{version=\"");
    put_label(out, CRISP_VERSION);
    jbuf_puts(out, "\"} 1\n");
    put_value(out, "crisp_start_time_seconds", "gauge", "When crisp started (Unix time).",
              (uint64_t)M.started_wall);
    render_calls(out);
    render_histograms(out);
    put_value(out, "crisp_calls_in_flight", "gauge", "Client calls received and not yet over.",
              M.inflight);
    render_backends(out);
    put_value(out, "crisp_connections", "gauge", "Client connections open.",
              crisp_h2srv_conn_count());
    render_trace(out);
}

/* ---- HTTP ----------------------------------------------------------------------- */

#define RENDER_MAX (16u << 20)

static void on_metrics(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct jbuf out;
    jbuf_init(&out, RENDER_MAX);
    metrics_render(&out);
    struct evbuffer *body = evbuffer_new();
    if (!body || out.err || evbuffer_add(body, out.p, out.len) < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, "the metrics did not fit");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, HTTP_OK, "OK", body);
    }
    if (body)
        evbuffer_free(body);
    jbuf_free(&out);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, HTTP_NOTFOUND, "crisp serves /metrics");
}

static int set_opt(const char *name, const char *value, char *err, size_t errlen)
{
    (void)name;
    (void)err;
    (void)errlen;
    M.listen = value;
    return 0;
}

static const struct crisp_opt metrics_opts[] = {
    {"metrics-listen", "ADDR", "serve Prometheus metrics at http://ADDR/metrics:\n"
                               "HOST:PORT, tcp://HOST:PORT or unix:///path"},
    {NULL, NULL, NULL},
};

const struct crisp_opt_module crisp_metrics_module = {
    .title = "Metrics (README.md \"Metrics\")",
    .opts = metrics_opts,
    .set = set_opt,
};

/* A listening socket for the address; -1 with a reason. */
static int listen_on(const char *spec, char *err, size_t errlen)
{
    char url[300];
    struct crisp_addr a;
    snprintf(url, sizeof(url), "%s%s", strstr(spec, "://") ? "" : "tcp://", spec);
    if (crisp_addr_parse(url, &a, err, errlen) < 0)
        return -1;
    if (a.kind == CRISP_ADDR_FD)
        return snprintf(err, errlen, "--metrics-listen %s: want tcp:// or unix://", spec), -1;
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
    if (fd < 0)
        return snprintf(err, errlen, "socket: %s", strerror(errno)), -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.kind == CRISP_ADDR_UNIX) {
        unlink(a.path); /* our own socket of an earlier run */
        snprintf(M.unix_path, sizeof(M.unix_path), "%s", a.path);
    }
    if (bind(fd, (struct sockaddr *)&a.ss, a.sslen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "--metrics-listen %s: %s", spec, strerror(errno));
        close(fd);
        M.unix_path[0] = 0;
        return -1;
    }
    return fd;
}

static void log_listening(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[64] = "";
    int port = 0;
    if (!M.unix_path[0] && getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
            port = ntohs(in->sin_port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            port = ntohs(in6->sin6_port);
        }
    }
    if (M.unix_path[0])
        log_info("metrics_listening", "addr=unix://%s", M.unix_path);
    else
        log_info("metrics_listening", "addr=%s:%d", host, port);
}

int crisp_metrics_start(struct event_base *base, char *err, size_t errlen)
{
    if (!M.listen)
        return 0;
    M.started_wall = (int64_t)time(NULL);
    M.http = evhttp_new(base);
    if (!M.http)
        return snprintf(err, errlen, "out of memory"), -1;
    evhttp_set_allowed_methods(M.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(M.http, 16 * 1024);
    evhttp_set_max_body_size(M.http, 4096);
    evhttp_set_timeout(M.http, 10);
    evhttp_set_cb(M.http, "/metrics", on_metrics, NULL);
    evhttp_set_gencb(M.http, on_other, NULL);
    if (crisp_observe(&counter) < 0) {
        snprintf(err, errlen, "no observer slot left for metrics");
        goto fail;
    }
    int fd = listen_on(M.listen, err, errlen);
    if (fd < 0)
        goto fail;
    if (!evhttp_accept_socket_with_handle(M.http, fd)) {
        snprintf(err, errlen, "--metrics-listen %s: cannot serve it", M.listen);
        close(fd);
        goto fail;
    }
    log_listening(fd);
    return 0;
fail:
    crisp_metrics_stop();
    return -1;
}

void crisp_metrics_stop(void)
{
    if (M.http)
        evhttp_free(M.http);
    M.http = NULL;
    if (M.unix_path[0])
        unlink(M.unix_path);
    M.unix_path[0] = 0;
    crisp_observe_events(&counter, 0);
    metrics_reset();
}
