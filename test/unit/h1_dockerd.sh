#!/bin/bash
# h1_dockerd.sh - a private dockerd for the h1 pool test (test_h1_pool.c).
#
#   test/unit/h1_dockerd.sh start   start it (idempotent), import a busybox image,
#                                   print the env to export
#   test/unit/h1_dockerd.sh stop    stop it and remove its bridge (data kept)
#   test/unit/h1_dockerd.sh purge   stop and delete everything under $H1_DIR
#
# Everything lives under $H1_DIR (default /tmp/h1test): data-root, exec-root,
# pidfile, the unix socket, TLS certificates (a private CA, a server cert for
# localhost/127.0.0.1 and a client cert) and env.sh. Networking uses a bridge
# of its own ($H1_BRIDGE, default h1tbr0, 10.231.77.1/24) and --iptables=false,
# so no other daemon on the machine is touched. Root only.
set -euo pipefail

H1_DIR="${H1_DIR:-/tmp/h1test}"
H1_BRIDGE="${H1_BRIDGE:-h1tbr0}"
H1_BRIDGE_CIDR="${H1_BRIDGE_CIDR:-10.231.77.1/24}"
H1_TLS_PORT="${H1_TLS_PORT:-23761}"
SOCK="$H1_DIR/docker.sock"
PIDFILE="$H1_DIR/dockerd.pid"
TLS="$H1_DIR/tls"
IMAGE=h1test-busybox:1

log() { printf '[h1-dockerd] %s\n' "$*" >&2; }

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
        grep -q dockerd "/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null
}

api() { curl -fsS --unix-socket "$SOCK" "$@"; }

make_certs() {
    [ -f "$TLS/client-key.pem" ] && return 0
    mkdir -p "$TLS"
    (
        cd "$TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=h1test-ca \
            -keyout ca-key.pem -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem \
            -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 3650 -extfile server.ext -out server.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=h1test-client -keyout client-key.pem \
            -out client.csr 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 3650 -extfile client.ext -out client.pem 2>/dev/null
    )
}

import_busybox() {
    if api "http://docker/v1.41/images/$IMAGE/json" >/dev/null 2>&1; then
        return 0
    fi
    local root="$H1_DIR/rootfs"
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
    done
    tar -C "$root" -cf "$H1_DIR/rootfs.tar" .
    # POST /images/create?fromSrc=- with the tarball as the body (docker import).
    curl -fsS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/x-tar' \
        --data-binary @"$H1_DIR/rootfs.tar" \
        "http://docker/v1.41/images/create?fromSrc=-&repo=h1test-busybox&tag=1&changes=CMD%20%5B%22%2Fbin%2Fsh%22%5D&changes=ENV%20PATH%3D%2Fbin" \
        >/dev/null
    rm -rf "$root" "$H1_DIR/rootfs.tar"
}

write_env() {
    cat >"$H1_DIR/env.sh" <<EOF
export CRISP_TEST_DOCKER_SOCK=$SOCK
export CRISP_TEST_DOCKER_IMAGE=$IMAGE
export CRISP_TEST_DOCKER_TLS_ADDR=tcp://localhost:$H1_TLS_PORT
export CRISP_TEST_DOCKER_TLS_DIR=$TLS
EOF
    cat "$H1_DIR/env.sh"
}

start() {
    mkdir -p "$H1_DIR"
    if running; then
        log "already running (pid $(cat "$PIDFILE"))"
        write_env
        return 0
    fi
    make_certs
    if ! ip link show "$H1_BRIDGE" >/dev/null 2>&1; then
        ip link add "$H1_BRIDGE" type bridge
        ip addr add "$H1_BRIDGE_CIDR" dev "$H1_BRIDGE"
    fi
    ip link set "$H1_BRIDGE" up
    # A stale containerd pid file under our exec root blocks a restart.
    local cpid="$H1_DIR/exec/containerd/containerd.pid"
    if [ -f "$cpid" ] && ! grep -q containerd "/proc/$(cat "$cpid")/cmdline" 2>/dev/null; then
        rm -f "$cpid"
    fi
    rm -f "$SOCK"
    nohup /usr/sbin/dockerd \
        --data-root "$H1_DIR/data" --exec-root "$H1_DIR/exec" --pidfile "$PIDFILE" \
        -H "unix://$SOCK" -H "tcp://127.0.0.1:$H1_TLS_PORT" \
        --tlsverify --tlscacert "$TLS/ca.pem" --tlscert "$TLS/server.pem" --tlskey "$TLS/server-key.pem" \
        --bridge="$H1_BRIDGE" --iptables=false --ip-masq=false --userland-proxy=false \
        --storage-driver=vfs >"$H1_DIR/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
        if [ -S "$SOCK" ] && api http://docker/_ping >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    api http://docker/_ping >/dev/null || { log "dockerd did not come up; see $H1_DIR/dockerd.log"; exit 1; }
    log "dockerd up (pid $(cat "$PIDFILE")), socket $SOCK, TLS on 127.0.0.1:$H1_TLS_PORT"
    import_busybox
    write_env
}

stop() {
    if running; then
        local pid
        pid="$(cat "$PIDFILE")"
        # Remove our test containers first so the managed containerd exits cleanly.
        local ids
        ids="$(api 'http://docker/v1.41/containers/json?all=1' 2>/dev/null |
            grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4 || true)"
        for id in $ids; do
            curl -fsS --unix-socket "$SOCK" -X DELETE "http://docker/v1.41/containers/$id?force=1" \
                >/dev/null 2>&1 || true
        done
        kill "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        log "dockerd stopped"
    fi
    if ip link show "$H1_BRIDGE" >/dev/null 2>&1; then
        ip link del "$H1_BRIDGE"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
purge)
    stop
    umount -R "$H1_DIR/exec" 2>/dev/null || true
    rm -rf "$H1_DIR"
    ;;
*)
    echo "usage: $0 start|stop|purge" >&2
    exit 2
    ;;
esac
