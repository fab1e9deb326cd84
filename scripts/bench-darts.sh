#!/usr/bin/env bash
# Times one DARTS search step in archai and in the PyTorch reference (scripts/bench/darts_ref.py,
# or $DARTS_REF) with the same libtorch 2.11, threads and batch, one after the other, and prints
# the ratios of time and peak memory. Usage: scripts/bench-darts.sh [ORDER] [BATCH] [THREADS] [STEPS]
# RECOMPUTE_CELLS=true measures archai with nas.search.trainer.recompute_cells (the reference
# keeps every activation, as DARTS' code does), RECOMPUTE_OPS=true with
# nas.search.trainer.recompute_ops. UNROLL=weight_step measures archai's order 2 with
# `unroll: weight_step` (four passes; the reference keeps DARTS' virtual step), and with it
# DIFFERENCE=one_sided the one-sided finite difference (three passes). REF_MALLOC=tcmalloc runs the reference with
# gperftools' tcmalloc preloaded (the allocator linked into archai) instead of glibc's malloc.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
order="${1:-1}" batch="${2:-32}" threads="${3:-2}" steps="${4:-5}"
ref="${DARTS_REF:-$repo/scripts/bench/darts_ref.py}"
py="${ARCHAI_TORCH_PYTHON:-${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-2.11.0}/bin/python}"
[ -f "$ref" ] || { echo "reference script not found: $ref (set DARTS_REF)" >&2; exit 1; }
recompute="${RECOMPUTE_CELLS:-false}" recompute_ops="${RECOMPUTE_OPS:-false}" unroll="${UNROLL:-virtual}" difference="${DIFFERENCE:-central}"
ref_malloc="${REF_MALLOC:-glibc}"
ref_env=()
case "$ref_malloc" in
  glibc) ;;
  tcmalloc)
    lib="$(compgen -G '/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4' | head -n1 || true)"
    [ -n "$lib" ] || { echo "REF_MALLOC=tcmalloc: libtcmalloc_minimal.so.4 not found (Debian: libtcmalloc-minimal4)" >&2; exit 1; }
    ref_env=("LD_PRELOAD=$lib${LD_PRELOAD:+:$LD_PRELOAD}") ;;
  *) echo "REF_MALLOC must be glibc or tcmalloc, got $ref_malloc" >&2; exit 1 ;;
esac
ours=$(./target/release/archai bench search-step --algorithm darts --set "nas.search.algorithm.config.order=$order" \
  --set "nas.search.algorithm.config.unroll=$unroll" --set "nas.search.algorithm.config.difference=$difference" \
  --set "nas.search.trainer.recompute_cells=$recompute" --set "nas.search.trainer.recompute_ops=$recompute_ops" \
  --batch "$batch" --threads "$threads" --steps "$steps" --json 2>/dev/null)
theirs=$(env "${ref_env[@]}" "$py" "$ref" --order "$order" --batch "$batch" --threads "$threads" --steps "$steps" 2>/dev/null | tail -n 1)
"$py" - "$ours" "$theirs" "$ref_malloc" <<'PY'
import json, sys
ours, ref = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = ref.get("sec_per_step_median")
# oneDNN picks its kernels by instruction set, so timings from CPUs with and without AVX-512 or
# AMX do not compare: say which one ran.
cpuinfo = open("/proc/cpuinfo").read().split("\n\n")[0]
field = lambda k: next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith(k)), "")
flags = field("flags").split()
isa = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
print(json.dumps({"cpu": field("model name"), "isa": isa[0] if isa else "none",
                  "order": ours["config"]["order"], "archai_unroll": ours["config"].get("unroll"), "archai_difference": ours["config"].get("difference"), "batch": ours["batch"], "threads": ours["threads"],
                  "archai_recompute_cells": ours["recompute_cells"], "archai_recompute_ops": ours["recompute_ops"],
                  "archai_sec_per_step": ours["sec_per_step"], "archai_arch_s": ours["arch_sec"], "archai_weight_s": ours["weight_sec"],
                  "archai_peak_rss_mb": ours["peak_rss_mb"], "archai_allocator": ours.get("allocator"),
                  "pytorch_malloc": sys.argv[3],
                  "pytorch_sec_per_step": r, "pytorch_peak_rss_mib": ref.get("peak_rss_mib"),
                  "ratio_archai_over_pytorch": ours["sec_per_step"] / r,
                  "peak_memory_ratio": ours["peak_rss_mb"] / ref["peak_rss_mib"] if ref.get("peak_rss_mib") else None}))
PY
