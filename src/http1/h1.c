/* h1.c - HTTP/1.1 client for engine APIs: a response parser and a pool.
 *
 * Parser: a byte-at-a-time-safe state machine. Head lines are collected in
 * a buffer capped by head_max (the status line and headers together; the
 * trailers of a chunked body get their own head_max); body bytes are handed
 * to on_body straight from the input, never copied. Framing follows RFC 9112
 * section 6.3: HEAD/1xx/204/304 have no body, 101 and a response without
 * Content-Length or chunked coding read until the connection closes,
 * Transfer-Encoding beats Content-Length (and forbids reuse), conflicting
 * Content-Lengths are an error.
 *
 * Pool: connections in three states, CONNECTING (socket connect, then the
 * TLS handshake), IDLE (a LIFO stack, reading enabled so a close is seen at
 * once, idle timer armed) and BUSY (exactly one request). Requests wait in
 * a FIFO queue; a dispatch event hands them idle connections and opens new
 * ones up to max_conns. Every completion (success, error, timeout) is
 * recorded on the request and reported from the request's own done event,
 * so no user callback runs from inside h1_request(), h1_cancel() or the
 * pool's bookkeeping; only on_head/on_body run synchronously from the
 * connection's read callback, with the request marked in_cb so h1_cancel()
 * only flags it and the running frame frees it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "crisp/buf.h"
#include "crisp/h1.h"
#include "crisp/log.h"
#include "crisp/version.h"

#define H1_HEAD_MAX (64 * 1024)
#define H1_BODY_MAX_DEFAULT (16u << 20)
#define H1_CHUNK_LINE_MAX 4096
#define H1_UNIX_RETRY_MS 10

const char *h1_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case H1_E_PARSE:
        return "malformed response";
    case H1_E_TOO_LARGE:
        return "response too large";
    case H1_E_NOMEM:
        return "out of memory";
    case H1_E_CONNECT:
        return "could not connect";
    case H1_E_IO:
        return "connection lost";
    case H1_E_TIMEOUT:
        return "timed out";
    case H1_E_ABORTED:
        return "aborted";
    case H1_E_INVALID:
        return "invalid request";
    }
    return "unknown error";
}

/* ---- parser ----------------------------------------------------------- */

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
    size_t head_max;
    enum p_state state;
    enum p_body body;
    int err;
    char why[160];          /* what was wrong, for error messages */
    struct crisp_buf line;  /* the line being read */
    size_t head_bytes;      /* bytes of this head (or of the trailers) */
    int status;
    int minor;
    struct crisp_md hdrs;
    struct crisp_buf pend;  /* the header being read: lowercased name, then value */
    size_t pend_namelen;
    uint64_t content_length;
    uint64_t remaining;     /* of the Content-Length body or of the chunk */
    uint64_t body_bytes;
    unsigned chunked_count;
    unsigned have_pend : 1;
    unsigned no_body : 1;
    unsigned head_done : 1;
    unsigned keepalive : 1;
    unsigned have_cl : 1;
    unsigned have_te : 1;
    unsigned te_chunked : 1;
    unsigned conn_close : 1;
    unsigned conn_ka : 1;
    unsigned yield : 1;     /* pool only: return from feed after this callback */
};

static void parser_init(struct h1_parser *p, const struct h1_parser_cbs *cbs, void *ud,
                        size_t head_max)
{
    memset(p, 0, sizeof(*p));
    if (cbs)
        p->cbs = *cbs;
    p->ud = ud;
    p->head_max = head_max ? head_max : H1_HEAD_MAX;
    crisp_buf_init(&p->line, p->head_max);
    crisp_buf_init(&p->pend, p->head_max);
    /* The head is capped by head_max already; the list only needs room. */
    crisp_md_init(&p->hdrs, (size_t)-1 / 2);
}

static void parser_clear(struct h1_parser *p)
{
    crisp_buf_free(&p->line);
    crisp_buf_free(&p->pend);
    crisp_md_free(&p->hdrs);
}

struct h1_parser *h1_parser_new(const struct h1_parser_cbs *cbs, void *ud, size_t head_max)
{
    struct h1_parser *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    parser_init(p, cbs, ud, head_max);
    return p;
}

void h1_parser_free(struct h1_parser *p)
{
    if (!p)
        return;
    parser_clear(p);
    free(p);
}

void h1_parser_expect_no_body(struct h1_parser *p)
{
    p->no_body = 1;
}

int h1_parser_keepalive(const struct h1_parser *p)
{
    return p->head_done && p->state != P_ERROR && p->keepalive;
}

/* snprintf whose truncation is intended (messages are capped). */
static void sfmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int p_fail(struct h1_parser *p, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int p_fail(struct h1_parser *p, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
    p->state = P_ERROR;
    p->err = err;
    p->keepalive = 0;
    return err;
}

static int p_abort(struct h1_parser *p)
{
    return p_fail(p, H1_E_ABORTED, "a callback stopped the response");
}

static int is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values and reason phrases: visible bytes, SP, HTAB, obs-text. */
static int is_vchar_ok(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Takes input up to and including the next LF into p->line, at most limit
 * bytes in the line. Returns the bytes taken; *done when the line is whole
 * (its LF and a CR before it removed), -1 when it would pass limit. */
static ssize_t line_take(struct h1_parser *p, const uint8_t *d, size_t n, size_t limit, int *done)
{
    const uint8_t *lf = memchr(d, '\n', n);
    size_t take = lf ? (size_t)(lf - d) + 1 : n;
    *done = 0;
    if (take > limit || p->line.len > limit - take)
        return -1;
    if (crisp_buf_append(&p->line, d, take) < 0)
        return -2;
    if (lf) {
        p->line.len--;
        if (p->line.len && p->line.data[p->line.len - 1] == '\r')
            p->line.len--;
        *done = 1;
    }
    return (ssize_t)take;
}

/* Checks the part of the status line read so far, so garbage is refused
 * without waiting for a line end: "HTTP/1.D DDD[ reason]". */
static int status_prefix_ok(const uint8_t *s, size_t n)
{
    static const char pat[] = "HTTP/1.#_###_";
    for (size_t i = 0; i < n && i < sizeof(pat) - 1; i++) {
        char c = pat[i];
        if (c == '#') {
            if (!is_digit(s[i]))
                return 0;
        } else if (c == '_') {
            /* After the code: a reason, or the end of the line. */
            if (s[i] != ' ' && !(i == 12 && s[i] == '\r'))
                return 0;
        } else if (s[i] != (uint8_t)c) {
            return 0;
        }
    }
    return 1;
}

static int parse_status(struct h1_parser *p, const uint8_t *s, size_t n)
{
    if (n < 12 || !status_prefix_ok(s, n) || (n > 12 && s[12] != ' '))
        return p_fail(p, H1_E_PARSE, "bad status line \"%.*s\"", (int)(n > 40 ? 40 : n),
                      (const char *)s);
    for (size_t i = 13; i < n; i++)
        if (!is_vchar_ok(s[i]))
            return p_fail(p, H1_E_PARSE, "control byte in the status line");
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (p->status < 100)
        return p_fail(p, H1_E_PARSE, "bad status code %d", p->status);
    p->state = P_HEADER;
    return 0;
}

static int token_eq(const uint8_t *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp((const char *)a, b, n) == 0;
}

/* Walks a comma-separated list; calls fn for each non-empty element (OWS
 * trimmed, parameters after ';' kept). */
static int each_elem(struct h1_parser *p, const uint8_t *v, size_t n,
                     int (*fn)(struct h1_parser *, const uint8_t *, size_t))
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a) {
            int rv = fn(p, v + a, b - a);
            if (rv < 0)
                return rv;
        }
        i = j + 1;
    }
    return 0;
}

static int cl_elem(struct h1_parser *p, const uint8_t *v, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(v[i]))
            return p_fail(p, H1_E_PARSE, "bad Content-Length \"%.*s\"", (int)(n > 40 ? 40 : n),
                          (const char *)v);
        if (x > (UINT64_MAX / 2 - 9) / 10)
            return p_fail(p, H1_E_PARSE, "Content-Length too large");
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (p->have_cl && x != p->content_length)
        return p_fail(p, H1_E_PARSE, "conflicting Content-Length values");
    p->have_cl = 1;
    p->content_length = x;
    return 0;
}

static int te_elem(struct h1_parser *p, const uint8_t *v, size_t n)
{
    size_t k = 0;
    while (k < n && v[k] != ';' && v[k] != ' ' && v[k] != '\t')
        k++;
    p->have_te = 1;
    if (token_eq(v, k, "chunked")) {
        if (++p->chunked_count > 1)
            return p_fail(p, H1_E_PARSE, "chunked transfer coding applied twice");
        p->te_chunked = 1;
    } else {
        p->te_chunked = 0;
    }
    return 0;
}

static int conn_elem(struct h1_parser *p, const uint8_t *v, size_t n)
{
    if (token_eq(v, n, "close"))
        p->conn_close = 1;
    else if (token_eq(v, n, "keep-alive"))
        p->conn_ka = 1;
    return 0;
}

/* The header read so far is complete: store it and note the framing ones. */
static int commit_header(struct h1_parser *p)
{
    if (!p->have_pend)
        return 0;
    p->have_pend = 0;
    const uint8_t *name = p->pend.data;
    size_t nl = p->pend_namelen;
    const uint8_t *val = p->pend.data + nl;
    size_t vl = p->pend.len - nl;
    int rv = 0;
    if (token_eq(name, nl, "content-length"))
        rv = each_elem(p, val, vl, cl_elem);
    else if (token_eq(name, nl, "transfer-encoding"))
        rv = each_elem(p, val, vl, te_elem);
    else if (token_eq(name, nl, "connection"))
        rv = each_elem(p, val, vl, conn_elem);
    if (rv < 0)
        return rv;
    if (token_eq(name, nl, "content-length") && !p->have_cl)
        return p_fail(p, H1_E_PARSE, "empty Content-Length");
    if (crisp_md_add(&p->hdrs, name, nl, val, vl) < 0)
        return p_fail(p, H1_E_NOMEM, "out of memory");
    crisp_buf_reset(&p->pend);
    return 0;
}

/* A header or trailer line (not the empty one). Trailers are checked the
 * same way and dropped. */
static int header_line(struct h1_parser *p, const uint8_t *s, size_t n, int trailer)
{
    for (size_t i = 0; i < n; i++)
        if (!is_vchar_ok(s[i]))
            return p_fail(p, H1_E_PARSE, "control byte in a %s line", trailer ? "trailer" : "header");
    if (s[0] == ' ' || s[0] == '\t') {
        /* obs-fold: the line continues the previous field value. */
        if (trailer)
            return 0;
        if (!p->have_pend)
            return p_fail(p, H1_E_PARSE, "header continuation line without a header");
        size_t a = 0, b = n;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (b > a) {
            int rv = 0;
            if (p->pend.len > p->pend_namelen)
                rv = crisp_buf_append(&p->pend, " ", 1);
            if (rv == 0)
                rv = crisp_buf_append(&p->pend, s + a, b - a);
            if (rv < 0)
                return p_fail(p, H1_E_NOMEM, "out of memory");
        }
        return 0;
    }
    const uint8_t *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return p_fail(p, H1_E_PARSE, "%s line without a name and a colon",
                      trailer ? "trailer" : "header");
    size_t nl = (size_t)(colon - s);
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar(s[i]))
            return p_fail(p, H1_E_PARSE, "bad %s name \"%.*s\"", trailer ? "trailer" : "header",
                          (int)(nl > 40 ? 40 : nl), (const char *)s);
    if (trailer)
        return 0;
    int rv = commit_header(p);
    if (rv < 0)
        return rv;
    size_t a = nl + 1, b = n;
    while (a < b && (s[a] == ' ' || s[a] == '\t'))
        a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
        b--;
    crisp_buf_reset(&p->pend);
    if (crisp_buf_reserve(&p->pend, nl + (b - a)) < 0)
        return p_fail(p, H1_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nl; i++) {
        uint8_t c = s[i];
        p->pend.data[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    memcpy(p->pend.data + nl, s + a, b - a);
    p->pend.len = nl + (b - a);
    p->pend_namelen = nl;
    p->have_pend = 1;
    return 0;
}

static void decide_body(struct h1_parser *p)
{
    int ka = p->minor >= 1 ? !p->conn_close : (p->conn_ka && !p->conn_close);
    if (p->status == 101) {
        p->body = B_EOF;
        ka = 0;
    } else if (p->no_body || p->status == 204 || p->status == 304 || p->status < 200) {
        p->body = B_NONE;
    } else if (p->have_te) {
        p->body = p->te_chunked ? B_CHUNKED : B_EOF;
    } else if (p->have_cl) {
        p->body = B_LENGTH;
    } else {
        p->body = B_EOF;
    }
    if (p->body == B_EOF || (p->have_te && p->have_cl))
        ka = 0;
    p->keepalive = (unsigned)ka;
    p->remaining = p->content_length;
    switch (p->body) {
    case B_NONE:
        p->state = P_DONE;
        break;
    case B_LENGTH:
        p->state = p->content_length ? P_BODY_LEN : P_DONE;
        break;
    case B_CHUNKED:
        p->state = P_CHUNK_SIZE;
        break;
    case B_EOF:
        p->state = P_BODY_EOF;
        break;
    }
}

static int p_complete(struct h1_parser *p)
{
    p->state = P_DONE;
    if (p->cbs.on_complete && p->cbs.on_complete(p->ud) < 0)
        return p_abort(p);
    return 0;
}

static int end_of_head(struct h1_parser *p)
{
    int rv = commit_header(p);
    if (rv < 0)
        return rv;
    if (p->status >= 100 && p->status < 200 && p->status != 101) {
        /* Interim response (100 Continue, 102, 103): the final one follows. */
        crisp_md_free(&p->hdrs);
        crisp_md_init(&p->hdrs, (size_t)-1 / 2);
        p->have_cl = p->have_te = p->te_chunked = p->conn_close = p->conn_ka = 0;
        p->chunked_count = 0;
        p->content_length = 0;
        p->head_bytes = 0;
        p->state = P_STATUS;
        return 0;
    }
    p->head_done = 1;
    decide_body(p);
    if (p->cbs.on_head) {
        unsigned nb = p->no_body;
        if (p->cbs.on_head(p->ud, p->status, &p->hdrs) < 0)
            return p_abort(p);
        if (p->no_body && !nb && p->status != 101)
            decide_body(p); /* the caller learned it was a HEAD */
    }
    if (p->state == P_DONE)
        return p_complete(p);
    return 0;
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

static int chunk_size_line(struct h1_parser *p, const uint8_t *s, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            break;
        if (v >> 58)
            return p_fail(p, H1_E_PARSE, "chunk size too large");
        v = v * 16 + (uint64_t)h;
    }
    if (i == 0)
        return p_fail(p, H1_E_PARSE, "bad chunk size line \"%.*s\"", (int)(n > 40 ? 40 : n),
                      (const char *)s);
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n && s[i] != ';')
        return p_fail(p, H1_E_PARSE, "bad chunk size line \"%.*s\"", (int)(n > 40 ? 40 : n),
                      (const char *)s);
    for (; i < n; i++)
        if (!is_vchar_ok(s[i]))
            return p_fail(p, H1_E_PARSE, "control byte in a chunk extension");
    if (v == 0) {
        p->state = P_TRAILER;
        p->head_bytes = 0;
    } else {
        p->remaining = v;
        p->state = P_CHUNK_DATA;
    }
    return 0;
}

ssize_t h1_parser_feed(struct h1_parser *p, const uint8_t *data, size_t n)
{
    size_t off = 0;
    int rv = 0;
    p->yield = 0;
    while (off < n && rv == 0 && !p->yield) {
        switch (p->state) {
        case P_STATUS:
        case P_HEADER:
        case P_TRAILER: {
            int done;
            /* The line's bytes so far are in head_bytes already. */
            size_t lim = p->line.len + (p->head_max - p->head_bytes);
            ssize_t t = line_take(p, data + off, n - off, lim, &done);
            if (t == -2)
                return p_fail(p, H1_E_NOMEM, "out of memory");
            if (t < 0)
                return p_fail(p, H1_E_TOO_LARGE, "response %s exceed %zu bytes",
                              p->state == P_TRAILER ? "trailers" : "headers", p->head_max);
            off += (size_t)t;
            p->head_bytes += (size_t)t;
            if (p->state == P_STATUS && !status_prefix_ok(p->line.data, p->line.len))
                return p_fail(p, H1_E_PARSE, "not an HTTP/1.x response (starts with \"%.*s\")",
                              (int)(p->line.len > 20 ? 20 : p->line.len),
                              (const char *)p->line.data);
            if (!done)
                break;
            const uint8_t *s = p->line.data;
            size_t len = p->line.len;
            if (p->state == P_STATUS)
                rv = parse_status(p, s, len);
            else if (len == 0)
                rv = p->state == P_TRAILER ? p_complete(p) : end_of_head(p);
            else
                rv = header_line(p, s, len, p->state == P_TRAILER);
            crisp_buf_reset(&p->line);
            break;
        }
        case P_BODY_LEN:
        case P_CHUNK_DATA: {
            size_t k = n - off;
            if ((uint64_t)k > p->remaining)
                k = (size_t)p->remaining;
            p->remaining -= k;
            rv = deliver(p, data + off, k);
            off += k;
            if (rv == 0 && p->remaining == 0) {
                if (p->state == P_BODY_LEN)
                    rv = p_complete(p);
                else
                    p->state = P_CHUNK_CRLF;
            }
            break;
        }
        case P_CHUNK_SIZE:
        case P_CHUNK_CRLF: {
            int done;
            size_t lim = p->state == P_CHUNK_SIZE ? H1_CHUNK_LINE_MAX : 2;
            ssize_t t = line_take(p, data + off, n - off, lim, &done);
            if (t == -2)
                return p_fail(p, H1_E_NOMEM, "out of memory");
            if (t < 0)
                return p_fail(p, H1_E_PARSE, p->state == P_CHUNK_SIZE
                                                 ? "chunk size line too long"
                                                 : "no CRLF after chunk data");
            off += (size_t)t;
            if (!done)
                break;
            if (p->state == P_CHUNK_SIZE)
                rv = chunk_size_line(p, p->line.data, p->line.len);
            else if (p->line.len != 0)
                rv = p_fail(p, H1_E_PARSE, "no CRLF after chunk data");
            else
                p->state = P_CHUNK_SIZE;
            crisp_buf_reset(&p->line);
            break;
        }
        case P_BODY_EOF:
            rv = deliver(p, data + off, n - off);
            off = n;
            break;
        case P_DONE:
            return (ssize_t)off;
        case P_ERROR:
            return p->err;
        }
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
        if (p->line.len == 0 && !p->head_done)
            return p_fail(p, H1_E_IO, "the connection closed before the response");
        /* fallthrough */
    default:
        return p_fail(p, H1_E_IO, "the connection closed in the middle of the response");
    }
}

/* ---- pool: types -------------------------------------------------------- */

enum conn_state {
    C_CONNECTING = 0,
    C_HANDSHAKE,
    C_IDLE,
    C_BUSY,
};

enum req_state {
    R_QUEUED = 0,
    R_ACTIVE,
    R_DONE,
};

struct h1_conn {
    struct h1_conn *prev, *next;   /* pool->conns */
    struct h1_conn *iprev, *inext; /* pool->idle, newest first */
    struct h1_pool *pool;
    enum conn_state state;
    unsigned long id;
    int fd;                        /* while connecting, before the bufferevent */
    struct event *connect_ev;      /* EV_WRITE on fd during a connect in progress */
    struct event *tmr;             /* connect retry/failure, TLS deadline, idle timeout */
    struct event *kick_ev;         /* process buffered input after h1_resume */
    struct bufferevent *bev;
    struct h1_req *req;
    struct h1_parser parser;
    struct timespec deadline;      /* of the connect (and TLS handshake) */
    unsigned long served;          /* responses completed on this connection */
    uint64_t resp_bytes;           /* bytes of the current response */
    int connect_errno;
    int eof_errno;
    int wr_errno;
    char eof_reason[200];          /* why the read side failed (errno or TLS) */
    int abort_err;                 /* why a parser callback stopped the response */
    unsigned connect_now : 1;      /* connect() succeeded at once */
    unsigned connect_retry : 1;    /* unix socket backlog full: try again */
    unsigned eof : 1;              /* the read side ended (EOF or error) */
    unsigned wr_dead : 1;          /* a write failed */
    unsigned shut_pending : 1;     /* h1_close_write waiting for the output to drain */
    unsigned shut_done : 1;
};

struct h1_req {
    struct h1_req *prev, *next;    /* pool->qhead queue */
    struct h1_req *aprev, *anext;  /* pool->reqs: every live request */
    struct h1_pool *pool;
    struct h1_conn *conn;
    struct h1_req_cbs cbs;
    void *ud;
    enum req_state state;
    char what[96];                 /* "GET /v1.41/containers/json" for messages */
    uint8_t *wire;
    size_t wire_len;
    size_t body_max;
    unsigned timeout_ms;
    struct event *done_ev;
    struct event *tmr;
    struct crisp_buf body;
    int err;
    int status;
    char errmsg[320];
    unsigned in_cb;
    unsigned cancelled : 1;
    unsigned retried : 1;
    unsigned fresh : 1;            /* must go on a new connection */
    unsigned paused : 1;
    unsigned head_seen : 1;
    unsigned idempotent : 1;
    unsigned is_head : 1;
    unsigned on_reused : 1;
};

struct h1_pool {
    struct event_base *base;
    struct crisp_addr addr;
    SSL_CTX *tls;
    char host[300];                /* Host header */
    char sni[256];                 /* TLS server name, "" for none */
    char verify_ip[64];            /* IP literal to verify the certificate against */
    char name[320];                /* "unix:///var/run/docker.sock" for messages */
    unsigned max_conns, max_idle, idle_timeout_ms, connect_timeout_ms;
    struct h1_conn *conns;
    struct h1_conn *idle;
    unsigned nconns, nidle, nconnecting;
    struct h1_req *qhead, *qtail;
    unsigned nqueued;
    struct h1_req *reqs;
    struct event *dispatch_ev;
    struct h1_pool_stats stats;
    unsigned long next_id;
    unsigned closing : 1;
};

#define LIST_PUSH(head, x, p, n)                                               \
    do {                                                                       \
        (x)->p = NULL;                                                         \
        (x)->n = (head);                                                       \
        if (head)                                                              \
            (head)->p = (x);                                                   \
        (head) = (x);                                                          \
    } while (0)
#define LIST_DEL(head, x, p, n)                                                \
    do {                                                                       \
        if ((x)->p)                                                            \
            (x)->p->n = (x)->n;                                                \
        else                                                                   \
            (head) = (x)->n;                                                   \
        if ((x)->n)                                                            \
            (x)->n->p = (x)->p;                                                \
        (x)->p = (x)->n = NULL;                                                \
    } while (0)

static void conn_close(struct h1_conn *c);
static void conn_process(struct h1_conn *c);
static void conn_assign(struct h1_conn *c, struct h1_req *r);
static void schedule_dispatch(struct h1_pool *pool);

/* ---- requests ----------------------------------------------------------- */

static void q_push_tail(struct h1_pool *pool, struct h1_req *r)
{
    r->next = NULL;
    r->prev = pool->qtail;
    if (pool->qtail)
        pool->qtail->next = r;
    else
        pool->qhead = r;
    pool->qtail = r;
    pool->nqueued++;
}

static void q_push_head(struct h1_pool *pool, struct h1_req *r)
{
    r->prev = NULL;
    r->next = pool->qhead;
    if (pool->qhead)
        pool->qhead->prev = r;
    else
        pool->qtail = r;
    pool->qhead = r;
    pool->nqueued++;
}

static void q_del(struct h1_pool *pool, struct h1_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        pool->qhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        pool->qtail = r->prev;
    r->prev = r->next = NULL;
    pool->nqueued--;
}

static void req_free(struct h1_req *r)
{
    LIST_DEL(r->pool->reqs, r, aprev, anext);
    if (r->done_ev)
        event_free(r->done_ev);
    if (r->tmr)
        event_free(r->tmr);
    crisp_buf_free(&r->body);
    free(r->wire);
    free(r);
}

/* Records the outcome of a request already detached from its queue and
 * connection; on_done runs from the request's done event. */
static void req_finish(struct h1_req *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void req_finish(struct h1_req *r, int err, const char *fmt, ...)
{
    if (r->state == R_DONE)
        return;
    r->state = R_DONE;
    r->err = err;
    if (err && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
        va_end(ap);
    }
    if (r->tmr)
        evtimer_del(r->tmr);
    event_active(r->done_ev, EV_TIMEOUT, 0);
}

/* Detaches the request from its connection (the caller decides the
 * connection's fate). */
static void req_detach_conn(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    if (!c)
        return;
    c->req = NULL;
    r->conn = NULL;
}

static void req_deliver(struct h1_req *r)
{
    if (r->cancelled || !r->cbs.on_done)
        return;
    const uint8_t *body = NULL;
    size_t len = 0;
    if (r->err == 0 && !r->cbs.on_body) {
        /* Room for the NUL was kept: the buffer's cap is body_max + 1. */
        if (crisp_buf_reserve(&r->body, 1) == 0) {
            r->body.data[r->body.len] = 0;
            body = r->body.data;
            len = r->body.len;
        } else if (r->body.len == 0) {
            body = (const uint8_t *)"";
        } else {
            r->err = H1_E_NOMEM;
            snprintf(r->errmsg, sizeof(r->errmsg), "out of memory buffering the response of %s",
                     r->what);
        }
    }
    r->in_cb++;
    r->cbs.on_done(r, r->err, r->err ? r->errmsg : NULL, r->status, body, len, r->ud);
    r->in_cb--;
}

static void on_req_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_req *r = arg;
    req_deliver(r);
    req_free(r);
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_req *r = arg;
    struct h1_pool *pool = r->pool;
    if (r->state == R_QUEUED) {
        q_del(pool, r);
        req_finish(r, H1_E_TIMEOUT, "%s to %s timed out after %u ms waiting for a connection",
                   r->what, pool->name, r->timeout_ms);
    } else if (r->state == R_ACTIVE) {
        struct h1_conn *c = r->conn;
        int started = c && c->resp_bytes > 0;
        req_detach_conn(r);
        if (c)
            conn_close(c);
        req_finish(r, H1_E_TIMEOUT, "%s to %s timed out after %u ms%s", r->what, pool->name,
                   r->timeout_ms, started ? "" : " without a response");
    }
}

/* ---- request serialization ---------------------------------------------- */

static int valid_token(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!is_tchar((uint8_t)*s))
            return 0;
    return 1;
}

static int valid_value(const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == 0)
            return 0;
    return 1;
}

static int name_is(const struct crisp_hdr *h, const char *name)
{
    return token_eq(h->name, h->namelen, name);
}

static int build_wire(struct h1_req *r, const struct h1_pool *pool, const struct h1_req_opts *o,
                      const char *method, char *why, size_t whylen)
{
    const char *t = o->target;
    if (!valid_token(method)) {
        snprintf(why, whylen, "bad method \"%s\"", method);
        return H1_E_INVALID;
    }
    if (!t || !*t) {
        snprintf(why, whylen, "empty request target");
        return H1_E_INVALID;
    }
    for (const char *q = t; *q; q++)
        if ((uint8_t)*q <= 0x20 || (uint8_t)*q >= 0x7f) {
            snprintf(why, whylen, "request target with a space or a control byte");
            return H1_E_INVALID;
        }
    if (o->body_len && !o->body) {
        snprintf(why, whylen, "body_len without a body");
        return H1_E_INVALID;
    }
    if (o->content_type && !valid_value((const uint8_t *)o->content_type, strlen(o->content_type))) {
        snprintf(why, whylen, "bad Content-Type value");
        return H1_E_INVALID;
    }
    int user_ua = 0;
    const struct crisp_md *md = o->headers;
    for (size_t i = 0; md && i < md->n; i++) {
        const struct crisp_hdr *h = &md->v[i];
        int ok = h->namelen > 0 && valid_value(h->value, h->valuelen);
        for (size_t k = 0; ok && k < h->namelen; k++)
            ok = is_tchar(h->name[k]);
        if (!ok) {
            snprintf(why, whylen, "bad request header \"%.*s\"",
                     (int)(h->namelen > 40 ? 40 : h->namelen), (const char *)h->name);
            return H1_E_INVALID;
        }
        if (name_is(h, "user-agent"))
            user_ua = 1;
    }

    struct crisp_buf b;
    crisp_buf_init(&b, (size_t)-1 / 2);
    char line[512];
    int rv = 0;
#define PUT(p, n)                                                              \
    do {                                                                       \
        if (rv == 0)                                                           \
            rv = crisp_buf_append(&b, (p), (n));                               \
    } while (0)
#define PUTS(s) PUT((s), strlen(s))
    PUTS(method);
    PUTS(" ");
    PUTS(t);
    PUTS(" HTTP/1.1\r\nHost: ");
    PUTS(pool->host);
    PUTS("\r\n");
    if (!user_ua)
        PUTS("User-Agent: crisp/" CRISP_VERSION "\r\n");
    if (o->content_type) {
        PUTS("Content-Type: ");
        PUTS(o->content_type);
        PUTS("\r\n");
    }
    int has_body = o->body_len > 0 || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
                   !strcmp(method, "PATCH");
    if (has_body) {
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n", o->body_len);
        PUTS(line);
    }
    if (o->upgrade)
        PUTS("Connection: Upgrade\r\nUpgrade: tcp\r\n");
    for (size_t i = 0; md && i < md->n; i++) {
        const struct crisp_hdr *h = &md->v[i];
        if (name_is(h, "host") || name_is(h, "content-length") ||
            name_is(h, "transfer-encoding") || name_is(h, "connection") ||
            name_is(h, "upgrade") || (o->content_type && name_is(h, "content-type")))
            continue;
        PUT(h->name, h->namelen);
        PUTS(": ");
        PUT(h->value, h->valuelen);
        PUTS("\r\n");
    }
    PUTS("\r\n");
    if (o->body && o->body_len)
        PUT(o->body, o->body_len);
#undef PUT
#undef PUTS
    if (rv < 0) {
        crisp_buf_free(&b);
        return H1_E_NOMEM;
    }
    r->wire = b.data;
    r->wire_len = b.len;
    return 0;
}

struct h1_req *h1_request(struct h1_pool *pool, const struct h1_req_opts *o,
                          const struct h1_req_cbs *cbs, void *ud)
{
    struct h1_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->pool = pool;
    if (cbs)
        r->cbs = *cbs;
    r->ud = ud;
    r->body_max = o->body_max ? o->body_max : H1_BODY_MAX_DEFAULT;
    crisp_buf_init(&r->body, r->body_max + 1);
    r->timeout_ms = o->timeout_ms;
    r->done_ev = event_new(pool->base, -1, 0, on_req_done, r);
    if (r->timeout_ms)
        r->tmr = evtimer_new(pool->base, on_req_timeout, r);
    if (!r->done_ev || (r->timeout_ms && !r->tmr)) {
        if (r->done_ev)
            event_free(r->done_ev);
        if (r->tmr)
            event_free(r->tmr);
        free(r);
        return NULL;
    }
    LIST_PUSH(pool->reqs, r, aprev, anext);
    const char *method = o->method ? o->method : "GET";
    snprintf(r->what, sizeof(r->what), "%.16s %.70s%s", method, o->target ? o->target : "",
             o->target && strlen(o->target) > 70 ? "..." : "");
    r->idempotent = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    r->is_head = !strcmp(method, "HEAD");
    if (pool->closing) {
        req_finish(r, H1_E_ABORTED, "the HTTP client for %s is closing", pool->name);
        return r;
    }
    char why[128];
    int rv = build_wire(r, pool, o, method, why, sizeof(why));
    if (rv == H1_E_NOMEM) {
        req_free(r);
        return NULL;
    }
    if (rv < 0) {
        req_finish(r, rv, "invalid request %s: %s", r->what, why);
        return r;
    }
    if (r->tmr) {
        struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
        evtimer_add(r->tmr, &tv);
    }
    r->state = R_QUEUED;
    q_push_tail(pool, r);
    schedule_dispatch(pool);
    return r;
}

void h1_cancel(struct h1_req *r)
{
    if (!r || r->cancelled)
        return;
    r->cancelled = 1;
    if (r->in_cb)
        return; /* the frame running its callback frees it */
    struct h1_pool *pool = r->pool;
    switch (r->state) {
    case R_QUEUED:
        q_del(pool, r);
        break;
    case R_ACTIVE: {
        struct h1_conn *c = r->conn;
        req_detach_conn(r);
        if (c)
            conn_close(c);
        break;
    }
    case R_DONE:
        break;
    }
    req_free(r);
}

void h1_pause(struct h1_req *r)
{
    if (!r || r->paused)
        return;
    r->paused = 1;
    if (r->conn) {
        bufferevent_disable(r->conn->bev, EV_READ);
        r->conn->parser.yield = 1;
    }
}

void h1_resume(struct h1_req *r)
{
    if (!r || !r->paused)
        return;
    r->paused = 0;
    if (r->conn && r->conn->bev) {
        if (!r->conn->eof)
            bufferevent_enable(r->conn->bev, EV_READ);
        event_active(r->conn->kick_ev, EV_TIMEOUT, 0);
    }
}

static int req_can_write(struct h1_req *r)
{
    if (!r || r->state != R_ACTIVE || !r->conn || !r->head_seen || r->cancelled)
        return H1_E_INVALID;
    struct h1_conn *c = r->conn;
    if (c->parser.body != B_EOF || c->parser.state == P_DONE || c->parser.state == P_ERROR)
        return H1_E_INVALID;
    if (c->shut_pending || c->shut_done)
        return H1_E_INVALID;
    if (c->wr_dead)
        return H1_E_IO;
    return 0;
}

static void conn_shut_write(struct h1_conn *c)
{
    c->shut_pending = 0;
    c->shut_done = 1;
    if (c->pool->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl) {
            int rv = SSL_shutdown(ssl);
            if (rv < 0)
                log_debug("h1_close_notify_failed", "endpoint=%s conn=%lu ssl_error=%d",
                          c->pool->name, c->id, SSL_get_error(ssl, rv));
            ERR_clear_error();
        }
    } else {
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd >= 0 && shutdown(fd, SHUT_WR) < 0)
            log_debug("h1_shutdown_failed", "endpoint=%s conn=%lu err=%s", c->pool->name, c->id,
                      crisp_logq(strerror(errno)));
    }
}

int h1_write(struct h1_req *r, const uint8_t *p, size_t n)
{
    int rv = req_can_write(r);
    if (rv < 0)
        return rv;
    if (n && bufferevent_write(r->conn->bev, p, n) < 0)
        return H1_E_NOMEM;
    return 0;
}

int h1_close_write(struct h1_req *r)
{
    int rv = req_can_write(r);
    if (rv < 0)
        return rv;
    struct h1_conn *c = r->conn;
    c->shut_pending = 1;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_shut_write(c);
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static void ts_now(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}

/* Milliseconds left before the connect deadline (0 when past it). */
static long conn_ms_left(const struct h1_conn *c)
{
    struct timespec now;
    ts_now(&now);
    long ms = (c->deadline.tv_sec - now.tv_sec) * 1000 +
              (c->deadline.tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

static const struct timeval tv_zero = {0, 0};

static void tv_ms(struct timeval *tv, long ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void idle_del(struct h1_conn *c)
{
    if (c->state != C_IDLE)
        return;
    LIST_DEL(c->pool->idle, c, iprev, inext);
    c->pool->nidle--;
    evtimer_del(c->tmr);
}

static void conn_close(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    if (c->state == C_IDLE)
        idle_del(c);
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
        pool->nconnecting--;
    if (c->req) {
        /* Callers detach the request first; be safe anyway. */
        c->req->conn = NULL;
        c->req = NULL;
    }
    LIST_DEL(pool->conns, c, prev, next);
    pool->nconns--;
    if (c->connect_ev)
        event_free(c->connect_ev);
    if (c->tmr)
        event_free(c->tmr);
    if (c->kick_ev)
        event_free(c->kick_ev);
    if (c->bev)
        bufferevent_free(c->bev);
    else if (c->fd >= 0)
        close(c->fd);
    parser_clear(&c->parser);
    log_debug("h1_conn_closed", "endpoint=%s conn=%lu served=%lu", pool->name, c->id, c->served);
    free(c);
    if (pool->qhead && !pool->closing)
        schedule_dispatch(pool);
}

/* An idle connection may still be used: nothing arrived on it, not even
 * the end of the stream. Peeking catches a close the loop has not seen. */
static int conn_alive(struct h1_conn *c)
{
    if (c->eof || c->wr_dead || evbuffer_get_length(bufferevent_get_input(c->bev)))
        return 0;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    /* Raw bytes on an idle plain connection are garbage; under TLS they
     * may be a session ticket the TLS layer has not read yet. */
    return c->pool->tls != NULL;
}

static void conn_make_idle(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    /* A waiting request takes the connection at once. */
    for (struct h1_req *q = pool->qhead; q && !pool->closing; q = q->next)
        if (!q->fresh) {
            conn_assign(c, q);
            return;
        }
    if (pool->nidle >= pool->max_idle) {
        struct h1_conn *old = pool->idle;
        while (old && old->inext)
            old = old->inext;
        if (old)
            conn_close(old);
    }
    c->state = C_IDLE;
    LIST_PUSH(pool->idle, c, iprev, inext);
    pool->nidle++;
    struct timeval tv;
    tv_ms(&tv, pool->idle_timeout_ms);
    evtimer_add(c->tmr, &tv);
    bufferevent_enable(c->bev, EV_READ);
    if (pool->qhead)
        schedule_dispatch(pool);
}

/* The response is complete: hand the connection back or close it. */
static void conn_response_done(struct h1_conn *c)
{
    struct h1_req *r = c->req;
    int reuse = h1_parser_keepalive(&c->parser) && !c->eof && !c->wr_dead &&
                !c->shut_done && !c->pool->closing &&
                evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
                evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
    if (!reuse && evbuffer_get_length(bufferevent_get_input(c->bev)))
        log_debug("h1_extra_bytes", "endpoint=%s conn=%lu bytes=%zu", c->pool->name, c->id,
                  evbuffer_get_length(bufferevent_get_input(c->bev)));
    c->served++;
    req_detach_conn(r);
    req_finish(r, 0, NULL);
    if (reuse)
        conn_make_idle(c);
    else
        conn_close(c);
}

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

/* The connection ended (or failed) before the response did. */
static void conn_lost(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    struct h1_req *r = c->req;
    int e = c->eof_errno ? c->eof_errno : c->wr_errno;
    const char *why = c->eof_reason[0] ? c->eof_reason : e ? strerror(e) : NULL;
    size_t unsent = evbuffer_get_length(bufferevent_get_output(c->bev));
    int nothing_written = !c->wr_dead && unsent >= r->wire_len;
    if (c->resp_bytes == 0 && r->on_reused && !r->retried && !pool->closing &&
        (r->idempotent || nothing_written)) {
        /* The classic keep-alive race: the engine closed the idle
         * connection as the request went out. Once more, on a new one. */
        log_debug("h1_retry", "endpoint=%s conn=%lu request=%s err=%s", pool->name, c->id,
                  crisp_logq(r->what), crisp_logq(why ? why : "EOF"));
        req_detach_conn(r);
        conn_close(c);
        r->retried = 1;
        r->fresh = 1;
        r->state = R_QUEUED;
        pool->stats.retries++;
        q_push_head(pool, r);
        schedule_dispatch(pool);
        return;
    }
    char reason[220] = "";
    if (why)
        snprintf(reason, sizeof(reason), " (%s)", why);
    uint64_t got = c->resp_bytes;
    req_detach_conn(r);
    conn_close(c);
    if (got == 0)
        req_finish(r, H1_E_IO, "connection to %s closed before the response to %s%s", pool->name,
                   r->what, reason);
    else
        req_finish(r, H1_E_IO, "connection to %s lost after %llu byte%s of the response to %s%s",
                   pool->name, (unsigned long long)got, plural(got), r->what, reason);
}

/* ---- parser callbacks for a pool connection ----------------------------- */

static int pc_on_head(void *ud, int status, const struct crisp_md *headers)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    r->status = status;
    r->head_seen = 1;
    if (r->cbs.on_head) {
        int rv = r->cbs.on_head(r, status, headers, r->ud);
        if (rv < 0) {
            c->abort_err = H1_E_ABORTED;
            return -1;
        }
    }
    if (r->cancelled)
        return -1;
    if (r->paused)
        c->parser.yield = 1;
    return 0;
}

static int pc_on_body(void *ud, const uint8_t *p, size_t n)
{
    struct h1_conn *c = ud;
    struct h1_req *r = c->req;
    if (r->cbs.on_body) {
        if (r->cbs.on_body(r, p, n, r->ud) < 0) {
            c->abort_err = H1_E_ABORTED;
            return -1;
        }
        if (r->cancelled)
            return -1;
        if (r->paused)
            c->parser.yield = 1;
        return 0;
    }
    if (r->body.len + n > r->body_max || r->body.len + n < n) {
        c->abort_err = H1_E_TOO_LARGE;
        return -1;
    }
    if (crisp_buf_append(&r->body, p, n) < 0) {
        c->abort_err = H1_E_NOMEM;
        return -1;
    }
    return 0;
}

static const struct h1_parser_cbs pool_parser_cbs = {
    .on_head = pc_on_head,
    .on_body = pc_on_body,
    .on_complete = NULL,
};

/* The parser (or a callback) ended the response with an error. */
static void conn_parse_failed(struct h1_conn *c, int err)
{
    struct h1_pool *pool = c->pool;
    struct h1_req *r = c->req;
    char msg[320];
    if (err == H1_E_ABORTED && c->abort_err == H1_E_TOO_LARGE) {
        err = H1_E_TOO_LARGE;
        sfmt(msg, sizeof(msg), "the response to %s from %s is larger than the limit of %zu bytes",
                 r->what, pool->name, r->body_max);
    } else if (err == H1_E_ABORTED && c->abort_err == H1_E_NOMEM) {
        err = H1_E_NOMEM;
        snprintf(msg, sizeof(msg), "out of memory buffering the response to %s", r->what);
    } else if (err == H1_E_ABORTED) {
        snprintf(msg, sizeof(msg), "%s was aborted by its callback", r->what);
    } else if (err == H1_E_TOO_LARGE) {
        sfmt(msg, sizeof(msg), "the response to %s from %s is too large: %s", r->what,
                 pool->name, c->parser.why);
    } else if (err == H1_E_NOMEM) {
        snprintf(msg, sizeof(msg), "out of memory reading the response to %s", r->what);
    } else {
        sfmt(msg, sizeof(msg), "malformed response to %s from %s: %s", r->what, pool->name,
                 c->parser.why);
    }
    req_detach_conn(r);
    conn_close(c);
    req_finish(r, err, "%s", msg);
}

/* Feeds buffered input to the parser; handles the end of the response and
 * of the connection. The connection may be gone when this returns. */
static void conn_process(struct h1_conn *c)
{
    struct h1_req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!r) {
        if (c->state == C_IDLE && (c->eof || evbuffer_get_length(in))) {
            log_debug("h1_idle_closed", "endpoint=%s conn=%lu unexpected_bytes=%zu", c->pool->name,
                      c->id, evbuffer_get_length(in));
            conn_close(c);
        }
        return;
    }
    if (r->paused)
        return;
    int err = 0;
    r->in_cb++;
    while (!r->paused && !r->cancelled && c->parser.state != P_DONE) {
        size_t len = evbuffer_get_contiguous_space(in);
        if (len == 0)
            break;
        const uint8_t *d = evbuffer_pullup(in, (ssize_t)len);
        ssize_t k = h1_parser_feed(&c->parser, d, len);
        if (k < 0) {
            err = (int)k;
            break;
        }
        c->resp_bytes += (uint64_t)k;
        evbuffer_drain(in, (size_t)k);
        if (k == 0)
            break;
    }
    r->in_cb--;
    if (r->cancelled) {
        req_detach_conn(r);
        conn_close(c);
        req_free(r);
        return;
    }
    if (err) {
        conn_parse_failed(c, err);
        return;
    }
    if (c->parser.state == P_DONE) {
        conn_response_done(c);
        return;
    }
    if (r->paused || !c->eof || evbuffer_get_length(in))
        return;
    /* The read side ended and everything read was parsed. */
    if (c->parser.state == P_BODY_EOF && !c->eof_errno) {
        h1_parser_eof(&c->parser);
        conn_response_done(c);
        return;
    }
    conn_lost(c);
}

/* ---- bufferevent callbacks ---------------------------------------------- */

static void on_bev_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_process(arg);
}

static void on_bev_write(struct bufferevent *bev, void *arg)
{
    struct h1_conn *c = arg;
    if (c->shut_pending && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_shut_write(c);
}

static void conn_ready(struct h1_conn *c);
static void connect_failed(struct h1_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tls_error_text(struct h1_conn *c, int e, char *buf, size_t len)
{
    buf[0] = 0;
    unsigned long err;
    size_t off = 0;
    while ((err = bufferevent_get_openssl_error(c->bev)) != 0) {
        /* libevent also queues SSL_get_error() codes (lib 0): skip them. */
        if (ERR_GET_LIB(err) == 0)
            continue;
        const char *reason = ERR_reason_error_string(err);
        char tmp[256];
        if (!reason) {
            ERR_error_string_n(err, tmp, sizeof(tmp));
            reason = tmp;
        }
        if (off < len) {
            int w = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", reason);
            if (w > 0)
                off += (size_t)w;
        }
    }
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK && off < len) {
        int w = snprintf(buf + off, len - off, "%s%s", off ? ": " : "",
                         X509_verify_cert_error_string(vr));
        if (w > 0)
            off += (size_t)w;
    }
    if (off == 0)
        snprintf(buf, len, "%s", e ? strerror(e) : "the server closed the connection");
    ERR_clear_error();
}

static void on_bev_event(struct bufferevent *bev, short events, void *arg)
{
    struct h1_conn *c = arg;
    int e = EVUTIL_SOCKET_ERROR();
    (void)bev;
    if (c->state == C_HANDSHAKE) {
        if (events & BEV_EVENT_CONNECTED) {
            evtimer_del(c->tmr);
            conn_ready(c);
            return;
        }
        char why[256];
        tls_error_text(c, (events & BEV_EVENT_ERROR) ? e : 0, why, sizeof(why));
        connect_failed(c, "TLS handshake with %s failed: %s", c->pool->name, why);
        return;
    }
    if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if ((events & BEV_EVENT_WRITING) && !c->pool->tls) {
        /* The write side failed (EPIPE, ECONNRESET): stop writing, but a
         * response may still be there to read. */
        c->wr_dead = 1;
        c->wr_errno = e;
        struct evbuffer *out = bufferevent_get_output(bev);
        evbuffer_drain(out, evbuffer_get_length(out));
        if (!c->req) {
            conn_close(c);
            return;
        }
        return;
    }
    c->eof = 1;
    if (events & BEV_EVENT_ERROR) {
        c->eof_errno = e ? e : EIO;
        if (c->pool->tls)
            tls_error_text(c, e, c->eof_reason, sizeof(c->eof_reason));
        else
            snprintf(c->eof_reason, sizeof(c->eof_reason), "%s", strerror(c->eof_errno));
    }
    if (!c->req) {
        if (c->state == C_IDLE)
            log_debug("h1_idle_closed", "endpoint=%s conn=%lu", c->pool->name, c->id);
        conn_close(c);
        return;
    }
    conn_process(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_process(arg);
}

/* ---- connecting --------------------------------------------------------- */

static void connect_failed(struct h1_conn *c, const char *fmt, ...)
{
    struct h1_pool *pool = c->pool;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pool->stats.connect_failures++;
    log_debug("h1_connect_failed", "endpoint=%s conn=%lu err=%s", pool->name, c->id,
              crisp_logq(msg));
    conn_close(c);
    /* With no working connection the engine is unreachable: every waiting
     * request fails now. Otherwise only the ones this connection was
     * opened for, the others keep their turn. */
    int live = pool->nconns > pool->nconnecting;
    while (pool->qhead && (!live || pool->nqueued > pool->nconnecting)) {
        struct h1_req *r = pool->qhead;
        q_del(pool, r);
        req_finish(r, H1_E_CONNECT, "%s", msg);
        if (live)
            break;
    }
}

static void conn_start_tls(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    SSL *ssl = SSL_new(pool->tls);
    if (!ssl) {
        ERR_clear_error();
        connect_failed(c, "connect %s: cannot create a TLS session", pool->name);
        return;
    }
    if (pool->sni[0]) {
        SSL_set_tlsext_host_name(ssl, pool->sni);
        SSL_set1_host(ssl, pool->sni);
    } else if (pool->verify_ip[0]) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), pool->verify_ip);
    }
    c->bev = bufferevent_openssl_socket_new(pool->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        SSL_free(ssl);
        connect_failed(c, "connect %s: out of memory", pool->name);
        return;
    }
    c->fd = -1;
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->state = C_HANDSHAKE;
    bufferevent_setcb(c->bev, on_bev_read, on_bev_write, on_bev_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct timeval tv;
    tv_ms(&tv, conn_ms_left(c));
    evtimer_add(c->tmr, &tv);
}

/* The socket is connected. */
static void conn_connected(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    if (c->connect_ev) {
        event_free(c->connect_ev);
        c->connect_ev = NULL;
    }
    if (pool->tls) {
        conn_start_tls(c);
        return;
    }
    c->bev = bufferevent_socket_new(pool->base, c->fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        connect_failed(c, "connect %s: out of memory", pool->name);
        return;
    }
    c->fd = -1;
    bufferevent_setcb(c->bev, on_bev_read, on_bev_write, on_bev_event, c);
    conn_ready(c);
}

/* Connected (and TLS done): serve the oldest waiting request or idle. */
static void conn_ready(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    pool->nconnecting--;
    pool->stats.conns_opened++;
    c->state = C_BUSY; /* not idle, not connecting: assign or idle below */
    log_debug("h1_conn_open", "endpoint=%s conn=%lu", pool->name, c->id);
    if (pool->qhead) {
        conn_assign(c, pool->qhead);
        return;
    }
    conn_make_idle(c);
}

static void try_connect(struct h1_conn *c)
{
    struct h1_pool *pool = c->pool;
    if (connect(c->fd, (struct sockaddr *)&pool->addr.ss, pool->addr.sslen) == 0) {
        c->connect_now = 1;
        evtimer_add(c->tmr, &tv_zero);
        return;
    }
    int e = errno;
    if (e == EINPROGRESS || e == EINTR) {
        struct timeval tv;
        tv_ms(&tv, conn_ms_left(c));
        event_add(c->connect_ev, &tv);
        return;
    }
    if (e == EAGAIN && pool->addr.kind == CRISP_ADDR_UNIX) {
        /* The listener's backlog is full; a unix connect cannot wait. */
        c->connect_retry = 1;
        long left = conn_ms_left(c);
        struct timeval tv;
        tv_ms(&tv, left < H1_UNIX_RETRY_MS ? left : H1_UNIX_RETRY_MS);
        evtimer_add(c->tmr, &tv);
        return;
    }
    c->connect_errno = e;
    evtimer_add(c->tmr, &tv_zero);
}

static void on_connect_ev(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    struct h1_pool *pool = c->pool;
    if (what & EV_TIMEOUT) {
        connect_failed(c, "connect %s: timed out after %u ms", pool->name,
                       pool->connect_timeout_ms);
        return;
    }
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        e = errno;
    if (e == EINPROGRESS || e == EINTR) {
        struct timeval tv;
        tv_ms(&tv, conn_ms_left(c));
        event_add(c->connect_ev, &tv);
        return;
    }
    if (e) {
        connect_failed(c, "connect %s: %s", pool->name, strerror(e));
        return;
    }
    conn_connected(c);
}

static void on_conn_tmr(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct h1_conn *c = arg;
    struct h1_pool *pool = c->pool;
    switch (c->state) {
    case C_CONNECTING:
        if (c->connect_errno) {
            connect_failed(c, "connect %s: %s", pool->name, strerror(c->connect_errno));
        } else if (c->connect_now) {
            conn_connected(c);
        } else if (c->connect_retry) {
            if (conn_ms_left(c) == 0) {
                connect_failed(c, "connect %s: timed out after %u ms (listen backlog full)",
                               pool->name, pool->connect_timeout_ms);
                return;
            }
            c->connect_retry = 0;
            try_connect(c);
        }
        break;
    case C_HANDSHAKE:
        connect_failed(c, "TLS handshake with %s: timed out after %u ms", pool->name,
                       pool->connect_timeout_ms);
        break;
    case C_IDLE:
        log_debug("h1_idle_timeout", "endpoint=%s conn=%lu", pool->name, c->id);
        conn_close(c);
        break;
    case C_BUSY:
        break;
    }
}

static struct h1_conn *conn_open(struct h1_pool *pool)
{
    struct h1_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->pool = pool;
    c->fd = -1;
    c->id = ++pool->next_id;
    c->state = C_CONNECTING;
    parser_init(&c->parser, &pool_parser_cbs, c, H1_HEAD_MAX);
    c->tmr = evtimer_new(pool->base, on_conn_tmr, c);
    c->kick_ev = event_new(pool->base, -1, 0, on_kick, c);
    LIST_PUSH(pool->conns, c, prev, next);
    pool->nconns++;
    pool->nconnecting++;
    if (!c->tmr || !c->kick_ev) {
        conn_close(c);
        return NULL;
    }
    ts_now(&c->deadline);
    c->deadline.tv_sec += pool->connect_timeout_ms / 1000;
    c->deadline.tv_nsec += (long)(pool->connect_timeout_ms % 1000) * 1000000;
    if (c->deadline.tv_nsec >= 1000000000) {
        c->deadline.tv_sec++;
        c->deadline.tv_nsec -= 1000000000;
    }
    c->fd = socket(pool->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->connect_errno = errno;
        evtimer_add(c->tmr, &tv_zero);
        return c;
    }
    if (pool->addr.kind == CRISP_ADDR_TCP) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->connect_ev = event_new(pool->base, c->fd, EV_WRITE, on_connect_ev, c);
    if (!c->connect_ev) {
        conn_close(c);
        return NULL;
    }
    try_connect(c);
    return c;
}

/* Sends the request on the connection. */
static void conn_assign(struct h1_conn *c, struct h1_req *r)
{
    struct h1_pool *pool = c->pool;
    q_del(pool, r);
    r->state = R_ACTIVE;
    r->conn = c;
    r->on_reused = c->served > 0;
    c->req = r;
    c->state = C_BUSY;
    c->resp_bytes = 0;
    c->abort_err = 0;
    parser_clear(&c->parser);
    parser_init(&c->parser, &pool_parser_cbs, c, H1_HEAD_MAX);
    if (r->is_head)
        h1_parser_expect_no_body(&c->parser);
    pool->stats.requests++;
    if (r->on_reused)
        pool->stats.reused++;
    if (bufferevent_write(c->bev, r->wire, r->wire_len) < 0) {
        req_detach_conn(r);
        conn_close(c);
        req_finish(r, H1_E_NOMEM, "out of memory sending %s", r->what);
        return;
    }
    bufferevent_enable(c->bev, EV_WRITE);
    if (r->paused)
        bufferevent_disable(c->bev, EV_READ);
    else
        bufferevent_enable(c->bev, EV_READ);
}

/* ---- dispatch ----------------------------------------------------------- */

static struct h1_conn *idle_take(struct h1_pool *pool)
{
    struct h1_conn *c;
    while ((c = pool->idle) != NULL) {
        idle_del(c);
        c->state = C_BUSY;
        if (conn_alive(c))
            return c;
        log_debug("h1_idle_dead", "endpoint=%s conn=%lu", pool->name, c->id);
        conn_close(c);
    }
    return NULL;
}

static void dispatch(struct h1_pool *pool)
{
    if (pool->closing)
        return;
    unsigned want = 0; /* waiting requests that need a new connection */
    struct h1_req *r = pool->qhead;
    while (r) {
        struct h1_req *next = r->next;
        struct h1_conn *c = r->fresh ? NULL : idle_take(pool);
        if (c)
            conn_assign(c, r);
        else
            want++;
        r = next;
    }
    while (pool->nconnecting < want) {
        if (pool->nconns >= pool->max_conns) {
            /* Only a retry refuses idle connections: make room for it. */
            if (!pool->idle)
                break;
            struct h1_conn *old = pool->idle;
            while (old->inext)
                old = old->inext;
            conn_close(old);
            continue;
        }
        if (!conn_open(pool)) {
            if (pool->nconns == 0 && pool->qhead) {
                struct h1_req *q = pool->qhead;
                q_del(pool, q);
                req_finish(q, H1_E_NOMEM, "out of memory connecting to %s", pool->name);
            }
            break;
        }
    }
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatch(arg);
}

static void schedule_dispatch(struct h1_pool *pool)
{
    if (!pool->closing)
        event_active(pool->dispatch_ev, EV_TIMEOUT, 0);
}

/* ---- pool --------------------------------------------------------------- */

struct h1_pool *h1_pool_new(struct event_base *base, const struct h1_pool_opts *o, char *err,
                            size_t errlen)
{
    if (!o || !o->addr ||
        (o->addr->kind != CRISP_ADDR_UNIX && o->addr->kind != CRISP_ADDR_TCP)) {
        snprintf(err, errlen, "the HTTP client needs a unix:// or tcp:// address");
        return NULL;
    }
    struct h1_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pool->base = base;
    pool->addr = *o->addr;
    pool->max_conns = o->max_conns ? o->max_conns : 64;
    pool->max_idle = o->max_idle ? o->max_idle : 8;
    pool->idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 30000;
    pool->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    if (pool->max_idle > pool->max_conns)
        pool->max_idle = pool->max_conns;

    unsigned port = 0;
    if (pool->addr.ss.ss_family == AF_INET)
        port = ntohs(((struct sockaddr_in *)&pool->addr.ss)->sin_port);
    else if (pool->addr.ss.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&pool->addr.ss)->sin6_port);
    int v6 = strchr(pool->addr.host, ':') != NULL;
    if (pool->addr.kind == CRISP_ADDR_UNIX)
        snprintf(pool->name, sizeof(pool->name), "unix://%s", pool->addr.path);
    else
        snprintf(pool->name, sizeof(pool->name), "tcp://%s%s%s:%u", v6 ? "[" : "",
                 pool->addr.host, v6 ? "]" : "", port);
    if (o->host)
        snprintf(pool->host, sizeof(pool->host), "%s", o->host);
    else if (pool->addr.kind == CRISP_ADDR_UNIX)
        snprintf(pool->host, sizeof(pool->host), "docker");
    else
        snprintf(pool->host, sizeof(pool->host), "%s%s%s:%u", v6 ? "[" : "", pool->addr.host,
                 v6 ? "]" : "", port);
    if (!valid_value((const uint8_t *)pool->host, strlen(pool->host)) || !pool->host[0]) {
        snprintf(err, errlen, "bad Host header value");
        free(pool);
        return NULL;
    }
    if (o->tls) {
        /* The certificate is checked against the name of the address (or
         * the Host header for a unix socket), when the context verifies. */
        const char *name = pool->addr.kind == CRISP_ADDR_TCP && pool->addr.host[0]
                               ? pool->addr.host
                               : pool->host;
        struct in6_addr a6;
        struct in_addr a4;
        if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1)
            sfmt(pool->verify_ip, sizeof(pool->verify_ip), "%s", name);
        else
            sfmt(pool->sni, sizeof(pool->sni), "%s", name);
        SSL_CTX_up_ref(o->tls);
        pool->tls = o->tls;
    }
    pool->dispatch_ev = event_new(base, -1, 0, on_dispatch, pool);
    if (!pool->dispatch_ev) {
        snprintf(err, errlen, "out of memory");
        if (pool->tls)
            SSL_CTX_free(pool->tls);
        free(pool);
        return NULL;
    }
    return pool;
}

void h1_pool_free(struct h1_pool *pool)
{
    if (!pool)
        return;
    pool->closing = 1;
    event_del(pool->dispatch_ev);
    while (pool->reqs) {
        struct h1_req *r = pool->reqs;
        if (r->state == R_QUEUED) {
            q_del(pool, r);
        } else if (r->state == R_ACTIVE) {
            struct h1_conn *c = r->conn;
            req_detach_conn(r);
            if (c)
                conn_close(c);
        }
        if (r->state != R_DONE) {
            r->state = R_DONE;
            r->err = H1_E_ABORTED;
            sfmt(r->errmsg, sizeof(r->errmsg), "%s abandoned: the HTTP client for %s was closed",
                     r->what, pool->name);
        }
        req_deliver(r);
        req_free(r);
    }
    while (pool->conns)
        conn_close(pool->conns);
    event_free(pool->dispatch_ev);
    if (pool->tls)
        SSL_CTX_free(pool->tls);
    free(pool);
}

unsigned h1_pool_conns(const struct h1_pool *pool)
{
    return pool->nconns;
}

void h1_pool_get_stats(const struct h1_pool *pool, struct h1_pool_stats *st)
{
    *st = pool->stats;
    st->idle = pool->nidle;
}
