/* h2srv.h - the front end: HTTP/2 server sessions speaking gRPC.
 *
 * Knows nothing of engines: it turns each HTTP/2 stream into a crisp_call
 * (method, metadata, deadline, one request message), dispatches it, and
 * writes back what the call produces (headers, messages, trailers, or a
 * Trailers-Only error). One event loop; sockets are never read or written
 * from inside nghttp2 callbacks (writes are deferred to a flush event). */
#ifndef CRISP_H2SRV_H
#define CRISP_H2SRV_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct crisp_h2srv_config {
    size_t max_msg;       /* cap on one request/response message */
    uint32_t max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
    unsigned idle_timeout_s; /* a connection without calls for this long gets
                              * GOAWAY and is closed; 0: never */
    size_t max_conns;     /* at this many, a new client makes room by evicting
                           * the longest-idle connection (or is refused) */
};

extern struct crisp_h2srv_config crisp_h2srv_cfg;

/* Takes over an accepted socket; ssl_ctx non-NULL for TLS. A
 * crisp_accept_fn (listen.h); ud is unused. */
void crisp_h2srv_accept(struct event_base *base, evutil_socket_t fd,
                        SSL_CTX *ssl_ctx, const char *peer, void *ud);
/* Starts the idle sweep (once, after the options are known). */
int crisp_h2srv_start(struct event_base *base);
/* A listener could not accept (out of descriptors): closes the
 * longest-idle connection to make room. Returns 1 if one was closed. */
int crisp_h2srv_evict_idle(const char *why);
/* GOAWAY to every connection: no new calls, in-flight ones finish. */
void crisp_h2srv_shutdown_all(void);
/* Closes every connection now, cancelling its calls. */
void crisp_h2srv_close_all(void);
size_t crisp_h2srv_conn_count(void);

#endif
