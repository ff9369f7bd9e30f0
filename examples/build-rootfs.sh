#!/usr/bin/env bash
# Build each example bundle's rootfs/ from Debian's busybox-static (no binaries are committed).
# Idempotent: a rootfs that already has bin/busybox is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "build-rootfs: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
for cfg in "$here"/*/config.json "$here"/*/*/config.json; do
  [ -f "$cfg" ] || continue
  root="$(dirname "$cfg")/rootfs"
  [ -x "$root/bin/busybox" ] && continue
  mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  echo "build-rootfs: $(realpath --relative-to="$here/.." "$root")"
done
