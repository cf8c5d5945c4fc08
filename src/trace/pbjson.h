/* pbjson.h - protobuf-c messages <-> JSON, from the descriptors alone.
 *
 * The proto3 JSON mapping, for any message protobuf-c describes (nothing is
 * written by hand per message): field names in lowerCamelCase (protoc's
 * json_name: '_' dropped, the next letter upper-cased), enums by name (an
 * unknown number as a number), bytes in base64, 64-bit integers as
 * strings, maps (repeated XxxEntry messages) as objects, fields at their
 * default value left out, NaN and the infinities as "NaN", "Infinity",
 * "-Infinity". No I/O: the codec reads and writes memory.
 *
 * Redaction is the encoder's: the secrets of runtime.v1.AuthConfig
 * (password, auth, identity_token, registry_token) are always written as
 * "[redacted]"; PBJSON_REDACT_ENV does the same for KeyValue values (a
 * container's environment) and the verbose `info` maps of status answers
 * (which carry the container's configuration, environment included). */
#ifndef CRISP_TRACE_PBJSON_H
#define CRISP_TRACE_PBJSON_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "trace/jbuf.h"

#define PBJSON_REDACTED "[redacted]"
/* The member an object gets where the encoder stopped at its limit. */
#define PBJSON_CUT_KEY "@cut"

enum {
    PBJSON_REDACT_ENV = 1u << 0,
};

struct pbjson_enc {
    unsigned flags;   /* PBJSON_REDACT_* */
    size_t limit;     /* soft cap on the JSON of one message (0: none) */
    /* out: 1 when the text was cut at limit: the innermost object open at
     * that point got "@cut": true, and the rest was left out (a long
     * string or bytes field is cut short first); the text stays valid
     * JSON */
    int cut;
    size_t start;     /* private */
};

/* Appends m as JSON to out. Returns 0, or out's JBUF_E_* error. */
int pbjson_encode(struct jbuf *out, const ProtobufCMessage *m, struct pbjson_enc *e);

enum {
    PBJSON_E_SYNTAX = -1,  /* not JSON, or not an object at the top */
    PBJSON_E_VALUE = -2,   /* an unknown field, a wrong type, a bad value */
    PBJSON_E_NOMEM = -3,
    PBJSON_E_DEPTH = -4,   /* nested deeper than PBJSON_MAX_DEPTH */
    PBJSON_E_SIZE = -5,    /* the text is over the caller's cap */
};

#define PBJSON_MAX_DEPTH 32

/* Builds a message of type d from JSON text (n bytes, at most max). Field
 * names are accepted in lowerCamelCase or as in the .proto; enums by name
 * or number; 64-bit integers as strings or numbers; null means the
 * default. Returns 0 and *out (free it with pbjson_free), or a PBJSON_E_*
 * error with a reason naming the field in err. */
int pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t n, size_t max,
                  ProtobufCMessage **out, char *err, size_t errlen);
void pbjson_free(ProtobufCMessage *m);

/* protoc's json_name of a field name ("pod_sandbox_id" -> "podSandboxId"),
 * cut to fit cap (NUL included). */
void pbjson_json_name(const char *name, char *out, size_t cap);

#endif
