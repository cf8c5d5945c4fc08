/* libFuzzer harness for crisp's JSON <-> protobuf codec (src/trace/pbjson*.c).
 *
 *   make fuzz && build/fuzz/fuzz_pbjson -max_total_time=60
 *
 * Input: one byte choosing a message type (the request or response of one
 * of the runtime.v1 RPCs), one byte for the encoder's limit, then JSON
 * text. Checks: what decodes is a valid message (protobuf-c's check, and
 * it packs and unpacks); encoding it and decoding that again gives the same
 * JSON (the mapping is stable, once invalid UTF-8 became U+FFFD); a limited encoding is still valid JSON and
 * says it was cut exactly when it is shorter than the full one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime_v1.pb-c.h"
#include "trace/pbjson.h"

static const ProtobufCMessageDescriptor *pick(uint8_t b)
{
    const ProtobufCServiceDescriptor *svc = b & 0x80 ? &runtime__v1__image_service__descriptor
                                                     : &runtime__v1__runtime_service__descriptor;
    const ProtobufCMethodDescriptor *m = &svc->methods[(b & 0x3f) % svc->n_methods];
    return b & 0x40 ? m->output : m->input;
}

static char *encode(const ProtobufCMessage *m, size_t limit, int *cut)
{
    struct jbuf b;
    struct pbjson_enc e = {.limit = limit};
    jbuf_init(&b, 64u << 20);
    if (pbjson_encode(&b, m, &e) < 0)
        abort(); /* under 64 MiB for any input this size */
    *cut = e.cut;
    return jbuf_take(&b, NULL);
}

static void check_message(const ProtobufCMessage *m)
{
    if (!protobuf_c_message_check(m))
        abort();
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *back = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    if (!back)
        abort();
    protobuf_c_message_free_unpacked(back, NULL);
    free(buf);
}

static void check_limited(const ProtobufCMessage *m, const char *full, size_t limit)
{
    int cut;
    char *j = encode(m, limit, &cut);
    cJSON *p = cJSON_Parse(j);
    if (!p || (cut && strlen(j) >= strlen(full) + 16) || (!cut && strcmp(j, full) != 0))
        abort();
    cJSON_Delete(p);
    free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const ProtobufCMessageDescriptor *d = pick(data[0]);
    ProtobufCMessage *m = NULL, *again = NULL;
    char err[256];
    int cut;
    if (pbjson_decode(d, (const char *)data + 2, size - 2, 1 << 20, &m, err, sizeof(err)) < 0)
        return 0;
    check_message(m);
    char *j1 = encode(m, 0, &cut);
    if (cut || pbjson_decode(d, j1, strlen(j1), 64u << 20, &again, err, sizeof(err)) < 0)
        abort(); /* our own output must decode */
    /* invalid UTF-8 became U+FFFD in j1: from j2 on the text is stable */
    char *j2 = encode(again, 0, &cut), *j3;
    ProtobufCMessage *third = NULL;
    if (pbjson_decode(d, j2, strlen(j2), 64u << 20, &third, err, sizeof(err)) < 0)
        abort();
    j3 = encode(third, 0, &cut);
    if (strcmp(j2, j3) != 0)
        abort();
    check_limited(m, j1, 1 + data[1] * 4u);
    free(j1);
    free(j2);
    free(j3);
    pbjson_free(third);
    pbjson_free(again);
    pbjson_free(m);
    return 0;
}
