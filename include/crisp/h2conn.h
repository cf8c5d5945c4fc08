/* h2conn.h - one nghttp2 session on one crisp_sock: the glue both HTTP/2
 * sides use (the gRPC server's connections, the relay's connections to a
 * runtime).
 *
 * What it does, once for both sides:
 *  - bytes read go straight into nghttp2_session_mem_recv;
 *  - output is produced by a flush: every frame nghttp2 has ready is handed
 *    to the socket's queue (up to a high-water mark, out_high) and written
 *    with one send; a flush runs from a deferred event
 *    (crisp_h2conn_schedule_flush), never from inside nghttp2 callbacks, and
 *    again when the kernel has taken most of the queue;
 *  - the header-block stream cache (one stream lookup per header block,
 *    not per header field).
 * What it does not do: HTTP or gRPC semantics. The owner creates the
 * session with its own callbacks (their user_data is the owner's ud) and
 * decides what a failure means through crisp_h2conn_cbs.
 *
 * Lifetime: embedded in the owner's connection struct, initialised with
 * crisp_h2conn_init and released with crisp_h2conn_deinit. Callbacks run
 * from the event loop only; the owner may deinit and free from inside any
 * of them, and then returns -1 where the callback returns int. */
#ifndef CRISP_H2CONN_H
#define CRISP_H2CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "crisp/sock.h"

/* A header field whose name is a lowercase string literal: nghttp2 keeps a
 * pointer to the name instead of copying and lowercasing it. The value is
 * copied. */
#define CRISP_NV_LIT(n, v, vl)                                                 \
    (nghttp2_nv)                                                               \
    {                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NO_COPY_NAME \
    }

struct crisp_h2conn_cbs {
    /* nghttp2 refused the peer's bytes (rv: its error code). Return 0 to go
     * on (the owner may have submitted GOAWAY), -1 after freeing. */
    int (*on_bad_input)(void *ud, int rv);
    /* The connection cannot go on (how, why: the socket's reason, or
     * CRISP_SOCK_ERROR with nghttp2's or crisp's reason: output over its
     * cap, the session ended with nothing left to send). The owner frees,
     * from here or later; no callback follows. */
    void (*on_end)(void *ud, enum crisp_sock_end how, const char *why);
    /* Client connections: the socket is connected; the owner creates the
     * session (crisp_h2conn_session_new). Return 0, or -1 after freeing. */
    int (*on_connected)(void *ud);
    /* Optional: a flush left nothing unsent. Return 0, or -1 after freeing
     * (a draining connection with no streams closes itself here). */
    int (*on_flushed)(void *ud);
};

struct crisp_h2conn {
    struct crisp_sock *sock;
    nghttp2_session *sess;
    struct event *flush_ev;
    struct event *lazy_ev;    /* crisp_h2conn_lazy_input: the deferred flush */
    unsigned lazy_us;
    size_t out_high;          /* frames queued per write: the cap on unsent output */
    const struct crisp_h2conn_cbs *cbs;
    void *ud;
    int32_t hdr_sid;          /* the stream whose header block is being read */
    void *hdr_stream;         /* ... and its user data */
    unsigned data_waits : 1;  /* a DATA frame waited for output space */
    unsigned ended : 1;       /* on_end ran */
};

/* Returns 0, or -1 when out of memory. */
int crisp_h2conn_init(struct crisp_h2conn *c, struct event_base *base, size_t out_high,
                      const struct crisp_h2conn_cbs *cbs, void *ud);
/* Frees the session, the flush event and the socket. */
void crisp_h2conn_deinit(struct crisp_h2conn *c);

/* The transport: an accepted socket (ssl: a TLS server session, or NULL)
 * or an outgoing connection (on_connected or on_end follows). Return 0, or
 * -1 (and a reason in err for connect); an accepted fd is closed on
 * failure. */
int crisp_h2conn_accept(struct crisp_h2conn *c, struct event_base *base, int fd, SSL *ssl);
int crisp_h2conn_connect(struct crisp_h2conn *c, struct event_base *base,
                         const struct sockaddr *sa, socklen_t salen, unsigned timeout_ms,
                         char *err, size_t errlen);

/* Creates the nghttp2 session (server or client) with the owner's
 * callbacks and options; their user_data is the owner's ud. Returns 0 or
 * nghttp2's error code. */
int crisp_h2conn_session_new(struct crisp_h2conn *c, int server,
                             const nghttp2_session_callbacks *cbs, const nghttp2_option *opt);

/* Writes now: see the top of this file. Returns 0, or -1 when on_end ran
 * and the owner freed the connection. */
int crisp_h2conn_flush(struct crisp_h2conn *c);
/* A flush from the loop, after the current callbacks. */
void crisp_h2conn_schedule_flush(struct crisp_h2conn *c);
/* What reading produces by itself (PING and SETTINGS acknowledgements)
 * may wait up to us microseconds to go out with the next write instead of a
 * write of its own (the relay: containerd pings on every call, and the ack
 * rides with the next request). Anything the owner schedules still goes at
 * once. Returns 0, or -1 when out of memory. */
int crisp_h2conn_lazy_input(struct crisp_h2conn *c, struct event_base *base, unsigned us);
/* A flush that may wait like the input's (a small window update), or at
 * once on a connection without lazy input. */
void crisp_h2conn_schedule_lazy(struct crisp_h2conn *c);

/* For a send_data callback: whether a DATA frame may be queued now. When
 * not, the flush resumes once the socket has taken most of its queue (the
 * callback returns NGHTTP2_ERR_WOULDBLOCK). */
int crisp_h2conn_data_room(struct crisp_h2conn *c);

/* The header-block stream cache: the user data of stream sid, looked up
 * once per header block; set_header_stream primes it (a stream just made
 * in on_begin_headers), forget clears it when that stream closes. */
void *crisp_h2conn_header_stream(struct crisp_h2conn *c, int32_t sid);
void crisp_h2conn_set_header_stream(struct crisp_h2conn *c, int32_t sid, void *stream);
void crisp_h2conn_forget_stream(struct crisp_h2conn *c, int32_t sid);

#endif
