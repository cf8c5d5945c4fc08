/* sock.c - non-blocking stream sockets (plain or TLS) on the event loop.
 *
 * Up to three events per socket: rev (EV_READ: on unless reading is paused,
 * the connect is in progress or TLS waits for writability), wev (EV_WRITE:
 * armed while output waits, a connect is in progress or TLS wants it; also
 * activated by hand to deliver, from the loop, a failure found where no
 * callback may run) and, for client sockets, tev (the deadline of the
 * connect and TLS handshake, and the retries of a unix connect refused
 * with EAGAIN). */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "crisp/buf.h"
#include "crisp/sock.h"

#define SOCK_RBUF (64 * 1024)  /* one read, unless crisp_sock_set_read_size */
#define SOCK_READ_ROUNDS 4     /* full reads in a row before the loop gets a turn */
#define SOCK_KEEP_BUF (128 * 1024) /* an emptied output buffer larger than this is freed
                                    * (a socket reading more at once: twice its read) */
#define SOCK_UNIX_RETRY_MS 10  /* a unix listener's backlog was full: try again after */
#define SOCK_WHY 256

/* One read buffer for every socket: crisp is single-threaded and a read is
 * handed to its owner before the next one starts. */
static uint8_t rbuf[CRISP_SOCK_READ_MAX];

/* How a connection (or its sending side) ended. */
struct sock_end {
    enum crisp_sock_end how;
    int err;                 /* errno, 0 for none */
    char why[SOCK_WHY];
};

struct crisp_sock {
    struct event_base *base;
    int fd;
    SSL *ssl;
    struct event *rev, *wev;
    struct event *tev;       /* client sockets only */
    const struct crisp_sock_cbs *cbs;
    void *ud;
    struct crisp_buf out;    /* queued output; out.data[off..len) unsent */
    size_t off;
    size_t low;              /* on_drain when a blocked queue falls to this */
    size_t rsize;            /* one read: SOCK_RBUF or crisp_sock_set_read_size */
    unsigned in_cb;          /* nesting of our event handlers */
    char *name;              /* client: the server, for messages */
    struct sockaddr_storage sa; /* client: where to */
    socklen_t salen;
    unsigned timeout_ms;     /* client: connect + handshake, 0: none */
    struct timespec deadline;
    struct sock_end fail;    /* failed: what on_close will say */
    struct sock_end wr_fail; /* wr_notify: what on_write_error will say */
    int end_errno;           /* crisp_sock_errno */
    unsigned client : 1;
    unsigned connecting : 1;
    unsigned retrying : 1;         /* unix backlog full: tev tries again */
    unsigned handshaking : 1;
    unsigned wev_on : 1;
    unsigned rev_on : 1;
    unsigned blocked : 1;          /* the kernel refused part of the queue */
    unsigned read_wants_write : 1; /* SSL_read asked for writability */
    unsigned write_wants_read : 1; /* SSL_write asked for readability */
    unsigned read_paused : 1;      /* crisp_sock_pause_read */
    unsigned read_eof : 1;         /* the peer half-closed (on_read_eof): no more reads */
    unsigned shut_wanted : 1;      /* crisp_sock_shutdown_write */
    unsigned shut_done : 1;
    unsigned wr_dead : 1;          /* the sending side failed (on_write_error) */
    unsigned wr_notify : 1;        /* ... and the owner has not been told yet */
    unsigned failed : 1;           /* fail set, on_close pending */
    unsigned dead : 1;             /* on_close delivered: no more callbacks */
    unsigned closed : 1;           /* crisp_sock_free ran */
    unsigned tls_fatal : 1;        /* no close_notify after a fatal TLS error */
};

static void on_read_ev(evutil_socket_t fd, short what, void *arg);
static void on_write_ev(evutil_socket_t fd, short what, void *arg);
static void on_timer_ev(evutil_socket_t fd, short what, void *arg);
static int do_read(struct crisp_sock *s);

/* ---- helpers ---------------------------------------------------------- */

/* snprintf whose truncation is intended (messages are capped). */
static void sfmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void end_set(struct sock_end *e, enum crisp_sock_end how, int err, const char *why)
{
    e->how = how;
    e->err = err;
    snprintf(e->why, sizeof(e->why), "%s", why);
}

/* The server in messages of a client socket. */
static const char *peer_name(const struct crisp_sock *s)
{
    return s->name ? s->name : "server";
}

static void wev_set(struct crisp_sock *s, int on)
{
    if (on && !s->wev_on) {
        event_add(s->wev, NULL);
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

/* Read interest follows the state: off while connecting, while TLS waits
 * for writability, and while paused (a handshake still reads). */
static void update_rev(struct crisp_sock *s)
{
    int on = !s->dead && !s->closed && !s->connecting && !s->read_wants_write && !s->read_eof &&
             (!s->read_paused || s->handshaking);
    rev_set(s, on);
}

/* Write interest follows the queue (and TLS's wishes, and a close_notify
 * that did not fit). */
static void update_wev(struct crisp_sock *s)
{
    int queued = s->off < s->out.len;
    int want = (queued && !s->write_wants_read) || s->read_wants_write ||
               (!queued && s->shut_wanted && !s->shut_done);
    wev_set(s, want);
}

/* Decrypted bytes waiting inside TLS make no fd readable: read them from
 * the loop. */
static void read_pending_later(struct crisp_sock *s)
{
    if (s->ssl && s->rev_on && !s->read_eof && !s->handshaking && SSL_pending(s->ssl) > 0)
        event_active(s->rev, EV_READ, 0);
}

static void really_free(struct crisp_sock *s)
{
    event_free(s->rev);
    event_free(s->wev);
    if (s->tev)
        event_free(s->tev);
    crisp_buf_free(&s->out);
    free(s->name);
    free(s);
}

/* Leaves one of our event handlers. */
static void release(struct crisp_sock *s)
{
    assert(s->in_cb > 0);
    if (--s->in_cb == 0 && s->closed)
        really_free(s);
}

/* Records a failure found where no callback may run; on_close is delivered
 * from the write event. */
static void fail_later(struct crisp_sock *s, const struct sock_end *e)
{
    if (s->failed || s->dead)
        return;
    s->failed = 1;
    s->fail = *e;
    event_active(s->wev, EV_WRITE, 0);
}

/* Delivers on_close (from an event handler). */
static void close_now(struct crisp_sock *s, const struct sock_end *e)
{
    if (s->dead || s->closed)
        return;
    s->dead = 1;
    s->end_errno = e->err;
    rev_set(s, 0);
    wev_set(s, 0);
    if (s->tev)
        evtimer_del(s->tev);
    struct sock_end copy = *e; /* e may be s->fail */
    s->cbs->on_close(s->ud, copy.how, copy.why);
}

static void close_with(struct crisp_sock *s, enum crisp_sock_end how, int err, const char *why)
{
    struct sock_end e;
    end_set(&e, how, err, why);
    close_now(s, &e);
}

/* ---- TLS errors ------------------------------------------------------- */

static void append(char *buf, size_t len, size_t *off, const char *sep, const char *s)
{
    if (*off >= len)
        return;
    int w = snprintf(buf + *off, len - *off, "%s%s", *off ? sep : "", s);
    if (w > 0)
        *off += (size_t)w;
}

/* OpenSSL's reasons, "; "-separated, then the certificate check's verdict
 * when it failed ("certificate verify failed: unable to get local issuer
 * certificate"). Empties OpenSSL's error queue. */
static void tls_reasons(const struct crisp_sock *s, char *buf, size_t len)
{
    size_t off = 0;
    unsigned long e;
    buf[0] = 0;
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) == 0)
            continue;
        const char *reason = ERR_reason_error_string(e);
        char tmp[SOCK_WHY];
        if (!reason) {
            ERR_error_string_n(e, tmp, sizeof(tmp));
            reason = tmp;
        }
        append(buf, len, &off, "; ", reason);
    }
    long vr = SSL_get_verify_result(s->ssl);
    if (vr != X509_V_OK)
        append(buf, len, &off, ": ", X509_verify_cert_error_string(vr));
    if (off == 0)
        snprintf(buf, len, "unknown TLS error");
}

/* Maps a failed SSL_* call (errno as it was right after it). Returns 0 for
 * WANT_READ/WANT_WRITE (*want is 'r' or 'w'), 1 for a clean or abrupt EOF,
 * -1 for an error; e says which. */
static int tls_error(struct crisp_sock *s, int r, int saved_errno, int *want, struct sock_end *e)
{
    int code = SSL_get_error(s->ssl, r);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
        *want = code == SSL_ERROR_WANT_READ ? 'r' : 'w';
        return 0;
    }
    if (code == SSL_ERROR_ZERO_RETURN) {
        end_set(e, CRISP_SOCK_EOF, 0, "connection closed");
        return 1;
    }
    s->tls_fatal = 1;
    if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (saved_errno == 0) {
            end_set(e, CRISP_SOCK_EOF, 0, "connection closed");
            return 1;
        }
        end_set(e, CRISP_SOCK_ERROR, saved_errno, strerror(saved_errno));
        return -1;
    }
    e->how = CRISP_SOCK_TLS_ERROR;
    e->err = 0;
    tls_reasons(s, e->why, sizeof(e->why));
    return -1;
}

/* ---- writing ---------------------------------------------------------- */

/* A write failed: the connection ends (on_close), or only its sending side
 * when the owner can hear of it (on_write_error, plain sockets). */
static void write_failed(struct crisp_sock *s, const struct sock_end *e)
{
    if (!s->cbs->on_write_error || s->ssl) {
        fail_later(s, e);
        return;
    }
    s->wr_dead = 1;
    s->wr_notify = 1;
    s->wr_fail = *e;
    s->out.len = s->off = 0;
    event_active(s->wev, EV_WRITE, 0);
}

/* One send. Returns 1 when it took everything offered, 0 when the kernel
 * is full, -1 on failure. */
static int write_plain(struct crisp_sock *s)
{
    size_t n = s->out.len - s->off;
    ssize_t w = send(s->fd, s->out.data + s->off, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
        return 1;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        s->blocked = 1;
        return 0;
    }
    if (w < 0) {
        int e = errno;
        struct sock_end end;
        end_set(&end, e == EPIPE || e == ECONNRESET ? CRISP_SOCK_EOF : CRISP_SOCK_ERROR, e,
                strerror(e));
        write_failed(s, &end);
        return -1;
    }
    s->off += (size_t)w;
    if ((size_t)w < n) {
        /* The kernel is full: wait for room rather than ask again. */
        s->blocked = 1;
        return 0;
    }
    return 1;
}

/* One SSL_write; same returns as write_plain. */
static int write_tls(struct crisp_sock *s)
{
    size_t w = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(s->ssl, s->out.data + s->off, s->out.len - s->off, &w);
    if (r > 0) {
        s->off += w;
        return 1;
    }
    int want = 0;
    struct sock_end e;
    int rv = tls_error(s, r, errno, &want, &e);
    if (rv == 0) {
        s->blocked = 1;
        if (want == 'r')
            s->write_wants_read = 1;
        return 0;
    }
    write_failed(s, &e);
    return -1;
}

/* The half-close itself. Returns 1 when done, 0 when TLS must wait for
 * writability. Failures are not reported: the next read or write finds
 * them. */
static int shut_now(struct crisp_sock *s)
{
    assert(s->off == s->out.len);
    if (!s->ssl) {
        shutdown(s->fd, SHUT_WR);
        s->shut_done = 1;
        return 1;
    }
    ERR_clear_error();
    int r = s->tls_fatal ? 1 : SSL_shutdown(s->ssl);
    if (r < 0 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    s->shut_done = 1;
    return 1;
}

static void queue_emptied(struct crisp_sock *s)
{
    s->out.len = 0;
    s->off = 0;
    if (s->out.cap > SOCK_KEEP_BUF && s->out.cap > 2 * s->rsize)
        crisp_buf_free(&s->out);
}

/* Writes as much of the queue as the kernel takes, then a pending
 * half-close. Returns 1 when all is out, 0 when some is left (write
 * interest wanted unless write_wants_read), -1 on failure (fail or wr_fail
 * set). Never calls back. */
static int write_some(struct crisp_sock *s)
{
    assert(s->off <= s->out.len);
    while (s->off < s->out.len) {
        int r = s->ssl ? write_tls(s) : write_plain(s);
        if (r <= 0)
            return r;
    }
    queue_emptied(s);
    if (s->shut_wanted && !s->shut_done)
        return shut_now(s);
    return 1;
}

/* Writes from an event handler; a failure found is delivered now. Returns
 * -1 when on_close ran. */
static int write_from_loop(struct crisp_sock *s)
{
    if (write_some(s) < 0 && s->failed) {
        close_now(s, &s->fail);
        return -1;
    }
    update_wev(s);
    return 0;
}

/* ---- connecting ------------------------------------------------------- */

static long ms_left(const struct crisp_sock *s)
{
    if (!s->timeout_ms)
        return 24L * 3600 * 1000;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (s->deadline.tv_sec - now.tv_sec) * 1000 +
              (s->deadline.tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

static void tev_arm(struct crisp_sock *s, long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->tev, &tv);
}

/* Arms tev for the deadline (nothing when there is none). */
static void deadline_arm(struct crisp_sock *s)
{
    if (s->timeout_ms)
        tev_arm(s, ms_left(s));
}

/* connect() once; returns 0 when done or in progress, else the errno. */
static int connect_once(struct crisp_sock *s)
{
    if (connect(s->fd, (struct sockaddr *)&s->sa, s->salen) == 0)
        return 0;
    return errno == EINPROGRESS || errno == EINTR ? 0 : errno;
}

static void connect_msg(const struct crisp_sock *s, char *buf, size_t len, const char *what)
{
    if (s->name)
        sfmt(buf, len, "connect %s: %s", s->name, what);
    else
        snprintf(buf, len, "connect: %s", what);
}

static void connect_failed(struct crisp_sock *s, int err)
{
    char why[SOCK_WHY];
    connect_msg(s, why, sizeof(why), strerror(err));
    close_with(s, CRISP_SOCK_ERROR, err, why);
}

static void timed_out(struct crisp_sock *s, const char *extra)
{
    char why[SOCK_WHY], what[64];
    snprintf(what, sizeof(what), "timed out after %u ms%s", s->timeout_ms, extra);
    if (s->handshaking)
        sfmt(why, sizeof(why), "TLS handshake with %s: %s", peer_name(s), what);
    else if (s->name)
        connect_msg(s, why, sizeof(why), what);
    else
        snprintf(why, sizeof(why), "connect: timed out");
    close_with(s, CRISP_SOCK_TIMEOUT, 0, why);
}

/* The connect went on (or started): wait for writability. */
static void connect_wait(struct crisp_sock *s)
{
    s->retrying = 0;
    wev_set(s, 1);
    deadline_arm(s);
}

/* EAGAIN: a unix listener's backlog is full, and a unix connect cannot
 * wait for room: try again soon. */
static void connect_retry_later(struct crisp_sock *s)
{
    long left = ms_left(s);
    s->retrying = 1;
    tev_arm(s, left < SOCK_UNIX_RETRY_MS ? left : SOCK_UNIX_RETRY_MS);
}

static void connect_retry(struct crisp_sock *s)
{
    if (ms_left(s) == 0) {
        timed_out(s, " (listen backlog full)");
        return;
    }
    int e = connect_once(s);
    if (e == EAGAIN)
        connect_retry_later(s);
    else if (e)
        connect_failed(s, e);
    else
        connect_wait(s);
}

static int handshake(struct crisp_sock *s);

/* The connect finished (writability): TLS next, or ready. */
static void finish_connect(struct crisp_sock *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS)
        return;
    if (err) {
        connect_failed(s, err);
        return;
    }
    s->connecting = 0;
    wev_set(s, 0);
    if (s->ssl) {
        s->handshaking = 1;
        update_rev(s);
        handshake(s);
        return;
    }
    if (s->tev)
        evtimer_del(s->tev);
    update_rev(s);
    if (s->cbs->on_connected(s->ud) < 0 || s->closed || s->dead)
        return;
    write_from_loop(s);
}

static void on_timer_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct crisp_sock *s = arg;
    s->in_cb++;
    if (!s->dead && !s->closed && s->retrying)
        connect_retry(s);
    else if (!s->dead && !s->closed && (s->connecting || s->handshaking))
        timed_out(s, "");
    release(s);
}

/* ---- TLS handshake ---------------------------------------------------- */

/* Handshake done: a client is connected now; queued output goes. Returns 1,
 * or -1 when the socket was closed or freed meanwhile. */
static int handshake_done(struct crisp_sock *s)
{
    s->handshaking = 0;
    update_rev(s);
    if (s->client) {
        evtimer_del(s->tev);
        if (s->cbs->on_connected(s->ud) < 0 || s->closed || s->dead)
            return -1;
    }
    return write_from_loop(s) < 0 ? -1 : 1;
}

static void handshake_failed(struct crisp_sock *s, int eof, struct sock_end *e)
{
    char why[SOCK_WHY];
    if (!s->client) {
        if (eof)
            end_set(e, CRISP_SOCK_EOF, 0, "connection closed during the TLS handshake");
        close_now(s, e);
        return;
    }
    sfmt(why, sizeof(why), "TLS handshake with %s failed: %s", peer_name(s),
         eof ? "the server closed the connection" : e->why);
    snprintf(e->why, sizeof(e->why), "%s", why);
    close_now(s, e);
}

/* Returns 1 when done, 0 while in progress, -1 after delivering on_close
 * (or when on_connected freed the socket). */
static int handshake(struct crisp_sock *s)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s->ssl);
    if (r == 1)
        return handshake_done(s);
    int want = 0;
    struct sock_end e;
    int rv = tls_error(s, r, errno, &want, &e);
    if (rv == 0) {
        wev_set(s, want == 'w');
        return 0;
    }
    handshake_failed(s, rv > 0, &e);
    return -1;
}

/* ---- reading ---------------------------------------------------------- */

struct sock_read {
    size_t n;                /* bytes in rbuf */
    int more;                /* a full read: there may be more */
    int end;                 /* the connection ended (e says how) */
    struct sock_end e;
};

static void read_plain(struct crisp_sock *s, struct sock_read *rd)
{
    ssize_t r = recv(s->fd, rbuf, s->rsize, 0);
    if (r > 0) {
        rd->n = (size_t)r;
        rd->more = rd->n == s->rsize;
    } else if (r == 0) {
        rd->end = 1;
    } else if (errno == EINTR) {
        rd->more = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        rd->end = 1;
        end_set(&rd->e, errno == ECONNRESET ? CRISP_SOCK_EOF : CRISP_SOCK_ERROR, errno,
                strerror(errno));
    }
}

static void read_tls(struct crisp_sock *s, struct sock_read *rd)
{
    while (rd->n < s->rsize) {
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(s->ssl, rbuf + rd->n, s->rsize - rd->n, &got);
        if (r > 0) {
            rd->n += got;
            continue;
        }
        int want = 0;
        int rv = tls_error(s, r, errno, &want, &rd->e);
        if (rv == 0 && want == 'w') {
            /* e.g. a key update to answer: wait for writability and stop
             * listening for reads meanwhile (level-triggered). */
            s->read_wants_write = 1;
            update_rev(s);
            update_wev(s);
        } else if (rv != 0) {
            rd->end = 1;
        }
        break;
    }
    rd->more = rd->n == s->rsize;
}

/* The read side ended. An orderly end (FIN, close_notify) is only a
 * half-close when the owner wants to hear of it (on_read_eof) and its own
 * sending side is still open: reading stops, writing goes on. Anything
 * else ends the connection. Returns -1 when the socket is closed or dead
 * afterwards. */
static int read_ended(struct crisp_sock *s, const struct sock_end *e)
{
    if (!s->cbs->on_read_eof || e->how != CRISP_SOCK_EOF || e->err || s->shut_done ||
        s->wr_dead) {
        close_now(s, e);
        return -1;
    }
    s->read_eof = 1;
    update_rev(s);
    if (s->cbs->on_read_eof(s->ud) < 0 || s->closed || s->dead)
        return -1;
    return 0;
}

/* Reads and hands over, a few full reads at most. Returns -1 when the
 * socket is closed or dead afterwards. */
static int read_rounds(struct crisp_sock *s)
{
    for (int round = 0; round < SOCK_READ_ROUNDS; round++) {
        if (s->read_wants_write || s->read_paused || s->read_eof)
            return 0;
        struct sock_read rd = {.e = {CRISP_SOCK_EOF, 0, "connection closed"}};
        if (s->ssl)
            read_tls(s, &rd);
        else
            read_plain(s, &rd);
        if (rd.n && (s->cbs->on_data(s->ud, rbuf, rd.n) < 0 || s->closed || s->dead))
            return -1;
        if (s->failed)
            return 0; /* a write failed: on_close comes from the write event */
        if (rd.end)
            return read_ended(s, &rd.e);
        if (!rd.more)
            return 0;
    }
    return 0;
}

/* Reads what is there and hands it over. Returns -1 when the socket is
 * closed or dead afterwards. */
static int do_read(struct crisp_sock *s)
{
    if (s->handshaking) {
        int r = handshake(s);
        if (r <= 0)
            return r;
    }
    if (read_rounds(s) < 0)
        return -1;
    read_pending_later(s);
    if (s->write_wants_read && s->off < s->out.len) {
        s->write_wants_read = 0;
        return write_from_loop(s);
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

static int notify_write_error(struct crisp_sock *s)
{
    s->wr_notify = 0;
    struct sock_end e = s->wr_fail;
    if (s->cbs->on_write_error(s->ud, e.how, e.why) < 0 || s->closed || s->dead)
        return -1;
    return 0;
}

/* Writes what waited; tells the owner when a blocked queue has drained. */
static void write_ready(struct crisp_sock *s)
{
    int was_blocked = s->blocked;
    s->blocked = 0;
    if (write_from_loop(s) < 0 || !was_blocked)
        return;
    if (s->out.len - s->off > s->low)
        s->blocked = 1; /* not enough room yet */
    else if (s->cbs->on_drain)
        s->cbs->on_drain(s->ud);
}

static void write_event(struct crisp_sock *s)
{
    if (s->failed) {
        close_now(s, &s->fail);
        return;
    }
    if (s->wr_notify && notify_write_error(s) < 0)
        return;
    if (s->connecting) {
        if (!s->retrying && s->wev_on)
            finish_connect(s);
        return;
    }
    if (s->handshaking) {
        if (handshake(s) > 0 && SSL_has_pending(s->ssl))
            do_read(s);
        return;
    }
    if (s->read_wants_write) {
        s->read_wants_write = 0;
        update_rev(s);
        if (do_read(s) < 0)
            return;
    }
    write_ready(s);
}

static void on_write_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct crisp_sock *s = arg;
    s->in_cb++;
    if (!s->dead && !s->closed)
        write_event(s);
    release(s);
}

/* ---- creation --------------------------------------------------------- */

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
    s->rsize = SOCK_RBUF;
    crisp_buf_init(&s->out, out_max);
    s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read_ev, s);
    s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write_ev, s);
    if (!s->rev || !s->wev)
        goto fail_events;
    return s;
fail_events:
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    free(s);
    return NULL;
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
    if (!s)
        goto fail_fd;
    if (ssl) {
        if (SSL_set_fd(ssl, fd) != 1)
            goto fail_sock;
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_set_accept_state(ssl);
        s->ssl = ssl;
        s->handshaking = 1;
    }
    update_rev(s);
    return s;
fail_sock:
    really_free(s);
fail_fd:
    if (ssl)
        SSL_free(ssl);
    close(fd);
    return NULL;
}

/* A client socket: its timer, where it goes, its deadline. fd may be -1
 * (socket() failed: the failure is reported from the loop). */
static struct crisp_sock *client_alloc(struct event_base *base, int fd,
                                       const struct crisp_sock_dest *d, size_t out_max,
                                       const struct crisp_sock_cbs *cbs, void *ud)
{
    assert(d->salen <= sizeof(struct sockaddr_storage));
    struct crisp_sock *s = sock_alloc(base, fd, out_max, cbs, ud);
    if (!s)
        return NULL;
    s->tev = evtimer_new(base, on_timer_ev, s);
    s->name = d->name ? strdup(d->name) : NULL;
    if (!s->tev || (d->name && !s->name)) {
        really_free(s);
        return NULL;
    }
    s->client = 1;
    s->connecting = 1;
    memcpy(&s->sa, d->sa, d->salen);
    s->salen = d->salen;
    s->timeout_ms = d->timeout_ms;
    clock_gettime(CLOCK_MONOTONIC, &s->deadline);
    s->deadline.tv_sec += d->timeout_ms / 1000;
    s->deadline.tv_nsec += (long)(d->timeout_ms % 1000) * 1000000;
    if (s->deadline.tv_nsec >= 1000000000) {
        s->deadline.tv_sec++;
        s->deadline.tv_nsec -= 1000000000;
    }
    return s;
}

static int client_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (family == AF_INET || family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* The certificate must name `name`: an IP literal is checked as an IP
 * address, anything else as a DNS name, also sent as SNI. */
static void tls_set_peer_name(SSL *ssl, const char *name)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        return;
    }
    SSL_set_tlsext_host_name(ssl, name);
    SSL_set1_host(ssl, name);
}

static int tls_client_setup(struct crisp_sock *s, SSL_CTX *ctx, const char *name)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_connect_state(ssl);
    if (name && *name)
        tls_set_peer_name(ssl, name);
    s->ssl = ssl;
    return 0;
}

/* A failure of crisp_sock_open found at once, for on_close from the loop. */
static void open_failed(struct crisp_sock *s, int err, const char *what)
{
    struct sock_end e;
    e.how = CRISP_SOCK_ERROR;
    e.err = err;
    connect_msg(s, e.why, sizeof(e.why), what);
    fail_later(s, &e);
}

/* crisp_sock_open's work on fd (-1 with serr: socket() failed). */
static struct crisp_sock *open_on(struct event_base *base, int fd, int serr,
                                  const struct crisp_sock_dest *d, size_t out_max,
                                  const struct crisp_sock_cbs *cbs, void *ud)
{
    assert(d->name && cbs->on_connected && cbs->on_close);
    struct crisp_sock *s = client_alloc(base, fd, d, out_max, cbs, ud);
    if (!s) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (serr) {
        open_failed(s, serr, strerror(serr));
        return s;
    }
    if (d->tls && tls_client_setup(s, d->tls, d->tls_name) < 0) {
        open_failed(s, 0, "cannot create a TLS session");
        return s;
    }
    int e = connect_once(s);
    if (e == EAGAIN && d->sa->sa_family == AF_UNIX)
        connect_retry_later(s);
    else if (e)
        open_failed(s, e, strerror(e));
    else
        connect_wait(s); /* completion, even an immediate one, from the loop */
    return s;
}

struct crisp_sock *crisp_sock_open(struct event_base *base, const struct crisp_sock_dest *d,
                                   size_t out_max, const struct crisp_sock_cbs *cbs, void *ud)
{
    int fd = client_socket(d->sa->sa_family);
    return open_on(base, fd, fd < 0 ? errno : 0, d, out_max, cbs, ud);
}

struct crisp_sock *crisp_sock_open_fd(struct event_base *base, int fd,
                                      const struct crisp_sock_dest *d, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud)
{
    assert(fd >= 0);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (d->sa->sa_family == AF_INET || d->sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return open_on(base, fd, 0, d, out_max, cbs, ud);
}

struct crisp_sock *crisp_sock_connect(struct event_base *base, const struct sockaddr *sa,
                                      socklen_t salen, unsigned timeout_ms, size_t out_max,
                                      const struct crisp_sock_cbs *cbs, void *ud, char *err,
                                      size_t errlen)
{
    int fd = client_socket(sa->sa_family);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    struct crisp_sock_dest d = {.sa = sa, .salen = salen, .timeout_ms = timeout_ms};
    struct crisp_sock *s = client_alloc(base, fd, &d, out_max, cbs, ud);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    int e = connect_once(s);
    if (e) {
        snprintf(err, errlen, "connect: %s", strerror(e));
        crisp_sock_free(s);
        return NULL;
    }
    connect_wait(s); /* completion, even an immediate one, from the loop */
    return s;
}

/* ---- the rest of the public API --------------------------------------- */

static void tls_free(struct crisp_sock *s)
{
    if (!s->ssl)
        return;
    if (!s->connecting && !s->handshaking && !s->tls_fatal && !s->failed &&
        !(SSL_get_shutdown(s->ssl) & SSL_SENT_SHUTDOWN)) {
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* close_notify, best effort */
    }
    SSL_free(s->ssl);
    ERR_clear_error();
    s->ssl = NULL;
}

void crisp_sock_free(struct crisp_sock *s)
{
    if (!s || s->closed)
        return;
    s->closed = 1;
    rev_set(s, 0);
    wev_set(s, 0);
    event_del(s->wev); /* also an activation by fail_later */
    event_del(s->rev); /* ... or by read_pending_later */
    if (s->tev)
        event_del(s->tev);
    tls_free(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (!s->in_cb)
        really_free(s);
}

uint8_t *crisp_sock_queue_reserve(struct crisp_sock *s, size_t n)
{
    if (s->shut_wanted || s->wr_dead)
        return NULL;
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
    if (s->failed || s->dead || s->closed || s->wr_dead)
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

int crisp_sock_shutdown_write(struct crisp_sock *s)
{
    if (s->failed || s->dead || s->closed || s->wr_dead)
        return -1;
    if (s->shut_wanted)
        return 0;
    s->shut_wanted = 1;
    if (s->connecting || s->handshaking || s->off < s->out.len || s->wev_on)
        return 0; /* the write path does it once the queue is out */
    if (shut_now(s) == 0)
        update_wev(s);
    return 0;
}

void crisp_sock_set_read_size(struct crisp_sock *s, size_t n)
{
    s->rsize = n < 4096 ? 4096 : n > CRISP_SOCK_READ_MAX ? CRISP_SOCK_READ_MAX : n;
}

void crisp_sock_pause_read(struct crisp_sock *s)
{
    s->read_paused = 1;
    update_rev(s);
}

void crisp_sock_resume_read(struct crisp_sock *s)
{
    if (!s->read_paused)
        return;
    s->read_paused = 0;
    update_rev(s);
    read_pending_later(s);
}

int crisp_sock_fd(const struct crisp_sock *s)
{
    return s->fd;
}

int crisp_sock_errno(const struct crisp_sock *s)
{
    return s->dead ? s->end_errno : 0;
}
