/* docker_list.c - ListPodSandbox, ListContainers and their Stream*
 * twins on Docker: from the view (view.c) when it holds a current listing
 * (after asking the engine for just its stale entries, if it has some),
 * else one GET /containers/json each (the label selector as the engine's
 * filter; a whole listing is given to the view); decoded by decode.c,
 * answered whole or in chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

/* What a listing's answer needs to know: the view's generation when it was
 * asked, and whether it is a whole listing the view may keep. */
struct list_ask {
    uint64_t gen;
    int kind; /* DK_VIEW_*, or -1: filtered by the engine, not kept */
    void (*list)(struct dk_op *op, int may_patch); /* a patch's List, run again */
};

/* GET /containers/json?all=1 with the filters' query value; frees it. */
static void list_call(struct dk_op *op, char *filters, int kind, dk_json_cb cb)
{
    struct list_ask *ask = dk_alloc(&op->mem, sizeof(*ask));
    if (!filters || !ask) {
        free(filters);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ask->gen = dk_view_gen(op->be);
    ask->kind = kind;
    dk_callx(op, "GET", NULL, cb, ask, "/containers/json?all=1&filters=%s", filters);
    free(filters);
}

/* A listing answered: 0, or -1 when the op failed. */
static int list_answered(struct dk_op *op, int status, cJSON *json, const char *what)
{
    const struct list_ask *ask = op->cur_ud;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, what);
        return -1;
    }
    if (ask && ask->kind >= 0)
        dk_view_put(op->be, ask->kind, ask->gen, json);
    return 0;
}

/* Whether the CRI labels (a map field's entries) hold every selector. */
static int labels_match(size_t n, void *labels, size_t nsel, void *sel)
{
    struct dk_map_entry **l = labels, **s = sel;
    for (size_t i = 0; i < nsel; i++) {
        size_t j = 0;
        while (j < n && (strcmp(l[j]->key, s[i]->key ? s[i]->key : "") != 0 ||
                         strcmp(l[j]->value, s[i]->value ? s[i]->value : "") != 0))
            j++;
        if (j == n)
            return 0;
    }
    return 1;
}

/* The items of a unary List made from the view with no filter: packed once,
 * kept in the view for the next such call, and sent. */
static void reply_and_keep(struct dk_op *op, int kind, ProtobufCMessage *resp)
{
    size_t len = protobuf_c_message_get_packed_size(resp);
    uint8_t *buf = op->mem.oom ? NULL : malloc(len ? len : 1);
    if (!buf) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building the list");
        return;
    }
    protobuf_c_message_pack(resp, buf);
    dk_view_keep_packed(op->be, kind, buf, len);
    dk_op_reply_msg(op, buf, len);
}

static int whole_pods(const Runtime__V1__PodSandboxFilter *f)
{
    return !f || (!(f->id && *f->id) && !f->state && !f->n_label_selector);
}

static void reply_sandboxes(struct dk_op *op, const cJSON *list, int from_view)
{
    const Runtime__V1__ListPodSandboxRequest *req = (const void *)op->req;
    const Runtime__V1__PodSandboxFilter *f = req->filter;
    Runtime__V1__PodSandbox **v;
    size_t n = dk_sandboxes_from_list(&op->mem, list, f, &v), kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!from_view || !f || labels_match(v[i]->n_labels, v[i]->labels, f->n_label_selector,
                                             f->label_selector))
            v[kept++] = v[i];
    if (from_view && whole_pods(f) && !op->call->method->server_streaming) {
        Runtime__V1__ListPodSandboxResponse r = RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT;
        r.n_items = kept;
        r.items = v;
        reply_and_keep(op, DK_VIEW_SANDBOXES, &r.base);
        return;
    }
    dk_op_reply_items(op, (void **)v, kept);
}

static void on_sandboxes(struct dk_op *op, int status, cJSON *json)
{
    if (list_answered(op, status, json, "listing pod sandboxes") == 0)
        reply_sandboxes(op, json, 0);
}

/* Answers from the view when it holds the list: the kept packed answer of
 * an unfiltered unary List (whole), else the kept listing through reply.
 * 1 when it answered. */
static int answered_from_view(struct dk_op *op, int kind, int whole,
                              void (*reply)(struct dk_op *, const cJSON *, int))
{
    size_t len;
    const uint8_t *packed = whole && !op->call->method->server_streaming
                                ? dk_view_packed(op->be, kind, &len)
                                : NULL;
    if (packed) {
        dk_op_reply_packed(op, packed, len);
        return 1;
    }
    const cJSON *view = dk_view_get(op->be, kind);
    if (view)
        reply(op, view, 1);
    return view != NULL;
}

/* When the view holds the listing of kind with a few stale entries: asks
 * the engine for just those (a listing filtered by their IDs), for cb to
 * patch the view with. 1 when asked. */
static void on_view_patch(struct dk_op *op, int status, cJSON *json);

static int patch_view(struct dk_op *op, int kind, void (*list)(struct dk_op *, int))
{
    uint64_t seq;
    char *filters = dk_view_patch_filters(op->be, kind, &seq);
    struct list_ask *ask = filters ? dk_alloc(&op->mem, sizeof(*ask)) : NULL;
    if (!ask) {
        free(filters);
        return 0; /* a whole listing then */
    }
    ask->gen = seq;
    ask->kind = kind;
    ask->list = list;
    dk_callx(op, "GET", NULL, on_view_patch, ask, "/containers/json?all=1&filters=%s", filters);
    free(filters);
    return 1;
}

/* The stale entries' answer (a failed one patches nothing: the view then
 * still has stale entries and the List asks for a whole listing). */
static void on_view_patch(struct dk_op *op, int status, cJSON *json)
{
    const struct list_ask *ask = op->cur_ud;
    if (status == 200)
        dk_view_patch(op->be, ask->kind, ask->gen, json);
    ask->list(op, 0);
}

/* ListPodSandbox and StreamPodSandboxes: the requests share their layout. */
static void list_pods(struct dk_op *op, int may_patch)
{
    const Runtime__V1__ListPodSandboxRequest *req = (const void *)op->req;
    const Runtime__V1__PodSandboxFilter *f = req->filter;
    size_t nsel = f ? f->n_label_selector : 0;
    if (answered_from_view(op, DK_VIEW_SANDBOXES, whole_pods(f), reply_sandboxes) ||
        (may_patch && patch_view(op, DK_VIEW_SANDBOXES, list_pods)))
        return;
    list_call(op, dk_label_filters(DK_TYPE_SANDBOX, NULL, nsel, f ? (void *)f->label_selector : NULL),
              nsel ? -1 : DK_VIEW_SANDBOXES, on_sandboxes);
}

static void dk_list_pods(struct dk_op *op)
{
    list_pods(op, 1);
}

static int whole_ctrs(const Runtime__V1__ContainerFilter *f)
{
    return !f || (!(f->id && *f->id) && !f->state && !(f->pod_sandbox_id && *f->pod_sandbox_id) &&
                  !f->n_label_selector);
}

static void reply_containers(struct dk_op *op, const cJSON *list, int from_view)
{
    const Runtime__V1__ListContainersRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerFilter *f = req->filter;
    const char *pod = f && f->pod_sandbox_id ? f->pod_sandbox_id : "";
    Runtime__V1__Container **v;
    size_t n = dk_containers_from_list(&op->mem, list, f, &v), kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!from_view || !f ||
            ((!*pod || strcmp(v[i]->pod_sandbox_id, pod) == 0) &&
             labels_match(v[i]->n_labels, v[i]->labels, f->n_label_selector, f->label_selector)))
            v[kept++] = v[i];
    if (from_view && whole_ctrs(f) && !op->call->method->server_streaming) {
        Runtime__V1__ListContainersResponse r = RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT;
        r.n_containers = kept;
        r.containers = v;
        reply_and_keep(op, DK_VIEW_CONTAINERS, &r.base);
        return;
    }
    dk_op_reply_items(op, (void **)v, kept);
}

static void on_containers(struct dk_op *op, int status, cJSON *json)
{
    if (list_answered(op, status, json, "listing containers") == 0)
        reply_containers(op, json, 0);
}

/* ListContainers and StreamContainers: the requests share their layout. */
static void list_ctrs(struct dk_op *op, int may_patch)
{
    const Runtime__V1__ListContainersRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerFilter *f = req->filter;
    size_t nsel = f ? f->n_label_selector : 0;
    const char *pod = f ? f->pod_sandbox_id : NULL;
    if (answered_from_view(op, DK_VIEW_CONTAINERS, whole_ctrs(f), reply_containers) ||
        (may_patch && patch_view(op, DK_VIEW_CONTAINERS, list_ctrs)))
        return;
    list_call(op, dk_label_filters(DK_TYPE_CONTAINER, pod, nsel, f ? (void *)f->label_selector : NULL),
              nsel || (pod && *pod) ? -1 : DK_VIEW_CONTAINERS, on_containers);
}

static void dk_list_ctrs(struct dk_op *op)
{
    list_ctrs(op, 1);
}

const struct dk_method dk_list_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_LIST_POD_SANDBOX] = {dk_list_pods},
    [CRISP_RPC_STREAM_POD_SANDBOXES] = {dk_list_pods},
    [CRISP_RPC_LIST_CONTAINERS] = {dk_list_ctrs},
    [CRISP_RPC_STREAM_CONTAINERS] = {dk_list_ctrs},
};
