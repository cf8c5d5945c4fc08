/* sock.h - a non-blocking stream socket on the event loop, plain or TLS.
 *
 * The transport under both HTTP/2 sessions (front end and relay backend).
 * It exists to keep the syscalls per call low:
 *  - reads go straight into one 64 KiB buffer (shared: crisp is
 *    single-threaded) and are handed to the owner;
 *  - output is queued by the owner (crisp_sock_queue, e.g. every frame
 *    nghttp2 produced for one flush) and written with one send/SSL_write
 *    by crisp_sock_flush; write interest (EPOLLOUT) is armed only when the
 *    kernel did not take everything, and dropped once the queue is empty.
 *    Read interest stays on for the life of the socket.
 *
 * TLS (server side): the handshake runs on the same fd; SSL_read/SSL_write
 * WANT_READ/WANT_WRITE are mapped onto the two events. Output queued before
 * the handshake ends is written after it.
 *
 * Callbacks run from the event loop only, never from inside a crisp_sock_*
 * call; an owner may free the socket from inside any callback (the memory
 * goes when the loop is done with it). Every buffer is capped: the output
 * queue by `out_max` given at creation. */
#ifndef CRISP_SOCK_H
#define CRISP_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct crisp_sock;

enum crisp_sock_end {
    CRISP_SOCK_EOF = 0,      /* the peer closed the connection */
    CRISP_SOCK_ERROR,        /* a socket error (why says which) */
    CRISP_SOCK_TLS_ERROR,    /* a TLS failure (why holds OpenSSL's reason) */
    CRISP_SOCK_TIMEOUT,      /* connect did not finish in time */
};

struct crisp_sock_cbs {
    /* Bytes arrived; p is valid during the call only. Return 0, or -1 when
     * the owner freed the socket from inside (no more callbacks then). */
    int (*on_data)(void *ud, const uint8_t *p, size_t n);
    /* The kernel refused part of the queue earlier, and the queue has now
     * gone down to a quarter of out_max: the owner may queue more. Same
     * return convention. */
    int (*on_drain)(void *ud);
    /* Outgoing connection established (client sockets only). Same return
     * convention. */
    int (*on_connected)(void *ud);
    /* The connection is over (EOF, error, TLS failure, connect timeout).
     * The owner frees the socket, from here or later; no callback follows. */
    void (*on_close)(void *ud, enum crisp_sock_end how, const char *why);
};

/* Takes over an accepted, connected socket (made non-blocking here). With
 * ssl non-NULL (taken over too) the TLS server handshake starts. NULL on
 * out-of-memory; the fd and ssl are closed/freed then. */
struct crisp_sock *crisp_sock_new(struct event_base *base, int fd, SSL *ssl,
                                  size_t out_max, const struct crisp_sock_cbs *cbs, void *ud);
/* Starts a non-blocking connect; on_connected or on_close (with
 * CRISP_SOCK_TIMEOUT after timeout_ms) follows. NULL and a reason in err
 * when it fails at once. */
struct crisp_sock *crisp_sock_connect(struct event_base *base, const struct sockaddr *sa,
                                      socklen_t salen, unsigned timeout_ms, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud,
                                      char *err, size_t errlen);
/* Closes the fd (TLS: a close_notify first, best effort) and frees. */
void crisp_sock_free(struct crisp_sock *s);

/* Appends bytes to the output queue (copied). -1 past out_max or when
 * out of memory; the queue is unchanged then. */
int crisp_sock_queue(struct crisp_sock *s, const void *p, size_t n);
/* Appends n bytes to the output queue for the caller to fill at once (no
 * copy through an intermediate buffer). NULL past out_max or when out of
 * memory; the queue is unchanged then. */
uint8_t *crisp_sock_queue_reserve(struct crisp_sock *s, size_t n);
/* Writes the queue now, as far as the kernel takes it; arms write interest
 * for the rest. Never calls back. Returns 1 when the queue is empty, 0 when
 * some is left (on_drain follows once it has gone down), -1 when the
 * connection has failed (on_close follows from the loop). */
int crisp_sock_flush(struct crisp_sock *s);
/* Bytes queued and not yet written. */
size_t crisp_sock_pending(const struct crisp_sock *s);

#endif
