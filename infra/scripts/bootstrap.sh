#!/usr/bin/env bash
# Install what Corral needs on a fresh Debian machine, build the guest image and the example rootfs.
# Idempotent and quick when everything is there (npm start and npm test run it first).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have nats-server || need+=(nats-server)
have qemu-system-x86_64 || need+=(qemu-system-x86)
# virtiofsd (shared_fs = "virtio-fs"): Debian 12's QEMU ships the C one (qemu-system-common,
# /usr/lib/qemu/virtiofsd); Debian 13 packages the Rust one on its own (virtiofsd, /usr/libexec/virtiofsd).
if [ ! -x /usr/libexec/virtiofsd ] && [ ! -x /usr/lib/qemu/virtiofsd ]; then
  debian=$(cut -d. -f1 /etc/debian_version 2>/dev/null || true)  # "12", "13", or "trixie/sid" on testing
  if [[ $debian =~ ^[0-9]+$ ]] && [ "$debian" -lt 13 ]; then need+=(qemu-system-common); else need+=(virtiofsd); fi
fi
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have mkfs.ext4 || need+=(e2fsprogs)
have cpio || need+=(cpio)
have xz || need+=(xz-utils)
have setpriv || need+=(util-linux)
have ss || need+=(iproute2)  # the worker-crash test reads a frozen worker's socket queue
have tmux || need+=(tmux)  # the terminal test drives corral run -t / exec -t as a person would
have useradd || need+=(passwd)
have containerd || need+=(containerd runc)  # the shim tests drive Debian's containerd and ctr (runc: the baseline)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)  # CNI for the CRI tests' pod namespaces
have prometheus || need+=(prometheus)  # the metrics test has Debian's Prometheus scrape a node
have gcc || need+=(gcc libc6-dev)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the replay viewer test (test/e2e/viewer.test.ts)
have dockerd || need+=(docker.io)  # the partition suite's own engine (test/e2e/partitions.test.ts)
have iptables || need+=(iptables)  # its faults, in the containers' own network namespaces
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "bootstrap: need root to install: ${need[*]}" >&2; exit 1; fi
  echo "bootstrap: installing ${need[*]} (apt)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# nats-server 2.10.23 or later (sync_interval: always) where the host's is older (Debian 12: 2.9.10): Debian 13's
# package, fetched into .corral/nats-server (docs/decisions/0012). Not fatal: Corral then runs the host's server.
if [ -z "${CORRAL_NATS_SERVER:-}" ] && ! bash infra/scripts/fetch-nats-server.sh; then
  echo "bootstrap: warning: no nats-server 2.10.23 or later; Corral runs $(nats-server --version 2>&1 | head -n1)" \
    "(2.9: no sync_interval, an OS crash or power loss can lose the last acknowledged writes, a kill cannot)" >&2
fi

if [ ! -d node_modules/xstate ]; then echo "bootstrap: npm ci…"; npm ci --no-audit --no-fund >/dev/null; fi

# The compiled agent and workers (dist/: bin/corral.mjs runs it when it is current, src/ through tsx otherwise).
# Not fatal: without it everything runs from src/, only slower to start.
node infra/scripts/build.mjs --if-stale || echo "bootstrap: warning: dist/ not built; Corral runs from src/ through tsx" >&2

guest=${CORRAL_GUEST_DIR:-.corral/guest}
bash infra/guest/build.sh "$guest"
bash examples/build-rootfs.sh
echo "bootstrap: ready (guest in $guest)"
