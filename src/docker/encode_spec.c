/* docker_spec.c - CRI configuration -> Docker Engine create/update bodies:
 * security context, resources, mounts, devices, DNS, ports, and the query
 * strings (filters) of the list calls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "docker.h"
#include "crisp/grpc.h"

cJSON *dk_strv(char **v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i] ? v[i] : ""));
    return a;
}

/* ---- URL query --------------------------------------------------------------- */

int dk_query_esc(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (o + 4 > cap)
            return -1;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = 0;
    return 0;
}

/* filters={"label":["k=v",...]} for a list call, escaped for the query. */
char *dk_label_filters(const char *type, const char *sandbox_id, size_t nsel, void *sel)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(f, "label");
    char kv[2048];
    snprintf(kv, sizeof(kv), "%s=%s", DK_LABEL_TYPE, type);
    cJSON_AddItemToArray(labels, cJSON_CreateString(kv));
    if (sandbox_id && *sandbox_id) {
        snprintf(kv, sizeof(kv), "%s=%s", DK_LABEL_SANDBOX_ID, sandbox_id);
        cJSON_AddItemToArray(labels, cJSON_CreateString(kv));
    }
    struct dk_map_entry **v = sel;
    for (size_t i = 0; i < nsel; i++) {
        snprintf(kv, sizeof(kv), "%s=%s", v[i]->key ? v[i]->key : "",
                 v[i]->value ? v[i]->value : "");
        cJSON_AddItemToArray(labels, cJSON_CreateString(kv));
    }
    char *json = cJSON_PrintUnformatted(f);
    cJSON_Delete(f);
    if (!json)
        return NULL;
    size_t cap = strlen(json) * 3 + 1;
    char *q = malloc(cap);
    if (q && dk_query_esc(q, cap, json) < 0) {
        free(q);
        q = NULL;
    }
    free(json);
    return q;
}

/* Older kubelets name profiles in the deprecated string fields; they are
 * still honoured when the structured ones are absent. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static const char *legacy_seccomp_sb(const Runtime__V1__LinuxSandboxSecurityContext *sc)
{
    return sc->seccomp_profile_path;
}
static const char *legacy_seccomp(const Runtime__V1__LinuxContainerSecurityContext *sc)
{
    return sc->seccomp_profile_path;
}
static const char *legacy_apparmor(const Runtime__V1__LinuxContainerSecurityContext *sc)
{
    return sc->apparmor_profile;
}
#pragma GCC diagnostic pop

/* ---- security ---------------------------------------------------------------- */

static int add_profile_opt(cJSON *opts, const char *kind, const Runtime__V1__SecurityProfile *p,
                           const char *legacy, char *err, size_t errlen)
{
    char buf[512];
    if (p) {
        switch (p->profile_type) {
        case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined:
            snprintf(buf, sizeof(buf), "%s=unconfined", kind);
            cJSON_AddItemToArray(opts, cJSON_CreateString(buf));
            return 0;
        case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost:
            legacy = p->localhost_ref;
            break;
        default:
            return 0; /* RuntimeDefault: the engine's own default */
        }
    } else if (!legacy || !*legacy || strcmp(legacy, "runtime/default") == 0 ||
               strcmp(legacy, "docker/default") == 0) {
        return 0;
    } else if (strcmp(legacy, "unconfined") == 0) {
        snprintf(buf, sizeof(buf), "%s=unconfined", kind);
        cJSON_AddItemToArray(opts, cJSON_CreateString(buf));
        return 0;
    }
    if (!legacy || !*legacy)
        return 0;
    if (strncmp(legacy, "localhost/", 10) == 0)
        legacy += 10;
    if (strcmp(kind, "apparmor") == 0) {
        snprintf(buf, sizeof(buf), "apparmor=%s", legacy);
        cJSON_AddItemToArray(opts, cJSON_CreateString(buf));
        return 0;
    }
    /* Docker takes a seccomp profile's content, not its path: read it here
     * (crisp runs on the node, like the kubelet that names the file). */
    FILE *f = fopen(legacy, "r");
    if (!f) {
        snprintf(err, errlen, "seccomp profile %s: %s", legacy, strerror(errno));
        return -1;
    }
    char *content = malloc(1 << 20);
    size_t n = content ? fread(content, 1, (1 << 20) - 1, f) : 0;
    int toolong = content && !feof(f);
    fclose(f);
    if (!content || toolong) {
        free(content);
        snprintf(err, errlen, "seccomp profile %s: %s", legacy,
                 content ? "larger than 1 MiB" : "out of memory");
        return -1;
    }
    content[n] = 0;
    size_t l = n + 16;
    char *opt = malloc(l);
    if (opt) {
        snprintf(opt, l, "seccomp=%s", content);
        cJSON_AddItemToArray(opts, cJSON_CreateString(opt));
    }
    free(opt);
    free(content);
    return 0;
}

static void add_selinux(cJSON *opts, const Runtime__V1__SELinuxOption *o)
{
    if (!o)
        return;
    const char *kv[4][2] = {{"user", o->user}, {"role", o->role}, {"type", o->type},
                            {"level", o->level}};
    char buf[512];
    for (int i = 0; i < 4; i++) {
        if (kv[i][1] && *kv[i][1]) {
            snprintf(buf, sizeof(buf), "label=%s:%s", kv[i][0], kv[i][1]);
            cJSON_AddItemToArray(opts, cJSON_CreateString(buf));
        }
    }
}

static void add_user(cJSON *cfg, const Runtime__V1__Int64Value *uid,
                     const Runtime__V1__Int64Value *gid, const char *username)
{
    char user[320];
    if (username && *username)
        snprintf(user, sizeof(user), "%s", username);
    else if (uid)
        snprintf(user, sizeof(user), "%lld", (long long)uid->value);
    else
        return;
    if (gid) {
        size_t l = strlen(user);
        snprintf(user + l, sizeof(user) - l, ":%lld", (long long)gid->value);
    }
    cJSON_AddStringToObject(cfg, "User", user);
}

static void add_groups(cJSON *hc, size_t n, const int64_t *groups)
{
    if (!n)
        return;
    cJSON *a = cJSON_AddArrayToObject(hc, "GroupAdd");
    char buf[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(buf, sizeof(buf), "%lld", (long long)groups[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
    }
}

int dk_sandbox_security(cJSON *cfg, cJSON *hc, const Runtime__V1__LinuxSandboxSecurityContext *sc,
                        char *err, size_t errlen)
{
    if (!sc)
        return 0;
    cJSON *opts = cJSON_AddArrayToObject(hc, "SecurityOpt");
    if (sc->privileged)
        cJSON_AddBoolToObject(hc, "Privileged", 1);
    if (sc->readonly_rootfs)
        cJSON_AddBoolToObject(hc, "ReadonlyRootfs", 1);
    add_user(cfg, sc->run_as_user, sc->run_as_group, NULL);
    add_groups(hc, sc->n_supplemental_groups, sc->supplemental_groups);
    add_selinux(opts, sc->selinux_options);
    if (add_profile_opt(opts, "seccomp", sc->seccomp, legacy_seccomp_sb(sc), err, errlen) < 0 ||
        add_profile_opt(opts, "apparmor", sc->apparmor, NULL, err, errlen) < 0)
        return -1;
    return 0;
}

int dk_container_security(cJSON *cfg, cJSON *hc,
                          const Runtime__V1__LinuxContainerSecurityContext *sc, char *err,
                          size_t errlen)
{
    if (!sc)
        return 0;
    cJSON *opts = cJSON_AddArrayToObject(hc, "SecurityOpt");
    if (sc->privileged)
        cJSON_AddBoolToObject(hc, "Privileged", 1);
    if (sc->readonly_rootfs)
        cJSON_AddBoolToObject(hc, "ReadonlyRootfs", 1);
    if (sc->no_new_privs)
        cJSON_AddItemToArray(opts, cJSON_CreateString("no-new-privileges"));
    if (sc->capabilities) {
        if (sc->capabilities->n_add_capabilities)
            cJSON_AddItemToObject(hc, "CapAdd", dk_strv(sc->capabilities->add_capabilities,
                                                       sc->capabilities->n_add_capabilities));
        if (sc->capabilities->n_drop_capabilities)
            cJSON_AddItemToObject(hc, "CapDrop", dk_strv(sc->capabilities->drop_capabilities,
                                                        sc->capabilities->n_drop_capabilities));
    }
    add_user(cfg, sc->run_as_user, sc->run_as_group, sc->run_as_username);
    add_groups(hc, sc->n_supplemental_groups, sc->supplemental_groups);
    add_selinux(opts, sc->selinux_options);
    /* Only when given: an empty list would unmask everything. */
    if (sc->n_masked_paths)
        cJSON_AddItemToObject(hc, "MaskedPaths", dk_strv(sc->masked_paths, sc->n_masked_paths));
    if (sc->n_readonly_paths)
        cJSON_AddItemToObject(hc, "ReadonlyPaths",
                              dk_strv(sc->readonly_paths, sc->n_readonly_paths));
    if (add_profile_opt(opts, "seccomp", sc->seccomp, legacy_seccomp(sc), err, errlen) < 0 ||
        add_profile_opt(opts, "apparmor", sc->apparmor, legacy_apparmor(sc), err, errlen) < 0)
        return -1;
    return 0;
}

/* ---- resources --------------------------------------------------------------- */

void dk_resources(cJSON *hc, const Runtime__V1__LinuxContainerResources *r, int for_update)
{
    if (!r)
        return;
    if (r->cpu_period)
        cJSON_AddNumberToObject(hc, "CpuPeriod", (double)r->cpu_period);
    if (r->cpu_quota)
        cJSON_AddNumberToObject(hc, "CpuQuota", (double)r->cpu_quota);
    if (r->cpu_shares)
        cJSON_AddNumberToObject(hc, "CpuShares", (double)r->cpu_shares);
    if (r->memory_limit_in_bytes) {
        cJSON_AddNumberToObject(hc, "Memory", (double)r->memory_limit_in_bytes);
        if (r->memory_swap_limit_in_bytes)
            cJSON_AddNumberToObject(hc, "MemorySwap", (double)r->memory_swap_limit_in_bytes);
        else if (for_update)
            cJSON_AddNumberToObject(hc, "MemorySwap", -1);
    }
    if (r->cpuset_cpus && *r->cpuset_cpus)
        cJSON_AddStringToObject(hc, "CpusetCpus", r->cpuset_cpus);
    if (r->cpuset_mems && *r->cpuset_mems)
        cJSON_AddStringToObject(hc, "CpusetMems", r->cpuset_mems);
    if (!for_update && r->oom_score_adj)
        cJSON_AddNumberToObject(hc, "OomScoreAdj", (double)r->oom_score_adj);
    /* hugepage_limits and unified (cgroup v2 keys) have no Docker Engine
     * API field: not applied (README, "Docker backend"). */
}

/* ---- mounts and devices ------------------------------------------------------- */

void dk_mounts(cJSON *hc, size_t n, Runtime__V1__Mount **m)
{
    if (!n)
        return;
    cJSON *binds = cJSON_AddArrayToObject(hc, "Binds");
    char buf[8192];
    for (size_t i = 0; i < n; i++) {
        const char *opts[3];
        int k = 0;
        if (m[i]->readonly)
            opts[k++] = "ro";
        if (m[i]->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER)
            opts[k++] = "rslave";
        else if (m[i]->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL)
            opts[k++] = "rshared";
        else
            opts[k++] = "rprivate";
        if (m[i]->selinux_relabel)
            opts[k++] = "Z";
        int w = snprintf(buf, sizeof(buf), "%s:%s:", m[i]->host_path, m[i]->container_path);
        for (int j = 0; j < k && w > 0 && (size_t)w < sizeof(buf); j++)
            w += snprintf(buf + w, sizeof(buf) - (size_t)w, "%s%s", j ? "," : "", opts[j]);
        cJSON_AddItemToArray(binds, cJSON_CreateString(buf));
    }
}

void dk_devices(cJSON *hc, size_t n, Runtime__V1__Device **d)
{
    if (!n)
        return;
    cJSON *a = cJSON_AddArrayToObject(hc, "Devices");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "PathOnHost", d[i]->host_path ? d[i]->host_path : "");
        cJSON_AddStringToObject(o, "PathInContainer",
                                d[i]->container_path ? d[i]->container_path : "");
        cJSON_AddStringToObject(o, "CgroupPermissions",
                                d[i]->permissions && *d[i]->permissions ? d[i]->permissions : "rwm");
        cJSON_AddItemToArray(a, o);
    }
}

/* ---- sandbox networking --------------------------------------------------------- */

void dk_dns(cJSON *hc, const Runtime__V1__DNSConfig *dns)
{
    if (!dns)
        return;
    if (dns->n_servers)
        cJSON_AddItemToObject(hc, "Dns", dk_strv(dns->servers, dns->n_servers));
    if (dns->n_searches)
        cJSON_AddItemToObject(hc, "DnsSearch", dk_strv(dns->searches, dns->n_searches));
    if (dns->n_options)
        cJSON_AddItemToObject(hc, "DnsOptions", dk_strv(dns->options, dns->n_options));
}

void dk_ports(cJSON *cfg, cJSON *hc, size_t n, Runtime__V1__PortMapping **pm)
{
    if (!n)
        return;
    cJSON *exposed = cJSON_AddObjectToObject(cfg, "ExposedPorts");
    cJSON *bindings = cJSON_AddObjectToObject(hc, "PortBindings");
    char key[32], port[16];
    for (size_t i = 0; i < n; i++) {
        const char *proto = pm[i]->protocol == RUNTIME__V1__PROTOCOL__UDP    ? "udp"
                            : pm[i]->protocol == RUNTIME__V1__PROTOCOL__SCTP ? "sctp"
                                                                             : "tcp";
        snprintf(key, sizeof(key), "%d/%s", pm[i]->container_port, proto);
        if (!cJSON_GetObjectItemCaseSensitive(exposed, key))
            cJSON_AddObjectToObject(exposed, key);
        if (pm[i]->host_port <= 0)
            continue;
        cJSON *list = cJSON_GetObjectItemCaseSensitive(bindings, key);
        if (!list)
            list = cJSON_AddArrayToObject(bindings, key);
        cJSON *b = cJSON_CreateObject();
        snprintf(port, sizeof(port), "%d", pm[i]->host_port);
        cJSON_AddStringToObject(b, "HostIp", pm[i]->host_ip ? pm[i]->host_ip : "");
        cJSON_AddStringToObject(b, "HostPort", port);
        cJSON_AddItemToArray(list, b);
    }
}

void dk_sysctls(cJSON *hc, size_t n, Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry **s)
{
    if (!n)
        return;
    cJSON *o = cJSON_AddObjectToObject(hc, "Sysctls");
    for (size_t i = 0; i < n; i++)
        cJSON_AddStringToObject(o, s[i]->key ? s[i]->key : "", s[i]->value ? s[i]->value : "");
}

/* podman's native update body (spec.LinuxResources). */
void dk_libpod_resources(cJSON *body, const Runtime__V1__LinuxContainerResources *r)
{
    if (!r)
        return;
    cJSON *cpu = cJSON_AddObjectToObject(body, "cpu");
    cJSON *mem = cJSON_AddObjectToObject(body, "memory");
    if (r->cpu_shares)
        cJSON_AddNumberToObject(cpu, "shares", (double)r->cpu_shares);
    if (r->cpu_quota)
        cJSON_AddNumberToObject(cpu, "quota", (double)r->cpu_quota);
    if (r->cpu_period)
        cJSON_AddNumberToObject(cpu, "period", (double)r->cpu_period);
    if (r->cpuset_cpus && *r->cpuset_cpus)
        cJSON_AddStringToObject(cpu, "cpus", r->cpuset_cpus);
    if (r->cpuset_mems && *r->cpuset_mems)
        cJSON_AddStringToObject(cpu, "mems", r->cpuset_mems);
    if (r->memory_limit_in_bytes)
        cJSON_AddNumberToObject(mem, "limit", (double)r->memory_limit_in_bytes);
    if (r->memory_swap_limit_in_bytes)
        cJSON_AddNumberToObject(mem, "swap", (double)r->memory_swap_limit_in_bytes);
}
