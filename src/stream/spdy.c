/* spdy.c - SPDY/3.1 framing and header blocks (spdy.h). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stream/spdy.h"

#define SPDY_VERSION 3
#define SPDY_MAX_PAIRS 1024

enum { T_SYN_STREAM = 1, T_SYN_REPLY, T_RST_STREAM, T_SETTINGS, T_PING = 6, T_GOAWAY,
       T_HEADERS, T_WINDOW_UPDATE };

/* SPDY/3's header dictionary (draft-mbelshe-httpbis-spdy-00 2.6.10.1):
 * 65 words with their 32-bit lengths, then text, 1423 bytes. */
static const char dict[] =
    "\x00\x00\x00\x07" "options"
    "\x00\x00\x00\x04" "head"
    "\x00\x00\x00\x04" "post"
    "\x00\x00\x00\x03" "put"
    "\x00\x00\x00\x06" "delete"
    "\x00\x00\x00\x05" "trace"
    "\x00\x00\x00\x06" "accept"
    "\x00\x00\x00\x0e" "accept-charset"
    "\x00\x00\x00\x0f" "accept-encoding"
    "\x00\x00\x00\x0f" "accept-language"
    "\x00\x00\x00\x0d" "accept-ranges"
    "\x00\x00\x00\x03" "age"
    "\x00\x00\x00\x05" "allow"
    "\x00\x00\x00\x0d" "authorization"
    "\x00\x00\x00\x0d" "cache-control"
    "\x00\x00\x00\x0a" "connection"
    "\x00\x00\x00\x0c" "content-base"
    "\x00\x00\x00\x10" "content-encoding"
    "\x00\x00\x00\x10" "content-language"
    "\x00\x00\x00\x0e" "content-length"
    "\x00\x00\x00\x10" "content-location"
    "\x00\x00\x00\x0b" "content-md5"
    "\x00\x00\x00\x0d" "content-range"
    "\x00\x00\x00\x0c" "content-type"
    "\x00\x00\x00\x04" "date"
    "\x00\x00\x00\x04" "etag"
    "\x00\x00\x00\x06" "expect"
    "\x00\x00\x00\x07" "expires"
    "\x00\x00\x00\x04" "from"
    "\x00\x00\x00\x04" "host"
    "\x00\x00\x00\x08" "if-match"
    "\x00\x00\x00\x11" "if-modified-since"
    "\x00\x00\x00\x0d" "if-none-match"
    "\x00\x00\x00\x08" "if-range"
    "\x00\x00\x00\x13" "if-unmodified-since"
    "\x00\x00\x00\x0d" "last-modified"
    "\x00\x00\x00\x08" "location"
    "\x00\x00\x00\x0c" "max-forwards"
    "\x00\x00\x00\x06" "pragma"
    "\x00\x00\x00\x12" "proxy-authenticate"
    "\x00\x00\x00\x13" "proxy-authorization"
    "\x00\x00\x00\x05" "range"
    "\x00\x00\x00\x07" "referer"
    "\x00\x00\x00\x0b" "retry-after"
    "\x00\x00\x00\x06" "server"
    "\x00\x00\x00\x02" "te"
    "\x00\x00\x00\x07" "trailer"
    "\x00\x00\x00\x11" "transfer-encoding"
    "\x00\x00\x00\x07" "upgrade"
    "\x00\x00\x00\x0a" "user-agent"
    "\x00\x00\x00\x04" "vary"
    "\x00\x00\x00\x03" "via"
    "\x00\x00\x00\x07" "warning"
    "\x00\x00\x00\x10" "www-authenticate"
    "\x00\x00\x00\x06" "method"
    "\x00\x00\x00\x03" "get"
    "\x00\x00\x00\x06" "status"
    "\x00\x00\x00\x06" "200 OK"
    "\x00\x00\x00\x07" "version"
    "\x00\x00\x00\x08" "HTTP/1.1"
    "\x00\x00\x00\x03" "url"
    "\x00\x00\x00\x06" "public"
    "\x00\x00\x00\x0a" "set-cookie"
    "\x00\x00\x00\x0a" "keep-alive"
    "\x00\x00\x00\x06" "origin"
    "100101201202205206300302303304305306307402405406407408409410"
    "411412413414415416417502504505203 Non-Authoritative Informat"
    "ion204 No Content301 Moved Permanently400 Bad Request401 Una"
    "uthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr Ma"
    "y Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, "
    "Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,imag"
    "e/gif,application/xml,application/xhtml+xml,text/plain,text/"
    "javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf"
    "-8charset=iso-8859-1,utf-,*,enq=0."
    ;

enum f_state { F_HEAD = 0, F_CTRL, F_DATA, F_ERROR };

struct spdy {
    struct spdy_cbs cbs;
    void *ud;
    enum f_state state;
    int err;
    uint8_t head[8];
    size_t head_len;
    uint32_t data_id;        /* F_DATA: the stream */
    uint8_t flags;
    size_t left;             /* F_DATA / F_CTRL: payload bytes to come */
    uint16_t type;
    struct crisp_buf ctrl;   /* F_CTRL: the payload so far */
    struct crisp_buf hdr;    /* an inflated header block */
    struct crisp_md md;
    z_stream in, out;
    unsigned in_ok : 1, out_ok : 1, yield : 1;
    char why[160];
};

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int fail(struct spdy *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct spdy *s, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    s->state = F_ERROR;
    s->err = err;
    return err;
}

/* ---- life --------------------------------------------------------------- */

struct spdy *spdy_new(const struct spdy_cbs *cbs, void *ud)
{
    struct spdy *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cbs = *cbs;
    s->ud = ud;
    crisp_buf_init(&s->ctrl, SPDY_CTRL_MAX);
    crisp_buf_init(&s->hdr, SPDY_HDR_MAX);
    crisp_md_init(&s->md, (size_t)SPDY_HDR_MAX * 2);
    if (inflateInit(&s->in) != Z_OK)
        goto fail_s;
    s->in_ok = 1;
    /* A small window: our header blocks are short, the dictionary fits. */
    if (deflateInit2(&s->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 11, 1, Z_DEFAULT_STRATEGY) != Z_OK)
        goto fail_s;
    s->out_ok = 1;
    if (deflateSetDictionary(&s->out, (const Bytef *)dict, sizeof(dict) - 1) != Z_OK)
        goto fail_s;
    return s;
fail_s:
    spdy_free(s);
    return NULL;
}

void spdy_free(struct spdy *s)
{
    if (!s)
        return;
    if (s->in_ok)
        inflateEnd(&s->in);
    if (s->out_ok)
        deflateEnd(&s->out);
    crisp_buf_free(&s->ctrl);
    crisp_buf_free(&s->hdr);
    crisp_md_free(&s->md);
    free(s);
}

void spdy_yield(struct spdy *s)
{
    s->yield = 1;
}

const char *spdy_why(const struct spdy *s)
{
    return s->why;
}

/* ---- header blocks in ------------------------------------------------------ */

/* Inflates one block into s->hdr (the stream's context, so in order). */
static int inflate_block(struct spdy *s, const uint8_t *p, size_t n)
{
    crisp_buf_reset(&s->hdr);
    s->in.next_in = (Bytef *)p;
    s->in.avail_in = (uInt)n;
    while (s->in.avail_in > 0) {
        if (crisp_buf_reserve(&s->hdr, 4096) < 0)
            return s->hdr.len + 4096 > s->hdr.max
                       ? fail(s, SPDY_E_TOO_LARGE, "header block inflates past %d bytes", SPDY_HDR_MAX)
                       : fail(s, SPDY_E_NOMEM, "out of memory");
        size_t room = s->hdr.cap - s->hdr.len;
        s->in.next_out = s->hdr.data + s->hdr.len;
        s->in.avail_out = (uInt)room;
        int rv = inflate(&s->in, Z_SYNC_FLUSH);
        if (rv == Z_NEED_DICT)
            rv = inflateSetDictionary(&s->in, (const Bytef *)dict, sizeof(dict) - 1);
        s->hdr.len += room - s->in.avail_out;
        if (rv != Z_OK && rv != Z_BUF_ERROR)
            return fail(s, SPDY_E_ZLIB, "header block does not inflate (zlib %d)", rv);
        if (rv == Z_BUF_ERROR && s->in.avail_out != 0)
            return fail(s, SPDY_E_ZLIB, "header block cut short");
    }
    return 0;
}

/* A length-prefixed string of the block at *off. */
static int take_str(struct spdy *s, size_t *off, const uint8_t **p, size_t *n)
{
    if (s->hdr.len - *off < 4)
        return fail(s, SPDY_E_PROTO, "header block cut short");
    *n = get32(s->hdr.data + *off);
    *off += 4;
    if (*n > s->hdr.len - *off)
        return fail(s, SPDY_E_PROTO, "header string past the block");
    *p = s->hdr.data + *off;
    *off += *n;
    return 0;
}

/* One pair: the name (lowercased) once per NUL-separated value. */
static int add_pair(struct spdy *s, uint8_t *name, size_t nl, const uint8_t *v, size_t vl)
{
    if (nl == 0)
        return fail(s, SPDY_E_PROTO, "empty header name");
    for (size_t i = 0; i < nl; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            name[i] = (uint8_t)(name[i] + 32);
    size_t a = 0;
    for (size_t i = 0; i <= vl; i++) {
        if (i < vl && v[i] != 0)
            continue;
        if (crisp_md_add(&s->md, name, nl, v + a, i - a) < 0)
            return fail(s, SPDY_E_NOMEM, "out of memory");
        a = i + 1;
    }
    return 0;
}

/* Parses the inflated block into s->md. */
static int parse_block(struct spdy *s)
{
    crisp_md_free(&s->md);
    crisp_md_init(&s->md, (size_t)SPDY_HDR_MAX * 2);
    if (s->hdr.len < 4)
        return fail(s, SPDY_E_PROTO, "header block without a count");
    uint32_t npairs = get32(s->hdr.data);
    if (npairs > SPDY_MAX_PAIRS)
        return fail(s, SPDY_E_TOO_LARGE, "%u header pairs (at most %d)", npairs, SPDY_MAX_PAIRS);
    size_t off = 4;
    for (uint32_t i = 0; i < npairs; i++) {
        const uint8_t *name, *val;
        size_t nl, vl;
        if (take_str(s, &off, &name, &nl) < 0 || take_str(s, &off, &val, &vl) < 0)
            return s->err;
        if (add_pair(s, (uint8_t *)name, nl, val, vl) < 0)
            return s->err;
    }
    if (off != s->hdr.len)
        return fail(s, SPDY_E_PROTO, "bytes after the header pairs");
    return 0;
}

static int headers_in(struct spdy *s, const uint8_t *p, size_t n)
{
    int rv = inflate_block(s, p, n);
    return rv < 0 ? rv : parse_block(s);
}

/* ---- control frames --------------------------------------------------------- */

static int cb_rv(struct spdy *s, int rv)
{
    return rv < 0 ? fail(s, SPDY_E_ABORTED, "a callback stopped the session") : 0;
}

static int need_len(struct spdy *s, size_t n, size_t min, const char *what)
{
    return n < min ? fail(s, SPDY_E_PROTO, "%s frame of %zu bytes", what, n) : 0;
}

static int ctrl_syn_stream(struct spdy *s, const uint8_t *p, size_t n)
{
    if (need_len(s, n, 10, "SYN_STREAM") < 0 || headers_in(s, p + 10, n - 10) < 0)
        return s->err;
    uint32_t id = get32(p) & 0x7fffffff;
    if (id == 0)
        return fail(s, SPDY_E_PROTO, "SYN_STREAM for stream 0");
    int rv = s->cbs.on_syn_stream(s->ud, id, s->flags, &s->md);
    if (rv == 0 && (s->flags & SPDY_FLAG_FIN))
        rv = s->cbs.on_fin(s->ud, id);
    return cb_rv(s, rv);
}

static int ctrl_headers(struct spdy *s, const uint8_t *p, size_t n, const char *what)
{
    if (need_len(s, n, 4, what) < 0 || headers_in(s, p + 4, n - 4) < 0)
        return s->err;
    uint32_t id = get32(p) & 0x7fffffff;
    int rv = s->cbs.on_headers ? s->cbs.on_headers(s->ud, id, s->flags, &s->md) : 0;
    if (rv == 0 && (s->flags & SPDY_FLAG_FIN))
        rv = s->cbs.on_fin(s->ud, id);
    return cb_rv(s, rv);
}

static int ctrl_frame(struct spdy *s, const uint8_t *p, size_t n)
{
    switch (s->type) {
    case T_SYN_STREAM:
        return ctrl_syn_stream(s, p, n);
    case T_SYN_REPLY:
        return ctrl_headers(s, p, n, "SYN_REPLY");
    case T_HEADERS:
        return ctrl_headers(s, p, n, "HEADERS");
    case T_RST_STREAM:
        if (need_len(s, n, 8, "RST_STREAM") < 0)
            return s->err;
        return cb_rv(s, s->cbs.on_rst(s->ud, get32(p) & 0x7fffffff, get32(p + 4)));
    case T_PING:
        if (need_len(s, n, 4, "PING") < 0)
            return s->err;
        return cb_rv(s, s->cbs.on_ping(s->ud, get32(p)));
    case T_GOAWAY:
        if (need_len(s, n, 4, "GOAWAY") < 0)
            return s->err;
        return cb_rv(s, s->cbs.on_goaway(s->ud, get32(p) & 0x7fffffff, n >= 8 ? get32(p + 4) : 0));
    default:
        return 0; /* SETTINGS, WINDOW_UPDATE, unknown: ignored */
    }
}

/* ---- the frame loop --------------------------------------------------------- */

/* The 8-byte head is whole: what follows. */
static int frame_head(struct spdy *s)
{
    const uint8_t *h = s->head;
    s->head_len = 0;
    s->flags = h[4];
    s->left = (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    if (!(h[0] & 0x80)) {
        s->data_id = get32(h) & 0x7fffffff;
        if (s->data_id == 0)
            return fail(s, SPDY_E_PROTO, "DATA for stream 0");
        s->state = F_DATA;
        return 0;
    }
    unsigned version = (unsigned)(h[0] & 0x7f) << 8 | h[1];
    if (version != SPDY_VERSION)
        return fail(s, SPDY_E_VERSION, "SPDY version %u (only 3 is spoken)", version);
    s->type = (uint16_t)(h[2] << 8 | h[3]);
    if (s->left > SPDY_CTRL_MAX)
        return fail(s, SPDY_E_TOO_LARGE, "control frame of %zu bytes (at most %d)", s->left,
                    SPDY_CTRL_MAX);
    crisp_buf_reset(&s->ctrl);
    s->state = F_CTRL;
    return 0;
}

/* The frame's payload is done. */
static int frame_end(struct spdy *s)
{
    int rv = 0;
    if (s->state == F_CTRL)
        rv = ctrl_frame(s, s->ctrl.data, s->ctrl.len);
    else if (s->flags & SPDY_FLAG_FIN)
        rv = cb_rv(s, s->cbs.on_fin(s->ud, s->data_id));
    if (rv < 0)
        return rv;
    s->state = F_HEAD;
    return 0;
}

/* Takes what it can of p for the current state; returns the bytes taken. */
static ssize_t step(struct spdy *s, const uint8_t *p, size_t n)
{
    if (s->state == F_HEAD) {
        size_t take = 8 - s->head_len < n ? 8 - s->head_len : n;
        memcpy(s->head + s->head_len, p, take);
        s->head_len += take;
        if (s->head_len == 8 && frame_head(s) < 0)
            return s->err;
        return (ssize_t)take;
    }
    size_t take = s->left < n ? s->left : n;
    if (s->state == F_CTRL && crisp_buf_append(&s->ctrl, p, take) < 0)
        return fail(s, SPDY_E_NOMEM, "out of memory");
    if (s->state == F_DATA && take && cb_rv(s, s->cbs.on_data(s->ud, s->data_id, p, take)) < 0)
        return s->err;
    s->left -= take;
    return (ssize_t)take;
}

ssize_t spdy_feed(struct spdy *s, const uint8_t *p, size_t n)
{
    size_t used = 0;
    s->yield = 0;
    while (s->state != F_ERROR) {
        if (s->state != F_HEAD && s->left == 0) {
            if (frame_end(s) < 0)
                break;
            if (s->yield)
                break;
            continue;
        }
        if (used == n || s->yield)
            break;
        ssize_t k = step(s, p + used, n - used);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return s->state == F_ERROR ? s->err : (ssize_t)used;
}

/* ---- frames out ------------------------------------------------------------- */

static int ctrl_head(uint8_t *h, uint16_t type, uint8_t flags, size_t len)
{
    h[0] = 0x80;
    h[1] = SPDY_VERSION;
    h[2] = (uint8_t)(type >> 8);
    h[3] = (uint8_t)type;
    h[4] = flags;
    h[5] = (uint8_t)(len >> 16);
    h[6] = (uint8_t)(len >> 8);
    h[7] = (uint8_t)len;
    return 0;
}

/* The plain header block of hdrs into s->hdr. */
static int block_plain(struct spdy *s, const struct crisp_md *hdrs)
{
    size_t n = hdrs ? hdrs->n : 0;
    crisp_buf_reset(&s->hdr);
    uint8_t b[4];
    put32(b, (uint32_t)n);
    if (crisp_buf_append(&s->hdr, b, 4) < 0)
        return SPDY_E_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        const struct crisp_hdr *h = &hdrs->v[i];
        put32(b, (uint32_t)h->namelen);
        if (crisp_buf_append(&s->hdr, b, 4) < 0 || crisp_buf_append(&s->hdr, h->name, h->namelen) < 0)
            return SPDY_E_TOO_LARGE;
        put32(b, (uint32_t)h->valuelen);
        if (crisp_buf_append(&s->hdr, b, 4) < 0 || crisp_buf_append(&s->hdr, h->value, h->valuelen) < 0)
            return SPDY_E_TOO_LARGE;
    }
    return 0;
}

/* Deflates s->hdr onto out (the stream's context: in order). */
static int deflate_onto(struct spdy *s, struct crisp_buf *out)
{
    s->out.next_in = s->hdr.data;
    s->out.avail_in = (uInt)s->hdr.len;
    do {
        if (crisp_buf_reserve(out, 256) < 0)
            return SPDY_E_NOMEM;
        size_t room = out->cap - out->len;
        s->out.next_out = out->data + out->len;
        s->out.avail_out = (uInt)room;
        int rv = deflate(&s->out, Z_SYNC_FLUSH);
        out->len += room - s->out.avail_out;
        if (rv != Z_OK && rv != Z_BUF_ERROR)
            return SPDY_E_NOMEM;
    } while (s->out.avail_in > 0 || s->out.avail_out == 0);
    return 0;
}

/* A control frame with a stream ID (and prefix bytes) and a header block. */
static int put_hdr_frame(struct spdy *s, struct crisp_buf *out, uint16_t type, uint8_t flags,
                         const uint8_t *pre, size_t prelen, const struct crisp_md *hdrs)
{
    size_t start = out->len;
    int rv = block_plain(s, hdrs);
    if (rv == 0 && crisp_buf_reserve(out, 8 + prelen) < 0)
        rv = SPDY_E_NOMEM;
    if (rv < 0)
        return rv;
    out->len += 8;
    memcpy(out->data + out->len, pre, prelen);
    out->len += prelen;
    rv = deflate_onto(s, out);
    if (rv == 0 && out->len - start - 8 > SPDY_DATA_MAX)
        rv = SPDY_E_TOO_LARGE;
    if (rv < 0) {
        out->len = start; /* the zlib stream moved on: the caller ends the session */
        return rv;
    }
    ctrl_head(out->data + start, type, flags, out->len - start - 8);
    return 0;
}

int spdy_put_syn_stream(struct spdy *s, struct crisp_buf *out, uint32_t id, uint8_t flags,
                        const struct crisp_md *hdrs)
{
    uint8_t pre[10] = {0};
    put32(pre, id & 0x7fffffff);
    return put_hdr_frame(s, out, T_SYN_STREAM, flags, pre, sizeof(pre), hdrs);
}

int spdy_put_syn_reply(struct spdy *s, struct crisp_buf *out, uint32_t id, uint8_t flags,
                       const struct crisp_md *hdrs)
{
    uint8_t pre[4];
    put32(pre, id & 0x7fffffff);
    return put_hdr_frame(s, out, T_SYN_REPLY, flags, pre, sizeof(pre), hdrs);
}

void spdy_data_head(uint8_t head[8], uint32_t id, uint8_t flags, size_t n)
{
    assert(n <= SPDY_DATA_MAX);
    put32(head, id & 0x7fffffff);
    head[4] = flags;
    head[5] = (uint8_t)(n >> 16);
    head[6] = (uint8_t)(n >> 8);
    head[7] = (uint8_t)n;
}

int spdy_put_data(struct crisp_buf *out, uint32_t id, uint8_t flags, const uint8_t *p, size_t n)
{
    if (n > SPDY_DATA_MAX)
        return SPDY_E_TOO_LARGE;
    if (crisp_buf_reserve(out, 8 + n) < 0)
        return SPDY_E_NOMEM;
    spdy_data_head(out->data + out->len, id, flags, n);
    if (n)
        memcpy(out->data + out->len + 8, p, n);
    out->len += 8 + n;
    return 0;
}

static int put_ctrl8(struct crisp_buf *out, uint16_t type, size_t len, uint32_t a, uint32_t b)
{
    if (crisp_buf_reserve(out, 8 + len) < 0)
        return SPDY_E_NOMEM;
    uint8_t *p = out->data + out->len;
    ctrl_head(p, type, 0, len);
    put32(p + 8, a);
    if (len == 8)
        put32(p + 12, b);
    out->len += 8 + len;
    return 0;
}

int spdy_put_rst(struct crisp_buf *out, uint32_t id, uint32_t status)
{
    return put_ctrl8(out, T_RST_STREAM, 8, id & 0x7fffffff, status);
}

int spdy_put_ping(struct crisp_buf *out, uint32_t id)
{
    return put_ctrl8(out, T_PING, 4, id, 0);
}

int spdy_put_goaway(struct crisp_buf *out, uint32_t last_id, uint32_t status)
{
    return put_ctrl8(out, T_GOAWAY, 8, last_id & 0x7fffffff, status);
}
