# shellcheck shell=bash
# Common settings and helpers for the crisp test environment scripts.
# Source it; do not run it. Every knob can be overridden from the environment:
#
#   CRISP_TEST_WORK            private work dir            (default: <repo>/test/.work)
#   CRISP_TEST_SOCK_DIR        where the unix sockets go   (default: $WORK/run, or a short
#                              /run/crisp-test-<hash> dir when $WORK is too long for sun_path)
#   CRISP_TEST_REGISTRY_PORT   local registry port on 127.0.0.1 (default: a free port, chosen
#                              at first start and remembered in $WORK/registry.port)
#   CRISP_TEST_CONTAINERD_DIR  containerd config/root/state parent (default: $WORK/containerd)
#   CRISP_TEST_BRIDGE          CNI bridge name            (default: crt<hash of WORK>)
#   CRISP_TEST_SUBNET          CNI pod subnet             (default: 10.213.<n>.0/24, n from hash)
#   CRISP_TEST_CRUN            auto|0 : offer a `crun` runtime handler when crun works (default auto)
#   CRISP_TEST_HUGETLB_FIX     1|0 : mount a v1 hugetlb hierarchy so crun works (default 1)

set -euo pipefail

TEST_ENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TEST_ENV_DIR/../.." && pwd)"

WORK="${CRISP_TEST_WORK:-$REPO_ROOT/test/.work}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

_hash8="$(printf '%s' "$WORK" | sha256sum | cut -c1-8)"

if [ -n "${CRISP_TEST_SOCK_DIR:-}" ]; then
  SOCK_DIR="$CRISP_TEST_SOCK_DIR"
elif [ "${#WORK}" -le 70 ]; then
  SOCK_DIR="$WORK/run"
else
  SOCK_DIR="/run/crisp-test-$_hash8"
fi

CTRD_DIR="${CRISP_TEST_CONTAINERD_DIR:-$WORK/containerd}"
CTRD_ROOT="$CTRD_DIR/root"
CTRD_STATE="$CTRD_DIR/state"
CTRD_CONFIG="$CTRD_DIR/config.toml"
CTRD_SOCK="$SOCK_DIR/containerd.sock"
CTRD_PIDFILE="$WORK/pids/containerd.pid"
CNI_CONF_DIR="$CTRD_DIR/cni/net.d"
CNI_IPAM_DIR="$CTRD_DIR/cni/ipam"
CERTS_DIR="$CTRD_DIR/certs.d"

REG_DIR="$WORK/registry"
REG_PIDFILE="$WORK/pids/registry.pid"
REG_PORTFILE="$WORK/registry.port"

IMG_DIR="$WORK/images"
LOG_DIR="$WORK/logs"
ENV_FILE="$WORK/env.sh"

BRIDGE="${CRISP_TEST_BRIDGE:-crt$_hash8}"
CNI_NET_NAME="crisp-test-$BRIDGE"

mkdir -p "$WORK/pids" "$LOG_DIR"

log() { printf '[test-env] %s\n' "$*" >&2; }
die() { printf '[test-env] ERROR: %s\n' "$*" >&2; exit 1; }

# pid_alive PIDFILE PATTERN: true when the pid in PIDFILE is alive and its
# command line contains PATTERN (guards against recycled pids, and against
# ever touching a daemon these scripts did not start).
pid_alive() {
  local pidfile="$1" pattern="$2" pid
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

# pid_running PIDFILE: the pid exists and is not a zombie. For the start-up
# loops: right after `cmd &` the child may not have exec'd yet, so its
# command line is still the shell's and pid_alive's pattern would not match.
pid_running() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

# spawn PIDFILE LOG CMD...: start CMD detached (own session, stdin /dev/null,
# output appended to LOG, working directory $WORK: what a daemon leaves in
# its cwd, such as conmon's oom marker, stays out of the repo) and record its
# real pid in PIDFILE (the pid is written by the process itself, so it is
# right even when setsid forks).
spawn() {
  local pidfile="$1" logf="$2" i; shift 2
  rm -f "$pidfile"
  (cd "$WORK" && exec setsid /bin/bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$pidfile" "$@" </dev/null >>"$logf" 2>&1) &
  for ((i = 0; i < 100; i++)); do
    [ -s "$pidfile" ] && return 0
    sleep 0.05
  done
  die "could not start $1"
}

# stop_pid PIDFILE PATTERN [TIMEOUT_S]: TERM, wait, KILL.
stop_pid() {
  local pidfile="$1" pattern="$2" timeout="${3:-10}" pid i
  if pid_alive "$pidfile" "$pattern"; then
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      [ -d "/proc/$pid" ] || break
      # a zombie child of ours counts as gone
      grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      log "pid $pid ($pattern) did not exit on TERM; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_in_use() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
sys.exit(0)
PY
}

registry_port() {
  if [ -n "${CRISP_TEST_REGISTRY_PORT:-}" ]; then
    echo "$CRISP_TEST_REGISTRY_PORT"
  elif [ -s "$REG_PORTFILE" ]; then
    cat "$REG_PORTFILE"
  else
    free_port | tee "$REG_PORTFILE"
  fi
}

# A /24 that no route on this host already covers (only 10.213.0.0/16 is searched).
pick_subnet() {
  if [ -n "${CRISP_TEST_SUBNET:-}" ]; then echo "$CRISP_TEST_SUBNET"; return; fi
  local n=$(( 16#${_hash8:0:4} % 250 + 1 )) i
  for ((i = 0; i < 250; i++)); do
    local cand="10.213.$n.0/24"
    if ! ip -4 route show | grep -q "^10\.213\.$n\.0/24 " ||
       ip -4 route show | grep -q "^10\.213\.$n\.0/24 dev $BRIDGE "; then
      echo "$cand"; return
    fi
    n=$(( n % 250 + 1 ))
  done
  die "no free /24 in 10.213.0.0/16"
}

# unmount everything mounted under DIR (deepest first)
umount_under() {
  local dir="$1" m
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd -P)"
  for _ in 1 2 3; do
    local mounts
    mounts="$(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)"
    [ -n "$mounts" ] || return 0
    while IFS= read -r m; do
      m="$(printf '%b' "$m")"   # mountinfo escapes spaces as \040
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done <<<"$mounts"
  done
}
