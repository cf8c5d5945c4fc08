/* grpc.h - gRPC over HTTP/2, the parts that are not HTTP/2: status codes,
 * length-prefixed message framing, grpc-timeout and grpc-message encoding.
 *
 * No I/O here: the message reader takes bytes in and hands complete messages
 * to a callback. Errors are negative GRPC_E_* values. */
#ifndef CRISP_GRPC_H
#define CRISP_GRPC_H

#include <stddef.h>
#include <stdint.h>

enum grpc_code {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
};

const char *grpc_code_to_str(int code);
/* The gRPC code a client derives from a non-200 HTTP status. */
int grpc_code_from_http_status(int http_status);

#define GRPC_PREFIX_LEN 5

enum {
    GRPC_E_TOO_LARGE = -1,  /* message longer than the reader's cap */
    GRPC_E_COMPRESSED = -2, /* compressed-flag set; crisp negotiates none */
    GRPC_E_NOMEM = -3,
    GRPC_E_REFUSED = -4,    /* the admit callback refused the message's size */
};

/* Called with each complete message; takes ownership of `msg` (malloc'd,
 * free() it). A negative return stops the feed and is returned by it. */
typedef int (*grpc_msg_cb)(void *ud, uint8_t *msg, size_t len);

struct grpc_reader {
    uint8_t prefix[GRPC_PREFIX_LEN];
    size_t prefix_len;
    uint8_t *msg;    /* message being filled, NULL between messages */
    size_t msg_len;  /* its declared length */
    size_t msg_fill; /* bytes of it received */
    size_t max;      /* cap on one message */
    size_t declared; /* length from the last prefix that hit an error */
    /* Optional: asked before a message's memory is taken (its declared
     * length); a negative return refuses it (GRPC_E_REFUSED). */
    int (*admit)(void *ud, size_t len);
    void *admit_ud;
};

void grpc_reader_init(struct grpc_reader *r, size_t max);
int grpc_reader_feed(struct grpc_reader *r, const uint8_t *p, size_t n,
                     grpc_msg_cb cb, void *ud);
/* Bytes of an unfinished message (prefix included); 0 between messages. */
size_t grpc_reader_pending(const struct grpc_reader *r);
void grpc_reader_free(struct grpc_reader *r);

void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], size_t len);

/* grpc-timeout: "<1..8 digits><H|M|S|m|u|n>". Returns 0 and µs, or -1. */
int grpc_timeout_parse(const char *s, size_t n, int64_t *us);
/* Writes the shortest exact-enough form; returns its length (<16). */
size_t grpc_timeout_format(int64_t us, char out[16]);

/* grpc-message percent-encoding (bytes outside 0x20..0x7e and '%').
 * encode returns the length needed (call with outcap 0 to size);
 * decode returns a malloc'd NUL-terminated string or NULL. */
size_t grpc_percent_encode(const char *s, size_t n, char *out, size_t outcap);
char *grpc_percent_decode(const char *s, size_t n);

#endif
