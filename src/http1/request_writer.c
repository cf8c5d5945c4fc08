/* request_writer.c - an HTTP/1.1 request as bytes (request_writer.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/buf.h"
#include "crisp/version.h"
#include "head.h"
#include "request_writer.h"

int h1_value_ok(const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == 0)
            return 0;
    return 1;
}

static int token_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!h1_is_tchar((uint8_t)*s))
            return 0;
    return 1;
}

static int target_ok(const char *t)
{
    if (!t || !*t)
        return 0;
    for (; *t; t++)
        if ((uint8_t)*t <= 0x20 || (uint8_t)*t >= 0x7f)
            return 0;
    return 1;
}

static int field_ok(const struct crisp_hdr *h)
{
    if (h->namelen == 0 || !h1_value_ok(h->value, h->valuelen))
        return 0;
    for (size_t k = 0; k < h->namelen; k++)
        if (!h1_is_tchar(h->name[k]))
            return 0;
    return 1;
}

static int name_is(const struct crisp_hdr *h, const char *name)
{
    return h1_token_eq(h->name, h->namelen, name);
}

/* Refuses what cannot go on the wire. */
static int check(const struct h1_req_opts *o, const char *method, char *why, size_t whylen)
{
    if (!token_ok(method))
        h1_sfmt(why, whylen, "bad method \"%s\"", method);
    else if (!o->target || !*o->target)
        snprintf(why, whylen, "empty request target");
    else if (!target_ok(o->target))
        snprintf(why, whylen, "request target with a space or a control byte");
    else if (o->body_len && !o->body)
        snprintf(why, whylen, "body_len without a body");
    else if (o->content_type &&
             !h1_value_ok((const uint8_t *)o->content_type, strlen(o->content_type)))
        snprintf(why, whylen, "bad Content-Type value");
    else
        why[0] = 0;
    const struct crisp_md *md = o->headers;
    for (size_t i = 0; !why[0] && md && i < md->n; i++)
        if (!field_ok(&md->v[i]))
            h1_sfmt(why, whylen, "bad request header \"%.*s\"",
                    (int)(md->v[i].namelen > 40 ? 40 : md->v[i].namelen),
                    (const char *)md->v[i].name);
    return why[0] ? H1_E_INVALID : 0;
}

/* Output that remembers its first failure. */
struct out {
    struct crisp_buf b;
    int rv;
};

static void put(struct out *w, const void *p, size_t n)
{
    if (w->rv == 0)
        w->rv = crisp_buf_append(&w->b, p, n);
}

static void puts3(struct out *w, const char *a, const char *b, const char *c)
{
    put(w, a, strlen(a));
    put(w, b, strlen(b));
    put(w, c, strlen(c));
}

/* The caller's headers that are not the client's own. */
static int user_field(const struct h1_req_opts *o, const struct crisp_hdr *h)
{
    return !(name_is(h, "host") || name_is(h, "content-length") ||
             name_is(h, "transfer-encoding") || name_is(h, "connection") ||
             name_is(h, "upgrade") || (o->content_type && name_is(h, "content-type")));
}

static int has_user_agent(const struct crisp_md *md)
{
    for (size_t i = 0; md && i < md->n; i++)
        if (name_is(&md->v[i], "user-agent"))
            return 1;
    return 0;
}

static void put_head(struct out *w, const struct h1_req_opts *o, const char *method,
                     const char *host)
{
    puts3(w, method, " ", o->target);
    puts3(w, " HTTP/1.1\r\nHost: ", host, "\r\n");
    if (!has_user_agent(o->headers))
        puts3(w, "User-Agent: crisp/", CRISP_VERSION, "\r\n");
    if (o->content_type)
        puts3(w, "Content-Type: ", o->content_type, "\r\n");
    if (o->body_len > 0 || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
        !strcmp(method, "PATCH")) {
        char cl[32];
        snprintf(cl, sizeof(cl), "%zu", o->body_len);
        puts3(w, "Content-Length: ", cl, "\r\n");
    }
    if (o->upgrade)
        puts3(w, "Connection: Upgrade\r\n", "Upgrade: tcp\r\n", "");
    const struct crisp_md *md = o->headers;
    for (size_t i = 0; md && i < md->n; i++) {
        if (!user_field(o, &md->v[i]))
            continue;
        put(w, md->v[i].name, md->v[i].namelen);
        put(w, ": ", 2);
        put(w, md->v[i].value, md->v[i].valuelen);
        put(w, "\r\n", 2);
    }
    put(w, "\r\n", 2);
}

int h1_request_write(const struct h1_req_opts *o, const char *host, uint8_t **wire, size_t *len,
                     char *why, size_t whylen)
{
    const char *method = o->method ? o->method : "GET";
    int rv = check(o, method, why, whylen);
    if (rv < 0)
        return rv;
    struct out w = {.rv = 0};
    crisp_buf_init(&w.b, (size_t)-1 / 2);
    put_head(&w, o, method, host);
    if (o->body && o->body_len)
        put(&w, o->body, o->body_len);
    if (w.rv < 0) {
        crisp_buf_free(&w.b);
        return H1_E_NOMEM;
    }
    *wire = w.b.data;
    *len = w.b.len;
    return 0;
}
