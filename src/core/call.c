/* call.c - the call object shared by the front end and a backend. */
#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/grpc.h"
#include "crisp/log.h"
#include "crisp/zalloc.h"
#include "runtime_v1.pb-c.h"

#define CALL_MD_MAX (64 * 1024)
/* the response queue's high-water mark: with the relay's stream window
 * (relay.c) what one call holds stays under 1 MiB */
#define CALL_OUT_HIGH (512 * 1024)
/* what decoding a request may allocate: DECODE_FACTOR times its size plus
 * DECODE_BASE, at most DECODE_MAX (a 16 MiB message of empty map entries
 * would otherwise take ~700 MiB) */
#define DECODE_FACTOR 16
#define DECODE_BASE (1024 * 1024)
#define DECODE_MAX (64 * 1024 * 1024)
#define SMALL_REQUEST (64 * 1024)

static uint64_t next_call_id = 1;

static const char *const state_names[] = {"receiving", "dispatched", "finished"};

const char *crisp_call_state_to_str(enum crisp_call_state s)
{
    return (unsigned)s < 3 ? state_names[s] : "?";
}

int64_t crisp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_budget_room(struct crisp_budget_wait *w);

/* The queue reached its high-water mark since the last drained op (the
 * backend may have stopped reading) and is now down to half: however small
 * the pulls that took it there. */
static void check_drained(struct crisp_call *call)
{
    if (call->out_was_full && call->out_bytes <= call->out_high / 2) {
        call->out_was_full = 0;
        if (call->backend && call->be_ctx && call->state != CRISP_CALL_FINISHED)
            call->backend->ops->drained(call->backend, call);
    }
}
static void release_resp(struct crisp_call *call, size_t n);

struct crisp_call *crisp_call_new(struct event_base *base,
                                  const struct crisp_frontend_ops *fe,
                                  void *fe_ctx, size_t max_msg)
{
    struct crisp_call *call = crisp_zalloc(sizeof(*call));
    if (!call)
        return NULL;
    call->id = next_call_id++;
    call->refs = 1;
    call->base = base;
    call->fe = fe;
    call->fe_ctx = fe_ctx;
    call->max_msg = max_msg;
    call->out_high = CALL_OUT_HIGH;
    call->start_us = crisp_now_us();
    call->code = -1;
    crisp_md_init(&call->req_md, CALL_MD_MAX);
    crisp_md_init(&call->resp_md, CALL_MD_MAX);
    crisp_md_init(&call->trailer_md, CALL_MD_MAX);
    call->budget_wait.wake = on_budget_room;
    call->origin.pid = call->origin.uid = -1;
    return call;
}

static void chunk_free(struct crisp_out_chunk *c)
{
    if (c->data != c->raw)
        free(c->data);
    free(c);
}

static void call_free(struct crisp_call *call)
{
    CRISP_OBS(call, CRISP_OBS_FREE, NULL, 0);
    crisp_call_detach_budgets(call);
    if (call->backend)
        call->backend->inflight--;
    if (call->deadline_ev)
        event_free(call->deadline_ev);
    crisp_md_free(&call->req_md);
    crisp_md_free(&call->resp_md);
    crisp_md_free(&call->trailer_md);
    for (struct crisp_out_chunk *c = call->out_head, *next; c; c = next) {
        next = c->next;
        chunk_free(c);
    }
    if (call->req_msg)
        protobuf_c_message_free_unpacked(call->req_msg, &call->dec.a);
    assert(call->dec.used == 0);
    crisp_budget_note_freed(call->req_len);
    free(call->req);
    free(call->message);
    free(call);
}

void crisp_call_ref(struct crisp_call *call)
{
    assert(call->refs > 0);
    call->refs++;
}

void crisp_call_unref(struct crisp_call *call)
{
    assert(call->refs > 0);
    if (--call->refs == 0)
        call_free(call);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct crisp_call *call = arg;
    int64_t now = crisp_now_us();
    if (now < call->deadline_us) {
        /* The loop's clock (cached when it woke up) ran behind ours when
         * the timer was armed: not due yet. */
        int64_t left = call->deadline_us - now;
        struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
        event_base_update_cache_time(call->base);
        if (evtimer_add(call->deadline_ev, &tv) == 0)
            return;
    }
    char msg[96];
    snprintf(msg, sizeof(msg), "deadline exceeded after %.3fs",
             (double)(crisp_now_us() - call->start_us) / 1e6);
    crisp_call_cancel(call, GRPC_DEADLINE_EXCEEDED, msg);
}

int crisp_call_set_timeout(struct crisp_call *call, int64_t timeout_us)
{
    call->deadline_us = call->start_us + timeout_us;
    if (!call->deadline_ev) {
        call->deadline_ev = evtimer_new(call->base, on_deadline, call);
        if (!call->deadline_ev)
            return -1;
    }
    struct timeval tv = {(time_t)(timeout_us / 1000000), (suseconds_t)(timeout_us % 1000000)};
    /* Timers count from the loop's cached clock, which can be behind
     * start_us after a long pass: refresh it so the deadline never fires
     * before the client's. */
    event_base_update_cache_time(call->base);
    return evtimer_add(call->deadline_ev, &tv);
}

int64_t crisp_call_remaining_us(const struct crisp_call *call)
{
    if (!call->deadline_us)
        return 0;
    int64_t left = call->deadline_us - crisp_now_us();
    return left > 0 ? left : 1;
}

/* ---- decoding with a cap ------------------------------------------------ */

struct dec_block {
    size_t size;
    max_align_t data[];
};

static void *dec_alloc(void *ud, size_t n)
{
    struct crisp_call_decoder *d = ud;
    size_t need = sizeof(struct dec_block) + n;
    if (d->refused || need > d->cap - d->used ||
        crisp_budget_charge(&crisp_budget_process_decode, need) < 0) {
        d->refused = 1;
        return NULL;
    }
    struct dec_block *b = malloc(need);
    if (!b) {
        crisp_budget_release(&crisp_budget_process_decode, need);
        return NULL;
    }
    b->size = need;
    d->used += need;
    return b->data;
}

static void dec_free(void *ud, void *p)
{
    struct crisp_call_decoder *d = ud;
    if (!p)
        return;
    struct dec_block *b = (struct dec_block *)((char *)p - offsetof(struct dec_block, data));
    assert(b->size <= d->used);
    d->used -= b->size;
    crisp_budget_release(&crisp_budget_process_decode, b->size);
    free(b);
}

ProtobufCMessage *crisp_call_request(struct crisp_call *call)
{
    if (call->req_msg || call->dec.refused)
        return call->req_msg;
    size_t cap = DECODE_BASE + DECODE_FACTOR * call->req_len;
    call->dec.cap = cap < DECODE_MAX ? cap : DECODE_MAX;
    call->dec.a = (ProtobufCAllocator){dec_alloc, dec_free, &call->dec};
    call->req_msg = protobuf_c_message_unpack(call->method->req, &call->dec.a, call->req_len,
                                              call->req);
    return call->req_msg;
}

void crisp_call_dispatch(struct crisp_call *call)
{
    assert(call->state == CRISP_CALL_RECEIVING && call->method && call->req);
    call->state = CRISP_CALL_DISPATCHED;
    /* Every CRI request is checked before it leaves: an undecodable one is
     * the client's fault and gets a clear status, not a backend's guess. */
    if (!crisp_call_request(call) && call->dec.refused) {
        crisp_call_finishf(call, GRPC_RESOURCE_EXHAUSTED,
                           "decoding the %zu-byte runtime.v1.%s request needs more than the "
                           "%zu bytes a request may take", call->req_len,
                           call->method->req->short_name, call->dec.cap);
        return;
    }
    if (!call->req_msg) {
        crisp_call_finishf(call, GRPC_INVALID_ARGUMENT,
                           "request is not a valid runtime.v1.%s message (%zu bytes)",
                           call->method->req->short_name, call->req_len);
        return;
    }
    CRISP_OBS(call, CRISP_OBS_START, call->req, call->req_len);
    struct crisp_backend *be = crisp_router_pick(call);
    if (!be) {
        crisp_call_finishf(call, GRPC_UNAVAILABLE, "no backend serves %s",
                           call->method->path);
        return;
    }
    crisp_call_start_on(call, be);
}

void crisp_call_start_on(struct crisp_call *call, struct crisp_backend *be)
{
    if (call->backend)
        call->backend->inflight--;
    call->backend = be;
    be->inflight++;
    call->routed_us = crisp_now_us();
    CRISP_OBS(call, CRISP_OBS_ROUTED, NULL, 0);
    be->ops->start(be, call);
    /* a backend either finished the call or holds it */
    assert(call->state == CRISP_CALL_FINISHED || call->be_ctx || call->refs > 1);
}

void crisp_call_set_whole_msgs(struct crisp_call *call)
{
    call->whole_msgs = 1;
}

uint8_t *crisp_call_take_msg(struct crisp_call *call, size_t *len)
{
    struct crisp_out_chunk *c = call->out_head;
    if (!c)
        return NULL;
    assert(c->prefix_len == GRPC_PREFIX_LEN && c->off == 0 && c->data != c->raw);
    call->out_head = c->next;
    if (!call->out_head)
        call->out_tail = NULL;
    size_t n = c->prefix_len + c->len;
    call->out_bytes -= n;
    release_resp(call, n < call->resp_held - call->resp_credit ? n
                                                               : call->resp_held - call->resp_credit);
    uint8_t *msg = c->data;
    *len = c->len;
    free(c);
    check_drained(call);
    return msg;
}

static void notify_output(struct crisp_call *call)
{
    if (call->fe)
        call->fe->on_output(call);
}

int crisp_call_send_headers(struct crisp_call *call)
{
    if (call->state == CRISP_CALL_FINISHED)
        return -1;
    if (!call->headers_ready) {
        call->headers_ready = 1;
        notify_output(call);
    }
    return 0;
}

/* The one answer crisp rewrites: Version on v1alpha2 names the API the
 * client spoke. */
static int is_alpha_version(const struct crisp_call *call)
{
    return call->api == CRISP_API_V1ALPHA2 && call->method && call->method->id == CRISP_RPC_VERSION;
}

int crisp_call_wants_msgs(const struct crisp_call *call)
{
    return call->whole_msgs || is_alpha_version(call);
}

/* A call that came in on runtime.v1alpha2 is served by a v1 backend; the
 * one answer that names the API is Version's runtime_api_version, which must
 * name the API the client spoke. Returns the (possibly new) message. */
static uint8_t *adapt_to_api(struct crisp_call *call, uint8_t *msg, size_t *len)
{
    if (!is_alpha_version(call))
        return msg;
    Runtime__V1__VersionResponse *v = runtime__v1__version_response__unpack(NULL, *len, msg);
    if (!v)
        return msg; /* not ours to judge: relay as it came */
    char *saved = v->runtime_api_version;
    v->runtime_api_version = "v1alpha2";
    size_t n = runtime__v1__version_response__get_packed_size(v);
    uint8_t *out = malloc(n ? n : 1);
    if (out) {
        runtime__v1__version_response__pack(v, out);
        free(msg);
        msg = out;
        *len = n;
    }
    v->runtime_api_version = saved;
    runtime__v1__version_response__free_unpacked(v, NULL);
    return msg;
}

/* Queued bytes a reservation does not cover are charged as they come. */
static void charge_queued(struct crisp_call *call, size_t n)
{
    size_t covered = n < call->resp_credit ? n : call->resp_credit;
    call->resp_credit -= covered;
    if (n == covered)
        return;
    if (call->conn_resp)
        crisp_budget_force(call->conn_resp, n - covered);
    crisp_budget_force(&crisp_budget_process_resp, n - covered);
    call->resp_held += n - covered;
}

static void queue_chunk(struct crisp_call *call, struct crisp_out_chunk *c)
{
    assert(call->state != CRISP_CALL_FINISHED);
    charge_queued(call, c->prefix_len + c->len);
    c->next = NULL;
    if (call->out_tail)
        call->out_tail->next = c;
    else
        call->out_head = c;
    call->out_tail = c;
    call->out_bytes += c->prefix_len + c->len;
    if (call->out_bytes >= call->out_high)
        call->out_was_full = 1;
    call->headers_ready = 1;
    notify_output(call);
}

int crisp_call_send_msg(struct crisp_call *call, uint8_t *msg, size_t len)
{
    if (call->state == CRISP_CALL_FINISHED) {
        free(msg);
        return -1;
    }
    msg = adapt_to_api(call, msg, &len);
    CRISP_OBS(call, CRISP_OBS_MSG_OUT, msg, len);
    struct crisp_out_chunk *c = malloc(sizeof(*c));
    if (!c) {
        free(msg);
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory queueing a response");
        return -1;
    }
    grpc_prefix_write(c->prefix, len);
    c->prefix_len = GRPC_PREFIX_LEN;
    c->data = msg;
    c->len = len;
    c->off = 0;
    call->nmsgs_out++;
    queue_chunk(call, c);
    return 0;
}

int crisp_call_send_raw(struct crisp_call *call, const uint8_t *p, size_t len)
{
    if (call->state == CRISP_CALL_FINISHED)
        return -1;
    if (!len)
        return 0;
    CRISP_OBS(call, CRISP_OBS_RAW_OUT, p, len);
    struct crisp_out_chunk *c = malloc(sizeof(*c) + len);
    if (!c) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory queueing a response");
        return -1;
    }
    memcpy(c->raw, p, len);
    c->prefix_len = 0;
    c->data = c->raw;
    c->len = len;
    c->off = 0;
    queue_chunk(call, c);
    return 0;
}

int crisp_call_send_pb(struct crisp_call *call, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        crisp_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory encoding a response");
        return -1;
    }
    protobuf_c_message_pack(m, buf);
    return crisp_call_send_msg(call, buf, len);
}

static struct crisp_budget *full_resp_budget(struct crisp_call *call)
{
    if (call->conn_resp && crisp_budget_full(call->conn_resp))
        return call->conn_resp;
    if (crisp_budget_full(&crisp_budget_process_resp))
        return &crisp_budget_process_resp;
    return NULL;
}

int crisp_call_out_full(struct crisp_call *call)
{
    if (call->out_bytes >= call->out_high)
        return 1;
    struct crisp_budget *b = full_resp_budget(call);
    if (b)
        crisp_budget_wait(b, &call->budget_wait);
    return b != NULL;
}

/* ---- budgets -------------------------------------------------------------- */

static void on_budget_room(struct crisp_budget_wait *w)
{
    struct crisp_call *call = crisp_container_of(w, struct crisp_call, budget_wait);
    if (call->backend && call->be_ctx && call->state != CRISP_CALL_FINISHED)
        call->backend->ops->drained(call->backend, call);
}

void crisp_call_set_budgets(struct crisp_call *call, struct crisp_budget *req,
                            struct crisp_budget *resp)
{
    assert(!call->req_charged && !call->resp_held);
    call->conn_req = req;
    call->conn_resp = resp;
}

static void release_resp(struct crisp_call *call, size_t n)
{
    assert(n <= call->resp_held);
    call->resp_held -= n;
    crisp_budget_note_freed(n);
    if (call->conn_resp)
        crisp_budget_release(call->conn_resp, n);
    crisp_budget_release(&crisp_budget_process_resp, n);
}

void crisp_call_detach_budgets(struct crisp_call *call)
{
    crisp_budget_unwait(&call->budget_wait);
    release_resp(call, call->resp_held);
    call->resp_credit = 0;
    if (call->conn_req)
        crisp_budget_release(call->conn_req, call->req_charged);
    crisp_budget_release(&crisp_budget_process_req, call->req_charged);
    call->req_charged = 0;
    call->conn_req = call->conn_resp = NULL;
}

/* Charges n to the connection's budget (if any) and the process's; on
 * failure *which is the one that refused. */
static int charge_pair(struct crisp_budget *conn, struct crisp_budget *proc, size_t n,
                       struct crisp_budget **which)
{
    if (conn && crisp_budget_charge(conn, n) < 0) {
        *which = conn;
        return -1;
    }
    if (crisp_budget_charge(proc, n) < 0) {
        if (conn)
            conn->used -= n; /* a rollback: no waiter to wake */
        *which = proc;
        return -1;
    }
    return 0;
}

int crisp_call_charge_request(struct crisp_call *call, size_t n, const struct crisp_budget **which)
{
    struct crisp_budget *refused;
    struct crisp_budget *proc = &crisp_budget_process_req;
    /* big requests may take only 3/4 of the process's budget: the rest is
     * for small ones (a kubelet's), which big held bodies cannot starve */
    if (n > SMALL_REQUEST && proc->used + n > proc->cap / 4 * 3) {
        proc->refusals++;
        *which = proc;
        return -1;
    }
    if (charge_pair(call->conn_req, &crisp_budget_process_req, n, &refused) < 0) {
        *which = refused;
        return -1;
    }
    call->req_charged += n;
    return 0;
}

int crisp_call_reserve(struct crisp_call *call, size_t n)
{
    struct crisp_budget *refused;
    if (charge_pair(call->conn_resp, &crisp_budget_process_resp, n, &refused) < 0) {
        crisp_budget_wait(refused, &call->budget_wait);
        return -1;
    }
    call->resp_held += n;
    call->resp_credit += n;
    return 0;
}

/* One line per call: failed calls at info, the rest at debug. A call crisp
 * made itself (subcall.h) names the call it served and its backend, at
 * debug only: its outcome shows in that call's line. The first observer of
 * calls (observe.h). */
static void log_done(struct crisp_observer *o, unsigned ev, struct crisp_call *call,
                     const uint8_t *p, size_t n)
{
    (void)o;
    (void)ev;
    (void)p;
    (void)n;
    enum crisp_log_level lvl = call->code == GRPC_OK || call->parent_id ? CRISP_LOG_DEBUG
                                                                          : CRISP_LOG_INFO;
    if (!CRISP_LOG_ENABLED(lvl))
        return;
    char sub[192] = "";
    if (call->parent_id)
        snprintf(sub, sizeof(sub), " parent=%llu backend=%s", (unsigned long long)call->parent_id,
                 crisp_logq(call->backend ? call->backend->name : "-"));
    crisp_log(lvl, "call", "id=%llu method=%s api=%s code=%s dur_us=%lld msgs_out=%u%s message=%s",
              (unsigned long long)call->id, call->method ? call->method->name : "-",
              crisp_api_to_str(call->api), grpc_code_to_str(call->code),
              (long long)(crisp_now_us() - call->start_us), call->nmsgs_out, sub,
              crisp_logq(call->message ? call->message : ""));
}

void crisp_call_finish(struct crisp_call *call, int code, const char *message)
{
    if (call->state == CRISP_CALL_FINISHED)
        return;
    call->state = CRISP_CALL_FINISHED;
    call->code = code;
    /* nothing more will be queued: what was reserved for it goes back */
    if (call->resp_credit) {
        size_t credit = call->resp_credit;
        call->resp_credit = 0;
        release_resp(call, credit);
    }
    crisp_budget_unwait(&call->budget_wait);
    free(call->message);
    call->message = message && *message ? strdup(message) : NULL;
    if (call->deadline_ev)
        evtimer_del(call->deadline_ev);
    call->finished_us = crisp_now_us();
    CRISP_OBS(call, CRISP_OBS_FINISH, NULL, 0);
    notify_output(call);
}

void crisp_call_finishf(struct crisp_call *call, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    crisp_call_finish(call, code, msg);
}

size_t crisp_call_pull(struct crisp_call *call, uint8_t *dst, size_t n)
{
    size_t done = 0;
    while (done < n && call->out_head) {
        struct crisp_out_chunk *c = call->out_head;
        size_t total = c->prefix_len + c->len;
        while (done < n && c->off < c->prefix_len)
            dst[done++] = c->prefix[c->off++];
        size_t take = total - c->off;
        if (take > n - done)
            take = n - done;
        if (take) {
            memcpy(dst + done, c->data + (c->off - c->prefix_len), take);
            c->off += take;
            done += take;
        }
        if (c->off == total) {
            call->out_head = c->next;
            if (!call->out_head)
                call->out_tail = NULL;
            chunk_free(c);
        }
    }
    assert(done <= call->out_bytes);
    call->out_bytes -= done;
    release_resp(call, done < call->resp_held - call->resp_credit ? done
                                                                  : call->resp_held - call->resp_credit);
    check_drained(call);
    return done;
}

void crisp_call_cancel(struct crisp_call *call, int code, const char *message)
{
    crisp_call_ref(call);
    if (call->backend && call->be_ctx)
        call->backend->ops->cancel(call->backend, call);
    crisp_call_finish(call, code, message);
    crisp_call_unref(call);
}

static struct crisp_observer log_observer = {
    .name = "log",
    .events = CRISP_OBS_FINISH,
    .on_event = log_done,
};

int crisp_call_log_init(void)
{
    return crisp_observe(&log_observer);
}
