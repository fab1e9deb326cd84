#!/usr/bin/env bash
# Seconds and peak memory per search step of several algorithms, one after the other in one run
# (synthetic 32x32x3 data, each algorithm's confs/algos/NAME.yaml network: 8 cells, C = 16), as a
# Markdown table with each algorithm's time relative to the first one.
# Usage: scripts/bench-search.sh [BATCH] [THREADS] [STEPS] [ALGORITHMS...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
batch="${1:-32}" threads="${2:-2}" steps="${3:-5}"
shift $(( $# < 3 ? $# : 3 ))
algos=("$@")
[ ${#algos[@]} -gt 0 ] || algos=(darts gdas pc-darts snas)
py="${ARCHAI_TORCH_PYTHON:-python3}"
# Steady-state steps: PC-DARTS takes no architecture step in its warm-up epochs, so it is measured
# as after them.
declare -A extra=([pc-darts]="nas.search.algorithm.config.warmup_epochs=0")
rows=()
for a in "${algos[@]}"; do
  sets=()
  [ -n "${extra[$a]:-}" ] && sets=(--set "${extra[$a]}")
  rows+=("$(./target/release/archai bench search-step --algorithm "$a" "${sets[@]}" --batch "$batch" \
    --threads "$threads" --steps "$steps" --warmup 2 --json 2>/dev/null)")
done
"$py" - "${rows[@]}" <<'PY'
import json, sys
rows = [json.loads(r) for r in sys.argv[1:]]
base = rows[0]
print(f"| algorithm | s/step | vs {base['algorithm']} | arch s | weight s | candidate forwards/step | peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['algorithm']} | {r['sec_per_step']:.2f} | {r['sec_per_step'] / base['sec_per_step']:.2f}x | "
          f"{r['arch_sec']:.2f} | {r['weight_sec']:.2f} | {r['candidate_forwards_per_step']:.0f} / {r['mixed_edges']} edges | "
          f"{r['peak_rss_mb']:.0f} |")
print(f"\nbatch {base['batch']}, {base['threads']} threads, median of {base['steps']} steps after {base['warmup']} warm-up")
PY
