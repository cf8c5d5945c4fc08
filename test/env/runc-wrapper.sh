#!/bin/sh
# OCI runtime wrapper for the test dockerd and podman (docker-up.sh installs it
# as $WORK/bin/crisp-test-runc and registers it as their default runtime).
#
# These machines have no CAP_SYS_RESOURCE, not even in the bounding set
# (shared/notes/engines.md). runc then fails where a real node never does:
# a negative oomScoreAdj (the kubelet's -998 for sandboxes, Docker's default
# for nothing) dies with "can't get final child's PID from pipe", and a
# privileged container (which Docker grants CAP_SYS_RESOURCE) with "unable to
# apply caps". crisp must pass the kubelet's values through unchanged, so the
# test engine adapts instead: on `create`/`run` this edits the bundle's
# config.json (negative oomScoreAdj -> 0, CAP_SYS_RESOURCE dropped) and then
# execs the real runc with the same arguments.
# CRISP_TEST_REAL_RUNC overrides the runtime it execs (default /usr/sbin/runc).
REAL="${CRISP_TEST_REAL_RUNC:-/usr/sbin/runc}"

cmd=""
bundle=""
want_bundle=0
for a in "$@"; do
  if [ "$want_bundle" = 1 ]; then bundle="$a"; want_bundle=0; continue; fi
  case "$a" in
    --bundle|-b) want_bundle=1 ;;
    --bundle=*) bundle="${a#--bundle=}" ;;
    create|run) [ -z "$cmd" ] && cmd="$a" ;;
  esac
done

if [ -n "$cmd" ]; then
  cfg="${bundle:-.}/config.json"
  if [ -f "$cfg" ] && grep -qE '"oomScoreAdj": *-|CAP_SYS_RESOURCE' "$cfg"; then
    /usr/bin/python3 -S - "$cfg" <<'PY' || echo "crisp-test-runc: could not adjust $cfg" >&2
import json, sys
path = sys.argv[1]
with open(path) as f:
    c = json.load(f)
p = c.get("process") or {}
if p.get("oomScoreAdj", 0) < 0:
    p["oomScoreAdj"] = 0
caps = p.get("capabilities") or {}
for k, v in list(caps.items()):
    if isinstance(v, list):
        caps[k] = [x for x in v if x != "CAP_SYS_RESOURCE"]
with open(path + ".tmp", "w") as f:
    json.dump(c, f)
import os
os.rename(path + ".tmp", path)
PY
  fi
fi
exec "$REAL" "$@"
