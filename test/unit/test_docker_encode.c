/* Unit tests for the Docker backend's encoders (src/docker/codec.h): CRI
 * requests -> the engine's JSON bodies, queries and headers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crisp/grpc.h"
#include "docker/codec.h"
#include "unit.h"

static struct dk_handler_map handlers[] = {{"", ""}, {"alt", "crisp-alt"}};
static const struct dk_config cfg = {
    .infra_image = "localhost:5000/pause:1",
    .log_max_size = "10m",
    .log_max_files = "5",
    .handlers = handlers,
    .nhandlers = 2,
};

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* The JSON's string at a path of keys ("HostConfig", "IpcMode", NULL). */
static const char *at(const cJSON *j, ...)
{
    va_list ap;
    va_start(ap, j);
    const char *key, *last = NULL;
    while ((key = va_arg(ap, const char *))) {
        if (last)
            j = dk_obj(j, last);
        last = key;
    }
    va_end(ap);
    return dk_str(j, last);
}

static int has_string(const cJSON *arr, const char *want)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) if (cJSON_IsString(it) && strcmp(it->valuestring, want) == 0) return 1;
    return 0;
}

static void test_make_name(void)
{
    char name[DK_NAME_MAX + 1];
    struct dk_name nm;
    CHECK(dk_make_name(name, NULL, "web", "default", "uid-1", 2) == 0);
    CHECK(strcmp(name, "k8s_POD_web_default_uid-1_2") == 0);
    CHECK(dk_make_name(name, "app", "web", "default", "uid-1", 0) == 0);
    CHECK(strcmp(name, "k8s_app_web_default_uid-1_0") == 0);
    dk_rename(name, 0x1a2b3c4d);
    CHECK(strcmp(name, "k8s_app_web_default_uid-1_0_1a2b3c4d") == 0);
    CHECK(dk_parse_name(name, &nm) == 0 && strcmp(nm.name, "app") == 0);
    /* Kubernetes' maxima: pod 253, namespace 63, container 63, uid 36 */
    char pod[254], ns[64], ctr[64], uid[37];
    memset(pod, 'p', 253), pod[253] = 0;
    memset(ns, 'n', 63), ns[63] = 0;
    memset(ctr, 'c', 63), ctr[63] = 0;
    memset(uid, 'u', 36), uid[36] = 0;
    CHECK(dk_make_name(name, ctr, pod, ns, uid, 4294967295u) == 0);
    dk_rename(name, 0xffffffffu);
    CHECK(dk_parse_name(name, &nm) == 0 && strcmp(nm.pod, pod) == 0 && strcmp(nm.uid, uid) == 0 &&
          nm.attempt == 4294967295u);
    char huge[DK_NAME_MAX];
    memset(huge, 'h', sizeof(huge) - 1), huge[sizeof(huge) - 1] = 0;
    CHECK(dk_make_name(name, "c", huge, "ns", "uid", 0) < 0); /* refused, not cut */
}

static void test_docker_labels(void)
{
    Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    Runtime__V1__PodSandboxConfig__LabelsEntry l1 = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
    Runtime__V1__PodSandboxConfig__AnnotationsEntry a1 =
        RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT;
    char longkey[3000];
    memset(longkey, 'k', sizeof(longkey) - 1), longkey[sizeof(longkey) - 1] = 0;
    l1.key = "app", l1.value = "web";
    a1.key = longkey, a1.value = "v";
    Runtime__V1__PodSandboxConfig__LabelsEntry *ls[] = {&l1};
    Runtime__V1__PodSandboxConfig__AnnotationsEntry *as[] = {&a1};
    c.n_labels = 1, c.labels = ls;
    c.n_annotations = 1, c.annotations = as;
    cJSON *dst = cJSON_CreateObject();
    CHECK(dk_docker_labels(dst, &c.base) == 0);
    CHECK(strcmp(dk_str(dst, "app"), "web") == 0);
    char want[3100];
    snprintf(want, sizeof(want), "annotation.%s", longkey);
    CHECK(strcmp(dk_str(dst, want), "v") == 0); /* the whole key, never cut */
    CHECK(cJSON_GetArraySize(dst) == 3 && *dk_str(dst, DK_LABEL_KEYS)); /* + the keys */
    /* a label with one of the backend's own keys is kept apart; the image's
     * labels (added by the engine) are not the pod's */
    l1.key = DK_LABEL_HANDLER, l1.value = "evil";
    a1.key = "a", a1.value = "x";
    cJSON_Delete(dst);
    dst = cJSON_CreateObject();
    CHECK(dk_docker_labels(dst, &c.base) == 0);
    CHECK(!dk_obj(dst, DK_LABEL_HANDLER) && strcmp(dk_str(dst, DK_LABEL_ESCAPED DK_LABEL_HANDLER), "evil") == 0);
    cJSON_AddStringToObject(dst, DK_LABEL_HANDLER, "real");
    cJSON_AddStringToObject(dst, "from-image", "1");
    cJSON_AddStringToObject(dst, "annotation.io.kubernetes.container.preStopHandler", "{}");
    Runtime__V1__PodSandbox pod = RUNTIME__V1__POD_SANDBOX__INIT;
    struct dk_arena ar = {0};
    dk_cri_labels(&ar, &pod.base, dst);
    CHECK(pod.n_labels == 1 && strcmp(pod.labels[0]->key, DK_LABEL_HANDLER) == 0 &&
          strcmp(pod.labels[0]->value, "evil") == 0);
    CHECK(pod.n_annotations == 1 && strcmp(pod.annotations[0]->key, "a") == 0);
    Runtime__V1__PodSandboxFilter__LabelSelectorEntry e = RUNTIME__V1__POD_SANDBOX_FILTER__LABEL_SELECTOR_ENTRY__INIT;
    Runtime__V1__PodSandboxFilter__LabelSelectorEntry *sel[] = {&e};
    e.key = DK_LABEL_HANDLER, e.value = "evil";
    CHECK(dk_labels_match(dst, 1, sel));
    e.key = "from-image", e.value = "1";
    CHECK(!dk_labels_match(dst, 1, sel)); /* the image's label is not the pod's */
    dk_arena_free(&ar);
    cJSON_Delete(dst);
    /* objects made by others (cri-dockerd): every label but the internal ones */
    dst = cJSON_Parse("{\"app\":\"web\",\"io.kubernetes.docker.type\":\"podsandbox\",\"annotation.k\":\"v\"}");
    dk_cri_labels(&ar, &pod.base, dst);
    CHECK(pod.n_labels == 1 && strcmp(pod.labels[0]->key, "app") == 0 && pod.n_annotations == 1);
    e.key = "app", e.value = "web";
    CHECK(dk_labels_match(dst, 1, sel));
    e.key = "a=b", e.value = "c";
    CHECK(!dk_labels_match(dst, 1, sel));
    dk_arena_free(&ar);
    cJSON_Delete(dst);
}

static void test_url_esc(void)
{
    char out[64];
    CHECK(dk_url_esc(out, sizeof(out), "a-b_c.d~e") == 0 && strcmp(out, "a-b_c.d~e") == 0);
    CHECK(dk_url_esc(out, sizeof(out), "x/y:z é") == 0 && strcmp(out, "x%2Fy%3Az%20%C3%A9") == 0);
    CHECK(dk_url_esc_len("x/y") == 6);
    strcpy(out, "untouched");
    CHECK(dk_url_esc(out, 5, "abcd/") < 0 && strcmp(out, "untouched") == 0); /* refused, not cut */
    CHECK(dk_url_esc(out, 5, "abcd") == 0);
    char *big = repeat('/', 5000), *e = dk_url_esc_dup(big);
    CHECK(e && strlen(e) == 15000);
    free(big);
    free(e);
}

static void test_filters(void)
{
    char *f = dk_label_filters("container", "sbid", 0, NULL);
    CHECK(f && strcmp(f, "%7B%22label%22%3A%5B%22io.kubernetes.docker.type%3Dcontainer%22%2C%22"
                         "io.kubernetes.sandbox.id%3Dsbid%22%5D%7D") == 0);
    free(f);
    /* a selector of any length goes whole */
    Runtime__V1__ContainerFilter__LabelSelectorEntry e = RUNTIME__V1__CONTAINER_FILTER__LABEL_SELECTOR_ENTRY__INIT;
    Runtime__V1__ContainerFilter__LabelSelectorEntry *sel[] = {&e};
    e.key = "app";
    e.value = repeat('v', 3000);
    char *q = dk_label_filters("podsandbox", NULL, 1, sel);
    char *want = malloc(4000);
    snprintf(want, 4000, "%%22app%%3D%s%%22", e.value);
    CHECK(q && strstr(q, want) != NULL);
    free(q);
    free(want);
    free(e.value);
    /* a key with '=' cannot be the engine's filter (it splits at the first):
     * left to the decoder's exact match */
    e.key = "a=b", e.value = "c";
    q = dk_label_filters("podsandbox", NULL, 1, sel);
    CHECK(q && !strstr(q, "a%3Db"));
    free(q);
    e.key = DK_LABEL_TYPE, e.value = "x"; /* escaped as stored */
    q = dk_label_filters("podsandbox", NULL, 1, sel);
    CHECK(q && strstr(q, "io.crisp.label.io.kubernetes.docker.type%3Dx"));
    free(q);
    CHECK(dk_image_ref_pathsafe("reg:5000/a/b:1") && dk_image_ref_pathsafe("sha256:abc"));
    CHECK(!dk_image_ref_pathsafe("a/../b") && !dk_image_ref_pathsafe("..") && !dk_image_ref_pathsafe("a//b") &&
          !dk_image_ref_pathsafe("./a") && !dk_image_ref_pathsafe("a/"));
    /* a refresh by full IDs: the type's label and the IDs; nothing else */
    const char *ids[] = {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                         "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"};
    q = dk_id_filters("container", ids, 2);
    CHECK(q && strcmp(q, "%7B%22label%22%3A%5B%22io.kubernetes.docker.type%3Dcontainer%22%5D%2C%22id%22%3A%5B%22"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef%22%2C%22"
                         "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210%22%5D%7D") == 0);
    free(q);
    const char *bad[] = {ids[0], "0123abc"}; /* a prefix would match others */
    CHECK(dk_id_filters("container", bad, 2) == NULL && dk_id_filters("container", ids, 0) == NULL);
    CHECK(dk_full_id(ids[1]) && !dk_full_id("0123abc") && !dk_full_id("") &&
          !dk_full_id("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef") &&
          !dk_full_id("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
    char *img = dk_image_filter("reg:5000/a/b:1");
    CHECK(img && strcmp(img, "%7B%22reference%22%3A%5B%22reg%3A5000%2Fa%2Fb%3A1%22%5D%7D") == 0);
    free(img);
}

static void test_pull_target(void)
{
    char *t = dk_pull_target("localhost:5000/crisp-test/busybox:1");
    CHECK(t && strcmp(t, "/images/create?fromImage=localhost%3A5000%2Fcrisp-test%2Fbusybox&tag=1") == 0);
    free(t);
    t = dk_pull_target("localhost:5000/busybox");
    CHECK(t && strcmp(t, "/images/create?fromImage=localhost%3A5000%2Fbusybox&tag=latest") == 0);
    free(t);
    t = dk_pull_target("busybox@sha256:abc");
    CHECK(t && strcmp(t, "/images/create?fromImage=busybox&tag=sha256%3Aabc") == 0);
    free(t);
    char *longname = repeat('a', 3000);
    t = dk_pull_target(longname);
    CHECK(t && strlen(t) == strlen("/images/create?fromImage=&tag=latest") + 3000);
    free(t);
    free(longname);
}

/* X-Registry-Auth back to its JSON. */
static cJSON *auth_json(const char *hdr)
{
    size_t n = strlen(hdr);
    char *b = strdup(hdr);
    for (char *c = b; *c; c++)
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    unsigned char *dec = malloc(n + 4);
    int len = EVP_DecodeBlock(dec, (unsigned char *)b, (int)n);
    while (len > 0 && dec[len - 1] == 0)
        len--;
    cJSON *j = len >= 0 ? cJSON_ParseWithLength((char *)dec, (size_t)len) : NULL;
    free(b);
    free(dec);
    return j;
}

static void test_registry_auth(void)
{
    struct dk_err err = {0};
    char *hdr;
    CHECK(dk_registry_auth(NULL, &hdr, &err) == 0 && hdr == NULL);
    Runtime__V1__AuthConfig a = RUNTIME__V1__AUTH_CONFIG__INIT;
    a.username = repeat('u', 700);
    a.password = repeat('p', 5000); /* a registry token as password: sent whole */
    a.server_address = "reg:5000";
    CHECK(dk_registry_auth(&a, &hdr, &err) == 0 && hdr);
    cJSON *j = auth_json(hdr);
    CHECK(j && strcmp(dk_str(j, "username"), a.username) == 0 && strcmp(dk_str(j, "password"), a.password) == 0);
    CHECK(strcmp(dk_str(j, "serveraddress"), "reg:5000") == 0 && !dk_obj(j, "auth"));
    CHECK(strchr(hdr, '+') == NULL && strchr(hdr, '/') == NULL);
    cJSON_Delete(j);
    free(hdr);
    free(a.username);
    free(a.password);
    Runtime__V1__AuthConfig b = RUNTIME__V1__AUTH_CONFIG__INIT;
    b.auth = "dXNlcjpwYTpzcw=="; /* user:pa:ss */
    CHECK(dk_registry_auth(&b, &hdr, &err) == 0);
    j = auth_json(hdr);
    CHECK(j && strcmp(dk_str(j, "username"), "user") == 0 && strcmp(dk_str(j, "password"), "pa:ss") == 0);
    cJSON_Delete(j);
    free(hdr);
    b.auth = "bm9jb2xvbg=="; /* nocolon */
    CHECK(dk_registry_auth(&b, &hdr, &err) < 0 && err.code == GRPC_INVALID_ARGUMENT && !hdr);
    b.auth = "!!!";
    CHECK(dk_registry_auth(&b, &hdr, &err) < 0 && strstr(err.msg, "base64"));
    b.auth = "dXNlcgB4OnBhc3M="; /* user\0x:pass */
    CHECK(dk_registry_auth(&b, &hdr, &err) < 0 && strstr(err.msg, "NUL"));
}

static Runtime__V1__RunPodSandboxRequest *pod_request(void)
{
    static Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
    static Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    static Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
    static Runtime__V1__LinuxPodSandboxConfig lx = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
    static Runtime__V1__LinuxSandboxSecurityContext sc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
    static Runtime__V1__NamespaceOption ns = RUNTIME__V1__NAMESPACE_OPTION__INIT;
    static Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT;
    static char *servers[] = {"10.0.0.10"};
    static Runtime__V1__PortMapping pm = RUNTIME__V1__PORT_MAPPING__INIT;
    static Runtime__V1__PortMapping *pms[] = {&pm};
    static Runtime__V1__PodSandboxConfig__LabelsEntry l = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
    static Runtime__V1__PodSandboxConfig__LabelsEntry *ls[] = {&l};
    md.name = "web", md.namespace_ = "default", md.uid = "uid-1", md.attempt = 1;
    l.key = "app", l.value = "web";
    dns.n_servers = 1, dns.servers = servers;
    pm.container_port = 80, pm.host_port = 8080, pm.protocol = RUNTIME__V1__PROTOCOL__UDP;
    sc.namespace_options = &ns;
    lx.security_context = &sc;
    lx.cgroup_parent = "/kubepods/pod1";
    c.metadata = &md, c.hostname = "web-0", c.linux = &lx, c.dns_config = &dns;
    c.n_labels = 1, c.labels = ls;
    c.n_port_mappings = 1, c.port_mappings = pms;
    req.config = &c;
    return &req;
}

static void test_sandbox_body(void)
{
    Runtime__V1__RunPodSandboxRequest *req = pod_request();
    Runtime__V1__NamespaceOption *ns = req->config->linux->security_context->namespace_options;
    struct dk_err err = {0};
    char name[DK_NAME_MAX + 1];
    CHECK(dk_check_pod_metadata(req->config->metadata, &err) == 0);
    CHECK(dk_sandbox_name(name, req->config->metadata, &err) == 0 && strcmp(name, "k8s_POD_web_default_uid-1_1") == 0);
    cJSON *b = dk_sandbox_body(req, &cfg, "", 0, &err);
    CHECK(b && strcmp(at(b, "Image", NULL), cfg.infra_image) == 0 && strcmp(at(b, "Hostname", NULL), "web-0") == 0);
    CHECK(strcmp(at(b, "Labels", "app", NULL), "web") == 0);
    CHECK(strcmp(at(b, "Labels", DK_LABEL_TYPE, NULL), DK_TYPE_SANDBOX) == 0);
    CHECK(strcmp(at(b, "Labels", DK_LABEL_NSMODES, NULL), "0,1,0") == 0);
    CHECK(dk_created_ns(dk_obj(b, "Labels"), 0) > 0);
    CHECK(strcmp(at(b, "HostConfig", "IpcMode", NULL), "shareable") == 0 && !dk_obj(dk_obj(b, "HostConfig"), "NetworkMode"));
    CHECK(strcmp(at(b, "HostConfig", "CgroupParent", NULL), "/kubepods/pod1") == 0);
    CHECK(dk_int(dk_obj(b, "HostConfig"), "OomScoreAdj") == -998 && !dk_obj(dk_obj(b, "HostConfig"), "Runtime"));
    CHECK(has_string(dk_obj(dk_obj(b, "HostConfig"), "Dns"), "10.0.0.10"));
    CHECK(dk_obj(dk_obj(b, "ExposedPorts"), "80/udp") != NULL);
    CHECK(strcmp(at(cJSON_GetArrayItem(dk_obj(dk_obj(b, "HostConfig"), "PortBindings")->child, 0), "HostPort", NULL), "8080") == 0);
    cJSON_Delete(b);
    /* host namespaces: no DNS or ports, the modes recorded */
    ns->network = ns->pid = ns->ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
    b = dk_sandbox_body(req, &cfg, "crisp-alt", 0, &err);
    CHECK(strcmp(at(b, "HostConfig", "NetworkMode", NULL), "host") == 0 && strcmp(at(b, "HostConfig", "PidMode", NULL), "host") == 0);
    CHECK(strcmp(at(b, "HostConfig", "IpcMode", NULL), "host") == 0 && !dk_obj(b, "ExposedPorts"));
    CHECK(strcmp(at(b, "Labels", DK_LABEL_NSMODES, NULL), "2,2,2") == 0);
    CHECK(strcmp(at(b, "HostConfig", "Runtime", NULL), "crisp-alt") == 0);
    cJSON_Delete(b);
    ns->network = ns->pid = ns->ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
    req->config->metadata->name = "we_b";
    CHECK(dk_check_pod_metadata(req->config->metadata, &err) < 0 && err.code == GRPC_INVALID_ARGUMENT);
    req->config->metadata->name = "web";
    CHECK(dk_check_pod_metadata(NULL, &err) < 0);
}

static void test_pod_runtime(void)
{
    struct dk_err err = {0};
    CHECK(strcmp(dk_pod_runtime(&cfg, 0, "", &err), "") == 0);
    CHECK(strcmp(dk_pod_runtime(&cfg, 0, "alt", &err), "crisp-alt") == 0);
    CHECK(dk_pod_runtime(&cfg, 0, "nope", &err) == NULL && err.code == GRPC_INVALID_ARGUMENT);
    CHECK(dk_pod_runtime(&cfg, 1, "alt", &err) == NULL && err.code == GRPC_FAILED_PRECONDITION);
    CHECK(strcmp(dk_pod_runtime(&cfg, 1, NULL, &err), "") == 0);
}

static void test_container_body(void)
{
    Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
    Runtime__V1__ContainerConfig c = RUNTIME__V1__CONTAINER_CONFIG__INIT;
    Runtime__V1__ContainerMetadata cm = RUNTIME__V1__CONTAINER_METADATA__INIT;
    Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__KeyValue env = RUNTIME__V1__KEY_VALUE__INIT, *envs[] = {&env};
    Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT, *ms[] = {&m};
    char *cmd[] = {"sh", "-c"}, *args[] = {"sleep 1"};
    cm.name = "app", cm.attempt = 2;
    img.image = "busybox:1";
    env.key = "K", env.value.data = (uint8_t *)"v=1", env.value.len = 3;
    m.host_path = "/h", m.container_path = "/c", m.readonly = 1, m.selinux_relabel = 1;
    m.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
    c.metadata = &cm, c.image = &img, c.n_command = 2, c.command = cmd, c.n_args = 1, c.args = args;
    c.n_envs = 1, c.envs = envs, c.n_mounts = 1, c.mounts = ms, c.log_path = "app/2.log";
    Runtime__V1__RunPodSandboxRequest *pr = pod_request();
    pr->config->log_directory = repeat('d', 5000); /* long paths go whole */
    req.config = &c;
    req.sandbox_config = pr->config;
    cJSON *sb = cJSON_Parse("{\"Id\":\"sbid\",\"Name\":\"/k8s_POD_web_default_uid-1_1\","
                            "\"HostConfig\":{\"Runtime\":\"crisp-alt\",\"CgroupParent\":\"/x\"}}");
    struct dk_err err = {0};
    char name[DK_NAME_MAX + 1];
    CHECK(dk_container_name(name, &req, sb, &err) == 0 && strcmp(name, "k8s_app_web_default_uid-1_2") == 0);
    cJSON *b = dk_container_body(&req, sb, &cfg, 1, &err);
    CHECK(b && strcmp(at(b, "Image", NULL), "busybox:1") == 0);
    CHECK(has_string(dk_obj(b, "Entrypoint"), "-c") && has_string(dk_obj(b, "Cmd"), "sleep 1"));
    CHECK(has_string(dk_obj(b, "Env"), "K=v=1"));
    CHECK(strcmp(at(b, "HostConfig", "NetworkMode", NULL), "container:sbid") == 0);
    CHECK(strcmp(at(b, "HostConfig", "UTSMode", NULL), "container:sbid") == 0); /* podman */
    CHECK(strcmp(at(b, "HostConfig", "IpcMode", NULL), "container:sbid") == 0);
    CHECK(strcmp(at(b, "HostConfig", "PidMode", NULL), "container:sbid") == 0); /* the pod's POD pid mode */
    CHECK(has_string(dk_obj(dk_obj(b, "HostConfig"), "Binds"), "/h:/c:ro,rslave,Z"));
    CHECK(strcmp(at(b, "HostConfig", "CgroupParent", NULL), "/kubepods/pod1") == 0);
    CHECK(strcmp(at(b, "HostConfig", "Runtime", NULL), "crisp-alt") == 0);
    CHECK(strcmp(at(b, "HostConfig", "LogConfig", "Type", NULL), "json-file") == 0);
    CHECK(strcmp(at(b, "HostConfig", "LogConfig", "Config", "max-size", NULL), "10m") == 0);
    CHECK(strcmp(at(b, "Labels", DK_LABEL_SANDBOX_ID, NULL), "sbid") == 0);
    CHECK(strlen(at(b, "Labels", DK_LABEL_LOGPATH, NULL)) == 5000 + strlen("/app/2.log"));
    cJSON_Delete(b);
    b = dk_container_body(&req, sb, &cfg, 0, &err);
    CHECK(b && !dk_obj(dk_obj(b, "HostConfig"), "UTSMode")); /* Docker shares it with the network */
    cJSON_Delete(b);
    env.value.data = (uint8_t *)"a\0b", env.value.len = 3;
    CHECK(dk_container_body(&req, sb, &cfg, 0, &err) == NULL && err.code == GRPC_INVALID_ARGUMENT &&
          strstr(err.msg, "NUL"));
    /* no pod metadata: from the sandbox's name */
    req.sandbox_config = NULL;
    CHECK(dk_container_name(name, &req, sb, &err) == 0 && strcmp(name, "k8s_app_web_default_uid-1_2") == 0);
    cm.name = "a_b";
    CHECK(dk_container_name(name, &req, sb, &err) < 0 && err.code == GRPC_INVALID_ARGUMENT);
    free(pr->config->log_directory);
    pr->config->log_directory = NULL;
    cJSON_Delete(sb);
}

/* One container security context -> SecurityOpt (and cfg's User). */
static cJSON *sec(const Runtime__V1__LinuxContainerSecurityContext *sc, int podman, struct dk_err *err,
                  cJSON **cfgj)
{
    cJSON *hc = cJSON_CreateObject();
    *cfgj = cJSON_CreateObject();
    if (dk_container_security(*cfgj, hc, sc, podman, err) < 0) {
        cJSON_Delete(hc);
        cJSON_Delete(*cfgj);
        return NULL;
    }
    return hc;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/* The CRI's meanings: unset seccomp is unconfined, names it does not
 * define are refused, privileged has none, a group needs a user; podman
 * gets paths and mask options. */
static void test_security_cri_rules(void)
{
    Runtime__V1__LinuxContainerSecurityContext sc = RUNTIME__V1__LINUX_CONTAINER_SECURITY_CONTEXT__INIT;
    Runtime__V1__Int64Value gid = RUNTIME__V1__INT64_VALUE__INIT;
    struct dk_err err = {0};
    cJSON *cfgj, *hc = sec(&sc, 0, &err, &cfgj);
    CHECK(hc && has_string(dk_obj(hc, "SecurityOpt"), "seccomp=unconfined"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    hc = cJSON_CreateObject(), cfgj = cJSON_CreateObject();
    CHECK(dk_container_security(cfgj, hc, NULL, 0, &err) == 0 && has_string(dk_obj(hc, "SecurityOpt"), "seccomp=unconfined"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    const char *ok[] = {"runtime/default", "docker/default"}, *bad[] = {"/etc/x.json", "default", "localhost/"};
    for (size_t i = 0; i < 2; i++) {
        sc.seccomp_profile_path = (char *)ok[i];
        hc = sec(&sc, 0, &err, &cfgj);
        CHECK(hc && cJSON_GetArraySize(dk_obj(hc, "SecurityOpt")) == 0); /* the engine's default */
        cJSON_Delete(hc), cJSON_Delete(cfgj);
    }
    for (size_t i = 0; i < 3; i++) {
        sc.seccomp_profile_path = (char *)bad[i];
        CHECK(!sec(&sc, 0, &err, &cfgj) && err.code == GRPC_INVALID_ARGUMENT && strstr(err.msg, "seccomp"));
    }
    sc.privileged = 1; /* an invalid name is refused all the same (containerd) */
    CHECK(!sec(&sc, 0, &err, &cfgj) && err.code == GRPC_INVALID_ARGUMENT);
    sc.seccomp_profile_path = "runtime/default"; /* else no profile at all */
    hc = sec(&sc, 0, &err, &cfgj);
    CHECK(hc && cJSON_GetArraySize(dk_obj(hc, "SecurityOpt")) == 0 && dk_bool(hc, "Privileged"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    sc.privileged = 0;
    sc.seccomp_profile_path = "localhost//etc/hostname";
    hc = sec(&sc, 1, &err, &cfgj); /* podman reads a path */
    CHECK(hc && has_string(dk_obj(hc, "SecurityOpt"), "seccomp=/etc/hostname"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    sc.seccomp_profile_path = NULL;
    gid.value = 1002, sc.run_as_group = &gid;
    CHECK(!sec(&sc, 0, &err, &cfgj) && err.code == GRPC_INVALID_ARGUMENT && strstr(err.msg, "1002"));
    sc.run_as_username = "nobody";
    hc = sec(&sc, 0, &err, &cfgj);
    CHECK(hc && strcmp(dk_str(cfgj, "User"), "nobody:1002") == 0);
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    /* podman: masks as options over its own defaults */
    char *masked[] = {"/proc/kcore", "/etc/secret"}, *ro[] = {"/proc/sys", "/data"};
    sc.n_masked_paths = 2, sc.masked_paths = masked, sc.n_readonly_paths = 2, sc.readonly_paths = ro;
    hc = sec(&sc, 1, &err, &cfgj);
    const cJSON *o = dk_obj(hc, "SecurityOpt"), *it;
    const char *mask = "", *unmask = "";
    cJSON_ArrayForEach(it, o) {
        if (strncmp(it->valuestring, "mask=", 5) == 0)
            mask = it->valuestring;
        if (strncmp(it->valuestring, "unmask=", 7) == 0)
            unmask = it->valuestring;
    }
    CHECK(strcmp(mask, "mask=/proc/kcore:/etc/secret:/data") == 0);
    CHECK(strstr(unmask, "/proc/acpi") && !strstr(unmask, "/proc/kcore") && strstr(unmask, "/proc/bus") &&
          !strstr(unmask, "/proc/sys:") && !dk_obj(hc, "MaskedPaths"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
    hc = sec(&sc, 0, &err, &cfgj); /* Docker: the lists */
    CHECK(has_string(dk_obj(hc, "MaskedPaths"), "/etc/secret") && has_string(dk_obj(hc, "ReadonlyPaths"), "/data"));
    cJSON_Delete(hc), cJSON_Delete(cfgj);
}
#pragma GCC diagnostic pop

static void test_security(void)
{
    Runtime__V1__LinuxContainerSecurityContext sc = RUNTIME__V1__LINUX_CONTAINER_SECURITY_CONTEXT__INIT;
    Runtime__V1__SecurityProfile seccomp = RUNTIME__V1__SECURITY_PROFILE__INIT, apparmor = RUNTIME__V1__SECURITY_PROFILE__INIT;
    Runtime__V1__Int64Value uid = RUNTIME__V1__INT64_VALUE__INIT, gid = RUNTIME__V1__INT64_VALUE__INIT;
    Runtime__V1__Capability caps = RUNTIME__V1__CAPABILITY__INIT;
    char *add[] = {"NET_ADMIN"};
    int64_t groups[] = {5, 6};
    char path[] = "/tmp/crisp-unit-seccomp-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}", 34) == 34);
    close(fd);
    uid.value = 1000, gid.value = 2000;
    caps.n_add_capabilities = 1, caps.add_capabilities = add;
    seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost, seccomp.localhost_ref = path;
    apparmor.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost;
    apparmor.localhost_ref = repeat('p', 1000); /* a long name goes whole */
    sc.run_as_user = &uid, sc.run_as_group = &gid, sc.capabilities = &caps, sc.no_new_privs = 1;
    sc.n_supplemental_groups = 2, sc.supplemental_groups = groups, sc.seccomp = &seccomp, sc.apparmor = &apparmor;
    cJSON *cfgj = cJSON_CreateObject(), *hc = cJSON_CreateObject();
    struct dk_err err = {0};
    CHECK(dk_container_security(cfgj, hc, &sc, 0, &err) == 0);
    CHECK(strcmp(dk_str(cfgj, "User"), "1000:2000") == 0);
    CHECK(has_string(dk_obj(hc, "CapAdd"), "NET_ADMIN") && has_string(dk_obj(hc, "GroupAdd"), "6"));
    const cJSON *opts = dk_obj(hc, "SecurityOpt");
    CHECK(has_string(opts, "no-new-privileges"));
    CHECK(has_string(opts, "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"));
    char *want = malloc(1100);
    snprintf(want, 1100, "apparmor=%s", apparmor.localhost_ref);
    CHECK(has_string(opts, want));
    free(want);
    free(apparmor.localhost_ref);
    cJSON_Delete(cfgj);
    cJSON_Delete(hc);
    unlink(path);
    cfgj = cJSON_CreateObject(), hc = cJSON_CreateObject();
    CHECK(dk_container_security(cfgj, hc, &sc, 0, &err) < 0 && err.code == GRPC_INVALID_ARGUMENT &&
          strstr(err.msg, path)); /* the profile is gone */
    seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined;
    apparmor.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault;
    cJSON_Delete(hc);
    hc = cJSON_CreateObject();
    CHECK(dk_container_security(cfgj, hc, &sc, 0, &err) == 0);
    CHECK(has_string(dk_obj(hc, "SecurityOpt"), "seccomp=unconfined") && cJSON_GetArraySize(dk_obj(hc, "SecurityOpt")) == 2);
    cJSON_Delete(cfgj);
    cJSON_Delete(hc);
    test_security_cri_rules();
}

static void test_mounts(void)
{
    Runtime__V1__Mount a = RUNTIME__V1__MOUNT__INIT, b = RUNTIME__V1__MOUNT__INIT, *ms[] = {&a, &b};
    struct dk_err err = {0};
    a.host_path = "/h", a.container_path = "/c";
    b.host_path = "/h:1", b.container_path = "/c", b.readonly = 1;
    b.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
    cJSON *hc = cJSON_CreateObject();
    CHECK(dk_mounts(hc, 2, ms, &err) == 0);
    CHECK(cJSON_GetArraySize(dk_obj(hc, "Binds")) == 1 && has_string(dk_obj(hc, "Binds"), "/h:/c:rprivate"));
    const cJSON *m = cJSON_GetArrayItem(dk_obj(hc, "Mounts"), 0);
    CHECK(m && strcmp(dk_str(m, "Type"), "bind") == 0 && strcmp(dk_str(m, "Source"), "/h:1") == 0 &&
          strcmp(dk_str(m, "Target"), "/c") == 0 && dk_bool(m, "ReadOnly") &&
          strcmp(dk_str(dk_obj(m, "BindOptions"), "Propagation"), "rshared") == 0);
    cJSON_Delete(hc);
    b.selinux_relabel = 1;
    hc = cJSON_CreateObject();
    CHECK(dk_mounts(hc, 2, ms, &err) < 0 && err.code == GRPC_INVALID_ARGUMENT);
    cJSON_Delete(hc);
}

static void test_update_exec(void)
{
    Runtime__V1__LinuxContainerResources r = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    r.cpu_shares = 512, r.memory_limit_in_bytes = 1 << 26, r.cpuset_cpus = "0", r.oom_score_adj = 5;
    cJSON *d = dk_update_body(&r, 0), *p = dk_update_body(&r, 1);
    CHECK(dk_int(d, "CpuShares") == 512 && dk_int(d, "Memory") == 1 << 26 && dk_int(d, "MemorySwap") == -1);
    CHECK(strcmp(dk_str(d, "CpusetCpus"), "0") == 0 && !dk_obj(d, "OomScoreAdj"));
    CHECK(dk_int(dk_obj(p, "cpu"), "shares") == 512 && dk_int(dk_obj(p, "memory"), "limit") == 1 << 26);
    CHECK(strcmp(dk_str(dk_obj(p, "cpu"), "cpus"), "0") == 0 && !dk_obj(dk_obj(p, "memory"), "swap"));
    cJSON_Delete(d);
    cJSON_Delete(p);
    char *cmd[] = {"echo", "hi"};
    cJSON *e = dk_exec_body(cmd, 2);
    CHECK(dk_bool(e, "AttachStdout") && dk_bool(e, "AttachStderr") && !dk_bool(e, "Tty"));
    CHECK(cJSON_GetArraySize(dk_obj(e, "Cmd")) == 2 && has_string(dk_obj(e, "Cmd"), "hi"));
    cJSON_Delete(e);
}

int main(void)
{
    test_make_name();
    test_docker_labels();
    test_url_esc();
    test_filters();
    test_pull_target();
    test_registry_auth();
    test_sandbox_body();
    test_pod_runtime();
    test_container_body();
    test_security();
    test_mounts();
    test_update_exec();
    return unit_summary("test_docker_encode");
}
