/* main.c - options, the event loop, signals and an orderly shutdown.
 *
 * Layers (see docs/architecture.md): src/io listeners and transport,
 * src/front the gRPC server, src/core calls, methods and the router, the
 * backends (src/relay, src/docker, and src/mux over them with --config)
 * reached through their ops, src/stream the streaming server, src/trace
 * tracing and metrics. main.c knows no backend kind by name: each kind
 * declares its options (crisp_backend_ops.opts), as tracing and metrics do
 * (opt.h), and they are offered here. Start-up and shutdown are steps that
 * each undo their own part: start_loop/stop_loop, serve, listen_and_run. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "crisp/backend.h"
#include "crisp/budget.h"
#include "crisp/call.h"
#include "crisp/h2srv.h"
#include "crisp/listen.h"
#include "crisp/log.h"
#include "crisp/method.h"
#include "crisp/metrics.h"
#include "crisp/stream.h"
#include "crisp/node.h"
#include "crisp/trace.h"
#include "crisp/version.h"

#define DEFAULT_LISTEN "unix:///run/crisp/crisp.sock"
#define DEFAULT_STREAM_LISTEN "tcp://127.0.0.1:0"
#define MAX_LISTENERS 16
#define MAX_BACKEND_ARGS 64
#define MAX_KIND_OPTS 64
#define MAX_MODULE_OPTS 32

/* Modules that declare their own options (opt.h). */
static const struct crisp_opt_module *const modules[] = {&crisp_trace_module,
                                                         &crisp_metrics_module};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

/* A backend option as given, before its backend's kind is known. */
struct given_opt {
    const char *name;
    const char *value;
};

struct options {
    const char *listen[MAX_LISTENERS];
    int nlisten;
    const char *backend;
    const char *config;
    struct given_opt bopts[MAX_BACKEND_ARGS];
    size_t nbopts;
    struct crisp_tls_opts tls;
    double shutdown_timeout;
    size_t max_conns; /* 0: from the descriptor limit */
    struct crisp_stream_cfg stream; /* the streaming server (exec, attach, port-forward) */
    int stream_listen_given;        /* --streaming-listen */
};

static struct event_base *base;
static struct event *stop_timer;
static int64_t stop_deadline_us;
static struct options opts = {.shutdown_timeout = 10, .stream.listen = DEFAULT_STREAM_LISTEN};

static const char core_usage[] =
"Usage: crisp [OPTIONS]\n"
"crisp is a stateless CRI proxy: it serves the Kubernetes CRI (gRPC over HTTP/2)\n"
"and forwards every call to a container engine.\n"
"\n"
"  --listen URL             where the kubelet connects (repeatable):\n"
"                             unix:///path   (default " DEFAULT_LISTEN ")\n"
"                             tcp://host:port (TLS; needs --tls-cert/--tls-key)\n"
"                             fd:// or fd://N (systemd socket activation)\n"
"  --backend KIND:URL       the engine behind crisp; its options follow it\n"
"  --config FILE            the backends and the RuntimeClass handlers that\n"
"                           choose among them (JSON, deploy/crisp.json); SIGHUP\n"
"                           reloads it; instead of --backend\n"
"  --max-message-size N     cap on one gRPC message, bytes (K/M suffixes;\n"
"                           default 16M, the kubelet's)\n"
"  --max-streams N          concurrent calls per connection (default 1024)\n"
"  --max-connections N      client connections; at the limit a new client\n"
"                           evicts the longest-idle one (default: the\n"
"                           descriptor limit, raised to its maximum, less 512)\n"
"  --idle-timeout SECS      GOAWAY to a connection without calls for this\n"
"                           long (default 300; 0: never)\n"
"  --tls-cert FILE          PEM certificate chain for tcp:// listeners\n"
"  --tls-key FILE           PEM private key for tcp:// listeners\n"
"  --tls-client-ca FILE     require client certificates signed by this CA\n"
"  --streaming-listen URL   the streaming server of Exec, Attach and PortForward\n"
"                           (docker backend): tcp://HOST:PORT, plain HTTP, or\n"
"                           TLS with --streaming-tls-cert/-key (default\n"
"                           " DEFAULT_STREAM_LISTEN ": localhost, a port chosen at\n"
"                           start); none: off\n"
"  --streaming-tls-cert FILE, --streaming-tls-key FILE, --streaming-tls-client-ca FILE\n"
"                           TLS for it, as for --listen\n"
"  --streaming-idle-timeout SECS  a session without traffic ends (default 14400)\n"
"  --streaming-token-ttl SECS     how long a streaming URL is valid (default 60)\n"
"  --shutdown-timeout SECS  on SIGTERM, how long in-flight calls may finish\n"
"                           before they are cancelled (default 10)\n"
"  --log-level LEVEL        error, warn, info (default) or debug\n"
"  --version                print the version and exit\n"
"  --help                   print this help and exit\n";

/* Prints text with every line after the first indented by `indent`. */
static void print_indented(FILE *f, const char *text, int indent)
{
    for (const char *p = text; *p; p++) {
        fputc(*p, f);
        if (*p == '\n')
            fprintf(f, "%*s", indent, "");
    }
    fputc('\n', f);
}

static void usage(FILE *f)
{
    fputs(core_usage, f);
    fputs("\nBackends (--backend KIND:URL), and the options each kind takes:\n", f);
    for (size_t k = 0; k < crisp_backend_kind_count(); k++) {
        const struct crisp_backend_ops *kind = crisp_backend_kind_at(k);
        fprintf(f, "  ");
        print_indented(f, kind->url_help ? kind->url_help : kind->kind, 2);
        for (const struct crisp_backend_opt *o = kind->opts; o && o->name; o++) {
            int n = fprintf(f, "    --%s %s", o->name, o->arg);
            if (n > 26)
                n = fprintf(f, "\n") - 1;
            fprintf(f, "%*s", 27 - n, "");
            print_indented(f, o->help, 27);
        }
    }
    for (size_t m = 0; m < NMODULES; m++) {
        fprintf(f, "\n%s:\n", modules[m]->title);
        for (const struct crisp_opt *o = modules[m]->opts; o->name; o++) {
            int n = fprintf(f, "  --%s %s", o->name, o->arg ? o->arg : "");
            if (n > 26)
                n = fprintf(f, "\n") - 1;
            fprintf(f, "%*s", 27 - n, "");
            print_indented(f, o->help, 27);
        }
    }
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

enum {
    O_LISTEN = 256, O_BACKEND, O_MAXMSG, O_MAXSTREAMS, O_MAXCONNS, O_IDLE, O_CERT, O_KEY, O_CA,
    O_SHUT, O_LOG, O_SX_LISTEN, O_SX_CERT, O_SX_KEY, O_SX_CA, O_SX_IDLE, O_SX_TTL,
    O_VERSION, O_HELP, O_CONFIG, O_KIND_OPT, /* O_KIND_OPT + i: the i-th distinct backend option */
    O_MODULE_OPT = O_KIND_OPT + MAX_KIND_OPTS /* + j: the j-th module option */
};

static const struct option core_longopts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"backend", required_argument, NULL, O_BACKEND},
    {"config", required_argument, NULL, O_CONFIG},
    {"max-message-size", required_argument, NULL, O_MAXMSG},
    {"max-streams", required_argument, NULL, O_MAXSTREAMS},
    {"max-connections", required_argument, NULL, O_MAXCONNS},
    {"idle-timeout", required_argument, NULL, O_IDLE},
    {"tls-cert", required_argument, NULL, O_CERT},
    {"tls-key", required_argument, NULL, O_KEY},
    {"tls-client-ca", required_argument, NULL, O_CA},
    {"shutdown-timeout", required_argument, NULL, O_SHUT},
    {"log-level", required_argument, NULL, O_LOG},
    {"streaming-listen", required_argument, NULL, O_SX_LISTEN},
    {"streaming-tls-cert", required_argument, NULL, O_SX_CERT},
    {"streaming-tls-key", required_argument, NULL, O_SX_KEY},
    {"streaming-tls-client-ca", required_argument, NULL, O_SX_CA},
    {"streaming-idle-timeout", required_argument, NULL, O_SX_IDLE},
    {"streaming-token-ttl", required_argument, NULL, O_SX_TTL},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, O_HELP},
};
#define NCORE (sizeof(core_longopts) / sizeof(core_longopts[0]))

/* getopt's table: crisp's own options, then every backend kind's (one
 * entry per name, whichever kinds share it). */
static struct option longopts[NCORE + MAX_KIND_OPTS + MAX_MODULE_OPTS + 1];
static const struct crisp_opt_module *module_of[MAX_MODULE_OPTS];
static const char *module_opt[MAX_MODULE_OPTS];
static size_t nmodule_opts;

/* The modules' options after the backends': n is the next free entry. */
static size_t add_module_opts(size_t n)
{
    for (size_t m = 0; m < NMODULES; m++) {
        for (const struct crisp_opt *o = modules[m]->opts; o->name; o++) {
            if (nmodule_opts == MAX_MODULE_OPTS)
                return n;
            module_of[nmodule_opts] = modules[m];
            module_opt[nmodule_opts] = o->name;
            longopts[n++] = (struct option){o->name, o->arg ? required_argument : no_argument,
                                            NULL, O_MODULE_OPT + (int)nmodule_opts++};
        }
    }
    return n;
}

static void build_longopts(void)
{
    size_t n = NCORE;
    memcpy(longopts, core_longopts, sizeof(core_longopts));
    for (size_t k = 0; k < crisp_backend_kind_count(); k++) {
        const struct crisp_backend_opt *o = crisp_backend_kind_at(k)->opts;
        for (; o && o->name && n < NCORE + MAX_KIND_OPTS; o++) {
            size_t i = NCORE;
            while (i < n && strcmp(longopts[i].name, o->name) != 0)
                i++;
            if (i < n)
                continue;
            longopts[n] = (struct option){o->name, required_argument, NULL,
                                          O_KIND_OPT + (int)(n - NCORE)};
            n++;
        }
    }
    n = add_module_opts(n);
    longopts[n] = (struct option){NULL, 0, NULL, 0};
}

static int fail_opt(const char *fmt, const char *arg)
{
    fprintf(stderr, "crisp: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return -1;
}

static int parse_number_opt(int c, const char *arg)
{
    char *end;
    if (c == O_MAXMSG) {
        if (parse_size(arg, &crisp_h2srv_cfg.max_msg) < 0)
            return fail_opt("--max-message-size %s: want 1K..1G", arg);
        return 0;
    }
    if (c == O_MAXSTREAMS || c == O_MAXCONNS || c == O_IDLE) {
        long v = strtol(arg, &end, 10);
        long lo = c == O_IDLE ? 0 : 1, hi = c == O_IDLE ? 86400 : 1000000;
        if (*end || end == arg || v < lo || v > hi)
            return fail_opt(c == O_MAXSTREAMS ? "--max-streams %s: want 1..1000000"
                            : c == O_MAXCONNS ? "--max-connections %s: want 1..1000000"
                                              : "--idle-timeout %s: want 0..86400 seconds", arg);
        if (c == O_MAXSTREAMS)
            crisp_h2srv_cfg.max_streams = (uint32_t)v;
        else if (c == O_MAXCONNS)
            opts.max_conns = (size_t)v;
        else
            crisp_h2srv_cfg.idle_timeout_s = (unsigned)v;
        return 0;
    }
    opts.shutdown_timeout = strtod(arg, &end);
    if (*end || end == arg || opts.shutdown_timeout < 0 || opts.shutdown_timeout > 3600)
        return fail_opt("--shutdown-timeout %s: want 0..3600 seconds", arg);
    return 0;
}

static int add_backend_opt(int c, const char *arg)
{
    if (opts.nbopts == MAX_BACKEND_ARGS)
        return fail_opt("at most %s backend options", "64");
    opts.bopts[opts.nbopts++] = (struct given_opt){longopts[NCORE + (c - O_KIND_OPT)].name, arg};
    return 0;
}

/* The streaming server's options. */
static int parse_stream_opt(int c, const char *arg)
{
    struct crisp_stream_cfg *sc = &opts.stream;
    char *end;
    double v;
    switch (c) {
    case O_SX_LISTEN:
        sc->listen = strcmp(arg, "none") == 0 ? NULL : arg;
        opts.stream_listen_given = 1;
        return 0;
    case O_SX_CERT:
        sc->tls.cert = arg;
        return 0;
    case O_SX_KEY:
        sc->tls.key = arg;
        return 0;
    case O_SX_CA:
        sc->tls.client_ca = arg;
        return 0;
    }
    v = strtod(arg, &end);
    if (*end || end == arg || v < 0.001 || v > 86400 * 7)
        return fail_opt("--streaming-*: %s: want seconds (up to a week)", arg);
    if (c == O_SX_IDLE)
        sc->idle_timeout_ms = (unsigned)(v * 1000);
    else
        sc->token_ttl_ms = (unsigned)(v * 1000);
    return 0;
}

/* One option; returns 0, or -1 after printing why. */
static int parse_one(int c, const char *arg)
{
    switch (c) {
    case O_LISTEN:
        if (opts.nlisten == MAX_LISTENERS)
            return fail_opt("at most %s --listen", "16");
        opts.listen[opts.nlisten++] = arg;
        return 0;
    case O_BACKEND:
        if (opts.backend)
            return fail_opt("one --backend for now (RuntimeClass routing to several comes "
                            "with the configuration file)%s", "");
        opts.backend = arg;
        return 0;
    case O_CONFIG:
        opts.config = arg;
        return 0;
    case O_MAXMSG:
    case O_MAXSTREAMS:
    case O_MAXCONNS:
    case O_IDLE:
    case O_SHUT:
        return parse_number_opt(c, arg);
    case O_CERT:
        opts.tls.cert = arg;
        return 0;
    case O_KEY:
        opts.tls.key = arg;
        return 0;
    case O_CA:
        opts.tls.client_ca = arg;
        return 0;
    case O_LOG:
        if (crisp_log_level_from_str(arg, &crisp_log_threshold) < 0)
            return fail_opt("--log-level %s: want error, warn, info or debug", arg);
        return 0;
    case O_VERSION:
        printf("crisp %s\n", CRISP_VERSION);
        exit(0);
    case O_HELP:
    case 'h':
        usage(stdout);
        exit(0);
    }
    if (c >= O_SX_LISTEN && c <= O_SX_TTL)
        return parse_stream_opt(c, arg);
    if (c >= O_MODULE_OPT) {
        char err[512];
        size_t j = (size_t)(c - O_MODULE_OPT);
        if (module_of[j]->set(module_opt[j], arg, err, sizeof(err)) < 0)
            return fail_opt("%s", err);
        return 0;
    }
    if (c >= O_KIND_OPT)
        return add_backend_opt(c, arg);
    usage(stderr);
    return -1;
}

/* Descriptors kept for what is not a client connection: engine
 * connections (the docker backend's pools take up to 384), listeners,
 * files. */
#define FD_RESERVE 512

/* The descriptor limit raised to its maximum (a node with many clients, a
 * docker backend with many execs), and the client connection limit from it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            rl.rlim_cur = was;
    }
    size_t n = (size_t)rl.rlim_cur;
    size_t reserve = n / 2 < FD_RESERVE ? n / 2 : FD_RESERVE;
    crisp_h2srv_cfg.max_conns = opts.max_conns ? opts.max_conns : n - reserve;
}

static int parse_args(int argc, char **argv)
{
    int c;
    build_longopts();
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if (parse_one(c, optarg) < 0)
            return -1;
    if (optind < argc)
        return fail_opt("unexpected argument %s", argv[optind]);
    if (opts.config && (opts.backend || opts.nbopts))
        return fail_opt("--config %s names the backends and their options: no --backend or "
                        "backend option beside it", opts.config);
    if (!opts.backend && !opts.config)
        return fail_opt("--backend is required, e.g. --backend "
                        "cri:unix:///run/containerd/containerd.sock (or --config FILE)%s", "");
    if (opts.nlisten == 0)
        opts.listen[opts.nlisten++] = DEFAULT_LISTEN;
    return 0;
}

/* The backend's options resolved against its kind: an option no kind of
 * this backend declares is named in the error. */
static struct crisp_backend *make_backend(char *err, size_t errlen)
{
    static struct crisp_backend_arg args[MAX_BACKEND_ARGS];
    const char *url;
    const struct crisp_backend_ops *kind = crisp_backend_kind_of(opts.backend, &url, err, errlen);
    if (!kind)
        return NULL;
    for (size_t i = 0; i < opts.nbopts; i++) {
        const struct crisp_backend_opt *o = kind->opts;
        while (o && o->name && strcmp(o->name, opts.bopts[i].name) != 0)
            o++;
        if (!o || !o->name) {
            snprintf(err, errlen, "--%s is not an option of the %s backend %s",
                     opts.bopts[i].name, kind->kind, opts.backend);
            return NULL;
        }
        args[i] = (struct crisp_backend_arg){o, opts.bopts[i].value};
    }
    return crisp_backend_new(base, opts.backend, args, opts.nbopts, err, errlen);
}

static int evict_for_accept(void *ud)
{
    (void)ud;
    return crisp_h2srv_evict_idle("out of file descriptors");
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

/* The backend of --backend, or the backends and router of --config. */
static struct crisp_backend *single;

static int start_backends(char *err, size_t errlen)
{
    if (opts.config)
        return crisp_node_load(base, opts.config, err, errlen);
    single = make_backend(err, errlen);
    if (!single)
        return -1;
    crisp_router_set_default(single);
    return 0;
}

/* Tracing and metrics (observers of calls), before any call comes. */
static int start_observers(char *err, size_t errlen)
{
    if (crisp_trace_start(base, err, errlen) < 0)
        return -1;
    return crisp_metrics_start(base, err, errlen);
}

static void stop_backends(void)
{
    crisp_backend_free(single);
    crisp_node_free();
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    crisp_trace_reload(); /* reopens the trace, reads --trace-filter again */
    if (opts.config)
        crisp_node_reload();
    else
        log_info("sighup_ignored", "why=\"no --config to reload\"");
}

/* SIGTERM and SIGINT (an orderly shutdown), SIGHUP (reload). */
static struct event *sig_events[3];

static int add_signals(void)
{
    static const struct {
        int sig;
        event_callback_fn cb;
    } sigs[] = {{SIGTERM, on_signal}, {SIGINT, on_signal}, {SIGHUP, on_sighup}};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sig_events[i] = evsignal_new(base, sigs[i].sig, sigs[i].cb, NULL);
        if (!sig_events[i] || event_add(sig_events[i], NULL) < 0)
            return -1;
    }
    return 0;
}

/* Whether the streaming server has a use: asked for by --streaming-listen,
 * or a --config (a reload may add a backend that serves streams), or the
 * --backend's kind serves Exec, Attach and PortForward itself (a CRI
 * runtime relayed answers its own URLs). */
static int streaming_wanted(void)
{
    char err[256];
    const char *url;
    if (opts.stream_listen_given || opts.config)
        return 1;
    const struct crisp_backend_ops *kind = crisp_backend_kind_of(opts.backend, &url, err, sizeof(err));
    return !kind || kind->serves_streams;
}

/* On the new loop: the budgets, the gRPC server, the signals and the
 * streaming server; what they need to be undone is stop_loop's. */
static int start_loop(void)
{
    char err[1024];
    crisp_budget_setup(base, crisp_h2srv_cfg.max_msg);
    raise_fd_limit();
    if (crisp_h2srv_start(base) < 0)
        return -1;
    /* Signals first: a SIGTERM during start-up still ends in an orderly
     * shutdown (socket removed), not the default action. */
    if (add_signals() < 0)
        return -1;
    if (!streaming_wanted() && opts.stream.listen) {
        opts.stream.listen = NULL; /* nothing would hand out its URLs: no port opened */
        log_info("streaming_off", "why=\"the %s backend serves its own streaming URLs\"",
                 crisp_logq(opts.backend));
    }
    if (crisp_stream_start(base, &opts.stream, err, sizeof(err)) < 0) {
        log_error("startup_failed", "streaming_listen=%s err=%s", crisp_logq(opts.stream.listen),
                  crisp_logq(err));
        return -1;
    }
    return 0;
}

static void stop_loop(void)
{
    crisp_h2srv_close_all(); /* the idle sweep */
    for (size_t i = 0; i < sizeof(sig_events) / sizeof(sig_events[0]); i++)
        if (sig_events[i])
            event_free(sig_events[i]);
    crisp_budget_teardown();
    event_base_free(base);
}

static int open_listeners(void)
{
    static const struct crisp_listen_cbs grpc_server = {.on_accept = crisp_h2srv_accept,
                                                        .on_full = evict_for_accept};
    char err[1024];
    for (int i = 0; i < opts.nlisten; i++) {
        if (crisp_listen_open(base, opts.listen[i], &opts.tls, &grpc_server, err, sizeof(err)) < 0) {
            log_error("startup_failed", "listen=%s err=%s", crisp_logq(opts.listen[i]),
                      crisp_logq(err));
            return -1;
        }
    }
    return 0;
}

/* The listeners, then the loop until a signal ends it (0) or -1 when a
 * listener does not open; either way the client connections are closed. */
static int listen_and_run(void)
{
    int rc = -1;
    if (open_listeners() == 0) {
        log_info("started", "version=%s backend=%s methods=%zu max_message_size=%zu "
                 "max_connections=%zu idle_timeout_s=%u", CRISP_VERSION,
                 crisp_logq(single ? single->name : crisp_node_describe()),
                 crisp_methods_count(), crisp_h2srv_cfg.max_msg, crisp_h2srv_cfg.max_conns,
                 crisp_h2srv_cfg.idle_timeout_s);
        event_base_dispatch(base);
        rc = 0;
        log_info("stopped", "connections=%zu", crisp_h2srv_conn_count());
    }
    crisp_listen_close_all();
    crisp_h2srv_close_all();
    if (stop_timer)
        event_free(stop_timer);
    return rc;
}

/* The backends and the observers, then the service; they go in this order
 * whatever happened. */
static int serve(void)
{
    char err[1024];
    int rc = -1;
    if (start_backends(err, sizeof(err)) < 0 || start_observers(err, sizeof(err)) < 0)
        log_error("startup_failed", "err=%s", crisp_logq(err));
    else
        rc = listen_and_run();
    crisp_stream_stop(); /* its sessions end while their backends live */
    stop_backends();
    crisp_metrics_stop();
    crisp_trace_stop(); /* after the calls: what they queued is written */
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 1;

    if (parse_args(argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (crisp_methods_init() < 0 || crisp_call_log_init() < 0) {
        log_error("startup_failed", "err=\"out of memory building the method table\"");
        return 1;
    }
    base = event_base_new();
    if (base) {
        if (start_loop() == 0 && serve() == 0)
            rc = 0;
        stop_loop();
    }
    crisp_methods_free();
    return rc;
}
