/* libFuzzer harness for the streaming server's text helpers
 * (src/stream/text.c): the resize channel's JSON framing (whole and a byte
 * at a time must agree), resize parsing, request paths, query port lists,
 * base64 (what decodes, encoded and decoded again, gives the same bytes:
 * non-zero padding bits are accepted, as Go's decoder does), protocol
 * negotiation.
 *
 *   make fuzz && build/fuzz/fuzz_stream_text -max_total_time=60 [corpus dir] */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/text.h"

struct objs {
    unsigned n;
    uint64_t h;
};

static int on_obj(void *ud, const char *obj, size_t len)
{
    struct objs *o = ud;
    unsigned w, h;
    o->n++;
    for (size_t i = 0; i < len; i++)
        o->h = (o->h ^ (uint8_t)obj[i]) * 1099511628211ull;
    if (sx_parse_resize(obj, len, &w, &h) == 0 && (w > 65535 || h > 65535))
        abort();
    return 0;
}

static void json_split(const uint8_t *d, size_t n)
{
    struct sx_json_split a = {0}, b = {0};
    struct objs oa = {0}, ob = {0};
    int ra = sx_json_split_feed(&a, d, n, on_obj, &oa), rb = 0;
    for (size_t i = 0; i < n && rb == 0; i++)
        rb = sx_json_split_feed(&b, d + i, 1, on_obj, &ob);
    if (ra != rb || (ra == 0 && (oa.n != ob.n || oa.h != ob.h)))
        abort();
}

static void base64(const uint8_t *d, size_t n)
{
    uint8_t *dec = malloc(n + 1);
    ssize_t k = sx_b64_decode(dec, (const char *)d, n);
    if (k >= 0) {
        char *enc = malloc(n + 8);
        uint8_t *again = malloc(n + 1);
        size_t el = sx_b64_encode(enc, dec, (size_t)k);
        if (el != n || sx_b64_decode(again, enc, el) != k || memcmp(again, dec, (size_t)k) != 0)
            abort();
        free(enc);
        free(again);
    }
    free(dec);
}

static void strings(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = 0;
    enum crisp_stream_kind k;
    char tok[SX_TOKEN_MAX + 1];
    const char *q;
    if (sx_route(s, &k, tok, &q) == 0 && (strlen(tok) == 0 || strlen(tok) > SX_TOKEN_MAX))
        abort();
    int32_t ports[8];
    int np = sx_query_ports(s, ports, 8);
    for (int i = 0; i < np; i++)
        if (ports[i] < 1 || ports[i] > 65535)
            abort();
    struct crisp_md md;
    crisp_md_init(&md, 1 << 20);
    crisp_md_add(&md, (const uint8_t *)"x", 1, (const uint8_t *)s, strlen(s));
    static const char *const server[] = {"v5.channel.k8s.io", "v4.channel.k8s.io"};
    const char *chosen = NULL;
    if (sx_negotiate(&md, "x", server, 2, &chosen) == 1 && chosen != server[0] && chosen != server[1])
        abort();
    char offers[64];
    sx_offers(&md, "x", offers, sizeof(offers));
    crisp_md_free(&md);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_split(data, size);
    base64(data, size);
    strings(data, size);
    return 0;
}
