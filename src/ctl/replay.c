/* replay.c - crispctl replay TRACE --to ENDPOINT: the recorded requests of
 * a full-level trace issued again, in order, against another runtime; the
 * IDs it makes mapped onto the recorded ones (diff.h); where the answers
 * differ, said. Streamed calls, calls crisp made itself, and requests the
 * trace cut or redacted are skipped (and counted). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crisp/grpc.h"
#include "ctl/ctl.h"
#include "ctl/diff.h"
#include "ctl/trace_read.h"
#include "trace/pbjson.h"

#define LINE_MAX_BYTES (256u << 20)
#define DIFFS_PER_CALL 20
#define PACE_MAX_US 10000000

struct replay {
    struct ctl_conn *conn;
    struct idmap *ids;
    const char *to;
    int pace, messages;
    unsigned calls, same, differ, skipped, failed;
    int64_t first_rec_us, first_run_us;
    const struct trace_rec *cur;
    int header_said;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void say_call(struct replay *rp)
{
    if (rp->header_said)
        return;
    rp->header_said = 1;
    printf("#%llu %s/%s:\n", (unsigned long long)rp->cur->id, rp->cur->service, rp->cur->method);
}

static void on_diff(void *ud, const char *path, const char *what)
{
    struct replay *rp = ud;
    say_call(rp);
    printf("    %s: %s\n", path, what);
}

/* "[redacted]" anywhere in the request: registry credentials are dropped
 * (the pull goes without them); anything else makes it unreplayable. */
static int unredact(cJSON *req, const char **why)
{
    cJSON *auth = cJSON_GetObjectItemCaseSensitive(req, "auth");
    char *text;
    if (cJSON_IsObject(auth))
        cJSON_DeleteItemFromObjectCaseSensitive(req, "auth");
    text = cJSON_PrintUnformatted(req);
    int redacted = text && strstr(text, "\"[redacted]\"") != NULL;
    free(text);
    if (redacted)
        *why = "values in it were redacted in the trace";
    else if (auth)
        *why = "its registry credentials were redacted in the trace: pulled without them";
    return redacted ? -1 : 0;
}

static int skip(struct replay *rp, const char *why)
{
    rp->skipped++;
    if (ctl.verbose) {
        say_call(rp);
        printf("    skipped: %s\n", why);
    }
    return 0;
}

static void pace(struct replay *rp, const struct trace_rec *r)
{
    int64_t now = mono_us();
    if (!rp->first_rec_us) {
        rp->first_rec_us = r->wall_us;
        rp->first_run_us = now;
        return;
    }
    int64_t due = rp->first_run_us + (r->wall_us - rp->first_rec_us);
    if (due > now)
        usleep((useconds_t)(due - now < PACE_MAX_US ? due - now : PACE_MAX_US));
}

/* Issues the request; the answer as JSON (NULL when the call failed). */
static cJSON *issue(struct replay *rp, const struct crisp_method *m, const char *json,
                    struct ctl_result *res)
{
    ProtobufCMessage *resp = NULL;
    cJSON *out = NULL;
    ctl_call_json(rp->conn, m, json, &resp, res); /* res->code stays -1: not sent */
    if (resp) {
        char *j = ctl_to_json(resp);
        out = j ? cJSON_Parse(j) : NULL;
        free(j);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return out;
}

static void compare(struct replay *rp, const struct trace_rec *r, const struct ctl_result *res,
                    const cJSON *answer)
{
    unsigned n = 0;
    char what[600];
    if (r->code != res->code) {
        snprintf(what, sizeof(what), "%s \"%.200s\" (recorded) != %s \"%.200s\" (replayed)",
                 r->status ? r->status : "?", r->message ? r->message : "",
                 grpc_code_to_str(res->code), res->message ? res->message : "");
        on_diff(rp, "status", what);
        n++;
    } else if (r->code == GRPC_OK && r->response && answer && !r->cut) {
        n = json_diff(rp->ids, r->response, answer, DIFFS_PER_CALL, on_diff, rp);
    } else if (r->code != GRPC_OK && rp->messages && r->message &&
               !idmap_str_equal(rp->ids, r->message, res->message ? res->message : "")) {
        snprintf(what, sizeof(what), "\"%.250s\" (recorded) != \"%.250s\" (replayed)", r->message,
                 res->message ? res->message : "");
        on_diff(rp, "message", what);
        n++;
    }
    if (n)
        rp->differ++;
    else
        rp->same++;
    if (!n && ctl.verbose)
        say_call(rp), printf("    same\n");
}

static int replay_one(struct replay *rp, const struct trace_rec *r)
{
    const char *why = NULL;
    char name[160];
    snprintf(name, sizeof(name), "%s/%s", r->service ? r->service : "", r->method ? r->method : "");
    const struct crisp_method *m = ctl_method(name);
    rp->cur = r;
    rp->header_said = 0;
    if (r->kind != TREC_CALL || r->parent)
        return 0;
    if (!m)
        return skip(rp, "a method crispctl does not know");
    if (m->server_streaming)
        return skip(rp, "a streamed call");
    if (!r->request)
        return skip(rp, "no request in the trace (record with --trace-level full)");
    if (r->cut || cJSON_GetObjectItemCaseSensitive(r->request, "@cut"))
        return skip(rp, "the trace cut its request");
    cJSON *req = cJSON_Duplicate(r->request, 1);
    if (!req || unredact(req, &why) < 0 || idmap_rewrite(rp->ids, req) < 0) {
        cJSON_Delete(req);
        return skip(rp, why ? why : "out of memory");
    }
    if (why && ctl.verbose)
        say_call(rp), printf("    note: %s\n", why);
    char *json = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (rp->pace)
        pace(rp, r);
    struct ctl_result res = {.code = -1};
    cJSON *answer = json ? issue(rp, m, json, &res) : NULL;
    free(json);
    rp->calls++;
    if (res.code < 0 || !json)
        rp->failed++, say_call(rp), printf("    not sent: %s\n", res.message ? res.message : "?");
    else
        compare(rp, r, &res, answer);
    cJSON_Delete(answer);
    ctl_result_free(&res);
    return 0;
}

static int replay_file(struct replay *rp, FILE *f, const char *path)
{
    struct trace_reader rd;
    struct trace_rec r;
    char *line, err[256];
    size_t n;
    int rc, bad = 0;
    trace_reader_init(&rd, f, LINE_MAX_BYTES);
    while ((rc = trace_reader_next(&rd, &line, &n)) != 0) {
        if (rc < 0 || (n && trace_rec_parse(line, n, &r, err, sizeof(err)) < 0)) {
            fprintf(stderr, "crispctl: %s:%ld: %s\n", path, rd.lineno,
                    rc < 0 ? "a line over the cap, skipped" : err);
            bad++;
            continue;
        }
        if (!n)
            continue;
        replay_one(rp, &r);
        trace_rec_free(&r);
        fflush(stdout);
    }
    trace_reader_free(&rd);
    return bad;
}

int ctl_cmd_replay(int argc, char **argv)
{
    static const struct option lo[] = {{"to", required_argument, NULL, 't'},
                                       {"pace", no_argument, NULL, 'p'},
                                       {"messages", no_argument, NULL, 'm'},
                                       {"verbose", no_argument, NULL, 'v'}, {NULL, 0, NULL, 0}};
    struct replay rp = {0};
    char err[512];
    int c;
    while ((c = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
        if (c == 't')
            rp.to = optarg;
        else if (c == 'p')
            rp.pace = 1;
        else if (c == 'm')
            rp.messages = 1;
        else if (c == 'v')
            ctl.verbose++;
        else
            return 2;
    }
    if (!rp.to || optind != argc - 1)
        return ctl_fail("usage: crispctl replay TRACE --to ENDPOINT [--pace] [--messages] [-v]");
    FILE *f = strcmp(argv[optind], "-") == 0 ? stdin : fopen(argv[optind], "re");
    if (!f)
        return ctl_fail("cannot open %s", argv[optind]);
    rp.conn = ctl_connect(rp.to, err, sizeof(err));
    rp.ids = idmap_new();
    int bad = 0;
    if (rp.conn && rp.ids)
        bad = replay_file(&rp, f, argv[optind]);
    else
        ctl_fail("%s", rp.conn ? "out of memory" : err);
    if (f != stdin)
        fclose(f);
    if (rp.conn)
        printf("replayed %u calls of %s against %s: %u same, %u different, %u not sent; "
               "%u skipped, %u unreadable lines; %zu IDs mapped\n", rp.calls, argv[optind], rp.to,
               rp.same, rp.differ, rp.failed, rp.skipped, (unsigned)bad, idmap_count(rp.ids));
    int ok = rp.conn && rp.ids && !rp.differ && !rp.failed;
    ctl_close(rp.conn);
    idmap_free(rp.ids);
    return ok ? 0 : 1;
}
