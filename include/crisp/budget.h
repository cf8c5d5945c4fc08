/* budget.h - caps on the bytes crisp holds for its clients.
 *
 * Two kinds of bytes are held for a client: requests being received (their
 * size is the client's choice) and responses on their way to a client that
 * may read slowly. Each is charged to a budget of the client's connection
 * and to one of the whole process:
 *  - a request that would take a budget over its cap is refused at once
 *    (RESOURCE_EXHAUSTED), before its bytes are stored;
 *  - response bytes are reserved before a backend may produce them (the
 *    relay grants its runtime flow-control window out of them); a call whose
 *    reservation does not fit waits on the budget (its waiters list) and is
 *    woken when the budget has gone down to half its cap.
 * So what crisp holds for clients is bounded per connection and per process,
 * not only per call.
 *
 * No I/O; single-threaded like the rest of crisp. Error contract: charge
 * functions return 0, or -1 when the cap does not allow it (nothing charged
 * then). */
#ifndef CRISP_BUDGET_H
#define CRISP_BUDGET_H

#include <stddef.h>
#include <event2/event.h>

#include "crisp/list.h"

struct crisp_budget {
    const char *what;         /* for messages: "connection", "process" */
    size_t used, cap, peak;
    unsigned long refusals;   /* charges refused (requests) or made to wait */
    struct crisp_list waiters;/* who waits for room (struct crisp_budget_wait) */
};

/* A party waiting for room in a budget. */
struct crisp_budget_wait {
    struct crisp_list link;
    void (*wake)(struct crisp_budget_wait *w);
};

void crisp_budget_init(struct crisp_budget *b, const char *what, size_t cap);
static inline int crisp_budget_full(const struct crisp_budget *b)
{
    return b->used >= b->cap;
}

/* Charges n bytes if they fit under the cap. */
int crisp_budget_charge(struct crisp_budget *b, size_t n);
/* Charges n bytes even past the cap (bytes that exist already, e.g. a
 * whole response message a backend built). */
void crisp_budget_force(struct crisp_budget *b, size_t n);
/* Charges n bytes to both budgets, or to neither. */
int crisp_budget_charge2(struct crisp_budget *a, struct crisp_budget *b, size_t n);
/* Gives n bytes back; wakes the waiters once usage is at or under half the
 * cap (each wake runs once and unlinks its waiter first). */
void crisp_budget_release(struct crisp_budget *b, size_t n);
void crisp_budget_wait(struct crisp_budget *b, struct crisp_budget_wait *w);
void crisp_budget_unwait(struct crisp_budget_wait *w);

/* The process's budgets (caps set by crisp_budget_setup). */
extern struct crisp_budget crisp_budget_process_req;
extern struct crisp_budget crisp_budget_process_resp;
/* what decoded requests take (each also capped per call, see call.c) */
extern struct crisp_budget crisp_budget_process_decode;

/* Caps from the largest message allowed (--max-message-size): per
 * connection, requests 2 messages (at least 4 MiB) and responses 32 MiB;
 * per process, requests 128 MiB (at least two connections' worth; requests
 * over 64 KiB may take only three quarters of it), responses 256 MiB and
 * decoded requests 256 MiB. */
void crisp_budget_setup(struct event_base *base, size_t max_msg);
void crisp_budget_teardown(void);
size_t crisp_budget_conn_req_cap(void);
size_t crisp_budget_conn_resp_cap(void);

/* Memory that the allocator keeps after a burst goes back to the system:
 * callers report large frees; once 8 MiB have been freed, a trim
 * (malloc_trim) runs from the loop a second later. */
void crisp_budget_note_freed(size_t n);

#endif
