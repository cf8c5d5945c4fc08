/* main.c - options, the event loop, signals and an orderly shutdown.
 *
 * Layers (see docs/architecture.md):
 *   listen.c   sockets -> connections
 *   h2srv.c    HTTP/2 + gRPC framing -> crisp_call      (front end)
 *   call.c     the call object, method.c the CRI table  (core)
 *   backend.c  router -> one backend per engine          (backends)
 *   backend_cri.c  relay to another CRI runtime */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "docker/docker.h"
#include "crisp/h2srv.h"
#include "crisp/listen.h"
#include "crisp/log.h"
#include "crisp/method.h"
#include "crisp/version.h"

#define DEFAULT_LISTEN "unix:///run/crisp/crisp.sock"
#define MAX_LISTENERS 16
#define MAX_HANDLERS 32

struct options {
    const char *listen[MAX_LISTENERS];
    int nlisten;
    const char *backend;
    struct crisp_tls_opts tls;
    double shutdown_timeout;
    const char *handlers[MAX_HANDLERS];
};

static struct event_base *base;
static struct event *stop_timer;
static int64_t stop_deadline_us;
static struct options opts = {.shutdown_timeout = 10};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: crisp [OPTIONS]\n"
"crisp is a stateless CRI proxy: it serves the Kubernetes CRI (gRPC over HTTP/2)\n"
"and forwards every call to a container engine.\n"
"\n"
"  --listen URL             where the kubelet connects (repeatable):\n"
"                             unix:///path   (default " DEFAULT_LISTEN ")\n"
"                             tcp://host:port (TLS; needs --tls-cert/--tls-key)\n"
"                             fd:// or fd://N (systemd socket activation)\n"
"  --backend KIND:URL       the engine behind crisp:\n"
"                             cri:unix:///run/containerd/containerd.sock\n"
"                             cri:tcp://host:port (plain HTTP/2)\n"
"                             docker:unix:///var/run/docker.sock (Docker Engine,\n"
"                             or podman's Docker-compatible API); docker: alone\n"
"                             follows DOCKER_HOST; tcp:// uses TLS client\n"
"                             certificates from DOCKER_CERT_PATH when set\n"
"  --pod-infra-image IMAGE  docker: the pod sandbox image (default\n"
"                           registry.k8s.io/pause:3.10, pulled when missing)\n"
"  --runtime-handler NAME=RUNTIME\n"
"                           docker: RuntimeClass handler NAME runs pods with the\n"
"                           engine's runtime RUNTIME (repeatable; \"\" = default)\n"
"  --max-message-size N     cap on one gRPC message, bytes (K/M suffixes;\n"
"                           default 16M, the kubelet's)\n"
"  --max-streams N          concurrent calls per connection (default 1024)\n"
"  --tls-cert FILE          PEM certificate chain for tcp:// listeners\n"
"  --tls-key FILE           PEM private key for tcp:// listeners\n"
"  --tls-client-ca FILE     require client certificates signed by this CA\n"
"  --shutdown-timeout SECS  on SIGTERM, how long in-flight calls may finish\n"
"                           before they are cancelled (default 10)\n"
"  --log-level LEVEL        error, warn, info (default) or debug\n"
"  --version                print the version and exit\n"
"  --help                   print this help and exit\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    if (*end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end || v < 1024 || v > (1ULL << 30))
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    enum { O_LISTEN = 256, O_BACKEND, O_MAXMSG, O_MAXSTREAMS, O_CERT, O_KEY, O_CA, O_SHUT,
           O_LOG, O_VERSION, O_HELP, O_INFRA, O_HANDLER };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"backend", required_argument, NULL, O_BACKEND},
        {"max-message-size", required_argument, NULL, O_MAXMSG},
        {"max-streams", required_argument, NULL, O_MAXSTREAMS},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"tls-client-ca", required_argument, NULL, O_CA},
        {"shutdown-timeout", required_argument, NULL, O_SHUT},
        {"log-level", required_argument, NULL, O_LOG},
        {"version", no_argument, NULL, O_VERSION},
        {"pod-infra-image", required_argument, NULL, O_INFRA},
        {"runtime-handler", required_argument, NULL, O_HANDLER},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN:
            if (opts.nlisten == MAX_LISTENERS) {
                fprintf(stderr, "crisp: at most %d --listen\n", MAX_LISTENERS);
                return -1;
            }
            opts.listen[opts.nlisten++] = optarg;
            break;
        case O_BACKEND:
            if (opts.backend) {
                fprintf(stderr, "crisp: one --backend for now (RuntimeClass routing comes later)\n");
                return -1;
            }
            opts.backend = optarg;
            break;
        case O_MAXMSG:
            if (parse_size(optarg, &crisp_h2srv_cfg.max_msg) < 0) {
                fprintf(stderr, "crisp: --max-message-size %s: want 1K..1G\n", optarg);
                return -1;
            }
            break;
        case O_MAXSTREAMS: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "crisp: --max-streams %s: want 1..1000000\n", optarg);
                return -1;
            }
            crisp_h2srv_cfg.max_streams = (uint32_t)v;
            break;
        }
        case O_CERT:
            opts.tls.cert = optarg;
            break;
        case O_KEY:
            opts.tls.key = optarg;
            break;
        case O_CA:
            opts.tls.client_ca = optarg;
            break;
        case O_SHUT:
            opts.shutdown_timeout = strtod(optarg, &end);
            if (*end || opts.shutdown_timeout < 0 || opts.shutdown_timeout > 3600) {
                fprintf(stderr, "crisp: --shutdown-timeout %s: want 0..3600 seconds\n", optarg);
                return -1;
            }
            break;
        case O_LOG:
            if (crisp_log_level_from_str(optarg, &crisp_log_threshold) < 0) {
                fprintf(stderr, "crisp: --log-level %s: want error, warn, info or debug\n", optarg);
                return -1;
            }
            break;
        case O_INFRA:
            if (!*optarg) {
                fprintf(stderr, "crisp: --pod-infra-image needs an image\n");
                return -1;
            }
            crisp_docker_cfg.infra_image = optarg;
            break;
        case O_HANDLER:
            if (!strchr(optarg, '=') || crisp_docker_cfg.nhandlers == MAX_HANDLERS) {
                fprintf(stderr, "crisp: --runtime-handler %s: want NAME=DOCKER_RUNTIME (at most %d)\n",
                        optarg, MAX_HANDLERS);
                return -1;
            }
            opts.handlers[crisp_docker_cfg.nhandlers++] = optarg;
            crisp_docker_cfg.handlers = opts.handlers;
            break;
        case O_VERSION:
            printf("crisp %s\n", CRISP_VERSION);
            exit(0);
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "crisp: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (!opts.backend) {
        fprintf(stderr, "crisp: --backend is required, e.g. --backend cri:unix:///run/containerd/containerd.sock\n");
        return -1;
    }
    if (opts.nlisten == 0)
        opts.listen[opts.nlisten++] = DEFAULT_LISTEN;
    return 0;
}

static void on_stop_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (crisp_h2srv_conn_count() == 0) {
        event_base_loopbreak(base);
        return;
    }
    if (crisp_now_us() >= stop_deadline_us) {
        log_warn("shutdown_timeout", "connections=%zu action=cancel",
                 crisp_h2srv_conn_count());
        crisp_h2srv_close_all();
        event_base_loopbreak(base);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (stop_timer) {
        log_warn("shutdown_forced", "signal=%d", (int)sig);
        crisp_h2srv_close_all();
        event_base_loopbreak(base);
        return;
    }
    log_info("shutdown", "signal=%d connections=%zu timeout_s=%g", (int)sig,
             crisp_h2srv_conn_count(), opts.shutdown_timeout);
    crisp_listen_close_all();
    crisp_h2srv_shutdown_all();
    stop_deadline_us = crisp_now_us() + (int64_t)(opts.shutdown_timeout * 1e6);
    stop_timer = event_new(base, -1, EV_PERSIST, on_stop_tick, NULL);
    struct timeval tv = {0, 20000};
    if (!stop_timer || event_add(stop_timer, &tv) < 0)
        event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    char err[512];
    int rc = 1;
    struct crisp_backend *be = NULL;
    struct event *sigterm = NULL, *sigint = NULL;

    if (parse_args(argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (crisp_methods_init() < 0) {
        log_error("startup_failed", "err=\"out of memory building the method table\"");
        return 1;
    }
    base = event_base_new();
    if (!base)
        goto fail_methods;
    /* Signals first: a SIGTERM during start-up still ends in an orderly
     * shutdown (socket removed), not the default action. */
    sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(base, SIGINT, on_signal, NULL);
    if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
        goto fail_base;
    be = crisp_backend_new(base, opts.backend, err, sizeof(err));
    if (!be) {
        log_error("startup_failed", "err=%s", crisp_logq(err));
        goto fail_base;
    }
    crisp_router_set_default(be);
    static const struct crisp_listen_cbs grpc_server = {.on_accept = crisp_h2srv_accept};
    for (int i = 0; i < opts.nlisten; i++) {
        if (crisp_listen_open(base, opts.listen[i], &opts.tls, &grpc_server, err, sizeof(err)) < 0) {
            log_error("startup_failed", "listen=%s err=%s", crisp_logq(opts.listen[i]),
                      crisp_logq(err));
            goto fail_listen;
        }
    }
    log_info("started", "version=%s backend=%s methods=%zu max_message_size=%zu", CRISP_VERSION,
             crisp_logq(be->name), crisp_methods_count(), crisp_h2srv_cfg.max_msg);
    event_base_dispatch(base);
    rc = 0;
    log_info("stopped", "connections=%zu", crisp_h2srv_conn_count());

fail_listen:
    crisp_listen_close_all();
    crisp_h2srv_close_all();
    if (stop_timer)
        event_free(stop_timer);
    crisp_backend_free(be);
fail_base:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    event_base_free(base);
fail_methods:
    crisp_methods_free();
    return rc;
}
