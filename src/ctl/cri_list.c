/* cri_list.c - crispctl's listing and inspecting short forms: pods, ps,
 * images, pull, inspect, logs, stats (crictl's columns). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "ctl/table.h"
#include "runtime_v1.pb-c.h"

/* In cri.c's image: a call on a fresh connection. */
static int one_call(enum crisp_rpc id, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    int *code)
{
    const struct crisp_method *m = crisp_method_by_id(id);
    struct ctl_result r;
    char err[512];
    struct ctl_conn *c = ctl_connect(ctl.endpoint, err, sizeof(err));
    *resp = NULL;
    if (!c)
        return ctl_fail("%s", err);
    int rc = ctl_call_pb(c, m, req, resp, &r);
    ctl_close(c);
    if (code)
        *code = r.code;
    if (rc == 0 && r.code != GRPC_OK && !code)
        rc = ctl_fail("%s: %s: %s", m->name, grpc_code_to_str(r.code), r.message ? r.message : "");
    ctl_result_free(&r);
    return rc ? 1 : 0;
}

static int json_out(void)
{
    return strcmp(ctl.output, "json") == 0;
}

static void print_json(const ProtobufCMessage *m)
{
    char *j = ctl_to_json(m);
    if (j)
        ctl_print_pretty(stdout, j);
    free(j);
}

/* ---- pods ------------------------------------------------------------------- */

static const char *pod_state(int s)
{
    return s == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY ? "Ready" : "NotReady";
}

static void print_pods(const Runtime__V1__ListPodSandboxResponse *r, int quiet)
{
    struct table t;
    char id[80], ago[32], att[16];
    table_init(&t, 7);
    if (!quiet)
        table_add(&t, "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME");
    for (size_t i = 0; i < r->n_items; i++) {
        const Runtime__V1__PodSandbox *p = r->items[i];
        const Runtime__V1__PodSandboxMetadata *md = p->metadata;
        snprintf(att, sizeof(att), "%u", md ? md->attempt : 0);
        if (quiet)
            printf("%s\n", p->id);
        else
            table_add(&t, fmt_id(p->id, ctl.no_trunc, id, sizeof(id)),
                      fmt_ago(p->created_at, ago, sizeof(ago)), pod_state(p->state),
                      md ? md->name : "", md ? md->namespace_ : "", att,
                      *p->runtime_handler ? p->runtime_handler : "(default)");
    }
    table_print(&t, stdout);
    table_free(&t);
}

int ctl_cmd_pods(int argc, char **argv)
{
    static const struct option lo[] = {{"name", required_argument, NULL, 'n'},
                                       {"namespace", required_argument, NULL, 's'},
                                       {"state", required_argument, NULL, 'S'},
                                       {"quiet", no_argument, NULL, 'q'}, {NULL, 0, NULL, 0}};
    Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__PodSandboxFilter f = RUNTIME__V1__POD_SANDBOX_FILTER__INIT;
    Runtime__V1__PodSandboxStateValue st = RUNTIME__V1__POD_SANDBOX_STATE_VALUE__INIT;
    const char *name = NULL, *ns = NULL;
    int c, quiet = 0;
    while ((c = getopt_long(argc, argv, "q", lo, NULL)) != -1) {
        if (c == 'n')
            name = optarg;
        else if (c == 's')
            ns = optarg;
        else if (c == 'S') {
            st.state = strcmp(optarg, "ready") == 0 ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                                                    : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
            f.state = &st;
            req.filter = &f;
        } else if (c == 'q')
            quiet = 1;
        else
            return 2;
    }
    Runtime__V1__ListPodSandboxResponse *r;
    if (one_call(CRISP_RPC_LIST_POD_SANDBOX, &req.base, (ProtobufCMessage **)&r, NULL))
        return 1;
    /* name and namespace: filtered here (the CRI filter has no such field) */
    size_t keep = 0;
    for (size_t i = 0; i < r->n_items; i++) {
        const Runtime__V1__PodSandboxMetadata *md = r->items[i]->metadata;
        int ok = (!name || (md && strstr(md->name, name))) && (!ns || (md && strcmp(md->namespace_, ns) == 0));
        if (ok)
            r->items[keep++] = r->items[i];
        else
            protobuf_c_message_free_unpacked(&r->items[i]->base, NULL);
    }
    r->n_items = keep;
    json_out() ? print_json(&r->base) : print_pods(r, quiet);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* ---- ps ----------------------------------------------------------------------- */

static const char *ctr_state(int s)
{
    static const char *const names[] = {"Created", "Running", "Exited", "Unknown"};
    return s >= 0 && s < 4 ? names[s] : "?";
}

static void print_ctrs(const Runtime__V1__ListContainersResponse *r, int quiet, const char *name)
{
    struct table t;
    char id[80], pod[80], ago[32], att[16];
    table_init(&t, 7);
    if (!quiet)
        table_add(&t, "CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID");
    for (size_t i = 0; i < r->n_containers; i++) {
        const Runtime__V1__Container *k = r->containers[i];
        const char *n = k->metadata ? k->metadata->name : "";
        if (name && !strstr(n, name))
            continue;
        snprintf(att, sizeof(att), "%u", k->metadata ? k->metadata->attempt : 0);
        if (quiet)
            printf("%s\n", k->id);
        else
            table_add(&t, fmt_id(k->id, ctl.no_trunc, id, sizeof(id)),
                      k->image ? k->image->image : k->image_ref, fmt_ago(k->created_at, ago, sizeof(ago)),
                      ctr_state(k->state), n, att, fmt_id(k->pod_sandbox_id, ctl.no_trunc, pod, sizeof(pod)));
    }
    table_print(&t, stdout);
    table_free(&t);
}

int ctl_cmd_ps(int argc, char **argv)
{
    static const struct option lo[] = {{"all", no_argument, NULL, 'a'},
                                       {"pod", required_argument, NULL, 'p'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"quiet", no_argument, NULL, 'q'}, {NULL, 0, NULL, 0}};
    Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
    Runtime__V1__ContainerFilter f = RUNTIME__V1__CONTAINER_FILTER__INIT;
    Runtime__V1__ContainerStateValue st = RUNTIME__V1__CONTAINER_STATE_VALUE__INIT;
    const char *name = NULL;
    int c, quiet = 0, all = 0;
    while ((c = getopt_long(argc, argv, "aqp:", lo, NULL)) != -1) {
        if (c == 'a')
            all = 1;
        else if (c == 'p')
            f.pod_sandbox_id = optarg;
        else if (c == 'n')
            name = optarg;
        else if (c == 'q')
            quiet = 1;
        else
            return 2;
    }
    st.state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
    if (!all)
        f.state = &st;
    req.filter = &f;
    Runtime__V1__ListContainersResponse *r;
    if (one_call(CRISP_RPC_LIST_CONTAINERS, &req.base, (ProtobufCMessage **)&r, NULL))
        return 1;
    json_out() ? print_json(&r->base) : print_ctrs(r, quiet, name);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* ---- images, pull ------------------------------------------------------------------ */

static void split_tag(const char *ref, char *repo, size_t rcap, const char **tag)
{
    const char *colon = strrchr(ref, ':'), *slash = strrchr(ref, '/');
    if (colon && (!slash || colon > slash)) {
        snprintf(repo, rcap, "%.*s", (int)(colon - ref), ref);
        *tag = colon + 1;
    } else {
        snprintf(repo, rcap, "%s", ref);
        *tag = "<none>";
    }
}

static void image_rows(struct table *t, const Runtime__V1__Image *im, int quiet)
{
    char id[80], size[32], repo[512];
    const char *tag;
    if (quiet) {
        printf("%s\n", im->id);
        return;
    }
    fmt_id(im->id, ctl.no_trunc, id, sizeof(id));
    fmt_bytes(im->size, size, sizeof(size));
    for (size_t j = 0; j < im->n_repo_tags; j++) {
        split_tag(im->repo_tags[j], repo, sizeof(repo), &tag);
        table_add(t, repo, tag, id, size);
    }
    if (!im->n_repo_tags)
        table_add(t, im->n_repo_digests ? im->repo_digests[0] : "<none>", "<none>", id, size);
}

int ctl_cmd_images(int argc, char **argv)
{
    int quiet = argc > 1 && (strcmp(argv[1], "-q") == 0 || strcmp(argv[1], "--quiet") == 0);
    Runtime__V1__ListImagesRequest req = RUNTIME__V1__LIST_IMAGES_REQUEST__INIT;
    Runtime__V1__ListImagesResponse *r;
    struct table t;
    if (one_call(CRISP_RPC_LIST_IMAGES, &req.base, (ProtobufCMessage **)&r, NULL))
        return 1;
    if (json_out()) {
        print_json(&r->base);
    } else {
        table_init(&t, 4);
        if (!quiet)
            table_add(&t, "IMAGE", "TAG", "IMAGE ID", "SIZE");
        for (size_t i = 0; i < r->n_images; i++)
            image_rows(&t, r->images[i], quiet);
        table_print(&t, stdout);
        table_free(&t);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

int ctl_cmd_pull(int argc, char **argv)
{
    static const struct option lo[] = {{"creds", required_argument, NULL, 'c'},
                                       {"auth", required_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__AuthConfig auth = RUNTIME__V1__AUTH_CONFIG__INIT;
    char creds[1024];
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'c' && strchr(optarg, ':')) {
            snprintf(creds, sizeof(creds), "%s", optarg);
            *strchr(creds, ':') = 0;
            auth.username = creds;
            auth.password = creds + strlen(creds) + 1;
        } else if (c == 'a') {
            auth.auth = optarg;
        } else {
            return ctl_fail("usage: crispctl pull [--creds USER:PASS | --auth BASE64] IMAGE");
        }
        req.auth = &auth;
    }
    if (optind != argc - 1)
        return ctl_fail("usage: crispctl pull [--creds USER:PASS | --auth BASE64] IMAGE");
    spec.image = argv[optind];
    req.image = &spec;
    Runtime__V1__PullImageResponse *r;
    if (one_call(CRISP_RPC_PULL_IMAGE, &req.base, (ProtobufCMessage **)&r, NULL))
        return 1;
    printf("Image is up to date for %s\n", r->image_ref);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}
