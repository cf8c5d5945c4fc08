/* method.c - the CRI method table, built from the protobuf-c descriptors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/method.h"
#include "runtime_v1.pb-c.h"

static const char *const rpc_names[CRISP_RPC_COUNT] = {CRISP_RPC_NAMES};
static const enum crisp_rpc streaming_rpcs[] = {CRISP_STREAMING_RPCS};
static const char *const v1alpha2_rpcs[] = {CRISP_V1ALPHA2_RPCS};

struct route {
    const char *path;
    size_t len;
    const struct crisp_method *m;
    enum crisp_api api;
};

static struct crisp_method *methods;
static size_t nmethods;
static struct route *routes;
static size_t nroutes;

const char *crisp_api_to_str(enum crisp_api api)
{
    return api == CRISP_API_V1ALPHA2 ? "v1alpha2" : "v1";
}

const char *crisp_service_to_str(enum crisp_service svc)
{
    return svc == CRISP_SVC_IMAGE ? "ImageService" : "RuntimeService";
}

static int is_streaming(enum crisp_rpc id)
{
    for (size_t i = 0; i < sizeof(streaming_rpcs) / sizeof(streaming_rpcs[0]); i++)
        if (streaming_rpcs[i] == id)
            return 1;
    return 0;
}

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return 1;
    return 0;
}

static char *make_path(const char *pkg, enum crisp_service svc, const char *name)
{
    size_t n = strlen(pkg) + strlen(name) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "/%s.%s/%s", pkg, crisp_service_to_str(svc), name);
    return p;
}

static int route_cmp(const void *a, const void *b)
{
    const struct route *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->path, y->path, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static int add_method(const ProtobufCMethodDescriptor *md, enum crisp_service svc)
{
    struct crisp_method *m = &methods[nmethods];
    if (nmethods >= CRISP_RPC_COUNT || strcmp(md->name, rpc_names[nmethods]) != 0)
        return -1; /* the descriptors and the generated enum disagree */
    m->id = (enum crisp_rpc)nmethods;
    m->name = md->name;
    m->svc = svc;
    m->req = md->input;
    m->resp = md->output;
    m->server_streaming = is_streaming(m->id);
    m->path = make_path("runtime.v1", svc, md->name);
    if (!m->path)
        return -1;
    routes[nroutes++] = (struct route){m->path, strlen(m->path), m, CRISP_API_V1};
    if (in_list(md->name, v1alpha2_rpcs, sizeof(v1alpha2_rpcs) / sizeof(v1alpha2_rpcs[0]))) {
        m->alpha_path = make_path("runtime.v1alpha2", svc, md->name);
        if (!m->alpha_path)
            return -1;
        routes[nroutes++] = (struct route){m->alpha_path, strlen(m->alpha_path), m,
                                           CRISP_API_V1ALPHA2};
    }
    nmethods++;
    return 0;
}

int crisp_methods_init(void)
{
    const ProtobufCServiceDescriptor *svcs[] = {
        &runtime__v1__runtime_service__descriptor,
        &runtime__v1__image_service__descriptor,
    };
    methods = calloc(CRISP_RPC_COUNT, sizeof(*methods));
    routes = calloc(CRISP_RPC_COUNT * 2, sizeof(*routes));
    if (!methods || !routes)
        goto fail;
    for (size_t s = 0; s < 2; s++)
        for (unsigned i = 0; i < svcs[s]->n_methods; i++)
            if (add_method(&svcs[s]->methods[i], s ? CRISP_SVC_IMAGE : CRISP_SVC_RUNTIME) < 0)
                goto fail;
    if (nmethods != CRISP_RPC_COUNT)
        goto fail;
    qsort(routes, nroutes, sizeof(*routes), route_cmp);
    return 0;
fail:
    crisp_methods_free();
    return -1;
}

void crisp_methods_free(void)
{
    for (size_t i = 0; methods && i < nmethods; i++) {
        free((char *)methods[i].path);
        free((char *)methods[i].alpha_path);
    }
    free(methods);
    free(routes);
    methods = NULL;
    routes = NULL;
    nmethods = nroutes = 0;
}

size_t crisp_methods_count(void)
{
    return nmethods;
}

const struct crisp_method *crisp_method_at(size_t i)
{
    return i < nmethods ? &methods[i] : NULL;
}

static int known_service(const char *path, size_t n)
{
    static const char *const svcs[] = {
        "/runtime.v1.RuntimeService/", "/runtime.v1.ImageService/",
        "/runtime.v1alpha2.RuntimeService/", "/runtime.v1alpha2.ImageService/"};
    for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
        size_t l = strlen(svcs[i]);
        if (n >= l && memcmp(path, svcs[i], l) == 0)
            return 1;
    }
    return 0;
}

const struct crisp_method *crisp_method_lookup(const char *path, size_t n,
                                               enum crisp_api *api, int *svc_known)
{
    struct route key = {path, n, NULL, CRISP_API_V1};
    const struct route *r = bsearch(&key, routes, nroutes, sizeof(*routes), route_cmp);
    if (svc_known)
        *svc_known = r ? 1 : known_service(path, n);
    if (!r)
        return NULL;
    if (api)
        *api = r->api;
    return r->m;
}
