/* Unit tests for sock.c's half-close from the peer's side (on_read_eof),
 * client sockets on a socket made by the caller (crisp_sock_open_fd), and
 * on_drain as a writer's step signal: real sockets on a real event loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "crisp/sock.h"
#include "unit.h"

static struct event_base *base;

struct side {
    struct crisp_sock *s;
    char got[64];
    size_t ngot;
    int eofs, closes, connected, drains, inside;
    enum crisp_sock_end how;
};

static int on_data(void *ud, const uint8_t *p, size_t n)
{
    struct side *d = ud;
    if (d->ngot + n <= sizeof(d->got)) {
        memcpy(d->got + d->ngot, p, n);
        d->ngot += n;
    }
    return 0;
}

static int on_read_eof(void *ud)
{
    struct side *d = ud;
    d->eofs++;
    return 0;
}

static void on_close(void *ud, enum crisp_sock_end how, const char *why)
{
    (void)why;
    struct side *d = ud;
    d->closes++;
    d->how = how;
}

static int on_connected(void *ud)
{
    struct side *d = ud;
    d->connected++;
    return 0;
}

static int on_drain(void *ud)
{
    struct side *d = ud;
    d->drains++;
    return 0;
}

static const struct crisp_sock_cbs half_cbs = {
    .on_data = on_data, .on_read_eof = on_read_eof, .on_close = on_close,
    .on_connected = on_connected, .on_drain = on_drain};
static const struct crisp_sock_cbs plain_cbs = {
    .on_data = on_data, .on_close = on_close, .on_connected = on_connected};

static void run_until(int *flag, int want, int ms)
{
    for (int i = 0; i < ms && *flag < want; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* The peer sends, then half-closes: the data, then on_read_eof and no
 * on_close; we still write to it; its full close later breaks our writes. */
static void test_peer_half_close(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct side d = {0};
    d.s = crisp_sock_new(base, sv[0], NULL, 4096, &half_cbs, &d);
    CHECK(write(sv[1], "abc", 3) == 3);
    shutdown(sv[1], SHUT_WR);
    run_until(&d.eofs, 1, 1000);
    CHECK(d.ngot == 3 && !memcmp(d.got, "abc", 3));
    CHECK(d.eofs == 1 && d.closes == 0);
    CHECK(crisp_sock_queue(d.s, "xyz", 3) == 0);
    CHECK(crisp_sock_flush(d.s) == 1);
    char buf[8];
    CHECK(read(sv[1], buf, sizeof(buf)) == 3 && !memcmp(buf, "xyz", 3));
    /* our half-close too: the peer sees EOF */
    CHECK(crisp_sock_shutdown_write(d.s) == 0);
    CHECK(read(sv[1], buf, sizeof(buf)) == 0);
    CHECK(d.closes == 0);
    crisp_sock_free(d.s);
    close(sv[1]);

    /* the peer goes away for good after its half-close: a write fails */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct side e = {0};
    e.s = crisp_sock_new(base, sv[0], NULL, 4096, &half_cbs, &e);
    shutdown(sv[1], SHUT_WR);
    run_until(&e.eofs, 1, 1000);
    close(sv[1]);
    CHECK(crisp_sock_queue(e.s, "x", 1) == 0);
    crisp_sock_flush(e.s);
    run_until(&e.closes, 1, 1000);
    CHECK(e.closes == 1);
    crisp_sock_free(e.s);
}

/* Without on_read_eof the end of the read side is on_close, as before. */
static void test_eof_without_callback(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct side d = {0};
    d.s = crisp_sock_new(base, sv[0], NULL, 4096, &plain_cbs, &d);
    shutdown(sv[1], SHUT_WR);
    run_until(&d.closes, 1, 1000);
    CHECK(d.closes == 1 && d.how == CRISP_SOCK_EOF && d.eofs == 0);
    crisp_sock_free(d.s);
    close(sv[1]);

    /* and once our own side is shut, the peer's EOF ends the connection */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct side e = {0};
    e.s = crisp_sock_new(base, sv[0], NULL, 4096, &half_cbs, &e);
    CHECK(crisp_sock_shutdown_write(e.s) == 0);
    shutdown(sv[1], SHUT_WR);
    run_until(&e.closes, 1, 1000);
    CHECK(e.closes == 1 && e.eofs == 0);
    crisp_sock_free(e.s);
    close(sv[1]);
}

/* A socket made by the caller connects like crisp_sock_open's own. */
static void test_open_fd(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    socklen_t sl = sizeof(sin);
    getsockname(l, (struct sockaddr *)&sin, &sl);
    CHECK(listen(l, 4) == 0);
    struct crisp_sock_dest dst = {.sa = (struct sockaddr *)&sin, .salen = sizeof(sin),
                                  .name = "tcp://pod", .timeout_ms = 1000};
    struct side d = {0};
    d.s = crisp_sock_open_fd(base, socket(AF_INET, SOCK_STREAM, 0), &dst, 4096, &half_cbs, &d);
    CHECK(d.s != NULL);
    run_until(&d.connected, 1, 1000);
    CHECK(d.connected == 1);
    int a = accept(l, NULL, NULL);
    CHECK(crisp_sock_queue(d.s, "hi", 2) == 0 && crisp_sock_flush(d.s) == 1);
    char buf[4];
    CHECK(read(a, buf, sizeof(buf)) == 2);
    crisp_sock_free(d.s);
    close(a);

    /* refused: on_close names the server */
    close(l);
    struct side r = {0};
    r.s = crisp_sock_open_fd(base, socket(AF_INET, SOCK_STREAM, 0), &dst, 4096, &half_cbs, &r);
    run_until(&r.closes, 1, 1000);
    CHECK(r.closes == 1 && r.how == CRISP_SOCK_ERROR && crisp_sock_errno(r.s) == ECONNREFUSED);
    crisp_sock_free(r.s);
}

/* on_drain comes as a blocked queue goes down, so a writer with its own
 * small cap goes on long before a quarter of out_max is reached. */
static void test_drain_steps(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    struct side d = {0};
    d.s = crisp_sock_new(base, sv[0], NULL, 64u << 20, &half_cbs, &d);
    static uint8_t blob[256 * 1024];
    CHECK(crisp_sock_queue(d.s, blob, sizeof(blob)) == 0);
    CHECK(crisp_sock_flush(d.s) == 0);
    size_t total = 0;
    char buf[65536];
    for (int i = 0; i < 2000 && total < sizeof(blob); i++) {
        ssize_t n = read(sv[1], buf, sizeof(buf));
        if (n > 0)
            total += (size_t)n;
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(total == sizeof(blob));
    CHECK(d.drains >= 1 && crisp_sock_pending(d.s) == 0);
    crisp_sock_free(d.s);
    close(sv[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    test_peer_half_close();
    test_eof_without_callback();
    test_open_fd();
    test_drain_steps();
    event_base_free(base);
    return unit_summary("test_sock_halfclose");
}
