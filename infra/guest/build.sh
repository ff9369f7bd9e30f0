#!/usr/bin/env bash
# Build Corral's guest image into OUT (arg 1, else $CORRAL_GUEST_DIR, else <repo>/.corral/guest):
#   vmlinux            uncompressed ELF kernel from Debian's linux-image-<abi>-amd64 (boots directly, PVH)
#   initramfs.cpio.gz  busybox-static, /init (infra/guest/init), the agent, the kernel modules it needs
#   manifest.json      kernel version and package, sizes, modules, and the hash of the inputs
# Idempotent: when the inputs hash matches manifest.json, it does nothing. Installs its own apt needs.
# Env: CORRAL_GUEST_CACHE (downloaded .deb and extracted kernel; default OUT/cache),
#      CORRAL_GUEST_KERNEL_PKG (default: what linux-image-amd64 depends on).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-${CORRAL_GUEST_DIR:-$repo/.corral/guest}}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cache=${CORRAL_GUEST_CACHE:-$out/cache}
# Modules copied into the image (their dependencies are added); /init loads the first five by default
# (virtiofs instead of the 9p ones with corral.fs=virtiofs).
MODULES="virtio_mmio virtio_pci virtio_console 9pnet_virtio 9p virtio_blk crc32c_generic ext4 virtiofs virtio_net"
say() { echo "guest: $*"; }

# ---- fast path: same inputs, outputs present ----
busybox=/bin/busybox
inputs_hash() {
  { cat "$here/build.sh" "$here/init" "$here"/agent/*.c "$here"/agent/*.h; echo "${CORRAL_GUEST_KERNEL_PKG:-}";
    [ -x $busybox ] && sha256sum $busybox; } | sha256sum | cut -c1-16
}
hash=$(inputs_hash)
if [ -f "$out/vmlinux" ] && [ -f "$out/initramfs.cpio.gz" ] && grep -q "\"inputsHash\": \"$hash\"" "$out/manifest.json" 2>/dev/null; then
  say "up to date in $out"
  exit 0
fi

# ---- tools (fresh CI machines have none of this) ----
updated=0
apt_update() { [ $updated = 1 ] || { say "apt-get update"; apt-get update -q >/dev/null; updated=1; }; }
need=()
for t in dpkg-deb:dpkg xz:xz-utils cpio:cpio gzip:gzip gcc:gcc $busybox:busybox-static; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt_update
  say "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  hash=$(inputs_hash)
fi

# ---- kernel package: download once, unpack once (without installing it) ----
pkg=${CORRAL_GUEST_KERNEL_PKG:-}
resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
if [ -z "$pkg" ]; then
  pkg=$(resolve)
  [ -n "$pkg" ] || { apt_update; pkg=$(resolve); }
  [ -n "$pkg" ] || { echo "guest: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
fi
kdir=$cache/$pkg
mkdir -p "$cache"
# The unpacked kernel is reused while the module list is the same ("done" holds the list it was made for).
if [ ! -f "$kdir/done" ] || [ "$(cat "$kdir/done")" != "$MODULES" ]; then
  deb=$(ls "$cache/${pkg}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    say "apt-get download $pkg"
    (cd "$cache" && { apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1 || { apt_update; apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null; }; })
    deb=$(ls "$cache/${pkg}_"*.deb | head -1)
  fi
  say "unpacking $(basename "$deb")"
  tmp=$(mktemp -d "$cache/x.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp"
  rm -rf "$kdir" && mkdir -p "$kdir/modules"
  ver=$(ls "$tmp/lib/modules" | head -1)
  # The vmlinuz holds an xz stream after the decompressor stub; the stream is the ELF vmlinux.
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$tmp/boot/vmlinuz-$ver" | head -1 | cut -d: -f1)
  [ -n "$off" ] || { echo "guest: no xz stream in vmlinuz-$ver" >&2; exit 1; }
  xz -dc --single-stream < <(tail -c +$((off + 1)) "$tmp/boot/vmlinuz-$ver") > "$kdir/vmlinux"
  [ "$(head -c 4 "$kdir/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] || { echo "guest: vmlinux is not ELF" >&2; exit 1; }
  cp "$tmp/lib/modules/$ver/modules.builtin" "$kdir/"
  # Copy each wanted module with its dependencies (read from the .ko's modinfo "depends=").
  declare -A seen=()
  order=()
  add() {
    local m=$1 f d
    [ -n "${seen[$m]:-}" ] && return; seen[$m]=1
    if grep -qE "/$m\.ko$" "$kdir/modules.builtin"; then say "$m is built in"; return; fi
    f=$(find "$tmp/lib/modules/$ver/kernel" -name "$m.ko" | head -1)
    [ -n "$f" ] || { echo "guest: module $m not found" >&2; exit 1; }
    for d in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -1 | tr , ' '); do add "$d"; done
    cp "$f" "$kdir/modules/"
    order+=("$m")
  }
  for m in $MODULES; do add "$m"; done
  printf '%s\n' "${order[@]}" > "$kdir/modules/order"
  echo "$ver" > "$kdir/version"
  rm -rf "$tmp"; trap - EXIT
  echo "$MODULES" > "$kdir/done"
fi
ver=$(cat "$kdir/version")

# ---- initramfs ----
say "building initramfs (kernel $ver)"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,tmp,lib/modules}
cp $busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
install -m 0755 "$here/init" "$root/init"
gcc -static -Os -s -Wall -Wextra -Werror -o "$root/sbin/corral-agent" "$here"/agent/*.c
cp "$kdir"/modules/*.ko "$root/lib/modules/"
# <m>.needs: the modules to insmod, in order, so that m loads (dependencies first, then m).
needs() {
  local f=$kdir/modules/$1.ko d
  for d in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -1 | tr , ' '); do needs "$d"; done
  echo "$1"
}
while read -r m; do needs "$m" | awk '!seen[$0]++' > "$root/lib/modules/$m.needs"; done < "$kdir/modules/order"
find "$root" -exec touch -h -d @0 {} + # same inputs, same bytes
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -6 -n > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$kdir/vmlinux" "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
size() { stat -c %s "$1"; }
cat > "$out/manifest.json" <<EOF
{
  "kernelVersion": "$ver",
  "kernelPackage": "$pkg",
  "vmlinuxBytes": $(size "$out/vmlinux"),
  "initramfsBytes": $(size "$out/initramfs.cpio.gz"),
  "agentBytes": $(size "$root/sbin/corral-agent"),
  "modules": [$(sed 's/.*/"&"/' "$kdir/modules/order" | paste -sd, -)],
  "inputsHash": "$hash",
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
say "done: $out ($(du -h "$out/vmlinux" | cut -f1) vmlinux, $(du -h "$out/initramfs.cpio.gz" | cut -f1) initramfs)"
