/* docker_runtime.c - Version, Status, RuntimeConfig and the RPCs the Docker
 * Engine has no counterpart for. */
#include <stdio.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

/* ---- Version -------------------------------------------------------------- */

static void on_version(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200) {
        dk_fail_http(op, status, json, "docker version");
        return;
    }
    Runtime__V1__VersionResponse r = RUNTIME__V1__VERSION_RESPONSE__INIT;
    dk_version_response(&op->mem, json, &r);
    dk_op_reply(op, &r.base);
}

static void dk_version(struct dk_op *op)
{
    dk_call(op, "GET", NULL, on_version, "/version");
}

/* ---- Status ----------------------------------------------------------------- */

struct status_state {
    int engine_ok;
    char reason[64];
    char message[512];
};

static Runtime__V1__RuntimeCondition *condition(struct dk_op *op, const char *type, int ok,
                                                const char *reason, const char *message)
{
    Runtime__V1__RuntimeCondition *c = dk_msg(&op->mem, &runtime__v1__runtime_condition__descriptor);
    if (!c)
        return NULL;
    c->type = (char *)type;
    c->status = ok;
    c->reason = dk_strdup(&op->mem, ok ? "" : reason);
    c->message = dk_strdup(&op->mem, ok ? "" : message);
    return c;
}

static void status_reply(struct dk_op *op, const char *info_json)
{
    struct status_state *st = op->state;
    const Runtime__V1__StatusRequest *req = (const void *)op->req;
    Runtime__V1__StatusResponse r = RUNTIME__V1__STATUS_RESPONSE__INIT;
    Runtime__V1__RuntimeStatus *rs;
    DK_NEW(op, rs, runtime__v1__runtime_status__descriptor);
    Runtime__V1__RuntimeCondition *conds[2] = {
        condition(op, "RuntimeReady", st->engine_ok, st->reason, st->message),
        /* Docker wires pod networking itself (bridge, or host). */
        condition(op, "NetworkReady", st->engine_ok, st->reason, st->message),
    };
    if (!conds[0] || !conds[1]) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return;
    }
    rs->n_conditions = 2;
    rs->conditions = conds;
    r.status = rs;
    struct dk_be *be = op->be;
    size_t nh = be->cfg.nhandlers;
    int has_default = 0;
    for (size_t i = 0; i < nh; i++)
        has_default |= be->cfg.handlers[i].handler[0] == 0;
    Runtime__V1__RuntimeHandler **hs =
        (void *)dk_msgs(&op->mem, &runtime__v1__runtime_handler__descriptor, nh + !has_default);
    if (!hs) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return;
    }
    size_t k = 0;
    if (!has_default)
        hs[k++]->name = "";
    for (size_t i = 0; i < nh; i++) {
        /* podman ignores the runtime choice: crisp refuses such pods, so
         * it does not offer those handlers either */
        if (be->podman && be->cfg.handlers[i].runtime[0] && be->cfg.handlers[i].handler[0])
            continue;
        hs[k++]->name = be->cfg.handlers[i].handler;
    }
    r.n_runtime_handlers = k;
    r.runtime_handlers = hs;
    if (req->verbose)
        dk_info_text(&op->mem, &r.base, info_json);
    dk_op_reply(op, &r.base);
}

static void on_status_info(struct h1_req *h, int err, const char *errmsg, int status,
                           const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)len;
    struct dk_op *op = ud;
    struct status_state *st = op->state;
    if (err || status != 200) {
        st->engine_ok = 0;
        snprintf(st->reason, sizeof(st->reason), "DockerDaemonNotReady");
        if (err)
            snprintf(st->message, sizeof(st->message), "docker engine %s: %s", op->be->engine,
                     errmsg ? errmsg : h1_strerror(err));
        else
            snprintf(st->message, sizeof(st->message), "docker engine %s answered HTTP %d",
                     op->be->engine, status);
        status_reply(op, NULL);
        return;
    }
    st->engine_ok = 1;
    status_reply(op, (const char *)body);
}

static const struct h1_req_cbs status_cbs = {.on_done = on_status_info};

static void dk_status(struct dk_op *op)
{
    struct status_state *st = dk_alloc(&op->mem, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->state = st;
    /* An engine that is down is a status, not an error: the kubelet marks
     * the node NotReady with this reason. */
    struct h1_req_opts o = {.method = "GET", .target = "/info", .timeout_ms = 10000};
    dk_call_opts(op, &o, &status_cbs);
}

/* ---- RuntimeConfig -------------------------------------------------------- */

static void on_runtime_config(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200) {
        dk_fail_http(op, status, json, "docker info");
        return;
    }
    Runtime__V1__RuntimeConfigResponse r = RUNTIME__V1__RUNTIME_CONFIG_RESPONSE__INIT;
    Runtime__V1__LinuxRuntimeConfiguration lc = RUNTIME__V1__LINUX_RUNTIME_CONFIGURATION__INIT;
    lc.cgroup_driver = dk_cgroup_driver(json);
    r.linux = &lc;
    dk_op_reply(op, &r.base);
}

static void dk_runtime_config(struct dk_op *op)
{
    dk_call(op, "GET", NULL, on_runtime_config, "/info");
}

/* ---- accepted, nothing to do --------------------------------------------------- */

/* The pod CIDR is the network plugin's business; Docker's bridge has its
 * own addressing. Accepted, as by the kubelet's other runtimes. */
static void dk_update_runtime_config(struct dk_op *op)
{
    Runtime__V1__UpdateRuntimeConfigResponse r = RUNTIME__V1__UPDATE_RUNTIME_CONFIG_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

/* Informational for runtimes (the kubelet resizes containers itself); a
 * pause container has no resources worth changing. */
static void dk_update_pod_resources(struct dk_op *op)
{
    Runtime__V1__UpdatePodSandboxResourcesResponse r =
        RUNTIME__V1__UPDATE_POD_SANDBOX_RESOURCES_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

/* ---- not available on Docker ------------------------------------------------ */

static void dk_streaming_later(struct dk_op *op)
{
    dk_op_fail(op, GRPC_UNIMPLEMENTED,
               "%s needs crisp's streaming server, which the Docker backend does not have yet",
               op->call->method->name);
}

static void dk_no_checkpoint(struct dk_op *op)
{
    dk_op_fail(op, GRPC_UNIMPLEMENTED,
               "CheckpointContainer: the Docker backend does not support checkpoints "
               "(Docker's own are experimental and CRIU-based)");
}

static void dk_no_metrics(struct dk_op *op)
{
    dk_op_fail(op, GRPC_UNIMPLEMENTED,
               "%s: the Docker backend serves stats (ContainerStats, PodSandboxStats), "
               "not Prometheus-style metric descriptors",
               op->call->method->name);
}

const struct dk_method dk_runtime_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_VERSION] = {dk_version},
    [CRISP_RPC_STATUS] = {dk_status, .unversioned = 1},
    [CRISP_RPC_RUNTIME_CONFIG] = {dk_runtime_config},
    [CRISP_RPC_UPDATE_RUNTIME_CONFIG] = {dk_update_runtime_config, .unversioned = 1},
    [CRISP_RPC_UPDATE_POD_SANDBOX_RESOURCES] = {dk_update_pod_resources, .unversioned = 1},
    [CRISP_RPC_EXEC] = {dk_streaming_later, .unversioned = 1},
    [CRISP_RPC_ATTACH] = {dk_streaming_later, .unversioned = 1},
    [CRISP_RPC_PORT_FORWARD] = {dk_streaming_later, .unversioned = 1},
    [CRISP_RPC_CHECKPOINT_CONTAINER] = {dk_no_checkpoint, .unversioned = 1},
    [CRISP_RPC_LIST_METRIC_DESCRIPTORS] = {dk_no_metrics, .unversioned = 1},
    [CRISP_RPC_LIST_POD_SANDBOX_METRICS] = {dk_no_metrics, .unversioned = 1},
    [CRISP_RPC_STREAM_POD_SANDBOX_METRICS] = {dk_no_metrics, .unversioned = 1},
};
