/* buf.c - capped growable buffers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/buf.h"

void crisp_buf_init(struct crisp_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int crisp_buf_reserve(struct crisp_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return -EMSGSIZE;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > b->max / 2 ? b->max : ncap * 2;
    uint8_t *p = realloc(b->data, ncap ? ncap : 1);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int crisp_buf_append(struct crisp_buf *b, const void *p, size_t n)
{
    int rv = crisp_buf_reserve(b, n);
    if (rv < 0)
        return rv;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void crisp_buf_reset(struct crisp_buf *b)
{
    b->len = 0;
}

void crisp_buf_free(struct crisp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
