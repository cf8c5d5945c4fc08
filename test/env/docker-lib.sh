# shellcheck shell=bash
# Settings and helpers for the Docker/podman test environment (docker-up.sh,
# docker-down.sh). Source it after lib.sh; do not run it. Knobs:
#
#   CRISP_TEST_DOCKER_ENGINES     engines to start: "docker podman" (default), "docker", "podman"
#   CRISP_TEST_DOCKER_BRIDGE      dockerd's bridge            (default crd<hash of WORK>)
#   CRISP_TEST_PODMAN_BRIDGE      podman network's bridge     (default crp<hash of WORK>)
#   CRISP_TEST_DOCKER_SUBNET      dockerd's /24               (default: free 10.214.N.0/24)
#   CRISP_TEST_PODMAN_SUBNET      podman network's /24        (default: free 10.215.N.0/24)
#   CRISP_TEST_AUTH_REGISTRY_PORT htpasswd registry port      (default: free, kept in $WORK/registry-auth.port)
#   CRISP_TEST_AUTH_USER / _PASS  its credentials             (default crisp / crisp-test-pass)
#   CRISP_TEST_DOCKER_CGROUP_DRIVER  cgroupfs|systemd         (default: systemd only when systemd runs)

DOCKER_ENGINES="${CRISP_TEST_DOCKER_ENGINES:-docker podman}"

# --- dockerd ------------------------------------------------------------------
DK_DIR="$WORK/docker"
DK_DATA="$DK_DIR/data"                 # --data-root
DK_EXEC="$SOCK_DIR/dx"                 # --exec-root (short: holds containerd's sockets)
DK_CONFIG="$DK_DIR/daemon.json"
DK_SOCK="$SOCK_DIR/docker.sock"
DK_PIDFILE="$WORK/pids/dockerd.pid"    # written by spawn (the daemon's real pid)
DK_OWN_PIDFILE="$DK_DIR/dockerd.pid"   # dockerd's own --pidfile
DK_LOG="$LOG_DIR/dockerd.log"
DK_BRIDGE="${CRISP_TEST_DOCKER_BRIDGE:-crd$_hash8}"
DK_SUBNET_FILE="$DK_DIR/subnet"

# runtime wrapper (engines.md: no CAP_SYS_RESOURCE here): one script, two names
RT_WRAPPER="$WORK/bin/crisp-test-runc"
DEFAULT_RUNTIME=crisp-runc
ALT_RUNTIME=crisp-alt

# --- podman -------------------------------------------------------------------
PM_DIR="$WORK/podman"
PM_RUN="$SOCK_DIR/pm"                  # runroot, tmp_dir (short: conmon sockets)
PM_CONF="$PM_DIR/containers.conf"
PM_STORAGE_CONF="$PM_DIR/storage.conf"
PM_REGISTRIES_CONF="$PM_DIR/registries.conf"
PM_SOCK="$SOCK_DIR/podman.sock"
PM_PIDFILE="$WORK/pids/podman.pid"
PM_LOG="$LOG_DIR/podman.log"
PM_BRIDGE="${CRISP_TEST_PODMAN_BRIDGE:-crp$_hash8}"
PM_NETWORK=crisp-test
PM_SUBNET_FILE="$PM_DIR/subnet"

# --- registry with htpasswd basic auth ------------------------------------------
AREG_DIR="$WORK/registry-auth"
AREG_CONFIG="$WORK/registry-auth.yml"
AREG_PIDFILE="$WORK/pids/registry-auth.pid"
AREG_PORTFILE="$WORK/registry-auth.port"
AREG_LOG="$LOG_DIR/registry-auth.log"
AUTH_USER="${CRISP_TEST_AUTH_USER:-crisp}"
AUTH_PASS="${CRISP_TEST_AUTH_PASS:-crisp-test-pass}"

# the plain registry is up.sh's (same config file and pid file, so either
# script reuses what the other started)
REG_CONFIG="$WORK/registry.yml"

DOCKER_ENV_FILE="$WORK/docker-env.sh"

# every engine call of these scripts goes through the API (a Docker CLI 28.x
# may shadow Debian's 20.10 in /usr/local/bin)
API_VERSION=v1.41

podman_env() {
  export CONTAINERS_CONF="$PM_CONF"
  export CONTAINERS_STORAGE_CONF="$PM_STORAGE_CONF"
  export CONTAINERS_REGISTRIES_CONF="$PM_REGISTRIES_CONF"
}

engine_enabled() { [[ " $DOCKER_ENGINES " == *" $1 "* ]]; }

# api SOCK METHOD PATH [curl args...]: one Engine API call, body to stdout
api() {
  local sock="$1" method="$2" path="$3"; shift 3
  curl -sS --max-time "${API_TIMEOUT:-30}" --unix-socket "$sock" -X "$method" "$@" \
    "http://localhost/$API_VERSION$path"
}

# ping SOCK: the engine answers /_ping with OK
ping_engine() {
  [ -S "$1" ] || return 1
  [ "$(curl -sS --max-time 2 --unix-socket "$1" http://localhost/_ping 2>/dev/null)" = OK ]
}

# remove_all_containers SOCK: force-remove every container of that (private) engine
remove_all_containers() {
  local sock="$1" ids id
  ids="$(api "$sock" GET '/containers/json?all=1' 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys
try:
    print("\n".join(c["Id"] for c in json.load(sys.stdin)))
except Exception:
    pass')" || true
  # (a force-remove kills at once on both engines: no /kill first)
  for id in $ids; do
    API_TIMEOUT=60 api "$sock" DELETE "/containers/$id?force=1&v=1" >/dev/null 2>&1 || true
  done
}

# pick_subnet_in PREFIX BRIDGE: a free PREFIX.N.0/24 (N from the hash of WORK),
# or the one BRIDGE already routes
pick_subnet_in() {
  local prefix="$1" bridge="$2" n i
  n=$(( 16#${_hash8:4:4} % 250 + 1 ))
  for ((i = 0; i < 250; i++)); do
    if ! ip -4 route show | grep -q "^$prefix\.$n\.0/24 " ||
       ip -4 route show | grep -q "^$prefix\.$n\.0/24 dev $bridge "; then
      echo "$prefix.$n.0/24"; return
    fi
    n=$(( n % 250 + 1 ))
  done
  die "no free /24 in $prefix.0.0/16"
}

# pids_with_arg STRING [NAME]: pids whose command line has STRING as one
# argument, or inside one (and whose argv[0] ends in NAME when given)
pids_with_arg() {
  local s="$1" name="${2:-}" f p argv0
  for f in $(grep -laF -- "$s" /proc/[0-9]*/cmdline 2>/dev/null); do
    p="${f#/proc/}"; p="${p%/cmdline}"
    [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
    if [ -n "$name" ]; then
      argv0="$(tr '\0' '\n' <"$f" 2>/dev/null | head -1)"
      [[ "$argv0" == *"$name" ]] || continue
    fi
    echo "$p"
  done
}

# kill_pids_gently PIDS...: TERM, wait up to 3 s, KILL
kill_pids_gently() {
  [ $# -gt 0 ] || return 0
  local i p alive
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    alive=0
    for p in "$@"; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}
