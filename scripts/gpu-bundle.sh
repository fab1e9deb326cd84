#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs into .gpu-bundle/ for a GPU machine that can neither
# build nor download (the `device` tool's machines): the release binary, the CUDA test binary and
# the plugins (stripped, xz-compressed) and the Fashion-MNIST files. Build here, carry the
# folder, run `ARCHAI_GPU_BUNDLE=.gpu-bundle scripts/gpu-check.sh` there. On a GPU machine that can
# build, skip this: scripts/gpu-check.sh builds by itself.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh
# The CUDA integration test binary (cargo prints its path as JSON).
test_bin="$(cargo test --release -p archai-tests --test cuda --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda" and m.get("executable"):
        print(m["executable"])')"
[ -x "$test_bin" ] || { echo "gpu-bundle: no cuda test binary built" >&2; exit 1; }
out=.gpu-bundle
rm -rf "$out" && mkdir -p "$out/stage/release" "$out/stage/plugins" "$out/fashion-mnist"
cp target/release/archai "$out/stage/release/archai"
cp "$test_bin" "$out/stage/release/cuda-tests"
cp target/plugins/*.so "$out/stage/plugins/"
strip "$out"/stage/release/* "$out"/stage/plugins/*
tar -C "$out/stage" -cJf "$out/binaries.tar.xz" .
rm -rf "$out/stage"
cp /usr/share/datasets/fashion-mnist/*.gz "$out/fashion-mnist/"
# The PyTorch reference of `bench search-step` (in the repository; DARTS_REF overrides).
ref="${DARTS_REF:-$repo/scripts/bench/darts_ref.py}"
[ -f "$ref" ] && cp "$ref" "$out/darts_ref.py"
# Test binaries hold the paths of the checkout they were built in (CARGO_MANIFEST_DIR).
printf '%s\n' "$repo" >"$out/built_at"
du -sh "$out"
