#!/bin/bash
# Start the private Docker/podman test environment for crisp's docker backend:
#   1. the offline OCI images (images.sh, cached) and up.sh's plain registry
#      (started here when up.sh has not), images pushed to it;
#   2. a second registry with htpasswd (bcrypt) basic auth on another
#      127.0.0.1 port, the same images pushed with --dest-creds;
#   3. an isolated dockerd: own data-root, exec-root, pidfile, socket, bridge
#      (--iptables=false), json-file logs, the runc wrapper (runc-wrapper.sh)
#      as default runtime "crisp-runc" plus a second name "crisp-alt";
#   4. `podman system service --time=0` on its own socket with private
#      CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINERS_REGISTRIES_CONF:
#      storage, runroot, network config and events under the work dir, its own
#      netavark network and bridge, the same runtime wrapper.
# Writes $WORK/docker-env.sh (KEY=VALUE, shell-quoted). Idempotent: whatever
# is already running for this work dir is reused. Stop with docker-down.sh.
#   docker-up.sh            everything in CRISP_TEST_DOCKER_ENGINES ("docker podman")
#   docker-up.sh docker     only (re)start what dockerd needs (e.g. after a test killed it)
#   docker-up.sh podman     likewise for podman
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$TEST_ENV_DIR/docker-lib.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"
T_START=$(date +%s.%N)

if [ $# -gt 0 ]; then
  for a in "$@"; do
    case "$a" in docker|podman) ;; *) die "unknown argument $a (docker|podman)" ;; esac
  done
  DOCKER_ENGINES="$*"
fi

for bin in dockerd podman skopeo docker-registry htpasswd curl ip /usr/sbin/runc; do
  command -v "$bin" >/dev/null 2>&1 || die "$bin missing (run test/deps.sh)"
done

now() { date +%s.%N; }
timings=()
timed() {  # timed LABEL CMD...
  local t label="$1"; shift
  t=$(now)
  "$@"
  timings+=("$label=$(awk -v a="$t" -v b="$(now)" 'BEGIN{printf "%.2fs", b-a}')")
}

"$TEST_ENV_DIR/images.sh"
mkdir -p "$WORK/bin" "$DK_DIR" "$PM_DIR" "$SOCK_DIR"

PORT="$(registry_port)"
REGISTRY="localhost:$PORT"
IMG_PREFIX="$REGISTRY/crisp-test"
POLICY="$WORK/policy.json"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"

# images pushed to a registry are remembered by (images stamp, registry pid)
push_images_to() {  # push_images_to REGISTRY PIDFILE [skopeo creds args]
  local reg="$1" pidfile="$2" name stampf; shift 2
  stampf="$WORK/pids/pushed-$(echo "$reg" | tr -c 'a-zA-Z0-9\n' '_')"
  local want; want="$(cat "$IMG_DIR/.stamp") $(cat "$pidfile")"
  if [ -f "$stampf" ] && [ "$(cat "$stampf")" = "$want" ]; then
    return 0
  fi
  for name in busybox pause victim; do
    skopeo --policy "$POLICY" copy --quiet --dest-tls-verify=false "$@" \
      "oci:$IMG_DIR/$name:1" "docker://$reg/crisp-test/$name:1" >>"$LOG_DIR/skopeo.log" 2>&1 ||
      { tail -20 "$LOG_DIR/skopeo.log" >&2; die "skopeo push of $name to $reg failed"; }
  done
  echo "$want" >"$stampf"
  log "images pushed to $reg/crisp-test/{busybox,pause,victim}:1"
}

# wait_http URL PIDFILE LOG WHAT [curl args]: until URL answers (any HTTP status)
wait_http() {
  local url="$1" pidfile="$2" logf="$3" what="$4" i; shift 4
  for ((i = 0; i < 100; i++)); do
    if curl -sS -o /dev/null "$@" "$url" 2>/dev/null; then return 0; fi
    pid_running "$pidfile" || { tail -20 "$logf" >&2; die "$what exited"; }
    sleep 0.1
  done
  die "$what did not answer on $url"
}

# --- 1. plain registry (same config and pid file as up.sh) ----------------------
start_plain_registry() {
  if pid_alive "$REG_PIDFILE" "$REG_CONFIG"; then
    return
  fi
  port_in_use "$PORT" && die "127.0.0.1:$PORT is in use by something else; set CRISP_TEST_REGISTRY_PORT or remove $REG_PORTFILE"
  mkdir -p "$REG_DIR"
  cat >"$REG_CONFIG" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
  spawn "$REG_PIDFILE" "$LOG_DIR/registry.log" docker-registry serve "$REG_CONFIG"
  wait_http "http://127.0.0.1:$PORT/v2/" "$REG_PIDFILE" "$LOG_DIR/registry.log" registry -f
  log "registry up on 127.0.0.1:$PORT (pid $(cat "$REG_PIDFILE"))"
}

# --- 2. registry with basic auth -------------------------------------------------
auth_registry_port() {
  if [ -n "${CRISP_TEST_AUTH_REGISTRY_PORT:-}" ]; then
    echo "$CRISP_TEST_AUTH_REGISTRY_PORT"
  elif [ -s "$AREG_PORTFILE" ]; then
    cat "$AREG_PORTFILE"
  else
    local p
    p="$(free_port)"
    [ "$p" = "$PORT" ] && p="$(free_port)"
    echo "$p" | tee "$AREG_PORTFILE"
  fi
}
APORT="$(auth_registry_port)"
AUTH_REGISTRY="localhost:$APORT"

start_auth_registry() {
  local htpw="$AREG_DIR/htpasswd"
  mkdir -p "$AREG_DIR/data"
  # the password file follows AUTH_USER/AUTH_PASS (a changed one restarts the registry)
  if [ ! -s "$htpw" ] || ! htpasswd -vb "$htpw" "$AUTH_USER" "$AUTH_PASS" >/dev/null 2>&1; then
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASS" >"$htpw.tmp" && mv "$htpw.tmp" "$htpw"
    stop_pid "$AREG_PIDFILE" "$AREG_CONFIG" 5
  fi
  if pid_alive "$AREG_PIDFILE" "$AREG_CONFIG"; then
    return
  fi
  port_in_use "$APORT" && die "127.0.0.1:$APORT is in use by something else; set CRISP_TEST_AUTH_REGISTRY_PORT or remove $AREG_PORTFILE"
  cat >"$AREG_CONFIG" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $AREG_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$APORT
auth:
  htpasswd:
    realm: crisp-test
    path: $htpw
EOF
  spawn "$AREG_PIDFILE" "$AREG_LOG" docker-registry serve "$AREG_CONFIG"
  wait_http "http://127.0.0.1:$APORT/v2/" "$AREG_PIDFILE" "$AREG_LOG" "auth registry"
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/v2/")"
  [ "$code" = 401 ] || die "auth registry answered $code without credentials (expected 401)"
  code="$(curl -s -o /dev/null -w '%{http_code}' -u "$AUTH_USER:$AUTH_PASS" "http://127.0.0.1:$APORT/v2/")"
  [ "$code" = 200 ] || die "auth registry answered $code with the credentials (expected 200)"
  log "auth registry up on 127.0.0.1:$APORT (pid $(cat "$AREG_PIDFILE"), user $AUTH_USER)"
}

# --- runtime wrapper ---------------------------------------------------------------
install_wrapper() {
  if ! cmp -s "$TEST_ENV_DIR/runc-wrapper.sh" "$RT_WRAPPER"; then
    install -m 0755 "$TEST_ENV_DIR/runc-wrapper.sh" "$RT_WRAPPER.tmp"
    mv "$RT_WRAPPER.tmp" "$RT_WRAPPER"
  fi
}

# --- bridge --------------------------------------------------------------------------
ensure_bridge() {  # ensure_bridge NAME SUBNET (gateway .1 on the bridge)
  local br="$1" subnet="$2" gw
  gw="${subnet%.0/24}.1"
  if ! ip link show "$br" >/dev/null 2>&1; then
    ip link add "$br" type bridge
  fi
  if ! ip -4 addr show dev "$br" | grep -qF "inet $gw/24"; then
    ip addr flush dev "$br" 2>/dev/null || true
    ip addr add "$gw/24" dev "$br"
  fi
  ip link set "$br" up
}

cgroup_driver() {
  if [ -n "${CRISP_TEST_DOCKER_CGROUP_DRIVER:-}" ]; then
    echo "$CRISP_TEST_DOCKER_CGROUP_DRIVER"
  elif [ -d /run/systemd/system ]; then
    echo systemd
  else
    echo cgroupfs
  fi
}
CGROUP_DRIVER="$(cgroup_driver)"

# An engine started by an older version of these scripts (or with other
# registries/driver) is restarted with the new configuration; its containers
# go first (the engines are private to the tests).
config_stamp() {  # config_stamp ENGINE
  cat "$TEST_ENV_DIR/docker-up.sh" "$TEST_ENV_DIR/docker-lib.sh" "$TEST_ENV_DIR/runc-wrapper.sh" |
    { cat; echo "$1 $REGISTRY $AUTH_REGISTRY $CGROUP_DRIVER"; } | sha256sum | cut -c1-16
}
restart_if_stale() {  # restart_if_stale ENGINE PIDFILE PATTERN SOCK STAMPFILE
  local eng="$1" pidfile="$2" pattern="$3" sock="$4" stampf="$5"
  pid_alive "$pidfile" "$pattern" || return 0
  [ "$(cat "$stampf" 2>/dev/null)" = "$(config_stamp "$eng")" ] && return 0
  log "$eng was started with another configuration: restarting it"
  ping_engine "$sock" && remove_all_containers "$sock"
  stop_pid "$pidfile" "$pattern" 20
}

# --- 3. dockerd ------------------------------------------------------------------------
write_docker_config() {
  cat >"$DK_CONFIG" <<EOF
{
  "data-root": "$DK_DATA",
  "exec-root": "$DK_EXEC",
  "pidfile": "$DK_OWN_PIDFILE",
  "hosts": ["unix://$DK_SOCK"],
  "bridge": "$DK_BRIDGE",
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false,
  "userland-proxy": true,
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-level": "info",
  "exec-opts": ["native.cgroupdriver=$CGROUP_DRIVER"],
  "runtimes": {
    "$DEFAULT_RUNTIME": { "path": "$RT_WRAPPER" },
    "$ALT_RUNTIME": { "path": "$RT_WRAPPER" }
  },
  "default-runtime": "$DEFAULT_RUNTIME",
  "features": { "buildkit": false }
}
EOF
}

start_dockerd() {
  restart_if_stale docker "$DK_PIDFILE" "$DK_CONFIG" "$DK_SOCK" "$DK_DIR/config.stamp"
  if pid_alive "$DK_PIDFILE" "$DK_CONFIG" && ping_engine "$DK_SOCK"; then
    return
  fi
  if pid_alive "$DK_PIDFILE" "$DK_CONFIG"; then
    # alive but not answering: give it a moment (it may be starting)
    local i
    for ((i = 0; i < 100; i++)); do ping_engine "$DK_SOCK" && return; sleep 0.1; done
    die "our dockerd (pid $(cat "$DK_PIDFILE")) is alive but does not answer on $DK_SOCK"
  fi
  local subnet
  if [ -n "${CRISP_TEST_DOCKER_SUBNET:-}" ]; then subnet="$CRISP_TEST_DOCKER_SUBNET"
  else
    # a bridge of ours that is already there keeps its subnet (a restarted
    # dockerd must hand out addresses from the same /24)
    subnet="$(ip -4 -o addr show dev "$DK_BRIDGE" 2>/dev/null | awk '{ sub(/\.1\/24$/, ".0/24", $4); print $4; exit }' || true)"
    case "$subnet" in 10.214.*.0/24) ;; *) subnet="$(pick_subnet_in 10.214 "$DK_BRIDGE")" ;; esac
  fi
  ensure_bridge "$DK_BRIDGE" "$subnet"
  echo "$subnet" >"$DK_SUBNET_FILE"
  write_docker_config
  mkdir -p "$DK_DATA" "$DK_EXEC"
  # stale pid files block a restart (engines.md): dockerd's own, and its
  # managed containerd's when that pid is not a live containerd of ours
  rm -f "$DK_OWN_PIDFILE"
  local cpid="$DK_EXEC/containerd/containerd.pid"
  if [ -s "$cpid" ] && ! pid_alive "$cpid" "$DK_EXEC"; then
    rm -f "$cpid"
  fi
  rm -f "$DK_SOCK"
  config_stamp docker >"$DK_DIR/config.stamp"
  spawn "$DK_PIDFILE" "$DK_LOG" dockerd --config-file "$DK_CONFIG"
  local i
  for ((i = 0; i < 300; i++)); do
    if ping_engine "$DK_SOCK"; then
      log "dockerd up on $DK_SOCK (pid $(cat "$DK_PIDFILE"), bridge $DK_BRIDGE $subnet, cgroup driver $CGROUP_DRIVER)"
      return
    fi
    pid_running "$DK_PIDFILE" || { tail -30 "$DK_LOG" >&2; die "dockerd exited"; }
    sleep 0.05
  done
  tail -30 "$DK_LOG" >&2
  die "dockerd did not answer on $DK_SOCK"
}

# --- 4. podman -------------------------------------------------------------------------
write_podman_config() {
  local subnet="$1"
  mkdir -p "$PM_DIR/storage" "$PM_DIR/networks" "$PM_DIR/volumes" "$PM_DIR/libpod" "$PM_RUN/storage" "$PM_RUN/tmp"
  cat >"$PM_CONF" <<EOF
# generated by test/env/docker-up.sh: a podman that shares nothing with the host's
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "bridge"
cgroupns = "private"
ipcns = "private"
utsns = "private"

[network]
network_backend = "netavark"
network_config_dir = "$PM_DIR/networks"
default_network = "$PM_NETWORK"
default_subnet = "$subnet"

[engine]
cgroup_manager = "$CGROUP_DRIVER"
events_logger = "file"
events_logfile_path = "$PM_DIR/events.log"
tmp_dir = "$PM_RUN/tmp"
# no static_dir: the libpod database must stay under graphroot, where the
# exit command conmon runs (podman --root ... container cleanup) looks for it;
# elsewhere cleanup never finds the container: no "died" event, state "stopped"
volume_path = "$PM_DIR/volumes"
runtime = "$DEFAULT_RUNTIME"
runtime_supports_json = ["crun", "runc", "$DEFAULT_RUNTIME", "$ALT_RUNTIME"]
runtime_supports_nocgroups = ["crun"]
no_pivot_root = false
num_locks = 2048

[engine.runtimes]
$DEFAULT_RUNTIME = ["$RT_WRAPPER"]
$ALT_RUNTIME = ["$RT_WRAPPER"]
EOF
  cat >"$PM_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$PM_DIR/storage"
runroot = "$PM_RUN/storage"
EOF
  cat >"$PM_REGISTRIES_CONF" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"

[[registry]]
location = "$REGISTRY"
insecure = true

[[registry]]
location = "$AUTH_REGISTRY"
insecure = true
EOF
}

start_podman() {
  podman_env
  restart_if_stale podman "$PM_PIDFILE" "$PM_SOCK" "$PM_SOCK" "$PM_DIR/config.stamp"
  if pid_alive "$PM_PIDFILE" "$PM_SOCK" && ping_engine "$PM_SOCK"; then
    return
  fi
  if pid_alive "$PM_PIDFILE" "$PM_SOCK"; then
    local i
    for ((i = 0; i < 100; i++)); do ping_engine "$PM_SOCK" && return; sleep 0.1; done
    die "our podman service (pid $(cat "$PM_PIDFILE")) is alive but does not answer on $PM_SOCK"
  fi
  local subnet
  if [ -n "${CRISP_TEST_PODMAN_SUBNET:-}" ]; then subnet="$CRISP_TEST_PODMAN_SUBNET"
  elif [ -s "$PM_SUBNET_FILE" ]; then subnet="$(cat "$PM_SUBNET_FILE")"
  else subnet="$(pick_subnet_in 10.215 "$PM_BRIDGE")"; fi
  echo "$subnet" >"$PM_SUBNET_FILE"
  write_podman_config "$subnet"
  # our own network (own bridge name, no DNS server) as the default network
  local netfile="$PM_DIR/networks/$PM_NETWORK.json"
  if [ ! -s "$netfile" ] || ! grep -qF "\"$PM_BRIDGE\"" "$netfile" || ! grep -qF "\"${subnet}\"" "$netfile"; then
    # podman 4.3's `network create` has no --interface-name: write netavark's file
    local netid
    netid="$(printf '%s' "crisp-test-$PM_NETWORK-$WORK" | sha256sum | cut -c1-64)"
    cat >"$netfile.tmp" <<EOF
{
  "name": "$PM_NETWORK",
  "id": "$netid",
  "driver": "bridge",
  "network_interface": "$PM_BRIDGE",
  "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "subnets": [ { "subnet": "$subnet", "gateway": "${subnet%.0/24}.1" } ],
  "ipv6_enabled": false,
  "internal": false,
  "dns_enabled": false,
  "ipam_options": { "driver": "host-local" }
}
EOF
    mv "$netfile.tmp" "$netfile"
  fi
  rm -f "$PM_SOCK"
  config_stamp podman >"$PM_DIR/config.stamp"
  spawn "$PM_PIDFILE" "$PM_LOG" podman --log-level=info system service --time=0 "unix://$PM_SOCK"
  local i
  for ((i = 0; i < 300; i++)); do
    if ping_engine "$PM_SOCK"; then
      log "podman service up on $PM_SOCK (pid $(cat "$PM_PIDFILE"), network $PM_NETWORK bridge $PM_BRIDGE $subnet)"
      return
    fi
    pid_running "$PM_PIDFILE" || { tail -30 "$PM_LOG" >&2; die "podman service exited"; }
    sleep 0.05
  done
  tail -30 "$PM_LOG" >&2
  die "podman service did not answer on $PM_SOCK"
}

timed registry start_plain_registry
timed registry-push push_images_to "$REGISTRY" "$REG_PIDFILE"
timed auth-registry start_auth_registry
timed auth-registry-push push_images_to "$AUTH_REGISTRY" "$AREG_PIDFILE" --dest-creds "$AUTH_USER:$AUTH_PASS"
install_wrapper
engine_enabled docker && timed dockerd start_dockerd
engine_enabled podman && timed podman start_podman

# the env file describes every engine that is up (a partial start keeps the other's lines)
DK_UP=0; PM_UP=0
pid_alive "$DK_PIDFILE" "$DK_CONFIG" && ping_engine "$DK_SOCK" && DK_UP=1
pid_alive "$PM_PIDFILE" "$PM_SOCK" && ping_engine "$PM_SOCK" && PM_UP=1
ENGINES_UP=""
[ $DK_UP = 1 ] && ENGINES_UP="docker"
[ $PM_UP = 1 ] && ENGINES_UP="${ENGINES_UP:+$ENGINES_UP }podman"
{
  printf 'CRISP_TEST_WORK=%q\n' "$WORK"
  printf 'SOCK_DIR=%q\n' "$SOCK_DIR"
  printf 'ENGINES=%q\n' "$ENGINES_UP"
  if [ $DK_UP = 1 ]; then
    printf 'DOCKER_SOCK=%q\n' "$DK_SOCK"
    printf 'DOCKER_PID=%q\n' "$(cat "$DK_PIDFILE")"
    printf 'DOCKER_LOG=%q\n' "$DK_LOG"
    printf 'DOCKER_DATA_ROOT=%q\n' "$DK_DATA"
    printf 'DOCKER_EXEC_ROOT=%q\n' "$DK_EXEC"
    printf 'DOCKER_BRIDGE=%q\n' "$DK_BRIDGE"
    printf 'DOCKER_SUBNET=%q\n' "$(cat "$DK_SUBNET_FILE")"
  fi
  if [ $PM_UP = 1 ]; then
    printf 'PODMAN_SOCK=%q\n' "$PM_SOCK"
    printf 'PODMAN_PID=%q\n' "$(cat "$PM_PIDFILE")"
    printf 'PODMAN_LOG=%q\n' "$PM_LOG"
    printf 'PODMAN_NETWORK=%q\n' "$PM_NETWORK"
    printf 'PODMAN_BRIDGE=%q\n' "$PM_BRIDGE"
    printf 'PODMAN_SUBNET=%q\n' "$(cat "$PM_SUBNET_FILE")"
    printf 'CONTAINERS_CONF=%q\n' "$PM_CONF"
    printf 'CONTAINERS_STORAGE_CONF=%q\n' "$PM_STORAGE_CONF"
    printf 'CONTAINERS_REGISTRIES_CONF=%q\n' "$PM_REGISTRIES_CONF"
  fi
  printf 'CGROUP_DRIVER=%q\n' "$CGROUP_DRIVER"
  printf 'DEFAULT_RUNTIME=%q\n' "$DEFAULT_RUNTIME"
  printf 'ALT_RUNTIME=%q\n' "$ALT_RUNTIME"
  printf 'RUNTIME_WRAPPER=%q\n' "$RT_WRAPPER"
  printf 'REGISTRY=%q\n' "$REGISTRY"
  printf 'AUTH_REGISTRY=%q\n' "$AUTH_REGISTRY"
  printf 'AUTH_USER=%q\n' "$AUTH_USER"
  printf 'AUTH_PASS=%q\n' "$AUTH_PASS"
  printf 'BUSYBOX_IMAGE=%q\n' "$IMG_PREFIX/busybox:1"
  printf 'PAUSE_IMAGE=%q\n' "$IMG_PREFIX/pause:1"
  printf 'VICTIM_IMAGE=%q\n' "$IMG_PREFIX/victim:1"
  printf 'AUTH_BUSYBOX_IMAGE=%q\n' "$AUTH_REGISTRY/crisp-test/busybox:1"
  printf 'AUTH_PAUSE_IMAGE=%q\n' "$AUTH_REGISTRY/crisp-test/pause:1"
  printf 'AUTH_VICTIM_IMAGE=%q\n' "$AUTH_REGISTRY/crisp-test/victim:1"
} >"$DOCKER_ENV_FILE.tmp"
mv "$DOCKER_ENV_FILE.tmp" "$DOCKER_ENV_FILE"
log "docker environment ($ENGINES_UP) described in $DOCKER_ENV_FILE; took $(awk -v a="$T_START" -v b="$(now)" 'BEGIN{printf "%.2fs", b-a}') (${timings[*]})"
for e in $DOCKER_ENGINES; do
  [[ " $ENGINES_UP " == *" $e "* ]] || die "$e is not up"
done
