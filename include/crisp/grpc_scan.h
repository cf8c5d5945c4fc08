/* grpc_scan.h - checks a gRPC message stream without buffering it.
 *
 * A relay forwards response DATA as it arrives; this scanner walks the
 * 5-byte message prefixes on the way so that the caps still hold: a prefix
 * announcing a message over the cap, or a compressed one, stops the scan
 * before any byte of that message (or of its prefix) is handed on. Bytes of
 * a prefix cut by the end of one feed are held (at most 4) until the prefix
 * is complete. No I/O, no allocation. */
#ifndef CRISP_GRPC_SCAN_H
#define CRISP_GRPC_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "crisp/grpc.h"

struct grpc_scan {
    uint8_t pfx[GRPC_PREFIX_LEN]; /* a prefix split across feeds */
    uint8_t pfx_len;
    size_t msg_left; /* bytes of the current message still to come */
    size_t max;      /* cap on one message */
    size_t declared; /* length from the last prefix seen */
    unsigned nmsgs;  /* prefixes accepted */
};

/* Receives checked bytes to forward, in order; a negative return stops the
 * feed and is returned by it. */
typedef int (*grpc_scan_emit_cb)(void *ud, const uint8_t *p, size_t n);

void grpc_scan_init(struct grpc_scan *sc, size_t max);
/* Returns 0, GRPC_E_TOO_LARGE or GRPC_E_COMPRESSED (the bytes before the
 * bad prefix were emitted), or the emit callback's negative return. */
int grpc_scan_feed(struct grpc_scan *sc, const uint8_t *p, size_t n, grpc_scan_emit_cb emit,
                   void *ud);
/* Whether the stream stopped inside a prefix or a message (truncated if it
 * ends here). */
int grpc_scan_partial(const struct grpc_scan *sc);

#endif
