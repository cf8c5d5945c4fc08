/* libFuzzer harness for the configuration file parser (src/core/config.c).
 *
 *   make fuzz && build/fuzz/fuzz_config -max_total_time=60 test/fuzz/corpus/config
 *
 * Two backend kinds stand in for crisp's (same shape: one maps handlers
 * itself through a repeatable option, one does not). A file the parser
 * accepts must be whole: every handler names an existing backend, the
 * default handler is there, every option belongs to its backend's kind,
 * and the error message of a refused one names the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/config.h"

static const struct crisp_backend_opt docker_opts[] = {
    {.name = "pod-infra-image", .arg = "IMAGE", .help = "x"},
    {.name = "runtime-handler", .arg = "N=R", .help = "x", .repeatable = 1},
    {.name = NULL},
};
const struct crisp_backend_ops crisp_backend_cri_ops = {.kind = "cri"};
const struct crisp_backend_ops crisp_backend_docker_ops = {
    .kind = "docker", .opts = docker_opts, .handler_option = "runtime-handler"};

static int own_option(const struct crisp_config_backend *b, const struct crisp_backend_opt *o)
{
    for (const struct crisp_backend_opt *k = b->kind->opts; k && k->name; k++)
        if (k == o)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct crisp_config c;
    char err[512];
    if (crisp_config_parse((const char *)data, size, "fuzz.json", &c, err, sizeof(err)) < 0) {
        if (strncmp(err, "fuzz.json", 9) != 0)
            abort();
        return 0;
    }
    int has_default = 0;
    for (size_t i = 0; i < c.nhandlers; i++) {
        if (c.handlers[i].backend >= c.nbackends)
            abort();
        has_default |= c.handlers[i].name[0] == 0;
    }
    if (!has_default || c.default_backend >= c.nbackends)
        abort();
    for (size_t i = 0; i < c.nbackends; i++)
        for (size_t k = 0; k < c.backends[i].nargs; k++)
            if (!own_option(&c.backends[i], c.backends[i].args[k].opt) || !c.backends[i].args[k].value)
                abort();
    crisp_config_free(&c);
    return 0;
}
