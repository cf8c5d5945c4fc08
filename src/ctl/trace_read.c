/* trace_read.c - reading crisp's trace files (see trace_read.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/trace_read.h"

#define READ_CHUNK 65536

int trace_parse_time(const char *ts, int64_t *wall_us)
{
    struct tm tm = {0};
    int us = 0, used = 0;
    if (!ts || sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &us, &used) != 7 ||
        strcmp(ts + used, "Z") != 0 || us < 0 || tm.tm_mon < 1 || tm.tm_mon > 12)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *wall_us = (int64_t)t * 1000000 + us;
    return 0;
}

struct walk {
    const cJSON *root;
    char *err;
    size_t errlen;
    int bad;
};

static const cJSON *item(struct walk *w, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(w->root, key);
}

static const char *str(struct walk *w, const char *key)
{
    const cJSON *v = item(w, key);
    if (!v)
        return NULL;
    if (!cJSON_IsString(v)) {
        snprintf(w->err, w->errlen, "field %s: want a string", key);
        w->bad = 1;
        return NULL;
    }
    return v->valuestring;
}

/* A number within [lo, hi] (integers: no fraction), or def when absent. */
static double num(struct walk *w, const char *key, double lo, double hi, double def)
{
    const cJSON *v = item(w, key);
    if (!v)
        return def;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        snprintf(w->err, w->errlen, "field %s: want an integer in range", key);
        w->bad = 1;
        return def;
    }
    return v->valuedouble;
}

static const cJSON *object(struct walk *w, const char *key)
{
    const cJSON *v = item(w, key);
    if (v && !cJSON_IsObject(v)) {
        snprintf(w->err, w->errlen, "field %s: want an object", key);
        w->bad = 1;
        return NULL;
    }
    return v;
}

#define U64_MAX_EXACT 9007199254740992.0 /* 2^53: what a double holds exactly */

static void parse_fields(struct walk *w, struct trace_rec *r)
{
    r->id = (uint64_t)num(w, "id", 0, U64_MAX_EXACT, 0);
    r->parent = (uint64_t)num(w, "parent", 0, U64_MAX_EXACT, 0);
    r->conn = (uint64_t)num(w, "conn", 0, U64_MAX_EXACT, 0);
    r->stream = (int32_t)num(w, "stream", 0, 2147483647.0, 0);
    r->pid = (int)num(w, "pid", -1, 2147483647.0, -1);
    r->uid = (int)num(w, "uid", -1, 4294967295.0, -1);
    r->method = str(w, "method");
    r->service = str(w, "service");
    r->api = str(w, "api");
    r->backend = str(w, "backend");
    r->handler = str(w, "handler");
    r->status = str(w, "status");
    r->message = str(w, "message");
    r->code = (int)num(w, "code", 0, 1000, -1);
    r->latency_us = (int64_t)num(w, r->kind == TREC_MSG ? "at_us" : "latency_us", -1, U64_MAX_EXACT, 0);
    r->backend_us = (int64_t)num(w, "backend_us", -1, U64_MAX_EXACT, -1);
    r->req_bytes = (uint64_t)num(w, "req_bytes", 0, U64_MAX_EXACT, 0);
    r->resp_bytes = (uint64_t)num(w, "resp_bytes", 0, U64_MAX_EXACT, 0);
    r->bytes = (uint64_t)num(w, "bytes", 0, U64_MAX_EXACT, 0);
    r->count = (uint64_t)num(w, "count", 0, U64_MAX_EXACT, 0);
    r->msgs = (unsigned)num(w, "msgs", 0, 4294967295.0, 0);
    r->n = (unsigned)num(w, "n", 0, 4294967295.0, 0);
    r->request = object(w, "request");
    r->response = object(w, "response");
    r->cut = cJSON_IsTrue(item(w, "cut"));
}

static int parse_kind(struct walk *w, struct trace_rec *r)
{
    const char *k = str(w, "kind");
    if (k && strcmp(k, "call") == 0)
        r->kind = TREC_CALL;
    else if (k && strcmp(k, "msg") == 0)
        r->kind = TREC_MSG;
    else if (k && strcmp(k, "dropped") == 0)
        r->kind = TREC_DROPPED;
    else
        return snprintf(w->err, w->errlen, "no known \"kind\""), TREC_E_KIND;
    if (trace_parse_time(str(w, "ts"), &r->wall_us) < 0)
        return snprintf(w->err, w->errlen, "field ts: want an RFC 3339 UTC time"), TREC_E_FIELD;
    return 0;
}

int trace_rec_parse(const char *line, size_t n, struct trace_rec *r, char *err, size_t errlen)
{
    *r = (struct trace_rec){.pid = -1, .uid = -1, .code = -1, .backend_us = -1};
    cJSON *root = cJSON_ParseWithLength(line, n);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return snprintf(err, errlen, "not a JSON object"), TREC_E_JSON;
    }
    struct walk w = {root, err, errlen, 0};
    int rc = parse_kind(&w, r);
    if (rc == 0) {
        parse_fields(&w, r);
        rc = w.bad ? TREC_E_FIELD : 0;
    }
    if (rc < 0) {
        cJSON_Delete(root);
        *r = (struct trace_rec){.pid = -1, .uid = -1, .code = -1, .backend_us = -1};
        return rc;
    }
    r->root = root;
    return 0;
}

void trace_rec_free(struct trace_rec *r)
{
    cJSON_Delete(r->root);
    r->root = NULL;
}

/* ---- lines ----------------------------------------------------------------------- */

void trace_reader_init(struct trace_reader *rd, FILE *f, size_t max_line)
{
    *rd = (struct trace_reader){.f = f, .max = max_line};
}

void trace_reader_free(struct trace_reader *rd)
{
    free(rd->buf);
    rd->buf = NULL;
}

/* A newline in the buffer: the line is [0, nl); the rest moves up next time. */
static size_t pending_eol(const struct trace_reader *rd)
{
    const char *nl = rd->buf ? memchr(rd->buf, '\n', rd->len) : NULL;
    return nl ? (size_t)(nl - rd->buf) : SIZE_MAX;
}

static int fill(struct trace_reader *rd)
{
    if (rd->cap - rd->len < READ_CHUNK) {
        size_t want = rd->cap ? rd->cap * 2 : READ_CHUNK * 2;
        char *p = realloc(rd->buf, want + 1);
        if (!p)
            return -1;
        rd->buf = p;
        rd->cap = want;
    }
    size_t got = fread(rd->buf + rd->len, 1, rd->cap - rd->len, rd->f);
    rd->len += got;
    if (!got)
        clearerr(rd->f); /* at the end now; a follower tries again later */
    return got ? 1 : 0;
}

int trace_reader_next(struct trace_reader *rd, char **line, size_t *n)
{
    if (rd->consumed) {
        memmove(rd->buf, rd->buf + rd->consumed, rd->len - rd->consumed);
        rd->len -= rd->consumed;
        rd->consumed = 0;
    }
    for (;;) {
        size_t eol = pending_eol(rd);
        if (eol != SIZE_MAX) {
            rd->consumed = eol + 1;
            rd->lineno++;
            if (rd->skipping) { /* the end of a line over the cap */
                rd->skipping = 0;
                memmove(rd->buf, rd->buf + rd->consumed, rd->len - rd->consumed);
                rd->len -= rd->consumed;
                rd->consumed = 0;
                continue;
            }
            if (eol > rd->max) { /* a whole line over the cap, read at once */
                *n = eol;
                return -1;
            }
            rd->buf[eol] = 0;
            *line = rd->buf;
            *n = eol;
            return 1;
        }
        if (rd->len > rd->max) {
            *n = rd->len;
            rd->len = 0;
            if (!rd->skipping) {
                rd->skipping = 1;
                return -1;
            }
            continue;
        }
        int rc = fill(rd);
        if (rc <= 0)
            return rc;
    }
}
