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
#include "crisp/log.h"
#include "crisp/node.h"
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
    install(n);
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
