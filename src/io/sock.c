/* sock.c - non-blocking stream sockets (plain or TLS) on the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "crisp/buf.h"
#include "crisp/sock.h"

#define SOCK_RBUF (64 * 1024)  /* one read */
#define SOCK_READ_ROUNDS 4     /* full reads in a row before the loop gets a turn */
#define SOCK_KEEP_BUF (128 * 1024) /* an emptied output buffer larger than this is freed */

/* One read buffer for every socket: crisp is single-threaded and a read is
 * handed to its owner before the next one starts. */
static uint8_t rbuf[SOCK_RBUF];

struct crisp_sock {
    struct event_base *base;
    int fd;
    SSL *ssl;
    struct event *rev, *wev;
    const struct crisp_sock_cbs *cbs;
    void *ud;
    struct crisp_buf out;    /* queued output; out.data[off..len) unsent */
    size_t off;
    size_t low;              /* on_drain when a blocked queue falls to this */
    unsigned in_cb;          /* nesting of our event handlers */
    enum crisp_sock_end fail_how;
    char fail_why[256];
    unsigned connecting : 1;
    unsigned handshaking : 1;
    unsigned wev_on : 1;
    unsigned rev_on : 1;
    unsigned blocked : 1;          /* the kernel refused part of the queue */
    unsigned read_wants_write : 1; /* SSL_read asked for writability */
    unsigned write_wants_read : 1; /* SSL_write asked for readability */
    unsigned failed : 1;           /* fail_* set, on_close pending */
    unsigned dead : 1;             /* on_close delivered: no more callbacks */
    unsigned closed : 1;           /* crisp_sock_free ran */
    unsigned tls_fatal : 1;        /* no close_notify after a fatal TLS error */
};

static void on_read_ev(evutil_socket_t fd, short what, void *arg);
static void on_write_ev(evutil_socket_t fd, short what, void *arg);

/* ---- helpers ---------------------------------------------------------- */

static void wev_set(struct crisp_sock *s, int on, const struct timeval *tv)
{
    if (on && (!s->wev_on || tv)) {
        event_add(s->wev, tv);
        s->wev_on = 1;
    } else if (!on && s->wev_on) {
        event_del(s->wev);
        s->wev_on = 0;
    }
}

static void rev_set(struct crisp_sock *s, int on)
{
    if (on && !s->rev_on) {
        event_add(s->rev, NULL);
        s->rev_on = 1;
    } else if (!on && s->rev_on) {
        event_del(s->rev);
        s->rev_on = 0;
    }
}

static void really_free(struct crisp_sock *s)
{
    event_free(s->rev);
    event_free(s->wev);
    crisp_buf_free(&s->out);
    free(s);
}

/* Leaves one of our event handlers. */
static void release(struct crisp_sock *s)
{
    if (--s->in_cb == 0 && s->closed)
        really_free(s);
}

/* Records a failure found where no callback may run; on_close is delivered
 * from the write event. */
static void fail_later(struct crisp_sock *s, enum crisp_sock_end how, const char *why)
{
    if (s->failed || s->dead)
        return;
    s->failed = 1;
    s->fail_how = how;
    snprintf(s->fail_why, sizeof(s->fail_why), "%s", why);
    event_active(s->wev, EV_WRITE, 0);
}

/* Delivers on_close (from an event handler). */
static void close_now(struct crisp_sock *s, enum crisp_sock_end how, const char *why)
{
    if (s->dead || s->closed)
        return;
    s->dead = 1;
    rev_set(s, 0);
    wev_set(s, 0, NULL);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", why); /* why may be fail_why */
    s->cbs->on_close(s->ud, how, buf);
}

static const char *tls_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Maps a failed SSL_* call. Returns 0 for WANT_READ/WANT_WRITE (*want is
 * 'r' or 'w'), 1 for a clean or abrupt EOF, -1 for an error (why filled). */
static int tls_error(struct crisp_sock *s, int r, int *want, enum crisp_sock_end *how,
                     char *why, size_t whylen)
{
    int e = SSL_get_error(s->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = 'r';
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = 'w';
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return 1;
    case SSL_ERROR_SYSCALL:
        s->tls_fatal = 1;
        if (errno == 0 && ERR_peek_error() == 0)
            return 1;
        if (ERR_peek_error()) {
            *how = CRISP_SOCK_TLS_ERROR;
            tls_reason(why, whylen);
        } else {
            *how = CRISP_SOCK_ERROR;
            snprintf(why, whylen, "%s", strerror(errno));
        }
        return -1;
    default:
        s->tls_fatal = 1;
        *how = CRISP_SOCK_TLS_ERROR;
        tls_reason(why, whylen);
        return -1;
    }
}

/* ---- writing ---------------------------------------------------------- */

/* Writes as much of the queue as the kernel takes. Returns 1 when the
 * queue is empty, 0 when some is left (write interest wanted unless
 * write_wants_read), -1 on failure (fail_* set). Never calls back. */
static int write_some(struct crisp_sock *s)
{
    while (s->off < s->out.len) {
        size_t n = s->out.len - s->off;
        if (s->ssl) {
            size_t w = 0;
            ERR_clear_error();
            int r = SSL_write_ex(s->ssl, s->out.data + s->off, n, &w);
            if (r <= 0) {
                int want = 0;
                enum crisp_sock_end how = CRISP_SOCK_ERROR;
                char why[256];
                int rv = tls_error(s, r, &want, &how, why, sizeof(why));
                if (rv == 0) {
                    s->blocked = 1;
                    if (want == 'r')
                        s->write_wants_read = 1;
                    return 0;
                }
                if (rv > 0) {
                    how = CRISP_SOCK_EOF;
                    snprintf(why, sizeof(why), "connection closed");
                }
                fail_later(s, how, why);
                return -1;
            }
            s->off += w;
        } else {
            ssize_t w = send(s->fd, s->out.data + s->off, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    s->blocked = 1;
                    return 0;
                }
                fail_later(s, errno == EPIPE || errno == ECONNRESET ? CRISP_SOCK_EOF
                                                                    : CRISP_SOCK_ERROR,
                           strerror(errno));
                return -1;
            }
            s->off += (size_t)w;
            if ((size_t)w < n) {
                /* The kernel is full: wait for room rather than ask again. */
                s->blocked = 1;
                return 0;
            }
        }
    }
    s->out.len = 0;
    s->off = 0;
    if (s->out.cap > SOCK_KEEP_BUF)
        crisp_buf_free(&s->out);
    return 1;
}

/* Write interest follows the queue (and TLS's wishes). */
static void update_wev(struct crisp_sock *s)
{
    int want = (s->off < s->out.len && !s->write_wants_read) || s->read_wants_write;
    wev_set(s, want, NULL);
}

/* ---- TLS handshake ---------------------------------------------------- */

/* Returns 1 when done, 0 while in progress, -1 after delivering on_close. */
static int handshake(struct crisp_sock *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->handshaking = 0;
        if (write_some(s) < 0) {
            close_now(s, s->fail_how, s->fail_why);
            return -1;
        }
        update_wev(s);
        return 1;
    }
    int want = 0;
    enum crisp_sock_end how = CRISP_SOCK_TLS_ERROR;
    char why[256];
    int rv = tls_error(s, r, &want, &how, why, sizeof(why));
    if (rv == 0) {
        wev_set(s, want == 'w', NULL);
        return 0;
    }
    if (rv > 0) {
        how = CRISP_SOCK_EOF;
        snprintf(why, sizeof(why), "connection closed during the TLS handshake");
    }
    close_now(s, how, why);
    return -1;
}

/* ---- reading ---------------------------------------------------------- */

/* Reads what is there and hands it over. Returns -1 when the socket is
 * closed or dead afterwards. */
static int do_read(struct crisp_sock *s)
{
    if (s->handshaking) {
        int r = handshake(s);
        if (r <= 0)
            return r;
    }
    if (s->read_wants_write)
        return 0;
    for (int round = 0; round < SOCK_READ_ROUNDS; round++) {
        size_t n = 0;
        int more = 0, end = 0;
        enum crisp_sock_end how = CRISP_SOCK_EOF;
        char why[256] = "connection closed";
        if (s->ssl) {
            while (n < SOCK_RBUF) {
                size_t got = 0;
                ERR_clear_error();
                int r = SSL_read_ex(s->ssl, rbuf + n, SOCK_RBUF - n, &got);
                if (r > 0) {
                    n += got;
                    continue;
                }
                int want = 0;
                int rv = tls_error(s, r, &want, &how, why, sizeof(why));
                if (rv == 0 && want == 'w') {
                    /* e.g. a key update to answer: wait for writability and
                     * stop listening for reads meanwhile (level-triggered). */
                    s->read_wants_write = 1;
                    rev_set(s, 0);
                    update_wev(s);
                } else if (rv != 0) {
                    end = 1;
                }
                break;
            }
            more = n == SOCK_RBUF;
        } else {
            ssize_t r = recv(s->fd, rbuf, SOCK_RBUF, 0);
            if (r > 0) {
                n = (size_t)r;
                more = n == SOCK_RBUF;
            } else if (r == 0) {
                end = 1;
            } else if (errno == EINTR) {
                more = 1;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                end = 1;
                how = errno == ECONNRESET ? CRISP_SOCK_EOF : CRISP_SOCK_ERROR;
                snprintf(why, sizeof(why), "%s", strerror(errno));
            }
        }
        if (n && (s->cbs->on_data(s->ud, rbuf, n) < 0 || s->closed || s->dead))
            return -1;
        if (s->failed)
            return 0; /* a write failed: on_close comes from the write event */
        if (end) {
            close_now(s, how, why);
            return -1;
        }
        if (!more)
            break;
    }
    if (s->write_wants_read && s->off < s->out.len) {
        s->write_wants_read = 0;
        if (write_some(s) < 0) {
            close_now(s, s->fail_how, s->fail_why);
            return -1;
        }
        update_wev(s);
    }
    return 0;
}

static void on_read_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct crisp_sock *s = arg;
    s->in_cb++;
    if (!s->dead && !s->closed)
        do_read(s);
    release(s);
}

/* ---- write event: connect, failures, blocked output -------------------- */

static void finish_connect(struct crisp_sock *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        char why[256];
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        close_now(s, CRISP_SOCK_ERROR, why);
        return;
    }
    s->connecting = 0;
    wev_set(s, 0, NULL); /* drops the connect timeout */
    rev_set(s, 1);
    if (s->cbs->on_connected(s->ud) < 0 || s->closed || s->dead)
        return;
    if (write_some(s) < 0) {
        close_now(s, s->fail_how, s->fail_why);
        return;
    }
    update_wev(s);
}

static void on_write_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct crisp_sock *s = arg;
    s->in_cb++;
    if (s->dead || s->closed)
        goto out;
    if (s->failed) {
        close_now(s, s->fail_how, s->fail_why);
        goto out;
    }
    if (s->connecting) {
        if (what & EV_TIMEOUT)
            close_now(s, CRISP_SOCK_TIMEOUT, "connect: timed out");
        else
            finish_connect(s);
        goto out;
    }
    if (s->handshaking) {
        if (handshake(s) > 0 && SSL_has_pending(s->ssl))
            do_read(s);
        goto out;
    }
    if (s->read_wants_write) {
        s->read_wants_write = 0;
        rev_set(s, 1);
        if (do_read(s) < 0)
            goto out;
    }
    int was_blocked = s->blocked;
    s->blocked = 0;
    if (write_some(s) < 0) {
        close_now(s, s->fail_how, s->fail_why);
        goto out;
    }
    update_wev(s);
    if (was_blocked && s->out.len - s->off > s->low)
        s->blocked = 1; /* not enough room yet */
    else if (was_blocked && s->cbs->on_drain)
        s->cbs->on_drain(s->ud);
out:
    release(s);
}

/* ---- public ----------------------------------------------------------- */

static struct crisp_sock *sock_alloc(struct event_base *base, int fd, size_t out_max,
                                     const struct crisp_sock_cbs *cbs, void *ud)
{
    struct crisp_sock *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->fd = fd;
    s->cbs = cbs;
    s->ud = ud;
    s->low = out_max / 4;
    crisp_buf_init(&s->out, out_max);
    s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read_ev, s);
    s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write_ev, s);
    if (!s->rev || !s->wev) {
        if (s->rev)
            event_free(s->rev);
        if (s->wev)
            event_free(s->wev);
        free(s);
        return NULL;
    }
    return s;
}

static void set_nodelay(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

struct crisp_sock *crisp_sock_new(struct event_base *base, int fd, SSL *ssl, size_t out_max,
                                  const struct crisp_sock_cbs *cbs, void *ud)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    set_nodelay(fd);
    struct crisp_sock *s = sock_alloc(base, fd, out_max, cbs, ud);
    if (!s) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return NULL;
    }
    if (ssl) {
        if (SSL_set_fd(ssl, fd) != 1) {
            SSL_free(ssl);
            close(fd);
            really_free(s);
            return NULL;
        }
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_set_accept_state(ssl);
        s->ssl = ssl;
        s->handshaking = 1;
    }
    rev_set(s, 1);
    return s;
}

struct crisp_sock *crisp_sock_connect(struct event_base *base, const struct sockaddr *sa,
                                      socklen_t salen, unsigned timeout_ms, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud, char *err,
                                      size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int r;
    do
        r = connect(fd, sa, salen);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EINPROGRESS) {
        snprintf(err, errlen, "connect: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    struct crisp_sock *s = sock_alloc(base, fd, out_max, cbs, ud);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    /* Completion (even an immediate one) is reported from the loop. */
    s->connecting = 1;
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    wev_set(s, 1, &tv);
    return s;
}

void crisp_sock_free(struct crisp_sock *s)
{
    if (!s || s->closed)
        return;
    s->closed = 1;
    rev_set(s, 0);
    wev_set(s, 0, NULL);
    event_del(s->wev); /* also an activation by fail_later */
    if (s->ssl) {
        if (!s->handshaking && !s->tls_fatal && !s->failed) {
            ERR_clear_error();
            SSL_shutdown(s->ssl); /* close_notify, best effort */
        }
        SSL_free(s->ssl);
        ERR_clear_error();
        s->ssl = NULL;
    }
    close(s->fd);
    s->fd = -1;
    if (!s->in_cb)
        really_free(s);
}

uint8_t *crisp_sock_queue_reserve(struct crisp_sock *s, size_t n)
{
    if (s->off && s->out.len + n > s->out.cap) {
        /* Make room by dropping what was written. */
        memmove(s->out.data, s->out.data + s->off, s->out.len - s->off);
        s->out.len -= s->off;
        s->off = 0;
    }
    if (crisp_buf_reserve(&s->out, n) < 0)
        return NULL;
    uint8_t *p = s->out.data + s->out.len;
    s->out.len += n;
    return p;
}

int crisp_sock_queue(struct crisp_sock *s, const void *p, size_t n)
{
    if (!n)
        return 0;
    uint8_t *dst = crisp_sock_queue_reserve(s, n);
    if (!dst)
        return -1;
    memcpy(dst, p, n);
    return 0;
}

int crisp_sock_flush(struct crisp_sock *s)
{
    if (s->failed || s->dead || s->closed)
        return -1;
    if (s->connecting || s->handshaking || s->off == s->out.len)
        return s->off == s->out.len ? 1 : 0;
    if (s->wev_on || s->write_wants_read || s->read_wants_write)
        return 0; /* the events will write it */
    int r = write_some(s);
    if (r == 0)
        update_wev(s);
    return r;
}

size_t crisp_sock_pending(const struct crisp_sock *s)
{
    return s->out.len - s->off;
}
