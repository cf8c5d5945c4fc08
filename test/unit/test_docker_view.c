/* Unit tests for what the Docker backend's view (src/docker/view.c) takes
 * from the engine's events: which container actions may change a list
 * (dk_event_changes_lists, decode.c), on the events recorded from dockerd
 * 20.10 and podman 4.3 (test/unit/data/<engine>/events.jsonl) and on the
 * actions that the recordings do not hold; what recorded listings and
 * inspects meet of a change's expectation; and the table of what the view
 * knows per container ID (facts.c), status answers included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker/codec.h"
#include "docker_fixtures.h"
#include "unit.h"

/* Every recorded event is a create, start, die, kill, stop, oom, destroy,
 * or podman's init, cleanup, remove: each may change a list. */
static void test_recorded_events_change_lists(const char *engine)
{
    char *all = fx_read(engine, "events.jsonl");
    CHECK(all != NULL);
    int n = 0;
    for (char *line = all ? strtok(all, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *ev = cJSON_Parse(line);
        const char *action = dk_str(ev, "Action");
        CHECK(*action);
        CHECK(dk_event_changes_lists(action));
        cJSON_Delete(ev);
        n++;
    }
    CHECK(n >= 20);
    free(all);
}

static void test_harmless_actions(void)
{
    static const char *const harmless[] = {
        "exec_create: sh -c true", "exec_start: sh -c true", "exec_die", "exec_detach",
        "exec",          "exec_died",    "health_status: healthy", "health_status",
        "attach",        "detach",       "resize",        "top",   "archive-path",
        "extract-to-dir", "export",      "copy",          "commit", "mount", "unmount"};
    for (size_t i = 0; i < sizeof(harmless) / sizeof(harmless[0]); i++)
        CHECK(!dk_event_changes_lists(harmless[i]));
    /* what changes a list, and what crisp does not know, does */
    static const char *const changes[] = {"create", "start", "restart", "die", "destroy", "rename",
                                          "pause", "unpause", "oom", "kill", "stop", "update",
                                          "init", "remove", "cleanup", "", "something-new",
                                          "attached", "topology"};
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++)
        CHECK(dk_event_changes_lists(changes[i]));
}

/* What a listing must show after each recorded event: every event of the
 * recordings names its container by a full ID and its kind by the type
 * label (the view patches that kind's listing); a create, start, die and
 * destroy (podman: remove) expect the entry, it running, not running, none. */
static void test_recorded_events_expectations(const char *engine)
{
    char *all = fx_read(engine, "events.jsonl");
    int seen[DK_EXPECT_GONE + 1] = {0};
    for (char *line = all ? strtok(all, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *ev = cJSON_Parse(line);
        const cJSON *attrs = dk_obj(dk_obj(ev, "Actor"), "Attributes");
        const char *type = dk_str(attrs, DK_LABEL_TYPE);
        CHECK(dk_full_id(dk_str(dk_obj(ev, "Actor"), "ID")));
        CHECK(strcmp(type, DK_TYPE_SANDBOX) == 0 || strcmp(type, DK_TYPE_CONTAINER) == 0);
        seen[dk_event_expect(dk_str(ev, "Action"))]++;
        cJSON_Delete(ev);
    }
    CHECK(seen[DK_EXPECT_PRESENT] && seen[DK_EXPECT_RUNNING] && seen[DK_EXPECT_NOT_RUNNING] &&
          seen[DK_EXPECT_GONE]);
    free(all);
    CHECK(dk_event_expect("kill") == DK_EXPECT_ANY && dk_event_expect("oom") == DK_EXPECT_ANY &&
          dk_event_expect("init") == DK_EXPECT_ANY && dk_event_expect("restart") == DK_EXPECT_RUNNING &&
          dk_event_expect("stop") == DK_EXPECT_NOT_RUNNING && dk_event_expect("") == DK_EXPECT_ANY);
}

/* Expectations met or not by a recorded listing. */
static void test_listing_meets(const char *engine)
{
    cJSON *list = fx_json(engine, "containers_list.json");
    const cJSON *e;
    int running = 0, stopped = 0;
    cJSON_ArrayForEach(e, list) {
        const char *id = dk_str(e, "Id");
        int is_running = strcmp(dk_str(e, "State"), "running") == 0;
        running += is_running;
        stopped += !is_running;
        CHECK(dk_listing_meets(list, id, DK_EXPECT_PRESENT) && !dk_listing_meets(list, id, DK_EXPECT_GONE));
        CHECK(dk_listing_meets(list, id, DK_EXPECT_RUNNING) == is_running);
        CHECK(dk_listing_meets(list, id, DK_EXPECT_NOT_RUNNING) == !is_running);
        CHECK(dk_listing_meets(list, id, DK_EXPECT_ANY));
    }
    CHECK(running > 0 && stopped > 0);
    const char *gone = "0000000000000000000000000000000000000000000000000000000000000000";
    CHECK(!dk_listing_meets(list, gone, DK_EXPECT_PRESENT) && !dk_listing_meets(list, gone, DK_EXPECT_RUNNING) &&
          dk_listing_meets(list, gone, DK_EXPECT_NOT_RUNNING) && dk_listing_meets(list, gone, DK_EXPECT_GONE));
    cJSON_Delete(list);
}

static void test_facts(void)
{
    static struct dk_facts t;
    char id[80];
    CHECK(dk_fact_get(&t, "abc") == NULL);
    struct dk_fact *f = dk_fact_add(&t, "abc");
    CHECK(f && f->pid == 0 && f->size_ns == -1 && t.n == 1);
    f->pid = 42;
    CHECK(dk_fact_add(&t, "abc") == f && t.n == 1);
    CHECK(dk_fact_get(&t, "abcd") == NULL && dk_fact_get(&t, "ab") == NULL);
    /* IDs crisp cannot keep: none, empty, longer than 64 */
    memset(id, 'a', 65);
    id[65] = 0;
    CHECK(dk_fact_add(&t, id) == NULL && dk_fact_add(&t, "") == NULL && dk_fact_add(&t, NULL) == NULL);
    id[64] = 0;
    CHECK(dk_fact_add(&t, id) != NULL && t.n == 2);
    /* many, colliding in buckets: each found again, deleted one by one */
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%064x", i);
        struct dk_fact *g = dk_fact_add(&t, id);
        CHECK(g != NULL);
        if (g)
            g->size_rw = i;
    }
    CHECK(t.n == 5002);
    struct dk_fact *abc = dk_fact_get(&t, "abc");
    abc->pid_start = 7;
    abc->cg = (struct dk_cgroup){strdup("/sys/fs/cgroup/x"), NULL, NULL, 0};
    dk_facts_forget_pids(&t);
    CHECK(abc->pid == 0 && abc->pid_start == 0 && abc->cg.cpu == NULL);
    abc->cg = (struct dk_cgroup){strdup("/sys/fs/cgroup/y"), NULL, NULL, 0};
    abc->pid = 9;
    dk_fact_forget_pid(abc);
    CHECK(abc->pid == 0 && abc->cg.cpu == NULL);
    abc->cg = (struct dk_cgroup){strdup("/sys/fs/cgroup/z"), NULL, NULL, 0}; /* freed by the clear below */
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%064x", i);
        struct dk_fact *g = dk_fact_get(&t, id);
        found += g && g->size_rw == i;
        if (i % 2)
            dk_fact_del(&t, id);
    }
    CHECK(found == 5000 && t.n == 2502);
    snprintf(id, sizeof(id), "%064x", 1);
    CHECK(dk_fact_get(&t, id) == NULL);
    snprintf(id, sizeof(id), "%064x", 2);
    CHECK(dk_fact_get(&t, id) != NULL);
    dk_fact_del(&t, "not-there");
    CHECK(t.n == 2502);
    dk_facts_clear(&t);
    CHECK(t.n == 0 && dk_fact_get(&t, "abc") == NULL);
}

/* Expectations met or not by recorded inspects: running ones and stopped
 * ones (exited, failed, OOM-killed, a stopped sandbox). */
static void test_inspect_meets(const char *engine)
{
    static const struct {
        const char *file;
        int running;
    } ins[] = {
        {"container_running_inspect.json", 1}, {"sandbox_inspect.json", 1},
        {"container_exited_inspect.json", 0},  {"container_failed_inspect.json", 0},
        {"container_oom_inspect.json", 0},     {"sandbox_stopped_inspect.json", 0},
    };
    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
        cJSON *j = fx_json(engine, ins[i].file);
        CHECK(j != NULL);
        CHECK(dk_inspect_meets(j, DK_EXPECT_RUNNING) == ins[i].running);
        CHECK(dk_inspect_meets(j, DK_EXPECT_NOT_RUNNING) == !ins[i].running);
        CHECK(dk_inspect_meets(j, DK_EXPECT_PRESENT) && dk_inspect_meets(j, DK_EXPECT_ANY) &&
              !dk_inspect_meets(j, DK_EXPECT_GONE));
        cJSON_Delete(j);
    }
}

/* Status answers kept: counted in status_bytes, freed when replaced,
 * forgotten, deleted or cleared; none kept past DK_STATUS_BYTES_MAX. */
static void test_fact_statuses(void)
{
    static struct dk_facts t;
    struct dk_fact *a = dk_fact_add(&t, "a"), *b = dk_fact_add(&t, "b");
    CHECK(dk_fact_keep_status(&t, a, malloc(100), 100, 7, 1) == 0 && a->status_len == 100 && a->status_rpc == 7);
    CHECK(dk_fact_keep_status(&t, a, malloc(40), 40, 8, 2) == 0 && t.status_bytes == 40 && a->status_ms == 2);
    CHECK(dk_fact_keep_status(&t, b, malloc(60), 60, 7, 3) == 0 && t.status_bytes == 100);
    dk_fact_forget_status(&t, a);
    CHECK(a->status == NULL && a->status_len == 0 && t.status_bytes == 60);
    dk_fact_forget_status(&t, a); /* twice: nothing more */
    CHECK(t.status_bytes == 60);
    /* past the cap: refused, freed (ASan/valgrind see a leak otherwise), the others kept */
    CHECK(dk_fact_keep_status(&t, a, malloc(16), DK_STATUS_BYTES_MAX - 59, 7, 4) == -1);
    CHECK(a->status == NULL && t.status_bytes == 60 && b->status_len == 60);
    CHECK(dk_fact_keep_status(&t, a, malloc(16), DK_STATUS_BYTES_MAX - 60, 7, 4) == 0 &&
          t.status_bytes == DK_STATUS_BYTES_MAX);
    dk_fact_del(&t, "a");
    CHECK(t.status_bytes == 60);
    a = dk_fact_add(&t, "a");
    CHECK(dk_fact_keep_status(&t, a, malloc(10), 10, 7, 5) == 0 && t.status_bytes == 70);
    dk_facts_forget_statuses(&t);
    CHECK(t.status_bytes == 0 && a->status == NULL && b->status == NULL && t.n == 2);
    CHECK(dk_fact_keep_status(&t, b, malloc(5), 5, 7, 6) == 0);
    dk_facts_clear(&t);
    CHECK(t.status_bytes == 0 && t.n == 0);
}

int main(void)
{
    test_facts();
    test_fact_statuses();
    test_harmless_actions();
    for (int i = 0; i < FX_NENGINES; i++) {
        test_recorded_events_change_lists(fx_engines[i]);
        test_recorded_events_expectations(fx_engines[i]);
        test_listing_meets(fx_engines[i]);
        test_inspect_meets(fx_engines[i]);
    }
    return unit_summary("test_docker_view");
}
