/* jbuf.h - a growing output buffer for JSON text, with a hard cap.
 *
 * No I/O. Every append either fits under the cap or marks the buffer
 * failed (JBUF_E_CAP, or JBUF_E_NOMEM when malloc fails): later appends
 * are no-ops, so a writer checks once at the end. The text is always
 * NUL-terminated when p is not NULL. */
#ifndef CRISP_TRACE_JBUF_H
#define CRISP_TRACE_JBUF_H

#include <stddef.h>
#include <stdint.h>

enum {
    JBUF_E_CAP = -1,   /* the text would pass the buffer's cap */
    JBUF_E_NOMEM = -2,
};

struct jbuf {
    char *p;
    size_t len;
    size_t alloc;
    size_t max;        /* hard cap on len */
    int err;           /* 0, or the first JBUF_E_* */
};

void jbuf_init(struct jbuf *b, size_t max);
void jbuf_free(struct jbuf *b);
/* Empties the buffer (keeps its memory and cap, clears err). */
void jbuf_reset(struct jbuf *b);
/* Hands the text over (malloc'd, NUL-terminated; NULL when failed or
 * empty-and-unallocated) and resets the buffer. */
char *jbuf_take(struct jbuf *b, size_t *len);

int jbuf_put(struct jbuf *b, const void *s, size_t n);
int jbuf_puts(struct jbuf *b, const char *s);
int jbuf_putc(struct jbuf *b, char c);
int jbuf_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Integers in decimal (no printf: the trace's records are mostly these). */
int jbuf_u64(struct jbuf *b, uint64_t v);
int jbuf_i64(struct jbuf *b, int64_t v);
/* A JSON string literal of n bytes: quotes, escapes, and each byte that
 * is not part of valid UTF-8 as U+FFFD. */
int jbuf_str(struct jbuf *b, const char *s, size_t n);
int jbuf_strz(struct jbuf *b, const char *s);
/* n bytes as a quoted base64 string (RFC 4648, padded). */
int jbuf_base64(struct jbuf *b, const uint8_t *s, size_t n);
/* Cuts the text back to len (a writer undoing a partial member). */
void jbuf_truncate(struct jbuf *b, size_t len);

/* Decodes base64 (standard or URL-safe alphabet, padding optional,
 * no whitespace) into out (room for n / 4 * 3 + 3 bytes). Returns the
 * length, or -1 for bad input. */
long base64_decode(const char *s, size_t n, uint8_t *out);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

#endif
