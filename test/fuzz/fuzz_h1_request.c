/* libFuzzer harness for the HTTP/1.1 request-head parser
 * (src/http1/request_parser.c and head.c), the streaming server's first
 * reader of a client's bytes.
 *
 *   make fuzz && build/fuzz/fuzz_h1_request -max_total_time=60 [corpus dir]
 *
 * Input: byte 0 = head_max choice (64/512/8192/65536) and split seed, the
 * rest is the request. Parsed whole and in pieces; both runs must agree
 * (error, bytes consumed, method, target, field count), consumed never
 * exceeds what was given, names are lowercased, values NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/h1_parser.h"

struct out {
    ssize_t err;
    size_t used;
    int done;
    char method[32];
    char target[64];
    size_t nfields;
};

static void check_fields(const struct h1_reqp *p)
{
    const struct crisp_md *md = h1_reqp_fields(p);
    for (size_t i = 0; i < md->n; i++) {
        for (size_t k = 0; k < md->v[i].namelen; k++)
            if (md->v[i].name[k] >= 'A' && md->v[i].name[k] <= 'Z')
                abort();
        if (md->v[i].value[md->v[i].valuelen] != 0)
            abort();
    }
}

static void run(const uint8_t *d, size_t n, size_t max, unsigned seed, struct out *o)
{
    struct h1_reqp *p = h1_reqp_new(max);
    if (!p)
        return;
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (off < n) {
        size_t piece = seed ? 1 + (seed + off * 7) % 13 : n - off;
        if (piece > n - off)
            piece = n - off;
        ssize_t k = h1_reqp_feed(p, d + off, piece);
        if (k < 0) {
            o->err = k;
            break;
        }
        if ((size_t)k > piece)
            abort();
        o->used += (size_t)k;
        if ((size_t)k < piece)
            break; /* the head ended */
        off += piece;
    }
    o->done = h1_reqp_done(p);
    if (o->done) {
        strncpy(o->method, h1_reqp_method(p), sizeof(o->method) - 1);
        strncpy(o->target, h1_reqp_target(p), sizeof(o->target) - 1);
        o->nfields = h1_reqp_fields(p)->n;
        check_fields(p);
    }
    h1_reqp_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t maxes[4] = {64, 512, 8192, 65536};
    size_t max = maxes[data[0] & 3];
    unsigned seed = data[0] >> 2;
    struct out a, b;
    run(data + 1, size - 1, max, 0, &a);
    run(data + 1, size - 1, max, seed | 1, &b);
    if (a.done != b.done || (a.err != 0) != (b.err != 0) || a.nfields != b.nfields ||
        strcmp(a.method, b.method) || strcmp(a.target, b.target))
        abort();
    if (a.done && a.used != b.used)
        abort();
    return 0;
}
