/* docker_stats.c - ContainerStats, PodSandboxStats and their List* and
 * Stream* kinds on Docker.
 *
 * Stats come from the containers' cgroups on this node (docker_cgroup.c),
 * or from the engine's one-shot stats calls when the cgroups are not
 * readable here; decode_stats.c makes the CRI's messages of them (with a
 * cache of the previous CPU samples for usage_nano_cores).
 *
 * The List kinds, while the view (view.c) is live and has measured the
 * writable layers: the lists, PIDs and sizes come from the view, and the
 * engine is asked only for what it lacks (a list dropped by a change, the
 * PID of a container started since: one inspect). Else, as without a view:
 * the engine's size=1 listing (the writable layers' disk walk) and one
 * inspect per container for its PID. ContainerStats asks the engine (one
 * inspect with the size). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

static struct dk_cpu_cache cpu_cache;

/* ---- the stats op: lists, then the stats of each running container ------------- */

enum stats_kind {
    ST_CONTAINER,      /* ContainerStats */
    ST_CONTAINER_LIST, /* ListContainerStats / StreamContainerStats */
    ST_POD,            /* PodSandboxStats */
    ST_POD_LIST,       /* ListPodSandboxStats / StreamPodSandboxStats */
};

struct stats_state {
    enum stats_kind kind;
    int from_view;        /* sizes from the view, lists from it when it has them */
    cJSON *sbs;           /* sandboxes from the engine (pod kinds), when the view holds none */
    cJSON *ctrs;          /* containers from the engine (a listing, or one inspect answer) */
    struct dk_held *held_sbs, *held_ctrs; /* or the view's */
    const cJSON *sbl, *ctl; /* the lists used: one of the two */
    struct dk_stats_item *items;
    size_t n;
    size_t sb_found;      /* ST_POD: sandboxes of that ID listed (running or not) */
    uint64_t gen;         /* the view's, when the inspects were asked */
    const char *want_sb;  /* ST_POD: the sandbox's ID; ST_POD_LIST: an ID prefix (the request's) */
    const char *want_ctr; /* ST_CONTAINER_LIST: an ID prefix (the request's) */
    const char *want_pod; /* ST_CONTAINER_LIST: the pod's sandbox ID (the request's) */
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
    dk_view_release(st->held_sbs);
    dk_view_release(st->held_ctrs);
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

/* The item's stats from its process's cgroup files: where they are as the
 * view keeps them for that process, else found now. */
static int sample_cgroups(struct dk_op *op, struct dk_stats_item *it, int pid)
{
    const char *id = dk_str(it->entry, "Id");
    const struct dk_cgroup *cg = dk_view_cgroup(op->be, id, pid);
    it->stats = cg ? dk_cgroup_read(cg, pid, it->sandbox) : NULL;
    if (cg && !it->stats)
        dk_view_cgroup_failed(op->be, id);
    if (!it->stats)
        it->stats = dk_cgroup_stats(pid, it->sandbox);
    return it->stats ? 0 : -1;
}

static void on_item_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct stats_state *st = op->state;
    struct dk_stats_item *it = op->cur_ud;
    int pid = status == 200 ? (int)dk_int(dk_obj(json, "State"), "Pid") : 0;
    if (sample_cgroups(op, it, pid) == 0)
        dk_view_put_pid(op->be, dk_str(it->entry, "Id"), st->gen, pid);
    else
        fetch_from_api(op, it);
    if (op->pending == 0)
        stats_build(op);
}

/* Each item's stats: from its cgroups when its PID is known (an inspect
 * answer, the view), else after an inspect. */
static void stats_fetch(struct dk_op *op)
{
    struct stats_state *st = op->state;
    size_t asked = 0;
    st->gen = dk_view_gen(op->be);
    for (size_t i = 0; i < st->n; i++) {
        struct dk_stats_item *it = &st->items[i];
        const cJSON *state = dk_obj(it->entry, "State");
        int pid = cJSON_IsObject(state) ? (int)dk_int(state, "Pid") /* an inspect answer */
                                        : dk_view_pid(op->be, dk_str(it->entry, "Id"));
        if (pid > 0 && sample_cgroups(op, it, pid) == 0)
            continue;
        dk_callx(op, "GET", NULL, on_item_inspect, it, "/containers/%s/json", dk_str(it->entry, "Id"));
        asked++;
    }
    if (!asked)
        stats_build(op);
}

/* The item's writable layer: SizeRw in the engine's answer, else the
 * view's measure; 1 when the view had none. */
static int item_size(struct dk_op *op, struct dk_stats_item *it)
{
    struct stats_state *st = op->state;
    *it = dk_stats_item_sized(it->entry, NULL, it->sandbox);
    if (!st->from_view || it->sandbox)
        return 0;
    if (dk_view_size(op->be, dk_str(it->entry, "Id"), &it->size_rw, &it->size_ns))
        return 0;
    it->size_ns = -1;
    return 1;
}

static int add_item(struct dk_op *op, const cJSON *e, int sandbox, size_t cap)
{
    struct stats_state *st = op->state;
    if (st->n == cap)
        return 0;
    struct dk_stats_item *it = &st->items[st->n++];
    it->entry = e;
    it->sandbox = sandbox;
    return item_size(op, it);
}

static int id_matches(const cJSON *entry, const char *prefix)
{
    return !prefix || !*prefix || strncmp(dk_str(entry, "Id"), prefix, strlen(prefix)) == 0;
}

static int ctr_wanted(const struct stats_state *st, const cJSON *e)
{
    const cJSON *labels = dk_entry_labels(e);
    if (st->kind == ST_POD)
        return dk_str_is(labels, DK_LABEL_SANDBOX_ID, st->want_sb);
    if (st->kind != ST_CONTAINER_LIST)
        return 1;
    return id_matches(e, st->want_ctr) && dk_labels_match(labels, st->nsel, st->sel) &&
           (!st->want_pod || !*st->want_pod || dk_str_is(labels, DK_LABEL_SANDBOX_ID, st->want_pod));
}

static int sb_wanted(struct stats_state *st, const cJSON *e)
{
    const Runtime__V1__PodSandboxStatsFilter *f = st->pod_filter;
    if (st->kind == ST_POD)
        return dk_str_is(e, "Id", st->want_sb) && ++st->sb_found;
    return id_matches(e, f ? f->id : NULL) &&
           (!f || dk_labels_match(dk_entry_labels(e), f->n_label_selector, f->label_selector));
}

/* Picks what to sample once the lists are in. */
static void stats_select(struct dk_op *op)
{
    struct stats_state *st = op->state;
    size_t cap = (size_t)cJSON_GetArraySize(st->ctl) + (size_t)cJSON_GetArraySize(st->sbl) + 1;
    int missing = 0;
    st->items = calloc(cap, sizeof(*st->items));
    if (!st->items) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    const cJSON *e;
    if (st->kind == ST_CONTAINER) {
        add_item(op, st->ctl, 0, cap);
    } else {
        cJSON_ArrayForEach(e, st->ctl) {
            if (dk_entry_running(e) && ctr_wanted(st, e))
                missing |= add_item(op, e, 0, cap);
        }
        cJSON_ArrayForEach(e, st->sbl) {
            if (sb_wanted(st, e) && dk_entry_running(e))
                add_item(op, e, 1, cap);
        }
    }
    if (st->from_view)
        dk_view_sizes_wanted(op->be, missing);
    stats_fetch(op);
}

/* ContainerStats: the one container. */
static void build_container(struct dk_op *op, struct dk_stats_ctx *c)
{
    struct stats_state *st = op->state;
    Runtime__V1__ContainerStatsResponse r = RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
    r.stats = dk_container_stats(c, &st->items[0]);
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
    else if (!st->sb_found)
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
            v[n++] = dk_container_stats(c, it);
        else if (st->kind == ST_POD_LIST && it->sandbox)
            v[n++] = dk_pod_stats(c, it, st->items, st->n);
    }
    dk_op_reply_items(op, v, n);
}

static void on_stats_root(struct dk_op *op, int status, cJSON *json)
{
    stats_build_with(op, status == 200 ? dk_learn_storage_root(op->be, json) : ""); /* asked again next time */
}

/* The writable layers' filesystem is the engine's storage root (GET
 * /info, learnt once: podman's takes a second), as ImageFsInfo reports it:
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

/* ContainerStats: inspect (with size), then its stats. */
static void on_stats_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ContainerStatsRequest *req = (const void *)op->req;
    struct stats_state *st = op->state;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, req->container_id) < 0)
        return;
    st->ctl = st->ctrs = cJSON_Duplicate(json, 1);
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

/* ---- the List kinds: the lists, from the view or the engine ------------------- */

static void stats_lists(struct dk_op *op);

/* A listing of the engine's answered: kept by the op (and by the view,
 * when it is a whole one asked at generation *gen). */
static void on_stats_list(struct dk_op *op, int status, cJSON *json)
{
    struct stats_state *st = op->state;
    const uint64_t *gen = op->cur_ud;
    int containers = !st->ctl; /* they come first */
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, containers ? "listing containers" : "listing pod sandboxes");
        return;
    }
    int kind = containers ? DK_VIEW_CONTAINERS : DK_VIEW_SANDBOXES;
    const cJSON *list = NULL;
    cJSON *copy = NULL;
    if (gen) { /* a whole listing: the view keeps a copy, held here when it serves it */
        dk_view_put(op->be, kind, *gen, json);
        list = dk_view_hold(op->be, kind, containers ? &st->held_ctrs : &st->held_sbs);
    }
    if (!list && !(list = copy = cJSON_Duplicate(json, 1))) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (containers) {
        st->ctl = list;
        st->ctrs = copy;
    } else {
        st->sbl = list;
        st->sbs = copy;
    }
    stats_lists(op);
}

/* Asks the engine for a listing: query is the part after "?", its filters
 * those of dk_label_filters (freed). */
static void list_from_engine(struct dk_op *op, const char *query, char *filters, int whole)
{
    uint64_t *gen = whole ? dk_alloc(&op->mem, sizeof(*gen)) : NULL;
    if (!filters || (whole && !gen)) {
        free(filters);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (gen)
        *gen = dk_view_gen(op->be);
    dk_callx(op, "GET", NULL, on_stats_list, gen, "/containers/json?%s&filters=%s", query, filters);
    free(filters);
}

/* The containers, then (pod kinds) the sandboxes: from the view when it
 * serves the sizes and holds the list (the whole one, filtered here), else
 * from the engine: with the view, a whole listing it keeps; without, the
 * running containers with their sizes, filtered by the engine as far as
 * labels go. */
static void stats_lists(struct dk_op *op)
{
    struct stats_state *st = op->state;
    int pods = st->kind == ST_POD || st->kind == ST_POD_LIST;
    if (!st->ctl && st->from_view)
        st->ctl = dk_view_hold(op->be, DK_VIEW_CONTAINERS, &st->held_ctrs);
    if (pods && !st->sbl && st->from_view)
        st->sbl = dk_view_hold(op->be, DK_VIEW_SANDBOXES, &st->held_sbs);
    if (!st->ctl && st->from_view) {
        list_from_engine(op, "all=1", dk_label_filters(DK_TYPE_CONTAINER, NULL, 0, NULL), 1);
    } else if (!st->ctl) {
        const char *pod = st->kind == ST_POD ? st->want_sb : st->want_pod;
        list_from_engine(op, "size=1", dk_label_filters(DK_TYPE_CONTAINER, pod, st->nsel, st->sel), 0);
    } else if (pods && !st->sbl) {
        const Runtime__V1__PodSandboxStatsFilter *f = st->pod_filter;
        size_t nsel = f && !st->from_view ? f->n_label_selector : 0;
        list_from_engine(op, "all=1",
                         dk_label_filters(DK_TYPE_SANDBOX, NULL, nsel, nsel ? (void *)f->label_selector : NULL),
                         st->from_view);
    } else {
        stats_select(op);
    }
}

static struct stats_state *list_stats_new(struct dk_op *op, enum stats_kind kind)
{
    struct stats_state *st = stats_new(op, kind);
    if (st)
        st->from_view = dk_view_stats_ready(op->be);
    if (st && !st->from_view)
        dk_view_sizes_wanted(op->be, 1); /* for the next call */
    return st;
}

/* ListContainerStats and StreamContainerStats: the requests share their
 * layout. */
static void dk_list_container_stats(struct dk_op *op)
{
    const Runtime__V1__ListContainerStatsRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerStatsFilter *f = req->filter;
    struct stats_state *st = list_stats_new(op, ST_CONTAINER_LIST);
    if (!st)
        return;
    st->want_ctr = f ? f->id : NULL;
    st->want_pod = f ? f->pod_sandbox_id : NULL;
    st->nsel = f ? f->n_label_selector : 0;
    st->sel = f ? (void *)f->label_selector : NULL;
    stats_lists(op);
}

static void dk_pod_stats_call(struct dk_op *op)
{
    const Runtime__V1__PodSandboxStatsRequest *req = (const void *)op->req;
    if (dk_check_id(op, req->pod_sandbox_id, "pod_sandbox_id") < 0)
        return;
    struct stats_state *st = list_stats_new(op, ST_POD);
    if (!st)
        return;
    st->want_sb = req->pod_sandbox_id;
    stats_lists(op);
}

/* ListPodSandboxStats and StreamPodSandboxStats: the requests share their
 * layout. */
static void dk_list_pod_stats(struct dk_op *op)
{
    const Runtime__V1__ListPodSandboxStatsRequest *req = (const void *)op->req;
    struct stats_state *st = list_stats_new(op, ST_POD_LIST);
    if (!st)
        return;
    st->pod_filter = req->filter;
    stats_lists(op);
}

const struct dk_method dk_stats_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_CONTAINER_STATS] = {dk_ctr_stats},
    [CRISP_RPC_LIST_CONTAINER_STATS] = {dk_list_container_stats},
    [CRISP_RPC_STREAM_CONTAINER_STATS] = {dk_list_container_stats},
    [CRISP_RPC_POD_SANDBOX_STATS] = {dk_pod_stats_call},
    [CRISP_RPC_LIST_POD_SANDBOX_STATS] = {dk_list_pod_stats},
    [CRISP_RPC_STREAM_POD_SANDBOX_STATS] = {dk_list_pod_stats},
};
