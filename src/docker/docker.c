/* docker.c - the Docker backend's instances: options, configuration, the
 * engine connection (two pools, TLS), the method table, the ops struct. */
#define _GNU_SOURCE /* asprintf */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"
#include "crisp/net.h"

/* ---- dispatch ------------------------------------------------------------ */

/* Every family's table merged, indexed by enum crisp_rpc; built once, the
 * same for every docker backend instance. */
static struct dk_method methods[CRISP_RPC_COUNT];

static void unsupported(struct dk_op *op)
{
    dk_op_fail(op, GRPC_UNIMPLEMENTED, "%s is not implemented by crisp's Docker backend",
               op->call->method->name);
}

static void build_method_table(void)
{
    static const struct dk_method *const families[] = {
        dk_runtime_methods, dk_pod_methods,   dk_container_methods, dk_exec_methods,
        dk_list_methods,    dk_image_methods, dk_stats_methods,     dk_event_methods,
        dk_stream_methods,
    };
    if (methods[0].fn)
        return;
    for (size_t i = 0; i < CRISP_RPC_COUNT; i++) {
        for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
            if (!families[f][i].fn)
                continue;
            assert(!methods[i].fn); /* one family per method */
            methods[i] = families[f][i];
        }
        if (!methods[i].fn)
            methods[i].fn = unsupported;
    }
}

static void dk_start(struct crisp_backend *base, struct crisp_call *call)
{
    dk_op_start((struct dk_be *)base, call, &methods[call->method->id]);
}

static void dk_cancel(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    dk_op_cancel(call);
}

static void dk_drained(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    dk_op_drained(call);
}

#define DEFAULT_INFRA_IMAGE "registry.k8s.io/pause:3.10"
/* the kubelet's containerLogMaxSize/MaxFiles defaults: the engine keeps the
 * file under the kubelet's threshold, so the kubelet never needs to rotate a
 * log it cannot reopen */
#define LOG_MAX_SIZE "10m"
#define LOG_MAX_FILES "5"
/* cadvisor's period for the same disk walk under dockershim */
#define DEFAULT_SIZES_EVERY "60"

/* The docker backend's own options. */
enum { OPT_INFRA_IMAGE, OPT_RUNTIME_HANDLER, OPT_SIZES_EVERY, OPT_NODE_VIEW };
static const struct crisp_backend_opt dk_opts[] = {
    [OPT_INFRA_IMAGE] = {.name = "pod-infra-image", .arg = "IMAGE",
                         .help = "the pod sandbox image (default\n" DEFAULT_INFRA_IMAGE
                                 ", pulled when missing)"},
    [OPT_RUNTIME_HANDLER] = {.name = "runtime-handler", .arg = "NAME=RUNTIME", .repeatable = 1,
                             .help = "RuntimeClass handler NAME runs pods with the\n"
                                     "engine's runtime RUNTIME (repeatable; \"\" = the\n"
                                     "default handler)"},
    [OPT_SIZES_EVERY] = {.name = "writable-layer-every", .arg = "SECONDS",
                         .help = "stats report the writable layers' sizes\n"
                                 "measured (the engine's size=1 listing, a disk\n"
                                 "walk) in the background at most every SECONDS\n"
                                 "(default " DEFAULT_SIZES_EVERY "; 0: measured for each stats\n"
                                 "call)"},
    [OPT_NODE_VIEW] = {.name = "node-view", .arg = "on|off",
                       .help = "keep a view of the node fed by the engine's\n"
                               "events, lists and stats answered from it\n"
                               "(default on; off: every call asks the engine)"},
    {.name = NULL},
};

/* ---- configuration -------------------------------------------------------- */

static void config_free(struct dk_config *cfg)
{
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        free(cfg->handlers[i].handler);
        free(cfg->handlers[i].runtime);
    }
    free(cfg->handlers);
    free(cfg->infra_image);
    memset(cfg, 0, sizeof(*cfg));
}

static int add_handler(struct dk_config *cfg, const char *spec, char *err, size_t errlen)
{
    const char *eq = strchr(spec, '=');
    if (!eq) {
        snprintf(err, errlen, "--runtime-handler %s: want NAME=DOCKER_RUNTIME", spec);
        return -1;
    }
    size_t nl = (size_t)(eq - spec);
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        if (strlen(cfg->handlers[i].handler) == nl && memcmp(cfg->handlers[i].handler, spec, nl) == 0) {
            snprintf(err, errlen, "--runtime-handler %s: handler \"%.*s\" given twice", spec,
                     (int)nl, spec);
            return -1;
        }
    }
    struct dk_handler_map *h = &cfg->handlers[cfg->nhandlers++];
    h->handler = strndup(spec, nl);
    h->runtime = strdup(eq + 1);
    if (!h->handler || !h->runtime) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_sizes_every(const char *v, int *out, char *err, size_t errlen)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0 || n > 86400) {
        snprintf(err, errlen, "--writable-layer-every %s: want whole seconds, 0 to 86400", v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* The instance's configuration from its options (crisp_backend_new checked
 * that they are this kind's). */
static int config_from_spec(struct dk_config *cfg, const struct crisp_backend_spec *spec,
                            char *err, size_t errlen)
{
    const char *infra = DEFAULT_INFRA_IMAGE;
    cfg->log_max_size = LOG_MAX_SIZE;
    cfg->log_max_files = LOG_MAX_FILES;
    cfg->sizes_every_s = atoi(DEFAULT_SIZES_EVERY);
    cfg->handlers = calloc(spec->nargs + 1, sizeof(*cfg->handlers));
    if (!cfg->handlers)
        goto oom;
    for (size_t i = 0; i < spec->nargs; i++) {
        const struct crisp_backend_arg *a = &spec->args[i];
        if (a->opt == &dk_opts[OPT_INFRA_IMAGE]) {
            infra = a->value;
            if (!*infra) {
                snprintf(err, errlen, "--pod-infra-image needs an image");
                return -1;
            }
        } else if (a->opt == &dk_opts[OPT_RUNTIME_HANDLER] &&
                   add_handler(cfg, a->value, err, errlen) < 0) {
            return -1;
        } else if (a->opt == &dk_opts[OPT_SIZES_EVERY] &&
                   parse_sizes_every(a->value, &cfg->sizes_every_s, err, errlen) < 0) {
            return -1;
        } else if (a->opt == &dk_opts[OPT_NODE_VIEW]) {
            if (strcmp(a->value, "on") != 0 && strcmp(a->value, "off") != 0) {
                snprintf(err, errlen, "--node-view %s: want on or off", a->value);
                return -1;
            }
            cfg->no_view = strcmp(a->value, "off") == 0;
        }
    }
    cfg->infra_image = strdup(infra);
    if (!cfg->infra_image)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- the instance ----------------------------------------------------------- */

static void be_free(struct dk_be *be)
{
    dk_view_free(be); /* before the pools: its requests are cancelled, not failed */
    dk_stream_free(be);
    dk_reap_free_all(be);
    dk_version_free(be);
    if (be->log_pool)
        dk_logs_free(be);
    if (be->pool)
        h1_pool_free(be->pool);
    if (be->long_pool)
        h1_pool_free(be->long_pool);
    if (be->log_pool)
        h1_pool_free(be->log_pool);
    config_free(&be->cfg);
    free(be->storage_root);
    free(be->engine);
    free(be->base.name);
    free(be);
}

static void dk_destroy(struct crisp_backend *base)
{
    struct dk_be *be = (struct dk_be *)base;
    struct crisp_list *it;
    while ((it = crisp_list_first(&be->ops))) {
        struct dk_op *op = crisp_container_of(it, struct dk_op, link);
        op->must_finish = 0;
        dk_op_fail(op, GRPC_UNAVAILABLE, "crisp is shutting down");
    }
    be_free(be);
}

/* A TLS error: the sentence, and OpenSSL's reason. */
static void tls_error(char *err, size_t errlen, const char *what, const char *a, const char *b)
{
    char e[256];
    ERR_error_string_n(ERR_get_error(), e, sizeof(e));
    snprintf(err, errlen, "docker TLS %s %s%s%s: %s", what, a, b ? " / " : "", b ? b : "", e);
}

/* The client certificate and key, and when verify the CA, of cert_path. */
static int load_tls_files(SSL_CTX *ctx, const char *cert_path, int verify, char *err, size_t errlen)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    int rv = -1;
    if (asprintf(&ca, "%s/ca.pem", cert_path) < 0 || asprintf(&cert, "%s/cert.pem", cert_path) < 0 ||
        asprintf(&key, "%s/key.pem", cert_path) < 0)
        snprintf(err, errlen, "TLS: out of memory");
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
             SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        tls_error(err, errlen, "client certificate", cert, key);
    else if (verify && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        tls_error(err, errlen, "CA", ca, NULL);
    else
        rv = 0;
    free(ca);
    free(cert);
    free(key);
    return rv;
}

static SSL_CTX *client_tls(const char *cert_path, int verify, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (load_tls_files(ctx, cert_path, verify, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (verify)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

/* TLS for a tcp:// engine, as the docker CLI does it: client certificates
 * from DOCKER_CERT_PATH (default ~/.docker), the server verified against its
 * ca.pem when DOCKER_TLS_VERIFY is set. *tls stays NULL for plain HTTP. */
static int engine_tls(const struct crisp_addr *addr, SSL_CTX **tls, char *err, size_t errlen)
{
    const char *cert_path = getenv("DOCKER_CERT_PATH");
    const char *verify = getenv("DOCKER_TLS_VERIFY");
    char *def = NULL;
    *tls = NULL;
    if (addr->kind != CRISP_ADDR_TCP || !((cert_path && *cert_path) || (verify && *verify)))
        return 0;
    if ((!cert_path || !*cert_path) &&
        asprintf(&def, "%s/.docker", getenv("HOME") ? getenv("HOME") : "/root") < 0) {
        snprintf(err, errlen, "TLS: out of memory");
        return -1;
    }
    *tls = client_tls(def ? def : cert_path, verify && *verify && strcmp(verify, "0") != 0, err, errlen);
    free(def);
    return *tls ? 0 : -1;
}

/* Two pools: short calls, and calls that may take long (one connection per
 * exec, pull, stop or event stream in flight) so they never queue a Status. */
static int open_pools(struct dk_be *be, const struct crisp_addr *addr, char *err, size_t errlen)
{
    SSL_CTX *tls;
    if (engine_tls(addr, &tls, err, errlen) < 0)
        return -1;
    struct h1_pool_opts po = {
        .addr = addr,
        .tls = tls,
        .host = addr->kind == CRISP_ADDR_UNIX ? "docker" : addr->host,
        .max_conns = 128,
        .max_idle = 16,
    };
    be->pool = h1_pool_new(be->evb, &po, err, errlen);
    po.max_conns = 256;
    po.max_idle = 4;
    be->long_pool = be->pool ? h1_pool_new(be->evb, &po, err, errlen) : NULL;
    po.max_conns = 4096; /* a follower per running container's log */
    po.max_idle = 2;
    be->log_pool = be->long_pool ? h1_pool_new(be->evb, &po, err, errlen) : NULL;
    SSL_CTX_free(tls); /* the pools hold their own references */
    return be->pool && be->long_pool && be->log_pool ? 0 : -1;
}

static struct crisp_backend *dk_create(struct event_base *evb,
                                       const struct crisp_backend_spec *spec, char *err,
                                       size_t errlen)
{
    const char *url = spec->url;
    if (!*url) {
        const char *host = getenv("DOCKER_HOST");
        url = host && *host ? host : "unix:///var/run/docker.sock";
    }
    struct crisp_addr addr;
    if (crisp_addr_parse(url, &addr, err, errlen) < 0)
        return NULL;
    if (addr.kind == CRISP_ADDR_FD) {
        snprintf(err, errlen, "a docker backend needs unix:// or tcp://, not %s", url);
        return NULL;
    }
    build_method_table();
    struct dk_be *be = calloc(1, sizeof(*be));
    if (!be) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    be->evb = evb;
    crisp_list_init(&be->ops);
    crisp_list_init(&be->reaps);
    crisp_list_init(&be->ver_wait);
    be->base.ops = &crisp_backend_docker_ops;
    crisp_list_init(&be->logfs);
    if (config_from_spec(&be->cfg, spec, err, errlen) < 0 ||
        open_pools(be, &addr, err, errlen) < 0 || dk_logs_init(be) < 0 || dk_reap_init(be) < 0)
        goto fail;
    size_t nl = strlen(url) + 8;
    be->engine = strdup(url);
    be->base.name = malloc(nl);
    if (!be->engine || !be->base.name || (!be->cfg.no_view && dk_view_new(be) < 0)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(be->base.name, nl, "docker:%s", url);
    return &be->base;
fail:
    be_free(be);
    return NULL;
}

const struct crisp_backend_ops crisp_backend_docker_ops = {
    .kind = "docker",
    .url_help = "docker:unix:///var/run/docker.sock (Docker Engine, or podman's\n"
                "Docker-compatible API); docker: alone follows DOCKER_HOST;\n"
                "tcp:// uses TLS client certificates from DOCKER_CERT_PATH when set",
    .opts = dk_opts,
    .handler_option = "runtime-handler",
    .serves_streams = 1,
    .create = dk_create,
    .start = dk_start,
    .cancel = dk_cancel,
    .drained = dk_drained,
    .destroy = dk_destroy,
};
