#!/usr/bin/env bash
# One-time (and idempotent) setup: system packages, npm packages, native addon, TypeScript.
#   bash scripts/setup.sh          install what is missing, build what is stale
#   bash scripts/setup.sh --check  only report what is missing
# System packages are installed on Debian/Ubuntu when running as root or with password-less sudo; anywhere else
# the script prints exactly what to install. With your own libtorch (LIBTORCH, Torch_DIR or PyTorch in Python) the
# libtorch packages are not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'setup: %s\n' "$*" >&2; }

# libopenblas0-pthread matters: with Debian's reference BLAS, matrix products run ~40x slower (2.6 vs 106 GFLOP/s).
# libgloo-dev: headers that c10d's ProcessGroupGloo.hpp includes (data-parallel training, native/core/distributed.cpp).
# libblis4-pthread: loaded at run time for generation's decoding products (native/core/small_gemm.h; 1.27x per step at
# batch 8); optional (without it OpenBLAS runs them), and it leaves the system BLAS alternative on OpenBLAS.
PKGS=(libtorch-dev libopenblas0-pthread libblis4-pthread python3-torch nlohmann-json3-dev doctest-dev cmake g++ make python3 libgloo-dev)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi

own_torch=0
[[ -n "${LIBTORCH:-}" || -n "${Torch_DIR:-}" ]] && own_torch=1

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ "${1:-}" == "--check" ]]; then log "missing packages: ${missing[*]}"; exit 1; fi
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
  fi
  if command -v apt-get >/dev/null 2>&1 && [[ "$sudo" != "none" ]]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif [[ $own_torch -eq 0 ]]; then
    log "these system packages are missing: ${missing[*]}"
    log "install them with:  sudo apt-get install --no-install-recommends ${missing[*]}"
    log "or, off Debian/Ubuntu: a C++17 compiler, cmake >= 3.18, nlohmann-json, doctest, and libtorch"
    log "(export LIBTORCH=/path/to/libtorch, or pip install torch), then run this script again"
    exit 1
  fi
elif [[ "${1:-}" == "--check" ]]; then
  log "system packages present"; exit 0
fi

need_node="20.17.0"
node -e "const [a,b]=process.versions.node.split('.').map(Number); process.exit(a>20||(a===20&&b>=17)?0:1)" || {
  log "Node.js >= $need_node is required (found $(node --version))"; exit 1; }

# npm packages: again whenever package-lock.json changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Native addon, core library and C++ tests (cmake-js; incremental when already built).
addon=build/Release/transformer_heads.node
if [[ ! -f "$addon" || -n "$(find native CMakeLists.txt -newer "$addon" -print -quit)" ]]; then
  log "building the native addon and C++ tests (a few minutes on 2 cores the first time)"
  npx cmake-js compile --CDTH_BUILD_TESTS=ON ${CMAKE_BUILD_PARALLEL_LEVEL:+--parallel "$CMAKE_BUILD_PARALLEL_LEVEL"} >build.log 2>&1 || {
    tail -40 build.log >&2; log "native build failed (full log: build.log)"; exit 1; }
fi

if [[ ! -f dist/index.js || -n "$(find ts tsconfig.json -newer dist/index.js -print -quit)" ]]; then
  log "compiling TypeScript"
  npx tsc -p tsconfig.json
fi
log "ready"
