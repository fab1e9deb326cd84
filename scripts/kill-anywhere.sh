#!/usr/bin/env bash
# Kill -9 anywhere (#15): runs a toy DARTS search + eval once uninterrupted, then N times killed
# with SIGKILL at a random moment (seeded) and resumed with --resume until it finishes, and
# compares each with the uninterrupted run bit for bit (`archai reproduce --against`: final
# weights' SHA-256, architecture, every logged metric). Prints a Markdown table.
# Usage: scripts/kill-anywhere.sh [N=20] [SEED=1]
set -euo pipefail
umask 022
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
n="${1:-20}" seed="${2:-1}"
bin=./target/release/archai
conf=confs/algos/darts.yaml
sets=(--toy --set nas.search.trainer.epochs=2 --set nas.eval.trainer.epochs=2 --set nas.eval.trainer.max_batches=20)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s%N)
$bin run "$conf" "${sets[@]}" --out "$tmp/whole" >/dev/null 2>&1
total_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "uninterrupted run: $((total_ms / 1000)).$(( (total_ms % 1000) / 100 )) s; kills drawn uniformly in it (seed $seed)"
echo
echo "| # | killed at | what was under way (last log line) | resumes | result |"
echo "|---|---|---|---|---|"
RANDOM=$seed
identical=0
for i in $(seq 1 "$n"); do
  at_ms=$(( (RANDOM * 32768 + RANDOM) % total_ms ))
  out="$tmp/cut$i"
  $bin run "$conf" "${sets[@]}" --out "$out" >/dev/null 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((at_ms / 1000)) $((at_ms % 1000)))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  stage="(the run had finished)"
  if [ -f "$out/log.txt" ]; then
    stage=$(grep -v '^\s*$' "$out/log.txt" | tail -n 1 | sed -E 's/^.*(INFO|WARN|ERROR) +//; s/\|/\//g' | cut -c1-70)
  elif [ ! -d "$out" ]; then
    stage="before the run directory existed"
  fi
  resumes=0
  # Killed before its record existed, a run starts afresh; otherwise it resumes.
  until { if [ -f "$out/config_used.yaml" ]; then $bin run "$conf" "${sets[@]}" --out "$out" --resume; \
          else rm -rf "$out"; $bin run "$conf" "${sets[@]}" --out "$out"; fi; } >/dev/null 2>&1; do
    resumes=$((resumes + 1))
    [ "$resumes" -lt 3 ] || break
  done
  resumes=$((resumes + 1))
  if verdict=$($bin reproduce "$tmp/whole" --against "$out" 2>&1); then
    result="identical"
    identical=$((identical + 1))
  else
    result=$(echo "$verdict" | tail -n 1 | cut -c1-80)
  fi
  echo "| $i | $((at_ms / 1000)).$(( (at_ms % 1000) / 100 )) s | $stage | $resumes | $result |"
done
echo
echo "$identical of $n killed runs ended identical to the uninterrupted one"
