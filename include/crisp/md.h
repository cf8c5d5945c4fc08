/* md.h - gRPC metadata: an ordered list of header name/value pairs.
 *
 * Capped in total bytes (names + values); crisp_md_add fails with -EMSGSIZE
 * past the cap, -ENOMEM if malloc fails. Names are stored lowercase as they
 * arrive from HTTP/2. */
#ifndef CRISP_MD_H
#define CRISP_MD_H

#include <stddef.h>
#include <stdint.h>

struct crisp_hdr {
    uint8_t *name;
    size_t namelen;
    uint8_t *value;
    size_t valuelen;
};

struct crisp_md {
    struct crisp_hdr *v;
    size_t n, cap;
    size_t bytes, max_bytes;
};

void crisp_md_init(struct crisp_md *md, size_t max_bytes);
int crisp_md_add(struct crisp_md *md, const uint8_t *name, size_t namelen,
                 const uint8_t *value, size_t valuelen);
const struct crisp_hdr *crisp_md_get(const struct crisp_md *md, const char *name);
void crisp_md_free(struct crisp_md *md);

/* Headers that belong to the transport, never relayed as metadata. */
int crisp_md_is_reserved(const uint8_t *name, size_t namelen);

#endif
