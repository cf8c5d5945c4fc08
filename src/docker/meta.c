/* meta.c - pod and container metadata in the engine, in cri-dockerd's
 * scheme (codec.h): names k8s_POD_<pod>_<ns>_<uid>_<attempt> and
 * k8s_<container>_<pod>_<ns>_<uid>_<attempt> (an extra _<random> suffix is
 * allowed, as cri-dockerd adds on a name conflict), CRI labels stored as
 * Docker labels, annotations as annotation.<key> labels. */
#define _GNU_SOURCE /* asprintf */
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

/* ---- labels ------------------------------------------------------------------
 *
 * A CRI label K is the Docker label K, an annotation K the label
 * annotation.K (cri-dockerd's scheme), except a label whose key is one of
 * the backend's own (cri-dockerd's three, io.crisp.*, annotation.*): that
 * one is stored as io.crisp.label.K, so that no pod can pass for another
 * type, sandbox or handler. io.crisp.cri-keys lists the keys the kubelet
 * set: the engine merges the image's own labels into the container's, and
 * those are not the pod's (an image could add a preStop annotation).
 * Objects without it (cri-dockerd's) are read as cri-dockerd reads them. */

static const size_t prefix_len = sizeof(DK_ANNOTATION_PREFIX) - 1;
static const size_t escaped_len = sizeof(DK_LABEL_ESCAPED) - 1;

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

/* A key podman would split (it keeps labels as "key=value" strings) or
 * that holds the escape itself. */
static int needs_esc(const char *key)
{
    return strchr(key, '=') || strchr(key, '%');
}

/* key with '=' and '%' as %3D and %25 (malloc'd). */
static char *esc_key(const char *key)
{
    size_t n = strlen(key) + 1;
    for (const char *p = key; *p; p++)
        n += *p == '=' || *p == '%' ? 2 : 0;
    char *out = malloc(n), *o = out;
    for (const char *p = key; out && *p; p++) {
        if (*p == '=' || *p == '%')
            o += sprintf(o, "%%%02X", (unsigned char)*p);
        else
            *o++ = *p;
    }
    if (out)
        *o = 0;
    return out;
}

char *dk_docker_label_key(const char *cri_key)
{
    char *k = NULL, *e = needs_esc(cri_key) ? esc_key(cri_key) : NULL;
    if (needs_esc(cri_key) && !e)
        return NULL;
    int rv = asprintf(&k, "%s%s", is_internal(cri_key) || e ? DK_LABEL_ESCAPED : "", e ? e : cri_key);
    free(e);
    return rv < 0 ? NULL : k;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* An escaped key's CRI key: percent-decoded in place when it holds '%'. */
static const char *unescape_key(struct dk_arena *a, const char *k)
{
    if (!strchr(k, '%'))
        return k;
    char *out = dk_alloc(a, strlen(k) + 1), *o = out;
    for (const char *p = k; out && *p; p++) {
        int h = *p == '%' ? hexval(p[1]) : -1, l = h >= 0 ? hexval(p[2]) : -1;
        *o++ = l >= 0 ? (char)(h * 16 + l) : *p;
        p += l >= 0 ? 2 : 0;
    }
    return out ? out : k;
}

/* The CRI key a Docker label stands for in the labels (or annotations)
 * map, reading every label (an object without io.crisp.cri-keys); NULL
 * when it belongs to the other map or to neither. */
static const char *cri_key(const cJSON *label, int annotations)
{
    if (!label->string || !cJSON_IsString(label))
        return NULL;
    if (annotations)
        return is_annotation(label->string) ? label->string + prefix_len : NULL;
    if (strncmp(label->string, DK_LABEL_ESCAPED, escaped_len) == 0)
        return label->string + escaped_len; /* (unescaped by the caller) */
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

/* The Docker label holding CRI key k of a map; NULL when absent. */
static const cJSON *label_for(const cJSON *labels, const char *k, int annotations)
{
    char *dk = NULL;
    if (annotations ? asprintf(&dk, "%s%s", DK_ANNOTATION_PREFIX, k) < 0
                    : !(dk = dk_docker_label_key(k)))
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, dk);
    free(dk);
    return cJSON_IsString(v) ? v : NULL;
}

/* The keys the kubelet set (io.crisp.cri-keys), one map's; NULL when the
 * object has no such label (cri-dockerd's), or it is not crisp's JSON. */
static cJSON *listed_keys(const cJSON *labels, int annotations)
{
    const char *v = dk_str(labels, DK_LABEL_KEYS);
    cJSON *j = *v ? cJSON_Parse(v) : NULL;
    cJSON *keys = cJSON_DetachItemFromObjectCaseSensitive(j, annotations ? "a" : "l");
    cJSON_Delete(j);
    if (cJSON_IsArray(keys))
        return keys;
    cJSON_Delete(keys);
    return NULL;
}

static void map_put(struct dk_arena *a, struct dk_map_entry **v, size_t *i, size_t cap,
                    const char *key, const cJSON *value)
{
    if (!v || !key || !value || *i >= cap)
        return;
    v[*i]->key = dk_strdup(a, key);
    v[(*i)++]->value = dk_strdup(a, value->valuestring);
}

static void map_from_labels(struct dk_arena *a, ProtobufCMessage *msg, const cJSON *labels,
                            int annotations)
{
    struct dk_map m = dk_map_of(msg, annotations ? "annotations" : "labels");
    cJSON *keys = listed_keys(labels, annotations);
    size_t n = 0, i = 0;
    const cJSON *it;
    if (keys || dk_obj(labels, DK_LABEL_KEYS))
        n = (size_t)cJSON_GetArraySize(keys);
    else
        cJSON_ArrayForEach(it, labels) n += cri_key(it, annotations) != NULL;
    struct dk_map_entry **v = n ? (struct dk_map_entry **)dk_msgs(a, m.entry_desc, n) : NULL;
    if (keys || dk_obj(labels, DK_LABEL_KEYS)) {
        cJSON_ArrayForEach(it, keys) {
            if (cJSON_IsString(it))
                map_put(a, v, &i, n, it->valuestring, label_for(labels, it->valuestring, annotations));
        }
    } else {
        cJSON_ArrayForEach(it, labels) {
            const char *k = cri_key(it, annotations);
            map_put(a, v, &i, n, k && !annotations && k != it->string ? unescape_key(a, k) : k, it);
        }
    }
    cJSON_Delete(keys);
    *m.n = i;
    *m.entries = v;
}

void dk_cri_labels(struct dk_arena *a, ProtobufCMessage *msg, const cJSON *labels)
{
    map_from_labels(a, msg, labels, 0);
    map_from_labels(a, msg, labels, 1);
}

int dk_labels_match(const cJSON *labels, size_t nsel, void *sel)
{
    struct dk_map_entry **v = sel;
    cJSON *keys = nsel ? listed_keys(labels, 0) : NULL;
    int ok = 1;
    for (size_t i = 0; ok && i < nsel; i++) {
        const char *k = v[i]->key ? v[i]->key : "", *want = v[i]->value ? v[i]->value : "";
        const cJSON *got = label_for(labels, k, 0), *it;
        int listed = !keys && !is_internal(k);
        cJSON_ArrayForEach(it, keys) listed |= cJSON_IsString(it) && strcmp(it->valuestring, k) == 0;
        ok = listed && got && strcmp(got->valuestring, want) == 0;
    }
    cJSON_Delete(keys);
    return ok;
}

static int set_label(cJSON *dst, const char *key, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
    return cJSON_AddStringToObject(dst, key, value ? value : "") != NULL ? 0 : -1;
}

/* One map's entries as labels, their keys in keys. */
static int labels_from_map(cJSON *dst, cJSON *keys, const ProtobufCMessage *msg, int annotations)
{
    struct dk_map m = dk_map_of(msg, annotations ? "annotations" : "labels");
    for (size_t i = 0; i < *m.n; i++) {
        const struct dk_map_entry *e = (*m.entries)[i];
        char *k = NULL;
        if (!e->key)
            continue;
        if (annotations ? asprintf(&k, "%s%s", DK_ANNOTATION_PREFIX, e->key) < 0
                        : !(k = dk_docker_label_key(e->key)))
            return -1;
        int rv = set_label(dst, k, e->value);
        free(k);
        if (rv < 0 || !cJSON_AddItemToArray(keys, cJSON_CreateString(e->key)))
            return -1;
    }
    return 0;
}

int dk_docker_labels(cJSON *dst, const ProtobufCMessage *config)
{
    cJSON *keys = cJSON_CreateObject();
    cJSON *l = cJSON_AddArrayToObject(keys, "l"), *an = cJSON_AddArrayToObject(keys, "a");
    char *json = NULL;
    int rv = -1;
    if (l && an && labels_from_map(dst, l, config, 0) == 0 && labels_from_map(dst, an, config, 1) == 0 &&
        (json = cJSON_PrintUnformatted(keys)))
        rv = set_label(dst, DK_LABEL_KEYS, json);
    free(json);
    cJSON_Delete(keys);
    return rv;
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
