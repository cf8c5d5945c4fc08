/* grpc_scan.c - gRPC message prefixes checked on the fly (no buffering). */
#include <string.h>

#include "crisp/grpc_scan.h"

void grpc_scan_init(struct grpc_scan *sc, size_t max)
{
    memset(sc, 0, sizeof(*sc));
    sc->max = max;
}

int grpc_scan_partial(const struct grpc_scan *sc)
{
    return sc->pfx_len || sc->msg_left;
}

static int check_prefix(struct grpc_scan *sc, const uint8_t *p)
{
    size_t len = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
    sc->declared = len;
    if (p[0] != 0)
        return GRPC_E_COMPRESSED;
    if (len > sc->max)
        return GRPC_E_TOO_LARGE;
    sc->msg_left = len;
    sc->nmsgs++;
    return 0;
}

int grpc_scan_feed(struct grpc_scan *sc, const uint8_t *p, size_t n, grpc_scan_emit_cb emit,
                   void *ud)
{
    const uint8_t *span = p, *end = p + n; /* span..p: checked, not yet emitted */
    int rv = 0, erv;
    while (p < end) {
        size_t avail = (size_t)(end - p);
        if (sc->msg_left) {
            size_t take = avail < sc->msg_left ? avail : sc->msg_left;
            sc->msg_left -= take;
            p += take;
        } else if (!sc->pfx_len && avail >= GRPC_PREFIX_LEN) {
            if ((rv = check_prefix(sc, p)) < 0)
                break;
            p += GRPC_PREFIX_LEN;
        } else {
            /* A prefix cut by the end of this feed, or the rest of one. */
            if (p > span && (erv = emit(ud, span, (size_t)(p - span))) < 0)
                return erv;
            size_t take = GRPC_PREFIX_LEN - sc->pfx_len;
            if (take > avail)
                take = avail;
            memcpy(sc->pfx + sc->pfx_len, p, take);
            sc->pfx_len += (uint8_t)take;
            p += take;
            span = p;
            if (sc->pfx_len < GRPC_PREFIX_LEN)
                break;
            sc->pfx_len = 0;
            if ((rv = check_prefix(sc, sc->pfx)) < 0)
                break;
            if ((erv = emit(ud, sc->pfx, GRPC_PREFIX_LEN)) < 0)
                return erv;
        }
    }
    if (p > span && (erv = emit(ud, span, (size_t)(p - span))) < 0)
        return erv;
    return rv;
}
