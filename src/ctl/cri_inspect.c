/* cri_inspect.c - crispctl's inspect, logs and (container) stats. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "ctl/table.h"
#include "runtime_v1.pb-c.h"

#define LOG_LINE_MAX (1u << 20)

static struct ctl_conn *dial(void)
{
    char err[512];
    struct ctl_conn *c = ctl_connect(ctl.endpoint, err, sizeof(err));
    if (!c)
        ctl_fail("%s", err);
    return c;
}

/* A call whose failure the caller judges (r->code). */
static int try_call(struct ctl_conn *c, enum crisp_rpc id, const ProtobufCMessage *req,
                    ProtobufCMessage **resp, struct ctl_result *r)
{
    return ctl_call_pb(c, crisp_method_by_id(id), req, resp, r);
}

static void print_json(const ProtobufCMessage *m)
{
    char *j = ctl_to_json(m);
    if (j)
        ctl_print_pretty(stdout, j);
    free(j);
}

/* ---- inspect ----------------------------------------------------------------- */

/* A container, a pod or an image: the first that knows the ID. */
static ProtobufCMessage *inspect_any(struct ctl_conn *c, char *id, struct ctl_result *r)
{
    Runtime__V1__ContainerStatusRequest cr = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__PodSandboxStatusRequest pr = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
    Runtime__V1__ImageStatusRequest ir = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    ProtobufCMessage *resp = NULL;
    cr.container_id = pr.pod_sandbox_id = spec.image = id;
    cr.verbose = pr.verbose = ir.verbose = 1;
    ir.image = &spec;
    if (try_call(c, CRISP_RPC_CONTAINER_STATUS, &cr.base, &resp, r) == 0 && resp)
        return resp;
    ctl_result_free(r);
    if (try_call(c, CRISP_RPC_POD_SANDBOX_STATUS, &pr.base, &resp, r) == 0 && resp)
        return resp;
    ctl_result_free(r);
    if (try_call(c, CRISP_RPC_IMAGE_STATUS, &ir.base, &resp, r) == 0 && resp &&
        ((Runtime__V1__ImageStatusResponse *)resp)->image)
        return resp;
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

int ctl_cmd_inspect(int argc, char **argv)
{
    if (argc != 2)
        return ctl_fail("usage: crispctl inspect ID|IMAGE");
    struct ctl_conn *c = dial();
    struct ctl_result r = {0};
    if (!c)
        return 1;
    ProtobufCMessage *resp = inspect_any(c, argv[1], &r);
    ctl_close(c);
    int rc = resp ? 0 : ctl_fail("no container, pod or image %s (%s)", argv[1],
                                 r.message ? r.message : grpc_code_to_str(r.code));
    if (resp) {
        print_json(resp);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    ctl_result_free(&r);
    return rc;
}

/* ---- logs ------------------------------------------------------------------------- */

/* One line of a CRI log ("TIME STREAM P|F TEXT") or of Docker's json-file
 * ({"log": "TEXT\n", ...}) written out as the container wrote it. */
static void print_log_line(char *line)
{
    size_t n = strlen(line);
    if (n && line[n - 1] == '\n')
        line[--n] = 0;
    if (line[0] == '{') {
        cJSON *j = cJSON_Parse(line);
        const cJSON *log = cJSON_GetObjectItemCaseSensitive(j, "log");
        if (cJSON_IsString(log))
            fputs(log->valuestring, stdout);
        cJSON_Delete(j);
        return;
    }
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2 || (sp2[1] != 'P' && sp2[1] != 'F')) {
        puts(line);
        return;
    }
    fputs(sp2[2] == ' ' ? sp2 + 3 : sp2 + 2, stdout);
    if (sp2[1] == 'F')
        fputc('\n', stdout);
}

static int print_log(const char *path, long tail)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return ctl_fail("cannot read the log %s", path);
    long total = 0, skip;
    char *line = malloc(LOG_LINE_MAX);
    if (!line) {
        fclose(f);
        return ctl_fail("out of memory");
    }
    while (fgets(line, LOG_LINE_MAX, f))
        total++;
    skip = tail >= 0 && total > tail ? total - tail : 0;
    rewind(f);
    for (long i = 0; fgets(line, LOG_LINE_MAX, f); i++)
        if (i >= skip)
            print_log_line(line); /* a line over 1 MiB comes in pieces */
    free(line);
    fclose(f);
    return 0;
}

int ctl_cmd_logs(int argc, char **argv)
{
    static const struct option lo[] = {{"tail", required_argument, NULL, 't'}, {NULL, 0, NULL, 0}};
    long tail = -1;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
        if (c == 't')
            tail = strtol(optarg, NULL, 10);
    if (optind != argc - 1)
        return ctl_fail("usage: crispctl logs [--tail N] CONTAINER");
    Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusResponse *resp = NULL;
    struct ctl_result r;
    struct ctl_conn *conn = dial();
    req.container_id = argv[optind];
    int rc = conn ? try_call(conn, CRISP_RPC_CONTAINER_STATUS, &req.base,
                             (ProtobufCMessage **)&resp, &r) : -1;
    ctl_close(conn);
    if (rc == 0 && !resp)
        rc = ctl_fail("ContainerStatus: %s: %s", grpc_code_to_str(r.code), r.message ? r.message : "");
    else if (rc == 0)
        rc = resp->status && *resp->status->log_path ? print_log(resp->status->log_path, tail)
                                                     : ctl_fail("the container has no log path");
    if (conn)
        ctl_result_free(&r);
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc ? 1 : 0;
}

/* ---- stats ------------------------------------------------------------------------- */

static uint64_t u64v(const Runtime__V1__UInt64Value *v)
{
    return v ? v->value : 0;
}

static void stats_rows(struct table *t, const Runtime__V1__ListContainerStatsResponse *r)
{
    char id[80], cpu[32], mem[32], disk[32];
    table_add(t, "CONTAINER", "NAME", "CPU %", "MEM", "DISK");
    for (size_t i = 0; i < r->n_stats; i++) {
        const Runtime__V1__ContainerStats *s = r->stats[i];
        const Runtime__V1__ContainerAttributes *a = s->attributes;
        snprintf(cpu, sizeof(cpu), "%.2f", s->cpu ? (double)u64v(s->cpu->usage_nano_cores) / 1e7 : 0.0);
        fmt_bytes(s->memory ? u64v(s->memory->working_set_bytes) : 0, mem, sizeof(mem));
        fmt_bytes(s->writable_layer ? u64v(s->writable_layer->used_bytes) : 0, disk, sizeof(disk));
        table_add(t, fmt_id(a ? a->id : "", ctl.no_trunc, id, sizeof(id)),
                  a && a->metadata ? a->metadata->name : "", cpu, mem, disk);
    }
}

int ctl_cmd_stats(int argc, char **argv)
{
    if (argc > 1)
        return ctl_cmd_trace_stats(argc, argv);
    Runtime__V1__ListContainerStatsRequest req = RUNTIME__V1__LIST_CONTAINER_STATS_REQUEST__INIT;
    Runtime__V1__ListContainerStatsResponse *resp = NULL;
    struct ctl_result r;
    struct table t;
    struct ctl_conn *c = dial();
    if (!c)
        return 1;
    int rc = try_call(c, CRISP_RPC_LIST_CONTAINER_STATS, &req.base, (ProtobufCMessage **)&resp, &r);
    ctl_close(c);
    if (rc == 0 && !resp)
        rc = ctl_fail("ListContainerStats: %s: %s", grpc_code_to_str(r.code), r.message ? r.message : "");
    if (resp && strcmp(ctl.output, "json") == 0) {
        print_json(&resp->base);
    } else if (resp) {
        table_init(&t, 5);
        stats_rows(&t, resp);
        table_print(&t, stdout);
        table_free(&t);
    }
    ctl_result_free(&r);
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc ? 1 : 0;
}
