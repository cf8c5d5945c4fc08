/* sx.h - the streaming server's insides (src/stream/), shared by its files:
 *
 *   server.c         the listener, the token cache, crisp_stream_register
 *   conn.c           one client connection: the request head, the upgrade
 *                    (SPDY/3.1, WebSocket, SPDY tunnelled in WebSocket),
 *                    channels over either, back-pressure, closing
 *   remotecommand.c  exec and attach: the channels of the kubelet's
 *                    remotecommand protocols v1..v5, the error channel's
 *                    status, resize
 *   portforward.c    port-forward: SPDY stream pairs, WebSocket port channels
 *   text.c           pure helpers (text.h): tokens, paths, negotiation,
 *                    base64, resize framing, statuses
 *   spdy.c           SPDY/3.1 framing (spdy.h); WebSocket framing is
 *                    libwslay's (conn.c drives it on buffers, no I/O)
 *
 * A connection carries channels named by handles: SPDY stream IDs, or
 * WebSocket channel numbers. remotecommand.c and portforward.c map their
 * roles (stdin, stdout, the data stream of port 8080...) onto handles and
 * call sx_send / sx_fin; conn.c calls them back with what arrives. */
#ifndef CRISP_STREAM_SX_H
#define CRISP_STREAM_SX_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "crisp/list.h"
#include "crisp/md.h"
#include "crisp/stream.h"

#define SX_OUT_HIGH (1u << 20)   /* queued for the client: sessions pause past this */
#define SX_OUT_LOW (256u * 1024) /* ... and go on under this */

enum sx_proto {
    SX_SPDY = 0,   /* Upgrade: SPDY/3.1 */
    SX_WS,         /* WebSocket, k8s channel framing */
    SX_WS_SPDY,    /* WebSocket carrying SPDY (SPDY/3.1+portforward.k8s.io) */
};

/* A redeemed token: what the CRI call asked for, and where it runs. */
struct sx_ticket {
    struct crisp_stream_req req;     /* strings owned here */
    struct crisp_stream_target *target;
};

struct sx_conn;

/* One session (an exec, an attach, a forwarded connection). */
struct crisp_stream_sess {
    struct crisp_list link;          /* in the connection's sessions */
    struct sx_conn *c;
    struct crisp_stream_target *target;
    void *ctx;                       /* the backend's, NULL until open */
    uint32_t out[3];                 /* handles for output chans 1, 2 */
    unsigned out_set;                /* bit chan: out[chan] is there */
    /* the owner (remotecommand.c / portforward.c) hears of the end */
    void (*on_exit)(struct crisp_stream_sess *s, int code, const char *err);
    void (*on_output_end)(struct crisp_stream_sess *s);
    void (*on_closed)(struct crisp_stream_sess *s); /* the backend was told: free */
    void *owner;
    unsigned opened : 1, exited : 1, closing : 1, out_blocked : 1, in_blocked : 1;
};

/* ---- conn.c, for the channel layers -------------------------------------------- */

/* Sends bytes on a handle (SPDY DATA, WebSocket message with its channel
 * byte). 0, or -1 when the connection is failing (it ends from the loop). */
int sx_send(struct sx_conn *c, uint32_t h, const uint8_t *p, size_t n);
/* Ends our side of a handle (SPDY FIN; WebSocket: nothing). */
int sx_fin(struct sx_conn *c, uint32_t h);
/* Resets a SPDY stream (WebSocket: nothing). */
void sx_reset(struct sx_conn *c, uint32_t h, uint32_t status);
/* Everything is said: flush, close (WebSocket close frame, SPDY GOAWAY),
 * linger for the client's own close, then free. */
void sx_finish(struct sx_conn *c);
/* Whether the client's queue is past SX_OUT_HIGH. */
int sx_out_full(const struct sx_conn *c);
/* A session's input answered 1: stop reading the client. */
void sx_pause_input(struct sx_conn *c);
/* Sessions of the connection. */
void sx_sess_init(struct sx_conn *c, struct crisp_stream_sess *s, struct crisp_stream_target *t);
/* Opens a session on its target (from the loop). 0, or -1 (out of memory). */
int sx_sess_open(struct crisp_stream_sess *s, const struct crisp_stream_req *req, int32_t port);
/* Ends a session from the server's side: the backend's close op runs (now:
 * never call this from inside a crisp_stream_* call). */
void sx_sess_close(struct crisp_stream_sess *s);
/* The client's channels are all there (the creation timer stops; the idle
 * timer runs from now). */
void sx_conn_created(struct sx_conn *c);
/* The connection's protocol version / WebSocket flavour, for the layers. */
enum sx_proto sx_conn_proto(const struct sx_conn *c);
const char *sx_conn_id(const struct sx_conn *c);
struct event_base *sx_conn_base(const struct sx_conn *c);
/* The ticket and the request's query (for WebSocket port-forward's ports). */
const struct sx_ticket *sx_conn_ticket(const struct sx_conn *c);
const char *sx_conn_query(const struct sx_conn *c);

/* ---- remotecommand.c / portforward.c: their state on a connection ---------------- */

struct sx_rc;
struct sx_pf;

/* version: 1..5; base64 for the WebSocket base64 flavours. */
struct sx_rc *sx_rc_new(struct sx_conn *c, int version, int base64);
void sx_rc_free(struct sx_rc *rc);
/* A SPDY stream with its headers (SYN_STREAM). */
int sx_rc_stream(struct sx_rc *rc, uint32_t id, const struct crisp_md *hdrs);
/* WebSocket: every channel is there at once. */
int sx_rc_ws_open(struct sx_rc *rc);
int sx_rc_data(struct sx_rc *rc, uint32_t h, const uint8_t *p, size_t n);
int sx_rc_fin(struct sx_rc *rc, uint32_t h);
/* The stream-creation timer fired. */
void sx_rc_timeout(struct sx_rc *rc);

struct sx_pf *sx_pf_new(struct sx_conn *c);
void sx_pf_free(struct sx_pf *pf);
int sx_pf_stream(struct sx_pf *pf, uint32_t id, const struct crisp_md *hdrs);
int sx_pf_ws_open(struct sx_pf *pf, int base64);
int sx_pf_data(struct sx_pf *pf, uint32_t h, const uint8_t *p, size_t n);
int sx_pf_fin(struct sx_pf *pf, uint32_t h);
void sx_pf_reset(struct sx_pf *pf, uint32_t h);
/* Whether any pair is still open (the WebSocket connection ends after the last). */
int sx_pf_live(const struct sx_pf *pf);

/* ---- server.c ----------------------------------------------------------------- */

unsigned sx_create_timeout_ms(void);
/* Takes the ticket of a token (single use), NULL when unknown or expired;
 * kind must match. The caller frees it with sx_ticket_free. */
struct sx_ticket *sx_redeem(const char *token, enum crisp_stream_kind kind);
void sx_ticket_free(struct sx_ticket *t);
unsigned sx_idle_timeout_ms(void);
int64_t sx_now_us(void);

/* ---- conn.c, for server.c ---------------------------------------------------------- */

/* A client connected (the listener's accept callback). */
void sx_conn_accept(struct event_base *base, int fd, SSL_CTX *ssl_ctx, const char *peer, void *ud);
/* Every connection ends now (sessions closed, backends told). */
void sx_conns_close_all(void);
/* Connections with a session or ticket of t end now. */
void sx_conns_forget(struct crisp_stream_target *t);
size_t sx_conns_count(void);

#endif
