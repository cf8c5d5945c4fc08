/* docker_events.c - GetContainerEvents on Docker: the engine's event
 * stream (containers only), one CRI event per line that is a pod's
 * (decode.c), each carrying the pod's statuses as they are when it is
 * sent, as containerd's do: the sandbox's PodSandboxStatus and the
 * ContainerStatus of every container of the pod (one inspect each, the
 * pod's containers listed), what the kubelet's evented PLEG takes as the
 * pod's state. Events are completed one after the other, in the engine's
 * order; those waiting are queued (the engine's stream paused past
 * QUEUE_PAUSE of them), and the engine's stream is paused too while the
 * client reads slowly. A sandbox or container gone by then is carried as
 * the event says it (its ID, metadata, the state the event implies). */
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

#define EVENT_LINE_MAX (256 * 1024)
#define QUEUE_MAX 1024  /* lines waiting for their statuses: a ring */
#define QUEUE_PAUSE 64  /* past this, the engine's stream is paused */

struct events_state {
    char *line;
    size_t len;
    int overflow;
    struct h1_req *stream;     /* the engine's event stream */
    int paused;                /* by this file, for the queue */
    char *queue[QUEUE_MAX];
    size_t qhead, qlen;
    /* the event being completed */
    int busy;
    unsigned waiting;          /* engine answers it still needs */
    cJSON *ev;
    struct dk_event e;
    cJSON *sandbox;            /* its sandbox's inspect, NULL: gone */
    cJSON **ctrs;              /* the pod's containers' inspects (NULL: gone) */
    size_t nctrs;
};

static void current_free(struct events_state *st)
{
    cJSON_Delete(st->ev);
    cJSON_Delete(st->sandbox);
    for (size_t i = 0; i < st->nctrs; i++)
        cJSON_Delete(st->ctrs[i]);
    free(st->ctrs);
    st->ev = st->sandbox = NULL;
    st->ctrs = NULL;
    st->nctrs = 0;
    st->busy = 0;
}

static void events_state_free(void *p)
{
    struct events_state *st = p;
    current_free(st);
    for (size_t i = 0; i < st->qlen; i++)
        free(st->queue[(st->qhead + i) % QUEUE_MAX]);
    free(st->line);
    free(st);
}

static void next_event(struct dk_op *op);

/* The engine's stream is what a drained client resumes (dk_op_drained
 * resumes op->h1): the inspects made meanwhile do not take its place. */
static void keep_stream_resumable(struct dk_op *op)
{
    struct events_state *st = op->state;
    op->h1 = st->stream;
}

/* ---- completing an event with the pod's statuses ------------------------------- */

static int has_status(Runtime__V1__ContainerStatus **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] && strcmp(v[i]->id, id) == 0)
            return 1;
    return 0;
}

/* The event with the statuses gathered; -1 when the op ended. */
static int send_current(struct dk_op *op)
{
    struct events_state *st = op->state;
    struct dk_arena a = {0};
    Runtime__V1__ContainerEventResponse *r = &st->e.resp;
    Runtime__V1__ContainerStatus **v = dk_alloc(&a, (st->nctrs + 1) * sizeof(*v));
    size_t n = 0;
    if (st->sandbox)
        r->pod_sandbox_status = dk_sandbox_status(&a, st->sandbox);
    for (size_t i = 0; v && i < st->nctrs; i++)
        if (st->ctrs[i])
            v[n++] = dk_container_status(&a, st->ctrs[i]);
    /* the event's own container, gone by now: as the event says */
    if (v && r->n_containers_statuses && !has_status(v, n, r->containers_statuses[0]->id))
        v[n++] = r->containers_statuses[0];
    if (v && st->sandbox) {
        r->containers_statuses = v;
        r->n_containers_statuses = n;
    }
    int rv = -1;
    if (a.oom)
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory completing a container event");
    else
        rv = dk_op_send(op, &r->base);
    dk_arena_free(&a);
    return rv;
}

static void answered(struct dk_op *op)
{
    struct events_state *st = op->state;
    if (--st->waiting)
        return;
    if (send_current(op) < 0)
        return; /* the op ended, its state with it */
    current_free(st);
    next_event(op);
}

static void on_sandbox(struct dk_op *op, int status, cJSON *json)
{
    struct events_state *st = op->state;
    if (status == 200 && cJSON_IsObject(json))
        st->sandbox = cJSON_Duplicate(json, 1);
    answered(op);
}

static void on_member(struct dk_op *op, int status, cJSON *json)
{
    cJSON **slot = op->cur_ud;
    if (status == 200 && cJSON_IsObject(json))
        *slot = cJSON_Duplicate(json, 1);
    answered(op);
}

static void on_members(struct dk_op *op, int status, cJSON *json)
{
    struct events_state *st = op->state;
    size_t n = status == 200 ? (size_t)cJSON_GetArraySize(json) : 0;
    st->ctrs = n ? calloc(n, sizeof(*st->ctrs)) : NULL;
    const cJSON *e;
    if (st->ctrs) {
        cJSON_ArrayForEach(e, json) {
            if (!dk_full_id(dk_str(e, "Id"))) /* goes into a target unescaped: see complete() */
                continue;
            cJSON **slot = &st->ctrs[st->nctrs++];
            st->waiting++;
            dk_callx(op, "GET", NULL, on_member, slot, "/containers/%s/json", dk_str(e, "Id"));
        }
    }
    keep_stream_resumable(op);
    answered(op);
}

/* Asks for the pod's sandbox and its containers. */
static void complete(struct dk_op *op)
{
    struct events_state *st = op->state;
    const char *pod = st->e.resp.pod_sandbox_status ? st->e.resp.pod_sandbox_status->id : "";
    /* only full IDs go into targets, unescaped: the op's arena keeps every
     * escape until the op ends, and a stream's would grow without end */
    char *filters = dk_full_id(pod) ? dk_label_filters(DK_TYPE_CONTAINER, pod, 0, NULL) : NULL;
    if (!filters) {
        st->waiting = 1;
        answered(op); /* sent as the event says */
        return;
    }
    st->waiting = 2;
    dk_call(op, "GET", NULL, on_sandbox, "/containers/%s/json", pod);
    dk_call(op, "GET", NULL, on_members, "/containers/json?all=1&filters=%s", filters);
    free(filters);
    keep_stream_resumable(op);
}

/* ---- the queue of events ------------------------------------------------------- */

/* Takes queued lines until one is a pod's event and starts completing it. */
static void next_event(struct dk_op *op)
{
    struct events_state *st = op->state;
    while (!st->busy && st->qlen) {
        char *line = st->queue[st->qhead];
        st->qhead = (st->qhead + 1) % QUEUE_MAX;
        st->qlen--;
        st->ev = cJSON_Parse(line);
        free(line);
        if (dk_event_from_json(st->ev, &st->e) == 0) {
            st->busy = 1;
            complete(op);
        } else {
            current_free(st);
        }
    }
    if (st->paused && st->qlen < QUEUE_PAUSE / 2 && st->stream && !crisp_call_out_full(op->call)) {
        st->paused = 0;
        h1_resume(st->stream);
    }
}

/* A whole line of the engine's stream: queued; -1 when the op ended. */
static int event_line(struct dk_op *op, const char *line, size_t len)
{
    struct events_state *st = op->state;
    if (st->qlen == QUEUE_MAX) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "%d container events waiting for their statuses", QUEUE_MAX);
        return -1;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory queueing a container event");
        return -1;
    }
    memcpy(copy, line, len + 1);
    st->queue[(st->qhead + st->qlen++) % QUEUE_MAX] = copy;
    return 0;
}

/* One byte of the stream: lines are events; -1 when the op ended. */
static int event_byte(struct dk_op *op, struct events_state *st, uint8_t c)
{
    if (c != '\n') {
        if (st->len < EVENT_LINE_MAX - 1)
            st->line[st->len++] = (char)c;
        else
            st->overflow = 1; /* an event this large is not a container's */
        return 0;
    }
    int whole = !st->overflow && st->len;
    size_t len = st->len;
    st->line[st->len] = 0;
    st->len = 0;
    st->overflow = 0;
    return whole ? event_line(op, st->line, len) : 0;
}

static int events_body(struct h1_req *h, const uint8_t *p, size_t n, void *ud)
{
    struct dk_op *op = ud;
    struct events_state *st = op->state;
    st->stream = h;
    for (size_t i = 0; i < n; i++)
        if (event_byte(op, st, p[i]) < 0)
            return 0; /* the op ended, and this request with it */
    /* Too many events waiting, or a slow client: stop reading the engine
     * until they drain. */
    if (st->qlen >= QUEUE_PAUSE) {
        st->paused = 1;
        h1_pause(h);
    } else if (op->call && crisp_call_out_full(op->call)) {
        h1_pause(h);
    }
    next_event(op);
    return 0;
}

static void events_done(struct h1_req *h, int err, const char *errmsg, int status,
                        const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)body;
    (void)len;
    struct dk_op *op = ud;
    struct events_state *st = op->state;
    st->stream = NULL;
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
    st->stream = op->h1;
}

const struct dk_method dk_event_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_GET_CONTAINER_EVENTS] = {dk_events, .slow = 1},
};
