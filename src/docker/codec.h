/* codec.h - the Docker backend's translation between the CRI and the
 * engine's JSON, apart from the chains of engine requests (docker.h).
 *
 * Pure functions on plain inputs (protobuf-c messages, cJSON, the
 * instance's configuration, an arena): they issue no request and know no
 * op, so they are unit-tested on answers recorded from real engines
 * (test/unit/test_docker_*.c, test/unit/data/).
 *
 *   encode.c, encode_spec.c  CRI request -> engine JSON body, query, header
 *   decode.c, decode_stats.c engine answer -> CRI message
 *   meta.c                   cri-dockerd's names and labels, both ways
 *   arena.c, json.c          what they build with and read from
 *
 * Decoders build in an arena: every message and string they return lives
 * until dk_arena_free. When memory runs short the arena's oom is set and
 * what was built is incomplete (the chain answers RESOURCE_EXHAUSTED). */
#ifndef CRISP_DOCKER_CODEC_H
#define CRISP_DOCKER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "runtime_v1.pb-c.h"

/* ---- arena (arena.c) ------------------------------------------------------ */

struct dk_arena_block;
struct dk_arena {
    struct dk_arena_block *blocks;
    int oom; /* an allocation failed: what was built is incomplete */
};

/* Zeroed memory; NULL (and oom set) when memory is short. */
void *dk_alloc(struct dk_arena *a, size_t n);
/* A copy; "" (static) when s is NULL or memory is short. */
char *dk_strdup(struct dk_arena *a, const char *s);
/* A message of type desc, initialised. */
void *dk_msg(struct dk_arena *a, const ProtobufCMessageDescriptor *desc);
/* An array of n messages of type desc, each initialised. */
void **dk_msgs(struct dk_arena *a, const ProtobufCMessageDescriptor *desc, size_t n);
void dk_arena_free(struct dk_arena *a);
/* Unpacks protobuf messages into a (freed with it). */
ProtobufCAllocator dk_arena_allocator(struct dk_arena *a);

/* ---- reading engine JSON (json.c) ------------------------------------------- */

cJSON *dk_obj(const cJSON *obj, const char *key);          /* NULL if absent */
const char *dk_str(const cJSON *obj, const char *key);     /* "" if absent */
int dk_str_is(const cJSON *obj, const char *key, const char *want);
int64_t dk_int(const cJSON *obj, const char *key);         /* 0 if absent */
int64_t dk_num_i64(double d);   /* saturated; 0 for NaN */
int64_t dk_secs_to_ns(int64_t s); /* saturated */
int dk_bool(const cJSON *obj, const char *key);
/* RFC 3339 (nanoseconds) to Unix ns; 0 for Docker's zero time or garbage. */
int64_t dk_time_ns(const char *rfc3339);

/* A container as a list entry (GET /containers/json) or an inspect answer
 * (GET /containers/ID/json): its name ("/k8s_..."), its labels, whether it
 * runs. */
const char *dk_entry_name(const cJSON *entry);
const cJSON *dk_entry_labels(const cJSON *entry);
int dk_entry_running(const cJSON *entry);

/* ---- names and labels (meta.c) ------------------------------------------------ */

/* cri-dockerd's labels and names */
#define DK_LABEL_TYPE "io.kubernetes.docker.type"
#define DK_TYPE_SANDBOX "podsandbox"
#define DK_TYPE_CONTAINER "container"
#define DK_LABEL_SANDBOX_ID "io.kubernetes.sandbox.id"
#define DK_LABEL_LOGPATH "io.kubernetes.container.logpath"
#define DK_ANNOTATION_PREFIX "annotation."
/* crisp's own: the RuntimeClass handler a pod was started with, and the
 * creation time in nanoseconds */
#define DK_LABEL_HANDLER "io.crisp.runtime-handler"
#define DK_LABEL_CREATED "io.crisp.created-at"
/* the pod's namespace modes ("network,pid,ipc" as CRI NamespaceMode
 * numbers): podman's inspect does not report IPC host mode */
#define DK_LABEL_NSMODES "io.crisp.namespace-modes"
/* the CRI label and annotation keys the kubelet set (JSON {"l":[...],
 * "a":[...]}), and the prefix of a CRI label whose key is one of the
 * backend's own (meta.c) */
#define DK_LABEL_KEYS "io.crisp.cri-keys"
#define DK_LABEL_ESCAPED "io.crisp.label."
#define DK_NAME_PREFIX "k8s"
#define DK_SANDBOX_NAME "POD"

/* The longest Docker name crisp makes or reads (a rename suffix included):
 * Kubernetes' own maxima (pod 253, namespace 63, container 63, uid 36)
 * make about 450. */
#define DK_NAME_MAX 1024

struct dk_name {
    char *name; /* "POD" for sandboxes, else the container's name */
    char *pod, *ns, *uid;
    uint32_t attempt;
    char buf[DK_NAME_MAX + 1];
};
/* Parses "/k8s_<name>_<pod>_<ns>_<uid>_<attempt>[_<random>]"; -1 if the
 * name is not in that scheme. */
int dk_parse_name(const char *docker_name, struct dk_name *out);
/* cri-dockerd's name for a sandbox (ctr NULL) or a container; -1 when it
 * would be longer than DK_NAME_MAX (room for a rename kept). */
int dk_make_name(char out[DK_NAME_MAX + 1], const char *ctr, const char *pod, const char *ns,
                 const char *uid, uint32_t attempt);
/* Appends cri-dockerd's random suffix "_%08x" (a name already taken). */
void dk_rename(char name[DK_NAME_MAX + 1], unsigned suffix);

/* A protobuf-c map<string,string> entry: every such entry type has this
 * layout (base, key, value). */
struct dk_map_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};
/* The map<string,string> field `name` of a message (it must have one):
 * where its count and entries are, and the entry type. */
struct dk_map {
    size_t *n;
    struct dk_map_entry ***entries;
    const ProtobufCMessageDescriptor *entry_desc;
};
struct dk_map dk_map_of(const ProtobufCMessage *msg, const char *name);
/* Docker labels -> the `labels` and `annotations` maps of a CRI message
 * (every CRI message with metadata has both): the keys io.crisp.cri-keys
 * lists (not the image's labels), or for objects made by others every
 * label that is not crisp's or cri-dockerd's own, and the
 * annotation.<key> labels as <key>. */
void dk_cri_labels(struct dk_arena *a, ProtobufCMessage *msg, const cJSON *labels);
/* The `labels` and `annotations` maps of a CRI config -> Docker labels
 * (annotations with the prefix added, a label key that is one of the
 * backend's own escaped, the keys listed); -1 when memory is short. */
int dk_docker_labels(cJSON *dst, const ProtobufCMessage *config);
/* The Docker label key of a CRI label key (malloc'd; NULL: no memory). */
char *dk_docker_label_key(const char *cri_key);
/* Whether an object's Docker labels hold every CRI label of a selector
 * (nsel dk_map_entry), exactly: the engine's label filter splits
 * "key=value" at the first '=' and sees the image's labels too. */
int dk_labels_match(const cJSON *labels, size_t nsel, void *sel);
/* Adds the creation-time label; reads it back (fallback when absent). */
void dk_label_created(cJSON *labels);
int64_t dk_created_ns(const cJSON *labels, int64_t fallback);
/* Whether an inspect answer means "no such sandbox/container" for the CRI:
 * the engine does not know the ID (404), or it names an object that is not
 * of that type (io.kubernetes.docker.type). */
int dk_inspect_absent(int status, const cJSON *inspect, const char *type);

/* ---- CRI -> engine requests (encode.c, encode_spec.c) -------------------------------- */

struct dk_handler_map {
    char *handler; /* RuntimeClass handler ("" = default) */
    char *runtime; /* Docker runtime name ("" = engine default) */
};

/* One instance's configuration, from its options (docker.c). */
struct dk_config {
    char *infra_image;         /* --pod-infra-image */
    const char *log_max_size;  /* json-file max-size (engine-side rotation) */
    const char *log_max_files; /* json-file max-file */
    struct dk_handler_map *handlers; /* --runtime-handler NAME=RUNTIME */
    size_t nhandlers;
    int sizes_every_s;         /* --writable-layer-every */
    int no_view;               /* --node-view off */
};

/* Why an encoder refused a request: a gRPC code and a sentence. */
struct dk_err {
    int code;
    char msg[1024];
};
/* Sets err; returns -1. */
int dk_fail(struct dk_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Docker runtime for a RuntimeClass handler; NULL if not configured. */
const char *dk_runtime_for_handler(const struct dk_config *cfg, const char *handler);
/* The runtime a pod of that handler runs with ("" = the engine's default);
 * NULL and err when the handler is unknown, or when the engine (podman)
 * would ignore the choice. */
const char *dk_pod_runtime(const struct dk_config *cfg, int podman, const char *handler,
                           struct dk_err *err);
/* RunPodSandbox's metadata: name, namespace and uid given, no '_' in them. */
int dk_check_pod_metadata(const Runtime__V1__PodSandboxMetadata *md, struct dk_err *err);
/* The sandbox's and a container's Docker names (a container's pod from the
 * sandbox config, else from the sandbox's own name). */
int dk_sandbox_name(char out[DK_NAME_MAX + 1], const Runtime__V1__PodSandboxMetadata *md,
                    struct dk_err *err);
int dk_container_name(char out[DK_NAME_MAX + 1], const Runtime__V1__CreateContainerRequest *req,
                      const cJSON *sandbox, struct dk_err *err);
/* POST /containers/create bodies: the sandbox (pause) container, and a
 * container joined to its sandbox (sandbox: the sandbox's inspect answer);
 * NULL and err when the request cannot be expressed. */
cJSON *dk_sandbox_body(const Runtime__V1__RunPodSandboxRequest *req, const struct dk_config *cfg,
                       const char *runtime, int podman, struct dk_err *err);
cJSON *dk_container_body(const Runtime__V1__CreateContainerRequest *req, const cJSON *sandbox,
                         const struct dk_config *cfg, int podman, struct dk_err *err);
/* UpdateContainerResources: Docker's update body, or podman's native one. */
cJSON *dk_update_body(const Runtime__V1__LinuxContainerResources *r, int podman);
/* POST /containers/ID/exec for ExecSync. */
cJSON *dk_exec_body(char **cmd, size_t n);

/* Query values, escaped, malloc'd (NULL when memory is short): the
 * filters={"label":[...]} of a list call (the type label, the sandbox label
 * if sandbox_id, a CRI label selector of nsel dk_map_entry), and
 * filters={"reference":[ref]}. */
char *dk_label_filters(const char *type, const char *sandbox_id, size_t nsel, void *sel);
/* The engine's filters for the entries of type (DK_TYPE_*) among n
 * containers named by their full IDs (dk_full_id); NULL when n is 0, an ID
 * is not a full one, or memory is short. */
char *dk_id_filters(const char *type, const char *const *ids, size_t n);
/* Whether id is a container's full ID as the engine gives it (64 lowercase
 * hex digits), the only form a refresh by ID matches exactly. */
#define DK_ID_LEN 64
int dk_full_id(const char *id);
char *dk_image_filter(const char *ref);
/* Whether an image reference can go into a request path: no empty, "."
 * or ".." segment (no reference has one; the engines' HTTP routers
 * answer such a path with a redirect, HTTP 301). */
int dk_image_ref_pathsafe(const char *ref);
/* POST /images/create?fromImage=NAME&tag=TAG for ref ("name", "name:tag",
 * "name@digest"); malloc'd. */
char *dk_pull_target(const char *ref);
/* AuthConfig -> X-Registry-Auth (base64url JSON; auth's base64
 * "user:password" decoded: the engines take username and password only).
 * *out NULL when there is no AuthConfig. */
int dk_registry_auth(const Runtime__V1__AuthConfig *a, char **out, struct dk_err *err);

/* Percent-escaping for paths and queries (unreserved characters kept):
 * the size needed (NUL included), escaping into out (-1, nothing written,
 * when it does not fit: never cut), and into a malloc'd copy. */
size_t dk_url_esc_len(const char *s);
int dk_url_esc(char *out, size_t cap, const char *s);
char *dk_url_esc_dup(const char *s);

/* The pieces of a spec (encode_spec.c). */
cJSON *dk_strv(char **v, size_t n);
/* Adds a printf-formatted string, sized to fit, to an object (key) or an
 * array (key NULL); NULL when memory is short. */
cJSON *dk_add_strf(cJSON *dst, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Security contexts as the CRI means them: an unset seccomp profile is
 * unconfined (the engines would apply their default), a profile name the
 * CRI does not define is refused, a privileged container has none; a
 * group without a user is refused (containerd's rule); podman gets a
 * localhost seccomp profile's path and mask=/unmask= options. */
int dk_sandbox_security(cJSON *cfg, cJSON *hc, const Runtime__V1__LinuxSandboxSecurityContext *sc,
                        int podman, struct dk_err *err);
int dk_container_security(cJSON *cfg, cJSON *hc,
                          const Runtime__V1__LinuxContainerSecurityContext *sc, int podman,
                          struct dk_err *err);
void dk_resources(cJSON *hc, const Runtime__V1__LinuxContainerResources *r, int for_update);
void dk_libpod_resources(cJSON *body, const Runtime__V1__LinuxContainerResources *r);
/* Binds "host:container:options", or Mounts entries for paths with ':'. */
int dk_mounts(cJSON *hc, size_t n, Runtime__V1__Mount **m, struct dk_err *err);
void dk_devices(cJSON *hc, size_t n, Runtime__V1__Device **d);
void dk_dns(cJSON *hc, const Runtime__V1__DNSConfig *dns);
void dk_ports(cJSON *cfg, cJSON *hc, size_t n, Runtime__V1__PortMapping **pm);
void dk_sysctls(cJSON *hc, size_t n, Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry **s);

/* ---- engine answers -> CRI (decode.c) ------------------------------------------------ */

#define DK_API_MIN "1.41"
#define DK_API_MAX "1.47"

/* GET /version: the API version to speak (the engine's, at most
 * DK_API_MAX) and whether the engine is podman. -1: no ApiVersion; -2:
 * older than DK_API_MIN. out->max is the engine's own (valid while version
 * lives). */
struct dk_engine_api {
    const char *max;
    char use[16];
    int podman;
};
int dk_engine_api(const cJSON *version, struct dk_engine_api *out);
void dk_version_response(struct dk_arena *a, const cJSON *version,
                         Runtime__V1__VersionResponse *r);
/* GET /info: the cgroup driver, and where images and writable layers live
 * ("" when the engine does not say). */
Runtime__V1__CgroupDriver dk_cgroup_driver(const cJSON *info);
const char *dk_storage_root(const cJSON *info);

/* Status: the RuntimeReady and NetworkReady conditions (reason and message
 * when the engine is not ok), and the RuntimeClass handlers offered (the
 * default one always; none that podman would ignore). */
Runtime__V1__RuntimeStatus *dk_runtime_status(struct dk_arena *a, int engine_ok, const char *reason,
                                              const char *message);
Runtime__V1__RuntimeHandler **dk_runtime_handlers(struct dk_arena *a, const struct dk_config *cfg,
                                                  int podman, size_t *n);

/* A Docker container state ("running", podman's "stopped", ...) as the CRI's. */
Runtime__V1__ContainerState dk_container_state(const char *docker_state);
/* Metadata from a parsed name. */
Runtime__V1__PodSandboxMetadata *dk_pod_metadata(struct dk_arena *a, const struct dk_name *nm);
Runtime__V1__ContainerMetadata *dk_ctr_metadata(struct dk_arena *a, const struct dk_name *nm);

/* GET /containers/json (sandboxes, or containers) -> the CRI list, with the
 * filter's ID prefix and state applied (the engine applied its labels);
 * entries whose names are not in cri-dockerd's scheme are left out. */
size_t dk_sandboxes_from_list(struct dk_arena *a, const cJSON *list,
                              const Runtime__V1__PodSandboxFilter *f, Runtime__V1__PodSandbox ***out);
size_t dk_containers_from_list(struct dk_arena *a, const cJSON *list,
                               const Runtime__V1__ContainerFilter *f, Runtime__V1__Container ***out);
/* An inspect answer -> the status; NULL when memory is short. */
Runtime__V1__PodSandboxStatus *dk_sandbox_status(struct dk_arena *a, const cJSON *inspect);
Runtime__V1__ContainerStatus *dk_container_status(struct dk_arena *a, const cJSON *inspect);

/* An image list entry or inspect answer -> Image (spec: the reference the
 * client asked for, or NULL); GET /images/json -> the list. */
Runtime__V1__Image *dk_image(struct dk_arena *a, const cJSON *image, const char *spec);
size_t dk_images_from_list(struct dk_arena *a, const cJSON *list, Runtime__V1__Image ***out);

/* One line of a pull's progress: its error ("" when none; an error may
 * come with HTTP 200 already sent), and the gRPC code an error means. */
const char *dk_pull_error(const cJSON *line);
int dk_pull_code(const char *msg);

/* One engine event (a line of GET /events) as a CRI container event: the
 * statuses carry what the event itself says (IDs, names, labels), nothing
 * is re-read. Strings point into the event and into this struct. */
struct dk_event {
    Runtime__V1__ContainerEventResponse resp;
    Runtime__V1__PodSandboxStatus pod;
    Runtime__V1__PodSandboxMetadata pod_md;
    Runtime__V1__ContainerStatus ctr, *ctrs[1];
    Runtime__V1__ContainerMetadata ctr_md;
    struct dk_name name;
};
/* -1 when the event is not about a pod's sandbox or container, or is not
 * one the CRI has (create, start, die, destroy/remove). */
int dk_event_from_json(const cJSON *ev, struct dk_event *out);

/* ---- facts about containers, by ID (facts.c) ------------------------------------------ */

/* What the view knows of a container beyond the engine's listing (its PID,
 * its writable layer's size, its last status answer). An ID
 * longer than 64 bytes or empty has no entry; at most DK_FACTS_MAX entries
 * (dk_fact_add answers NULL past it, as on out-of-memory: not kept). */
#define DK_FACTS_BUCKETS 1024
#define DK_FACTS_MAX 65536
#define DK_STATUS_BYTES_MAX (32u << 20)
/* Where a process's cgroup files are (docker_cgroup.c finds them): the
 * folders of cpuacct.usage (v1) or cpu.stat (v2), of the memory files and
 * of pids.current (may be ""), in one allocation (cpu's). */
struct dk_cgroup {
    char *cpu, *memory, *pids;
    int v2;
};
void dk_cgroup_clear(struct dk_cgroup *cg);
struct dk_fact {
    char id[65];
    int pid;            /* its process, 0: not known */
    uint64_t pid_start; /* that process's start time (/proc/PID/stat), against a reused PID */
    struct dk_cgroup cg; /* that process's cgroup files, when found (cg.cpu) */
    int64_t size_rw;    /* its writable layer's size (bytes) */
    int64_t size_ns;    /* when that was measured; -1: not measured */
    uint8_t *status;    /* its packed status answer (malloc'd), NULL: none */
    size_t status_len;
    int status_rpc;     /* the CRI method it answers (enum crisp_rpc) */
    int64_t status_ms;  /* when it was kept (monotonic) */
    uint64_t status_gen; /* the view's generation its inspect was asked at */
    struct dk_fact *next;
};
struct dk_facts {
    struct dk_fact *bucket[DK_FACTS_BUCKETS];
    size_t n;
    size_t status_bytes; /* of the statuses kept, at most DK_STATUS_BYTES_MAX */
};
struct dk_fact *dk_fact_get(struct dk_facts *t, const char *id);
/* The entry of id, made when there is none (PID 0, size not measured). */
struct dk_fact *dk_fact_add(struct dk_facts *t, const char *id);
void dk_fact_del(struct dk_facts *t, const char *id);
/* Its process is not known any more (PID, start time, cgroup files). */
void dk_fact_forget_pid(struct dk_fact *f);
void dk_facts_forget_pids(struct dk_facts *t);
/* Keeps status (malloc'd, owned from now on), the packed answer to CRI
 * method rpc made at ms, as f's. -1, status freed, when the statuses kept
 * would pass DK_STATUS_BYTES_MAX in all. */
int dk_fact_keep_status(struct dk_facts *t, struct dk_fact *f, uint8_t *status, size_t len, int rpc,
                        int64_t ms);
/* Its status answer is not known any more; or nobody's. */
void dk_fact_forget_status(struct dk_facts *t, struct dk_fact *f);
void dk_facts_forget_statuses(struct dk_facts *t);
void dk_facts_clear(struct dk_facts *t);

/* ---- stats -> CRI (decode_stats.c) ----------------------------------------------------- */

/* The previous CPU sample of each container (by ID prefix), for
 * usage_nano_cores: a bounded cache, not state. */
#define DK_CPU_CACHE_SLOTS 4096
struct dk_cpu_sample {
    char id[16];
    int64_t ts;
    uint64_t usage;
};
struct dk_cpu_cache {
    struct dk_cpu_sample slot[DK_CPU_CACHE_SLOTS];
};
/* The rate since the previous sample of id (nanoseconds of CPU per second;
 * *have 0 when there is none to compare with); records this one. */
uint64_t dk_cpu_rate(struct dk_cpu_cache *cache, const char *id, int64_t ts, uint64_t usage,
                     int *have);

struct dk_stats_ctx {
    struct dk_arena *a;
    struct dk_cpu_cache *cpu; /* NULL: no usage_nano_cores */
    int64_t now_ns;           /* a sample's time when its answer has none */
    const char *fs_root;      /* the writable layers' filesystem (the engine's root) */
};
/* A container or sandbox to report on: its list entry or inspect answer,
 * its stats in Docker's shape (NULL: none), and its writable layer's size:
 * size_ns 0: size_rw was measured with the stats (SizeRw of a size=1
 * answer, see dk_stats_item_sized); > 0: when size_rw was measured (the
 * view's background refresh); < 0: not measured yet, reported as 0 bytes
 * at time 0 (as containerd does before its first snapshot usage sync). */
struct dk_stats_item {
    const cJSON *entry;
    cJSON *stats;
    int sandbox;
    int64_t size_rw;
    int64_t size_ns;
};
/* An item whose size is the entry's own SizeRw (a size=1 answer). */
struct dk_stats_item dk_stats_item_sized(const cJSON *entry, cJSON *stats, int sandbox);
Runtime__V1__ContainerStats *dk_container_stats(struct dk_stats_ctx *c, const struct dk_stats_item *it);
/* A pod's stats: its sandbox's and its containers' among items, summed,
 * with each container's own. */
Runtime__V1__PodSandboxStats *dk_pod_stats(struct dk_stats_ctx *c, const struct dk_stats_item *sb,
                                           const struct dk_stats_item *items, size_t n);

/* Docker's multiplexed exec stream: frames of [stream, 0, 0, 0, size32be]
 * and size bytes, cut anywhere by the transport; put gets each piece of a
 * frame's payload with its stream (1 stdout, 2 stderr). */
struct dk_demux {
    uint8_t hdr[8];
    size_t hdr_len;
    size_t frame_left;
    int stream;
};
typedef void (*dk_demux_put)(void *ud, int stream, const uint8_t *p, size_t n);
void dk_demux_feed(struct dk_demux *d, const uint8_t *p, size_t n, dk_demux_put put, void *ud);

/* ---- container logs (logfmt.c) ------------------------------------------------------------ */

#define DK_LOG_LINE_MAX 16384 /* text per CRI log line (containerd's default) */
#define DK_LOG_TS_MAX 64

/* The engine's log stream (timestamps=1) -> CRI log lines appended to
 * *out. A resume skips what a log holds already: lines older than its
 * last time, and the first n lines of that very time (the engines return
 * those again: `since` counts from the time itself, podman's in whole
 * seconds). */
struct crisp_buf;
struct dk_logconv {
    int tty;                       /* a raw stream: messages end at '\n' */
    struct crisp_buf *out;
    uint8_t hdr[8];                /* a frame header being read */
    size_t hdr_len, frame_left;
    int stream;                    /* 1 stdout, 2 stderr */
    int in_ts;                     /* reading a message's time */
    int end_pending;               /* a message ended, its line not out yet */
    char ts[DK_LOG_TS_MAX];
    size_t ts_len;
    char line[DK_LOG_LINE_MAX];
    size_t len;
    char skip_ts[DK_LOG_TS_MAX];   /* the resume point ("": none) */
    size_t skip_n;
    int64_t skip_ns;
    char stream_last[2][DK_LOG_TS_MAX]; /* each stream's last time (stdout, stderr) */
    uint64_t replays;              /* lines the engine gave again, dropped */
    char last_ts[DK_LOG_TS_MAX];   /* the last line written: a resume point */
    size_t last_n;                 /* lines of that time written */
    uint64_t lines;
};
void dk_logconv_init(struct dk_logconv *c, int tty, struct crisp_buf *out);
void dk_logconv_resume(struct dk_logconv *c, const char *ts, size_t n);
/* Feeds stream bytes: how many were taken (fewer when *out is full:
 * flush it and feed the rest; while end_pending, feed again, with n 0 if
 * nothing is left, to put out the line that did not fit). */
size_t dk_logconv_feed(struct dk_logconv *c, const uint8_t *p, size_t n);
/* The stream ended: a TTY's last line without its newline; -1 when *out
 * is full. */
int dk_logconv_finish(struct dk_logconv *c);
/* The tail of a CRI log file (its last n bytes): the time of its last
 * whole line (ts[0] 0 on entry; else the lines of the given time are
 * counted) and how many whole lines at its end have that time; -1 when it
 * ends in no CRI line. *complete: the bytes up to the last newline (a line
 * after it was cut by a crash); *to_start: every line back to buf's start
 * has that time (read further back, or count on in the file before). */
int dk_log_tail(const char *buf, size_t n, char ts[DK_LOG_TS_MAX], size_t *count, size_t *complete,
                int *to_start);
/* A log time as the engines' `since` ("sec.nanosec"); -1 when it is none. */
int dk_log_since(const char *ts, char *out, size_t cap);

/* A verbose answer's info map: {"info": text}, or the JSON printed. */
void dk_info_text(struct dk_arena *a, ProtobufCMessage *resp, const char *text);
void dk_info_json(struct dk_arena *a, ProtobufCMessage *resp, const cJSON *json);

/* Whether a container event's Action may change what ListPodSandbox or
 * ListContainers answer: every action but exec ones (exec_create,
 * exec_start, exec_die, podman's exec, exec_died), health_status,
 * attach, detach, resize, top, archive-path, extract-to-dir, export, copy,
 * commit, mount and unmount; an unknown action does. */
int dk_event_changes_lists(const char *action);

/* What a listing must show of a container after a change to it, before the
 * change counts as seen: the engines may send an event (dockerd 20.10's
 * "die") before their listing shows what it says. */
enum dk_expect {
    DK_EXPECT_ANY = 0,     /* nothing known: any entry, or none */
    DK_EXPECT_PRESENT,     /* created */
    DK_EXPECT_RUNNING,     /* started */
    DK_EXPECT_NOT_RUNNING, /* died or stopped: not running, or gone */
    DK_EXPECT_GONE,        /* removed */
};
/* The expectation of a container event's Action (create, start, restart,
 * die, stop, destroy, podman's remove); DK_EXPECT_ANY for others. */
enum dk_expect dk_event_expect(const char *action);
/* Whether the listing's entry of id (or its absence) meets expect. */
int dk_listing_meets(const cJSON *list, const char *id, enum dk_expect expect);
/* Whether an inspect answer of a container meets expect (it exists: never
 * GONE; running: both State.Running and State.Status say so). */
int dk_inspect_meets(const cJSON *inspect, enum dk_expect expect);

#endif
