#!/usr/bin/env bash
# npm run lint: the layer rules (dependency-cruiser, .dependency-cruiser.cjs), the formatter's check
# (prettier --check), the type check (tsc --noEmit: vitest runs the tests without one) and ESLint
# (eslint.config.js). Fails if any of the four fails.
#
# ESLint's type-aware pass is the long one, and it runs on one core (one TypeScript program); the other
# three run beside it on the second core, their output held back and printed after ESLint's, so that the
# whole takes about as long as ESLint alone.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=node_modules/.bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

("$bin/depcruise" src bench infra sim --config .dependency-cruiser.cjs >"$out/layers" 2>&1
  echo $? >"$out/layers.rc"
  # --cache: a file unchanged since the last check (same prettier, same options) is not parsed again.
  "$bin/prettier" --check --cache . >"$out/format" 2>&1
  echo $? >"$out/format.rc"
  "$bin/tsc" --noEmit -p . >"$out/types" 2>&1
  echo $? >"$out/types.rc") &
side=$!

echo '== eslint'
"$bin/eslint" .
eslint_rc=$?
wait "$side"

echo '== layers (dependency-cruiser)'
cat "$out/layers"
echo '== format (prettier --check)'
cat "$out/format"
echo '== types (tsc --noEmit)'
cat "$out/types"

layers_rc=$(cat "$out/layers.rc")
format_rc=$(cat "$out/format.rc")
types_rc=$(cat "$out/types.rc")
status() { [ "$1" = 0 ] && echo ok || echo FAILED; }
echo "lint: eslint $(status "$eslint_rc"), layers $(status "$layers_rc"), format $(status "$format_rc"), types $(status "$types_rc")"
[ "$eslint_rc" = 0 ] && [ "$layers_rc" = 0 ] && [ "$format_rc" = 0 ] && [ "$types_rc" = 0 ]
