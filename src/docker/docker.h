/* docker.h - the Docker Engine backend (also podman's compatible API): the
 * chains of engine requests. What they send and what they make of the
 * answers is codec.h's (no I/O there).
 *
 *   docker.c         an instance: options, configuration, pools, methods
 *   op.c             the op framework below, API version negotiation
 *   docker_<family>.c one handler family each, peers: runtime, pod, ctr,
 *                    exec, list, image, stats, events; stream.c (Exec,
 *                    Attach, PortForward sessions); docker_cgroup.c
 *                    reads stats from the node's cgroups
 *
 * One dk_op per CRI call: it holds a reference on the call and the decoded
 * request, runs a chain of engine requests (each step a callback that
 * issues the next), and ends with dk_op_reply() or dk_op_fail(). Engine
 * transport errors end the op with UNAVAILABLE naming the engine. A
 * cancelled op (client gone, deadline) stops at its next step unless it is
 * cleaning up after itself: operations that create something
 * (RunPodSandbox, CreateContainer) finish or roll back even when nobody
 * waits for the answer.
 *
 * State: none. Pod and container metadata live in the engine, in
 * cri-dockerd's label and naming scheme (meta.c). */
#ifndef CRISP_DOCKER_H
#define CRISP_DOCKER_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "crisp/backend.h"
#include "crisp/call.h"
#include "crisp/h1.h"
#include "crisp/list.h"
#include "runtime_v1.pb-c.h"
#include "docker/codec.h"

struct dk_be {
    struct crisp_backend base;
    struct dk_config cfg;
    struct event_base *evb;
    struct h1_pool *pool;      /* short calls: version, status, lists, inspects */
    struct h1_pool *long_pool; /* calls that may take long: pulls, stops, execs,
                                * event streams; they never queue short ones */
    char *engine;            /* "unix:///var/run/docker.sock", for messages */
    char api[16];            /* negotiated "1.41", "" until known */
    int podman;              /* the engine is podman's compatible API */
    cJSON *version;          /* GET /version's answer, kept (op.c) */
    int64_t version_at;      /* when (CLOCK_MONOTONIC s) */
    int version_stale;       /* the engine's connection failed since: ask again */
    struct h1_req *version_req; /* GET /version in flight */
    struct crisp_list ver_wait; /* ops waiting for it */
    struct crisp_list ops;   /* live ops (dk_op.link), for shutdown */
    void *sx;                /* stream.c's streaming target, made on first use */
    struct dk_view *view;    /* view.c: the lists kept while events say nothing changed */
    struct crisp_list reaps; /* removals of what failed calls made (docker_create.c) */
    struct event *sweep;     /* looks for sandboxes made and never started */
    struct h1_req *sweep_req;
    struct h1_pool *log_pool;  /* one connection per container log followed */
    struct crisp_list logfs;   /* the followers (docker_logs.c) */
    struct event *log_scan;    /* finds containers to follow */
    struct h1_req *log_scan_req;
    int log_scanned_all;       /* the first scan (exited containers too) was done */
    char *storage_root;        /* the engine's root (GET /info), once learnt (dk_learn_storage_root) */
};

struct dk_op;
struct dk_sub;
typedef void (*dk_json_cb)(struct dk_op *op, int status, cJSON *json);
typedef void (*dk_free_fn)(void *state);

struct dk_op {
    struct crisp_list link;      /* in be->ops */
    struct dk_be *be;
    struct crisp_call *call;
    const ProtobufCMessage *req; /* the decoded request (owned by the call) */
    struct h1_req *h1;           /* the engine request issued last, if in flight */
    struct crisp_list subs;      /* every engine request in flight (dk_sub) */
    unsigned pending;            /* how many */
    int cancelled;
    int target_too_long;         /* dk_esc refused a string: the next request fails */
    int must_finish;             /* keep going after a cancel (cleanup) */
    struct dk_arena mem;         /* the answer is built here (its oom: answer
                                  * RESOURCE_EXHAUSTED instead) */
    int slow;                    /* runs on the long-call pool */
    void *state;                 /* the handler's own */
    dk_free_fn free_state;       /* frees state, the struct included */
    void *cur_ud;                /* the ud of the dk_callx being answered */
    void *aux;                   /* a shared step's own (a pull inside RunPodSandbox) */
    dk_free_fn free_aux;
    char undo_id[80];            /* a container the op made: removed (dk_reap) if
                                  * the op ends before it answered OK */
    struct dk_change *changes;   /* what it changed, entry by entry (dk_op_changed) */
    int changes_lost;            /* one could not be noted (memory short) */
    int answered;                /* dk_op_reply ran: the changes are all there are */
    void (*drained)(struct dk_op *op); /* the client read what was queued (else h1 resumed) */
};

/* A change an op made to one sandbox or container (kind: DK_VIEW_*), and
 * what the engine shows of it once made. */
struct dk_change {
    struct dk_change *next;
    int kind;
    enum dk_expect expect;
    char id[];
};

/* Notes that the op changed container id of kind (as it asks the engine to,
 * or once it did): when the op answers OK, the view patches exactly these
 * entries; when it fails, or a change could not be noted, the view drops
 * its lists (op_detach). */
void dk_op_changed(struct dk_op *op, int kind, const char *id, enum dk_expect expect);

/* A CRI method handler: starts the op's first engine request. */
typedef void (*dk_handler_fn)(struct dk_op *op);

/* Each family's table is indexed by enum crisp_rpc (designated
 * initializers: a misspelt method does not compile); docker.c merges them.
 * A method no family serves is answered UNIMPLEMENTED. */
struct dk_method {
    dk_handler_fn fn;
    unsigned unversioned : 1; /* runs even when the API version cannot be learnt
                               * (Status: the engine being down is its answer) */
    unsigned slow : 1;        /* may take long (pull, stop, exec, events): long_pool */
};

/* ---- ops --------------------------------------------------------------- */

/* Answers the call with a response message and ends the op. */
void dk_op_reply(struct dk_op *op, const ProtobufCMessage *resp);
/* As dk_op_reply, with the answer already packed: msg malloc'd and owned
 * from then on; or p, copied. */
void dk_op_reply_msg(struct dk_op *op, uint8_t *msg, size_t len);
void dk_op_reply_packed(struct dk_op *op, const uint8_t *p, size_t len);
/* A status call (ContainerStatus, PodSandboxStatus) of id: answered from
 * the view's kept answer when it has one (1), else 0 and *gen is the
 * generation to ask the engine's inspect at. */
int dk_op_status_from_view(struct dk_op *op, const char *id, uint64_t *gen);
/* Answers a status call with resp, made from inspect (asked at gen): the
 * view keeps it when it is the answer for the ID asked. */
void dk_op_reply_status(struct dk_op *op, const char *asked, const cJSON *inspect, uint64_t gen,
                        const ProtobufCMessage *resp);
/* The same for an answer made elsewhere (GetContainerEvents): resp, the
 * response of status method rpc made from inspect, kept by the view. */
void dk_keep_status(struct dk_be *be, int rpc, const char *asked, const cJSON *inspect, uint64_t gen,
                    const ProtobufCMessage *resp);
void dk_op_fail(struct dk_op *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fails the op with an encoder's error (err->code 0: out of memory). */
void dk_op_fail_err(struct dk_op *op, const struct dk_err *err);
/* Ends the op without touching the call (already answered). */
void dk_op_end(struct dk_op *op);
/* Whether the op should stop here (cancelled and not must_finish): ends
 * it and returns 1. */
int dk_op_stopped(struct dk_op *op);
/* For code that reaches an op from outside its handler and callbacks (the
 * view's event stream): held, its memory stays until released, even when
 * it ends meanwhile (then dk_op_ended is 1 and its requests are no-ops). */
void dk_op_hold(struct dk_op *op);
void dk_op_release(struct dk_op *op);
int dk_op_ended(struct dk_op *op);

/* Handlers and callbacks may go on using the op after a call that ended
 * it (a loop of engine requests: one failing to start fails the op at
 * once): the dispatch holds the op around each of them (op.c), its memory
 * stays until they return and its later requests and messages are no-ops. */

/* Engine request with a JSON (or empty) body (taken: freed here); the
 * response body is parsed as JSON (NULL when empty or not JSON) and handed
 * to cb with the HTTP status. Transport failures end the op with
 * UNAVAILABLE. The target is printf-formatted (strings from requests go
 * through dk_esc) and prefixed with the negotiated API version ("/v1.41"),
 * or with "/v4.0.0" when it starts with /libpod/ (podman's native API, for
 * what its Docker-compatible API lacks). Several may run at once
 * (op->pending counts them). */
void dk_call(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* As dk_call, with a pointer the callback finds in op->cur_ud (for
 * parallel requests, e.g. one per container). */
void dk_callx(struct dk_op *op, const char *method, cJSON *body, dk_json_cb cb, void *ud,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* As dk_call, but with the caller's options and callbacks (streaming,
 * headers, upgrade); the callbacks get the op as their ud. o->target is
 * prefixed as dk_call's. */
void dk_call_opts(struct dk_op *op, struct h1_req_opts *o, const struct h1_req_cbs *cbs);

/* Streaming answers: a message without finishing (0), then OK; -1 when
 * the op ended (memory short, or the call finished meanwhile). */
int dk_op_send(struct dk_op *op, const ProtobufCMessage *msg);
void dk_op_finish_ok(struct dk_op *op);
/* items in messages of type desc (a Stream* response: one repeated field)
 * of 100 items at most; 0, or -1 when the op ended. */
int dk_op_send_chunks(struct dk_op *op, const ProtobufCMessageDescriptor *desc, void **items,
                      size_t n);
/* Answers a List* call with one response holding the items, a Stream* call
 * with chunks of them and OK (the method's response type says which). */
void dk_op_reply_items(struct dk_op *op, void **items, size_t n);

/* The engine's error message from a JSON error body ({"message": ...}),
 * or a generic sentence. */
const char *dk_errmsg(cJSON *json, int status);
/* Checks a container or sandbox ID from a request; fails the op
 * (INVALID_ARGUMENT when empty, NOT_FOUND when it cannot be an engine ID)
 * and returns -1. */
int dk_check_id(struct dk_op *op, const char *id, const char *what);
/* gRPC code for an engine HTTP status (404 -> NOT_FOUND, 409 -> ...). */
int dk_code_for_status(int status);
/* An inspect answer of the container or sandbox (type) id: 0 when it is
 * one; else the op failed (NOT_FOUND, or the engine's error) and -1. */
int dk_inspect_ok(struct dk_op *op, int status, cJSON *json, const char *type, const char *id);
/* Fails the op from an engine error answer: "<what>: <engine message>". */
void dk_fail_http(struct dk_op *op, int status, cJSON *json, const char *what);

/* s URL-escaped for a request target, in the op's arena (sized to s).
 * When s cannot go whole (longer than an engine target may be, or memory
 * short) it answers "" and the op's next request fails the op instead of
 * being sent (INVALID_ARGUMENT, RESOURCE_EXHAUSTED): never cut. */
const char *dk_esc(struct dk_op *op, const char *s);

/* The engine's GET /version answer, learnt once and kept (refreshed after
 * 5 minutes or once the engine's connection failed): cb gets it (the op
 * failed instead when the engine cannot be asked). */
typedef void (*dk_version_cb)(struct dk_op *op, const cJSON *version);
void dk_engine_version(struct dk_op *op, dk_version_cb cb);
/* The engine's connection failed: it may have been restarted; its version
 * is asked again, its storage root learnt again. */
void dk_engine_lost(struct dk_be *be);
/* The engine's storage root from an answer of GET /info, kept in
 * be->storage_root when none is kept yet; "" when the answer names none.
 * Forgotten (learnt again) when the engine's connection fails or its event
 * stream ends (a restart may move it). */
const char *dk_learn_storage_root(struct dk_be *be, const cJSON *info);
void dk_forget_storage_root(struct dk_be *be);
/* Asks the engine's version in the background unless it is being asked. */
void dk_version_refresh(struct dk_be *be);
void dk_version_free(struct dk_be *be);

/* ---- the op's life (op.c), for docker.c's ops struct ------------------------ */

void dk_op_start(struct dk_be *be, struct crisp_call *call, const struct dk_method *m);
void dk_op_cancel(struct crisp_call *call);
void dk_op_drained(struct crisp_call *call);

/* ---- handler families (docker_<family>.c) -------------------------------- */
extern const struct dk_method dk_runtime_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_pod_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_container_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_image_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_stats_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_list_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_exec_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_event_methods[CRISP_RPC_COUNT];
extern const struct dk_method dk_stream_methods[CRISP_RPC_COUNT];

/* ---- shared between families ---------------------------------------------- */

/* Pulls ref (X-Registry-Auth header value or NULL), then cb(op, ok, code,
 * message). docker_image.c. */
typedef void (*dk_pull_cb)(struct dk_op *op, int ok, int code, const char *msg);
void dk_pull(struct dk_op *op, const char *ref, const char *registry_auth, dk_pull_cb cb);
/* Creates a container of c->body under c->name (once more renamed when the
 * name is taken), then c->made(op) with c->id; the op failed instead
 * ("<what>: <engine message>"), or ended when the call went away (what was
 * made removed). The op must finish (must_finish): a create is not
 * abandoned halfway. docker_create.c */
struct dk_create {
    char name[DK_NAME_MAX + 1];
    cJSON *body;        /* kept for a retry under another name */
    int sandbox;        /* a sandbox: a never-started one holding the name is removed */
    int reclaimed;      /* ... once */
    int renamed;
    char id[80];        /* the engine's (64 hex digits) */
    const char *what;   /* "creating the container", for messages */
    void (*made)(struct dk_op *op);
};
void dk_create_named(struct dk_op *op, struct dk_create *c);
/* Removes container id in the background, retrying (1 s doubling to 30 s,
 * for half an hour) while the engine is away: what an op made and could
 * not remove. dk_reap_free_all drops the removals still waiting (at
 * shutdown, logged). docker_create.c */
void dk_reap(struct dk_be *be, const char *id);
void dk_reap_free_all(struct dk_be *be);
/* Starts the sweep: every 30 s, sandboxes crisp made over a minute ago that
 * never started (a create whose answer the engine lost) are reaped. */
int dk_reap_init(struct dk_be *be);

/* Container logs (docker_logs.c): crisp writes log_path in the CRI's
 * format from the engine's log stream. dk_log_open: log_path opened for
 * appending (its folder made; a link there replaced), locked; -1 (err) when
 * it cannot be, -2 when another process holds it. dk_log_follow: the
 * container just started is followed from its first line into fd (taken).
 * dk_log_reopen: a new file at log_path (the kubelet renamed the old one);
 * -1 and err when it cannot be opened. dk_log_forget: the container was
 * removed. dk_logs_init starts the scans that follow every container with
 * a log path from where its log stops (crisp restarted, the engine back). */
int dk_log_open(const char *path, int *fd, char *err, size_t errlen);
void dk_log_follow(struct dk_be *be, const char *id, const char *path, int fd, int tty);
int dk_log_reopen(struct dk_be *be, const char *id, const char *path, char *err, size_t errlen);
void dk_log_forget(struct dk_be *be, const char *id);
int dk_logs_init(struct dk_be *be);
void dk_logs_free(struct dk_be *be);

/* Exec, Attach, PortForward sessions (stream.c): the streaming target goes
 * (its sessions end) before the instance; an exec's process is killed on
 * this node (its PID from the engine; a remote engine's is abandoned, and
 * logged). */
void dk_stream_free(struct dk_be *be);
void dk_exec_kill(struct dk_be *be, const char *exec_id);

/* Stats of a container read from the node's cgroups for its PID, shaped
 * like a Docker stats answer; NULL when they cannot be read here (a remote
 * engine, another PID namespace). docker_cgroup.c */
cJSON *dk_cgroup_stats(int pid, int with_network);
/* The same in two steps: where process pid's cgroup files are (0, or -1:
 * not readable here; dk_cgroup_clear frees), and their stats. */
int dk_cgroup_find(int pid, struct dk_cgroup *cg);
cJSON *dk_cgroup_read(const struct dk_cgroup *cg, int pid, int with_network);
/* The start time of process pid (/proc/PID/stat, clock ticks since boot),
 * 0 when it cannot be read. */
uint64_t dk_proc_start(int pid);

/* ---- the view of the node (view.c) ------------------------------------------- */

/* The engine's last whole listings of sandboxes and containers, served
 * while its event stream says nothing in them changed, patched entry by
 * entry after a change to one container. Soft state: never served while
 * the event stream is down or an entry is stale. */
enum { DK_VIEW_SANDBOXES, DK_VIEW_CONTAINERS, DK_VIEW_KINDS };
int dk_view_new(struct dk_be *be);
void dk_view_free(struct dk_be *be);
/* The listing of kind (a cJSON array, valid until the next change) when the
 * view holds a current one, else NULL (and the event stream is (re)started
 * when it is not running). */
const cJSON *dk_view_get(struct dk_be *be, int kind);
/* The view's generation: take it before a listing's request, and give it
 * back with the answer to dk_view_put, which keeps (a copy of) the listing
 * only when nothing changed in between and the event stream is open. */
uint64_t dk_view_gen(const struct dk_be *be);
void dk_view_put(struct dk_be *be, int kind, uint64_t gen, const cJSON *list);
/* The packed unfiltered List answer made from the current listing of kind,
 * when one was kept (valid until the next change), else NULL; and keeping
 * one (copied), made from dk_view_get's listing in the same loop turn. */
const uint8_t *dk_view_packed(struct dk_be *be, int kind, size_t *len);
void dk_view_keep_packed(struct dk_be *be, int kind, const uint8_t *p, size_t len);
/* As dk_view_get, with a hold on the listing: it stays valid, unchanged,
 * until dk_view_release(*held), whatever the view does meanwhile. */
struct dk_held;
const cJSON *dk_view_hold(struct dk_be *be, int kind, struct dk_held **held);
void dk_view_release(struct dk_held *held);
/* The PID of container id, when the view knows it (from an inspect since
 * the container's last start, its process still the same one); else 0. */
int dk_view_pid(struct dk_be *be, const char *id);
/* The cgroup files of container id's process pid (the one dk_view_pid
 * answered), found once and kept with the PID; NULL when the view does
 * not know that process or they cannot be found. After a read from them
 * failed, dk_view_cgroup_failed forgets them (found again next time). */
const struct dk_cgroup *dk_view_cgroup(struct dk_be *be, const char *id, int pid);
void dk_view_cgroup_failed(struct dk_be *be, const char *id);
/* Keeps a PID from an inspect asked at the view's generation gen. */
void dk_view_put_pid(struct dk_be *be, const char *id, uint64_t gen, int pid);
/* Whether the view serves the writable layers' sizes (the event stream
 * open and the sizes measured since); the size of container id and when it
 * was measured (1), or 0 when not measured yet. */
int dk_view_stats_ready(struct dk_be *be);
int dk_view_size(struct dk_be *be, const char *id, int64_t *bytes, int64_t *ns);
/* A stats call used the sizes (missing: some container had none): the
 * view measures them again in the background when they are due. */
void dk_view_sizes_wanted(struct dk_be *be, int missing);
/* For a listing of kind with stale entries: the engine's filters for just
 * those (GET /containers/json?all=1&filters=...) and the generation to
 * give back with the answer to dk_view_patch, which puts them in the
 * listing; NULL when there is nothing to patch (a whole listing then). */
char *dk_view_patch_filters(struct dk_be *be, int kind, uint64_t *seq);
void dk_view_patch(struct dk_be *be, int kind, uint64_t seq, const cJSON *answer);
/* The kept packed answer of CRI method rpc (ContainerStatus or
 * PodSandboxStatus, not verbose) for full ID id, valid until the loop turn
 * ends; NULL when there is none (ask the engine). */
const uint8_t *dk_view_status(struct dk_be *be, int rpc, const char *id, size_t *len);
/* Keeps (a copy of) p, the answer made from inspect, asked at generation
 * gen (dk_view_gen), when nothing changed since. */
void dk_view_keep_status(struct dk_be *be, int rpc, const char *id, uint64_t gen, const cJSON *inspect,
                         const uint8_t *p, size_t len);
/* A GetContainerEvents call fed by the view's event stream: on_event gets
 * each container event (parsed, and its line of n bytes, valid while it
 * runs) once the view has taken it in, so that what the view serves then is
 * no older than the event; on_lost, once, when the stream ends (the
 * subscriber is let go first). A subscriber that waits for the stream to
 * open (waiting) gets on_unfed instead when it fails to: it is let go and
 * opens a stream of its own. Any of them may unsubscribe. */
struct dk_view_sub {
    struct crisp_list link;
    int waiting;
    void (*on_event)(struct dk_view_sub *s, const cJSON *ev, const char *line, size_t n);
    void (*on_lost)(struct dk_view_sub *s, const char *why);
    void (*on_unfed)(struct dk_view_sub *s);
};
/* 0: s is fed from now on, or from when the view's stream opens (asked
 * now if it was not); -1: there is no view, or its stream is waiting to
 * be retried (the engine was down): the caller opens its own. */
int dk_view_subscribe(struct dk_be *be, struct dk_view_sub *s);
void dk_view_unsubscribe(struct dk_view_sub *s);
/* A container of a pod as the view knows it: sure when its listed entry
 * is current (its kept status, if any, is served as is); else stale or
 * not listed yet, so its inspect says whether it is the pod's. */
struct dk_member {
    char id[DK_ID_LEN + 1];
    int sure;
};
#define DK_MEMBERS_MAX 4096
/* The containers of sandbox pod (full ID) from the view's container
 * listing, stale entries included (*out malloc'd, *n of them); -1 when the
 * view holds no listing (or more than DK_MEMBERS_MAX): list them. */
int dk_view_members(struct dk_be *be, const char *pod, struct dk_member **out, size_t *n);
/* An op that may have changed the lists ended: the entries of changes
 * (all full IDs) are patched before the lists are served again; when what
 * changed is not known (!known) or an ID is not a full one, the listings
 * are dropped. */
void dk_view_changed(struct dk_be *be, const struct dk_change *changes, int known);
/* A change may be on its way (a call that changes lists started): a
 * listing asked before now is not kept. */
void dk_view_may_change(struct dk_be *be);
/* Whether a call of CRI method rpc (enum crisp_rpc) may change a list. */
int dk_view_changes_lists(int rpc);

#endif
