/* docker_events.c - GetContainerEvents on Docker: one CRI event per
 * container event of the engine that is a pod's (decode.c), each carrying
 * the pod's statuses as they are when it is sent, as containerd's do: the
 * sandbox's PodSandboxStatus and the ContainerStatus of every container of
 * the pod, what the kubelet's evented PLEG takes as the pod's state.
 *
 * The events come from the view's event stream while it is open (view.c):
 * the view takes each event in before it is handed on, so the statuses it
 * keeps are then no older than the event, and the pod's members and
 * statuses are taken from it; only the sandbox and containers it holds no
 * current status of are inspected (the event's own, at least), and what
 * those inspects answer is kept there in turn. A view's stream not open
 * yet is opened, and the call waits for it. Without a view (--node-view
 * off, its stream failing to open or waiting to be retried) the call opens
 * an event stream of its own and lists and inspects the pod for each
 * event, taking nothing from the view (its stream may be ahead of the
 * view's). When the stream ends, the call ends (UNAVAILABLE) and the
 * kubelet asks again.
 *
 * Events are completed one after the other, in the engine's order; those
 * waiting are queued (at most QUEUE_MAX; an own stream is paused past
 * QUEUE_PAUSE of them), and none is completed while the client is slow to
 * read. A sandbox or container gone by then is carried as the event says
 * it (its ID, metadata, the state the event implies). */
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

#define EVENT_LINE_MAX (256 * 1024)
#define QUEUE_MAX 1024  /* lines waiting for their statuses: a ring */
#define QUEUE_PAUSE 64  /* past this, an own stream is paused */

struct events_state {
    struct dk_op *op;
    struct dk_view_sub sub;    /* fed by the view's stream while linked */
    struct h1_req *stream;     /* else its own stream, while open */
    char *line;                /* its own stream's line so far */
    size_t len;
    int overflow;
    int paused;                /* its own stream, for the queue */
    char *queue[QUEUE_MAX];
    size_t qhead, qlen;
    int in_next;               /* next_event is running */
    /* the event being completed */
    int busy;
    unsigned waiting;          /* engine answers it still needs */
    uint64_t gen;              /* the view's generation when they were asked */
    const char *pod;           /* its sandbox's full ID (in e) */
    cJSON *ev;
    struct dk_event e;
    struct dk_arena a;         /* the statuses gathered */
    Runtime__V1__PodSandboxStatus *sandbox; /* NULL: gone */
    Runtime__V1__ContainerStatus **ctrs;    /* a slot per member; NULL: gone, not the pod's */
    size_t nctrs;
};

static void current_free(struct events_state *st)
{
    cJSON_Delete(st->ev);
    dk_arena_free(&st->a);
    st->a = (struct dk_arena){0};
    st->ev = NULL;
    st->sandbox = NULL;
    st->ctrs = NULL;
    st->nctrs = 0;
    st->busy = 0;
}

static void events_state_free(void *p)
{
    struct events_state *st = p;
    dk_view_unsubscribe(&st->sub);
    current_free(st);
    for (size_t i = 0; i < st->qlen; i++)
        free(st->queue[(st->qhead + i) % QUEUE_MAX]);
    free(st->line);
    free(st);
}

static void next_event(struct dk_op *op);

/* An own stream is what a drained client resumes (dk_op_drained resumes
 * op->h1): the inspects made meanwhile do not take its place. */
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
    Runtime__V1__ContainerEventResponse *r = &st->e.resp;
    Runtime__V1__ContainerStatus **v = dk_alloc(&st->a, (st->nctrs + 1) * sizeof(*v));
    size_t n = 0;
    if (st->sandbox)
        r->pod_sandbox_status = st->sandbox;
    for (size_t i = 0; v && i < st->nctrs; i++)
        if (st->ctrs[i])
            v[n++] = st->ctrs[i];
    /* the event's own container, gone by now: as the event says */
    if (v && r->n_containers_statuses && !has_status(v, n, r->containers_statuses[0]->id))
        v[n++] = r->containers_statuses[0];
    if (v && st->sandbox) {
        r->containers_statuses = v;
        r->n_containers_statuses = n;
    }
    if (st->a.oom) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory completing a container event");
        return -1;
    }
    return dk_op_send(op, &r->base);
}

/* One engine answer (or this file's own share) less to wait for: the event
 * is sent when none is left. */
static void answered(struct dk_op *op)
{
    struct events_state *st = op->state;
    if (--st->waiting)
        return;
    if (send_current(op) < 0)
        return; /* the op ended, its state with it */
    current_free(st);
    if (!st->in_next)
        next_event(op);
}

/* Whether the events come from the view's stream: only then is what the
 * view serves no older than the event being completed. A stream of its own
 * may be ahead of the view's (the view not told of this event yet, its
 * kept status of the event's own container still the one before it). */
static int fed_by_view(const struct events_state *st)
{
    return crisp_list_is_linked(&st->sub.link) && !st->sub.waiting;
}

/* A kept status answer of the view (packed), unpacked into the event's
 * arena; NULL when the view has none, or the events do not come from its
 * stream. */
static const ProtobufCMessage *status_from_view(struct dk_op *op, int rpc, const char *id)
{
    struct events_state *st = op->state;
    size_t len;
    const uint8_t *p = fed_by_view(st) ? dk_view_status(op->be, rpc, id, &len) : NULL;
    if (!p)
        return NULL;
    ProtobufCAllocator alloc = dk_arena_allocator(&st->a);
    const ProtobufCMessageDescriptor *d = rpc == CRISP_RPC_POD_SANDBOX_STATUS
                                              ? &runtime__v1__pod_sandbox_status_response__descriptor
                                              : &runtime__v1__container_status_response__descriptor;
    return protobuf_c_message_unpack(d, &alloc, len, p);
}

static void on_sandbox(struct dk_op *op, int status, cJSON *json)
{
    struct events_state *st = op->state;
    if (status == 200 && !dk_inspect_absent(status, json, DK_TYPE_SANDBOX)) {
        Runtime__V1__PodSandboxStatusResponse r = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT;
        r.status = st->sandbox = dk_sandbox_status(&st->a, json);
        if (r.status)
            dk_keep_status(op->be, CRISP_RPC_POD_SANDBOX_STATUS, st->pod, json, st->gen, &r.base);
    }
    answered(op);
}

static void sandbox_status(struct dk_op *op)
{
    struct events_state *st = op->state;
    const Runtime__V1__PodSandboxStatusResponse *kept =
        (const void *)status_from_view(op, CRISP_RPC_POD_SANDBOX_STATUS, st->pod);
    if (kept) {
        st->sandbox = kept->status;
        return;
    }
    st->waiting++;
    dk_call(op, "GET", NULL, on_sandbox, "/containers/%s/json", st->pod);
}

/* A member's inspect: its status, when it is a container of the pod. */
static void on_member(struct dk_op *op, int status, cJSON *json)
{
    struct events_state *st = op->state;
    Runtime__V1__ContainerStatus **slot = op->cur_ud;
    if (status == 200 && !dk_inspect_absent(status, json, DK_TYPE_CONTAINER) &&
        dk_str_is(dk_entry_labels(json), DK_LABEL_SANDBOX_ID, st->pod)) {
        Runtime__V1__ContainerStatusResponse r = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
        r.status = *slot = dk_container_status(&st->a, json);
        if (r.status)
            dk_keep_status(op->be, CRISP_RPC_CONTAINER_STATUS, dk_str(json, "Id"), json, st->gen, &r.base);
    }
    answered(op);
}

/* Each member's status: the view's kept one when it is sure to be the
 * pod's, else its inspect (a full ID: it goes into the target unescaped,
 * and a stream's arena would keep every escape until it ends). */
static void members_status(struct dk_op *op, const struct dk_member *m, size_t n)
{
    struct events_state *st = op->state;
    st->ctrs = dk_alloc(&st->a, (n ? n : 1) * sizeof(*st->ctrs));
    for (size_t i = 0; st->ctrs && i < n; i++) {
        Runtime__V1__ContainerStatus **slot = &st->ctrs[st->nctrs++];
        const Runtime__V1__ContainerStatusResponse *kept =
            m[i].sure ? (const void *)status_from_view(op, CRISP_RPC_CONTAINER_STATUS, m[i].id) : NULL;
        if (kept) {
            *slot = kept->status;
            continue;
        }
        st->waiting++;
        dk_callx(op, "GET", NULL, on_member, slot, "/containers/%s/json", m[i].id);
    }
}

/* The pod's containers, listed by the engine (the view holds no listing). */
static void on_members(struct dk_op *op, int status, cJSON *json)
{
    size_t n = status == 200 ? (size_t)cJSON_GetArraySize(json) : 0;
    struct dk_member *m = n ? calloc(n, sizeof(*m)) : NULL;
    size_t k = 0;
    const cJSON *e;
    if (m) {
        cJSON_ArrayForEach(e, json) {
            if (dk_full_id(dk_str(e, "Id"))) {
                memcpy(m[k].id, dk_str(e, "Id"), DK_ID_LEN + 1);
                m[k++].sure = 1;
            }
        }
    }
    members_status(op, m, k);
    free(m);
    keep_stream_resumable(op);
    answered(op);
}

static void list_members(struct dk_op *op)
{
    struct events_state *st = op->state;
    struct dk_member *m = NULL;
    size_t n = 0;
    if (fed_by_view(st) && dk_view_members(op->be, st->pod, &m, &n) == 0) {
        members_status(op, m, n);
        free(m);
        return;
    }
    char *filters = dk_label_filters(DK_TYPE_CONTAINER, st->pod, 0, NULL);
    if (!filters) {
        st->a.oom = 1; /* answered RESOURCE_EXHAUSTED when sent */
        return;
    }
    st->waiting++;
    dk_call(op, "GET", NULL, on_members, "/containers/json?all=1&filters=%s", filters);
    free(filters);
}

/* Gathers the pod's sandbox status and its containers' (an event of no
 * full sandbox ID is sent as it says). Holds a share of st->waiting while
 * it asks, so that nothing is sent before it is done. */
static void complete(struct dk_op *op)
{
    struct events_state *st = op->state;
    const char *pod = st->e.resp.pod_sandbox_status ? st->e.resp.pod_sandbox_status->id : "";
    st->waiting = 1;
    if (dk_full_id(pod)) {
        st->pod = pod;
        st->gen = dk_view_gen(op->be);
        sandbox_status(op);
        list_members(op);
        keep_stream_resumable(op);
    }
    answered(op);
}

/* ---- the queue of events ------------------------------------------------------- */

/* Whether the client has yet to read what was sent. */
static int client_slow(struct dk_op *op)
{
    return op->call && crisp_call_out_full(op->call);
}

/* Takes queued lines until one is a pod's event and starts completing it;
 * none while the client has not read what was sent. */
static void next_event(struct dk_op *op)
{
    struct events_state *st = op->state;
    st->in_next = 1;
    while (!st->busy && st->qlen && !dk_op_ended(op) && !client_slow(op)) {
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
    st->in_next = 0;
    if (st->paused && st->qlen < QUEUE_PAUSE / 2 && st->stream && !client_slow(op)) {
        st->paused = 0;
        h1_resume(st->stream);
    }
}

/* A whole event line: queued; -1 when the op ended. */
static int queue_line(struct dk_op *op, const char *line, size_t len)
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
    memcpy(copy, line, len);
    copy[len] = 0;
    st->queue[(st->qhead + st->qlen++) % QUEUE_MAX] = copy;
    return 0;
}

/* The client read what was sent: events are completed again. */
static void events_drained(struct dk_op *op)
{
    struct events_state *st = op->state;
    if (st->stream && !st->paused)
        h1_resume(st->stream);
    next_event(op);
}

/* ---- fed by the view's stream --------------------------------------------------- */

static void view_event(struct dk_view_sub *s, const cJSON *ev, const char *line, size_t n)
{
    struct events_state *st = crisp_container_of(s, struct events_state, sub);
    struct dk_op *op = st->op;
    struct dk_event e;
    if (dk_event_from_json(ev, &e) < 0)
        return; /* not a pod's, or not an event the CRI has */
    dk_op_hold(op);
    if (queue_line(op, line, n) == 0)
        next_event(op);
    dk_op_release(op);
}

static void view_lost(struct dk_view_sub *s, const char *why)
{
    struct events_state *st = crisp_container_of(s, struct events_state, sub);
    dk_op_fail(st->op, GRPC_UNAVAILABLE, "%s", why);
}

static void own_stream(struct dk_op *op);

/* The view's stream did not open: a stream of its own instead. */
static void view_unfed(struct dk_view_sub *s)
{
    struct events_state *st = crisp_container_of(s, struct events_state, sub);
    dk_op_hold(st->op);
    own_stream(st->op);
    dk_op_release(st->op);
}

/* ---- or by its own ---------------------------------------------------------------- */

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
    st->len = 0;
    st->overflow = 0;
    return whole ? queue_line(op, st->line, len) : 0;
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
    } else if (client_slow(op)) {
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

static void own_stream(struct dk_op *op)
{
    struct events_state *st = op->state;
    st->line = malloc(EVENT_LINE_MAX);
    if (!st->line) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* Type only: podman's label filter does not match a bare key. Events
     * of containers that are not pods' are dropped here. */
    static const char target[] = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
    struct h1_req_opts o = {.method = "GET", .target = target}; /* {"type":["container"]} */
    dk_call_opts(op, &o, &events_cbs);
    st->stream = op->h1;
}

static void dk_events(struct dk_op *op)
{
    struct events_state *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    st->op = op;
    st->sub.on_event = view_event;
    st->sub.on_lost = view_lost;
    st->sub.on_unfed = view_unfed;
    op->state = st;
    op->free_state = events_state_free;
    op->drained = events_drained;
    if (dk_view_subscribe(op->be, &st->sub) < 0)
        own_stream(op);
}

const struct dk_method dk_event_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_GET_CONTAINER_EVENTS] = {dk_events, .slow = 1},
};
