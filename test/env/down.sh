#!/bin/bash
# Stop what up.sh started for this work dir, and only that:
#   containers (through the private runc/crun roots), the shims serving our
#   containerd socket, containerd, mounts under our containerd dirs (netns,
#   shm, rootfs), our CNI bridge, and the registry.
#   down.sh [--containerd-only] [--purge]   (--purge also deletes the work dir's
#   containerd and registry data; images stay cached)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only_ctrd=0; purge=0
for a in "$@"; do
  case "$a" in
    --containerd-only) only_ctrd=1 ;;
    --purge) purge=1 ;;
    *) die "unknown argument $a" ;;
  esac
done

# 1. containers: kill and delete everything in our private runtime roots
for rt in runc:/usr/sbin/runc crun:/usr/bin/crun; do
  name="${rt%%:*}"; bin="${rt#*:}"
  [ -x "$bin" ] || continue
  for nsroot in "$CTRD_STATE/$name"/*/; do
    [ -d "$nsroot" ] || continue
    for id in $("$bin" --root "$nsroot" list -q 2>/dev/null); do
      "$bin" --root "$nsroot" kill -a "$id" KILL >/dev/null 2>&1 || "$bin" --root "$nsroot" kill "$id" KILL >/dev/null 2>&1 || true
      "$bin" --root "$nsroot" delete -f "$id" >/dev/null 2>&1 || true
    done
  done
done

# 2. shims started by our containerd (their command line names our socket)
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$CTRD_SOCK" &&
       tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -1 | grep -q 'containerd-shim'; then
      echo "${p#/proc/}"
    fi
  done
}
pids="$(shim_pids)"
if [ -n "$pids" ]; then
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 30); do
    pids="$(shim_pids)"; [ -n "$pids" ] || break; sleep 0.1
  done
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
fi

# 3. containerd
stop_pid "$CTRD_PIDFILE" "$CTRD_CONFIG" 15
rm -f "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"

# 4. mounts (netns, shm, overlay rootfs) under our dirs
umount_under "$CTRD_STATE"
umount_under "$CTRD_ROOT"
[ -d "$SOCK_DIR" ] && rmdir "$SOCK_DIR" 2>/dev/null || true

# 5. our CNI bridge (and host-local leases)
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link del "$BRIDGE" 2>/dev/null || true
fi
rm -rf "$CNI_IPAM_DIR"
# libcni's result cache for our network name
rm -f /var/lib/cni/results/"$CNI_NET_NAME"-* 2>/dev/null || true

# 6. empty pod cgroups the tests left under /crisp-test (rmdir only removes empty
#    dirs, so a concurrent run elsewhere is not disturbed)
for h in /sys/fs/cgroup/*/crisp-test /sys/fs/cgroup/crisp-test; do
  [ -d "$h" ] || continue
  find "$h" -depth -mindepth 1 -type d -exec rmdir {} \; 2>/dev/null || true
done

if [ "$purge" = 1 ]; then
  rm -rf "$CTRD_ROOT" "$CTRD_STATE"
fi

[ "$only_ctrd" = 1 ] && exit 0

# 7. registry
stop_pid "$REG_PIDFILE" "$WORK/registry.yml" 5
if [ "$purge" = 1 ]; then rm -rf "$REG_DIR"; fi
rm -f "$ENV_FILE"
log "environment stopped"
