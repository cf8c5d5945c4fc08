/* buf.h - a growable byte buffer created with its maximum size.
 *
 * Every dynamic buffer in crisp has a cap: crisp_buf_reserve() and
 * crisp_buf_append() fail with -EMSGSIZE rather than grow past it, and with
 * -ENOMEM when malloc fails. On failure the buffer is unchanged. */
#ifndef CRISP_BUF_H
#define CRISP_BUF_H

#include <stddef.h>
#include <stdint.h>

struct crisp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
};

void crisp_buf_init(struct crisp_buf *b, size_t max);
int crisp_buf_reserve(struct crisp_buf *b, size_t extra);
int crisp_buf_append(struct crisp_buf *b, const void *p, size_t n);
void crisp_buf_reset(struct crisp_buf *b);
void crisp_buf_free(struct crisp_buf *b);

/* A slice that owns nothing. */
struct crisp_iov {
    const uint8_t *base;
    size_t len;
};

#endif
