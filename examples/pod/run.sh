#!/usr/bin/env bash
# A pod: the sandbox (its own process is a pause-like `sleep`) and two containers in the same guest.
# Needs a running node (corral up); uses NATS_URL / CORRAL_NODE like every corral command.
set -euo pipefail
cd "$(dirname "$0")/../.."
corral() { npx --no-install corral "$@"; }
corral create pod1 --bundle examples/pod/sandbox
corral start pod1
corral run --id app1 --bundle examples/pod/app1 --rm || echo "app1 exited with $?"
corral run --id app2 --bundle examples/pod/app2 --rm || echo "app2 exited with $?"
corral kill pod1 --signal SIGKILL
corral wait pod1
corral delete pod1
