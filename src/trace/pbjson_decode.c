/* pbjson_decode.c - JSON -> protobuf-c messages (the proto3 mapping), from
 * the descriptors; see pbjson.h. The text is parsed by cJSON, then walked
 * against the message's descriptor; everything the message points to is
 * malloc'd, so protobuf_c_message_free_unpacked(m, NULL) frees it, a
 * half-built one included. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "trace/pbjson.h"
#include "trace/pbjson_priv.h"

struct dec {
    char *err;
    size_t errlen;
    const char *field; /* the field being decoded, for messages */
};

static int fail(struct dec *x, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct dec *x, int code, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (x->field)
        snprintf(x->err, x->errlen, "field %s: %s", x->field, why);
    else
        snprintf(x->err, x->errlen, "%s", why);
    return code;
}

static int decode_msg(struct dec *x, const ProtobufCMessageDescriptor *d, const cJSON *obj,
                      ProtobufCMessage **out, unsigned depth);

/* ---- numbers ------------------------------------------------------------ */

/* An integer from a JSON number or a decimal string, within [lo, hi]. */
static int get_int(struct dec *x, const cJSON *v, long double lo, long double hi, int64_t *out)
{
    long double d;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else if (cJSON_IsString(v) && v->valuestring[0]) {
        char *end;
        errno = 0;
        d = strtold(v->valuestring, &end);
        if (*end || errno)
            return fail(x, PBJSON_E_VALUE, "\"%.40s\" is not an integer", v->valuestring);
    } else {
        return fail(x, PBJSON_E_VALUE, "want an integer");
    }
    if (d != floorl(d) || d < lo || d > hi)
        return fail(x, PBJSON_E_VALUE, "%.0Lf is not an integer in range", d);
    *out = (int64_t)d;
    return 0;
}

static int get_u64(struct dec *x, const cJSON *v, uint64_t *out)
{
    if (cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9') {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v->valuestring, &end, 10);
        if (*end || errno)
            return fail(x, PBJSON_E_VALUE, "\"%.40s\" is not a uint64", v->valuestring);
        *out = u;
        return 0;
    }
    int64_t i;
    if (get_int(x, v, 0, 9007199254740992.0L, &i) < 0)
        return PBJSON_E_VALUE;
    *out = (uint64_t)i;
    return 0;
}

static int get_double(struct dec *x, const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        char *end;
        if (strcmp(s, "NaN") == 0 || strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
            *out = s[0] == 'N' ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
            return 0;
        }
        *out = strtod(s, &end);
        if (*s && !*end)
            return 0;
    }
    return fail(x, PBJSON_E_VALUE, "want a number");
}

static int get_enum(struct dec *x, const ProtobufCFieldDescriptor *f, const cJSON *v, int *out)
{
    if (cJSON_IsString(v)) {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, v->valuestring);
        if (!ev)
            return fail(x, PBJSON_E_VALUE, "%.60s is not a value of %s", v->valuestring,
                        ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
        *out = ev->value;
        return 0;
    }
    int64_t i;
    if (get_int(x, v, INT32_MIN, INT32_MAX, &i) < 0)
        return PBJSON_E_VALUE;
    *out = (int)i;
    return 0;
}

/* ---- one value ------------------------------------------------------------ */

static int get_string(struct dec *x, const cJSON *v, char **out)
{
    if (!cJSON_IsString(v))
        return fail(x, PBJSON_E_VALUE, "want a string");
    *out = strdup(v->valuestring);
    return *out ? 0 : fail(x, PBJSON_E_NOMEM, "out of memory");
}

static int get_bytes(struct dec *x, const cJSON *v, ProtobufCBinaryData *out)
{
    if (!cJSON_IsString(v))
        return fail(x, PBJSON_E_VALUE, "want base64 bytes");
    size_t n = strlen(v->valuestring);
    uint8_t *p = malloc(n / 4 * 3 + 4);
    if (!p)
        return fail(x, PBJSON_E_NOMEM, "out of memory");
    long len = base64_decode(v->valuestring, n, p);
    if (len < 0) {
        free(p);
        return fail(x, PBJSON_E_VALUE, "not base64");
    }
    out->data = p;
    out->len = (size_t)len;
    return 0;
}

static int get_scalar(struct dec *x, const ProtobufCFieldDescriptor *f, const cJSON *v, void *p)
{
    int64_t i;
    double dv;
    int rc;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = get_int(x, v, INT32_MIN, INT32_MAX, &i)) == 0)
            *(int32_t *)p = (int32_t)i;
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = get_int(x, v, 0, UINT32_MAX, &i)) == 0)
            *(uint32_t *)p = (uint32_t)i;
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return get_int(x, v, -9223372036854775808.0L, 9223372036854775807.0L, (int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return get_u64(x, v, (uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        if ((rc = get_double(x, v, &dv)) == 0)
            *(float *)p = (float)dv;
        return rc;
    case PROTOBUF_C_TYPE_DOUBLE:
        return get_double(x, v, (double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        if (!cJSON_IsBool(v))
            return fail(x, PBJSON_E_VALUE, "want true or false");
        *(protobuf_c_boolean *)p = cJSON_IsTrue(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return get_enum(x, f, v, (int *)p);
    default:
        return fail(x, PBJSON_E_VALUE, "unsupported type");
    }
}

/* One value of f into p, whose current value is the default. */
static int get_value(struct dec *x, const ProtobufCFieldDescriptor *f, const cJSON *v, void *p,
                     unsigned depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return get_string(x, v, p);
    case PROTOBUF_C_TYPE_BYTES:
        return get_bytes(x, v, p);
    case PROTOBUF_C_TYPE_MESSAGE:
        return decode_msg(x, f->descriptor, v, p, depth + 1);
    default:
        return get_scalar(x, f, v, p);
    }
}

/* ---- repeated fields and maps --------------------------------------------- */

static int alloc_array(struct dec *x, const ProtobufCFieldDescriptor *f, size_t n, void **arr)
{
    *arr = calloc(n ? n : 1, pbjson_elt_size(f->type));
    return *arr ? 0 : fail(x, PBJSON_E_NOMEM, "out of memory");
}

/* The message's element count grows with each element decoded, so a
 * failure half-way frees exactly what was made. */
static int get_repeated(struct dec *x, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                        const cJSON *v, unsigned depth)
{
    size_t *count = &PB_MEMBER(size_t, m, f->quantifier_offset);
    void **arr = &PB_MEMBER(void *, m, f->offset);
    if (!cJSON_IsArray(v))
        return fail(x, PBJSON_E_VALUE, "want an array");
    if (*count)
        return fail(x, PBJSON_E_VALUE, "given twice");
    size_t n = (size_t)cJSON_GetArraySize(v), sz = pbjson_elt_size(f->type);
    if (alloc_array(x, f, n, arr) < 0)
        return PBJSON_E_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (cJSON_IsNull(e))
            return fail(x, PBJSON_E_VALUE, "null in an array");
        void *slot = (char *)*arr + (*count)++ * sz; /* zeroed: freeing it is safe */
        int rc = get_value(x, f, e, slot, depth);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A map key (a JSON member name) into the entry's key field. */
static int get_key(struct dec *x, const ProtobufCFieldDescriptor *kf, const char *name,
                   ProtobufCMessage *entry)
{
    void *p = (char *)entry + kf->offset;
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        *(char **)p = strdup(name);
        return *(char **)p ? 0 : fail(x, PBJSON_E_NOMEM, "out of memory");
    }
    cJSON *k = kf->type == PROTOBUF_C_TYPE_BOOL ? cJSON_CreateBool(strcmp(name, "true") == 0)
                                                : cJSON_CreateString(name);
    if (!k)
        return fail(x, PBJSON_E_NOMEM, "out of memory");
    int rc = get_scalar(x, kf, k, p);
    cJSON_Delete(k);
    return rc;
}

static int new_msg(struct dec *x, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    *out = malloc(d->sizeof_message);
    if (!*out)
        return fail(x, PBJSON_E_NOMEM, "out of memory");
    protobuf_c_message_init(d, *out);
    return 0;
}

static int get_map(struct dec *x, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                   const cJSON *v, unsigned depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t *count = &PB_MEMBER(size_t, m, f->quantifier_offset);
    ProtobufCMessage ***arr = &PB_MEMBER(ProtobufCMessage **, m, f->offset);
    if (!cJSON_IsObject(v))
        return fail(x, PBJSON_E_VALUE, "want an object (a map)");
    if (*count)
        return fail(x, PBJSON_E_VALUE, "given twice");
    if (alloc_array(x, f, (size_t)cJSON_GetArraySize(v), (void **)arr) < 0)
        return PBJSON_E_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        ProtobufCMessage *entry;
        if (new_msg(x, ed, &entry) < 0)
            return PBJSON_E_NOMEM;
        (*arr)[(*count)++] = entry;
        int rc = get_key(x, &ed->fields[0], e->string, entry);
        if (rc == 0 && !cJSON_IsNull(e))
            rc = get_value(x, &ed->fields[1], e, (char *)entry + ed->fields[1].offset, depth);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- messages ------------------------------------------------------------- */

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *name)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        char jn[128];
        pbjson_json_name(d->fields[i].name, jn, sizeof(jn));
        if (strcmp(name, jn) == 0 || strcmp(name, d->fields[i].name) == 0)
            return &d->fields[i];
    }
    return NULL;
}

/* Whether a singular field already holds something (a key given twice). */
static int already_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = (const char *)m + f->offset;
    if (f->type == PROTOBUF_C_TYPE_STRING)
        return *(char *const *)p != f->default_value;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)p != NULL;
    if (f->type == PROTOBUF_C_TYPE_BYTES)
        return ((const ProtobufCBinaryData *)p)->data != NULL;
    return 0;
}

static int get_field(struct dec *x, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                     const cJSON *v, unsigned depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return pbjson_is_map(f) ? get_map(x, m, f, v, depth) : get_repeated(x, m, f, v, depth);
    if (already_set(m, f))
        return fail(x, PBJSON_E_VALUE, "given twice");
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        PB_MEMBER(uint32_t, m, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        PB_MEMBER(protobuf_c_boolean, m, f->quantifier_offset) = 1;
    return get_value(x, f, v, (char *)m + f->offset, depth);
}

static int decode_members(struct dec *x, ProtobufCMessage *m, const cJSON *obj, unsigned depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const cJSON *v;
    cJSON_ArrayForEach(v, obj) {
        const ProtobufCFieldDescriptor *f = find_field(d, v->string);
        x->field = v->string;
        if (!f)
            return fail(x, PBJSON_E_VALUE, "no such field in %s", d->name);
        if (cJSON_IsNull(v))
            continue;
        int rc = get_field(x, m, f, v, depth);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int decode_msg(struct dec *x, const ProtobufCMessageDescriptor *d, const cJSON *obj,
                      ProtobufCMessage **out, unsigned depth)
{
    if (depth > PBJSON_MAX_DEPTH)
        return fail(x, PBJSON_E_DEPTH, "nested deeper than %d", PBJSON_MAX_DEPTH);
    if (!cJSON_IsObject(obj))
        return fail(x, PBJSON_E_VALUE, "want an object (%s)", d->name);
    if (new_msg(x, d, out) < 0)
        return PBJSON_E_NOMEM;
    const char *outer = x->field;
    int rc = decode_members(x, *out, obj, depth);
    if (rc == 0)
        x->field = outer;
    return rc;
}

int pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t n, size_t max,
                  ProtobufCMessage **out, char *err, size_t errlen)
{
    struct dec x = {err, errlen, NULL};
    *out = NULL;
    if (n > max)
        return fail(&x, PBJSON_E_SIZE, "%zu bytes of JSON, over the cap of %zu", n, max);
    cJSON *root = cJSON_ParseWithLength(json, n);
    if (!root)
        return fail(&x, PBJSON_E_SYNTAX, "not valid JSON (near byte %zu)",
                    cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - json) : (size_t)0);
    int rc = cJSON_IsObject(root) ? decode_msg(&x, d, root, out, 0)
                                  : fail(&x, PBJSON_E_SYNTAX, "want a JSON object");
    cJSON_Delete(root);
    if (rc < 0) {
        pbjson_free(*out);
        *out = NULL;
    }
    return rc;
}

void pbjson_free(ProtobufCMessage *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}
