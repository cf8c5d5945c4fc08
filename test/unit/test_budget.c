/* Unit tests for budget.c: caps, waiters, the pair charge. */
#include "crisp/budget.h"
#include "unit.h"

static int woken;

static void on_wake(struct crisp_budget_wait *w)
{
    (void)w;
    woken++;
}

int main(void)
{
    struct crisp_budget a, b;
    crisp_budget_init(&a, "connection", 100);
    crisp_budget_init(&b, "process", 150);
    CHECK(crisp_budget_charge(&a, 60) == 0 && a.used == 60);
    CHECK(crisp_budget_charge(&a, 41) == -1 && a.used == 60 && a.refusals == 1);
    CHECK(crisp_budget_charge(&a, 40) == 0 && crisp_budget_full(&a));
    crisp_budget_release(&a, 100);
    CHECK(a.used == 0 && a.peak == 100);
    /* both or neither */
    CHECK(crisp_budget_charge2(&a, &b, 90) == 0 && a.used == 90 && b.used == 90);
    CHECK(crisp_budget_charge2(&a, &b, 20) == -1 && a.used == 90 && b.used == 90);
    crisp_budget_release(&a, 90);
    CHECK(crisp_budget_charge2(&a, &b, 70) == -1 && a.used == 0 && b.used == 90);
    /* waiters wake once usage is at or under half the cap */
    struct crisp_budget_wait w1 = {{0}, on_wake}, w2 = {{0}, on_wake};
    crisp_budget_wait(&b, &w1);
    crisp_budget_wait(&b, &w1); /* twice: once in the list */
    crisp_budget_wait(&b, &w2);
    crisp_budget_release(&b, 10); /* 80: over half */
    CHECK(woken == 0);
    crisp_budget_release(&b, 5); /* 75: half */
    CHECK(woken == 2 && crisp_list_empty(&b.waiters));
    crisp_budget_wait(&b, &w1);
    crisp_budget_unwait(&w1);
    crisp_budget_release(&b, 75);
    CHECK(woken == 2);
    crisp_budget_force(&a, 500);
    CHECK(a.used == 500 && crisp_budget_full(&a));
    crisp_budget_setup(NULL, 16 << 20);
    CHECK(crisp_budget_conn_req_cap() == 32 << 20 && crisp_budget_process_req.cap == 128 << 20);
    crisp_budget_setup(NULL, 1 << 20);
    CHECK(crisp_budget_conn_req_cap() == 4 << 20);
    return unit_summary("test_budget");
}
