/* spdy.h - SPDY/3.1 framing (the Kubernetes streaming protocols' own), no
 * I/O: bytes in, callbacks out; frames out appended to a buffer.
 *
 * What the kubelet's streaming server and its clients (spdystream) use of
 * SPDY/3.1: SYN_STREAM (the client opens one stream per channel, headers
 * such as streamType), SYN_REPLY, DATA with FIN, RST_STREAM, PING, GOAWAY,
 * HEADERS. SETTINGS and WINDOW_UPDATE are read and ignored: spdystream
 * sends neither and ignores both, so neither side enforces SPDY's flow
 * windows (back-pressure is TCP's, see stream/README in
 * docs/architecture.md). Header blocks are zlib streams, one per direction
 * for the life of the connection, primed with SPDY/3's dictionary; every
 * block is inflated (even those whose headers are not needed) to keep the
 * stream in step.
 *
 * Caps: a control frame (its compressed header block included) 64 KiB; a
 * header block inflated 64 KiB (an inflation "bomb" stops there); 1024
 * name/value pairs. DATA is handed over as it arrives, never buffered: a
 * frame of up to 16 MiB (SPDY's 24-bit length) costs nothing here.
 *
 * Error contract: spdy_feed returns the bytes consumed or a negative
 * SPDY_E_* (a connection error: answer GOAWAY PROTOCOL_ERROR and close);
 * after an error every call returns the same. Callbacks return 0, or <0 to
 * stop (spdy_feed returns SPDY_E_ABORTED). Writers return 0, or SPDY_E_NOMEM
 * / SPDY_E_TOO_LARGE with the buffer unchanged. */
#ifndef CRISP_STREAM_SPDY_H
#define CRISP_STREAM_SPDY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crisp/buf.h"
#include "crisp/md.h"

enum {
    SPDY_E_PROTO = -1,     /* malformed frame */
    SPDY_E_TOO_LARGE = -2, /* a cap above */
    SPDY_E_NOMEM = -3,
    SPDY_E_ZLIB = -4,      /* a header block that does not inflate */
    SPDY_E_ABORTED = -5,   /* a callback said stop */
    SPDY_E_VERSION = -6,   /* not SPDY/3 */
};

#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02
#define SPDY_CTRL_MAX (64 * 1024)
#define SPDY_HDR_MAX (64 * 1024)
#define SPDY_DATA_MAX 0xffffff

/* RST_STREAM and GOAWAY status codes (SPDY/3.1 2.6.3, 2.6.6). */
enum spdy_status {
    SPDY_PROTOCOL_ERROR = 1,
    SPDY_INVALID_STREAM = 2,
    SPDY_REFUSED_STREAM = 3,
    SPDY_CANCEL = 5,
    SPDY_INTERNAL_ERROR = 6,
    SPDY_STREAM_IN_USE = 8,
    SPDY_STREAM_ALREADY_CLOSED = 9,
};

struct spdy_cbs {
    /* A stream opened by the peer; headers with lowercase names, a value
     * with NULs split into several entries. */
    int (*on_syn_stream)(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *hdrs);
    /* Optional: SYN_REPLY and HEADERS (a client's view; the server ignores). */
    int (*on_headers)(void *ud, uint32_t id, uint8_t flags, const struct crisp_md *hdrs);
    /* DATA bytes of stream id, in pieces as they arrive. */
    int (*on_data)(void *ud, uint32_t id, const uint8_t *p, size_t n);
    /* The peer ended its side of stream id (FIN on DATA or SYN_STREAM). */
    int (*on_fin)(void *ud, uint32_t id);
    int (*on_rst)(void *ud, uint32_t id, uint32_t status);
    int (*on_ping)(void *ud, uint32_t id);
    int (*on_goaway)(void *ud, uint32_t last_id, uint32_t status);
};

struct spdy;

/* NULL when out of memory. */
struct spdy *spdy_new(const struct spdy_cbs *cbs, void *ud);
void spdy_free(struct spdy *s);
/* Takes n bytes (all of them, unless a callback stopped or an error). */
ssize_t spdy_feed(struct spdy *s, const uint8_t *p, size_t n);
/* From inside a callback: spdy_feed returns once it does, with the bytes
 * consumed so far (the caller feeds the rest later: back-pressure). */
void spdy_yield(struct spdy *s);
/* What was wrong after an error, "" before. */
const char *spdy_why(const struct spdy *s);

/* Frames out. hdrs may be NULL (no headers). */
int spdy_put_syn_stream(struct spdy *s, struct crisp_buf *out, uint32_t id, uint8_t flags,
                        const struct crisp_md *hdrs);
int spdy_put_syn_reply(struct spdy *s, struct crisp_buf *out, uint32_t id, uint8_t flags,
                       const struct crisp_md *hdrs);
/* A DATA frame's 8-byte head, for n bytes to follow (n <= SPDY_DATA_MAX). */
void spdy_data_head(uint8_t head[8], uint32_t id, uint8_t flags, size_t n);
int spdy_put_data(struct crisp_buf *out, uint32_t id, uint8_t flags, const uint8_t *p, size_t n);
int spdy_put_rst(struct crisp_buf *out, uint32_t id, uint32_t status);
int spdy_put_ping(struct crisp_buf *out, uint32_t id);
int spdy_put_goaway(struct crisp_buf *out, uint32_t last_id, uint32_t status);

#endif
