/* Unit tests for the Docker backend's decoders (src/docker/codec.h):
 * engine answers recorded from dockerd 20.10 and podman 4.3
 * (test/unit/data/, test/docker/record_fixtures.py) -> CRI messages. */
#include <stdlib.h>
#include <string.h>

#include "docker/codec.h"
#include "docker_fixtures.h"
#include "unit.h"

static void test_json_helpers(void)
{
    cJSON *j = cJSON_Parse("{\"s\":\"running\",\"n\":42,\"t\":true,\"o\":{\"x\":1},\"bad\":7}");
    CHECK(strcmp(dk_str(j, "s"), "running") == 0);
    CHECK(dk_str_is(j, "s", "running") && !dk_str_is(j, "s", "run") && !dk_str_is(j, "nope", "x"));
    CHECK(*dk_str(j, "bad") == 0 && *dk_str(NULL, "s") == 0);
    CHECK(dk_int(j, "n") == 42 && dk_int(j, "s") == 0 && dk_int(NULL, "n") == 0);
    CHECK(dk_bool(j, "t") && !dk_bool(j, "n"));
    CHECK(dk_int(dk_obj(j, "o"), "x") == 1 && dk_obj(j, "none") == NULL);
    cJSON_Delete(j);
}

static void test_time(void)
{
    CHECK(dk_time_ns("2024-01-02T03:04:05.123456789Z") == 1704164645123456789LL);
    CHECK(dk_time_ns("2024-01-02T03:04:05.1234567891234Z") == 1704164645123456789LL);
    CHECK(dk_time_ns("2024-01-02T03:04:05Z") == 1704164645000000000LL);
    CHECK(dk_time_ns("2024-01-02T05:04:05.5+02:00") == 1704164645500000000LL);
    CHECK(dk_time_ns("0001-01-01T00:00:00Z") == 0); /* Docker's zero time */
    CHECK(dk_time_ns("") == 0 && dk_time_ns(NULL) == 0 && dk_time_ns("yesterday") == 0);
}

static void test_arena(void)
{
    struct dk_arena a = {0};
    char *big = dk_alloc(&a, 100000); /* larger than a block */
    CHECK(big && big[99999] == 0);
    CHECK(strcmp(dk_strdup(&a, "abc"), "abc") == 0 && *dk_strdup(&a, NULL) == 0);
    Runtime__V1__PodIP **v = (void *)dk_msgs(&a, &runtime__v1__pod_ip__descriptor, 3);
    CHECK(v && v[2] && v[2]->base.descriptor == &runtime__v1__pod_ip__descriptor);
    CHECK(!a.oom);
    dk_arena_free(&a);
    CHECK(a.blocks == NULL);
}

int main(void)
{
    test_json_helpers();
    test_time();
    test_arena();
    return unit_summary("test_docker_decode");
}
