#!/bin/bash
# Stop what docker-up.sh started for this work dir, and only that:
#   every container in our dockerd and our podman (they are private engines),
#   the podman service and its leftover conmon processes, dockerd and its
#   managed containerd and shims, mounts under our data/run dirs, our two
#   bridges, the htpasswd registry, and up.sh's plain registry when up.sh's
#   containerd is not running (otherwise down.sh stops it).
#   docker-down.sh [--purge]   (--purge also deletes the engines' data and the
#   auth registry's storage; the offline images stay cached)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$TEST_ENV_DIR/docker-lib.sh"

purge=0
for a in "$@"; do
  case "$a" in
    --purge) purge=1 ;;
    *) die "unknown argument $a" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"

# --- podman --------------------------------------------------------------------------
podman_env
if ping_engine "$PM_SOCK"; then
  remove_all_containers "$PM_SOCK"
fi
# the CLI reaches the same storage when the service is gone (or missed something)
if [ -s "$PM_CONF" ] && command -v podman >/dev/null 2>&1; then
  timeout 60 podman rm -a -f -t 0 >/dev/null 2>&1 || true
fi
stop_pid "$PM_PIDFILE" "$PM_SOCK" 10
rm -f "$PM_SOCK"
# conmon of exec sessions lingers up to 5 min (--exit-delay 300) after its
# container is gone; it ignores SIGTERM while waiting
# shellcheck disable=SC2046
pids="$(pids_with_arg "$PM_DIR/storage" conmon; pids_with_arg "$PM_RUN/" conmon)"
[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
umount_under "$PM_RUN"
umount_under "$PM_DIR"
if ip link show "$PM_BRIDGE" >/dev/null 2>&1; then
  ip link del "$PM_BRIDGE" 2>/dev/null || true
fi

# --- dockerd ------------------------------------------------------------------------------
if ping_engine "$DK_SOCK"; then
  remove_all_containers "$DK_SOCK"
fi
stop_pid "$DK_PIDFILE" "$DK_CONFIG" 20
# its managed containerd normally exits with it; a killed dockerd may leave it
cpid="$DK_EXEC/containerd/containerd.pid"
if pid_alive "$cpid" "$DK_EXEC"; then
  stop_pid "$cpid" "$DK_EXEC" 10
fi
# shims serving our containerd, and the containers they still run
# shellcheck disable=SC2046
kill_pids_gently $(pids_with_arg "$DK_EXEC/containerd/containerd.sock" containerd-shim-runc-v2)
for rtroot in "$DK_EXEC"/runtime-*/moby; do
  [ -d "$rtroot" ] || continue
  for id in $(/usr/sbin/runc --root "$rtroot" list -q 2>/dev/null); do
    /usr/sbin/runc --root "$rtroot" kill -a "$id" KILL >/dev/null 2>&1 || true
    /usr/sbin/runc --root "$rtroot" delete -f "$id" >/dev/null 2>&1 || true
  done
done
# userland proxies of a killed dockerd hold their host ports: ours forward to our subnet
if [ -s "$DK_SUBNET_FILE" ]; then
  # shellcheck disable=SC2046
  kill_pids_gently $(pids_with_arg "$(sed 's|0/24$||' "$DK_SUBNET_FILE")" docker-proxy)
fi
umount_under "$DK_EXEC"
umount_under "$DK_DATA"
# dockerd bind-mounts its data-root onto itself (a private mount)
for d in "$DK_DATA" "$DK_EXEC"; do
  if [ -d "$d" ] && mountpoint -q "$d"; then umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || true; fi
done
rm -f "$DK_SOCK" "$DK_OWN_PIDFILE"
rm -rf "$DK_EXEC" 2>/dev/null || true
if ip link show "$DK_BRIDGE" >/dev/null 2>&1; then
  ip link del "$DK_BRIDGE" 2>/dev/null || true
fi

# --- registries --------------------------------------------------------------------------
stop_pid "$AREG_PIDFILE" "$AREG_CONFIG" 5
rm -f "$WORK/pids/pushed-localhost_$(cat "$AREG_PORTFILE" 2>/dev/null)"
if ! pid_alive "$CTRD_PIDFILE" "$CTRD_CONFIG"; then
  stop_pid "$REG_PIDFILE" "$REG_CONFIG" 5
  rm -f "$WORK"/pids/pushed-localhost_"$(cat "$REG_PORTFILE" 2>/dev/null)"
  rm -f "$ENV_FILE"
fi

if [ "$purge" = 1 ]; then
  rm -rf "$DK_DIR" "$PM_DIR" "$AREG_DIR" "$PM_RUN"
fi
[ -d "$PM_RUN" ] && rmdir "$PM_RUN" 2>/dev/null || true
[ -d "$SOCK_DIR" ] && rmdir "$SOCK_DIR" 2>/dev/null || true
rm -f "$DOCKER_ENV_FILE"
log "docker environment stopped"
