/* mux.c - the RuntimeClass router (see mux.h).
 *
 * One op per call (struct mux_op) follows the call's plan:
 *   handler   RunPodSandbox: the handler's backend; the answer is relayed
 *             through a subcall so the new sandbox's ID is learnt;
 *   id        a call naming a sandbox or a container: the backend that owns
 *             it (routes.c; on a miss every backend is asked, concurrently,
 *             with a status call); the call itself is handed over whole
 *             (crisp_call_start_on: its bytes go straight through);
 *   create    CreateContainer: its sandbox's backend, relayed to learn the
 *             container's ID;
 *   list      every backend, answers concatenated (a filter on an ID: the
 *             owner only); stream: every backend's messages as they come;
 *   status    every backend's Status merged (merge.c); version: crisp's own;
 *   images    ImageSpec.runtime_handler's backend, or (images "pull":
 *             "all") every backend, or the default one.
 * A backend down makes the calls routed to it fail UNAVAILABLE naming it;
 * a list or stream that needs it fails too (never a partial list: the
 * kubelet would take the missing pods for dead). An ID that no backend
 * knows while one of them is down is UNAVAILABLE, never NOT_FOUND. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/list.h"
#include "crisp/log.h"
#include "crisp/subcall.h"
#include "crisp/version.h"
#include "mux.h"
#include "runtime_v1.pb-c.h"

#define MUX_MAX 16 /* backends one router serves */

enum plan {
    P_NONE = 0, P_VERSION, P_DEFAULT, P_HANDLER, P_ID, P_CREATE, P_LIST, P_STREAM, P_ALL,
    P_STATUS, P_IMAGES, P_FSINFO,
};

/* What each method is routed by: a field path naming a sandbox or a
 * container ID (a container's wins when both are set), or an ImageSpec. */
struct rule {
    enum plan plan;
    const char *sandbox, *container, *image;
};

#define SB(f) .sandbox = f
#define CT(f) .container = f
static const struct rule rules[CRISP_RPC_COUNT] = {
    [CRISP_RPC_VERSION] = {P_VERSION},
    [CRISP_RPC_RUN_POD_SANDBOX] = {P_HANDLER},
    [CRISP_RPC_STOP_POD_SANDBOX] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_REMOVE_POD_SANDBOX] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_POD_SANDBOX_STATUS] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_LIST_POD_SANDBOX] = {P_LIST, SB("filter.id")},
    [CRISP_RPC_STREAM_POD_SANDBOXES] = {P_STREAM, SB("filter.id")},
    [CRISP_RPC_CREATE_CONTAINER] = {P_CREATE, SB("pod_sandbox_id")},
    [CRISP_RPC_START_CONTAINER] = {P_ID, CT("container_id")},
    [CRISP_RPC_STOP_CONTAINER] = {P_ID, CT("container_id")},
    [CRISP_RPC_REMOVE_CONTAINER] = {P_ID, CT("container_id")},
    [CRISP_RPC_LIST_CONTAINERS] = {P_LIST, SB("filter.pod_sandbox_id"), CT("filter.id")},
    [CRISP_RPC_STREAM_CONTAINERS] = {P_STREAM, SB("filter.pod_sandbox_id"), CT("filter.id")},
    [CRISP_RPC_CONTAINER_STATUS] = {P_ID, CT("container_id")},
    [CRISP_RPC_UPDATE_CONTAINER_RESOURCES] = {P_ID, CT("container_id")},
    [CRISP_RPC_REOPEN_CONTAINER_LOG] = {P_ID, CT("container_id")},
    [CRISP_RPC_EXEC_SYNC] = {P_ID, CT("container_id")},
    [CRISP_RPC_EXEC] = {P_ID, CT("container_id")},
    [CRISP_RPC_ATTACH] = {P_ID, CT("container_id")},
    [CRISP_RPC_PORT_FORWARD] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_CONTAINER_STATS] = {P_ID, CT("container_id")},
    [CRISP_RPC_LIST_CONTAINER_STATS] = {P_LIST, SB("filter.pod_sandbox_id"), CT("filter.id")},
    [CRISP_RPC_STREAM_CONTAINER_STATS] = {P_STREAM, SB("filter.pod_sandbox_id"), CT("filter.id")},
    [CRISP_RPC_POD_SANDBOX_STATS] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_LIST_POD_SANDBOX_STATS] = {P_LIST, SB("filter.id")},
    [CRISP_RPC_STREAM_POD_SANDBOX_STATS] = {P_STREAM, SB("filter.id")},
    [CRISP_RPC_UPDATE_RUNTIME_CONFIG] = {P_ALL},
    [CRISP_RPC_STATUS] = {P_STATUS},
    [CRISP_RPC_CHECKPOINT_CONTAINER] = {P_ID, CT("container_id")},
    [CRISP_RPC_GET_CONTAINER_EVENTS] = {P_STREAM},
    [CRISP_RPC_LIST_METRIC_DESCRIPTORS] = {P_LIST},
    [CRISP_RPC_LIST_POD_SANDBOX_METRICS] = {P_LIST},
    [CRISP_RPC_STREAM_POD_SANDBOX_METRICS] = {P_STREAM},
    [CRISP_RPC_RUNTIME_CONFIG] = {P_DEFAULT},
    [CRISP_RPC_UPDATE_POD_SANDBOX_RESOURCES] = {P_ID, SB("pod_sandbox_id")},
    [CRISP_RPC_LIST_IMAGES] = {P_IMAGES, .image = "filter.image"},
    [CRISP_RPC_STREAM_IMAGES] = {P_IMAGES, .image = "filter.image"},
    [CRISP_RPC_IMAGE_STATUS] = {P_IMAGES, .image = "image"},
    [CRISP_RPC_PULL_IMAGE] = {P_IMAGES, .image = "image"},
    [CRISP_RPC_REMOVE_IMAGE] = {P_IMAGES, .image = "image"},
    [CRISP_RPC_IMAGE_FS_INFO] = {P_FSINFO},
};

struct mux_child {
    char *name;
    struct crisp_backend *be;
    /* the handler names it must not see: runtime names to put back */
    const char **from, **to;
    size_t nmap;
};

struct mux_handler {
    char *name;
    size_t child;
    char *runtime;
    int rewrite; /* the child's kind does not map handlers: crisp does */
};

struct mux_be {
    struct crisp_backend base;
    struct event_base *evb;
    struct mux_child child[MUX_MAX];
    size_t n;
    struct mux_handler *handlers;
    size_t nh;
    size_t def;
    int pull_all;
    struct crisp_list ops;
};

/* How the answers of a fan-out become the client's. */
enum combine { C_CONCAT, C_NONE, C_STATUS, C_IMAGES, C_PULL, C_REMOVE, C_IMAGE_STATUS };

struct mux_op {
    struct crisp_list link;
    struct mux_be *mux;
    struct crisp_call *call;
    const struct rule *rule;
    const char *id;          /* the ID routed by (the request's) */
    int id_is_sandbox;
    enum combine combine;
    struct crisp_subcall *subs[MUX_MAX];
    size_t pending;
    int codes[MUX_MAX];
    char *errs[MUX_MAX];
    uint8_t *msgs[MUX_MAX];
    size_t lens[MUX_MAX];
    size_t owner;            /* a probe's answer: the child, or n */
    size_t forwarded_to;     /* a relayed call's child */
};

static void op_end(struct mux_op *op);

/* ---- the request's fields ---------------------------------------------------- */

/* The message a path ("filter.id" stops at filter) leads to, and its last
 * field's descriptor. */
static const ProtobufCMessage *walk(const ProtobufCMessage *m, const char *path,
                                    const ProtobufCFieldDescriptor **fd)
{
    char part[64];
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (!m || n >= sizeof(part))
            return NULL;
        memcpy(part, path, n);
        part[n] = 0;
        *fd = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, part);
        if (!*fd)
            return NULL;
        if (!dot)
            return m;
        m = *(const ProtobufCMessage *const *)((const char *)m + (*fd)->offset);
        path = dot + 1;
    }
}

static const char *field_str(const ProtobufCMessage *m, const char *path)
{
    const ProtobufCFieldDescriptor *fd;
    m = path ? walk(m, path, &fd) : NULL;
    if (!m || fd->type != PROTOBUF_C_TYPE_STRING)
        return NULL;
    const char *s = *(const char *const *)((const char *)m + fd->offset);
    return s && *s ? s : NULL;
}

static const Runtime__V1__ImageSpec *field_image(const ProtobufCMessage *m, const char *path)
{
    const ProtobufCFieldDescriptor *fd;
    m = path ? walk(m, path, &fd) : NULL;
    if (!m || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    return *(const Runtime__V1__ImageSpec *const *)((const char *)m + fd->offset);
}

/* ---- answering --------------------------------------------------------------- */

static void op_fail(struct mux_op *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void op_fail(struct mux_op *op, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct crisp_call *call = op->call;
    crisp_call_ref(call);
    op_end(op);
    crisp_call_finish(call, code, msg);
    crisp_call_unref(call);
}

/* Answers with one message (taken) and OK. */
static void op_reply(struct mux_op *op, uint8_t *msg, size_t len)
{
    struct crisp_call *call = op->call;
    if (!msg) {
        op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory merging the backends' answers");
        return;
    }
    crisp_call_ref(call);
    op_end(op);
    if (crisp_call_send_msg(call, msg, len) == 0)
        crisp_call_finish(call, GRPC_OK, NULL);
    crisp_call_unref(call);
}

static void op_done_ok(struct mux_op *op)
{
    struct crisp_call *call = op->call;
    crisp_call_ref(call);
    op_end(op);
    crisp_call_finish(call, GRPC_OK, NULL);
    crisp_call_unref(call);
}

/* Hands the call over to a child: its bytes go straight through. */
static void op_delegate(struct mux_op *op, size_t child)
{
    struct crisp_call *call = op->call;
    struct crisp_backend *be = op->mux->child[child].be;
    crisp_call_ref(call);
    op_end(op);
    crisp_call_start_on(call, be);
    crisp_call_unref(call);
}

static const char *child_name(const struct mux_op *op, size_t i)
{
    return op->mux->child[i].name;
}

/* ---- subcalls ---------------------------------------------------------------- */

static int start_sub(struct mux_op *op, size_t child, enum crisp_rpc method, const uint8_t *req,
                     size_t len, const struct crisp_subcall_cbs *cbs)
{
    struct crisp_subcall *sc = crisp_subcall_new(op->mux->evb, op->call, method, req, len, cbs, op);
    if (!sc)
        return -1;
    sc->index = child;
    op->subs[child] = sc;
    op->pending++;
    crisp_subcall_start(sc, op->mux->child[child].be);
    return 0;
}

/* Records a finished subcall's outcome; returns whether all are in. */
static int sub_done(struct crisp_subcall *sc)
{
    struct mux_op *op = sc->ud;
    size_t i = sc->index;
    op->subs[i] = NULL;
    op->codes[i] = sc->call->code;
    if (sc->call->message)
        op->errs[i] = strdup(sc->call->message);
    op->msgs[i] = crisp_call_take_msg(sc->call, &op->lens[i]);
    assert(op->pending > 0);
    return --op->pending == 0;
}

/* The first child that failed, preferring one that is down; n: none.
 * not_found: whether a NOT_FOUND counts as a failure. */
static size_t first_failure_of(const struct mux_op *op, int not_found)
{
    size_t first = op->mux->n;
    for (size_t i = 0; i < op->mux->n; i++) {
        if (op->codes[i] == GRPC_OK || (!not_found && op->codes[i] == GRPC_NOT_FOUND))
            continue;
        if (op->codes[i] == GRPC_UNAVAILABLE)
            return i;
        if (first == op->mux->n)
            first = i;
    }
    return first;
}

static size_t first_failure(const struct mux_op *op)
{
    return first_failure_of(op, 1);
}

static void fail_from(struct mux_op *op, size_t i)
{
    op_fail(op, op->codes[i], "backend %s: %s", child_name(op, i),
            op->errs[i] ? op->errs[i] : grpc_code_to_str(op->codes[i]));
}

/* ---- id: probe, then hand over ---------------------------------------------------- */

static void route_found(struct mux_op *op, size_t child);

/* Cancels the subcalls still running. */
static void cancel_subs(struct mux_op *op)
{
    for (size_t i = 0; i < op->mux->n; i++) {
        if (op->subs[i])
            crisp_subcall_cancel(op->subs[i]);
        op->subs[i] = NULL;
    }
    op->pending = 0;
}

static void on_probe_done(struct crisp_subcall *sc)
{
    struct mux_op *op = sc->ud;
    if (sc->call->code == GRPC_OK) {
        /* the owner: the others are not waited for (a slow or hung engine
         * must not hold up the calls of the engine that has the ID) */
        op->owner = sc->index;
        sub_done(sc);
        cancel_subs(op);
        mux_route_put(op->id, op->mux->child[op->owner].be);
        route_found(op, op->owner);
        return;
    }
    if (!sub_done(sc))
        return;
    /* NOT_FOUND only when every backend said so: any other failure (down,
     * an engine error) leaves the owner unknown */
    size_t bad = first_failure_of(op, 0);
    if (bad < op->mux->n) {
        op_fail(op, GRPC_UNAVAILABLE, "%s %s is on no backend that answered; backend %s: %s",
                op->id_is_sandbox ? "sandbox" : "container", op->id, child_name(op, bad),
                op->errs[bad] ? op->errs[bad] : grpc_code_to_str(op->codes[bad]));
        return;
    }
    route_found(op, op->mux->n); /* no backend knows it */
}

static const struct crisp_subcall_cbs probe_cbs = {.on_done = on_probe_done};

/* Asks every backend whether the ID is theirs (a status call each). */
static void probe(struct mux_op *op)
{
    Runtime__V1__PodSandboxStatusRequest sreq = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusRequest creq = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    const ProtobufCMessage *m = op->id_is_sandbox ? &sreq.base : &creq.base;
    sreq.pod_sandbox_id = creq.container_id = (char *)op->id;
    uint8_t buf[512];
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len > sizeof(buf)) {
        op_fail(op, GRPC_INVALID_ARGUMENT, "ID of %zu bytes: too long", strlen(op->id));
        return;
    }
    protobuf_c_message_pack(m, buf);
    op->owner = op->mux->n;
    enum crisp_rpc method = op->id_is_sandbox ? CRISP_RPC_POD_SANDBOX_STATUS : CRISP_RPC_CONTAINER_STATUS;
    op->pending = 1; /* held while starting: a subcall cannot end in here */
    for (size_t i = 0; i < op->mux->n; i++) {
        if (start_sub(op, i, method, buf, len, &probe_cbs) < 0) {
            op->codes[i] = GRPC_RESOURCE_EXHAUSTED;
            op->errs[i] = strdup("out of memory");
        }
    }
    op->pending--;
}

static void forward(struct mux_op *op, size_t child, const uint8_t *req, size_t len);

/* The ID's owner is known (child), or no backend has it (child == n). */
static void route_found(struct mux_op *op, size_t child)
{
    enum crisp_rpc m = op->call->method->id;
    int none = child == op->mux->n;
    for (size_t i = 0; i < op->mux->n; i++) {
        free(op->errs[i]);
        free(op->msgs[i]);
        op->errs[i] = NULL;
        op->msgs[i] = NULL;
    }
    if (none && (op->rule->plan == P_LIST || op->rule->plan == P_STREAM)) {
        op_reply(op, calloc(1, 1), 0); /* a filter on an unknown ID: an empty list */
        return;
    }
    if (none)
        child = op->mux->def; /* its engine answers NOT_FOUND in its own words */
    if (m == CRISP_RPC_REMOVE_POD_SANDBOX || m == CRISP_RPC_REMOVE_CONTAINER)
        mux_route_del(op->id);
    if (op->rule->plan == P_CREATE ||
        (op->mux->child[child].nmap &&
         (m == CRISP_RPC_POD_SANDBOX_STATUS || m == CRISP_RPC_LIST_POD_SANDBOX)))
        forward(op, child, op->call->req, op->call->req_len);
    else
        op_delegate(op, child);
}

static void route_by_id(struct mux_op *op)
{
    struct crisp_backend *be = mux_route_get(op->id);
    for (size_t i = 0; be && i < op->mux->n; i++) {
        if (op->mux->child[i].be == be) {
            route_found(op, i);
            return;
        }
    }
    probe(op);
}

/* ---- relayed through a subcall (to read the answer) -------------------------------- */

static void copy_md(struct crisp_md *dst, const struct crisp_md *src)
{
    for (size_t i = 0; i < src->n; i++)
        crisp_md_add(dst, src->v[i].name, src->v[i].namelen, src->v[i].value, src->v[i].valuelen);
}

/* What the client must see of the answer: the IDs it creates are learnt,
 * the engine's runtime names become the handler names again. */
static uint8_t *adapt_answer(struct mux_op *op, uint8_t *msg, size_t *len)
{
    struct mux_child *c = &op->mux->child[op->forwarded_to];
    enum crisp_rpc m = op->call->method->id;
    if (m == CRISP_RPC_RUN_POD_SANDBOX || m == CRISP_RPC_CREATE_CONTAINER) {
        ProtobufCMessage *r = protobuf_c_message_unpack(op->call->method->resp, NULL, *len, msg);
        const char *id = r ? field_str(r, m == CRISP_RPC_RUN_POD_SANDBOX ? "pod_sandbox_id"
                                                                          : "container_id")
                           : NULL;
        if (id)
            mux_route_put(id, c->be);
        if (r)
            protobuf_c_message_free_unpacked(r, NULL);
    } else if (c->nmap) {
        size_t n;
        uint8_t *out = mux_unmap_handlers(msg, *len, m == CRISP_RPC_LIST_POD_SANDBOX, c->from,
                                          c->to, c->nmap, &n);
        if (out) {
            free(msg);
            msg = out;
            *len = n;
        }
    }
    return msg;
}

static void on_forward_done(struct crisp_subcall *sc)
{
    struct mux_op *op = sc->ud;
    struct crisp_call *call = op->call, *sub = sc->call;
    op->subs[sc->index] = NULL;
    crisp_call_ref(call);
    copy_md(&call->resp_md, &sub->resp_md);
    copy_md(&call->trailer_md, &sub->trailer_md);
    size_t len;
    uint8_t *msg;
    int ok = 1;
    while (ok && (msg = crisp_call_take_msg(sub, &len)))
        ok = crisp_call_send_msg(call, adapt_answer(op, msg, &len), len) == 0;
    int code = sub->code;
    char *text = sub->message ? strdup(sub->message) : NULL;
    op->pending = 0;
    op_end(op);
    crisp_call_finish(call, code, text);
    free(text);
    crisp_call_unref(call);
}

static const struct crisp_subcall_cbs forward_cbs = {.on_done = on_forward_done};

static void forward(struct mux_op *op, size_t child, const uint8_t *req, size_t len)
{
    op->forwarded_to = child;
    if (start_sub(op, child, op->call->method->id, req, len, &forward_cbs) < 0)
        op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory routing the call");
}

/* ---- handler ------------------------------------------------------------------- */

static const struct mux_handler *handler_named(const struct mux_be *mux, const char *name)
{
    for (size_t i = 0; i < mux->nh; i++)
        if (strcmp(mux->handlers[i].name, name ? name : "") == 0)
            return &mux->handlers[i];
    return NULL;
}

static void fail_unknown_handler(struct mux_op *op, const char *name)
{
    char known[512] = "";
    for (size_t i = 0; i < op->mux->nh; i++)
        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s\"%s\"",
                 i ? ", " : "", op->mux->handlers[i].name);
    op_fail(op, GRPC_INVALID_ARGUMENT,
            "RuntimeClass handler \"%s\" is not configured in crisp (known: %s)", name, known);
}

static void route_handler(struct mux_op *op)
{
    const Runtime__V1__RunPodSandboxRequest *r = (const void *)op->call->req_msg;
    const struct mux_handler *h = handler_named(op->mux, r->runtime_handler);
    if (!h) {
        fail_unknown_handler(op, r->runtime_handler);
        return;
    }
    if (!h->rewrite) {
        forward(op, h->child, op->call->req, op->call->req_len);
        return;
    }
    size_t len;
    uint8_t *req = mux_set_handler(op->call->req, op->call->req_len, h->runtime, &len);
    if (!req) {
        op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory routing the call");
        return;
    }
    forward(op, h->child, req, len);
    free(req);
}

/* ---- fan-out ------------------------------------------------------------------- */

static void combine_answers(struct mux_op *op);

static void on_fanout_done(struct crisp_subcall *sc)
{
    if (sub_done(sc))
        combine_answers(sc->ud);
}

static const struct crisp_subcall_cbs fanout_cbs = {.on_done = on_fanout_done};

static void fan_out(struct mux_op *op, enum combine how)
{
    op->combine = how;
    op->pending = 1;
    for (size_t i = 0; i < op->mux->n; i++) {
        if (start_sub(op, i, op->call->method->id, op->call->req, op->call->req_len,
                      &fanout_cbs) < 0) {
            op->codes[i] = GRPC_RESOURCE_EXHAUSTED;
            op->errs[i] = strdup("out of memory");
        }
    }
    if (--op->pending == 0)
        combine_answers(op);
}

static size_t parts_of(struct mux_op *op, struct mux_part *parts)
{
    for (size_t i = 0; i < op->mux->n; i++) {
        parts[i].backend = op->mux->child[i].name;
        parts[i].msg = op->msgs[i] ? op->msgs[i] : (const uint8_t *)"";
        parts[i].len = op->msgs[i] ? op->lens[i] : 0;
        parts[i].err = op->codes[i] == GRPC_OK ? NULL
                       : op->errs[i] ? op->errs[i] : grpc_code_to_str(op->codes[i]);
        if (op->msgs[i] && op->mux->child[i].nmap &&
            op->call->method->id == CRISP_RPC_LIST_POD_SANDBOX) {
            size_t n;
            uint8_t *out = mux_unmap_handlers(op->msgs[i], op->lens[i], 1,
                                              op->mux->child[i].from, op->mux->child[i].to,
                                              op->mux->child[i].nmap, &n);
            if (out) {
                free(op->msgs[i]);
                op->msgs[i] = out;
                op->lens[i] = n;
                parts[i].msg = out;
                parts[i].len = n;
            }
        }
    }
    return op->mux->n;
}

/* Each configured handler, with the name its backend knows it by (a kind
 * that maps handlers itself reports crisp's names). */
static void status_handlers(const struct mux_be *mux, struct mux_handler_view *v, size_t nv)
{
    for (size_t i = 0; i < mux->nh && i < nv; i++) {
        const struct mux_handler *h = &mux->handlers[i];
        int own_names = mux->child[h->child].be->ops->handler_option != NULL;
        v[i] = (struct mux_handler_view){h->name, own_names ? h->name : h->runtime, h->child};
    }
}

/* Image calls over every backend: pulled and removed everywhere; present
 * only where every backend has it. */
static void combine_images(struct mux_op *op)
{
    size_t def = op->mux->def, n = op->mux->n;
    if (op->combine == C_REMOVE) {
        size_t notfound = 0;
        for (size_t i = 0; i < n; i++)
            notfound += op->codes[i] == GRPC_NOT_FOUND;
        /* a failure other than NOT_FOUND is the answer; NOT_FOUND only when
         * no backend had the image */
        size_t bad = first_failure_of(op, notfound == n);
        if (bad < n) {
            fail_from(op, bad);
            return;
        }
        op_reply(op, calloc(1, 1), 0);
        return;
    }
    size_t bad = first_failure(op);
    if (bad < n) {
        fail_from(op, bad);
        return;
    }
    if (op->combine == C_IMAGE_STATUS)
        for (size_t i = 0; i < n; i++)
            if (mux_image_present(op->msgs[i] ? op->msgs[i] : (const uint8_t *)"", op->lens[i]) != 1) {
                op_reply(op, calloc(1, 1), 0); /* not in every store: the kubelet pulls */
                return;
            }
    uint8_t *msg = op->msgs[def];
    op->msgs[def] = NULL;
    op_reply(op, msg ? msg : calloc(1, 1), msg ? op->lens[def] : 0);
}

static void combine_answers(struct mux_op *op)
{
    struct mux_part parts[MUX_MAX];
    size_t n = op->mux->n, len = 0;
    uint8_t *out = NULL;
    if (op->combine >= C_PULL) {
        combine_images(op);
        return;
    }
    size_t bad = first_failure(op);
    if (bad < n && op->combine != C_STATUS) {
        fail_from(op, bad);
        return;
    }
    parts_of(op, parts);
    if (op->combine == C_STATUS) {
        struct mux_handler_view v[64];
        size_t nh = op->mux->nh < 64 ? op->mux->nh : 64;
        status_handlers(op->mux, v, 64);
        out = mux_merge_status(parts, n, v, nh, &len);
    } else if (op->combine == C_IMAGES) {
        out = mux_merge_images(parts, n, &len);
    } else if (op->combine == C_CONCAT) {
        out = mux_concat(parts, n, &len);
    } else {
        out = calloc(1, 1);
    }
    op_reply(op, out, len);
}

/* ---- streams ----------------------------------------------------------------- */

static int on_stream_msg(struct crisp_subcall *sc, uint8_t *msg, size_t len)
{
    struct mux_op *op = sc->ud;
    if (crisp_call_send_msg(op->call, msg, len) < 0)
        return -1;
    return crisp_call_out_full(op->call) ? -1 : 0;
}

static void on_stream_done(struct crisp_subcall *sc)
{
    struct mux_op *op = sc->ud;
    int failed = sc->call->code != GRPC_OK;
    size_t i = sc->index;
    if (sub_done(sc) || failed) {
        if (failed)
            fail_from(op, i); /* the others are cancelled with the op */
        else
            op_done_ok(op);
    }
}

static const struct crisp_subcall_cbs stream_cbs = {.on_msg = on_stream_msg,
                                                    .on_done = on_stream_done};

static void stream_all(struct mux_op *op)
{
    op->pending = 1;
    for (size_t i = 0; i < op->mux->n; i++) {
        if (start_sub(op, i, op->call->method->id, op->call->req, op->call->req_len,
                      &stream_cbs) < 0) {
            op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory merging the streams");
            return;
        }
    }
    if (--op->pending == 0)
        op_done_ok(op);
}

/* ---- plans ------------------------------------------------------------------- */

static void answer_version(struct mux_op *op)
{
    Runtime__V1__VersionResponse r = RUNTIME__V1__VERSION_RESPONSE__INIT;
    r.version = "0.1.0";
    r.runtime_name = "crisp";
    r.runtime_version = CRISP_VERSION;
    r.runtime_api_version = "v1";
    size_t len = runtime__v1__version_response__get_packed_size(&r);
    uint8_t *msg = malloc(len ? len : 1);
    if (msg)
        runtime__v1__version_response__pack(&r, msg);
    op_reply(op, msg, len);
}

static void route_images(struct mux_op *op)
{
    const Runtime__V1__ImageSpec *spec = field_image(op->call->req_msg, op->rule->image);
    enum crisp_rpc m = op->call->method->id;
    if (spec && spec->runtime_handler && *spec->runtime_handler) {
        const struct mux_handler *h = handler_named(op->mux, spec->runtime_handler);
        if (h)
            op_delegate(op, h->child);
        else
            fail_unknown_handler(op, spec->runtime_handler);
    } else if (!op->mux->pull_all) {
        op_delegate(op, op->mux->def);
    } else if (m == CRISP_RPC_STREAM_IMAGES) {
        stream_all(op);
    } else {
        fan_out(op, m == CRISP_RPC_PULL_IMAGE     ? C_PULL
                    : m == CRISP_RPC_REMOVE_IMAGE ? C_REMOVE
                    : m == CRISP_RPC_IMAGE_STATUS ? C_IMAGE_STATUS
                                                  : C_IMAGES);
    }
}

/* A call on a list or stream, or one naming an ID: by the ID if it has one. */
static int take_id(struct mux_op *op)
{
    const char *ct = field_str(op->call->req_msg, op->rule->container);
    const char *sb = ct ? NULL : field_str(op->call->req_msg, op->rule->sandbox);
    op->id = ct ? ct : sb;
    op->id_is_sandbox = sb != NULL;
    return op->id != NULL;
}

static void run_plan(struct mux_op *op)
{
    switch (op->rule->plan) {
    case P_VERSION:
        answer_version(op);
        return;
    case P_DEFAULT:
        op_delegate(op, op->mux->def);
        return;
    case P_HANDLER:
        route_handler(op);
        return;
    case P_ID:
    case P_CREATE:
        if (take_id(op))
            route_by_id(op);
        else
            op_fail(op, GRPC_INVALID_ARGUMENT, "%s needs a %s ID", op->call->method->name,
                    op->rule->container ? "container" : "sandbox");
        return;
    case P_LIST:
    case P_STREAM:
        if (take_id(op))
            route_by_id(op);
        else if (op->rule->plan == P_LIST)
            fan_out(op, C_CONCAT);
        else
            stream_all(op);
        return;
    case P_ALL:
        fan_out(op, C_NONE);
        return;
    case P_STATUS:
        fan_out(op, C_STATUS);
        return;
    case P_FSINFO:
        fan_out(op, C_CONCAT);
        return;
    case P_IMAGES:
        route_images(op);
        return;
    case P_NONE:
        break;
    }
    op_fail(op, GRPC_UNIMPLEMENTED, "%s is not routed by crisp", op->call->method->name);
}

/* ---- ops --------------------------------------------------------------------- */

static void op_end(struct mux_op *op)
{
    for (size_t i = 0; i < op->mux->n; i++) {
        if (op->subs[i])
            crisp_subcall_cancel(op->subs[i]);
        free(op->errs[i]);
        free(op->msgs[i]);
    }
    crisp_list_unlink(&op->link);
    if (op->call->be_ctx == op)
        op->call->be_ctx = NULL;
    crisp_call_unref(op->call);
    free(op);
}

static void mux_start(struct crisp_backend *base, struct crisp_call *call)
{
    struct mux_be *mux = (struct mux_be *)base;
    struct mux_op *op = calloc(1, sizeof(*op));
    if (!op) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory routing the call");
        return;
    }
    op->mux = mux;
    op->call = call;
    op->rule = &rules[call->method->id];
    op->owner = op->forwarded_to = mux->n;
    crisp_call_ref(call);
    call->be_ctx = op;
    crisp_list_push_back(&mux->ops, &op->link);
    run_plan(op);
}

static void mux_cancel(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    struct mux_op *op = call->be_ctx;
    if (op)
        op_end(op);
}

/* The client read: the streams paused on its full queue go on. */
static void mux_drained(struct crisp_backend *base, struct crisp_call *call)
{
    struct mux_op *op = call->be_ctx;
    for (size_t i = 0; op && i < ((struct mux_be *)base)->n; i++)
        if (op->subs[i] && op->subs[i]->paused)
            crisp_subcall_resume(op->subs[i]);
}

static void mux_free(struct mux_be *mux)
{
    for (size_t i = 0; i < mux->n; i++) {
        free(mux->child[i].name);
        free(mux->child[i].from);
        free(mux->child[i].to);
    }
    for (size_t i = 0; i < mux->nh; i++) {
        free(mux->handlers[i].name);
        free(mux->handlers[i].runtime);
    }
    free(mux->handlers);
    free(mux->base.name);
    free(mux);
}

static void mux_destroy(struct crisp_backend *base)
{
    struct mux_be *mux = (struct mux_be *)base;
    while (!crisp_list_empty(&mux->ops))
        op_fail(crisp_container_of(mux->ops.next, struct mux_op, link), GRPC_UNAVAILABLE,
                "crisp is shutting down");
    mux_free(mux);
}

static const struct crisp_backend_ops mux_ops = {
    .kind = "mux",
    .start = mux_start,
    .cancel = mux_cancel,
    .drained = mux_drained,
    .destroy = mux_destroy,
};

/* ---- creation ---------------------------------------------------------------- */

/* The runtime names a child's answers carry where crisp rewrote handlers. */
static int child_maps(struct mux_be *mux, size_t c)
{
    struct mux_child *ch = &mux->child[c];
    ch->from = calloc(mux->nh ? mux->nh : 1, sizeof(char *));
    ch->to = calloc(mux->nh ? mux->nh : 1, sizeof(char *));
    if (!ch->from || !ch->to)
        return -1;
    for (size_t i = 0; i < mux->nh; i++) {
        const struct mux_handler *h = &mux->handlers[i];
        if (h->child == c && h->rewrite && strcmp(h->name, h->runtime) != 0) {
            ch->from[ch->nmap] = h->runtime;
            ch->to[ch->nmap++] = h->name;
        }
    }
    return 0;
}

static int copy_handlers(struct mux_be *mux, const struct crisp_config *cfg,
                         struct crisp_backend *const *children)
{
    mux->handlers = calloc(cfg->nhandlers ? cfg->nhandlers : 1, sizeof(*mux->handlers));
    if (!mux->handlers)
        return -1;
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        const struct crisp_config_handler *h = &cfg->handlers[i];
        struct mux_handler *m = &mux->handlers[mux->nh++];
        m->name = strdup(h->name);
        m->runtime = strdup(h->runtime);
        m->child = h->backend;
        m->rewrite = !children[h->backend]->ops->handler_option &&
                     strcmp(h->name, h->runtime) != 0;
        if (!m->name || !m->runtime)
            return -1;
    }
    return 0;
}

struct crisp_backend *crisp_mux_new(struct event_base *base, const struct crisp_config *cfg,
                                    struct crisp_backend *const *children, char *err,
                                    size_t errlen)
{
    if (cfg->nbackends > MUX_MAX) {
        snprintf(err, errlen, "%s: at most %d backends", cfg->path, MUX_MAX);
        return NULL;
    }
    struct mux_be *mux = calloc(1, sizeof(*mux));
    if (!mux)
        goto oom;
    mux->base.ops = &mux_ops;
    mux->evb = base;
    mux->def = cfg->default_backend;
    mux->pull_all = cfg->pull_all;
    crisp_list_init(&mux->ops);
    size_t nl = strlen(cfg->path) + 8;
    if (!(mux->base.name = malloc(nl)))
        goto oom;
    snprintf(mux->base.name, nl, "config:%s", cfg->path);
    for (size_t i = 0; i < cfg->nbackends; i++) {
        mux->child[i].be = children[i];
        if (!(mux->child[i].name = strdup(cfg->backends[i].name)))
            goto oom;
        mux->n++;
    }
    if (copy_handlers(mux, cfg, children) < 0)
        goto oom;
    for (size_t i = 0; i < mux->n; i++)
        if (child_maps(mux, i) < 0)
            goto oom;
    return &mux->base;
oom:
    if (mux)
        mux_free(mux);
    snprintf(err, errlen, "out of memory");
    return NULL;
}
