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

static void test_parse_name(void)
{
    struct dk_name nm;
    CHECK(dk_parse_name("/k8s_POD_web_default_0123-uid_3", &nm) == 0);
    CHECK(strcmp(nm.name, "POD") == 0 && strcmp(nm.pod, "web") == 0 &&
          strcmp(nm.ns, "default") == 0 && strcmp(nm.uid, "0123-uid") == 0 && nm.attempt == 3);
    CHECK(dk_parse_name("k8s_app_web_default_uid_0_1a2b3c4d", &nm) == 0); /* renamed */
    CHECK(strcmp(nm.name, "app") == 0 && nm.attempt == 0);
    CHECK(dk_parse_name("/k8s_app_web_default_uid", &nm) < 0);
    CHECK(dk_parse_name("/k8s_app_web_default_uid_x", &nm) < 0);
    CHECK(dk_parse_name("/other_app_web_default_uid_0", &nm) < 0);
    CHECK(dk_parse_name("/k8s_a_b_c_d_0_e_f", &nm) < 0);
    CHECK(dk_parse_name(NULL, &nm) < 0);
}

/* Docker labels -> a CRI message's labels and annotations. */
static void test_cri_labels(void)
{
    struct dk_arena a = {0};
    cJSON *labels = cJSON_Parse("{\"app\":\"web\",\"annotation.a/b\":\"1\","
                                "\"io.kubernetes.docker.type\":\"podsandbox\","
                                "\"io.kubernetes.sandbox.id\":\"x\",\"io.crisp.created-at\":\"5\","
                                "\"io.kubernetes.container.logpath\":\"/l\",\"num\":3}");
    Runtime__V1__PodSandbox pod = RUNTIME__V1__POD_SANDBOX__INIT;
    dk_cri_labels(&a, &pod.base, labels);
    CHECK(pod.n_labels == 1 && strcmp(pod.labels[0]->key, "app") == 0 &&
          strcmp(pod.labels[0]->value, "web") == 0);
    CHECK(pod.n_annotations == 1 && strcmp(pod.annotations[0]->key, "a/b") == 0 &&
          strcmp(pod.annotations[0]->value, "1") == 0);
    CHECK(pod.labels[0]->base.descriptor == &runtime__v1__pod_sandbox__labels_entry__descriptor);
    Runtime__V1__ContainerStatus st = RUNTIME__V1__CONTAINER_STATUS__INIT;
    dk_cri_labels(&a, &st.base, NULL);
    CHECK(st.n_labels == 0 && st.labels == NULL && st.n_annotations == 0);
    CHECK(!a.oom);
    cJSON_Delete(labels);
    dk_arena_free(&a);
}

int main(void)
{
    test_json_helpers();
    test_time();
    test_arena();
    test_parse_name();
    test_cri_labels();
    return unit_summary("test_docker_decode");
}
