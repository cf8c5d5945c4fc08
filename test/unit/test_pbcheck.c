/* Unit tests for the check of a request's string fields on the wire
 * (src/core/pbcheck.c): a NUL byte that protobuf-c's C strings would cut. */
#include <string.h>

#include "crisp/call.h"
#include "crisp/method.h"
#include "unit.h"

static const struct crisp_method *method(const char *path)
{
    int known = 0;
    return crisp_method_lookup(path, strlen(path), NULL, &known);
}

static int nul_in(const struct crisp_method *m, const uint8_t *p, size_t n, char *path, size_t cap)
{
    struct crisp_call call;
    memset(&call, 0, sizeof(call));
    call.method = m;
    call.req = (uint8_t *)p;
    call.req_len = n;
    return crisp_call_request_nul(&call, path, cap);
}

int main(void)
{
    CHECK(crisp_methods_init() == 0);
    const struct crisp_method *img = method("/runtime.v1.ImageService/ImageStatus");
    const struct crisp_method *run = method("/runtime.v1.RuntimeService/RunPodSandbox");
    CHECK(img && run);
    if (!img || !run)
        return unit_summary("test_pbcheck");
    char path[64];
    /* ImageStatusRequest{image: ImageSpec{image: "abc"}} */
    static const uint8_t ok[] = {0x0a, 0x05, 0x0a, 0x03, 'a', 'b', 'c'};
    static const uint8_t bad[] = {0x0a, 0x05, 0x0a, 0x03, 'a', 0, 'c'};
    CHECK(nul_in(img, ok, sizeof(ok), path, sizeof(path)) == 0);
    CHECK(nul_in(img, bad, sizeof(bad), path, sizeof(path)) == 1 && strcmp(path, "image.image") == 0);
    /* RunPodSandboxRequest{config: PodSandboxConfig{labels: {"k": "v\0w"}}} */
    static const uint8_t label[] = {0x0a, 0x0a, 0x32, 0x08, 0x0a, 0x01, 'k', 0x12, 0x03, 'v', 0, 'w'};
    CHECK(nul_in(run, label, sizeof(label), path, sizeof(path)) == 1 &&
          strcmp(path, "config.labels.value") == 0);
    /* bytes that are no message: not this check's business (decoding refuses them) */
    static const uint8_t junk[] = {0x0a, 0x7f, 'x'};
    CHECK(nul_in(img, junk, sizeof(junk), path, sizeof(path)) == 0);
    /* a NUL in a varint or outside strings is no string's */
    static const uint8_t empty[] = {0};
    CHECK(nul_in(img, empty, 0, path, sizeof(path)) == 0);
    CHECK(nul_in(img, ok, sizeof(ok), path, 0) == 0);
    return unit_summary("test_pbcheck");
}
