/* encode_spec.c - the pieces of a container's spec in Docker's create and
 * update bodies (codec.h): security context, resources, mounts, devices,
 * DNS, ports, sysctls; podman's native update body. Strings are sized to
 * what they hold: nothing is cut. */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "docker/codec.h"

#define SECCOMP_PROFILE_MAX (1 << 20)

cJSON *dk_strv(char **v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i] ? v[i] : ""));
    return a;
}

cJSON *dk_add_strf(cJSON *dst, const char *key, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    cJSON *item = n >= 0 ? cJSON_CreateString(s) : NULL;
    free(n >= 0 ? s : NULL);
    if (item && key)
        cJSON_AddItemToObject(dst, key, item);
    else if (item)
        cJSON_AddItemToArray(dst, item);
    return item;
}

int dk_fail(struct dk_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
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

/* Docker takes a seccomp profile's content, not its path: read it here
 * (crisp runs on the node, like the kubelet that names the file). podman's
 * compatible API reads seccomp=VALUE as a file path: it gets the path. */
static int add_seccomp_file(cJSON *opts, const char *path, int podman, struct dk_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dk_fail(err, GRPC_INVALID_ARGUMENT, "seccomp profile %s: %s", path, strerror(errno));
    char *content = podman ? NULL : malloc(SECCOMP_PROFILE_MAX);
    size_t n = content ? fread(content, 1, SECCOMP_PROFILE_MAX - 1, f) : 0;
    int toolong = content && !feof(f);
    fclose(f);
    if (podman)
        return dk_add_strf(opts, NULL, "seccomp=%s", path) ? 0 : dk_fail(err, 0, "out of memory");
    if (!content || toolong) {
        free(content);
        return dk_fail(err, content ? GRPC_INVALID_ARGUMENT : GRPC_RESOURCE_EXHAUSTED,
                       "seccomp profile %s: %s", path, content ? "larger than 1 MiB" : "out of memory");
    }
    content[n] = 0;
    dk_add_strf(opts, NULL, "seccomp=%s", content);
    free(content);
    return 0;
}

enum profile { PROFILE_DEFAULT, PROFILE_UNCONFINED, PROFILE_LOCALHOST, PROFILE_INVALID };

/* A deprecated profile string (seccomp_profile_path, apparmor_profile):
 * "" is the CRI's unset (empty_is: unconfined for seccomp, the runtime's
 * default for AppArmor), then the names the CRI defines; anything else is
 * invalid (containerd: "invalid seccomp profile"). */
static enum profile legacy_profile(const char *s, enum profile empty_is, const char **ref)
{
    if (!s || !*s)
        return empty_is;
    if (strcmp(s, "runtime/default") == 0 || strcmp(s, "docker/default") == 0)
        return PROFILE_DEFAULT;
    if (strcmp(s, "unconfined") == 0)
        return PROFILE_UNCONFINED;
    if (strncmp(s, "localhost/", 10) != 0 || !s[10])
        return PROFILE_INVALID;
    *ref = s + 10;
    return PROFILE_LOCALHOST;
}

/* What a profile asks for: the engine's default, unconfined, or a
 * localhost profile (*ref: its name for AppArmor, its file for seccomp).
 * The structured field wins over the deprecated string; neither set is
 * empty_is. */
static enum profile profile_of(const Runtime__V1__SecurityProfile *p, const char *legacy,
                               enum profile empty_is, const char **ref)
{
    if (!p)
        return legacy_profile(legacy, empty_is, ref);
    switch (p->profile_type) {
    case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined:
        return PROFILE_UNCONFINED;
    case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost:
        *ref = p->localhost_ref && strncmp(p->localhost_ref, "localhost/", 10) == 0
                   ? p->localhost_ref + 10 : p->localhost_ref;
        return *ref && **ref ? PROFILE_LOCALHOST : PROFILE_INVALID;
    default:
        return PROFILE_DEFAULT; /* RuntimeDefault: the engine's own */
    }
}

/* The container's (or pod's) seccomp: unset is unconfined in the CRI,
 * where the engines would apply their default; a privileged container
 * has none (the engines drop it themselves), whatever is asked. */
static int add_seccomp(cJSON *opts, const Runtime__V1__SecurityProfile *p, const char *legacy,
                       int privileged, int podman, struct dk_err *err)
{
    const char *ref = NULL;
    enum profile kind = profile_of(p, legacy, PROFILE_UNCONFINED, &ref);
    if (privileged && kind != PROFILE_INVALID)
        return 0; /* containerd refuses an invalid name all the same */
    switch (kind) {
    case PROFILE_UNCONFINED:
        return dk_add_strf(opts, NULL, "seccomp=unconfined") ? 0 : dk_fail(err, 0, "out of memory");
    case PROFILE_LOCALHOST:
        return add_seccomp_file(opts, ref, podman, err);
    case PROFILE_INVALID:
        return dk_fail(err, GRPC_INVALID_ARGUMENT,
                       "invalid seccomp profile \"%s\" (want runtime/default, docker/default, "
                       "unconfined or localhost/<path>)", p ? (p->localhost_ref ? p->localhost_ref : "")
                                                           : legacy);
    default:
        return 0;
    }
}

static int add_apparmor(cJSON *opts, const Runtime__V1__SecurityProfile *p, const char *legacy,
                        struct dk_err *err)
{
    const char *ref = NULL;
    switch (profile_of(p, legacy, PROFILE_DEFAULT, &ref)) {
    case PROFILE_UNCONFINED:
        dk_add_strf(opts, NULL, "apparmor=unconfined");
        return 0;
    case PROFILE_LOCALHOST:
        dk_add_strf(opts, NULL, "apparmor=%s", ref);
        return 0;
    case PROFILE_INVALID:
        return dk_fail(err, GRPC_INVALID_ARGUMENT, "invalid apparmor profile \"%s\"",
                       p ? (p->localhost_ref ? p->localhost_ref : "") : legacy);
    default:
        return 0;
    }
}

static void add_selinux(cJSON *opts, const Runtime__V1__SELinuxOption *o)
{
    if (!o)
        return;
    const char *kv[4][2] = {{"user", o->user}, {"role", o->role}, {"type", o->type},
                            {"level", o->level}};
    for (int i = 0; i < 4; i++) {
        if (kv[i][1] && *kv[i][1])
            dk_add_strf(opts, NULL, "label=%s:%s", kv[i][0], kv[i][1]);
    }
}

/* The user as uid or name, with the group; a group without a user is
 * refused, as containerd does (the engine would run the process as root,
 * only its group changed). */
static int add_user(cJSON *cfg, const Runtime__V1__Int64Value *uid,
                    const Runtime__V1__Int64Value *gid, const char *username, struct dk_err *err)
{
    int named = username && *username;
    if (!named && !uid && gid)
        return dk_fail(err, GRPC_INVALID_ARGUMENT, "user group \"%lld\" is specified without user",
                       (long long)gid->value);
    if (!named && !uid)
        return 0;
    char id[24] = "", group[24] = "";
    if (!named)
        snprintf(id, sizeof(id), "%lld", (long long)uid->value);
    if (gid)
        snprintf(group, sizeof(group), ":%lld", (long long)gid->value);
    return dk_add_strf(cfg, "User", "%s%s", *id ? id : username, group) ? 0
                                                                       : dk_fail(err, 0, "out of memory");
}

static void add_groups(cJSON *hc, size_t n, const int64_t *groups)
{
    if (!n)
        return;
    cJSON *a = cJSON_AddArrayToObject(hc, "GroupAdd");
    for (size_t i = 0; i < n; i++)
        dk_add_strf(a, NULL, "%lld", (long long)groups[i]);
}

static void add_privileges(cJSON *hc, int privileged, int readonly_rootfs)
{
    if (privileged)
        cJSON_AddBoolToObject(hc, "Privileged", 1);
    if (readonly_rootfs)
        cJSON_AddBoolToObject(hc, "ReadonlyRootfs", 1);
}

int dk_sandbox_security(cJSON *cfg, cJSON *hc, const Runtime__V1__LinuxSandboxSecurityContext *sc,
                        int podman, struct dk_err *err)
{
    cJSON *opts = cJSON_AddArrayToObject(hc, "SecurityOpt");
    if (!sc) /* the CRI's defaults: seccomp unconfined */
        return add_seccomp(opts, NULL, NULL, 0, podman, err);
    add_privileges(hc, sc->privileged, sc->readonly_rootfs);
    add_groups(hc, sc->n_supplemental_groups, sc->supplemental_groups);
    add_selinux(opts, sc->selinux_options);
    if (add_user(cfg, sc->run_as_user, sc->run_as_group, NULL, err) < 0 ||
        add_seccomp(opts, sc->seccomp, legacy_seccomp_sb(sc), sc->privileged, podman, err) < 0 ||
        add_apparmor(opts, sc->apparmor, NULL, err) < 0)
        return -1;
    return 0;
}

static void add_capabilities(cJSON *hc, const Runtime__V1__Capability *caps)
{
    if (caps && caps->n_add_capabilities)
        cJSON_AddItemToObject(hc, "CapAdd", dk_strv(caps->add_capabilities, caps->n_add_capabilities));
    if (caps && caps->n_drop_capabilities)
        cJSON_AddItemToObject(hc, "CapDrop", dk_strv(caps->drop_capabilities, caps->n_drop_capabilities));
}

/* podman 4.3's own masked and read-only paths (its OCI config of a
 * default container). */
static const char *const podman_masked[] = {
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
    "/sys/dev/block", NULL};
static const char *const podman_readonly[] = {
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL};

static int in_list(const char *const *list, size_t n, const char *path)
{
    for (size_t i = 0; list && (n == (size_t)-1 ? list[i] != NULL : i < n); i++)
        if (strcmp(list[i], path) == 0)
            return 1;
    return 0;
}

/* Appends path to a "mask=" or "unmask=" list (':'-separated); -1 when it
 * cannot be written as one (a ':' in it) or memory is short. */
static int join_path(char **list, const char *path)
{
    char *s = NULL;
    if (strchr(path, ':') || asprintf(&s, "%s%s%s", *list ? *list : "", *list ? ":" : "", path) < 0)
        return -1;
    free(*list);
    *list = s;
    return 0;
}

/* podman's compatible create ignores MaskedPaths and ReadonlyPaths; it
 * honours "mask=" and "unmask=" options over its own defaults: for a list
 * the CRI gives, podman's defaults it does not hold are unmasked, the CRI's masked paths
 * masked, and a CRI read-only path podman does not make read-only is
 * masked (podman has no option for read-only paths: stricter, not
 * looser). */
static int podman_masks(cJSON *opts, const Runtime__V1__LinuxContainerSecurityContext *sc,
                        struct dk_err *err)
{
    char *mask = NULL, *unmask = NULL;
    int bad = 0;
    for (size_t i = 0; sc->n_masked_paths && podman_masked[i]; i++)
        if (!in_list((const char *const *)sc->masked_paths, sc->n_masked_paths, podman_masked[i]))
            bad |= join_path(&unmask, podman_masked[i]);
    for (size_t i = 0; sc->n_readonly_paths && podman_readonly[i]; i++)
        if (!in_list((const char *const *)sc->readonly_paths, sc->n_readonly_paths, podman_readonly[i]))
            bad |= join_path(&unmask, podman_readonly[i]);
    for (size_t i = 0; i < sc->n_masked_paths; i++)
        bad |= join_path(&mask, sc->masked_paths[i]);
    for (size_t i = 0; i < sc->n_readonly_paths; i++)
        if (!in_list(podman_readonly, (size_t)-1, sc->readonly_paths[i]))
            bad |= join_path(&mask, sc->readonly_paths[i]);
    if (!bad && unmask)
        bad |= !dk_add_strf(opts, NULL, "unmask=%s", unmask);
    if (!bad && mask)
        bad |= !dk_add_strf(opts, NULL, "mask=%s", mask);
    free(mask);
    free(unmask);
    return bad ? dk_fail(err, GRPC_INVALID_ARGUMENT,
                         "masked or read-only paths cannot go to podman (a path holds ':')") : 0;
}

/* A list is applied when given; an empty one is the engine's defaults,
 * as containerd reads it (the CRI cannot tell empty from unset). */
static int add_path_masks(cJSON *hc, cJSON *opts, const Runtime__V1__LinuxContainerSecurityContext *sc,
                          int podman, struct dk_err *err)
{
    if (sc->privileged)
        return 0; /* the engines unmask everything for privileged containers */
    if (podman)
        return podman_masks(opts, sc, err);
    if (sc->n_masked_paths)
        cJSON_AddItemToObject(hc, "MaskedPaths", dk_strv(sc->masked_paths, sc->n_masked_paths));
    if (sc->n_readonly_paths)
        cJSON_AddItemToObject(hc, "ReadonlyPaths", dk_strv(sc->readonly_paths, sc->n_readonly_paths));
    return 0;
}

int dk_container_security(cJSON *cfg, cJSON *hc,
                          const Runtime__V1__LinuxContainerSecurityContext *sc, int podman,
                          struct dk_err *err)
{
    cJSON *opts = cJSON_AddArrayToObject(hc, "SecurityOpt");
    if (!sc) /* the CRI's defaults: seccomp unconfined */
        return add_seccomp(opts, NULL, NULL, 0, podman, err);
    add_privileges(hc, sc->privileged, sc->readonly_rootfs);
    if (sc->no_new_privs)
        cJSON_AddItemToArray(opts, cJSON_CreateString("no-new-privileges"));
    add_capabilities(hc, sc->capabilities);
    add_groups(hc, sc->n_supplemental_groups, sc->supplemental_groups);
    add_selinux(opts, sc->selinux_options);
    if (add_path_masks(hc, opts, sc, podman, err) < 0 ||
        add_user(cfg, sc->run_as_user, sc->run_as_group, sc->run_as_username, err) < 0 ||
        add_seccomp(opts, sc->seccomp, legacy_seccomp(sc), sc->privileged, podman, err) < 0 ||
        add_apparmor(opts, sc->apparmor, legacy_apparmor(sc), err) < 0)
        return -1;
    return 0;
}

/* ---- resources --------------------------------------------------------------- */

static void add_number_if(cJSON *o, const char *key, int64_t v)
{
    if (v)
        cJSON_AddNumberToObject(o, key, (double)v);
}

static void add_string_if(cJSON *o, const char *key, const char *v)
{
    if (v && *v)
        cJSON_AddStringToObject(o, key, v);
}

void dk_resources(cJSON *hc, const Runtime__V1__LinuxContainerResources *r, int for_update)
{
    if (!r)
        return;
    add_number_if(hc, "CpuPeriod", r->cpu_period);
    add_number_if(hc, "CpuQuota", r->cpu_quota);
    add_number_if(hc, "CpuShares", r->cpu_shares);
    if (r->memory_limit_in_bytes) {
        cJSON_AddNumberToObject(hc, "Memory", (double)r->memory_limit_in_bytes);
        if (r->memory_swap_limit_in_bytes)
            cJSON_AddNumberToObject(hc, "MemorySwap", (double)r->memory_swap_limit_in_bytes);
        else if (for_update)
            cJSON_AddNumberToObject(hc, "MemorySwap", -1);
    }
    add_string_if(hc, "CpusetCpus", r->cpuset_cpus);
    add_string_if(hc, "CpusetMems", r->cpuset_mems);
    if (!for_update)
        add_number_if(hc, "OomScoreAdj", r->oom_score_adj);
    /* hugepage_limits and unified (cgroup v2 keys) have no Docker Engine
     * API field: not applied (README, "Docker backend"). */
}

/* podman's native update body (spec.LinuxResources). */
void dk_libpod_resources(cJSON *body, const Runtime__V1__LinuxContainerResources *r)
{
    if (!r)
        return;
    cJSON *cpu = cJSON_AddObjectToObject(body, "cpu");
    cJSON *mem = cJSON_AddObjectToObject(body, "memory");
    add_number_if(cpu, "shares", r->cpu_shares);
    add_number_if(cpu, "quota", r->cpu_quota);
    add_number_if(cpu, "period", r->cpu_period);
    add_string_if(cpu, "cpus", r->cpuset_cpus);
    add_string_if(cpu, "mems", r->cpuset_mems);
    add_number_if(mem, "limit", r->memory_limit_in_bytes);
    add_number_if(mem, "swap", r->memory_swap_limit_in_bytes);
}

/* ---- mounts and devices ------------------------------------------------------- */

static const char *bind_propagation(Runtime__V1__MountPropagation p)
{
    if (p == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER)
        return "rslave";
    if (p == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL)
        return "rshared";
    return "rprivate";
}

/* A path with ':' cannot be a bind's "host:container:options": such a
 * mount goes in HostConfig.Mounts (no SELinux relabel there). */
static int add_mount(cJSON *mounts, const Runtime__V1__Mount *m, struct dk_err *err)
{
    if (m->selinux_relabel)
        return dk_fail(err, GRPC_INVALID_ARGUMENT,
                       "mount %s: a path with ':' cannot be relabelled for SELinux on Docker",
                       m->container_path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "Type", "bind");
    cJSON_AddStringToObject(o, "Source", m->host_path);
    cJSON_AddStringToObject(o, "Target", m->container_path);
    if (m->readonly)
        cJSON_AddBoolToObject(o, "ReadOnly", 1);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "BindOptions"), "Propagation",
                            bind_propagation(m->propagation));
    cJSON_AddItemToArray(mounts, o);
    return 0;
}

int dk_mounts(cJSON *hc, size_t n, Runtime__V1__Mount **m, struct dk_err *err)
{
    cJSON *binds = NULL, *mounts = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strchr(m[i]->host_path, ':') || strchr(m[i]->container_path, ':')) {
            if (!mounts)
                mounts = cJSON_AddArrayToObject(hc, "Mounts");
            if (add_mount(mounts, m[i], err) < 0)
                return -1;
            continue;
        }
        if (!binds)
            binds = cJSON_AddArrayToObject(hc, "Binds");
        dk_add_strf(binds, NULL, "%s:%s:%s%s%s", m[i]->host_path, m[i]->container_path,
                    m[i]->readonly ? "ro," : "", bind_propagation(m[i]->propagation),
                    m[i]->selinux_relabel ? ",Z" : "");
    }
    return 0;
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

static const char *port_protocol(Runtime__V1__Protocol p)
{
    return p == RUNTIME__V1__PROTOCOL__UDP ? "udp" : p == RUNTIME__V1__PROTOCOL__SCTP ? "sctp" : "tcp";
}

static void add_binding(cJSON *bindings, const char *key, const Runtime__V1__PortMapping *pm)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(bindings, key);
    if (!list)
        list = cJSON_AddArrayToObject(bindings, key);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "HostIp", pm->host_ip ? pm->host_ip : "");
    dk_add_strf(b, "HostPort", "%d", pm->host_port);
    cJSON_AddItemToArray(list, b);
}

void dk_ports(cJSON *cfg, cJSON *hc, size_t n, Runtime__V1__PortMapping **pm)
{
    if (!n)
        return;
    cJSON *exposed = cJSON_AddObjectToObject(cfg, "ExposedPorts");
    cJSON *bindings = cJSON_AddObjectToObject(hc, "PortBindings");
    char key[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%d/%s", pm[i]->container_port, port_protocol(pm[i]->protocol));
        if (!cJSON_GetObjectItemCaseSensitive(exposed, key))
            cJSON_AddObjectToObject(exposed, key);
        if (pm[i]->host_port > 0)
            add_binding(bindings, key, pm[i]);
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
