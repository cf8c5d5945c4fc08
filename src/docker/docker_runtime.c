/* docker_runtime.c - Version, Status, RuntimeConfig and the RPCs the Docker
 * Engine has no counterpart for. */
#include <stdio.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

/* ---- Version -------------------------------------------------------------- */

/* From the engine's version as learnt once (podman's GET /version takes
 * seconds: a burst of Version calls must not each ask it). */
static void on_version(struct dk_op *op, const cJSON *json)
{
    Runtime__V1__VersionResponse r = RUNTIME__V1__VERSION_RESPONSE__INIT;
    dk_version_response(&op->mem, json, &r);
    dk_op_reply(op, &r.base);
}

static void dk_version(struct dk_op *op)
{
    dk_engine_version(op, on_version);
}

/* ---- Status ----------------------------------------------------------------- */

struct status_state {
    int engine_ok;
    char reason[64];
    char message[512];
};

static void status_reply(struct dk_op *op, const char *info_json)
{
    struct status_state *st = op->state;
    const Runtime__V1__StatusRequest *req = (const void *)op->req;
    Runtime__V1__StatusResponse r = RUNTIME__V1__STATUS_RESPONSE__INIT;
    r.status = dk_runtime_status(&op->mem, st->engine_ok, st->reason, st->message);
    r.runtime_handlers = dk_runtime_handlers(&op->mem, &op->be->cfg, op->be->podman,
                                             &r.n_runtime_handlers);
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
    if (err)
        dk_engine_lost(op->be);
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
    status_reply(op, len && ((const Runtime__V1__StatusRequest *)op->req)->verbose ? (const char *)body
                                                                                 : NULL);
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
     * the node NotReady with this reason. Liveness is GET /_ping (instant
     * on both engines; podman's /info forks conmon and the OCI runtime, a
     * second or more each); /info only for a verbose answer. */
    const Runtime__V1__StatusRequest *req = (const void *)op->req;
    struct h1_req_opts o = {.method = "GET", .target = req->verbose ? "/info" : "/_ping",
                            .timeout_ms = 10000};
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
    [CRISP_RPC_CHECKPOINT_CONTAINER] = {dk_no_checkpoint, .unversioned = 1},
    [CRISP_RPC_LIST_METRIC_DESCRIPTORS] = {dk_no_metrics, .unversioned = 1},
    [CRISP_RPC_LIST_POD_SANDBOX_METRICS] = {dk_no_metrics, .unversioned = 1},
    [CRISP_RPC_STREAM_POD_SANDBOX_METRICS] = {dk_no_metrics, .unversioned = 1},
};
