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
    time_t s = (time_t)(wall_us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[24];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%06dZ", date, (int)(wall_us % 1000000));
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

static void put_head(struct jbuf *out, const struct trace_job *j)
{
    char ts[32];
    trace_format_time(j->wall_us, ts);
    jbuf_printf(out, "{\"ts\":\"%s\",\"kind\":\"%s\",\"id\":%" PRIu64, ts,
                j->kind == TRACE_JOB_MSG ? "msg" : "call", j->id);
    if (j->parent)
        jbuf_printf(out, ",\"parent\":%" PRIu64, j->parent);
    if (j->conn)
        jbuf_printf(out, ",\"conn\":%" PRIu64 ",\"stream\":%" PRId32, j->conn, j->stream);
    if (j->pid >= 0)
        jbuf_printf(out, ",\"pid\":%d,\"uid\":%d", j->pid, j->uid);
    jbuf_puts(out, ",\"method\":");
    jbuf_strz(out, j->method ? j->method->name : "");
    if (j->method)
        jbuf_printf(out, ",\"service\":\"%s\"", crisp_service_to_str(j->method->svc));
    jbuf_printf(out, ",\"api\":\"%s\"", crisp_api_to_str(j->api));
    if (j->backend) {
        jbuf_puts(out, ",\"backend\":");
        jbuf_strz(out, j->backend);
    }
    if (j->handler) {
        jbuf_puts(out, ",\"handler\":");
        jbuf_strz(out, j->handler);
    }
}

static void put_outcome(struct jbuf *out, const struct trace_job *j)
{
    if (j->kind == TRACE_JOB_MSG) {
        jbuf_printf(out, ",\"n\":%u,\"at_us\":%" PRId64 ",\"bytes\":%" PRIu64, j->nmsgs,
                    j->latency_us, j->resp_declared);
        return;
    }
    jbuf_printf(out, ",\"code\":%d,\"status\":\"%s\"", j->code, grpc_code_to_str(j->code));
    if (j->message) {
        jbuf_puts(out, ",\"message\":");
        jbuf_strz(out, j->message);
    }
    jbuf_printf(out, ",\"latency_us\":%" PRId64, j->latency_us);
    if (j->backend_us >= 0)
        jbuf_printf(out, ",\"backend_us\":%" PRId64, j->backend_us);
    jbuf_printf(out, ",\"req_bytes\":%" PRIu64 ",\"resp_bytes\":%" PRIu64 ",\"msgs\":%u",
                j->req_bytes, j->resp_bytes, j->nmsgs);
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
