/* Unit tests for container logs (src/docker/logfmt.c): the engine's log
 * stream -> CRI log lines, resumes and replays, a log file's tail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/buf.h"
#include "docker/codec.h"
#include "unit.h"

/* One multiplexed frame: [stream,0,0,0,size] + "ts text". */
static size_t frame(uint8_t *out, int stream, const char *ts, const char *text, size_t tl)
{
    size_t n = strlen(ts) + 1 + tl;
    out[0] = (uint8_t)stream, out[1] = out[2] = out[3] = 0;
    out[4] = (uint8_t)(n >> 24), out[5] = (uint8_t)(n >> 16), out[6] = (uint8_t)(n >> 8), out[7] = (uint8_t)n;
    memcpy(out + 8, ts, strlen(ts));
    out[8 + strlen(ts)] = ' ';
    memcpy(out + 9 + strlen(ts), text, tl);
    return 8 + n;
}

static const char *T1 = "2026-11-29T14:02:12.071174865Z", *T2 = "2026-11-29T14:02:12.071178532Z",
                  *T0 = "2026-11-29T14:02:11.000000000Z";

/* Feeds bytes one at a time (cut anywhere), then checks the output. */
static int feed_all(struct dk_logconv *c, const uint8_t *p, size_t n, int bytewise)
{
    size_t step = bytewise ? 1 : n;
    for (size_t i = 0; i < n; i += step)
        if (dk_logconv_feed(c, p + i, n - i < step ? n - i : step) != (n - i < step ? n - i : step))
            return -1;
    return 0;
}

static void test_frames(void)
{
    uint8_t in[4096];
    size_t n = 0;
    n += frame(in + n, 1, T1, "hello\n", 6);
    n += frame(in + n, 2, T2, "oops\n", 5);
    n += frame(in + n, 1, T2, "partial", 7);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct crisp_buf out;
        crisp_buf_init(&out, 1 << 20);
        struct dk_logconv *c = malloc(sizeof(*c));
        dk_logconv_init(c, 0, &out);
        CHECK(feed_all(c, in, n, bytewise) == 0 && dk_logconv_finish(c) == 0);
        char want[512];
        snprintf(want, sizeof(want), "%s stdout F hello\n%s stderr F oops\n%s stdout P partial\n", T1, T2, T2);
        CHECK(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0);
        CHECK(strcmp(c->last_ts, T2) == 0 && c->last_n == 2 && c->lines == 3);
        crisp_buf_free(&out);
        free(c);
    }
}

static void test_long_line_and_tty(void)
{
    size_t tl = DK_LOG_LINE_MAX * 2 + 10;
    char *text = malloc(tl + 1);
    memset(text, 'x', tl);
    text[tl - 1] = '\n';
    uint8_t *in = malloc(tl + 128);
    size_t n = frame(in, 1, T1, text, tl);
    struct crisp_buf out;
    crisp_buf_init(&out, 1 << 20);
    struct dk_logconv *c = malloc(sizeof(*c));
    dk_logconv_init(c, 0, &out);
    CHECK(dk_logconv_feed(c, in, n) == n);
    CHECK(c->lines == 3); /* P, P, F: 16 KiB pieces */
    char *s = (char *)out.data;
    CHECK(strstr(s, " stdout P ") == s + strlen(T1) && strstr(s, " stdout F ") != NULL);
    crisp_buf_free(&out);
    /* a TTY: no frames, lines end at '\n' */
    crisp_buf_init(&out, 1 << 20);
    dk_logconv_init(c, 1, &out);
    char tty[256];
    int tn = snprintf(tty, sizeof(tty), "%s one\r\n%s two", T1, T2);
    CHECK(dk_logconv_feed(c, (const uint8_t *)tty, (size_t)tn) == (size_t)tn && dk_logconv_finish(c) == 0);
    char want[256];
    snprintf(want, sizeof(want), "%s stdout F one\r\n%s stdout F two\n", T1, T2);
    CHECK(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        fprintf(stderr, "got: %.*s\n", (int)out.len, (const char *)out.data);
    crisp_buf_free(&out);
    free(c);
    free(in);
    free(text);
}

static void test_resume_and_replay(void)
{
    uint8_t in[4096];
    size_t n = 0;
    n += frame(in + n, 1, T0, "old\n", 4);     /* before the resume point: dropped */
    n += frame(in + n, 1, T1, "a\n", 2);       /* T1 x2 in the file already */
    n += frame(in + n, 1, T1, "b\n", 2);
    n += frame(in + n, 1, T1, "c\n", 2);       /* the third line of T1: new */
    n += frame(in + n, 1, T2, "d\n", 2);
    n += frame(in + n, 1, T1, "replayed\n", 9); /* its stream went back: a replay */
    n += frame(in + n, 2, T1, "err\n", 4);     /* stderr's own order */
    struct crisp_buf out;
    crisp_buf_init(&out, 1 << 20);
    struct dk_logconv *c = malloc(sizeof(*c));
    dk_logconv_init(c, 0, &out);
    dk_logconv_resume(c, T1, 2);
    CHECK(dk_logconv_feed(c, in, n) == n);
    char want[512];
    snprintf(want, sizeof(want), "%s stdout F c\n%s stdout F d\n%s stderr F err\n", T1, T2, T1);
    CHECK(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0);
    CHECK(c->replays == 1);
    crisp_buf_free(&out);
    /* a full output buffer: fewer bytes taken, nothing lost after a flush */
    crisp_buf_init(&out, 64);
    dk_logconv_init(c, 0, &out);
    size_t m = 0, used = 0, lines = 0;
    m += frame(in + m, 1, T1, "first line\n", 11);
    m += frame(in + m, 1, T2, "second line\n", 12);
    for (int rounds = 0; (used < m || c->end_pending) && rounds < 10; rounds++) {
        used += dk_logconv_feed(c, in + used, m - used);
        lines += out.len ? 1 : 0;
        crisp_buf_reset(&out);
    }
    CHECK(c->lines == 2 && lines == 2);
    crisp_buf_free(&out);
    free(c);
}

static void test_tail(void)
{
    char ts[DK_LOG_TS_MAX] = "", buf[512];
    size_t count, complete;
    int to_start;
    int n = snprintf(buf, sizeof(buf), "%s stdout F a\n%s stdout F b\n%s stderr F c\n%s stdout P cut-by-a-cr",
                     T0, T1, T1, T2);
    CHECK(dk_log_tail(buf, (size_t)n, ts, &count, &complete, &to_start) == 0);
    CHECK(strcmp(ts, T1) == 0 && count == 2 && buf[complete - 1] == '\n' && complete < (size_t)n && !to_start);
    /* the time given: its lines counted, back to the start */
    n = snprintf(buf, sizeof(buf), "%s stdout F a\n%s stdout F b\n", T1, T1);
    CHECK(dk_log_tail(buf, (size_t)n, ts, &count, &complete, &to_start) == 0 && count == 2 && to_start);
    ts[0] = 0;
    CHECK(dk_log_tail("garbage\n", 8, ts, &count, &complete, &to_start) < 0);
    ts[0] = 0;
    CHECK(dk_log_tail("", 0, ts, &count, &complete, &to_start) < 0);
    char since[40];
    CHECK(dk_log_since(T1, since, sizeof(since)) == 0 && strcmp(since, "1795960932.071174865") == 0);
    CHECK(dk_log_since("2026-11-29T14:02:12Z", since, sizeof(since)) == 0 &&
          strcmp(since, "1795960932.000000000") == 0);
    CHECK(dk_log_since("nope", since, sizeof(since)) < 0);
}

int main(void)
{
    test_frames();
    test_long_line_and_tty();
    test_resume_and_replay();
    test_tail();
    return unit_summary("test_docker_logs");
}
