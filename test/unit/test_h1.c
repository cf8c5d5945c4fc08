/* Unit tests for the HTTP/1.1 response parser (src/http1/response_parser.c
 * and head.c): framing, every split of the input, chunked coding with
 * extensions and trailers, limits, garbage, keep-alive rules, end of
 * stream. No I/O. */
#include <stdlib.h>
#include <string.h>

#include "crisp/h1_parser.h"
#include "unit.h"

struct col {
    int heads, completes, status;
    struct crisp_md hdrs;
    char body[70000];
    size_t blen;
    int abort_head, abort_body, abort_complete, no_body_in_head;
    int body_after_complete;
    struct h1_parser *p;
};

static int c_head(void *ud, int status, const struct crisp_md *h)
{
    struct col *c = ud;
    c->heads++;
    c->status = status;
    crisp_md_free(&c->hdrs);
    crisp_md_init(&c->hdrs, 1 << 20);
    for (size_t i = 0; i < h->n; i++)
        crisp_md_add(&c->hdrs, h->v[i].name, h->v[i].namelen, h->v[i].value, h->v[i].valuelen);
    if (c->no_body_in_head)
        h1_parser_expect_no_body(c->p);
    return c->abort_head ? -1 : 0;
}

static int c_body(void *ud, const uint8_t *p, size_t n)
{
    struct col *c = ud;
    if (c->completes)
        c->body_after_complete++;
    if (n == 0)
        c->body_after_complete += 1000; /* never called with nothing */
    if (c->blen + n <= sizeof(c->body)) {
        memcpy(c->body + c->blen, p, n);
        c->blen += n;
    }
    return c->abort_body ? -1 : 0;
}

static int c_complete(void *ud)
{
    struct col *c = ud;
    c->completes++;
    return c->abort_complete ? -1 : 0;
}

static const struct h1_parser_cbs cbs = {c_head, c_body, c_complete};

static void col_init(struct col *c, size_t head_max)
{
    memset(c, 0, sizeof(*c));
    crisp_md_init(&c->hdrs, 1 << 20);
    c->p = h1_parser_new(&cbs, c, head_max);
}

static void col_free(struct col *c)
{
    h1_parser_free(c->p);
    crisp_md_free(&c->hdrs);
}

static const char *hdr(struct col *c, const char *name)
{
    const struct crisp_hdr *h = crisp_md_get(&c->hdrs, name);
    return h ? (const char *)h->value : NULL;
}

/* Feeds wire cut at the given offsets (sorted). Stops when the parser
 * consumes less than it was given (the message ended). Returns the bytes
 * consumed or the error. */
static ssize_t feed_cuts(struct col *c, const char *wire, size_t len, const size_t *cuts, int ncuts)
{
    size_t start = 0, total = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < start)
            end = start;
        ssize_t k = h1_parser_feed(c->p, (const uint8_t *)wire + start, end - start);
        if (k < 0)
            return k;
        total += (size_t)k;
        if ((size_t)k < end - start)
            return (ssize_t)total;
        start = end;
    }
    return (ssize_t)total;
}

struct expect {
    const char *name;
    const char *wire;
    size_t msg_len;     /* bytes of the message (the rest must not be consumed); 0: all */
    int status;
    const char *body;   /* de-chunked body */
    int complete;       /* on_complete after the feed (before eof) */
    int keepalive;
    int eof_rv;         /* h1_parser_eof result after the feed */
    int eof_complete;   /* completes after eof */
    int no_body;        /* HEAD */
    size_t head_max;
};

static int check_one(const struct expect *e, const size_t *cuts, int ncuts, int verbose)
{
    size_t len = strlen(e->wire);
    size_t msg_len = e->msg_len ? e->msg_len : len;
    struct col c;
    col_init(&c, e->head_max ? e->head_max : 8192);
    if (e->no_body)
        h1_parser_expect_no_body(c.p);
    ssize_t k = feed_cuts(&c, e->wire, len, cuts, ncuts);
    int ok = k == (ssize_t)msg_len && c.heads == 1 && c.status == e->status &&
             c.blen == strlen(e->body) && memcmp(c.body, e->body, c.blen) == 0 &&
             c.completes == e->complete && !c.body_after_complete &&
             h1_parser_keepalive(c.p) == e->keepalive;
    /* Feeding again after the end consumes nothing. */
    if (ok && e->complete && len > msg_len)
        ok = h1_parser_feed(c.p, (const uint8_t *)e->wire + msg_len, len - msg_len) == 0;
    int erv = h1_parser_eof(c.p);
    ok = ok && erv == e->eof_rv && c.completes == e->eof_complete;
    if (!ok && verbose) {
        fprintf(stderr, "  %s: cuts", e->name);
        for (int i = 0; i < ncuts; i++)
            fprintf(stderr, " %zu", cuts[i]);
        fprintf(stderr, ": k=%zd (want %zu) heads=%d status=%d blen=%zu completes=%d ka=%d eof=%d\n",
                k, msg_len, c.heads, c.status, c.blen, c.completes, h1_parser_keepalive(c.p), erv);
    }
    col_free(&c);
    return ok;
}

/* One feed, every single split, every pair of splits (short messages) and
 * byte by byte. */
static void check_all_splits(const struct expect *e)
{
    size_t len = strlen(e->wire);
    int fails = 0;
    fails += !check_one(e, NULL, 0, 1);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        if (!check_one(e, cut, 1, fails < 3))
            fails++;
    }
    if (len <= 160)
        for (size_t i = 1; i < len; i++)
            for (size_t j = i; j < len; j++) {
                size_t cut[2] = {i, j};
                if (!check_one(e, cut, 2, fails < 3))
                    fails++;
            }
    size_t *bytes = malloc(len * sizeof(*bytes));
    for (size_t i = 0; i < len; i++)
        bytes[i] = i + 1;
    if (!check_one(e, bytes, (int)len, fails < 3))
        fails++;
    free(bytes);
    if (fails)
        fprintf(stderr, "  %s: %d failing splits\n", e->name, fails);
    CHECK(fails == 0);
}

#define NEXT "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

static void test_framing(void)
{
    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    static const char chunked[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value;flag\r\nhello\r\n"
        "6 \r\n world\r\n"
        "A\r\n0123456789\r\n"
        "0;last\r\nX-Trailer: yes\r\nX-Other:  two \r\n\r\n";
    static const char chunked_lf[] = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
    static const char nobody204[] = "HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n";
    static const char nm304[] = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                                  "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
    static const char until_close[] = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
                                      "\x01\x01\x01\x01\x01\x01\x01\x04out\n";
    static const char upgraded[] = "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                                   "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nraw bytes HTTP/1.1 200 OK\r\n";
    static const char http10[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    static const char http10ka[] = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
    static const char close_[] = "HTTP/1.1 404 Not Found\r\nConnection: foo, close\r\nContent-Length: 2\r\n\r\nno";
    static const char te_cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    static const char te_gzip[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzzz";
    static const char te_multi[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
    static const char noreason[] = "HTTP/1.1 500\r\ncontent-length: 3\r\n\r\nerr";
    static const char cl_dup[] = "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc";
    static const char cl0[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    static const char head_nolen[] = "HTTP/1.1 200 OK\r\n\r\n";

    char buf[4][512];
    snprintf(buf[0], sizeof(buf[0]), "%s%s", cl, NEXT);
    snprintf(buf[1], sizeof(buf[1]), "%s%s", chunked, NEXT);
    snprintf(buf[2], sizeof(buf[2]), "%s%s", nobody204, NEXT);
    snprintf(buf[3], sizeof(buf[3]), "%s%s", head, NEXT);

    const struct expect ex[] = {
        {"content-length", buf[0], sizeof(cl) - 1, 200, "hello", 1, 1, 0, 1, 0, 0},
        {"chunked", buf[1], sizeof(chunked) - 1, 200, "hello world0123456789", 1, 1, 0, 1, 0, 0},
        {"chunked-lf", chunked_lf, 0, 200, "abc", 1, 1, 0, 1, 0, 0},
        {"204", buf[2], sizeof(nobody204) - 1, 204, "", 1, 1, 0, 1, 0, 0},
        {"304", nm304, 0, 304, "", 1, 1, 0, 1, 0, 0},
        {"interim-1xx", interim, 0, 201, "{}", 1, 1, 0, 1, 0, 0},
        {"until-close", until_close, 0, 200, "\x01\x01\x01\x01\x01\x01\x01\x04out\n", 0, 0, 0, 1, 0, 0},
        {"101", upgraded, 0, 101, "raw bytes HTTP/1.1 200 OK\r\n", 0, 0, 0, 1, 0, 0},
        {"http/1.0", http10, 0, 200, "ok", 1, 0, 0, 1, 0, 0},
        {"http/1.0-keepalive", http10ka, 0, 200, "ok", 1, 1, 0, 1, 0, 0},
        {"connection-close", close_, 0, 404, "no", 1, 0, 0, 1, 0, 0},
        {"te-and-cl", te_cl, 0, 200, "ab", 1, 0, 0, 1, 0, 0},
        {"te-not-chunked", te_gzip, 0, 200, "zzzz", 0, 0, 0, 1, 0, 0},
        {"te-two-headers", te_multi, 0, 200, "z", 1, 1, 0, 1, 0, 0},
        {"no-reason", noreason, 0, 500, "err", 1, 1, 0, 1, 0, 0},
        {"cl-duplicates", cl_dup, 0, 200, "abc", 1, 1, 0, 1, 0, 0},
        {"cl-0", cl0, 0, 200, "", 1, 1, 0, 1, 0, 0},
        {"head", buf[3], sizeof(head) - 1, 200, "", 1, 1, 0, 1, 1, 0},
        {"head-no-length", head_nolen, 0, 200, "", 1, 1, 0, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++)
        check_all_splits(&ex[i]);
}

static void test_headers(void)
{
    static const char w[] = "HTTP/1.1 200 OK\r\n"
                            "Api-Version: 1.41\r\n"
                            "X-Folded: first\r\n"
                            "   second\r\n"
                            "\tthird  \r\n"
                            "Set-Cookie: a=1\r\n"
                            "SET-COOKIE: b=2\r\n"
                            "X-Empty:\r\n"
                            "X-Spaces: \t padded value \t\r\n"
                            "X-Obs: caf\xc3\xa9\r\n"
                            "Content-Length: 0\r\n\r\n";
    struct col c;
    col_init(&c, 8192);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, sizeof(w) - 1) == (ssize_t)sizeof(w) - 1);
    CHECK(c.heads == 1 && c.completes == 1);
    CHECK(hdr(&c, "api-version") && !strcmp(hdr(&c, "api-version"), "1.41"));
    CHECK(hdr(&c, "x-folded") && !strcmp(hdr(&c, "x-folded"), "first second third"));
    CHECK(hdr(&c, "x-empty") && !strcmp(hdr(&c, "x-empty"), ""));
    CHECK(hdr(&c, "x-spaces") && !strcmp(hdr(&c, "x-spaces"), "padded value"));
    CHECK(hdr(&c, "x-obs") && !strcmp(hdr(&c, "x-obs"), "caf\xc3\xa9"));
    int cookies = 0;
    for (size_t i = 0; i < c.hdrs.n; i++)
        if (c.hdrs.v[i].namelen == 10 && !memcmp(c.hdrs.v[i].name, "set-cookie", 10))
            cookies++;
    CHECK(cookies == 2);
    CHECK(crisp_md_get(&c.hdrs, "Api-Version") == NULL); /* names are lowercased */
    col_free(&c);
}

/* Garbage and protocol violations: H1_E_PARSE, reported as soon as the
 * bytes that make it so arrive, and sticky afterwards. */
static void test_garbage(void)
{
    static const struct {
        const char *name, *wire;
        size_t fail_by; /* the error must come once this many bytes were fed (0: at the end) */
    } g[] = {
        {"ssh banner", "SSH-2.0-OpenSSH_9.2\r\n", 1},
        {"html", "<html><body>hi</body></html>", 1},
        {"lowercase http", "http/1.1 200 OK\r\n\r\n", 1},
        {"http/2", "HTTP/2 200\r\n\r\n", 6},
        {"http/1.x", "HTTP/1.x 200 OK\r\n\r\n", 8},
        {"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 11},
        {"status too short", "HTTP/1.1 20\r\n\r\n", 0},
        {"status 099", "HTTP/1.1 099 X\r\n\r\n", 0},
        {"no space after code", "HTTP/1.1 200OK\r\n\r\n", 13},
        {"leading blank line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 1},
        {"nul in reason", "HTTP/1.1 200 O\0K\r\n\r\n", 0},
        {"header without colon", "HTTP/1.1 200 OK\r\nBroken header\r\n\r\n", 0},
        {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", 0},
        {"empty header name", "HTTP/1.1 200 OK\r\n: value\r\n\r\n", 0},
        {"ctl in value", "HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n", 0},
        {"bare cr in value", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 0},
        {"fold first", "HTTP/1.1 200 OK\r\n folded\r\n\r\n", 0},
        {"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", 0},
        {"negative content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0},
        {"empty content-length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", 0},
        {"huge content-length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0},
        {"conflicting content-length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0},
        {"conflicting list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", 0},
        {"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0},
        {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0},
        {"empty chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 0},
        {"chunk size junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n", 0},
        {"chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 0},
        {"no crlf after chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 0},
        {"chunk data too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 0},
        {"bad trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", 0},
        {"ctl in chunk ext", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\x02\r\nz\r\n0\r\n\r\n", 0},
    };
    /* Lengths: some entries hold a NUL, so sizes come from a scan for the
     * final "\r\n" pattern instead of strlen. */
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        size_t len = strlen(g[i].wire);
        if (!strcmp(g[i].name, "nul in reason"))
            len = 20;
        /* whole */
        struct col c;
        col_init(&c, 8192);
        ssize_t k = h1_parser_feed(c.p, (const uint8_t *)g[i].wire, len);
        if (k != H1_E_PARSE)
            fprintf(stderr, "  garbage %s: got %zd\n", g[i].name, k);
        CHECK(k == H1_E_PARSE);
        CHECK(h1_parser_feed(c.p, (const uint8_t *)"x", 1) == H1_E_PARSE);
        CHECK(h1_parser_eof(c.p) == H1_E_PARSE);
        CHECK(h1_parser_keepalive(c.p) == 0);
        col_free(&c);
        /* byte by byte: the error arrives at the latest at fail_by */
        col_init(&c, 8192);
        size_t at = 0;
        for (; at < len; at++) {
            k = h1_parser_feed(c.p, (const uint8_t *)g[i].wire + at, 1);
            if (k < 0)
                break;
        }
        CHECK(k == H1_E_PARSE);
        if (g[i].fail_by && at + 1 > g[i].fail_by) {
            fprintf(stderr, "  garbage %s: error only after %zu bytes\n", g[i].name, at + 1);
            CHECK(!"garbage detected late");
        }
        col_free(&c);
    }
}

static void test_limits(void)
{
    /* head_max counts the status line and the headers, CRLFs included. */
    char w[600];
    int n = snprintf(w, sizeof(w), "HTTP/1.1 200 OK\r\nX-Pad: %0200d\r\nContent-Length: 0\r\n\r\n", 0);
    struct col c;
    col_init(&c, (size_t)n);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, (size_t)n) == n);
    CHECK(c.completes == 1);
    col_free(&c);
    col_init(&c, (size_t)n - 1);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, (size_t)n) == H1_E_TOO_LARGE);
    col_free(&c);
    /* The cap holds the same at every split of the input. */
    static const char exact[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    const struct expect ee = {"exact head_max", exact, 0, 200, "hello", 1, 1, 0, 1, 0, 38};
    check_all_splits(&ee);
    int late = 0;
    for (size_t i = 0; i <= sizeof(exact) - 1; i++)
        for (size_t j = i; j <= sizeof(exact) - 1; j++) {
            col_init(&c, 37);
            size_t cuts[2] = {i, j};
            if (feed_cuts(&c, exact, sizeof(exact) - 1, cuts, 2) != H1_E_TOO_LARGE)
                late++;
            col_free(&c);
        }
    CHECK(late == 0);
    /* Without any line end: refused once past the cap, not at the end. */
    col_init(&c, 64);
    char junk[200];
    memcpy(junk, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(junk + 20, 'a', sizeof(junk) - 20);
    ssize_t k = 0;
    size_t fed = 0;
    for (; fed < sizeof(junk) && k >= 0; fed++)
        k = h1_parser_feed(c.p, (const uint8_t *)junk + fed, 1);
    if (k != H1_E_TOO_LARGE || fed != 65)
        fprintf(stderr, "  no line end: k=%zd fed=%zu\n", k, fed);
    CHECK(k == H1_E_TOO_LARGE && fed == 65);
    col_free(&c);
    /* Many small headers. */
    char big[9000];
    size_t off = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(big + off, sizeof(big) - off, "h%d: v\r\n", i % 10);
    off += (size_t)snprintf(big + off, sizeof(big) - off, "\r\n");
    col_init(&c, 4096);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)big, off) == H1_E_TOO_LARGE);
    col_free(&c);
    col_init(&c, 16384);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)big, off) == (ssize_t)off);
    CHECK(c.hdrs.n == 1000 && c.status == 200);
    col_free(&c);
    /* Trailers have their own cap. */
    char tr[1200];
    n = snprintf(tr, sizeof(tr), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: %0900d\r\n\r\n", 0);
    col_init(&c, 512);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)tr, (size_t)n) == H1_E_TOO_LARGE);
    col_free(&c);
    col_init(&c, 1024);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)tr, (size_t)n) == n && c.completes == 1);
    col_free(&c);
    /* A chunk-size line with an endless extension. */
    char ext[6000];
    n = snprintf(ext, sizeof(ext), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=%05000d\r\nz\r\n0\r\n\r\n", 0);
    col_init(&c, 8192);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)ext, (size_t)n) == H1_E_PARSE);
    col_free(&c);
    /* A large Content-Length body arrives in pieces, in order. */
    static char lbody[65536 + 100];
    n = snprintf(lbody, sizeof(lbody), "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n");
    for (int i = 0; i < 65536; i++)
        lbody[n + i] = (char)('a' + i % 26);
    col_init(&c, 8192);
    size_t total = (size_t)n + 65536;
    fed = 0;
    int ok = 1;
    while (fed < total && ok) {
        size_t step = 1 + (fed * 7919) % 4000;
        if (step > total - fed)
            step = total - fed;
        k = h1_parser_feed(c.p, (const uint8_t *)lbody + fed, step);
        ok = k == (ssize_t)step;
        fed += step;
    }
    CHECK(ok && c.completes == 1 && c.blen == 65536 && memcmp(c.body, lbody + n, 65536) == 0);
    col_free(&c);
}

static void test_eof(void)
{
    static const struct {
        const char *name, *wire;
        int rv, completes;
    } e[] = {
        {"nothing", "", H1_E_IO, 0},
        {"mid status", "HTTP/1.1 20", H1_E_IO, 0},
        {"mid headers", "HTTP/1.1 200 OK\r\nContent-Len", H1_E_IO, 0},
        {"no blank line", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", H1_E_IO, 0},
        {"short body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", H1_E_IO, 0},
        {"mid chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", H1_E_IO, 0},
        {"no last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", H1_E_IO, 0},
        {"mid trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", H1_E_IO, 0},
        {"after interim", "HTTP/1.1 100 Continue\r\n\r\n", H1_E_IO, 0},
        {"complete", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab", 0, 1},
        {"until close, empty", "HTTP/1.1 200 OK\r\n\r\n", 0, 1},
    };
    for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
        struct col c;
        col_init(&c, 8192);
        size_t len = strlen(e[i].wire);
        CHECK(h1_parser_feed(c.p, (const uint8_t *)e[i].wire, len) == (ssize_t)len);
        int rv = h1_parser_eof(c.p);
        if (rv != e[i].rv || c.completes != e[i].completes)
            fprintf(stderr, "  eof %s: rv=%d completes=%d\n", e[i].name, rv, c.completes);
        CHECK(rv == e[i].rv && c.completes == e[i].completes);
        CHECK(h1_parser_eof(c.p) == e[i].rv); /* idempotent */
        if (rv < 0)
            CHECK(h1_parser_keepalive(c.p) == 0);
        col_free(&c);
    }
}

static void test_callbacks(void)
{
    static const char w[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    struct col c;
    col_init(&c, 8192);
    c.abort_head = 1;
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, sizeof(w) - 1) == H1_E_ABORTED);
    CHECK(c.blen == 0 && c.completes == 0);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, 1) == H1_E_ABORTED);
    col_free(&c);

    col_init(&c, 8192);
    c.abort_body = 1;
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, sizeof(w) - 1) == H1_E_ABORTED);
    CHECK(c.heads == 1 && c.blen == 5 && c.completes == 0);
    col_free(&c);

    col_init(&c, 8192);
    c.abort_complete = 1;
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, sizeof(w) - 1) == H1_E_ABORTED);
    col_free(&c);

    /* The caller learns in on_head that the request was HEAD. */
    static const char hw[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" NEXT;
    col_init(&c, 8192);
    c.no_body_in_head = 1;
    ssize_t k = h1_parser_feed(c.p, (const uint8_t *)hw, sizeof(hw) - 1);
    CHECK(k == (ssize_t)(sizeof(hw) - 1 - strlen(NEXT)) && c.completes == 1 && c.blen == 0);
    CHECK(h1_parser_keepalive(c.p) == 1);
    col_free(&c);

    /* No callbacks at all. */
    struct h1_parser *p = h1_parser_new(NULL, NULL, 0);
    CHECK(h1_parser_feed(p, (const uint8_t *)w, sizeof(w) - 1) == (ssize_t)sizeof(w) - 1);
    CHECK(h1_parser_keepalive(p) == 1);
    h1_parser_free(p);
    struct h1_parser_cbs none = {0};
    p = h1_parser_new(&none, NULL, 0);
    CHECK(h1_parser_feed(p, (const uint8_t *)"HTTP/1.1 101 X\r\n\r\nabc", 21) == 21);
    CHECK(h1_parser_eof(p) == 0);
    h1_parser_free(p);

    /* Keep-alive is unknown before the head. */
    col_init(&c, 8192);
    CHECK(h1_parser_keepalive(c.p) == 0);
    CHECK(h1_parser_feed(c.p, (const uint8_t *)w, 10) == 10);
    CHECK(h1_parser_keepalive(c.p) == 0);
    col_free(&c);

    CHECK(strcmp(h1_strerror(H1_E_PARSE), "malformed response") == 0);
    CHECK(strcmp(h1_strerror(12345), "unknown error") == 0);
}

/* Docker's own answers, as seen on the wire. */
static void test_docker_shapes(void)
{
    static const char events[] =
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
        "Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n"
        "Date: Sat, 28 Nov 2026 18:56:23 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1c\r\n{\"status\":\"die\",\"id\":\"abc\"}\n\r\n"
        "1e\r\n{\"Type\":\"network\",\"id\":\"def\"}\n\r\n0\r\n\r\n";
    const struct expect e = {"docker events", events, 0, 200,
                             "{\"status\":\"die\",\"id\":\"abc\"}\n{\"Type\":\"network\",\"id\":\"def\"}\n",
                             1, 1, 0, 1, 0, 0};
    check_all_splits(&e);
    static const char err404[] =
        "HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
        "Date: Sat, 28 Nov 2026 18:46:02 GMT\r\nContent-Length: 43\r\n\r\n"
        "{\"message\":\"No such image: nonexistent:1\"}\n";
    const struct expect e2 = {"docker 404", err404, 0, 404,
                              "{\"message\":\"No such image: nonexistent:1\"}\n", 1, 1, 0, 1, 0, 0};
    check_all_splits(&e2);
}

int main(void)
{
    test_framing();
    test_headers();
    test_garbage();
    test_limits();
    test_eof();
    test_callbacks();
    test_docker_shapes();
    return unit_summary("test_h1");
}
