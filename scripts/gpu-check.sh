#!/usr/bin/env bash
# One command for a GPU machine: prints the device, runs the CUDA tests (tests/cuda.rs, the
# `cuda_*` ones are ignored on CPU machines), a toy DARTS search + eval on CUDA in fp32 and in
# mixed precision (search bf16, eval fp16 with loss scaling), and `bench search-step` at batch 64
# for DARTS orders 1 and 2. About 3 minutes on an H200 once built.
#
#   scripts/gpu-check.sh                                  # builds with scripts/setup.sh first
#   ARCHAI_GPU_BUNDLE=.gpu-bundle scripts/gpu-check.sh    # prebuilt (scripts/gpu-bundle.sh)
#
# Writes its logs and the run directories under ${GPU_CHECK_OUT:-runs/gpu-check}.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${GPU_CHECK_OUT:-runs/gpu-check}"
mkdir -p "$out"
say() { printf '\n== %s\n' "$*"; }
fail=0

if [ -n "${ARCHAI_GPU_BUNDLE:-}" ]; then
  bundle="$(cd "$ARCHAI_GPU_BUNDLE" && pwd)"
  mkdir -p target
  tar -C target -xJf "$bundle/binaries.tar.xz"
  archai=target/release/archai
  tests=target/release/cuda-tests
  # The tests build the archai binary with cargo unless told where a prebuilt one is.
  export ARCHAI_BIN="$repo/$archai"
  built_at="$(cat "$bundle/built_at")"
  # The test binary looks for the repo (confs, plugins, the archai binary) where it was built.
  if [ "$built_at" != "$repo" ] && [ ! -e "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -s "$repo" "$built_at"
  fi
  data=/usr/share/datasets/fashion-mnist
  if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$data" && cp "$bundle"/fashion-mnist/*.gz "$data/" ||
      { echo "gpu-check: cannot place Fashion-MNIST in $data (needs root)" >&2; exit 1; }
  fi
  # The binaries' rpath names the build machine's libtorch; else use this machine's PyTorch 2.11.
  if ldd "$archai" | grep -q "libtorch_cpu.so => not found"; then
    torch_lib="$(python3 -c 'import os, torch; assert torch.__version__.startswith("2.11.0"), torch.__version__; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" ||
      { echo "gpu-check: no libtorch 2.11.0 here (python3 -c 'import torch')" >&2; exit 1; }
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  run_tests() { "$tests" --include-ignored --test-threads 1 2>&1; }
  py=python3
  ref="${DARTS_REF:-$bundle/darts_ref.py}"
else
  scripts/setup.sh
  archai=target/release/archai
  run_tests() { cargo test --release -p archai-tests --test cuda -- --include-ignored --test-threads 1 2>&1; }
  py="${ARCHAI_TORCH_PYTHON:-$HOME/.cache/archai-rs/torch-2.11.0/bin/python}"
  ref="${DARTS_REF:-$repo/scripts/bench/darts_ref.py}"
fi

say "device"
nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
"$archai" devices || fail=1

say "CUDA tests (tests/cuda.rs, ignored ones included)"
run_tests >"$out/tests.log"
grep -E "^test |^test result" "$out/tests.log"
grep -A3 "panicked at" "$out/tests.log" || true
grep -q "^test result: ok" "$out/tests.log" || fail=1

for variant in fp32 mixed; do
  say "toy DARTS search + eval on CUDA ($variant)"
  sets=(--set common.device=cuda)
  [ "$variant" = mixed ] && sets+=(--set nas.search.trainer.precision=bf16 --set nas.eval.trainer.precision=fp16)
  rm -rf "$out/toy-$variant"
  start=$(date +%s%N)
  if "$archai" run confs/algos/darts.yaml --toy "${sets[@]}" --out "$out/toy-$variant" >"$out/toy-$variant.log" 2>&1; then
    grep -E "INFO (device|eval: test)" "$out/toy-$variant.log"
    echo "  wall $(( ($(date +%s%N) - start) / 1000000 )) ms"
  else
    tail -5 "$out/toy-$variant.log"; fail=1
  fi
done

for order in 1 2; do
  say "bench search-step, order $order, batch 64 (paper network: 8 cells, C = 16)"
  "$archai" bench search-step --device cuda --batch 64 --steps 10 --warmup 3 \
    --set "nas.search.algorithm.config.order=$order" 2>"$out/bench-order$order.log" ||
    { grep -v " INFO " "$out/bench-order$order.log" | tail -5; fail=1; }
  # The same step in the PyTorch reference on the same GPU, when its script is at hand.
  if [ -f "$ref" ]; then
    echo "  PyTorch reference ($ref):"
    "$py" scripts/bench/darts_ref_device.py --ref "$ref" --device cuda --order "$order" --batch 64 \
      --steps 10 --warmup 3 2>/dev/null || echo "  (the reference did not run)"
  fi
done

say "result"
if [ "$fail" = 0 ]; then echo "gpu-check: all passed"; else echo "gpu-check: FAILED (logs in $out)"; fi
exit "$fail"
