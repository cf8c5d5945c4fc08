/* decode.c - engine answers -> CRI messages (codec.h): pod sandboxes and
 * containers from list entries and inspect answers, images, events, pull
 * progress, the engine's version and info, verbose info maps. Stats are
 * decode_stats.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "docker/codec.h"

#define NS_PER_S 1000000000LL

/* ---- building blocks ---------------------------------------------------------------- */

static int id_matches(const char *id, const char *prefix)
{
    return !prefix || !*prefix || strncmp(id, prefix, strlen(prefix)) == 0;
}

/* An inspect answer's creation time, in whole seconds as a list entry has
 * it (so that both answers agree for objects crisp did not make). */
static int64_t inspect_created_ns(const cJSON *inspect)
{
    return dk_time_ns(dk_str(inspect, "Created")) / NS_PER_S * NS_PER_S;
}

Runtime__V1__PodSandboxMetadata *dk_pod_metadata(struct dk_arena *a, const struct dk_name *nm)
{
    Runtime__V1__PodSandboxMetadata *md = dk_msg(a, &runtime__v1__pod_sandbox_metadata__descriptor);
    if (!md)
        return NULL;
    md->name = dk_strdup(a, nm->pod);
    md->namespace_ = dk_strdup(a, nm->ns);
    md->uid = dk_strdup(a, nm->uid);
    md->attempt = nm->attempt;
    return md;
}

Runtime__V1__ContainerMetadata *dk_ctr_metadata(struct dk_arena *a, const struct dk_name *nm)
{
    Runtime__V1__ContainerMetadata *md = dk_msg(a, &runtime__v1__container_metadata__descriptor);
    if (!md)
        return NULL;
    md->name = dk_strdup(a, nm->name);
    md->attempt = nm->attempt;
    return md;
}

/* A sandbox's metadata from its Docker name; NULL when the name is not a
 * sandbox's in cri-dockerd's scheme. */
static Runtime__V1__PodSandboxMetadata *sandbox_name_metadata(struct dk_arena *a, const char *name)
{
    struct dk_name nm;
    if (dk_parse_name(name, &nm) < 0 || strcmp(nm.name, DK_SANDBOX_NAME) != 0)
        return NULL;
    return dk_pod_metadata(a, &nm);
}

/* A container's metadata from its Docker name; NULL for a sandbox's name
 * or one not in the scheme. */
static Runtime__V1__ContainerMetadata *ctr_name_metadata(struct dk_arena *a, const char *name)
{
    struct dk_name nm;
    if (dk_parse_name(name, &nm) < 0 || strcmp(nm.name, DK_SANDBOX_NAME) == 0)
        return NULL;
    return dk_ctr_metadata(a, &nm);
}

static Runtime__V1__ImageSpec *image_spec(struct dk_arena *a, const char *image)
{
    Runtime__V1__ImageSpec *s = dk_msg(a, &runtime__v1__image_spec__descriptor);
    if (s)
        s->image = dk_strdup(a, image);
    return s;
}

Runtime__V1__ContainerState dk_container_state(const char *docker_state)
{
    static const struct {
        const char *docker;
        Runtime__V1__ContainerState cri;
    } map[] = {
        {"created", RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED},
        {"running", RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING},
        {"paused", RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING},
        {"restarting", RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING},
        {"exited", RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED},
        {"dead", RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED},
        /* podman, until its exit command (cleanup) has run */
        {"stopped", RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(docker_state, map[i].docker) == 0)
            return map[i].cri;
    return RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
}

/* ---- pod sandboxes ---------------------------------------------------------------------- */

static Runtime__V1__PodSandboxState sandbox_state(int running)
{
    return running ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                   : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}

/* One list entry -> a PodSandbox; NULL when the filter drops it or its name
 * is not a sandbox's. */
static Runtime__V1__PodSandbox *sandbox_entry(struct dk_arena *a, const cJSON *c,
                                              const Runtime__V1__PodSandboxFilter *f)
{
    const char *id = dk_str(c, "Id");
    const cJSON *labels = dk_obj(c, "Labels");
    Runtime__V1__PodSandboxState state = sandbox_state(dk_str_is(c, "State", "running"));
    if (f && (!id_matches(id, f->id) || (f->state && f->state->state != state) ||
              !dk_labels_match(labels, f->n_label_selector, f->label_selector)))
        return NULL;
    Runtime__V1__PodSandboxMetadata *md = sandbox_name_metadata(a, dk_entry_name(c));
    Runtime__V1__PodSandbox *p = md ? dk_msg(a, &runtime__v1__pod_sandbox__descriptor) : NULL;
    if (!p)
        return NULL;
    p->id = dk_strdup(a, id);
    p->metadata = md;
    p->state = state;
    p->created_at = dk_created_ns(labels, dk_secs_to_ns(dk_int(c, "Created")));
    dk_cri_labels(a, &p->base, labels);
    p->runtime_handler = dk_strdup(a, dk_str(labels, DK_LABEL_HANDLER));
    return p;
}

size_t dk_sandboxes_from_list(struct dk_arena *a, const cJSON *list,
                              const Runtime__V1__PodSandboxFilter *f, Runtime__V1__PodSandbox ***out)
{
    size_t cap = (size_t)cJSON_GetArraySize(list), n = 0;
    Runtime__V1__PodSandbox **v = dk_alloc(a, (cap ? cap : 1) * sizeof(*v));
    const cJSON *c;
    *out = v;
    cJSON_ArrayForEach(c, list) {
        Runtime__V1__PodSandbox *p = v ? sandbox_entry(a, c, f) : NULL;
        if (p)
            v[n++] = p;
    }
    return a->oom ? 0 : n;
}

/* The sandbox's IPv4 address, and its IPv6 ones as additional IPs. */
static void sandbox_ips(struct dk_arena *a, const cJSON *inspect,
                        Runtime__V1__PodSandboxNetworkStatus *net)
{
    const cJSON *ns = dk_obj(inspect, "NetworkSettings");
    const char *ip = dk_str(ns, "IPAddress");
    const cJSON *nets = dk_obj(ns, "Networks"), *n;
    size_t extra = 0, k = 0;
    cJSON_ArrayForEach(n, nets) {
        if (!*ip && *dk_str(n, "IPAddress"))
            ip = dk_str(n, "IPAddress");
        extra += *dk_str(n, "GlobalIPv6Address") != 0;
    }
    net->ip = dk_strdup(a, ip);
    Runtime__V1__PodIP **ips = extra ? (void *)dk_msgs(a, &runtime__v1__pod_ip__descriptor, extra) : NULL;
    if (!ips)
        return;
    cJSON_ArrayForEach(n, nets) {
        if (*dk_str(n, "GlobalIPv6Address") && k < extra)
            ips[k++]->ip = dk_strdup(a, dk_str(n, "GlobalIPv6Address"));
    }
    net->n_additional_ips = k;
    net->additional_ips = ips;
}

static Runtime__V1__NamespaceMode mode_if_host(const cJSON *hc, const char *key,
                                               Runtime__V1__NamespaceMode otherwise)
{
    return dk_str_is(hc, key, "host") ? RUNTIME__V1__NAMESPACE_MODE__NODE : otherwise;
}

/* The namespace modes asked at creation (crisp's label: podman's inspect
 * does not report IPC host mode), else what the engine reports. */
static Runtime__V1__NamespaceOption *sandbox_namespaces(struct dk_arena *a, const cJSON *hc,
                                                        const cJSON *labels)
{
    Runtime__V1__NamespaceOption *opt = dk_msg(a, &runtime__v1__namespace_option__descriptor);
    if (!opt)
        return NULL;
    int net, pid, ipc;
    if (sscanf(dk_str(labels, DK_LABEL_NSMODES), "%d,%d,%d", &net, &pid, &ipc) == 3) {
        opt->network = (Runtime__V1__NamespaceMode)net;
        opt->pid = (Runtime__V1__NamespaceMode)pid;
        opt->ipc = (Runtime__V1__NamespaceMode)ipc;
        return opt;
    }
    opt->network = mode_if_host(hc, "NetworkMode", RUNTIME__V1__NAMESPACE_MODE__POD);
    opt->pid = mode_if_host(hc, "PidMode", RUNTIME__V1__NAMESPACE_MODE__CONTAINER);
    opt->ipc = mode_if_host(hc, "IpcMode", RUNTIME__V1__NAMESPACE_MODE__POD);
    return opt;
}

static Runtime__V1__LinuxPodSandboxStatus *sandbox_linux(struct dk_arena *a, const cJSON *hc,
                                                         const cJSON *labels)
{
    Runtime__V1__LinuxPodSandboxStatus *lx = dk_msg(a, &runtime__v1__linux_pod_sandbox_status__descriptor);
    Runtime__V1__Namespace *ns = dk_msg(a, &runtime__v1__namespace__descriptor);
    if (!lx || !ns)
        return NULL;
    ns->options = sandbox_namespaces(a, hc, labels);
    lx->namespaces = ns;
    return lx;
}

Runtime__V1__PodSandboxStatus *dk_sandbox_status(struct dk_arena *a, const cJSON *sb)
{
    const cJSON *hc = dk_obj(sb, "HostConfig"), *labels = dk_entry_labels(sb);
    Runtime__V1__PodSandboxStatus *s = dk_msg(a, &runtime__v1__pod_sandbox_status__descriptor);
    Runtime__V1__PodSandboxNetworkStatus *net =
        dk_msg(a, &runtime__v1__pod_sandbox_network_status__descriptor);
    if (!s || !net)
        return NULL;
    s->id = dk_strdup(a, dk_str(sb, "Id"));
    s->metadata = sandbox_name_metadata(a, dk_str(sb, "Name"));
    s->state = sandbox_state(dk_bool(dk_obj(sb, "State"), "Running"));
    s->created_at = dk_created_ns(labels, inspect_created_ns(sb));
    if (!dk_str_is(hc, "NetworkMode", "host"))
        sandbox_ips(a, sb, net);
    s->network = net;
    s->linux = sandbox_linux(a, hc, labels);
    dk_cri_labels(a, &s->base, labels);
    s->runtime_handler = dk_strdup(a, dk_str(labels, DK_LABEL_HANDLER));
    return a->oom ? NULL : s;
}

/* ---- containers -------------------------------------------------------------------------- */

static Runtime__V1__Container *container_entry(struct dk_arena *a, const cJSON *c,
                                               const Runtime__V1__ContainerFilter *f)
{
    const char *id = dk_str(c, "Id");
    const cJSON *labels = dk_obj(c, "Labels");
    Runtime__V1__ContainerState state = dk_container_state(dk_str(c, "State"));
    if (f && (!id_matches(id, f->id) || (f->state && f->state->state != state) ||
              !dk_labels_match(labels, f->n_label_selector, f->label_selector)))
        return NULL;
    Runtime__V1__ContainerMetadata *md = ctr_name_metadata(a, dk_entry_name(c));
    Runtime__V1__Container *x = md ? dk_msg(a, &runtime__v1__container__descriptor) : NULL;
    if (!x)
        return NULL;
    x->id = dk_strdup(a, id);
    x->pod_sandbox_id = dk_strdup(a, dk_str(labels, DK_LABEL_SANDBOX_ID));
    x->metadata = md;
    x->image = image_spec(a, dk_str(c, "Image"));
    x->image_ref = dk_strdup(a, dk_str(c, "ImageID"));
    x->image_id = x->image_ref;
    x->state = state;
    x->created_at = dk_created_ns(labels, dk_secs_to_ns(dk_int(c, "Created")));
    dk_cri_labels(a, &x->base, labels);
    return x;
}

size_t dk_containers_from_list(struct dk_arena *a, const cJSON *list,
                               const Runtime__V1__ContainerFilter *f, Runtime__V1__Container ***out)
{
    size_t cap = (size_t)cJSON_GetArraySize(list), n = 0;
    Runtime__V1__Container **v = dk_alloc(a, (cap ? cap : 1) * sizeof(*v));
    const cJSON *c;
    *out = v;
    cJSON_ArrayForEach(c, list) {
        Runtime__V1__Container *x = v ? container_entry(a, c, f) : NULL;
        if (x)
            v[n++] = x;
    }
    return a->oom ? 0 : n;
}

static Runtime__V1__MountPropagation propagation(const char *docker)
{
    if (strstr(docker, "slave"))
        return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
    if (strstr(docker, "shared"))
        return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
    return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE;
}

static void status_mounts(struct dk_arena *a, const cJSON *mounts, Runtime__V1__ContainerStatus *s)
{
    size_t n = (size_t)cJSON_GetArraySize(mounts), k = 0;
    Runtime__V1__Mount **v = n ? (void *)dk_msgs(a, &runtime__v1__mount__descriptor, n) : NULL;
    const cJSON *m;
    if (!v)
        return;
    cJSON_ArrayForEach(m, mounts) {
        if (k == n)
            break;
        Runtime__V1__Mount *x = v[k++];
        const char *mode = dk_str(m, "Mode");
        x->container_path = dk_strdup(a, dk_str(m, "Destination"));
        x->host_path = dk_strdup(a, dk_str(m, "Source"));
        x->readonly = !dk_bool(m, "RW");
        x->selinux_relabel = strchr(mode, 'Z') || strchr(mode, 'z');
        x->propagation = propagation(dk_str(m, "Propagation"));
    }
    s->n_mounts = k;
    s->mounts = v;
}

/* Why an exited container ended, the kubelet's words. */
static char *exit_reason(const cJSON *state, int32_t exit_code)
{
    if (dk_bool(state, "OOMKilled"))
        return "OOMKilled";
    return exit_code == 0 ? "Completed" : "Error";
}

Runtime__V1__ContainerStatus *dk_container_status(struct dk_arena *a, const cJSON *ins)
{
    const cJSON *cfg = dk_obj(ins, "Config"), *state = dk_obj(ins, "State");
    const cJSON *labels = dk_obj(cfg, "Labels");
    Runtime__V1__ContainerStatus *s = dk_msg(a, &runtime__v1__container_status__descriptor);
    if (!s)
        return NULL;
    s->id = dk_strdup(a, dk_str(ins, "Id"));
    s->metadata = ctr_name_metadata(a, dk_str(ins, "Name"));
    s->state = dk_container_state(dk_str(state, "Status"));
    s->created_at = dk_created_ns(labels, inspect_created_ns(ins));
    s->started_at = dk_time_ns(dk_str(state, "StartedAt"));
    s->finished_at = dk_time_ns(dk_str(state, "FinishedAt"));
    s->exit_code = (int32_t)dk_int(state, "ExitCode");
    s->image = image_spec(a, dk_str(cfg, "Image"));
    s->image_ref = dk_strdup(a, dk_str(ins, "Image"));
    s->image_id = s->image_ref;
    if (s->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED) {
        s->reason = exit_reason(state, s->exit_code);
        s->message = dk_strdup(a, dk_str(state, "Error"));
    }
    dk_cri_labels(a, &s->base, labels);
    status_mounts(a, dk_obj(ins, "Mounts"), s);
    s->log_path = dk_strdup(a, dk_str(labels, DK_LABEL_LOGPATH));
    return a->oom ? NULL : s;
}

/* ---- images ------------------------------------------------------------------------------- */

/* The strings of arr but `none` (Docker's "<none>:<none>" placeholders). */
static size_t copy_refs(struct dk_arena *a, const cJSON *arr, const char *none, char ***out)
{
    size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
    char **v = n ? dk_alloc(a, n * sizeof(char *)) : NULL;
    const cJSON *it;
    *out = v;
    if (!v)
        return 0;
    cJSON_ArrayForEach(it, arr) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, none) != 0 && k < n)
            v[k++] = dk_strdup(a, it->valuestring);
    }
    return k;
}

/* The image's user, from an inspect answer ("name", "uid" or either with
 * ":group"): numeric -> uid, else the name. */
static void image_user(struct dk_arena *a, const char *user, Runtime__V1__Image *im)
{
    size_t len = strcspn(user, ":");
    char *name = dk_alloc(a, len + 1), *end;
    if (!len || !name)
        return;
    memcpy(name, user, len);
    long long uid = strtoll(name, &end, 10);
    if (*end) {
        im->username = name;
        return;
    }
    im->uid = dk_msg(a, &runtime__v1__int64_value__descriptor);
    if (im->uid)
        im->uid->value = uid;
}

Runtime__V1__Image *dk_image(struct dk_arena *a, const cJSON *j, const char *spec)
{
    Runtime__V1__Image *im = dk_msg(a, &runtime__v1__image__descriptor);
    if (!im)
        return NULL;
    int64_t size = dk_int(j, "Size");
    im->id = dk_strdup(a, dk_str(j, "Id"));
    im->n_repo_tags = copy_refs(a, dk_obj(j, "RepoTags"), "<none>:<none>", &im->repo_tags);
    im->n_repo_digests = copy_refs(a, dk_obj(j, "RepoDigests"), "<none>@<none>", &im->repo_digests);
    im->size = size > 0 ? (uint64_t)size : 0;
    image_user(a, dk_str(dk_obj(j, "Config"), "User"), im);
    if (spec)
        im->spec = image_spec(a, spec);
    return im;
}

size_t dk_images_from_list(struct dk_arena *a, const cJSON *list, Runtime__V1__Image ***out)
{
    size_t n = (size_t)cJSON_GetArraySize(list), k = 0;
    Runtime__V1__Image **v = dk_alloc(a, (n ? n : 1) * sizeof(*v));
    const cJSON *it;
    *out = v;
    if (!v)
        return 0;
    cJSON_ArrayForEach(it, list) {
        if (k < n && (v[k] = dk_image(a, it, NULL)))
            k++;
    }
    return k;
}

/* ---- pull progress ------------------------------------------------------------------------- */

const char *dk_pull_error(const cJSON *line)
{
    const char *e = dk_str(line, "error");
    if (!*e)
        e = dk_str(dk_obj(line, "errorDetail"), "message");
    if (!*e)
        e = dk_str(line, "message"); /* an error answer ({"message": ...}) */
    return e;
}

int dk_pull_code(const char *msg)
{
    static const char *const unauthenticated[] = {"unauthorized", "authentication required",
                                                  "no basic auth credentials", "401"};
    static const char *const not_found[] = {"not found", "manifest unknown", "does not exist"};
    for (size_t i = 0; i < sizeof(unauthenticated) / sizeof(unauthenticated[0]); i++)
        if (strstr(msg, unauthenticated[i]))
            return GRPC_UNAUTHENTICATED;
    for (size_t i = 0; i < sizeof(not_found) / sizeof(not_found[0]); i++)
        if (strstr(msg, not_found[i]))
            return GRPC_NOT_FOUND;
    return GRPC_UNKNOWN;
}

/* ---- events --------------------------------------------------------------------------------- */

static int event_type(const char *action, Runtime__V1__ContainerEventType *t)
{
    static const struct {
        const char *action;
        Runtime__V1__ContainerEventType type;
    } map[] = {
        {"create", RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_CREATED_EVENT},
        {"start", RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STARTED_EVENT},
        {"die", RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STOPPED_EVENT},
        {"destroy", RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_DELETED_EVENT},
        {"remove", RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_DELETED_EVENT}, /* podman */
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(action, map[i].action) == 0) {
            *t = map[i].type;
            return 0;
        }
    }
    return -1;
}

int dk_event_changes_lists(const char *action)
{
    static const char *const prefixes[] = {"exec", "health_status"};
    static const char *const harmless[] = {"attach", "detach",  "resize", "top",   "archive-path",
                                           "extract-to-dir", "export", "copy",  "commit", "mount",
                                           "unmount"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(action, prefixes[i], strlen(prefixes[i])) == 0)
            return 0;
    for (size_t i = 0; i < sizeof(harmless) / sizeof(harmless[0]); i++)
        if (strcmp(action, harmless[i]) == 0)
            return 0;
    return 1;
}

enum dk_expect dk_event_expect(const char *action)
{
    static const struct {
        const char *action;
        enum dk_expect expect;
    } map[] = {
        {"create", DK_EXPECT_PRESENT},      {"start", DK_EXPECT_RUNNING},
        {"restart", DK_EXPECT_RUNNING},     {"die", DK_EXPECT_NOT_RUNNING},
        {"stop", DK_EXPECT_NOT_RUNNING},    {"destroy", DK_EXPECT_GONE},
        {"remove", DK_EXPECT_GONE}, /* podman */
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(action, map[i].action) == 0)
            return map[i].expect;
    return DK_EXPECT_ANY;
}

/* Whether a container present or not (found), running or not, meets
 * expect: what a listing and an inspect answer both say of it. */
static int expect_met(int found, int running, enum dk_expect expect)
{
    switch (expect) {
    case DK_EXPECT_PRESENT:
        return found;
    case DK_EXPECT_RUNNING:
        return running;
    case DK_EXPECT_NOT_RUNNING:
        return !running;
    case DK_EXPECT_GONE:
        return !found;
    case DK_EXPECT_ANY:
        break;
    }
    return 1;
}

int dk_listing_meets(const cJSON *list, const char *id, enum dk_expect expect)
{
    const cJSON *e, *found = NULL;
    cJSON_ArrayForEach(e, list) {
        if (strcmp(dk_str(e, "Id"), id) == 0) {
            found = e;
            break;
        }
    }
    return expect_met(found != NULL, found && strcmp(dk_str(found, "State"), "running") == 0, expect);
}

int dk_inspect_meets(const cJSON *inspect, enum dk_expect expect)
{
    const cJSON *state = dk_obj(inspect, "State");
    int running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "Running")) &&
                  strcmp(dk_str(state, "Status"), "running") == 0;
    return expect_met(1, running, expect);
}

static Runtime__V1__ContainerState state_after(Runtime__V1__ContainerEventType t)
{
    switch (t) {
    case RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_CREATED_EVENT:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED;
    case RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STARTED_EVENT:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
    case RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STOPPED_EVENT:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
    default:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
    }
}

static int64_t event_time_ns(const cJSON *ev)
{
    const cJSON *tn = dk_obj(ev, "timeNano");
    return cJSON_IsNumber(tn) ? dk_num_i64(tn->valuedouble) : dk_secs_to_ns(dk_int(ev, "time"));
}

static void event_pod(struct dk_event *e, int named, int is_sandbox, const char *sandbox_id)
{
    Runtime__V1__PodSandboxMetadata *md = &e->pod_md;
    e->pod.id = (char *)sandbox_id;
    if (named) {
        md->name = e->name.pod;
        md->namespace_ = e->name.ns;
        md->uid = e->name.uid;
        md->attempt = is_sandbox ? e->name.attempt : 0;
        e->pod.metadata = md;
    }
    e->resp.pod_sandbox_status = &e->pod;
}

static void event_container(struct dk_event *e, int named, const char *id, const cJSON *attrs)
{
    Runtime__V1__ContainerEventType t = e->resp.container_event_type;
    e->ctr.id = (char *)id;
    e->ctr.state = state_after(t);
    if (named) {
        e->ctr_md.name = e->name.name;
        e->ctr_md.attempt = e->name.attempt;
        e->ctr.metadata = &e->ctr_md;
    }
    if (t == RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STOPPED_EVENT)
        e->ctr.exit_code = atoi(dk_str(attrs, "exitCode"));
    e->ctrs[0] = &e->ctr;
    e->resp.n_containers_statuses = 1;
    e->resp.containers_statuses = e->ctrs;
}

int dk_event_from_json(const cJSON *ev, struct dk_event *e)
{
    const char *action = *dk_str(ev, "Action") ? dk_str(ev, "Action") : dk_str(ev, "status");
    const cJSON *actor = dk_obj(ev, "Actor"), *attrs = dk_obj(actor, "Attributes");
    const char *type = dk_str(attrs, DK_LABEL_TYPE);
    const char *id = *dk_str(ev, "id") ? dk_str(ev, "id") : dk_str(actor, "ID");
    *e = (struct dk_event){.resp = RUNTIME__V1__CONTAINER_EVENT_RESPONSE__INIT,
                           .pod = RUNTIME__V1__POD_SANDBOX_STATUS__INIT,
                           .pod_md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT,
                           .ctr = RUNTIME__V1__CONTAINER_STATUS__INIT,
                           .ctr_md = RUNTIME__V1__CONTAINER_METADATA__INIT};
    if (!*type || event_type(action, &e->resp.container_event_type) < 0)
        return -1;
    int named = dk_parse_name(dk_str(attrs, "name"), &e->name) == 0;
    int is_sandbox = strcmp(type, DK_TYPE_SANDBOX) == 0;
    e->resp.container_id = (char *)id;
    e->resp.created_at = event_time_ns(ev);
    event_pod(e, named, is_sandbox, is_sandbox ? id : dk_str(attrs, DK_LABEL_SANDBOX_ID));
    if (!is_sandbox)
        event_container(e, named, id, attrs);
    return 0;
}

/* ---- exec streams --------------------------------------------------------------------- */

/* A frame header's bytes as they come; 1 once the header is whole. */
static int demux_header(struct dk_demux *d, const uint8_t **p, size_t *n)
{
    size_t take = 8 - d->hdr_len < *n ? 8 - d->hdr_len : *n;
    memcpy(d->hdr + d->hdr_len, *p, take);
    d->hdr_len += take;
    *p += take;
    *n -= take;
    if (d->hdr_len < 8)
        return 0;
    d->hdr_len = 0;
    d->stream = d->hdr[0];
    d->frame_left = ((size_t)d->hdr[4] << 24) | ((size_t)d->hdr[5] << 16) |
                    ((size_t)d->hdr[6] << 8) | d->hdr[7];
    return 1;
}

void dk_demux_feed(struct dk_demux *d, const uint8_t *p, size_t n, dk_demux_put put, void *ud)
{
    while (n) {
        if (!d->frame_left) {
            demux_header(d, &p, &n);
            continue;
        }
        size_t take = d->frame_left < n ? d->frame_left : n;
        put(ud, d->stream, p, take);
        d->frame_left -= take;
        p += take;
        n -= take;
    }
}

/* ---- the engine --------------------------------------------------------------------------- */

static int api_cmp(const char *a, const char *b)
{
    int am = 0, an = 0, bm = 0, bn = 0;
    sscanf(a, "%d.%d", &am, &an);
    sscanf(b, "%d.%d", &bm, &bn);
    return am != bm ? am - bm : an - bn;
}

int dk_engine_api(const cJSON *version, struct dk_engine_api *out)
{
    const char *max = dk_str(version, "ApiVersion");
    const cJSON *comp;
    memset(out, 0, sizeof(*out));
    out->max = max;
    if (!*max)
        return -1;
    if (api_cmp(max, DK_API_MIN) < 0)
        return -2;
    snprintf(out->use, sizeof(out->use), "%s", api_cmp(max, DK_API_MAX) > 0 ? DK_API_MAX : max);
    cJSON_ArrayForEach(comp, dk_obj(version, "Components")) {
        if (strstr(dk_str(comp, "Name"), "Podman"))
            out->podman = 1;
    }
    return 0;
}

void dk_version_response(struct dk_arena *a, const cJSON *version,
                         Runtime__V1__VersionResponse *r)
{
    r->version = "0.1.0"; /* the CRI's kubelet-facing API version */
    r->runtime_name = "docker";
    r->runtime_version = dk_strdup(a, dk_str(version, "Version"));
    r->runtime_api_version = "v1";
}

Runtime__V1__CgroupDriver dk_cgroup_driver(const cJSON *info)
{
    return dk_str_is(info, "CgroupDriver", "systemd") ? RUNTIME__V1__CGROUP_DRIVER__SYSTEMD
                                                      : RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
}

const char *dk_storage_root(const cJSON *info)
{
    const char *root = dk_str(info, "DockerRootDir");
    return *root ? root : dk_str(dk_obj(info, "Store"), "GraphRoot"); /* podman's /info */
}

static Runtime__V1__RuntimeCondition *condition(struct dk_arena *a, const char *type, int ok,
                                                const char *reason, const char *message)
{
    Runtime__V1__RuntimeCondition *c = dk_msg(a, &runtime__v1__runtime_condition__descriptor);
    if (!c)
        return NULL;
    c->type = (char *)type;
    c->status = ok;
    c->reason = dk_strdup(a, ok ? "" : reason);
    c->message = dk_strdup(a, ok ? "" : message);
    return c;
}

Runtime__V1__RuntimeStatus *dk_runtime_status(struct dk_arena *a, int engine_ok, const char *reason,
                                              const char *message)
{
    Runtime__V1__RuntimeStatus *rs = dk_msg(a, &runtime__v1__runtime_status__descriptor);
    Runtime__V1__RuntimeCondition **conds = dk_alloc(a, 2 * sizeof(*conds));
    if (!rs || !conds)
        return NULL;
    conds[0] = condition(a, "RuntimeReady", engine_ok, reason, message);
    /* Docker wires pod networking itself (bridge, or host). */
    conds[1] = condition(a, "NetworkReady", engine_ok, reason, message);
    rs->n_conditions = 2;
    rs->conditions = conds;
    return rs;
}

/* podman ignores the runtime choice: crisp refuses such pods, so it does
 * not offer those handlers either. */
static int handler_offered(const struct dk_handler_map *h, int podman)
{
    return !(podman && h->runtime[0] && h->handler[0]);
}

Runtime__V1__RuntimeHandler **dk_runtime_handlers(struct dk_arena *a, const struct dk_config *cfg,
                                                  int podman, size_t *n)
{
    size_t nh = cfg->nhandlers, k = 0;
    int has_default = 0;
    for (size_t i = 0; i < nh; i++)
        has_default |= cfg->handlers[i].handler[0] == 0;
    Runtime__V1__RuntimeHandler **hs =
        (void *)dk_msgs(a, &runtime__v1__runtime_handler__descriptor, nh + !has_default);
    *n = 0;
    if (!hs)
        return NULL;
    if (!has_default)
        hs[k++]->name = "";
    for (size_t i = 0; i < nh; i++)
        if (handler_offered(&cfg->handlers[i], podman))
            hs[k++]->name = cfg->handlers[i].handler;
    *n = k;
    return hs;
}

/* ---- verbose answers ------------------------------------------------------------------------ */

void dk_info_text(struct dk_arena *a, ProtobufCMessage *resp, const char *text)
{
    struct dk_map m = dk_map_of(resp, "info");
    struct dk_map_entry **v = text ? (struct dk_map_entry **)dk_msgs(a, m.entry_desc, 1) : NULL;
    if (!v)
        return;
    v[0]->key = "info";
    v[0]->value = dk_strdup(a, text);
    *m.n = 1;
    *m.entries = v;
}

void dk_info_json(struct dk_arena *a, ProtobufCMessage *resp, const cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    if (!text) {
        a->oom = 1;
        return;
    }
    dk_info_text(a, resp, text);
    free(text);
}
