/* pbjson_priv.h - what pbjson.c (the encoder) and pbjson_decode.c share. */
#ifndef CRISP_TRACE_PBJSON_PRIV_H
#define CRISP_TRACE_PBJSON_PRIV_H

#include <protobuf-c/protobuf-c.h>

#define PB_MEMBER(type, msg, off) (*(type *)(void *)((char *)(msg) + (off)))

/* Whether a repeated message field is a map (its type an XxxEntry of
 * key = 1, value = 2, named after the field). */
int pbjson_is_map(const ProtobufCFieldDescriptor *f);
/* Bytes of one element of a repeated field of this type. */
size_t pbjson_elt_size(ProtobufCType t);

#endif
