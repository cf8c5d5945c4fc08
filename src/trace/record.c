/* record.c - a trace job as one line of JSON (see record.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crisp/grpc.h"
#include "trace/pbjson.h"
#include "trace/record.h"

void trace_format_time(int64_t wall_us, char out[32])
{
    /* the date and time of the last second formatted, kept: records come
     * many a second (the writer thread's alone) */
    static __thread int64_t cached_s = -1;
    static __thread char date[24];
    int64_t s = wall_us / 1000000;
    int us = (int)(wall_us % 1000000);
    if (s != cached_s) {
        time_t t = (time_t)s;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_s = s;
    }
    memcpy(out, date, 19);
    out[19] = '.';
    for (int i = 25; i > 19; i--, us /= 10)
        out[i] = (char)('0' + us % 10);
    memcpy(out + 26, "Z", 2);
}

/* The decoded bodies of a job (when it carries them). */
struct bodies {
    ProtobufCMessage *req, *resp;
};

static void bodies_decode(struct bodies *b, const struct trace_job *j)
{
    const struct crisp_method *m = j->method;
    b->req = b->resp = NULL;
    if (!m)
        return;
    if (j->req)
        b->req = protobuf_c_message_unpack(m->req, NULL, j->req_len, j->req);
    if (j->resp)
        b->resp = protobuf_c_message_unpack(m->resp, NULL, j->resp_len, j->resp);
}

static void bodies_free(struct bodies *b)
{
    if (b->req)
        protobuf_c_message_free_unpacked(b->req, NULL);
    if (b->resp)
        protobuf_c_message_free_unpacked(b->resp, NULL);
}

static void put_names(struct jbuf *out, const struct trace_job *j)
{
    if (j->backend) {
        jbuf_puts(out, ",\"backend\":");
        jbuf_strz(out, j->backend);
    }
    if (j->handler) {
        jbuf_puts(out, ",\"handler\":");
        jbuf_strz(out, j->handler);
    }
}

static void put_head(struct jbuf *out, const struct trace_job *j)
{
    char ts[32];
    trace_format_time(j->wall_us, ts);
    jbuf_puts(out, "{\"ts\":\"");
    jbuf_puts(out, ts);
    jbuf_puts(out, j->kind == TRACE_JOB_MSG ? "\",\"kind\":\"msg\",\"id\":" : "\",\"kind\":\"call\",\"id\":");
    jbuf_u64(out, j->id);
    if (j->parent) {
        jbuf_puts(out, ",\"parent\":");
        jbuf_u64(out, j->parent);
    }
    if (j->conn) {
        jbuf_puts(out, ",\"conn\":");
        jbuf_u64(out, j->conn);
        jbuf_puts(out, ",\"stream\":");
        jbuf_i64(out, j->stream);
    }
    if (j->pid >= 0) {
        jbuf_puts(out, ",\"pid\":");
        jbuf_i64(out, j->pid);
        jbuf_puts(out, ",\"uid\":");
        jbuf_i64(out, j->uid);
    }
    jbuf_puts(out, ",\"method\":");
    jbuf_strz(out, j->method ? j->method->name : "");
    if (j->method) {
        jbuf_puts(out, ",\"service\":\"");
        jbuf_puts(out, crisp_service_to_str(j->method->svc));
        jbuf_putc(out, '"');
    }
    jbuf_puts(out, j->api == CRISP_API_V1ALPHA2 ? ",\"api\":\"v1alpha2\"" : ",\"api\":\"v1\"");
    put_names(out, j);
}

static void put_num(struct jbuf *out, const char *k, int64_t v)
{
    jbuf_puts(out, k);
    jbuf_i64(out, v);
}

static void put_outcome(struct jbuf *out, const struct trace_job *j)
{
    if (j->kind == TRACE_JOB_MSG) {
        put_num(out, ",\"n\":", j->nmsgs);
        put_num(out, ",\"at_us\":", j->latency_us);
        jbuf_puts(out, ",\"bytes\":");
        jbuf_u64(out, j->resp_declared);
        return;
    }
    put_num(out, ",\"code\":", j->code);
    jbuf_puts(out, ",\"status\":\"");
    jbuf_puts(out, grpc_code_to_str(j->code));
    jbuf_putc(out, '"');
    if (j->message) {
        jbuf_puts(out, ",\"message\":");
        jbuf_strz(out, j->message);
    }
    put_num(out, ",\"latency_us\":", j->latency_us);
    if (j->backend_us >= 0)
        put_num(out, ",\"backend_us\":", j->backend_us);
    jbuf_puts(out, ",\"req_bytes\":");
    jbuf_u64(out, j->req_bytes);
    jbuf_puts(out, ",\"resp_bytes\":");
    jbuf_u64(out, j->resp_bytes);
    put_num(out, ",\"msgs\":", j->nmsgs);
}

/* "name": the body, or a marker saying why there is none (cut: over the
 * capture cap; undecodable); returns whether it was cut. */
static int put_body(struct jbuf *out, const char *name, const ProtobufCMessage *m,
                    const uint8_t *raw, uint64_t declared, const struct trace_filter *f)
{
    jbuf_printf(out, ",\"%s\":", name);
    if (m) {
        struct pbjson_enc e = {.flags = f->redact_env ? PBJSON_REDACT_ENV : 0,
                               .limit = f->max_body};
        pbjson_encode(out, m, &e);
        return e.cut;
    }
    if (!raw) {
        jbuf_printf(out, "{\"" PBJSON_CUT_KEY "\":true,\"@bytes\":%" PRIu64 "}", declared);
        return 1;
    }
    jbuf_printf(out, "{\"@undecodable\":%" PRIu64 "}", declared);
    return 0;
}

int trace_record_format(struct jbuf *out, const struct trace_job *j, struct trace_pods *pods)
{
    const struct trace_filter *f = &j->cfg->f;
    size_t mark = out->len;
    struct bodies b;
    bodies_decode(&b, j);
    if (f->npods && (!j->method || !trace_pods_match(pods, f, j->method, b.req, b.resp,
                                                     j->code == GRPC_OK))) {
        bodies_free(&b);
        return 0;
    }
    put_head(out, j);
    put_outcome(out, j);
    int cut = 0;
    if (f->level == TRACE_FULL && j->bodies) {
        if (j->kind == TRACE_JOB_CALL)
            cut |= put_body(out, "request", b.req, j->req, j->req_bytes, f);
        if (j->has_resp)
            cut |= put_body(out, "response", b.resp, j->resp, j->resp_declared, f);
    }
    jbuf_puts(out, cut ? ",\"cut\":true}\n" : "}\n");
    bodies_free(&b);
    if (out->err) {
        int err = out->err;
        out->err = 0;
        jbuf_truncate(out, mark);
        return err;
    }
    return 1;
}

int trace_record_dropped(struct jbuf *out, uint64_t count, int64_t wall_us)
{
    char ts[32];
    trace_format_time(wall_us, ts);
    return jbuf_printf(out, "{\"ts\":\"%s\",\"kind\":\"dropped\",\"count\":%" PRIu64 "}\n", ts,
                       count);
}
