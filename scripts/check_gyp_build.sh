#!/usr/bin/env bash
# Builds the addon with node-gyp from binding.gyp in a scratch copy (node-gyp and cmake-js both use build/) and runs
# the parity and error tests against that binary, so both build paths are known to produce a working addon.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r package.json binding.gyp native scripts "$work/"
ln -s "$PWD/node_modules" "$work/node_modules"
(cd "$work" && npx node-gyp rebuild -j "$(nproc)" >gyp.log 2>&1) || { tail -40 "$work/gyp.log"; echo "node-gyp build failed" >&2; exit 1; }
TRANSFORMER_HEADS_BINDING="$work/build/Release/transformer_heads.node" npx vitest run test/parity.test.ts test/errors.test.ts
