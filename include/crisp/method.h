/* method.h - the CRI method table.
 *
 * Built at start-up from the protobuf-c service descriptors of runtime.v1, so
 * it cannot drift from proto/: one entry per RPC with its request and
 * response descriptors, whether it streams responses, and whether it also
 * exists in runtime.v1alpha2. A path of either package resolves to the v1
 * entry (the messages are wire-identical); the api it came in on is kept. */
#ifndef CRISP_METHOD_H
#define CRISP_METHOD_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "rpcs.gen.h" /* enum crisp_rpc: CRISP_RPC_VERSION ... CRISP_RPC_COUNT */

enum crisp_api {
    CRISP_API_V1 = 0,
    CRISP_API_V1ALPHA2,
};

enum crisp_service {
    CRISP_SVC_RUNTIME = 0,
    CRISP_SVC_IMAGE,
};

struct crisp_method {
    enum crisp_rpc id;         /* CRISP_RPC_*: index into per-backend tables */
    const char *name;          /* "Version" */
    enum crisp_service svc;
    const char *path;          /* "/runtime.v1.RuntimeService/Version" */
    const char *alpha_path;    /* v1alpha2 path, NULL if not in v1alpha2 */
    const ProtobufCMessageDescriptor *req;
    const ProtobufCMessageDescriptor *resp;
    unsigned server_streaming : 1;
};

const char *crisp_api_to_str(enum crisp_api api);
const char *crisp_service_to_str(enum crisp_service svc);

/* Returns 0, or -1 if the table cannot be built (out of memory, or the
 * protobuf-c descriptors disagree with the enum generated from proto/). */
int crisp_methods_init(void);
void crisp_methods_free(void);
size_t crisp_methods_count(void); /* CRISP_RPC_COUNT once built */
const struct crisp_method *crisp_method_at(size_t i);
static inline const struct crisp_method *crisp_method_by_id(enum crisp_rpc id)
{
    return crisp_method_at((size_t)id);
}

/* Resolves ":path". Returns NULL if unknown; *svc_known tells whether the
 * service part named a CRI service (for the UNIMPLEMENTED message). */
const struct crisp_method *crisp_method_lookup(const char *path, size_t n,
                                               enum crisp_api *api,
                                               int *svc_known);

#endif
