/* docker_list.c - ListPodSandbox, ListContainers and their Stream*
 * twins on Docker: one GET /containers/json each (the label selector as the
 * engine's filter), decoded by decode.c, answered whole or in chunks. */
#include <stdlib.h>

#include "docker.h"
#include "crisp/grpc.h"

/* GET /containers/json?all=1 with the filters' query value; frees it. */
static void list_call(struct dk_op *op, char *filters, dk_json_cb cb)
{
    if (!filters) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    dk_call(op, "GET", NULL, cb, "/containers/json?all=1&filters=%s", filters);
    free(filters);
}

static void on_sandboxes(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ListPodSandboxRequest *req = (const void *)op->req;
    Runtime__V1__PodSandbox **v;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing pod sandboxes");
        return;
    }
    size_t n = dk_sandboxes_from_list(&op->mem, json, req->filter, &v);
    dk_op_reply_items(op, (void **)v, n);
}

/* ListPodSandbox and StreamPodSandboxes: the requests share their layout. */
static void dk_list_pods(struct dk_op *op)
{
    const Runtime__V1__ListPodSandboxRequest *req = (const void *)op->req;
    const Runtime__V1__PodSandboxFilter *f = req->filter;
    list_call(op, dk_label_filters(DK_TYPE_SANDBOX, NULL, f ? f->n_label_selector : 0,
                                   f ? (void *)f->label_selector : NULL),
              on_sandboxes);
}

static void on_containers(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ListContainersRequest *req = (const void *)op->req;
    Runtime__V1__Container **v;
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing containers");
        return;
    }
    size_t n = dk_containers_from_list(&op->mem, json, req->filter, &v);
    dk_op_reply_items(op, (void **)v, n);
}

/* ListContainers and StreamContainers: the requests share their layout. */
static void dk_list_ctrs(struct dk_op *op)
{
    const Runtime__V1__ListContainersRequest *req = (const void *)op->req;
    const Runtime__V1__ContainerFilter *f = req->filter;
    list_call(op, dk_label_filters(DK_TYPE_CONTAINER, f ? f->pod_sandbox_id : NULL,
                                   f ? f->n_label_selector : 0, f ? (void *)f->label_selector : NULL),
              on_containers);
}

const struct dk_method dk_list_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_LIST_POD_SANDBOX] = {dk_list_pods},
    [CRISP_RPC_STREAM_POD_SANDBOXES] = {dk_list_pods},
    [CRISP_RPC_LIST_CONTAINERS] = {dk_list_ctrs},
    [CRISP_RPC_STREAM_CONTAINERS] = {dk_list_ctrs},
};
