/* zalloc.h - zeroed allocation that stays on glibc's fast path.
 *
 * glibc 2.36's calloc never uses the per-thread cache (tcache), so it costs
 * a trip through the arena for every small object; and GCC turns
 * malloc + memset(0) of the same size back into calloc. Objects made once
 * per call (streams, calls) use this instead: the memset goes through a
 * volatile pointer, which the compiler cannot fold. */
#ifndef CRISP_ZALLOC_H
#define CRISP_ZALLOC_H

#include <stdlib.h>
#include <string.h>

static void *(*volatile crisp_zalloc_memset)(void *, int, size_t) = memset;

static inline void *crisp_zalloc(size_t n)
{
    void *p = malloc(n);
    if (p)
        crisp_zalloc_memset(p, 0, n);
    return p;
}

#endif
