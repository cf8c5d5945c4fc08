/* Unit tests for crispctl's trace reader (src/ctl/trace_read.c) and the
 * comparison of recorded and replayed answers (src/ctl/diff.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/diff.h"
#include "ctl/trace_read.h"
#include "unit.h"

struct ctl_opts ctl = {.max_msg = 1 << 20, .output = "table"};

static void test_parse(void)
{
    struct trace_rec r;
    char err[128];
    const char *line = "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"call\",\"id\":9,\"pid\":3,"
                       "\"method\":\"Version\",\"service\":\"RuntimeService\",\"code\":5,"
                       "\"status\":\"NOT_FOUND\",\"latency_us\":12,\"request\":{\"a\":1}}";
    CHECK(trace_rec_parse(line, strlen(line), &r, err, sizeof(err)) == 0);
    CHECK(r.kind == TREC_CALL && r.id == 9 && r.pid == 3 && r.uid == -1 && r.code == 5);
    CHECK(r.wall_us == 1735787045000006LL && r.latency_us == 12 && r.backend_us == -1);
    CHECK(strcmp(r.method, "Version") == 0 && r.request && !r.response);
    trace_rec_free(&r);
    const char *bad[] = {"[]", "{\"kind\":\"call\"}", "{\"ts\":\"x\",\"kind\":\"call\"}",
                         "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"what\"}",
                         "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"call\",\"id\":-1}",
                         "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"call\",\"id\":1.5}",
                         "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"call\",\"method\":3}",
                         "{\"ts\":\"2025-01-02T03:04:05.000006Z\",\"kind\":\"call\",\"request\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(trace_rec_parse(bad[i], strlen(bad[i]), &r, err, sizeof(err)) < 0);
        CHECK(r.root == NULL);
    }
}

static void test_reader(void)
{
    char data[4096];
    snprintf(data, sizeof(data), "a\n%0300d\nb\n\nc", 7);
    FILE *f = fmemopen(data, strlen(data), "r");
    struct trace_reader rd;
    char *line;
    size_t n;
    trace_reader_init(&rd, f, 100);
    CHECK(trace_reader_next(&rd, &line, &n) == 1 && strcmp(line, "a") == 0);
    CHECK(trace_reader_next(&rd, &line, &n) == -1 && n == 300); /* over the cap: skipped */
    CHECK(trace_reader_next(&rd, &line, &n) == 1 && strcmp(line, "b") == 0);
    CHECK(trace_reader_next(&rd, &line, &n) == 1 && n == 0);
    CHECK(trace_reader_next(&rd, &line, &n) == 0); /* "c" has no newline yet */
    trace_reader_free(&rd);
    fclose(f);
}

static unsigned ndiffs;
static char last[512];

static void on_diff(void *ud, const char *path, const char *what)
{
    (void)ud;
    ndiffs++;
    snprintf(last, sizeof(last), "%s: %s", path, what);
}

static unsigned diff(struct idmap *m, const char *a, const char *b)
{
    cJSON *x = cJSON_Parse(a), *y = cJSON_Parse(b);
    ndiffs = 0;
    last[0] = 0;
    unsigned n = json_diff(m, x, y, 10, on_diff, NULL);
    CHECK(n == ndiffs);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return n;
}

static void test_diff(void)
{
    struct idmap *m = idmap_new();
    const char *rec_id = "aaaaaaaaaaaa1111", *rep_id = "bbbbbbbbbbbb2222";
    char a[256], b[256];
    snprintf(a, sizeof(a), "{\"podSandboxId\":\"%s\"}", rec_id);
    snprintf(b, sizeof(b), "{\"podSandboxId\":\"%s\"}", rep_id);
    CHECK(diff(m, a, b) == 0 && idmap_count(m) == 1); /* learned */
    /* the same recorded ID must now meet the same replayed one */
    snprintf(b, sizeof(b), "{\"podSandboxId\":\"%s\"}", "cccccccccccc3333");
    CHECK(diff(m, a, b) == 1 && strstr(last, ".podSandboxId"));
    /* IDs inside strings, timestamps and IPs aside, lists in any order */
    snprintf(a, sizeof(a), "{\"items\":[{\"id\":\"x\",\"createdAt\":\"1\"},{\"id\":\"/p/%s/log\","
             "\"ip\":\"10.0.0.1\"}]}", rec_id);
    snprintf(b, sizeof(b), "{\"items\":[{\"id\":\"/p/%s/log\",\"ip\":\"10.0.0.9\"},{\"id\":\"x\","
             "\"createdAt\":\"2\"}]}", rep_id);
    CHECK(diff(m, a, b) == 0);
    CHECK(diff(m, "{\"runtimeName\":\"containerd\"}", "{\"runtimeName\":\"docker\"}") == 1);
    CHECK(strstr(last, ".runtimeName: \"containerd\" (recorded) != \"docker\" (replayed)"));
    CHECK(diff(m, "{\"a\":1}", "{\"b\":1}") == 2);
    CHECK(diff(m, "{\"a\":[1,2]}", "{\"a\":[2]}") == 1 && strstr(last, "only in the recording"));
    CHECK(diff(m, "{\"info\":{\"k\":\"1\"}}", "{\"info\":{\"k\":\"2\"}}") == 0);
    CHECK(diff(m, "{\"info\":{\"k\":\"1\"}}", "{\"info\":{\"j\":\"1\"}}") == 2);
    CHECK(diff(m, "{\"password\":\"[redacted]\"}", "{\"password\":\"x\"}") == 0);
    /* a request rewritten with the replayed IDs */
    snprintf(a, sizeof(a), "{\"containerId\":\"%s\",\"cmd\":[\"ls\",\"/x/%s\"]}", rec_id, rec_id);
    cJSON *req = cJSON_Parse(a);
    CHECK(idmap_rewrite(m, req) == 0);
    char *s = cJSON_PrintUnformatted(req);
    snprintf(b, sizeof(b), "{\"containerId\":\"%s\",\"cmd\":[\"ls\",\"/x/%s\"]}", rep_id, rep_id);
    CHECK(s && strcmp(s, b) == 0);
    free(s);
    cJSON_Delete(req);
    idmap_free(m);
}

int main(void)
{
    test_parse();
    test_reader();
    test_diff();
    return unit_summary("test_ctl");
}
