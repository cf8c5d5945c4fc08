/* portforward.c - port-forward on a streaming connection (sx.h), as the
 * kubelet's portforward package. SPDY: the client opens a pair of streams
 * per forwarded connection (streamType error and data, with port and
 * requestID headers); once both are there the backend connects to the port
 * in the pod, bytes flow on the data stream, half-closes follow FINs, and
 * a failure is written on the error stream ("error forwarding port 8080 to
 * pod <sandbox>, uid : ..."). WebSocket: channels 2i (data) and 2i+1
 * (error) for the i-th port of the request, each announced by the port as
 * 16 bits little-endian, one connection per port; the WebSocket closes
 * after the last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/log.h"
#include "stream/spdy.h"
#include "stream/sx.h"
#include "stream/text.h"

#define PAIRS_MAX 512    /* forwarded connections at once on one client connection */
#define WS_PORTS_MAX 64

struct pf_pair {
    struct crisp_list link;         /* in pf->pairs */
    struct sx_pf *pf;
    char rid[32];                   /* requestID */
    int32_t port;
    uint32_t data_h, err_h;
    struct crisp_stream_sess sess;
    struct event *timer;            /* SPDY: the pair must complete in time */
    unsigned have_data : 1, have_err : 1, client_fin : 1, data_fin : 1, reset : 1;
};

struct sx_pf {
    struct sx_conn *c;
    struct crisp_list pairs;
    size_t npairs;
};

struct sx_pf *sx_pf_new(struct sx_conn *c)
{
    struct sx_pf *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return NULL;
    pf->c = c;
    crisp_list_init(&pf->pairs);
    return pf;
}

static void pair_free(struct pf_pair *p)
{
    crisp_list_unlink(&p->link);
    p->pf->npairs--;
    if (p->timer)
        event_free(p->timer);
    free(p);
}

/* The connection is going: the sessions were closed already (conn.c). */
void sx_pf_free(struct sx_pf *pf)
{
    if (!pf)
        return;
    struct crisp_list *it;
    while ((it = crisp_list_first(&pf->pairs)))
        pair_free(crisp_container_of(it, struct pf_pair, link));
    free(pf);
}

int sx_pf_live(const struct sx_pf *pf)
{
    return pf->npairs > 0;
}

/* ---- a pair's session --------------------------------------------------------------- */

static const char *sandbox_of(const struct pf_pair *p)
{
    return sx_conn_ticket(p->pf->c)->req.id;
}

static void pair_on_output_end(struct crisp_stream_sess *s)
{
    struct pf_pair *p = s->owner;
    if (!p->data_fin && !p->reset && sx_conn_proto(p->pf->c) != SX_WS)
        sx_fin(p->pf->c, p->data_h);
    p->data_fin = 1;
}

static void pair_on_exit(struct crisp_stream_sess *s, int code, const char *err)
{
    struct pf_pair *p = s->owner;
    struct sx_conn *c = p->pf->c;
    log_debug("stream_forward_end", "conn=%s port=%d request=%s err=%s", sx_conn_id(c), p->port,
              p->rid, crisp_logq(err ? err : ""));
    if (err && !p->reset) {
        char msg[1024];
        int n = snprintf(msg, sizeof(msg), "error forwarding port %d to pod %s, uid : %s", p->port,
                         sandbox_of(p), err);
        sx_send(c, p->err_h, (const uint8_t *)msg, n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : strlen(msg));
    }
    if (!p->reset && sx_conn_proto(c) != SX_WS) {
        if (!p->data_fin)
            sx_fin(c, p->data_h);
        sx_fin(c, p->err_h);
    }
    p->data_fin = 1;
}

static void pair_on_closed(struct crisp_stream_sess *s)
{
    pair_free(s->owner);
}

static struct pf_pair *pair_new(struct sx_pf *pf, const char *rid)
{
    if (pf->npairs >= PAIRS_MAX)
        return NULL;
    struct pf_pair *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->pf = pf;
    snprintf(p->rid, sizeof(p->rid), "%s", rid);
    crisp_list_push_back(&pf->pairs, &p->link);
    pf->npairs++;
    sx_sess_init(pf->c, &p->sess, sx_conn_ticket(pf->c)->target);
    p->sess.owner = p;
    p->sess.on_exit = pair_on_exit;
    p->sess.on_output_end = pair_on_output_end;
    p->sess.on_closed = pair_on_closed;
    return p;
}

static void pair_open(struct pf_pair *p)
{
    p->sess.out[1] = p->data_h;
    p->sess.out_set = 1u << 1;
    if (p->timer)
        evtimer_del(p->timer);
    log_debug("stream_forward", "conn=%s sandbox=%s port=%d request=%s", sx_conn_id(p->pf->c),
              crisp_logq(sandbox_of(p)), p->port, p->rid);
    if (sx_sess_open(&p->sess, &sx_conn_ticket(p->pf->c)->req, p->port) < 0)
        crisp_stream_exit(&p->sess, -1, "out of memory");
}

/* Ends a pair that never opened (timeout, reset, bad port) or resets one. */
static void pair_drop(struct pf_pair *p, const char *err)
{
    if (err)
        crisp_stream_exit(&p->sess, -1, err); /* writes it; the close comes from the loop */
    else
        sx_sess_close(&p->sess);
}

/* ---- SPDY --------------------------------------------------------------------------- */

static void on_pair_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pf_pair *p = arg;
    char msg[128];
    snprintf(msg, sizeof(msg), "(conn=%s, request=%s) timed out waiting for streams",
             sx_conn_id(p->pf->c), p->rid);
    pair_drop(p, msg);
}

static struct pf_pair *pair_by_rid(struct sx_pf *pf, const char *rid)
{
    crisp_list_for_each(&pf->pairs, it) {
        struct pf_pair *p = crisp_container_of(it, struct pf_pair, link);
        if (strcmp(p->rid, rid) == 0 && !p->sess.opened)
            return p;
    }
    return NULL;
}

static struct pf_pair *pair_by_handle(struct sx_pf *pf, uint32_t h, int *is_data)
{
    crisp_list_for_each(&pf->pairs, it) {
        struct pf_pair *p = crisp_container_of(it, struct pf_pair, link);
        if (p->have_data && p->data_h == h) {
            *is_data = 1;
            return p;
        }
        if (p->have_err && p->err_h == h) {
            *is_data = 0;
            return p;
        }
    }
    return NULL;
}

/* The pair a stream belongs to (made, with its timer, if new). */
static struct pf_pair *pair_for(struct sx_pf *pf, uint32_t id, const char *type,
                                const struct crisp_md *hdrs)
{
    const char *rid = sx_hdr(hdrs, "requestid");
    char derived[16];
    if (!rid || !*rid) { /* older clients: the kubelet's best effort */
        snprintf(derived, sizeof(derived), "%u", strcmp(type, "data") == 0 ? id - 2 : id);
        rid = derived;
    }
    struct pf_pair *p = pair_by_rid(pf, rid);
    if (p)
        return p;
    p = pair_new(pf, rid);
    if (!p)
        return NULL;
    p->timer = evtimer_new(sx_conn_base(pf->c), on_pair_timeout, p);
    struct timeval tv = {(time_t)(sx_create_timeout_ms() / 1000),
                         (suseconds_t)(sx_create_timeout_ms() % 1000) * 1000};
    if (p->timer)
        evtimer_add(p->timer, &tv);
    return p;
}

static int parse_port(const char *s, int32_t *port)
{
    char *end;
    long v = s && *s ? strtol(s, &end, 10) : -1;
    if (v < 1 || v > 65535 || *end)
        return -1;
    *port = (int32_t)v;
    return 0;
}

int sx_pf_stream(struct sx_pf *pf, uint32_t id, const struct crisp_md *hdrs)
{
    const char *type = sx_hdr(hdrs, "streamtype");
    if (!type || (strcmp(type, "data") != 0 && strcmp(type, "error") != 0)) {
        log_info("stream_unexpected_stream", "conn=%s stream=%u type=%s", sx_conn_id(pf->c), id,
                 crisp_logq(type ? type : ""));
        sx_reset(pf->c, id, SPDY_PROTOCOL_ERROR);
        return 0;
    }
    struct pf_pair *p = pair_for(pf, id, type, hdrs);
    if (!p) {
        sx_reset(pf->c, id, SPDY_REFUSED_STREAM);
        return 0;
    }
    int data = strcmp(type, "data") == 0;
    if (data ? p->have_data : p->have_err) {
        sx_reset(pf->c, id, SPDY_PROTOCOL_ERROR);
        return 0;
    }
    if (data) {
        p->data_h = id;
        p->have_data = 1;
    } else {
        p->err_h = id;
        p->have_err = 1;
    }
    if (parse_port(sx_hdr(hdrs, "port"), &p->port) < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "invalid port header %.64s", sx_hdr(hdrs, "port") ? sx_hdr(hdrs, "port") : "(none)");
        if (p->have_err && p->have_data)
            pair_drop(p, msg);
        return 0;
    }
    if (p->have_data && p->have_err && !p->sess.opened && !p->sess.exited)
        pair_open(p);
    return 0;
}

int sx_pf_data(struct sx_pf *pf, uint32_t h, const uint8_t *d, size_t n)
{
    int is_data;
    struct pf_pair *p = pair_by_handle(pf, h, &is_data);
    if (!p || !is_data || !n || p->client_fin || !p->sess.ctx || p->sess.exited || p->sess.closing)
        return 0;
    if (p->sess.target->ops->input(p->sess.ctx, d, n) == 1) {
        p->sess.in_blocked = 1;
        sx_pause_input(pf->c);
    }
    return 0;
}

int sx_pf_fin(struct sx_pf *pf, uint32_t h)
{
    int is_data;
    struct pf_pair *p = pair_by_handle(pf, h, &is_data);
    if (!p || !is_data || p->client_fin)
        return 0;
    p->client_fin = 1;
    if (p->sess.ctx && !p->sess.exited && !p->sess.closing)
        p->sess.target->ops->input_end(p->sess.ctx);
    return 0;
}

void sx_pf_reset(struct sx_pf *pf, uint32_t h)
{
    int is_data;
    struct pf_pair *p = pair_by_handle(pf, h, &is_data);
    if (!p)
        return;
    p->reset = 1; /* kubectl removes a pair's streams when it is done with them */
    pair_drop(p, NULL);
}

/* ---- WebSocket ------------------------------------------------------------------------- */

static int ws_pair(struct sx_pf *pf, size_t i, int32_t port)
{
    char rid[16];
    snprintf(rid, sizeof(rid), "ws%zu", i);
    struct pf_pair *p = pair_new(pf, rid);
    if (!p)
        return -1;
    p->port = port;
    p->data_h = (uint32_t)(2 * i);
    p->err_h = (uint32_t)(2 * i + 1);
    p->have_data = p->have_err = 1;
    uint8_t le[2] = {(uint8_t)port, (uint8_t)(port >> 8)};
    if (sx_send(pf->c, p->data_h, le, 2) < 0 || sx_send(pf->c, p->err_h, le, 2) < 0)
        return -1;
    pair_open(p);
    return 0;
}

int sx_pf_ws_open(struct sx_pf *pf, int base64)
{
    const struct crisp_stream_req *r = &sx_conn_ticket(pf->c)->req;
    int32_t ports[WS_PORTS_MAX];
    int n = (int)r->nports;
    if (n > WS_PORTS_MAX)
        n = WS_PORTS_MAX;
    if (n)
        memcpy(ports, r->ports, (size_t)n * sizeof(ports[0]));
    else
        n = sx_query_ports(sx_conn_query(pf->c), ports, WS_PORTS_MAX);
    if (n <= 0) {
        log_info("stream_refused", "conn=%s why=\"query parameter \\\"port\\\" is required\"",
                 sx_conn_id(pf->c));
        sx_finish(pf->c);
        return 0;
    }
    sx_conn_created(pf->c);
    for (int i = 0; i < n; i++)
        if (ws_pair(pf, (size_t)i, ports[i]) < 0)
            return -1;
    return 0;
}
