/* Unit tests for what the Docker backend's view (src/docker/view.c) takes
 * from the engine's events: which container actions may change a list
 * (dk_event_changes_lists, decode.c), on the events recorded from dockerd
 * 20.10 and podman 4.3 (test/unit/data/<engine>/events.jsonl) and on the
 * actions that the recordings do not hold. */
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

int main(void)
{
    test_harmless_actions();
    for (int i = 0; i < FX_NENGINES; i++)
        test_recorded_events_change_lists(fx_engines[i]);
    return unit_summary("test_docker_view");
}
