/* libFuzzer harness for crispctl's trace reader (src/ctl/trace_read.c).
 *
 *   make fuzz && build/fuzz/fuzz_trace_read -max_total_time=60
 *
 * Input: a trace file's bytes. Each line goes through trace_rec_parse (a
 * record it accepts must have a known kind, a time, and strings where it
 * says so); the whole input goes through the line reader with a small cap
 * (lines over it are skipped, never cut into records), and both ways must
 * see the same lines under the cap. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/trace_read.h"

#define CAP 256

static void check_rec(const struct trace_rec *r)
{
    if (r->kind > TREC_DROPPED || !r->root)
        abort();
    if (r->method && strlen(r->method) > (size_t)1 << 30)
        abort();
    if (r->request && !cJSON_IsObject(r->request))
        abort();
}

static unsigned parse_lines(const uint8_t *data, size_t size)
{
    unsigned short_lines = 0;
    size_t start = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        struct trace_rec r;
        char err[256];
        if (trace_rec_parse((const char *)data + start, i - start, &r, err, sizeof(err)) == 0) {
            check_rec(&r);
            trace_rec_free(&r);
        }
        short_lines += i - start <= CAP;
        start = i + 1;
    }
    return short_lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned want = parse_lines(data, size), got = 0;
    FILE *f = fmemopen((void *)data, size ? size : 1, "r");
    if (!f || !size) {
        if (f)
            fclose(f);
        return 0;
    }
    struct trace_reader rd;
    char *line;
    size_t n;
    int rc;
    trace_reader_init(&rd, f, CAP);
    while ((rc = trace_reader_next(&rd, &line, &n)) != 0) {
        if (rc > 0 && (n > CAP || strlen(line) > n))
            abort();
        got += rc > 0;
    }
    trace_reader_free(&rd);
    fclose(f);
    if (got != want)
        abort();
    return 0;
}
