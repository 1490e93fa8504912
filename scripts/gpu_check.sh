#!/usr/bin/env bash
# One prepared run for a CUDA machine that has PyTorch (libtorch 2.x with CUDA) but maybe no Node: builds the core and
# its tests against the PyTorch found there, makes the fixtures, runs the C++ tests (they add CUDA to every parity
# and head test when a GPU is visible), and, when Node is present, the addon, the vitest suite and the benchmarks on
# CUDA. Everything it prints goes to ${OUT:-/tmp}/gpu_check.log as well.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp}
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
py=$(bash scripts/find_torch_python.sh) || { echo "no python3 with torch"; exit 1; }
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
jobs=$(nproc)
cmake -S . -B build-gpu -DTH_BUILD_ADDON=OFF -DCMAKE_PREFIX_PATH="$prefix" -DTH_FIXTURES="$PWD/fixtures" >/dev/null && cmake --build build-gpu -j "$jobs" || exit 1
TH_PYTHON="$py" bash scripts/make_fixtures.sh
ctest --test-dir build-gpu --output-on-failure
rc=$?
if command -v node >/dev/null && [[ -d node_modules ]]; then
  npx cmake-js compile --CDCMAKE_PREFIX_PATH="$prefix" >/dev/null && npx tsc -p tsconfig.json && npx vitest run || rc=1
  TH_BENCH_DEVICE=cuda node bench/run.mjs || rc=1
fi
exit $rc
