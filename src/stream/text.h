/* text.h - the streaming server's pure helpers (no I/O, no state): tokens,
 * request paths, protocol negotiation, base64, the resize channel's JSON
 * framing, the error channel's metav1.Status, the WebSocket accept key.
 *
 * Error contract: functions returning int return 0 (or a count) on
 * success and -1 on failure. */
#ifndef CRISP_STREAM_TEXT_H
#define CRISP_STREAM_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crisp/md.h"
#include "crisp/stream.h"

#define SX_TOKEN_LEN 32     /* base64url of 24 random bytes */
#define SX_TOKEN_MAX 64     /* the longest token a path may carry */
#define SX_RESIZE_MAX 4096  /* one resize message */

/* A fresh random token (getrandom); -1 when the kernel has none to give. */
int sx_token_new(char out[SX_TOKEN_LEN + 1]);

/* "/exec/TOKEN", "/attach/TOKEN", "/portforward/TOKEN", each optionally
 * followed by "?query": the kind, the token, the query ("" when none).
 * -1 for any other path or a token of other characters than
 * [A-Za-z0-9_-] or longer than SX_TOKEN_MAX. */
int sx_route(const char *target, enum crisp_stream_kind *kind, char token[SX_TOKEN_MAX + 1],
             const char **query);

/* Negotiation: the client's offers are the values of field (each line,
 * and each comma-separated element of it, trimmed) in order; the first the
 * server supports wins. 1 with *chosen set, 0 when the client offered
 * nothing, -1 when none matched. */
int sx_negotiate(const struct crisp_md *hdrs, const char *field, const char *const *server,
                 size_t nserver, const char **chosen);
/* The client's offers joined by spaces, for the refusal message. */
void sx_offers(const struct crisp_md *hdrs, const char *field, char *out, size_t outlen);

/* The value of a header, NULL when absent. */
const char *sx_hdr(const struct crisp_md *hdrs, const char *name);
/* Whether a comma-separated header contains token (case-insensitive). */
int sx_hdr_has(const struct crisp_md *hdrs, const char *name, const char *token);

/* base64 (standard alphabet, padded). encode: out needs 4 * ceil(n/3) + 1
 * bytes; returns the length. decode: out needs n * 3 / 4 bytes; returns the
 * length, -1 on a malformed input. */
size_t sx_b64_encode(char *out, const uint8_t *p, size_t n);
ssize_t sx_b64_decode(uint8_t *out, const char *p, size_t n);

/* The WebSocket accept key of RFC 6455 4.2.2 for a client's key. */
int sx_ws_accept(const char *key, char out[29]);

/* The resize channel: a stream of JSON objects ({"Width":80,"Height":24}),
 * split as they complete, each under SX_RESIZE_MAX. */
struct sx_json_split {
    char buf[SX_RESIZE_MAX];
    size_t len;
    int depth, in_str, esc;
};
/* Calls fn for each complete object; -1 for bytes outside an object that
 * are not white space, an object past the cap, or fn returning <0. */
int sx_json_split_feed(struct sx_json_split *sp, const uint8_t *p, size_t n,
                       int (*fn)(void *ud, const char *obj, size_t len), void *ud);
/* Width and Height of a resize object (uint16 each); -1 when not one. */
int sx_parse_resize(const char *obj, size_t len, unsigned *w, unsigned *h);

/* The error channel's metav1.Status as the kubelet writes it (v4, v5):
 * success; a non-zero exit code (NonZeroExitCode, the code as the
 * ExitCode cause; cmd names the command); or a failure (InternalError,
 * code 500, the sentence). Returns malloc'd JSON, NULL when out of memory. */
char *sx_status_json(int code, const char *err, char *const *cmd, size_t ncmd);
/* The same for v1..v3: plain text, "" for success (malloc'd). */
char *sx_status_text(int code, const char *err, char *const *cmd, size_t ncmd);

/* "8080,9090" (possibly several query values "ports=1&ports=2") from a
 * query string: up to max ports into out; the count, -1 when a value is
 * not a port in 1..65535 (or too many). */
int sx_query_ports(const char *query, int32_t *out, size_t max);

#endif
