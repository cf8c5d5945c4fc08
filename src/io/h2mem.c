/* h2mem.c - recycling allocator for nghttp2 (see h2mem.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/h2mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define H2MEM_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2MEM_CACHE 0
#endif
#endif
#ifndef H2MEM_CACHE
#define H2MEM_CACHE 1
#endif

#define HDR 16                   /* keeps the 16-byte alignment of malloc */
#define CACHE_MAX (1024 * 1024)  /* bytes kept on the free lists */
#define BIG UINT32_MAX           /* class of a block malloc'd at its size */

static const uint32_t class_size[] = {32, 48, 64, 96, 128, 192, 256, 384, 512,
                                      768, 1024, 1536, 2048};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))

struct hdr {
    uint32_t cls;
    uint32_t pad;
    size_t size; /* bytes asked for */
};

struct freeblk {
    struct freeblk *next;
};

static struct freeblk *freelist[NCLASS];
static size_t cached;
static int atexit_done;

static uint32_t class_of(size_t need)
{
    if (!H2MEM_CACHE || need > class_size[NCLASS - 1])
        return BIG;
    uint32_t c = 0;
    while (class_size[c] < need)
        c++;
    return c;
}

static void *mem_malloc(size_t size, void *ud)
{
    (void)ud;
    if (size > SIZE_MAX - HDR)
        return NULL;
    uint32_t c = class_of(size + HDR);
    struct hdr *h;
    if (c != BIG && freelist[c]) {
        h = (struct hdr *)freelist[c];
        freelist[c] = freelist[c]->next;
        cached -= class_size[c];
    } else {
        h = malloc(c != BIG ? class_size[c] : size + HDR);
        if (!h)
            return NULL;
    }
    h->cls = c;
    h->size = size;
    return (uint8_t *)h + HDR;
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    if (!p)
        return;
    struct hdr *h = (struct hdr *)((uint8_t *)p - HDR);
    uint32_t c = h->cls;
    if (c == BIG || cached + class_size[c] > CACHE_MAX) {
        free(h);
        return;
    }
    if (!atexit_done) {
        atexit_done = 1;
        atexit(crisp_h2mem_trim);
    }
    struct freeblk *f = (struct freeblk *)h;
    f->next = freelist[c];
    freelist[c] = f;
    cached += class_size[c];
}

static void *mem_calloc(size_t n, size_t sz, void *ud)
{
    if (sz && n > SIZE_MAX / sz)
        return NULL;
    void *p = mem_malloc(n * sz, ud);
    if (p)
        memset(p, 0, n * sz);
    return p;
}

static void *mem_realloc(void *p, size_t size, void *ud)
{
    if (!p)
        return mem_malloc(size, ud);
    struct hdr *h = (struct hdr *)((uint8_t *)p - HDR);
    if (h->cls != BIG && size <= class_size[h->cls] - HDR) {
        h->size = size;
        return p;
    }
    void *q = mem_malloc(size, ud);
    if (!q)
        return NULL;
    memcpy(q, p, h->size < size ? h->size : size);
    mem_free(p, ud);
    return q;
}

void crisp_h2mem_trim(void)
{
    for (size_t c = 0; c < NCLASS; c++) {
        while (freelist[c]) {
            struct freeblk *f = freelist[c];
            freelist[c] = f->next;
            free(f);
        }
    }
    cached = 0;
}

static nghttp2_mem mem = {
    .mem_user_data = NULL,
    .malloc = mem_malloc,
    .free = mem_free,
    .calloc = mem_calloc,
    .realloc = mem_realloc,
};

nghttp2_mem *crisp_h2mem(void)
{
    return &mem;
}
