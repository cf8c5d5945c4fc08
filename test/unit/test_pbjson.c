/* Unit tests for src/trace/pbjson.c, pbjson_decode.c and jbuf.c: the
 * proto3 JSON mapping from the descriptors, both ways; redaction; the
 * body limit's cut marker. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime_v1.pb-c.h"
#include "trace/jbuf.h"
#include "trace/pbjson.h"
#include "unit.h"

static char *enc(const ProtobufCMessage *m, unsigned flags, size_t limit, int *cut)
{
    struct jbuf b;
    struct pbjson_enc e = {.flags = flags, .limit = limit};
    jbuf_init(&b, 1 << 20);
    CHECK(pbjson_encode(&b, m, &e) == 0);
    if (cut)
        *cut = e.cut;
    return jbuf_take(&b, NULL);
}

static ProtobufCMessage *dec(const ProtobufCMessageDescriptor *d, const char *json, int want)
{
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    int rc = pbjson_decode(d, json, strlen(json), 1 << 20, &m, err, sizeof(err));
    if (rc != want)
        fprintf(stderr, "decode %s: rc %d (want %d): %s\n", json, rc, want, err);
    CHECK(rc == want);
    CHECK(want != 0 || m);
    return m;
}

static void test_names(void)
{
    char out[64];
    pbjson_json_name("pod_sandbox_id", out, sizeof(out));
    CHECK(strcmp(out, "podSandboxId") == 0);
    pbjson_json_name("Total", out, sizeof(out));
    CHECK(strcmp(out, "Total") == 0);
    pbjson_json_name("memory_limit_in_bytes", out, 8);
    CHECK(strcmp(out, "memoryL") == 0);
}

static void test_encode_scalars(void)
{
    Runtime__V1__ContainerStatus st = RUNTIME__V1__CONTAINER_STATUS__INIT;
    Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
    st.id = "abc";
    st.state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
    st.created_at = 1700000000123456789LL;
    st.exit_code = -1;
    md.name = "n\"q\n\x01\xff";
    md.attempt = 3;
    st.metadata = &md;
    char *j = enc(&st.base, 0, 0, NULL);
    CHECK(j && strcmp(j, "{\"id\":\"abc\",\"metadata\":{\"name\":\"n\\\"q\\n\\u0001\\ufffd\","
                         "\"attempt\":3},\"state\":\"CONTAINER_EXITED\","
                         "\"createdAt\":\"1700000000123456789\",\"exitCode\":-1}") == 0);
    free(j);
}

static void test_encode_maps_bytes(void)
{
    Runtime__V1__ExecSyncResponse r = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
    r.stdout.data = (uint8_t *)"hi\n";
    r.stdout.len = 3;
    char *j = enc(&r.base, 0, 0, NULL);
    CHECK(j && strcmp(j, "{\"stdout\":\"aGkK\"}") == 0);
    free(j);

    Runtime__V1__PodSandboxFilter f = RUNTIME__V1__POD_SANDBOX_FILTER__INIT;
    Runtime__V1__PodSandboxFilter__LabelSelectorEntry e1 =
        RUNTIME__V1__POD_SANDBOX_FILTER__LABEL_SELECTOR_ENTRY__INIT;
    Runtime__V1__PodSandboxFilter__LabelSelectorEntry *ents[] = {&e1};
    e1.key = "app";
    e1.value = "web";
    f.n_label_selector = 1;
    f.label_selector = ents;
    j = enc(&f.base, 0, 0, NULL);
    CHECK(j && strcmp(j, "{\"labelSelector\":{\"app\":\"web\"}}") == 0);
    free(j);
}

static void test_redaction(void)
{
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    Runtime__V1__AuthConfig auth = RUNTIME__V1__AUTH_CONFIG__INIT;
    Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
    img.image = "reg/x:1";
    auth.username = "user";
    auth.password = "s3cret";
    auth.auth = "dXNlcjpzM2NyZXQ=";
    auth.identity_token = "idtok";
    auth.registry_token = "regtok";
    req.image = &img;
    req.auth = &auth;
    char *j = enc(&req.base, 0, 0, NULL);
    CHECK(j && !strstr(j, "s3cret") && !strstr(j, "dXNlcjpzM2NyZXQ") && !strstr(j, "tok\""));
    CHECK(j && strstr(j, "\"username\":\"user\"") && strstr(j, "\"password\":\"[redacted]\""));
    free(j);

    Runtime__V1__ContainerConfig cc = RUNTIME__V1__CONTAINER_CONFIG__INIT;
    Runtime__V1__KeyValue kv = RUNTIME__V1__KEY_VALUE__INIT, *kvs[] = {&kv};
    kv.key = "TOKEN";
    kv.value.data = (uint8_t *)"hunter2";
    kv.value.len = 7;
    cc.n_envs = 1;
    cc.envs = kvs;
    j = enc(&cc.base, 0, 0, NULL);
    CHECK(j && strstr(j, "aHVudGVyMg==")); /* without the option: base64 of the value */
    free(j);
    j = enc(&cc.base, PBJSON_REDACT_ENV, 0, NULL);
    CHECK(j && strcmp(j, "{\"envs\":[{\"key\":\"TOKEN\",\"value\":\"[redacted]\"}]}") == 0);
    free(j);
}

static void test_cut(void)
{
    Runtime__V1__ListContainersResponse r = RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT;
    Runtime__V1__Container cs[50], *ps[50];
    for (int i = 0; i < 50; i++) {
        runtime__v1__container__init(&cs[i]);
        cs[i].id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        ps[i] = &cs[i];
    }
    r.n_containers = 50;
    r.containers = ps;
    int cut = 0;
    char *full = enc(&r.base, 0, 0, &cut);
    CHECK(full && !cut && strlen(full) > 3000);
    char *j = enc(&r.base, 0, 1000, &cut);
    CHECK(j && cut && strlen(j) < 1200 && strstr(j, "\"@cut\":true"));
    cJSON *p = j ? cJSON_Parse(j) : NULL;
    CHECK(p != NULL); /* still valid JSON */
    cJSON_Delete(p);
    free(j);
    free(full);

    /* a long string is cut short, on a character boundary */
    Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
    char big[4000];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof(big) - 2] = 0;
    md.name = big;
    j = enc(&md.base, 0, 101, &cut);
    CHECK(j && cut && strlen(j) < 200);
    p = j ? cJSON_Parse(j) : NULL;
    CHECK(p && cJSON_GetObjectItem(p, "@cut") && strlen(cJSON_GetObjectItem(p, "name")->valuestring) % 2 == 0);
    cJSON_Delete(p);
    free(j);
}

static void test_decode(void)
{
    const char *json = "{\"podSandboxId\":\"p1\",\"config\":{\"metadata\":{\"name\":\"c\",\"attempt\":2},"
                       "\"image\":{\"image\":\"busybox\"},\"command\":[\"sh\",\"-c\"],"
                       "\"envs\":[{\"key\":\"A\",\"value\":\"Yg==\"}],\"labels\":{\"x\":\"y\",\"z\":\"w\"},"
                       "\"linux\":{\"resources\":{\"memory_limit_in_bytes\":\"1048576\",\"cpuShares\":512}},"
                       "\"tty\":true},\"sandboxConfig\":null}";
    Runtime__V1__CreateContainerRequest *r = (void *)dec(
        &runtime__v1__create_container_request__descriptor, json, 0);
    if (!r)
        return;
    CHECK(strcmp(r->pod_sandbox_id, "p1") == 0);
    CHECK(r->config && strcmp(r->config->metadata->name, "c") == 0 && r->config->metadata->attempt == 2);
    CHECK(r->config->n_command == 2 && strcmp(r->config->command[1], "-c") == 0);
    CHECK(r->config->n_envs == 1 && r->config->envs[0]->value.len == 1 &&
          r->config->envs[0]->value.data[0] == 'b');
    CHECK(r->config->n_labels == 2 && strcmp(r->config->labels[1]->value, "w") == 0);
    CHECK(r->config->linux->resources->memory_limit_in_bytes == 1048576);
    CHECK(r->config->linux->resources->cpu_shares == 512 && r->config->tty);
    CHECK(r->sandbox_config == NULL);
    /* and back: the same JSON modulo names and the null */
    char *j = enc(&r->base, 0, 0, NULL);
    CHECK(j && strstr(j, "\"memoryLimitInBytes\":\"1048576\"") && strstr(j, "\"labels\":{\"x\":\"y\",\"z\":\"w\"}"));
    free(j);
    pbjson_free(&r->base);

    Runtime__V1__ContainerFilter *f = (void *)dec(&runtime__v1__container_filter__descriptor,
                                                  "{\"state\":{\"state\":\"CONTAINER_RUNNING\"}}", 0);
    CHECK(f && f->state && f->state->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING);
    pbjson_free(&f->base);
    f = (void *)dec(&runtime__v1__container_filter__descriptor, "{\"state\":{\"state\":2}}", 0);
    CHECK(f && f->state->state == 2);
    pbjson_free(&f->base);
}

static void test_decode_errors(void)
{
    const ProtobufCMessageDescriptor *d = &runtime__v1__create_container_request__descriptor;
    dec(d, "{\"nope\":1}", PBJSON_E_VALUE);
    dec(d, "[1]", PBJSON_E_SYNTAX);
    dec(d, "{\"podSandboxId\":", PBJSON_E_SYNTAX);
    dec(d, "{\"podSandboxId\":5}", PBJSON_E_VALUE);
    dec(d, "{\"config\":{\"metadata\":{\"attempt\":1.5}}}", PBJSON_E_VALUE);
    dec(d, "{\"config\":{\"metadata\":{\"attempt\":-1}}}", PBJSON_E_VALUE);
    dec(d, "{\"config\":{\"command\":[\"a\",null]}}", PBJSON_E_VALUE);
    dec(d, "{\"config\":{\"envs\":[{\"key\":\"A\",\"value\":\"!!\"}]}}", PBJSON_E_VALUE);
    dec(d, "{\"config\":{\"labels\":{\"a\":1}}}", PBJSON_E_VALUE);
    dec(d, "{\"podSandboxId\":\"a\",\"pod_sandbox_id\":\"b\"}", PBJSON_E_VALUE);
    dec(&runtime__v1__container_filter__descriptor, "{\"state\":{\"state\":\"NOPE\"}}", PBJSON_E_VALUE);
    char deep[2000] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "{\"config\":");
    ProtobufCMessage *m = NULL;
    char err[128];
    CHECK(pbjson_decode(d, deep, strlen(deep), 10, &m, err, sizeof(err)) == PBJSON_E_SIZE);
}

static void test_base64(void)
{
    uint8_t out[16];
    CHECK(base64_decode("aGkK", 4, out) == 3 && memcmp(out, "hi\n", 3) == 0);
    CHECK(base64_decode("aGk", 3, out) == 2 && memcmp(out, "hi", 2) == 0);
    CHECK(base64_decode("a", 1, out) == -1);
    CHECK(base64_decode("a-_=", 4, out) == 2);
}

int main(void)
{
    test_names();
    test_encode_scalars();
    test_encode_maps_bytes();
    test_redaction();
    test_cut();
    test_decode();
    test_decode_errors();
    test_base64();
    return unit_summary("test_pbjson");
}
