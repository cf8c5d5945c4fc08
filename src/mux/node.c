/* node.c - the backends of a configuration file, and its reload.
 *
 * crisp --config FILE: every backend of the file is made, a router (mux.c)
 * over them becomes the router's default, and SIGHUP reloads the file
 * without dropping a connection or a call: backends whose entry did not
 * change are kept (their connections too), new ones are made, and what the
 * new file no longer names is retired: destroyed once no call is running on
 * it (a check every 100 ms). A file that does not load, or a backend that
 * cannot be made, keeps the running configuration; the log says why. */
#include <stdlib.h>
#include <string.h>

#include "crisp/backend.h"
#include "crisp/config.h"
#include "crisp/grpc.h"
#include "crisp/list.h"
#include "crisp/log.h"
#include "crisp/node.h"
#include "crisp/subcall.h"
#include "mux.h"

struct node {
    struct crisp_config cfg;
    struct crisp_backend **children;
    struct crisp_backend *mux;
};

static struct event_base *evb;
static struct node *current;
/* What a reload left behind, destroyed once no call runs on it: routers,
 * and backends (once no retired router can start a call on them). */
struct retired {
    struct crisp_backend **v;
    size_t n;
};
static struct retired routers, backends;
static struct event *reap_ev;

/* A first call (Version) to each backend a load makes. One that does not
 * answer is served anyway -- an engine that is down, or not started yet,
 * must not keep crisp from serving the others, nor stop crisp restarting
 * while it is down -- and the log names the file and the field. */
#define CHECK_TIMEOUT_US (30 * 1000000) /* podman's /version takes seconds when busy */

struct check {
    struct crisp_list link;
    struct crisp_subcall *sc;
    char *text; /* file=... field=... endpoint=... */
};
static struct crisp_list checks = {&checks, &checks};

static void check_free(struct check *c)
{
    crisp_list_unlink(&c->link);
    free(c->text);
    free(c);
}

static void on_check_done(struct crisp_subcall *sc)
{
    struct check *c = sc->ud;
    if (sc->call->code == GRPC_OK)
        log_info("backend_answered", "%s", c->text);
    else
        log_warn("backend_unreachable", "%s code=%s err=%s action=\"serving; calls that need it fail "
                 "UNAVAILABLE and Status says not ready until it answers\"", c->text,
                 grpc_code_to_str(sc->call->code), crisp_logq(sc->call->message ? sc->call->message : ""));
    check_free(c);
}

static const struct crisp_subcall_cbs check_cbs = {.on_done = on_check_done};

static void check_backend(const char *file, const struct crisp_config_backend *b,
                          struct crisp_backend *be)
{
    char field[300], text[2048];
    snprintf(field, sizeof(field), "backends.%s.endpoint", b->name);
    snprintf(text, sizeof(text), "file=%s field=%s endpoint=%s", crisp_logq(file),
             crisp_logq(field), crisp_logq(b->kind_url + strlen(b->kind->kind) + 1));
    struct check *c = calloc(1, sizeof(*c));
    if (!c || !(c->text = strdup(text))) {
        free(c);
        return; /* only a log line is lost */
    }
    crisp_list_push_back(&checks, &c->link);
    c->sc = crisp_subcall_new(evb, NULL, CRISP_RPC_VERSION, (const uint8_t *)"", 0, &check_cbs, c);
    if (!c->sc || crisp_call_set_timeout(c->sc->call, CHECK_TIMEOUT_US) < 0) {
        if (c->sc)
            crisp_subcall_cancel(c->sc);
        check_free(c);
        return;
    }
    crisp_subcall_start(c->sc, be);
}

static void node_free(struct node *n)
{
    free(n->children);
    crisp_config_free(&n->cfg);
    free(n);
}

static struct crisp_backend *reuse(const struct crisp_config_backend *b)
{
    for (size_t i = 0; current && i < current->cfg.nbackends; i++)
        if (strcmp(current->cfg.backends[i].name, b->name) == 0 &&
            crisp_config_backend_same(&current->cfg.backends[i], b))
            return current->children[i];
    return NULL;
}

static int is_reused(const struct node *n, const struct crisp_backend *be)
{
    for (size_t i = 0; i < n->cfg.nbackends; i++)
        if (n->children[i] == be)
            return 1;
    return 0;
}

/* Makes the backends of n->cfg (reusing the running ones that did not
 * change) and its router. On failure, destroys what it made. */
static int node_build(struct node *n, char *err, size_t errlen)
{
    n->children = calloc(n->cfg.nbackends, sizeof(*n->children));
    if (!n->children) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n->cfg.nbackends; i++) {
        const struct crisp_config_backend *b = &n->cfg.backends[i];
        char why[512];
        n->children[i] = reuse(b);
        if (!n->children[i])
            n->children[i] = crisp_backend_new(evb, b->kind_url, b->args, b->nargs, why, sizeof(why));
        if (!n->children[i]) {
            snprintf(err, errlen, "%s: backends.%s: %s", n->cfg.path, b->name, why);
            goto fail;
        }
    }
    n->mux = crisp_mux_new(evb, &n->cfg, n->children, err, errlen);
    if (n->mux)
        return 0;
fail:
    for (size_t i = 0; i < n->cfg.nbackends; i++)
        if (n->children[i] && !reuse(&n->cfg.backends[i]))
            crisp_backend_free(n->children[i]);
    return -1;
}

static void retire(struct retired *r, struct crisp_backend *be)
{
    struct crisp_backend **v = realloc(r->v, (r->n + 1) * sizeof(*v));
    if (!v) {
        log_error("config_retire_failed", "backend=%s err=\"out of memory\"", be->name);
        return; /* leaked rather than destroyed under running calls */
    }
    r->v = v;
    r->v[r->n++] = be;
}

/* Destroys what no call runs on any more; returns how many are left. */
static size_t reap(struct retired *r, int allowed)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct crisp_backend *be = r->v[i];
        if (be->inflight || !allowed) {
            r->v[k++] = be;
            continue;
        }
        log_info("backend_retired", "backend=%s", crisp_logq(be->name));
        mux_route_drop_backend(be);
        crisp_backend_free(be);
    }
    r->n = k;
    return k;
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    size_t left = reap(&routers, 1);
    left += reap(&backends, left == 0);
    if (left) {
        struct timeval tv = {0, 100000};
        evtimer_add(reap_ev, &tv);
    }
}

static void install(struct node *n)
{
    struct node *old = current;
    current = n;
    crisp_router_set_default(n->mux);
    if (!old)
        return;
    retire(&routers, old->mux);
    for (size_t i = 0; i < old->cfg.nbackends; i++)
        if (!is_reused(n, old->children[i]))
            retire(&backends, old->children[i]);
    node_free(old);
    on_reap(-1, 0, NULL);
}

static int load(const char *path, char *err, size_t errlen)
{
    struct node *n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (crisp_config_load(path, &n->cfg, err, errlen) < 0 || node_build(n, err, errlen) < 0) {
        node_free(n);
        return -1;
    }
    int *fresh = calloc(n->cfg.nbackends, sizeof(*fresh));
    for (size_t i = 0; fresh && i < n->cfg.nbackends; i++)
        fresh[i] = !reuse(&n->cfg.backends[i]);
    install(n);
    for (size_t i = 0; fresh && i < n->cfg.nbackends; i++)
        if (fresh[i])
            check_backend(path, &n->cfg.backends[i], n->children[i]);
    free(fresh);
    log_info("config_loaded", "file=%s backends=%zu handlers=%zu", crisp_logq(path),
             n->cfg.nbackends, n->cfg.nhandlers);
    return 0;
}

int crisp_node_load(struct event_base *base, const char *path, char *err, size_t errlen)
{
    evb = base;
    if (!reap_ev && !(reap_ev = evtimer_new(base, on_reap, NULL))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return load(path, err, errlen);
}

void crisp_node_reload(void)
{
    char err[1024];
    if (!current)
        return;
    char *path = strdup(current->cfg.path);
    if (!path || load(path, err, sizeof(err)) < 0)
        log_error("config_reload_failed", "file=%s err=%s action=\"kept the running configuration\"",
                  crisp_logq(path ? path : "?"), crisp_logq(path ? err : "out of memory"));
    free(path);
}

const char *crisp_node_describe(void)
{
    return current ? current->mux->name : NULL;
}

void crisp_node_free(void)
{
    while (!crisp_list_empty(&checks)) {
        struct check *c = crisp_container_of(checks.next, struct check, link);
        crisp_subcall_cancel(c->sc);
        check_free(c);
    }
    if (current) {
        crisp_backend_free(current->mux);
        for (size_t i = 0; i < current->cfg.nbackends; i++)
            crisp_backend_free(current->children[i]);
        node_free(current);
        current = NULL;
    }
    struct retired *lists[] = {&routers, &backends};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l]->n; i++)
            crisp_backend_free(lists[l]->v[i]);
        free(lists[l]->v);
        *lists[l] = (struct retired){NULL, 0};
    }
    if (reap_ev)
        event_free(reap_ev);
    reap_ev = NULL;
    mux_routes_free();
}
