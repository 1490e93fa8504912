#!/usr/bin/env bash
# The install test (issue 12): the package as a user gets it. `npm pack`, then `npm install <tarball>` into empty
# folders outside the source tree, --prefer-offline (npm's cache, filled by `npm ci`, first; the registry that CI's
# `npm ci` uses only for what the cache lacks), and:
#   A. with the prebuild, and a PATH without any compiler, make or python: nothing can be compiled. The README's first
#      example (examples/quickstart.mjs) runs; `doctor --json` reports what it must; `npx transformer-heads probe`
#      works; require() from CommonJS works; a strict TypeScript consumer (skipLibCheck false,
#      exactOptionalPropertyTypes) compiles against the published types.
#   B. libtorch hidden (a mount namespace hides Debian's libtorch and PyTorch's package): install succeeds with a
#      warning, and the first load, the CLI and doctor fail with ERR_TH_NATIVE naming the command that fixes it.
#   C. the prebuilds removed: the install script builds from source with the node-gyp that npm bundles; the
#      example runs on that binary, and the parity and error tests run against it (the node-gyp build check of CI).
# Prints one JSON line of figures (tarball size, install times). Needs dist/ and build/ (bash scripts/setup.sh).
#   TH_INSTALL_WORK  the scratch folder (default /tmp/th-install-check; fixed so that a compiler cache can hit)
#   TH_INSTALL_SKIP_SOURCE=1  skip case C (the 5-20 minute build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${TH_INSTALL_WORK:-/tmp/th-install-check}
node_bin=$(command -v node)
npm_cli=$(dirname "$(readlink -f "$node_bin")")/../lib/node_modules/npm/bin/npm-cli.js
[[ -f $npm_cli ]] || npm_cli=$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js
log() { printf 'check_install: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

rm -rf "$work"
mkdir -p "$work"

# ------------------------------------------------------------------------------------------------ the tarball
[[ -f dist/index.js ]] || fail "dist/ is missing: run bash scripts/setup.sh first"
node scripts/prebuild.mjs --reuse >"$work/prebuild.json"
log "packing"
tarball=$work/$(cd "$work" && "$node_bin" "$npm_cli" pack "$repo" --silent)
bytes=$(stat -c %s "$tarball")
tar -tzf "$tarball" >"$work/contents.txt"
# What a user runs and nothing else.
for f in package/dist/index.js package/dist/index.d.ts package/dist/cli.js package/cjs/index.cjs package/LICENSE \
  package/scripts/install.mjs package/scripts/libtorch.mjs package/binding.gyp package/native/loader/loader.c \
  package/prebuilds/linux-x64/th_loader.glibc.node; do
  grep -qx "$f" "$work/contents.txt" || fail "the tarball lacks $f"
done
grep -q '^package/prebuilds/linux-x64/transformer_heads\.glibc\.torch-.*\.node$' "$work/contents.txt" || fail "the tarball has no prebuilt addon"
# (scripts/export_torchscript.py ships: `transformer-heads export --hf` runs it.)
if grep -vx 'package/scripts/export_torchscript.py' "$work/contents.txt" |
  grep -E '\.map$|^package/native/tests/|^package/test/|^package/ts/|^package/examples/|\.py$|test\.sh$|gpu_check|^package/build/|^package/fixtures/|^package/models/\.work/'; then
  fail "the tarball ships development files (above)"
fi
# A tarball without the prebuilds, for the build from source.
mkdir -p "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked"
rm -rf "$work/unpacked/package/prebuilds"
tar -czf "$work/noprebuild.tgz" -C "$work/unpacked" package

# The README's first example is examples/quickstart.mjs, verbatim: what runs here is what a user copies.
node -e '
  const fs = require("fs");
  if (!fs.readFileSync("README.md", "utf8").includes("```js\n" + fs.readFileSync("examples/quickstart.mjs", "utf8") + "```")) process.exit(1);
' || fail "README.md's first example is not examples/quickstart.mjs"

consumer() { # an empty project folder, with the example and the strict TypeScript consumer
  mkdir -p "$1"
  printf '{ "name": "consumer", "private": true, "type": "module" }\n' >"$1/package.json"
  cp examples/quickstart.mjs test/install/consumer.ts test/install/tsconfig.json "$1/"
}
install_into() { # folder tarball [env...]: an offline npm install, its output in install.log
  local dir=$1 tgz=$2
  shift 2
  (cd "$dir" && env "$@" "$node_bin" "$npm_cli" install --prefer-offline --no-audit --no-fund --foreground-scripts "$tgz") >"$dir/install.log" 2>&1
}

# ------------------------------------------------------------------------------------------------ A: prebuild, no compiler
log "A: install with the prebuild and no compiler on PATH"
nocc=$work/nocc-bin
mkdir -p "$nocc"
ln -s "$node_bin" "$nocc/node"
ln -s "$(command -v sh)" "$nocc/sh"
for tool in c++ g++ gcc cc clang++ make python3; do [[ -e $nocc/$tool ]] && fail "$tool in the compiler-free PATH"; done
consumer "$work/a"
t0=$(now)
install_into "$work/a" "$tarball" PATH="$nocc" || { cat "$work/a/install.log"; fail "npm install with the prebuild failed"; }
install_a=$(secs "$t0" "$(now)")
pkg=$work/a/node_modules/transformer-heads
grep -q 'using the prebuild' "$work/a/install.log" || { cat "$work/a/install.log"; fail "the install did not use the prebuild"; }
[[ ! -e $pkg/build ]] || fail "something was built at install ($pkg/build exists)"
(cd "$work/a" && PATH="$nocc" node quickstart.mjs >example.out 2>&1) || { cat "$work/a/example.out"; fail "the README's first example failed after install"; }
grep -q 'prebuild' "$work/a/example.out" && grep -q 'majority class' "$work/a/example.out" || { cat "$work/a/example.out"; fail "unexpected example output"; }
(cd "$work/a" && PATH="$nocc" node node_modules/.bin/transformer-heads doctor --json >doctor.json) || fail "doctor failed: $(cat "$work/a/doctor.json")"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const need = (c, what) => { if (!c) { console.error("doctor --json: " + what); process.exit(1); } };
  need(r.command === "doctor" && r.ok === true, "ok");
  need(r.node.version === process.version && Number(r.node.napi) >= 8, "node and N-API");
  need(/^\d+\.\d+/.test(r.libtorch.version) && r.libtorch.libdir && r.libtorch.libraries.some((l) => /torch_cpu/.test(l)), "libtorch version and location");
  need(r.binary.kind === "prebuild" && r.binaries.some((b) => b.status === "used"), "the binary used");
  need(typeof r.runtime.cudaAvailable === "boolean" && Number.isInteger(r.runtime.cudaDeviceCount), "CUDA");
  need(Number.isInteger(r.threads.numThreads) && r.threads.cores >= 1, "threads");
  need(Array.isArray(r.libraries.blas), "BLAS");
' "$work/a/doctor.json" || fail "doctor --json fields"
(cd "$work/a" && PATH="$nocc" node node_modules/.bin/transformer-heads probe --examples 300 --epochs 1 --layers 0,-1 -o out/probe --json >probe.json 2>probe.err) ||
  { cat "$work/a/probe.err"; fail "npx transformer-heads probe failed after install"; }
grep -q '"command":"probe"' "$work/a/probe.json" || fail "probe printed no result"
# Without a fitting binary and without a compiler, the install says what is missing and the command that fixes it.
(cd "$work/a" && PATH="$nocc" TRANSFORMER_HEADS_BUILD_FROM_SOURCE=1 node "$npm_cli" rebuild --foreground-scripts transformer-heads >rebuild.log 2>&1) &&
  fail "a build from source without a compiler succeeded"
grep -q 'missing a C++17 compiler (g++); make; python3' "$work/a/rebuild.log" && grep -q 'Fix: sudo apt-get install g++ make python3' "$work/a/rebuild.log" ||
  { cat "$work/a/rebuild.log"; fail "the failed build does not name what is missing and the fix"; }
[[ ! -e $pkg/build ]] || fail "the failed build left build/ behind"
(cd "$work/a" && node -e "const th = require('transformer-heads'); if (typeof th.loadHeaded !== 'function') process.exit(1)") || fail "require() from CommonJS"
cjs_err=$(cd "$work/a" && node --no-experimental-require-module -e "require('transformer-heads')" 2>&1 || true)
[[ $cjs_err == *"await import('transformer-heads')"* ]] || fail "CommonJS without require(esm) should say to use import(): $cjs_err"
mkdir -p "$work/a/node_modules/@types"
ln -s "$repo/node_modules/@types/node" "$work/a/node_modules/@types/node"
(cd "$work/a" && node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json) || fail "the published types do not compile for a strict consumer"

# ------------------------------------------------------------------------------------------------ B: libtorch hidden
# A private mount namespace (root, or unprivileged user namespaces) hides every libtorch this machine has: PyTorch's
# package folder under an empty tmpfs, and the system library folder under a copy made of links to everything but
# libtorch's libraries. Nothing outside this test's process tree sees it.
hidden_b=skipped
if unshare -m true 2>/dev/null || unshare -rm true 2>/dev/null; then
  log "B: libtorch hidden"
  consumer "$work/b"
  cat >"$work/hide.sh" <<'EOF'
set -e
ns_flag=$1; shift
lib=/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
[ -d "$lib" ] || lib=/usr/lib/x86_64-linux-gnu
real=$(mktemp -d) shadow=$(mktemp -d)
mount --bind "$lib" "$real"
for f in "$real"/* "$real"/.[!.]*; do
  b=${f##*/}
  case $b in libtorch*|libc10*|libcaffe2*|libshm.so*) ;; *) ln -s "$f" "$shadow/$b" ;; esac
done
mount --bind "$shadow" "$lib"
for py in /usr/lib/python3/dist-packages/torch /usr/local/lib/python3*/dist-packages/torch; do
  [ -d "$py" ] && mount -t tmpfs none "$py"
done
exec "$@"
EOF
  ns=(-m)
  unshare -m true 2>/dev/null || ns=(-rm)
  hide() { unshare "${ns[@]}" bash "$work/hide.sh" x "$@"; }
  hide env -u LIBTORCH -u TRANSFORMER_HEADS_LIBTORCH -u Torch_DIR "$node_bin" "$repo/scripts/libtorch.mjs" info >/dev/null 2>&1 && fail "libtorch is still found with it hidden"
  hide "$node_bin" "$npm_cli" install --prefix "$work/b" --prefer-offline --no-audit --no-fund --foreground-scripts "$tarball" >"$work/b/install.log" 2>&1 ||
    { cat "$work/b/install.log"; fail "npm install without libtorch should succeed with a warning"; }
  grep -q 'libtorch.*was not found' "$work/b/install.log" && grep -q 'Fix: sudo apt-get install libtorch' "$work/b/install.log" ||
    { cat "$work/b/install.log"; fail "the install's warning does not name the fix"; }
  (cd "$work/b" && hide "$node_bin" quickstart.mjs >example.out 2>&1) && fail "the example ran with libtorch hidden"
  grep -q 'ERR_TH_NATIVE' "$work/b/example.out" && grep -q 'Fix: sudo apt-get install libtorch' "$work/b/example.out" ||
    { cat "$work/b/example.out"; fail "the first load's error does not name the fix"; }
  (cd "$work/b" && hide "$node_bin" node_modules/.bin/transformer-heads probe >probe.out 2>&1) && fail "probe ran with libtorch hidden"
  grep -q 'apt-get install libtorch' "$work/b/probe.out" || { cat "$work/b/probe.out"; fail "the CLI's hint does not name the fix"; }
  (cd "$work/b" && hide "$node_bin" node_modules/.bin/transformer-heads doctor >doctor.out 2>&1) && fail "doctor exited 0 with libtorch hidden"
  grep -q 'libtorch *not found' "$work/b/doctor.out" && grep -q 'fix: sudo apt-get install libtorch' "$work/b/doctor.out" ||
    { cat "$work/b/doctor.out"; fail "doctor does not say what is missing"; }
  hidden_b=passed
  log "B: what the user sees:"
  sed -n '/ERR_TH_NATIVE\|Fix:/p' "$work/b/example.out" | head -4 >&2
else
  log "B: skipped: no mount namespace here (needs root or unprivileged user namespaces) to hide libtorch"
fi

# ------------------------------------------------------------------------------------------------ C: from source
source_c=skipped
install_c=null
if [[ -z ${TH_INSTALL_SKIP_SOURCE:-} ]]; then
  log "C: install without prebuilds: the build from source with npm's node-gyp"
  consumer "$work/c"
  cc_env=()
  # A compiler cache when the developer has one configured (scripts/setup.sh's env); the fixed scratch path lets it hit.
  if command -v ccache >/dev/null && [[ -n ${CCACHE_DIR:-} ]]; then cc_env=(CC="ccache gcc" CXX="ccache g++"); fi
  t0=$(now)
  install_into "$work/c" "$work/noprebuild.tgz" "${cc_env[@]}" ||
    { tail -40 "$work/c/install.log"; fail "npm install with a build from source failed"; }
  install_c=$(secs "$t0" "$(now)")
  built=$work/c/node_modules/transformer-heads/build/Release/transformer_heads.node
  [[ -f $built ]] || { cat "$work/c/install.log"; fail "no binary was built"; }
  readelf -d "$built" | grep -qE 'RPATH|RUNPATH' && fail "the source build has an RPATH"
  (cd "$work/c" && node quickstart.mjs >example.out 2>&1) || { cat "$work/c/example.out"; fail "the example failed on the binary built at install"; }
  grep -q 'local build' "$work/c/example.out" || { cat "$work/c/example.out"; fail "the example did not use the binary built at install"; }
  TRANSFORMER_HEADS_BINDING=$built npx vitest run test/parity.test.ts test/errors.test.ts
  source_c=passed
fi

printf '{"check":"install","tarball_bytes":%s,"tarball_mib":%s,"files":%s,"install_prebuild_s":%s,"install_from_source_s":%s,"libtorch_hidden":"%s","from_source":"%s"}\n' \
  "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')" "$(wc -l <"$work/contents.txt")" "$install_a" "$install_c" "$hidden_b" "$source_c"
