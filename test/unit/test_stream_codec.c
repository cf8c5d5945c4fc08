/* Unit tests for the streaming server's codecs: the HTTP/1.1 request-head
 * parser (http1/request_parser.c) and SPDY/3.1 framing (stream/spdy.c),
 * both ways, whole and a byte at a time, and what they refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "crisp/h1_parser.h"
#include "stream/spdy.h"
#include "unit.h"

/* ---- request heads ---------------------------------------------------------- */

static const char kubectl_req[] =
    "POST /exec/AbCd_12-x?command=sh&stdin=true HTTP/1.1\r\n"
    "Host: 127.0.0.1:10250\r\n"
    "User-Agent: kubectl/v1.30.0\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: SPDY/3.1\r\n"
    "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
    "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
    "\x80\x03\x00\x01";

static size_t count_field(const struct crisp_md *md, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < md->n; i++)
        n += md->v[i].namelen == strlen(name) && !memcmp(md->v[i].name, name, md->v[i].namelen);
    return n;
}

static void check_kubectl_head(struct h1_reqp *p)
{
    CHECK(h1_reqp_done(p));
    CHECK(!strcmp(h1_reqp_method(p), "POST"));
    CHECK(!strcmp(h1_reqp_target(p), "/exec/AbCd_12-x?command=sh&stdin=true"));
    CHECK(h1_reqp_minor(p) == 1);
    const struct crisp_md *md = h1_reqp_fields(p);
    const struct crisp_hdr *u = crisp_md_get(md, "upgrade");
    CHECK(u && !strcmp((char *)u->value, "SPDY/3.1"));
    CHECK(count_field(md, "x-stream-protocol-version") == 2);
    uint64_t len = 1;
    CHECK(h1_reqp_body(p, &len) == 0 && len == 0);
}

static void test_request_head(void)
{
    size_t head_len = sizeof(kubectl_req) - 1 - 4;
    struct h1_reqp *p = h1_reqp_new(0);
    ssize_t k = h1_reqp_feed(p, (const uint8_t *)kubectl_req, sizeof(kubectl_req) - 1);
    CHECK(k == (ssize_t)head_len); /* the SPDY bytes after the head are not taken */
    check_kubectl_head(p);
    CHECK(h1_reqp_feed(p, (const uint8_t *)"x", 1) == 0);
    h1_reqp_free(p);

    /* a byte at a time */
    p = h1_reqp_new(0);
    size_t used = 0;
    for (size_t i = 0; i < sizeof(kubectl_req) - 1; i++)
        used += (size_t)h1_reqp_feed(p, (const uint8_t *)kubectl_req + i, 1);
    CHECK(used == head_len);
    check_kubectl_head(p);
    h1_reqp_free(p);
}

static int bad_head(const char *req, size_t max, int want)
{
    struct h1_reqp *p = h1_reqp_new(max);
    ssize_t k = h1_reqp_feed(p, (const uint8_t *)req, strlen(req));
    int ok = k == want && *h1_reqp_why(p) && h1_reqp_feed(p, (const uint8_t *)"\r\n", 2) == want;
    if (!ok)
        fprintf(stderr, "bad_head(%.30s): %zd %s\n", req, k, h1_reqp_why(p));
    h1_reqp_free(p);
    return ok;
}

static void test_request_refused(void)
{
    CHECK(bad_head("GET /x HTTP/2.0\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET  /x HTTP/1.1\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("G(T /x HTTP/1.1\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x\x01y HTTP/1.1\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x HTTP/1.1\r\nbad header\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x HTTP/1.1\r\nA: b\x01\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0, H1_E_PARSE));
    CHECK(bad_head("GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0,
                   H1_E_PARSE));
    CHECK(bad_head("GET /x HTTP/1.1\r\nX: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n\r\n", 40,
                   H1_E_TOO_LARGE));
    CHECK(bad_head("\r\n\r\n\r\n\r\n\r\nGET /x HTTP/1.1\r\n\r\n", 0, H1_E_PARSE));
    char *longt = malloc(9000 + 32);
    snprintf(longt, 9032, "GET /%09000d HTTP/1.1\r\n\r\n", 0);
    CHECK(bad_head(longt, 0, H1_E_TOO_LARGE));
    free(longt);
    /* chunked is announced, not read */
    struct h1_reqp *p = h1_reqp_new(0);
    const char *ok = "\r\nPOST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK(h1_reqp_feed(p, (const uint8_t *)ok, strlen(ok)) == (ssize_t)strlen(ok));
    uint64_t len;
    CHECK(h1_reqp_done(p) && h1_reqp_minor(p) == 0 && h1_reqp_body(p, &len) == 1);
    h1_reqp_free(p);
}

/* ---- SPDY ------------------------------------------------------------------ */

struct rec {
    char log[4096];
    size_t len;
    int stop_at_data;
};

static void rec_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void rec_add(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->len, sizeof(r->log) - r->len, fmt, ap);
    va_end(ap);
    if (n > 0 && r->len + (size_t)n < sizeof(r->log))
        r->len += (size_t)n;
}

static int r_syn(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *h)
{
    struct rec *r = ud;
    rec_add(r, "syn %u %u", id, flags);
    for (size_t i = 0; i < h->n; i++)
        rec_add(r, " %s=%s", (char *)h->v[i].name, (char *)h->v[i].value);
    rec_add(r, ";");
    return 0;
}

static int r_headers(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *h)
{
    rec_add(ud, "hdr %u %zu;", id, h->n);
    return 0;
}

/* Data pieces are joined: a byte-at-a-time feed logs the same. */
static uint32_t last_data_id;
static int r_data(void *ud, uint32_t id, const uint8_t *p, size_t n)
{
    struct rec *r = ud;
    if (last_data_id != id)
        rec_add(r, "data %u:", id);
    last_data_id = id;
    rec_add(r, "%.*s", (int)n, (const char *)p);
    return r->stop_at_data ? -1 : 0;
}

static int r_fin(void *ud, uint32_t id)
{
    last_data_id = 0;
    rec_add(ud, "|fin %u;", id);
    return 0;
}

static int r_rst(void *ud, uint32_t id, uint32_t st)
{
    rec_add(ud, "rst %u %u;", id, st);
    return 0;
}

static int r_ping(void *ud, uint32_t id)
{
    rec_add(ud, "ping %u;", id);
    return 0;
}

static int r_goaway(void *ud, uint32_t last, uint32_t st)
{
    rec_add(ud, "goaway %u %u;", last, st);
    return 0;
}

static const struct spdy_cbs rcbs = {r_syn, r_headers, r_data, r_fin, r_rst, r_ping, r_goaway};

static void md_add(struct crisp_md *md, const char *n, const char *v, size_t vl)
{
    crisp_md_add(md, (const uint8_t *)n, strlen(n), (const uint8_t *)v, vl);
}

/* What a kubectl exec sends: streams, stdin data, its end, a ping, a reset. */
static void client_frames(struct crisp_buf *out)
{
    struct spdy *c = spdy_new(&rcbs, NULL);
    struct crisp_md md;
    crisp_md_init(&md, 1 << 20);
    md_add(&md, "streamtype", "error", 5);
    spdy_put_syn_stream(c, out, 1, 0, &md);
    crisp_md_free(&md);
    crisp_md_init(&md, 1 << 20);
    md_add(&md, "streamtype", "stdin", 5);
    md_add(&md, "multi", "a\0b", 3);
    spdy_put_syn_stream(c, out, 3, 0, &md);
    crisp_md_free(&md);
    spdy_put_data(out, 3, 0, (const uint8_t *)"hello ", 6);
    spdy_put_data(out, 3, SPDY_FLAG_FIN, (const uint8_t *)"world", 5);
    spdy_put_syn_stream(c, out, 5, SPDY_FLAG_FIN, NULL);
    spdy_put_ping(out, 7);
    spdy_put_rst(out, 1, SPDY_CANCEL);
    spdy_put_syn_reply(c, out, 2, 0, NULL);
    spdy_put_goaway(out, 5, 0);
    spdy_free(c);
}

static const char client_log[] =
    "syn 1 0 streamtype=error;syn 3 0 streamtype=stdin multi=a multi=b;"
    "data 3:hello world|fin 3;syn 5 1;|fin 5;ping 7;rst 1 5;hdr 2 0;goaway 5 0;";

static void test_spdy_roundtrip(void)
{
    CHECK(SPDY_DATA_MAX == 0xffffff);
    struct crisp_buf out;
    crisp_buf_init(&out, 1 << 20);
    client_frames(&out);
    struct rec r = {0};
    struct spdy *s = spdy_new(&rcbs, &r);
    CHECK(spdy_feed(s, out.data, out.len) == (ssize_t)out.len);
    CHECK(!strcmp(r.log, client_log));
    if (strcmp(r.log, client_log))
        fprintf(stderr, "got: %s\n", r.log);
    spdy_free(s);

    struct rec r1 = {0};
    s = spdy_new(&rcbs, &r1);
    last_data_id = 0;
    for (size_t i = 0; i < out.len; i++)
        CHECK(spdy_feed(s, out.data + i, 1) == 1);
    CHECK(!strcmp(r1.log, client_log));
    spdy_free(s);
    crisp_buf_free(&out);
}

static int feed_err(const uint8_t *p, size_t n)
{
    struct rec r = {0};
    struct spdy *s = spdy_new(&rcbs, &r);
    int rv = (int)spdy_feed(s, p, n);
    if (rv >= 0)
        rv = 0;
    else if (!*spdy_why(s) || spdy_feed(s, p, 1) != rv)
        rv = 99;
    spdy_free(s);
    return rv;
}

static void test_spdy_refused(void)
{
    uint8_t v2[8] = {0x80, 2, 0, 1, 0, 0, 0, 0};
    CHECK(feed_err(v2, 8) == SPDY_E_VERSION);
    uint8_t big[8] = {0x80, 3, 0, 4, 0, 0x01, 0x00, 0x01}; /* 64 KiB + 1 SETTINGS */
    CHECK(feed_err(big, 8) == SPDY_E_TOO_LARGE);
    uint8_t data0[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(feed_err(data0, 8) == SPDY_E_PROTO);
    uint8_t shortrst[12] = {0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1};
    CHECK(feed_err(shortrst, 12) == SPDY_E_PROTO);
    uint8_t garbage_block[18] = {0x80, 3, 0, 1, 0, 0, 0, 10 + 8 - 8 + 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    garbage_block[7] = 10;
    CHECK(feed_err(garbage_block, 18) == SPDY_E_PROTO || feed_err(garbage_block, 18) == SPDY_E_ZLIB);
    uint8_t junk[26] = {0x80, 3, 0, 1, 0, 0, 0, 18, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                        'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'};
    CHECK(feed_err(junk, 26) == SPDY_E_ZLIB);
    uint8_t ignored[16] = {0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 1, 0}; /* WINDOW_UPDATE */
    CHECK(feed_err(ignored, 16) == 0);

    /* an inflation bomb: 1 MiB of zeros deflated fits one control frame */
    struct spdy *c = spdy_new(&rcbs, NULL);
    struct crisp_md md;
    crisp_md_init(&md, 4 << 20);
    char *zeros = calloc(1, 60000);
    md_add(&md, "a", zeros, 60000);
    md_add(&md, "b", zeros, 60000);
    struct crisp_buf out;
    crisp_buf_init(&out, 1 << 20);
    CHECK(spdy_put_syn_stream(c, &out, 1, 0, &md) == SPDY_E_TOO_LARGE); /* our own cap too */
    crisp_md_free(&md);
    free(zeros);
    spdy_free(c);

    uint8_t *bomb = malloc(1 << 20), *z = malloc(1 << 16);
    memset(bomb, 0, 1 << 20);
    bomb[3] = 1; /* one pair... of enormous length */
    bomb[4] = 0x7f;
    uLongf zl = 1 << 16;
    CHECK(compress2(z, &zl, bomb, 1 << 20, 9) == Z_OK);
    (void)zl; /* zlib without the dictionary: inflate asks none, then overflows */
    uint8_t *f = malloc(18 + zl);
    memcpy(f, (uint8_t[]){0x80, 3, 0, 1, 0, (uint8_t)((10 + zl) >> 16), (uint8_t)((10 + zl) >> 8),
                          (uint8_t)(10 + zl), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 18);
    memcpy(f + 18, z, zl);
    CHECK(feed_err(f, 18 + zl) == SPDY_E_TOO_LARGE);
    free(f);
    free(z);
    free(bomb);
    crisp_buf_free(&out);
}

/* A callback that says stop; spdy_yield hands back the rest. */
static int y_data(void *ud, uint32_t id, const uint8_t *p, size_t n);
static struct spdy *ys;
static int y_count;
static int y_data(void *ud, uint32_t id, const uint8_t *p, size_t n)
{
    y_count++;
    spdy_yield(ys);
    return 0;
}

static void test_spdy_yield(void)
{
    struct crisp_buf out;
    crisp_buf_init(&out, 1 << 20);
    spdy_put_data(&out, 3, 0, (const uint8_t *)"abc", 3);
    spdy_put_data(&out, 3, 0, (const uint8_t *)"def", 3);
    struct spdy_cbs cb = rcbs;
    cb.on_data = y_data;
    struct rec r = {0};
    ys = spdy_new(&cb, &r);
    CHECK(spdy_feed(ys, out.data, out.len) == 11);
    CHECK(y_count == 1);
    CHECK(spdy_feed(ys, out.data + 11, out.len - 11) == 11);
    CHECK(y_count == 2);
    spdy_free(ys);
    struct rec st = {.stop_at_data = 1};
    struct spdy *s = spdy_new(&rcbs, &st);
    CHECK(spdy_feed(s, out.data, out.len) == SPDY_E_ABORTED);
    spdy_free(s);
    crisp_buf_free(&out);
}

int main(void)
{
    test_request_head();
    test_request_refused();
    test_spdy_roundtrip();
    test_spdy_refused();
    test_spdy_yield();
    return unit_summary("test_stream_codec");
}
