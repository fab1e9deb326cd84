#!/usr/bin/env bash
# Training throughput of a DARTS evaluation network (DARTS-V2 cells, 5 cells, C=8, full
# resolution: the size of the first small-real evals) on Fashion-MNIST: archai vs the same network in PyTorch 2.11
# (scripts/bench/darts_eval_ref.py, DARTS' own NetworkCIFAR), same threads and batch, one after
# the other; PyTorch in its default NCHW layout (as DARTS' code) and in channels-last.
# With RUN_DIR (a DARTS run directory, e.g. runs/compare-fmnist-small/darts/seed-0) both sides
# train the cells that run's search chose instead, at the run's evaluation size (channels, cells
# and stem stride read from its search/final_model_desc.yaml; the genotype from
# search/artifacts/decisiveness.json); the script stops if the two weight counts differ.
# Usage: scripts/bench-darts-eval.sh [BATCH] [THREADS] [STEPS] [PRECISION: fp32|bf16] [RUN_DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
batch="${1:-96}" threads="${2:-2}" steps="${3:-30}" precision="${4:-fp32}"
py="${ARCHAI_TORCH_PYTHON:-${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-2.11.0}/bin/python}"
run_dir="${5:-}"
common=(--batch "$batch" --threads "$threads" --steps "$steps" --precision "$precision")
model=confs/models/darts_v2_small.yaml
ref_args=()
if [ -n "$run_dir" ]; then
  model="$run_dir/search/final_model_desc.yaml"
  genotype="$run_dir/search/artifacts/decisiveness.json"
  [ -f "$model" ] && [ -f "$genotype" ] || { echo "$run_dir: needs search/final_model_desc.yaml and search/artifacts/decisiveness.json (a DARTS run)" >&2; exit 2; }
  # The first cell's channel count, the number of cells, the stem's stride (the first stride in the file).
  channels=$(sed -n 's/^  c: \([0-9]*\)$/\1/p' "$model" | head -n 1)
  layers=$(grep -c '^- reduction:' "$model")
  stem_stride=$(sed -n 's/^ *stride: \([0-9]*\)$/\1/p' "$model" | head -n 1)
  ref_args=(--genotype "$genotype" --channels "$channels" --layers "$layers" --stem-stride "$stem_stride")
fi
ours=$(./target/release/archai bench train --model "$model" "${common[@]}" --json 2>/dev/null)
theirs=$("$py" scripts/bench/darts_eval_ref.py "${common[@]}" "${ref_args[@]}" 2>/dev/null | tail -n 1)
theirs_cl=$("$py" scripts/bench/darts_eval_ref.py "${common[@]}" "${ref_args[@]}" --channels-last 2>/dev/null | tail -n 1)
"$py" - "$ours" "$theirs" "$theirs_cl" <<'PY'
import json, sys
ours, ref, ref_cl = (json.loads(a) for a in sys.argv[1:4])
if ours["params"] != ref["params"]:
    sys.exit(f"not the same network: archai has {ours['params']} weights, PyTorch {ref['params']}")
print(json.dumps({"model": ours.get("model"), "genotype": ref["genotype"], "batch": ours["batch"], "threads": ours["threads"], "precision": ref["precision"],
                  "params_archai": ours["params"], "params_pytorch": ref["params"],
                  "archai_samples_per_s": ours["samples_per_s"],
                  "pytorch_samples_per_s": ref["samples_per_s"],
                  "pytorch_channels_last_samples_per_s": ref_cl["samples_per_s"],
                  "speedup_archai_over_pytorch": ours["samples_per_s"] / ref["samples_per_s"],
                  "speedup_archai_over_pytorch_channels_last": ours["samples_per_s"] / ref_cl["samples_per_s"]}))
PY
