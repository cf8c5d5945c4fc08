/* show.c - crispctl show (a trace as a readable timeline, -f to follow)
 * and crispctl stats TRACE (per-method counts and latency percentiles). */
#include <fnmatch.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "ctl/table.h"
#include "ctl/trace_read.h"

#define LINE_MAX_BYTES (256u << 20)
#define BODY_SHORT 300

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct show_opts {
    int follow, errors;
    const char *method;
    uint64_t id;
};

struct colors {
    const char *dim, *bold, *ok, *bad, *slow, *off;
};

static struct colors colors(void)
{
    if (!ctl_use_color())
        return (struct colors){"", "", "", "", "", ""};
    return (struct colors){"\033[2m", "\033[1m", "\033[32m", "\033[31m", "\033[33m", "\033[0m"};
}

static void fmt_dur(int64_t us, char *out, size_t cap)
{
    if (us < 1000)
        snprintf(out, cap, "%lldµs", (long long)us);
    else if (us < 1000000)
        snprintf(out, cap, "%.2fms", (double)us / 1e3);
    else
        snprintf(out, cap, "%.2fs", (double)us / 1e6);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *jobj(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* What the call was about, from its request: a pod, a container, an image. */
static void subject(const struct trace_rec *r, char *out, size_t cap)
{
    const cJSON *q = r->request, *md = jobj(jobj(q, "config"), "metadata");
    const char *s;
    out[0] = 0;
    if (md && jstr(md, "namespace"))
        snprintf(out, cap, "pod %s/%s", jstr(md, "namespace"), jstr(md, "name") ? jstr(md, "name") : "");
    else if (md && jstr(md, "name"))
        snprintf(out, cap, "container %s", jstr(md, "name"));
    else if ((s = jstr(q, "containerId")))
        snprintf(out, cap, "container %.13s", s);
    else if ((s = jstr(q, "podSandboxId")))
        snprintf(out, cap, "pod %.13s", s);
    else if ((s = jstr(jobj(q, "image"), "image")))
        snprintf(out, cap, "image %s", s);
}

static void print_body(const char *name, const cJSON *body, const struct colors *c)
{
    if (!body)
        return;
    char *j = cJSON_PrintUnformatted(body);
    if (!j)
        return;
    if (ctl.verbose > 1) {
        printf("    %s%s:%s ", c->dim, name, c->off);
        ctl_print_pretty(stdout, j);
    } else {
        size_t n = strlen(j);
        printf("    %s%s:%s %.*s%s\n", c->dim, name, c->off, BODY_SHORT, j, n > BODY_SHORT ? "…" : "");
    }
    free(j);
}

static void show_one(const struct trace_rec *r, const struct colors *c)
{
    char ts[32], dur[32], be[32] = "", about[300];
    time_t sec = (time_t)(r->wall_us / 1000000);
    struct tm tm;
    localtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
    if (r->kind == TREC_DROPPED) {
        printf("%s%s.%06d  -- %llu records dropped (the trace's queue was full) --%s\n", c->bad, ts,
               (int)(r->wall_us % 1000000), (unsigned long long)r->count, c->off);
        return;
    }
    int ok = r->code == 0;
    fmt_dur(r->latency_us, dur, sizeof(dur));
    if (r->backend_us >= 0 && r->kind == TREC_CALL)
        fmt_dur(r->backend_us, be + 1, sizeof(be) - 1), be[0] = '/';
    subject(r, about, sizeof(about));
    printf("%s%s.%06d%s #%llu%s%s %s%s/%s%s ", c->dim, ts, (int)(r->wall_us % 1000000), c->off,
           (unsigned long long)r->id, r->parent ? " sub" : "", r->cut ? " cut" : "", c->bold,
           r->service ? r->service : "?", r->method ? r->method : "?", c->off);
    if (r->kind == TREC_MSG)
        printf("msg %u +%s %lluB", r->n, dur, (unsigned long long)r->bytes);
    else
        printf("%s%s%s %s%s%s%s %lluB", ok ? c->ok : c->bad, r->status ? r->status : "?", c->off,
               r->latency_us > 1000000 ? c->slow : "", dur, be, c->off,
               (unsigned long long)r->resp_bytes);
    printf("%s%s%s", about[0] ? "  " : "", about, r->message && !ok ? "  " : "");
    if (r->message && !ok)
        printf("%s\"%s\"%s", c->bad, r->message, c->off);
    if (ctl.verbose && r->pid >= 0)
        printf("  %s(conn %llu/%d pid %d uid %d)%s", c->dim, (unsigned long long)r->conn, r->stream,
               r->pid, r->uid, c->off);
    putchar('\n');
    if (ctl.verbose) {
        print_body("request", r->request, c);
        print_body("response", r->response, c);
    }
}

static int wanted(const struct trace_rec *r, const struct show_opts *o)
{
    if (o->errors && (r->kind != TREC_CALL || r->code == 0))
        return r->kind == TREC_DROPPED;
    if (o->id && r->id != o->id)
        return 0;
    return !o->method || (r->method && fnmatch(o->method, r->method, 0) == 0);
}

/* The reader's lines until the end of the file; bad lines said on stderr. */
static void show_lines(struct trace_reader *rd, const char *path, const struct show_opts *o,
                       const struct colors *c)
{
    char *line, err[256];
    size_t n;
    int rc;
    while (!interrupted && (rc = trace_reader_next(rd, &line, &n)) != 0) {
        struct trace_rec r;
        if (rc < 0) {
            fprintf(stderr, "crispctl: %s:%ld: a line over %u bytes, skipped\n", path, rd->lineno + 1,
                    LINE_MAX_BYTES);
            continue;
        }
        if (n == 0)
            continue;
        if (trace_rec_parse(line, n, &r, err, sizeof(err)) < 0) {
            fprintf(stderr, "crispctl: %s:%ld: %s\n", path, rd->lineno, err);
            continue;
        }
        if (wanted(&r, o))
            show_one(&r, c);
        trace_rec_free(&r);
    }
    fflush(stdout);
}

/* Whether the file at path is no longer the one open (rotated, or cut). */
static int replaced(const char *path, FILE *f)
{
    struct stat a, b;
    return stat(path, &a) == 0 && fstat(fileno(f), &b) == 0 &&
           (a.st_ino != b.st_ino || a.st_size < ftell(f));
}

static int show_file(const char *path, const struct show_opts *o, int follow)
{
    struct colors c = colors();
    struct trace_reader rd;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
    if (!f)
        return ctl_fail("cannot open %s", path);
    trace_reader_init(&rd, f, LINE_MAX_BYTES);
    for (;;) {
        show_lines(&rd, path, o, &c);
        if (!follow || interrupted)
            break;
        if (f != stdin && replaced(path, f)) {
            show_lines(&rd, path, o, &c); /* what was written before the rotation */
            FILE *nf = fopen(path, "re");
            if (nf) {
                fclose(f);
                f = nf;
                trace_reader_free(&rd);
                trace_reader_init(&rd, f, LINE_MAX_BYTES);
            }
        }
        usleep(200 * 1000);
    }
    trace_reader_free(&rd);
    if (f != stdin)
        fclose(f);
    return 0;
}

int ctl_cmd_show(int argc, char **argv)
{
    static const struct option lo[] = {{"follow", no_argument, NULL, 'f'},
                                       {"errors", no_argument, NULL, 'e'},
                                       {"method", required_argument, NULL, 'm'},
                                       {"id", required_argument, NULL, 'i'},
                                       {"verbose", no_argument, NULL, 'v'}, {NULL, 0, NULL, 0}};
    struct show_opts o = {0};
    int c, rc = 0;
    while ((c = getopt_long(argc, argv, "fvem:", lo, NULL)) != -1) {
        if (c == 'f')
            o.follow = 1;
        else if (c == 'e')
            o.errors = 1;
        else if (c == 'm')
            o.method = optarg;
        else if (c == 'i')
            o.id = strtoull(optarg, NULL, 10);
        else if (c == 'v')
            ctl.verbose++;
        else
            return 2;
    }
    if (optind >= argc)
        return ctl_fail("usage: crispctl show [-f] [-v|-vv] [--errors] [--method PAT] TRACE...");
    signal(SIGINT, on_sigint);
    for (int i = optind; i < argc && !interrupted; i++)
        rc |= show_file(argv[i], &o, o.follow && i == argc - 1);
    return rc;
}
