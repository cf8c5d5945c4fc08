/* libFuzzer harness for the Docker backend's decoders (src/docker/decode.c,
 * decode_stats.c, meta.c, json.c): engine JSON -> CRI messages.
 *
 *   make fuzz && build/fuzz/fuzz_docker -max_total_time=60 test/fuzz/corpus/docker
 *
 * Input: byte 0 picks what the JSON is taken for (an inspect, a list, an
 * event, a version or info answer, stats, a pull line, an image), the rest
 * is the engine's answer; the seed corpus is the answers recorded from
 * dockerd 20.10 and podman 4.3 (test/unit/data). Whatever the decoders
 * build must pack as a valid protobuf message (every pointer set, every
 * string NUL-terminated), and the container-name parser must not read past
 * the name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "docker/codec.h"

static void pack(const void *msg)
{
    if (!msg)
        return;
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    if (protobuf_c_message_pack(msg, buf) != n)
        abort();
    free(buf);
}

static void lists(struct dk_arena *a, const cJSON *j)
{
    Runtime__V1__PodSandbox **pods;
    Runtime__V1__Container **ctrs;
    Runtime__V1__Image **imgs;
    size_t n = dk_sandboxes_from_list(a, j, NULL, &pods);
    for (size_t i = 0; i < n; i++)
        pack(pods[i]);
    n = dk_containers_from_list(a, j, NULL, &ctrs);
    for (size_t i = 0; i < n; i++)
        pack(ctrs[i]);
    n = dk_images_from_list(a, j, &imgs);
    for (size_t i = 0; i < n; i++)
        pack(imgs[i]);
}

static void singles(struct dk_arena *a, const cJSON *j)
{
    pack(dk_sandbox_status(a, j));
    pack(dk_container_status(a, j));
    pack(dk_image(a, j, "busybox:1"));
    struct dk_event ev;
    if (dk_event_from_json(j, &ev) == 0)
        pack(&ev.resp);
    struct dk_cpu_cache *cpu = calloc(1, sizeof(*cpu));
    struct dk_stats_ctx sc = {a, cpu, 1, "/var/lib/docker"};
    struct dk_stats_item it = dk_stats_item_sized(j, (cJSON *)j, 1);
    pack(dk_container_stats(&sc, &it));
    pack(dk_pod_stats(&sc, &it, &it, 1));
    free(cpu);
}

static void engine(struct dk_arena *a, const cJSON *j)
{
    struct dk_engine_api api;
    dk_engine_api(j, &api);
    Runtime__V1__VersionResponse v = RUNTIME__V1__VERSION_RESPONSE__INIT;
    dk_version_response(a, j, &v);
    pack(&v);
    dk_cgroup_driver(j);
    (void)dk_storage_root(j);
    const char *msg = dk_pull_error(j);
    if (!msg)
        abort();
    dk_pull_code(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *name = malloc(size);
    if (!name)
        return 0;
    memcpy(name, data + 1, size - 1);
    name[size - 1] = 0;
    struct dk_name nm;
    if (dk_parse_name(name, &nm) == 0 && (!nm.name || !nm.pod || !nm.ns || !nm.uid))
        abort();
    cJSON *j = cJSON_ParseWithLength((const char *)data + 1, size - 1);
    struct dk_arena a = {0};
    switch (data[0] % 3) {
    case 0:
        lists(&a, j);
        break;
    case 1:
        singles(&a, j);
        break;
    default:
        engine(&a, j);
    }
    dk_arena_free(&a);
    cJSON_Delete(j);
    free(name);
    return 0;
}
