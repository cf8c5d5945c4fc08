/* Unit tests for sock.c, plain sockets: driven through socketpairs and unix
 * and TCP listeners on a real event loop (TLS: test_sock_tls.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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

static const struct crisp_sock_cbs cbs = {
    .on_data = on_data, .on_drain = on_drain, .on_connected = on_connected, .on_close = on_close};

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


/* ---- what the HTTP/1.1 client needs (crisp_sock_open and friends) ------- */

struct cli {
    struct crisp_sock *s;
    int connected, closes, write_errors, datas, pause_each, in_call;
    int cb_inside;           /* callbacks that ran from inside a crisp_sock_* call */
    enum crisp_sock_end how;
    int err;
    char why[256], wr_why[256];
    char got[4096];
    size_t ngot;
};

static int c_data(void *ud, const uint8_t *d, size_t n)
{
    struct cli *c = ud;
    c->cb_inside += c->in_call;
    c->datas++;
    if (c->ngot + n < sizeof(c->got)) {
        memcpy(c->got + c->ngot, d, n);
        c->ngot += n;
    }
    if (c->pause_each)
        crisp_sock_pause_read(c->s);
    return 0;
}

static int c_connected(void *ud)
{
    struct cli *c = ud;
    c->cb_inside += c->in_call;
    c->connected++;
    return 0;
}

static void c_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct cli *c = ud;
    c->cb_inside += c->in_call;
    c->closes++;
    c->how = how;
    c->err = crisp_sock_errno(c->s);
    snprintf(c->why, sizeof(c->why), "%s", why);
}

static int c_write_error(void *ud, enum crisp_sock_end how, const char *why)
{
    struct cli *c = ud;
    c->cb_inside += c->in_call;
    c->write_errors++;
    snprintf(c->wr_why, sizeof(c->wr_why), "%s", why);
    return 0;
}

static const struct crisp_sock_cbs ccbs = {
    .on_data = c_data, .on_connected = c_connected, .on_close = c_close};
static const struct crisp_sock_cbs ccbs_wr = {
    .on_data = c_data, .on_connected = c_connected, .on_close = c_close,
    .on_write_error = c_write_error};

static void spin(int ms)
{
    for (int i = 0; i < ms; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static struct crisp_sock *open_to(struct cli *c, const struct sockaddr *sa, socklen_t len,
                                  const char *name, unsigned timeout_ms)
{
    struct crisp_sock_dest d = {.sa = sa, .salen = len, .name = name, .timeout_ms = timeout_ms};
    c->in_call = 1;
    c->s = crisp_sock_open(base, &d, 4096, &ccbs, c);
    c->in_call = 0;
    return c->s;
}

/* Half-close: the peer reads our bytes then EOF, and what it sends after
 * still reaches us; queueing after the half-close fails. */
static void test_half_close(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cli c = {0};
    c.s = crisp_sock_new(base, sv[0], NULL, 4096, &ccbs, &c);
    CHECK(crisp_sock_queue(c.s, "abc", 3) == 0);
    c.in_call = 1;
    CHECK(crisp_sock_shutdown_write(c.s) == 0);
    CHECK(crisp_sock_shutdown_write(c.s) == 0); /* twice: a no-op */
    CHECK(crisp_sock_flush(c.s) == 1);
    c.in_call = 0;
    CHECK(crisp_sock_queue(c.s, "x", 1) == -1);
    char buf[8];
    CHECK(read(sv[1], buf, sizeof(buf)) == 3 && !memcmp(buf, "abc", 3));
    CHECK(read(sv[1], buf, sizeof(buf)) == 0); /* EOF */
    CHECK(write(sv[1], "after", 5) == 5);
    run_until(&c.datas, 1, 1000);
    CHECK(c.ngot == 5 && !memcmp(c.got, "after", 5) && c.closes == 0);
    close(sv[1]);
    run_until(&c.closes, 1, 1000);
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_EOF && c.err == 0);
    CHECK(c.cb_inside == 0);
    crisp_sock_free(c.s);

    /* With an empty queue the half-close is immediate; before it, queued
     * bytes of a pending connect go first. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cli d = {0};
    d.s = crisp_sock_new(base, sv[0], NULL, 4096, &ccbs, &d);
    CHECK(crisp_sock_shutdown_write(d.s) == 0);
    CHECK(read(sv[1], buf, sizeof(buf)) == 0);
    crisp_sock_free(d.s);
    close(sv[1]);
}

/* Pause from inside on_data stops delivery at once; resume delivers the
 * rest from the loop, never from inside. */
static void test_pause_resume(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cli c = {.pause_each = 1};
    c.s = crisp_sock_new(base, sv[0], NULL, 4096, &ccbs, &c);
    CHECK(write(sv[1], "one", 3) == 3);
    run_until(&c.datas, 1, 1000);
    CHECK(c.datas == 1 && c.ngot == 3);
    CHECK(write(sv[1], "two", 3) == 3);
    spin(30);
    CHECK(c.datas == 1); /* paused */
    c.pause_each = 0;
    c.in_call = 1;
    crisp_sock_resume_read(c.s);
    crisp_sock_resume_read(c.s); /* twice: a no-op */
    c.in_call = 0;
    run_until(&c.datas, 2, 1000);
    CHECK(c.datas == 2 && c.ngot == 6 && !memcmp(c.got, "onetwo", 6));
    /* paused from outside, then the peer closes: data first, then the end */
    crisp_sock_pause_read(c.s);
    CHECK(write(sv[1], "three", 5) == 5);
    close(sv[1]);
    spin(30);
    CHECK(c.datas == 2 && c.closes == 0);
    crisp_sock_resume_read(c.s);
    run_until(&c.closes, 1, 1000);
    CHECK(c.ngot == 11 && !memcmp(c.got + 6, "three", 5));
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_EOF);
    CHECK(c.cb_inside == 0);
    crisp_sock_free(c.s);
}

/* A write that fails while the peer still has something to say: with
 * on_write_error, the answer is read and on_close follows. */
static void test_write_error_keeps_reading(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "answer", 6) == 6);
    close(sv[1]);
    struct cli c = {0};
    c.s = crisp_sock_new(base, sv[0], NULL, 4096, &ccbs_wr, &c);
    CHECK(crisp_sock_queue(c.s, "request", 7) == 0);
    c.in_call = 1;
    CHECK(crisp_sock_flush(c.s) == -1); /* EPIPE */
    c.in_call = 0;
    CHECK(crisp_sock_queue(c.s, "more", 4) == -1);
    CHECK(crisp_sock_pending(c.s) == 0);
    run_until(&c.closes, 1, 1000);
    CHECK(c.write_errors == 1 && strstr(c.wr_why, "Broken pipe"));
    CHECK(c.ngot == 6 && !memcmp(c.got, "answer", 6));
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_EOF);
    CHECK(c.cb_inside == 0);
    crisp_sock_free(c.s);
}

/* crisp_sock_open: failures found at once come from the loop with the
 * server's name; a full unix backlog is retried until the deadline; a TCP
 * connect that hangs times out. */
static void test_open_failures(void)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "/tmp/crisp-test-open-%d", (int)getpid());
    unlink(un.sun_path);
    struct cli c = {0};
    CHECK(open_to(&c, (struct sockaddr *)&un, sizeof(un), "unix:///missing", 1000) != NULL);
    CHECK(c.closes == 0);
    run_until(&c.closes, 1, 1000);
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_ERROR && c.err == ENOENT);
    CHECK(!strcmp(c.why, "connect unix:///missing: No such file or directory"));
    CHECK(c.cb_inside == 0);
    crisp_sock_free(c.s);

    /* a unix listener whose backlog is full */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&un, sizeof(un)) == 0);
    CHECK(listen(l, 0) == 0);
    int fill[8], nfill = 0;
    for (; nfill < 8; nfill++) {
        fill[nfill] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(fill[nfill], (struct sockaddr *)&un, sizeof(un)) < 0 && errno == EAGAIN) {
            close(fill[nfill]);
            break;
        }
    }
    struct cli b = {0};
    CHECK(open_to(&b, (struct sockaddr *)&un, sizeof(un), "unix:///full", 5000) != NULL);
    spin(30);
    CHECK(b.closes == 0);
    /* room again: the retry gets in */
    int a = accept(l, NULL, NULL);
    run_until(&b.connected, 1, 1000);
    CHECK(b.connected == 1 && b.closes == 0);
    crisp_sock_free(b.s);
    close(a);
    struct cli t = {0};
    for (int i = 0; i < 4; i++) { /* full again */
        int x = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(x, (struct sockaddr *)&un, sizeof(un)) < 0) {
            close(x);
            break;
        }
        fill[nfill++ % 8] = x;
    }
    CHECK(open_to(&t, (struct sockaddr *)&un, sizeof(un), "unix:///full", 100) != NULL);
    run_until(&t.closes, 1, 2000);
    CHECK(t.closes == 1 && t.how == CRISP_SOCK_TIMEOUT);
    CHECK(!strcmp(t.why, "connect unix:///full: timed out after 100 ms (listen backlog full)"));
    crisp_sock_free(t.s);
    for (int i = 0; i < nfill && i < 8; i++)
        close(fill[i]);
    close(l);
    unlink(un.sun_path);
}

/* A TCP connect to a listener with a full backlog hangs, then times out;
 * to a listening one, on_connected comes from the loop. */
static void test_open_tcp(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    socklen_t sl = sizeof(sin);
    getsockname(l, (struct sockaddr *)&sin, &sl);
    CHECK(listen(l, 0) == 0);
    struct cli ok = {0};
    CHECK(open_to(&ok, (struct sockaddr *)&sin, sizeof(sin), "tcp://ok", 1000) != NULL);
    CHECK(ok.connected == 0);
    run_until(&ok.connected, 1, 1000);
    CHECK(ok.connected == 1);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    usleep(50000);
    struct cli c = {0};
    CHECK(open_to(&c, (struct sockaddr *)&sin, sizeof(sin), "tcp://hang", 200) != NULL);
    run_until(&c.closes, 1, 2000);
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_TIMEOUT && c.connected == 0);
    CHECK(!strcmp(c.why, "connect tcp://hang: timed out after 200 ms"));
    CHECK(c.cb_inside == 0 && ok.cb_inside == 0);
    crisp_sock_free(c.s);
    crisp_sock_free(ok.s);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(l);
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
    test_half_close();
    test_pause_resume();
    test_write_error_keeps_reading();
    test_open_failures();
    test_open_tcp();
    event_base_free(base);
    return unit_summary("test_sock");
}
