/* Tests of the HTTP/1.1 client (src/http1/pool.c, conn.c) against a real
 * Docker Engine (dockerd 20.10, API 1.41): buffered JSON, concurrency and
 * reuse, streamed events, errors as JSON, hijacked exec with and without
 * upgrade, stats with pause/resume and cancel, timeouts, connect failures,
 * TLS with client certificates.
 *
 * Skips (exit 0) unless CRISP_TEST_DOCKER_SOCK names the engine's socket.
 * test/unit/h1_dockerd.sh start prints the variables for a private dockerd:
 *   CRISP_TEST_DOCKER_SOCK      unix socket of the engine (required)
 *   CRISP_TEST_DOCKER_IMAGE     a local image with sh, cat, sleep (exec, stats)
 *   CRISP_TEST_DOCKER_TLS_ADDR  tcp://host:port of a --tlsverify listener
 *   CRISP_TEST_DOCKER_TLS_DIR   its ca.pem, client.pem, client-key.pem
 *   CRISP_TEST_DOCKER_PULL      an image to pull (e.g. from a local registry)
 * Never touches anything but what it creates (names start with h1pool-).
 * Also passes against podman's Docker-compatible service (its socket as
 * CRISP_TEST_DOCKER_SOCK, an image it holds as CRISP_TEST_DOCKER_IMAGE). */
#define _GNU_SOURCE /* strcasestr */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "crisp/buf.h"
#include "crisp/h1.h"
#include "crisp/net.h"
#include "unit.h"

static struct event_base *base;
static int in_request, cb_inside, pending;

struct res {
    int done, err, status, heads, bodies, bodies_in_pause;
    char errmsg[512];
    struct crisp_buf body;
    char ctype[128];
    int has_api_version;
    struct h1_req *r;
    int paused, pause_at_first, cancel_at_bodies;
    const char *stdin_data; /* written at on_head, then half-close */
    int write_rv, close_rv;
};

static void res_init(struct res *x)
{
    memset(x, 0, sizeof(*x));
    crisp_buf_init(&x->body, 64 << 20);
}

static void res_free(struct res *x)
{
    crisp_buf_free(&x->body);
}

static int r_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    x->heads++;
    x->status = status;
    const struct crisp_hdr *ct = crisp_md_get(h, "content-type");
    if (ct)
        snprintf(x->ctype, sizeof(x->ctype), "%.*s", (int)ct->valuelen, (const char *)ct->value);
    x->has_api_version = crisp_md_get(h, "api-version") != NULL;
    if (x->stdin_data) {
        x->write_rv = h1_write(r, (const uint8_t *)x->stdin_data, strlen(x->stdin_data));
        x->close_rv = h1_close_write(r);
    }
    return 0;
}

static int r_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    x->bodies++;
    if (x->paused)
        x->bodies_in_pause++;
    crisp_buf_append(&x->body, p, n);
    if (x->pause_at_first && x->bodies == 1) {
        h1_pause(r);
        x->paused = 1;
    }
    if (x->cancel_at_bodies && x->bodies == x->cancel_at_bodies) {
        h1_cancel(r);
        x->done = 1;
        pending--;
    }
    return 0;
}

static void r_done(struct h1_req *r, int err, const char *msg, int status, const uint8_t *body,
                   size_t len, void *ud)
{
    struct res *x = ud;
    cb_inside += in_request;
    CHECK(!x->done);
    x->done = 1;
    x->err = err;
    x->status = status;
    if (msg)
        snprintf(x->errmsg, sizeof(x->errmsg), "%s", msg);
    if (body)
        crisp_buf_append(&x->body, body, len);
    crisp_buf_append(&x->body, "", 1);
    x->body.len--;
    pending--;
}

static const struct h1_req_cbs buffered = {.on_head = r_head, .on_done = r_done};
static const struct h1_req_cbs streamed = {.on_head = r_head, .on_body = r_body, .on_done = r_done};

static int now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

static void run(int max_ms)
{
    int end = now_ms() + max_ms;
    while (pending > 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    if (pending > 0)
        fprintf(stderr, "  run: %d requests still pending after %d ms\n", pending, max_ms);
    CHECK(pending == 0);
}

static void spin(int ms)
{
    int end = now_ms() + ms;
    while (now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static struct h1_req *send_req(struct h1_pool *pool, const char *method, const char *target,
                               const char *json, const struct h1_req_cbs *cbs, struct res *x)
{
    struct h1_req_opts o = {.method = method, .target = target};
    if (json) {
        o.content_type = "application/json";
        o.body = (const uint8_t *)json;
        o.body_len = strlen(json);
    }
    pending++;
    in_request = 1;
    x->r = h1_request(pool, &o, cbs, x);
    in_request = 0;
    CHECK(x->r != NULL);
    return x->r;
}

/* One buffered call, run to the end. */
static void call(struct h1_pool *pool, const char *method, const char *target, const char *json,
                 struct res *x)
{
    res_init(x);
    send_req(pool, method, target, json, &buffered, x);
    run(30000);
    if (x->err)
        fprintf(stderr, "  %s %s: %s\n", method, target, x->errmsg);
}

#define EXPECT_MSG(x, s)                                                       \
    do {                                                                       \
        if (!strstr((x)->errmsg, (s))) {                                       \
            fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", (x)->errmsg, (s)); \
            CHECK(!"message");                                                 \
        } else {                                                               \
            CHECK(1);                                                          \
        }                                                                      \
    } while (0)

static struct h1_pool *mkpool(const char *url, SSL_CTX *tls, unsigned max_conns, unsigned idle_ms)
{
    struct crisp_addr a;
    char err[256];
    if (crisp_addr_parse(url, &a, err, sizeof(err)) < 0) {
        fprintf(stderr, "  %s\n", err);
        CHECK(!"address");
        return NULL;
    }
    struct h1_pool_opts o = {.addr = &a, .tls = tls, .max_conns = max_conns,
                             .idle_timeout_ms = idle_ms};
    struct h1_pool *pool = h1_pool_new(base, &o, err, sizeof(err));
    CHECK(pool != NULL);
    return pool;
}

static char *json_str(const struct res *x, const char *key)
{
    cJSON *j = cJSON_ParseWithLength((const char *)x->body.data, x->body.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    char *s = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(j);
    return s;
}

/* Docker's multiplexed stream: 8-byte headers [stream,0,0,0,len BE32]. */
static int demux(const uint8_t *p, size_t n, struct crisp_buf *out, struct crisp_buf *errb)
{
    size_t off = 0;
    while (off + 8 <= n) {
        size_t len = ((size_t)p[off + 4] << 24) | ((size_t)p[off + 5] << 16) |
                     ((size_t)p[off + 6] << 8) | p[off + 7];
        if (off + 8 + len > n || p[off + 1] || p[off + 2] || p[off + 3])
            return -1;
        crisp_buf_append(p[off] == 2 ? errb : out, p + off + 8, len);
        off += 8 + len;
    }
    crisp_buf_append(out, "", 1);
    crisp_buf_append(errb, "", 1);
    return off == n ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------- */

static void test_basics(struct h1_pool *pool)
{
    struct res x;
    call(pool, "GET", "/_ping", NULL, &x);
    CHECK(x.err == 0 && x.status == 200 && x.body.len == 2 && !memcmp(x.body.data, "OK", 2));
    CHECK(x.has_api_version);
    res_free(&x);

    call(pool, "HEAD", "/_ping", NULL, &x);
    CHECK(x.err == 0 && x.status == 200 && x.body.len == 0);
    res_free(&x);

    call(pool, "GET", "/v1.41/version", NULL, &x);
    char *v = json_str(&x, "ApiVersion");
    CHECK(x.err == 0 && x.status == 200 && v && !strcmp(v, "1.41"));
    CHECK(strstr(x.ctype, "application/json") != NULL);
    free(v);
    res_free(&x);

    /* An error is JSON {"message": ...} with the HTTP status. */
    call(pool, "POST", "/v1.41/containers/create?name=h1pool-never",
         "{\"Image\":\"h1pool-nonexistent:1\"}", &x);
    char *m = json_str(&x, "message");
    /* dockerd: "No such image: NAME"; podman: "no such image: docker.io/library/NAME: ..." */
    CHECK(x.err == 0 && x.status == 404 && m && strcasestr(m, "no such image: ") &&
          strstr(m, "h1pool-nonexistent:1"));
    free(m);
    res_free(&x);
    call(pool, "GET", "/v1.41/containers/h1pool-nonexistent/json", NULL, &x);
    m = json_str(&x, "message");
    CHECK(x.err == 0 && x.status == 404 && m && strcasestr(m, "no such container"));
    free(m);
    res_free(&x);
    call(pool, "POST", "/v1.41/containers/create", "{bad json", &x);
    CHECK(x.err == 0 && (x.status == 400 || x.status == 500));
    res_free(&x);

    /* Over the caller's cap. */
    res_init(&x);
    struct h1_req_opts o = {.target = "/v1.41/version", .body_max = 16};
    pending++;
    x.r = h1_request(pool, &o, &buffered, &x);
    run(10000);
    CHECK(x.err == H1_E_TOO_LARGE);
    EXPECT_MSG(&x, "larger than the limit of 16 bytes");
    res_free(&x);
}

static void test_concurrency(const char *url)
{
    struct h1_pool *pool = mkpool(url, NULL, 4, 30000);
    struct res x[20];
    for (int i = 0; i < 20; i++) {
        res_init(&x[i]);
        send_req(pool, "GET", "/v1.41/containers/json?all=1", NULL, &buffered, &x[i]);
    }
    unsigned maxc = 0;
    int end = now_ms() + 30000;
    while (pending > 0 && now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        if (h1_pool_conns(pool) > maxc)
            maxc = h1_pool_conns(pool);
    }
    CHECK(pending == 0);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        cJSON *j = cJSON_ParseWithLength((const char *)x[i].body.data, x[i].body.len);
        ok += x[i].err == 0 && x[i].status == 200 && cJSON_IsArray(j);
        cJSON_Delete(j);
        res_free(&x[i]);
    }
    CHECK(ok == 20);
    struct h1_pool_stats st;
    h1_pool_get_stats(pool, &st);
    printf("  20 concurrent GET /containers/json: max %u connections, %lu opened, %lu reused\n",
           maxc, st.conns_opened, st.reused);
    CHECK(maxc >= 1 && maxc <= 4 && st.conns_opened <= 4 && st.reused >= 16 && st.requests == 20);

    /* Idle connections close after the idle timeout. */
    h1_pool_free(pool);
    pool = mkpool(url, NULL, 4, 200);
    struct res y;
    call(pool, "GET", "/_ping", NULL, &y);
    res_free(&y);
    CHECK(h1_pool_conns(pool) == 1);
    spin(400);
    CHECK(h1_pool_conns(pool) == 0);
    h1_pool_free(pool);
}

static int count_events(const struct res *x, const char *type, const char *name, int *creates,
                        int *destroys)
{
    int lines = 0, bad = 0;
    const char *p = (const char *)x->body.data, *end = p + x->body.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        if (!j) {
            bad++;
        } else {
            lines++;
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "Type");
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "Action");
            const cJSON *actor = cJSON_GetObjectItemCaseSensitive(j, "Actor");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(actor, "ID");
            const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(actor, "Attributes");
            const cJSON *an = cJSON_GetObjectItemCaseSensitive(attrs, "name");
            /* dockerd: Actor.ID is the volume name, "destroy"; podman:
             * Actor.ID "", Attributes.name, "remove". */
            int named = (cJSON_IsString(id) && !strcmp(id->valuestring, name)) ||
                        (cJSON_IsString(an) && !strcmp(an->valuestring, name));
            if (cJSON_IsString(t) && !strcmp(t->valuestring, type) && named && cJSON_IsString(a)) {
                *creates += !strcmp(a->valuestring, "create");
                *destroys += !strcmp(a->valuestring, "destroy") || !strcmp(a->valuestring, "remove");
            }
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    return bad ? -1 : lines;
}

static void test_events(struct h1_pool *pool)
{
    long t0 = (long)time(NULL) - 1;
    char name[64], target[160], body[160];
    snprintf(name, sizeof(name), "h1pool-vol-%d", (int)getpid());
    snprintf(body, sizeof(body), "{\"Name\":\"%s\"}", name);
    struct res x;
    call(pool, "POST", "/v1.41/volumes/create", body, &x);
    CHECK(x.err == 0 && x.status == 201);
    res_free(&x);
    snprintf(target, sizeof(target), "/v1.41/volumes/%s", name);
    call(pool, "DELETE", target, NULL, &x);
    CHECK(x.err == 0 && x.status == 204 && x.body.len == 0);
    res_free(&x);

    /* A bounded stream: chunked JSON lines, ends at `until`. */
    res_init(&x);
    snprintf(target, sizeof(target), "/v1.41/events?since=%ld&until=%ld", t0, (long)time(NULL) + 1);
    send_req(pool, "GET", target, NULL, &streamed, &x);
    run(10000);
    int creates = 0, destroys = 0;
    int lines = count_events(&x, "volume", name, &creates, &destroys);
    printf("  events: %d lines in %d on_body calls\n", lines, x.bodies);
    CHECK(x.err == 0 && x.status == 200 && lines >= 2 && creates == 1 && destroys == 1);
    res_free(&x);

    /* An endless stream, cancelled from outside once it started. */
    unsigned before = h1_pool_conns(pool);
    res_init(&x);
    send_req(pool, "GET", "/v1.41/events", NULL, &streamed, &x);
    int end = now_ms() + 5000;
    while (!x.heads && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK(x.heads == 1 && x.status == 200);
    unsigned during = h1_pool_conns(pool);
    h1_cancel(x.r);
    pending--;
    CHECK(h1_pool_conns(pool) == during - 1);
    spin(50);
    CHECK(!x.done);
    (void)before;
    res_free(&x);

    /* A request timeout on an endless stream. */
    res_init(&x);
    struct h1_req_opts o = {.target = "/v1.41/events", .timeout_ms = 300};
    pending++;
    x.r = h1_request(pool, &o, &streamed, &x);
    run(5000);
    CHECK(x.err == H1_E_TIMEOUT && x.status == 200);
    EXPECT_MSG(&x, "GET /v1.41/events to unix://");
    EXPECT_MSG(&x, "timed out after 300 ms");
    res_free(&x);
}

static void exec_round(struct h1_pool *pool, const char *cid, int upgrade, const char *label)
{
    char target[200];
    struct res x;
    snprintf(target, sizeof(target), "/v1.41/containers/%s/exec", cid);
    call(pool, "POST", target,
         "{\"AttachStdin\":true,\"AttachStdout\":true,\"AttachStderr\":true,"
         "\"Cmd\":[\"sh\",\"-c\",\"echo out; echo err >&2; cat; echo done\"]}",
         &x);
    char *eid = json_str(&x, "Id");
    CHECK(x.err == 0 && x.status == 201 && eid);
    res_free(&x);
    if (!eid)
        return;

    res_init(&x);
    x.stdin_data = "hello\n";
    snprintf(target, sizeof(target), "/v1.41/exec/%s/start", eid);
    struct h1_req_opts o = {.method = "POST", .target = target, .upgrade = upgrade,
                            .content_type = "application/json",
                            .body = (const uint8_t *)"{\"Detach\":false,\"Tty\":false}",
                            .body_len = 28};
    pending++;
    x.r = h1_request(pool, &o, &streamed, &x);
    run(20000);
    struct crisp_buf out, errb;
    crisp_buf_init(&out, 1 << 20);
    crisp_buf_init(&errb, 1 << 20);
    int dm = demux(x.body.data, x.body.len, &out, &errb);
    printf("  exec %s: status %d, content-type %s, %zu stream bytes in %d on_body calls\n", label,
           x.status, x.ctype, x.body.len, x.bodies);
    CHECK(x.err == 0 && x.status == (upgrade ? 101 : 200) && x.write_rv == 0 && x.close_rv == 0);
    CHECK(!strcmp(x.ctype, "application/vnd.docker.raw-stream"));
    CHECK(dm == 0 && !strcmp((const char *)out.data, "out\nhello\ndone\n") &&
          !strcmp((const char *)errb.data, "err\n"));
    if (dm != 0 || strcmp((const char *)out.data, "out\nhello\ndone\n"))
        fprintf(stderr, "  exec %s: stdout \"%s\" stderr \"%s\" err %s\n", label,
                (const char *)out.data, (const char *)errb.data, x.errmsg);
    if (getenv("H1_DUMP")) {
        for (size_t i = 0; i < x.body.len; i++)
            fprintf(stderr, "%02x%s", x.body.data[i], i % 16 == 15 ? "\n" : " ");
        fprintf(stderr, "\n");
    }
    crisp_buf_free(&out);
    crisp_buf_free(&errb);
    res_free(&x);

    snprintf(target, sizeof(target), "/v1.41/exec/%s/json", eid);
    call(pool, "GET", target, NULL, &x);
    cJSON *j = cJSON_ParseWithLength((const char *)x.body.data, x.body.len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "ExitCode");
    const cJSON *running = cJSON_GetObjectItemCaseSensitive(j, "Running");
    CHECK(cJSON_IsNumber(code) && code->valueint == 0 && cJSON_IsFalse(running));
    cJSON_Delete(j);
    res_free(&x);
    free(eid);
}

static char *make_container(struct h1_pool *pool, const char *image, const char *suffix)
{
    char target[200], body[300];
    struct res x;
    snprintf(target, sizeof(target), "/v1.41/containers/create?name=h1pool-%d-%s", (int)getpid(),
             suffix);
    snprintf(body, sizeof(body), "{\"Image\":\"%s\",\"Cmd\":[\"sleep\",\"120\"]}", image);
    call(pool, "POST", target, body, &x);
    char *cid = json_str(&x, "Id");
    CHECK(x.err == 0 && x.status == 201 && cid);
    res_free(&x);
    if (!cid)
        return NULL;
    snprintf(target, sizeof(target), "/v1.41/containers/%s/start", cid);
    call(pool, "POST", target, NULL, &x);
    CHECK(x.err == 0 && x.status == 204);
    res_free(&x);
    return cid;
}

static void remove_container(struct h1_pool *pool, const char *cid)
{
    char target[200];
    struct res x;
    snprintf(target, sizeof(target), "/v1.41/containers/%s?force=1", cid);
    call(pool, "DELETE", target, NULL, &x);
    CHECK(x.err == 0 && x.status == 204);
    res_free(&x);
}

static void test_containers(struct h1_pool *pool, const char *image)
{
    char *cid = make_container(pool, image, "c");
    if (!cid)
        return;
    exec_round(pool, cid, 1, "with upgrade");
    exec_round(pool, cid, 0, "without upgrade");

    /* stats?stream=1: one JSON document a second. Pause at the first,
     * nothing arrives while paused, resume, cancel from on_body. */
    char target[200];
    struct res x;
    res_init(&x);
    x.pause_at_first = 1;
    x.cancel_at_bodies = 3;
    snprintf(target, sizeof(target), "/v1.41/containers/%s/stats?stream=1", cid);
    send_req(pool, "GET", target, NULL, &streamed, &x);
    int end = now_ms() + 10000;
    while (!x.paused && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK(x.paused && x.status == 200);
    unsigned conns = h1_pool_conns(pool);
    spin(2500);
    CHECK(x.bodies == 1 && x.bodies_in_pause == 0);
    x.paused = 0;
    in_request = 1;
    h1_resume(x.r);
    in_request = 0;
    run(10000);
    printf("  stats stream: %d on_body calls, %zu bytes, cancelled in the 3rd\n", x.bodies,
           x.body.len);
    CHECK(x.bodies == 3 && h1_pool_conns(pool) == conns - 1);
    spin(1500);
    CHECK(x.bodies == 3);
    res_free(&x);

    /* wait answers 200 at once and the body when the container exits. */
    res_init(&x);
    snprintf(target, sizeof(target), "/v1.41/containers/%s/wait?condition=not-running", cid);
    struct h1_req_opts o = {.method = "POST", .target = target, .timeout_ms = 400};
    pending++;
    x.r = h1_request(pool, &o, &buffered, &x);
    run(5000);
    CHECK(x.err == H1_E_TIMEOUT);
    res_free(&x);

    remove_container(pool, cid);
    free(cid);
}

static void test_pull(struct h1_pool *pool, const char *ref)
{
    char target[400];
    const char *colon = strrchr(ref, ':');
    const char *slash = strrchr(ref, '/');
    if (colon && (!slash || colon > slash))
        snprintf(target, sizeof(target), "/v1.41/images/create?fromImage=%.*s&tag=%s",
                 (int)(colon - ref), ref, colon + 1);
    else
        snprintf(target, sizeof(target), "/v1.41/images/create?fromImage=%s&tag=latest", ref);
    struct res x;
    res_init(&x);
    send_req(pool, "POST", target, NULL, &streamed, &x);
    run(60000);
    crisp_buf_append(&x.body, "", 1);
    CHECK(x.err == 0 && x.status == 200 && strstr((const char *)x.body.data, "\"status\":\"Status: "));
    printf("  pull %s: %zu bytes of progress in %d on_body calls\n", ref, x.body.len, x.bodies);
    res_free(&x);
}

static SSL_CTX *tls_ctx(const char *dir, int client_cert, int trust)
{
    char p1[512], p2[512];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (trust) {
        snprintf(p1, sizeof(p1), "%s/ca.pem", dir);
        CHECK(SSL_CTX_load_verify_locations(ctx, p1, NULL) == 1);
    } else {
        SSL_CTX_set_default_verify_paths(ctx);
    }
    if (client_cert) {
        snprintf(p1, sizeof(p1), "%s/client.pem", dir);
        snprintf(p2, sizeof(p2), "%s/client-key.pem", dir);
        CHECK(SSL_CTX_use_certificate_chain_file(ctx, p1) == 1);
        CHECK(SSL_CTX_use_PrivateKey_file(ctx, p2, SSL_FILETYPE_PEM) == 1);
    }
    return ctx;
}

static void test_tls(const char *url, const char *dir, const char *image)
{
    SSL_CTX *ctx = tls_ctx(dir, 1, 1);
    struct h1_pool *pool = mkpool(url, ctx, 4, 30000);
    SSL_CTX_free(ctx);
    struct res x;
    for (int i = 0; i < 3; i++) {
        call(pool, "GET", "/v1.41/version", NULL, &x);
        char *v = json_str(&x, "ApiVersion");
        CHECK(x.err == 0 && x.status == 200 && v && !strcmp(v, "1.41"));
        free(v);
        res_free(&x);
    }
    struct h1_pool_stats st;
    h1_pool_get_stats(pool, &st);
    CHECK(st.conns_opened == 1 && st.reused == 2);
    if (image) {
        /* h1_close_write sends close_notify: cat sees EOF and "done" follows. */
        char *cid = make_container(pool, image, "tls");
        if (cid) {
            exec_round(pool, cid, 1, "over TLS, with upgrade");
            exec_round(pool, cid, 0, "over TLS, without upgrade");
            remove_container(pool, cid);
            free(cid);
        }
    }
    h1_pool_free(pool);

    /* The same over the IP address: the certificate's IP SAN is checked. */
    char ipurl[128];
    const char *port = strrchr(url, ':');
    snprintf(ipurl, sizeof(ipurl), "tcp://127.0.0.1%s", port);
    ctx = tls_ctx(dir, 1, 1);
    pool = mkpool(ipurl, ctx, 4, 30000);
    SSL_CTX_free(ctx);
    call(pool, "GET", "/_ping", NULL, &x);
    CHECK(x.err == 0 && x.status == 200);
    res_free(&x);
    h1_pool_free(pool);

    /* A server certificate from an unknown CA. */
    ctx = tls_ctx(dir, 1, 0);
    pool = mkpool(url, ctx, 4, 30000);
    SSL_CTX_free(ctx);
    call(pool, "GET", "/_ping", NULL, &x);
    printf("  untrusted server: %s\n", x.errmsg);
    CHECK(x.err == H1_E_CONNECT);
    EXPECT_MSG(&x, "TLS handshake with tcp://");
    EXPECT_MSG(&x, "certificate verify failed");
    res_free(&x);
    h1_pool_free(pool);

    /* No client certificate: dockerd --tlsverify refuses (with TLS 1.3,
     * after the client considered the handshake done). */
    ctx = tls_ctx(dir, 0, 1);
    pool = mkpool(url, ctx, 4, 30000);
    SSL_CTX_free(ctx);
    call(pool, "GET", "/_ping", NULL, &x);
    printf("  no client certificate: %s\n", x.errmsg);
    CHECK(x.err == H1_E_CONNECT || x.err == H1_E_IO);
    EXPECT_MSG(&x, "certificate");
    res_free(&x);
    h1_pool_free(pool);
}

static void test_connect_failure(void)
{
    struct h1_pool *pool = mkpool("unix:///tmp/h1test/h1pool-missing.sock", NULL, 4, 30000);
    struct res x;
    res_init(&x);
    send_req(pool, "GET", "/_ping", NULL, &buffered, &x);
    CHECK(!x.done);
    run(5000);
    CHECK(x.err == H1_E_CONNECT && x.status == 0);
    EXPECT_MSG(&x, "connect unix:///tmp/h1test/h1pool-missing.sock: No such file or directory");
    printf("  missing socket: %s\n", x.errmsg);
    res_free(&x);
    h1_pool_free(pool);
}

int main(void)
{
    const char *sock = getenv("CRISP_TEST_DOCKER_SOCK");
    if (!sock || !*sock) {
        printf("test_h1_pool: skipped: set CRISP_TEST_DOCKER_SOCK to a Docker engine socket "
               "(test/unit/h1_dockerd.sh start prints the variables)\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *image = getenv("CRISP_TEST_DOCKER_IMAGE");
    const char *tls_addr = getenv("CRISP_TEST_DOCKER_TLS_ADDR");
    const char *tls_dir = getenv("CRISP_TEST_DOCKER_TLS_DIR");
    const char *pull = getenv("CRISP_TEST_DOCKER_PULL");
    base = event_base_new();
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);

    char url[200];
    snprintf(url, sizeof(url), "unix://%s", sock);
    struct h1_pool *pool = mkpool(url, NULL, 8, 30000);
    test_basics(pool);
    test_concurrency(url);
    test_events(pool);
    if (image && *image)
        test_containers(pool, image);
    else
        printf("  exec/stats: skipped (set CRISP_TEST_DOCKER_IMAGE)\n");
    if (pull && *pull)
        test_pull(pool, pull);
    test_connect_failure();
    if (tls_addr && *tls_addr && tls_dir && *tls_dir)
        test_tls(tls_addr, tls_dir, image && *image ? image : NULL);
    else
        printf("  TLS: skipped (set CRISP_TEST_DOCKER_TLS_ADDR and CRISP_TEST_DOCKER_TLS_DIR)\n");
    h1_pool_free(pool);
    CHECK(cb_inside == 0);
    event_free(tick);
    event_base_free(base);
    return unit_summary("test_h1_pool");
}
