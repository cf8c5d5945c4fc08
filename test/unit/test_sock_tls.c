/* Unit tests for sock.c over TLS: client sockets (crisp_sock_open with a
 * client SSL_CTX) against crisp's own server sockets and against a plain
 * OpenSSL server in a thread, with a CA, server and client certificates
 * made here: SNI, the server certificate checked by name and by IP, a
 * verification failure, client certificates (given, missing), the
 * handshake deadline, half-close (close_notify) while reads go on, and
 * pause/resume with decrypted bytes waiting inside TLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "crisp/sock.h"
#include "tls_certs.h"
#include "unit.h"

static struct event_base *base;

/* ---- both ends ------------------------------------------------------------ */

struct end {
    struct crisp_sock *s;
    int connected, closes, datas, in_call, cb_inside, pause_each, echo;
    enum crisp_sock_end how;
    char why[512];
    uint8_t *got;
    size_t ngot, cap;
    char sni[128];           /* server: the name the client sent */
    char peer_cn[128];       /* server: the client certificate's CN */
};

static int e_data(void *ud, const uint8_t *d, size_t n)
{
    struct end *e = ud;
    e->cb_inside += e->in_call;
    e->datas++;
    if (e->ngot + n > e->cap) {
        e->cap = (e->ngot + n) * 2;
        e->got = realloc(e->got, e->cap);
    }
    memcpy(e->got + e->ngot, d, n);
    e->ngot += n;
    if (e->echo) {
        crisp_sock_queue(e->s, d, n);
        crisp_sock_flush(e->s);
    }
    if (e->pause_each)
        crisp_sock_pause_read(e->s);
    return 0;
}

static int e_connected(void *ud)
{
    struct end *e = ud;
    e->cb_inside += e->in_call;
    e->connected++;
    if (e->pause_each == 2)
        crisp_sock_pause_read(e->s);
    return 0;
}

static void e_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct end *e = ud;
    e->cb_inside += e->in_call;
    e->closes++;
    e->how = how;
    snprintf(e->why, sizeof(e->why), "%s", why);
}

static const struct crisp_sock_cbs cbs = {
    .on_data = e_data, .on_connected = e_connected, .on_close = e_close};

static void end_free(struct end *e)
{
    crisp_sock_free(e->s);
    free(e->got);
    memset(e, 0, sizeof(*e));
}

static void run_until(int *flag, int want, int ms)
{
    for (int i = 0; i < ms && *flag < want; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void spin(int n)
{
    for (int i = 0; i < n; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* ---- a crisp TLS server on 127.0.0.1 --------------------------------------- */

struct server {
    int lfd;
    struct sockaddr_in sin;
    struct event *ev;
    SSL_CTX *ctx;
    struct end conn;         /* the last accepted connection */
    int accepted;
    int silent;              /* accept and never answer */
    int silent_fd;
};

static int on_servername(SSL *ssl, int *al, void *arg)
{
    struct server *sv = arg;
    const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(sv->conn.sni, sizeof(sv->conn.sni), "%s", n ? n : "");
    return SSL_TLSEXT_ERR_OK;
}

static int on_verify(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct server *sv = SSL_get_app_data(ssl);
    X509 *cert = X509_STORE_CTX_get_current_cert(x);
    if (ok && X509_STORE_CTX_get_error_depth(x) == 0 && cert)
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, sv->conn.peer_cn,
                                  sizeof(sv->conn.peer_cn));
    return ok;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct server *sv = arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    sv->accepted++;
    if (sv->silent) {
        sv->silent_fd = fd;
        return;
    }
    if (sv->conn.s)
        end_free(&sv->conn);
    SSL *ssl = SSL_new(sv->ctx);
    SSL_set_app_data(ssl, sv);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(sv->ctx), on_verify);
    sv->conn.echo = 1;
    sv->conn.s = crisp_sock_new(base, fd, ssl, 1 << 20, &cbs, &sv->conn);
}

static void server_start(struct server *sv, int want_client)
{
    memset(sv, 0, sizeof(*sv));
    sv->silent_fd = -1;
    sv->ctx = server_ctx(want_client);
    SSL_CTX_set_tlsext_servername_callback(sv->ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(sv->ctx, sv);
    sv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sv->sin.sin_family = AF_INET;
    sv->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(sv->lfd, (struct sockaddr *)&sv->sin, sizeof(sv->sin)) == 0);
    socklen_t sl = sizeof(sv->sin);
    getsockname(sv->lfd, (struct sockaddr *)&sv->sin, &sl);
    CHECK(listen(sv->lfd, 16) == 0);
    sv->ev = event_new(base, sv->lfd, EV_READ | EV_PERSIST, on_accept, sv);
    event_add(sv->ev, NULL);
}

static void server_stop(struct server *sv)
{
    end_free(&sv->conn);
    event_free(sv->ev);
    close(sv->lfd);
    if (sv->silent_fd >= 0)
        close(sv->silent_fd);
    SSL_CTX_free(sv->ctx);
}

/* Opens a TLS client to the server; d.name is "tls-test". */
static void client_open(struct end *c, struct server *sv, SSL_CTX *ctx, const char *tls_name,
                        unsigned timeout_ms)
{
    struct crisp_sock_dest d = {.sa = (struct sockaddr *)&sv->sin, .salen = sizeof(sv->sin),
                                .name = "tls-test", .timeout_ms = timeout_ms, .tls = ctx,
                                .tls_name = tls_name};
    c->in_call = 1;
    c->s = crisp_sock_open(base, &d, 1 << 20, &cbs, c);
    c->in_call = 0;
    CHECK(c->s != NULL);
}

/* ---- tests ------------------------------------------------------------------ */

/* Verified by DNS name (sent as SNI) and by IP (no SNI); bytes both ways;
 * output queued before the handshake goes after it. */
static void test_verified(void)
{
    struct server sv;
    server_start(&sv, 0);
    SSL_CTX *ctx = client_ctx(pki.ca, NULL, NULL);
    const char *names[] = {"crisp.test", "127.0.0.1"};
    for (int i = 0; i < 2; i++) {
        struct end c = {0};
        client_open(&c, &sv, ctx, names[i], 2000);
        CHECK(crisp_sock_queue(c.s, "hello", 5) == 0);
        CHECK(crisp_sock_flush(c.s) == 0); /* not connected yet */
        run_until(&c.connected, 1, 2000);
        CHECK(c.connected == 1 && c.closes == 0);
        run_until(&sv.conn.datas, 1, 2000);
        CHECK(sv.conn.ngot == 5 && !memcmp(sv.conn.got, "hello", 5));
        CHECK(!strcmp(sv.conn.sni, i == 0 ? "crisp.test" : ""));
        run_until(&c.datas, 1, 2000); /* the echo */
        CHECK(c.ngot == 5 && !memcmp(c.got, "hello", 5));
        CHECK(c.cb_inside == 0);
        end_free(&c);
        run_until(&sv.conn.closes, 1, 2000);
        CHECK(sv.conn.closes == 1 && sv.conn.how == CRISP_SOCK_EOF); /* close_notify */
    }
    SSL_CTX_free(ctx);
    server_stop(&sv);
}

/* A certificate from another CA, or for another name: the handshake fails
 * with a sentence naming the server and OpenSSL's verdict. */
static void test_verify_failure(void)
{
    struct server sv;
    server_start(&sv, 0);
    SSL_CTX *other = client_ctx(pki.other, NULL, NULL);
    SSL_CTX *ours = client_ctx(pki.ca, NULL, NULL);
    struct end c = {0};
    client_open(&c, &sv, other, "crisp.test", 2000);
    run_until(&c.closes, 1, 2000);
    CHECK(c.closes == 1 && c.connected == 0 && c.how == CRISP_SOCK_TLS_ERROR);
    CHECK(strstr(c.why, "TLS handshake with tls-test failed: certificate verify failed") == c.why);
    CHECK(strstr(c.why, "unable to get local issuer certificate") != NULL);
    end_free(&c);
    client_open(&c, &sv, ours, "wrong.test", 2000);
    run_until(&c.closes, 1, 2000);
    CHECK(c.closes == 1 && c.connected == 0 && c.how == CRISP_SOCK_TLS_ERROR);
    CHECK(strstr(c.why, "hostname mismatch") != NULL);
    end_free(&c);
    client_open(&c, &sv, ours, "127.0.0.2", 2000);
    run_until(&c.closes, 1, 2000);
    CHECK(c.closes == 1 && strstr(c.why, "IP address mismatch") != NULL);
    end_free(&c);
    /* without verification anything goes */
    SSL_CTX *none = client_ctx(NULL, NULL, NULL);
    client_open(&c, &sv, none, "wrong.test", 2000);
    run_until(&c.connected, 1, 2000);
    CHECK(c.connected == 1 && c.closes == 0);
    end_free(&c);
    SSL_CTX_free(none);
    SSL_CTX_free(other);
    SSL_CTX_free(ours);
    server_stop(&sv);
}

/* A server that requires client certificates: ours is accepted (its CN
 * seen by the server), a stranger's or none is refused. */
static void test_client_certificates(void)
{
    struct server sv;
    server_start(&sv, 1);
    SSL_CTX *good = client_ctx(pki.ca, pki.client, pki.client_key);
    struct end c = {0};
    client_open(&c, &sv, good, "crisp.test", 2000);
    run_until(&c.connected, 1, 2000);
    CHECK(crisp_sock_queue(c.s, "ping", 4) == 0 && crisp_sock_flush(c.s) >= 0);
    run_until(&c.datas, 1, 2000);
    CHECK(c.ngot == 4 && !strcmp(sv.conn.peer_cn, "kubelet"));
    end_free(&c);

    SSL_CTX *bad[2] = {client_ctx(pki.ca, pki.stranger, pki.stranger_key),
                       client_ctx(pki.ca, NULL, NULL)};
    for (int i = 0; i < 2; i++) {
        sv.conn.ngot = 0;
        client_open(&c, &sv, bad[i], "crisp.test", 2000);
        /* TLS 1.3: the client may finish its handshake before the server
         * refuses; the refusal then ends the connection on the first read */
        crisp_sock_queue(c.s, "ping", 4);
        run_until(&c.closes, 1, 2000);
        CHECK(c.closes == 1 && c.how == CRISP_SOCK_TLS_ERROR && c.ngot == 0);
        CHECK(strstr(c.why, "alert") != NULL);
        CHECK(sv.conn.ngot == 0);
        end_free(&c);
        SSL_CTX_free(bad[i]);
    }
    SSL_CTX_free(good);
    server_stop(&sv);
}

/* A server that accepts and never says a word: the handshake times out. */
static void test_handshake_timeout(void)
{
    struct server sv;
    server_start(&sv, 0);
    sv.silent = 1;
    SSL_CTX *ctx = client_ctx(NULL, NULL, NULL);
    struct end c = {0};
    client_open(&c, &sv, ctx, "crisp.test", 200);
    run_until(&c.closes, 1, 3000);
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_TIMEOUT && c.connected == 0);
    CHECK(!strcmp(c.why, "TLS handshake with tls-test: timed out after 200 ms"));
    end_free(&c);
    SSL_CTX_free(ctx);
    server_stop(&sv);
}

/* ---- an OpenSSL server in a thread (for what a crisp socket cannot do:
 * keep writing after the peer's close_notify) -------------------------------- */

struct raw {
    int lfd;
    struct sockaddr_un sun;  /* unix: its send buffer holds 70000 bytes */
    SSL_CTX *ctx;
    pthread_t th;
    size_t send_n;           /* bytes to send after the client's close_notify */
    char got[64];            /* what the client sent before it */
    size_t ngot;
    int saw_close_notify;
    int release;             /* the client has it all: close (atomic) */
    int written;             /* all sent (atomic) */
    int gave_up;             /* closed without release */
};

static void *raw_serve(void *arg)
{
    struct raw *r = arg;
    int fd = accept(r->lfd, NULL, NULL);
    SSL *ssl = SSL_new(r->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        int n;
        while ((n = SSL_read(ssl, r->got + r->ngot, (int)(sizeof(r->got) - r->ngot))) > 0)
            r->ngot += (size_t)n;
        r->saw_close_notify = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
        /* 10000-byte records: 64 KiB reads end inside one, leaving
         * decrypted bytes inside TLS that no fd readiness announces */
        uint8_t chunk[10000];
        for (size_t off = 0; off < r->send_n; off += sizeof(chunk)) {
            for (size_t i = 0; i < sizeof(chunk); i++)
                chunk[i] = (uint8_t)(off + i);
            size_t k = r->send_n - off < sizeof(chunk) ? r->send_n - off : sizeof(chunk);
            if (SSL_write(ssl, chunk, (int)k) <= 0)
                break;
        }
        __atomic_store_n(&r->written, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < 3000 && !__atomic_load_n(&r->release, __ATOMIC_SEQ_CST); i++)
            usleep(1000);
        r->gave_up = !__atomic_load_n(&r->release, __ATOMIC_SEQ_CST);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void raw_start(struct raw *r, size_t send_n)
{
    memset(r, 0, sizeof(*r));
    r->send_n = send_n;
    r->ctx = server_ctx(0);
    r->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    r->sun.sun_family = AF_UNIX;
    snprintf(r->sun.sun_path, sizeof(r->sun.sun_path), "/tmp/crisp-test-tls-%d", (int)getpid());
    unlink(r->sun.sun_path);
    CHECK(bind(r->lfd, (struct sockaddr *)&r->sun, sizeof(r->sun)) == 0);
    CHECK(listen(r->lfd, 4) == 0);
    pthread_create(&r->th, NULL, raw_serve, r);
}

static void raw_stop(struct raw *r)
{
    pthread_join(r->th, NULL);
    close(r->lfd);
    unlink(r->sun.sun_path);
    SSL_CTX_free(r->ctx);
}

static int pattern_ok(const struct end *c)
{
    for (size_t i = 0; i < c->ngot; i++)
        if (c->got[i] != (uint8_t)i)
            return 0;
    return 1;
}

/* Half-close over TLS: the server reads our bytes, then our close_notify
 * (its EOF), then answers; we read the answer and its close_notify. With
 * pause_each, every read pauses and the test resumes from outside: bytes
 * TLS decrypted ahead must still arrive. pause_each 2 also pauses at once
 * and resumes only when the server has sent it all: the first 64 KiB read
 * then ends inside a record and the rest of it waits inside TLS, with
 * nothing in the kernel to wake the loop. */
static void half_close_run(size_t send_n, int pause_each)
{
    struct raw r;
    raw_start(&r, send_n);
    SSL_CTX *ctx = client_ctx(pki.ca, NULL, NULL);
    struct end c = {.pause_each = pause_each};
    struct crisp_sock_dest d = {.sa = (struct sockaddr *)&r.sun, .salen = sizeof(r.sun),
                                .name = "tls-test", .timeout_ms = 2000, .tls = ctx,
                                .tls_name = "crisp.test"};
    c.s = crisp_sock_open(base, &d, 1 << 20, &cbs, &c);
    CHECK(crisp_sock_queue(c.s, "stdin", 5) == 0);
    c.in_call = 1;
    CHECK(crisp_sock_shutdown_write(c.s) == 0); /* before the handshake: after the queue */
    c.in_call = 0;
    CHECK(crisp_sock_queue(c.s, "late", 4) == -1);
    for (int i = 0; i < 20000 && !c.closes; i++) {
        spin(1);
        if (pause_each == 1 || (pause_each == 2 && __atomic_load_n(&r.written, __ATOMIC_SEQ_CST))) {
            c.in_call = 1;
            crisp_sock_resume_read(c.s);
            c.in_call = 0;
        }
        if (c.ngot == send_n) /* all of it before the server's close */
            __atomic_store_n(&r.release, 1, __ATOMIC_SEQ_CST);
    }
    CHECK(r.release == 1);
    CHECK(c.connected == 1);
    CHECK(c.closes == 1 && c.how == CRISP_SOCK_EOF);
    CHECK(c.ngot == send_n && pattern_ok(&c));
    CHECK(c.cb_inside == 0);
    if (pause_each == 1)
        CHECK(c.datas >= 16);
    end_free(&c);
    raw_stop(&r);
    CHECK(r.ngot == 5 && !memcmp(r.got, "stdin", 5) && r.saw_close_notify);
    CHECK(!r.gave_up);
    SSL_CTX_free(ctx);
}

static void test_half_close_and_pause(void)
{
    half_close_run(1000, 0);
    half_close_run(1 << 20, 0);
    half_close_run(1 << 20, 1);
    half_close_run(70000, 2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    pki_make(&pki);
    test_verified();
    test_verify_failure();
    test_client_certificates();
    test_handshake_timeout();
    test_half_close_and_pause();
    pki_free(&pki);
    event_base_free(base);
    return unit_summary("test_sock_tls");
}
