/* docker_fixtures.h - the engine answers recorded by
 * test/docker/record_fixtures.py (test/unit/data/<engine>/), and what the
 * recorder asked for, for the Docker backend's unit tests. Paths are
 * relative to the repo's root, where `make unit` runs the tests. */
#ifndef CRISP_TEST_DOCKER_FIXTURES_H
#define CRISP_TEST_DOCKER_FIXTURES_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

/* record_fixtures.py's pods and containers */
#define FX_POD_NAME "fixture-pod"
#define FX_POD_NS "crisp-fixtures"
#define FX_POD_UID "f1x7ure0-0000-4000-8000-000000000001"
#define FX_POD_ATTEMPT 1
#define FX_HOSTNET_NAME "fixture-hostnet"
#define FX_CTR_ATTEMPT 2

static const char *const fx_engines[] = {"docker", "podman"};
#define FX_NENGINES 2

/* The whole file (NUL-terminated; malloc'd), or NULL with a message. */
static inline char *fx_read(const char *engine, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "test/unit/data/%s/%s", engine, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (run from the repo's root)\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = 0;
    fclose(f);
    return s;
}

static inline cJSON *fx_json(const char *engine, const char *name)
{
    char *s = fx_read(engine, name);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    if (s && !j)
        fprintf(stderr, "test/unit/data/%s/%s is not JSON\n", engine, name);
    free(s);
    return j;
}
#endif
