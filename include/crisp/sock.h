/* sock.h - a non-blocking stream socket on the event loop, plain or TLS.
 *
 * The one transport of crisp: under both HTTP/2 sessions (front end and
 * relay backend) and the HTTP/1.1 client (http1/pool.c); it knows no
 * protocol above TLS. It exists to keep the syscalls per call low:
 *  - reads go straight into one 64 KiB buffer (shared: crisp is
 *    single-threaded) and are handed to the owner;
 *  - output is queued by the owner (crisp_sock_queue, e.g. every frame
 *    nghttp2 produced for one flush) and written with one send/SSL_write
 *    by crisp_sock_flush; write interest (EPOLLOUT) is armed only when the
 *    kernel did not take everything, and dropped once the queue is empty.
 *    Read interest stays on for the life of the socket unless the owner
 *    pauses reading (crisp_sock_pause_read, back-pressure).
 *
 * Server sockets (crisp_sock_new) take an accepted fd, and a server SSL for
 * TLS. Client sockets (crisp_sock_open) connect to a unix or TCP address
 * within a deadline and, with a client SSL_CTX, run the TLS handshake (SNI,
 * the server certificate checked against a name or IP when the context
 * verifies, the context's client certificate); on_connected comes once the
 * socket is ready for data. Either way the handshake runs on the same fd:
 * SSL_read/SSL_write WANT_READ/WANT_WRITE are mapped onto the two events,
 * and output queued before the handshake ends is written after it.
 *
 * Half-close: crisp_sock_shutdown_write ends the sending side once the
 * queue is written (shutdown SHUT_WR; TLS: close_notify) while reading goes
 * on.
 *
 * Callbacks run from the event loop only, never from inside a crisp_sock_*
 * call; an owner may free the socket from inside any callback (the memory
 * goes when the loop is done with it). Every buffer is capped: the output
 * queue by `out_max` given at creation.
 *
 * Error contract: functions returning a pointer return NULL on failure
 * (what failed is said where it differs); functions returning int return
 * 0 (or 1 where documented) on success and -1 on failure. Failures of the
 * connection itself are reported through on_close, from the loop. */
#ifndef CRISP_SOCK_H
#define CRISP_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct crisp_sock;

enum crisp_sock_end {
    CRISP_SOCK_EOF = 0,      /* the peer closed (or reset) the connection */
    CRISP_SOCK_ERROR,        /* a socket error, or connect failed (why says which) */
    CRISP_SOCK_TLS_ERROR,    /* a TLS failure (why holds OpenSSL's reasons) */
    CRISP_SOCK_TIMEOUT,      /* connect (and the TLS handshake) did not finish in time */
};

struct crisp_sock_cbs {
    /* Bytes arrived; p is valid during the call only. Return 0, or -1 when
     * the owner freed the socket from inside (no more callbacks then). A
     * pause from inside takes effect at once: no on_data until resumed. */
    int (*on_data)(void *ud, const uint8_t *p, size_t n);
    /* The kernel refused part of the queue earlier, and it has taken more
     * since, leaving at most a quarter of out_max (it runs at each such
     * step while the queue stays blocked, and once more when it empties):
     * the owner may queue more, and checks crisp_sock_pending against its
     * own low-water mark. Same return convention. Optional. */
    int (*on_drain)(void *ud);
    /* Outgoing connection established, TLS handshake included (client
     * sockets only). Same return convention. */
    int (*on_connected)(void *ud);
    /* The connection is over (EOF, error, TLS failure, connect timeout).
     * The owner frees the socket, from here or later; no callback follows.
     * For a client socket that never connected, why is a sentence naming
     * the server (see crisp_sock_open). */
    void (*on_close)(void *ud, enum crisp_sock_end how, const char *why);
    /* Optional, plain sockets only: a write failed (EPIPE, ECONNRESET) but
     * the peer may still have said something. The queue is dropped, queueing
     * and flushing fail from now on, reading goes on and on_close follows
     * when it ends. Without it (and always under TLS) a failed write ends
     * the connection: on_close. Same return convention as on_data. */
    int (*on_write_error)(void *ud, enum crisp_sock_end how, const char *why);
    /* Optional: the peer ended its sending side in order (FIN; TLS:
     * close_notify) while ours is open. Reading stops for good, writing
     * goes on (a forwarded connection's half-close, an exec's stdin EOF);
     * on_close follows only for a failure, or never: the owner frees the
     * socket when it is done writing. Without it (or once our own sending
     * side is shut or failed) the end of the read side is on_close. Same
     * return convention as on_data. */
    int (*on_read_eof)(void *ud);
};

/* Takes over an accepted, connected socket (made non-blocking here). With
 * ssl non-NULL (taken over too) the TLS server handshake starts. NULL on
 * out-of-memory; the fd and ssl are closed/freed then. */
struct crisp_sock *crisp_sock_new(struct event_base *base, int fd, SSL *ssl,
                                  size_t out_max, const struct crisp_sock_cbs *cbs, void *ud);

/* Where a client socket goes (crisp_sock_open). */
struct crisp_sock_dest {
    const struct sockaddr *sa;   /* AF_UNIX, AF_INET or AF_INET6 */
    socklen_t salen;
    const char *name;            /* the server in messages: "unix:///run/x.sock" */
    unsigned timeout_ms;         /* connect + TLS handshake; 0: no limit */
    SSL_CTX *tls;                /* client TLS context, or NULL for plain */
    const char *tls_name;        /* SNI and the name (or IP literal) the server
                                  * certificate must carry when tls verifies
                                  * peers; NULL or "": neither */
};

/* Starts a client connection: connect (a unix listener whose backlog is
 * full is tried again every 10 ms), then the TLS handshake when d->tls is
 * set. on_connected or on_close follows from the loop, also for a failure
 * found at once. Messages (on_close's why) name the server:
 *   "connect NAME: No such file or directory"
 *   "connect NAME: timed out after N ms" (+ " (listen backlog full)")
 *   "TLS handshake with NAME failed: certificate verify failed: ..."
 *   "TLS handshake with NAME: timed out after N ms"
 * NULL only when out of memory. */
struct crisp_sock *crisp_sock_open(struct event_base *base, const struct crisp_sock_dest *d,
                                   size_t out_max, const struct crisp_sock_cbs *cbs, void *ud);
/* As crisp_sock_open, on a socket the caller made (of d->sa's family, e.g.
 * in another network namespace); it is taken over (closed on failure). */
struct crisp_sock *crisp_sock_open_fd(struct event_base *base, int fd,
                                      const struct crisp_sock_dest *d, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud);
/* A plain client connection; unlike crisp_sock_open, a failure found at
 * once returns NULL and a reason in err ("connect: ..."), and a unix
 * listener with a full backlog fails at once. on_close's why on a connect
 * failure: "connect: <reason>", "connect: timed out". */
struct crisp_sock *crisp_sock_connect(struct event_base *base, const struct sockaddr *sa,
                                      socklen_t salen, unsigned timeout_ms, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud,
                                      char *err, size_t errlen);
/* Closes the fd (TLS: a close_notify first unless one was sent, best
 * effort) and frees. NULL is a no-op. */
void crisp_sock_free(struct crisp_sock *s);

/* Appends bytes to the output queue (copied). -1 past out_max, when out of
 * memory, or after the sending side was shut or failed; the queue is
 * unchanged then. */
int crisp_sock_queue(struct crisp_sock *s, const void *p, size_t n);
/* Appends n bytes to the output queue for the caller to fill at once (no
 * copy through an intermediate buffer). NULL when crisp_sock_queue would
 * fail; the queue is unchanged then. */
uint8_t *crisp_sock_queue_reserve(struct crisp_sock *s, size_t n);
/* Writes the queue now, as far as the kernel takes it; arms write interest
 * for the rest. Never calls back. Returns 1 when the queue is empty, 0 when
 * some is left (on_drain follows once it has gone down), -1 when the
 * connection has failed (on_close follows from the loop) or its sending
 * side did (on_write_error). */
int crisp_sock_flush(struct crisp_sock *s);
/* Bytes queued and not yet written. */
size_t crisp_sock_pending(const struct crisp_sock *s);

/* Half-close: once the queue is written, shutdown(SHUT_WR), or a TLS
 * close_notify; reading goes on. Queueing fails from then on. Never calls
 * back. 0, or -1 when the connection (or its sending side) has failed. A
 * second call is a no-op. */
int crisp_sock_shutdown_write(struct crisp_sock *s);

/* The most one read takes, 64 KiB unless set (at most CRISP_SOCK_READ_MAX):
 * a bulk relay (port-forward) moves more per system call and per event. */
#define CRISP_SOCK_READ_MAX (256 * 1024)
void crisp_sock_set_read_size(struct crisp_sock *s, size_t n);

/* Back-pressure: stop and restart reading. While paused no on_data runs
 * (on_close still may, for an end read along with the last data). Resume
 * delivers what TLS already decrypted from the loop, never from inside. */
void crisp_sock_pause_read(struct crisp_sock *s);
void crisp_sock_resume_read(struct crisp_sock *s);

/* The fd (e.g. to peek whether an idle connection is still open), -1 when
 * there is none. */
int crisp_sock_fd(const struct crisp_sock *s);
/* The errno behind the end on_close reported (ECONNRESET, ECONNREFUSED,
 * ...); 0 for an orderly close, a timeout, a TLS failure, or while open. */
int crisp_sock_errno(const struct crisp_sock *s);

#endif
