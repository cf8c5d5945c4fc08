/* Unit tests for backend instances: each made from its kind, URL and own
 * options, several of one kind in a process, options checked per kind. */
#include <string.h>

#include "crisp/backend.h"
#include "crisp/method.h"
#include "docker/docker.h"
#include "unit.h"

static const struct crisp_backend_opt *opt_of(const char *kind, const char *name)
{
    for (size_t k = 0; k < crisp_backend_kind_count(); k++) {
        const struct crisp_backend_ops *ops = crisp_backend_kind_at(k);
        for (const struct crisp_backend_opt *o = ops->opts; strcmp(ops->kind, kind) == 0 && o && o->name; o++)
            if (strcmp(o->name, name) == 0)
                return o;
    }
    return NULL;
}

static void test_two_docker_instances(struct event_base *base)
{
    char err[256] = "";
    const struct crisp_backend_opt *infra = opt_of("docker", "pod-infra-image");
    const struct crisp_backend_opt *handler = opt_of("docker", "runtime-handler");
    CHECK(infra && handler && handler->repeatable && !infra->repeatable);
    struct crisp_backend_arg a_args[] = {{infra, "reg/a:1"}, {handler, "fast=crun"}, {handler, "=runc"}};
    struct crisp_backend_arg b_args[] = {{infra, "reg/b:1"}};
    struct crisp_backend *a = crisp_backend_new(base, "docker:unix:///nonexistent/a.sock", a_args, 3, err, sizeof(err));
    struct crisp_backend *b = crisp_backend_new(base, "docker:unix:///nonexistent/b.sock", b_args, 1, err, sizeof(err));
    CHECK(a && b && a != b);
    if (!a || !b)
        return;
    const struct dk_be *da = (const struct dk_be *)a, *db = (const struct dk_be *)b;
    CHECK(strcmp(da->cfg.infra_image, "reg/a:1") == 0);
    CHECK(strcmp(db->cfg.infra_image, "reg/b:1") == 0);
    CHECK(da->cfg.nhandlers == 2 && db->cfg.nhandlers == 0);
    CHECK(strcmp(dk_runtime_for_handler(&da->cfg, "fast"), "crun") == 0);
    CHECK(strcmp(dk_runtime_for_handler(&da->cfg, ""), "runc") == 0);
    CHECK(dk_runtime_for_handler(&db->cfg, "fast") == NULL);
    CHECK(strcmp(dk_runtime_for_handler(&db->cfg, ""), "") == 0);
    CHECK(strcmp(a->name, "docker:unix:///nonexistent/a.sock") == 0);
    crisp_backend_free(a);
    crisp_backend_free(b);
}

static void test_option_checks(struct event_base *base)
{
    char err[256] = "";
    const struct crisp_backend_opt *infra = opt_of("docker", "pod-infra-image");
    struct crisp_backend_arg twice[] = {{infra, "x"}, {infra, "y"}};
    CHECK(!crisp_backend_new(base, "docker:unix:///x.sock", twice, 2, err, sizeof(err)));
    CHECK(strstr(err, "--pod-infra-image given twice") != NULL);
    CHECK(!crisp_backend_new(base, "cri:unix:///x.sock", twice, 1, err, sizeof(err)));
    CHECK(strstr(err, "not one of the cri backend's") != NULL);
    CHECK(!crisp_backend_new(base, "nope:unix:///x.sock", NULL, 0, err, sizeof(err)));
    CHECK(strstr(err, "unknown kind nope (known: cri, docker)") != NULL);
    CHECK(!crisp_backend_new(base, "nocolon", NULL, 0, err, sizeof(err)));
    CHECK(strstr(err, "want KIND:URL") != NULL);
    const struct crisp_backend_opt *handler = opt_of("docker", "runtime-handler");
    struct crisp_backend_arg dup[] = {{handler, "a=x"}, {handler, "a=y"}};
    CHECK(!crisp_backend_new(base, "docker:unix:///x.sock", dup, 2, err, sizeof(err)));
    CHECK(strstr(err, "handler \"a\" given twice") != NULL);
}

static void test_two_relays(struct event_base *base)
{
    char err[256];
    struct crisp_backend *a = crisp_backend_new(base, "cri:unix:///nonexistent/1.sock", NULL, 0, err, sizeof(err));
    struct crisp_backend *b = crisp_backend_new(base, "cri:unix:///nonexistent/2.sock", NULL, 0, err, sizeof(err));
    CHECK(a && b && strcmp(a->name, b->name) != 0);
    crisp_backend_free(a);
    crisp_backend_free(b);
}

int main(void)
{
    struct event_base *base = event_base_new();
    CHECK(crisp_methods_init() == 0);
    test_two_docker_instances(base);
    test_option_checks(base);
    test_two_relays(base);
    event_base_free(base);
    crisp_methods_free();
    return unit_summary("test_backend");
}
