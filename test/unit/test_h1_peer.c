/* Tests of the HTTP/1.1 client (src/http1/pool.c, conn.c) against a
 * scripted HTTP/1.1 peer: a real server on a unix socket (and TCP for
 * timeouts) in this process, on the same event loop, answering by request
 * target with the protocol edge cases a Docker engine does not produce on
 * demand: chunked trailers, close-delimited bodies, a connection dropped
 * mid-body, the stale keep-alive race, slow answers, garbage, upgrades with
 * an echo, huge bodies.
 * No engine needed; runs in `make unit`. */
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "crisp/buf.h"
#include "crisp/h1.h"
#include "crisp/net.h"
#include "crisp/sock.h"
#include "tls_certs.h"
#include "unit.h"

static struct event_base *base;
static int in_request; /* set around h1_request(): no callback may run then */
static int cb_inside;  /* callbacks that ran from inside h1_request/h1_resume */
static int pending;

/* ---- the peer ----------------------------------------------------------- */

struct pconn {
    struct pconn *next;
    struct bufferevent *bev;
    struct event *tmr;
    int nreq;
    int echo;         /* after an upgrade: echo, "bye" at EOF */
    int closing;
    char *trickle;    /* bytes still to send one at a time */
    size_t trickle_len, trickle_off;
    char *delayed;    /* answer to send when tmr fires */
};

static struct pconn *pconns;
static int peer_accepted;
static int peer_drop_next_reused; /* drop the next request on a reused connection */
static char peer_last_head[4096];
static int peer_nconns;
static int peer_silent;           /* TCP listener: accept and say nothing */

static void pconn_free(struct pconn *pc)
{
    struct pconn **pp = &pconns;
    while (*pp && *pp != pc)
        pp = &(*pp)->next;
    if (*pp)
        *pp = pc->next;
    if (pc->tmr)
        event_free(pc->tmr);
    bufferevent_free(pc->bev);
    free(pc->trickle);
    free(pc->delayed);
    free(pc);
    peer_nconns--;
}

static void pconn_close_after_flush(struct pconn *pc)
{
    pc->closing = 1;
    bufferevent_disable(pc->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(pc->bev)) == 0)
        pconn_free(pc);
}

static void pput(struct pconn *pc, const char *s)
{
    bufferevent_write(pc->bev, s, strlen(s));
}

static void on_ptmr(evutil_socket_t fd, short what, void *arg)
{
    struct pconn *pc = arg;
    if (pc->trickle) {
        bufferevent_write(pc->bev, pc->trickle + pc->trickle_off, 1);
        if (++pc->trickle_off == pc->trickle_len) {
            free(pc->trickle);
            pc->trickle = NULL;
            return;
        }
        struct timeval tv = {0, 500};
        evtimer_add(pc->tmr, &tv);
        return;
    }
    if (pc->delayed) {
        pput(pc, pc->delayed);
        free(pc->delayed);
        pc->delayed = NULL;
    }
}

static void peer_answer(struct pconn *pc, const char *method, const char *target, const char *head,
                        const char *body, size_t blen)
{
    char buf[8192];
    if (peer_drop_next_reused && pc->nreq >= 2) {
        peer_drop_next_reused = 0;
        pconn_free(pc);
        return;
    }
    if (!strcmp(target, "/cl")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    } else if (!strcmp(target, "/echo-head")) {
        snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                 strlen(head) + blen);
        pput(pc, buf);
        pput(pc, head);
        bufferevent_write(pc->bev, body, blen);
    } else if (!strcmp(target, "/chunked")) {
        pput(pc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                   "5;a=b;flag\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0;end\r\nX-Checksum: 1\r\n\r\n");
    } else if (!strcmp(target, "/close-delimited")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
        pconn_close_after_flush(pc);
    } else if (!strcmp(target, "/drop-mid-body")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        pconn_close_after_flush(pc);
    } else if (!strcmp(target, "/drop")) {
        pconn_free(pc);
    } else if (!strcmp(target, "/garbage")) {
        pput(pc, "SSH-2.0-OpenSSH_9.2\r\n");
    } else if (!strcmp(target, "/slow")) {
        /* never answers */
    } else if (!strncmp(target, "/delay/", 7)) {
        snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(target), target);
        pc->delayed = strdup(buf);
        struct timeval tv = {0, atoi(target + 7) * 1000};
        evtimer_add(pc->tmr, &tv);
    } else if (!strcmp(target, "/big")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n");
        char *b = malloc(200000);
        memset(b, 'b', 200000);
        bufferevent_write(pc->bev, b, 200000);
        free(b);
    } else if (!strcmp(target, "/extra")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokXX");
    } else if (!strcmp(target, "/head")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    } else if (!strcmp(target, "/204")) {
        pput(pc, "HTTP/1.1 204 No Content\r\n\r\n");
    } else if (!strcmp(target, "/continue")) {
        pput(pc, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    } else if (!strcmp(target, "/http10")) {
        pput(pc, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    } else if (!strcmp(target, "/upgrade")) {
        pput(pc, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                   "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nhi:");
        pc->echo = 1;
    } else if (!strcmp(target, "/rawstream")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nhi:");
        pc->echo = 1;
    } else if (!strncmp(target, "/stream/", 8)) {
        int n = atoi(target + 8);
        pput(pc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        char chunk[1100];
        for (int i = 0; i < n; i++) {
            int k = snprintf(chunk, sizeof(chunk), "3e8\r\n");
            for (int j = 0; j < 1000; j++)
                chunk[k + j] = (char)('a' + (i + j) % 26);
            memcpy(chunk + k + 1000, "\r\n", 2);
            bufferevent_write(pc->bev, chunk, (size_t)k + 1002);
        }
        pput(pc, "0\r\n\r\n");
    } else if (!strcmp(target, "/server-closes")) {
        pput(pc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        pconn_close_after_flush(pc);
    } else if (!strcmp(target, "/trickle")) {
        const char *t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
                        "3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        pc->trickle = strdup(t);
        pc->trickle_len = strlen(t);
        pc->trickle_off = 0;
        struct timeval tv = {0, 500};
        evtimer_add(pc->tmr, &tv);
    } else {
        pput(pc, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"
                   "{\"message\":\"page not found\"}\n");
    }
    (void)method;
}

static void on_pread(struct bufferevent *bev, void *arg)
{
    struct pconn *pc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (pc->echo) {
        evbuffer_add_buffer(bufferevent_get_output(bev), in);
        return;
    }
    while (!pc->closing) {
        struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (e.pos < 0)
            return;
        size_t hlen = (size_t)e.pos + 4;
        char *head = malloc(hlen + 1);
        evbuffer_copyout(in, head, hlen);
        head[hlen] = 0;
        size_t cl = 0;
        for (char *p = head; (p = strchr(p, '\n')) != NULL; p++)
            if (!strncasecmp(p + 1, "content-length:", 15))
                cl = (size_t)atol(p + 16);
        if (evbuffer_get_length(in) < hlen + cl) {
            free(head);
            return;
        }
        evbuffer_drain(in, hlen);
        char *body = malloc(cl + 1);
        evbuffer_remove(in, body, cl);
        body[cl] = 0;
        snprintf(peer_last_head, sizeof(peer_last_head), "%s", head);
        char method[16] = "", target[256] = "";
        sscanf(head, "%15s %255s", method, target);
        pc->nreq++;
        int was_echo = pc->echo;
        struct pconn *alive = pc;
        int nconns_before = peer_nconns;
        peer_answer(pc, method, target, head, body, cl);
        free(head);
        free(body);
        if (peer_nconns < nconns_before)
            return; /* pc was freed */
        if (alive->echo && !was_echo) {
            if (evbuffer_get_length(in))
                evbuffer_add_buffer(bufferevent_get_output(bev), in);
            return;
        }
    }
}

static void on_pwrite(struct bufferevent *bev, void *arg)
{
    struct pconn *pc = arg;
    if (pc->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        pconn_free(pc);
}

static void on_pevent(struct bufferevent *bev, short events, void *arg)
{
    struct pconn *pc = arg;
    if (events & BEV_EVENT_EOF && pc->echo && !pc->closing) {
        /* The client half-closed the upgraded stream. */
        pput(pc, "bye");
        pconn_close_after_flush(pc);
        return;
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        pconn_free(pc);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct pconn *pc = calloc(1, sizeof(*pc));
    pc->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    pc->tmr = evtimer_new(base, on_ptmr, pc);
    pc->next = pconns;
    pconns = pc;
    peer_accepted++;
    peer_nconns++;
    if (arg == &peer_silent)
        return; /* the TLS handshake-timeout listener: never reads */
    bufferevent_setcb(pc->bev, on_pread, on_pwrite, on_pevent, pc);
    bufferevent_enable(pc->bev, EV_READ | EV_WRITE);
}

/* ---- the client side ---------------------------------------------------- */

struct res {
    int done, err, status, heads, bodies, bodies_in_pause;
    char errmsg[512];
    struct crisp_buf body;
    struct h1_req *r;
    int cancel_in_head, cancel_in_body, cancel_in_done, abort_in_head, pause_in_body;
    int write_in_head, cancel_other_in_done;
    size_t big_write;        /* write this much from on_head, half-close once drained */
    size_t pending_after;    /* h1_write_pending right after it */
    int drains, shut;
    struct h1_req **otherp; /* cancelled (once) from on_done */
    int paused;
    int write_rv_before;
};

static void res_init(struct res *x)
{
    memset(x, 0, sizeof(*x));
    crisp_buf_init(&x->body, 8 << 20);
}

static void res_free(struct res *x)
{
    crisp_buf_free(&x->body);
}

static int r_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    x->heads++;
    x->status = status;
    if (x->write_in_head) {
        CHECK(h1_write(r, (const uint8_t *)"ping\n", 5) == 0);
        CHECK(h1_write(r, (const uint8_t *)"pong\n", 5) == 0);
        CHECK(h1_close_write(r) == 0);
        CHECK(h1_write(r, (const uint8_t *)"late", 4) == H1_E_INVALID);
    }
    if (x->big_write) {
        uint8_t *big = malloc(x->big_write);
        memset(big, 'z', x->big_write);
        CHECK(h1_write(r, big, x->big_write) == 0);
        free(big);
        x->pending_after = h1_write_pending(r);
    }
    if (x->cancel_in_head) {
        h1_cancel(r);
        pending--;
        x->done = 1;
        return 0;
    }
    return x->abort_in_head ? -1 : 0;
}

static int r_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    x->bodies++;
    if (x->paused)
        x->bodies_in_pause++;
    crisp_buf_append(&x->body, p, n);
    if (x->cancel_in_body && x->body.len >= (size_t)x->cancel_in_body) {
        h1_cancel(r);
        h1_cancel(r); /* twice is harmless */
        pending--;
        x->done = 1;
    }
    if (x->pause_in_body && !x->paused && x->bodies == 1) {
        h1_pause(r);
        x->paused = 1;
    }
    return 0;
}

static void r_done(struct h1_req *r, int err, const char *msg, int status, const uint8_t *body,
                   size_t len, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    CHECK(!x->done); /* once */
    x->done = 1;
    x->err = err;
    x->status = status;
    CHECK((err == 0) == (msg == NULL));
    if (msg)
        snprintf(x->errmsg, sizeof(x->errmsg), "%s", msg);
    if (body) {
        CHECK(body[len] == 0);
        crisp_buf_append(&x->body, body, len);
    }
    if (x->cancel_in_done)
        h1_cancel(r); /* no effect: it ends anyway */
    if (x->cancel_other_in_done && *x->otherp) {
        h1_cancel(*x->otherp);
        *x->otherp = NULL;
        pending--;
    }
    pending--;
}

static const struct h1_req_cbs buffered = {.on_head = r_head, .on_done = r_done};
static const struct h1_req_cbs streamed = {.on_head = r_head, .on_body = r_body, .on_done = r_done};

/* A writer that waits for the kernel to take what it wrote (h1 on_drain). */
static void r_drain(struct h1_req *r, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    x->drains++;
    if (h1_write_pending(r) == 0 && !x->shut) {
        x->shut = 1;
        CHECK(h1_close_write(r) == 0);
    }
}

static const struct h1_req_cbs draining = {.on_head = r_head, .on_body = r_body, .on_done = r_done,
                                           .on_drain = r_drain};

static struct h1_req *req(struct h1_pool *pool, const char *method, const char *target,
                          const struct h1_req_cbs *cbs, struct res *x)
{
    struct h1_req_opts o = {.method = method, .target = target};
    pending++;
    in_request = 1;
    x->r = h1_request(pool, &o, cbs, x);
    in_request = 0;
    CHECK(x->r != NULL);
    return x->r;
}

static struct h1_req *req_opts(struct h1_pool *pool, const struct h1_req_opts *o,
                               const struct h1_req_cbs *cbs, struct res *x)
{
    pending++;
    in_request = 1;
    x->r = h1_request(pool, o, cbs, x);
    in_request = 0;
    CHECK(x->r != NULL);
    return x->r;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

static int now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void run(int max_ms)
{
    int end = now_ms() + max_ms;
    while (pending > 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    if (pending > 0)
        fprintf(stderr, "  run: %d requests still pending after %d ms\n", pending, max_ms);
    CHECK(pending == 0);
}

static void spin(int ms)
{
    int end = now_ms() + ms;
    while (now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static char sock_path[108];
static struct crisp_addr addr;

static struct h1_pool *mkpool(unsigned max_conns, unsigned max_idle, unsigned idle_ms)
{
    struct h1_pool_opts o = {.addr = &addr, .max_conns = max_conns, .max_idle = max_idle,
                             .idle_timeout_ms = idle_ms};
    char err[256];
    struct h1_pool *pool = h1_pool_new(base, &o, err, sizeof(err));
    CHECK(pool != NULL);
    return pool;
}

#define EXPECT_MSG(x, s)                                                       \
    do {                                                                       \
        if (!strstr((x)->errmsg, (s))) {                                       \
            fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", (x)->errmsg, (s)); \
            CHECK(!"message");                                                 \
        } else {                                                               \
            CHECK(1);                                                          \
        }                                                                      \
    } while (0)

/* ---- tests -------------------------------------------------------------- */

static void test_basic_and_reuse(void)
{
    struct h1_pool *pool = mkpool(4, 4, 30000);
    struct res a, b;
    res_init(&a);
    res_init(&b);
    req(pool, "GET", "/cl", &buffered, &a);
    CHECK(a.done == 0); /* nothing ran inside h1_request */
    run(2000);
    CHECK(a.err == 0 && a.status == 200 && a.body.len == 5 && !memcmp(a.body.data, "hello", 5));
    CHECK(h1_pool_conns(pool) == 1);
    req(pool, "GET", "/chunked", &buffered, &b);
    run(2000);
    CHECK(b.err == 0 && b.status == 200 && b.body.len == 11 &&
          !memcmp(b.body.data, "hello world", 11));
    struct h1_pool_stats st;
    h1_pool_get_stats(pool, &st);
    CHECK(st.conns_opened == 1 && st.requests == 2 && st.reused == 1 && st.idle == 1);
    res_free(&a);
    res_free(&b);

    /* The bytes on the wire. */
    struct res e;
    res_init(&e);
    struct crisp_md md;
    crisp_md_init(&md, 4096);
    crisp_md_add(&md, (const uint8_t *)"X-Registry-Auth", 15, (const uint8_t *)"e30=", 4);
    crisp_md_add(&md, (const uint8_t *)"Host", 4, (const uint8_t *)"evil", 4);
    crisp_md_add(&md, (const uint8_t *)"content-length", 14, (const uint8_t *)"99", 2);
    struct h1_req_opts o = {.method = "POST", .target = "/echo-head", .headers = &md,
                            .content_type = "application/json", .body = (const uint8_t *)"{\"a\":1}",
                            .body_len = 7};
    req_opts(pool, &o, &buffered, &e);
    run(2000);
    const char *want = "POST /echo-head HTTP/1.1\r\nHost: docker\r\nUser-Agent: crisp/";
    CHECK(e.err == 0 && e.body.len > strlen(want) && !memcmp(e.body.data, want, strlen(want)));
    crisp_buf_append(&e.body, "", 1);
    const char *s = (const char *)e.body.data;
    CHECK(strstr(s, "\r\nContent-Type: application/json\r\n") != NULL);
    CHECK(strstr(s, "\r\nContent-Length: 7\r\n") != NULL);
    CHECK(strstr(s, "\r\nX-Registry-Auth: e30=\r\n") != NULL);
    CHECK(strstr(s, "evil") == NULL && strstr(s, ": 99") == NULL);
    CHECK(strstr(s, "\r\n\r\n{\"a\":1}") != NULL);
    res_free(&e);

    /* POST without a body still says Content-Length: 0; upgrade headers. */
    res_init(&e);
    struct h1_req_opts o2 = {.method = "POST", .target = "/echo-head"};
    req_opts(pool, &o2, &buffered, &e);
    run(2000);
    crisp_buf_append(&e.body, "", 1);
    CHECK(e.err == 0 && strstr((const char *)e.body.data, "\r\nContent-Length: 0\r\n") != NULL);
    res_free(&e);
    res_init(&e);
    struct h1_req_opts o3 = {.method = "GET", .target = "/echo-head", .upgrade = 1};
    req_opts(pool, &o3, &buffered, &e);
    run(2000);
    crisp_buf_append(&e.body, "", 1);
    CHECK(e.err == 0 && strstr((const char *)e.body.data, "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"));
    CHECK(strstr((const char *)e.body.data, "Content-Length") == NULL);
    res_free(&e);

    /* Bad requests fail through on_done, not at once. */
    crisp_md_free(&md);
    crisp_md_init(&md, 4096);
    crisp_md_add(&md, (const uint8_t *)"X-Bad", 5, (const uint8_t *)"a\r\nInjected: 1", 14);
    struct res bad[4];
    for (int i = 0; i < 4; i++)
        res_init(&bad[i]);
    struct h1_req_opts ob = {.method = "GET", .target = "/cl", .headers = &md};
    req_opts(pool, &ob, &buffered, &bad[0]);
    struct h1_req_opts ob2 = {.method = "GET", .target = "/cl x"};
    req_opts(pool, &ob2, &buffered, &bad[1]);
    struct h1_req_opts ob3 = {.method = "G T", .target = "/cl"};
    req_opts(pool, &ob3, &buffered, &bad[2]);
    struct h1_req_opts ob4 = {.method = "GET", .target = NULL};
    req_opts(pool, &ob4, &buffered, &bad[3]);
    CHECK(bad[0].done == 0);
    run(2000);
    for (int i = 0; i < 4; i++) {
        CHECK(bad[i].err == H1_E_INVALID);
        res_free(&bad[i]);
    }
    EXPECT_MSG(&bad[0], "bad request header \"X-Bad\"");
    crisp_md_free(&md);
    h1_pool_free(pool);
}

static void test_framing_edges(void)
{
    struct h1_pool *pool = mkpool(4, 4, 30000);
    struct h1_pool_stats st0, st1;
    struct res x;

    /* Close-delimited body: fine, but the connection is not reused. */
    res_init(&x);
    req(pool, "GET", "/close-delimited", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.status == 200 && x.body.len == 13 && !memcmp(x.body.data, "until the end", 13));
    CHECK(h1_pool_conns(pool) == 0);
    res_free(&x);

    /* Trickled byte by byte over the socket. */
    res_init(&x);
    req(pool, "GET", "/trickle", &streamed, &x);
    run(3000);
    CHECK(x.err == 0 && x.body.len == 5 && !memcmp(x.body.data, "abcde", 5) && x.bodies == 5);
    res_free(&x);

    /* Extra bytes after the response: not reused. */
    h1_pool_get_stats(pool, &st0);
    res_init(&x);
    req(pool, "GET", "/extra", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.body.len == 2 && h1_pool_conns(pool) == 0);
    res_free(&x);
    res_init(&x);
    req(pool, "GET", "/cl", &buffered, &x);
    run(2000);
    h1_pool_get_stats(pool, &st1);
    CHECK(x.err == 0 && st1.conns_opened == st0.conns_opened + 1);
    res_free(&x);

    /* HEAD, 204, 100 Continue: no body, reused. */
    h1_pool_get_stats(pool, &st0);
    res_init(&x);
    req(pool, "HEAD", "/head", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.status == 200 && x.body.len == 0);
    res_free(&x);
    res_init(&x);
    req(pool, "DELETE", "/204", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.status == 204 && x.body.len == 0);
    res_free(&x);
    res_init(&x);
    req(pool, "GET", "/continue", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.status == 200 && x.heads == 1 && x.body.len == 2);
    res_free(&x);
    h1_pool_get_stats(pool, &st1);
    CHECK(st1.conns_opened == st0.conns_opened && st1.reused == st0.reused + 3);

    /* HTTP/1.0: closed after. */
    res_init(&x);
    req(pool, "GET", "/http10", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.body.len == 2 && h1_pool_conns(pool) == 0);
    res_free(&x);

    /* A 404 with a JSON body is a response like any other. */
    res_init(&x);
    req(pool, "GET", "/nope", &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.status == 404 && strstr((const char *)x.body.data, "page not found"));
    res_free(&x);
    h1_pool_free(pool);
}

static void test_failures(void)
{
    struct h1_pool *pool = mkpool(4, 4, 30000);
    struct res x;

    res_init(&x);
    req(pool, "GET", "/drop-mid-body", &buffered, &x);
    run(2000);
    CHECK(x.err == H1_E_IO && x.status == 200);
    EXPECT_MSG(&x, "lost after 50 bytes of the response to GET /drop-mid-body");
    res_free(&x);

    res_init(&x);
    req(pool, "GET", "/drop", &buffered, &x);
    run(2000);
    CHECK(x.err == H1_E_IO && x.status == 0);
    EXPECT_MSG(&x, "closed before the response to GET /drop");
    res_free(&x);

    res_init(&x);
    req(pool, "GET", "/garbage", &buffered, &x);
    run(2000);
    CHECK(x.err == H1_E_PARSE);
    EXPECT_MSG(&x, "malformed response to GET /garbage from unix://");
    EXPECT_MSG(&x, "not an HTTP/1.x response");
    res_free(&x);

    /* Buffered body over body_max. */
    res_init(&x);
    struct h1_req_opts o = {.target = "/big", .body_max = 100000};
    req_opts(pool, &o, &buffered, &x);
    run(2000);
    CHECK(x.err == H1_E_TOO_LARGE && x.status == 200);
    EXPECT_MSG(&x, "larger than the limit of 100000 bytes");
    res_free(&x);
    res_init(&x);
    struct h1_req_opts o2 = {.target = "/big", .body_max = 200000};
    req_opts(pool, &o2, &buffered, &x);
    run(2000);
    CHECK(x.err == 0 && x.body.len == 200000);
    res_free(&x);

    /* Request timeout, on a connection and while queued behind it. */
    struct h1_pool *one = mkpool(1, 1, 30000);
    struct res t1, t2;
    res_init(&t1);
    res_init(&t2);
    struct h1_req_opts ot = {.target = "/slow", .timeout_ms = 200};
    req_opts(one, &ot, &buffered, &t1);
    struct h1_req_opts ot2 = {.target = "/cl", .timeout_ms = 100};
    req_opts(one, &ot2, &buffered, &t2);
    run(2000);
    CHECK(t1.err == H1_E_TIMEOUT && t2.err == H1_E_TIMEOUT);
    EXPECT_MSG(&t1, "GET /slow to unix://");
    EXPECT_MSG(&t1, "timed out after 200 ms without a response");
    EXPECT_MSG(&t2, "timed out after 100 ms waiting for a connection");
    CHECK(h1_pool_conns(one) == 0);
    res_free(&t1);
    res_free(&t2);
    h1_pool_free(one);

    /* An on_head that says stop. */
    res_init(&x);
    x.abort_in_head = 1;
    req(pool, "GET", "/cl", &streamed, &x);
    run(2000);
    CHECK(x.err == H1_E_ABORTED && x.status == 200);
    res_free(&x);
    h1_pool_free(pool);

    /* Nothing listening. */
    struct crisp_addr missing;
    char err[256];
    CHECK(crisp_addr_parse("unix:///tmp/h1-peer-test-missing.sock", &missing, err, sizeof(err)) == 0);
    struct h1_pool_opts po = {.addr = &missing};
    pool = h1_pool_new(base, &po, err, sizeof(err));
    struct res m[3];
    for (int i = 0; i < 3; i++) {
        res_init(&m[i]);
        req(pool, "GET", "/_ping", &buffered, &m[i]);
    }
    CHECK(m[0].done == 0);
    run(2000);
    for (int i = 0; i < 3; i++) {
        CHECK(m[i].err == H1_E_CONNECT && m[i].status == 0);
        EXPECT_MSG(&m[i], "connect unix:///tmp/h1-peer-test-missing.sock: No such file or directory");
        res_free(&m[i]);
    }
    CHECK(h1_pool_conns(pool) == 0);
    h1_pool_free(pool);
}

static void test_stale_keepalive(void)
{
    struct h1_pool *pool = mkpool(4, 4, 30000);
    struct res x;
    struct h1_pool_stats st;

    /* The engine closed an idle connection: it is dropped silently. */
    res_init(&x);
    req(pool, "GET", "/server-closes", &buffered, &x);
    run(2000);
    CHECK(x.err == 0);
    spin(50);
    CHECK(h1_pool_conns(pool) == 0);
    res_free(&x);

    /* The race: the engine drops the reused connection as the request
     * arrives. A GET is retried once on a new connection. */
    res_init(&x);
    req(pool, "GET", "/cl", &buffered, &x);
    run(2000);
    res_free(&x);
    peer_drop_next_reused = 1;
    res_init(&x);
    req(pool, "GET", "/cl", &buffered, &x);
    run(2000);
    h1_pool_get_stats(pool, &st);
    CHECK(x.err == 0 && x.status == 200 && st.retries == 1);
    CHECK(peer_drop_next_reused == 0);
    res_free(&x);

    /* A POST that was written is not retried. */
    peer_drop_next_reused = 1;
    res_init(&x);
    struct h1_req_opts o = {.method = "POST", .target = "/cl", .body = (const uint8_t *)"{}",
                            .body_len = 2, .content_type = "application/json"};
    req_opts(pool, &o, &buffered, &x);
    run(2000);
    h1_pool_get_stats(pool, &st);
    CHECK(x.err == H1_E_IO && st.retries == 1);
    EXPECT_MSG(&x, "closed before the response to POST /cl");
    res_free(&x);

    /* Only once: the retry's own failure is final (a fresh connection that
     * drops is not retried). */
    res_init(&x);
    req(pool, "GET", "/cl", &buffered, &x);
    run(2000);
    res_free(&x);
    res_init(&x);
    req(pool, "GET", "/drop", &buffered, &x);
    run(2000);
    h1_pool_get_stats(pool, &st);
    CHECK(x.err == H1_E_IO && st.retries == 2);
    res_free(&x);
    h1_pool_free(pool);
}

static void test_queue_and_limits(void)
{
    struct h1_pool *pool = mkpool(2, 1, 30000);
    struct res x[7];
    char targets[7][32];
    for (int i = 0; i < 7; i++) {
        res_init(&x[i]);
        snprintf(targets[i], sizeof(targets[i]), "/delay/%d", 30 + 5 * i);
        req(pool, "GET", targets[i], &buffered, &x[i]);
    }
    unsigned maxc = 0;
    int end = now_ms() + 3000;
    while (pending > 0 && now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        if (h1_pool_conns(pool) > maxc)
            maxc = h1_pool_conns(pool);
    }
    CHECK(pending == 0);
    CHECK(maxc == 2);
    for (int i = 0; i < 7; i++) {
        CHECK(x[i].err == 0 && x[i].body.len == strlen(targets[i]) &&
              !memcmp(x[i].body.data, targets[i], x[i].body.len));
        res_free(&x[i]);
    }
    struct h1_pool_stats st;
    h1_pool_get_stats(pool, &st);
    CHECK(st.conns_opened == 2 && st.reused == 5);
    CHECK(st.idle == 1 && h1_pool_conns(pool) == 1); /* max_idle 1 */
    h1_pool_free(pool);

    /* Idle timeout. */
    pool = mkpool(4, 4, 100);
    struct res a;
    res_init(&a);
    req(pool, "GET", "/cl", &buffered, &a);
    run(2000);
    CHECK(h1_pool_conns(pool) == 1);
    spin(250);
    CHECK(h1_pool_conns(pool) == 0);
    res_free(&a);
    h1_pool_free(pool);
}

static void test_cancel(void)
{
    struct h1_pool *pool = mkpool(1, 1, 30000);
    struct res a, b, c, d, e;

    /* Cancelled right away, and while queued behind a busy connection. */
    res_init(&a);
    res_init(&b);
    res_init(&c);
    req(pool, "GET", "/delay/50", &buffered, &a);
    req(pool, "GET", "/cl", &buffered, &b);
    h1_cancel(b.r);
    pending--;
    run(2000);
    CHECK(a.err == 0 && !b.done);
    req(pool, "GET", "/delay/100", &buffered, &a);
    a.done = 0;
    req(pool, "GET", "/cl", &buffered, &c);
    spin(20);
    h1_cancel(c.r);
    pending--;
    run(2000);
    CHECK(a.err == 0 && !c.done);
    res_free(&a);
    res_free(&b);
    res_free(&c);

    /* Cancelled from its own on_head and on_body: the connection goes. */
    res_init(&a);
    a.cancel_in_head = 1;
    req(pool, "GET", "/stream/100", &streamed, &a);
    run(2000);
    CHECK(a.heads == 1 && a.bodies == 0);
    spin(20);
    CHECK(h1_pool_conns(pool) == 0);
    res_free(&a);
    res_init(&a);
    a.cancel_in_body = 5000;
    req(pool, "GET", "/stream/300", &streamed, &a);
    run(2000);
    CHECK(a.body.len >= 5000 && a.body.len < 300000);
    size_t seen = a.bodies;
    spin(30);
    CHECK((size_t)a.bodies == seen);
    CHECK(h1_pool_conns(pool) == 0);
    res_free(&a);

    /* Cancelling in on_done has no effect; the pool goes on. */
    res_init(&a);
    a.cancel_in_done = 1;
    req(pool, "GET", "/cl", &buffered, &a);
    run(2000);
    CHECK(a.err == 0);
    res_free(&a);

    /* Cancelled mid-stream from outside a callback. */
    res_init(&d);
    req(pool, "GET", "/slow", &streamed, &d);
    spin(30);
    CHECK(h1_pool_conns(pool) == 1);
    h1_cancel(d.r);
    pending--;
    CHECK(h1_pool_conns(pool) == 0);
    spin(10);
    CHECK(!d.done);
    res_free(&d);

    /* Pool freed with requests in flight: each gets ABORTED, and one
     * cancels another from its on_done. */
    res_init(&a);
    res_init(&b);
    res_init(&c);
    res_init(&e);
    req(pool, "GET", "/slow", &buffered, &a);
    req(pool, "GET", "/cl", &buffered, &b);
    req(pool, "GET", "/cl", &buffered, &c);
    req(pool, "GET", "/cl", &buffered, &e);
    spin(30);
    struct h1_req *victim = c.r;
    b.cancel_other_in_done = e.cancel_other_in_done = 1;
    b.otherp = e.otherp = &victim;
    h1_pool_free(pool);
    CHECK(victim == NULL);
    CHECK(a.done && a.err == H1_E_ABORTED);
    CHECK(b.done && b.err == H1_E_ABORTED);
    CHECK(!c.done);
    CHECK(e.done && e.err == H1_E_ABORTED);
    EXPECT_MSG(&a, "the HTTP client for unix://");
    CHECK(pending == 0);
    res_free(&a);
    res_free(&b);
    res_free(&c);
    res_free(&e);
}

static void test_pause_resume(void)
{
    struct h1_pool *pool = mkpool(2, 2, 30000);
    struct res a;
    res_init(&a);
    a.pause_in_body = 1;
    req(pool, "GET", "/stream/2000", &streamed, &a);
    int end = now_ms() + 2000;
    while (!a.paused && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK(a.paused && a.bodies == 1);
    spin(100);
    CHECK(a.bodies_in_pause == 0 && !a.done);
    a.paused = 0;
    in_request = 1;
    h1_resume(a.r); /* no callback from inside */
    in_request = 0;
    run(5000);
    CHECK(a.err == 0 && a.body.len == 2000000);
    int ok = 1;
    for (int i = 0; i < 2000 && ok; i++)
        for (int j = 0; j < 1000 && ok; j++)
            ok = a.body.data[i * 1000 + j] == 'a' + (i + j) % 26;
    CHECK(ok);
    res_free(&a);

    /* Paused before anything arrived, resumed later; paused buffered. */
    res_init(&a);
    req(pool, "GET", "/chunked", &buffered, &a);
    h1_pause(a.r);
    spin(50);
    CHECK(!a.done);
    h1_resume(a.r);
    run(2000);
    CHECK(a.err == 0 && a.body.len == 11);
    res_free(&a);
    h1_pool_free(pool);
}

static void test_upgrade(void)
{
    struct h1_pool *pool = mkpool(2, 2, 30000);
    const char *targets[] = {"/upgrade", "/rawstream"};
    for (int i = 0; i < 2; i++) {
        struct res a;
        res_init(&a);
        a.write_in_head = 1;
        struct h1_req_opts o = {.method = "POST", .target = targets[i], .upgrade = i == 0,
                                .content_type = "application/json",
                                .body = (const uint8_t *)"{\"Detach\":false}", .body_len = 16};
        req_opts(pool, &o, &streamed, &a);
        CHECK(h1_write(a.r, (const uint8_t *)"x", 1) == H1_E_INVALID); /* before the head */
        run(2000);
        CHECK(a.err == 0 && a.status == (i == 0 ? 101 : 200));
        crisp_buf_append(&a.body, "", 1);
        if (strcmp((const char *)a.body.data, "hi:ping\npong\nbye") != 0) {
            fprintf(stderr, "  %s: stream \"%s\"\n", targets[i], (const char *)a.body.data);
            CHECK(!"upgrade stream");
        }
        CHECK(h1_pool_conns(pool) == 0); /* never reused */
        res_free(&a);
    }
    /* 4 MiB written at once: the kernel takes it over time; on_drain says
     * so, h1_write_pending goes down to 0, then the half-close. */
    struct res big;
    res_init(&big);
    big.big_write = 4u << 20;
    struct h1_req_opts ob = {.method = "POST", .target = "/upgrade", .upgrade = 1};
    req_opts(pool, &ob, &draining, &big);
    run(10000);
    CHECK(big.err == 0 && big.status == 101);
    CHECK(big.pending_after > 0 && big.drains >= 1 && big.shut == 1);
    CHECK(big.body.len == 3 + (4u << 20) + 3);
    res_free(&big);
    /* Not on an ordinary response. */
    struct res b;
    res_init(&b);
    req(pool, "GET", "/cl", &buffered, &b);
    CHECK(h1_close_write(b.r) == H1_E_INVALID);
    run(2000);
    res_free(&b);
    h1_pool_free(pool);
}

static void test_timeouts_tcp(void)
{
    /* A listener with a full backlog: connects hang, then time out. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    socklen_t sl = sizeof(sin);
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    CHECK(listen(lfd, 0) == 0);
    int fillers[3];
    for (int i = 0; i < 3; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    usleep(50000);
    char url[64], err[256];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", ntohs(sin.sin_port));
    struct crisp_addr ta;
    CHECK(crisp_addr_parse(url, &ta, err, sizeof(err)) == 0);
    struct h1_pool_opts po = {.addr = &ta, .connect_timeout_ms = 200};
    struct h1_pool *pool = h1_pool_new(base, &po, err, sizeof(err));
    struct res a;
    res_init(&a);
    int t0 = now_ms();
    req(pool, "GET", "/_ping", &buffered, &a);
    run(3000);
    int took = now_ms() - t0;
    CHECK(a.err == H1_E_CONNECT && took >= 180 && took < 1500);
    char want[128];
    snprintf(want, sizeof(want), "connect %s: timed out after 200 ms", url);
    EXPECT_MSG(&a, want);
    res_free(&a);
    h1_pool_free(pool);
    for (int i = 0; i < 3; i++)
        close(fillers[i]);
    close(lfd);

    /* A TLS handshake that never completes. */
    struct sockaddr_in s2 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *l = evconnlistener_new_bind(
        base, on_accept, &peer_silent, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
        (struct sockaddr *)&s2, sizeof(s2));
    CHECK(l != NULL);
    evutil_socket_t sfd = evconnlistener_get_fd(l);
    sl = sizeof(s2);
    getsockname(sfd, (struct sockaddr *)&s2, &sl);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", ntohs(s2.sin_port));
    CHECK(crisp_addr_parse(url, &ta, err, sizeof(err)) == 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct h1_pool_opts p2 = {.addr = &ta, .tls = ctx, .connect_timeout_ms = 200};
    pool = h1_pool_new(base, &p2, err, sizeof(err));
    SSL_CTX_free(ctx); /* the pool holds its own reference */
    res_init(&a);
    req(pool, "GET", "/_ping", &buffered, &a);
    run(3000);
    CHECK(a.err == H1_E_CONNECT);
    EXPECT_MSG(&a, "TLS handshake with tcp://");
    EXPECT_MSG(&a, "timed out after 200 ms");
    res_free(&a);
    h1_pool_free(pool);
    evconnlistener_free(l);
}


/* ---- over TLS: a peer made of crisp's own TLS server sockets ------------- */

struct tconn {
    struct crisp_sock *s;
    char head[4096];
    size_t nhead;
    int echo;                /* after the upgrade: echo what comes */
    int saw_eof;             /* the client's close_notify (half-close) */
};

static struct tconn tconns[8];
static SSL_CTX *tpeer_ctx;

static void tc_answer(struct tconn *t)
{
    char *end = strstr(t->head, "\r\n\r\n");
    if (!end)
        return;
    const char *a = !strncmp(t->head, "GET /tls-upgrade ", 17)
                        ? "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhi:"
                        : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    t->echo = a[9] == '1';
    crisp_sock_queue(t->s, a, strlen(a));
    size_t rest = t->nhead - (size_t)(end + 4 - t->head);
    if (t->echo && rest)
        crisp_sock_queue(t->s, end + 4, rest);
    crisp_sock_flush(t->s);
    t->nhead = 0;
}

static int tc_data(void *ud, const uint8_t *p, size_t n)
{
    struct tconn *t = ud;
    if (t->echo) {
        crisp_sock_queue(t->s, p, n);
        crisp_sock_flush(t->s);
        return 0;
    }
    if (t->nhead + n >= sizeof(t->head))
        n = sizeof(t->head) - 1 - t->nhead;
    memcpy(t->head + t->nhead, p, n);
    t->nhead += n;
    t->head[t->nhead] = 0;
    tc_answer(t);
    return 0;
}

static void tc_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct tconn *t = ud;
    t->saw_eof = how == CRISP_SOCK_EOF;
    crisp_sock_free(t->s); /* our close_notify: the client's EOF */
    t->s = NULL;
}

static const struct crisp_sock_cbs tc_cbs = {.on_data = tc_data, .on_close = tc_close};

static void on_tls_accept(evutil_socket_t lfd, short what, void *arg)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    for (int i = 0; i < 8; i++)
        if (!tconns[i].s) {
            memset(&tconns[i], 0, sizeof(tconns[i]));
            tconns[i].s = crisp_sock_new(base, fd, SSL_new(tpeer_ctx), 1 << 20, &tc_cbs,
                                         &tconns[i]);
            return;
        }
    close(fd);
}

/* The pool over TLS (client certificate required by the peer, the peer's
 * certificate checked against the IP): reuse, an upgraded stream with a
 * half-close (close_notify), and a peer certificate from another CA. */
static void test_tls(void)
{
    pki_make(&pki);
    tpeer_ctx = server_ctx(1);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    socklen_t sl = sizeof(sin);
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    CHECK(listen(lfd, 16) == 0);
    struct event *lev = event_new(base, lfd, EV_READ | EV_PERSIST, on_tls_accept, NULL);
    event_add(lev, NULL);
    char url[64], err[256];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", ntohs(sin.sin_port));
    struct crisp_addr ta;
    CHECK(crisp_addr_parse(url, &ta, err, sizeof(err)) == 0);

    SSL_CTX *good = client_ctx(pki.ca, pki.client, pki.client_key);
    struct h1_pool_opts po = {.addr = &ta, .tls = good};
    struct h1_pool *pool = h1_pool_new(base, &po, err, sizeof(err));
    SSL_CTX_free(good); /* the pool holds its own reference */
    struct res x;
    for (int i = 0; i < 2; i++) {
        res_init(&x);
        req(pool, "GET", "/tls", &buffered, &x);
        run(3000);
        CHECK(x.err == 0 && x.status == 200 && x.body.len == 2 && !memcmp(x.body.data, "ok", 2));
        res_free(&x);
    }
    struct h1_pool_stats st;
    h1_pool_get_stats(pool, &st);
    CHECK(st.conns_opened == 1 && st.reused == 1);

    res_init(&x);
    x.write_in_head = 1;
    struct h1_req_opts o = {.method = "GET", .target = "/tls-upgrade", .upgrade = 1};
    req_opts(pool, &o, &streamed, &x);
    run(3000);
    crisp_buf_append(&x.body, "", 1);
    CHECK(x.err == 0 && x.status == 101);
    CHECK(!strcmp((const char *)x.body.data, "hi:ping\npong\n"));
    int eofs = 0;
    for (int i = 0; i < 8; i++)
        eofs += tconns[i].saw_eof;
    CHECK(eofs == 1); /* the half-close reached the peer as a clean EOF */
    res_free(&x);
    h1_pool_free(pool);

    SSL_CTX *stranger = client_ctx(pki.other, pki.client, pki.client_key);
    struct h1_pool_opts po2 = {.addr = &ta, .tls = stranger};
    pool = h1_pool_new(base, &po2, err, sizeof(err));
    SSL_CTX_free(stranger);
    res_init(&x);
    req(pool, "GET", "/tls", &buffered, &x);
    run(3000);
    CHECK(x.err == H1_E_CONNECT);
    char want[128];
    snprintf(want, sizeof(want), "TLS handshake with %s failed: certificate verify failed", url);
    EXPECT_MSG(&x, want);
    res_free(&x);
    h1_pool_free(pool);

    spin(20);
    for (int i = 0; i < 8; i++)
        crisp_sock_free(tconns[i].s);
    event_free(lev);
    close(lfd);
    SSL_CTX_free(tpeer_ctx);
    pki_free(&pki);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as crisp's main does */
    base = event_base_new();
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);

    snprintf(sock_path, sizeof(sock_path), "/tmp/h1-peer-%d.sock", (int)getpid());
    unlink(sock_path);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, sock_path);
    struct evconnlistener *lis = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, 64, (struct sockaddr *)&un, sizeof(un));
    if (!lis) {
        perror("listen");
        return 1;
    }
    char url[160], err[256];
    snprintf(url, sizeof(url), "unix://%s", sock_path);
    if (crisp_addr_parse(url, &addr, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    test_basic_and_reuse();
    test_framing_edges();
    test_failures();
    test_stale_keepalive();
    test_queue_and_limits();
    test_cancel();
    test_pause_resume();
    test_upgrade();
    test_timeouts_tcp();
    test_tls();

    CHECK(cb_inside == 0);
    while (pconns)
        pconn_free(pconns);
    evconnlistener_free(lis);
    unlink(sock_path);
    event_free(tick);
    event_base_free(base);
    return unit_summary("test_h1_peer");
}
