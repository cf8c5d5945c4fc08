/* jbuf.c - a growing output buffer for JSON text, with a hard cap. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/jbuf.h"

void jbuf_init(struct jbuf *b, size_t max)
{
    *b = (struct jbuf){.max = max};
}

void jbuf_free(struct jbuf *b)
{
    free(b->p);
    *b = (struct jbuf){.max = b->max};
}

void jbuf_reset(struct jbuf *b)
{
    b->len = 0;
    b->err = 0;
    if (b->p)
        b->p[0] = 0;
}

char *jbuf_take(struct jbuf *b, size_t *len)
{
    char *p = b->err ? NULL : b->p;
    if (len)
        *len = p ? b->len : 0;
    if (!p)
        free(b->p);
    *b = (struct jbuf){.max = b->max};
    return p;
}

static int fail(struct jbuf *b, int err)
{
    if (!b->err)
        b->err = err;
    return b->err;
}

/* Room for n more bytes and the NUL. */
static int reserve(struct jbuf *b, size_t n)
{
    if (b->err)
        return b->err;
    if (n > b->max - b->len)
        return fail(b, JBUF_E_CAP);
    if (b->len + n + 1 <= b->alloc)
        return 0;
    size_t want = b->alloc ? b->alloc : 256;
    while (want < b->len + n + 1)
        want *= 2;
    char *p = realloc(b->p, want);
    if (!p)
        return fail(b, JBUF_E_NOMEM);
    b->p = p;
    b->alloc = want;
    return 0;
}

int jbuf_put(struct jbuf *b, const void *s, size_t n)
{
    if (reserve(b, n) < 0)
        return b->err;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int jbuf_puts(struct jbuf *b, const char *s)
{
    return jbuf_put(b, s, strlen(s));
}

int jbuf_putc(struct jbuf *b, char c)
{
    return jbuf_put(b, &c, 1);
}

int jbuf_printf(struct jbuf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return fail(b, JBUF_E_NOMEM);
    if ((size_t)n < sizeof(small))
        return jbuf_put(b, small, (size_t)n);
    if (reserve(b, (size_t)n) < 0)
        return b->err;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int jbuf_u64(struct jbuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return jbuf_put(b, tmp + i, sizeof(tmp) - i);
}

int jbuf_i64(struct jbuf *b, int64_t v)
{
    if (v >= 0)
        return jbuf_u64(b, (uint64_t)v);
    jbuf_putc(b, '-');
    return jbuf_u64(b, (uint64_t)0 - (uint64_t)v);
}

void jbuf_truncate(struct jbuf *b, size_t len)
{
    assert(len <= b->len);
    b->len = len;
    if (b->p)
        b->p[len] = 0;
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, surrogates, past U+10FFFF */
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

static const char hexd[] = "0123456789abcdef";

/* The escape of one ASCII byte, or NULL when it goes as it is. */
static const char *escape_of(unsigned char c, char tmp[8])
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    }
    if (c >= 0x20 && c != 0x7f)
        return NULL;
    snprintf(tmp, 8, "\\u00%c%c", hexd[c >> 4], hexd[c & 15]);
    return tmp;
}

int jbuf_str(struct jbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* bytes [i - run, i) go as they are */
    jbuf_putc(b, '"');
    while (i < n && !b->err) {
        char tmp[8];
        size_t l = u[i] < 0x80 ? 1 : utf8_seq_len(u + i, n - i);
        const char *esc = l == 1 ? escape_of(u[i], tmp) : l ? NULL : "\\ufffd";
        if (!esc) {
            i += l;
            run += l;
            continue;
        }
        jbuf_put(b, u + i - run, run);
        jbuf_puts(b, esc);
        run = 0;
        i++;
    }
    jbuf_put(b, u + i - run, run);
    return jbuf_putc(b, '"');
}

int jbuf_strz(struct jbuf *b, const char *s)
{
    return jbuf_str(b, s ? s : "", s ? strlen(s) : 0);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int jbuf_base64(struct jbuf *b, const uint8_t *s, size_t n)
{
    if (reserve(b, (n + 2) / 3 * 4 + 2) < 0)
        return b->err;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = 0;
    return 0;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

long base64_decode(const char *s, size_t n, uint8_t *out)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}
