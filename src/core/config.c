/* config.c - crisp's configuration file (see config.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "crisp/config.h"

#define CONFIG_MAX (1 << 20) /* a configuration file larger than this is refused */

struct parse {
    const char *path;
    char *err;
    size_t errlen;
    struct crisp_config *cfg;
};

static int fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parse *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->errlen, "%s: ", p->path);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* No key of obj twice (cJSON keeps both). */
static int check_unique(struct parse *p, const cJSON *obj, const char *where)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        for (const cJSON *b = obj->child; b != it; b = b->next)
            if (strcmp(b->string, it->string) == 0)
                return fail(p, "%s\"%s\": given twice", where, it->string);
    }
    return 0;
}

/* Every key of obj must be one of `known` (a NULL-terminated list), once. */
static int check_keys(struct parse *p, const cJSON *obj, const char *where,
                      const char *const *known)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        char list[128] = "";
        for (const char *const *k = known; *k; k++) {
            ok |= strcmp(it->string, *k) == 0;
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", list[0] ? ", " : "", *k);
        }
        if (!ok)
            return fail(p, "%s%s: unknown field (known: %s)", where, it->string, list);
    }
    return check_unique(p, obj, where);
}

/* An optional string member; *out stays NULL when absent. */
static int get_string(struct parse *p, const cJSON *obj, const char *key, const char *where,
                      const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return fail(p, "%s%s: want a string", where, key);
    *out = v->valuestring;
    return 0;
}

static const struct crisp_backend_ops *kind_named(const char *name)
{
    for (size_t i = 0; i < crisp_backend_kind_count(); i++)
        if (strcmp(crisp_backend_kind_at(i)->kind, name) == 0)
            return crisp_backend_kind_at(i);
    return NULL;
}

static const struct crisp_backend_opt *opt_named(const struct crisp_backend_ops *kind,
                                                 const char *name)
{
    for (const struct crisp_backend_opt *o = kind->opts; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static int add_arg(struct crisp_config_backend *b, const struct crisp_backend_opt *opt,
                   const char *value)
{
    struct crisp_backend_arg *v = realloc(b->args, (b->nargs + 1) * sizeof(*v));
    if (!v)
        return -1;
    b->args = v;
    v[b->nargs].opt = opt;
    v[b->nargs].value = strdup(value);
    if (!v[b->nargs].value)
        return -1;
    b->nargs++;
    return 0;
}

static int kind_options_list(const struct crisp_backend_ops *kind, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (const struct crisp_backend_opt *o = kind->opts; o && o->name && used < n; o++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", used ? ", " : "", o->name);
    return 0;
}

static int parse_option(struct parse *p, struct crisp_config_backend *b, const cJSON *it)
{
    char where[300], known[256];
    snprintf(where, sizeof(where), "backends.%s.options.%s", b->name, it->string);
    const struct crisp_backend_opt *o = opt_named(b->kind, it->string);
    if (!o) {
        kind_options_list(b->kind, known, sizeof(known));
        return fail(p, "%s: the %s backend has no such option (it has: %s)", where, b->kind->kind,
                    known[0] ? known : "none");
    }
    if (cJSON_IsString(it))
        return add_arg(b, o, it->valuestring) < 0 ? fail(p, "out of memory") : 0;
    if (!cJSON_IsArray(it) || !o->repeatable)
        return fail(p, "%s: want a string%s", where, o->repeatable ? " or a list of strings" : "");
    const cJSON *v;
    cJSON_ArrayForEach(v, it) {
        if (!cJSON_IsString(v))
            return fail(p, "%s: want a list of strings", where);
        if (add_arg(b, o, v->valuestring) < 0)
            return fail(p, "out of memory");
    }
    return 0;
}

static int parse_backend(struct parse *p, const cJSON *it, struct crisp_config_backend *b)
{
    static const char *const known[] = {"kind", "endpoint", "options", NULL};
    char where[300];
    const char *kind, *endpoint;
    snprintf(where, sizeof(where), "backends.%s.", it->string);
    b->name = strdup(it->string);
    if (!b->name)
        return fail(p, "out of memory");
    if (!cJSON_IsObject(it))
        return fail(p, "backends.%s: want an object with kind and endpoint", it->string);
    if (check_keys(p, it, where, known) < 0 || get_string(p, it, "kind", where, &kind) < 0 ||
        get_string(p, it, "endpoint", where, &endpoint) < 0)
        return -1;
    if (!kind)
        return fail(p, "%skind: missing (cri or docker)", where);
    if (!(b->kind = kind_named(kind)))
        return fail(p, "%skind: unknown kind \"%s\" (known: cri, docker)", where, kind);
    if (!endpoint || !*endpoint)
        return fail(p, "%sendpoint: missing (e.g. unix:///run/containerd/containerd.sock)", where);
    size_t n = strlen(kind) + strlen(endpoint) + 2;
    if (!(b->kind_url = malloc(n)))
        return fail(p, "out of memory");
    snprintf(b->kind_url, n, "%s:%s", kind, endpoint);
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(it, "options"), *o;
    if (opts && !cJSON_IsObject(opts))
        return fail(p, "%soptions: want an object of the kind's options", where);
    cJSON_ArrayForEach(o, opts) {
        if (parse_option(p, b, o) < 0)
            return -1;
    }
    return 0;
}

static int parse_backends(struct parse *p, const cJSON *root)
{
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(root, "backends"), *it;
    if (!cJSON_IsObject(bs) || !bs->child)
        return fail(p, "backends: want an object naming at least one backend");
    if (check_unique(p, bs, "backends.") < 0)
        return -1;
    size_t n = (size_t)cJSON_GetArraySize(bs);
    p->cfg->backends = calloc(n, sizeof(*p->cfg->backends));
    if (!p->cfg->backends)
        return fail(p, "out of memory");
    cJSON_ArrayForEach(it, bs) {
        if (parse_backend(p, it, &p->cfg->backends[p->cfg->nbackends++]) < 0)
            return -1;
    }
    return 0;
}

static int backend_index(const struct crisp_config *cfg, const char *name, size_t *out)
{
    for (size_t i = 0; i < cfg->nbackends; i++) {
        if (strcmp(cfg->backends[i].name, name) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static int parse_handler(struct parse *p, const cJSON *it, struct crisp_config_handler *h)
{
    static const char *const known[] = {"backend", "runtime", NULL};
    char where[300];
    const char *backend, *runtime;
    snprintf(where, sizeof(where), "handlers.\"%s\".", it->string);
    h->name = strdup(it->string);
    if (!h->name)
        return fail(p, "out of memory");
    if (!cJSON_IsObject(it))
        return fail(p, "handlers.\"%s\": want an object with a backend", it->string);
    if (check_keys(p, it, where, known) < 0 || get_string(p, it, "backend", where, &backend) < 0 ||
        get_string(p, it, "runtime", where, &runtime) < 0)
        return -1;
    if (!backend)
        return fail(p, "%sbackend: missing", where);
    if (backend_index(p->cfg, backend, &h->backend) < 0)
        return fail(p, "%sbackend: no backend named \"%s\"", where, backend);
    h->runtime = strdup(runtime ? runtime : "");
    return h->runtime ? 0 : fail(p, "out of memory");
}

static int parse_handlers(struct parse *p, const cJSON *root)
{
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(root, "handlers"), *it;
    if (!cJSON_IsObject(hs))
        return fail(p, "handlers: want an object, with at least the default handler \"\"");
    size_t n = (size_t)cJSON_GetArraySize(hs);
    p->cfg->handlers = calloc(n ? n : 1, sizeof(*p->cfg->handlers));
    if (!p->cfg->handlers)
        return fail(p, "out of memory");
    if (check_unique(p, hs, "handlers.") < 0)
        return -1;
    cJSON_ArrayForEach(it, hs) {
        if (parse_handler(p, it, &p->cfg->handlers[p->cfg->nhandlers++]) < 0)
            return -1;
        if (!*it->string)
            p->cfg->default_backend = p->cfg->handlers[p->cfg->nhandlers - 1].backend;
    }
    for (size_t i = 0; i < p->cfg->nhandlers; i++)
        if (!*p->cfg->handlers[i].name)
            return 0;
    return fail(p, "handlers: the default handler \"\" is missing (it names the default backend)");
}

/* A backend whose kind does not map handlers itself answers with the
 * engine's runtime name, and crisp puts the handler's name back by it: two
 * handlers with one runtime there could not be told apart. */
static int check_runtimes_distinct(struct parse *p)
{
    for (size_t i = 0; i < p->cfg->nhandlers; i++) {
        const struct crisp_config_handler *h = &p->cfg->handlers[i];
        const struct crisp_config_backend *b = &p->cfg->backends[h->backend];
        if (b->kind->handler_option)
            continue;
        for (size_t k = 0; k < i; k++) {
            const struct crisp_config_handler *o = &p->cfg->handlers[k];
            if (o->backend == h->backend && strcmp(o->runtime, h->runtime) == 0)
                return fail(p, "handlers.\"%s\".runtime: \"%s\" is handler \"%s\"'s runtime on "
                            "backend %s too; a %s backend answers with the runtime's name, so crisp "
                            "could not tell their pods apart (give each its own runtime)",
                            h->name, h->runtime, o->name, b->name, b->kind->kind);
        }
    }
    return 0;
}

static int parse_images(struct parse *p, const cJSON *root)
{
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(root, "images");
    const char *pull = NULL;
    p->cfg->pull_all = 1;
    if (!im)
        return 0;
    if (!cJSON_IsObject(im))
        return fail(p, "images: want an object");
    if (check_keys(p, im, "images.", (const char *const[]){"pull", NULL}) < 0 ||
        get_string(p, im, "pull", "images.", &pull) < 0)
        return -1;
    if (pull && strcmp(pull, "all") != 0 && strcmp(pull, "default") != 0)
        return fail(p, "images.pull: want \"all\" or \"default\", got \"%s\"", pull);
    p->cfg->pull_all = !pull || strcmp(pull, "all") == 0;
    return 0;
}

/* Backends whose kind maps handlers itself get NAME=RUNTIME options. */
static int handler_args(struct parse *p)
{
    for (size_t i = 0; i < p->cfg->nhandlers; i++) {
        const struct crisp_config_handler *h = &p->cfg->handlers[i];
        struct crisp_config_backend *b = &p->cfg->backends[h->backend];
        if (!b->kind->handler_option)
            continue;
        const struct crisp_backend_opt *o = opt_named(b->kind, b->kind->handler_option);
        size_t n = strlen(h->name) + strlen(h->runtime) + 2;
        char *spec = malloc(n);
        if (!o || !spec) {
            free(spec);
            return fail(p, "out of memory");
        }
        snprintf(spec, n, "%s=%s", h->name, h->runtime);
        int rv = add_arg(b, o, spec);
        free(spec);
        if (rv < 0)
            return fail(p, "out of memory");
    }
    return 0;
}

static void locate(const char *json, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *c = json; c < at && *c; c++) {
        if (*c == '\n')
            (*line)++, *col = 1;
        else
            (*col)++;
    }
}

int crisp_config_parse(const char *json, size_t len, const char *path, struct crisp_config *out,
                       char *err, size_t errlen)
{
    static const char *const known[] = {"backends", "handlers", "images", NULL};
    struct parse p = {path, err, errlen, out};
    const char *end = NULL;
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        int line, col;
        locate(json, end ? end : cJSON_GetErrorPtr(), &line, &col);
        return fail(&p, "not valid JSON (line %d, column %d)", line, col);
    }
    int rv = -1;
    if (!cJSON_IsObject(root))
        fail(&p, "want a JSON object with backends and handlers");
    else if (check_keys(&p, root, "", known) == 0 && parse_backends(&p, root) == 0 &&
             parse_handlers(&p, root) == 0 && check_runtimes_distinct(&p) == 0 &&
             parse_images(&p, root) == 0 && handler_args(&p) == 0)
        rv = (out->path = strdup(path)) ? 0 : fail(&p, "out of memory");
    cJSON_Delete(root);
    if (rv < 0)
        crisp_config_free(out);
    return rv;
}

int crisp_config_load(const char *path, struct crisp_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(CONFIG_MAX + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_MAX + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > CONFIG_MAX) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : bad ? "read error"
                                                                          : "larger than 1 MiB");
        free(buf);
        return -1;
    }
    int rv = crisp_config_parse(buf, n, path, out, err, errlen);
    free(buf);
    return rv;
}

void crisp_config_free(struct crisp_config *c)
{
    for (size_t i = 0; i < c->nbackends; i++) {
        for (size_t k = 0; k < c->backends[i].nargs; k++)
            free((char *)c->backends[i].args[k].value);
        free(c->backends[i].args);
        free(c->backends[i].name);
        free(c->backends[i].kind_url);
    }
    for (size_t i = 0; i < c->nhandlers; i++) {
        free(c->handlers[i].name);
        free(c->handlers[i].runtime);
    }
    free(c->backends);
    free(c->handlers);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

int crisp_config_backend_same(const struct crisp_config_backend *a,
                              const struct crisp_config_backend *b)
{
    if (strcmp(a->kind_url, b->kind_url) != 0 || a->nargs != b->nargs)
        return 0;
    for (size_t i = 0; i < a->nargs; i++)
        if (a->args[i].opt != b->args[i].opt || strcmp(a->args[i].value, b->args[i].value) != 0)
            return 0;
    return 1;
}
