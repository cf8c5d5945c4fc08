#!/bin/bash
# Build the offline OCI image layouts used by the tests (no docker daemon, no
# internet): busybox (busybox-static with every applet linked), pause (a tiny
# static C program as PID 1) and victim (busybox with another config, so it is
# a distinct image that RemoveImage tests may delete).
# Output: $WORK/images/<name>/ (OCI layouts, tag "1"). Cached: rebuilt only
# when the inputs change.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (package busybox-static)"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is not static (install busybox-static)"

stamp="$(cat "$BUSYBOX" "$TEST_ENV_DIR/pause.c" "$TEST_ENV_DIR/mkoci.py" "$TEST_ENV_DIR/images.sh" | sha256sum | cut -c1-16)"
if [ -f "$IMG_DIR/.stamp" ] && [ "$(cat "$IMG_DIR/.stamp")" = "$stamp" ]; then
  exit 0
fi

log "building test images in $IMG_DIR"
rm -rf "$IMG_DIR"
mkdir -p "$IMG_DIR/src"

# --- busybox rootfs ---------------------------------------------------------
rootfs="$IMG_DIR/src/busybox-rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var,run}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

/usr/bin/python3 "$TEST_ENV_DIR/mkoci.py" --rootfs "$rootfs" --out "$IMG_DIR/busybox" --tag 1 \
  --config '{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"Labels":{"crisp-test":"busybox"}}' >/dev/null
/usr/bin/python3 "$TEST_ENV_DIR/mkoci.py" --rootfs "$rootfs" --out "$IMG_DIR/victim" --tag 1 \
  --config '{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"Labels":{"crisp-test":"victim"}}' >/dev/null

# --- pause ------------------------------------------------------------------
prootfs="$IMG_DIR/src/pause-rootfs"
mkdir -p "$prootfs"
gcc -static -Os -s -o "$prootfs/pause" "$TEST_ENV_DIR/pause.c"
/usr/bin/python3 "$TEST_ENV_DIR/mkoci.py" --rootfs "$prootfs" --out "$IMG_DIR/pause" --tag 1 \
  --config '{"Entrypoint":["/pause"],"Labels":{"crisp-test":"pause"}}' >/dev/null

rm -rf "$IMG_DIR/src"
echo "$stamp" >"$IMG_DIR/.stamp"
log "images built"
