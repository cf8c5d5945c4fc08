/* docker_image.c - the ImageService on Docker: list, status, pull (every
 * AuthConfig form, sent as X-Registry-Auth), remove, filesystem usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include <openssl/evp.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

#define PULL_LINE_MAX (64 * 1024)

/* ---- ListImages ------------------------------------------------------------------ */

static void on_images(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200 || !cJSON_IsArray(json)) {
        dk_fail_http(op, status, json, "listing images");
        return;
    }
    Runtime__V1__Image **v;
    size_t k = dk_images_from_list(&op->mem, json, &v);
    dk_op_reply_items(op, (void **)v, k);
}

/* ListImages and StreamImages: the request messages share their layout. */
static void dk_list_images(struct dk_op *op)
{
    const Runtime__V1__ListImagesRequest *req = (const void *)op->req;
    const char *want = req->filter && req->filter->image ? req->filter->image->image : NULL;
    if (!want || !*want) {
        dk_call(op, "GET", NULL, on_images, "/images/json");
        return;
    }
    char *q = dk_image_filter(want);
    if (!q) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    dk_call(op, "GET", NULL, on_images, "/images/json?filters=%s", q);
    free(q);
}

/* ---- ImageStatus ----------------------------------------------------------------- */

static void on_image_status(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ImageStatusRequest *req = (const void *)op->req;
    Runtime__V1__ImageStatusResponse r = RUNTIME__V1__IMAGE_STATUS_RESPONSE__INIT;
    if (status == 404) {
        dk_op_reply(op, &r.base); /* not present: no image, no error */
        return;
    }
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the image");
        return;
    }
    /* the same Image whatever reference found it (ID, short ID, tag,
     * digest), as containerd answers: no spec echoing the request */
    r.image = dk_image(&op->mem, json, NULL);
    if (req->verbose)
        dk_info_json(&op->mem, &r.base, json);
    dk_op_reply(op, &r.base);
}

static int check_spec(struct dk_op *op, const Runtime__V1__ImageSpec *spec)
{
    if (spec && spec->image && *spec->image)
        return 0;
    dk_op_fail(op, GRPC_INVALID_ARGUMENT, "image.image is empty");
    return -1;
}

/* GET /images/{ref}/json, or an absent image's answer (404) at once for a
 * reference no image can have: it would not reach the engine as a path. */
static void image_inspect(struct dk_op *op, const char *ref, dk_json_cb cb)
{
    if (dk_image_ref_pathsafe(ref))
        dk_call(op, "GET", NULL, cb, "/images/%s/json", dk_esc(op, ref));
    else
        cb(op, 404, NULL);
}

static void dk_image_status(struct dk_op *op)
{
    const Runtime__V1__ImageStatusRequest *req = (const void *)op->req;
    if (check_spec(op, req->image) == 0)
        image_inspect(op, req->image->image, on_image_status);
}

/* ---- pull -------------------------------------------------------------------------- */

struct pull_state {
    dk_pull_cb cb;
    struct crisp_md headers;
    char line[PULL_LINE_MAX];
    size_t line_len;
    char error[1024];
};

static void pull_state_free(void *p)
{
    struct pull_state *st = p;
    crisp_md_free(&st->headers);
    free(st);
}

static void pull_line(struct pull_state *st)
{
    st->line[st->line_len] = 0;
    cJSON *j = cJSON_Parse(st->line);
    const char *e = dk_pull_error(j);
    if (*e && !st->error[0])
        snprintf(st->error, sizeof(st->error), "%s", e);
    cJSON_Delete(j);
    st->line_len = 0;
}

/* The pull's progress: one JSON object a line; an "error" may come at any
 * point with HTTP 200 already sent. */
static int pull_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    (void)r;
    struct dk_op *op = ud;
    struct pull_state *st = op->aux;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            pull_line(st);
        } else if (st->line_len < PULL_LINE_MAX - 1) {
            st->line[st->line_len++] = (char)p[i];
        }
    }
    return 0;
}

static void pull_done(struct h1_req *r, int err, const char *errmsg, int status,
                      const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    struct dk_op *op = ud;
    struct pull_state *st = op->aux;
    op->aux = NULL;
    op->free_aux = NULL;
    dk_pull_cb cb = st->cb;
    char msg[1100];
    int ok = 0, code = GRPC_OK;
    if (err) {
        code = GRPC_UNAVAILABLE;
        snprintf(msg, sizeof(msg), "docker engine %s: %s", op->be->engine,
                 errmsg ? errmsg : h1_strerror(err));
    } else if (status != 200) {
        (void)body;
        (void)len;
        if (st->line_len)
            pull_line(st);
        if (st->error[0])
            snprintf(msg, sizeof(msg), "%s", st->error);
        else
            snprintf(msg, sizeof(msg), "engine answered HTTP %d", status);
        code = status == 404 ? GRPC_NOT_FOUND : dk_pull_code(msg);
        if (code == GRPC_UNKNOWN)
            code = dk_code_for_status(status);
    } else {
        if (st->line_len)
            pull_line(st);
        if (st->error[0]) {
            snprintf(msg, sizeof(msg), "%s", st->error);
            code = dk_pull_code(msg);
        } else {
            ok = 1;
            msg[0] = 0;
        }
    }
    pull_state_free(st);
    cb(op, ok, code, msg);
}

static const struct h1_req_cbs pull_cbs = {.on_body = pull_body, .on_done = pull_done};

void dk_pull(struct dk_op *op, const char *ref, const char *registry_auth, dk_pull_cb cb)
{
    struct pull_state *st = calloc(1, sizeof(*st));
    if (!st) {
        free(st);
        cb(op, 0, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    st->cb = cb;
    crisp_md_init(&st->headers, 64 * 1024);
    if (registry_auth &&
        crisp_md_add(&st->headers, (const uint8_t *)"X-Registry-Auth", 15,
                     (const uint8_t *)registry_auth, strlen(registry_auth)) < 0) {
        pull_state_free(st);
        cb(op, 0, GRPC_INVALID_ARGUMENT, "registry credentials too large");
        return;
    }
    char *target = dk_pull_target(ref);
    if (!target) {
        pull_state_free(st);
        cb(op, 0, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->aux = st;
    op->free_aux = (dk_free_fn)pull_state_free;
    struct h1_req_opts o = {.method = "POST", .target = target, .headers = &st->headers};
    dk_call_opts(op, &o, &pull_cbs);
    free(target);
}

/* ---- PullImage --------------------------------------------------------------------- */

static void on_pulled_inspect(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the pulled image");
        return;
    }
    Runtime__V1__PullImageResponse r = RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;
    r.image_ref = dk_strdup(&op->mem, dk_str(json, "Id"));
    dk_op_reply(op, &r.base);
}

static void on_pulled(struct dk_op *op, int ok, int code, const char *msg)
{
    const Runtime__V1__PullImageRequest *req = (const void *)op->req;
    if (!ok) {
        dk_op_fail(op, code, "pulling image %s: %s", req->image->image, msg);
        return;
    }
    dk_call(op, "GET", NULL, on_pulled_inspect, "/images/%s/json", dk_esc(op, req->image->image));
}

static void dk_pull_image(struct dk_op *op)
{
    const Runtime__V1__PullImageRequest *req = (const void *)op->req;
    if (check_spec(op, req->image) < 0)
        return;
    struct dk_err err = {0};
    char *auth;
    if (dk_registry_auth(req->auth, &auth, &err) < 0) {
        dk_op_fail_err(op, &err);
        return;
    }
    dk_pull(op, req->image->image, auth, on_pulled);
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
}

/* ---- RemoveImage ----------------------------------------------------------------------- */

static void on_image_removed(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200 && status != 404) {
        dk_fail_http(op, status, json, "removing the image");
        return;
    }
    Runtime__V1__RemoveImageResponse r = RUNTIME__V1__REMOVE_IMAGE_RESPONSE__INIT;
    dk_op_reply(op, &r.base);
}

static void on_remove_image_inspect(struct dk_op *op, int status, cJSON *json)
{
    if (status == 404) {
        on_image_removed(op, 404, NULL); /* idempotent */
        return;
    }
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the image");
        return;
    }
    /* By ID, forced: every tag goes, as the CRI means by removing an image;
     * an image a running container uses is refused by the engine (409). */
    dk_call(op, "DELETE", NULL, on_image_removed, "/images/%s?force=1", dk_esc(op, dk_str(json, "Id")));
}

static void dk_remove_image(struct dk_op *op)
{
    const Runtime__V1__RemoveImageRequest *req = (const void *)op->req;
    if (check_spec(op, req->image) == 0)
        image_inspect(op, req->image->image, on_remove_image_inspect);
}

/* ---- ImageFsInfo ------------------------------------------------------------------------ */

static Runtime__V1__FilesystemUsage *fs_usage(struct dk_op *op, const char *dir, int64_t now,
                                              int *ok)
{
    Runtime__V1__FilesystemUsage *u = dk_msg(&op->mem, &runtime__v1__filesystem_usage__descriptor);
    Runtime__V1__FilesystemIdentifier *id = dk_msg(&op->mem, &runtime__v1__filesystem_identifier__descriptor);
    Runtime__V1__UInt64Value *bytes = dk_msg(&op->mem, &runtime__v1__uint64_value__descriptor);
    Runtime__V1__UInt64Value *inodes = dk_msg(&op->mem, &runtime__v1__uint64_value__descriptor);
    if (!u || !id || !bytes || !inodes)
        return NULL;
    struct statvfs sv;
    *ok = statvfs(dir, &sv) == 0;
    if (*ok) {
        bytes->value = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
        inodes->value = (uint64_t)(sv.f_files - sv.f_ffree);
    }
    id->mountpoint = dk_strdup(&op->mem, dir);
    u->timestamp = now;
    u->fs_id = id;
    u->used_bytes = bytes;
    u->inodes_used = inodes;
    return u;
}

/* The engine's root holds both its images and its containers' writable
 * layers. crisp runs on the node, as the kubelet does, and measures the
 * filesystem there. */
static void fs_info_reply(struct dk_op *op, const char *root)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    int ok1 = 0, ok2 = 0;
    Runtime__V1__FilesystemUsage *img = fs_usage(op, root, now, &ok1);
    Runtime__V1__FilesystemUsage *ctr = fs_usage(op, root, now, &ok2);
    if (!img || !ctr) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory building a response");
        return;
    }
    if (!ok1) {
        dk_op_fail(op, GRPC_UNAVAILABLE,
                   "cannot measure the engine's storage %s from crisp's host (is the engine remote?)",
                   root);
        return;
    }
    Runtime__V1__FilesystemUsage *imgs[1] = {img}, *ctrs[1] = {ctr};
    Runtime__V1__ImageFsInfoResponse r = RUNTIME__V1__IMAGE_FS_INFO_RESPONSE__INIT;
    r.n_image_filesystems = 1;
    r.image_filesystems = imgs;
    r.n_container_filesystems = 1;
    r.container_filesystems = ctrs;
    dk_op_reply(op, &r.base);
}

static void on_fs_info(struct dk_op *op, int status, cJSON *json)
{
    if (status != 200) {
        dk_fail_http(op, status, json, "docker info");
        return;
    }
    const char *root = dk_learn_storage_root(op->be, json);
    if (!*root) {
        dk_op_fail(op, GRPC_UNKNOWN, "the engine did not say where it stores images (DockerRootDir)");
        return;
    }
    fs_info_reply(op, root);
}

/* The storage root as learnt from the engine when it is known: /info is no
 * light call (dockerd runs runc and docker-init for their versions, podman
 * conmon and its OCI runtime), and the kubelet asks ImageFsInfo every few
 * seconds. */
static void dk_image_fs_info(struct dk_op *op)
{
    if (op->be->storage_root)
        fs_info_reply(op, op->be->storage_root);
    else
        dk_call(op, "GET", NULL, on_fs_info, "/info");
}

const struct dk_method dk_image_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_LIST_IMAGES] = {dk_list_images},
    [CRISP_RPC_STREAM_IMAGES] = {dk_list_images},
    [CRISP_RPC_IMAGE_STATUS] = {dk_image_status},
    [CRISP_RPC_PULL_IMAGE] = {dk_pull_image, .slow = 1},
    [CRISP_RPC_REMOVE_IMAGE] = {dk_remove_image, .slow = 1},
    [CRISP_RPC_IMAGE_FS_INFO] = {dk_image_fs_info},
};
