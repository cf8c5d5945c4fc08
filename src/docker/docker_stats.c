/* docker_stats.c - stats, events and the Stream* list RPCs on Docker.
 *
 * Stats come from the containers' cgroups on this node (docker_cgroup.c;
 * the PID from an inspect), or from the engine's one-shot stats calls when
 * the cgroups are not readable here; the writable layer from the size=1
 * list or inspect. usage_nano_cores needs two samples: a small bounded cache keeps
 * the previous one per container (a cache, not state: after a restart the
 * first answer lacks the rate, which the kubelet then computes itself). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

#define STREAM_CHUNK 100 /* items per message of a Stream* answer */

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
    int stream;
    cJSON *sbs;   /* sandboxes (list answer), pod kinds */
    cJSON *ctrs;  /* containers (list answer, or one inspect answer) */
    struct dk_stats_item *items;
    size_t n;
    char want_sb[80]; /* ST_POD: the sandbox's ID; ST_POD_LIST: an ID prefix */
    char want_ctr[80]; /* ST_CONTAINER_LIST: an ID prefix */
    const Runtime__V1__PodSandboxStatsFilter *pod_filter;
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
            if (st->want_ctr[0] && strncmp(dk_str(e, "Id"), st->want_ctr, strlen(st->want_ctr)) != 0)
                continue;
            if (st->kind == ST_POD &&
                strcmp(dk_str(dk_entry_labels(e), DK_LABEL_SANDBOX_ID), st->want_sb) != 0)
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

static void stats_build(struct dk_op *op)
{
    struct stats_state *st = op->state;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct dk_stats_ctx c = {&op->mem, &cpu_cache, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec};
    if (st->kind == ST_CONTAINER) {
        Runtime__V1__ContainerStatsResponse r = RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
        r.stats = dk_container_stats(&c, st->ctrs, st->items[0].stats);
        dk_op_reply(op, &r.base);
        return;
    }
    size_t n = 0;
    void **v = dk_alloc(&op->mem, (st->n ? st->n : 1) * sizeof(void *));
    if (!v) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return;
    }
    for (size_t i = 0; i < st->n; i++) {
        const struct dk_stats_item *it = &st->items[i];
        if (st->kind == ST_CONTAINER_LIST && !it->sandbox)
            v[n++] = dk_container_stats(&c, it->entry, it->stats);
        else if ((st->kind == ST_POD_LIST || st->kind == ST_POD) && it->sandbox)
            v[n++] = dk_pod_stats(&c, it, st->items, st->n);
    }
    if (st->kind == ST_POD) {
        Runtime__V1__PodSandboxStatsResponse r = RUNTIME__V1__POD_SANDBOX_STATS_RESPONSE__INIT;
        r.stats = n ? v[0] : NULL;
        if (!n) {
            if (cJSON_GetArraySize(st->sbs) == 0)
                dk_op_fail(op, GRPC_NOT_FOUND, "pod sandbox %s not found", st->want_sb);
            else
                dk_op_fail(op, GRPC_FAILED_PRECONDITION, "pod sandbox %s is not running",
                           st->want_sb);
            return;
        }
        dk_op_reply(op, &r.base);
        return;
    }
    if (!st->stream) {
        if (st->kind == ST_CONTAINER_LIST) {
            Runtime__V1__ListContainerStatsResponse r =
                RUNTIME__V1__LIST_CONTAINER_STATS_RESPONSE__INIT;
            r.n_stats = n;
            r.stats = (void *)v;
            dk_op_reply(op, &r.base);
        } else {
            Runtime__V1__ListPodSandboxStatsResponse r =
                RUNTIME__V1__LIST_POD_SANDBOX_STATS_RESPONSE__INIT;
            r.n_stats = n;
            r.stats = (void *)v;
            dk_op_reply(op, &r.base);
        }
        return;
    }
    for (size_t i = 0; i < n; i += STREAM_CHUNK) {
        size_t k = n - i < STREAM_CHUNK ? n - i : STREAM_CHUNK;
        int rv;
        if (st->kind == ST_CONTAINER_LIST) {
            Runtime__V1__StreamContainerStatsResponse r =
                RUNTIME__V1__STREAM_CONTAINER_STATS_RESPONSE__INIT;
            r.n_container_stats = k;
            r.container_stats = (void *)(v + i);
            rv = dk_op_send(op, &r.base);
        } else {
            Runtime__V1__StreamPodSandboxStatsResponse r =
                RUNTIME__V1__STREAM_POD_SANDBOX_STATS_RESPONSE__INIT;
            r.n_pod_sandbox_stats = k;
            r.pod_sandbox_stats = (void *)(v + i);
            rv = dk_op_send(op, &r.base);
        }
        if (rv < 0)
            return;
    }
    dk_op_finish_ok(op);
}

static struct stats_state *stats_new(struct dk_op *op, enum stats_kind kind, int stream)
{
    struct stats_state *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    st->kind = kind;
    st->stream = stream;
    op->state = st;
    op->free_state = stats_state_free;
    return st;
}

/* ContainerStats: inspect (with size), then one stats request. */
static void on_stats_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ContainerStatsRequest *req = (const void *)op->req;
    struct stats_state *st = op->state;
    if (dk_inspect_absent(status, json, DK_TYPE_CONTAINER)) {
        dk_op_fail(op, GRPC_NOT_FOUND, "container %s not found", req->container_id);
        return;
    }
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the container");
        return;
    }
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
    if (stats_new(op, ST_CONTAINER, 0))
        dk_call(op, "GET", NULL, on_stats_inspect, "/containers/%s/json?size=1",
                dk_esc(req->container_id));
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
        if (st->kind == ST_POD && strcmp(dk_str(e, "Id"), st->want_sb) != 0)
            continue;
        if (st->kind == ST_POD_LIST && st->want_sb[0] &&
            strncmp(dk_str(e, "Id"), st->want_sb, strlen(st->want_sb)) != 0)
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
    if (f && f->id && *f->id)
        snprintf(st->want_sb, sizeof(st->want_sb), "%s", f->id);
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

static void container_stats_list(struct dk_op *op, const Runtime__V1__ContainerStatsFilter *f,
                                 int stream)
{
    struct stats_state *st = stats_new(op, ST_CONTAINER_LIST, stream);
    if (!st)
        return;
    if (f && f->id && *f->id)
        snprintf(st->want_ctr, sizeof(st->want_ctr), "%s", f->id);
    list_for_stats(op, f ? f->pod_sandbox_id : NULL, f ? f->n_label_selector : 0,
                   f ? (void *)f->label_selector : NULL);
}

static void dk_list_container_stats(struct dk_op *op)
{
    const Runtime__V1__ListContainerStatsRequest *req = (const void *)op->req;
    container_stats_list(op, req->filter, 0);
}

static void dk_stream_container_stats(struct dk_op *op)
{
    const Runtime__V1__StreamContainerStatsRequest *req = (const void *)op->req;
    container_stats_list(op, req->filter, 1);
}

static void dk_pod_stats_call(struct dk_op *op)
{
    const Runtime__V1__PodSandboxStatsRequest *req = (const void *)op->req;
    if (dk_check_id(op, req->pod_sandbox_id, "pod_sandbox_id") < 0)
        return;
    struct stats_state *st = stats_new(op, ST_POD, 0);
    if (!st)
        return;
    snprintf(st->want_sb, sizeof(st->want_sb), "%s", req->pod_sandbox_id);
    list_for_stats(op, req->pod_sandbox_id, 0, NULL);
}

static void pod_stats_list(struct dk_op *op, const Runtime__V1__PodSandboxStatsFilter *f,
                           int stream)
{
    struct stats_state *st = stats_new(op, ST_POD_LIST, stream);
    if (!st)
        return;
    st->pod_filter = f;
    list_for_stats(op, NULL, 0, NULL);
}

static void dk_list_pod_stats(struct dk_op *op)
{
    pod_stats_list(op, ((const Runtime__V1__ListPodSandboxStatsRequest *)op->req)->filter, 0);
}

static void dk_stream_pod_stats(struct dk_op *op)
{
    pod_stats_list(op, ((const Runtime__V1__StreamPodSandboxStatsRequest *)op->req)->filter, 1);
}

/* ---- Stream* lists ------------------------------------------------------------------ */

static void on_stream_pods(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__StreamPodSandboxesRequest *req = (const void *)op->req;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing pod sandboxes");
        return;
    }
    Runtime__V1__PodSandbox **v;
    size_t n = dk_sandboxes_from_list(&op->mem, json, req->filter, &v);
    for (size_t i = 0; i < n; i += STREAM_CHUNK) {
        Runtime__V1__StreamPodSandboxesResponse r = RUNTIME__V1__STREAM_POD_SANDBOXES_RESPONSE__INIT;
        r.n_pod_sandboxes = n - i < STREAM_CHUNK ? n - i : STREAM_CHUNK;
        r.pod_sandboxes = v + i;
        if (dk_op_send(op, &r.base) < 0)
            return;
    }
    dk_op_finish_ok(op);
}

static void dk_stream_pods(struct dk_op *op)
{
    const Runtime__V1__StreamPodSandboxesRequest *req = (const void *)op->req;
    dk_list_sandboxes(op, req->filter, on_stream_pods);
}

static void on_stream_ctrs(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__StreamContainersRequest *req = (const void *)op->req;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing containers");
        return;
    }
    Runtime__V1__Container **v;
    size_t n = dk_containers_from_list(&op->mem, json, req->filter, &v);
    for (size_t i = 0; i < n; i += STREAM_CHUNK) {
        Runtime__V1__StreamContainersResponse r = RUNTIME__V1__STREAM_CONTAINERS_RESPONSE__INIT;
        r.n_containers = n - i < STREAM_CHUNK ? n - i : STREAM_CHUNK;
        r.containers = v + i;
        if (dk_op_send(op, &r.base) < 0)
            return;
    }
    dk_op_finish_ok(op);
}

static void dk_stream_ctrs(struct dk_op *op)
{
    const Runtime__V1__StreamContainersRequest *req = (const void *)op->req;
    dk_list_containers(op, req->filter, on_stream_ctrs);
}

/* ---- GetContainerEvents ---------------------------------------------------------------- */

#define EVENT_LINE_MAX (256 * 1024)

struct events_state {
    char *line;
    size_t len;
    int overflow;
};

static void events_state_free(void *p)
{
    struct events_state *st = p;
    free(st->line);
    free(st);
}

/* One engine event -> one CRI event, if it is a pod's. */
static void event_line(struct dk_op *op, const char *line)
{
    cJSON *ev = cJSON_Parse(line);
    struct dk_event e;
    if (dk_event_from_json(ev, &e) == 0)
        dk_op_send(op, &e.resp.base);
    cJSON_Delete(ev);
}

static int events_body(struct h1_req *h, const uint8_t *p, size_t n, void *ud)
{
    struct dk_op *op = ud;
    struct events_state *st = op->state;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (!st->overflow && st->len) {
                st->line[st->len] = 0;
                event_line(op, st->line);
            }
            st->len = 0;
            st->overflow = 0;
        } else if (st->len < EVENT_LINE_MAX - 1) {
            st->line[st->len++] = (char)p[i];
        } else {
            st->overflow = 1; /* an event this large is not a container's */
        }
    }
    /* A slow client: stop reading the engine until the queue drains. */
    if (op->call && crisp_call_out_full(op->call))
        h1_pause(h);
    return 0;
}

static void events_done(struct h1_req *h, int err, const char *errmsg, int status,
                        const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)body;
    (void)len;
    struct dk_op *op = ud;
    if (err) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: event stream: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    if (status != 200) {
        dk_op_fail(op, dk_code_for_status(status), "docker events: engine answered HTTP %d",
                   status);
        return;
    }
    dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s ended its event stream", op->be->engine);
}

static const struct h1_req_cbs events_cbs = {.on_body = events_body, .on_done = events_done};

static void dk_events(struct dk_op *op)
{
    struct events_state *st = calloc(1, sizeof(*st));
    if (st)
        st->line = malloc(EVENT_LINE_MAX);
    if (!st || !st->line) {
        if (st)
            free(st);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->state = st;
    op->free_state = events_state_free;
    /* Type only: podman's label filter does not match a bare key. Events
     * of containers that are not pods' are dropped here. */
    static const char target[] = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
    struct h1_req_opts o = {.method = "GET", .target = target}; /* {"type":["container"]} */
    dk_call_opts(op, &o, &events_cbs);
}

const struct dk_method dk_stats_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_CONTAINER_STATS] = {dk_ctr_stats},
    [CRISP_RPC_LIST_CONTAINER_STATS] = {dk_list_container_stats},
    [CRISP_RPC_STREAM_CONTAINER_STATS] = {dk_stream_container_stats},
    [CRISP_RPC_POD_SANDBOX_STATS] = {dk_pod_stats_call},
    [CRISP_RPC_LIST_POD_SANDBOX_STATS] = {dk_list_pod_stats},
    [CRISP_RPC_STREAM_POD_SANDBOX_STATS] = {dk_stream_pod_stats},
    [CRISP_RPC_STREAM_POD_SANDBOXES] = {dk_stream_pods},
    [CRISP_RPC_STREAM_CONTAINERS] = {dk_stream_ctrs},
    [CRISP_RPC_GET_CONTAINER_EVENTS] = {dk_events, .slow = 1},
};
