/* arena.c - the memory a CRI answer is built in: zeroed blocks freed all
 * at once when the answer has been packed (codec.h). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "docker/codec.h"

#define BLOCK_MIN 16384

struct dk_arena_block {
    struct dk_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

static struct dk_arena_block *block_new(struct dk_arena *a, size_t n)
{
    size_t cap = n > BLOCK_MIN ? n : BLOCK_MIN;
    struct dk_arena_block *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->used = 0;
    b->cap = cap;
    b->next = a->blocks;
    a->blocks = b;
    return b;
}

void *dk_alloc(struct dk_arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct dk_arena_block *b = a->blocks;
    if (!b || b->cap - b->used < n)
        b = block_new(a, n);
    if (!b) {
        a->oom = 1;
        return NULL;
    }
    void *m = (char *)b->data + b->used;
    b->used += n;
    assert(b->used <= b->cap);
    memset(m, 0, n);
    return m;
}

char *dk_strdup(struct dk_arena *a, const char *s)
{
    static char empty[1];
    size_t n = s ? strlen(s) : 0;
    char *d = s ? dk_alloc(a, n + 1) : NULL;
    if (!d)
        return empty;
    memcpy(d, s, n + 1);
    return d;
}

void *dk_msg(struct dk_arena *a, const ProtobufCMessageDescriptor *desc)
{
    void *m = dk_alloc(a, desc->sizeof_message);
    if (m)
        protobuf_c_message_init(desc, m);
    return m;
}

void **dk_msgs(struct dk_arena *a, const ProtobufCMessageDescriptor *desc, size_t n)
{
    void **v = dk_alloc(a, (n ? n : 1) * sizeof(void *));
    for (size_t i = 0; v && i < n; i++) {
        if (!(v[i] = dk_msg(a, desc)))
            return NULL;
    }
    return v;
}

void dk_arena_free(struct dk_arena *a)
{
    while (a->blocks) {
        struct dk_arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
}

static void *pb_alloc(void *ud, size_t n)
{
    return dk_alloc(ud, n);
}

static void pb_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* freed with the arena */
}

ProtobufCAllocator dk_arena_allocator(struct dk_arena *a)
{
    return (ProtobufCAllocator){.alloc = pb_alloc, .free = pb_free, .allocator_data = a};
}
