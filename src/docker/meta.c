/* meta.c - pod and container metadata in the engine, in cri-dockerd's
 * scheme (codec.h): names k8s_POD_<pod>_<ns>_<uid>_<attempt> and
 * k8s_<container>_<pod>_<ns>_<uid>_<attempt> (an extra _<random> suffix is
 * allowed, as cri-dockerd adds on a name conflict), CRI labels stored as
 * Docker labels, annotations as annotation.<key> labels. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker/codec.h"

#define RENAME_SUFFIX_LEN 9 /* "_%08x" */

int dk_parse_name(const char *docker_name, struct dk_name *out)
{
    memset(out, 0, sizeof(*out));
    if (!docker_name)
        return -1;
    if (*docker_name == '/')
        docker_name++;
    if (strlen(docker_name) >= sizeof(out->buf))
        return -1;
    strcpy(out->buf, docker_name);
    char *parts[8];
    int n = 0;
    for (char *p = out->buf, *save = NULL; n < 8 && (p = strtok_r(p, "_", &save)); p = NULL)
        parts[n++] = p;
    if (n < 6 || n > 7 || strcmp(parts[0], DK_NAME_PREFIX) != 0)
        return -1;
    char *end;
    unsigned long attempt = strtoul(parts[5], &end, 10);
    if (*end || attempt > UINT32_MAX)
        return -1;
    out->name = parts[1];
    out->pod = parts[2];
    out->ns = parts[3];
    out->uid = parts[4];
    out->attempt = (uint32_t)attempt;
    return 0;
}

int dk_make_name(char out[DK_NAME_MAX + 1], const char *ctr, const char *pod, const char *ns,
                 const char *uid, uint32_t attempt)
{
    int w = snprintf(out, DK_NAME_MAX + 1, "%s_%s_%s_%s_%s_%u", DK_NAME_PREFIX,
                     ctr ? ctr : DK_SANDBOX_NAME, pod, ns, uid, attempt);
    return w < 0 || w + RENAME_SUFFIX_LEN > DK_NAME_MAX ? -1 : 0;
}

void dk_rename(char name[DK_NAME_MAX + 1], unsigned suffix)
{
    size_t l = strlen(name);
    assert(l + RENAME_SUFFIX_LEN <= DK_NAME_MAX); /* dk_make_name left room */
    snprintf(name + l, DK_NAME_MAX + 1 - l, "_%08x", suffix);
}

/* ---- labels ------------------------------------------------------------------ */

static const size_t prefix_len = sizeof(DK_ANNOTATION_PREFIX) - 1;

static int is_annotation(const char *key)
{
    return strncmp(key, DK_ANNOTATION_PREFIX, prefix_len) == 0;
}

/* crisp's and cri-dockerd's own labels, and annotations: not CRI labels */
static int is_internal(const char *key)
{
    return strcmp(key, DK_LABEL_TYPE) == 0 || strcmp(key, DK_LABEL_SANDBOX_ID) == 0 ||
           strcmp(key, DK_LABEL_LOGPATH) == 0 || strncmp(key, "io.crisp.", 9) == 0 ||
           is_annotation(key);
}

/* The CRI key a Docker label stands for in the labels (or annotations) map;
 * NULL when it belongs to the other map or to neither. */
static const char *cri_key(const cJSON *label, int annotations)
{
    if (!label->string || !cJSON_IsString(label))
        return NULL;
    if (annotations)
        return is_annotation(label->string) ? label->string + prefix_len : NULL;
    return is_internal(label->string) ? NULL : label->string;
}

struct dk_map dk_map_of(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    assert(f && f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE);
    char *base = (char *)msg; /* the caller's own message */
    struct dk_map m = {(size_t *)(base + f->quantifier_offset),
                       (struct dk_map_entry ***)(base + f->offset), f->descriptor};
    return m;
}

static void map_from_labels(struct dk_arena *a, ProtobufCMessage *msg, const cJSON *labels,
                            int annotations)
{
    struct dk_map m = dk_map_of(msg, annotations ? "annotations" : "labels");
    size_t n = 0, i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, labels) n += cri_key(it, annotations) != NULL;
    struct dk_map_entry **v = n ? (struct dk_map_entry **)dk_msgs(a, m.entry_desc, n) : NULL;
    cJSON_ArrayForEach(it, labels) {
        const char *key = cri_key(it, annotations);
        if (!key || !v)
            continue;
        v[i]->key = dk_strdup(a, key);
        v[i++]->value = dk_strdup(a, it->valuestring);
    }
    *m.n = i;
    *m.entries = v;
}

void dk_cri_labels(struct dk_arena *a, ProtobufCMessage *msg, const cJSON *labels)
{
    map_from_labels(a, msg, labels, 0);
    map_from_labels(a, msg, labels, 1);
}

static int set_label(cJSON *dst, const char *prefix, const char *key, const char *value)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    char *k = malloc(pl + kl + 1);
    if (!k)
        return -1;
    memcpy(k, prefix, pl);
    memcpy(k + pl, key, kl + 1);
    cJSON_DeleteItemFromObjectCaseSensitive(dst, k);
    int ok = cJSON_AddStringToObject(dst, k, value ? value : "") != NULL;
    free(k);
    return ok ? 0 : -1;
}

static int labels_from_map(cJSON *dst, const ProtobufCMessage *msg, int annotations)
{
    struct dk_map m = dk_map_of(msg, annotations ? "annotations" : "labels");
    for (size_t i = 0; i < *m.n; i++) {
        const struct dk_map_entry *e = (*m.entries)[i];
        if (e->key && set_label(dst, annotations ? DK_ANNOTATION_PREFIX : "", e->key, e->value) < 0)
            return -1;
    }
    return 0;
}

int dk_docker_labels(cJSON *dst, const ProtobufCMessage *config)
{
    return labels_from_map(dst, config, 0) < 0 || labels_from_map(dst, config, 1) < 0 ? -1 : 0;
}

/* Docker's list answer gives creation times in whole seconds, its inspect
 * answer in nanoseconds: a pod's list entry and status would disagree. crisp
 * records the creation time (ns) in a label and both answers use it; for
 * objects made by others, both use whole seconds. */
void dk_label_created(cJSON *labels)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    cJSON_AddStringToObject(labels, DK_LABEL_CREATED, v);
}

int64_t dk_created_ns(const cJSON *labels, int64_t fallback)
{
    const char *v = dk_str(labels, DK_LABEL_CREATED);
    char *end;
    long long ns = strtoll(v, &end, 10);
    return *v && !*end && ns > 0 ? (int64_t)ns : fallback;
}

int dk_inspect_absent(int status, const cJSON *inspect, const char *type)
{
    if (status == 404)
        return 1;
    return status == 200 && !dk_str_is(dk_entry_labels(inspect), DK_LABEL_TYPE, type);
}
