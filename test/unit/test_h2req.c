/* Unit tests for h2req.c: crisp's own HTTP/2 request checks. */
#include <stdio.h>
#include <string.h>

#include "front/h2req.h"
#include "unit.h"

struct field {
    const char *name, *value;
};

/* Feeds a header block; returns the result of h2req_headers_done. */
static int block(struct h2req *r, const struct field *f, size_t n)
{
    h2req_init(r);
    for (size_t i = 0; i < n; i++)
        h2req_field(r, (const uint8_t *)f[i].name, strlen(f[i].name),
                    (const uint8_t *)f[i].value, strlen(f[i].value), 0);
    return h2req_headers_done(r);
}

#define BLOCK(r, ...)                                                          \
    block((r), (const struct field[]){__VA_ARGS__},                            \
          sizeof((const struct field[]){__VA_ARGS__}) / sizeof(struct field))

#define GRPC_REQ                                                               \
    {":method", "POST"}, {":scheme", "http"},                                  \
        {":path", "/runtime.v1.RuntimeService/Version"}

static void test_accepted(void)
{
    struct h2req r;
    /* grpc-go over a unix socket: the socket path as :authority */
    CHECK(BLOCK(&r, GRPC_REQ, {":authority", "/run/crisp/crisp.sock"},
                {"content-type", "application/grpc"}, {"te", "trailers"},
                {"user-agent", "grpc-go/1.33.1"}) == H2REQ_OK);
    CHECK(BLOCK(&r, GRPC_REQ, {":authority", "unix:///a b/c"}) == H2REQ_OK);
    CHECK(BLOCK(&r, GRPC_REQ, {":authority", ""}) == H2REQ_OK);
    CHECK(BLOCK(&r, GRPC_REQ) == H2REQ_OK); /* :authority is optional */
    CHECK(BLOCK(&r, GRPC_REQ, {"x-bin-bin", "AAEC"}, {"traceparent", "00-ab"}) == H2REQ_OK);
    CHECK(BLOCK(&r, GRPC_REQ, {"x-tab", "a\tb"}, {"x-sp", " lead and trail "}) == H2REQ_OK);
    CHECK(BLOCK(&r, GRPC_REQ, {"content-length", "12"}) == H2REQ_OK);
    CHECK(h2req_data(&r, 5, 0) == H2REQ_OK && h2req_data(&r, 7, 1) == H2REQ_OK);
}

static void test_refused(void)
{
    struct h2req r;
    CHECK(BLOCK(&r, GRPC_REQ, {"X-Up", "1"}) == H2REQ_E_NAME);
    CHECK(strcmp(r.field, "X-Up") == 0);
    CHECK(BLOCK(&r, GRPC_REQ, {"a b", "1"}) == H2REQ_E_NAME);
    CHECK(strcmp(r.field, "a?b") == 0); /* printable in messages */
    CHECK(BLOCK(&r, GRPC_REQ, {"", "1"}) == H2REQ_E_NAME);
    CHECK(BLOCK(&r, GRPC_REQ, {":", "1"}) == H2REQ_E_NAME);
    CHECK(BLOCK(&r, GRPC_REQ, {"a:b", "1"}) == H2REQ_E_NAME);
    CHECK(BLOCK(&r, GRPC_REQ, {"x", "a\rb"}) == H2REQ_E_VALUE);
    CHECK(BLOCK(&r, GRPC_REQ, {":authority", "a\nb"}) == H2REQ_E_VALUE);
    CHECK(BLOCK(&r, GRPC_REQ, {":status", "200"}) == H2REQ_E_PSEUDO_UNKNOWN);
    CHECK(BLOCK(&r, GRPC_REQ, {":protocol", "websocket"}) == H2REQ_E_PSEUDO_UNKNOWN);
    CHECK(BLOCK(&r, GRPC_REQ, {":path", "/x"}) == H2REQ_E_PSEUDO_TWICE);
    CHECK(BLOCK(&r, {":method", "POST"}, {"x", "1"}, {":scheme", "http"}) == H2REQ_E_PSEUDO_LATE);
    CHECK(BLOCK(&r, {":method", "POST"}, {":path", "/x"}) == H2REQ_E_PSEUDO_MISSING);
    CHECK(BLOCK(&r, {":method", "POST"}, {":scheme", "http"}, {":path", ""}) == H2REQ_E_PATH_EMPTY);
    CHECK(BLOCK(&r, GRPC_REQ, {"connection", "close"}) == H2REQ_E_CONNECTION);
    CHECK(BLOCK(&r, GRPC_REQ, {"transfer-encoding", "chunked"}) == H2REQ_E_CONNECTION);
    CHECK(BLOCK(&r, GRPC_REQ, {"upgrade", "h2c"}) == H2REQ_E_CONNECTION);
    CHECK(BLOCK(&r, GRPC_REQ, {"te", "gzip"}) == H2REQ_E_TE);
    CHECK(BLOCK(&r, GRPC_REQ, {"content-length", "x"}) == H2REQ_E_CONTENT_LENGTH);
    CHECK(BLOCK(&r, GRPC_REQ, {"content-length", "1"}, {"content-length", "1"}) ==
          H2REQ_E_CONTENT_LENGTH);
    /* the first error sticks */
    CHECK(BLOCK(&r, GRPC_REQ, {"Bad", "1"}, {"connection", "x"}) == H2REQ_E_NAME);
    CHECK(strcmp(r.field, "Bad") == 0);
    CHECK(strcmp(h2req_strerror(H2REQ_E_TE), "te header field other than \"trailers\"") == 0);
}

/* Every byte as a one-character name: exactly RFC 9110's token characters
 * with lowercase letters are accepted. */
static void test_name_bytes(void)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        struct h2req r;
        h2req_init(&r);
        uint8_t name[2] = {'x', (uint8_t)c};
        int want = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   (c && memchr(extra, c, sizeof(extra) - 1));
        int rv = h2req_field(&r, name, 2, (const uint8_t *)"1", 1, 0);
        CHECK((rv == H2REQ_OK) == want);
        if ((rv == H2REQ_OK) != want)
            fprintf(stderr, "byte 0x%02x: got %d\n", c, rv);
    }
}

static void test_content_length_vs_data(void)
{
    struct h2req r;
    BLOCK(&r, GRPC_REQ, {"content-length", "10"});
    CHECK(h2req_data(&r, 4, 0) == H2REQ_OK);
    CHECK(h2req_data(&r, 0, 1) == H2REQ_E_CONTENT_LENGTH); /* ended short */
    BLOCK(&r, GRPC_REQ, {"content-length", "3"});
    CHECK(h2req_data(&r, 4, 0) == H2REQ_E_CONTENT_LENGTH); /* over */
    BLOCK(&r, GRPC_REQ);
    CHECK(h2req_data(&r, 1 << 20, 1) == H2REQ_OK); /* none given: anything */
}

static void test_trailers(void)
{
    struct h2req r;
    BLOCK(&r, GRPC_REQ);
    CHECK(h2req_field(&r, (const uint8_t *)"x-t", 3, (const uint8_t *)"1", 1, 1) == H2REQ_OK);
    CHECK(h2req_field(&r, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1, 1) ==
          H2REQ_E_TRAILER_PSEUDO);
}

int main(void)
{
    test_accepted();
    test_refused();
    test_name_bytes();
    test_content_length_vs_data();
    test_trailers();
    return unit_summary("test_h2req");
}
