/* diff.c - recorded vs replayed answers (see diff.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/diff.h"

#define MIN_ID 12
#define PATH_MAX_LEN 512
#define REDACTED "[redacted]"

struct pair {
    char *rec, *rep;
};

struct idmap {
    struct pair *v;
    size_t n, cap;
};

struct idmap *idmap_new(void)
{
    return calloc(1, sizeof(struct idmap));
}

void idmap_free(struct idmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].rec);
        free(m->v[i].rep);
    }
    free(m->v);
    free(m);
}

size_t idmap_count(const struct idmap *m)
{
    return m->n;
}

static const char *lookup(const struct idmap *m, const char *s, size_t n, int by_rep)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *k = by_rep ? m->v[i].rep : m->v[i].rec;
        if (strlen(k) == n && memcmp(k, s, n) == 0)
            return by_rep ? m->v[i].rec : m->v[i].rep;
    }
    return NULL;
}

static int learn(struct idmap *m, const char *rec, size_t rn, const char *rep, size_t pn)
{
    if (m->n == DIFF_MAX_IDS)
        return -1;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        struct pair *v = realloc(m->v, cap * sizeof(*v));
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    char *a = strndup(rec, rn), *b = strndup(rep, pn);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    m->v[m->n++] = (struct pair){a, b};
    return 0;
}

static size_t hex_run(const char *s)
{
    size_t n = 0;
    while ((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))
        n++;
    return n;
}

/* Equal with IDs mapped. learn 0: a dry run (unmapped pairs pass, none
 * kept); 1: new pairs are kept when the whole strings match. */
static int str_eq(struct idmap *m, const char *a, const char *b, int do_learn)
{
    struct pair fresh[16];
    size_t nfresh = 0;
    if (strcmp(a, b) == 0 || strcmp(a, REDACTED) == 0)
        return 1;
    while (*a && *b) {
        size_t ra = hex_run(a), rb = hex_run(b);
        if (ra >= MIN_ID && rb >= MIN_ID) {
            const char *to = lookup(m, a, ra, 0);
            if (to ? strlen(to) != rb || memcmp(to, b, rb) != 0 : lookup(m, b, rb, 1) != NULL)
                return 0;
            if (!to && nfresh < 16)
                fresh[nfresh++] = (struct pair){(char *)a, (char *)b};
            a += ra;
            b += rb;
            continue;
        }
        if (*a != *b)
            return 0;
        a++, b++;
    }
    if (*a || *b)
        return 0;
    for (size_t i = 0; do_learn && i < nfresh; i++)
        if (!lookup(m, fresh[i].rec, hex_run(fresh[i].rec), 0))
            learn(m, fresh[i].rec, hex_run(fresh[i].rec), fresh[i].rep, hex_run(fresh[i].rep));
    return 1;
}

int idmap_str_equal(struct idmap *m, const char *rec, const char *rep)
{
    return str_eq(m, rec, rep, 1);
}

/* ---- rewriting requests ------------------------------------------------------- */

static char *rewrite_str(const struct idmap *m, const char *s)
{
    size_t n = strlen(s), cap = n + 1, o = 0;
    char *out = malloc(cap);
    while (out && *s) {
        size_t r = hex_run(s);
        const char *to = r >= MIN_ID ? lookup(m, s, r, 0) : NULL;
        const char *piece = to ? to : s;
        size_t len = to ? strlen(to) : r ? r : 1;
        if (o + len + 1 > cap) {
            char *p = realloc(out, (cap = (o + len + 1) * 2));
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
        }
        memcpy(out + o, piece, len);
        o += len;
        s += r ? r : 1;
    }
    if (out)
        out[o] = 0;
    return out;
}

int idmap_rewrite(struct idmap *m, cJSON *t)
{
    if (cJSON_IsString(t)) {
        char *s = rewrite_str(m, t->valuestring);
        if (!s)
            return -1;
        free(t->valuestring);
        t->valuestring = s;
        return 0;
    }
    cJSON *c;
    cJSON_ArrayForEach(c, t)
        if (idmap_rewrite(m, c) < 0)
            return -1;
    return 0;
}

/* ---- trees ----------------------------------------------------------------------- */

struct dctx {
    struct idmap *m;
    unsigned count, max;
    diff_fn fn;
    void *ud;
    int dry;          /* only answer "equal?", report nothing, learn nothing */
};

static int is_volatile(const char *key)
{
    static const char *const keys[] = {
        "timestamp", "ip", "additionalIps", "pid", "info", "usageCoreNanoSeconds",
        "usageNanoCores", "workingSetBytes", "availableBytes", "usageBytes", "rssBytes",
        "pageFaults", "majorPageFaults", "usedBytes", "inodesUsed", "rxBytes", "rxErrors",
        "txBytes", "txErrors", "swapAvailableBytes", "swapUsageBytes", NULL};
    size_t n = key ? strlen(key) : 0;
    if (n > 2 && strcmp(key + n - 2, "At") == 0)
        return 1;
    for (const char *const *k = keys; key && *k; k++)
        if (strcmp(key, *k) == 0)
            return 1;
    return 0;
}

static int cmp(struct dctx *d, const cJSON *a, const cJSON *b, const char *path);

static int report(struct dctx *d, const char *path, const char *fmt, const char *x, const char *y)
{
    char what[600];
    if (d->dry)
        return 0;
    if (d->count < d->max) {
        snprintf(what, sizeof(what), fmt, x, y);
        d->fn(d->ud, path[0] ? path : ".", what);
    }
    d->count++;
    return 0;
}

/* path.key or path[index]; a path too long for the buffer ends in "…". */
static void child_path(char *out, const char *path, const char *key, int index)
{
    int n = key ? snprintf(out, PATH_MAX_LEN, "%s.%s", path, key)
                : snprintf(out, PATH_MAX_LEN, "%s[%d]", path, index);
    if (n >= PATH_MAX_LEN)
        memcpy(out + PATH_MAX_LEN - 4, "\xe2\x80\xa6", 4);
}

/* A short text of a value for a report. */
static void brief(const cJSON *v, char *out, size_t cap)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(out, cap, "%.120s%s", s ? s : "(none)", s && strlen(s) > 120 ? "…" : "");
    free(s);
}

/* A map whose values change from run to run: the same keys. */
static int cmp_keys_only(struct dctx *d, const cJSON *a, const cJSON *b, const char *path)
{
    char p[PATH_MAX_LEN];
    int eq = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, a) {
        child_path(p, path, c->string, 0);
        if (!cJSON_GetObjectItemCaseSensitive(b, c->string))
            eq = report(d, p, "only in the recording%s%s", "", "");
    }
    cJSON_ArrayForEach(c, b) {
        child_path(p, path, c->string, 0);
        if (!cJSON_GetObjectItemCaseSensitive(a, c->string))
            eq = report(d, p, "only in the replay%s%s", "", "");
    }
    return eq;
}

static int cmp_objects(struct dctx *d, const cJSON *a, const cJSON *b, const char *path)
{
    char p[PATH_MAX_LEN], x[160];
    int eq = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, a) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, c->string);
        child_path(p, path, c->string, 0);
        if (!o) {
            brief(c, x, sizeof(x));
            eq = report(d, p, "only in the recording: %s%s", x, "");
        } else if (is_volatile(c->string)) {
            if (cJSON_IsObject(c) && strcmp(c->string, "info") == 0)
                eq &= cmp_keys_only(d, c, o, p);
        } else {
            eq &= cmp(d, c, o, p);
        }
        if (!eq && d->dry)
            return 0;
    }
    cJSON_ArrayForEach(c, b) {
        if (!cJSON_GetObjectItemCaseSensitive(a, c->string)) {
            child_path(p, path, c->string, 0);
            brief(c, x, sizeof(x));
            eq = report(d, p, "only in the replay: %s%s", x, "");
        }
    }
    return eq;
}

/* Pairs each recorded element with an equal replayed one (any order),
 * then the rest in order; what is left over is reported. */
static int cmp_arrays(struct dctx *d, const cJSON *a, const cJSON *b, const char *path)
{
    int na = cJSON_GetArraySize(a), nb = cJSON_GetArraySize(b), eq = 1;
    char p[PATH_MAX_LEN], x[160];
    if (d->dry && na != nb)
        return 0;
    unsigned char *used = calloc((size_t)nb + 1, 1);
    int *pair = malloc(((size_t)na + 1) * sizeof(int));
    if (!used || !pair) {
        free(used);
        free(pair);
        return report(d, path, "out of memory comparing%s%s", "", "");
    }
    struct dctx dry = *d;
    dry.dry = 1;
    for (int i = 0; i < na; i++) {
        pair[i] = -1;
        for (int j = 0; j < nb && pair[i] < 0; j++)
            if (!used[j] && cmp(&dry, cJSON_GetArrayItem(a, i), cJSON_GetArrayItem(b, j), path))
                used[j] = 1, pair[i] = j;
    }
    for (int i = 0, j = 0; i < na; i++) {
        while (pair[i] < 0 && j < nb && used[j])
            j++;
        if (pair[i] < 0 && j < nb)
            used[j] = 1, pair[i] = j;
        child_path(p, path, NULL, i);
        if (pair[i] >= 0) {
            eq &= cmp(d, cJSON_GetArrayItem(a, i), cJSON_GetArrayItem(b, pair[i]), p);
        } else {
            brief(cJSON_GetArrayItem(a, i), x, sizeof(x));
            eq = report(d, p, "only in the recording: %s%s", x, "");
        }
    }
    for (int j = 0; j < nb; j++) {
        if (!used[j]) {
            child_path(p, path, NULL, j);
            brief(cJSON_GetArrayItem(b, j), x, sizeof(x));
            eq = report(d, p, "only in the replay: %s%s", x, "");
        }
    }
    free(used);
    free(pair);
    return eq;
}

static int cmp(struct dctx *d, const cJSON *a, const cJSON *b, const char *path)
{
    char x[160], y[160];
    if (d->count >= d->max && !d->dry)
        return 0;
    if (cJSON_IsString(a) && cJSON_IsString(b)) {
        if (str_eq(d->m, a->valuestring, b->valuestring, !d->dry))
            return 1;
    } else if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        return cmp_objects(d, a, b, path);
    } else if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        return cmp_arrays(d, a, b, path);
    } else if (cJSON_IsString(a) && strcmp(a->valuestring, REDACTED) == 0) {
        return 1;
    } else if (cJSON_Compare(a, b, 1)) {
        return 1;
    }
    brief(a, x, sizeof(x));
    brief(b, y, sizeof(y));
    return report(d, path, "%s (recorded) != %s (replayed)", x, y);
}

unsigned json_diff(struct idmap *m, const cJSON *rec, const cJSON *rep, unsigned max, diff_fn fn,
                   void *ud)
{
    struct dctx d = {m, 0, max, fn, ud, 0};
    cmp(&d, rec, rep, "");
    return d.count;
}
