/* docker_meta.c - pod and container metadata in the engine, in
 * cri-dockerd's scheme: names k8s_POD_<pod>_<ns>_<uid>_<attempt> and
 * k8s_<container>_<pod>_<ns>_<uid>_<attempt> (an extra _<random> suffix is
 * allowed, as cri-dockerd adds on a name conflict), CRI labels stored as
 * Docker labels, annotations as annotation.<key> labels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docker.h"

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

int dk_make_name(char *out, size_t n, const char *ctr, const char *pod, const char *ns,
                 const char *uid, uint32_t attempt)
{
    int w = snprintf(out, n, "%s_%s_%s_%s_%s_%u", DK_NAME_PREFIX, ctr ? ctr : DK_SANDBOX_NAME,
                     pod, ns, uid, attempt);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

static int is_internal(const char *key)
{
    return strcmp(key, DK_LABEL_TYPE) == 0 || strcmp(key, DK_LABEL_SANDBOX_ID) == 0 ||
           strcmp(key, DK_LABEL_LOGPATH) == 0 || strncmp(key, "io.crisp.", 9) == 0 ||
           strncmp(key, DK_ANNOTATION_PREFIX, sizeof(DK_ANNOTATION_PREFIX) - 1) == 0;
}

void dk_map_from_labels(struct dk_arena *a, const cJSON *labels, int want_annotations,
                        const ProtobufCMessageDescriptor *entry_desc, size_t *n_out,
                        void *entries_out)
{
    const size_t plen = sizeof(DK_ANNOTATION_PREFIX) - 1;
    size_t n = 0;
    const cJSON *it;
    *n_out = 0;
    *(void **)entries_out = NULL;
    cJSON_ArrayForEach(it, labels) {
        if (!it->string || !cJSON_IsString(it))
            continue;
        int ann = strncmp(it->string, DK_ANNOTATION_PREFIX, plen) == 0;
        if (want_annotations ? ann : !is_internal(it->string))
            n++;
    }
    if (!n)
        return;
    struct dk_map_entry **v = (struct dk_map_entry **)dk_msgs(a, entry_desc, n);
    if (!v)
        return;
    size_t i = 0;
    cJSON_ArrayForEach(it, labels) {
        if (!it->string || !cJSON_IsString(it))
            continue;
        int ann = strncmp(it->string, DK_ANNOTATION_PREFIX, plen) == 0;
        if (want_annotations ? !ann : is_internal(it->string))
            continue;
        v[i]->key = dk_strdup(a, it->string + (want_annotations ? plen : 0));
        v[i]->value = dk_strdup(a, it->valuestring);
        i++;
    }
    *n_out = i;
    *(void **)entries_out = v;
}

void dk_labels_add(cJSON *dst, size_t n, void *entries, int as_annotations)
{
    struct dk_map_entry **v = entries;
    char key[1024];
    for (size_t i = 0; i < n; i++) {
        if (!v[i]->key)
            continue;
        snprintf(key, sizeof(key), "%s%s", as_annotations ? DK_ANNOTATION_PREFIX : "", v[i]->key);
        cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
        cJSON_AddStringToObject(dst, key, v[i]->value ? v[i]->value : "");
    }
}

int dk_labels_match(const cJSON *labels, size_t n, void *entries)
{
    struct dk_map_entry **v = entries;
    for (size_t i = 0; i < n; i++) {
        const char *have = dk_str(labels, v[i]->key);
        cJSON *item = dk_obj(labels, v[i]->key);
        if (!item || strcmp(have, v[i]->value ? v[i]->value : "") != 0)
            return 0;
    }
    return 1;
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
    return status == 200 &&
           strcmp(dk_str(dk_obj(dk_obj(inspect, "Config"), "Labels"), DK_LABEL_TYPE), type) != 0;
}
