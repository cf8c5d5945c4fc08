/* budget.c - caps on the bytes crisp holds for its clients (see budget.h). */
#include <assert.h>
#include <malloc.h>

#include "crisp/budget.h"

#define MIB (1024 * 1024)
#define CONN_RESP_CAP (32 * MIB)
#define PROCESS_REQ_CAP (128 * MIB)
#define PROCESS_RESP_CAP (256 * MIB)
#define PROCESS_DECODE_CAP (256 * MIB)
#define TRIM_AFTER (8 * MIB)

/* usable before crisp_budget_setup (unit tests) */
struct crisp_budget crisp_budget_process_req = {
    "process", 0, PROCESS_REQ_CAP, 0, 0,
    {&crisp_budget_process_req.waiters, &crisp_budget_process_req.waiters}};
struct crisp_budget crisp_budget_process_decode = {
    "process", 0, PROCESS_DECODE_CAP, 0, 0,
    {&crisp_budget_process_decode.waiters, &crisp_budget_process_decode.waiters}};
struct crisp_budget crisp_budget_process_resp = {
    "process", 0, PROCESS_RESP_CAP, 0, 0,
    {&crisp_budget_process_resp.waiters, &crisp_budget_process_resp.waiters}};

static size_t conn_req_cap = 32 * MIB, conn_resp_cap = CONN_RESP_CAP;
static size_t freed_since_trim;
static struct event *trim_ev;

void crisp_budget_init(struct crisp_budget *b, const char *what, size_t cap)
{
    b->what = what;
    b->used = b->peak = 0;
    b->refusals = 0;
    b->cap = cap;
    crisp_list_init(&b->waiters);
}

int crisp_budget_charge(struct crisp_budget *b, size_t n)
{
    if (n > b->cap || b->used > b->cap - n) {
        b->refusals++;
        return -1;
    }
    b->used += n;
    if (b->used > b->peak)
        b->peak = b->used;
    return 0;
}

void crisp_budget_force(struct crisp_budget *b, size_t n)
{
    b->used += n;
    if (b->used > b->peak)
        b->peak = b->used;
}

int crisp_budget_charge2(struct crisp_budget *a, struct crisp_budget *b, size_t n)
{
    if (crisp_budget_charge(a, n) < 0)
        return -1;
    if (crisp_budget_charge(b, n) < 0) {
        a->used -= n;
        return -1;
    }
    return 0;
}

static void wake_all(struct crisp_budget *b)
{
    /* a wake may charge again and stop the round: only while under half */
    while (!crisp_list_empty(&b->waiters) && b->used <= b->cap / 2) {
        struct crisp_budget_wait *w =
            crisp_container_of(b->waiters.next, struct crisp_budget_wait, link);
        crisp_list_unlink(&w->link);
        w->wake(w);
    }
}

void crisp_budget_release(struct crisp_budget *b, size_t n)
{
    assert(n <= b->used);
    b->used -= n;
    if (b->used <= b->cap / 2)
        wake_all(b);
}

void crisp_budget_wait(struct crisp_budget *b, struct crisp_budget_wait *w)
{
    if (crisp_list_is_linked(&w->link))
        return;
    b->refusals++;
    crisp_list_push_back(&b->waiters, &w->link);
}

void crisp_budget_unwait(struct crisp_budget_wait *w)
{
    crisp_list_unlink(&w->link);
}

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    freed_since_trim = 0;
    malloc_trim(0);
}

void crisp_budget_note_freed(size_t n)
{
    freed_since_trim += n;
    if (freed_since_trim < TRIM_AFTER || !trim_ev || evtimer_pending(trim_ev, NULL))
        return;
    struct timeval tv = {1, 0};
    evtimer_add(trim_ev, &tv);
}

void crisp_budget_setup(struct event_base *base, size_t max_msg)
{
    conn_req_cap = 2 * max_msg > 4 * MIB ? 2 * max_msg : 4 * MIB;
    conn_resp_cap = CONN_RESP_CAP;
    size_t preq = PROCESS_REQ_CAP > 2 * conn_req_cap ? PROCESS_REQ_CAP : 2 * conn_req_cap;
    crisp_budget_init(&crisp_budget_process_req, "process", preq);
    crisp_budget_init(&crisp_budget_process_resp, "process", PROCESS_RESP_CAP);
    crisp_budget_init(&crisp_budget_process_decode, "process", PROCESS_DECODE_CAP);
    if (base && !trim_ev)
        trim_ev = evtimer_new(base, on_trim, NULL);
}

void crisp_budget_teardown(void)
{
    if (trim_ev)
        event_free(trim_ev);
    trim_ev = NULL;
}

size_t crisp_budget_conn_req_cap(void)
{
    return conn_req_cap;
}

size_t crisp_budget_conn_resp_cap(void)
{
    return conn_resp_cap;
}
