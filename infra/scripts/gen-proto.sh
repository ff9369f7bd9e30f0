#!/usr/bin/env bash
# npm run gen:proto: regenerate src/shim/gen/*_pb.ts from src/shim/proto/*.proto with buf and protoc-gen-es,
# both from node_modules (npx puts node_modules/.bin on PATH; nothing is downloaded). buf.gen.yaml sets
# `clean`, so src/shim/gen is emptied first: running this twice gives the same tree. The output is
# committed (CI does not generate); run this after editing a .proto and commit both.
set -euo pipefail
cd "$(dirname "$0")/../../src/shim/proto"
npx --no buf generate
