/* view.c - the Docker backend's view of the node: the engine's last listing
 * of pod sandboxes and of containers, kept in memory while the engine's
 * event stream says that nothing in them changed, so that the kubelet's
 * relists (every second) and the List calls around them are answered
 * without an engine call.
 *
 * Soft state, never stale knowingly:
 *   - a listing is kept only when it was fetched whole (no label selector)
 *     while the event stream was open, and no change not known entry by
 *     entry happened between its request and its answer (a generation
 *     counter and its barrier);
 *   - a change to one sandbox or container, named by its full ID, marks its
 *     entry stale in its kind's listing, with what the engine must show of
 *     it (running, not running, present, gone: dk_event_expect): a
 *     container event other than exec, health, attach, resize and copy
 *     ones (dk_event_changes_lists; the kind from the type label among the
 *     event's attributes, a container without it is in no list), and the
 *     end of a call of this backend that answered OK, for each sandbox and
 *     container it changed (dk_op_changed; so a List that follows the
 *     answer sees the change: read-your-writes). A listing
 *     with stale entries is not served: the next List asks the engine for
 *     just those (a listing filtered by their IDs, dk_view_patch_filters),
 *     puts them in (dk_view_patch) and serves the listing. An entry the
 *     engine does not show as expected yet (dockerd 20.10 sends "die"
 *     before its listing says so) stays stale, and Lists go to the engine
 *     meanwhile;
 *   - a change not known entry by entry drops both listings (the next List
 *     is a whole listing): an event that cannot be read, names no full ID
 *     or carries no attributes, more than DIRTY_MAX stale entries, the end
 *     of a call that failed or named a container by less than its full ID;
 *     the start of every call that changes lists raises the barrier, so
 *     that no listing asked before it is kept;
 *   - the event stream lost (the engine restarted, the connection cut):
 *     nothing is served from the view until the stream is open again
 *     (retried with back-off from 0.5 s to 30 s); calls go to the engine;
 *   - every 60 s a listing is fetched and compared with the view: a
 *     difference (a missed or late event) is logged and counted, and the
 *     fresh listing replaces the view.
 * Beside the lists, the last ContainerStatus and PodSandboxStatus answer of
 * each sandbox and container (not verbose; packed, facts.c), served again
 * while nothing says it changed:
 *   - kept only when nothing changed anywhere between the inspect's request
 *     and its answer (the generation counter), the ID is a full one, and
 *     the inspect shows what the last change marked on its entry in a
 *     listing expects (running, not running...);
 *   - forgotten when its entry is marked stale (an event, the end of a call
 *     that changed it), when a network event says the container was
 *     connected or disconnected (its IPs), when the lists are dropped, when
 *     a reconciliation finds a difference, and when the event stream is
 *     lost;
 *   - served for at most 60 s (the reconciliation's period): an event the
 *     engine never sent leaves it stale no longer than a listing;
 *   - at most DK_STATUS_BYTES_MAX bytes kept in all.
 * Beside the lists, what the stats calls need of each container (facts.c):
 *   - its PID, from an inspect made by a stats call, kept with the
 *     process's start time while no event says the container changed (a
 *     start, die, destroy... of that ID forgets it; a reused PID shows as
 *     another start time); never served while the event stream is down;
 *   - its writable layer's size, a disk walk in the engine (the `size=1`
 *     listing): refreshed in the background, asked by the stats calls, at
 *     most once per --writable-layer-every (60 s), or per 10 s while a
 *     running container has none yet; served with the time it was
 *     measured.
 * GetContainerEvents calls subscribe to the event stream while it is open
 * (docker_events.c): each container event is handed on once the view took
 * it in, the pods' members come from the container listing and their
 * statuses from the kept answers; an inspect answer that could not be kept
 * forgets an older kept one of its ID, so that no status goes back in
 * time. They end when the stream does.
 * A crisp restart starts with an empty view; nothing is written anywhere. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "docker.h"
#include "crisp/log.h"

#define LINE_MAX_BYTES (256 * 1024)
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000
#define RECONCILE_S 60
#define LIST_BODY_MAX (64u << 20)
#define SIZES_MISSING_S 10
#define SIZES_TIMEOUT_MS 120000
#define DIRTY_MAX 32 /* stale IDs patched in one listing; more: the whole listing again */
#define STATUS_MAX_AGE_MS (RECONCILE_S * 1000)

static const char *const kind_type[DK_VIEW_KINDS] = {
    [DK_VIEW_SANDBOXES] = DK_TYPE_SANDBOX,
    [DK_VIEW_CONTAINERS] = DK_TYPE_CONTAINER,
};
static const char *const kind_name[DK_VIEW_KINDS] = {
    [DK_VIEW_SANDBOXES] = "sandboxes",
    [DK_VIEW_CONTAINERS] = "containers",
};

struct view_check {
    struct dk_view *v;
    int kind;
    uint64_t gen;
    struct h1_req *r;
};

/* A container whose entry in a listing may be stale since generation seq,
 * and what the engine must show of it before it counts as seen. */
struct dirty_id {
    char id[DK_ID_LEN + 1];
    uint64_t seq;
    enum dk_expect expect;
};

/* A listing, shared by the view and the calls that hold it. */
struct dk_held {
    cJSON *json;
    int refs;
};

struct dk_view {
    struct dk_be *be;
    struct h1_req *events;   /* the event stream's request, while open */
    int live;                /* its head arrived (200): events flow */
    uint64_t gen;            /* bumped by anything that may change a list */
    uint64_t barrier;        /* the gen of the last change not known entry by
                              * entry: no listing asked before it is kept */
    uint64_t epoch;          /* bumped when the event stream opens or is lost */
    struct dk_held *list[DK_VIEW_KINDS];
    struct dirty_id dirty[DK_VIEW_KINDS][DIRTY_MAX]; /* entries of list[k] to patch */
    unsigned ndirty[DK_VIEW_KINDS];
    uint8_t *packed[DK_VIEW_KINDS]; /* the unfiltered List answer of list[k] */
    size_t packed_len[DK_VIEW_KINDS];
    struct view_check check[DK_VIEW_KINDS]; /* reconciliation listings */
    struct event *retry;
    unsigned retry_ms;
    struct event *reconcile;
    char *line;
    size_t len;
    int overflow;
    unsigned long served, missed, patched, statuses_served;
    struct dk_facts facts;    /* PIDs and writable layer sizes, by container ID */
    struct h1_req *sizes;     /* the size=1 listing in flight */
    uint64_t sizes_epoch;     /* the epoch it was asked in */
    int64_t sizes_asked_ms;   /* when the last one was asked (monotonic), 0: never */
    int sized;                /* sizes were measured in this epoch */
    struct crisp_list subs;   /* GetContainerEvents calls fed by the stream (dk_view_sub) */
    struct crisp_list waiting; /* and those waiting for it to open */
};

/* ---- the lists ---------------------------------------------------------- */

static struct dk_held *held_new(cJSON *json)
{
    struct dk_held *h = malloc(sizeof(*h));
    if (h)
        *h = (struct dk_held){json, 1};
    else
        cJSON_Delete(json);
    return h;
}

void dk_view_release(struct dk_held *h)
{
    if (h && --h->refs == 0) {
        cJSON_Delete(h->json);
        free(h);
    }
}

static void drop_packed(struct dk_view *v, int k)
{
    free(v->packed[k]);
    v->packed[k] = NULL;
}

static void drop_list(struct dk_view *v, int k)
{
    dk_view_release(v->list[k]);
    v->list[k] = NULL;
    v->ndirty[k] = 0;
    drop_packed(v, k);
}

static void drop_lists(struct dk_view *v)
{
    v->barrier = ++v->gen;
    for (int k = 0; k < DK_VIEW_KINDS; k++)
        drop_list(v, k);
    dk_facts_forget_statuses(&v->facts);
}

/* Where id is among kind's stale entries; v->ndirty[kind] when it is not. */
static unsigned dirty_index(const struct dk_view *v, int kind, const char *id)
{
    unsigned i = 0;
    while (i < v->ndirty[kind] && strcmp(v->dirty[kind][i].id, id) != 0)
        i++;
    return i;
}

/* Container id (a full ID) of kind changed: its entry is stale from now on,
 * until a listing meets expect. Kept while the view has no listing of
 * kind too: the next whole listing must meet it. */
static void mark_stale(struct dk_view *v, int kind, const char *id, enum dk_expect expect)
{
    v->gen++;
    drop_packed(v, kind);
    struct dk_fact *f = dk_fact_get(&v->facts, id);
    if (f)
        dk_fact_forget_status(&v->facts, f);
    unsigned i = dirty_index(v, kind, id);
    if (i == DIRTY_MAX) {
        drop_list(v, kind); /* too many to patch: a whole listing is cheaper */
        return;
    }
    if (i == v->ndirty[kind]) {
        memcpy(v->dirty[kind][i].id, id, DK_ID_LEN + 1);
        v->ndirty[kind]++;
    }
    v->dirty[kind][i].seq = v->gen;
    v->dirty[kind][i].expect = expect; /* the latest change's */
}

void dk_view_changed(struct dk_be *be, const struct dk_change *changes, int known)
{
    struct dk_view *v = be->view;
    if (!v)
        return;
    for (const struct dk_change *c = changes; known && c; c = c->next)
        known = dk_full_id(c->id) && c->kind >= 0 && c->kind < DK_VIEW_KINDS;
    if (!known) {
        drop_lists(v);
        return;
    }
    for (const struct dk_change *c = changes; c; c = c->next)
        mark_stale(v, c->kind, c->id, c->expect);
}

void dk_view_may_change(struct dk_be *be)
{
    if (be->view)
        be->view->barrier = ++be->view->gen;
}

int dk_view_changes_lists(int rpc)
{
    switch (rpc) {
    case CRISP_RPC_RUN_POD_SANDBOX:
    case CRISP_RPC_STOP_POD_SANDBOX:
    case CRISP_RPC_REMOVE_POD_SANDBOX:
    case CRISP_RPC_CREATE_CONTAINER:
    case CRISP_RPC_START_CONTAINER:
    case CRISP_RPC_STOP_CONTAINER:
    case CRISP_RPC_REMOVE_CONTAINER:
        return 1;
    default:
        return 0;
    }
}

/* Whether the view holds a listing of kind it may serve. */
static int current(const struct dk_view *v, int kind)
{
    return v && v->live && v->list[kind] && v->ndirty[kind] == 0;
}

const uint8_t *dk_view_packed(struct dk_be *be, int kind, size_t *len)
{
    struct dk_view *v = be->view;
    if (!current(v, kind) || !v->packed[kind])
        return NULL;
    v->served++;
    *len = v->packed_len[kind];
    return v->packed[kind];
}

void dk_view_keep_packed(struct dk_be *be, int kind, const uint8_t *p, size_t len)
{
    struct dk_view *v = be->view;
    if (!current(v, kind))
        return;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, p, len);
    free(v->packed[kind]);
    v->packed[kind] = copy;
    v->packed_len[kind] = len;
}

uint64_t dk_view_gen(const struct dk_be *be)
{
    return be->view ? be->view->gen : 0;
}

static void start_events(struct dk_view *v);

const cJSON *dk_view_get(struct dk_be *be, int kind)
{
    struct dk_view *v = be->view;
    if (!v)
        return NULL;
    if (!v->events && !evtimer_pending(v->retry, NULL))
        start_events(v);
    if (!current(v, kind))
        return NULL;
    v->served++;
    return v->list[kind]->json;
}

const cJSON *dk_view_hold(struct dk_be *be, int kind, struct dk_held **held)
{
    const cJSON *list = dk_view_get(be, kind);
    *held = list ? be->view->list[kind] : NULL;
    if (*held)
        (*held)->refs++;
    return list;
}

void dk_view_put(struct dk_be *be, int kind, uint64_t gen, const cJSON *list)
{
    struct dk_view *v = be->view;
    if (!v || !v->live || gen < v->barrier || !cJSON_IsArray(list))
        return;
    struct dk_held *copy = held_new(cJSON_Duplicate(list, 1));
    if (!copy || !copy->json) {
        dk_view_release(copy);
        return; /* memory short: served from the engine */
    }
    /* the entries marked stale before it was asked and shown as expected
     * are seen; the others stay stale (changed since, or not shown yet) */
    struct dirty_id keep[DIRTY_MAX];
    unsigned kept = 0;
    for (unsigned i = 0; i < v->ndirty[kind]; i++) {
        const struct dirty_id *d = &v->dirty[kind][i];
        if (d->seq > gen || !dk_listing_meets(list, d->id, d->expect))
            keep[kept++] = *d;
    }
    drop_list(v, kind);
    v->list[kind] = copy;
    memcpy(v->dirty[kind], keep, kept * sizeof(keep[0]));
    v->ndirty[kind] = kept;
}

char *dk_view_patch_filters(struct dk_be *be, int kind, uint64_t *seq)
{
    struct dk_view *v = be->view;
    if (!v || !v->live || !v->list[kind] || !v->ndirty[kind])
        return NULL;
    const char *ids[DIRTY_MAX];
    for (unsigned i = 0; i < v->ndirty[kind]; i++)
        ids[i] = v->dirty[kind][i].id;
    *seq = v->gen;
    return dk_id_filters(kind_type[kind], ids, v->ndirty[kind]);
}

/* The entry of id in the array list, or NULL. */
static cJSON *entry_of(const cJSON *list, const char *id)
{
    cJSON *e;
    cJSON_ArrayForEach(e, list) {
        if (strcmp(dk_str(e, "Id"), id) == 0)
            return e;
    }
    return NULL;
}

/* The stale entry of id in list made as the engine's answer says: replaced,
 * added first (the engine lists the newest first), or removed. -1 when
 * memory is short. */
static int patch_entry(cJSON *list, const char *id, const cJSON *answer)
{
    cJSON *old = entry_of(list, id), *now = entry_of(answer, id);
    cJSON *copy = now ? cJSON_Duplicate(now, 1) : NULL;
    if (now && !copy)
        return -1;
    if (old && copy)
        return cJSON_ReplaceItemViaPointer(list, old, copy) ? 0 : (cJSON_Delete(copy), -1);
    if (old)
        cJSON_Delete(cJSON_DetachItemViaPointer(list, old));
    else if (copy && !cJSON_InsertItemInArray(list, 0, copy)) {
        cJSON_Delete(copy);
        return -1;
    }
    return 0;
}

/* The listing of kind, to be changed: copied first when a call holds it. */
static cJSON *own_list(struct dk_view *v, int kind)
{
    struct dk_held *h = v->list[kind];
    if (h->refs == 1)
        return h->json;
    struct dk_held *copy = held_new(cJSON_Duplicate(h->json, 1));
    if (!copy || !copy->json) {
        dk_view_release(copy);
        return NULL;
    }
    dk_view_release(h);
    v->list[kind] = copy;
    return copy->json;
}

void dk_view_patch(struct dk_be *be, int kind, uint64_t seq, const cJSON *answer)
{
    struct dk_view *v = be->view;
    if (!v || !v->live || !v->list[kind] || seq < v->barrier || !cJSON_IsArray(answer))
        return;
    cJSON *list = own_list(v, kind);
    unsigned kept = 0;
    for (unsigned i = 0; list && i < v->ndirty[kind]; i++) {
        struct dirty_id *d = &v->dirty[kind][i];
        if (d->seq > seq || !dk_listing_meets(answer, d->id, d->expect))
            v->dirty[kind][kept++] = *d; /* changed again since, or not shown yet */
        else if (patch_entry(list, d->id, answer) < 0)
            list = NULL;
    }
    if (!list) {
        drop_list(v, kind); /* memory short: a whole listing next time */
        return;
    }
    v->ndirty[kind] = kept;
    drop_packed(v, kind);
    v->patched++;
}

/* ---- statuses ------------------------------------------------------------------- */

static struct dk_fact *fact_add(struct dk_view *v, const char *id);

/* Whether inspect, of id, shows what the last change marked on id's entry
 * in a listing expects (dockerd 20.10 sends "die" before it lists the
 * container as exited: an answer older than the event is not kept). */
static int shows_changes(const struct dk_view *v, const char *id, const cJSON *inspect)
{
    for (int k = 0; k < DK_VIEW_KINDS; k++) {
        unsigned i = dirty_index(v, k, id);
        if (i < v->ndirty[k] && !dk_inspect_meets(inspect, v->dirty[k][i].expect))
            return 0;
    }
    return 1;
}

const uint8_t *dk_view_status(struct dk_be *be, int rpc, const char *id, size_t *len)
{
    struct dk_view *v = be->view;
    struct dk_fact *f = v && v->live ? dk_fact_get(&v->facts, id) : NULL;
    if (!f || !f->status || f->status_rpc != rpc)
        return NULL;
    if (crisp_now_us() / 1000 - f->status_ms >= STATUS_MAX_AGE_MS) {
        dk_fact_forget_status(&v->facts, f); /* against an event the engine never sent */
        return NULL;
    }
    v->statuses_served++;
    *len = f->status_len;
    return f->status;
}

void dk_view_keep_status(struct dk_be *be, int rpc, const char *id, uint64_t gen, const cJSON *inspect,
                         const uint8_t *p, size_t len)
{
    struct dk_view *v = be->view;
    if (!v || !v->live || !dk_full_id(id))
        return;
    if (gen != v->gen || !shows_changes(v, id, inspect)) {
        /* a kept answer asked no later than this one may be older than
         * what this one showed (an event on its way): not served again,
         * so that no status goes back in time */
        struct dk_fact *f = dk_fact_get(&v->facts, id);
        if (f && f->status && f->status_gen <= gen)
            dk_fact_forget_status(&v->facts, f);
        return;
    }
    uint8_t *copy = malloc(len ? len : 1);
    struct dk_fact *f = copy ? fact_add(v, id) : NULL;
    if (!f) {
        free(copy);
        return; /* memory short: the next call asks the engine */
    }
    memcpy(copy, p, len);
    f->status_gen = gen;
    if (dk_fact_keep_status(&v->facts, f, copy, len, rpc, crisp_now_us() / 1000) < 0)
        log_debug("docker_view", "engine=%s statuses_bytes=%zu msg=\"status not kept: the cap is reached\"",
                  crisp_logq(v->be->engine), v->facts.status_bytes);
}

/* ---- GetContainerEvents: the stream's events and the pods' members ----------- */

int dk_view_subscribe(struct dk_be *be, struct dk_view_sub *s)
{
    struct dk_view *v = be->view;
    if (!v)
        return -1;
    if (v->live) {
        s->waiting = 0;
        crisp_list_push_back(&v->subs, &s->link);
        return 0;
    }
    if (!v->events && !evtimer_pending(v->retry, NULL))
        start_events(v);
    if (!v->events)
        return -1; /* waiting to be retried, or it could not start */
    s->waiting = 1;
    crisp_list_push_back(&v->waiting, &s->link);
    return 0;
}

/* The first subscriber of list, let go of; NULL when there is none. */
static struct dk_view_sub *pop_sub(struct crisp_list *list)
{
    if (crisp_list_empty(list))
        return NULL;
    struct dk_view_sub *s = crisp_container_of(list->next, struct dk_view_sub, link);
    crisp_list_unlink(&s->link);
    s->waiting = 0;
    return s;
}

/* The stream opened: those waiting are fed from now on. */
static void feed_waiting(struct dk_view *v)
{
    struct dk_view_sub *s;
    while ((s = pop_sub(&v->waiting)))
        crisp_list_push_back(&v->subs, &s->link);
}

/* The stream failed to open: those waiting open their own. */
static void unfeed_waiting(struct dk_view *v)
{
    struct dk_view_sub *s;
    while ((s = pop_sub(&v->waiting)))
        s->on_unfed(s);
}

void dk_view_unsubscribe(struct dk_view_sub *s)
{
    crisp_list_unlink(&s->link);
}

/* A container event, the view brought up to date with it first: to every
 * subscriber (which may unsubscribe while told). */
static void tell_subs(struct dk_view *v, const cJSON *ev, const char *line, size_t n)
{
    struct crisp_list *it = v->subs.next;
    while (it != &v->subs) {
        struct crisp_list *next = it->next;
        struct dk_view_sub *s = crisp_container_of(it, struct dk_view_sub, link);
        s->on_event(s, ev, line, n);
        it = next;
    }
}

/* The stream ended: every subscriber is told once, and let go. */
static void lose_subs(struct dk_view *v, const char *why)
{
    struct dk_view_sub *s;
    while ((s = pop_sub(&v->subs)))
        s->on_lost(s, why);
}

static int add_member(struct dk_member **m, size_t *n, size_t *cap, const char *id, int sure)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct dk_member *grown = ncap <= DK_MEMBERS_MAX ? realloc(*m, ncap * sizeof(**m)) : NULL;
        if (!grown)
            return -1;
        *m = grown;
        *cap = ncap;
    }
    memcpy((*m)[*n].id, id, DK_ID_LEN + 1);
    (*m)[(*n)++].sure = sure;
    return 0;
}

int dk_view_members(struct dk_be *be, const char *pod, struct dk_member **out, size_t *n)
{
    struct dk_view *v = be->view;
    const int k = DK_VIEW_CONTAINERS;
    struct dk_member *m = NULL;
    size_t cap = 0;
    *n = 0;
    if (!v || !v->live || !v->list[k])
        return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, v->list[k]->json) {
        const char *id = dk_str(e, "Id");
        if (!dk_full_id(id) || !dk_str_is(dk_obj(e, "Labels"), DK_LABEL_SANDBOX_ID, pod))
            continue; /* another pod's: a container never changes pods */
        if (add_member(&m, n, &cap, id, dirty_index(v, k, id) == v->ndirty[k]) < 0)
            goto fail;
    }
    /* stale and not listed: made since the listing, maybe this pod's */
    for (unsigned i = 0; i < v->ndirty[k]; i++)
        if (!entry_of(v->list[k]->json, v->dirty[k][i].id) &&
            add_member(&m, n, &cap, v->dirty[k][i].id, 0) < 0)
            goto fail;
    *out = m;
    return 0;
fail:
    free(m);
    *n = 0;
    return -1;
}

/* ---- what stats need: PIDs and sizes ----------------------------------------- */

/* The entry of id, made when there is none; at the cap, the facts are
 * dropped (soft state) and it is made anew. */
static struct dk_fact *fact_add(struct dk_view *v, const char *id)
{
    struct dk_fact *f = dk_fact_add(&v->facts, id);
    if (!f && v->facts.n >= DK_FACTS_MAX) {
        log_warn("docker_view", "engine=%s facts=%zu msg=\"too many containers known: facts dropped\"",
                 crisp_logq(v->be->engine), v->facts.n);
        dk_facts_clear(&v->facts);
        v->sized = 0;
        f = dk_fact_add(&v->facts, id);
    }
    return f;
}

int dk_view_pid(struct dk_be *be, const char *id)
{
    struct dk_view *v = be->view;
    struct dk_fact *f = v && v->live ? dk_fact_get(&v->facts, id) : NULL;
    if (!f || f->pid <= 0)
        return 0;
    if (dk_proc_start(f->pid) != f->pid_start) {
        dk_fact_forget_pid(f); /* the process ended, its PID maybe reused */
        return 0;
    }
    return f->pid;
}

const struct dk_cgroup *dk_view_cgroup(struct dk_be *be, const char *id, int pid)
{
    struct dk_view *v = be->view;
    struct dk_fact *f = v && v->live ? dk_fact_get(&v->facts, id) : NULL;
    if (!f || f->pid != pid || pid <= 0)
        return NULL;
    if (!f->cg.cpu && dk_cgroup_find(pid, &f->cg) < 0)
        return NULL;
    return &f->cg;
}

void dk_view_cgroup_failed(struct dk_be *be, const char *id)
{
    struct dk_view *v = be->view;
    struct dk_fact *f = v ? dk_fact_get(&v->facts, id) : NULL;
    if (f)
        dk_cgroup_clear(&f->cg);
}

void dk_view_put_pid(struct dk_be *be, const char *id, uint64_t gen, int pid)
{
    struct dk_view *v = be->view;
    if (!v || !v->live || gen != v->gen || pid <= 0)
        return;
    uint64_t start = dk_proc_start(pid);
    struct dk_fact *f = start ? fact_add(v, id) : NULL;
    if (f && (f->pid != pid || f->pid_start != start)) {
        dk_fact_forget_pid(f);
        f->pid = pid;
        f->pid_start = start;
    }
}

int dk_view_stats_ready(struct dk_be *be)
{
    struct dk_view *v = be->view;
    return v && v->live && v->sized && be->cfg.sizes_every_s > 0;
}

int dk_view_size(struct dk_be *be, const char *id, int64_t *bytes, int64_t *ns)
{
    struct dk_view *v = be->view;
    struct dk_fact *f = v && v->live ? dk_fact_get(&v->facts, id) : NULL;
    if (!f || f->size_ns < 0)
        return 0;
    *bytes = f->size_rw;
    *ns = f->size_ns;
    return 1;
}

static void sizes_done(struct h1_req *r, int err, const char *errmsg, int status,
                       const uint8_t *body, size_t body_len, void *ud)
{
    struct dk_view *v = ud;
    (void)r;
    v->sizes = NULL;
    cJSON *list = err || status != 200 ? NULL : cJSON_ParseWithLength((const char *)body, body_len);
    if (!cJSON_IsArray(list)) {
        log_warn("docker_view", "engine=%s sizes=failed status=%d err=%s", crisp_logq(v->be->engine),
                 status, crisp_logq(err ? errmsg : "not a listing"));
    } else if (v->live && v->sizes_epoch == v->epoch) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
        const cJSON *e;
        cJSON_ArrayForEach(e, list) {
            /* dockerd leaves SizeRw out when it is 0 */
            struct dk_fact *f = fact_add(v, dk_str(e, "Id"));
            if (f) {
                f->size_rw = dk_int(e, "SizeRw");
                f->size_ns = ns;
            }
        }
        v->sized = 1;
        log_debug("docker_view", "engine=%s sizes=%d", crisp_logq(v->be->engine), cJSON_GetArraySize(list));
    }
    cJSON_Delete(list);
}

static const struct h1_req_cbs sizes_cbs = {.on_done = sizes_done};

void dk_view_sizes_wanted(struct dk_be *be, int missing)
{
    struct dk_view *v = be->view;
    int every = be->cfg.sizes_every_s;
    if (!v || !v->live || v->sizes || every <= 0)
        return;
    int64_t now = crisp_now_us() / 1000;
    int64_t age = v->sizes_asked_ms ? now - v->sizes_asked_ms : INT64_MAX;
    if (missing || !v->sized)
        every = every < SIZES_MISSING_S ? every : SIZES_MISSING_S;
    if (age < every * 1000LL)
        return;
    char *filters = dk_label_filters(DK_TYPE_CONTAINER, NULL, 0, NULL), *target = NULL;
    if (filters && asprintf(&target, "/v%s/containers/json?size=1&filters=%s", be->api, filters) >= 0) {
        struct h1_req_opts o = {.method = "GET", .target = target, .body_max = LIST_BODY_MAX,
                                .timeout_ms = SIZES_TIMEOUT_MS};
        v->sizes_asked_ms = now;
        v->sizes_epoch = v->epoch;
        v->sizes = h1_request(be->pool, &o, &sizes_cbs, v);
    }
    free(target);
    free(filters);
}

/* What a container event says of its container's facts: a new process, or
 * none (its PID forgotten), or the container gone (its facts with it). */
static void event_facts(struct dk_view *v, const cJSON *ev, const char *action)
{
    const char *id = dk_str(ev, "id");
    if (!*id)
        id = dk_str(dk_obj(ev, "Actor"), "ID");
    if (!*id) {
        dk_facts_forget_pids(&v->facts);
        return;
    }
    if (strcmp(action, "destroy") == 0 || strcmp(action, "remove") == 0) {
        dk_fact_del(&v->facts, id);
        return;
    }
    struct dk_fact *f = dk_fact_get(&v->facts, id);
    if (f)
        dk_fact_forget_pid(f);
}

/* What a container event says of the lists: the entry of a sandbox or a
 * container (by its type label, among the event's attributes) is stale
 * until a listing shows what the event says; a container without the label
 * is in no list; an event naming no full ID or no attributes may have
 * changed anything. */
static void event_lists(struct dk_view *v, const cJSON *ev, const char *action)
{
    const cJSON *actor = dk_obj(ev, "Actor");
    const cJSON *attrs = dk_obj(actor, "Attributes");
    const char *id = dk_str(ev, "id");
    if (!*id)
        id = dk_str(actor, "ID");
    if (!dk_full_id(id) || !cJSON_IsObject(attrs)) {
        drop_lists(v);
        return;
    }
    const char *type = dk_str(attrs, DK_LABEL_TYPE);
    for (int k = 0; k < DK_VIEW_KINDS; k++)
        if (strcmp(type, kind_type[k]) == 0)
            mark_stale(v, k, id, dk_event_expect(action));
}

/* What a network event says of the statuses: a container connected to or
 * disconnected from a network has other IPs in its PodSandboxStatus; one
 * that names no container may concern any of them. Lists show no IP. */
static void event_network(struct dk_view *v, const cJSON *ev, const char *action)
{
    if (strcmp(action, "connect") != 0 && strcmp(action, "disconnect") != 0)
        return;
    const char *id = dk_str(dk_obj(dk_obj(ev, "Actor"), "Attributes"), "container");
    struct dk_fact *f = *id ? dk_fact_get(&v->facts, id) : NULL;
    v->gen++; /* an inspect in flight may predate it */
    if (!*id)
        dk_facts_forget_statuses(&v->facts);
    else if (f)
        dk_fact_forget_status(&v->facts, f);
}

/* ---- the event stream ----------------------------------------------------- */

/* An event that cannot be read might have changed anything. */
static void assume_any_change(struct dk_view *v)
{
    drop_lists(v);
    dk_facts_forget_pids(&v->facts);
}

static void schedule_retry(struct dk_view *v)
{
    struct timeval tv = {v->retry_ms / 1000, (v->retry_ms % 1000) * 1000};
    evtimer_add(v->retry, &tv);
    v->retry_ms = v->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : v->retry_ms * 2;
}

static void event_line(struct dk_view *v, const char *line, size_t n)
{
    cJSON *ev = cJSON_ParseWithLength(line, n);
    const char *type = dk_str(ev, "Type");
    const char *action = dk_str(ev, "Action");
    if (!*action)
        action = dk_str(ev, "status"); /* older engines */
    if (!ev || (!*type && !*action)) {
        assume_any_change(v);
    } else if (strcmp(type, "container") == 0) {
        if (dk_event_changes_lists(action)) {
            event_lists(v, ev, action);
            event_facts(v, ev, action);
        }
        tell_subs(v, ev, line, n);
    } else if (strcmp(type, "network") == 0) {
        event_network(v, ev, action);
    }
    cJSON_Delete(ev);
}

static int events_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct dk_view *v = ud;
    (void)r;
    (void)h;
    if (status != 200)
        return -1; /* on_done says why */
    v->live = 1;
    v->epoch++;
    v->retry_ms = RETRY_MIN_MS;
    drop_lists(v); /* what was listed before the stream opened may be old */
    feed_waiting(v);
    log_info("docker_view", "engine=%s state=live", crisp_logq(v->be->engine));
    return 0;
}

static int events_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct dk_view *v = ud;
    (void)r;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (v->len < LINE_MAX_BYTES)
                v->line[v->len++] = (char)p[i];
            else
                v->overflow = 1;
            continue;
        }
        if (v->overflow)
            assume_any_change(v); /* an event too large to read */
        else if (v->len)
            event_line(v, v->line, v->len);
        v->len = 0;
        v->overflow = 0;
    }
    return 0;
}

static void events_done(struct h1_req *r, int err, const char *errmsg, int status,
                        const uint8_t *body, size_t body_len, void *ud)
{
    struct dk_view *v = ud;
    (void)r;
    (void)body;
    (void)body_len;
    int was_live = v->live;
    v->events = NULL;
    v->live = 0;
    v->epoch++;
    v->len = 0;
    v->overflow = 0;
    drop_lists(v);
    dk_facts_clear(&v->facts); /* what happened meanwhile is not known */
    v->sized = 0;
    if (was_live) {
        char why[512];
        snprintf(why, sizeof(why), "docker engine %s: event stream: %s", v->be->engine,
                 err ? (errmsg ? errmsg : h1_strerror(err)) : "the engine ended it");
        lose_subs(v, why);
        dk_forget_storage_root(v->be); /* maybe restarted with its data elsewhere */
        log_warn("docker_view", "engine=%s state=lost err=%s lists=from_engine", crisp_logq(v->be->engine),
                 crisp_logq(err ? errmsg : "the engine ended its event stream"));
    } else {
        log_debug("docker_view", "engine=%s state=down status=%d err=%s retry_ms=%u",
                  crisp_logq(v->be->engine), status, crisp_logq(err ? errmsg : "refused"), v->retry_ms);
    }
    schedule_retry(v);
    unfeed_waiting(v); /* after the retry is set: they do not wait again */
}

static const struct h1_req_cbs events_cbs = {
    .on_head = events_head, .on_body = events_body, .on_done = events_done};

static void start_events(struct dk_view *v)
{
    char target[128];
    if (!v->be->api[0])
        return; /* the first call learns the API version */
    /* {"type":["container","network"]} */
    snprintf(target, sizeof(target),
             "/v%s/events?filters=%%7B%%22type%%22%%3A%%5B%%22container%%22%%2C%%22network%%22%%5D%%7D",
             v->be->api);
    struct h1_req_opts o = {.method = "GET", .target = target};
    v->events = h1_request(v->be->long_pool, &o, &events_cbs, v);
    if (!v->events)
        schedule_retry(v);
}

static void on_retry(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct dk_view *v = ud;
    if (!v->events)
        start_events(v);
}

/* ---- reconciliation ---------------------------------------------------------- */

/* What the CRI answers are made of, one string per entry, sorted: two
 * listings that give the same CRI lists compare equal. */
static int entry_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **canonical(const cJSON *list, size_t *n)
{
    static const char *const keys[] = {"Id", "Names", "Image", "ImageID", "State", "Created", "Labels"};
    size_t cap = (size_t)cJSON_GetArraySize(list), i = 0;
    char **out = calloc(cap ? cap : 1, sizeof(*out));
    const cJSON *c;
    if (!out)
        return NULL;
    cJSON_ArrayForEach(c, list) {
        cJSON *o = cJSON_CreateObject();
        for (size_t k = 0; o && k < sizeof(keys) / sizeof(keys[0]); k++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, keys[k]);
            if (f)
                cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(f, 1));
        }
        out[i] = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!out[i++])
            break;
    }
    *n = i;
    qsort(out, i, sizeof(*out), entry_cmp);
    return out;
}

static void canonical_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* 1 when the two listings give the same CRI lists, 0 when not, -1 when
 * memory ran short. */
static int same_lists(const cJSON *a, const cJSON *b)
{
    size_t na = 0, nb = 0;
    char **ca = canonical(a, &na), **cb = canonical(b, &nb);
    int same = -1;
    if (ca && cb && na == (size_t)cJSON_GetArraySize(a) && nb == (size_t)cJSON_GetArraySize(b)) {
        same = na == nb;
        for (size_t i = 0; same == 1 && i < na; i++)
            same = strcmp(ca[i], cb[i]) == 0;
    }
    canonical_free(ca, na);
    canonical_free(cb, nb);
    return same;
}

static void check_done(struct h1_req *r, int err, const char *errmsg, int status,
                       const uint8_t *body, size_t body_len, void *ud)
{
    struct view_check *c = ud;
    struct dk_view *v = c->v;
    (void)r;
    (void)errmsg;
    c->r = NULL;
    if (err || status != 200 || c->gen != v->gen || !v->list[c->kind])
        return; /* something changed meanwhile: the view was dropped anyway */
    cJSON *fresh = cJSON_ParseWithLength((const char *)body, body_len);
    if (!cJSON_IsArray(fresh)) {
        cJSON_Delete(fresh);
        return;
    }
    if (v->ndirty[c->kind]) {
        /* entries the engine did not show as expected: nothing changed
         * since this listing was asked, so it is what the engine says */
        drop_list(v, c->kind);
        v->list[c->kind] = held_new(fresh);
        return;
    }
    if (same_lists(v->list[c->kind]->json, fresh) == 0) {
        v->missed++;
        log_warn("docker_view", "engine=%s state=differed kind=%s missed=%lu "
                 "msg=\"the engine's listing differed from the view (a missed or late event): replaced\"",
                 crisp_logq(v->be->engine), kind_name[c->kind], v->missed);
        drop_list(v, c->kind);
        v->list[c->kind] = held_new(fresh);
        /* what the missed event said is not known */
        dk_facts_forget_pids(&v->facts);
        dk_facts_forget_statuses(&v->facts);
        return;
    }
    cJSON_Delete(fresh);
}

static const struct h1_req_cbs check_cbs = {.on_done = check_done};

static void on_reconcile(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct dk_view *v = ud;
    log_debug("docker_view", "engine=%s live=%d served=%lu patched=%lu missed=%lu statuses_served=%lu "
              "statuses_bytes=%zu", crisp_logq(v->be->engine), v->live, v->served, v->patched, v->missed,
              v->statuses_served, v->facts.status_bytes);
    for (int k = 0; k < DK_VIEW_KINDS; k++) {
        struct view_check *c = &v->check[k];
        if (!v->live || !v->list[k] || c->r)
            continue;
        char *filters = dk_label_filters(kind_type[k], NULL, 0, NULL), *target = NULL;
        if (filters && asprintf(&target, "/v%s/containers/json?all=1&filters=%s", v->be->api,
                                filters) >= 0) {
            struct h1_req_opts o = {.method = "GET", .target = target, .body_max = LIST_BODY_MAX};
            c->gen = v->gen;
            c->r = h1_request(v->be->pool, &o, &check_cbs, c);
        }
        free(target);
        free(filters);
    }
}

/* ---- life ------------------------------------------------------------------------ */

int dk_view_new(struct dk_be *be)
{
    struct dk_view *v = calloc(1, sizeof(*v));
    if (!v)
        return -1;
    v->be = be;
    crisp_list_init(&v->subs);
    crisp_list_init(&v->waiting);
    v->retry_ms = RETRY_MIN_MS;
    v->line = malloc(LINE_MAX_BYTES);
    v->retry = evtimer_new(be->evb, on_retry, v);
    v->reconcile = event_new(be->evb, -1, EV_PERSIST, on_reconcile, v);
    struct timeval every = {RECONCILE_S, 0};
    for (int k = 0; k < DK_VIEW_KINDS; k++)
        v->check[k] = (struct view_check){.v = v, .kind = k};
    if (!v->line || !v->retry || !v->reconcile || event_add(v->reconcile, &every) < 0) {
        be->view = v;
        dk_view_free(be);
        return -1;
    }
    be->view = v;
    return 0;
}

void dk_view_free(struct dk_be *be)
{
    struct dk_view *v = be->view;
    if (!v)
        return;
    while (pop_sub(&v->subs) || pop_sub(&v->waiting))
        ; /* their calls end with the backend */
    if (v->events)
        h1_cancel(v->events);
    for (int k = 0; k < DK_VIEW_KINDS; k++)
        if (v->check[k].r)
            h1_cancel(v->check[k].r);
    if (v->sizes)
        h1_cancel(v->sizes);
    dk_facts_clear(&v->facts);
    if (v->retry)
        event_free(v->retry);
    if (v->reconcile)
        event_free(v->reconcile);
    drop_lists(v);
    free(v->line);
    free(v);
    be->view = NULL;
}
