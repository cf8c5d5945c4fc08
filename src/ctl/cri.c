/* cri.c - crispctl's CRI commands: call, and the short forms (version,
 * info, pods, ps, images, pull, inspect, logs, stats). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "ctl/table.h"
#include "runtime_v1.pb-c.h"
#include "trace/jbuf.h"
#include "trace/pbjson.h"

#define REQUEST_FILE_MAX (64u << 20)

static struct ctl_conn *dial(void)
{
    char err[512];
    struct ctl_conn *c = ctl_connect(ctl.endpoint, err, sizeof(err));
    if (!c)
        ctl_fail("%s", err);
    return c;
}

/* The call's failure on stderr; 1 (an exit status). */
static int status_fail(const struct crisp_method *m, const struct ctl_result *r)
{
    return ctl_fail("%s: %s: %s", m->name, grpc_code_to_str(r->code),
                    r->message ? r->message : "");
}

static void print_msg(const ProtobufCMessage *m)
{
    char *j = ctl_to_json(m);
    if (!j) {
        ctl_fail("out of memory writing the answer");
        return;
    }
    if (ctl.verbose || strcmp(ctl.output, "json") != 0)
        ctl_print_pretty(stdout, j);
    else
        puts(j);
    free(j);
}

/* A short form: one call with a built request; the answer in *resp. */
static int simple_call(enum crisp_rpc id, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
    const struct crisp_method *m = crisp_method_by_id(id);
    struct ctl_result r;
    struct ctl_conn *c = dial();
    *resp = NULL;
    if (!c)
        return 1;
    int rc = ctl_call_pb(c, m, req, resp, &r);
    ctl_close(c);
    if (rc == 0 && r.code != GRPC_OK)
        rc = status_fail(m, &r);
    ctl_result_free(&r);
    return rc ? 1 : 0;
}

/* ---- call -------------------------------------------------------------------- */

static char *read_request(const char *arg)
{
    if (!arg)
        return strdup("{}");
    if (arg[0] != '@' && strcmp(arg, "-") != 0)
        return strdup(arg);
    FILE *f = strcmp(arg, "-") == 0 ? stdin : fopen(arg + 1, "re");
    if (!f)
        return ctl_fail("cannot open %s", arg + 1), NULL;
    char *buf = malloc(REQUEST_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, REQUEST_FILE_MAX, f) : 0;
    if (f != stdin)
        fclose(f);
    if (buf && n == REQUEST_FILE_MAX) {
        free(buf);
        return ctl_fail("%s: over 64 MiB", arg), NULL;
    }
    if (buf)
        buf[n] = 0;
    return buf;
}

static int on_stream_msg(void *ud, const uint8_t *msg, size_t len)
{
    const struct crisp_method *m = ud;
    ProtobufCMessage *pm = protobuf_c_message_unpack(m->resp, NULL, len, msg);
    if (!pm)
        return ctl_fail("an undecodable %s", m->resp->name), -1;
    print_msg(pm);
    fflush(stdout);
    protobuf_c_message_free_unpacked(pm, NULL);
    return 0;
}

static int call_streaming(struct ctl_conn *c, const struct crisp_method *m, const char *json)
{
    ProtobufCMessage *req;
    struct ctl_result r;
    char err[512];
    size_t len;
    if (pbjson_decode(m->req, json, strlen(json), REQUEST_FILE_MAX, &req, err, sizeof(err)) < 0)
        return ctl_fail("the request is not a %s: %s", m->req->name, err);
    uint8_t *body = ctl_pack(req, &len);
    pbjson_free(req);
    if (!body)
        return ctl_fail("out of memory");
    ctl_call(c, m->path, body, len, ctl.timeout_s, on_stream_msg, (void *)m, &r);
    free(body);
    int rc = r.code == GRPC_OK ? 0 : status_fail(m, &r);
    ctl_result_free(&r);
    return rc;
}

int ctl_cmd_call(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        return ctl_fail("usage: crispctl call METHOD [JSON|@FILE|-]");
    const struct crisp_method *m = ctl_method(argv[1]);
    if (!m)
        return ctl_fail("no such method %s (e.g. RuntimeService/ListContainers)", argv[1]);
    char *json = read_request(argc == 3 ? argv[2] : NULL);
    struct ctl_conn *c = json ? dial() : NULL;
    int rc = 1;
    if (c && m->server_streaming) {
        rc = call_streaming(c, m, json);
    } else if (c) {
        ProtobufCMessage *resp;
        struct ctl_result r;
        rc = ctl_call_json(c, m, json, &resp, &r) < 0 ? 1 : 0;
        if (rc == 0 && r.code != GRPC_OK)
            rc = status_fail(m, &r);
        else if (resp)
            print_msg(resp);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        ctl_result_free(&r);
    }
    ctl_close(c);
    free(json);
    return rc;
}

/* ---- version, info ------------------------------------------------------------- */

int ctl_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
    Runtime__V1__VersionResponse *v;
    req.version = "0.1.0";
    if (simple_call(CRISP_RPC_VERSION, &req.base, (ProtobufCMessage **)&v))
        return 1;
    if (strcmp(ctl.output, "json") == 0)
        print_msg(&v->base);
    else
        printf("Version:  %s\nRuntimeName:  %s\nRuntimeVersion:  %s\nRuntimeApiVersion:  %s\n",
               v->version, v->runtime_name, v->runtime_version, v->runtime_api_version);
    protobuf_c_message_free_unpacked(&v->base, NULL);
    return 0;
}

int ctl_cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    Runtime__V1__StatusRequest req = RUNTIME__V1__STATUS_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.verbose = 1;
    if (simple_call(CRISP_RPC_STATUS, &req.base, &resp))
        return 1;
    print_msg(resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}
