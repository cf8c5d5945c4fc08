/* config.h - crisp's configuration file (--config /etc/crisp/crisp.json).
 *
 * The file names the backends and the RuntimeClass handlers that choose
 * among them (deploy/crisp.json is a commented example):
 *
 *   {
 *     "backends": {
 *       "containerd": {"kind": "cri", "endpoint": "unix:///run/containerd/containerd.sock"},
 *       "docker": {"kind": "docker", "endpoint": "unix:///var/run/docker.sock",
 *                  "options": {"pod-infra-image": "registry.k8s.io/pause:3.10"}}
 *     },
 *     "handlers": {
 *       "": {"backend": "containerd"},
 *       "crun": {"backend": "containerd", "runtime": "crun"},
 *       "docker": {"backend": "docker"}
 *     },
 *     "images": {"pull": "all"}
 *   }
 *
 * - backends: name -> kind (a backend kind crisp knows), endpoint (its URL),
 *   options (the kind's own options, by their command-line names: a string,
 *   or a list of strings for a repeatable one).
 * - handlers: RuntimeClass handler -> backend, and runtime: the engine's own
 *   runtime for it (a Docker runtime, a containerd handler; "" or absent:
 *   the engine's default). The default handler "" is required: it names
 *   the default backend.
 * - images: where image calls without a handler go. "pull": "all" (the
 *   default) pulls and removes in every backend, and an image counts as
 *   present only when every backend has it (a pod may run on any of them);
 *   "default" sends them to the default backend only.
 *
 * Parsing is pure (no I/O beyond reading the file); every error names the
 * file, the field and what is wrong. Error contract: 0, or -1 with the
 * reason in err (and nothing to free). */
#ifndef CRISP_CONFIG_H
#define CRISP_CONFIG_H

#include <stddef.h>

#include "crisp/backend.h"

struct crisp_config_backend {
    char *name;
    char *kind_url;                  /* "docker:unix:///var/run/docker.sock" */
    const struct crisp_backend_ops *kind;
    struct crisp_backend_arg *args;  /* its options, then handler mappings */
    size_t nargs;
};

struct crisp_config_handler {
    char *name;    /* the RuntimeClass handler ("" = default) */
    size_t backend;/* index in backends */
    char *runtime; /* the engine's runtime for it ("" = its default) */
};

struct crisp_config {
    char *path;
    struct crisp_config_backend *backends;
    size_t nbackends;
    struct crisp_config_handler *handlers;
    size_t nhandlers;
    size_t default_backend; /* the backend of handler "" */
    int pull_all;           /* images "pull": "all" */
};

int crisp_config_load(const char *path, struct crisp_config *out, char *err, size_t errlen);
/* The same from JSON text; path only names the file in messages. */
int crisp_config_parse(const char *json, size_t len, const char *path, struct crisp_config *out,
                       char *err, size_t errlen);
void crisp_config_free(struct crisp_config *c);

/* Whether two backend entries make the same instance (kind, endpoint,
 * options): a reload keeps such a backend and its connections. */
int crisp_config_backend_same(const struct crisp_config_backend *a,
                              const struct crisp_config_backend *b);

#endif
