/* libFuzzer harness for crisp's HTTP/2 request checks (src/front/h2req.c).
 *
 *   make fuzz && build/fuzz/fuzz_h2req -max_total_time=60
 *
 * Input: a list of header fields, each: 1 byte flags (bit 0: trailers),
 * 1 byte name length, 1 byte value length, then the name and the value;
 * then DATA sizes. Checks: the first error sticks (every later call returns
 * it), a block h2req accepts has :method, :scheme and a non-empty :path
 * once each, no uppercase or NUL/CR/LF, and the printable field name stays
 * NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "front/h2req.h"

static void check_accepted(const uint8_t *data, size_t size)
{
    /* rescan the fields h2req took: none may break the rules it enforces */
    size_t off = 0;
    unsigned methods = 0, schemes = 0, paths = 0;
    while (off + 3 <= size) {
        size_t nl = data[off + 1], vl = data[off + 2];
        const uint8_t *name = data + off + 3, *value = name + nl;
        if (off + 3 + nl + vl > size)
            break;
        for (size_t i = 0; i < nl; i++)
            if ((name[i] >= 'A' && name[i] <= 'Z') || name[i] == 0)
                abort();
        for (size_t i = 0; i < vl; i++)
            if (value[i] == 0 || value[i] == '\r' || value[i] == '\n')
                abort();
        if (!(data[off] & 1)) {
            methods += nl == 7 && memcmp(name, ":method", 7) == 0;
            schemes += nl == 7 && memcmp(name, ":scheme", 7) == 0;
            paths += nl == 5 && memcmp(name, ":path", 5) == 0 && vl > 0;
        }
        off += 3 + nl + vl;
    }
    if (methods != 1 || schemes != 1 || paths != 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h2req r;
    h2req_init(&r);
    size_t off = 0;
    int first = 0, in_trailers = 0;
    while (off + 3 <= size) {
        size_t nl = data[off + 1], vl = data[off + 2];
        if (off + 3 + nl + vl > size)
            break;
        int trailers = data[off] & 1;
        if (trailers && !in_trailers) {
            int rv = h2req_headers_done(&r);
            if (first && rv != first)
                abort();
            first = first ? first : rv;
            in_trailers = 1;
        }
        int rv = h2req_field(&r, data + off + 3, nl, data + off + 3 + nl, vl, trailers);
        if (first && rv != first)
            abort(); /* the first error sticks */
        first = first ? first : rv;
        off += 3 + nl + vl;
    }
    int rv = in_trailers ? first : h2req_headers_done(&r);
    if (first && rv != first)
        abort();
    if (rv == 0 && !in_trailers)
        check_accepted(data, off);
    for (; off < size; off++)
        h2req_data(&r, data[off], off + 1 == size);
    if (strlen(r.field) >= sizeof(r.field) || !h2req_strerror(r.err))
        abort();
    return 0;
}
