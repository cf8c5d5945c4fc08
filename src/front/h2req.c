/* h2req.c - the HTTP/2 request checks crisp makes itself (see h2req.h). */
#include <stdint.h>
#include <string.h>

#include "h2req.h"

enum {
    PSEUDO_METHOD = 1u << 0,
    PSEUDO_SCHEME = 1u << 1,
    PSEUDO_PATH = 1u << 2,
    PSEUDO_AUTHORITY = 1u << 3,
};

#define LIT_IS(p, n, lit) ((n) == sizeof(lit) - 1 && memcmp((p), (lit), (n)) == 0)

void h2req_init(struct h2req *r)
{
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
}

static int fail(struct h2req *r, int err, const uint8_t *name, size_t namelen)
{
    if (r->err)
        return r->err;
    r->err = err;
    size_t n = namelen < sizeof(r->field) - 1 ? namelen : sizeof(r->field) - 1;
    for (size_t i = 0; i < n; i++) /* printable copy for messages */
        r->field[i] = name[i] > 0x20 && name[i] < 0x7f ? (char)name[i] : '?';
    r->field[n] = 0;
    return err;
}

/* RFC 9110 token characters, lowercase letters only (RFC 9113 8.2.1):
 * a table, since every field of every request passes here. */
static const uint8_t name_chars[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static int name_ok(const uint8_t *name, size_t n)
{
    size_t i = name[0] == ':' ? 1 : 0;
    if (i == n)
        return 0;
    for (; i < n; i++)
        if (!name_chars[name[i]])
            return 0;
    return 1;
}

static int value_ok(const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == 0 || v[i] == '\r' || v[i] == '\n')
            return 0;
    return 1;
}

static unsigned pseudo_bit(const uint8_t *name, size_t n)
{
    if (LIT_IS(name, n, ":method"))
        return PSEUDO_METHOD;
    if (LIT_IS(name, n, ":scheme"))
        return PSEUDO_SCHEME;
    if (LIT_IS(name, n, ":path"))
        return PSEUDO_PATH;
    if (LIT_IS(name, n, ":authority"))
        return PSEUDO_AUTHORITY;
    return 0;
}

static int is_connection_specific(const uint8_t *name, size_t n)
{
    return LIT_IS(name, n, "connection") || LIT_IS(name, n, "keep-alive") ||
           LIT_IS(name, n, "proxy-connection") || LIT_IS(name, n, "transfer-encoding") ||
           LIT_IS(name, n, "upgrade");
}

static int parse_content_length(const uint8_t *v, size_t n, int64_t *out)
{
    int64_t x = 0;
    if (n == 0 || n > 18)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

static int pseudo_field(struct h2req *r, const uint8_t *name, size_t namelen, size_t valuelen,
                        int trailers)
{
    unsigned bit = pseudo_bit(name, namelen);
    if (trailers)
        return fail(r, H2REQ_E_TRAILER_PSEUDO, name, namelen);
    if (!bit)
        return fail(r, H2REQ_E_PSEUDO_UNKNOWN, name, namelen);
    if (r->regular_seen)
        return fail(r, H2REQ_E_PSEUDO_LATE, name, namelen);
    if (r->pseudo_seen & bit)
        return fail(r, H2REQ_E_PSEUDO_TWICE, name, namelen);
    if (bit == PSEUDO_PATH && valuelen == 0)
        return fail(r, H2REQ_E_PATH_EMPTY, name, namelen);
    r->pseudo_seen |= bit;
    return H2REQ_OK;
}

static int regular_field(struct h2req *r, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen, int trailers)
{
    r->regular_seen = 1;
    if (is_connection_specific(name, namelen))
        return fail(r, H2REQ_E_CONNECTION, name, namelen);
    if (LIT_IS(name, namelen, "te") && !LIT_IS(value, valuelen, "trailers"))
        return fail(r, H2REQ_E_TE, name, namelen);
    if (!trailers && LIT_IS(name, namelen, "content-length") &&
        (r->content_length >= 0 ||
         parse_content_length(value, valuelen, &r->content_length) < 0))
        return fail(r, H2REQ_E_CONTENT_LENGTH, name, namelen);
    return H2REQ_OK;
}

int h2req_field(struct h2req *r, const uint8_t *name, size_t namelen, const uint8_t *value,
                size_t valuelen, int trailers)
{
    if (r->err)
        return r->err;
    if (namelen == 0 || !name_ok(name, namelen))
        return fail(r, H2REQ_E_NAME, name, namelen);
    if (!value_ok(value, valuelen))
        return fail(r, H2REQ_E_VALUE, name, namelen);
    if (name[0] == ':')
        return pseudo_field(r, name, namelen, valuelen, trailers);
    return regular_field(r, name, namelen, value, valuelen, trailers);
}

int h2req_headers_done(struct h2req *r)
{
    static const uint8_t missing[] = "(:method, :scheme or :path)";
    const unsigned need = PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH;
    if (r->err)
        return r->err;
    if ((r->pseudo_seen & need) != need)
        return fail(r, H2REQ_E_PSEUDO_MISSING, missing, sizeof(missing) - 1);
    return H2REQ_OK;
}

int h2req_data(struct h2req *r, size_t n, int at_end)
{
    static const uint8_t cl[] = "content-length";
    if (r->err)
        return r->err;
    r->data_bytes += n;
    if (r->content_length < 0)
        return H2REQ_OK;
    if (r->data_bytes > (uint64_t)r->content_length ||
        (at_end && r->data_bytes != (uint64_t)r->content_length))
        return fail(r, H2REQ_E_CONTENT_LENGTH, cl, sizeof(cl) - 1);
    return H2REQ_OK;
}

const char *h2req_strerror(int err)
{
    switch (err) {
    case H2REQ_OK:
        return "ok";
    case H2REQ_E_NAME:
        return "invalid header field name";
    case H2REQ_E_VALUE:
        return "header field value with NUL, CR or LF";
    case H2REQ_E_PSEUDO_UNKNOWN:
        return "unknown pseudo-header";
    case H2REQ_E_PSEUDO_TWICE:
        return "pseudo-header given twice";
    case H2REQ_E_PSEUDO_LATE:
        return "pseudo-header after a regular header field";
    case H2REQ_E_PSEUDO_MISSING:
        return "required pseudo-header missing";
    case H2REQ_E_PATH_EMPTY:
        return "empty :path";
    case H2REQ_E_CONNECTION:
        return "connection-specific header field";
    case H2REQ_E_TE:
        return "te header field other than \"trailers\"";
    case H2REQ_E_TRAILER_PSEUDO:
        return "pseudo-header in trailers";
    case H2REQ_E_CONTENT_LENGTH:
        return "content-length invalid or not matching the DATA";
    }
    return "malformed request";
}
