/* rpc.c - crispctl's calls by method: names resolved in crisp's method
 * table, requests from JSON and answers to JSON with pbjson. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "trace/jbuf.h"
#include "trace/pbjson.h"

#define JSON_IN_MAX (64u << 20)
#define JSON_OUT_MAX (256u << 20)

int ctl_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("crispctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int ctl_use_color(void)
{
    return ctl.color < 0 ? isatty(STDOUT_FILENO) && !getenv("NO_COLOR") : ctl.color;
}

static int name_is(const struct crisp_method *m, const char *name)
{
    char svc[96];
    const char *p = name;
    if (*p == '/')
        p++;
    if (strncmp(p, "runtime.v1.", 11) == 0)
        p += 11;
    else if (strncmp(p, "runtime.v1alpha2.", 17) == 0)
        p += 17;
    snprintf(svc, sizeof(svc), "%s/%s", crisp_service_to_str(m->svc), m->name);
    return strcmp(p, svc) == 0 || strcmp(p, m->name) == 0;
}

const struct crisp_method *ctl_method(const char *name)
{
    for (size_t i = 0; i < crisp_methods_count(); i++)
        if (name_is(crisp_method_at(i), name))
            return crisp_method_at(i);
    return NULL;
}

uint8_t *ctl_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*len ? *len : 1);
    if (p)
        protobuf_c_message_pack(m, p);
    return p;
}

char *ctl_to_json(const ProtobufCMessage *m)
{
    struct jbuf b;
    struct pbjson_enc e = {0};
    jbuf_init(&b, JSON_OUT_MAX);
    pbjson_encode(&b, m, &e);
    return jbuf_take(&b, NULL);
}

static void indent(FILE *f, int depth)
{
    fputc('\n', f);
    for (int i = 0; i < depth; i++)
        fputs("  ", f);
}

/* Re-indents compact JSON (two spaces a level; empty {} and [] kept). */
void ctl_print_pretty(FILE *f, const char *s)
{
    int depth = 0, in_str = 0;
    for (; *s; s++) {
        char ch = *s;
        if (in_str) {
            fputc(ch, f);
            if (ch == '\\' && s[1])
                fputc(*++s, f);
            else if (ch == '"')
                in_str = 0;
        } else if ((ch == '{' || ch == '[') && (s[1] == '}' || s[1] == ']')) {
            fputc(ch, f);
            fputc(*++s, f);
        } else if (ch == '{' || ch == '[') {
            fputc(ch, f);
            indent(f, ++depth);
        } else if (ch == '}' || ch == ']') {
            indent(f, --depth);
            fputc(ch, f);
        } else if (ch == ',') {
            fputc(ch, f);
            indent(f, depth);
        } else {
            fputc(ch, f);
            if (ch == ':')
                fputc(' ', f);
            in_str = ch == '"';
        }
    }
    fputc('\n', f);
}

static int decode_answer(const struct crisp_method *m, struct ctl_result *r,
                         ProtobufCMessage **resp)
{
    *resp = NULL;
    if (r->code != GRPC_OK)
        return 0;
    *resp = protobuf_c_message_unpack(m->resp, NULL, r->msg_len, r->msg ? r->msg : (uint8_t *)"");
    if (!*resp)
        return ctl_fail("the answer is not a valid %s (%zu bytes)", m->resp->name, r->msg_len), -1;
    return 0;
}

int ctl_call_pb(struct ctl_conn *c, const struct crisp_method *m, const ProtobufCMessage *req,
                ProtobufCMessage **resp, struct ctl_result *r)
{
    size_t len;
    uint8_t *body = ctl_pack(req, &len);
    *resp = NULL;
    *r = (struct ctl_result){.code = -1}; /* -1: not sent */
    if (!body)
        return ctl_fail("out of memory"), -1;
    int rc = ctl_call(c, m->path, body, len, ctl.timeout_s, NULL, NULL, r);
    free(body);
    if (rc < 0)
        return ctl_fail("%s: %s", m->name, r->message ? r->message : "failed"), -1;
    return decode_answer(m, r, resp);
}

int ctl_call_json(struct ctl_conn *c, const struct crisp_method *m, const char *json,
                  ProtobufCMessage **resp, struct ctl_result *r)
{
    ProtobufCMessage *req;
    char err[512];
    *resp = NULL;
    *r = (struct ctl_result){.code = -1}; /* -1: not sent */
    if (pbjson_decode(m->req, json, strlen(json), JSON_IN_MAX, &req, err, sizeof(err)) < 0)
        return ctl_fail("the request is not a %s: %s", m->req->name, err), -1;
    int rc = ctl_call_pb(c, m, req, resp, r);
    pbjson_free(req);
    return rc;
}
