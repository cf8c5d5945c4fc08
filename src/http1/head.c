/* head.c - the head of an HTTP/1.1 message, read line by line: field
 * lines, framing fields, the line reader (head.h). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "head.h"

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

int h1_token_eq(const uint8_t *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp((const char *)a, b, n) == 0;
}

void h1_sfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

ssize_t h1_line_take(struct crisp_buf *line, const uint8_t *d, size_t n, size_t limit, int *done)
{
    const uint8_t *lf = memchr(d, '\n', n);
    size_t take = lf ? (size_t)(lf - d) + 1 : n;
    *done = 0;
    if (take > limit || line->len > limit - take)
        return -1;
    if (crisp_buf_append(line, d, take) < 0)
        return -2;
    if (lf) {
        line->len--;
        if (line->len && line->data[line->len - 1] == '\r')
            line->len--;
        *done = 1;
    }
    return (ssize_t)take;
}

/* ---- the head ----------------------------------------------------------- */

void h1_head_init(struct h1_head *h, size_t max)
{
    memset(h, 0, sizeof(*h));
    h->max = max ? max : H1_HEAD_MAX;
    crisp_buf_init(&h->line, h->max);
    crisp_buf_init(&h->pend, h->max);
    /* The head is capped by max already; the list only needs room. */
    crisp_md_init(&h->fields, (size_t)-1 / 2);
}

void h1_head_free(struct h1_head *h)
{
    crisp_buf_free(&h->line);
    crisp_buf_free(&h->pend);
    crisp_md_free(&h->fields);
}

void h1_head_restart(struct h1_head *h)
{
    assert(!h->have_pend);
    crisp_md_free(&h->fields);
    crisp_md_init(&h->fields, (size_t)-1 / 2);
    h->have_cl = h->have_te = h->te_chunked = h->conn_close = h->conn_ka = 0;
    h->chunked_count = 0;
    h->content_length = 0;
    h->bytes = 0;
}

int h1_head_fail(struct h1_head *h, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof(h->why), fmt, ap);
    va_end(ap);
    return err;
}

ssize_t h1_head_take_line(struct h1_head *h, const uint8_t *d, size_t n, const char *what,
                          int *done)
{
    /* The line's bytes so far are in h->bytes already. */
    size_t lim = h->line.len + (h->max - h->bytes);
    ssize_t t = h1_line_take(&h->line, d, n, lim, done);
    if (t == -2)
        return h1_head_fail(h, H1_E_NOMEM, "out of memory");
    if (t < 0)
        return h1_head_fail(h, H1_E_TOO_LARGE, "%s exceed %zu bytes", what, h->max);
    h->bytes += (size_t)t;
    return t;
}

/* ---- framing fields ----------------------------------------------------- */

static void trim(const uint8_t *v, size_t *a, size_t *b)
{
    while (*a < *b && (v[*a] == ' ' || v[*a] == '\t'))
        (*a)++;
    while (*b > *a && (v[*b - 1] == ' ' || v[*b - 1] == '\t'))
        (*b)--;
}

/* Walks a comma-separated list; calls fn for each non-empty element (OWS
 * trimmed, parameters after ';' kept). */
static int each_elem(struct h1_head *h, const uint8_t *v, size_t n,
                     int (*fn)(struct h1_head *, const uint8_t *, size_t))
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        trim(v, &a, &b);
        if (b > a) {
            int rv = fn(h, v + a, b - a);
            if (rv < 0)
                return rv;
        }
        i = j + 1;
    }
    return 0;
}

static int cl_elem(struct h1_head *h, const uint8_t *v, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!h1_is_digit(v[i]))
            return h1_head_fail(h, H1_E_PARSE, "bad Content-Length \"%.*s\"",
                                (int)(n > 40 ? 40 : n), (const char *)v);
        if (x > (UINT64_MAX / 2 - 9) / 10)
            return h1_head_fail(h, H1_E_PARSE, "Content-Length too large");
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (h->have_cl && x != h->content_length)
        return h1_head_fail(h, H1_E_PARSE, "conflicting Content-Length values");
    h->have_cl = 1;
    h->content_length = x;
    return 0;
}

static int te_elem(struct h1_head *h, const uint8_t *v, size_t n)
{
    size_t k = 0;
    while (k < n && v[k] != ';' && v[k] != ' ' && v[k] != '\t')
        k++;
    h->have_te = 1;
    if (!h1_token_eq(v, k, "chunked")) {
        h->te_chunked = 0;
        return 0;
    }
    if (++h->chunked_count > 1)
        return h1_head_fail(h, H1_E_PARSE, "chunked transfer coding applied twice");
    h->te_chunked = 1;
    return 0;
}

static int conn_elem(struct h1_head *h, const uint8_t *v, size_t n)
{
    if (h1_token_eq(v, n, "close"))
        h->conn_close = 1;
    else if (h1_token_eq(v, n, "keep-alive"))
        h->conn_ka = 1;
    return 0;
}

/* Notes what a framing field says. */
static int framing_field(struct h1_head *h, const uint8_t *name, size_t nl, const uint8_t *val,
                         size_t vl)
{
    if (h1_token_eq(name, nl, "content-length")) {
        int rv = each_elem(h, val, vl, cl_elem);
        if (rv == 0 && !h->have_cl)
            return h1_head_fail(h, H1_E_PARSE, "empty Content-Length");
        return rv;
    }
    if (h1_token_eq(name, nl, "transfer-encoding"))
        return each_elem(h, val, vl, te_elem);
    if (h1_token_eq(name, nl, "connection"))
        return each_elem(h, val, vl, conn_elem);
    return 0;
}

/* ---- field lines -------------------------------------------------------- */

/* The field read so far is complete: store it and note the framing ones. */
static int commit_field(struct h1_head *h)
{
    if (!h->have_pend)
        return 0;
    h->have_pend = 0;
    const uint8_t *name = h->pend.data;
    size_t nl = h->pend_namelen;
    const uint8_t *val = h->pend.data + nl;
    size_t vl = h->pend.len - nl;
    int rv = framing_field(h, name, nl, val, vl);
    if (rv < 0)
        return rv;
    if (crisp_md_add(&h->fields, name, nl, val, vl) < 0)
        return h1_head_fail(h, H1_E_NOMEM, "out of memory");
    crisp_buf_reset(&h->pend);
    return 0;
}

/* obs-fold: the line continues the previous field value. */
static int fold_line(struct h1_head *h, const uint8_t *s, size_t n, int trailer)
{
    if (trailer)
        return 0;
    if (!h->have_pend)
        return h1_head_fail(h, H1_E_PARSE, "header continuation line without a header");
    size_t a = 0, b = n;
    trim(s, &a, &b);
    if (b == a)
        return 0;
    int rv = 0;
    if (h->pend.len > h->pend_namelen)
        rv = crisp_buf_append(&h->pend, " ", 1);
    if (rv == 0)
        rv = crisp_buf_append(&h->pend, s + a, b - a);
    return rv < 0 ? h1_head_fail(h, H1_E_NOMEM, "out of memory") : 0;
}

/* Starts a field: "name: value", the name lowercased, the value trimmed. */
static int start_field(struct h1_head *h, const uint8_t *s, size_t n, size_t nl)
{
    int rv = commit_field(h);
    if (rv < 0)
        return rv;
    size_t a = nl + 1, b = n;
    trim(s, &a, &b);
    crisp_buf_reset(&h->pend);
    if (crisp_buf_reserve(&h->pend, nl + (b - a)) < 0)
        return h1_head_fail(h, H1_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nl; i++) {
        uint8_t c = s[i];
        h->pend.data[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    memcpy(h->pend.data + nl, s + a, b - a);
    h->pend.len = nl + (b - a);
    h->pend_namelen = nl;
    h->have_pend = 1;
    return 0;
}

int h1_head_field_line(struct h1_head *h, const uint8_t *s, size_t n, int trailer)
{
    const char *kind = trailer ? "trailer" : "header";
    assert(n > 0);
    for (size_t i = 0; i < n; i++)
        if (!h1_is_vchar_ok(s[i]))
            return h1_head_fail(h, H1_E_PARSE, "control byte in a %s line", kind);
    if (s[0] == ' ' || s[0] == '\t')
        return fold_line(h, s, n, trailer);
    const uint8_t *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return h1_head_fail(h, H1_E_PARSE, "%s line without a name and a colon", kind);
    size_t nl = (size_t)(colon - s);
    for (size_t i = 0; i < nl; i++)
        if (!h1_is_tchar(s[i]))
            return h1_head_fail(h, H1_E_PARSE, "bad %s name \"%.*s\"", kind,
                                (int)(nl > 40 ? 40 : nl), (const char *)s);
    return trailer ? 0 : start_field(h, s, n, nl);
}

int h1_head_end(struct h1_head *h)
{
    return commit_field(h);
}
