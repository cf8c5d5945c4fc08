/* libFuzzer harness for the gRPC framing codecs (src/core/grpc.c and
 * grpc_scan.c): the request reader, the response prefix scanner,
 * grpc-timeout parsing and grpc-message percent-coding.
 *
 *   make fuzz && build/fuzz/fuzz_grpc -max_total_time=60 test/fuzz/corpus/grpc
 *
 * Input: byte 0 = the cap on one message (64 << (b % 16) bytes), byte 1 =
 * seed of the split sizes, the rest is a message stream. The reader and the
 * scanner see the same bytes, whole and cut into pieces; they must agree
 * with each other and with themselves: the same messages (count, lengths,
 * contents), the same error, the scanner emitting exactly the bytes before
 * its error, never more than it was given. The first 40 bytes also go to
 * the timeout parser (formatting what it parses must parse back) and the
 * whole input round-trips through percent-coding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "crisp/grpc_scan.h"

struct seen {
    unsigned n;
    uint64_t hash;
    size_t bytes;
};

static void mix(struct seen *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ p[i]) * 1099511628211ull;
    s->bytes += n;
}

static int on_msg(void *ud, uint8_t *msg, size_t len)
{
    struct seen *s = ud;
    s->n++;
    uint8_t pfx[GRPC_PREFIX_LEN];
    grpc_prefix_write(pfx, len);
    mix(s, pfx, sizeof(pfx));
    mix(s, msg, len);
    free(msg);
    return 0;
}

static int on_emit(void *ud, const uint8_t *p, size_t n)
{
    mix(ud, p, n);
    return 0;
}

/* Feeds data in pieces whose sizes come from seed (0: whole). */
static int read_all(const uint8_t *d, size_t n, size_t cap, unsigned seed, struct seen *out)
{
    struct grpc_reader r;
    grpc_reader_init(&r, cap);
    int rv = 0;
    for (size_t off = 0; off < n && rv == 0;) {
        size_t k = seed ? 1 + (seed = seed * 1103515245 + 12345) % 37 : n;
        if (k > n - off)
            k = n - off;
        rv = grpc_reader_feed(&r, d + off, k, on_msg, out);
        off += k;
    }
    grpc_reader_free(&r);
    return rv;
}

static int scan_all(const uint8_t *d, size_t n, size_t cap, unsigned seed, struct seen *out,
                    unsigned *nmsgs)
{
    struct grpc_scan sc;
    grpc_scan_init(&sc, cap);
    int rv = 0;
    for (size_t off = 0; off < n && rv == 0;) {
        size_t k = seed ? 1 + (seed = seed * 1103515245 + 12345) % 37 : n;
        if (k > n - off)
            k = n - off;
        rv = grpc_scan_feed(&sc, d + off, k, on_emit, out);
        off += k;
    }
    if (out->bytes > n)
        abort();
    *nmsgs = sc.nmsgs;
    return rv;
}

static void timeouts(const uint8_t *d, size_t n)
{
    int64_t us, us2;
    char buf[16];
    if (grpc_timeout_parse((const char *)d, n < 40 ? n : 40, &us) == 0) {
        size_t l = grpc_timeout_format(us, buf);
        if (l >= 16 || grpc_timeout_parse(buf, l, &us2) < 0 || us2 < us)
            abort(); /* never a shorter deadline than asked for */
    }
}

static void percent(const uint8_t *d, size_t n)
{
    size_t need = grpc_percent_encode((const char *)d, n, NULL, 0);
    char *enc = malloc(need + 1);
    if (!enc)
        return;
    grpc_percent_encode((const char *)d, n, enc, need);
    char *dec = grpc_percent_decode(enc, need);
    /* a NUL in the input ends the decoded string early: compare up to it */
    if (dec && strncmp(dec, (const char *)d, strnlen((const char *)d, n)) != 0 &&
        memchr(d, 0, n) == NULL)
        abort();
    free(dec);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cap = (size_t)64 << (data[0] % 16);
    unsigned seed = data[1] | 1u;
    const uint8_t *d = data + 2;
    size_t n = size - 2;
    struct seen whole = {0}, cut = {0}, sw = {0}, sc = {0};
    unsigned nw, nc;
    int rw = read_all(d, n, cap, 0, &whole), rc = read_all(d, n, cap, seed, &cut);
    int sw_rv = scan_all(d, n, cap, 0, &sw, &nw), sc_rv = scan_all(d, n, cap, seed, &sc, &nc);
    if (rw != rc || whole.n != cut.n || whole.hash != cut.hash)
        abort(); /* the reader depends on how the bytes were cut */
    if (sw_rv != sc_rv || sw.hash != sc.hash || nw != nc)
        abort(); /* so does the scanner */
    /* the scanner counts a message at its prefix, the reader once whole:
     * the last one may be incomplete */
    if (rw != sw_rv || nw < whole.n || nw > whole.n + 1 || (rw == 0 && sw.bytes < whole.bytes))
        abort(); /* reader and scanner disagree */
    timeouts(d, n);
    percent(d, n);
    return 0;
}
