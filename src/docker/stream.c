/* stream.c - Exec, Attach and PortForward on Docker and podman: the CRI
 * calls that hand out streaming URLs, and the sessions the streaming
 * server (crisp/stream.h) runs on this backend.
 *
 *   exec         POST /containers/{id}/exec, then /exec/{id}/start hijacked
 *                (Tty as asked: raw bytes, or the 8-byte-header multiplexed
 *                stream); stdin written to it, its half-close for stdin's
 *                end; resize through /exec/{id}/resize; the exit code from
 *                /exec/{id}/json once the stream ends.
 *   attach       POST /containers/{id}/attach?stream=1 hijacked the same way;
 *                resize through /containers/{id}/resize.
 *   port-forward Docker has no API for it: a TCP connection made from inside
 *                the sandbox's network namespace (its PID from an inspect; a
 *                short-lived thread enters /proc/PID/ns/net and makes the
 *                sockets, the loop connects them: 127.0.0.1, then ::1), and
 *                bytes spliced both ways with half-closes. Needs the engine
 *                on this node: a tcp:// engine gets UNAVAILABLE.
 *
 * Processes are not left behind: a session whose client goes away before
 * its exec ended, and an ExecSync that timed out, kill the exec's process
 * (its PID from /exec/{id}/json, signalled on this node; a remote engine's
 * exec can only be abandoned, and is logged as such). */
#define _GNU_SOURCE /* setns */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "docker.h"
#include "crisp/grpc.h"
#include "crisp/log.h"
#include "crisp/sock.h"
#include "crisp/stream.h"

#define SX_IN_HIGH (1u << 20)      /* stdin written to the engine and not yet taken */
#define SX_IN_LOW (256u * 1024)
#define SX_PRE_MAX (1u << 20)      /* stdin before the engine's stream is up */
#define POD_OUT_MAX (4u << 20)     /* the pod connection's queue */
#define EXIT_POLLS 300             /* 10 ms apart: the engine records an exit late */
#define GRACE_MS 1000              /* one direction ended: the other gets this long */
#define KILL_WAIT_MS 2000

/* The backend's target for the streaming server. */
struct dk_target {
    struct crisp_stream_target t;
    struct dk_be *be;
};

static const struct crisp_stream_target_ops dk_sx_ops;

static struct dk_target *target_of(struct dk_be *be)
{
    if (!be->sx) {
        struct dk_target *t = calloc(1, sizeof(*t));
        if (!t)
            return NULL;
        t->t.ops = &dk_sx_ops;
        t->t.name = be->base.name;
        t->be = be;
        be->sx = t;
    }
    return be->sx;
}

void dk_stream_free(struct dk_be *be)
{
    if (!be->sx)
        return;
    crisp_stream_forget(&((struct dk_target *)be->sx)->t);
    free(be->sx);
    be->sx = NULL;
}

static int engine_is_local(const struct dk_be *be)
{
    return strncmp(be->engine, "unix://", 7) == 0;
}

/* ---- the CRI calls: a URL for the request ------------------------------------------------ */

static void reply_url(struct dk_op *op, const struct crisp_stream_req *r)
{
    char url[256];
    struct dk_target *t = target_of(op->be);
    int rv = t ? crisp_stream_register(r, &t->t, url, sizeof(url)) : CRISP_STREAM_E_NOMEM;
    if (rv == CRISP_STREAM_E_OFF) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "%s: crisp's streaming server is off "
                   "(--streaming-listen none)", op->call->method->name);
    } else if (rv == CRISP_STREAM_E_FULL) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "maximum number of in-flight requests exceeded");
    } else if (rv < 0) {
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else if (r->kind == CRISP_STREAM_EXEC) {
        Runtime__V1__ExecResponse e = RUNTIME__V1__EXEC_RESPONSE__INIT;
        e.url = url;
        dk_op_reply(op, &e.base);
    } else if (r->kind == CRISP_STREAM_ATTACH) {
        Runtime__V1__AttachResponse a = RUNTIME__V1__ATTACH_RESPONSE__INIT;
        a.url = url;
        dk_op_reply(op, &a.base);
    } else {
        Runtime__V1__PortForwardResponse p = RUNTIME__V1__PORT_FORWARD_RESPONSE__INIT;
        p.url = url;
        dk_op_reply(op, &p.base);
    }
}

/* The kubelet's checks (validateExecRequest, validateAttachRequest). */
static int check_streams(struct dk_op *op, int tty, int in, int out, int err)
{
    if (tty && err) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "tty and stderr cannot both be true");
        return -1;
    }
    if (!in && !out && !err) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "one of stdin, stdout, or stderr must be set");
        return -1;
    }
    return 0;
}

/* Exec and Attach: the container must exist and run, as containerd checks. */
static void on_ctr_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct crisp_stream_req *r = op->state;
    if (dk_inspect_ok(op, status, json, DK_TYPE_CONTAINER, r->id) < 0)
        return;
    if (!dk_bool(dk_obj(json, "State"), "Running")) {
        dk_op_fail(op, GRPC_FAILED_PRECONDITION, "container %s is not running", r->id);
        return;
    }
    reply_url(op, r);
}

static struct crisp_stream_req *req_state(struct dk_op *op)
{
    struct crisp_stream_req *r = dk_alloc(&op->mem, sizeof(*r));
    if (!r)
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    else
        memset(r, 0, sizeof(*r));
    op->state = r;
    return r;
}

static void dk_sx_exec(struct dk_op *op)
{
    const Runtime__V1__ExecRequest *q = (const void *)op->req;
    if (dk_check_id(op, q->container_id, "container_id") < 0 ||
        check_streams(op, q->tty, q->stdin, q->stdout, q->stderr) < 0)
        return;
    if (!q->n_cmd) {
        dk_op_fail(op, GRPC_INVALID_ARGUMENT, "Exec needs a command");
        return;
    }
    struct crisp_stream_req *r = req_state(op);
    if (!r)
        return;
    *r = (struct crisp_stream_req){.kind = CRISP_STREAM_EXEC, .id = q->container_id,
                                   .cmd = q->cmd, .ncmd = q->n_cmd, .tty = q->tty,
                                   .in = q->stdin, .out = q->stdout, .err = q->stderr};
    dk_call(op, "GET", NULL, on_ctr_inspect, "/containers/%s/json", dk_esc(op, q->container_id));
}

static void dk_sx_attach(struct dk_op *op)
{
    const Runtime__V1__AttachRequest *q = (const void *)op->req;
    if (dk_check_id(op, q->container_id, "container_id") < 0 ||
        check_streams(op, q->tty, q->stdin, q->stdout, q->stderr) < 0)
        return;
    struct crisp_stream_req *r = req_state(op);
    if (!r)
        return;
    *r = (struct crisp_stream_req){.kind = CRISP_STREAM_ATTACH, .id = q->container_id,
                                   .tty = q->tty, .in = q->stdin, .out = q->stdout,
                                   .err = q->stderr};
    dk_call(op, "GET", NULL, on_ctr_inspect, "/containers/%s/json", dk_esc(op, q->container_id));
}

static void on_sandbox_inspect(struct dk_op *op, int status, cJSON *json)
{
    struct crisp_stream_req *r = op->state;
    if (dk_inspect_ok(op, status, json, DK_TYPE_SANDBOX, r->id) < 0)
        return;
    if (!dk_bool(dk_obj(json, "State"), "Running")) {
        dk_op_fail(op, GRPC_FAILED_PRECONDITION, "pod sandbox %s is not running", r->id);
        return;
    }
    reply_url(op, r);
}

static void dk_sx_port_forward(struct dk_op *op)
{
    const Runtime__V1__PortForwardRequest *q = (const void *)op->req;
    if (dk_check_id(op, q->pod_sandbox_id, "pod_sandbox_id") < 0)
        return;
    if (!engine_is_local(op->be)) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "PortForward needs the engine on crisp's node (it "
                   "connects from inside the pod's network namespace); %s is remote",
                   op->be->engine);
        return;
    }
    for (size_t i = 0; i < q->n_port; i++) {
        if (q->port[i] < 1 || q->port[i] > 65535) {
            dk_op_fail(op, GRPC_INVALID_ARGUMENT, "port %d is not in 1..65535", q->port[i]);
            return;
        }
    }
    struct crisp_stream_req *r = req_state(op);
    if (!r)
        return;
    *r = (struct crisp_stream_req){.kind = CRISP_STREAM_PORT_FORWARD, .id = q->pod_sandbox_id,
                                   .ports = q->port, .nports = q->n_port};
    dk_call(op, "GET", NULL, on_sandbox_inspect, "/containers/%s/json",
            dk_esc(op, q->pod_sandbox_id));
}

const struct dk_method dk_stream_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_EXEC] = {dk_sx_exec},
    [CRISP_RPC_ATTACH] = {dk_sx_attach},
    [CRISP_RPC_PORT_FORWARD] = {dk_sx_port_forward},
};

/* ---- killing an exec --------------------------------------------------------------------- */

struct dk_kill {
    struct dk_be *be;
    char exec_id[80];
};

static void on_kill_inspect(struct h1_req *h, int err, const char *errmsg, int status,
                            const uint8_t *body, size_t len, void *ud)
{
    struct dk_kill *k = ud;
    cJSON *j = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    int pid = (int)dk_int(j, "Pid"), running = dk_bool(j, "Running");
    if (!j)
        log_warn("exec_kill_failed", "exec=%s why=%s", k->exec_id,
                 crisp_logq(err ? errmsg : "the engine did not describe the exec"));
    else if (running && pid > 1 && kill(pid, SIGKILL) == 0)
        log_info("exec_killed", "exec=%s pid=%d", k->exec_id, pid);
    else if (running)
        log_warn("exec_kill_failed", "exec=%s pid=%d why=%s", k->exec_id, pid,
                 crisp_logq(pid > 1 ? strerror(errno) : "no PID"));
    cJSON_Delete(j);
    free(k);
}

static const struct h1_req_cbs kill_cbs = {.on_done = on_kill_inspect};

void dk_exec_kill(struct dk_be *be, const char *exec_id)
{
    if (!engine_is_local(be)) {
        log_warn("exec_abandoned", "exec=%s why=\"the engine %s is remote: its process cannot "
                 "be signalled from here and Docker has no call to kill an exec\"", exec_id,
                 be->engine);
        return;
    }
    struct dk_kill *k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->be = be;
    snprintf(k->exec_id, sizeof(k->exec_id), "%s", exec_id);
    char target[160];
    snprintf(target, sizeof(target), "%s%s/exec/%s/json", *be->api ? "/v" : "", be->api, exec_id);
    struct h1_req_opts o = {.method = "GET", .target = target, .timeout_ms = KILL_WAIT_MS};
    if (!h1_request(be->pool, &o, &kill_cbs, k))
        free(k);
}

/* ---- sessions ---------------------------------------------------------------------------- */

struct dk_sx {
    struct dk_be *be;
    struct crisp_stream_sess *s;
    enum crisp_stream_kind kind;
    char id[132];                /* the container or sandbox */
    char exec_id[80];
    int tty, in, out, err;
    struct h1_req *stream;       /* the hijacked connection (or the request before it) */
    struct h1_req *aux;          /* an inspect or a resize */
    struct crisp_buf pre;        /* input before there is anywhere to write it */
    struct event *timer;         /* exit polls; port-forward's grace */
    unsigned w, h;               /* a resize waiting */
    uint8_t hdr[8];              /* the multiplexed stream's frame head */
    size_t hdr_len, frame_left;
    int frame_chan, polls;
    int pid;                     /* the exec's process on the node, once known */
    int pid_tries;
    struct event *pid_timer;     /* the engine answers 101 before the process runs */
    unsigned up : 1, in_end : 1, ended : 1, exited : 1, in_full : 1, want_resize : 1;
    /* port-forward */
    struct crisp_sock *pod;
    struct event *pod_flush;     /* the client's DATA of one loop turn goes out in one write */
    int fd6;
    int32_t port;
    char why4[160];
    unsigned pod_eof : 1, client_eof : 1, on_v6 : 1;
};

/* "/v1.41" + path, printf-style, into buf. */
static const char *api_target(const struct dk_sx *x, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static const char *api_target(const struct dk_sx *x, char *buf, size_t len, const char *fmt, ...)
{
    int n = snprintf(buf, len, "%s%s", *x->be->api ? "/v" : "", x->be->api);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

static void sx_fail(struct dk_sx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sx_fail(struct dk_sx *x, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (x->exited)
        return;
    x->exited = 1;
    crisp_stream_exit(x->s, -1, msg);
}

static void sx_done(struct dk_sx *x, int code)
{
    if (x->exited)
        return;
    x->exited = 1;
    crisp_stream_exit(x->s, code, NULL);
}

/* The engine's error message of a buffered answer. */
static const char *engine_msg(const uint8_t *body, size_t len, char *buf, size_t buflen)
{
    cJSON *j = body ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    snprintf(buf, buflen, "%s", *dk_str(j, "message") ? dk_str(j, "message") : "no message");
    cJSON_Delete(j);
    return buf;
}

/* ---- the engine's output ---------------------------------------------------------------------- */

static void out(struct dk_sx *x, int chan, const uint8_t *p, size_t n)
{
    if (!n || x->exited)
        return;
    if (crisp_stream_output(x->s, chan, p, n) == 1)
        h1_pause(x->stream);
}

/* Docker's multiplexed stream: frames of [stream, 0, 0, 0, size32be]. */
static void demux(struct dk_sx *x, const uint8_t *p, size_t n)
{
    while (n) {
        if (!x->frame_left) {
            size_t take = 8 - x->hdr_len < n ? 8 - x->hdr_len : n;
            memcpy(x->hdr + x->hdr_len, p, take);
            x->hdr_len += take;
            p += take;
            n -= take;
            if (x->hdr_len < 8)
                return;
            x->hdr_len = 0;
            x->frame_chan = x->hdr[0] == 2 ? 2 : 1;
            x->frame_left = (size_t)x->hdr[4] << 24 | (size_t)x->hdr[5] << 16 |
                            (size_t)x->hdr[6] << 8 | x->hdr[7];
            continue;
        }
        size_t take = x->frame_left < n ? x->frame_left : n;
        out(x, x->frame_chan, p, take);
        x->frame_left -= take;
        p += take;
        n -= take;
    }
}

static int on_stream_body(struct h1_req *r, const uint8_t *p, size_t n, void *ud)
{
    struct dk_sx *x = ud;
    if (x->tty)
        out(x, 1, p, n);
    else
        demux(x, p, n);
    return 0;
}

/* ---- resize ------------------------------------------------------------------------------- */

static void send_resize(struct dk_sx *x);

static void on_resize_done(struct h1_req *r, int err, const char *errmsg, int status,
                           const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    x->aux = NULL;
    if (err || (status != 200 && status != 201))
        log_debug("stream_resize_failed", "id=%s status=%d err=%s", x->id, status,
                  crisp_logq(err ? errmsg : ""));
    if (x->want_resize)
        send_resize(x);
}

static const struct h1_req_cbs resize_cbs = {.on_done = on_resize_done};

static void send_resize(struct dk_sx *x)
{
    char t[256];
    if (x->aux || !x->up || x->exited)
        return; /* one at a time: the latest size goes next */
    x->want_resize = 0;
    if (x->kind == CRISP_STREAM_EXEC)
        api_target(x, t, sizeof(t), "/exec/%s/resize?h=%u&w=%u", x->exec_id, x->h, x->w);
    else
        api_target(x, t, sizeof(t), "/containers/%s/resize?h=%u&w=%u", x->id, x->h, x->w);
    struct h1_req_opts o = {.method = "POST", .target = t, .timeout_ms = 10000};
    x->aux = h1_request(x->be->pool, &o, &resize_cbs, x);
}

/* ---- the end of an exec: its exit code --------------------------------------------------------- */

static void inspect_exit(struct dk_sx *x);

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    inspect_exit(arg);
}

static void on_exit_inspect(struct h1_req *r, int err, const char *errmsg, int status,
                            const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    x->aux = NULL;
    cJSON *j = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    if (!j) {
        sx_fail(x, "inspecting the exec: %s", err ? errmsg : "the engine did not answer it");
        return;
    }
    int running = dk_bool(j, "Running"), code = (int)dk_int(j, "ExitCode");
    cJSON_Delete(j);
    /* the stream can end a moment before the engine records the exit */
    struct timeval tv = {0, 10000};
    if (running && x->polls++ < EXIT_POLLS && evtimer_add(x->timer, &tv) == 0)
        return;
    sx_done(x, code);
}

static const struct h1_req_cbs exit_cbs = {.on_done = on_exit_inspect};

static void inspect_exit(struct dk_sx *x)
{
    char t[160];
    api_target(x, t, sizeof(t), "/exec/%s/json", x->exec_id);
    struct h1_req_opts o = {.method = "GET", .target = t, .timeout_ms = 10000};
    if (x->aux) {
        h1_cancel(x->aux); /* a resize: the process is gone anyway */
        x->aux = NULL;
    }
    x->aux = h1_request(x->be->pool, &o, &exit_cbs, x);
    if (!x->aux)
        sx_fail(x, "out of memory");
}

/* ---- the exec's PID: what to kill if the client goes ------------------------------------------- */

static void on_pid_inspect(struct h1_req *r, int err, const char *errmsg, int status,
                           const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    x->aux = NULL;
    cJSON *j = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    x->pid = dk_bool(j, "Running") ? (int)dk_int(j, "Pid") : 0;
    cJSON_Delete(j);
    struct timeval tv = {0, 10000};
    if (x->pid <= 0 && !err && !x->ended && x->pid_tries++ < 100)
        evtimer_add(x->pid_timer, &tv); /* not started yet: ask again */
    if (x->want_resize)
        send_resize(x);
}

static const struct h1_req_cbs pid_inspect_cbs = {.on_done = on_pid_inspect};

static void learn_pid(struct dk_sx *x);

static void on_pid_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dk_sx *x = arg;
    if (!x->ended && !x->exited)
        learn_pid(x);
}

/* Learnt once the exec runs, so that a session ending while it still runs
 * (crisp stopping included) kills it at once, without asking the engine. */
static void learn_pid(struct dk_sx *x)
{
    char t[160];
    struct timeval tv = {0, 10000};
    if (x->kind != CRISP_STREAM_EXEC || !engine_is_local(x->be))
        return;
    if (x->aux) { /* a resize: after it */
        evtimer_add(x->pid_timer, &tv);
        return;
    }
    api_target(x, t, sizeof(t), "/exec/%s/json", x->exec_id);
    struct h1_req_opts o = {.method = "GET", .target = t, .timeout_ms = 10000};
    x->aux = h1_request(x->be->pool, &o, &pid_inspect_cbs, x);
}

/* ---- the hijacked stream ---------------------------------------------------------------------- */

static int on_stream_head(struct h1_req *r, int status, const struct crisp_md *h, void *ud)
{
    struct dk_sx *x = ud;
    if (status != 101 && status != 200)
        return 0; /* on_done reports it */
    x->up = 1;
    if (x->pre.len && h1_write(r, x->pre.data, x->pre.len) < 0) {
        sx_fail(x, "writing stdin to the engine failed");
        return -1;
    }
    crisp_buf_free(&x->pre);
    if (x->in_end)
        h1_close_write(r);
    learn_pid(x);
    if (x->want_resize)
        send_resize(x);
    if (x->in_full) {
        x->in_full = 0;
        crisp_stream_input_ready(x->s);
    }
    return 0;
}

static void on_stream_done(struct h1_req *r, int err, const char *errmsg, int status,
                           const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    char m[256];
    x->stream = NULL;
    x->ended = 1;
    if (err)
        sx_fail(x, "the engine's stream failed: %s", errmsg ? errmsg : h1_strerror(err));
    else if (status != 101 && status != 200)
        sx_fail(x, "%s: the engine answered HTTP %d: %s",
                x->kind == CRISP_STREAM_EXEC ? "starting the exec" : "attaching", status,
                engine_msg(body, len, m, sizeof(m)));
    else if (x->kind == CRISP_STREAM_EXEC)
        inspect_exit(x);
    else
        sx_done(x, 0); /* attach: the container's streams ended */
}

static void on_stream_drain(struct h1_req *r, void *ud)
{
    struct dk_sx *x = ud;
    if (x->in_full && h1_write_pending(r) <= SX_IN_LOW) {
        x->in_full = 0;
        crisp_stream_input_ready(x->s);
    }
}

static const struct h1_req_cbs stream_cbs = {
    .on_head = on_stream_head,
    .on_body = on_stream_body,
    .on_done = on_stream_done,
    .on_drain = on_stream_drain,
};

static void hijack(struct dk_sx *x, const char *target, const char *body)
{
    struct h1_req_opts o = {
        .method = "POST",
        .target = target,
        .content_type = body ? "application/json" : NULL,
        .body = (const uint8_t *)body,
        .body_len = body ? strlen(body) : 0,
        .upgrade = 1,
    };
    x->stream = h1_request(x->be->long_pool, &o, &stream_cbs, x);
    if (!x->stream)
        sx_fail(x, "out of memory");
}

static void on_exec_created(struct h1_req *r, int err, const char *errmsg, int status,
                            const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    char m[256], t[160];
    x->stream = NULL;
    if (err) {
        sx_fail(x, "docker engine %s: %s", x->be->engine, errmsg ? errmsg : h1_strerror(err));
        return;
    }
    cJSON *j = status == 201 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    snprintf(x->exec_id, sizeof(x->exec_id), "%s", dk_str(j, "Id"));
    cJSON_Delete(j);
    if (!*x->exec_id) {
        sx_fail(x, "creating the exec: the engine answered HTTP %d: %s", status,
                engine_msg(body, len, m, sizeof(m)));
        return;
    }
    log_debug("stream_exec", "container=%s exec=%s", x->id, x->exec_id);
    hijack(x, api_target(x, t, sizeof(t), "/exec/%s/start", x->exec_id),
           x->tty ? "{\"Detach\":false,\"Tty\":true}" : "{\"Detach\":false,\"Tty\":false}");
}

static const struct h1_req_cbs create_cbs = {.on_done = on_exec_created};

static void exec_create(struct dk_sx *x, const struct crisp_stream_req *req)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddBoolToObject(b, "AttachStdin", req->in);
    cJSON_AddBoolToObject(b, "AttachStdout", req->out);
    cJSON_AddBoolToObject(b, "AttachStderr", req->err);
    cJSON_AddBoolToObject(b, "Tty", req->tty);
    cJSON_AddItemToObject(b, "Cmd", dk_strv((char **)req->cmd, req->ncmd));
    char *json = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    char t[256];
    struct h1_req_opts o = {
        .method = "POST",
        .target = api_target(x, t, sizeof(t), "/containers/%s/exec", x->id),
        .content_type = "application/json",
        .body = (const uint8_t *)json,
        .body_len = json ? strlen(json) : 0,
        .timeout_ms = 30000,
    };
    x->stream = json ? h1_request(x->be->pool, &o, &create_cbs, x) : NULL;
    free(json);
    if (!x->stream)
        sx_fail(x, "out of memory");
}

/* ---- port-forward: a connection from inside the pod's network namespace --------------------- */

struct ns_job {
    int pid;
    int fd4, fd6;
    int err;          /* errno of what failed */
    const char *what; /* ... and what it was */
};

/* A thread of its own enters the namespace (setns is per thread), makes the
 * sockets there and ends: crisp's own threads never leave their namespace. */
static void *ns_sockets(void *arg)
{
    struct ns_job *j = arg;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", j->pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
        j->err = errno;
        j->what = ns < 0 ? "opening the network namespace" : "entering the network namespace";
        if (ns >= 0)
            close(ns);
        return NULL;
    }
    close(ns);
    j->fd4 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    j->fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (j->fd4 < 0 && j->fd6 < 0) {
        j->err = errno;
        j->what = "socket";
    }
    return NULL;
}

static int netns_sockets(int pid, int *fd4, int *fd6, char *why, size_t whylen)
{
    struct ns_job j = {.pid = pid, .fd4 = -1, .fd6 = -1};
    pthread_t th;
    int e = pthread_create(&th, NULL, ns_sockets, &j);
    if (e) {
        snprintf(why, whylen, "starting a thread: %s", strerror(e));
        return -1;
    }
    pthread_join(th, NULL);
    *fd4 = j.fd4;
    *fd6 = j.fd6;
    if (j.what)
        snprintf(why, whylen, "%s of PID %d: %s", j.what, pid, strerror(j.err));
    return j.what ? -1 : 0;
}

static const struct crisp_sock_cbs pod_cbs;

/* Go's wording, as the kubelet's runtimes put it: "connect: connection refused". */
static void dial_error(char *buf, size_t len, int v6, int port, int err)
{
    char e[96];
    snprintf(e, sizeof(e), "%s", strerror(err));
    e[0] = (char)(e[0] >= 'A' && e[0] <= 'Z' ? e[0] + 32 : e[0]);
    snprintf(buf, len, "dial tcp%d %s:%d: connect: %s", v6 ? 6 : 4, v6 ? "[::1]" : "127.0.0.1",
             port, e);
}

static int pod_connect(struct dk_sx *x, int fd, int v6)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)x->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)x->port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct crisp_sock_dest d = {.sa = v6 ? (struct sockaddr *)&s6 : (struct sockaddr *)&s4,
                                .salen = v6 ? sizeof(s6) : sizeof(s4),
                                .name = v6 ? "[::1]" : "127.0.0.1", .timeout_ms = 10000};
    x->on_v6 = v6;
    x->pod = crisp_sock_open_fd(x->be->evb, fd, &d, POD_OUT_MAX, &pod_cbs, x);
    if (x->pod)
        crisp_sock_set_read_size(x->pod, CRISP_SOCK_READ_MAX); /* a read is a DATA frame */
    return x->pod ? 0 : -1;
}

static void pod_failed(struct dk_sx *x, const char *why6)
{
    sx_fail(x, "failed to connect to localhost:%d inside the pod's network namespace, IPv4: %s "
            "IPv6: %s", x->port, x->why4, why6);
}

static void pf_finish(struct dk_sx *x)
{
    evtimer_del(x->timer);
    sx_done(x, 0);
}

/* One direction ended: both, or the other gets GRACE_MS (as containerd). */
static void pf_half_done(struct dk_sx *x)
{
    if (x->pod_eof && x->client_eof) {
        pf_finish(x);
        return;
    }
    struct timeval tv = {GRACE_MS / 1000, (GRACE_MS % 1000) * 1000};
    evtimer_add(x->timer, &tv);
}

static int pod_on_connected(void *ud)
{
    struct dk_sx *x = ud;
    x->up = 1;
    if (x->fd6 >= 0) {
        close(x->fd6);
        x->fd6 = -1;
    }
    if (x->pre.len && crisp_sock_queue(x->pod, x->pre.data, x->pre.len) < 0) {
        sx_fail(x, "out of memory");
        return 0;
    }
    crisp_buf_free(&x->pre);
    crisp_sock_flush(x->pod);
    if (x->client_eof)
        crisp_sock_shutdown_write(x->pod);
    if (x->in_full) {
        x->in_full = 0;
        crisp_stream_input_ready(x->s);
    }
    return 0;
}

static int pod_on_data(void *ud, const uint8_t *p, size_t n)
{
    struct dk_sx *x = ud;
    if (x->exited)
        return 0;
    if (crisp_stream_output(x->s, 1, p, n) == 1)
        crisp_sock_pause_read(x->pod);
    return 0;
}

static int pod_on_read_eof(void *ud)
{
    struct dk_sx *x = ud;
    x->pod_eof = 1;
    crisp_stream_output_end(x->s);
    pf_half_done(x);
    return 0;
}

static int pod_on_drain(void *ud)
{
    struct dk_sx *x = ud;
    if (x->in_full && crisp_sock_pending(x->pod) <= SX_IN_LOW) {
        x->in_full = 0;
        crisp_stream_input_ready(x->s);
    }
    return 0;
}

static void pod_on_close(void *ud, enum crisp_sock_end how, const char *why)
{
    struct dk_sx *x = ud;
    int e = crisp_sock_errno(x->pod);
    crisp_sock_free(x->pod);
    x->pod = NULL;
    if (!x->up && !x->on_v6) {
        dial_error(x->why4, sizeof(x->why4), 0, x->port, e ? e : ECONNREFUSED);
        int fd6 = x->fd6;
        x->fd6 = -1;
        if (fd6 < 0 || pod_connect(x, fd6, 1) < 0)
            pod_failed(x, "no IPv6 socket");
        return;
    }
    if (!x->up) {
        char why6[160];
        dial_error(why6, sizeof(why6), 1, x->port, e ? e : ECONNREFUSED);
        pod_failed(x, why6);
    } else if (how == CRISP_SOCK_EOF && !e) {
        x->pod_eof = 1;
        crisp_stream_output_end(x->s);
        pf_finish(x);
    } else {
        sx_fail(x, "read tcp %s: %s", x->on_v6 ? "[::1]" : "127.0.0.1", why);
    }
}

static const struct crisp_sock_cbs pod_cbs = {
    .on_data = pod_on_data,
    .on_drain = pod_on_drain,
    .on_connected = pod_on_connected,
    .on_close = pod_on_close,
    .on_read_eof = pod_on_read_eof,
};

static void on_pod_flush(evutil_socket_t fd, short what, void *arg)
{
    struct dk_sx *x = arg;
    if (x->pod && x->up)
        crisp_sock_flush(x->pod);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    pf_finish(arg);
}

static void on_sandbox_pid(struct h1_req *r, int err, const char *errmsg, int status,
                           const uint8_t *body, size_t len, void *ud)
{
    struct dk_sx *x = ud;
    x->aux = NULL;
    cJSON *j = !err && status == 200 ? cJSON_ParseWithLength((const char *)body, len) : NULL;
    int pid = (int)dk_int(dk_obj(j, "State"), "Pid");
    cJSON_Delete(j);
    char why[256];
    int fd4 = -1;
    if (pid <= 0)
        sx_fail(x, "pod sandbox %s: %s", x->id, err ? errmsg : "no running process to enter");
    else if (netns_sockets(pid, &fd4, &x->fd6, why, sizeof(why)) < 0)
        sx_fail(x, "%s", why);
    else if (fd4 >= 0 && pod_connect(x, fd4, 0) < 0)
        sx_fail(x, "out of memory");
    else if (fd4 < 0 && x->fd6 >= 0) {
        snprintf(x->why4, sizeof(x->why4), "no IPv4 in the pod");
        int fd6 = x->fd6;
        x->fd6 = -1;
        if (pod_connect(x, fd6, 1) < 0)
            sx_fail(x, "out of memory");
    }
}

static const struct h1_req_cbs pid_cbs = {.on_done = on_sandbox_pid};

static void pf_open(struct dk_sx *x)
{
    char t[256];
    struct h1_req_opts o = {.method = "GET",
                            .target = api_target(x, t, sizeof(t), "/containers/%s/json", x->id),
                            .timeout_ms = 10000};
    x->aux = h1_request(x->be->pool, &o, &pid_cbs, x);
    if (!x->aux)
        sx_fail(x, "out of memory");
}

/* ---- the target's ops ----------------------------------------------------------------------- */

static void *sx_open(struct crisp_stream_target *t, const struct crisp_stream_req *req,
                     int32_t port, struct crisp_stream_sess *s)
{
    struct dk_sx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->be = ((struct dk_target *)t)->be;
    x->s = s;
    x->kind = req->kind;
    x->tty = req->tty;
    x->in = req->in;
    x->out = req->out;
    x->err = req->err;
    x->port = port;
    x->fd6 = -1;
    snprintf(x->id, sizeof(x->id), "%s", req->id);
    crisp_buf_init(&x->pre, SX_PRE_MAX * 8);
    x->timer = evtimer_new(x->be->evb, req->kind == CRISP_STREAM_PORT_FORWARD ? on_grace : on_poll, x);
    x->pid_timer = evtimer_new(x->be->evb, on_pid_timer, x);
    x->pod_flush = event_new(x->be->evb, -1, 0, on_pod_flush, x);
    if (!x->timer || !x->pid_timer || !x->pod_flush) {
        if (x->timer)
            event_free(x->timer);
        if (x->pid_timer)
            event_free(x->pid_timer);
        if (x->pod_flush)
            event_free(x->pod_flush);
        free(x);
        return NULL;
    }
    char t2[320];
    if (req->kind == CRISP_STREAM_EXEC)
        exec_create(x, req);
    else if (req->kind == CRISP_STREAM_ATTACH)
        hijack(x, api_target(x, t2, sizeof(t2), "/containers/%s/attach?stream=1&stdin=%d&stdout=%d"
                             "&stderr=%d", x->id, req->in, req->out, req->err), NULL);
    else
        pf_open(x);
    return x;
}

static int sx_input(void *ctx, const uint8_t *p, size_t n)
{
    struct dk_sx *x = ctx;
    if (x->exited || x->in_end)
        return 0;
    if (!x->up) {
        if (crisp_buf_append(&x->pre, p, n) < 0) {
            sx_fail(x, "input before the session was up passed %u bytes", SX_PRE_MAX * 8);
            return 0;
        }
        x->in_full = x->pre.len >= SX_IN_LOW;
        return x->in_full;
    }
    if (x->kind == CRISP_STREAM_PORT_FORWARD) {
        if (crisp_sock_queue(x->pod, p, n) < 0) {
            sx_fail(x, "write to the pod's connection failed");
            return 0;
        }
        /* the frames of one read of the client go out together, from the
         * loop; a queue past SX_IN_HIGH is written now and, if the kernel
         * refuses it, waits for on_drain */
        if (crisp_sock_pending(x->pod) <= SX_IN_HIGH) {
            event_active(x->pod_flush, EV_TIMEOUT, 0);
            return 0;
        }
        crisp_sock_flush(x->pod);
        x->in_full = crisp_sock_pending(x->pod) > SX_IN_HIGH;
        return x->in_full;
    }
    if (!x->stream || h1_write(x->stream, p, n) < 0) {
        log_debug("stream_stdin_dropped", "id=%s bytes=%zu", x->id, n);
        return 0; /* the process no longer reads stdin */
    }
    x->in_full = h1_write_pending(x->stream) > SX_IN_HIGH;
    return x->in_full;
}

static void sx_input_end(void *ctx)
{
    struct dk_sx *x = ctx;
    if (x->in_end)
        return;
    x->in_end = 1;
    if (x->kind == CRISP_STREAM_PORT_FORWARD) {
        x->client_eof = 1;
        if (x->pod && x->up)
            crisp_sock_shutdown_write(x->pod);
        if (x->up)
            pf_half_done(x);
        return;
    }
    if (x->up && x->stream)
        h1_close_write(x->stream);
}

static void sx_resize(void *ctx, unsigned w, unsigned h)
{
    struct dk_sx *x = ctx;
    if (!x->tty || x->kind == CRISP_STREAM_PORT_FORWARD || !w || !h)
        return;
    x->w = w;
    x->h = h;
    x->want_resize = 1;
    send_resize(x);
}

static void sx_output_ready(void *ctx)
{
    struct dk_sx *x = ctx;
    if (x->kind == CRISP_STREAM_PORT_FORWARD) {
        if (x->pod)
            crisp_sock_resume_read(x->pod);
    } else if (x->stream) {
        h1_resume(x->stream);
    }
}

/* The session ended while its exec runs: kill it (its PID known: now). */
static void kill_running(struct dk_sx *x)
{
    log_info("stream_exec_abandoned", "container=%s exec=%s pid=%d why=\"the session ended "
             "before the command\"", x->id, x->exec_id, x->pid);
    if (x->pid > 1 && !x->ended && kill(x->pid, SIGKILL) == 0)
        log_info("exec_killed", "exec=%s pid=%d", x->exec_id, x->pid);
    else
        dk_exec_kill(x->be, x->exec_id);
}

static void sx_close(void *ctx)
{
    struct dk_sx *x = ctx;
    if (x->kind == CRISP_STREAM_EXEC && !x->exited && *x->exec_id)
        kill_running(x);
    if (x->stream)
        h1_cancel(x->stream);
    if (x->aux)
        h1_cancel(x->aux);
    if (x->pod)
        crisp_sock_free(x->pod);
    if (x->fd6 >= 0)
        close(x->fd6);
    event_free(x->timer);
    event_free(x->pid_timer);
    event_free(x->pod_flush);
    crisp_buf_free(&x->pre);
    free(x);
}

static const struct crisp_stream_target_ops dk_sx_ops = {
    .open = sx_open,
    .input = sx_input,
    .input_end = sx_input_end,
    .resize = sx_resize,
    .output_ready = sx_output_ready,
    .close = sx_close,
};
