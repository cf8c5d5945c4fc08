/* codec.h - the Docker backend's translation between the CRI and the
 * engine's JSON, apart from the chains of engine requests (docker.h).
 *
 * Pure functions on plain inputs (protobuf-c messages, cJSON, the
 * instance's configuration, an arena): they issue no request and know no
 * op, so they are unit-tested on answers recorded from real engines
 * (test/unit/test_docker_*.c, test/unit/data/).
 *
 *   encode.c, encode_spec.c  CRI request -> engine JSON body, query, header
 *   decode.c, decode_stats.c engine answer -> CRI message
 *   meta.c                   cri-dockerd's names and labels, both ways
 *   arena.c, json.c          what they build with and read from
 *
 * Decoders build in an arena: every message and string they return lives
 * until dk_arena_free. When memory runs short the arena's oom is set and
 * what was built is incomplete (the chain answers RESOURCE_EXHAUSTED). */
#ifndef CRISP_DOCKER_CODEC_H
#define CRISP_DOCKER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "runtime_v1.pb-c.h"

/* ---- arena (arena.c) ------------------------------------------------------ */

struct dk_arena_block;
struct dk_arena {
    struct dk_arena_block *blocks;
    int oom; /* an allocation failed: what was built is incomplete */
};

/* Zeroed memory; NULL (and oom set) when memory is short. */
void *dk_alloc(struct dk_arena *a, size_t n);
/* A copy; "" (static) when s is NULL or memory is short. */
char *dk_strdup(struct dk_arena *a, const char *s);
/* A message of type desc, initialised. */
void *dk_msg(struct dk_arena *a, const ProtobufCMessageDescriptor *desc);
/* An array of n messages of type desc, each initialised. */
void **dk_msgs(struct dk_arena *a, const ProtobufCMessageDescriptor *desc, size_t n);
void dk_arena_free(struct dk_arena *a);

/* ---- reading engine JSON (json.c) ------------------------------------------- */

cJSON *dk_obj(const cJSON *obj, const char *key);          /* NULL if absent */
const char *dk_str(const cJSON *obj, const char *key);     /* "" if absent */
int dk_str_is(const cJSON *obj, const char *key, const char *want);
int64_t dk_int(const cJSON *obj, const char *key);         /* 0 if absent */
int dk_bool(const cJSON *obj, const char *key);
/* RFC 3339 (nanoseconds) to Unix ns; 0 for Docker's zero time or garbage. */
int64_t dk_time_ns(const char *rfc3339);

/* A container as a list entry (GET /containers/json) or an inspect answer
 * (GET /containers/ID/json): its name ("/k8s_..."), its labels, whether it
 * runs. */
const char *dk_entry_name(const cJSON *entry);
const cJSON *dk_entry_labels(const cJSON *entry);
int dk_entry_running(const cJSON *entry);

#endif
