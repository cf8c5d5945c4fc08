/* Unit tests for config.c: the configuration file, good and bad. */
#include <string.h>

#include "crisp/config.h"
#include "unit.h"

static char err[512];

static int parse(const char *json, struct crisp_config *c)
{
    err[0] = 0;
    return crisp_config_parse(json, strlen(json), "crisp.json", c, err, sizeof(err));
}

/* The parse fails and the message contains want. */
static int refused(const char *json, const char *want)
{
    struct crisp_config c;
    int ok = parse(json, &c) < 0 && strstr(err, want) != NULL && strncmp(err, "crisp.json: ", 12) == 0;
    if (!ok)
        fprintf(stderr, "  for %s\n  got: %s\n  want: %s\n", json, err, want);
    return ok;
}

static void test_good(void)
{
    struct crisp_config c;
    const char *json =
        "{\"backends\": {"
        "  \"containerd\": {\"kind\": \"cri\", \"endpoint\": \"unix:///run/c.sock\"},"
        "  \"docker\": {\"kind\": \"docker\", \"endpoint\": \"unix:///run/d.sock\","
        "             \"options\": {\"pod-infra-image\": \"reg/pause:1\"}}},"
        " \"handlers\": {"
        "  \"\": {\"backend\": \"containerd\"},"
        "  \"crun\": {\"backend\": \"containerd\", \"runtime\": \"crun\"},"
        "  \"docker\": {\"backend\": \"docker\"},"
        "  \"fast\": {\"backend\": \"docker\", \"runtime\": \"crun\"}},"
        " \"images\": {\"pull\": \"default\"}}";
    CHECK(parse(json, &c) == 0);
    CHECK(c.nbackends == 2 && c.nhandlers == 4 && c.default_backend == 0 && !c.pull_all);
    CHECK(strcmp(c.backends[1].kind_url, "docker:unix:///run/d.sock") == 0);
    CHECK(strcmp(c.backends[1].kind->kind, "docker") == 0);
    /* the docker backend maps handlers itself: NAME=RUNTIME options added */
    CHECK(c.backends[1].nargs == 3);
    CHECK(strcmp(c.backends[1].args[0].value, "reg/pause:1") == 0);
    CHECK(strcmp(c.backends[1].args[1].value, "docker=") == 0);
    CHECK(strcmp(c.backends[1].args[2].value, "fast=crun") == 0);
    CHECK(c.backends[0].nargs == 0); /* the relay: crisp rewrites the handler */
    CHECK(strcmp(c.handlers[1].runtime, "crun") == 0 && c.handlers[1].backend == 0);
    CHECK(strcmp(c.handlers[0].runtime, "") == 0);
    struct crisp_config d;
    CHECK(parse(json, &d) == 0 && crisp_config_backend_same(&c.backends[1], &d.backends[1]));
    CHECK(!crisp_config_backend_same(&c.backends[0], &d.backends[1]));
    crisp_config_free(&d);
    crisp_config_free(&c);
    CHECK(parse("{\"backends\": {\"a\": {\"kind\": \"cri\", \"endpoint\": \"unix:///x\"}},"
                " \"handlers\": {\"\": {\"backend\": \"a\"}}}", &c) == 0 && c.pull_all);
    crisp_config_free(&c);
}

#define ONE_BACKEND "\"backends\": {\"a\": {\"kind\": \"cri\", \"endpoint\": \"unix:///x\"}}"
#define DEFAULT_HANDLER "\"handlers\": {\"\": {\"backend\": \"a\"}}"

static void test_bad(void)
{
    CHECK(refused("{", "not valid JSON (line 1, column"));
    CHECK(refused("{\n\"backends\": [,]}", "not valid JSON (line 2"));
    CHECK(refused("[]", "want a JSON object"));
    CHECK(refused("{\"backend\": {}}", "backend: unknown field (known: backends, handlers, images)"));
    CHECK(refused("{\"backends\": {}}", "backends: want an object naming at least one backend"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"dokker\", \"endpoint\": \"unix:///x\"}}}",
                  "backends.a.kind: unknown kind \"dokker\""));
    CHECK(refused("{\"backends\": {\"a\": {\"endpoint\": \"unix:///x\"}}}", "backends.a.kind: missing"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": 3, \"endpoint\": \"unix:///x\"}}}",
                  "backends.a.kind: want a string"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"cri\"}}}", "backends.a.endpoint: missing"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"cri\", \"endpoint\": \"unix:///x\", \"tls\": 1}}}",
                  "backends.a.tls: unknown field"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"cri\", \"endpoint\": \"unix:///x\","
                  " \"options\": {\"pod-infra-image\": \"p\"}}}}",
                  "backends.a.options.pod-infra-image: the cri backend has no such option"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"docker\", \"endpoint\": \"unix:///x\","
                  " \"options\": {\"pod-infra-image\": [\"p\"]}}}}",
                  "backends.a.options.pod-infra-image: want a string"));
    CHECK(refused("{\"backends\": {\"a\": {\"kind\": \"cri\", \"endpoint\": \"u\"},"
                  " \"a\": {\"kind\": \"cri\", \"endpoint\": \"v\"}}}", "backends.\"a\": given twice"));
    CHECK(refused("{" ONE_BACKEND "}", "handlers: want an object"));
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"x\": {\"backend\": \"a\"}}}",
                  "the default handler \"\" is missing"));
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"\": {\"backend\": \"b\"}}}",
                  "handlers.\"\".backend: no backend named \"b\""));
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"\": {\"backend\": \"a\"}, \"\": {\"backend\": \"a\"}}}",
                  "handlers.\"\": given twice"));
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"\": {\"backend\": \"a\", \"runtime\": false}}}",
                  "handlers.\"\".runtime: want a string"));
    /* a cri backend answers with the runtime's name: one runtime, one handler */
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"\": {\"backend\": \"a\"},"
                  " \"crun\": {\"backend\": \"a\", \"runtime\": \"crun\"},"
                  " \"fast\": {\"backend\": \"a\", \"runtime\": \"crun\"}}}",
                  "handlers.\"fast\".runtime: \"crun\" is handler \"crun\"'s runtime on backend a too"));
    CHECK(refused("{" ONE_BACKEND ", \"handlers\": {\"\": {\"backend\": \"a\"},"
                  " \"plain\": {\"backend\": \"a\"}}}",
                  "handlers.\"plain\".runtime: \"\" is handler \"\"'s runtime on backend a too"));
    CHECK(refused("{" ONE_BACKEND ", " DEFAULT_HANDLER ", \"images\": {\"pull\": \"some\"}}",
                  "images.pull: want \"all\" or \"default\", got \"some\""));
    struct crisp_config c;
    CHECK(crisp_config_load("/nonexistent/crisp.json", &c, err, sizeof(err)) < 0 &&
          strstr(err, "/nonexistent/crisp.json: No such file or directory"));
}

int main(void)
{
    test_good();
    test_bad();
    return unit_summary("test_config");
}
