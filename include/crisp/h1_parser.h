/* h1_parser.h - HTTP/1.1 message parsing, no I/O (src/http1/).
 *
 * The response parser of the engine client (h1.h), and the request-head
 * parser of the streaming server (below). The response parser: bytes in, callbacks
 * out: status line and headers, body bytes (de-chunked), end of message.
 * Bodies are delimited by Content-Length, chunked encoding, or the end of
 * the connection (also after "101 Switching Protocols", where the body is
 * the raw upgraded stream). The head reading it is built on
 * (src/http1/head.h) is shared with the request parser the streaming
 * server will need.
 *
 * Error contract: functions returning int or ssize_t return 0 (or a count)
 * on success and a negative H1_E_* on failure; h1_strerror names them.
 * Functions returning a pointer return NULL when out of memory. Callbacks
 * return 0 to go on, <0 to stop (the call feeding the bytes then returns
 * H1_E_ABORTED). */
#ifndef CRISP_H1_PARSER_H
#define CRISP_H1_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crisp/md.h"

enum {
    H1_E_PARSE = -1,     /* malformed response */
    H1_E_TOO_LARGE = -2, /* headers or buffered body over the cap */
    H1_E_NOMEM = -3,
    H1_E_CONNECT = -4,   /* could not connect (message says why) */
    H1_E_IO = -5,        /* connection lost mid-request */
    H1_E_TIMEOUT = -6,
    H1_E_ABORTED = -7,   /* a callback asked to stop */
    H1_E_INVALID = -8,   /* bad request (CR/LF in a header, ...) or call in the wrong state */
};
const char *h1_strerror(int err);

struct h1_parser;
struct h1_parser_cbs {
    /* Status line and headers done. Headers are lowercased names. Return
     * <0 to stop. */
    int (*on_head)(void *ud, int status, const struct crisp_md *headers);
    int (*on_body)(void *ud, const uint8_t *p, size_t n);
    /* The message ended (not called for read-until-close bodies: the
     * caller calls h1_parser_eof). */
    int (*on_complete)(void *ud);
};

/* head_max caps the status line + headers (0: 64 KiB). */
struct h1_parser *h1_parser_new(const struct h1_parser_cbs *cbs, void *ud, size_t head_max);
void h1_parser_free(struct h1_parser *p);
/* Ready for another response (the next one on a kept-alive connection):
 * as new, with the same callbacks and cap. */
void h1_parser_reset(struct h1_parser *p);
/* Tell the parser the request was HEAD or the status has no body (also
 * allowed from inside on_head). 204, 304 and 1xx never have a body anyway;
 * interim 1xx responses other than 101 are skipped (no on_head). */
void h1_parser_expect_no_body(struct h1_parser *p);
/* Returns bytes consumed (>= 0) or H1_E_*. Stops after one message: bytes
 * after its end are not consumed (and later feeds return 0). A callback
 * returning <0 makes it return H1_E_ABORTED. After an error every call
 * returns the same error. */
ssize_t h1_parser_feed(struct h1_parser *p, const uint8_t *data, size_t n);
/* From inside a callback: the running h1_parser_feed returns once the
 * callback does, with the bytes consumed so far (back-pressure: the caller
 * keeps the rest and feeds it later). */
void h1_parser_yield(struct h1_parser *p);
/* The connection closed: completes a read-until-close body (on_complete
 * runs from here, returns 0), returns 0 after a complete message, or
 * H1_E_IO if the message was cut short (or never started). */
int h1_parser_eof(struct h1_parser *p);
/* Whether the connection may carry another request after this message:
 * 0 until the head is parsed, after an error, for a read-until-close body
 * (101 included), "Connection: close", HTTP/1.0 without keep-alive, or both
 * Content-Length and Transfer-Encoding. */
int h1_parser_keepalive(const struct h1_parser *p);
/* The message is complete. */
int h1_parser_done(const struct h1_parser *p);
/* The head is parsed, the body lasts until the connection closes, and it
 * has not ended (the connection's bytes are the body: an upgraded or
 * hijacked stream). */
int h1_parser_reads_until_close(const struct h1_parser *p);
/* What was wrong after an error (a phrase for messages), "" before. */
const char *h1_parser_why(const struct h1_parser *p);

/* ---- the request head (request_parser.c) ----------------------------------
 * The streaming server's Upgrade requests: the request line and header
 * fields, bytes in, nothing read past the empty line that ends the head
 * (the bytes after it belong to the upgraded protocol). Up to 4 empty
 * lines before the request line are skipped; the method is a token of at
 * most 16 bytes, the target at most 8 KiB without spaces or control bytes,
 * the version HTTP/1.x; fields as the response parser reads them (names
 * lowercased, values trimmed, obs-fold joined) under head_max in all. */
struct h1_reqp;
/* head_max caps the whole head (0: 64 KiB). NULL when out of memory. */
struct h1_reqp *h1_reqp_new(size_t head_max);
void h1_reqp_free(struct h1_reqp *p);
/* Returns bytes consumed, or H1_E_PARSE / H1_E_TOO_LARGE / H1_E_NOMEM
 * (then every later call returns the same). Once the head is complete
 * (h1_reqp_done) it consumes nothing more. */
ssize_t h1_reqp_feed(struct h1_reqp *p, const uint8_t *d, size_t n);
int h1_reqp_done(const struct h1_reqp *p);
/* After done: the method ("GET"), the target ("/exec/TOKEN?x=y"), the
 * minor version, the fields (values NUL-terminated). */
const char *h1_reqp_method(const struct h1_reqp *p);
const char *h1_reqp_target(const struct h1_reqp *p);
int h1_reqp_minor(const struct h1_reqp *p);
const struct crisp_md *h1_reqp_fields(const struct h1_reqp *p);
/* The body the head announces: 1 for chunked, else 0 with its
 * Content-Length in *len (0 when none). */
int h1_reqp_body(const struct h1_reqp *p, uint64_t *len);
/* What was wrong after an error, "" before. */
const char *h1_reqp_why(const struct h1_reqp *p);

#endif
