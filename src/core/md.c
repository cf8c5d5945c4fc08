/* md.c - gRPC metadata lists. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/md.h"

void crisp_md_init(struct crisp_md *md, size_t max_bytes)
{
    memset(md, 0, sizeof(*md));
    md->max_bytes = max_bytes;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, p, n);
    d[n] = 0;
    return d;
}

int crisp_md_add(struct crisp_md *md, const uint8_t *name, size_t namelen,
                 const uint8_t *value, size_t valuelen)
{
    size_t add = namelen + valuelen + 32; /* HPACK's per-entry overhead */
    if (add > md->max_bytes || md->bytes > md->max_bytes - add)
        return -EMSGSIZE;
    if (md->n == md->cap) {
        size_t ncap = md->cap ? md->cap * 2 : 8;
        struct crisp_hdr *v = realloc(md->v, ncap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        md->v = v;
        md->cap = ncap;
    }
    struct crisp_hdr *h = &md->v[md->n];
    h->name = dup_bytes(name, namelen);
    h->value = dup_bytes(value, valuelen);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return -ENOMEM;
    }
    h->namelen = namelen;
    h->valuelen = valuelen;
    md->n++;
    md->bytes += add;
    return 0;
}

const struct crisp_hdr *crisp_md_get(const struct crisp_md *md, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < md->n; i++)
        if (md->v[i].namelen == n && memcmp(md->v[i].name, name, n) == 0)
            return &md->v[i];
    return NULL;
}

void crisp_md_free(struct crisp_md *md)
{
    for (size_t i = 0; i < md->n; i++) {
        free(md->v[i].name);
        free(md->v[i].value);
    }
    free(md->v);
    md->v = NULL;
    md->n = md->cap = md->bytes = 0;
}

#define R(s) {s, sizeof(s) - 1}
static const struct {
    const char *name;
    size_t len;
} reserved[] = {
    R("content-type"), R("te"), R("grpc-timeout"), R("grpc-encoding"),
    R("grpc-accept-encoding"), R("grpc-status"), R("grpc-message"),
    R("connection"), R("keep-alive"), R("proxy-connection"), R("transfer-encoding"),
    R("upgrade"), R("host"), R("content-length"), R("user-agent"),
};
#undef R

int crisp_md_is_reserved(const uint8_t *name, size_t namelen)
{
    if (namelen > 0 && name[0] == ':')
        return 1;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (reserved[i].len == namelen && reserved[i].name[0] == name[0] &&
            memcmp(reserved[i].name, name, namelen) == 0)
            return 1;
    }
    return 0;
}
