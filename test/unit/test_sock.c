/* Unit tests for sock.c: the transport under both HTTP/2 sessions, driven
 * through socketpairs and a unix listener on a real event loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "crisp/sock.h"
#include "unit.h"

static struct event_base *base;

struct peer {
    struct crisp_sock *s;
    size_t got;             /* bytes received */
    uint8_t expect_byte;    /* next byte of the running pattern */
    int bad_order;
    int closes;
    enum crisp_sock_end how;
    char why[256];
    int drains;
    int connected;
    int free_in_data;       /* free the socket from inside on_data */
    size_t to_send, sent;   /* pattern bytes to queue, queued so far */
    size_t out_max;
};

static void feed(struct peer *p)
{
    /* Queue pattern bytes while under half the cap, then flush. */
    while (p->sent < p->to_send && crisp_sock_pending(p->s) < p->out_max / 2) {
        uint8_t chunk[4096];
        size_t n = p->to_send - p->sent < sizeof(chunk) ? p->to_send - p->sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (uint8_t)(p->sent + i);
        if (crisp_sock_queue(p->s, chunk, n) < 0)
            break;
        p->sent += n;
        if (crisp_sock_flush(p->s) == 0)
            break; /* blocked: on_drain resumes */
    }
}

static int on_data(void *ud, const uint8_t *d, size_t n)
{
    struct peer *p = ud;
    for (size_t i = 0; i < n; i++)
        if (d[i] != (uint8_t)(p->got + i))
            p->bad_order = 1;
    p->got += n;
    if (p->free_in_data) {
        crisp_sock_free(p->s);
        p->s = NULL;
        return -1;
    }
    return 0;
}

static int on_drain(void *ud)
{
    struct peer *p = ud;
    p->drains++;
    feed(p);
    return 0;
}

static int on_connected(void *ud)
{
    struct peer *p = ud;
    p->connected = 1;
    return 0;
}

static void on_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct peer *p = ud;
    p->closes++;
    p->how = how;
    snprintf(p->why, sizeof(p->why), "%s", why);
    crisp_sock_free(p->s);
    p->s = NULL;
}

static const struct crisp_sock_cbs cbs = {on_data, on_drain, on_connected, on_close};

static void run_until(int *flag, int want, int ms)
{
    for (int i = 0; i < ms && *flag < want; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* 4 MiB through a socketpair whose reader only starts later: the writer
 * blocks, keeps at most out_max queued, resumes on on_drain, and every byte
 * arrives once and in order. */
static void test_blocked_writer(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct peer w = {.to_send = 4 << 20, .out_max = 128 * 1024};
    struct peer r = {.out_max = 128 * 1024};
    w.s = crisp_sock_new(base, sv[0], NULL, w.out_max, &cbs, &w);
    CHECK(w.s != NULL);
    feed(&w);
    /* nothing reads yet: the kernel fills up and the writer must block */
    for (int i = 0; i < 20; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(w.sent < w.to_send);
    CHECK(crisp_sock_pending(w.s) <= w.out_max);
    r.s = crisp_sock_new(base, sv[1], NULL, r.out_max, &cbs, &r);
    for (int i = 0; i < 5000 && r.got < w.to_send; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(r.got == w.to_send);
    CHECK(!r.bad_order);
    CHECK(w.drains > 0);
    CHECK(crisp_sock_pending(w.s) == 0);
    /* the writer closes: the reader sees EOF after the data */
    crisp_sock_free(w.s);
    run_until(&r.closes, 1, 1000);
    CHECK(r.closes == 1);
    CHECK(r.how == CRISP_SOCK_EOF);
}

/* Data and EOF in one go: the data is delivered before on_close. */
static void test_data_then_eof(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct peer r = {.out_max = 4096};
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    CHECK(write(sv[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    close(sv[0]);
    r.s = crisp_sock_new(base, sv[1], NULL, r.out_max, &cbs, &r);
    run_until(&r.closes, 1, 1000);
    CHECK(r.got == sizeof(buf));
    CHECK(!r.bad_order);
    CHECK(r.closes == 1 && r.how == CRISP_SOCK_EOF);
}

/* Freeing the socket from inside on_data stops everything (ASan/valgrind
 * see no use after free). */
static void test_free_inside_callback(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct peer r = {.out_max = 4096, .free_in_data = 1};
    CHECK(write(sv[0], "abc", 3) == 3);
    r.s = crisp_sock_new(base, sv[1], NULL, r.out_max, &cbs, &r);
    for (int i = 0; i < 50 && r.got == 0; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(r.got == 3);
    CHECK(r.s == NULL);
    CHECK(r.closes == 0);
    /* our end is closed: the peer sees EOF */
    char c;
    CHECK(read(sv[0], &c, 1) == 0);
    close(sv[0]);
}

/* Output queue cap and writes to a peer that went away. */
static void test_cap_and_broken_pipe(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct peer w = {.out_max = 1000};
    w.s = crisp_sock_new(base, sv[0], NULL, w.out_max, &cbs, &w);
    static uint8_t big[1001];
    CHECK(crisp_sock_queue(w.s, big, 1001) == -1);
    CHECK(crisp_sock_pending(w.s) == 0);
    CHECK(crisp_sock_queue(w.s, big, 1000) == 0);
    CHECK(crisp_sock_queue(w.s, big, 1) == -1);
    uint8_t *p = crisp_sock_queue_reserve(w.s, 1);
    CHECK(p == NULL);
    close(sv[1]);
    CHECK(crisp_sock_flush(w.s) == -1);  /* EPIPE: reported later, from the loop */
    CHECK(w.closes == 0);
    run_until(&w.closes, 1, 1000);
    CHECK(w.closes == 1);
    CHECK(w.how == CRISP_SOCK_EOF);
}

/* Client sockets: a missing unix socket fails at once; a listening one
 * reports on_connected from the loop, and queued bytes go out after it. */
static void test_connect(void)
{
    char path[108];
    snprintf(path, sizeof(path), "/tmp/crisp-test-sock-%d", (int)getpid());
    unlink(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    char err[256] = "";
    struct peer c = {.out_max = 4096};
    c.s = crisp_sock_connect(base, (struct sockaddr *)&sa, sizeof(sa), 1000, c.out_max, &cbs, &c,
                             err, sizeof(err));
    CHECK(c.s == NULL);
    CHECK(strstr(err, "connect: ") == err);

    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(l, 4) == 0);
    c.s = crisp_sock_connect(base, (struct sockaddr *)&sa, sizeof(sa), 1000, c.out_max, &cbs, &c,
                             err, sizeof(err));
    CHECK(c.s != NULL);
    CHECK(c.connected == 0); /* never from inside crisp_sock_connect */
    CHECK(crisp_sock_queue(c.s, "hello", 5) == 0);
    CHECK(crisp_sock_flush(c.s) == 0); /* waits for the connection */
    run_until(&c.connected, 1, 1000);
    CHECK(c.connected == 1);
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    char buf[8] = "";
    for (int i = 0; i < 100 && crisp_sock_pending(c.s); i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(read(a, buf, sizeof(buf)) == 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    crisp_sock_free(c.s);
    close(a);
    close(l);
    unlink(path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    test_blocked_writer();
    test_data_then_eof();
    test_free_inside_callback();
    test_cap_and_broken_pipe();
    test_connect();
    event_base_free(base);
    return unit_summary("test_sock");
}
