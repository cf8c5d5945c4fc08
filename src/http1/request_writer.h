/* request_writer.h - an HTTP/1.1 request as bytes (the engine client's
 * h1_request). No I/O.
 *
 * Error contract: 0, or H1_E_INVALID (why says what is wrong) or
 * H1_E_NOMEM. */
#ifndef CRISP_HTTP1_REQUEST_WRITER_H
#define CRISP_HTTP1_REQUEST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "crisp/h1.h"

/* A field value may go on the wire: no CR, LF or NUL. */
int h1_value_ok(const uint8_t *v, size_t n);

/* The request line, Host, User-Agent (unless o->headers has one),
 * Content-Type, Content-Length (with a body, and for POST, PUT and PATCH),
 * the upgrade headers, o->headers but the client's own (Host,
 * Content-Length, Transfer-Encoding, Connection, Upgrade, and Content-Type
 * when o->content_type is set), the empty line and the body, into a new
 * buffer (*wire, malloc'd) of *len bytes. o->method NULL is GET. */
int h1_request_write(const struct h1_req_opts *o, const char *host, uint8_t **wire, size_t *len,
                     char *why, size_t whylen);

#endif
