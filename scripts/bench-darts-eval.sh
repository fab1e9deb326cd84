#!/usr/bin/env bash
# Training throughput of a DARTS evaluation network (DARTS-V2 cells, 5 cells, C=8, full
# resolution: the size of the first small-real evals) on Fashion-MNIST: archai vs the same network in PyTorch 2.11
# (scripts/bench/darts_eval_ref.py, DARTS' own NetworkCIFAR), same threads and batch, one after
# the other; PyTorch in its default NCHW layout (as DARTS' code) and in channels-last.
# Usage: scripts/bench-darts-eval.sh [BATCH] [THREADS] [STEPS] [PRECISION: fp32|bf16]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
batch="${1:-96}" threads="${2:-2}" steps="${3:-30}" precision="${4:-fp32}"
py="${ARCHAI_TORCH_PYTHON:-${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-2.11.0}/bin/python}"
common=(--batch "$batch" --threads "$threads" --steps "$steps" --precision "$precision")
ours=$(./target/release/archai bench train --model confs/models/darts_v2_small.yaml "${common[@]}" --json 2>/dev/null)
theirs=$("$py" scripts/bench/darts_eval_ref.py "${common[@]}" 2>/dev/null | tail -n 1)
theirs_cl=$("$py" scripts/bench/darts_eval_ref.py "${common[@]}" --channels-last 2>/dev/null | tail -n 1)
"$py" - "$ours" "$theirs" "$theirs_cl" <<'PY'
import json, sys
ours, ref, ref_cl = (json.loads(a) for a in sys.argv[1:4])
print(json.dumps({"batch": ours["batch"], "threads": ours["threads"], "precision": ref["precision"],
                  "params_archai": ours["params"], "params_pytorch": ref["params"],
                  "archai_samples_per_s": ours["samples_per_s"],
                  "pytorch_samples_per_s": ref["samples_per_s"],
                  "pytorch_channels_last_samples_per_s": ref_cl["samples_per_s"],
                  "speedup_archai_over_pytorch": ours["samples_per_s"] / ref["samples_per_s"],
                  "speedup_archai_over_pytorch_channels_last": ours["samples_per_s"] / ref_cl["samples_per_s"]}))
PY
