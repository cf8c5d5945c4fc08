/* docker_cgroup.c - container stats read from the node's cgroup files.
 *
 * Docker's stats API answers on its collector's pass (a second, and more
 * with many containers) and costs the engine and its shims CPU for every
 * sample. crisp runs on the node, as the kubelet does: it reads the same
 * numbers from the container's cgroups (found through /proc/<pid>/cgroup)
 * and /proc/<pid>/net/dev, and shapes them like a Docker stats answer so the
 * builders in docker_stats.c serve both sources. cgroup v1 and v2. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "docker.h"

#define CG_ROOT "/sys/fs/cgroup"

/* A small file whole (NUL-terminated): its length, -1 when it cannot be
 * read or does not fit in cap - 1 bytes (never half of it). One open and
 * one read: these are files the kernel generates whole on the first read. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0 || (size_t)n == cap - 1)
        return -1;
    buf[n] = 0;
    return n;
}

static ssize_t read_in(const char *dir, const char *file, char *buf, size_t cap)
{
    char path[1100];
    snprintf(path, sizeof(path), "%.1000s/%.64s", dir, file);
    return read_small(path, buf, cap);
}

/* The line at *at (its newline cut), *at moved past it; NULL at the end. */
static char *next_line(char **at)
{
    char *line = *at;
    if (!line || !*line)
        return NULL;
    char *nl = strchr(line, '\n');
    if (nl)
        *nl++ = 0;
    *at = nl;
    return line;
}

static int read_u64(const char *dir, const char *file, int64_t *out)
{
    char buf[64];
    if (read_in(dir, file, buf, sizeof(buf)) <= 0)
        return -1;
    if (strncmp(buf, "max", 3) == 0) {
        *out = INT64_MAX;
        return 0;
    }
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf)
        return -1;
    *out = v;
    return 0;
}

/* The "key value" lines of a file whose key is one of keys (NULL-ended)
 * into a JSON object (memory.stat, cpu.stat): what the stats decoders
 * read of them. */
static cJSON *read_kv(const char *dir, const char *file, const char *const *keys)
{
    char buf[16384];
    if (read_in(dir, file, buf, sizeof(buf)) < 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    char *at = buf, *line;
    while (o && (line = next_line(&at))) {
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = 0;
        for (const char *const *k = keys; *k; k++)
            if (strcmp(line, *k) == 0)
                cJSON_AddNumberToObject(o, line, (double)strtoll(sp + 1, NULL, 10));
    }
    return o;
}

/* What decode_stats.c reads of memory.stat (cgroup v1 names, v2 names). */
static const char *const mem_keys[] = {"total_inactive_file", "total_rss", "total_pgfault", "total_pgmajfault",
                                       "inactive_file", "anon", "pgfault", "pgmajfault", NULL};
static const char *const cpu_keys[] = {"usage_usec", NULL};

struct cg_paths {
    char cpu[1024];    /* holds cpuacct.usage (v1) or cpu.stat (v2) */
    char memory[1024];
    char pids[1024];
    int v2;
};

static int find_paths(int pid, struct cg_paths *p)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
    if (read_small(path, buf, sizeof(buf)) < 0)
        return -1;
    memset(p, 0, sizeof(*p));
    char unified[720] = "";
    char *at = buf, *line;
    while ((line = next_line(&at))) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *cg = c2 + 1;
        /* controllers are mounted at /sys/fs/cgroup/<their list> */
        if (strlen(ctrls) > 200 || strlen(cg) > 700)
            continue; /* not a path of a container crisp knows */
        char dir[1000];
        snprintf(dir, sizeof(dir), CG_ROOT "/%.200s%.700s", ctrls, cg);
        char list[256];
        snprintf(list, sizeof(list), ",%.200s,", ctrls);
        if (!*ctrls)
            snprintf(unified, sizeof(unified), "%.700s", cg);
        else if (strstr(list, ",cpuacct,"))
            snprintf(p->cpu, sizeof(p->cpu), "%s", dir);
        else if (strstr(list, ",memory,"))
            snprintf(p->memory, sizeof(p->memory), "%s", dir);
        else if (strstr(list, ",pids,"))
            snprintf(p->pids, sizeof(p->pids), "%s", dir);
    }
    if (!p->cpu[0] && !p->memory[0] && unified[0]) {
        p->v2 = 1;
        snprintf(p->cpu, sizeof(p->cpu), CG_ROOT "%.700s", unified);
        snprintf(p->memory, sizeof(p->memory), "%s", p->cpu);
        snprintf(p->pids, sizeof(p->pids), "%s", p->cpu);
    }
    return p->cpu[0] && p->memory[0] ? 0 : -1;
}

static void add_networks(cJSON *stats, int pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/net/dev", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    cJSON *nets = cJSON_AddObjectToObject(stats, "networks");
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = 0;
        char *name = line + strspn(line, " ");
        if (strcmp(name, "lo") == 0)
            continue;
        unsigned long long v[16] = {0};
        if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]) < 11)
            continue;
        cJSON *n = cJSON_AddObjectToObject(nets, name);
        cJSON_AddNumberToObject(n, "rx_bytes", (double)v[0]);
        cJSON_AddNumberToObject(n, "rx_errors", (double)v[2]);
        cJSON_AddNumberToObject(n, "tx_bytes", (double)v[8]);
        cJSON_AddNumberToObject(n, "tx_errors", (double)v[10]);
    }
    fclose(f);
}

int dk_cgroup_find(int pid, struct dk_cgroup *cg)
{
    struct cg_paths p;
    *cg = (struct dk_cgroup){0};
    if (pid <= 0 || find_paths(pid, &p) < 0)
        return -1;
    size_t nc = strlen(p.cpu) + 1, nm = strlen(p.memory) + 1, np = strlen(p.pids) + 1;
    char *all = malloc(nc + nm + np);
    if (!all)
        return -1;
    memcpy(all, p.cpu, nc);
    memcpy(all + nc, p.memory, nm);
    memcpy(all + nc + nm, p.pids, np);
    *cg = (struct dk_cgroup){all, all + nc, all + nc + nm, p.v2};
    return 0;
}

cJSON *dk_cgroup_stats(int pid, int with_network)
{
    struct dk_cgroup cg;
    if (dk_cgroup_find(pid, &cg) < 0)
        return NULL;
    cJSON *s = dk_cgroup_read(&cg, pid, with_network);
    dk_cgroup_clear(&cg);
    return s;
}

cJSON *dk_cgroup_read(const struct dk_cgroup *cg, int pid, int with_network)
{
    const struct dk_cgroup p = *cg;
    int64_t cpu = 0, usage = 0, limit = 0, pids = 0;
    if (p.v2) {
        cJSON *cs = read_kv(p.cpu, "cpu.stat", cpu_keys);
        cpu = dk_int(cs, "usage_usec") * 1000;
        int ok = cs != NULL;
        cJSON_Delete(cs);
        if (!ok || read_u64(p.memory, "memory.current", &usage) < 0)
            return NULL;
        read_u64(p.memory, "memory.max", &limit);
    } else if (read_u64(p.cpu, "cpuacct.usage", &cpu) < 0 ||
               read_u64(p.memory, "memory.usage_in_bytes", &usage) < 0) {
        return NULL;
    } else {
        read_u64(p.memory, "memory.limit_in_bytes", &limit);
    }
    cJSON *mstat = read_kv(p.memory, "memory.stat", mem_keys);
    if (p.pids[0])
        read_u64(p.pids, "pids.current", &pids);
    cJSON *s = cJSON_CreateObject();
    if (!s) {
        cJSON_Delete(mstat);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char read[64];
    snprintf(read, sizeof(read), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
    cJSON_AddStringToObject(s, "read", read);
    cJSON *cs = cJSON_AddObjectToObject(s, "cpu_stats");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(cs, "cpu_usage"), "total_usage", (double)cpu);
    cJSON *ms = cJSON_AddObjectToObject(s, "memory_stats");
    cJSON_AddNumberToObject(ms, "usage", (double)usage);
    if (limit > 0 && limit < (1LL << 62))
        cJSON_AddNumberToObject(ms, "limit", (double)limit);
    if (mstat)
        cJSON_AddItemToObject(ms, "stats", mstat);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(s, "pids_stats"), "current", (double)pids);
    if (with_network)
        add_networks(s, pid);
    return s;
}

uint64_t dk_proc_start(int pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_small(path, buf, sizeof(buf)) < 0)
        return 0;
    /* "pid (comm) state ppid ...": the comm may hold anything, its end is
     * the last ')'; the start time is the 22nd field, the 20th after it */
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}
