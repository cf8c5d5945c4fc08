/* pods.h - the trace's pod filter: which calls are about the pods it names.
 *
 * A call names its pod by configuration (RunPodSandbox, CreateContainer,
 * PullImage: the PodSandboxConfig's metadata) or by an ID (pod_sandbox_id,
 * container_id). The IDs of matching pods and their containers are learned
 * from the answers (RunPodSandbox, CreateContainer, and the metadata and
 * kubelet labels of PodSandboxStatus and ContainerStatus after a restart),
 * kept in a bounded set (the oldest forgotten first) and forgotten when
 * removed. Used by the writer thread only; no I/O, no locks. */
#ifndef CRISP_TRACE_PODS_H
#define CRISP_TRACE_PODS_H

#include <protobuf-c/protobuf-c.h>

#include "crisp/method.h"
#include "trace/filter.h"

#define TRACE_PODS_MAX_IDS 4096

struct trace_pods;

struct trace_pods *trace_pods_new(void);
void trace_pods_free(struct trace_pods *p);
/* Whether the call is about a pod f names (req and resp decoded, either
 * may be NULL; ok: the call succeeded); learns and forgets IDs. */
int trace_pods_match(struct trace_pods *p, const struct trace_filter *f,
                     const struct crisp_method *m, const ProtobufCMessage *req,
                     const ProtobufCMessage *resp, int ok);
size_t trace_pods_known(const struct trace_pods *p);

#endif
