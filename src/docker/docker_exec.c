/* docker_exec.c - ExecSync on Docker: an exec created in the container,
 * started over a hijacked connection whose multiplexed stream is split into
 * stdout and stderr, then inspected for the exit code. An exec whose call
 * ends first (its timeout, the client gone) is killed (stream.c's
 * dk_exec_kill): Docker has no call to stop one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "crisp/grpc.h"

#define EXEC_OUTPUT_MAX (16u << 20) /* the kubelet's message cap */
/* A longer ExecSync timeout is no timeout to speak of: the loop's clock
 * plus 2^63-1 s would overflow (and fire at once); containerd runs the
 * command. */
#define EXEC_TIMEOUT_MAX (100LL * 365 * 24 * 3600)

struct exec_state {
    struct dk_be *be;
    char exec_id[80];
    int ended;           /* the exec's stream ended: its process is done */
    struct crisp_buf out, err;
    struct dk_demux demux;
    int truncated;
    int polls;
    struct event *timer; /* the ExecSync timeout */
    struct event *poll;  /* waiting for the engine to record the exit */
};

static void exec_state_free(void *p)
{
    struct exec_state *st = p;
    if (*st->exec_id && !st->ended)
        dk_exec_kill(st->be, st->exec_id);
    crisp_buf_free(&st->out);
    crisp_buf_free(&st->err);
    if (st->timer)
        event_free(st->timer);
    if (st->poll)
        event_free(st->poll);
    free(p);
}

static void exec_reply(struct dk_op *op, int exit_code)
{
    struct exec_state *st = op->state;
    Runtime__V1__ExecSyncResponse r = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
    r.stdout.data = st->out.data;
    r.stdout.len = st->out.len;
    r.stderr.data = st->err.data;
    r.stderr.len = st->err.len;
    r.exit_code = exit_code;
    dk_op_reply(op, &r.base);
}

static void on_exec_inspect(struct dk_op *op, int status, cJSON *json);

static void exec_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_op *op = arg;
    struct exec_state *st = op->state;
    dk_call(op, "GET", NULL, on_exec_inspect, "/exec/%s/json", st->exec_id);
}

static void on_exec_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct exec_state *st = op->state;
    if (status != 200) {
        dk_fail_http(op, status, json, "inspecting the exec");
        return;
    }
    /* The stream can end a moment before the engine records the exit. */
    if (dk_bool(json, "Running") && st->polls++ < 100) {
        struct timeval tv = {0, 10000};
        if (!st->poll)
            st->poll = evtimer_new(op->be->evb, exec_poll, op);
        if (st->poll && evtimer_add(st->poll, &tv) == 0)
            return;
    }
    exec_reply(op, (int)dk_int(json, "ExitCode"));
}

/* A piece of the command's output: kept while the whole fits the
 * kubelet's cap. */
static void exec_output(void *ud, int stream, const uint8_t *p, size_t n)
{
    struct exec_state *st = ud;
    if (st->out.len + st->err.len + n > EXEC_OUTPUT_MAX - 1024)
        st->truncated = 1; /* keep draining; what fits is kept */
    else
        crisp_buf_append(stream == 2 ? &st->err : &st->out, p, n);
}

static int exec_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    (void)r;
    struct dk_op *op = ud;
    struct exec_state *st = op->state;
    dk_demux_feed(&st->demux, p, n, exec_output, st);
    return 0;
}

static void exec_done(struct h1_req *r, int err, const char *errmsg, int status,
                      const uint8_t *body, size_t len, void *ud)
{
    (void)r;
    (void)body;
    (void)len;
    struct dk_op *op = ud;
    struct exec_state *st = op->state;
    if (err) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: exec stream: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    if (status != 101 && status != 200) {
        dk_op_fail(op, dk_code_for_status(status), "starting the exec: engine answered HTTP %d",
                   status);
        return;
    }
    st->ended = 1;
    if (dk_op_stopped(op))
        return;
    if (st->timer)
        evtimer_del(st->timer);
    dk_call(op, "GET", NULL, on_exec_inspect, "/exec/%s/json", st->exec_id);
}

static const struct h1_req_cbs exec_stream_cbs = {.on_body = exec_body, .on_done = exec_done};

static void exec_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dk_op *op = arg;
    const Runtime__V1__ExecSyncRequest *req = (const void *)op->req;
    /* the kubelet gets the timeout it asked for; the command is killed
     * when the op's state goes (exec_state_free) */
    dk_op_fail(op, GRPC_DEADLINE_EXCEEDED, "command timed out after %llds (ExecSync timeout)",
               (long long)req->timeout);
}

static void on_exec_created(struct dk_op *op, int status, cJSON *json)
{
    const Runtime__V1__ExecSyncRequest *req = (const void *)op->req;
    if (status == 404) {
        dk_op_fail(op, GRPC_NOT_FOUND, "container %s not found", req->container_id);
        return;
    }
    if (status == 409) {
        dk_op_fail(op, GRPC_FAILED_PRECONDITION, "container %s is not running: %s",
                   req->container_id, dk_errmsg(json, status));
        return;
    }
    if (status != 201) {
        dk_fail_http(op, status, json, "creating the exec");
        return;
    }
    struct exec_state *st = op->state;
    snprintf(st->exec_id, sizeof(st->exec_id), "%s", dk_str(json, "Id"));
    if (req->timeout > 0) {
        st->timer = evtimer_new(op->be->evb, exec_timeout, op);
        struct timeval tv = {(time_t)(req->timeout < EXEC_TIMEOUT_MAX ? req->timeout : EXEC_TIMEOUT_MAX), 0};
        if (!st->timer || evtimer_add(st->timer, &tv) < 0) {
            dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "cannot arm the exec timer");
            return;
        }
    }
    static const char start[] = "{\"Detach\":false,\"Tty\":false}";
    char target[160];
    snprintf(target, sizeof(target), "/exec/%s/start", st->exec_id);
    struct h1_req_opts o = {
        .method = "POST",
        .target = target,
        .content_type = "application/json",
        .body = (const uint8_t *)start,
        .body_len = sizeof(start) - 1,
        .upgrade = 1,
    };
    dk_call_opts(op, &o, &exec_stream_cbs);
}

static void dk_exec_sync(struct dk_op *op)
{
    const Runtime__V1__ExecSyncRequest *req = (const void *)op->req;
    if (dk_check_id(op, req->container_id, "container_id") < 0)
        return;
    if (!req->n_cmd) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "ExecSync needs a command");
        return;
    }
    struct exec_state *st = calloc(1, sizeof(*st));
    if (!st) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    crisp_buf_init(&st->out, EXEC_OUTPUT_MAX);
    crisp_buf_init(&st->err, EXEC_OUTPUT_MAX);
    st->be = op->be;
    op->state = st;
    op->free_state = exec_state_free;
    dk_call(op, "POST", dk_exec_body(req->cmd, req->n_cmd), on_exec_created, "/containers/%s/exec", dk_esc(op, req->container_id));
}

const struct dk_method dk_exec_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_EXEC_SYNC] = {dk_exec_sync, .slow = 1},
};
