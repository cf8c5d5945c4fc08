/* Unit tests for the Docker backend's encoders (src/docker/codec.h): CRI
 * requests -> the engine's JSON bodies, queries and headers. */
#include <stdlib.h>
#include <string.h>

#include "docker/codec.h"
#include "unit.h"

static void test_make_name(void)
{
    char name[DK_NAME_MAX + 1];
    struct dk_name nm;
    CHECK(dk_make_name(name, NULL, "web", "default", "uid-1", 2) == 0);
    CHECK(strcmp(name, "k8s_POD_web_default_uid-1_2") == 0);
    CHECK(dk_make_name(name, "app", "web", "default", "uid-1", 0) == 0);
    CHECK(strcmp(name, "k8s_app_web_default_uid-1_0") == 0);
    dk_rename(name, 0x1a2b3c4d);
    CHECK(strcmp(name, "k8s_app_web_default_uid-1_0_1a2b3c4d") == 0);
    CHECK(dk_parse_name(name, &nm) == 0 && strcmp(nm.name, "app") == 0);
    /* Kubernetes' maxima: pod 253, namespace 63, container 63, uid 36 */
    char pod[254], ns[64], ctr[64], uid[37];
    memset(pod, 'p', 253), pod[253] = 0;
    memset(ns, 'n', 63), ns[63] = 0;
    memset(ctr, 'c', 63), ctr[63] = 0;
    memset(uid, 'u', 36), uid[36] = 0;
    CHECK(dk_make_name(name, ctr, pod, ns, uid, 4294967295u) == 0);
    dk_rename(name, 0xffffffffu);
    CHECK(dk_parse_name(name, &nm) == 0 && strcmp(nm.pod, pod) == 0 && strcmp(nm.uid, uid) == 0 &&
          nm.attempt == 4294967295u);
    char huge[DK_NAME_MAX];
    memset(huge, 'h', sizeof(huge) - 1), huge[sizeof(huge) - 1] = 0;
    CHECK(dk_make_name(name, "c", huge, "ns", "uid", 0) < 0); /* refused, not cut */
}

static void test_docker_labels(void)
{
    Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    Runtime__V1__PodSandboxConfig__LabelsEntry l1 = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
    Runtime__V1__PodSandboxConfig__AnnotationsEntry a1 =
        RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT;
    char longkey[3000];
    memset(longkey, 'k', sizeof(longkey) - 1), longkey[sizeof(longkey) - 1] = 0;
    l1.key = "app", l1.value = "web";
    a1.key = longkey, a1.value = "v";
    Runtime__V1__PodSandboxConfig__LabelsEntry *ls[] = {&l1};
    Runtime__V1__PodSandboxConfig__AnnotationsEntry *as[] = {&a1};
    c.n_labels = 1, c.labels = ls;
    c.n_annotations = 1, c.annotations = as;
    cJSON *dst = cJSON_CreateObject();
    CHECK(dk_docker_labels(dst, &c.base) == 0);
    CHECK(strcmp(dk_str(dst, "app"), "web") == 0);
    char want[3100];
    snprintf(want, sizeof(want), "annotation.%s", longkey);
    CHECK(strcmp(dk_str(dst, want), "v") == 0); /* the whole key, never cut */
    CHECK(cJSON_GetArraySize(dst) == 2);
    cJSON_Delete(dst);
}

int main(void)
{
    test_make_name();
    test_docker_labels();
    return unit_summary("test_docker_encode");
}
