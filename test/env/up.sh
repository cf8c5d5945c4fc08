#!/bin/bash
# Start the private test environment:
#   1. build the offline OCI images (images.sh, cached),
#   2. start a docker-registry on 127.0.0.1:$PORT and push the images to it,
#   3. write a containerd config (CRI plugin, private root/state/socket, own CNI
#      bridge and subnet, runc/crun roots under the state dir, certs.d for the
#      local registry) and start containerd, then wait until CRI answers.
# Writes $WORK/env.sh (KEY=VALUE, shell-quoted) describing what it started.
# Idempotent: a registry/containerd already started by these scripts for this
# work dir is reused. Stop everything with down.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"

"$TEST_ENV_DIR/images.sh"

PORT="$(registry_port)"
REGISTRY="localhost:$PORT"
IMG_PREFIX="$REGISTRY/crisp-test"
POLICY="$WORK/policy.json"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"

# --- registry ---------------------------------------------------------------
start_registry() {
  if pid_alive "$REG_PIDFILE" "$WORK/registry.yml"; then
    log "registry already running (pid $(cat "$REG_PIDFILE"), port $PORT)"
    return
  fi
  if port_in_use "$PORT"; then
    die "127.0.0.1:$PORT is already in use by something else; set CRISP_TEST_REGISTRY_PORT or remove $REG_PORTFILE"
  fi
  mkdir -p "$REG_DIR"
  cat >"$WORK/registry.yml" <<EOF
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
  spawn "$REG_PIDFILE" "$LOG_DIR/registry.log" docker-registry serve "$WORK/registry.yml"
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" 2>/dev/null; then
      log "registry up on 127.0.0.1:$PORT (pid $(cat "$REG_PIDFILE"))"
      return
    fi
    pid_running "$REG_PIDFILE" || { tail -20 "$LOG_DIR/registry.log" >&2; die "registry exited"; }
    sleep 0.1
  done
  die "registry did not answer on 127.0.0.1:$PORT"
}

push_images() {
  local name
  for name in busybox pause victim; do
    skopeo --policy "$POLICY" copy --quiet --dest-tls-verify=false \
      "oci:$IMG_DIR/$name:1" "docker://$IMG_PREFIX/$name:1" >>"$LOG_DIR/skopeo.log" 2>&1 ||
      { tail -20 "$LOG_DIR/skopeo.log" >&2; die "skopeo push of $name failed"; }
  done
  log "images pushed to $IMG_PREFIX/{busybox,pause,victim}:1"
}

# --- crun -------------------------------------------------------------------
CRUN_HANDLER=""
check_crun() {
  [ "${CRISP_TEST_CRUN:-auto}" != 0 ] || return 0
  [ -x /usr/bin/crun ] || return 0
  if [ "${CRISP_TEST_HUGETLB_FIX:-1}" = 1 ] && [ -d /sys/fs/cgroup/memory ] &&
     ! mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null; then
    # engines.md: crun refuses the hybrid layout until hugetlb has a v1 hierarchy
    mkdir -p /sys/fs/cgroup/hugetlb 2>/dev/null &&
      mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null &&
      log "mounted a cgroup v1 hugetlb hierarchy for crun" || true
  fi
  local d="$WORK/crun-check"
  rm -rf "$d"; mkdir -p "$d/b/rootfs"
  cp /bin/busybox "$d/b/rootfs/busybox"
  (cd "$d/b" && crun spec >/dev/null 2>&1) || return 0
  /usr/bin/python3 - "$d/b/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["/busybox", "true"]
c["process"]["terminal"] = False
json.dump(c, open(sys.argv[1], "w"))
PY
  if crun --root "$d/state" run -b "$d/b" "crisp-crun-check-$$" >"$d/out" 2>&1; then
    CRUN_HANDLER=crun
    log "crun works: runtime handler 'crun' enabled"
  else
    log "crun does not work here ($(head -c 200 "$d/out")): no 'crun' handler"
  fi
  crun --root "$d/state" delete -f "crisp-crun-check-$$" >/dev/null 2>&1 || true
  rm -rf "$d"
}

# --- containerd -------------------------------------------------------------
write_containerd_config() {
  local subnet="$1"
  mkdir -p "$CTRD_ROOT" "$CTRD_STATE" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" "$CERTS_DIR/$REGISTRY" "$SOCK_DIR"
  cat >"$CERTS_DIR/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF
  rm -f "$CNI_CONF_DIR"/*
  cat >"$CNI_CONF_DIR/10-crisp-test.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CNI_IPAM_DIR",
        "ranges": [[{ "subnet": "$subnet" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  local crun_tbl=""
  if [ -n "$CRUN_HANDLER" ]; then
    crun_tbl="
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun]
          runtime_type = \"io.containerd.runc.v2\"
          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun.options]
            BinaryName = \"/usr/bin/crun\"
            Root = \"$CTRD_STATE/crun\""
  fi
  cat >"$CTRD_CONFIG" <<EOF
# generated by test/env/up.sh for the crisp integration tests
version = 2
root = "$CTRD_ROOT"
state = "$CTRD_STATE"
oom_score = 0

[grpc]
  address = "$CTRD_SOCK"
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD_DIR/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$IMG_PREFIX/pause:1"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = "/usr/sbin/runc"
            Root = "$CTRD_STATE/runc"
$crun_tbl

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CERTS_DIR"
EOF
}

# cri_ready SOCK: one RuntimeService/Version call succeeds
cri_ready() {
  /usr/bin/python3 - "$1" <<'PY' 2>/dev/null
import sys, grpc
ch = grpc.insecure_channel("unix://" + sys.argv[1])
try:
    ch.unary_unary("/runtime.v1.RuntimeService/Version")(b"", timeout=1)
except Exception:
    sys.exit(1)
PY
}

start_containerd() {
  if pid_alive "$CTRD_PIDFILE" "$CTRD_CONFIG"; then
    log "containerd already running (pid $(cat "$CTRD_PIDFILE"))"
    return
  fi
  # a fresh start gets fresh root/state: leftover mounts first, then the dirs
  "$TEST_ENV_DIR/down.sh" --containerd-only >/dev/null 2>&1 || true
  rm -rf "$CTRD_ROOT" "$CTRD_STATE" "$CNI_IPAM_DIR"
  check_crun
  local subnet; subnet="$(pick_subnet)"
  write_containerd_config "$subnet"
  rm -f "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"
  spawn "$CTRD_PIDFILE" "$LOG_DIR/containerd.log" containerd --config "$CTRD_CONFIG"
  echo "$subnet" >"$CTRD_DIR/subnet"
  echo "$CRUN_HANDLER" >"$CTRD_DIR/crun-handler"
  local i
  for ((i = 0; i < 300; i++)); do
    if [ -S "$CTRD_SOCK" ] && cri_ready "$CTRD_SOCK"; then
      log "containerd up on $CTRD_SOCK (pid $(cat "$CTRD_PIDFILE"), bridge $BRIDGE, subnet $subnet)"
      return
    fi
    pid_running "$CTRD_PIDFILE" || { tail -30 "$LOG_DIR/containerd.log" >&2; die "containerd exited"; }
    sleep 0.1
  done
  tail -30 "$LOG_DIR/containerd.log" >&2
  die "containerd did not become ready on $CTRD_SOCK"
}

start_registry
push_images
start_containerd

{
  printf 'CRISP_TEST_WORK=%q\n' "$WORK"
  printf 'SOCK_DIR=%q\n' "$SOCK_DIR"
  printf 'CONTAINERD_SOCK=%q\n' "$CTRD_SOCK"
  printf 'CONTAINERD_PID=%q\n' "$(cat "$CTRD_PIDFILE")"
  printf 'CONTAINERD_LOG=%q\n' "$LOG_DIR/containerd.log"
  printf 'REGISTRY=%q\n' "$REGISTRY"
  printf 'REGISTRY_PID=%q\n' "$(cat "$REG_PIDFILE")"
  printf 'BUSYBOX_IMAGE=%q\n' "$IMG_PREFIX/busybox:1"
  printf 'PAUSE_IMAGE=%q\n' "$IMG_PREFIX/pause:1"
  printf 'VICTIM_IMAGE=%q\n' "$IMG_PREFIX/victim:1"
  printf 'CRUN_HANDLER=%q\n' "$(cat "$CTRD_DIR/crun-handler" 2>/dev/null)"
  printf 'BRIDGE=%q\n' "$BRIDGE"
  printf 'SUBNET=%q\n' "$(cat "$CTRD_DIR/subnet")"
} >"$ENV_FILE"
log "environment described in $ENV_FILE"
