/* docker_ctr.c - containers on Docker: create (joined to the sandbox's
 * namespaces), start (with the kubelet's log symlink), stop, remove,
 * status, resource updates, log reopening. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

static int check_id(struct dk_op *op, const char *id)
{
    return dk_check_id(op, id, "container_id");
}

/* ---- CreateContainer ------------------------------------------------------------- */

static void create_state_free(void *p)
{
    cJSON_Delete(((struct dk_create *)p)->body);
    free(p);
}

static void on_ctr_created(struct dk_op *op)
{
    struct dk_create *st = op->state;
    Runtime__V1__CreateContainerResponse r = RUNTIME__V1__CREATE_CONTAINER_RESPONSE__INIT;
    r.container_id = st->id;
    op->undo_id[0] = 0; /* answered: the kubelet owns it */
    dk_op_changed(op, DK_VIEW_CONTAINERS, st->id, DK_EXPECT_PRESENT);
    dk_op_reply(op, &r.base);
}

static void create_found_sandbox(struct dk_op *op, int status, cJSON *sb)
{
    const Runtime__V1__CreateContainerRequest *req = (const void *)op->req;
    if (dk_inspect_ok(op, status, sb, DK_TYPE_SANDBOX, req->pod_sandbox_id) < 0)
        return;
    struct dk_create *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->state = st;
    op->free_state = create_state_free;
    struct dk_err err = {0};
    if (dk_container_name(st->name, req, sb, &err) < 0 ||
        !(st->body = dk_container_body(req, sb, &op->be->cfg, op->be->podman, &err))) {
        dk_op_fail_err(op, &err);
        return;
    }
    st->what = "creating the container";
    st->made = on_ctr_created;
    op->must_finish = 1;
    dk_create_named(op, st);
}

static void dk_create_container(struct dk_op *op)
{
    const Runtime__V1__CreateContainerRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerConfig *c = req->config;
    if (!c || !c->metadata || !c->metadata->name[0] || !c->image || !c->image->image[0]) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT,
                   "CreateContainer needs config.metadata.name and config.image.image");
        return;
    }
    if (dk_check_id(op, req->pod_sandbox_id, "pod_sandbox_id") < 0)
        return;
    dk_call(op, "GET", NULL, create_found_sandbox, "/containers/%s/json",
            dk_esc(op, req->pod_sandbox_id));
}

/* ---- StartContainer ------------------------------------------------------------------ */

/* The kubelet reads log_path; crisp writes it from the engine's log stream
 * (docker_logs.c). It is opened before the start, as containerd opens its
 * loggers: a log that cannot be written fails the call with nothing
 * started. */
struct start_state {
    int fd;       /* log_path, open; -1: none */
    int tty;
    char *path;   /* in the op's arena */
    char *id;     /* the engine's full ID (the request may name it otherwise) */
};

static void start_state_free(void *p)
{
    struct start_state *st = p;
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

static void on_started(struct dk_op *op, int status, cJSON *json)
{
    struct start_state *st = op->state;
    if (status != 204 && status != 304) {
        dk_fail_http(op, status, json, "starting the container");
        return;
    }
    if (st->fd >= 0)
        dk_log_follow(op->be, st->id, st->path, st->fd, st->tty);
    st->fd = -1; /* the follower's */
    dk_op_changed(op, DK_VIEW_CONTAINERS, st->id, DK_EXPECT_RUNNING);
    Runtime__V1__StartContainerResponse r = RUNTIME__V1__START_CONTAINER_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void on_start_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__StartContainerRequest *req = (const void *)op->req;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, req->container_id) < 0)
        return;
    struct start_state *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    st->fd = -1;
    op->state = st;
    op->free_state = start_state_free;
    char err[600];
    const char *lp = dk_str(dk_entry_labels(json), DK_LABEL_LOGPATH);
    st->tty = dk_bool(dk_obj(json, "Config"), "Tty");
    st->path = dk_strdup(&op->mem, lp);
    st->id = dk_strdup(&op->mem, dk_str(json, "Id"));
    int rv = *lp ? dk_log_open(lp, &st->fd, err, sizeof(err)) : 0;
    if (rv == -1) {
        dk_op_fail(op, GRPC_UNKNOWN, "failed to create container loggers: %s", err);
        return;
    }
    if (rv == -2) /* another process follows this log (a second crisp): its business */
        log_warn("container_log_elsewhere", "container=%s why=%s", req->container_id, crisp_logq(err));
    dk_call(op, "POST", NULL, on_started, "/containers/%s/start", dk_esc(op, req->container_id));
}

static void dk_start_container(struct dk_op *op)
{
    const Runtime__V1__StartContainerRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) == 0)
        dk_call(op, "GET", NULL, on_start_inspect, "/containers/%s/json", dk_esc(op, req->container_id));
}

/* ---- StopContainer / RemoveContainer ---------------------------------------------------- */

static void on_stopped(struct dk_op *op, int status, cJSON *json)
{
    if (status != 204 && status != 304) {
        dk_fail_http(op, status, json, "stopping the container");
        return;
    }
    const Runtime__V1__StopContainerRequest *req = (const void *)op->req;
    dk_op_changed(op, DK_VIEW_CONTAINERS, req->container_id, DK_EXPECT_NOT_RUNNING);
    Runtime__V1__StopContainerResponse r = RUNTIME__V1__STOP_CONTAINER_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void dk_stop_container(struct dk_op *op)
{
    const Runtime__V1__StopContainerRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) < 0)
        return;
    op->must_finish = 1;
    dk_call(op, "POST", NULL, on_stopped, "/containers/%s/stop?t=%lld", dk_esc(op, req->container_id),
            (long long)(req->timeout > 0 ? req->timeout : 0));
}

/* op->state: the container's log path label (the kubelet's symlink),
 * in the op's arena; NULL when unknown. */
static void on_removed(struct dk_op *op, int status, cJSON *json)
{
    const char *log_path = op->state;
    if (status != 204 && status != 404) {
        dk_fail_http(op, status, json, "removing the container");
        return;
    }
    struct stat sb;
    /* a link an older crisp made; a log file is the kubelet's to remove */
    if (log_path && *log_path && lstat(log_path, &sb) == 0 && S_ISLNK(sb.st_mode))
        unlink(log_path);
    Runtime__V1__RemoveContainerResponse r = RUNTIME__V1__REMOVE_CONTAINER_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void on_remove_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__RemoveContainerRequest *req = (const void *)op->req;
    if (status == 404) {
        on_removed(op, 404, NULL); /* idempotent */
        return;
    }
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the container");
        return;
    }
    op->state = dk_strdup(&op->mem, dk_str(dk_entry_labels(json), DK_LABEL_LOGPATH));
    dk_op_changed(op, DK_VIEW_CONTAINERS, dk_str(json, "Id"), DK_EXPECT_GONE);
    dk_log_forget(op->be, dk_str(json, "Id"));
    dk_call(op, "DELETE", NULL, on_removed, "/containers/%s?force=1&v=1", dk_esc(op, req->container_id));
}

static void dk_remove_container(struct dk_op *op)
{
    const Runtime__V1__RemoveContainerRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) < 0)
        return;
    op->must_finish = 1;
    dk_call(op, "GET", NULL, on_remove_inspect, "/containers/%s/json", dk_esc(op, req->container_id));
}

/* ---- ContainerStatus ------------------------------------------------------------------ */

static void on_ctr_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ContainerStatusRequest *req = (const void *)op->req;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, req->container_id) < 0)
        return;
    Runtime__V1__ContainerStatusResponse r = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
    r.status = dk_container_status(&op->mem, json);
    if (req->verbose) {
        dk_info_json(&op->mem, &r.base, json);
        dk_op_reply(op, &r.base);
        return;
    }
    dk_op_reply_status(op, req->container_id, json, *(uint64_t *)op->state, &r.base);
}

/* Not verbose: the view's kept answer when it has one. */
static void dk_ctr_status(struct dk_op *op)
{
    const Runtime__V1__ContainerStatusRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) < 0)
        return;
    uint64_t gen = 0;
    if (!req->verbose && dk_op_status_from_view(op, req->container_id, &gen))
        return;
    if (!(op->state = dk_alloc(&op->mem, sizeof(gen)))) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *(uint64_t *)op->state = gen;
    dk_call(op, "GET", NULL, on_ctr_inspect, "/containers/%s/json", dk_esc(op, req->container_id));
}

/* ---- UpdateContainerResources / ReopenContainerLog ------------------------------------- */

static void on_updated(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200 && status != 201 && status != 204) {
        dk_fail_http(op, status, json, "updating the container's resources");
        return;
    }
    Runtime__V1__UpdateContainerResourcesResponse r =
        RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void dk_update_resources(struct dk_op *op)
{
    const Runtime__V1__UpdateContainerResourcesRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) < 0)
        return;
    cJSON *body = dk_update_body(req->linux, op->be->podman);
    if (op->be->podman) /* podman's compatible API has no update (4.3); its own API has. */
        dk_call(op, "POST", body, on_updated, "/libpod/containers/%s/update", dk_esc(op, req->container_id));
    else
        dk_call(op, "POST", body, on_updated, "/containers/%s/update", dk_esc(op, req->container_id));
}

/* The kubelet renamed log_path to rotate it: crisp's follower of the
 * container's log opens a new file there, and the renamed one does not
 * grow (docker_logs.c). */
static void on_reopen_inspect(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ReopenContainerLogRequest *req = (const void *)op->req;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, req->container_id) < 0)
        return;
    if (!dk_bool(dk_obj(json, "State"), "Running")) {
        dk_op_fail(op, GRPC_FAILED_PRECONDITION, "container %s is not running", req->container_id);
        return;
    }
    char err[600];
    const char *lp = dk_str(dk_entry_labels(json), DK_LABEL_LOGPATH);
    if (*lp && dk_log_reopen(op->be, dk_str(json, "Id"), lp, err, sizeof(err)) < 0) {
        dk_op_fail(op, GRPC_UNKNOWN, "reopening the log: %s", err);
        return;
    }
    Runtime__V1__ReopenContainerLogResponse r = RUNTIME__V1__REOPEN_CONTAINER_LOG_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void dk_reopen_log(struct dk_op *op)
{
    const Runtime__V1__ReopenContainerLogRequest *req = (const void *)op->req;
    if (check_id(op, req->container_id) == 0)
        dk_call(op, "GET", NULL, on_reopen_inspect, "/containers/%s/json",
                dk_esc(op, req->container_id));
}

const struct dk_method dk_container_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_CREATE_CONTAINER] = {dk_create_container},
    [CRISP_RPC_START_CONTAINER] = {dk_start_container, .slow = 1},
    [CRISP_RPC_STOP_CONTAINER] = {dk_stop_container, .slow = 1},
    [CRISP_RPC_REMOVE_CONTAINER] = {dk_remove_container, .slow = 1},
    [CRISP_RPC_CONTAINER_STATUS] = {dk_ctr_status},
    [CRISP_RPC_UPDATE_CONTAINER_RESOURCES] = {dk_update_resources},
    [CRISP_RPC_REOPEN_CONTAINER_LOG] = {dk_reopen_log},
};
