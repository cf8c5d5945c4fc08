/* Unit tests for src/trace: the filter (options and JSON), the pod filter's
 * ID learning, a job formatted as a record (levels, cut, redaction), and
 * the metrics text. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/grpc.h"
#include "runtime_v1.pb-c.h"
#include "trace/filter.h"
#include "trace/job.h"
#include "trace/metrics_priv.h"
#include "trace/pods.h"
#include "trace/record.h"
#include "unit.h"

static const struct crisp_method *M(enum crisp_rpc id)
{
    return crisp_method_by_id(id);
}

static void test_filter_options(void)
{
    struct trace_filter f;
    char err[256];
    trace_filter_init(&f);
    CHECK(f.level == TRACE_SUMMARY && f.max_body == TRACE_DEFAULT_MAX_BODY);
    CHECK(trace_filter_set(&f, "level", "full", err, sizeof(err)) == 0 && f.level == TRACE_FULL);
    CHECK(trace_filter_set(&f, "level", "loud", err, sizeof(err)) < 0 && strstr(err, "loud"));
    CHECK(trace_filter_set(&f, "methods", "*Image*,Version", err, sizeof(err)) == 0);
    CHECK(trace_filter_set(&f, "methods", "!ImageFsInfo", err, sizeof(err)) == 0 && f.nmethods == 3);
    CHECK(trace_filter_method(&f, M(CRISP_RPC_VERSION)));
    CHECK(trace_filter_method(&f, M(CRISP_RPC_PULL_IMAGE)));
    CHECK(!trace_filter_method(&f, M(CRISP_RPC_IMAGE_FS_INFO)));
    CHECK(!trace_filter_method(&f, M(CRISP_RPC_LIST_CONTAINERS)));
    CHECK(trace_filter_set(&f, "methods", "a,,b", err, sizeof(err)) < 0);
    CHECK(trace_filter_set(&f, "errors-only", NULL, err, sizeof(err)) == 0 && f.errors_only);
    CHECK(trace_filter_set(&f, "sample", "0", err, sizeof(err)) < 0);
    CHECK(trace_filter_set(&f, "max-body", "1K", err, sizeof(err)) == 0 && f.max_body == 1024);
    CHECK(trace_filter_set(&f, "nope", "1", err, sizeof(err)) < 0);
    trace_filter_free(&f);
}

static void test_filter_classes(void)
{
    CHECK(trace_method_is_polling(M(CRISP_RPC_LIST_POD_SANDBOX)));
    CHECK(trace_method_is_polling(M(CRISP_RPC_CONTAINER_STATUS)));
    CHECK(trace_method_is_polling(M(CRISP_RPC_STATUS)));
    CHECK(!trace_method_is_polling(M(CRISP_RPC_EXEC_SYNC)));
    CHECK(trace_method_is_mutating(M(CRISP_RPC_RUN_POD_SANDBOX)));
    CHECK(trace_method_is_mutating(M(CRISP_RPC_PULL_IMAGE)));
    CHECK(trace_method_is_mutating(M(CRISP_RPC_EXEC_SYNC)));
    CHECK(!trace_method_is_mutating(M(CRISP_RPC_GET_CONTAINER_EVENTS)));
    CHECK(!trace_method_is_mutating(M(CRISP_RPC_VERSION)));
    CHECK(!trace_method_is_mutating(M(CRISP_RPC_STREAM_CONTAINERS)));
}

static void test_filter_json(void)
{
    struct trace_filter f;
    char err[256];
    trace_filter_init(&f);
    trace_filter_set(&f, "methods", "Version", err, sizeof(err));
    const char *j = "{\"level\":\"full\",\"methods\":[\"List*\",\"!ListImages\"],\"errors-only\":true,"
                    "\"sample\":10,\"pod\":\"default/web-*\",\"redact-env\":true}";
    CHECK(trace_filter_load_json(&f, j, strlen(j), err, sizeof(err)) == 0);
    CHECK(f.level == TRACE_FULL && f.nmethods == 2 && f.errors_only && f.sample == 10 &&
          f.npods == 1 && f.redact_env);
    CHECK(!trace_filter_method(&f, M(CRISP_RPC_VERSION)) && trace_filter_method(&f, M(CRISP_RPC_LIST_CONTAINERS)));
    const char *bad = "{\"level\":\"full\",\"sample\":\"x\"}";
    CHECK(trace_filter_load_json(&f, bad, strlen(bad), err, sizeof(err)) < 0 && f.sample == 10);
    CHECK(trace_filter_load_json(&f, "[1]", 3, err, sizeof(err)) < 0);
    CHECK(trace_filter_pod(&f, "default", "web-1", NULL) && !trace_filter_pod(&f, "kube", "web-1", NULL));
    char desc[256];
    trace_filter_describe(&f, desc, sizeof(desc));
    CHECK(strstr(desc, "level=full") && strstr(desc, "pod=default/web-*") && strstr(desc, "errors_only"));
    trace_filter_free(&f);
}

/* ---- pods ----------------------------------------------------------------------- */

static void test_pods(void)
{
    struct trace_filter f;
    char err[64];
    trace_filter_init(&f);
    trace_filter_set(&f, "pod", "ns1/web,uid:u-9", err, sizeof(err));
    struct trace_pods *p = trace_pods_new();
    Runtime__V1__RunPodSandboxRequest run = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
    Runtime__V1__RunPodSandboxResponse runr = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;
    md.namespace_ = "ns1";
    md.name = "web";
    cfg.metadata = &md;
    run.config = &cfg;
    runr.pod_sandbox_id = "pod-a";
    CHECK(trace_pods_match(p, &f, M(CRISP_RPC_RUN_POD_SANDBOX), &run.base, &runr.base, 1));
    Runtime__V1__StopPodSandboxRequest stop = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
    stop.pod_sandbox_id = "pod-a";
    CHECK(trace_pods_match(p, &f, M(CRISP_RPC_STOP_POD_SANDBOX), &stop.base, NULL, 1));
    stop.pod_sandbox_id = "pod-b";
    CHECK(!trace_pods_match(p, &f, M(CRISP_RPC_STOP_POD_SANDBOX), &stop.base, NULL, 1));
    /* a container status with the kubelet's labels teaches its ID */
    Runtime__V1__ContainerStatusRequest csr = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusResponse cs = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
    Runtime__V1__ContainerStatus st = RUNTIME__V1__CONTAINER_STATUS__INIT;
    Runtime__V1__ContainerStatus__LabelsEntry l = RUNTIME__V1__CONTAINER_STATUS__LABELS_ENTRY__INIT, *ls[] = {&l};
    l.key = "io.kubernetes.pod.uid";
    l.value = "u-9";
    st.id = "ctr-x";
    st.n_labels = 1;
    st.labels = ls;
    cs.status = &st;
    csr.container_id = "ctr-x";
    CHECK(trace_pods_match(p, &f, M(CRISP_RPC_CONTAINER_STATUS), &csr.base, &cs.base, 1));
    Runtime__V1__RemoveContainerRequest rm = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
    rm.container_id = "ctr-x";
    CHECK(trace_pods_known(p) == 2);
    CHECK(trace_pods_match(p, &f, M(CRISP_RPC_REMOVE_CONTAINER), &rm.base, NULL, 1));
    CHECK(trace_pods_known(p) == 1); /* forgotten once removed */
    CHECK(!trace_pods_match(p, &f, M(CRISP_RPC_REMOVE_CONTAINER), &rm.base, NULL, 1));
    trace_pods_free(p);
    trace_filter_free(&f);
}

/* ---- records ---------------------------------------------------------------------- */

static struct trace_cfg *cfg_new(enum trace_level level, size_t max_body)
{
    struct trace_cfg *c = calloc(1, sizeof(*c));
    trace_filter_init(&c->f);
    c->f.level = level;
    c->f.max_body = max_body;
    atomic_init(&c->refs, 1);
    return c;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*n + 1);
    protobuf_c_message_pack(m, p);
    return p;
}

static cJSON *format(const struct trace_job *j)
{
    struct jbuf out;
    jbuf_init(&out, 1 << 20);
    struct trace_pods *p = trace_pods_new();
    int rc = trace_record_format(&out, j, p);
    trace_pods_free(p);
    CHECK(rc == 1 && out.len && out.p[out.len - 1] == '\n');
    cJSON *r = rc == 1 ? cJSON_Parse(out.p) : NULL;
    jbuf_free(&out);
    return r;
}

static void test_record(void)
{
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__AuthConfig auth = RUNTIME__V1__AUTH_CONFIG__INIT;
    Runtime__V1__PullImageResponse resp = RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;
    img.image = "reg/x:1";
    auth.password = "hunter2";
    req.image = &img;
    req.auth = &auth;
    resp.image_ref = "sha256:0123";
    struct trace_job j = {.kind = TRACE_JOB_CALL, .method = M(CRISP_RPC_PULL_IMAGE), .id = 7,
                          .conn = 2, .stream = 3, .pid = 42, .uid = 0, .wall_us = 1700000000123456LL,
                          .latency_us = 900, .backend_us = 800, .code = GRPC_OK, .nmsgs = 1,
                          .backend = "cri:unix:///x", .bodies = 1, .has_resp = 1};
    j.req = pack(&req.base, &j.req_len);
    j.req_bytes = j.req_len;
    j.resp = pack(&resp.base, &j.resp_len);
    j.resp_declared = j.resp_len;
    j.cfg = cfg_new(TRACE_FULL, 65536);
    cJSON *r = format(&j);
    char *s = cJSON_PrintUnformatted(r);
    CHECK(s && strstr(s, "\"ts\":\"2023-11-14T22:13:20.123456Z\"") && strstr(s, "\"method\":\"PullImage\""));
    CHECK(s && strstr(s, "\"service\":\"ImageService\"") && strstr(s, "\"status\":\"OK\""));
    CHECK(s && strstr(s, "\"password\":\"[redacted]\"") && !strstr(s, "hunter2"));
    CHECK(s && strstr(s, "\"response\":{\"imageRef\":\"sha256:0123\"}") && !strstr(s, "\"cut\""));
    free(s);
    cJSON_Delete(r);
    /* summary: no bodies */
    j.cfg->f.level = TRACE_SUMMARY;
    r = format(&j);
    CHECK(r && !cJSON_GetObjectItem(r, "request") && cJSON_GetObjectItem(r, "latency_us")->valuedouble == 900);
    cJSON_Delete(r);
    /* a response over the capture cap: not carried, said cut */
    j.cfg->f.level = TRACE_FULL;
    free(j.resp);
    j.resp = NULL;
    j.resp_declared = 5000000;
    r = format(&j);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "cut")));
    CHECK(r && cJSON_GetObjectItem(cJSON_GetObjectItem(r, "response"), "@bytes")->valuedouble == 5000000);
    cJSON_Delete(r);
    free(j.req);
    trace_cfg_unref(j.cfg);
}

static void test_dropped(void)
{
    struct jbuf out;
    jbuf_init(&out, 4096);
    trace_record_dropped(&out, 12, 0);
    CHECK(strcmp(out.p, "{\"ts\":\"1970-01-01T00:00:00.000000Z\",\"kind\":\"dropped\",\"count\":12}\n") == 0);
    jbuf_free(&out);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void test_metrics(void)
{
    struct crisp_backend be = {.name = "cri:unix:///a\"b"};
    struct crisp_call call = {.method = M(CRISP_RPC_VERSION), .backend = &be, .code = GRPC_OK,
                              .start_us = 1000, .finished_us = 1300};
    metrics_count(&call);
    call.finished_us = 1000 + 3000000;
    metrics_count(&call);
    call.code = GRPC_UNAVAILABLE;
    metrics_count(&call);
    struct jbuf out;
    jbuf_init(&out, 1 << 20);
    metrics_render(&out);
    CHECK(strstr(out.p, "crisp_calls_total{method=\"Version\",backend=\"cri:unix:///a\\\"b\",code=\"OK\"} 2\n"));
    CHECK(strstr(out.p, "code=\"UNAVAILABLE\"} 1\n"));
    CHECK(strstr(out.p, "crisp_call_duration_seconds_bucket{method=\"Version\",le=\"0.0005\"} 1\n"));
    CHECK(strstr(out.p, "crisp_call_duration_seconds_bucket{method=\"Version\",le=\"2.5\"} 1\n"));
    CHECK(strstr(out.p, "crisp_call_duration_seconds_bucket{method=\"Version\",le=\"5\"} 3\n"));
    CHECK(strstr(out.p, "crisp_call_duration_seconds_count{method=\"Version\"} 3\n"));
    CHECK(strstr(out.p, "# TYPE crisp_calls_total counter\n"));
    CHECK(!strstr(out.p, "crisp_trace_")); /* no tracer running */
    jbuf_free(&out);
    metrics_reset();
}

int main(void)
{
    CHECK(crisp_methods_init() == 0);
    test_filter_options();
    test_filter_classes();
    test_filter_json();
    test_pods();
    test_record();
    test_dropped();
    test_metrics();
    crisp_methods_free();
    return unit_summary("test_trace");
}
