/* docker_events.c - GetContainerEvents on Docker: the engine's event
 * stream (containers only), one CRI event per line that is a pod's
 * (decode.c), with back-pressure from the client. */
#include <stdlib.h>

#include "docker.h"
#include "crisp/grpc.h"

#define EVENT_LINE_MAX (256 * 1024)

struct events_state {
    char *line;
    size_t len;
    int overflow;
};

static void events_state_free(void *p)
{
    struct events_state *st = p;
    free(st->line);
    free(st);
}

/* One engine event -> one CRI event, if it is a pod's; -1 when the op
 * ended. */
static int event_line(struct dk_op *op, const char *line)
{
    cJSON *ev = cJSON_Parse(line);
    struct dk_event e;
    int rv = dk_event_from_json(ev, &e) == 0 ? dk_op_send(op, &e.resp.base) : 0;
    cJSON_Delete(ev);
    return rv;
}

/* One byte of the stream: lines are events; -1 when the op ended. */
static int event_byte(struct dk_op *op, struct events_state *st, uint8_t c)
{
    if (c != '\n') {
        if (st->len < EVENT_LINE_MAX - 1)
            st->line[st->len++] = (char)c;
        else
            st->overflow = 1; /* an event this large is not a container's */
        return 0;
    }
    int whole = !st->overflow && st->len;
    st->line[st->len] = 0;
    st->len = 0;
    st->overflow = 0;
    return whole ? event_line(op, st->line) : 0;
}

static int events_body(struct h1_req *h, const uint8_t *p, size_t n, void *ud)
{
    struct dk_op *op = ud;
    for (size_t i = 0; i < n; i++)
        if (event_byte(op, op->state, p[i]) < 0)
            return 0; /* the op ended, and this request with it */
    /* A slow client: stop reading the engine until the queue drains. */
    if (op->call && crisp_call_out_full(op->call))
        h1_pause(h);
    return 0;
}

static void events_done(struct h1_req *h, int err, const char *errmsg, int status,
                        const uint8_t *body, size_t len, void *ud)
{
    (void)h;
    (void)body;
    (void)len;
    struct dk_op *op = ud;
    if (err) {
        dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s: event stream: %s", op->be->engine,
                   errmsg ? errmsg : h1_strerror(err));
        return;
    }
    if (status != 200) {
        dk_op_fail(op, dk_code_for_status(status), "docker events: engine answered HTTP %d",
                   status);
        return;
    }
    dk_op_fail(op, GRPC_UNAVAILABLE, "docker engine %s ended its event stream", op->be->engine);
}

static const struct h1_req_cbs events_cbs = {.on_body = events_body, .on_done = events_done};

static void dk_events(struct dk_op *op)
{
    struct events_state *st = calloc(1, sizeof(*st));
    if (st)
        st->line = malloc(EVENT_LINE_MAX);
    if (!st || !st->line) {
        if (st)
            free(st);
        dk_op_fail(op, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    op->state = st;
    op->free_state = events_state_free;
    /* Type only: podman's label filter does not match a bare key. Events
     * of containers that are not pods' are dropped here. */
    static const char target[] = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
    struct h1_req_opts o = {.method = "GET", .target = target}; /* {"type":["container"]} */
    dk_call_opts(op, &o, &events_cbs);
}

const struct dk_method dk_event_methods[CRISP_RPC_COUNT] = {
    [CRISP_RPC_GET_CONTAINER_EVENTS] = {dk_events, .slow = 1},
};
