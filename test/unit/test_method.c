/* Unit tests for method.c, md.c and buf.c. */
#include <errno.h>
#include <string.h>

#include "crisp/buf.h"
#include "crisp/md.h"
#include "crisp/method.h"
#include "unit.h"

static const struct crisp_method *lookup(const char *path, enum crisp_api *api, int *known)
{
    return crisp_method_lookup(path, strlen(path), api, known);
}

static void test_table(void)
{
    CHECK(crisp_methods_init() == 0);
    CHECK(crisp_methods_count() == 41);
    size_t streaming = 0, alpha = 0, image = 0;
    for (size_t i = 0; i < crisp_methods_count(); i++) {
        const struct crisp_method *m = crisp_method_at(i);
        streaming += m->server_streaming;
        alpha += m->alpha_path != NULL;
        image += m->svc == CRISP_SVC_IMAGE;
        CHECK(m->id == (enum crisp_rpc)i && m->req && m->resp);
    }
    CHECK(streaming == 7);
    CHECK(image == 6);
    CHECK(alpha == 29); /* v1alpha2 (Kubernetes 1.25) has 29 RPCs */

    enum crisp_api api = CRISP_API_V1ALPHA2;
    int known = 0;
    const struct crisp_method *m = lookup("/runtime.v1.RuntimeService/Version", &api, &known);
    CHECK(m && strcmp(m->name, "Version") == 0 && api == CRISP_API_V1 && known);
    m = lookup("/runtime.v1alpha2.ImageService/PullImage", &api, &known);
    CHECK(m && strcmp(m->name, "PullImage") == 0 && api == CRISP_API_V1ALPHA2);
    CHECK(m && strcmp(m->path, "/runtime.v1.ImageService/PullImage") == 0);
    m = lookup("/runtime.v1.RuntimeService/GetContainerEvents", &api, &known);
    CHECK(m && m->server_streaming);
    /* v1-only RPC on the v1alpha2 path: unknown method of a known service */
    CHECK(lookup("/runtime.v1alpha2.RuntimeService/GetContainerEvents", &api, &known) == NULL);
    CHECK(known == 1);
    CHECK(lookup("/runtime.v1.RuntimeService/Versio", &api, &known) == NULL && known == 1);
    CHECK(lookup("/runtime.v1.ImageService/Version", &api, &known) == NULL && known == 1);
    CHECK(lookup("/grpc.health.v1.Health/Check", &api, &known) == NULL && known == 0);
    CHECK(lookup("", &api, &known) == NULL && known == 0);
    crisp_methods_free();
}

static void test_md(void)
{
    struct crisp_md md;
    crisp_md_init(&md, 100);
    CHECK(crisp_md_add(&md, (const uint8_t *)"traceparent", 11, (const uint8_t *)"00-ab", 5) == 0);
    const struct crisp_hdr *h = crisp_md_get(&md, "traceparent");
    CHECK(h && h->valuelen == 5 && memcmp(h->value, "00-ab", 5) == 0);
    uint8_t big[80] = {0};
    CHECK(crisp_md_add(&md, (const uint8_t *)"x", 1, big, sizeof(big)) == -EMSGSIZE);
    CHECK(md.n == 1);
    crisp_md_free(&md);
    CHECK(crisp_md_is_reserved((const uint8_t *)":path", 5));
    CHECK(crisp_md_is_reserved((const uint8_t *)"grpc-timeout", 12));
    CHECK(!crisp_md_is_reserved((const uint8_t *)"traceparent", 11));
}

static void test_buf(void)
{
    struct crisp_buf b;
    crisp_buf_init(&b, 1000);
    char chunk[300] = {0};
    CHECK(crisp_buf_append(&b, chunk, 300) == 0);
    CHECK(crisp_buf_append(&b, chunk, 300) == 0);
    CHECK(crisp_buf_append(&b, chunk, 300) == 0);
    CHECK(crisp_buf_append(&b, chunk, 300) == -EMSGSIZE);
    CHECK(b.len == 900 && b.cap <= 1000);
    CHECK(crisp_buf_append(&b, chunk, 100) == 0 && b.len == 1000);
    CHECK(crisp_buf_reserve(&b, (size_t)-1) == -EMSGSIZE);
    crisp_buf_free(&b);
}

int main(void)
{
    test_table();
    test_md();
    test_buf();
    return unit_summary("test_method");
}
