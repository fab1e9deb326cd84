#!/usr/bin/env bash
# Training throughput of resnet_small on Fashion-MNIST: archai vs the same model in PyTorch 2.11
# (scripts/bench/resnet_small_ref.py), same threads and batch, one after the other.
# Usage: scripts/bench-resnet.sh [BATCH] [THREADS] [STEPS] [PRECISION: fp32|bf16]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
batch="${1:-96}" threads="${2:-2}" steps="${3:-50}" precision="${4:-fp32}"
py="${ARCHAI_TORCH_PYTHON:-${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-2.11.0}/bin/python}"
common=(--batch "$batch" --threads "$threads" --steps "$steps" --precision "$precision")
ours=$(./target/release/archai bench train "${common[@]}" --json 2>/dev/null)
ours_nchw=$(./target/release/archai bench train "${common[@]}" --channels-last false --json 2>/dev/null)
theirs=$("$py" scripts/bench/resnet_small_ref.py "${common[@]}" 2>/dev/null | tail -n 1)
"$py" - "$ours" "$ours_nchw" "$theirs" <<'PY'
import json, sys
ours, nchw, ref = (json.loads(a) for a in sys.argv[1:4])
print(json.dumps({"batch": ours["batch"], "threads": ours["threads"], "precision": ref["precision"],
                  "params_archai": ours["params"], "params_pytorch": ref["params"],
                  "archai_samples_per_s": ours["samples_per_s"], "archai_nchw_samples_per_s": nchw["samples_per_s"],
                  "pytorch_samples_per_s": ref["samples_per_s"],
                  "speedup_archai_over_pytorch": ours["samples_per_s"] / ref["samples_per_s"]}))
PY
