/* listen.h - listeners: unix:///path, tcp://host:port (TLS), fd:// (systemd).
 *
 * unix: the parent folder is created, the socket is mode 0660, and a stale
 * socket file is replaced only if nothing answers on it. tcp: TLS through
 * OpenSSL with ALPN h2 (a client offering no h2 is refused) or, for the
 * streaming server, http/1.1 (a client offering something else goes on
 * without ALPN), optional client-certificate verification. fd://
 * takes the sockets systemd passed (LISTEN_FDS/LISTEN_PID), fd://N one. */
#ifndef CRISP_LISTEN_H
#define CRISP_LISTEN_H

#include <stddef.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct crisp_tls_opts {
    const char *cert;      /* PEM chain */
    const char *key;       /* PEM key */
    const char *client_ca; /* verify client certificates against this, or NULL */
    int alpn_http11;       /* ALPN offers http/1.1 (the streaming server), not h2 */
    int allow_plain;       /* tcp:// without cert and key is plain TCP (the streaming
                            * server on localhost, as the kubelet's) */
};

/* A connection was accepted: the callee owns fd (and makes its SSL from
 * ssl_ctx, NULL for plain sockets); peer names the listener for logs. */
typedef void (*crisp_accept_fn)(struct event_base *base, evutil_socket_t fd, SSL_CTX *ssl_ctx,
                                const char *peer, void *ud);

/* Who serves a listener's connections: the gRPC server, or later the
 * streaming server. */
struct crisp_listen_cbs {
    crisp_accept_fn on_accept;
    /* Optional: accept failed for want of descriptors; return 1 after
     * closing something (the accept is tried again at once), 0 if nothing
     * could go (the waiting client is then accepted and closed at once, on
     * a descriptor kept in reserve, rather than left hanging). */
    int (*on_full)(void *ud);
    void *ud;
};

/* Returns 0, or -1 with a reason in err. */
int crisp_listen_open(struct event_base *base, const char *url, const struct crisp_tls_opts *tls,
                      const struct crisp_listen_cbs *cbs, char *err, size_t errlen);
/* As crisp_listen_open; a tcp:// listener writes where it listens into
 * bound ("127.0.0.1:40123", the port chosen when the URL said 0). */
int crisp_listen_open_bound(struct event_base *base, const char *url,
                            const struct crisp_tls_opts *tls, const struct crisp_listen_cbs *cbs,
                            char *bound, size_t boundlen, char *err, size_t errlen);
/* Stops accepting and removes unix socket files. */
void crisp_listen_close_all(void);

#endif
