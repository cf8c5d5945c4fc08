/* Unit tests for grpc.c: message framing, timeouts, grpc-message. */
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "unit.h"

struct got {
    int n;
    size_t lens[8];
    uint8_t first[8];
};

static int collect(void *ud, uint8_t *msg, size_t len)
{
    struct got *g = ud;
    if (g->n < 8) {
        g->lens[g->n] = len;
        g->first[g->n] = len ? msg[0] : 0;
    }
    g->n++;
    free(msg);
    return 0;
}

/* Three messages (0, 3 and 300 bytes) fed in every split size. */
static void test_reader_splits(void)
{
    uint8_t wire[5 + 5 + 3 + 5 + 300];
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
    for (size_t step = 1; step <= off; step++) {
        struct grpc_reader r;
        struct got g = {0};
        grpc_reader_init(&r, 1000);
        int rv = 0;
        for (size_t i = 0; i < off && rv == 0; i += step)
            rv = grpc_reader_feed(&r, wire + i, off - i < step ? off - i : step, collect, &g);
        if (rv != 0 || g.n != 3 || g.lens[0] != 0 || g.lens[1] != 3 || g.first[1] != 'a' ||
            g.lens[2] != 300 || g.first[2] != 'z' || grpc_reader_pending(&r) != 0) {
            CHECK(!"split feed");
            fprintf(stderr, "  step %zu: rv=%d n=%d\n", step, rv, g.n);
        } else {
            CHECK(1);
        }
        grpc_reader_free(&r);
    }
}

static void test_reader_errors(void)
{
    struct grpc_reader r;
    struct got g = {0};
    uint8_t p[5];

    grpc_reader_init(&r, 100);
    grpc_prefix_write(p, 101);
    CHECK(grpc_reader_feed(&r, p, 5, collect, &g) == GRPC_E_TOO_LARGE);
    CHECK(r.declared == 101);
    grpc_reader_free(&r);

    grpc_reader_init(&r, 100);
    grpc_prefix_write(p, 100);
    CHECK(grpc_reader_feed(&r, p, 5, collect, &g) == 0);
    CHECK(grpc_reader_pending(&r) == 5);
    CHECK(grpc_reader_feed(&r, (const uint8_t *)"xy", 2, collect, &g) == 0);
    CHECK(grpc_reader_pending(&r) == 7); /* truncated if the stream ends now */
    grpc_reader_free(&r);

    grpc_reader_init(&r, 100);
    p[0] = 1; /* compressed flag */
    CHECK(grpc_reader_feed(&r, p, 5, collect, &g) == GRPC_E_COMPRESSED);
    grpc_reader_free(&r);

    grpc_reader_init(&r, 100);
    CHECK(grpc_reader_feed(&r, p, 3, collect, &g) == 0);
    CHECK(grpc_reader_pending(&r) == 3);
    grpc_reader_free(&r);
    CHECK(g.n == 0);

    /* 4 GiB - 1 declared: refused from the prefix, before any allocation */
    static const uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    grpc_reader_init(&r, 16 << 20);
    CHECK(grpc_reader_feed(&r, huge, 5, collect, &g) == GRPC_E_TOO_LARGE);
    CHECK(r.msg == NULL);
    grpc_reader_free(&r);
}

static void test_timeouts(void)
{
    int64_t us;
    CHECK(grpc_timeout_parse("1S", 2, &us) == 0 && us == 1000000);
    CHECK(grpc_timeout_parse("120000m", 7, &us) == 0 && us == 120000000);
    CHECK(grpc_timeout_parse("2H", 2, &us) == 0 && us == 7200LL * 1000000);
    CHECK(grpc_timeout_parse("3M", 2, &us) == 0 && us == 180000000);
    CHECK(grpc_timeout_parse("1500n", 5, &us) == 0 && us == 2);
    CHECK(grpc_timeout_parse("99999999u", 9, &us) == 0 && us == 99999999);
    CHECK(grpc_timeout_parse("123456789S", 10, &us) < 0); /* 9 digits */
    CHECK(grpc_timeout_parse("S", 1, &us) < 0);
    CHECK(grpc_timeout_parse("10x", 3, &us) < 0);
    CHECK(grpc_timeout_parse("-1S", 3, &us) < 0);
    CHECK(grpc_timeout_parse("1 S", 3, &us) < 0);

    char buf[16];
    int64_t cases[] = {1, 999, 1000, 12345678, 100000000, 3600LL * 1000000 * 48, 0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = grpc_timeout_format(cases[i], buf);
        CHECK(n > 1 && n < 16 && strlen(buf) == n);
        CHECK(grpc_timeout_parse(buf, n, &us) == 0);
        /* never shorter than asked, at most one unit longer */
        int64_t want = cases[i] < 1 ? 1 : cases[i];
        CHECK(us >= want);
        CHECK(us - want < 60000000);
    }
}

static void test_percent(void)
{
    const char *in = "bad %id\n\xc3\xa9 ok";
    size_t need = grpc_percent_encode(in, strlen(in), NULL, 0);
    char *enc = malloc(need + 1);
    CHECK(grpc_percent_encode(in, strlen(in), enc, need) == need);
    enc[need] = 0;
    CHECK(strcmp(enc, "bad %25id%0A%C3%A9 ok") == 0);
    char *dec = grpc_percent_decode(enc, need);
    CHECK(dec && strcmp(dec, in) == 0);
    free(dec);
    free(enc);
    dec = grpc_percent_decode("50%", 3); /* stray % kept as is */
    CHECK(dec && strcmp(dec, "50%") == 0);
    free(dec);
    dec = grpc_percent_decode("%zz%4", 5);
    CHECK(dec && strcmp(dec, "%zz%4") == 0);
    free(dec);
}

static void test_codes(void)
{
    CHECK(strcmp(grpc_code_to_str(GRPC_UNAVAILABLE), "UNAVAILABLE") == 0);
    CHECK(strcmp(grpc_code_to_str(99), "UNKNOWN_CODE") == 0);
    CHECK(grpc_code_from_http_status(404) == GRPC_UNIMPLEMENTED);
    CHECK(grpc_code_from_http_status(503) == GRPC_UNAVAILABLE);
    CHECK(grpc_code_from_http_status(500) == GRPC_UNKNOWN);
}

int main(void)
{
    test_reader_splits();
    test_reader_errors();
    test_timeouts();
    test_percent();
    test_codes();
    return unit_summary("test_grpc");
}
