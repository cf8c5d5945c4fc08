/* text.c - the streaming server's pure helpers (text.h). */
#define _GNU_SOURCE /* asprintf */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <cjson/cJSON.h>
#include <openssl/sha.h>

#include "stream/text.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- tokens and paths ------------------------------------------------------ */

int sx_token_new(char out[SX_TOKEN_LEN + 1])
{
    uint8_t r[SX_TOKEN_LEN * 3 / 4];
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t k = getrandom(r + got, sizeof(r) - got, 0);
        if (k < 0 && errno != EINTR)
            return -1;
        got += k > 0 ? (size_t)k : 0;
    }
    sx_b64_encode(out, r, sizeof(r));
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p; /* URL-safe, no padding: 24 bytes */
    return 0;
}

static int token_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

int sx_route(const char *target, enum crisp_stream_kind *kind, char token[SX_TOKEN_MAX + 1],
             const char **query)
{
    static const struct { const char *prefix; enum crisp_stream_kind kind; } routes[] = {
        {"/exec/", CRISP_STREAM_EXEC},
        {"/attach/", CRISP_STREAM_ATTACH},
        {"/portforward/", CRISP_STREAM_PORT_FORWARD},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t pl = strlen(routes[i].prefix);
        if (strncmp(target, routes[i].prefix, pl) != 0)
            continue;
        const char *t = target + pl;
        size_t n = strcspn(t, "?");
        if (n == 0 || n > SX_TOKEN_MAX)
            return -1;
        for (size_t k = 0; k < n; k++)
            if (!token_char(t[k]))
                return -1;
        memcpy(token, t, n);
        token[n] = 0;
        *kind = routes[i].kind;
        *query = t[n] == '?' ? t + n + 1 : "";
        return 0;
    }
    return -1;
}

/* ---- headers and negotiation ------------------------------------------------- */

const char *sx_hdr(const struct crisp_md *hdrs, const char *name)
{
    const struct crisp_hdr *h = crisp_md_get(hdrs, name);
    return h ? (const char *)h->value : NULL;
}

/* Calls fn on each comma-separated, trimmed, non-empty element of every
 * line of field; stops at fn's first non-zero return and returns it. */
static int each_offer(const struct crisp_md *hdrs, const char *field,
                      int (*fn)(void *ud, const char *p, size_t n), void *ud)
{
    size_t fl = strlen(field);
    for (size_t i = 0; i < hdrs->n; i++) {
        if (hdrs->v[i].namelen != fl || memcmp(hdrs->v[i].name, field, fl) != 0)
            continue;
        const char *v = (const char *)hdrs->v[i].value;
        while (*v) {
            size_t n = strcspn(v, ",");
            size_t a = 0, b = n;
            while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
            while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
            int rv = b > a ? fn(ud, v + a, b - a) : 0;
            if (rv)
                return rv;
            v += n + (v[n] == ',');
        }
    }
    return 0;
}

struct pick {
    const char *const *server;
    size_t nserver;
    const char *chosen;
    int offered;
};

static int pick_one(void *ud, const char *p, size_t n)
{
    struct pick *k = ud;
    k->offered = 1;
    for (size_t i = 0; i < k->nserver; i++) {
        if (strlen(k->server[i]) == n && strncmp(k->server[i], p, n) == 0) {
            k->chosen = k->server[i];
            return 1;
        }
    }
    return 0;
}

int sx_negotiate(const struct crisp_md *hdrs, const char *field, const char *const *server,
                 size_t nserver, const char **chosen)
{
    struct pick k = {server, nserver, NULL, 0};
    if (each_offer(hdrs, field, pick_one, &k)) {
        *chosen = k.chosen;
        return 1;
    }
    return k.offered ? -1 : 0;
}

struct join {
    char *out;
    size_t len, off;
};

static int join_one(void *ud, const char *p, size_t n)
{
    struct join *j = ud;
    if (j->off < j->len) {
        int w = snprintf(j->out + j->off, j->len - j->off, "%s%.*s", j->off ? " " : "", (int)n, p);
        j->off += w > 0 ? (size_t)w : 0;
    }
    return 0;
}

void sx_offers(const struct crisp_md *hdrs, const char *field, char *out, size_t outlen)
{
    struct join j = {out, outlen, 0};
    out[0] = 0;
    each_offer(hdrs, field, join_one, &j);
}

static int has_one(void *ud, const char *p, size_t n)
{
    const char *tok = ud;
    return strlen(tok) == n && strncasecmp(tok, p, n) == 0;
}

int sx_hdr_has(const struct crisp_md *hdrs, const char *name, const char *token)
{
    return each_offer(hdrs, name, has_one, (void *)token);
}

/* ---- base64 -------------------------------------------------------------------- */

size_t sx_b64_encode(char *out, const uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int b64_val(char c)
{
    const char *at = c ? strchr(b64, c) : NULL;
    return at ? (int)(at - b64) : -1;
}

ssize_t sx_b64_decode(uint8_t *out, const char *p, size_t n)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int pad = (p[i + 3] == '=') + (p[i + 2] == '=' && p[i + 3] == '=');
        if (pad && i + 4 != n)
            return -1;
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int d = b64_val(p[i + k]);
            if (d < 0)
                return -1;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)v;
    }
    return (ssize_t)o;
}

int sx_ws_accept(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128];
    if (strlen(key) > sizeof(buf) - sizeof(guid))
        return -1;
    int n = snprintf(buf, sizeof(buf), "%s%s", key, guid);
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, (size_t)n, md);
    sx_b64_encode(out, md, sizeof(md));
    return 0;
}

/* ---- resize ------------------------------------------------------------------- */

/* One byte inside an object: strings and nesting. Returns 1 when the
 * top-level object closed. */
static int json_byte(struct sx_json_split *sp, char c)
{
    if (sp->in_str) {
        if (sp->esc)
            sp->esc = 0;
        else if (c == '\\')
            sp->esc = 1;
        else if (c == '"')
            sp->in_str = 0;
        return 0;
    }
    if (c == '"')
        sp->in_str = 1;
    else if (c == '{' || c == '[')
        sp->depth++;
    else if (c == '}' || c == ']')
        sp->depth--;
    return sp->depth == 0;
}

int sx_json_split_feed(struct sx_json_split *sp, const uint8_t *p, size_t n,
                       int (*fn)(void *ud, const char *obj, size_t len), void *ud)
{
    for (size_t i = 0; i < n; i++) {
        char c = (char)p[i];
        if (sp->len == 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
            continue;
        if (sp->len == 0 && c != '{')
            return -1;
        if (sp->len == sizeof(sp->buf) - 1)
            return -1;
        sp->buf[sp->len++] = c;
        if (!json_byte(sp, c))
            continue;
        sp->buf[sp->len] = 0;
        int rv = fn(ud, sp->buf, sp->len);
        sp->len = 0;
        if (rv < 0)
            return -1;
    }
    return 0;
}

static int dim(const cJSON *o, const char *name, unsigned *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (v && (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65535))
        return -1;
    *out = v ? (unsigned)v->valuedouble : 0;
    return 0;
}

int sx_parse_resize(const char *obj, size_t len, unsigned *w, unsigned *h)
{
    cJSON *o = cJSON_ParseWithLength(obj, len);
    int rv = o && cJSON_IsObject(o) && dim(o, "Width", w) == 0 && dim(o, "Height", h) == 0 ? 0 : -1;
    cJSON_Delete(o);
    return rv;
}

/* ---- statuses ------------------------------------------------------------------ */

/* "[sh -c exit 42]", as Go prints a []string. */
static char *cmd_text(char *const *cmd, size_t ncmd)
{
    size_t len = 3;
    for (size_t i = 0; i < ncmd; i++)
        len += strlen(cmd[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    size_t o = 0;
    s[o++] = '[';
    for (size_t i = 0; i < ncmd; i++)
        o += (size_t)sprintf(s + o, "%s%s", i ? " " : "", cmd[i]);
    s[o++] = ']';
    s[o] = 0;
    return s;
}

/* The message of a failed session, malloc'd. */
static char *fail_message(int code, const char *err, char *const *cmd, size_t ncmd)
{
    char *m = NULL;
    if (err) {
        if (asprintf(&m, "Internal error occurred: %s", err) < 0)
            return NULL;
        return m;
    }
    char *c = cmd_text(cmd, ncmd);
    if (c && asprintf(&m, "command terminated with non-zero exit code: error executing command "
                          "%s, exit code %d", c, code) < 0)
        m = NULL;
    free(c);
    return m;
}

static cJSON *status_obj(int code, const char *err, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "metadata", cJSON_CreateObject());
    cJSON_AddStringToObject(o, "status", code == 0 && !err ? "Success" : "Failure");
    if (code == 0 && !err)
        return o;
    cJSON_AddStringToObject(o, "message", msg);
    cJSON_AddStringToObject(o, "reason", err ? "InternalError" : "NonZeroExitCode");
    cJSON *details = cJSON_AddObjectToObject(o, "details");
    cJSON *causes = cJSON_AddArrayToObject(details, "causes");
    cJSON *cause = cJSON_CreateObject();
    cJSON_AddItemToArray(causes, cause);
    if (err) {
        cJSON_AddStringToObject(cause, "message", err);
        cJSON_AddNumberToObject(o, "code", 500);
    } else {
        char num[16];
        snprintf(num, sizeof(num), "%d", code);
        cJSON_AddStringToObject(cause, "reason", "ExitCode");
        cJSON_AddStringToObject(cause, "message", num);
    }
    return o;
}

char *sx_status_json(int code, const char *err, char *const *cmd, size_t ncmd)
{
    char *msg = code == 0 && !err ? NULL : fail_message(code, err, cmd, ncmd);
    if (!msg && (code != 0 || err))
        return NULL;
    cJSON *o = status_obj(code, err, msg);
    char *out = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(msg);
    return out;
}

char *sx_status_text(int code, const char *err, char *const *cmd, size_t ncmd)
{
    if (code == 0 && !err)
        return strdup("");
    return fail_message(code, err, cmd, ncmd);
}

/* ---- ports --------------------------------------------------------------------- */

static int add_ports(const char *v, size_t n, int32_t *out, size_t max, size_t *count)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        long port = 0;
        while (j < n && v[j] >= '0' && v[j] <= '9' && port <= 65535)
            port = port * 10 + (v[j++] - '0');
        if (j == i || port < 1 || port > 65535 || (j < n && v[j] != ',' && !(v[j] == '%' &&
            n - j >= 3 && !strncasecmp(v + j, "%2c", 3))) || *count == max)
            return -1;
        out[(*count)++] = (int32_t)port;
        i = j < n ? j + (v[j] == ',' ? 1 : 3) : j;
    }
    return 0;
}

int sx_query_ports(const char *query, int32_t *out, size_t max)
{
    size_t count = 0;
    while (*query) {
        size_t n = strcspn(query, "&");
        const char *eq = memchr(query, '=', n);
        size_t kl = eq ? (size_t)(eq - query) : n;
        if (eq && ((kl == 4 && !strncmp(query, "port", 4)) || (kl == 5 && !strncmp(query, "ports", 5))) &&
            add_ports(eq + 1, n - kl - 1, out, max, &count) < 0)
            return -1;
        query += n + (query[n] == '&');
    }
    return (int)count;
}
