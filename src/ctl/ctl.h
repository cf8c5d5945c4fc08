/* ctl.h - crispctl's parts (src/ctl): a plain blocking CRI client and the
 * trace tools, sharing crisp's codecs (trace/pbjson.h, core/grpc.c, the
 * method table). No event loop: one call at a time, poll() for deadlines. */
#ifndef CRISP_CTL_H
#define CRISP_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>

#include "crisp/method.h"

/* ---- global options (main.c) ------------------------------------------------ */

struct ctl_opts {
    const char *endpoint;      /* unix:///path, /path, tcp://host:port (TLS) */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    int tls_insecure;          /* do not verify the server's certificate */
    double timeout_s;          /* per call (default 120) */
    size_t max_msg;            /* cap on one response message (default 16 MiB) */
    const char *output;        /* "table" (default), "json" */
    int no_trunc;
    int color;                 /* -1 auto, 0 never, 1 always */
    int verbose;
};

extern struct ctl_opts ctl;

/* ---- client.c: gRPC over HTTP/2 (nghttp2), blocking --------------------------- */

struct ctl_conn;

struct ctl_result {
    int code;              /* gRPC status (a local failure: UNAVAILABLE, DEADLINE_EXCEEDED...) */
    char *message;         /* malloc'd, or NULL */
    uint8_t *msg;          /* the last response message (when no on_msg), malloc'd */
    size_t msg_len;
    unsigned nmsgs;
    int64_t elapsed_us;
};

/* Each response message as it comes (streams); return < 0 to cancel. */
typedef int (*ctl_msg_fn)(void *ud, const uint8_t *msg, size_t len);

/* Connects (TLS with ALPN h2 on tcp://). NULL with a reason in err. */
struct ctl_conn *ctl_connect(const char *endpoint, char *err, size_t errlen);
void ctl_close(struct ctl_conn *c);
/* One call on path with the request message (no prefix). Returns 0 when
 * the call ran (its status in r->code), -1 when the connection broke
 * (r->code UNAVAILABLE, the reason in r->message). */
int ctl_call(struct ctl_conn *c, const char *path, const uint8_t *req, size_t len,
             double timeout_s, ctl_msg_fn on_msg, void *ud, struct ctl_result *r);
void ctl_result_free(struct ctl_result *r);

/* ---- rpc.c: calls by method, JSON in and out ----------------------------------- */

/* A method by "runtime.v1.RuntimeService/Version", "/runtime.v1...",
 * "RuntimeService/Version" or "Version"; NULL when unknown. */
const struct crisp_method *ctl_method(const char *name);
/* Packs m; malloc'd bytes and *len, NULL when out of memory. */
uint8_t *ctl_pack(const ProtobufCMessage *m, size_t *len);
/* The JSON text of a message (no limit, credentials redacted). */
char *ctl_to_json(const ProtobufCMessage *m);
/* Indented JSON of compact JSON text, to f. */
void ctl_print_pretty(FILE *f, const char *json);
/* Calls method with a request given as JSON; the answer decoded in *resp
 * (NULL when the call failed). 0, or -1 with a message printed; r is set
 * either way (r->code -1: the request was not sent). */
int ctl_call_json(struct ctl_conn *c, const struct crisp_method *m, const char *json,
                  ProtobufCMessage **resp, struct ctl_result *r);
/* A call with a built request; the answer decoded in *resp. */
int ctl_call_pb(struct ctl_conn *c, const struct crisp_method *m, const ProtobufCMessage *req,
                ProtobufCMessage **resp, struct ctl_result *r);

/* ---- commands ----------------------------------------------------------------------- */

int ctl_cmd_call(int argc, char **argv);
int ctl_cmd_version(int argc, char **argv);
int ctl_cmd_info(int argc, char **argv);
int ctl_cmd_pods(int argc, char **argv);
int ctl_cmd_ps(int argc, char **argv);
int ctl_cmd_images(int argc, char **argv);
int ctl_cmd_pull(int argc, char **argv);
int ctl_cmd_inspect(int argc, char **argv);
int ctl_cmd_logs(int argc, char **argv);
int ctl_cmd_stats(int argc, char **argv);
int ctl_cmd_show(int argc, char **argv);
int ctl_cmd_trace_stats(int argc, char **argv);
int ctl_cmd_replay(int argc, char **argv);

/* Prints "crispctl: ..." to stderr; returns 1 (an exit status). */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether to colour stdout. */
int ctl_use_color(void);

#endif
