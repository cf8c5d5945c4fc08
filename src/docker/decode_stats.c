/* decode_stats.c - stats answers in Docker's shape (the engine's one-shot
 * stats, or docker_cgroup.c's reading of the node's cgroups) -> the CRI's
 * ContainerStats and PodSandboxStats (codec.h).
 *
 * usage_nano_cores needs two samples: a small bounded cache keeps the
 * previous one per container (a cache, not state: after a restart the
 * first answer lacks the rate, which the kubelet then computes itself). */
#include <string.h>

#include "docker/codec.h"

uint64_t dk_cpu_rate(struct dk_cpu_cache *cache, const char *id, int64_t ts, uint64_t usage,
                     int *have)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16 && id[i]; i++)
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    struct dk_cpu_sample *s = &cache->slot[h % DK_CPU_CACHE_SLOTS];
    uint64_t rate = 0;
    *have = 0;
    if (strncmp(s->id, id, sizeof(s->id)) == 0 && ts > s->ts && usage >= s->usage) {
        rate = (uint64_t)((double)(usage - s->usage) * 1e9 / (double)(ts - s->ts));
        *have = 1;
    }
    strncpy(s->id, id, sizeof(s->id)); /* a prefix is the cache's key */
    s->ts = ts;
    s->usage = usage;
    return rate;
}

/* ---- building blocks ------------------------------------------------------------ */

static Runtime__V1__UInt64Value *u64(struct dk_arena *a, int64_t v)
{
    Runtime__V1__UInt64Value *x = dk_msg(a, &runtime__v1__uint64_value__descriptor);
    if (x)
        x->value = v > 0 ? (uint64_t)v : 0;
    return x;
}

/* When the sample was read; now when the answer does not say. */
static int64_t read_ns(const struct dk_stats_ctx *c, const cJSON *stats)
{
    int64_t t = dk_time_ns(dk_str(stats, "read"));
    return t ? t : c->now_ns;
}

static Runtime__V1__CpuUsage *cpu_usage(struct dk_stats_ctx *c, const char *id, const cJSON *stats)
{
    Runtime__V1__CpuUsage *u = dk_msg(c->a, &runtime__v1__cpu_usage__descriptor);
    if (!u)
        return NULL;
    int64_t ts = read_ns(c, stats);
    int64_t total = dk_int(dk_obj(dk_obj(stats, "cpu_stats"), "cpu_usage"), "total_usage");
    u->timestamp = ts;
    u->usage_core_nano_seconds = u64(c->a, total);
    int have = 0;
    uint64_t rate = c->cpu ? dk_cpu_rate(c->cpu, id, ts, total > 0 ? (uint64_t)total : 0, &have) : 0;
    if (have)
        u->usage_nano_cores = u64(c->a, (int64_t)rate);
    return u;
}

/* A memory.stat figure: cgroup v1's total_* name, else v2's. */
static int64_t mem_stat(const cJSON *ms, const char *v1, const char *v2)
{
    const cJSON *s = dk_obj(ms, "stats");
    return dk_obj(s, v1) ? dk_int(s, v1) : dk_int(s, v2);
}

static Runtime__V1__MemoryUsage *mem_usage(struct dk_stats_ctx *c, const cJSON *stats)
{
    Runtime__V1__MemoryUsage *m = dk_msg(c->a, &runtime__v1__memory_usage__descriptor);
    if (!m)
        return NULL;
    const cJSON *ms = dk_obj(stats, "memory_stats");
    int64_t usage = dk_int(ms, "usage");
    int64_t inactive = mem_stat(ms, "total_inactive_file", "inactive_file");
    int64_t ws = usage > inactive ? usage - inactive : 0; /* podman: no stats, ws = usage */
    int64_t limit = dk_int(ms, "limit");
    m->timestamp = read_ns(c, stats);
    m->usage_bytes = u64(c->a, usage);
    m->working_set_bytes = u64(c->a, ws);
    m->rss_bytes = u64(c->a, mem_stat(ms, "total_rss", "anon"));
    m->page_faults = u64(c->a, mem_stat(ms, "total_pgfault", "pgfault"));
    m->major_page_faults = u64(c->a, mem_stat(ms, "total_pgmajfault", "pgmajfault"));
    if (limit > 0 && limit < (1LL << 62))
        m->available_bytes = u64(c->a, limit > ws ? limit - ws : 0);
    return m;
}

static Runtime__V1__NetworkInterfaceUsage *interface_usage(struct dk_arena *a, const cJSON *it)
{
    Runtime__V1__NetworkInterfaceUsage *x = dk_msg(a, &runtime__v1__network_interface_usage__descriptor);
    if (!x)
        return NULL;
    x->name = dk_strdup(a, it->string);
    x->rx_bytes = u64(a, dk_int(it, "rx_bytes"));
    x->rx_errors = u64(a, dk_int(it, "rx_errors"));
    x->tx_bytes = u64(a, dk_int(it, "tx_bytes"));
    x->tx_errors = u64(a, dk_int(it, "tx_errors"));
    return x;
}

/* The sandbox's interfaces; eth0 (else the first) is the default. */
static Runtime__V1__NetworkUsage *network_usage(struct dk_stats_ctx *c, const cJSON *stats)
{
    const cJSON *nets = dk_obj(stats, "networks"), *it;
    size_t n = (size_t)cJSON_GetArraySize(nets), k = 0;
    Runtime__V1__NetworkUsage *nu = n ? dk_msg(c->a, &runtime__v1__network_usage__descriptor) : NULL;
    Runtime__V1__NetworkInterfaceUsage **ifs = nu ? dk_alloc(c->a, n * sizeof(*ifs)) : NULL;
    if (!ifs)
        return NULL;
    cJSON_ArrayForEach(it, nets) {
        Runtime__V1__NetworkInterfaceUsage *x = k < n ? interface_usage(c->a, it) : NULL;
        if (!x)
            break;
        ifs[k++] = x;
        if (!nu->default_interface || strcmp(x->name, "eth0") == 0)
            nu->default_interface = x;
    }
    nu->timestamp = read_ns(c, stats);
    nu->n_interfaces = k;
    nu->interfaces = ifs;
    return nu;
}

/* ---- containers ------------------------------------------------------------------ */

static Runtime__V1__ContainerAttributes *ctr_attributes(struct dk_arena *a, const cJSON *entry)
{
    Runtime__V1__ContainerAttributes *at = dk_msg(a, &runtime__v1__container_attributes__descriptor);
    struct dk_name nm;
    if (!at)
        return NULL;
    at->id = dk_strdup(a, dk_str(entry, "Id"));
    if (dk_parse_name(dk_entry_name(entry), &nm) == 0)
        at->metadata = dk_ctr_metadata(a, &nm);
    dk_cri_labels(a, &at->base, dk_entry_labels(entry));
    return at;
}

struct dk_stats_item dk_stats_item_sized(const cJSON *entry, cJSON *stats, int sandbox)
{
    return (struct dk_stats_item){entry, stats, sandbox, dk_int(entry, "SizeRw"), 0};
}

Runtime__V1__ContainerStats *dk_container_stats(struct dk_stats_ctx *c, const struct dk_stats_item *it)
{
    const cJSON *entry = it->entry, *stats = it->stats;
    struct dk_arena *a = c->a;
    Runtime__V1__ContainerStats *cs = dk_msg(a, &runtime__v1__container_stats__descriptor);
    Runtime__V1__FilesystemUsage *fs = dk_msg(a, &runtime__v1__filesystem_usage__descriptor);
    if (!cs || !fs)
        return NULL;
    cs->attributes = ctr_attributes(a, entry);
    if (stats) {
        cs->cpu = cpu_usage(c, dk_str(entry, "Id"), stats);
        cs->memory = mem_usage(c, stats);
        fs->timestamp = read_ns(c, stats);
    }
    if (it->size_ns != 0)
        fs->timestamp = it->size_ns > 0 ? it->size_ns : 0;
    fs->used_bytes = u64(a, it->size_ns < 0 ? 0 : it->size_rw);
    fs->fs_id = dk_msg(a, &runtime__v1__filesystem_identifier__descriptor);
    if (fs->fs_id)
        fs->fs_id->mountpoint = dk_strdup(a, c->fs_root);
    cs->writable_layer = fs;
    return cs;
}

/* ---- pods -------------------------------------------------------------------------- */

static Runtime__V1__PodSandboxAttributes *pod_attributes(struct dk_arena *a, const cJSON *entry)
{
    Runtime__V1__PodSandboxAttributes *at = dk_msg(a, &runtime__v1__pod_sandbox_attributes__descriptor);
    struct dk_name nm;
    if (!at)
        return NULL;
    at->id = dk_strdup(a, dk_str(entry, "Id"));
    if (dk_parse_name(dk_entry_name(entry), &nm) == 0)
        at->metadata = dk_pod_metadata(a, &nm);
    dk_cri_labels(a, &at->base, dk_entry_labels(entry));
    return at;
}

static void sum_u64(struct dk_arena *a, Runtime__V1__UInt64Value **dst,
                    const Runtime__V1__UInt64Value *src)
{
    if (!src)
        return;
    if (!*dst)
        *dst = u64(a, 0);
    if (*dst)
        (*dst)->value += src->value;
}

/* The pod's usage so far, summed over its sandbox and containers. */
struct pod_sum {
    Runtime__V1__CpuUsage *cpu;
    Runtime__V1__MemoryUsage *mem;
    int64_t ts;
    uint64_t procs;
};

static void add_usage(struct dk_stats_ctx *c, struct pod_sum *sum, const struct dk_stats_item *it)
{
    Runtime__V1__CpuUsage *cu = cpu_usage(c, dk_str(it->entry, "Id"), it->stats);
    Runtime__V1__MemoryUsage *m = mem_usage(c, it->stats);
    if (cu) {
        sum_u64(c->a, &sum->cpu->usage_core_nano_seconds, cu->usage_core_nano_seconds);
        sum_u64(c->a, &sum->cpu->usage_nano_cores, cu->usage_nano_cores);
        sum->ts = cu->timestamp > sum->ts ? cu->timestamp : sum->ts;
    }
    if (m) {
        sum_u64(c->a, &sum->mem->usage_bytes, m->usage_bytes);
        sum_u64(c->a, &sum->mem->working_set_bytes, m->working_set_bytes);
        sum_u64(c->a, &sum->mem->rss_bytes, m->rss_bytes);
        sum_u64(c->a, &sum->mem->page_faults, m->page_faults);
        sum_u64(c->a, &sum->mem->major_page_faults, m->major_page_faults);
    }
    sum->procs += (uint64_t)dk_int(dk_obj(it->stats, "pids_stats"), "current");
}

static int pod_member(const struct dk_stats_item *it, const struct dk_stats_item *sb)
{
    const char *sid = dk_str(sb->entry, "Id");
    return it == sb ||
           (!it->sandbox && dk_str_is(dk_entry_labels(it->entry), DK_LABEL_SANDBOX_ID, sid));
}

static Runtime__V1__LinuxPodSandboxStats *pod_linux(struct dk_stats_ctx *c, struct pod_sum *sum,
                                                    const struct dk_stats_item *sb)
{
    Runtime__V1__LinuxPodSandboxStats *lx = dk_msg(c->a, &runtime__v1__linux_pod_sandbox_stats__descriptor);
    if (!lx)
        return NULL;
    sum->cpu->timestamp = sum->mem->timestamp = sum->ts;
    lx->cpu = sum->cpu;
    lx->memory = sum->mem;
    if (sb->stats)
        lx->network = network_usage(c, sb->stats);
    lx->process = dk_msg(c->a, &runtime__v1__process_usage__descriptor);
    if (lx->process) {
        lx->process->timestamp = sum->ts;
        lx->process->process_count = u64(c->a, (int64_t)sum->procs);
    }
    return lx;
}

Runtime__V1__PodSandboxStats *dk_pod_stats(struct dk_stats_ctx *c, const struct dk_stats_item *sb,
                                           const struct dk_stats_item *items, size_t n)
{
    struct dk_arena *a = c->a;
    Runtime__V1__PodSandboxStats *ps = dk_msg(a, &runtime__v1__pod_sandbox_stats__descriptor);
    Runtime__V1__ContainerStats **cv = dk_alloc(a, (n ? n : 1) * sizeof(*cv));
    struct pod_sum sum = {dk_msg(a, &runtime__v1__cpu_usage__descriptor),
                          dk_msg(a, &runtime__v1__memory_usage__descriptor), 0, 0};
    size_t nc = 0;
    if (!ps || !cv || !sum.cpu || !sum.mem)
        return NULL;
    ps->attributes = pod_attributes(a, sb->entry);
    for (size_t i = 0; i < n; i++) {
        const struct dk_stats_item *it = &items[i];
        if (!pod_member(it, sb) || !it->stats)
            continue;
        add_usage(c, &sum, it);
        if (it != sb)
            cv[nc++] = dk_container_stats(c, it);
    }
    ps->linux = pod_linux(c, &sum, sb);
    if (ps->linux) {
        ps->linux->n_containers = nc;
        ps->linux->containers = cv;
    }
    return ps;
}
