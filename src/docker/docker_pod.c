/* docker_pod.c - pod sandboxes on Docker: an infra ("pause") container that
 * owns the pod's network, IPC and UTS namespaces, named and labelled as
 * cri-dockerd does, so pods survive a move between the two. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

/* ---- RunPodSandbox ------------------------------------------------------------ */

struct run_state {
    struct dk_create create;
    int start_status;
    char start_err[512];
};

static void run_state_free(void *p)
{
    struct run_state *st = p;
    cJSON_Delete(st->create.body);
    free(p);
}

static void on_run_rollback(struct dk_op *op, int status, cJSON *json)
{
    struct run_state *st = op->state;
    (void)json;
    if (status != 204 && status != 404)
        log_warn("docker_rollback_failed", "container=%s status=%d", st->create.id, status);
    else
        op->undo_id[0] = 0;
    dk_op_fail(op, dk_code_for_status(st->start_status), "starting the pod sandbox: %s",
               st->start_err);
}

/* Half-made: remove what was made, then answer why. */
static void run_rollback(struct dk_op *op, int status, const char *why)
{
    struct run_state *st = op->state;
    st->start_status = status;
    snprintf(st->start_err, sizeof(st->start_err), "%s", why);
    dk_call(op, "DELETE", NULL, on_run_rollback, "/containers/%s?force=1&v=1", st->create.id);
}

static void on_run_started(struct dk_op *op, int status, cJSON *json)
{
    struct run_state *st = op->state;
    if (status != 204 && status != 304) {
        run_rollback(op, status, dk_errmsg(json, status));
        return;
    }
    if (op->cancelled) {
        run_rollback(op, 499, "the call was cancelled"); /* nobody will learn this ID */
        return;
    }
    Runtime__V1__RunPodSandboxResponse r = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;
    r.pod_sandbox_id = st->create.id;
    op->undo_id[0] = 0; /* answered: the kubelet owns it */
    dk_op_changed(op, DK_VIEW_SANDBOXES, st->create.id, DK_EXPECT_RUNNING);
    dk_op_reply(op, &r.base);
}

static void on_run_created(struct dk_op *op)
{
    struct run_state *st = op->state;
    dk_call(op, "POST", NULL, on_run_started, "/containers/%s/start", st->create.id);
}

static void run_create(struct dk_op *op)
{
    struct run_state *st = op->state;
    dk_create_named(op, &st->create);
}

static void run_pull_done(struct dk_op *op, int ok, int code, const char *msg)
{
    if (!ok) {
        dk_op_fail(op, code, "pulling the pod infra image %s: %s", op->be->cfg.infra_image, msg);
        return;
    }
    run_create(op);
}

static void on_run_image(struct dk_op *op, int status, cJSON *json)
{
    if (status == 200) {
        run_create(op);
        return;
    }
    if (status != 404) {
        dk_fail_http(op, status, json, "inspecting the pod infra image");
        return;
    }
    dk_pull(op, op->be->cfg.infra_image, NULL, run_pull_done);
}

static void dk_run_pod(struct dk_op *op)
{
    const Runtime__V1__RunPodSandboxRequest *req = (const void *)op->req;
    const Runtime__V1__PodSandboxMetadata *md = req->config ? req->config->metadata : NULL;
    struct dk_err err = {0};
    const char *runtime = NULL;
    struct run_state *st = NULL;
    if (dk_check_pod_metadata(md, &err) < 0 ||
        !(runtime = dk_pod_runtime(&op->be->cfg, op->be->podman, req->runtime_handler, &err)))
        goto fail;
    if (!(st = calloc(1, sizeof(*st)))) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->state = st;
    op->free_state = run_state_free;
    st->create.what = "creating the pod sandbox";
    st->create.sandbox = 1;
    st->create.made = on_run_created;
    st->create.body = dk_sandbox_body(req, &op->be->cfg, runtime, op->be->podman, &err);
    if (!st->create.body || dk_sandbox_name(st->create.name, md, &err) < 0)
        goto fail;
    /* From here on, anything made is removed if the call fails or goes. */
    op->must_finish = 1;
    dk_call(op, "GET", NULL, on_run_image, "/images/%s/json", dk_esc(op, op->be->cfg.infra_image));
    return;
fail:
    dk_op_fail_err(op, &err);
}

/* ---- shared: look a sandbox up ------------------------------------------------------ */

/* Inspects id and checks it is a sandbox; cb gets the inspect JSON, or
 * NULL when the sandbox does not exist (status 404). */
struct sb_lookup {
    void (*cb)(struct dk_op *op, cJSON *sandbox);
    uint64_t gen; /* the view's generation when asked */
};

static void on_sandbox_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct sb_lookup *lk = op->state;
    if (dk_inspect_absent(status, json, DK_TYPE_SANDBOX)) {
        lk->cb(op, NULL);
        return;
    }
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the pod sandbox");
        return;
    }
    lk->cb(op, json);
}

static int sandbox_lookup(struct dk_op *op, const char *id, size_t state_size,
                          void (*cb)(struct dk_op *, cJSON *))
{
    if (dk_check_id(op, id, "pod_sandbox_id") < 0)
        return -1;
    struct sb_lookup *lk = dk_alloc(&op->mem, state_size);
    if (!lk) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    lk->cb = cb;
    lk->gen = dk_view_gen(op->be);
    op->state = lk;
    dk_call(op, "GET", NULL, on_sandbox_inspect, "/containers/%s/json", dk_esc(op, id));
    return 0;
}

/* ---- Stop / Remove ---------------------------------------------------------------- */

struct sbx_state {
    struct sb_lookup lk;
    char id[80];
    int remove;      /* RemovePodSandbox rather than Stop */
    unsigned failed;
    char err[512];
};

static void sbx_final(struct dk_op *op, int status, cJSON *json)
{
    struct sbx_state *st = op->state;
    if (status != 204 && status != 304 && status != 404) {
        dk_fail_http(op, status, json, st->remove ? "removing the pod sandbox" : "stopping the pod sandbox");
        return;
    }
    if (st->remove) {
        Runtime__V1__RemovePodSandboxResponse r = RUNTIME__V1__REMOVE_POD_SANDBOX_RESPONSE__INIT;
        dk_op_reply(op, &r.base);
    } else {
        Runtime__V1__StopPodSandboxResponse r = RUNTIME__V1__STOP_POD_SANDBOX_RESPONSE__INIT;
        dk_op_reply(op, &r.base);
    }
}

static void sbx_sandbox(struct dk_op *op)
{
    struct sbx_state *st = op->state;
    if (st->failed) {
        dk_op_fail(op, GRPC_UNKNOWN, "%s the pod's containers: %s",
                   st->remove ? "removing" : "stopping", st->err);
        return;
    }
    dk_op_changed(op, DK_VIEW_SANDBOXES, st->id, st->remove ? DK_EXPECT_GONE : DK_EXPECT_NOT_RUNNING);
    if (st->remove)
        dk_call(op, "DELETE", NULL, sbx_final, "/containers/%s?force=1&v=1", st->id);
    else
        dk_call(op, "POST", NULL, sbx_final, "/containers/%s/stop?t=10", st->id);
}

static void on_member_done(struct dk_op *op, int status, cJSON *json)
{
    struct sbx_state *st = op->state;
    if (status != 204 && status != 304 && status != 404) {
        st->failed++;
        snprintf(st->err, sizeof(st->err), "%s", dk_errmsg(json, status));
    }
    if (op->pending == 0)
        sbx_sandbox(op);
}

static void on_members(struct dk_op *op, int status, cJSON *json)
{
    struct sbx_state *st = op->state;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing the pod's containers");
        return;
    }
    const cJSON *c;
    unsigned n = 0;
    cJSON_ArrayForEach(c, json) {
        const char *cid = dk_str(c, "Id");
        if (st->remove) {
            dk_op_changed(op, DK_VIEW_CONTAINERS, cid, DK_EXPECT_GONE);
            dk_call(op, "DELETE", NULL, on_member_done, "/containers/%s?force=1&v=1", cid);
            n++;
        } else if (dk_str_is(c, "State", "running")) {
            /* The kubelet stopped them gracefully already; what is left is
             * forcibly terminated, as the CRI asks. */
            dk_op_changed(op, DK_VIEW_CONTAINERS, cid, DK_EXPECT_NOT_RUNNING);
            dk_call(op, "POST", NULL, on_member_done, "/containers/%s/stop?t=0", cid);
            n++;
        }
    }
    if (n == 0)
        sbx_sandbox(op);
}

static void sbx_found(struct dk_op *op, cJSON *sandbox)
{
    struct sbx_state *st = op->state;
    if (!sandbox) {
        /* Idempotent: a sandbox that is gone is stopped and removed. */
        sbx_final(op, 404, NULL);
        return;
    }
    snprintf(st->id, sizeof(st->id), "%s", dk_str(sandbox, "Id"));
    char *filters = dk_label_filters(DK_TYPE_CONTAINER, st->id, 0, NULL);
    if (!filters) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    dk_call(op, "GET", NULL, on_members, "/containers/json?all=1&filters=%s", filters);
    free(filters);
}

static void dk_stop_pod(struct dk_op *op)
{
    const Runtime__V1__StopPodSandboxRequest *req = (const void *)op->req;
    if (sandbox_lookup(op, req->pod_sandbox_id, sizeof(struct sbx_state), sbx_found) == 0)
        op->must_finish = 1;
}

static void dk_remove_pod(struct dk_op *op)
{
    const Runtime__V1__RemovePodSandboxRequest *req = (const void *)op->req;
    if (sandbox_lookup(op, req->pod_sandbox_id, sizeof(struct sbx_state), sbx_found) == 0) {
        ((struct sbx_state *)op->state)->remove = 1;
        op->must_finish = 1;
    }
}

/* ---- PodSandboxStatus ------------------------------------------------------------------ */

static void status_found(struct dk_op *op, cJSON *sb)
{
    const Runtime__V1__PodSandboxStatusRequest *req = (const void *)op->req;
    if (!sb) {
        dk_op_fail(op, GRPC_NOT_FOUND, "pod sandbox %s not found", req->pod_sandbox_id);
        return;
    }
    Runtime__V1__PodSandboxStatusResponse r = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT;
    r.status = dk_sandbox_status(&op->mem, sb);
    if (req->verbose) {
        dk_info_json(&op->mem, &r.base, sb);
        dk_op_reply(op, &r.base);
        return;
    }
    dk_op_reply_status(op, req->pod_sandbox_id, sb, ((struct sb_lookup *)op->state)->gen, &r.base);
}

/* Not verbose: the view's kept answer when it has one (only a full ID is
 * kept: an ID sandbox_lookup refuses is never found there). */
static void dk_pod_status(struct dk_op *op)
{
    const Runtime__V1__PodSandboxStatusRequest *req = (const void *)op->req;
    uint64_t gen;
    if (!req->verbose && dk_op_status_from_view(op, req->pod_sandbox_id, &gen))
        return;
    sandbox_lookup(op, req->pod_sandbox_id, sizeof(struct sb_lookup), status_found);
}

const struct dk_method dk_pod_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_RUN_POD_SANDBOX] = {dk_run_pod, .slow = 1},
    [CRISP_RPC_STOP_POD_SANDBOX] = {dk_stop_pod, .slow = 1},
    [CRISP_RPC_REMOVE_POD_SANDBOX] = {dk_remove_pod, .slow = 1},
    [CRISP_RPC_POD_SANDBOX_STATUS] = {dk_pod_status},
};
