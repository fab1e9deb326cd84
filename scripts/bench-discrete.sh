#!/usr/bin/env bash
# Outer-loop search throughput, printed as numbers:
#  1. cheap objectives (params + macs) per architecture on the DARTS cell space (8 cells, C=16,
#     4 nodes): architectures per second over N random samples;
#  2. wall time of the toy evolution search with --jobs 1 and --jobs 2.
# Usage: scripts/bench-discrete.sh [N=300]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
n="${1:-300}"
bin=target/release/archai
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s.%N)
"$bin" search confs/search/random.yaml --out "$tmp/cheap" \
  --set 'search.objectives=[{name: params}, {name: macs}]' \
  --set 'search.space.config.macro={layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}' \
  --set "search.searcher.config={num_iters: 1, samples_per_iter: $n, seed: 1}" > "$tmp/cheap.log" 2>&1
t1=$(date +%s.%N)
evaluated=$(grep -c '^0,' "$tmp/cheap/search_state_0.csv")
awk -v n="$evaluated" -v a="$t0" -v b="$t1" 'BEGIN { printf "cheap objectives (params + macs), darts-cells 8 cells C=16: %d architectures in %.2f s = %.1f architectures/s (process start and plugin loading included)\n", n, b - a, n / (b - a) }'
for jobs in 1 2; do
  t0=$(date +%s.%N)
  "$bin" search confs/search/evolution_pareto.yaml --toy --jobs "$jobs" --out "$tmp/evo$jobs" > "$tmp/evo$jobs.log" 2>&1
  t1=$(date +%s.%N)
  awk -v j="$jobs" -v a="$t0" -v b="$t1" 'BEGIN { printf "toy evolution_pareto, --jobs %d: %.2f s\n", j, b - a }'
done
