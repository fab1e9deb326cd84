#!/usr/bin/env bash
# Where a DARTS search step spends its convolution time, per precision: runs `archai bench
# search-step` (batch 32, 2 threads, one warm-up and one timed step) with ONEDNN_VERBOSE=1 and
# groups oneDNN's executed primitives by kind, propagation, depthwise/dense, kernel and
# implementation (scripts/bench/onednn_breakdown.py). The evidence for the README's "why bf16 is
# slower for the DARTS supernet".
# Usage: scripts/bench-onednn.sh [PRECISION: fp32|bf16 ...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
for precision in "${@:-fp32 bf16}"; do
  for p in $precision; do
    echo "== $p"
    ONEDNN_VERBOSE=1 ./target/release/archai bench search-step --steps 1 --warmup 1 --precision "$p" 2>&1 \
      | python3 scripts/bench/onednn_breakdown.py
  done
done
