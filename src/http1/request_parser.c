/* request_parser.c - the head of an HTTP/1.1 request (h1_parser.h): the
 * request line and the header fields, read with head.c under one cap. No
 * I/O, no body: the streaming server reads only the head of its Upgrade
 * requests; what follows the head belongs to the upgraded protocol and is
 * left to the caller, with the framing the head announced. */
#include <assert.h>
#include <stdlib.h>

#include "head.h"

#define REQ_METHOD_MAX 16
#define REQ_TARGET_MAX 8192

enum rq_state { RQ_LINE = 0, RQ_HEADER, RQ_DONE, RQ_ERROR };

struct h1_reqp {
    enum rq_state state;
    int err;
    struct h1_head head;   /* why lives here too */
    char method[REQ_METHOD_MAX + 1];
    char *target;
    int minor;
    unsigned lines;        /* lines of the head so far (leading CRLFs skipped) */
};

struct h1_reqp *h1_reqp_new(size_t head_max)
{
    struct h1_reqp *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    h1_head_init(&p->head, head_max);
    return p;
}

void h1_reqp_free(struct h1_reqp *p)
{
    if (!p)
        return;
    h1_head_free(&p->head);
    free(p->target);
    free(p);
}

static int rq_error(struct h1_reqp *p, int err)
{
    assert(err < 0);
    p->state = RQ_ERROR;
    p->err = err;
    return err;
}

/* "METHOD SP request-target SP HTTP/1.x" (RFC 9112 3). */
static int parse_request_line(struct h1_reqp *p, const uint8_t *s, size_t n)
{
    const uint8_t *sp1 = memchr(s, ' ', n);
    const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - s)) : NULL;
    if (!sp1 || !sp2 || sp1 == s || sp2 == sp1 + 1)
        return h1_head_fail(&p->head, H1_E_PARSE, "bad request line");
    size_t ml = (size_t)(sp1 - s), tl = (size_t)(sp2 - sp1 - 1), vl = n - (size_t)(sp2 + 1 - s);
    if (ml > REQ_METHOD_MAX)
        return h1_head_fail(&p->head, H1_E_PARSE, "method longer than %d bytes", REQ_METHOD_MAX);
    for (size_t i = 0; i < ml; i++)
        if (!h1_is_tchar(s[i]))
            return h1_head_fail(&p->head, H1_E_PARSE, "bad method");
    if (tl > REQ_TARGET_MAX)
        return h1_head_fail(&p->head, H1_E_TOO_LARGE, "request target longer than %d bytes",
                            REQ_TARGET_MAX);
    for (size_t i = 0; i < tl; i++)
        if (sp1[1 + i] <= 0x20 || sp1[1 + i] == 0x7f)
            return h1_head_fail(&p->head, H1_E_PARSE, "control byte or space in the target");
    if (vl != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || !h1_is_digit(sp2[8]))
        return h1_head_fail(&p->head, H1_E_PARSE, "not an HTTP/1.x request");
    memcpy(p->method, s, ml);
    p->method[ml] = 0;
    p->target = strndup((const char *)sp1 + 1, tl);
    if (!p->target)
        return h1_head_fail(&p->head, H1_E_NOMEM, "out of memory");
    p->minor = sp2[8] - '0';
    p->state = RQ_HEADER;
    return 0;
}

/* A whole line of the head. */
static int rq_line(struct h1_reqp *p, const uint8_t *s, size_t n)
{
    if (p->state == RQ_LINE) {
        if (n == 0 && p->lines++ < 4)
            return 0; /* RFC 9112 2.2: ignore a few empty lines first */
        return parse_request_line(p, s, n);
    }
    if (n > 0)
        return h1_head_field_line(&p->head, s, n, 0);
    int rv = h1_head_end(&p->head);
    if (rv == 0 && p->head.have_te && !p->head.te_chunked)
        rv = h1_head_fail(&p->head, H1_E_PARSE, "a request body must end with chunked");
    if (rv == 0 && p->head.have_te && p->head.have_cl)
        rv = h1_head_fail(&p->head, H1_E_PARSE, "both Content-Length and Transfer-Encoding");
    if (rv == 0)
        p->state = RQ_DONE;
    return rv;
}

ssize_t h1_reqp_feed(struct h1_reqp *p, const uint8_t *d, size_t n)
{
    if (p->state == RQ_ERROR)
        return p->err;
    size_t used = 0;
    while (used < n && p->state != RQ_DONE) {
        int done;
        ssize_t t = h1_head_take_line(&p->head, d + used, n - used, "request headers", &done);
        if (t < 0)
            return rq_error(p, (int)t);
        used += (size_t)t;
        if (!done)
            break;
        int rv = rq_line(p, p->head.line.data, p->head.line.len);
        crisp_buf_reset(&p->head.line);
        if (rv < 0)
            return rq_error(p, rv);
    }
    return (ssize_t)used;
}

int h1_reqp_done(const struct h1_reqp *p)
{
    return p->state == RQ_DONE;
}

const char *h1_reqp_method(const struct h1_reqp *p)
{
    return p->method;
}

const char *h1_reqp_target(const struct h1_reqp *p)
{
    return p->target ? p->target : "";
}

int h1_reqp_minor(const struct h1_reqp *p)
{
    return p->minor;
}

const struct crisp_md *h1_reqp_fields(const struct h1_reqp *p)
{
    return &p->head.fields;
}

int h1_reqp_body(const struct h1_reqp *p, uint64_t *len)
{
    *len = p->head.have_cl ? p->head.content_length : 0;
    return p->head.te_chunked ? 1 : 0;
}

const char *h1_reqp_why(const struct h1_reqp *p)
{
    return p->head.why;
}
