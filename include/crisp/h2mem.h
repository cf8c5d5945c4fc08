/* h2mem.h - the allocator crisp's nghttp2 sessions use.
 *
 * nghttp2 makes about 13 small allocations per relayed call (stream
 * objects, outbound frame items, header copies). Under load they come and
 * go in bursts of dozens, which overflows glibc's per-size cache of 7 and
 * sends most of them through the arena. This allocator keeps freed blocks
 * of up to 2 KiB on per-size free lists instead (at most 1 MiB in all) and
 * hands them back first. Larger blocks go straight to malloc. Sanitizer
 * builds pass everything through to malloc so that ASan keeps seeing each
 * block. Single-threaded, like the rest of crisp. */
#ifndef CRISP_H2MEM_H
#define CRISP_H2MEM_H

#include <nghttp2/nghttp2.h>

nghttp2_mem *crisp_h2mem(void);
/* Frees the cached blocks (also run at exit). */
void crisp_h2mem_trim(void);

#endif
