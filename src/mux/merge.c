/* merge.c - answers of several backends into one (see mux.h). No I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"
#include "runtime_v1.pb-c.h"

/* Packs a message into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *out = malloc(*len ? *len : 1);
    if (out)
        protobuf_c_message_pack(m, out);
    return out;
}

uint8_t *mux_concat(const struct mux_part *parts, size_t n, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += parts[i].len;
    uint8_t *out = malloc(total ? total : 1);
    if (!out)
        return NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + *len, parts[i].msg, parts[i].len);
        *len += parts[i].len;
    }
    return out;
}

/* ---- Status ------------------------------------------------------------------ */

typedef Runtime__V1__StatusResponse StatusResp;
typedef Runtime__V1__RuntimeCondition Cond;

static const Cond *find_condition(const StatusResp *r, const char *type)
{
    if (!r || !r->status)
        return NULL;
    for (size_t i = 0; i < r->status->n_conditions; i++)
        if (strcmp(r->status->conditions[i]->type, type) == 0)
            return r->status->conditions[i];
    return NULL;
}

struct status_merge {
    StatusResp **resp;
    const struct mux_part *parts;
    size_t n;
    char *strings[64]; /* what the merged answer points at, freed after packing */
    size_t nstrings;
    Runtime__V1__StatusResponse__InfoEntry *entries;
};

static char *keep(struct status_merge *m, char *s)
{
    if (s && m->nstrings < sizeof(m->strings) / sizeof(m->strings[0]))
        m->strings[m->nstrings++] = s;
    else if (s) {
        free(s);
        s = NULL;
    }
    return s ? s : (char *)"";
}

/* One condition type over every backend: true only if true on all; a
 * backend that did not answer counts as false. */
static void merge_condition(struct status_merge *m, const char *type, Cond *out)
{
    runtime__v1__runtime_condition__init(out);
    out->type = (char *)type;
    out->status = 1;
    for (size_t i = 0; i < m->n && out->status; i++) {
        const Cond *c = find_condition(m->resp[i], type);
        if (c && c->status)
            continue;
        out->status = 0;
        char buf[512];
        snprintf(buf, sizeof(buf), "backend %s: %s", m->parts[i].backend,
                 m->parts[i].err ? m->parts[i].err : !m->resp[i] ? "no valid status answer"
                 : !c ? "condition not reported" : *c->message ? c->message : "not ready");
        out->reason = c && *c->reason ? c->reason : (char *)"BackendNotReady";
        out->message = keep(m, strdup(buf));
    }
}

static Runtime__V1__RuntimeHandlerFeatures *features_of(const StatusResp *r, const char *runtime)
{
    for (size_t i = 0; r && i < r->n_runtime_handlers; i++)
        if (strcmp(r->runtime_handlers[i]->name, runtime) == 0)
            return r->runtime_handlers[i]->features;
    return NULL;
}

static void merge_info(struct status_merge *m, StatusResp *out)
{
    size_t total = 0;
    for (size_t i = 0; i < m->n; i++)
        total += m->resp[i] ? m->resp[i]->n_info : 0;
    out->info = calloc(total ? total : 1, sizeof(*out->info));
    Runtime__V1__StatusResponse__InfoEntry *e = calloc(total ? total : 1, sizeof(*e));
    if (!out->info || !e) {
        free(out->info);
        free(e);
        out->info = NULL;
        return;
    }
    m->entries = e;
    for (size_t i = 0; i < m->n; i++) {
        for (size_t k = 0; m->resp[i] && k < m->resp[i]->n_info; k++) {
            runtime__v1__status_response__info_entry__init(&e[out->n_info]);
            size_t kl = strlen(m->parts[i].backend) + strlen(m->resp[i]->info[k]->key) + 2;
            char *key = malloc(kl);
            if (key)
                snprintf(key, kl, "%s/%s", m->parts[i].backend, m->resp[i]->info[k]->key);
            e[out->n_info].key = keep(m, key);
            e[out->n_info].value = m->resp[i]->info[k]->value;
            out->info[out->n_info] = &e[out->n_info];
            out->n_info++;
        }
    }
}

uint8_t *mux_merge_status(const struct mux_part *parts, size_t n,
                          const struct mux_handler_view *handlers, size_t nh, size_t *len)
{
    struct status_merge m = {calloc(n ? n : 1, sizeof(StatusResp *)), parts, n, {0}, 0, NULL};
    Runtime__V1__RuntimeHandler *hv = calloc(nh ? nh : 1, sizeof(*hv));
    Runtime__V1__RuntimeHandler **hp = calloc(nh ? nh : 1, sizeof(*hp));
    uint8_t *out = NULL;
    if (!m.resp || !hv || !hp)
        goto done;
    for (size_t i = 0; i < n; i++)
        m.resp[i] = runtime__v1__status_response__unpack(NULL, parts[i].len, parts[i].msg);
    Cond conds[2];
    Cond *cp[2] = {&conds[0], &conds[1]};
    merge_condition(&m, "RuntimeReady", &conds[0]);
    merge_condition(&m, "NetworkReady", &conds[1]);
    Runtime__V1__RuntimeStatus st = RUNTIME__V1__RUNTIME_STATUS__INIT;
    st.n_conditions = 2;
    st.conditions = cp;
    StatusResp r = RUNTIME__V1__STATUS_RESPONSE__INIT;
    r.status = &st;
    for (size_t i = 0; i < nh; i++) {
        runtime__v1__runtime_handler__init(&hv[i]);
        hv[i].name = (char *)handlers[i].name;
        hv[i].features = handlers[i].part < n ? features_of(m.resp[handlers[i].part],
                                                            handlers[i].runtime) : NULL;
        hp[i] = &hv[i];
    }
    r.n_runtime_handlers = nh;
    r.runtime_handlers = hp;
    merge_info(&m, &r);
    out = pack(&r.base, len);
    free(m.entries);
    free(r.info);
done:
    for (size_t i = 0; m.resp && i < n; i++)
        if (m.resp[i])
            runtime__v1__status_response__free_unpacked(m.resp[i], NULL);
    for (size_t i = 0; i < m.nstrings; i++)
        free(m.strings[i]);
    free(m.resp);
    free(hv);
    free(hp);
    return out;
}

/* ---- images ------------------------------------------------------------------ */

static int seen_image(Runtime__V1__Image **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->id, id) == 0)
            return 1;
    return 0;
}

uint8_t *mux_merge_images(const struct mux_part *parts, size_t n, size_t *len)
{
    Runtime__V1__ListImagesResponse **resp = calloc(n ? n : 1, sizeof(*resp));
    size_t total = 0;
    uint8_t *out = NULL;
    if (!resp)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        resp[i] = runtime__v1__list_images_response__unpack(NULL, parts[i].len, parts[i].msg);
        total += resp[i] ? resp[i]->n_images : 0;
    }
    Runtime__V1__ListImagesResponse r = RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT;
    r.images = calloc(total ? total : 1, sizeof(*r.images));
    if (r.images) {
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; resp[i] && k < resp[i]->n_images; k++)
                if (!seen_image(r.images, r.n_images, resp[i]->images[k]->id))
                    r.images[r.n_images++] = resp[i]->images[k];
        out = pack(&r.base, len);
    }
    free(r.images);
    for (size_t i = 0; i < n; i++)
        if (resp[i])
            runtime__v1__list_images_response__free_unpacked(resp[i], NULL);
    free(resp);
    return out;
}

int mux_image_present(const uint8_t *msg, size_t len)
{
    Runtime__V1__ImageStatusResponse *r = runtime__v1__image_status_response__unpack(NULL, len, msg);
    if (!r)
        return -1;
    int present = r->image != NULL;
    runtime__v1__image_status_response__free_unpacked(r, NULL);
    return present;
}

/* ---- handler names -------------------------------------------------------------- */

uint8_t *mux_set_handler(const uint8_t *req, size_t len, const char *runtime, size_t *out_len)
{
    Runtime__V1__RunPodSandboxRequest *r = runtime__v1__run_pod_sandbox_request__unpack(NULL, len, req);
    if (!r)
        return NULL;
    char *saved = r->runtime_handler;
    r->runtime_handler = (char *)runtime;
    uint8_t *out = pack(&r->base, out_len);
    r->runtime_handler = saved;
    runtime__v1__run_pod_sandbox_request__free_unpacked(r, NULL);
    return out;
}

static char *unmap(char *name, const char *const *from, const char *const *to, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, from[i]) == 0)
            return (char *)to[i];
    return name;
}

uint8_t *mux_unmap_handlers(const uint8_t *msg, size_t len, int is_list, const char *const *from,
                            const char *const *to, size_t n, size_t *out_len)
{
    uint8_t *out = NULL;
    if (is_list) {
        Runtime__V1__ListPodSandboxResponse *r =
            runtime__v1__list_pod_sandbox_response__unpack(NULL, len, msg);
        if (!r)
            return NULL;
        char **saved = calloc(r->n_items ? r->n_items : 1, sizeof(*saved));
        for (size_t i = 0; saved && i < r->n_items; i++) {
            saved[i] = r->items[i]->runtime_handler;
            r->items[i]->runtime_handler = unmap(saved[i], from, to, n);
        }
        out = saved ? pack(&r->base, out_len) : NULL;
        for (size_t i = 0; saved && i < r->n_items; i++)
            r->items[i]->runtime_handler = saved[i];
        free(saved);
        runtime__v1__list_pod_sandbox_response__free_unpacked(r, NULL);
        return out;
    }
    Runtime__V1__PodSandboxStatusResponse *r =
        runtime__v1__pod_sandbox_status_response__unpack(NULL, len, msg);
    if (!r)
        return NULL;
    char *saved = r->status ? r->status->runtime_handler : NULL;
    if (r->status)
        r->status->runtime_handler = unmap(saved, from, to, n);
    out = pack(&r->base, out_len);
    if (r->status)
        r->status->runtime_handler = saved;
    runtime__v1__pod_sandbox_status_response__free_unpacked(r, NULL);
    return out;
}
