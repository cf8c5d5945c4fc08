/* op.c - the op every Docker handler runs on (docker.h): one per CRI call,
 * its engine requests, its answer, and the API version learnt on the first
 * call. */
#define _GNU_SOURCE /* asprintf */
#include <assert.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

/* The longest request target sent to an engine (dockerd and podman take a
 * request head of 1 MiB): longer is refused, never cut. */
#define TARGET_MAX (64 * 1024)
#define STREAM_CHUNK 100 /* items per message of a Stream* answer */

struct op_priv {
    struct dk_op op;
    const struct dk_method *method;
    struct crisp_list ver_link;              /* in be->ver_wait */
    void (*after_version)(struct dk_op *op); /* what waits for it, else the handler */
    dk_version_cb version_cb;                /* dk_engine_version's */
    unsigned holds;                          /* op_hold */
    int ended;                               /* ended while held: freed at the last release */
};

static struct op_priv *priv(struct dk_op *op)
{
    return (struct op_priv *)op;
}

/* ---- escaping --------------------------------------------------------------- */

const char *dk_esc(struct dk_op *op, const char *s)
{
    size_t n = strlen(s);
    char *out = n <= TARGET_MAX ? dk_alloc(&op->mem, dk_url_esc_len(s)) : NULL;
    if (n > TARGET_MAX)
        op->target_too_long = 1;
    if (!out)
        return ""; /* the next request fails the op */
    dk_url_esc(out, dk_url_esc_len(s), s);
    return out;
}

/* Whether an escape failed since: fails the op and returns 1. */
static int esc_failed(struct dk_op *op)
{
    if (op->target_too_long)
        dk_op_fail(op, GRPC_INVALID_ARGUMENT,
                   "a name or ID longer than %d bytes cannot go into an engine request", TARGET_MAX);
    else if (op->mem.oom)
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
    else
        return 0;
    return 1;
}

/* ---- ops --------------------------------------------------------------- */

static void cancel_subs(struct dk_op *op);

/* What ending an op undoes at once: its links, its call. */
static void op_detach(struct dk_op *op)
{
    assert(op->pending == 0 && crisp_list_empty(&op->subs));
    if (crisp_list_is_linked(&priv(op)->ver_link))
        crisp_list_unlink(&priv(op)->ver_link);
    if (op->undo_id[0])
        dk_reap(op->be, op->undo_id); /* made, not answered OK, not removed */
    crisp_list_unlink(&op->link);
    if (op->call && dk_view_changes_lists(op->call->method->id)) /* a List after the answer sees it */
        dk_view_changed(op->be, op->changes, op->answered && !op->changes_lost);
    if (op->call) {
        op->call->be_ctx = NULL;
        crisp_call_unref(op->call);
        op->call = NULL;
    }
}

/* Its memory, once nobody holds it. */
static void op_release_mem(struct dk_op *op)
{
    if (op->free_state && op->state)
        op->free_state(op->state);
    if (op->free_aux && op->aux)
        op->free_aux(op->aux);
    dk_arena_free(&op->mem);
    free(op);
}

static void op_free(struct dk_op *op)
{
    op_detach(op);
    op_release_mem(op);
}

void dk_op_end(struct dk_op *op)
{
    struct op_priv *p = priv(op);
    if (p->ended)
        return;
    cancel_subs(op);
    if (p->holds) {
        p->ended = 1;
        op_detach(op);
        return;
    }
    op_free(op);
}

/* The dispatch holds the op around every handler and callback it runs: an
 * op that ends inside one (a request of a fan-out that could not start
 * fails it at once) keeps its memory, state included, until the callback
 * returns, and its later engine requests and messages are no-ops. */
static void op_hold(struct dk_op *op)
{
    priv(op)->holds++;
}

static void op_release(struct dk_op *op)
{
    struct op_priv *p = priv(op);
    assert(p->holds > 0);
    if (--p->holds == 0 && p->ended)
        op_release_mem(op);
}

void dk_op_hold(struct dk_op *op)
{
    op_hold(op);
}

void dk_op_release(struct dk_op *op)
{
    op_release(op);
}

int dk_op_ended(struct dk_op *op)
{
    return priv(op)->ended;
}

void dk_op_changed(struct dk_op *op, int kind, const char *id, enum dk_expect expect)
{
    size_t n = strlen(id) + 1;
    struct dk_change *c = dk_alloc(&op->mem, sizeof(*c) + n);
    if (!c) {
        op->changes_lost = 1;
        return;
    }
    c->kind = kind;
    c->expect = expect;
    memcpy(c->id, id, n);
    c->next = op->changes;
    op->changes = c;
}

void dk_op_reply(struct dk_op *op, const ProtobufCMessage *resp)
{
    if (op->mem.oom) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building the %s response",
                   op->call ? op->call->method->name : "");
        return;
    }
    op->answered = 1;
    if (op->call && !op->cancelled) {
        if (crisp_call_send_pb(op->call, resp) == 0)
            crisp_call_finish(op->call, GRPC_OK, NULL);
    }
    dk_op_end(op);
}

void dk_op_reply_msg(struct dk_op *op, uint8_t *msg, size_t len)
{
    op->answered = 1;
    if (op->call && !op->cancelled && crisp_call_send_msg(op->call, msg, len) == 0)
        crisp_call_finish(op->call, GRPC_OK, NULL);
    else if (!op->call || op->cancelled)
        free(msg);
    dk_op_end(op);
}

void dk_op_reply_packed(struct dk_op *op, const uint8_t *p, size_t len)
{
    uint8_t *msg = malloc(len ? len : 1);
    if (!msg) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    memcpy(msg, p, len);
    dk_op_reply_msg(op, msg, len);
}

int dk_op_status_from_view(struct dk_op *op, const char *id, uint64_t *gen)
{
    size_t len;
    const uint8_t *p = dk_view_status(op->be, op->call->method->id, id, &len);
    if (p) {
        dk_op_reply_packed(op, p, len);
        return 1;
    }
    *gen = dk_view_gen(op->be);
    return 0;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(m, buf);
    return buf;
}

void dk_op_reply_status(struct dk_op *op, const char *asked, const cJSON *inspect, uint64_t gen,
                        const ProtobufCMessage *resp)
{
    if (op->mem.oom || !op->call || strcmp(asked, dk_str(inspect, "Id")) != 0) {
        dk_op_reply(op, resp);
        return;
    }
    size_t len;
    uint8_t *buf = pack(resp, &len);
    if (!buf) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building the %s response",
                   op->call->method->name);
        return;
    }
    dk_view_keep_status(op->be, op->call->method->id, asked, gen, inspect, buf, len);
    dk_op_reply_msg(op, buf, len);
}

void dk_keep_status(struct dk_be *be, int rpc, const char *asked, const cJSON *inspect, uint64_t gen,
                    const ProtobufCMessage *resp)
{
    size_t len;
    uint8_t *buf = strcmp(asked, dk_str(inspect, "Id")) == 0 ? pack(resp, &len) : NULL;
    if (buf)
        dk_view_keep_status(be, rpc, asked, gen, inspect, buf, len);
    free(buf);
}

void dk_op_fail(struct dk_op *op, int code, const char *fmt, ...)
{
    if (op->call && !op->cancelled) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        crisp_call_finish(op->call, code, msg);
    }
    dk_op_end(op);
}

void dk_op_fail_err(struct dk_op *op, const struct dk_err *err)
{
    if (err->code)
        dk_op_fail(op, err->code, "%s", err->msg);
    else
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

int dk_op_send(struct dk_op *op, const ProtobufCMessage *msg)
{
    if (priv(op)->ended)
        return -1;
    if (op->mem.oom) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return -1;
    }
    if (!op->call || op->cancelled)
        return 0;
    if (crisp_call_send_pb(op->call, msg) == 0)
        return 0;
    dk_op_end(op); /* the call is finished: nobody reads on */
    return -1;
}

/* Every List* and Stream* response of the CRI has this layout: one
 * repeated field (the items). */
struct items_msg {
    ProtobufCMessage base;
    size_t n;
    void **items;
};

static void items_msg_init(struct items_msg *m, const ProtobufCMessageDescriptor *desc,
                           void **items, size_t n)
{
    assert(desc->sizeof_message == sizeof(*m) && desc->n_fields == 1 &&
           desc->fields[0].label == PROTOBUF_C_LABEL_REPEATED &&
           desc->fields[0].offset == offsetof(struct items_msg, items) &&
           desc->fields[0].quantifier_offset == offsetof(struct items_msg, n));
    protobuf_c_message_init(desc, m);
    m->n = n;
    m->items = items;
}

int dk_op_send_chunks(struct dk_op *op, const ProtobufCMessageDescriptor *desc, void **items,
                      size_t n)
{
    for (size_t i = 0; i < n; i += STREAM_CHUNK) {
        struct items_msg m;
        items_msg_init(&m, desc, items + i, n - i < STREAM_CHUNK ? n - i : STREAM_CHUNK);
        if (dk_op_send(op, &m.base) < 0)
            return -1;
    }
    return 0;
}

void dk_op_reply_items(struct dk_op *op, void **items, size_t n)
{
    const struct crisp_method *m = op->call->method;
    struct items_msg all;
    if (!m->server_streaming) {
        items_msg_init(&all, m->resp, items, n);
        dk_op_reply(op, &all.base);
    } else if (dk_op_send_chunks(op, m->resp, items, n) == 0) {
        dk_op_finish_ok(op);
    }
}

void dk_op_finish_ok(struct dk_op *op)
{
    op->answered = 1;
    if (op->call && !op->cancelled)
        crisp_call_finish(op->call, GRPC_OK, NULL);
    dk_op_end(op);
}

int dk_op_stopped(struct dk_op *op)
{
    if (!op->cancelled || op->must_finish)
        return 0;
    dk_op_end(op);
    return 1;
}

int dk_check_id(struct dk_op *op, const char *id, const char *what)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "%s is empty", what);
        return -1;
    }
    /* Engine IDs are 64 hex digits (names are allowed too); anything else
     * would only reach the engine as a path it cannot find. */
    if (n > 128 || strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n) {
        dk_op_fail(op, GRPC_NOT_FOUND, "%s %.64s%s not found (not an engine ID)", what, id,
                   n > 64 ? "..." : "");
        return -1;
    }
    return 0;
}

int dk_code_for_status(int status)
{
    switch (status) {
    case 400:
        return GRPC_INVALID_ARGUMENT;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_NOT_FOUND;
    case 409:
        return GRPC_FAILED_PRECONDITION;
    case 501:
        return GRPC_UNIMPLEMENTED;
    case 503:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

const char *dk_errmsg(cJSON *json, int status)
{
    const char *m = dk_str(json, "message");
    if (*m)
        return m;
    static char buf[64];
    snprintf(buf, sizeof(buf), "engine answered HTTP %d", status);
    return buf;
}

int dk_inspect_ok(struct dk_op *op, int status, cJSON *json, const char *type, const char *id)
{
    int sandbox = strcmp(type, DK_TYPE_SANDBOX) == 0;
    if (dk_inspect_absent(status, json, type))
        dk_op_fail(op, GRPC_NOT_FOUND, "%s %s not found", sandbox ? "pod sandbox" : "container", id);
    else if (status != 200)
        dk_fail_http(op, status, json, sandbox ? "inspecting the pod sandbox" : "inspecting the container");
    else
        return 0;
    return -1;
}

void dk_fail_http(struct dk_op *op, int status, cJSON *json, const char *what)
{
    dk_op_fail(op, dk_code_for_status(status), "%s: %s", what, dk_errmsg(json, status));
}

/* ---- engine requests ---------------------------------------------------- */

/* One engine request of an op. The op keeps a list so that ending it
 * cancels every request still in flight. */
struct dk_sub {
    struct crisp_list link;        /* in op->subs */
    struct dk_op *op;
    struct h1_req *r;
    dk_json_cb json_cb;            /* dk_call */
    void *ud;                      /* dk_callx: handed to the callback via op->cur_ud */
    const struct h1_req_cbs *cbs;  /* dk_call_opts: the caller's callbacks */
};

static struct dk_sub *sub_new(struct dk_op *op)
{
    struct dk_sub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return NULL;
    sub->op = op;
    return sub;
}

static void sub_link(struct dk_sub *sub)
{
    struct dk_op *op = sub->op;
    assert(sub->r && !crisp_list_is_linked(&sub->link));
    crisp_list_push_front(&op->subs, &sub->link);
    op->pending++;
}

/* Unlinks and frees; the h1 request is finished or cancelled already. */
static struct dk_op *sub_done(struct dk_sub *sub)
{
    struct dk_op *op = sub->op;
    assert(op->pending > 0 && crisp_list_is_linked(&sub->link));
    crisp_list_unlink(&sub->link);
    op->pending--;
    if (op->h1 == sub->r)
        op->h1 = NULL;
    free(sub);
    return op;
}

static void cancel_subs(struct dk_op *op)
{
    struct crisp_list *it;
    while ((it = crisp_list_first(&op->subs))) {
        struct dk_sub *sub = crisp_container_of(it, struct dk_sub, link);
        h1_cancel(sub->r);
        sub_done(sub);
    }
}

static void on_json_done(struct h1_req *r, int err, const char *errmsg, int status,
                         const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_sub *sub = ud;
    dk_json_cb cb = sub->json_cb;
    void *cb_ud = sub->ud;
    struct dk_op *op = sub_done(sub);
    if (err) {
        dk_engine_lost(op->be);
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    if (dk_op_stopped(op))
        return;
    cJSON *json = len ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    op->cur_ud = cb_ud;
    op_hold(op);
    cb(op, status, json);
    op_release(op);
    cJSON_Delete(json);
}

static const struct h1_req_cbs json_cbs = {.on_done = on_json_done};

static int wrap_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct dk_sub *sub = ud;
    if (!sub->cbs->on_head)
        return 0;
    struct dk_op *op = sub->op;
    op_hold(op);
    int rv = sub->cbs->on_head(r, status, h, op);
    op_release(op);
    return rv;
}

static int wrap_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct dk_sub *sub = ud;
    struct dk_op *op = sub->op;
    op_hold(op);
    int rv = sub->cbs->on_body(r, p, n, op);
    op_release(op);
    return rv;
}

static void wrap_done(struct h1_req *r, int err, const char *errmsg, int status,
                      const uint8_t *body, size_t len, void *ud)
{
    struct dk_sub *sub = ud;
    const struct h1_req_cbs *cbs = sub->cbs;
    struct dk_op *op = sub_done(sub);
    op_hold(op);
    cbs->on_done(r, err, errmsg, status, body, len, op);
    op_release(op);
}

static const struct h1_req_cbs wrap_cbs = {.on_head = wrap_head, .on_done = wrap_done};
static const struct h1_req_cbs wrap_stream_cbs = {
    .on_head = wrap_head, .on_body = wrap_body, .on_done = wrap_done};

/* The versioned target of an engine request, malloc'd; NULL (the op
 * failed) when memory is short or it would be longer than TARGET_MAX. */
static char *versioned_target(struct dk_op *op, const char *target)
{
    char *t = NULL;
    int n;
    /* Before the version is known (Status only): unversioned paths. */
    if (strncmp(target, "/libpod/", 8) == 0)
        n = asprintf(&t, "/v4.0.0%s", target);
    else
        n = asprintf(&t, "%s%s%s", op->be->api[0] ? "/v" : "", op->be->api, target);
    if (n < 0) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return NULL;
    }
    if (n > TARGET_MAX) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT,
                   "the engine request would be %d bytes long (at most %d): %.60s...", n,
                   TARGET_MAX, target);
        free(t);
        return NULL;
    }
    return t;
}

static void issue(struct dk_op *op, struct dk_sub *sub, struct h1_req_opts *o,
                  const struct h1_req_cbs *cbs)
{
    const char *target = o->target;
    char *full = versioned_target(op, target);
    if (!full) {
        free(sub);
        return;
    }
    o->target = full;
    sub->r = h1_request(op->slow ? op->be->long_pool : op->be->pool, o, cbs, sub); /* copies */
    o->target = target;
    free(full);
    if (!sub->r) {
        free(sub);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub_link(sub);
    op->h1 = sub->r;
}

static void vcall(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, void *ud,
                  const char *fmt, va_list ap)
{
    if (priv(op)->ended || esc_failed(op)) {
        cJSON_Delete(body);
        return;
    }
    char *target = NULL;
    int tn = vasprintf(&target, fmt, ap);
    char *json = body ? cJSON_PrintUnformatted(body) : NULL;
    int oom = tn < 0 || (body && !json);
    cJSON_Delete(body);
    struct dk_sub *sub = oom ? NULL : sub_new(op);
    if (!sub) {
        free(json);
        free(tn < 0 ? NULL : target);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub->json_cb = cb;
    sub->ud = ud;
    struct h1_req_opts o = {
        .method = method,
        .target = target,
        .content_type = json ? "application/json" : NULL,
        .body = (const uint8_t *)json,
        .body_len = json ? strlen(json) : 0,
    };
    issue(op, sub, &o, &json_cbs);
    free(json);
    free(target);
}

void dk_call(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, const char *fmt,
             ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcall(op, method, body, cb, NULL, fmt, ap);
    va_end(ap);
}

void dk_callx(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, void *ud,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcall(op, method, body, cb, ud, fmt, ap);
    va_end(ap);
}

void dk_call_opts(struct dk_op *op, struct h1_req_opts *o, const struct h1_req_cbs *cbs)
{
    if (priv(op)->ended || esc_failed(op))
        return;
    struct dk_sub *sub = sub_new(op);
    if (!sub) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub->cbs = cbs;
    issue(op, sub, o, cbs->on_body ? &wrap_stream_cbs : &wrap_cbs);
}

/* ---- the engine's version: learnt once, shared ------------------------------------------
 *
 * GET /version forks conmon and the OCI runtime on podman (1-3 s each,
 * serialized): it is asked once, by whichever op needs it first, and the
 * answer kept for every later op (the API version spoken, podman or not,
 * the Version RPC's answer). It is asked again after VERSION_TTL_S, or
 * once the engine's connection failed (dk_engine_lost: a restarted engine
 * may be another version). Ops waiting for it are linked in be->ver_wait. */

#define VERSION_TTL_S 300

static void run_handler(struct dk_op *op);

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Kept and asked within VERSION_TTL_S; else it is asked again (in the
 * background while it may still be used: version_usable). */
static int version_fresh(const struct dk_be *be)
{
    return be->version && !be->version_stale && mono_s() - be->version_at < VERSION_TTL_S;
}

/* A kept answer serves until the engine's connection fails: then the
 * engine may have been restarted (another version), or be down. */
static int version_usable(const struct dk_be *be)
{
    return be->version && !be->version_stale;
}

void dk_forget_storage_root(struct dk_be *be)
{
    free(be->storage_root);
    be->storage_root = NULL;
}

void dk_engine_lost(struct dk_be *be)
{
    be->version_stale = 1;
    dk_forget_storage_root(be); /* a restarted engine may keep its data elsewhere */
}

const char *dk_learn_storage_root(struct dk_be *be, const cJSON *info)
{
    const char *root = dk_storage_root(info);
    if (*root && !be->storage_root)
        be->storage_root = strdup(root); /* memory short: learnt next time */
    return be->storage_root ? be->storage_root : root;
}

/* Takes the API version and the engine's kind from an answer of GET
 * /version: 0, or -1 (no ApiVersion) / -2 (older than DK_API_MIN) with
 * err set. */
static int version_apply(struct dk_be *be, int status, cJSON *json, char *err, size_t errlen)
{
    struct dk_engine_api api;
    int rv = status == 200 ? dk_engine_api(json, &api) : -1;
    if (rv == -1)
        snprintf(err, errlen, "docker engine %s: GET /version answered HTTP %d", be->engine, status);
    else if (rv == -2)
        snprintf(err, errlen, "docker engine %s speaks API %s; crisp needs %s or newer", be->engine,
                 api.max, DK_API_MIN);
    if (rv < 0)
        return rv;
    be->podman = api.podman;
    if (strcmp(be->api, api.use) != 0 || !be->version) {
        snprintf(be->api, sizeof(be->api), "%s", api.use);
        log_info("docker_api", "engine=%s version=%s api=%s podman=%d", be->engine,
                 crisp_logq(dk_str(json, "Version")), be->api, be->podman);
    }
    cJSON_Delete(be->version);
    be->version = json;
    be->version_at = mono_s();
    be->version_stale = 0;
    return 0;
}

/* Every op waiting for the version goes on (or fails with why). */
static void version_wake(struct dk_be *be, int code, const char *why)
{
    struct crisp_list *it;
    while ((it = crisp_list_first(&be->ver_wait))) {
        struct op_priv *p = crisp_container_of(it, struct op_priv, ver_link);
        crisp_list_unlink(it);
        if (code == GRPC_OK || p->method->unversioned)
            run_handler(&p->op); /* Status reports the engine down itself */
        else
            dk_op_fail(&p->op, code, "%s", why);
    }
}

static void on_version(struct h1_req *r, int err, const char *errmsg, int status,
                       const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_be *be = ud;
    char why[512];
    int code = GRPC_OK;
    be->version_req = NULL;
    cJSON *json = err ? NULL : cJSON_ParseWithLength((const char *)body, len);
    int rv = err ? -1 : version_apply(be, status, json, why, sizeof(why));
    if (err) {
        snprintf(why, sizeof(why), "docker engine %s: %s", be->engine, errmsg ? errmsg : h1_strerror(err));
        code = GRPC_UNAVAILABLE;
        be->version_stale = 1;
    } else if (rv < 0) {
        cJSON_Delete(json);
        code = rv == -2 ? GRPC_FAILED_PRECONDITION : GRPC_UNAVAILABLE;
    }
    version_wake(be, code, why);
}

static const struct h1_req_cbs version_cbs = {.on_done = on_version};

/* Asks GET /version unless it is being asked (unversioned: the engine
 * answers it whatever it speaks); -1 when memory is short. */
static int version_fetch(struct dk_be *be)
{
    if (be->version_req)
        return 0;
    struct h1_req_opts o = {.method = "GET", .target = "/version", .timeout_ms = 60000};
    be->version_req = h1_request(be->pool, &o, &version_cbs, be);
    return be->version_req ? 0 : -1;
}

void dk_version_refresh(struct dk_be *be)
{
    version_fetch(be);
}

/* The op goes on once the version is known (run_handler), or fails. */
static void version_wait(struct dk_op *op)
{
    struct op_priv *p = priv(op);
    assert(!crisp_list_is_linked(&p->ver_link));
    if (version_fetch(op->be) < 0) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    crisp_list_push_back(&op->be->ver_wait, &p->ver_link);
}

/* Version's own answer: the kept one while it is fresh. */
static void engine_version_step(struct dk_op *op)
{
    dk_version_cb cb = priv(op)->version_cb;
    cb(op, op->be->version);
}

void dk_engine_version(struct dk_op *op, dk_version_cb cb)
{
    priv(op)->version_cb = cb;
    if (version_usable(op->be)) { /* past its TTL it is being asked again meanwhile */
        cb(op, op->be->version);
        return;
    }
    priv(op)->after_version = engine_version_step;
    version_wait(op);
}

void dk_version_free(struct dk_be *be)
{
    if (be->version_req)
        h1_cancel(be->version_req);
    be->version_req = NULL;
    cJSON_Delete(be->version);
    be->version = NULL;
}

/* ---- dispatch ------------------------------------------------------------ */

static void run_handler(struct dk_op *op)
{
    struct op_priv *p = priv(op);
    void (*after)(struct dk_op *) = p->after_version;
    p->after_version = NULL;
    op_hold(op);
    if (after)
        after(op);
    else
        p->method->fn(op);
    op_release(op);
}

void dk_op_start(struct dk_be *be, struct crisp_call *call, const struct dk_method *m)
{
    assert(m && m->fn && !call->be_ctx);
    char path[160];
    if (crisp_call_request_nul(call, path, sizeof(path))) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s holds a NUL byte, which the Docker backend cannot pass on whole (refused rather than cut)", path);
        crisp_call_finish(call, GRPC_INVALID_ARGUMENT, msg);
        return;
    }
    struct op_priv *p = calloc(1, sizeof(*p));
    if (!p) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    struct dk_op *op = &p->op;
    p->method = m;
    op->be = be;
    op->call = call;
    op->req = crisp_call_request(call);
    op->slow = m->slow;
    crisp_list_init(&op->subs);
    crisp_call_ref(call);
    call->be_ctx = op;
    crisp_list_push_front(&be->ops, &op->link);
    if (dk_view_changes_lists(call->method->id))
        dk_view_may_change(be);
    if (!version_fresh(be) && (be->api[0] || m->unversioned))
        version_fetch(be); /* refreshed in the background: nobody waits */
    if (be->api[0] || m->unversioned)
        run_handler(op);
    else
        version_wait(op);
}

void dk_op_cancel(struct crisp_call *call)
{
    struct dk_op *op = call->be_ctx;
    if (!op)
        return;
    assert(op->call == call);
    op->cancelled = 1;
    if (op->must_finish)
        return; /* it finishes or rolls back on its own; the answer is dropped */
    dk_op_end(op);
}

void dk_op_drained(struct crisp_call *call)
{
    struct dk_op *op = call->be_ctx;
    if (op && op->drained) {
        op_hold(op);
        op->drained(op);
        op_release(op);
    } else if (op && op->h1)
        h1_resume(op->h1);
}
