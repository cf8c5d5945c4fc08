/* main.c - crispctl: a CRI client that ships with crisp, and its trace tools.
 *
 *   crispctl [OPTIONS] COMMAND [ARGS]
 *
 * Talks to any CRI endpoint (crisp, containerd, CRI-O...) as the kubelet
 * does; reads crisp's traces (show, stats) and replays them (replay). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "version.gen.h"

struct ctl_opts ctl = {
    .endpoint = "unix:///run/crisp/crisp.sock",
    .timeout_s = 120,
    .max_msg = 16u << 20,
    .output = "table",
    .color = -1,
};

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *args;
    const char *help;
};

static const struct command commands[] = {
    {"call", ctl_cmd_call, "METHOD [JSON|@FILE|-]",
     "call any RPC with a JSON request, print the JSON answer\n"
     "(METHOD: runtime.v1.RuntimeService/ListContainers, RuntimeService/ListContainers\n"
     "or ListContainers; JSON defaults to {})"},
    {"version", ctl_cmd_version, "", "the runtime's name and version"},
    {"info", ctl_cmd_info, "", "the runtime's status and configuration (verbose Status)"},
    {"pods", ctl_cmd_pods, "[--name N] [--namespace NS] [--state ready|notready] [-q]",
     "list pod sandboxes"},
    {"ps", ctl_cmd_ps, "[-a] [--pod ID] [--name N] [-q]", "list containers (running ones; -a: all)"},
    {"images", ctl_cmd_images, "[-q]", "list images"},
    {"pull", ctl_cmd_pull, "[--creds USER:PASS | --auth BASE64] IMAGE", "pull an image"},
    {"inspect", ctl_cmd_inspect, "ID|IMAGE", "the verbose status of a container, pod or image"},
    {"logs", ctl_cmd_logs, "[--tail N] CONTAINER", "a container's log (its log file, read here)"},
    {"stats", ctl_cmd_stats, "[TRACE...]",
     "containers' resource usage; with trace files: per-method counts and\n"
     "latency percentiles of the calls they recorded"},
    {"show", ctl_cmd_show, "[-f] [-v|-vv] [--errors] [--method PAT] TRACE...",
     "a trace as a readable timeline (coloured on a terminal; -f follows it)"},
    {"replay", ctl_cmd_replay, "TRACE --to ENDPOINT [--pace] [--messages] [-v]",
     "issue a trace's recorded requests against another runtime, in order,\n"
     "mapping the IDs it creates to the recorded ones, and report where the\n"
     "answers differ (IDs and timestamps aside); exit status 1 when they do"},
    {NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: crispctl [OPTIONS] COMMAND [ARGS]\n"
               "A CRI client that ships with crisp, and the tools for its traces.\n\n"
               "Options:\n"
               "  -r, --endpoint URL     the CRI endpoint: unix:///path, /path or tcp://HOST:PORT\n"
               "                         (TLS); default $CRISP_ENDPOINT, $CONTAINER_RUNTIME_ENDPOINT,\n"
               "                         unix:///run/crisp/crisp.sock\n"
               "  -t, --timeout SECS     per call (default 120; 0: none)\n"
               "  -o, --output FORMAT    table (default) or json\n"
               "      --no-trunc         full IDs in tables\n"
               "      --color WHEN       auto (default), always, never\n"
               "      --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name NAME,\n"
               "      --tls-insecure     TLS for tcp:// endpoints\n"
               "      --max-message-size N  cap on one answer (default 16M)\n"
               "  -v, --verbose          more detail\n"
               "      --version, -h, --help\n\nCommands:\n");
    for (const struct command *c = commands; c->name; c++) {
        fprintf(f, "  %s %s\n      ", c->name, c->args);
        for (const char *p = c->help; *p; p++)
            fputs(*p == '\n' ? "\n      " : (char[]){*p, 0}, f);
        fputc('\n', f);
    }
}

enum { O_NOTRUNC = 256, O_COLOR, O_CA, O_CERT, O_KEY, O_SNI, O_INSECURE, O_MAXMSG, O_VERSION };

static int parse_global(int c, const char *arg)
{
    char *end;
    switch (c) {
    case 'r': ctl.endpoint = arg; return 0;
    case 't':
        ctl.timeout_s = strtod(arg, &end);
        return *end || ctl.timeout_s < 0 ? ctl_fail("--timeout %s: want seconds", arg) : 0;
    case 'o': ctl.output = arg; return strcmp(arg, "json") && strcmp(arg, "table")
                                          ? ctl_fail("--output %s: want table or json", arg) : 0;
    case 'v': ctl.verbose++; return 0;
    case O_NOTRUNC: ctl.no_trunc = 1; return 0;
    case O_COLOR:
        ctl.color = strcmp(arg, "always") == 0 ? 1 : strcmp(arg, "never") == 0 ? 0 : -1;
        return 0;
    case O_CA: ctl.tls_ca = arg; return 0;
    case O_CERT: ctl.tls_cert = arg; return 0;
    case O_KEY: ctl.tls_key = arg; return 0;
    case O_SNI: ctl.tls_server_name = arg; return 0;
    case O_INSECURE: ctl.tls_insecure = 1; return 0;
    case O_MAXMSG:
        ctl.max_msg = strtoul(arg, &end, 10) << (*end == 'M' ? 20 : *end == 'K' ? 10 : 0);
        return ctl.max_msg < 1024 ? ctl_fail("--max-message-size %s: too small", arg) : 0;
    case O_VERSION: printf("crispctl %s\n", CRISP_VERSION); exit(0);
    case 'h': usage(stdout); exit(0);
    }
    usage(stderr);
    return 2;
}

static const struct option longopts[] = {
    {"endpoint", required_argument, NULL, 'r'},  {"timeout", required_argument, NULL, 't'},
    {"output", required_argument, NULL, 'o'},    {"verbose", no_argument, NULL, 'v'},
    {"no-trunc", no_argument, NULL, O_NOTRUNC},  {"color", required_argument, NULL, O_COLOR},
    {"tls-ca", required_argument, NULL, O_CA},   {"tls-cert", required_argument, NULL, O_CERT},
    {"tls-key", required_argument, NULL, O_KEY}, {"tls-server-name", required_argument, NULL, O_SNI},
    {"tls-insecure", no_argument, NULL, O_INSECURE},
    {"max-message-size", required_argument, NULL, O_MAXMSG},
    {"version", no_argument, NULL, O_VERSION},   {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    int c, rc;
    if (getenv("CONTAINER_RUNTIME_ENDPOINT"))
        ctl.endpoint = getenv("CONTAINER_RUNTIME_ENDPOINT");
    if (getenv("CRISP_ENDPOINT"))
        ctl.endpoint = getenv("CRISP_ENDPOINT");
    while ((c = getopt_long(argc, argv, "+r:t:o:vh", longopts, NULL)) != -1)
        if ((rc = parse_global(c, optarg)) != 0)
            return rc;
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (crisp_methods_init() < 0)
        return ctl_fail("out of memory");
    const struct command *cmd = commands;
    while (cmd->name && strcmp(cmd->name, argv[optind]) != 0)
        cmd++;
    if (!cmd->name) {
        crisp_methods_free();
        return ctl_fail("unknown command %s (crispctl --help lists them)", argv[optind]), 2;
    }
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* 0: glibc starts over (the sub-command permutes its own arguments) */
    rc = cmd->run(sub_argc, sub_argv);
    crisp_methods_free();
    fflush(stdout);
    return rc;
}
