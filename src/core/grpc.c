/* grpc.c - gRPC framing, status codes, grpc-timeout, grpc-message. */
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *grpc_code_to_str(int code)
{
    if (code >= 0 && (size_t)code < sizeof(code_names) / sizeof(code_names[0]))
        return code_names[code];
    return "UNKNOWN_CODE";
}

int grpc_code_from_http_status(int s)
{
    switch (s) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

void grpc_reader_init(struct grpc_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

void grpc_reader_free(struct grpc_reader *r)
{
    free(r->msg);
    r->msg = NULL;
    r->prefix_len = 0;
}

size_t grpc_reader_pending(const struct grpc_reader *r)
{
    if (r->msg)
        return GRPC_PREFIX_LEN + r->msg_fill;
    return r->prefix_len;
}

static int start_message(struct grpc_reader *r)
{
    const uint8_t *p = r->prefix;
    size_t len = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
                 ((size_t)p[3] << 8) | (size_t)p[4];
    r->declared = len;
    if (p[0] != 0)
        return GRPC_E_COMPRESSED;
    if (len > r->max)
        return GRPC_E_TOO_LARGE;
    if (r->admit && r->admit(r->admit_ud, len) < 0)
        return GRPC_E_REFUSED;
    r->msg = malloc(len ? len : 1);
    if (!r->msg)
        return GRPC_E_NOMEM;
    r->msg_len = len;
    r->msg_fill = 0;
    return 0;
}

int grpc_reader_feed(struct grpc_reader *r, const uint8_t *p, size_t n,
                     grpc_msg_cb cb, void *ud)
{
    while (n > 0 || (r->msg && r->msg_fill == r->msg_len)) {
        if (!r->msg) {
            size_t take = GRPC_PREFIX_LEN - r->prefix_len;
            if (take > n)
                take = n;
            memcpy(r->prefix + r->prefix_len, p, take);
            r->prefix_len += take;
            p += take;
            n -= take;
            if (r->prefix_len < GRPC_PREFIX_LEN)
                return 0;
            int rv = start_message(r);
            if (rv < 0)
                return rv;
        }
        size_t take = r->msg_len - r->msg_fill;
        if (take > n)
            take = n;
        memcpy(r->msg + r->msg_fill, p, take);
        r->msg_fill += take;
        p += take;
        n -= take;
        if (r->msg_fill < r->msg_len)
            return 0;
        uint8_t *msg = r->msg;
        size_t len = r->msg_len;
        r->msg = NULL;
        r->prefix_len = 0;
        int rv = cb(ud, msg, len);
        if (rv < 0)
            return rv;
    }
    return 0;
}

void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], size_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int grpc_timeout_parse(const char *s, size_t n, int64_t *us)
{
    if (n < 2 || n > 9)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    switch (s[n - 1]) {
    case 'H':
        v *= 3600LL * 1000000;
        break;
    case 'M':
        v *= 60LL * 1000000;
        break;
    case 'S':
        v *= 1000000;
        break;
    case 'm':
        v *= 1000;
        break;
    case 'u':
        break;
    case 'n':
        v = (v + 999) / 1000;
        break;
    default:
        return -1;
    }
    *us = v;
    return 0;
}

size_t grpc_timeout_format(int64_t us, char out[16])
{
    static const struct {
        int64_t div;
        char unit;
    } units[] = {{1, 'u'}, {1000, 'm'}, {1000000, 'S'}, {60000000, 'M'}};
    if (us < 1)
        us = 1;
    /* The finest unit whose count fits in 8 digits; rounded up so a relayed
     * deadline never comes before the client's. */
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        int64_t v = (us + units[i].div - 1) / units[i].div;
        if (v <= 99999999) {
            int n = 0;
            char tmp[12];
            do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            for (int k = 0; k < n; k++)
                out[k] = tmp[n - 1 - k];
            out[n] = units[i].unit;
            out[n + 1] = 0;
            return (size_t)n + 1;
        }
    }
    memcpy(out, "99999999H", 10);
    return 9;
}

size_t grpc_percent_encode(const char *s, size_t n, char *out, size_t outcap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            if (o < outcap)
                out[o] = (char)c;
            o++;
        } else {
            if (o + 3 <= outcap) {
                out[o] = '%';
                out[o + 1] = hex[c >> 4];
                out[o + 2] = hex[c & 15];
            }
            o += 3;
        }
    }
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *grpc_percent_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n + 0 && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
    return out;
}
