#!/usr/bin/env bash
# The whole test suite: setup, fixtures, C++ core tests (ctest), the layering check of ts/, then the
# TypeScript/end-to-end tests (vitest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/make_fixtures.sh
ctest --test-dir build --output-on-failure
node scripts/check_layers.mjs   # ts/ folders import only from the layers below them, with no import cycles
node scripts/pretrain.mjs   # checks the committed embedded model (models/tiny-llama-en), makes its random-init twin (seconds)
npx vitest run
