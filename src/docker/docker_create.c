/* docker_create.c - the step RunPodSandbox and CreateContainer share:
 * POST /containers/create under cri-dockerd's name, once more under a
 * renamed name when it is taken (as cri-dockerd does: a leftover of the
 * same attempt), and the container removed again when the call went away
 * meanwhile (nobody would learn its ID).
 *
 * A sandbox name taken by a sandbox that never started is a half-made one
 * (a RunPodSandbox that failed half-way, its removal lost with the engine
 * or with crisp): it is removed and its name taken again. What an op made
 * and could not remove (the engine went away) is left to the reaper
 * below, which retries the removal until the engine is back. A sandbox
 * the engine made while its answer was lost (the engine killed between
 * the two) is one nobody knows the ID of: every 30 s crisp lists the
 * sandboxes in state "created" that it made (io.crisp.created-at) over a
 * minute ago, which no RunPodSandbox still runs for (it starts the sandbox
 * right after creating it), and removes them. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

#define REAP_MAX 1024             /* removals waiting at once */
#define REAP_DELAY_MAX_S 30
#define REAP_GIVE_UP_S (30 * 60)  /* then the kubelet's garbage collection */
#define SWEEP_S 30                /* sandboxes left created are looked for */
#define LEFTOVER_AGE_S 60         /* created this long ago and never started */

static void create_issue(struct dk_op *op, struct dk_create *c);

/* A rename suffix from the kernel's random source: a fresh crisp must not
 * pick the suffix the last one picked (random() unseeded did). */
static unsigned random_suffix(void)
{
    unsigned v = 0;
    while (getrandom(&v, sizeof(v), 0) < 0 && errno == EINTR)
        ;
    return v;
}

static void on_rolled_back(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    (void)json;
    if (status != 204 && status != 404)
        log_warn("docker_rollback_failed", "container=%s status=%d", c->id, status);
    else
        op->undo_id[0] = 0;
    dk_op_end(op); /* cancelled: nobody waits for an answer */
}

static void rename_and_retry(struct dk_op *op, struct dk_create *c)
{
    dk_rename(c->name, random_suffix()); /* a suffix the name parser ignores */
    c->renamed = 1;
    create_issue(op, c);
}

static void on_leftover_removed(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    (void)json;
    if (status == 204 || status == 404) {
        log_info("docker_leftover_removed", "name=%s", crisp_logq(c->name));
        create_issue(op, c);
    } else {
        rename_and_retry(op, c);
    }
}

/* The object holding the name: a sandbox that never started is removed,
 * anything else keeps it (the new one is renamed). */
static void on_name_holder(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    const cJSON *state = dk_obj(json, "State");
    if (status == 200 && dk_str_is(dk_entry_labels(json), DK_LABEL_TYPE, DK_TYPE_SANDBOX) &&
        dk_str_is(state, "Status", "created") && dk_time_ns(dk_str(state, "StartedAt")) == 0) {
        dk_callx(op, "DELETE", NULL, on_leftover_removed, c, "/containers/%s?force=1&v=1",
                 dk_str(json, "Id"));
        return;
    }
    rename_and_retry(op, c);
}

static void on_created(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    if (status == 500 && strstr(dk_errmsg(json, status), "already in use"))
        status = 409; /* podman's answer to a name that is taken */
    if (status == 409 && !c->renamed && c->sandbox && !c->reclaimed) {
        c->reclaimed = 1;
        dk_callx(op, "GET", NULL, on_name_holder, c, "/containers/%s/json", dk_esc(op, c->name));
        return;
    }
    if (status == 409 && !c->renamed) {
        rename_and_retry(op, c);
        return;
    }
    if (status != 201) {
        dk_fail_http(op, status, json, c->what);
        return;
    }
    snprintf(c->id, sizeof(c->id), "%s", dk_str(json, "Id"));
    snprintf(op->undo_id, sizeof(op->undo_id), "%s", c->id); /* until the op succeeds */
    if (op->cancelled)
        dk_callx(op, "DELETE", NULL, on_rolled_back, c, "/containers/%s?force=1&v=1", c->id);
    else
        c->made(op);
}

static void create_issue(struct dk_op *op, struct dk_create *c)
{
    char name[DK_NAME_MAX * 3 + 1]; /* escaped: fits whatever the name holds */
    int fits = dk_url_esc(name, sizeof(name), c->name) == 0;
    assert(fits);
    (void)fits;
    if (op->cancelled) {
        dk_op_end(op); /* nothing made yet */
        return;
    }
    dk_callx(op, "POST", cJSON_Duplicate(c->body, 1), on_created, c,
             "/containers/create?name=%s", name);
}

void dk_create_named(struct dk_op *op, struct dk_create *c)
{
    assert(op->must_finish && c->body && c->made);
    create_issue(op, c);
}

/* ---- the reaper ------------------------------------------------------------------------ */

struct dk_reap {
    struct crisp_list link; /* in be->reaps */
    struct dk_be *be;
    char id[80];
    unsigned tries;
    int64_t since;          /* CLOCK_MONOTONIC seconds */
    struct event *timer;
    struct h1_req *req;
};

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void reap_free(struct dk_reap *r)
{
    crisp_list_unlink(&r->link);
    if (r->req)
        h1_cancel(r->req);
    if (r->timer)
        event_free(r->timer);
    free(r);
}

static void reap_try(evutil_socket_t fd, short what, void *arg);

static void reap_later(struct dk_reap *r)
{
    unsigned delay = r->tries < 5 ? 1u << r->tries : REAP_DELAY_MAX_S;
    struct timeval tv = {delay < REAP_DELAY_MAX_S ? delay : REAP_DELAY_MAX_S, 0};
    if (mono_s() - r->since > REAP_GIVE_UP_S || evtimer_add(r->timer, &tv) < 0) {
        log_warn("docker_leftover_kept", "container=%s tries=%u why=\"the engine did not remove "
                 "it; the kubelet's garbage collection will\"", r->id, r->tries);
        reap_free(r);
    }
}

static void on_reaped(struct h1_req *h, int err, const char *errmsg, int status,
                      const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)body;
    (void)len;
    struct dk_reap *r = ud;
    r->req = NULL;
    r->tries++;
    if (!err && (status == 204 || status == 404)) {
        log_info("docker_leftover_removed", "container=%s tries=%u", r->id, r->tries);
        reap_free(r);
        return;
    }
    log_debug("docker_leftover_retry", "container=%s status=%d why=%s", r->id, status,
              crisp_logq(err ? errmsg : "engine error"));
    reap_later(r);
}

static const struct h1_req_cbs reap_cbs = {.on_done = on_reaped};

static void reap_try(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_reap *r = arg;
    char target[200];
    snprintf(target, sizeof(target), "%s%s/containers/%s?force=1&v=1", *r->be->api ? "/v" : "",
             r->be->api, r->id);
    struct h1_req_opts o = {.method = "DELETE", .target = target, .timeout_ms = 30000};
    r->req = h1_request(r->be->pool, &o, &reap_cbs, r);
    if (!r->req)
        reap_later(r);
}

static int reaping(struct dk_be *be, const char *id)
{
    crisp_list_for_each(&be->reaps, it) {
        if (strcmp(crisp_container_of(it, struct dk_reap, link)->id, id) == 0)
            return 1;
    }
    return 0;
}

void dk_reap(struct dk_be *be, const char *id)
{
    if (reaping(be, id))
        return;
    size_t n = crisp_list_count(&be->reaps);
    struct dk_reap *r = n < REAP_MAX && strlen(id) < sizeof(r->id) ? calloc(1, sizeof(*r)) : NULL;
    if (r)
        r->timer = evtimer_new(be->evb, reap_try, r);
    if (!r || !r->timer) {
        log_warn("docker_leftover_kept", "container=%s why=\"too many removals waiting\"", id);
        free(r);
        return;
    }
    r->be = be;
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->since = mono_s();
    crisp_list_push_front(&be->reaps, &r->link);
    log_info("docker_leftover", "container=%s why=\"its call failed before it was removed\"", id);
    reap_try(-1, 0, r);
}

/* ---- the sweep: sandboxes made and never started ------------------------------------------ */

static void sweep_later(struct dk_be *be)
{
    struct timeval tv = {SWEEP_S, 0};
    evtimer_add(be->sweep, &tv);
}

/* Removes what in a listing of sandboxes crisp made long ago and never
 * started. */
static void sweep_list(struct dk_be *be, const cJSON *list)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t old = ((int64_t)now.tv_sec - LEFTOVER_AGE_S) * 1000000000LL;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        int64_t made = dk_created_ns(dk_entry_labels(c), 0); /* crisp's label: crisp made it */
        if (made > 0 && made < old && dk_str_is(c, "State", "created"))
            dk_reap(be, dk_str(c, "Id"));
    }
}

static void on_swept(struct h1_req *h, int err, const char *errmsg, int status,
                     const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)errmsg;
    struct dk_be *be = ud;
    be->sweep_req = NULL;
    cJSON *list = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    sweep_list(be, list);
    cJSON_Delete(list);
    sweep_later(be);
}

static const struct h1_req_cbs sweep_cbs = {.on_done = on_swept};

static void sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_be *be = arg;
    /* {"label":["io.kubernetes.docker.type=podsandbox"],"status":["created"]} */
    static const char filters[] = "%7B%22label%22%3A%5B%22io.kubernetes.docker.type%3Dpodsandbox%22%5D%2C"
                                  "%22status%22%3A%5B%22created%22%5D%7D";
    char target[300];
    const cJSON *view = be->api[0] ? dk_view_get(be, DK_VIEW_SANDBOXES) : NULL;
    if (!be->api[0] || view) {
        sweep_list(be, view); /* the view's listing: no engine call */
        sweep_later(be);
        return;
    }
    snprintf(target, sizeof(target), "/v%s/containers/json?all=1&filters=%s", be->api, filters);
    struct h1_req_opts o = {.method = "GET", .target = target, .timeout_ms = 60000};
    be->sweep_req = h1_request(be->pool, &o, &sweep_cbs, be);
    if (!be->sweep_req)
        sweep_later(be);
}

int dk_reap_init(struct dk_be *be)
{
    crisp_list_init(&be->reaps);
    be->sweep = evtimer_new(be->evb, sweep, be);
    if (!be->sweep)
        return -1;
    sweep_later(be);
    return 0;
}

void dk_reap_free_all(struct dk_be *be)
{
    if (be->sweep_req)
        h1_cancel(be->sweep_req);
    be->sweep_req = NULL;
    if (be->sweep)
        event_free(be->sweep);
    be->sweep = NULL;
    struct crisp_list *it;
    while ((it = crisp_list_first(&be->reaps))) {
        struct dk_reap *r = crisp_container_of(it, struct dk_reap, link);
        log_warn("docker_leftover_kept", "container=%s why=\"crisp is shutting down\"", r->id);
        reap_free(r);
    }
}
