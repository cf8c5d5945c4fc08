/* Unit tests for the streaming server's pure helpers (src/stream/text.c):
 * tokens, paths, negotiation, base64, the WebSocket accept key, the resize
 * channel's JSON framing, the error channel's statuses, port lists. */
#include <stdlib.h>
#include <string.h>

#include "stream/text.h"
#include "unit.h"

static void test_tokens_and_routes(void)
{
    char a[SX_TOKEN_LEN + 1], b[SX_TOKEN_LEN + 1], tok[SX_TOKEN_MAX + 1];
    CHECK(sx_token_new(a) == 0 && sx_token_new(b) == 0);
    CHECK(strlen(a) == SX_TOKEN_LEN && strcmp(a, b) != 0);
    CHECK(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == SX_TOKEN_LEN);
    enum crisp_stream_kind k;
    const char *q;
    CHECK(sx_route("/exec/abc-_9", &k, tok, &q) == 0 && k == CRISP_STREAM_EXEC &&
          !strcmp(tok, "abc-_9") && !strcmp(q, ""));
    CHECK(sx_route("/attach/t?stdin=1", &k, tok, &q) == 0 && k == CRISP_STREAM_ATTACH &&
          !strcmp(q, "stdin=1"));
    CHECK(sx_route("/portforward/t?ports=80", &k, tok, &q) == 0 && k == CRISP_STREAM_PORT_FORWARD);
    CHECK(sx_route("/exec/", &k, tok, &q) < 0);
    CHECK(sx_route("/exec/a/b", &k, tok, &q) < 0);
    CHECK(sx_route("/exec/a%2e", &k, tok, &q) < 0);
    CHECK(sx_route("/logs/a", &k, tok, &q) < 0);
    char longp[128] = "/exec/";
    memset(longp + 6, 'a', SX_TOKEN_MAX + 1);
    CHECK(sx_route(longp, &k, tok, &q) < 0);
}

static void md_add(struct crisp_md *md, const char *n, const char *v)
{
    crisp_md_add(md, (const uint8_t *)n, strlen(n), (const uint8_t *)v, strlen(v));
}

static void test_negotiate(void)
{
    static const char *const server[] = {"v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"};
    struct crisp_md md;
    crisp_md_init(&md, 1 << 16);
    const char *chosen = NULL;
    CHECK(sx_negotiate(&md, "x-stream-protocol-version", server, 3, &chosen) == 0);
    md_add(&md, "x-stream-protocol-version", "v9.channel.k8s.io, v4.channel.k8s.io");
    md_add(&md, "x-stream-protocol-version", "v5.channel.k8s.io");
    CHECK(sx_negotiate(&md, "x-stream-protocol-version", server, 3, &chosen) == 1);
    CHECK(chosen && !strcmp(chosen, "v4.channel.k8s.io")); /* the client's order */
    char offers[128];
    sx_offers(&md, "x-stream-protocol-version", offers, sizeof(offers));
    CHECK(!strcmp(offers, "v9.channel.k8s.io v4.channel.k8s.io v5.channel.k8s.io"));
    crisp_md_free(&md);
    crisp_md_init(&md, 1 << 16);
    md_add(&md, "x-stream-protocol-version", "v9");
    CHECK(sx_negotiate(&md, "x-stream-protocol-version", server, 3, &chosen) == -1);
    md_add(&md, "connection", "keep-alive, Upgrade");
    CHECK(sx_hdr_has(&md, "connection", "upgrade") && !sx_hdr_has(&md, "connection", "close"));
    CHECK(sx_hdr(&md, "connection") && !sx_hdr(&md, "nope"));
    crisp_md_free(&md);
}

static void test_base64_and_accept(void)
{
    char enc[64];
    uint8_t dec[64];
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        CHECK(sx_b64_encode(enc, (const uint8_t *)in[i], strlen(in[i])) == strlen(out[i]));
        CHECK(!strcmp(enc, out[i]));
        CHECK(sx_b64_decode(dec, out[i], strlen(out[i])) == (ssize_t)strlen(in[i]));
        CHECK(!memcmp(dec, in[i], strlen(in[i])));
    }
    CHECK(sx_b64_decode(dec, "Zm9", 3) < 0);
    CHECK(sx_b64_decode(dec, "Zm=v", 4) < 0);
    CHECK(sx_b64_decode(dec, "Zg==Zg==", 8) < 0);
    CHECK(sx_b64_decode(dec, "Z!9v", 4) < 0);
    char acc[29];
    CHECK(sx_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc) == 0); /* RFC 6455 1.3 */
    CHECK(!strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

struct sizes {
    unsigned w[8], h[8];
    int n;
};

static int on_obj(void *ud, const char *obj, size_t len)
{
    struct sizes *s = ud;
    unsigned w, h;
    if (sx_parse_resize(obj, len, &w, &h) < 0)
        return -1;
    s->w[s->n] = w;
    s->h[s->n++] = h;
    return 0;
}

static void test_resize(void)
{
    const char *in = "{\"Width\":80,\"Height\":24}\n {\"Height\":40,\"Width\":100,\"x\":\"}{\\\"\"}";
    struct sizes s = {0};
    struct sx_json_split sp = {0};
    for (size_t i = 0; in[i]; i++) /* a byte at a time */
        CHECK(sx_json_split_feed(&sp, (const uint8_t *)in + i, 1, on_obj, &s) == 0);
    CHECK(s.n == 2 && s.w[0] == 80 && s.h[0] == 24 && s.w[1] == 100 && s.h[1] == 40);
    struct sx_json_split bad = {0};
    CHECK(sx_json_split_feed(&bad, (const uint8_t *)"x{}", 3, on_obj, &s) < 0);
    struct sx_json_split big = {0};
    char *huge = malloc(SX_RESIZE_MAX + 10);
    memset(huge, ' ', SX_RESIZE_MAX + 10);
    huge[0] = '{';
    CHECK(sx_json_split_feed(&big, (const uint8_t *)huge, SX_RESIZE_MAX + 10, on_obj, &s) < 0);
    free(huge);
    unsigned w, h;
    CHECK(sx_parse_resize("{\"Width\":-1}", 12, &w, &h) < 0);
    CHECK(sx_parse_resize("{\"Width\":70000}", 15, &w, &h) < 0);
    CHECK(sx_parse_resize("[1]", 3, &w, &h) < 0);
}

static void test_statuses(void)
{
    char *ok = sx_status_json(0, NULL, NULL, 0);
    CHECK(ok && !strcmp(ok, "{\"metadata\":{},\"status\":\"Success\"}"));
    free(ok);
    char *cmd[] = {"sh", "-c", "exit 42"};
    char *nz = sx_status_json(42, NULL, cmd, 3);
    CHECK(nz && !strcmp(nz, "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated "
                            "with non-zero exit code: error executing command [sh -c exit 42], exit "
                            "code 42\",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":"
                            "\"ExitCode\",\"message\":\"42\"}]}}"));
    free(nz);
    char *f = sx_status_json(-1, "no \"such\" container", NULL, 0);
    CHECK(f && strstr(f, "\"reason\":\"InternalError\"") && strstr(f, "\"code\":500") &&
          strstr(f, "Internal error occurred: no \\\"such\\\" container"));
    free(f);
    char *t = sx_status_text(0, NULL, NULL, 0);
    CHECK(t && !*t);
    free(t);
    t = sx_status_text(3, NULL, cmd, 3);
    CHECK(t && strstr(t, "exit code 3"));
    free(t);
}

static void test_ports(void)
{
    int32_t p[4];
    CHECK(sx_query_ports("ports=80,443&x=1&port=8080", p, 4) == 3 && p[0] == 80 && p[1] == 443 &&
          p[2] == 8080);
    CHECK(sx_query_ports("ports=80%2C81", p, 4) == 2 && p[1] == 81);
    CHECK(sx_query_ports("", p, 4) == 0);
    CHECK(sx_query_ports("ports=0", p, 4) < 0);
    CHECK(sx_query_ports("ports=65536", p, 4) < 0);
    CHECK(sx_query_ports("ports=80x", p, 4) < 0);
    CHECK(sx_query_ports("ports=1,2,3,4,5", p, 4) < 0);
}

int main(void)
{
    test_tokens_and_routes();
    test_negotiate();
    test_base64_and_accept();
    test_resize();
    test_statuses();
    test_ports();
    return unit_summary("test_stream_text");
}
