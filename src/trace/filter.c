/* filter.c - what the trace keeps (see filter.h). */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "trace/filter.h"

#define MAX_PATTERN 256

static const char *const level_names[] = {"off", "summary", "full"};

const char *trace_level_to_str(enum trace_level l)
{
    return (unsigned)l < 3 ? level_names[l] : "?";
}

void trace_filter_init(struct trace_filter *f)
{
    *f = (struct trace_filter){.level = TRACE_SUMMARY, .max_body = TRACE_DEFAULT_MAX_BODY};
}

void trace_filter_free(struct trace_filter *f)
{
    for (size_t i = 0; i < f->nmethods; i++)
        free(f->methods[i]);
    for (size_t i = 0; i < f->npods; i++)
        free(f->pods[i]);
    f->nmethods = f->npods = 0;
}

static int copy_list(char **dst, char *const *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(dst[i] = strdup(src[i])))
            return -1;
    return 0;
}

int trace_filter_copy(struct trace_filter *dst, const struct trace_filter *src)
{
    *dst = *src;
    dst->nmethods = dst->npods = 0;
    memset(dst->methods, 0, sizeof(dst->methods));
    memset(dst->pods, 0, sizeof(dst->pods));
    dst->nmethods = src->nmethods;
    dst->npods = src->npods;
    if (copy_list(dst->methods, src->methods, src->nmethods) < 0 ||
        copy_list(dst->pods, src->pods, src->npods) < 0) {
        for (size_t i = 0; i < dst->nmethods; i++)
            free(dst->methods[i]);
        for (size_t i = 0; i < dst->npods; i++)
            free(dst->pods[i]);
        dst->nmethods = dst->npods = 0;
        return -1;
    }
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Adds the comma-separated patterns of value to a list. */
static int add_patterns(char **list, size_t *n, size_t max, const char *what, const char *value,
                        char *err, size_t errlen)
{
    const char *p = value;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= MAX_PATTERN || (len == 1 && *p == '!'))
            return fail(err, errlen, "%s: empty or over-long pattern in \"%.60s\"", what, value);
        if (*n == max)
            return fail(err, errlen, "%s: at most %zu patterns", what, max);
        if (!(list[*n] = strndup(p, len)))
            return fail(err, errlen, "out of memory");
        ++*n;
        p += len + (p[len] == ',');
    }
    return 0;
}

static int parse_flag(const char *value, int *out)
{
    if (!value || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
        *out = 1;
    else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_count(const char *value, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value ? value : "", &end, 10);
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    if (errno || !value || end == value || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int set_level(struct trace_filter *f, const char *value, char *err, size_t errlen)
{
    for (unsigned i = 0; i < 3; i++) {
        if (value && strcmp(value, level_names[i]) == 0) {
            f->level = (enum trace_level)i;
            return 0;
        }
    }
    return fail(err, errlen, "level %s: want off, summary or full", value ? value : "(none)");
}

static int set_flag(struct trace_filter *f, const char *name, const char *value, char *err,
                    size_t errlen)
{
    int v;
    if (parse_flag(value, &v) < 0)
        return fail(err, errlen, "%s %s: want true or false", name, value);
    if (strcmp(name, "errors-only") == 0)
        f->errors_only = (unsigned)v;
    else if (strcmp(name, "mutating-only") == 0)
        f->mutating_only = (unsigned)v;
    else if (strcmp(name, "redact-env") == 0)
        f->redact_env = (unsigned)v;
    else
        f->subcalls = (unsigned)v;
    return 0;
}

int trace_filter_set(struct trace_filter *f, const char *name, const char *value, char *err,
                     size_t errlen)
{
    unsigned long long v;
    if (strcmp(name, "level") == 0)
        return set_level(f, value, err, errlen);
    if (strcmp(name, "methods") == 0)
        return add_patterns(f->methods, &f->nmethods, TRACE_MAX_PATTERNS, name, value ? value : "",
                            err, errlen);
    if (strcmp(name, "pod") == 0)
        return add_patterns(f->pods, &f->npods, TRACE_MAX_PODS, name, value ? value : "", err,
                            errlen);
    if (strcmp(name, "errors-only") == 0 || strcmp(name, "mutating-only") == 0 ||
        strcmp(name, "redact-env") == 0 || strcmp(name, "subcalls") == 0)
        return set_flag(f, name, value, err, errlen);
    if (strcmp(name, "sample") == 0) {
        if (parse_count(value, 1, 1000000, &v) < 0)
            return fail(err, errlen, "sample %s: want 1..1000000", value ? value : "");
        f->sample = (unsigned)v;
        return 0;
    }
    if (strcmp(name, "max-body") == 0) {
        if (parse_count(value, 256, 16 << 20, &v) < 0)
            return fail(err, errlen, "max-body %s: want 256..16M bytes", value ? value : "");
        f->max_body = (size_t)v;
        return 0;
    }
    return fail(err, errlen, "unknown trace setting %s", name);
}

/* ---- the JSON file ---------------------------------------------------------- */

/* A JSON value as the option's text: strings as they are, numbers, true
 * and false; arrays of strings one by one (for the lists). */
static int set_json(struct trace_filter *f, const cJSON *v, char *err, size_t errlen)
{
    char num[32];
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e))
                return fail(err, errlen, "%s: want strings", v->string);
            if (trace_filter_set(f, v->string, e->valuestring, err, errlen) < 0)
                return -1;
        }
        return 0;
    }
    if (cJSON_IsString(v))
        return trace_filter_set(f, v->string, v->valuestring, err, errlen);
    if (cJSON_IsBool(v))
        return trace_filter_set(f, v->string, cJSON_IsTrue(v) ? "true" : "false", err, errlen);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e12) {
        snprintf(num, sizeof(num), "%.0f", v->valuedouble);
        return trace_filter_set(f, v->string, num, err, errlen);
    }
    return fail(err, errlen, "%s: unexpected value", v->string);
}

static void clear_list(char **list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free(list[i]);
    *n = 0;
}

int trace_filter_load_json(struct trace_filter *f, const char *text, size_t n, char *err,
                           size_t errlen)
{
    struct trace_filter nf;
    cJSON *root = cJSON_ParseWithLength(text, n);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, errlen, "not a JSON object");
    }
    if (trace_filter_copy(&nf, f) < 0) {
        cJSON_Delete(root);
        return fail(err, errlen, "out of memory");
    }
    /* lists in the file replace the options' lists */
    if (cJSON_GetObjectItemCaseSensitive(root, "methods"))
        clear_list(nf.methods, &nf.nmethods);
    if (cJSON_GetObjectItemCaseSensitive(root, "pod"))
        clear_list(nf.pods, &nf.npods);
    int rc = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
        if ((rc = set_json(&nf, v, err, errlen)) < 0)
            break;
    cJSON_Delete(root);
    if (rc < 0) {
        trace_filter_free(&nf);
        return -1;
    }
    trace_filter_free(f);
    *f = nf;
    return 0;
}

void trace_filter_describe(const struct trace_filter *f, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "level=%s", trace_level_to_str(f->level));
    for (size_t i = 0; i < f->nmethods && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : " methods=", f->methods[i]);
    for (size_t i = 0; i < f->npods && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : " pod=", f->pods[i]);
    if (n < cap)
        snprintf(out + n, cap - n, "%s%s%s%s sample=%u max_body=%zu",
                 f->errors_only ? " errors_only" : "", f->mutating_only ? " mutating_only" : "",
                 f->redact_env ? " redact_env" : "", f->subcalls ? " subcalls" : "",
                 f->sample ? f->sample : 1, f->max_body);
}

/* ---- methods -------------------------------------------------------------- */

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int trace_method_is_polling(const struct crisp_method *m)
{
    const char *n = m->name;
    return starts(n, "List") || ends(n, "Status") || ends(n, "Stats") ||
           strcmp(n, "Version") == 0 || strcmp(n, "ImageFsInfo") == 0;
}

int trace_method_is_mutating(const struct crisp_method *m)
{
    const char *n = m->name;
    return !(trace_method_is_polling(m) || starts(n, "Stream") ||
             strcmp(n, "RuntimeConfig") == 0 || strcmp(n, "GetContainerEvents") == 0);
}

static int pattern_matches(const char *pat, const struct crisp_method *m)
{
    char full[128];
    snprintf(full, sizeof(full), "%s/%s", crisp_service_to_str(m->svc), m->name);
    return fnmatch(pat, m->name, 0) == 0 || fnmatch(pat, full, 0) == 0;
}

int trace_filter_method(const struct trace_filter *f, const struct crisp_method *m)
{
    int includes = 0, included = 0;
    if (f->mutating_only && !trace_method_is_mutating(m))
        return 0;
    for (size_t i = 0; i < f->nmethods; i++) {
        const char *p = f->methods[i];
        if (*p == '!') {
            if (pattern_matches(p + 1, m))
                return 0;
            continue;
        }
        includes = 1;
        included |= pattern_matches(p, m);
    }
    return !includes || included;
}

int trace_filter_pod(const struct trace_filter *f, const char *ns, const char *name,
                     const char *uid)
{
    char full[512];
    snprintf(full, sizeof(full), "%s/%s", ns ? ns : "", name ? name : "");
    for (size_t i = 0; i < f->npods; i++) {
        const char *p = f->pods[i];
        if (starts(p, "uid:")) {
            if (uid && *uid && fnmatch(p + 4, uid, 0) == 0)
                return 1;
        } else if ((ns || name) && fnmatch(p, full, 0) == 0) {
            return 1;
        }
    }
    return 0;
}
