/* facts.c - what the Docker backend's view knows of each container by its
 * ID beyond the engine's listing (codec.h): its PID with the process's
 * start time, its writable layer's size with when it was measured, and its
 * last status answer.
 * A hash of chained entries; no I/O. */
#include <stdlib.h>
#include <string.h>

#include "docker/codec.h"

void dk_cgroup_clear(struct dk_cgroup *cg)
{
    free(cg->cpu);
    *cg = (struct dk_cgroup){0};
}

static void forget_pid(struct dk_fact *f)
{
    f->pid = 0;
    f->pid_start = 0;
    dk_cgroup_clear(&f->cg);
}

void dk_fact_forget_pid(struct dk_fact *f)
{
    forget_pid(f);
}

void dk_fact_forget_status(struct dk_facts *t, struct dk_fact *f)
{
    t->status_bytes -= f->status_len;
    free(f->status);
    f->status = NULL;
    f->status_len = 0;
}

int dk_fact_keep_status(struct dk_facts *t, struct dk_fact *f, uint8_t *status, size_t len, int rpc,
                        int64_t ms)
{
    dk_fact_forget_status(t, f);
    if (len > DK_STATUS_BYTES_MAX - t->status_bytes) {
        free(status);
        return -1;
    }
    f->status = status;
    f->status_len = len;
    f->status_rpc = rpc;
    f->status_ms = ms;
    t->status_bytes += len;
    return 0;
}

static void fact_free(struct dk_facts *t, struct dk_fact *f)
{
    dk_fact_forget_status(t, f);
    dk_cgroup_clear(&f->cg);
    free(f);
    t->n--;
}

static unsigned bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % DK_FACTS_BUCKETS;
}

static int id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n < sizeof(((struct dk_fact *)0)->id);
}

struct dk_fact *dk_fact_get(struct dk_facts *t, const char *id)
{
    if (!id_ok(id))
        return NULL;
    for (struct dk_fact *f = t->bucket[bucket_of(id)]; f; f = f->next)
        if (strcmp(f->id, id) == 0)
            return f;
    return NULL;
}

struct dk_fact *dk_fact_add(struct dk_facts *t, const char *id)
{
    struct dk_fact *f = dk_fact_get(t, id);
    if (f || !id_ok(id) || t->n >= DK_FACTS_MAX)
        return f;
    f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    strcpy(f->id, id);
    f->size_ns = -1;
    unsigned b = bucket_of(id);
    f->next = t->bucket[b];
    t->bucket[b] = f;
    t->n++;
    return f;
}

void dk_fact_del(struct dk_facts *t, const char *id)
{
    if (!id_ok(id))
        return;
    for (struct dk_fact **pp = &t->bucket[bucket_of(id)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct dk_fact *f = *pp;
            *pp = f->next;
            fact_free(t, f);
            return;
        }
    }
}

void dk_facts_forget_pids(struct dk_facts *t)
{
    for (unsigned b = 0; b < DK_FACTS_BUCKETS; b++)
        for (struct dk_fact *f = t->bucket[b]; f; f = f->next)
            forget_pid(f);
}

void dk_facts_forget_statuses(struct dk_facts *t)
{
    for (unsigned b = 0; b < DK_FACTS_BUCKETS; b++)
        for (struct dk_fact *f = t->bucket[b]; f; f = f->next)
            dk_fact_forget_status(t, f);
}

void dk_facts_clear(struct dk_facts *t)
{
    for (unsigned b = 0; b < DK_FACTS_BUCKETS; b++) {
        struct dk_fact *f = t->bucket[b];
        while (f) {
            struct dk_fact *next = f->next;
            fact_free(t, f);
            f = next;
        }
        t->bucket[b] = NULL;
    }
    t->n = 0;
}
