/* backend.c - backends by kind, and the router that picks one per call. */
#include <stdio.h>
#include <string.h>

#include "crisp/backend.h"
#include "crisp/call.h"

static const struct crisp_backend_ops *const kinds[] = {
    &crisp_backend_cri_ops,
    &crisp_backend_docker_ops,
};

struct crisp_backend *crisp_backend_new(struct event_base *base, const char *spec, char *err,
                                        size_t errlen)
{
    const char *colon = strchr(spec, ':');
    if (!colon) {
        snprintf(err, errlen, "backend %s: want KIND:URL, e.g. cri:unix:///run/containerd/containerd.sock",
                 spec);
        return NULL;
    }
    size_t kl = (size_t)(colon - spec);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i]->kind) == kl && memcmp(kinds[i]->kind, spec, kl) == 0)
            return kinds[i]->create(base, colon + 1, err, errlen);
    }
    snprintf(err, errlen, "backend %s: unknown kind %.*s (known: cri, docker)", spec, (int)kl, spec);
    return NULL;
}

void crisp_backend_free(struct crisp_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

static struct crisp_backend *default_backend;

void crisp_router_set_default(struct crisp_backend *be)
{
    default_backend = be;
}

struct crisp_backend *crisp_router_pick(struct crisp_call *call)
{
    (void)call;
    return default_backend;
}
