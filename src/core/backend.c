/* backend.c - backends by kind, and the router that picks one per call. */
#include <stdio.h>
#include <string.h>

#include "crisp/backend.h"
#include "crisp/call.h"

static const struct crisp_backend_ops *const kinds[] = {
    &crisp_backend_cri_ops,
    &crisp_backend_docker_ops,
};

size_t crisp_backend_kind_count(void)
{
    return sizeof(kinds) / sizeof(kinds[0]);
}

const struct crisp_backend_ops *crisp_backend_kind_at(size_t i)
{
    return i < crisp_backend_kind_count() ? kinds[i] : NULL;
}

static void list_kinds(char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < crisp_backend_kind_count() && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : "", kinds[i]->kind);
}

const struct crisp_backend_ops *crisp_backend_kind_of(const char *kind_url, const char **url,
                                                      char *err, size_t errlen)
{
    char known[128];
    list_kinds(known, sizeof(known));
    const char *colon = strchr(kind_url, ':');
    if (!colon) {
        snprintf(err, errlen, "backend %s: want KIND:URL (kinds: %s), e.g. "
                 "cri:unix:///run/containerd/containerd.sock", kind_url, known);
        return NULL;
    }
    size_t kl = (size_t)(colon - kind_url);
    for (size_t i = 0; i < crisp_backend_kind_count(); i++) {
        if (strlen(kinds[i]->kind) == kl && memcmp(kinds[i]->kind, kind_url, kl) == 0) {
            *url = colon + 1;
            return kinds[i];
        }
    }
    snprintf(err, errlen, "backend %s: unknown kind %.*s (known: %s)", kind_url, (int)kl,
             kind_url, known);
    return NULL;
}

/* Each option must be one of the kind's, and given once unless repeatable. */
static int check_args(const struct crisp_backend_ops *kind, const char *kind_url,
                      const struct crisp_backend_arg *args, size_t nargs, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < nargs; i++) {
        const struct crisp_backend_opt *o = kind->opts;
        while (o && o->name && o != args[i].opt)
            o++;
        if (!o || !o->name) {
            snprintf(err, errlen, "backend %s: option --%s is not one of the %s backend's",
                     kind_url, args[i].opt->name, kind->kind);
            return -1;
        }
        for (size_t j = 0; j < i && !o->repeatable; j++) {
            if (args[j].opt == o) {
                snprintf(err, errlen, "backend %s: option --%s given twice", kind_url, o->name);
                return -1;
            }
        }
    }
    return 0;
}

/* Live instances, for metrics. */
#define MAX_LISTED 64
static struct crisp_backend *listed[MAX_LISTED];
static size_t nlisted;

struct crisp_backend *crisp_backend_new(struct event_base *base, const char *kind_url,
                                        const struct crisp_backend_arg *args, size_t nargs,
                                        char *err, size_t errlen)
{
    const char *url;
    const struct crisp_backend_ops *kind = crisp_backend_kind_of(kind_url, &url, err, errlen);
    if (!kind || check_args(kind, kind_url, args, nargs, err, errlen) < 0)
        return NULL;
    struct crisp_backend_spec spec = {.url = url, .args = args, .nargs = nargs};
    struct crisp_backend *be = kind->create(base, &spec, err, errlen);
    if (be && nlisted < MAX_LISTED)
        listed[nlisted++] = be;
    return be;
}

void crisp_backend_free(struct crisp_backend *be)
{
    if (!be)
        return;
    for (size_t i = 0; i < nlisted; i++) {
        if (listed[i] == be) {
            listed[i] = listed[--nlisted];
            break;
        }
    }
    be->ops->destroy(be);
}

size_t crisp_backend_count(void)
{
    return nlisted;
}

struct crisp_backend *crisp_backend_at(size_t i)
{
    return i < nlisted ? listed[i] : NULL;
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
