/* trace.c - the tracer: an observer of calls that makes trace jobs (see
 * crisp/trace.h). Runs on the event loop; the writer thread does the rest.
 *
 * Per traced call a small state (struct tcall, the call's observer slot)
 * walks the response's gRPC framing as the bytes pass (relayed bytes cut
 * anywhere, or whole messages) and, when bodies are wanted, copies each
 * message up to the capture cap: a unary call's answer is kept for its
 * record, each message of a streamed answer becomes a record of its own.
 * Nothing here decodes or formats. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/log.h"
#include "crisp/trace.h"
#include "trace/job.h"
#include "trace/pbjson_priv.h"
#include "trace/writer.h"

#define DEFAULT_MAX_SIZE (100u << 20)
#define DEFAULT_KEEP 3
#define DEFAULT_QUEUE (16u << 20)
#define CAPTURE_MIN (1u << 20)     /* bytes of one message copied for a record, at least */
#define MESSAGE_MAX (16 * 1024)    /* of a status message */
#define FILTER_FILE_MAX (1u << 20)

static struct {
    const char *path, *filter_file;
    struct trace_filter filter;   /* from the options */
    size_t max_size, queue;
    unsigned keep;
    int filter_inited;
} opt = {.max_size = DEFAULT_MAX_SIZE, .keep = DEFAULT_KEEP, .queue = DEFAULT_QUEUE};

static struct trace_cfg *cur;     /* the filter in use (the loop's reference) */
static unsigned sampled[CRISP_RPC_COUNT];

/* ---- configurations ---------------------------------------------------------- */

struct trace_cfg *trace_cfg_ref(struct trace_cfg *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void trace_cfg_unref(struct trace_cfg *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        trace_filter_free(&c->f);
        free(c);
    }
}

void trace_job_free(struct trace_job *j)
{
    free(j->req);
    free(j->resp);
    trace_cfg_unref(j->cfg);
    free(j);
}

static size_t capture_cap(const struct trace_cfg *c)
{
    return c->f.max_body * 4 > CAPTURE_MIN ? c->f.max_body * 4 : CAPTURE_MIN;
}

static int wants_bodies(const struct trace_cfg *c)
{
    return c->f.level == TRACE_FULL || c->f.npods > 0;
}

/* ---- per call ------------------------------------------------------------------ */

struct tcall {
    struct trace_cfg *cfg;
    int bodies;            /* copy messages */
    uint8_t prefix[GRPC_PREFIX_LEN];
    unsigned plen;         /* prefix bytes of the current message seen */
    uint64_t declared;     /* the current message's size */
    uint64_t need;         /* its bytes still to come */
    uint8_t *msg;          /* its copy (NULL: not copied: over the cap, or no bodies) */
    size_t msg_len;
    unsigned nmsgs;
    uint64_t resp_bytes;   /* framed bytes of the answer */
    uint8_t *kept;         /* unary: the answer's message */
    size_t kept_len;
    uint64_t kept_declared;
    int has_kept;
};

static struct crisp_observer tracer;

static struct tcall *tcall_of(struct crisp_call *call)
{
    return call->obs[tracer.slot];
}

static void tcall_free(struct tcall *t)
{
    free(t->msg);
    free(t->kept);
    trace_cfg_unref(t->cfg);
    free(t);
}

static int64_t wall_of(int64_t mono_us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - (crisp_now_us() - mono_us);
}

/* ---- jobs ------------------------------------------------------------------------ */

/* Where a request names a RuntimeClass handler (RunPodSandbox's
 * runtime_handler, an ImageSpec's), per method, found once from the
 * descriptors: the field, and the message field it is in (or none). */
static struct {
    const ProtobufCFieldDescriptor *in, *field;
} handler_at[CRISP_RPC_COUNT];

static const ProtobufCFieldDescriptor *find(const ProtobufCMessageDescriptor *d, const char *name,
                                            ProtobufCType type)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    return f && f->type == type && f->label != PROTOBUF_C_LABEL_REPEATED ? f : NULL;
}

static void find_handlers(void)
{
    for (size_t i = 0; i < crisp_methods_count(); i++) {
        const ProtobufCMessageDescriptor *d = crisp_method_at(i)->req;
        const ProtobufCFieldDescriptor *img = find(d, "image", PROTOBUF_C_TYPE_MESSAGE);
        handler_at[i].in = img;
        handler_at[i].field = find(img ? img->descriptor : d, "runtime_handler",
                                   PROTOBUF_C_TYPE_STRING);
    }
}

static const char *handler_of(const struct crisp_call *call)
{
    const ProtobufCMessage *m = call->req_msg;
    if (!m || !call->method || !handler_at[call->method->id].field)
        return NULL;
    if (handler_at[call->method->id].in)
        m = PB_MEMBER(const ProtobufCMessage *, m, handler_at[call->method->id].in->offset);
    const char *h = m ? PB_MEMBER(const char *, m, handler_at[call->method->id].field->offset) : NULL;
    return h && *h ? h : NULL;
}

/* Copies s (at most max bytes, " [cut]" marking a cut) into the job's blob. */
static const char *blob_put(char **at, const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *dst = *at;
    if (n > max) {
        memcpy(dst, s, max);
        memcpy(dst + max, " [cut]", 7);
        *at += max + 7;
    } else {
        memcpy(dst, s, n + 1);
        *at += n + 1;
    }
    return dst;
}

static size_t blob_need(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return s ? (n > max ? max + 7 : n + 1) : 0;
}

static struct trace_job *job_new(const struct crisp_call *call, struct trace_cfg *cfg,
                                 enum trace_job_kind kind)
{
    const char *be = call->backend ? call->backend->name : NULL;
    const char *h = handler_of(call), *msg = kind == TRACE_JOB_CALL ? call->message : NULL;
    size_t blob = blob_need(be, 1024) + blob_need(h, 256) + blob_need(msg, MESSAGE_MAX);
    struct trace_job *j = calloc(1, sizeof(*j) + blob);
    if (!j)
        return NULL;
    char *at = j->blob;
    j->backend = blob_put(&at, be, 1024);
    j->handler = blob_put(&at, h, 256);
    j->message = blob_put(&at, msg, MESSAGE_MAX);
    j->kind = kind;
    j->cfg = trace_cfg_ref(cfg);
    j->method = call->method;
    j->api = call->api;
    j->id = call->id;
    j->parent = call->parent_id;
    j->conn = call->origin.conn;
    j->stream = call->origin.stream;
    j->pid = call->origin.pid;
    j->uid = call->origin.uid;
    j->req_bytes = call->req_len;
    j->size = sizeof(*j) + blob;
    return j;
}

static void push(struct trace_job *j)
{
    if (j)
        trace_writer_push(j); /* a full queue drops it, counted */
}

/* ---- the response's framing ---------------------------------------------------- */

/* A message of the answer is complete (its copy in t->msg, or none). */
static void message_done(struct crisp_call *call, struct tcall *t)
{
    t->nmsgs++;
    if (call->method && call->method->server_streaming) {
        if (!t->cfg->f.errors_only && (t->cfg->f.npods == 0)) {
            struct trace_job *j = job_new(call, t->cfg, TRACE_JOB_MSG);
            if (j) {
                j->wall_us = wall_of(crisp_now_us());
                j->latency_us = crisp_now_us() - call->start_us;
                j->nmsgs = t->nmsgs;
                j->bodies = t->bodies;
                j->has_resp = 1;
                j->resp = t->msg;
                j->resp_len = t->msg_len;
                j->resp_declared = t->declared;
                j->size += t->msg_len;
                t->msg = NULL;
            }
            push(j);
        }
    } else if (!t->has_kept) {
        t->has_kept = 1;
        t->kept = t->msg;
        t->kept_len = t->msg_len;
        t->kept_declared = t->declared;
        t->msg = NULL;
    }
    free(t->msg);
    t->msg = NULL;
    t->msg_len = 0;
}

static void message_start(struct tcall *t)
{
    const uint8_t *p = t->prefix;
    t->declared = (uint64_t)p[1] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 8 | p[4];
    t->need = t->declared;
    t->msg_len = 0;
    if (t->bodies && t->declared <= capture_cap(t->cfg))
        t->msg = malloc(t->declared ? t->declared : 1); /* NULL: not copied, said cut */
}

/* Relayed bytes: prefixes and messages cut anywhere. */
static void walk(struct crisp_call *call, struct tcall *t, const uint8_t *p, size_t n)
{
    t->resp_bytes += n;
    while (n > 0) {
        if (t->plen < GRPC_PREFIX_LEN) {
            size_t take = GRPC_PREFIX_LEN - t->plen < n ? GRPC_PREFIX_LEN - t->plen : n;
            memcpy(t->prefix + t->plen, p, take);
            t->plen += (unsigned)take;
            p += take;
            n -= take;
            if (t->plen == GRPC_PREFIX_LEN)
                message_start(t);
        }
        if (t->plen == GRPC_PREFIX_LEN) {
            size_t take = t->need < n ? (size_t)t->need : n;
            if (t->msg)
                memcpy(t->msg + t->msg_len, p, take);
            t->msg_len += t->msg ? take : 0;
            t->need -= take;
            p += take;
            n -= take;
            if (t->need == 0) {
                t->plen = 0;
                message_done(call, t);
            }
        }
    }
}

/* A whole message queued by a backend that builds its answers. */
static void whole(struct crisp_call *call, struct tcall *t, const uint8_t *p, size_t n)
{
    uint8_t prefix[GRPC_PREFIX_LEN];
    grpc_prefix_write(prefix, n);
    walk(call, t, prefix, sizeof(prefix));
    walk(call, t, p, n);
}

/* ---- events ------------------------------------------------------------------------ */

/* Whether the call is one the filter's loop-side rules keep. */
static int wanted(const struct crisp_call *call, const struct trace_cfg *c)
{
    if (c->f.level == TRACE_OFF || (call->parent_id && !c->f.subcalls))
        return 0;
    return !call->method || c->keep_method[call->method->id];
}

static void on_start(struct crisp_call *call)
{
    if (!wanted(call, cur))
        return;
    struct tcall *t = calloc(1, sizeof(*t));
    if (!t)
        return; /* this call goes untraced */
    t->cfg = trace_cfg_ref(cur);
    t->bodies = wants_bodies(cur);
    call->obs[tracer.slot] = t;
}

/* Sampling of the polling calls: 1 in N per method (failures always). */
static int sampled_out(const struct crisp_call *call, const struct trace_cfg *c)
{
    if (c->f.sample <= 1 || call->code != GRPC_OK || !call->method ||
        !c->polling[call->method->id])
        return 0;
    return sampled[call->method->id]++ % c->f.sample != 0;
}

/* The request's bytes for the record (NULL: over the cap, said cut). */
static uint8_t *copy_request(const struct crisp_call *call, const struct trace_cfg *c)
{
    if (!call->req || call->req_len > capture_cap(c))
        return NULL;
    uint8_t *p = malloc(call->req_len ? call->req_len : 1);
    if (p)
        memcpy(p, call->req, call->req_len);
    return p;
}

static void on_finish(struct crisp_call *call)
{
    struct tcall *t = tcall_of(call);
    struct trace_cfg *c = t ? t->cfg : cur;
    if (!t && !wanted(call, c))
        return;
    if ((c->f.errors_only && call->code == GRPC_OK) || sampled_out(call, c))
        return;
    struct trace_job *j = job_new(call, c, TRACE_JOB_CALL);
    if (!j)
        return;
    j->wall_us = wall_of(call->start_us);
    j->latency_us = call->finished_us - call->start_us;
    j->backend_us = call->routed_us ? call->finished_us - call->routed_us : -1;
    j->code = call->code;
    j->nmsgs = t ? t->nmsgs : call->nmsgs_out;
    j->resp_bytes = t ? t->resp_bytes : 0;
    j->bodies = t ? t->bodies : wants_bodies(c);
    if (j->bodies) {
        j->req = copy_request(call, c);
        j->size += j->req ? j->req_len : 0;
        j->req_len = j->req ? call->req_len : 0;
    }
    if (t && t->has_kept) {
        j->has_resp = 1;
        j->resp = t->kept;
        j->resp_len = t->kept_len;
        j->resp_declared = t->kept_declared;
        j->size += t->kept_len;
        t->kept = NULL;
    }
    push(j);
}

static void on_event(struct crisp_observer *o, unsigned ev, struct crisp_call *call,
                     const uint8_t *p, size_t n)
{
    struct tcall *t = call->obs[o->slot];
    switch (ev) {
    case CRISP_OBS_START:
        on_start(call);
        break;
    case CRISP_OBS_RAW_OUT:
        if (t)
            walk(call, t, p, n);
        break;
    case CRISP_OBS_MSG_OUT:
        if (t)
            whole(call, t, p, n);
        break;
    case CRISP_OBS_FINISH:
        on_finish(call);
        break;
    case CRISP_OBS_FREE:
        if (t)
            tcall_free(t);
        call->obs[o->slot] = NULL;
        break;
    }
}

static struct crisp_observer tracer = {
    .name = "trace",
    .on_event = on_event,
};

static unsigned events_for(const struct trace_cfg *c)
{
    /* off: FREE still, for the calls that started under another level */
    return c->f.level == TRACE_OFF ? CRISP_OBS_FREE
                                   : CRISP_OBS_START | CRISP_OBS_RAW_OUT | CRISP_OBS_MSG_OUT |
                                         CRISP_OBS_FINISH | CRISP_OBS_FREE;
}

/* ---- options ------------------------------------------------------------------------ */

static const struct crisp_opt trace_opts[] = {
    {"trace", "PATH", "write a trace of every CRI call (JSON Lines) to PATH,\n"
                      "or - for stdout; SIGHUP reopens it"},
    {"trace-level", "LEVEL", "summary (default: no bodies), full (request and\n"
                             "response decoded) or off"},
    {"trace-methods", "PATTERNS", "methods to trace, comma-separated patterns on\n"
                                  "Version or RuntimeService/Version; !PATTERN\n"
                                  "excludes (repeatable)"},
    {"trace-errors-only", NULL, "only calls that did not end OK"},
    {"trace-mutating-only", NULL, "only calls that change something (no List*,\n"
                                  "*Status, *Stats, Version...)"},
    {"trace-pod", "NS/NAME", "only calls about this pod (patterns; uid:UID for a\n"
                             "uid); repeatable"},
    {"trace-sample", "N", "of the polling calls (List*, *Status, *Stats,\n"
                          "Version, ImageFsInfo), 1 in N per method (failed\n"
                          "ones always)"},
    {"trace-redact-env", NULL, "redact container environment values (and verbose\n"
                               "info) too; registry credentials always are"},
    {"trace-subcalls", NULL, "also the calls crisp makes itself (a router's\n"
                             "probes and fan-out parts)"},
    {"trace-max-body", "BYTES", "JSON of one request or response, at most (default\n"
                                "64K); longer is cut and marked \"@cut\""},
    {"trace-max-size", "BYTES", "rotate the file past this size (default 100M; 0:\n"
                                "never)"},
    {"trace-max-files", "N", "rotated files kept, PATH.1 .. PATH.N (default 3)"},
    {"trace-queue", "BYTES", "records waiting for the disk, at most (default 16M);\n"
                             "past it they are dropped and counted"},
    {"trace-filter", "FILE", "the settings above as JSON ({\"level\": \"full\",\n"
                             "\"methods\": [\"!List*\"]...}), over the options;\n"
                             "SIGHUP reads it again"},
    {NULL, NULL, NULL},
};

static int parse_bytes(const char *v, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end == 'K' || *end == 'k')
        n <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        n <<= 20, end++;
    else if (*end == 'G' || *end == 'g')
        n <<= 30, end++;
    if (errno || end == v || *end || n < lo || n > hi)
        return -1;
    *out = (size_t)n;
    return 0;
}

static int set_file_opt(const char *name, const char *value, char *err, size_t errlen)
{
    size_t v;
    if (strcmp(name, "trace-max-size") == 0) {
        if (parse_bytes(value, 0, (size_t)1 << 40, &v) < 0 || (v && v < 4096))
            return snprintf(err, errlen, "--trace-max-size %s: want 0 or 4K..1T", value), -1;
        opt.max_size = v;
    } else if (strcmp(name, "trace-max-files") == 0) {
        if (parse_bytes(value, 1, 99, &v) < 0)
            return snprintf(err, errlen, "--trace-max-files %s: want 1..99", value), -1;
        opt.keep = (unsigned)v;
    } else {
        if (parse_bytes(value, 64 << 10, (size_t)1 << 32, &v) < 0)
            return snprintf(err, errlen, "--trace-queue %s: want 64K..4G", value), -1;
        opt.queue = v;
    }
    return 0;
}

static int set_opt(const char *name, const char *value, char *err, size_t errlen)
{
    if (!opt.filter_inited) {
        trace_filter_init(&opt.filter);
        opt.filter_inited = 1;
    }
    if (strcmp(name, "trace") == 0)
        opt.path = value;
    else if (strcmp(name, "trace-filter") == 0)
        opt.filter_file = value;
    else if (strcmp(name, "trace-max-size") == 0 || strcmp(name, "trace-max-files") == 0 ||
             strcmp(name, "trace-queue") == 0)
        return set_file_opt(name, value, err, errlen);
    else if (trace_filter_set(&opt.filter, name + 6, value, err, errlen) < 0)
        return -1;
    return 0;
}

const struct crisp_opt_module crisp_trace_module = {
    .title = "Tracing (README.md \"Tracing\")",
    .opts = trace_opts,
    .set = set_opt,
};

/* ---- start, reload, stop ------------------------------------------------------------ */

/* A small file, whole: malloc'd text and *n, or NULL and a reason. */
static char *read_small(const char *path, size_t max, size_t *n, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "re");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(max);
    *n = text ? fread(text, 1, max, fp) : 0;
    fclose(fp);
    if (!text || *n == max) {
        snprintf(err, errlen, "%s: %s", path, text ? "over 1 MiB" : "out of memory");
        free(text);
        return NULL;
    }
    return text;
}

/* The filter of the options with the --trace-filter file over it. */
static struct trace_cfg *load_cfg(char *err, size_t errlen)
{
    char why[400];
    size_t n;
    struct trace_cfg *c = calloc(1, sizeof(*c));
    if (!c || trace_filter_copy(&c->f, &opt.filter) < 0) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    if (opt.filter_file) {
        char *text = read_small(opt.filter_file, FILTER_FILE_MAX, &n, err, errlen);
        int rc = text ? trace_filter_load_json(&c->f, text, n, why, sizeof(why)) : -1;
        if (text && rc < 0)
            snprintf(err, errlen, "%s: %s", opt.filter_file, why);
        free(text);
        if (rc < 0) {
            trace_cfg_unref(c);
            return NULL;
        }
    }
    for (size_t i = 0; i < crisp_methods_count(); i++) {
        c->keep_method[i] = (unsigned char)trace_filter_method(&c->f, crisp_method_at(i));
        c->polling[i] = (unsigned char)trace_method_is_polling(crisp_method_at(i));
    }
    return c;
}

static void use_cfg(struct trace_cfg *c)
{
    char desc[512];
    trace_cfg_unref(cur);
    cur = c;
    crisp_observe_events(&tracer, events_for(c));
    trace_filter_describe(&c->f, desc, sizeof(desc));
    log_info("trace_filter", "path=%s %s", crisp_logq(opt.path), desc);
}

int crisp_trace_start(struct event_base *base, char *err, size_t errlen)
{
    (void)base;
    if (!opt.path)
        return opt.filter_file || opt.filter_inited
                   ? (snprintf(err, errlen, "--trace-* options need --trace PATH"), -1) : 0;
    struct trace_cfg *c = load_cfg(err, errlen);
    if (!c)
        return -1;
    find_handlers();
    struct trace_writer_cfg wc = {opt.path, opt.max_size, opt.keep, opt.queue};
    if (trace_writer_start(&wc, err, errlen) < 0)
        goto fail_writer;
    if (crisp_observe(&tracer) < 0) {
        snprintf(err, errlen, "no observer slot left for the tracer");
        goto fail_observe;
    }
    use_cfg(c);
    return 0;
fail_observe:
    trace_writer_stop();
fail_writer:
    trace_cfg_unref(c);
    return -1;
}

void crisp_trace_reload(void)
{
    char err[512] = "";
    if (!cur)
        return;
    trace_writer_reopen();
    if (!opt.filter_file)
        return;
    struct trace_cfg *c = load_cfg(err, sizeof(err));
    if (!c) {
        log_warn("trace_filter_reload_failed", "file=%s err=%s keeping=\"the running filter\"",
                 crisp_logq(opt.filter_file), crisp_logq(err));
        return;
    }
    use_cfg(c);
}

void crisp_trace_stop(void)
{
    if (cur)
        crisp_observe_events(&tracer, CRISP_OBS_FREE); /* calls alive still free their state */
    trace_writer_stop();
    trace_cfg_unref(cur);
    cur = NULL;
    if (opt.filter_inited)
        trace_filter_free(&opt.filter);
    opt.filter_inited = 0;
}

void crisp_trace_get_stats(struct crisp_trace_stats *s)
{
    struct trace_writer_stats w = {0};
    if (cur)
        trace_writer_get_stats(&w);
    *s = (struct crisp_trace_stats){cur != NULL, w.records, w.dropped, w.filtered, w.bytes,
                                    w.write_errors, w.rotations, w.queued};
}
