/* subcall.c - calls crisp makes itself, to one backend (see subcall.h). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "crisp/subcall.h"

static void sc_on_output(struct crisp_call *call);

static const struct crisp_frontend_ops sc_fe_ops = {
    .on_output = sc_on_output,
};

static void sc_free(struct crisp_subcall *sc)
{
    struct crisp_call *call = sc->call;
    call->fe = NULL;
    call->fe_ctx = NULL;
    if (call->state != CRISP_CALL_FINISHED)
        crisp_call_cancel(call, GRPC_CANCELLED, "the call it served ended");
    crisp_call_unref(call);
    event_free(sc->deliver_ev);
    free(sc);
}

/* Hands on the queued messages, then the end. From the loop only. */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct crisp_subcall *sc = arg;
    struct crisp_call *call = sc->call;
    while (sc->cbs->on_msg && !sc->paused && call->out_head) {
        size_t len;
        uint8_t *msg = crisp_call_take_msg(call, &len);
        if (sc->cbs->on_msg(sc, msg, len) < 0)
            sc->paused = 1;
    }
    if (call->state != CRISP_CALL_FINISHED || (sc->cbs->on_msg && call->out_head))
        return;
    sc->cbs->on_done(sc);
    sc_free(sc);
}

static void sc_on_output(struct crisp_call *call)
{
    struct crisp_subcall *sc = call->fe_ctx;
    if (sc)
        event_active(sc->deliver_ev, EV_WRITE, 0);
}

static int copy_metadata(struct crisp_call *call, const struct crisp_call *parent)
{
    for (size_t i = 0; i < parent->req_md.n; i++) {
        const struct crisp_hdr *h = &parent->req_md.v[i];
        if (crisp_md_add(&call->req_md, h->name, h->namelen, h->value, h->valuelen) < 0)
            return -1;
    }
    int64_t left = crisp_call_remaining_us(parent);
    return left > 0 ? crisp_call_set_timeout(call, left) : 0;
}

struct crisp_subcall *crisp_subcall_new(struct event_base *base, const struct crisp_call *parent,
                                        enum crisp_rpc method, const uint8_t *req,
                                        size_t req_len, const struct crisp_subcall_cbs *cbs,
                                        void *ud)
{
    struct crisp_subcall *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    size_t max_msg = parent ? parent->max_msg : 16 << 20;
    sc->call = crisp_call_new(base, &sc_fe_ops, sc, max_msg);
    sc->deliver_ev = event_new(base, -1, 0, deliver, sc);
    sc->cbs = cbs;
    sc->ud = ud;
    if (!sc->call || !sc->deliver_ev)
        goto fail;
    struct crisp_call *call = sc->call;
    call->method = crisp_method_by_id(method);
    call->parent_id = parent ? parent->id : 0;
    call->api = CRISP_API_V1;
    crisp_call_set_whole_msgs(call);
    call->req = malloc(req_len ? req_len : 1);
    if (!call->req || (parent && copy_metadata(call, parent) < 0))
        goto fail;
    memcpy(call->req, req, req_len);
    call->req_len = req_len;
    return sc;
fail:
    if (sc->call)
        crisp_call_unref(sc->call);
    if (sc->deliver_ev)
        event_free(sc->deliver_ev);
    free(sc);
    return NULL;
}

void crisp_subcall_start(struct crisp_subcall *sc, struct crisp_backend *be)
{
    struct crisp_call *call = sc->call;
    sc->backend = be;
    if (call->deadline_us && crisp_call_remaining_us(call) <= 1) {
        crisp_call_finish(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }
    if (!crisp_call_request(call)) {
        crisp_call_finishf(call, GRPC_INTERNAL, "crisp could not decode its own %s request",
                           call->method->name);
        return;
    }
    call->state = CRISP_CALL_DISPATCHED;
    crisp_call_start_on(call, be);
}

void crisp_subcall_cancel(struct crisp_subcall *sc)
{
    sc_free(sc);
}

void crisp_subcall_resume(struct crisp_subcall *sc)
{
    sc->paused = 0;
    event_active(sc->deliver_ev, EV_WRITE, 0);
}
