#!/usr/bin/env bash
# Data-parallel benchmarks (#14): (1) a Gloo all-reduce of ELEMENTS floats over 2 ranks, archai's
# c10d shim vs Python torch.distributed on the same libtorch, one after the other; (2) resnet_small
# training throughput of `archai launch --nproc 2` (1 thread each) vs one process with 2 threads,
# same global batch, from each run's log.yaml (samples_per_s of the last epoch); (3) the same
# 2-rank training with the gradient sum overlapping the backward pass in small buckets
# (common.dist_bucket_mib = BUCKET_MIB, so that resnet_small's 0.3 MiB of gradients make several)
# vs summed after it (common.dist_overlap = false).
# Usage: scripts/bench-dist.sh [ELEMENTS] [BATCHES] [BUCKET_MIB]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
elements="${1:-1000000}" batches="${2:-60}" bucket="${3:-0.05}"
py="${ARCHAI_TORCH_PYTHON:-${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-2.11.0}/bin/python}"
bin=./target/release/archai
ours=$($bin launch --nproc 2 --threads 1 -- bench allreduce --elements "$elements" 2>/dev/null | sed -n 's/^\[rank 0\] //p' | tail -n 1)
theirs=$(OMP_WAIT_POLICY=PASSIVE "$py" scripts/bench/allreduce_ref.py --elements "$elements" 2>/dev/null | tail -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sets=(--toy --set nas.eval.trainer.epochs=2 --set nas.eval.trainer.batch_size=96
      --set "nas.eval.trainer.max_batches=$batches" --set nas.eval.trainer.max_eval_batches=1)
$bin launch --nproc 2 --threads 1 -- train confs/models/resnet_small.yaml "${sets[@]}" --out "$tmp/dp" >/dev/null 2>&1
# libgomp's default wait policy for the 2-thread process: PASSIVE (what the test suite sets) makes
# its threads sleep between parallel regions and cost it a third of its speed.
env -u OMP_WAIT_POLICY $bin train confs/models/resnet_small.yaml "${sets[@]}" --set common.threads=2 --out "$tmp/one" >/dev/null 2>&1
$bin launch --nproc 2 --threads 1 -- train confs/models/resnet_small.yaml "${sets[@]}" \
  --set "common.dist_bucket_mib=$bucket" --out "$tmp/during" >/dev/null 2>&1
$bin launch --nproc 2 --threads 1 -- train confs/models/resnet_small.yaml "${sets[@]}" \
  --set "common.dist_bucket_mib=$bucket" --set common.dist_overlap=false --out "$tmp/after" >/dev/null 2>&1
"$py" - "$ours" "$theirs" "$tmp/dp/log.yaml" "$tmp/one/log.yaml" "$tmp/during/log.yaml" "$tmp/after/log.yaml" "$bucket" <<'PY'
import json, re, sys
ours, ref = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def last_rate(path):
    rates = re.findall(r"samples_per_s: ([0-9.e+-]+)", open(path).read())
    return float(rates[-1])
dp, one = last_rate(sys.argv[3]), last_rate(sys.argv[4])
during, after = last_rate(sys.argv[5]), last_rate(sys.argv[6])
print(json.dumps({"allreduce_elements": ours["elements"], "archai_median_ms": ours["median_ms"],
                  "pytorch_median_ms": ref["median_ms"], "ratio_pytorch_time_over_archai": ref["median_ms"] / ours["median_ms"],
                  "launch_2x1_samples_per_s": dp, "one_process_2_threads_samples_per_s": one,
                  "launch_over_one_process": dp / one, "bucket_mib": float(sys.argv[7]),
                  "overlapped_samples_per_s": during, "summed_after_samples_per_s": after,
                  "overlapped_over_after": during / after}))
PY
