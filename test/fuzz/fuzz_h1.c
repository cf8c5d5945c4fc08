/* libFuzzer harness for the HTTP/1.1 response parser (src/http1/response_parser.c
 * and head.c).
 *
 *   make fuzz && build/fuzz/fuzz_h1 -max_total_time=60 [corpus dir]
 *
 * Input: byte 0 = flags (bit 0: the request was HEAD, bit 1: a callback
 * aborts in on_head, bits 2-3: head_max 64/512/8192/65536), byte 1 = seed of
 * the split sizes, the rest is the response. The same bytes are parsed once
 * whole and once cut into pieces; both runs must agree (error or not, bytes
 * consumed, status, body, completion, keep-alive), consumed never exceeds
 * what was given, and a body is never delivered after completion. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/h1_parser.h"

struct run {
    int status, heads, completes, abort_head, bad;
    uint64_t hash;
    size_t blen;
};

static int f_head(void *ud, int status, const struct crisp_md *h)
{
    struct run *r = ud;
    r->heads++;
    r->status = status;
    if (status < 100 || status > 999)
        r->bad = 1;
    for (size_t i = 0; i < h->n; i++)
        for (size_t k = 0; k < h->v[i].namelen; k++)
            if (h->v[i].name[k] >= 'A' && h->v[i].name[k] <= 'Z')
                r->bad = 1; /* names are lowercased */
    return r->abort_head ? -1 : 0;
}

static int f_body(void *ud, const uint8_t *p, size_t n)
{
    struct run *r = ud;
    if (n == 0 || r->completes || !r->heads)
        r->bad = 1;
    for (size_t i = 0; i < n; i++)
        r->hash = (r->hash ^ p[i]) * 1099511628211ull;
    r->blen += n;
    return 0;
}

static int f_complete(void *ud)
{
    struct run *r = ud;
    r->completes++;
    return 0;
}

static const struct h1_parser_cbs cbs = {f_head, f_body, f_complete};

static ssize_t parse(const uint8_t *d, size_t n, uint8_t flags, uint8_t seed, int split,
                     struct run *r, int *ka, int *eof_rv)
{
    static const size_t maxes[4] = {64, 512, 8192, 65536};
    memset(r, 0, sizeof(*r));
    r->abort_head = flags & 2;
    struct h1_parser *p = h1_parser_new(&cbs, r, maxes[(flags >> 2) & 3]);
    if (!p)
        abort();
    if (flags & 1)
        h1_parser_expect_no_body(p);
    size_t off = 0, total = 0;
    ssize_t rv = 0;
    uint32_t s = seed * 2654435761u + 1;
    while (off < n) {
        size_t step = n - off;
        if (split) {
            s = s * 1103515245u + 12345u;
            step = 1 + (s >> 16) % 17;
            if (step > n - off)
                step = n - off;
        }
        rv = h1_parser_feed(p, d + off, step);
        if (rv < 0)
            break;
        if ((size_t)rv > step)
            abort();
        total += (size_t)rv;
        if ((size_t)rv < step)
            break; /* the message ended */
        off += step;
    }
    *ka = h1_parser_keepalive(p);
    *eof_rv = h1_parser_eof(p);
    if (h1_parser_eof(p) != *eof_rv)
        abort();
    h1_parser_free(p);
    return rv < 0 ? rv : (ssize_t)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0], seed = data[1];
    data += 2;
    size -= 2;
    struct run a, b;
    int ka_a, ka_b, eof_a, eof_b;
    ssize_t ra = parse(data, size, flags, seed, 0, &a, &ka_a, &eof_a);
    ssize_t rb = parse(data, size, flags, seed, 1, &b, &ka_b, &eof_b);
    if (a.bad || b.bad)
        abort();
    if ((ra < 0) != (rb < 0))
        abort();
    if (ra >= 0 && (ra != rb || a.status != b.status || a.heads != b.heads ||
                    a.completes != b.completes || a.blen != b.blen || a.hash != b.hash ||
                    ka_a != ka_b || eof_a != eof_b))
        abort();
    if (ra >= 0 && (size_t)ra > size)
        abort();
    return 0;
}
