/* head.h - what HTTP/1.1 requests and responses share (RFC 9112): the
 * head (a start line, then field lines up to an empty line) read line by
 * line under one cap; field lines checked, names lowercased, values
 * trimmed, obs-fold joined; the framing fields (Content-Length,
 * Transfer-Encoding, Connection) noted as they are stored; the character
 * classes of RFC 9110. No I/O.
 *
 * The response parser (response_parser.c) reads its status line and
 * headers with it; a request parser (the streaming server's Upgrade
 * requests) reads a request line and headers the same way.
 *
 * Error contract: functions returning int or ssize_t return 0 (or a count)
 * on success, or a negative H1_E_* with a phrase in h->why. */
#ifndef CRISP_HTTP1_HEAD_H
#define CRISP_HTTP1_HEAD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "crisp/buf.h"
#include "crisp/h1_parser.h"
#include "crisp/md.h"

#define H1_HEAD_MAX (64 * 1024)

struct h1_head {
    size_t max;              /* cap on the bytes of one head (or of the trailers) */
    size_t bytes;            /* bytes of this head so far */
    struct crisp_buf line;   /* the line being read */
    struct crisp_md fields;  /* the fields stored, names lowercased */
    struct crisp_buf pend;   /* the field being read: name, then value */
    size_t pend_namelen;
    uint64_t content_length;
    unsigned chunked_count;  /* "chunked" codings seen */
    unsigned have_pend : 1;
    unsigned have_cl : 1;
    unsigned have_te : 1;
    unsigned te_chunked : 1; /* chunked is the last coding */
    unsigned conn_close : 1;
    unsigned conn_ka : 1;
    char why[160];           /* what was wrong, after an error */
};

/* ---- character classes (RFC 9110 5.6.2, 5.5) ---- */

static inline int h1_is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values and reason phrases: visible bytes, SP, HTAB, obs-text. */
static inline int h1_is_vchar_ok(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline int h1_is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Case-insensitive comparison of a token with a C string. */
int h1_token_eq(const uint8_t *a, size_t n, const char *b);

/* snprintf whose truncation is intended (messages are capped). */
void h1_sfmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Takes input up to and including the next LF into line, at most limit
 * bytes in the line. Returns the bytes taken; *done when the line is whole
 * (its LF and a CR before it removed); -1 when it would pass limit, -2
 * when out of memory. */
ssize_t h1_line_take(struct crisp_buf *line, const uint8_t *d, size_t n, size_t limit, int *done);

/* ---- the head ---- */

void h1_head_init(struct h1_head *h, size_t max);
void h1_head_free(struct h1_head *h);
/* Forgets the fields and framing, and the bytes counted: another head
 * follows (after an interim response). */
void h1_head_restart(struct h1_head *h);
/* Records an error: fills h->why, returns err. */
int h1_head_fail(struct h1_head *h, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reads the next line of the head into h->line (see h1_line_take), counted
 * against h->max. what names the head in the message ("response headers
 * exceed 65536 bytes"). Returns the bytes taken (*done when the line is
 * whole), or H1_E_TOO_LARGE / H1_E_NOMEM. */
ssize_t h1_head_take_line(struct h1_head *h, const uint8_t *d, size_t n, const char *what,
                          int *done);
/* A field line (not the empty one): checked and stored, the previous field
 * completed first. Trailer lines are checked the same way and dropped.
 * 0, H1_E_PARSE or H1_E_NOMEM. */
int h1_head_field_line(struct h1_head *h, const uint8_t *s, size_t n, int trailer);
/* The empty line: the last field is stored. 0, H1_E_PARSE or H1_E_NOMEM. */
int h1_head_end(struct h1_head *h);

#endif
