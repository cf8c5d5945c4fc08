/* tstats.c - crispctl stats TRACE...: per-method counts, errors and latency
 * percentiles of the calls a trace recorded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/table.h"
#include "ctl/trace_read.h"

#define LINE_MAX_BYTES (256u << 20)
#define MAX_KEYS 256

struct mstats {
    char key[128];           /* Service/Method */
    int64_t *lat;            /* latencies (µs) */
    size_t n, cap;
    uint64_t errors, resp_bytes;
};

struct tstats {
    struct mstats m[MAX_KEYS];
    size_t nm;
    uint64_t calls, msgs, dropped, bad_lines;
    int64_t first_us, last_us;
};

static struct mstats *slot(struct tstats *s, const struct trace_rec *r)
{
    char key[128];
    snprintf(key, sizeof(key), "%s/%s", r->service ? r->service : "?", r->method ? r->method : "?");
    for (size_t i = 0; i < s->nm; i++)
        if (strcmp(s->m[i].key, key) == 0)
            return &s->m[i];
    if (s->nm == MAX_KEYS)
        return NULL;
    struct mstats *m = &s->m[s->nm++];
    snprintf(m->key, sizeof(m->key), "%s", key);
    return m;
}

static void add(struct tstats *s, const struct trace_rec *r)
{
    if (!s->first_us || r->wall_us < s->first_us)
        s->first_us = r->wall_us;
    if (r->wall_us > s->last_us)
        s->last_us = r->wall_us;
    if (r->kind == TREC_DROPPED) {
        s->dropped += r->count;
        return;
    }
    if (r->kind == TREC_MSG) {
        s->msgs++;
        return;
    }
    struct mstats *m = slot(s, r);
    s->calls++;
    if (!m)
        return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        int64_t *p = realloc(m->lat, cap * sizeof(*p));
        if (!p)
            return;
        m->lat = p;
        m->cap = cap;
    }
    m->lat[m->n++] = r->latency_us;
    m->errors += r->code != 0;
    m->resp_bytes += r->resp_bytes;
}

static int read_file(struct tstats *s, const char *path)
{
    struct trace_reader rd;
    struct trace_rec r;
    char *line, err[256];
    size_t n;
    int rc;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
    if (!f)
        return ctl_fail("cannot open %s", path);
    trace_reader_init(&rd, f, LINE_MAX_BYTES);
    while ((rc = trace_reader_next(&rd, &line, &n)) != 0) {
        if (rc < 0 || (n && trace_rec_parse(line, n, &r, err, sizeof(err)) < 0)) {
            s->bad_lines++;
            continue;
        }
        if (n) {
            add(s, &r);
            trace_rec_free(&r);
        }
    }
    trace_reader_free(&rd);
    if (f != stdin)
        fclose(f);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_count(const void *a, const void *b)
{
    const struct mstats *x = a, *y = b;
    return (y->n > x->n) - (y->n < x->n);
}

static int64_t pct(const struct mstats *m, double p)
{
    size_t i = (size_t)(p * (double)(m->n - 1) + 0.5);
    return m->lat[i < m->n ? i : m->n - 1];
}

static void ms(int64_t us, char *out, size_t cap)
{
    snprintf(out, cap, "%.2fms", (double)us / 1e3);
}

static void print_table(struct tstats *s)
{
    struct table t;
    char n[24], e[24], p50[24], p90[24], p99[24], mx[24], b[24];
    table_init(&t, 8);
    table_add(&t, "METHOD", "CALLS", "ERRORS", "P50", "P90", "P99", "MAX", "RESP BYTES/CALL");
    for (size_t i = 0; i < s->nm; i++) {
        struct mstats *m = &s->m[i];
        snprintf(n, sizeof(n), "%zu", m->n);
        snprintf(e, sizeof(e), "%llu", (unsigned long long)m->errors);
        ms(pct(m, 0.5), p50, sizeof(p50));
        ms(pct(m, 0.9), p90, sizeof(p90));
        ms(pct(m, 0.99), p99, sizeof(p99));
        ms(m->lat[m->n - 1], mx, sizeof(mx));
        fmt_bytes(m->resp_bytes / m->n, b, sizeof(b));
        table_add(&t, m->key, n, e, p50, p90, p99, mx, b);
    }
    table_print(&t, stdout);
    table_free(&t);
    printf("\n%llu calls, %llu streamed messages over %.1fs; %llu records dropped; %llu unreadable lines\n",
           (unsigned long long)s->calls, (unsigned long long)s->msgs,
           (double)(s->last_us - s->first_us) / 1e6, (unsigned long long)s->dropped,
           (unsigned long long)s->bad_lines);
}

static void print_json(struct tstats *s)
{
    printf("{\"calls\":%llu,\"msgs\":%llu,\"dropped\":%llu,\"bad_lines\":%llu,\"methods\":[",
           (unsigned long long)s->calls, (unsigned long long)s->msgs,
           (unsigned long long)s->dropped, (unsigned long long)s->bad_lines);
    for (size_t i = 0; i < s->nm; i++) {
        struct mstats *m = &s->m[i];
        printf("%s{\"method\":\"%s\",\"calls\":%zu,\"errors\":%llu,\"p50_us\":%lld,\"p90_us\":%lld,"
               "\"p99_us\":%lld,\"max_us\":%lld,\"resp_bytes\":%llu}", i ? "," : "", m->key, m->n,
               (unsigned long long)m->errors, (long long)pct(m, 0.5), (long long)pct(m, 0.9),
               (long long)pct(m, 0.99), (long long)m->lat[m->n - 1],
               (unsigned long long)m->resp_bytes);
    }
    printf("]}\n");
}

int ctl_cmd_trace_stats(int argc, char **argv)
{
    struct tstats *s = calloc(1, sizeof(*s));
    int rc = 0;
    if (!s)
        return ctl_fail("out of memory");
    for (int i = 1; i < argc; i++)
        rc |= read_file(s, argv[i]);
    for (size_t i = 0; i < s->nm; i++)
        qsort(s->m[i].lat, s->m[i].n, sizeof(int64_t), cmp_i64);
    /* a method whose latencies could not be kept has no row */
    size_t keep = 0;
    for (size_t i = 0; i < s->nm; i++)
        if (s->m[i].n)
            s->m[keep++] = s->m[i];
    s->nm = keep;
    qsort(s->m, s->nm, sizeof(s->m[0]), cmp_count);
    if (strcmp(ctl.output, "json") == 0)
        print_json(s);
    else
        print_table(s);
    for (size_t i = 0; i < s->nm; i++)
        free(s->m[i].lat);
    free(s);
    return rc;
}
