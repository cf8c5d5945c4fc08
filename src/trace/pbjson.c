/* pbjson.c - protobuf-c messages -> JSON (the proto3 mapping), from the
 * descriptors; see pbjson.h. */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trace/pbjson.h"
#include "trace/pbjson_priv.h"

void pbjson_json_name(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    int up = 0;
    assert(cap > 0);
    for (const char *p = name; *p && o + 1 < cap; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = 0;
    }
    out[o] = 0;
}

int pbjson_is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED)
        return 0;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    char want[128];
    pbjson_json_name(f->name, want, sizeof(want) - 6);
    if (want[0] >= 'a' && want[0] <= 'z')
        want[0] = (char)(want[0] - 'a' + 'A');
    strcat(want, "Entry");
    return d->n_fields == 2 && strcmp(d->short_name, want) == 0 && d->fields[0].id == 1 &&
           d->fields[1].id == 2 && strcmp(d->fields[0].name, "key") == 0 &&
           strcmp(d->fields[1].name, "value") == 0;
}

size_t pbjson_elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4; /* the 32-bit integers and float */
    }
}

/* ---- presence --------------------------------------------------------- */

static int scalar_nonzero(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (pbjson_elt_size(f->type)) {
    case 8:
        return *(const uint64_t *)p != 0;
    case 4:
        return *(const uint32_t *)p != 0;
    default:
        return f->type == PROTOBUF_C_TYPE_BOOL ? *(const protobuf_c_boolean *)p != 0
                                               : *(const int *)p != 0;
    }
}

/* Whether a singular field is set (proto3: not at its default). */
static int present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = (const char *)m + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return PB_MEMBER(uint32_t, m, f->quantifier_offset) == f->id;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && (*s || f->label == PROTOBUF_C_LABEL_OPTIONAL);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p != NULL;
    case PROTOBUF_C_TYPE_BYTES:
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
            return PB_MEMBER(protobuf_c_boolean, m, f->quantifier_offset);
        return ((const ProtobufCBinaryData *)p)->len > 0;
    default:
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
            return PB_MEMBER(protobuf_c_boolean, m, f->quantifier_offset);
        return f->label == PROTOBUF_C_LABEL_REQUIRED || scalar_nonzero(f, p);
    }
}

/* ---- redaction ---------------------------------------------------------- */

static int in_names(const char *name, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(name, *names) == 0)
            return 1;
    return 0;
}

/* Whether this field's value must not be written. */
static int redacted(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                    unsigned flags)
{
    static const char *const secrets[] = {"password", "auth", "identity_token",
                                          "registry_token", NULL};
    if (strcmp(d->short_name, "AuthConfig") == 0)
        return in_names(f->name, secrets);
    if (!(flags & PBJSON_REDACT_ENV))
        return 0;
    if (strcmp(d->short_name, "KeyValue") == 0)
        return strcmp(f->name, "value") == 0;
    /* the verbose info of status answers holds the container's config */
    return strcmp(f->name, "info") == 0 && pbjson_is_map(f);
}

/* ---- values ------------------------------------------------------------- */

struct enc {
    struct jbuf *out;
    struct pbjson_enc *e;
};

static int encode_msg(struct enc *x, const ProtobufCMessage *m, unsigned depth);

/* Bytes left under the limit (SIZE_MAX: no limit). */
static size_t room(const struct enc *x)
{
    size_t used = x->out->len - x->e->start;
    if (!x->e->limit)
        return SIZE_MAX;
    return used < x->e->limit ? x->e->limit - used : 0;
}

static void put_double(struct jbuf *b, double v)
{
    if (isnan(v))
        jbuf_puts(b, "\"NaN\"");
    else if (isinf(v))
        jbuf_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else
        jbuf_printf(b, "%.17g", v);
}

/* A string, cut short (on a UTF-8 boundary) when it does not fit. */
static void put_string(struct enc *x, const char *s)
{
    size_t n = strlen(s), r = room(x);
    if (n > r) {
        n = r;
        while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
        x->e->cut = 1;
    }
    jbuf_str(x->out, s, n);
}

static void put_bytes(struct enc *x, const ProtobufCBinaryData *b)
{
    size_t n = b->len, r = room(x);
    if (n / 3 * 4 > r) {
        n = r / 4 * 3;
        x->e->cut = 1;
    }
    jbuf_base64(x->out, b->data, n);
}

static void put_enum(struct jbuf *b, const ProtobufCFieldDescriptor *f, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    if (ev)
        jbuf_strz(b, ev->name);
    else
        jbuf_printf(b, "%d", v);
}

/* One value of field f at p. */
static void put_value(struct enc *x, const ProtobufCFieldDescriptor *f, const void *p,
                      unsigned depth)
{
    struct jbuf *b = x->out;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        jbuf_printf(b, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        jbuf_printf(b, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        jbuf_printf(b, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        jbuf_printf(b, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_double(b, *(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_double(b, *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        jbuf_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM:
        put_enum(b, f, *(const int *)p);
        break;
    case PROTOBUF_C_TYPE_STRING:
        put_string(x, *(char *const *)p ? *(char *const *)p : "");
        break;
    case PROTOBUF_C_TYPE_BYTES:
        put_bytes(x, p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (*(ProtobufCMessage *const *)p)
            encode_msg(x, *(ProtobufCMessage *const *)p, depth + 1);
        else
            jbuf_puts(b, "{}");
        break;
    }
}

/* A map key: always a JSON string. */
static void put_key(struct enc *x, const ProtobufCFieldDescriptor *kf, const void *p)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        put_string(x, *(char *const *)p ? *(char *const *)p : "");
        return;
    }
    jbuf_putc(x->out, '"');
    put_value(x, kf, p, 0);
    jbuf_putc(x->out, '"');
}

/* "@cut": true in the innermost object open where the limit was hit. */
static void mark_cut(struct enc *x, int first)
{
    if (x->e->cut != 1)
        return;
    jbuf_puts(x->out, first ? "\"" PBJSON_CUT_KEY "\":true" : ",\"" PBJSON_CUT_KEY "\":true");
    x->e->cut = 2;
}

static int over(struct enc *x)
{
    if (x->e->cut)
        return 1;
    if (room(x) == 0) {
        x->e->cut = 1;
        return 1;
    }
    return 0;
}

static void put_map(struct enc *x, const ProtobufCFieldDescriptor *f, const void *arr, size_t n,
                    int redact, unsigned depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    int first = 1;
    jbuf_putc(x->out, '{');
    for (size_t i = 0; i < n && !over(x); i++) {
        const ProtobufCMessage *entry = ((ProtobufCMessage *const *)arr)[i];
        if (!first)
            jbuf_putc(x->out, ',');
        put_key(x, &ed->fields[0], (const char *)entry + ed->fields[0].offset);
        jbuf_putc(x->out, ':');
        if (redact)
            jbuf_puts(x->out, "\"" PBJSON_REDACTED "\"");
        else
            put_value(x, &ed->fields[1], (const char *)entry + ed->fields[1].offset, depth);
        first = 0;
    }
    mark_cut(x, first);
    jbuf_putc(x->out, '}');
}

static void put_repeated(struct enc *x, const ProtobufCFieldDescriptor *f, const void *arr,
                         size_t n, int redact, unsigned depth)
{
    size_t sz = pbjson_elt_size(f->type);
    jbuf_putc(x->out, '[');
    for (size_t i = 0; i < n && !over(x); i++) {
        if (i)
            jbuf_putc(x->out, ',');
        if (redact)
            jbuf_puts(x->out, "\"" PBJSON_REDACTED "\"");
        else
            put_value(x, f, (const char *)arr + i * sz, depth);
    }
    jbuf_putc(x->out, ']');
}

/* One field as "name":value; returns whether it wrote anything. */
static int put_field(struct enc *x, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                     int first, unsigned depth)
{
    int redact = redacted(m->descriptor, f, x->e->flags);
    const void *p = (const char *)m + f->offset;
    size_t n = 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        n = PB_MEMBER(size_t, m, f->quantifier_offset);
        if (!n)
            return 0;
    } else if (!present(m, f)) {
        return 0;
    }
    char name[128];
    pbjson_json_name(f->name, name, sizeof(name));
    jbuf_puts(x->out, first ? "\"" : ",\"");
    jbuf_puts(x->out, name);
    jbuf_puts(x->out, "\":");
    if (f->label != PROTOBUF_C_LABEL_REPEATED)
        redact ? (void)jbuf_puts(x->out, "\"" PBJSON_REDACTED "\"") : put_value(x, f, p, depth);
    else if (pbjson_is_map(f))
        put_map(x, f, *(void *const *)p, n, redact, depth);
    else
        put_repeated(x, f, *(void *const *)p, n, redact, depth);
    return 1;
}

static int encode_msg(struct enc *x, const ProtobufCMessage *m, unsigned depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int first = 1;
    jbuf_putc(x->out, '{');
    if (depth > PBJSON_MAX_DEPTH) {
        x->e->cut = 1;
        mark_cut(x, 1);
        return jbuf_putc(x->out, '}');
    }
    for (unsigned i = 0; i < d->n_fields && !over(x); i++)
        if (put_field(x, m, &d->fields[i], first, depth))
            first = 0;
    mark_cut(x, first);
    return jbuf_putc(x->out, '}');
}

int pbjson_encode(struct jbuf *out, const ProtobufCMessage *m, struct pbjson_enc *e)
{
    struct enc x = {out, e};
    e->cut = 0;
    e->start = out->len;
    encode_msg(&x, m, 0);
    if (e->cut)
        e->cut = 1;
    return out->err;
}
