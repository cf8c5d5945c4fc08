/* encode.c - CRI requests -> the engine's requests (codec.h): the sandbox
 * and container create bodies and names, update and exec bodies, the
 * filters of list calls, pull targets, X-Registry-Auth, URL escaping.
 * Everything is sized to what it holds: input that cannot be sent whole is
 * refused, never cut. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crisp/grpc.h"
#include "docker/codec.h"

/* ---- URLs ------------------------------------------------------------------------- */

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

size_t dk_url_esc_len(const char *s)
{
    size_t n = 1;
    for (; *s; s++)
        n += unreserved((unsigned char)*s) ? 1 : 3;
    return n;
}

int dk_url_esc(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (dk_url_esc_len(s) > cap)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (unreserved(c)) {
            *out++ = (char)c;
            continue;
        }
        *out++ = '%';
        *out++ = hex[c >> 4];
        *out++ = hex[c & 15];
    }
    *out = 0;
    return 0;
}

char *dk_url_esc_dup(const char *s)
{
    size_t n = dk_url_esc_len(s);
    char *out = malloc(n);
    if (out)
        dk_url_esc(out, n, s);
    return out;
}

/* The escaped JSON of a filters={...} query value; NULL when memory is short. */
static char *filters_query(cJSON *filters)
{
    char *json = filters ? cJSON_PrintUnformatted(filters) : NULL;
    char *q = json ? dk_url_esc_dup(json) : NULL;
    cJSON_Delete(filters);
    free(json);
    return q;
}

/* One selector entry as the engine's "key=value" filter; 0 when the key
 * cannot be one (a '=' in it: the engine splits at the first; the
 * decoder's exact match filters instead), -1 when memory is short. */
static int add_selector(cJSON *labels, const struct dk_map_entry *e)
{
    const char *k = e->key ? e->key : "";
    if (strchr(k, '='))
        return 0;
    char *dk = dk_docker_label_key(k);
    cJSON *item = dk ? dk_add_strf(labels, NULL, "%s=%s", dk, e->value ? e->value : "") : NULL;
    free(dk);
    return item ? 0 : -1;
}

char *dk_label_filters(const char *type, const char *sandbox_id, size_t nsel, void *sel)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(f, "label");
    struct dk_map_entry **v = sel;
    int bad = !dk_add_strf(labels, NULL, "%s=%s", DK_LABEL_TYPE, type);
    if (sandbox_id && *sandbox_id)
        bad |= !dk_add_strf(labels, NULL, "%s=%s", DK_LABEL_SANDBOX_ID, sandbox_id);
    for (size_t i = 0; i < nsel; i++)
        bad |= add_selector(labels, v[i]) < 0;
    if (bad) {
        cJSON_Delete(f); /* a selector missing would widen the list */
        return NULL;
    }
    return filters_query(f);
}

char *dk_id_filters(const char *type, const char *const *ids, size_t n)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(f, "label");
    cJSON *idv = cJSON_AddArrayToObject(f, "id");
    int bad = !n || !dk_add_strf(labels, NULL, "%s=%s", DK_LABEL_TYPE, type);
    for (size_t i = 0; !bad && i < n; i++)
        bad = !dk_full_id(ids[i]) || !dk_add_strf(idv, NULL, "%s", ids[i]);
    if (bad) {
        cJSON_Delete(f); /* an ID missing would narrow the refresh, a bad one widen it */
        return NULL;
    }
    return filters_query(f);
}

int dk_full_id(const char *id)
{
    size_t n = strspn(id, "0123456789abcdef");
    return n == DK_ID_LEN && !id[n];
}

char *dk_image_filter(const char *ref)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *refs = cJSON_AddArrayToObject(f, "reference");
    cJSON_AddItemToArray(refs, cJSON_CreateString(ref));
    return filters_query(f);
}

int dk_image_ref_pathsafe(const char *ref)
{
    for (const char *seg = ref;; seg++) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        seg += n;
        if (!*seg)
            return 1;
    }
}

/* "name:tag", "name@digest" or "name" (tag latest); a ':' in the registry's
 * host:port is not a tag's. */
static void split_ref(const char *ref, size_t *name_len, const char **tag)
{
    const char *at = strchr(ref, '@');
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(ref, ':');
    const char *sep = at ? at : colon && (!slash || colon > slash) ? colon : NULL;
    *name_len = sep ? (size_t)(sep - ref) : strlen(ref);
    *tag = sep ? sep + 1 : "latest";
}

char *dk_pull_target(const char *ref)
{
    size_t name_len;
    const char *tag;
    split_ref(ref, &name_len, &tag);
    char *name = strndup(ref, name_len);
    char *qn = name ? dk_url_esc_dup(name) : NULL, *qt = dk_url_esc_dup(tag), *target = NULL;
    if (qn && qt && asprintf(&target, "/images/create?fromImage=%s&tag=%s", qn, qt) < 0)
        target = NULL;
    free(name);
    free(qn);
    free(qt);
    return target;
}

/* ---- X-Registry-Auth --------------------------------------------------------------- */

static char *b64url(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    for (char *c = out; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    return out;
}

/* auth (base64 "user:password", as in a docker config.json) -> its two
 * halves, into one malloc'd buffer (*user; *pass points into it). */
static int decode_basic_auth(const char *auth, char **user, char **pass, struct dk_err *err)
{
    size_t l = strlen(auth);
    unsigned char *dec = l < 1u << 30 ? malloc(l + 4) : NULL;
    int n = dec ? EVP_DecodeBlock(dec, (const unsigned char *)auth, (int)l) : -2;
    if (n < 0) {
        free(dec);
        return n == -2 ? dk_fail(err, GRPC_RESOURCE_EXHAUSTED, "out of memory")
                       : dk_fail(err, GRPC_INVALID_ARGUMENT, "auth.auth is not valid base64");
    }
    while (n > 0 && dec[n - 1] == 0)
        n--; /* EVP_DecodeBlock counts padding as zero bytes */
    dec[n] = 0;
    char *colon = strchr((char *)dec, ':');
    int nul = memchr(dec, 0, (size_t)n) != NULL; /* it could not be sent whole */
    if (!colon || nul) {
        OPENSSL_cleanse(dec, l + 4);
        free(dec);
        return dk_fail(err, GRPC_INVALID_ARGUMENT, nul ? "auth.auth holds a NUL byte"
                                                       : "auth.auth must encode user:password");
    }
    *colon = 0;
    *user = (char *)dec;
    *pass = colon + 1;
    return 0;
}

static void add_if(cJSON *j, const char *key, const char *v)
{
    if (v && *v)
        cJSON_AddStringToObject(j, key, v);
}

/* The AuthConfig as the engine's JSON, base64url; the JSON held a secret:
 * it does not stay in freed memory. */
static char *auth_header(const Runtime__V1__AuthConfig *a, const char *user, const char *pass)
{
    cJSON *j = cJSON_CreateObject();
    add_if(j, "username", user);
    add_if(j, "password", pass);
    add_if(j, "serveraddress", a->server_address);
    add_if(j, "identitytoken", a->identity_token);
    add_if(j, "registrytoken", a->registry_token);
    char *json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *enc = json ? b64url((const uint8_t *)json, strlen(json)) : NULL;
    if (json)
        OPENSSL_cleanse(json, strlen(json));
    free(json);
    return enc;
}

int dk_registry_auth(const Runtime__V1__AuthConfig *a, char **out, struct dk_err *err)
{
    char *decoded = NULL, *user = a ? a->username : NULL, *pass = a ? a->password : NULL;
    *out = NULL;
    if (!a)
        return 0;
    if (a->auth && *a->auth && !(user && *user) &&
        decode_basic_auth(a->auth, &decoded, &pass, err) < 0)
        return -1;
    user = decoded ? decoded : user;
    *out = auth_header(a, user, pass);
    if (decoded) {
        OPENSSL_cleanse(decoded, strlen(decoded) + strlen(pass) + 1);
        free(decoded);
    }
    return *out ? 0 : dk_fail(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* ---- sandboxes ---------------------------------------------------------------------- */

const char *dk_runtime_for_handler(const struct dk_config *cfg, const char *handler)
{
    for (size_t i = 0; i < cfg->nhandlers; i++)
        if (strcmp(cfg->handlers[i].handler, handler ? handler : "") == 0)
            return cfg->handlers[i].runtime;
    if (!handler || !*handler)
        return "";
    return NULL;
}

int dk_check_pod_metadata(const Runtime__V1__PodSandboxMetadata *md, struct dk_err *err)
{
    if (!md || !md->name[0] || !md->namespace_[0] || !md->uid[0])
        return dk_fail(err, GRPC_INVALID_ARGUMENT,
                       "RunPodSandbox needs config.metadata with name, namespace and uid");
    if (strchr(md->name, '_') || strchr(md->namespace_, '_') || strchr(md->uid, '_'))
        return dk_fail(err, GRPC_INVALID_ARGUMENT,
                       "pod name, namespace and uid may not contain '_' (Docker names join them with it)");
    return 0;
}

const char *dk_pod_runtime(const struct dk_config *cfg, int podman, const char *handler,
                           struct dk_err *err)
{
    const char *runtime = dk_runtime_for_handler(cfg, handler);
    if (!runtime) {
        dk_fail(err, GRPC_INVALID_ARGUMENT,
                "runtime handler \"%s\" is not configured (crisp --runtime-handler NAME=DOCKER_RUNTIME)",
                handler);
        return NULL;
    }
    if (podman && *runtime) {
        /* podman 4.3's compatible create ignores HostConfig.Runtime: the pod
         * would run under the default runtime, not the isolation asked for. */
        dk_fail(err, GRPC_FAILED_PRECONDITION,
                "runtime handler \"%s\" (runtime %s): podman's Docker-compatible API "
                "ignores the runtime choice; refusing rather than running the pod "
                "under podman's default runtime",
                handler, runtime);
        return NULL;
    }
    return runtime;
}

int dk_sandbox_name(char out[DK_NAME_MAX + 1], const Runtime__V1__PodSandboxMetadata *md,
                    struct dk_err *err)
{
    if (dk_make_name(out, NULL, md->name, md->namespace_, md->uid, md->attempt) < 0)
        return dk_fail(err, GRPC_INVALID_ARGUMENT, "pod metadata too long for a container name");
    return 0;
}

static int is_node(const Runtime__V1__NamespaceOption *ns, Runtime__V1__NamespaceMode mode)
{
    return ns && mode == RUNTIME__V1__NAMESPACE_MODE__NODE;
}

static void sandbox_labels(cJSON *labels, const Runtime__V1__RunPodSandboxRequest *req,
                           const Runtime__V1__NamespaceOption *ns)
{
    dk_docker_labels(labels, &req->config->base);
    cJSON_AddStringToObject(labels, DK_LABEL_TYPE, DK_TYPE_SANDBOX);
    dk_label_created(labels);
    if (req->runtime_handler && *req->runtime_handler)
        cJSON_AddStringToObject(labels, DK_LABEL_HANDLER, req->runtime_handler);
    dk_add_strf(labels, DK_LABEL_NSMODES, "%d,%d,%d", is_node(ns, ns ? ns->network : 0) ? 2 : 0,
                is_node(ns, ns ? ns->pid : 0) ? 2 : 1, is_node(ns, ns ? ns->ipc : 0) ? 2 : 0);
}

static void sandbox_namespaces(cJSON *body, cJSON *hc, const Runtime__V1__PodSandboxConfig *c,
                               const Runtime__V1__NamespaceOption *ns)
{
    int host_net = is_node(ns, ns ? ns->network : 0);
    if (host_net)
        cJSON_AddStringToObject(hc, "NetworkMode", "host");
    /* Containers join this IPC namespace, so it must be shareable. */
    cJSON_AddStringToObject(hc, "IpcMode", is_node(ns, ns ? ns->ipc : 0) ? "host" : "shareable");
    if (is_node(ns, ns ? ns->pid : 0))
        cJSON_AddStringToObject(hc, "PidMode", "host");
    if (!host_net) {
        dk_dns(hc, c->dns_config);
        dk_ports(body, hc, c->n_port_mappings, c->port_mappings);
    }
}

static void sandbox_linux(cJSON *hc, const Runtime__V1__LinuxPodSandboxConfig *lx)
{
    if (lx && lx->cgroup_parent && *lx->cgroup_parent)
        cJSON_AddStringToObject(hc, "CgroupParent", lx->cgroup_parent);
    if (lx)
        dk_sysctls(hc, lx->n_sysctls, lx->sysctls);
    if (lx && lx->resources)
        dk_resources(hc, lx->resources, 0);
    /* The kubelet's value for infra containers: the last to be OOM-killed. */
    cJSON_DeleteItemFromObjectCaseSensitive(hc, "OomScoreAdj");
    cJSON_AddNumberToObject(hc, "OomScoreAdj", -998);
}

cJSON *dk_sandbox_body(const Runtime__V1__RunPodSandboxRequest *req, const struct dk_config *cfg,
                       const char *runtime, int podman, struct dk_err *err)
{
    const Runtime__V1__PodSandboxConfig *c = req->config;
    const Runtime__V1__LinuxPodSandboxConfig *lx = c->linux;
    const Runtime__V1__LinuxSandboxSecurityContext *sc = lx ? lx->security_context : NULL;
    const Runtime__V1__NamespaceOption *ns = sc ? sc->namespace_options : NULL;
    cJSON *body = cJSON_CreateObject();
    cJSON *hc = cJSON_AddObjectToObject(body, "HostConfig");
    cJSON_AddStringToObject(body, "Image", cfg->infra_image);
    if (c->hostname && *c->hostname)
        cJSON_AddStringToObject(body, "Hostname", c->hostname);
    sandbox_labels(cJSON_AddObjectToObject(body, "Labels"), req, ns);
    sandbox_namespaces(body, hc, c, ns);
    sandbox_linux(hc, lx);
    if (runtime && *runtime)
        cJSON_AddStringToObject(hc, "Runtime", runtime);
    if (dk_sandbox_security(body, hc, sc, podman, err) < 0) {
        cJSON_Delete(body);
        return NULL;
    }
    return body;
}

/* ---- containers -------------------------------------------------------------------- */

int dk_container_name(char out[DK_NAME_MAX + 1], const Runtime__V1__CreateContainerRequest *req,
                      const cJSON *sandbox, struct dk_err *err)
{
    const Runtime__V1__PodSandboxMetadata *pm =
        req->sandbox_config ? req->sandbox_config->metadata : NULL;
    const Runtime__V1__ContainerMetadata *cm = req->config->metadata;
    const char *pod = pm ? pm->name : NULL, *ns = pm ? pm->namespace_ : NULL,
               *uid = pm ? pm->uid : NULL;
    struct dk_name nm;
    if ((!pod || !*pod) && dk_parse_name(dk_str(sandbox, "Name"), &nm) == 0) {
        pod = nm.pod; /* the sandbox's own name says */
        ns = nm.ns;
        uid = nm.uid;
    }
    if (!pod || !*pod || strchr(cm->name, '_') ||
        dk_make_name(out, cm->name, pod, ns, uid, cm->attempt) < 0)
        return dk_fail(err, GRPC_INVALID_ARGUMENT,
                       "container name %s cannot form a Docker name (no '_', pod metadata needed)",
                       cm->name);
    return 0;
}

/* Env as KEY=VALUE; a value holding a NUL byte cannot be sent whole. */
static int ctr_env(cJSON *body, const Runtime__V1__ContainerConfig *c, struct dk_err *err)
{
    cJSON *env = c->n_envs ? cJSON_AddArrayToObject(body, "Env") : NULL;
    for (size_t i = 0; i < c->n_envs; i++) {
        const ProtobufCBinaryData *v = &c->envs[i]->value;
        if (v->len && memchr(v->data, 0, v->len))
            return dk_fail(err, GRPC_INVALID_ARGUMENT, "env %s: the value holds a NUL byte",
                           c->envs[i]->key);
        dk_add_strf(env, NULL, "%s=%.*s", c->envs[i]->key, (int)v->len, v->len ? (char *)v->data : "");
    }
    return 0;
}

static int ctr_process(cJSON *body, const Runtime__V1__ContainerConfig *c, struct dk_err *err)
{
    cJSON_AddStringToObject(body, "Image", c->image->image);
    if (c->n_command)
        cJSON_AddItemToObject(body, "Entrypoint", dk_strv(c->command, c->n_command));
    if (c->n_args)
        cJSON_AddItemToObject(body, "Cmd", dk_strv(c->args, c->n_args));
    if (c->working_dir && *c->working_dir)
        cJSON_AddStringToObject(body, "WorkingDir", c->working_dir);
    if (ctr_env(body, c, err) < 0)
        return -1;
    if (c->tty)
        cJSON_AddBoolToObject(body, "Tty", 1);
    if (c->stdin) {
        cJSON_AddBoolToObject(body, "OpenStdin", 1);
        cJSON_AddBoolToObject(body, "AttachStdin", 1);
    }
    if (c->stdin_once)
        cJSON_AddBoolToObject(body, "StdinOnce", 1);
    return 0;
}

static void ctr_labels(cJSON *labels, const Runtime__V1__CreateContainerRequest *req, const char *sid)
{
    const Runtime__V1__ContainerConfig *c = req->config;
    const Runtime__V1__PodSandboxConfig *sbc = req->sandbox_config;
    dk_docker_labels(labels, &c->base);
    cJSON_AddStringToObject(labels, DK_LABEL_TYPE, DK_TYPE_CONTAINER);
    cJSON_AddStringToObject(labels, DK_LABEL_SANDBOX_ID, sid);
    dk_label_created(labels);
    if (c->log_path && *c->log_path && sbc && sbc->log_directory && *sbc->log_directory)
        dk_add_strf(labels, DK_LABEL_LOGPATH, "%s/%s", sbc->log_directory, c->log_path);
}

/* The container's own namespace options, else the pod's. */
static const Runtime__V1__NamespaceOption *ctr_ns_options(const Runtime__V1__CreateContainerRequest *req)
{
    const Runtime__V1__LinuxContainerConfig *lx = req->config->linux;
    const Runtime__V1__PodSandboxConfig *sbc = req->sandbox_config;
    if (lx && lx->security_context && lx->security_context->namespace_options)
        return lx->security_context->namespace_options;
    if (sbc && sbc->linux && sbc->linux->security_context)
        return sbc->linux->security_context->namespace_options;
    return NULL;
}

static void ctr_pid_mode(cJSON *hc, const Runtime__V1__NamespaceOption *ns, const char *sid)
{
    if (!ns)
        return;
    if (ns->pid == RUNTIME__V1__NAMESPACE_MODE__NODE)
        cJSON_AddStringToObject(hc, "PidMode", "host");
    else if (ns->pid == RUNTIME__V1__NAMESPACE_MODE__POD)
        dk_add_strf(hc, "PidMode", "container:%s", sid);
    else if (ns->pid == RUNTIME__V1__NAMESPACE_MODE__TARGET && ns->target_id && *ns->target_id)
        dk_add_strf(hc, "PidMode", "container:%s", ns->target_id);
}

static void ctr_namespaces(cJSON *hc, const Runtime__V1__NamespaceOption *ns, const char *sid,
                           int podman)
{
    dk_add_strf(hc, "NetworkMode", "container:%s", sid);
    /* Docker shares the sandbox's hostname with its network; podman needs
     * the UTS namespace joined explicitly (Docker refuses container: here). */
    if (podman)
        dk_add_strf(hc, "UTSMode", "container:%s", sid);
    if (is_node(ns, ns ? ns->ipc : 0))
        cJSON_AddStringToObject(hc, "IpcMode", "host");
    else
        dk_add_strf(hc, "IpcMode", "container:%s", sid);
    ctr_pid_mode(hc, ns, sid);
}

/* The pod's cgroup parent and runtime: the sandbox config's, else the
 * sandbox container's. */
static void ctr_pod_settings(cJSON *hc, const Runtime__V1__PodSandboxConfig *sbc, const cJSON *sandbox)
{
    const cJSON *shc = dk_obj(sandbox, "HostConfig");
    const char *cgp = dk_str(shc, "CgroupParent"), *runtime = dk_str(shc, "Runtime");
    if (sbc && sbc->linux && sbc->linux->cgroup_parent && *sbc->linux->cgroup_parent)
        cgp = sbc->linux->cgroup_parent;
    if (*cgp)
        cJSON_AddStringToObject(hc, "CgroupParent", cgp);
    if (*runtime)
        cJSON_AddStringToObject(hc, "Runtime", runtime);
}

/* The kubelet reads the engine's json-file log through the symlink made at
 * start; other drivers would leave log_path empty. */
static void ctr_log_config(cJSON *hc, const struct dk_config *cfg)
{
    cJSON *lc = cJSON_AddObjectToObject(hc, "LogConfig");
    cJSON_AddStringToObject(lc, "Type", "json-file");
    cJSON *lo = cJSON_AddObjectToObject(lc, "Config");
    cJSON_AddStringToObject(lo, "max-size", cfg->log_max_size);
    cJSON_AddStringToObject(lo, "max-file", cfg->log_max_files);
}

cJSON *dk_container_body(const Runtime__V1__CreateContainerRequest *req, const cJSON *sandbox,
                         const struct dk_config *cfg, int podman, struct dk_err *err)
{
    const Runtime__V1__ContainerConfig *c = req->config;
    const Runtime__V1__LinuxContainerConfig *lx = c->linux;
    const char *sid = dk_str(sandbox, "Id");
    cJSON *body = cJSON_CreateObject();
    cJSON *hc = cJSON_AddObjectToObject(body, "HostConfig");
    if (ctr_process(body, c, err) < 0)
        goto fail;
    ctr_labels(cJSON_AddObjectToObject(body, "Labels"), req, sid);
    ctr_namespaces(hc, ctr_ns_options(req), sid, podman);
    if (dk_mounts(hc, c->n_mounts, c->mounts, err) < 0)
        goto fail;
    dk_devices(hc, c->n_devices, c->devices);
    if (lx)
        dk_resources(hc, lx->resources, 0);
    ctr_pod_settings(hc, req->sandbox_config, sandbox);
    ctr_log_config(hc, cfg);
    if (dk_container_security(body, hc, lx ? lx->security_context : NULL, podman, err) < 0)
        goto fail;
    return body;
fail:
    cJSON_Delete(body);
    return NULL;
}

/* ---- updates and execs ----------------------------------------------------------------- */

cJSON *dk_update_body(const Runtime__V1__LinuxContainerResources *r, int podman)
{
    cJSON *body = cJSON_CreateObject();
    if (podman)
        dk_libpod_resources(body, r); /* podman's compatible API has no update (4.3) */
    else
        dk_resources(body, r, 1);
    return body;
}

cJSON *dk_exec_body(char **cmd, size_t n)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddBoolToObject(body, "AttachStdout", 1);
    cJSON_AddBoolToObject(body, "AttachStderr", 1);
    cJSON_AddBoolToObject(body, "Tty", 0);
    cJSON_AddItemToObject(body, "Cmd", dk_strv(cmd, n));
    return body;
}
