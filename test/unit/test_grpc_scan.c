/* Unit tests for grpc_scan.c: prefixes checked on the fly, at every split. */
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc_scan.h"
#include "unit.h"

struct sink {
    uint8_t buf[2048];
    size_t len;
    int calls;
};

static int collect(void *ud, const uint8_t *p, size_t n)
{
    struct sink *k = ud;
    if (k->len + n <= sizeof(k->buf))
        memcpy(k->buf + k->len, p, n);
    k->len += n;
    k->calls++;
    return 0;
}

static int refuse(void *ud, const uint8_t *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
    return -42;
}

/* Builds 0-, 3- and 300-byte messages, then optionally a bad prefix and 10
 * bytes after it. Returns the length; *good is where the bad prefix starts. */
static size_t build(uint8_t *wire, int bad, size_t *good)
{
    size_t off = 0;
    grpc_prefix_write(wire + off, 0);
    off += 5;
    grpc_prefix_write(wire + off, 3);
    off += 5;
    memcpy(wire + off, "abc", 3);
    off += 3;
    grpc_prefix_write(wire + off, 300);
    off += 5;
    memset(wire + off, 'z', 300);
    off += 300;
    *good = off;
    if (bad) {
        grpc_prefix_write(wire + off, bad == 1 ? 1001 : 3);
        if (bad == 2)
            wire[off] = 1; /* compressed */
        off += 5;
        memset(wire + off, 'q', 10);
        off += 10;
    }
    return off;
}

/* Every chunk size: the output is the input, byte for byte, and nothing of
 * a refused message goes out, wherever the cuts fall. */
static void test_splits(void)
{
    for (int bad = 0; bad <= 2; bad++) {
        uint8_t wire[400];
        size_t good;
        size_t len = build(wire, bad, &good);
        int ok = 1;
        for (size_t step = 1; step <= len; step++) {
            struct grpc_scan sc;
            struct sink k = {{0}, 0, 0};
            grpc_scan_init(&sc, 1000);
            int rv = 0;
            for (size_t i = 0; i < len && rv == 0; i += step)
                rv = grpc_scan_feed(&sc, wire + i, len - i < step ? len - i : step, collect, &k);
            int want = bad == 0 ? 0 : bad == 1 ? GRPC_E_TOO_LARGE : GRPC_E_COMPRESSED;
            size_t want_len = bad ? good : len;
            if (rv != want || k.len != want_len || memcmp(k.buf, wire, want_len) != 0 ||
                sc.nmsgs != 3 || (!bad && grpc_scan_partial(&sc)) ||
                (bad == 1 && sc.declared != 1001)) {
                fprintf(stderr, "  bad=%d step %zu: rv=%d out=%zu nmsgs=%u\n", bad, step, rv,
                        k.len, sc.nmsgs);
                ok = 0;
            }
        }
        CHECK(ok);
    }
}

static void test_whole_feed_is_one_span(void)
{
    uint8_t wire[400];
    size_t good;
    size_t len = build(wire, 0, &good);
    struct grpc_scan sc;
    struct sink k = {{0}, 0, 0};
    grpc_scan_init(&sc, 1000);
    CHECK(grpc_scan_feed(&sc, wire, len, collect, &k) == 0);
    CHECK(k.calls == 1);
    CHECK(k.len == len);
}

static void test_partial(void)
{
    uint8_t p[5];
    struct grpc_scan sc;
    struct sink k = {{0}, 0, 0};
    grpc_scan_init(&sc, 100);
    grpc_prefix_write(p, 4);
    CHECK(grpc_scan_feed(&sc, p, 3, collect, &k) == 0);
    CHECK(k.len == 0); /* a cut prefix is held */
    CHECK(grpc_scan_partial(&sc));
    CHECK(grpc_scan_feed(&sc, p + 3, 2, collect, &k) == 0);
    CHECK(k.len == 5);
    CHECK(grpc_scan_partial(&sc)); /* 4 message bytes to come */
    CHECK(grpc_scan_feed(&sc, (const uint8_t *)"wxyz", 4, collect, &k) == 0);
    CHECK(!grpc_scan_partial(&sc));
    CHECK(sc.nmsgs == 1);
    /* the cap itself is allowed */
    grpc_prefix_write(p, 100);
    CHECK(grpc_scan_feed(&sc, p, 5, collect, &k) == 0);
    CHECK(sc.msg_left == 100);
}

static void test_emit_error(void)
{
    uint8_t p[5];
    struct grpc_scan sc;
    grpc_scan_init(&sc, 100);
    grpc_prefix_write(p, 1);
    CHECK(grpc_scan_feed(&sc, p, 5, refuse, NULL) == -42);
}

int main(void)
{
    test_splits();
    test_whole_feed_is_one_span();
    test_partial();
    test_emit_error();
    return unit_summary("test_grpc_scan");
}
