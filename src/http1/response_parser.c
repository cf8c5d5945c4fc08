/* response_parser.c - the HTTP/1.1 response parser (h1_parser.h).
 *
 * A byte-at-a-time-safe state machine. The head (status line and headers)
 * is read by head.c under head_max; the trailers of a chunked body get
 * their own head_max. Body bytes are handed to on_body straight from the
 * input, never copied. Framing follows RFC 9112 section 6.3: HEAD/1xx/204/
 * 304 have no body, 101 and a response without Content-Length or chunked
 * coding read until the connection closes, Transfer-Encoding beats
 * Content-Length (and forbids reuse), conflicting Content-Lengths are an
 * error. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "head.h"

#define H1_CHUNK_LINE_MAX 4096

enum p_state {
    P_STATUS = 0,
    P_HEADER,
    P_BODY_LEN,
    P_CHUNK_SIZE,
    P_CHUNK_DATA,
    P_CHUNK_CRLF,
    P_TRAILER,
    P_BODY_EOF,
    P_DONE,
    P_ERROR,
};

enum p_body {
    B_NONE = 0,
    B_LENGTH,
    B_CHUNKED,
    B_EOF,
};

struct h1_parser {
    struct h1_parser_cbs cbs;
    void *ud;
    enum p_state state;
    enum p_body body;
    int err;
    struct h1_head head;    /* why lives here too */
    int status;
    int minor;
    uint64_t remaining;     /* of the Content-Length body or of the chunk */
    uint64_t body_bytes;
    unsigned no_body : 1;
    unsigned head_done : 1;
    unsigned keepalive : 1;
    unsigned yield : 1;     /* return from feed after this callback */
};

/* ---- life ----------------------------------------------------------------- */

struct h1_parser *h1_parser_new(const struct h1_parser_cbs *cbs, void *ud, size_t head_max)
{
    struct h1_parser *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    memset(p, 0, sizeof(*p));
    if (cbs)
        p->cbs = *cbs;
    p->ud = ud;
    h1_head_init(&p->head, head_max);
    return p;
}

void h1_parser_free(struct h1_parser *p)
{
    if (!p)
        return;
    h1_head_free(&p->head);
    free(p);
}

void h1_parser_reset(struct h1_parser *p)
{
    struct h1_parser_cbs cbs = p->cbs;
    void *ud = p->ud;
    size_t max = p->head.max;
    h1_head_free(&p->head);
    memset(p, 0, sizeof(*p));
    p->cbs = cbs;
    p->ud = ud;
    h1_head_init(&p->head, max);
}

void h1_parser_expect_no_body(struct h1_parser *p)
{
    p->no_body = 1;
}

void h1_parser_yield(struct h1_parser *p)
{
    p->yield = 1;
}

int h1_parser_keepalive(const struct h1_parser *p)
{
    return p->head_done && p->state != P_ERROR && p->keepalive;
}

int h1_parser_done(const struct h1_parser *p)
{
    return p->state == P_DONE;
}

int h1_parser_reads_until_close(const struct h1_parser *p)
{
    return p->state == P_BODY_EOF;
}

const char *h1_parser_why(const struct h1_parser *p)
{
    return p->head.why;
}

/* ---- failing and completing ------------------------------------------------ */

/* The error already described in head.why. */
static int p_error(struct h1_parser *p, int err)
{
    assert(err < 0);
    p->state = P_ERROR;
    p->err = err;
    p->keepalive = 0;
    return err;
}

static int p_fail(struct h1_parser *p, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int p_fail(struct h1_parser *p, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->head.why, sizeof(p->head.why), fmt, ap);
    va_end(ap);
    return p_error(p, err);
}

static int p_abort(struct h1_parser *p)
{
    return p_fail(p, H1_E_ABORTED, "a callback stopped the response");
}

static int p_complete(struct h1_parser *p)
{
    p->state = P_DONE;
    if (p->cbs.on_complete && p->cbs.on_complete(p->ud) < 0)
        return p_abort(p);
    return 0;
}

/* ---- the status line -------------------------------------------------------- */

/* Checks the part of the status line read so far, so garbage is refused
 * without waiting for a line end: "HTTP/1.D DDD[ reason]". */
static int status_prefix_ok(const uint8_t *s, size_t n)
{
    static const char pat[] = "HTTP/1.#_###_";
    for (size_t i = 0; i < n && i < sizeof(pat) - 1; i++) {
        char c = pat[i];
        if (c == '#' && !h1_is_digit(s[i]))
            return 0;
        /* After the code: a reason, or the end of the line. */
        if (c == '_' && s[i] != ' ' && !(i == 12 && s[i] == '\r'))
            return 0;
        if (c != '#' && c != '_' && s[i] != (uint8_t)c)
            return 0;
    }
    return 1;
}

static int parse_status(struct h1_parser *p, const uint8_t *s, size_t n)
{
    if (n < 12 || !status_prefix_ok(s, n) || (n > 12 && s[12] != ' '))
        return p_fail(p, H1_E_PARSE, "bad status line \"%.*s\"", (int)(n > 40 ? 40 : n),
                      (const char *)s);
    for (size_t i = 13; i < n; i++)
        if (!h1_is_vchar_ok(s[i]))
            return p_fail(p, H1_E_PARSE, "control byte in the status line");
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (p->status < 100)
        return p_fail(p, H1_E_PARSE, "bad status code %d", p->status);
    p->state = P_HEADER;
    return 0;
}

/* ---- the end of the head: framing ------------------------------------------- */

static enum p_body body_kind(const struct h1_parser *p)
{
    const struct h1_head *h = &p->head;
    if (p->status == 101)
        return B_EOF;
    if (p->no_body || p->status == 204 || p->status == 304 || p->status < 200)
        return B_NONE;
    if (h->have_te)
        return h->te_chunked ? B_CHUNKED : B_EOF;
    return h->have_cl ? B_LENGTH : B_EOF;
}

static void decide_body(struct h1_parser *p)
{
    const struct h1_head *h = &p->head;
    int ka = p->minor >= 1 ? !h->conn_close : (h->conn_ka && !h->conn_close);
    p->body = body_kind(p);
    if (p->body == B_EOF || (h->have_te && h->have_cl))
        ka = 0;
    p->keepalive = (unsigned)ka;
    p->remaining = h->content_length;
    static const enum p_state first[] = {
        [B_NONE] = P_DONE, [B_LENGTH] = P_BODY_LEN, [B_CHUNKED] = P_CHUNK_SIZE,
        [B_EOF] = P_BODY_EOF};
    p->state = first[p->body];
    if (p->body == B_LENGTH && !h->content_length)
        p->state = P_DONE;
}

static int end_of_head(struct h1_parser *p)
{
    int rv = h1_head_end(&p->head);
    if (rv < 0)
        return p_error(p, rv);
    if (p->status >= 100 && p->status < 200 && p->status != 101) {
        /* Interim response (100 Continue, 102, 103): the final one follows. */
        h1_head_restart(&p->head);
        p->state = P_STATUS;
        return 0;
    }
    p->head_done = 1;
    decide_body(p);
    if (p->cbs.on_head) {
        unsigned nb = p->no_body;
        if (p->cbs.on_head(p->ud, p->status, &p->head.fields) < 0)
            return p_abort(p);
        if (p->no_body && !nb && p->status != 101)
            decide_body(p); /* the caller learned it was a HEAD */
    }
    return p->state == P_DONE ? p_complete(p) : 0;
}

/* ---- feeding ------------------------------------------------------------------ */

/* A whole line of the head (or of the trailers). */
static int head_line(struct h1_parser *p, const uint8_t *s, size_t len)
{
    if (p->state == P_STATUS)
        return parse_status(p, s, len);
    if (len == 0)
        return p->state == P_TRAILER ? p_complete(p) : end_of_head(p);
    int rv = h1_head_field_line(&p->head, s, len, p->state == P_TRAILER);
    return rv < 0 ? p_error(p, rv) : 0;
}

/* Head and trailer lines. Returns bytes consumed or an error. */
static ssize_t feed_head(struct h1_parser *p, const uint8_t *d, size_t n)
{
    int done;
    const char *what = p->state == P_TRAILER ? "response trailers" : "response headers";
    ssize_t t = h1_head_take_line(&p->head, d, n, what, &done);
    if (t < 0)
        return p_error(p, (int)t);
    struct crisp_buf *line = &p->head.line;
    if (p->state == P_STATUS && !status_prefix_ok(line->data, line->len))
        return p_fail(p, H1_E_PARSE, "not an HTTP/1.x response (starts with \"%.*s\")",
                      (int)(line->len > 20 ? 20 : line->len), (const char *)line->data);
    if (!done)
        return t;
    int rv = head_line(p, line->data, line->len);
    crisp_buf_reset(line);
    return rv < 0 ? rv : t;
}

static int deliver(struct h1_parser *p, const uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    p->body_bytes += n;
    if (p->cbs.on_body && p->cbs.on_body(p->ud, d, n) < 0)
        return p_abort(p);
    return 0;
}

/* Body bytes counted by Content-Length or by the chunk size. */
static ssize_t feed_counted(struct h1_parser *p, const uint8_t *d, size_t n)
{
    assert(p->remaining > 0);
    size_t k = n;
    if ((uint64_t)k > p->remaining)
        k = (size_t)p->remaining;
    p->remaining -= k;
    int rv = deliver(p, d, k);
    if (rv == 0 && p->remaining == 0) {
        if (p->state == P_BODY_LEN)
            rv = p_complete(p);
        else
            p->state = P_CHUNK_CRLF;
    }
    return rv < 0 ? rv : (ssize_t)k;
}

/* The value of a hex digit, -1 for any other byte. */
static int hexval(uint8_t c)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    const char *d = c ? strchr(hex, c) : NULL;
    if (!d)
        return -1;
    return d - hex < 16 ? (int)(d - hex) : (int)(d - hex) - 6;
}

static int chunk_size_line(struct h1_parser *p, const uint8_t *s, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && hexval(s[i]) >= 0; i++) {
        if (v >> 58)
            return p_fail(p, H1_E_PARSE, "chunk size too large");
        v = v * 16 + (uint64_t)hexval(s[i]);
    }
    size_t digits = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (digits == 0 || (i < n && s[i] != ';'))
        return p_fail(p, H1_E_PARSE, "bad chunk size line \"%.*s\"", (int)(n > 40 ? 40 : n),
                      (const char *)s);
    for (; i < n; i++)
        if (!h1_is_vchar_ok(s[i]))
            return p_fail(p, H1_E_PARSE, "control byte in a chunk extension");
    if (v == 0) {
        p->state = P_TRAILER;
        p->head.bytes = 0; /* the trailers get their own head_max */
    } else {
        p->remaining = v;
        p->state = P_CHUNK_DATA;
    }
    return 0;
}

/* A chunk size line, or the CRLF after a chunk's data. */
static ssize_t feed_chunk_line(struct h1_parser *p, const uint8_t *d, size_t n)
{
    int done;
    int size_line = p->state == P_CHUNK_SIZE;
    struct crisp_buf *line = &p->head.line;
    ssize_t t = h1_line_take(line, d, n, size_line ? H1_CHUNK_LINE_MAX : 2, &done);
    if (t == -2)
        return p_fail(p, H1_E_NOMEM, "out of memory");
    if (t < 0)
        return p_fail(p, H1_E_PARSE, size_line ? "chunk size line too long"
                                                : "no CRLF after chunk data");
    if (!done)
        return t;
    int rv = 0;
    if (size_line)
        rv = chunk_size_line(p, line->data, line->len);
    else if (line->len != 0)
        rv = p_fail(p, H1_E_PARSE, "no CRLF after chunk data");
    else
        p->state = P_CHUNK_SIZE;
    crisp_buf_reset(line);
    return rv < 0 ? rv : t;
}

/* One step of the state machine: bytes consumed (> 0), or an error. */
static ssize_t feed_step(struct h1_parser *p, const uint8_t *d, size_t n)
{
    switch (p->state) {
    case P_STATUS:
    case P_HEADER:
    case P_TRAILER:
        return feed_head(p, d, n);
    case P_BODY_LEN:
    case P_CHUNK_DATA:
        return feed_counted(p, d, n);
    case P_CHUNK_SIZE:
    case P_CHUNK_CRLF:
        return feed_chunk_line(p, d, n);
    case P_BODY_EOF: {
        int rv = deliver(p, d, n);
        return rv < 0 ? rv : (ssize_t)n;
    }
    case P_DONE:
    case P_ERROR:
        break;
    }
    return 0;
}

ssize_t h1_parser_feed(struct h1_parser *p, const uint8_t *data, size_t n)
{
    size_t off = 0;
    p->yield = 0;
    while (off < n && !p->yield && p->state != P_DONE && p->state != P_ERROR) {
        ssize_t k = feed_step(p, data + off, n - off);
        if (k < 0)
            break;
        assert(k > 0);
        off += (size_t)k;
    }
    if (p->state == P_ERROR)
        return p->err;
    return (ssize_t)off;
}

int h1_parser_eof(struct h1_parser *p)
{
    switch (p->state) {
    case P_DONE:
        return 0;
    case P_ERROR:
        return p->err;
    case P_BODY_EOF:
        return p_complete(p) < 0 ? p->err : 0;
    case P_STATUS:
        if (p->head.line.len == 0 && !p->head_done)
            return p_fail(p, H1_E_IO, "the connection closed before the response");
        /* fallthrough */
    default:
        return p_fail(p, H1_E_IO, "the connection closed in the middle of the response");
    }
}
