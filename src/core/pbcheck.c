/* pbcheck.c - a request's string fields checked on the wire: protobuf-c
 * decodes a string into a C string, so a NUL byte inside one cuts it there
 * and whoever reads the decoded request sees less than the client sent.
 * A backend that reads decoded strings (not the relay, which passes the
 * bytes on) asks crisp_call_request_nul() and refuses such a request. */
#include <stdio.h>
#include <string.h>

#include "crisp/call.h"

#define DEPTH_MAX 32

static int varint(const uint8_t **p, size_t *n, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *n; shift += 7) {
        uint8_t b = **p;
        (*p)++, (*n)--;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Appends ".name" (or "name") to path; the old length to restore. */
static size_t path_push(char *path, size_t cap, const char *name)
{
    size_t old = strlen(path);
    snprintf(path + old, cap - old, "%s%s", old ? "." : "", name);
    return old;
}

/* 1 when a string field of message d (its bytes p, n) holds a NUL (path:
 * the field's), 0 when none does, -1 when the bytes are not a message. */
static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth,
                char *path, size_t cap)
{
    while (n) {
        uint64_t tag, len;
        if (varint(&p, &n, &tag) < 0)
            return -1;
        unsigned wt = (unsigned)(tag & 7);
        if (wt == 0 && varint(&p, &n, &len) == 0)
            continue;
        if (wt == 1 || wt == 5) {
            size_t k = wt == 1 ? 8 : 4;
            if (n < k)
                return -1;
            p += k, n -= k;
            continue;
        }
        if (wt != 2 || varint(&p, &n, &len) < 0 || len > n)
            return -1;
        const ProtobufCFieldDescriptor *f =
            tag >> 3 <= 0xffffffffu ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3)) : NULL;
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, len)) {
            path_push(path, cap, f->name);
            return 1;
        }
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < DEPTH_MAX) {
            size_t old = path_push(path, cap, f->name);
            int r = walk(f->descriptor, p, len, depth + 1, path, cap);
            if (r != 0)
                return r;
            path[old] = 0;
        }
        p += len, n -= len;
    }
    return 0;
}

int crisp_call_request_nul(const struct crisp_call *call, char *path, size_t cap)
{
    if (!cap)
        return 0;
    path[0] = 0;
    return walk(call->method->req, call->req, call->req_len, 0, path, cap) == 1;
}
