/* listen.c - unix, TLS-over-TCP and systemd-passed listeners. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crisp/listen.h"
#include "crisp/log.h"
#include "crisp/net.h"

#define LISTEN_BACKLOG 1024

struct listener {
    struct listener *next;
    struct event_base *base;
    struct evconnlistener *lev;
    struct event *resume_ev;
    SSL_CTX *ssl_ctx;
    crisp_accept_fn on_accept;
    int (*on_full)(void *ud);
    void *ud;
    char url[160];
    char unlink_path[108];
};

static struct listener *listeners;

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)lev;
    (void)sa;
    (void)salen;
    struct listener *l = arg;
    l->on_accept(l->base, fd, l->ssl_ctx, l->url, l->ud);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    evconnlistener_enable(l->lev);
}

/* A descriptor kept open for the moment the process runs out of them:
 * closed to accept (and at once close) a waiting client, then taken again. */
static int reserve_fd = -1;

static void keep_reserve(void)
{
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void refuse_one(struct listener *l)
{
    if (reserve_fd < 0)
        return;
    close(reserve_fd);
    reserve_fd = -1;
    int fd = accept4(evconnlistener_get_fd(l->lev), NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    keep_reserve();
    log_warn("accept_refused", "listener=%s why=\"out of file descriptors, no idle connection "
             "to close\"", l->url);
}

/* accept() failing (EMFILE, ENFILE, ENOBUFS) would spin: make room (an
 * idle connection goes), or refuse the waiting client, or pause 100 ms. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    if ((e == EMFILE || e == ENFILE) && l->on_full && l->on_full(l->ud))
        return; /* a descriptor is free again: the next accept gets it */
    if ((e == EMFILE || e == ENFILE) && reserve_fd >= 0) {
        refuse_one(l);
        return;
    }
    log_warn("accept_error", "listener=%s err=%s", l->url,
             crisp_logq(evutil_socket_error_to_string(e)));
    evconnlistener_disable(lev);
    struct timeval tv = {0, 100000};
    evtimer_add(l->resume_ev, &tv);
}

/* ALPN: the listener's one protocol (arg: its wire form, length-prefixed).
 * h2 is required (gRPC cannot run without it); any other protocol is
 * offered, and a client that asks only for others goes on without ALPN. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const unsigned char *want = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, want, (unsigned)want[0] + 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return strcmp((const char *)want, "\x02h2") == 0 ? SSL_TLSEXT_ERR_ALERT_FATAL
                                                      : SSL_TLSEXT_ERR_NOACK;
}

static const char *ssl_err(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

static SSL_CTX *tls_ctx_new(const struct crisp_tls_opts *tls, char *err, size_t errlen)
{
    if (!tls || !tls->cert || !tls->key) {
        snprintf(err, errlen, "tcp:// listeners need --tls-cert and --tls-key");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", ssl_err());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
        snprintf(err, errlen, "TLS certificate %s: %s", tls->cert, ssl_err());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s: %s", tls->key, ssl_err());
        goto fail;
    }
    if (tls->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, tls->client_ca, NULL) != 1) {
            snprintf(err, errlen, "TLS client CA %s: %s", tls->client_ca, ssl_err());
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select,
                               (void *)(tls->alpn_http11 ? "\x08http/1.1" : "\x02h2"));
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Refuses to replace a live socket or a file that is not a socket. */
static int clear_stale_socket(const struct crisp_addr *a, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(a->path, &st) < 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", a->path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket; not replacing it", a->path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int live = connect(fd, (const struct sockaddr *)&a->ss, a->sslen) == 0;
    close(fd);
    if (live) {
        snprintf(err, errlen, "%s is in use: another process answers on it", a->path);
        return -1;
    }
    if (unlink(a->path) < 0) {
        snprintf(err, errlen, "cannot remove stale socket %s: %s", a->path, strerror(errno));
        return -1;
    }
    log_info("stale_socket_removed", "path=%s", crisp_logq(a->path));
    return 0;
}

static int mkdir_parents(const char *path)
{
    char tmp[108];
    snprintf(tmp, sizeof(tmp), "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return 0;
    *slash = 0;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int bind_socket(const struct crisp_addr *a, char *err, size_t errlen)
{
    int fam = a->kind == CRISP_ADDR_UNIX ? AF_UNIX : a->ss.ss_family;
    if (a->kind == CRISP_ADDR_UNIX) {
        if (mkdir_parents(a->path) < 0) {
            snprintf(err, errlen, "cannot create the folder of %s: %s", a->path, strerror(errno));
            return -1;
        }
        if (clear_stale_socket(a, err, errlen) < 0)
            return -1;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (a->kind == CRISP_ADDR_TCP) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    mode_t old = umask(a->kind == CRISP_ADDR_UNIX ? 0117 : 0);
    int rv = bind(fd, (const struct sockaddr *)&a->ss, a->sslen);
    umask(old);
    if (rv < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "%s %s: %s", rv < 0 ? "bind" : "listen",
                 a->kind == CRISP_ADDR_UNIX ? a->path : a->host, strerror(errno));
        close(fd);
        return -1;
    }
    if (a->kind == CRISP_ADDR_UNIX)
        chmod(a->path, 0660);
    return fd;
}

static int add_listener(struct event_base *base, const char *url, int fd, SSL_CTX *ssl_ctx,
                        const char *unlink_path, const struct crisp_listen_cbs *cbs, char *err,
                        size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l)
        goto fail;
    l->base = base;
    l->on_accept = cbs->on_accept;
    l->on_full = cbs->on_full;
    l->ud = cbs->ud;
    l->ssl_ctx = ssl_ctx;
    snprintf(l->url, sizeof(l->url), "%s", url);
    if (unlink_path)
        snprintf(l->unlink_path, sizeof(l->unlink_path), "%s", unlink_path);
    l->resume_ev = evtimer_new(base, on_resume, l);
    if (!l->resume_ev)
        goto fail;
    keep_reserve();
    l->lev = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                0, fd);
    if (!l->lev)
        goto fail;
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    l->next = listeners;
    listeners = l;
    log_info("listening", "addr=%s tls=%d", crisp_logq(url), ssl_ctx != NULL);
    return 0;
fail:
    snprintf(err, errlen, "out of memory");
    if (l && l->resume_ev)
        event_free(l->resume_ev);
    free(l);
    return -1;
}

static int open_systemd_fds(struct event_base *base, const struct crisp_addr *a,
                            const struct crisp_listen_cbs *cbs, char *err, size_t errlen)
{
    const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
    if (!pid || !nfds || atol(pid) != (long)getpid()) {
        snprintf(err, errlen, "fd:// listener but no sockets passed (LISTEN_PID/LISTEN_FDS unset or not for this process)");
        return -1;
    }
    int n = atoi(nfds);
    if (n < 1) {
        snprintf(err, errlen, "fd:// listener but LISTEN_FDS=%s", nfds);
        return -1;
    }
    int used = 0;
    for (int fd = 3; fd < 3 + n; fd++) {
        if (a->fd >= 0 && fd != a->fd)
            continue;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        char url[32];
        snprintf(url, sizeof(url), "fd://%d", fd);
        if (add_listener(base, url, fd, NULL, NULL, cbs, err, errlen) < 0)
            return -1;
        used++;
    }
    if (!used) {
        snprintf(err, errlen, "fd://%d was not passed (LISTEN_FDS=%d)", a->fd, n);
        return -1;
    }
    return 0;
}

/* "127.0.0.1:40123" or "[::1]:40123": where fd listens. */
static void bound_name(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[64] = "";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, outlen, "[%s]:%u", host, port);
        return;
    }
    const struct sockaddr_in *s4 = (const void *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    port = ntohs(s4->sin_port);
    snprintf(out, outlen, "%s:%u", host, port);
}

int crisp_listen_open(struct event_base *base, const char *url, const struct crisp_tls_opts *tls,
                      const struct crisp_listen_cbs *cbs, char *err, size_t errlen)
{
    return crisp_listen_open_bound(base, url, tls, cbs, NULL, 0, err, errlen);
}

int crisp_listen_open_bound(struct event_base *base, const char *url,
                            const struct crisp_tls_opts *tls, const struct crisp_listen_cbs *cbs,
                            char *bound, size_t boundlen, char *err, size_t errlen)
{
    struct crisp_addr a;
    if (crisp_addr_parse(url, &a, err, errlen) < 0)
        return -1;
    if (a.kind == CRISP_ADDR_FD)
        return open_systemd_fds(base, &a, cbs, err, errlen);
    SSL_CTX *ctx = NULL;
    int plain = tls && tls->allow_plain && !tls->cert && !tls->key;
    if (a.kind == CRISP_ADDR_TCP && !plain && !(ctx = tls_ctx_new(tls, err, errlen)))
        return -1;
    int fd = bind_socket(&a, err, errlen);
    if (fd < 0)
        goto fail_ctx;
    if (bound && a.kind == CRISP_ADDR_TCP)
        bound_name(fd, bound, boundlen);
    if (add_listener(base, url, fd, ctx, a.kind == CRISP_ADDR_UNIX ? a.path : NULL, cbs, err,
                     errlen) < 0)
        goto fail_fd;
    return 0;
fail_fd:
    close(fd);
    if (a.kind == CRISP_ADDR_UNIX)
        unlink(a.path);
fail_ctx:
    SSL_CTX_free(ctx);
    return -1;
}

void crisp_listen_close_all(void)
{
    while (listeners) {
        struct listener *l = listeners;
        listeners = l->next;
        evconnlistener_free(l->lev);
        event_free(l->resume_ev);
        if (l->unlink_path[0])
            unlink(l->unlink_path);
        /* The SSL_CTX is reference counted by OpenSSL: live connections
         * keep their SSL objects. */
        SSL_CTX_free(l->ssl_ctx);
        free(l);
    }
    if (reserve_fd >= 0)
        close(reserve_fd);
    reserve_fd = -1;
}
