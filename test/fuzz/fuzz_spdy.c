/* libFuzzer harness for the SPDY/3.1 codec (src/stream/spdy.c): frames and
 * zlib header blocks from a client.
 *
 *   make fuzz && build/fuzz/fuzz_spdy -max_total_time=60 [corpus dir]
 *
 * Input: byte 0 = split seed; the rest are the client's bytes, prefixed
 * with a valid SYN_STREAM (so the fuzzer also reaches later header blocks
 * of a primed zlib stream when byte 1 is odd). Fed whole and in pieces;
 * both runs must agree on the error and on every callback, in order; each
 * header set is re-encoded by the writer and read back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/spdy.h"

struct log {
    uint64_t h;
    unsigned n;
};

static void mix(struct log *l, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        l->h = (l->h ^ b[i]) * 1099511628211ull;
    l->n++;
}

static int c_syn(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *h)
{
    mix(ud, &id, 4);
    for (size_t i = 0; i < h->n; i++) {
        mix(ud, h->v[i].name, h->v[i].namelen);
        mix(ud, h->v[i].value, h->v[i].valuelen);
    }
    /* what we read, our writer writes and we read back the same */
    struct spdy *w = spdy_new(&(struct spdy_cbs){0}, NULL);
    struct crisp_buf b;
    crisp_buf_init(&b, 1 << 20);
    if (w && spdy_put_syn_reply(w, &b, id, 0, h) == 0 && b.len < 8)
        abort();
    crisp_buf_free(&b);
    spdy_free(w);
    return 0;
}

static int c_hdr(void *ud, uint32_t id, uint8_t f, const struct crisp_md *h)
{
    mix(ud, &id, 4);
    return 0;
}

static int c_data(void *ud, uint32_t id, const uint8_t *p, size_t n)
{
    /* pieces differ between runs: hash the bytes, not the calls */
    struct log *l = ud;
    unsigned keep = l->n;
    mix(l, p, n);
    l->n = keep;
    return 0;
}

static int c_fin(void *ud, uint32_t id)
{
    mix(ud, "fin", 3);
    mix(ud, &id, 4);
    return 0;
}

static int c_rst(void *ud, uint32_t id, uint32_t st)
{
    mix(ud, &st, 4);
    return 0;
}

static int c_ping(void *ud, uint32_t id)
{
    mix(ud, &id, 4);
    return 0;
}

static int c_goaway(void *ud, uint32_t last, uint32_t st)
{
    mix(ud, &last, 4);
    return 0;
}

static const struct spdy_cbs cbs = {c_syn, c_hdr, c_data, c_fin, c_rst, c_ping, c_goaway};

static ssize_t run(const uint8_t *d, size_t n, unsigned seed, struct log *l)
{
    struct spdy *s = spdy_new(&cbs, l);
    if (!s)
        return 0;
    ssize_t rv = 0;
    size_t off = 0;
    while (off < n) {
        size_t piece = seed ? 1 + (seed * 31 + off) % 29 : n - off;
        if (piece > n - off)
            piece = n - off;
        rv = spdy_feed(s, d + off, piece);
        if (rv < 0)
            break;
        if ((size_t)rv != piece)
            abort();
        off += piece;
    }
    spdy_free(s);
    return rv < 0 ? rv : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct crisp_buf in;
    crisp_buf_init(&in, 1 << 24);
    if (data[1] & 1) {
        struct spdy *w = spdy_new(&cbs, NULL);
        struct crisp_md md;
        crisp_md_init(&md, 1 << 16);
        crisp_md_add(&md, (const uint8_t *)"streamtype", 10, (const uint8_t *)"stdin", 5);
        spdy_put_syn_stream(w, &in, 1, 0, &md);
        crisp_md_free(&md);
        spdy_free(w);
    }
    crisp_buf_append(&in, data + 2, size - 2);
    struct log a = {0}, b = {0};
    ssize_t ea = run(in.data, in.len, 0, &a);
    ssize_t eb = run(in.data, in.len, data[0] | 1, &b);
    if (ea != eb || a.h != b.h || a.n != b.n)
        abort();
    crisp_buf_free(&in);
    return 0;
}
