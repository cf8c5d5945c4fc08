/* pods.c - the trace's pod filter (see pods.h). */
#include <stdlib.h>
#include <string.h>

#include "trace/pbjson_priv.h"
#include "trace/pods.h"

struct trace_pods {
    char *ids[TRACE_PODS_MAX_IDS]; /* a ring: next is the oldest once full */
    size_t n, next;
};

struct trace_pods *trace_pods_new(void)
{
    return calloc(1, sizeof(struct trace_pods));
}

void trace_pods_free(struct trace_pods *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < TRACE_PODS_MAX_IDS; i++)
        free(p->ids[i]);
    free(p);
}

size_t trace_pods_known(const struct trace_pods *p)
{
    return p->n;
}

static int known(const struct trace_pods *p, const char *id)
{
    if (!id || !*id)
        return 0;
    for (size_t i = 0; i < TRACE_PODS_MAX_IDS; i++)
        if (p->ids[i] && strcmp(p->ids[i], id) == 0)
            return 1;
    return 0;
}

static void learn(struct trace_pods *p, const char *id)
{
    if (!id || !*id || known(p, id))
        return;
    char *copy = strdup(id);
    if (!copy)
        return; /* a pod the filter then misses: no worse than a restart */
    if (p->ids[p->next])
        free(p->ids[p->next]);
    else
        p->n++;
    p->ids[p->next] = copy;
    p->next = (p->next + 1) % TRACE_PODS_MAX_IDS;
}

static void forget(struct trace_pods *p, const char *id)
{
    for (size_t i = 0; id && i < TRACE_PODS_MAX_IDS; i++) {
        if (p->ids[i] && strcmp(p->ids[i], id) == 0) {
            free(p->ids[i]);
            p->ids[i] = NULL;
            p->n--;
        }
    }
}

/* ---- fields by name -------------------------------------------------------- */

static const ProtobufCFieldDescriptor *field(const ProtobufCMessage *m, const char *name)
{
    return m ? protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name) : NULL;
}

static const char *str_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return PB_MEMBER(const char *, m, f->offset);
}

static const ProtobufCMessage *msg_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return PB_MEMBER(const ProtobufCMessage *, m, f->offset);
}

/* A string map's value (labels). */
static const char *map_value(const ProtobufCMessage *m, const char *name, const char *key)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || !pbjson_is_map(f))
        return NULL;
    size_t n = PB_MEMBER(size_t, m, f->quantifier_offset);
    ProtobufCMessage **v = PB_MEMBER(ProtobufCMessage **, m, f->offset);
    for (size_t i = 0; i < n; i++) {
        const char *k = str_field(v[i], "key");
        if (k && strcmp(k, key) == 0)
            return str_field(v[i], "value");
    }
    return NULL;
}

/* Metadata (name, namespace, uid) matching a pod pattern. */
static int meta_matches(const struct trace_filter *f, const ProtobufCMessage *md)
{
    return md && trace_filter_pod(f, str_field(md, "namespace"), str_field(md, "name"),
                                  str_field(md, "uid"));
}

/* A PodSandboxConfig in the request (RunPodSandbox's config, the
 * sandbox_config of CreateContainer and PullImage) of a matching pod. */
static int config_matches(const struct trace_filter *f, const ProtobufCMessage *req)
{
    const ProtobufCMessage *cfg = msg_field(req, "sandbox_config");
    if (!cfg) {
        cfg = msg_field(req, "config");
        if (cfg && strcmp(cfg->descriptor->short_name, "PodSandboxConfig") != 0)
            cfg = NULL;
    }
    return cfg && meta_matches(f, msg_field(cfg, "metadata"));
}

/* What a status answer says about its pod or container (after a restart,
 * the way to learn IDs made before it). */
static int status_matches(struct trace_pods *p, const struct trace_filter *f,
                          const ProtobufCMessage *resp)
{
    const ProtobufCMessage *st = msg_field(resp, "status");
    if (!st)
        return 0;
    int hit = strcmp(st->descriptor->short_name, "PodSandboxStatus") == 0 &&
              meta_matches(f, msg_field(st, "metadata"));
    hit = hit || trace_filter_pod(f, map_value(st, "labels", "io.kubernetes.pod.namespace"),
                                  map_value(st, "labels", "io.kubernetes.pod.name"),
                                  map_value(st, "labels", "io.kubernetes.pod.uid"));
    if (hit)
        learn(p, str_field(st, "id"));
    return hit;
}

int trace_pods_match(struct trace_pods *p, const struct trace_filter *f,
                     const struct crisp_method *m, const ProtobufCMessage *req,
                     const ProtobufCMessage *resp, int ok)
{
    const char *pod_id = str_field(req, "pod_sandbox_id");
    const char *ctr_id = str_field(req, "container_id");
    int hit = config_matches(f, req) || known(p, pod_id) || known(p, ctr_id);
    if (ok && resp)
        hit = status_matches(p, f, resp) || hit;
    if (!hit || !ok)
        return hit;
    learn(p, str_field(resp, "pod_sandbox_id"));
    learn(p, str_field(resp, "container_id"));
    if (m->id == CRISP_RPC_REMOVE_POD_SANDBOX)
        forget(p, pod_id);
    if (m->id == CRISP_RPC_REMOVE_CONTAINER)
        forget(p, ctr_id);
    return hit;
}
