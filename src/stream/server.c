/* server.c - the streaming server's process-wide part (stream.h): its
 * listener, the token cache, crisp_stream_register. State: the outstanding
 * tokens only (in memory: a restart invalidates them, and the kubelet asks
 * for new URLs). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crisp/log.h"
#include "stream/sx.h"
#include "stream/text.h"

#define TOKENS_MAX 1000 /* the kubelet's maxInFlight */
#define DEFAULT_TTL_MS 60000
#define DEFAULT_IDLE_MS (4u * 3600 * 1000)
#define DEFAULT_CREATE_MS 30000
#define CMD_MAX 4096

struct sx_token {
    struct crisp_list link;     /* oldest first */
    char tok[SX_TOKEN_LEN + 1];
    int64_t expires_us;
    struct sx_ticket *t;
};

static struct {
    int on;
    char base_url[128];
    unsigned ttl_ms, idle_ms, create_ms;
    struct crisp_list tokens;
    size_t ntokens;
} srv;

int64_t sx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

unsigned sx_create_timeout_ms(void)
{
    return srv.create_ms;
}

unsigned sx_idle_timeout_ms(void)
{
    return srv.idle_ms;
}

const char *crisp_stream_base_url(void)
{
    return srv.on ? srv.base_url : "";
}

size_t crisp_stream_conn_count(void)
{
    return sx_conns_count();
}

/* ---- tickets ----------------------------------------------------------------- */

void sx_ticket_free(struct sx_ticket *t)
{
    if (!t)
        return;
    free((char *)t->req.id);
    for (size_t i = 0; i < t->req.ncmd; i++)
        free(t->req.cmd[i]);
    free((void *)t->req.cmd);
    free((void *)t->req.ports);
    free(t);
}

static int copy_cmd(struct crisp_stream_req *dst, const struct crisp_stream_req *src)
{
    char **cmd = calloc(src->ncmd + 1, sizeof(*cmd));
    dst->cmd = cmd;
    if (!cmd)
        return -1;
    for (size_t i = 0; i < src->ncmd; i++) {
        cmd[i] = strdup(src->cmd[i]);
        if (!cmd[i])
            return -1;
        dst->ncmd = i + 1;
    }
    return 0;
}

static struct sx_ticket *ticket_copy(const struct crisp_stream_req *req,
                                     struct crisp_stream_target *target)
{
    struct sx_ticket *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->target = target;
    t->req = *req;
    t->req.id = NULL;
    t->req.cmd = NULL;
    t->req.ncmd = 0;
    t->req.ports = NULL;
    t->req.nports = 0;
    t->req.id = strdup(req->id ? req->id : "");
    int32_t *ports = req->nports ? malloc(req->nports * sizeof(*ports)) : NULL;
    if (ports)
        memcpy(ports, req->ports, req->nports * sizeof(*ports));
    t->req.ports = ports;
    t->req.nports = ports ? req->nports : 0;
    if (!t->req.id || (req->nports && !ports) || copy_cmd(&t->req, req) < 0) {
        sx_ticket_free(t);
        return NULL;
    }
    return t;
}

/* ---- the token cache ------------------------------------------------------------ */

static void token_drop(struct sx_token *k)
{
    crisp_list_unlink(&k->link);
    srv.ntokens--;
    sx_ticket_free(k->t);
    free(k);
}

static void expire_tokens(void)
{
    int64_t now = sx_now_us();
    struct crisp_list *it;
    while ((it = crisp_list_first(&srv.tokens))) {
        struct sx_token *k = crisp_container_of(it, struct sx_token, link);
        if (k->expires_us > now)
            break;
        token_drop(k);
    }
}

int crisp_stream_register(const struct crisp_stream_req *req, struct crisp_stream_target *t,
                          char *url, size_t urllen)
{
    static const char *const paths[] = {"exec", "attach", "portforward"};
    if (!srv.on)
        return CRISP_STREAM_E_OFF;
    expire_tokens();
    if (srv.ntokens >= TOKENS_MAX)
        return CRISP_STREAM_E_FULL;
    struct sx_token *k = calloc(1, sizeof(*k));
    if (!k)
        return CRISP_STREAM_E_NOMEM;
    k->t = ticket_copy(req, t);
    if (!k->t || sx_token_new(k->tok) < 0) {
        sx_ticket_free(k->t);
        free(k);
        return CRISP_STREAM_E_NOMEM;
    }
    k->expires_us = sx_now_us() + (int64_t)srv.ttl_ms * 1000;
    crisp_list_push_back(&srv.tokens, &k->link);
    srv.ntokens++;
    snprintf(url, urllen, "%s/%s/%s", srv.base_url, paths[req->kind], k->tok);
    log_debug("stream_token", "kind=%s id=%s expires_ms=%u", paths[req->kind],
              crisp_logq(req->id ? req->id : ""), srv.ttl_ms);
    return 0;
}

struct sx_ticket *sx_redeem(const char *token, enum crisp_stream_kind kind)
{
    expire_tokens();
    crisp_list_for_each(&srv.tokens, it) {
        struct sx_token *k = crisp_container_of(it, struct sx_token, link);
        if (strcmp(k->tok, token) != 0)
            continue;
        if (k->t->req.kind != kind)
            return NULL; /* an exec token is no attach token; it stays for its own use */
        struct sx_ticket *t = k->t;
        k->t = NULL;
        token_drop(k);
        return t;
    }
    return NULL;
}

void crisp_stream_forget(struct crisp_stream_target *t)
{
    struct crisp_list *it = srv.tokens.next, *next;
    for (; it && it != &srv.tokens; it = next) {
        next = it->next;
        struct sx_token *k = crisp_container_of(it, struct sx_token, link);
        if (k->t->target == t)
            token_drop(k);
    }
    sx_conns_forget(t);
}

/* ---- start and stop ---------------------------------------------------------------- */

int crisp_stream_start(struct event_base *base, const struct crisp_stream_cfg *cfg, char *err,
                       size_t errlen)
{
    assert(!srv.on);
    crisp_list_init(&srv.tokens);
    srv.ttl_ms = cfg->token_ttl_ms ? cfg->token_ttl_ms : DEFAULT_TTL_MS;
    srv.idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    srv.create_ms = cfg->create_timeout_ms ? cfg->create_timeout_ms : DEFAULT_CREATE_MS;
    if (!cfg->listen)
        return 0;
    if (strncmp(cfg->listen, "tcp://", 6) != 0) {
        snprintf(err, errlen, "--streaming-listen %s: want tcp://HOST:PORT", cfg->listen);
        return -1;
    }
    struct crisp_tls_opts tls = cfg->tls;
    tls.alpn_http11 = 1;
    tls.allow_plain = 1;
    static const struct crisp_listen_cbs cbs = {.on_accept = sx_conn_accept};
    char bound[80] = "";
    if (crisp_listen_open_bound(base, cfg->listen, &tls, &cbs, bound, sizeof(bound), err,
                                errlen) < 0)
        return -1;
    snprintf(srv.base_url, sizeof(srv.base_url), "%s://%s", tls.cert ? "https" : "http", bound);
    srv.on = 1;
    log_info("streaming_listening", "url=%s tls=%d token_ttl_ms=%u idle_timeout_ms=%u",
             crisp_logq(srv.base_url), tls.cert != NULL, srv.ttl_ms, srv.idle_ms);
    return 0;
}

void crisp_stream_stop(void)
{
    sx_conns_close_all();
    struct crisp_list *it;
    while (srv.tokens.next && (it = crisp_list_first(&srv.tokens)))
        token_drop(crisp_container_of(it, struct sx_token, link));
    srv.on = 0;
}
