/* remotecommand.c - exec and attach on a streaming connection (sx.h): the
 * channels of the kubelet's remotecommand protocols. SPDY: the client opens
 * one stream per channel (header streamType: error, stdin, stdout, stderr,
 * resize); the session starts once every expected one is there (stderr
 * only without a tty, resize only with one from v3 on). WebSocket: fixed
 * channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, an empty
 * message on the first writable one says the session is up, and v5's
 * message {255, channel} closes a channel (stdin). The error channel gets
 * the metav1.Status (v4, v5) or the error's text (v1..v3) at the end. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crisp/log.h"
#include "stream/sx.h"
#include "stream/text.h"

enum role { R_STDIN = 0, R_STDOUT, R_STDERR, R_ERROR, R_RESIZE, R_COUNT };
static const char *const role_names[R_COUNT] = {"stdin", "stdout", "stderr", "error", "resize"};

struct sx_rc {
    struct sx_conn *c;
    int version, base64;
    uint32_t h[R_COUNT];
    unsigned have, want;          /* bit per role */
    struct crisp_stream_sess sess;
    struct sx_json_split resize;
    unsigned resize_bad : 1, stdin_done : 1;
};

static const struct crisp_stream_req *req_of(const struct sx_rc *rc)
{
    return &sx_conn_ticket(rc->c)->req;
}

static void rc_on_exit(struct crisp_stream_sess *s, int code, const char *err);

struct sx_rc *sx_rc_new(struct sx_conn *c, int version, int base64)
{
    struct sx_rc *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->c = c;
    rc->version = version;
    rc->base64 = base64;
    const struct crisp_stream_req *r = &sx_conn_ticket(c)->req;
    rc->want = 1u << R_ERROR | (r->in ? 1u << R_STDIN : 0) | (r->out ? 1u << R_STDOUT : 0) |
               (r->err && !r->tty ? 1u << R_STDERR : 0) |
               (r->tty && version >= 3 ? 1u << R_RESIZE : 0);
    sx_sess_init(c, &rc->sess, sx_conn_ticket(c)->target);
    rc->sess.owner = rc;
    rc->sess.on_exit = rc_on_exit;
    return rc;
}

void sx_rc_free(struct sx_rc *rc)
{
    free(rc);
}

/* Every channel is there: the backend runs the session. */
static int rc_start(struct sx_rc *rc)
{
    const struct crisp_stream_req *r = req_of(rc);
    for (int chan = 1; chan <= 2; chan++) {
        if (rc->have & (1u << chan)) {
            rc->sess.out[chan] = rc->h[chan];
            rc->sess.out_set |= 1u << chan;
        }
    }
    sx_conn_created(rc->c);
    log_info("stream_session", "conn=%s kind=%s id=%s tty=%d stdin=%d stdout=%d stderr=%d "
             "version=%d", sx_conn_id(rc->c), r->kind == CRISP_STREAM_EXEC ? "exec" : "attach",
             crisp_logq(r->id), r->tty, r->in, r->out, r->err, rc->version);
    if (sx_sess_open(&rc->sess, r, 0) < 0)
        crisp_stream_exit(&rc->sess, -1, "out of memory starting the session");
    return 0;
}

int sx_rc_stream(struct sx_rc *rc, uint32_t id, const struct crisp_md *hdrs)
{
    const char *type = sx_hdr(hdrs, "streamtype");
    for (int r = 0; type && r < R_COUNT; r++) {
        if (strcmp(type, role_names[r]) != 0)
            continue;
        if (rc->have & (1u << r) || rc->sess.opened)
            break; /* a second one, or too late: ignored */
        rc->h[r] = id;
        rc->have |= 1u << r;
        if ((rc->have & rc->want) == rc->want)
            return rc_start(rc);
        return 0;
    }
    log_info("stream_unexpected_stream", "conn=%s stream=%u type=%s", sx_conn_id(rc->c), id,
             crisp_logq(type ? type : ""));
    return 0;
}

int sx_rc_ws_open(struct sx_rc *rc)
{
    const struct crisp_stream_req *r = req_of(rc);
    for (int role = 0; role < R_COUNT; role++)
        rc->h[role] = (uint32_t)role;
    rc->have = rc->want | 1u << R_RESIZE | (r->out ? 1u << R_STDOUT : 0) |
               (r->err ? 1u << R_STDERR : 0);
    /* the kubelet's way of saying the session is up */
    uint32_t first = r->out ? R_STDOUT : r->err ? R_STDERR : R_ERROR;
    if (sx_send(rc->c, first, NULL, 0) < 0)
        return -1;
    return rc_start(rc);
}

static int on_resize(void *ud, const char *obj, size_t len)
{
    struct sx_rc *rc = ud;
    unsigned w, h;
    if (sx_parse_resize(obj, len, &w, &h) < 0)
        return -1;
    if (rc->sess.ctx && !rc->sess.exited && !rc->sess.closing)
        rc->sess.target->ops->resize(rc->sess.ctx, w, h);
    return 0;
}

static void resize_in(struct sx_rc *rc, const uint8_t *p, size_t n)
{
    if (rc->resize_bad)
        return;
    if (sx_json_split_feed(&rc->resize, p, n, on_resize, rc) < 0) {
        rc->resize_bad = 1; /* as the kubelet: resizing stops, the session goes on */
        log_info("stream_bad_resize", "conn=%s", sx_conn_id(rc->c));
    }
}

int sx_rc_data(struct sx_rc *rc, uint32_t h, const uint8_t *p, size_t n)
{
    struct crisp_stream_sess *s = &rc->sess;
    if ((rc->have & (1u << R_RESIZE)) && h == rc->h[R_RESIZE]) {
        resize_in(rc, p, n);
        return 0;
    }
    if (!(rc->have & (1u << R_STDIN)) || h != rc->h[R_STDIN] || rc->stdin_done || !n)
        return 0;
    if (!s->ctx || s->exited || s->closing)
        return 0; /* before the session or after its end: nobody reads stdin */
    if (s->target->ops->input(s->ctx, p, n) == 1) {
        s->in_blocked = 1;
        sx_pause_input(rc->c);
    }
    return 0;
}

int sx_rc_fin(struct sx_rc *rc, uint32_t h)
{
    struct crisp_stream_sess *s = &rc->sess;
    if (!(rc->have & (1u << R_STDIN)) || h != rc->h[R_STDIN] || rc->stdin_done)
        return 0;
    rc->stdin_done = 1;
    if (s->ctx && !s->exited && !s->closing)
        s->target->ops->input_end(s->ctx);
    return 0;
}

void sx_rc_timeout(struct sx_rc *rc)
{
    log_info("stream_create_timeout", "conn=%s have=%#x want=%#x why=\"timed out waiting for "
             "client to create streams\"", sx_conn_id(rc->c), rc->have, rc->want);
    sx_finish(rc->c);
}

/* The status on the error channel, then our side of every channel ends. */
static void rc_on_exit(struct crisp_stream_sess *s, int code, const char *err)
{
    struct sx_rc *rc = s->owner;
    const struct crisp_stream_req *r = req_of(rc);
    log_info("stream_session_end", "conn=%s id=%s exit_code=%d err=%s", sx_conn_id(rc->c),
             crisp_logq(r->id), code, crisp_logq(err ? err : ""));
    char *st = rc->version >= 4 ? sx_status_json(code, err, r->cmd, r->ncmd)
                                : sx_status_text(code, err, r->cmd, r->ncmd);
    if ((rc->have & (1u << R_ERROR)) && st && *st)
        sx_send(rc->c, rc->h[R_ERROR], (const uint8_t *)st, strlen(st));
    free(st);
    static const int ours[] = {R_STDOUT, R_STDERR, R_ERROR};
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
        if (rc->have & (1u << ours[i]))
            sx_fin(rc->c, rc->h[ours[i]]);
    sx_finish(rc->c);
}
