/* docker_stats.c - ContainerStats, PodSandboxStats and their List* and
 * Stream* kinds on Docker.
 *
 * Stats come from the containers' cgroups on this node (docker_cgroup.c;
 * the PID from an inspect), or from the engine's one-shot stats calls when
 * the cgroups are not readable here; the writable layer from the size=1
 * list or inspect; decode_stats.c makes the CRI's messages of them (with a
 * cache of the previous CPU samples for usage_nano_cores). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

static struct dk_cpu_cache cpu_cache;

/* ---- the stats op: list, then one stats request per running container ------------- */

enum stats_kind {
    ST_CONTAINER,      /* ContainerStats */
    ST_CONTAINER_LIST, /* ListContainerStats / StreamContainerStats */
    ST_POD,            /* PodSandboxStats */
    ST_POD_LIST,       /* ListPodSandboxStats / StreamPodSandboxStats */
};

struct stats_state {
    enum stats_kind kind;
    cJSON *sbs;   /* sandboxes (list answer), pod kinds */
    cJSON *ctrs;  /* containers (list answer, or one inspect answer) */
    struct dk_stats_item *items;
    size_t n;
    const char *want_sb;  /* ST_POD: the sandbox's ID; ST_POD_LIST: an ID prefix (the request's) */
    const char *want_ctr; /* ST_CONTAINER_LIST: an ID prefix (the request's) */
    const Runtime__V1__PodSandboxStatsFilter *pod_filter;
    size_t nsel;          /* ST_CONTAINER_LIST: the label selector, matched exactly */
    void *sel;
};

static void stats_state_free(void *p)
{
    struct stats_state *st = p;
    for (size_t i = 0; i < st->n; i++)
        cJSON_Delete(st->items[i].stats);
    free(st->items);
    cJSON_Delete(st->sbs);
    cJSON_Delete(st->ctrs);
    free(st);
}

static void stats_build(struct dk_op *op);
static void stats_build_with(struct dk_op *op, const char *fs_root);

static void on_one_stats(struct dk_op *op, int status, cJSON *json)
{
    struct dk_stats_item *it = op->cur_ud;
    /* A container that stopped meanwhile has no stats: listed without them. */
    if (status == 200 && json)
        it->stats = cJSON_Duplicate(json, 1);
    if (op->pending == 0)
        stats_build(op);
}

/* The engine's stats API: the fallback when the cgroups are not readable
 * from here. */
static void fetch_from_api(struct dk_op *op, struct dk_stats_item *it)
{
    dk_callx(op, "GET", NULL, on_one_stats, it, "/containers/%s/stats?stream=false&one-shot=true",
             dk_str(it->entry, "Id"));
}

static int sample_cgroups(struct dk_stats_item *it, const cJSON *inspect)
{
    int pid = (int)dk_int(dk_obj(inspect, "State"), "Pid");
    it->stats = dk_cgroup_stats(pid, it->sandbox);
    return it->stats ? 0 : -1;
}

static void on_item_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct dk_stats_item *it = op->cur_ud;
    if (status != 200 || sample_cgroups(it, json) < 0)
        fetch_from_api(op, it);
    if (op->pending == 0)
        stats_build(op);
}

static void stats_fetch(struct dk_op *op)
{
    struct stats_state *st = op->state;
    size_t asked = 0;
    for (size_t i = 0; i < st->n; i++) {
        struct dk_stats_item *it = &st->items[i];
        /* an inspect answer (ContainerStats) has the PID already */
        if (cJSON_IsObject(dk_obj(it->entry, "State")) && sample_cgroups(it, it->entry) == 0)
            continue;
        dk_callx(op, "GET", NULL, on_item_inspect, it, "/containers/%s/json",
                 dk_str(it->entry, "Id"));
        asked++;
    }
    if (!asked)
        stats_build(op);
}

static int add_item(struct stats_state *st, const cJSON *e, int sandbox, size_t cap)
{
    if (st->n == cap)
        return -1;
    st->items[st->n].entry = e;
    st->items[st->n].sandbox = sandbox;
    st->n++;
    return 0;
}

static int id_matches(const cJSON *entry, const char *prefix)
{
    return !prefix || !*prefix || strncmp(dk_str(entry, "Id"), prefix, strlen(prefix)) == 0;
}

/* Picks what to sample once the lists are in. */
static void stats_select(struct dk_op *op)
{
    struct stats_state *st = op->state;
    size_t cap = (size_t)cJSON_GetArraySize(st->ctrs) + (size_t)cJSON_GetArraySize(st->sbs) + 1;
    st->items = calloc(cap, sizeof(*st->items));
    if (!st->items) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    const cJSON *e;
    if (st->kind == ST_CONTAINER) {
        add_item(st, st->ctrs, 0, cap);
    } else {
        cJSON_ArrayForEach(e, st->ctrs) {
            if (!dk_entry_running(e))
                continue;
            if (!id_matches(e, st->want_ctr) || !dk_labels_match(dk_entry_labels(e), st->nsel, st->sel))
                continue;
            if (st->kind == ST_POD && !dk_str_is(dk_entry_labels(e), DK_LABEL_SANDBOX_ID, st->want_sb))
                continue;
            add_item(st, e, 0, cap);
        }
        cJSON_ArrayForEach(e, st->sbs) {
            if (dk_entry_running(e))
                add_item(st, e, 1, cap);
        }
    }
    stats_fetch(op);
}

/* ContainerStats: the one container. */
static void build_container(struct dk_op *op, struct dk_stats_ctx *c)
{
    struct stats_state *st = op->state;
    Runtime__V1__ContainerStatsResponse r = RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
    r.stats = dk_container_stats(c, st->ctrs, st->items[0].stats);
    dk_op_reply(op, &r.base);
}

/* PodSandboxStats: the one pod, if its sandbox runs. */
static void build_pod(struct dk_op *op, struct dk_stats_ctx *c)
{
    struct stats_state *st = op->state;
    Runtime__V1__PodSandboxStatsResponse r = RUNTIME__V1__POD_SANDBOX_STATS_RESPONSE__INIT;
    for (size_t i = 0; i < st->n && !r.stats; i++)
        if (st->items[i].sandbox)
            r.stats = dk_pod_stats(c, &st->items[i], st->items, st->n);
    if (r.stats)
        dk_op_reply(op, &r.base);
    else if (cJSON_GetArraySize(st->sbs) == 0)
        dk_op_fail(op, GRPC_NOT_FOUND, "pod sandbox %s not found", st->want_sb);
    else
        dk_op_fail(op, GRPC_FAILED_PRECONDITION, "pod sandbox %s is not running", st->want_sb);
}

/* The List* and Stream* kinds: every container, or every pod. */
static void build_list(struct dk_op *op, struct dk_stats_ctx *c)
{
    struct stats_state *st = op->state;
    size_t n = 0;
    void **v = dk_alloc(&op->mem, (st->n ? st->n : 1) * sizeof(void *));
    if (!v) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return;
    }
    for (size_t i = 0; i < st->n; i++) {
        const struct dk_stats_item *it = &st->items[i];
        if (st->kind == ST_CONTAINER_LIST && !it->sandbox)
            v[n++] = dk_container_stats(c, it->entry, it->stats);
        else if (st->kind == ST_POD_LIST && it->sandbox)
            v[n++] = dk_pod_stats(c, it, st->items, st->n);
    }
    dk_op_reply_items(op, v, n);
}

static void on_stats_root(struct dk_op *op, int status, cJSON *json)
{
    const char *root = status == 200 ? dk_storage_root(json) : "";
    if (*root && !op->be->storage_root)
        op->be->storage_root = strdup(root);
    stats_build_with(op, op->be->storage_root ? op->be->storage_root : ""); /* asked again next time */
}

/* The writable layers' filesystem is the engine's storage root (GET
 * /info, asked once: podman's takes a second), as ImageFsInfo reports it:
 * the kubelet looks its capacity up by that mountpoint. */
static void stats_build(struct dk_op *op)
{
    if (!op->be->storage_root) {
        dk_call(op, "GET", NULL, on_stats_root, "/info");
        return;
    }
    stats_build_with(op, op->be->storage_root);
}

static void stats_build_with(struct dk_op *op, const char *fs_root)
{
    struct stats_state *st = op->state;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct dk_stats_ctx c = {&op->mem, &cpu_cache, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec,
                             fs_root};
    if (st->kind == ST_CONTAINER)
        build_container(op, &c);
    else if (st->kind == ST_POD)
        build_pod(op, &c);
    else
        build_list(op, &c);
}

static struct stats_state *stats_new(struct dk_op *op, enum stats_kind kind)
{
    struct stats_state *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    st->kind = kind;
    op->state = st;
    op->free_state = stats_state_free;
    return st;
}

/* ContainerStats: inspect (with size), then one stats request. */
static void on_stats_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ContainerStatsRequest *req = (const void *)op->req;
    struct stats_state *st = op->state;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, req->container_id) < 0)
        return;
    st->ctrs = cJSON_Duplicate(json, 1);
    if (!st->ctrs) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    stats_select(op);
}

static void dk_ctr_stats(struct dk_op *op)
{
    const Runtime__V1__ContainerStatsRequest *req = (const void *)op->req;
    if (dk_check_id(op, req->container_id, "container_id") < 0)
        return;
    if (stats_new(op, ST_CONTAINER))
        dk_call(op, "GET", NULL, on_stats_inspect, "/containers/%s/json?size=1",
                dk_esc(op, req->container_id));
}

/* The list kinds: containers (with sizes), and for pods the sandboxes. */
static void on_stats_sandboxes(struct dk_op *op, int status, cJSON *json)
{
    struct stats_state *st = op->state;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing pod sandboxes");
        return;
    }
    st->sbs = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, json) {
        if (st->kind == ST_POD ? !dk_str_is(e, "Id", st->want_sb) : !id_matches(e, st->want_sb))
            continue;
        if (st->kind == ST_POD_LIST && st->pod_filter &&
            !dk_labels_match(dk_entry_labels(e), st->pod_filter->n_label_selector,
                             st->pod_filter->label_selector))
            continue;
        cJSON_AddItemToArray(st->sbs, cJSON_Duplicate(e, 1));
    }
    stats_select(op);
}

static void on_stats_containers(struct dk_op *op, int status, cJSON *json)
{
    struct stats_state *st = op->state;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing containers");
        return;
    }
    st->ctrs = cJSON_Duplicate(json, 1);
    if (!st->ctrs) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (st->kind == ST_CONTAINER_LIST) {
        stats_select(op);
        return;
    }
    const Runtime__V1__PodSandboxStatsFilter *f = st->pod_filter;
    char *filters = dk_label_filters(DK_TYPE_SANDBOX, NULL, f ? f->n_label_selector : 0,
                                     f ? (void *)f->label_selector : NULL);
    if (!filters) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (st->kind == ST_POD_LIST)
        st->want_sb = f ? f->id : NULL;
    dk_call(op, "GET", NULL, on_stats_sandboxes, "/containers/json?all=1&filters=%s", filters);
    free(filters);
}

static void list_for_stats(struct dk_op *op, const char *sandbox_id, size_t nsel, void *sel)
{
    char *filters = dk_label_filters(DK_TYPE_CONTAINER, sandbox_id, nsel, sel);
    if (!filters) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    dk_call(op, "GET", NULL, on_stats_containers, "/containers/json?size=1&filters=%s", filters);
    free(filters);
}

/* ListContainerStats and StreamContainerStats: the requests share their
 * layout. */
static void dk_list_container_stats(struct dk_op *op)
{
    const Runtime__V1__ListContainerStatsRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerStatsFilter *f = req->filter;
    struct stats_state *st = stats_new(op, ST_CONTAINER_LIST);
    if (!st)
        return;
    st->want_ctr = f ? f->id : NULL;
    st->nsel = f ? f->n_label_selector : 0;
    st->sel = f ? (void *)f->label_selector : NULL;
    list_for_stats(op, f ? f->pod_sandbox_id : NULL, f ? f->n_label_selector : 0,
                   f ? (void *)f->label_selector : NULL);
}

static void dk_pod_stats_call(struct dk_op *op)
{
    const Runtime__V1__PodSandboxStatsRequest *req = (const void *)op->req;
    if (dk_check_id(op, req->pod_sandbox_id, "pod_sandbox_id") < 0)
        return;
    struct stats_state *st = stats_new(op, ST_POD);
    if (!st)
        return;
    st->want_sb = req->pod_sandbox_id;
    list_for_stats(op, req->pod_sandbox_id, 0, NULL);
}

/* ListPodSandboxStats and StreamPodSandboxStats: the requests share their
 * layout. */
static void dk_list_pod_stats(struct dk_op *op)
{
    const Runtime__V1__ListPodSandboxStatsRequest *req = (const void *)op->req;
    struct stats_state *st = stats_new(op, ST_POD_LIST);
    if (!st)
        return;
    st->pod_filter = req->filter;
    list_for_stats(op, NULL, 0, NULL);
}

const struct dk_method dk_stats_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_CONTAINER_STATS] = {dk_ctr_stats},
    [CRISP_RPC_LIST_CONTAINER_STATS] = {dk_list_container_stats},
    [CRISP_RPC_STREAM_CONTAINER_STATS] = {dk_list_container_stats},
    [CRISP_RPC_POD_SANDBOX_STATS] = {dk_pod_stats_call},
    [CRISP_RPC_LIST_POD_SANDBOX_STATS] = {dk_list_pod_stats},
    [CRISP_RPC_STREAM_POD_SANDBOX_STATS] = {dk_list_pod_stats},
};
