/* docker_create.c - the step RunPodSandbox and CreateContainer share:
 * POST /containers/create under cri-dockerd's name, once more under a
 * renamed name when it is taken (as cri-dockerd does: a leftover of the
 * same attempt), and the container removed again when the call went away
 * meanwhile (nobody would learn its ID). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"

static void create_issue(struct dk_op *op, struct dk_create *c);

static void on_rolled_back(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    (void)json;
    if (status != 204 && status != 404)
        log_warn("docker_rollback_failed", "container=%s status=%d", c->id, status);
    dk_op_end(op); /* cancelled: nobody waits for an answer */
}

static void on_created(struct dk_op *op, int status, cJSON *json)
{
    struct dk_create *c = op->cur_ud;
    if (status == 409 && !c->renamed) {
        dk_rename(c->name, (unsigned)random()); /* a suffix the name parser ignores */
        c->renamed = 1;
        create_issue(op, c);
        return;
    }
    if (status != 201) {
        dk_fail_http(op, status, json, c->what);
        return;
    }
    snprintf(c->id, sizeof(c->id), "%s", dk_str(json, "Id"));
    if (op->cancelled)
        dk_callx(op, "DELETE", NULL, on_rolled_back, c, "/containers/%s?force=1&v=1", c->id);
    else
        c->made(op);
}

static void create_issue(struct dk_op *op, struct dk_create *c)
{
    char name[DK_NAME_MAX * 3 + 1]; /* escaped: fits whatever the name holds */
    int fits = dk_url_esc(name, sizeof(name), c->name) == 0;
    assert(fits);
    (void)fits;
    if (op->cancelled) {
        dk_op_end(op); /* nothing made yet */
        return;
    }
    dk_callx(op, "POST", cJSON_Duplicate(c->body, 1), on_created, c,
             "/containers/create?name=%s", name);
}

void dk_create_named(struct dk_op *op, struct dk_create *c)
{
    assert(op->must_finish && c->body && c->made);
    create_issue(op, c);
}
