#!/bin/bash
# `make run`: start crisp doing its job in front of a real engine and show a
# pod running through it. Installs what it needs (Debian packages), builds
# crisp, and:
#   - with CRISP_BACKEND set (e.g. cri:unix:///run/containerd/containerd.sock,
#     or docker:unix:///var/run/docker.sock) uses that engine; DEMO_IMAGE must
#     then name an image it can pull, and CRISP_ARGS may add options (e.g.
#     --pod-infra-image for the docker backend);
#   - otherwise starts a private engine: a local registry with offline images
#     and containerd with its CRI plugin, under /var/lib/crisp-demo.
# crisp listens on CRISP_LISTEN (default unix:///run/crisp/crisp.sock) and runs
# in the foreground; Ctrl-C (or SIGTERM) stops it, removes the demo pod and
# stops the private engine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it starts containerd)" >&2; exit 1; }

./test/deps.sh
make -j"$(nproc)" >/dev/null

LISTEN="${CRISP_LISTEN:-unix:///run/crisp/crisp.sock}"
SOCK="${LISTEN#unix://}"
export CRISP_TEST_WORK="${CRISP_DEMO_WORK:-/var/lib/crisp-demo}"
LOGS=/var/log/crisp-demo
mkdir -p "$LOGS"
private=0
if [ -z "${CRISP_BACKEND:-}" ]; then
  private=1
  echo "demo: starting a private registry + containerd under $CRISP_TEST_WORK"
  ./test/env/up.sh >"$LOGS/engine.log" 2>&1 || { tail -20 "$LOGS/engine.log"; exit 1; }
  # shellcheck disable=SC1091
  source "$CRISP_TEST_WORK/env.sh"
  CRISP_BACKEND="cri:unix://$CONTAINERD_SOCK"
  DEMO_IMAGE="${DEMO_IMAGE:-$BUSYBOX_IMAGE}"
fi
: "${DEMO_IMAGE:?set DEMO_IMAGE to an image the engine can pull}"

# its own session: Ctrl-C reaches this script, which cleans up, then stops crisp
# shellcheck disable=SC2086 # CRISP_ARGS: extra options, word-split on purpose
setsid build/crisp --listen "$LISTEN" --backend "$CRISP_BACKEND" --log-level info ${CRISP_ARGS:-} &
crisp_pid=$!
stop() {
  trap - INT TERM EXIT
  /usr/bin/python3 - "$SOCK" <<'PY' || true
import sys, os
sys.path.insert(0, "test/integration")
from crilib import CRIClient, v1
c = CRIClient("unix://" + sys.argv[1], "crisp")
for p in c.rt("ListPodSandbox", v1.ListPodSandboxRequest(
        filter=v1.PodSandboxFilter(label_selector={"app": "crisp-demo"}))).items:
    c.rt("StopPodSandbox", v1.StopPodSandboxRequest(pod_sandbox_id=p.id))
    c.rt("RemovePodSandbox", v1.RemovePodSandboxRequest(pod_sandbox_id=p.id))
PY
  kill -TERM "$crisp_pid" 2>/dev/null; wait "$crisp_pid" 2>/dev/null || true
  [ $private = 1 ] && ./test/env/down.sh >/dev/null 2>&1 || true
}
trap stop INT TERM EXIT
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done

/usr/bin/python3 deploy/demo_pod.py "$SOCK" "$DEMO_IMAGE" "$LOGS/pods"
cat <<EOM

crisp is serving the CRI on $LISTEN in front of $CRISP_BACKEND.
Point a kubelet at it with --container-runtime-endpoint=$LISTEN (deploy/kubelet.md).
Ctrl-C stops crisp, removes the demo pod$([ $private = 1 ] && echo " and stops the private engine").
EOM
wait "$crisp_pid"
