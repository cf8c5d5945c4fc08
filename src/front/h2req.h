/* h2req.h - the HTTP/2 request checks crisp makes itself (no I/O).
 *
 * crisp runs nghttp2 with its HTTP messaging checks off: nghttp2 refuses an
 * :authority that is not a host[:port], and grpc-go (the kubelet's and
 * crictl's gRPC stack) dialling a unix socket sends the socket path there
 * (":authority: /run/crisp/crisp.sock"). gRPC servers accept any authority;
 * so does crisp. What makes a request malformed (RFC 9113 section 8) is still
 * refused, by these checks, one header field at a time as nghttp2 decodes
 * them:
 *   - a field name that is empty, has uppercase letters or characters that
 *     are not token characters (a ':' only to begin a pseudo-header);
 *   - a value with NUL, CR or LF (any :authority value without them is fine);
 *   - a pseudo-header other than :method, :scheme, :path, :authority, twice
 *     the same one, one after a regular field, or any in trailers;
 *   - connection-specific fields (connection, keep-alive, proxy-connection,
 *     transfer-encoding, upgrade) and a te other than "trailers";
 *   - at the end of the header block: :method, :scheme or :path missing,
 *     or :path empty;
 *   - a content-length that is not a number, or that the DATA contradicts.
 *
 * Return contract: every function returns H2REQ_OK (0) or a negative
 * H2REQ_E_* code; h2req_strerror() names it for a log line or a message.
 * After the first error the state keeps it (later calls return it again),
 * so a caller can check once, at the end of the block. */
#ifndef CRISP_H2REQ_H
#define CRISP_H2REQ_H

#include <stddef.h>
#include <stdint.h>

enum h2req_err {
    H2REQ_OK = 0,
    H2REQ_E_NAME = -1,            /* invalid field name */
    H2REQ_E_VALUE = -2,           /* NUL, CR or LF in a value */
    H2REQ_E_PSEUDO_UNKNOWN = -3,  /* not a request pseudo-header */
    H2REQ_E_PSEUDO_TWICE = -4,
    H2REQ_E_PSEUDO_LATE = -5,     /* after a regular field */
    H2REQ_E_PSEUDO_MISSING = -6,  /* :method, :scheme or :path */
    H2REQ_E_PATH_EMPTY = -7,
    H2REQ_E_CONNECTION = -8,      /* connection-specific field */
    H2REQ_E_TE = -9,              /* te other than "trailers" */
    H2REQ_E_TRAILER_PSEUDO = -10, /* pseudo-header in trailers */
    H2REQ_E_CONTENT_LENGTH = -11, /* unparsable, or the DATA disagrees */
};

struct h2req {
    int err;               /* first error, H2REQ_OK while none */
    unsigned pseudo_seen;  /* bit per pseudo-header */
    unsigned regular_seen : 1;
    int64_t content_length; /* -1: none given */
    uint64_t data_bytes;
    char field[48];        /* the name of the field that failed, for messages */
};

void h2req_init(struct h2req *r);
/* One field of the request's header block (trailers = 0) or of its
 * trailers (trailers = 1). */
int h2req_field(struct h2req *r, const uint8_t *name, size_t namelen,
                const uint8_t *value, size_t valuelen, int trailers);
/* The request's header block is complete. */
int h2req_headers_done(struct h2req *r);
/* DATA payload bytes received; at_end when the request ended with them. */
int h2req_data(struct h2req *r, size_t n, int at_end);
const char *h2req_strerror(int err);

#endif
