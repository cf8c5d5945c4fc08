#!/bin/bash
# Install (idempotently) every Debian package that building crisp and running
# its integration tests need. Safe to run repeatedly and with no stdin.
# Only runs `apt-get update` (once) when something is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # needrestart (a docker.io recommend) must not prompt

PKGS=(
  # build
  build-essential pkg-config libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
  libevent-dev libssl-dev libcjson-dev protobuf-compiler valgrind
  # the streaming server: SPDY header compression, WebSocket framing
  zlib1g-dev libwslay-dev
  # libFuzzer harnesses (make fuzz; test/fuzz/smoke.sh)
  clang libclang-rt-14-dev
  # python test client
  python3 python3-grpcio python3-protobuf python3-h2 python3-pytest
  # the grpc-go test client (test/grpcgo, make grpcgo): the kubelet's gRPC stack
  golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go protoc-gen-go-grpc
  # the streaming test clients (test/streamgo, make streamgo; python3-kubernetes' WebSocket client)
  golang-github-docker-spdystream-dev golang-github-gorilla-websocket-dev python3-kubernetes
  # engines and tools used by the test environment
  containerd runc docker.io crun podman netavark docker-registry busybox-static skopeo
  containernetworking-plugins iptables iproute2 apache2-utils nghttp2-client curl
  util-linux procps
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages (${missing[*]}) and not root; cannot install" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
apt-get update -q </dev/null
apt-get install -y -q \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" </dev/null
echo "deps: done"
