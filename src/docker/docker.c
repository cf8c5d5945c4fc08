/* docker.c - the Docker Engine backend: engine connection, API version,
 * the op framework every handler runs on, and JSON helpers. */
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

/* The longest request target sent to an engine (dockerd and podman take a
 * request head of 1 MiB): longer is refused, never cut. */
#define TARGET_MAX (64 * 1024)

struct op_priv {
    struct dk_op op;
    dk_handler_fn handler;
};

static struct op_priv *priv(struct dk_op *op)
{
    return (struct op_priv *)op;
}

const char *dk_esc(const char *s)
{
    static char bufs[4][512];
    static unsigned next;
    char *out = bufs[next++ % 4];
    size_t o = 0;
    for (; s && *s && o + 4 < sizeof(bufs[0]); s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = 0;
    return out;
}

/* ---- ops --------------------------------------------------------------- */

static void cancel_subs(struct dk_op *op);

static void op_free(struct dk_op *op)
{
    struct dk_be *be = op->be;
    if (op->prev)
        op->prev->next = op->next;
    else
        be->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (op->call) {
        op->call->be_ctx = NULL;
        crisp_call_unref(op->call);
    }
    if (op->free_state && op->state)
        op->free_state(op->state);
    if (op->free_aux && op->aux)
        op->free_aux(op->aux);
    dk_arena_free(&op->mem);
    free(op);
}

void dk_op_end(struct dk_op *op)
{
    cancel_subs(op);
    op_free(op);
}

void dk_op_reply(struct dk_op *op, const ProtobufCMessage *resp)
{
    if (op->mem.oom) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building the %s response",
                   op->call ? op->call->method->name : "");
        return;
    }
    if (op->call && !op->cancelled) {
        if (crisp_call_send_pb(op->call, resp) == 0)
            crisp_call_finish(op->call, GRPC_OK, NULL);
    }
    dk_op_end(op);
}

void dk_op_fail(struct dk_op *op, int code, const char *fmt, ...)
{
    if (op->call && !op->cancelled) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        crisp_call_finish(op->call, code, msg);
    }
    dk_op_end(op);
}

void dk_op_fail_err(struct dk_op *op, const struct dk_err *err)
{
    if (err->code)
        dk_op_fail(op, err->code, "%s", err->msg);
    else
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

int dk_op_send(struct dk_op *op, const ProtobufCMessage *msg)
{
    if (op->mem.oom) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return -1;
    }
    if (!op->call || op->cancelled)
        return 0;
    return crisp_call_send_pb(op->call, msg) < 0 ? -1 : 0;
}

void dk_op_finish_ok(struct dk_op *op)
{
    if (op->call && !op->cancelled)
        crisp_call_finish(op->call, GRPC_OK, NULL);
    dk_op_end(op);
}

int dk_op_stopped(struct dk_op *op)
{
    if (!op->cancelled || op->must_finish)
        return 0;
    dk_op_end(op);
    return 1;
}

int dk_check_id(struct dk_op *op, const char *id, const char *what)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "%s is empty", what);
        return -1;
    }
    /* Engine IDs are 64 hex digits (names are allowed too); anything else
     * would only reach the engine as a path it cannot find. */
    if (n > 128 || strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n) {
        dk_op_fail(op, GRPC_NOT_FOUND, "%s %.64s%s not found (not an engine ID)", what, id,
                   n > 64 ? "..." : "");
        return -1;
    }
    return 0;
}

int dk_code_for_status(int status)
{
    switch (status) {
    case 400:
        return GRPC_INVALID_ARGUMENT;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_NOT_FOUND;
    case 409:
        return GRPC_FAILED_PRECONDITION;
    case 501:
        return GRPC_UNIMPLEMENTED;
    case 503:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

const char *dk_errmsg(cJSON *json, int status)
{
    const char *m = dk_str(json, "message");
    if (*m)
        return m;
    static char buf[64];
    snprintf(buf, sizeof(buf), "engine answered HTTP %d", status);
    return buf;
}

void dk_fail_http(struct dk_op *op, int status, cJSON *json, const char *what)
{
    dk_op_fail(op, dk_code_for_status(status), "%s: %s", what, dk_errmsg(json, status));
}

/* ---- engine requests ---------------------------------------------------- */

/* One engine request of an op. The op keeps a list so that ending it
 * cancels every request still in flight. */
struct dk_sub {
    struct dk_sub *prev, *next;
    struct dk_op *op;
    struct h1_req *r;
    dk_json_cb json_cb;            /* dk_call */
    void *ud;                      /* dk_callx: handed to the callback via op->cur_ud */
    const struct h1_req_cbs *cbs;  /* dk_call_opts: the caller's callbacks */
};

static struct dk_sub *sub_new(struct dk_op *op)
{
    struct dk_sub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return NULL;
    sub->op = op;
    return sub;
}

static void sub_link(struct dk_sub *sub)
{
    struct dk_op *op = sub->op;
    sub->next = op->subs;
    if (op->subs)
        op->subs->prev = sub;
    op->subs = sub;
    op->pending++;
}

/* Unlinks and frees; the h1 request is finished or cancelled already. */
static struct dk_op *sub_done(struct dk_sub *sub)
{
    struct dk_op *op = sub->op;
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        op->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    op->pending--;
    if (op->h1 == sub->r)
        op->h1 = NULL;
    free(sub);
    return op;
}

static void cancel_subs(struct dk_op *op)
{
    while (op->subs) {
        struct dk_sub *sub = op->subs;
        h1_cancel(sub->r);
        sub_done(sub);
    }
}

static void on_json_done(struct h1_req *r, int err, const char *errmsg, int status,
                         const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_sub *sub = ud;
    dk_json_cb cb = sub->json_cb;
    void *cb_ud = sub->ud;
    struct dk_op *op = sub_done(sub);
    if (err) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    if (dk_op_stopped(op))
        return;
    cJSON *json = len ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    op->cur_ud = cb_ud;
    cb(op, status, json);
    cJSON_Delete(json);
}

static const struct h1_req_cbs json_cbs = {.on_done = on_json_done};

static int wrap_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct dk_sub *sub = ud;
    return sub->cbs->on_head ? sub->cbs->on_head(r, status, h, sub->op) : 0;
}

static int wrap_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct dk_sub *sub = ud;
    return sub->cbs->on_body(r, p, n, sub->op);
}

static void wrap_done(struct h1_req *r, int err, const char *errmsg, int status,
                      const uint8_t *body, size_t len, void *ud)
{
    struct dk_sub *sub = ud;
    const struct h1_req_cbs *cbs = sub->cbs;
    struct dk_op *op = sub_done(sub);
    cbs->on_done(r, err, errmsg, status, body, len, op);
}

static const struct h1_req_cbs wrap_cbs = {.on_head = wrap_head, .on_done = wrap_done};
static const struct h1_req_cbs wrap_stream_cbs = {
    .on_head = wrap_head, .on_body = wrap_body, .on_done = wrap_done};

/* The versioned target of an engine request, malloc'd; NULL (the op
 * failed) when memory is short or it would be longer than TARGET_MAX. */
static char *versioned_target(struct dk_op *op, const char *target)
{
    char *t = NULL;
    int n;
    /* Before the version is known (Status only): unversioned paths. */
    if (strncmp(target, "/libpod/", 8) == 0)
        n = asprintf(&t, "/v4.0.0%s", target);
    else
        n = asprintf(&t, "%s%s%s", op->be->api[0] ? "/v" : "", op->be->api, target);
    if (n < 0) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return NULL;
    }
    if (n > TARGET_MAX) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT,
                   "the engine request would be %d bytes long (at most %d): %.60s...", n,
                   TARGET_MAX, target);
        free(t);
        return NULL;
    }
    return t;
}

static void issue(struct dk_op *op, struct dk_sub *sub, struct h1_req_opts *o,
                  const struct h1_req_cbs *cbs)
{
    const char *target = o->target;
    char *full = versioned_target(op, target);
    if (!full) {
        free(sub);
        return;
    }
    o->target = full;
    sub->r = h1_request(op->slow ? op->be->long_pool : op->be->pool, o, cbs, sub); /* copies */
    o->target = target;
    free(full);
    if (!sub->r) {
        free(sub);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub_link(sub);
    op->h1 = sub->r;
}

static void vcall(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, void *ud,
                  const char *fmt, va_list ap)
{
    char *target = NULL;
    int tn = vasprintf(&target, fmt, ap);
    char *json = body ? cJSON_PrintUnformatted(body) : NULL;
    int oom = tn < 0 || (body && !json);
    cJSON_Delete(body);
    struct dk_sub *sub = oom ? NULL : sub_new(op);
    if (!sub) {
        free(json);
        free(tn < 0 ? NULL : target);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub->json_cb = cb;
    sub->ud = ud;
    struct h1_req_opts o = {
        .method = method,
        .target = target,
        .content_type = json ? "application/json" : NULL,
        .body = (const uint8_t *)json,
        .body_len = json ? strlen(json) : 0,
    };
    issue(op, sub, &o, &json_cbs);
    free(json);
    free(target);
}

void dk_call(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, const char *fmt,
             ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcall(op, method, body, cb, NULL, fmt, ap);
    va_end(ap);
}

void dk_callx(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, void *ud,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcall(op, method, body, cb, ud, fmt, ap);
    va_end(ap);
}

void dk_call_opts(struct dk_op *op, struct h1_req_opts *o, const struct h1_req_cbs *cbs)
{
    struct dk_sub *sub = sub_new(op);
    if (!sub) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory calling the engine");
        return;
    }
    sub->cbs = cbs;
    issue(op, sub, o, cbs->on_body ? &wrap_stream_cbs : &wrap_cbs);
}

/* ---- API version --------------------------------------------------------- */

/* Every family's table merged, indexed by enum crisp_rpc; built once, the
 * same for every docker backend instance. */
static struct dk_method methods[CRISP_RPC_COUNT];

static void run_handler(struct dk_op *op);

/* Takes the API version from GET /version's answer: 0 when the handler may
 * run, -1 when the op ended. */
static int use_api(struct dk_op *op, int status, const cJSON *json, int unversioned)
{
    struct dk_be *be = op->be;
    struct dk_engine_api api;
    int rv = status == 200 ? dk_engine_api(json, &api) : -1;
    if (rv == -1 && unversioned)
        return 0; /* Status reports the engine's state itself */
    if (rv == -1) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: GET /version answered HTTP %d",
                   be->engine, status);
        return -1;
    }
    if (rv == -2) {
        dk_op_fail(op, GRPC_FAILED_PRECONDITION,
                   "docker engine %s speaks API %s; crisp needs %s or newer", be->engine, api.max,
                   DK_API_MIN);
        return -1;
    }
    if (api.podman)
        be->podman = 1;
    if (strcmp(be->api, api.use) != 0) {
        snprintf(be->api, sizeof(be->api), "%s", api.use);
        log_info("docker_api", "engine=%s version=%s api=%s podman=%d", be->engine,
                 crisp_logq(dk_str(json, "Version")), be->api, be->podman);
    }
    return 0;
}

static void on_version_negotiated(struct h1_req *r, int err, const char *errmsg, int status,
                                  const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_op *op = sub_done(ud);
    int unversioned = methods[op->call->method->id].unversioned;
    if (err && unversioned) {
        run_handler(op); /* Status reports the engine down itself */
        return;
    }
    if (err) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    cJSON *json = cJSON_ParseWithLength((const char *)body, len);
    int rv = use_api(op, status, json, unversioned);
    cJSON_Delete(json);
    if (rv == 0 && !dk_op_stopped(op))
        run_handler(op);
}

static const struct h1_req_cbs version_cbs = {.on_done = on_version_negotiated};

/* ---- dispatch ------------------------------------------------------------ */


static void unsupported(struct dk_op *op)
{
    dk_op_fail(op, GRPC_UNIMPLEMENTED, "%s is not implemented by crisp's Docker backend",
               op->call->method->name);
}

static void build_method_table(void)
{
    static const struct dk_method *const families[] = {
        dk_runtime_methods, dk_pod_methods, dk_container_methods, dk_image_methods,
        dk_stats_methods,
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

static void run_handler(struct dk_op *op)
{
    priv(op)->handler(op);
}

static void dk_start(struct crisp_backend *base, struct crisp_call *call)
{
    struct dk_be *be = (struct dk_be *)base;
    struct op_priv *p = calloc(1, sizeof(*p));
    if (!p) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    struct dk_op *op = &p->op;
    op->be = be;
    op->call = call;
    op->req = crisp_call_request(call);
    p->handler = methods[call->method->id].fn;
    op->slow = methods[call->method->id].slow;
    crisp_call_ref(call);
    call->be_ctx = op;
    op->next = be->ops;
    if (be->ops)
        be->ops->prev = op;
    be->ops = op;
    if (be->api[0]) {
        run_handler(op);
        return;
    }
    /* The unversioned path: the engine answers it whatever it speaks. */
    struct h1_req_opts o = {.method = "GET", .target = "/version"};
    struct dk_sub *sub = sub_new(op);
    if (sub)
        sub->r = h1_request(be->pool, &o, &version_cbs, sub);
    if (!sub || !sub->r) {
        free(sub);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    sub_link(sub);
}

static void dk_cancel(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    struct dk_op *op = call->be_ctx;
    if (!op)
        return;
    op->cancelled = 1;
    if (op->must_finish)
        return; /* it finishes or rolls back on its own; the answer is dropped */
    dk_op_end(op);
}

static void dk_drained(struct crisp_backend *base, struct crisp_call *call)
{
    (void)base;
    struct dk_op *op = call->be_ctx;
    if (op && op->h1)
        h1_resume(op->h1);
}

#define DEFAULT_INFRA_IMAGE "registry.k8s.io/pause:3.10"
/* the kubelet's containerLogMaxSize/MaxFiles defaults: the engine keeps the
 * file under the kubelet's threshold, so the kubelet never needs to rotate a
 * log it cannot reopen */
#define LOG_MAX_SIZE "10m"
#define LOG_MAX_FILES "5"

/* The docker backend's own options. */
enum { OPT_INFRA_IMAGE, OPT_RUNTIME_HANDLER };
static const struct crisp_backend_opt dk_opts[] = {
    [OPT_INFRA_IMAGE] = {.name = "pod-infra-image", .arg = "IMAGE",
                         .help = "the pod sandbox image (default\n" DEFAULT_INFRA_IMAGE
                                 ", pulled when missing)"},
    [OPT_RUNTIME_HANDLER] = {.name = "runtime-handler", .arg = "NAME=RUNTIME", .repeatable = 1,
                             .help = "RuntimeClass handler NAME runs pods with the\n"
                                     "engine's runtime RUNTIME (repeatable; \"\" = the\n"
                                     "default handler)"},
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

/* The instance's configuration from its options (crisp_backend_new checked
 * that they are this kind's). */
static int config_from_spec(struct dk_config *cfg, const struct crisp_backend_spec *spec,
                            char *err, size_t errlen)
{
    const char *infra = DEFAULT_INFRA_IMAGE;
    cfg->log_max_size = LOG_MAX_SIZE;
    cfg->log_max_files = LOG_MAX_FILES;
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
    if (be->pool)
        h1_pool_free(be->pool);
    if (be->long_pool)
        h1_pool_free(be->long_pool);
    config_free(&be->cfg);
    free(be->engine);
    free(be->base.name);
    free(be);
}

static void dk_destroy(struct crisp_backend *base)
{
    struct dk_be *be = (struct dk_be *)base;
    be->stopping = 1;
    while (be->ops) {
        struct dk_op *op = be->ops;
        op->must_finish = 0;
        dk_op_fail(op, GRPC_UNAVAILABLE, "crisp is shutting down");
    }
    be_free(be);
}

static SSL_CTX *client_tls(const char *cert_path, int verify, char *err, size_t errlen)
{
    char ca[1100], cert[1100], key[1100];
    snprintf(ca, sizeof(ca), "%.1000s/ca.pem", cert_path);
    snprintf(cert, sizeof(cert), "%.1000s/cert.pem", cert_path);
    snprintf(key, sizeof(key), "%.1000s/key.pem", cert_path);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        char e[256];
        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        snprintf(err, errlen, "docker TLS client certificate %s / %s: %s", cert, key, e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (verify) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            char e[256];
            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            snprintf(err, errlen, "docker TLS CA %s: %s", ca, e);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* TLS for a tcp:// engine, as the docker CLI does it: client certificates
 * from DOCKER_CERT_PATH (default ~/.docker), the server verified against its
 * ca.pem when DOCKER_TLS_VERIFY is set. *tls stays NULL for plain HTTP. */
static int engine_tls(const struct crisp_addr *addr, SSL_CTX **tls, char *err, size_t errlen)
{
    const char *cert_path = getenv("DOCKER_CERT_PATH");
    const char *verify = getenv("DOCKER_TLS_VERIFY");
    char def[1024];
    *tls = NULL;
    if (addr->kind != CRISP_ADDR_TCP || !((cert_path && *cert_path) || (verify && *verify)))
        return 0;
    if (!cert_path || !*cert_path) {
        snprintf(def, sizeof(def), "%s/.docker", getenv("HOME") ? getenv("HOME") : "/root");
        cert_path = def;
    }
    *tls = client_tls(cert_path, verify && *verify && strcmp(verify, "0") != 0, err, errlen);
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
    SSL_CTX_free(tls); /* the pools hold their own references */
    return be->pool && be->long_pool ? 0 : -1;
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
    be->base.ops = &crisp_backend_docker_ops;
    if (config_from_spec(&be->cfg, spec, err, errlen) < 0 ||
        open_pools(be, &addr, err, errlen) < 0)
        goto fail;
    size_t nl = strlen(url) + 8;
    be->engine = strdup(url);
    be->base.name = malloc(nl);
    if (!be->engine || !be->base.name) {
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
    .create = dk_create,
    .start = dk_start,
    .cancel = dk_cancel,
    .drained = dk_drained,
    .destroy = dk_destroy,
};
