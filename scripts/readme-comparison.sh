#!/usr/bin/env bash
# Rewrites the README block `compare-fmnist-small-all` (between its BEGIN/END comments) with the
# tables of `archai report` (per experiment, against the baseline, per run) over the runs
# committed at HEAD in results/compare-fmnist-small-all (a comparison still running in this
# checkout adds runs that are not committed yet).
# tests/readme_claims.rs checks the block against the report of the committed runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dir=results/compare-fmnist-small-all
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive HEAD "$dir" | tar -x -C "$tmp"
(cd "$tmp" && "$repo/target/release/archai" report "$dir" --out "$tmp/report" >/dev/null)
python3 - "$tmp/report/report.md" README.md <<'PY'
import sys
report, readme = open(sys.argv[1]).read().split("\n"), sys.argv[2]

def table(title):
    i = report.index(title) + 1
    while not report[i].startswith("|"):
        i += 1
    j = i
    while j < len(report) and report[j].startswith("|"):
        j += 1
    return report[i:j]

block = table("## Test accuracy per experiment") + [""]
baseline = next((l for l in report if l.startswith("## Against the baseline")), None)
if baseline:
    block += table(baseline) + [""]
block += table("## Runs")
text = open(readme).read()
begin, end = "<!-- BEGIN compare-fmnist-small-all -->", "<!-- END compare-fmnist-small-all -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(readme, "w").write(text[:i] + "\n" + "\n".join(block) + "\n" + text[j:])
PY
echo "README block compare-fmnist-small-all: $(git diff --numstat README.md | awk '{print $1" lines in, "$2" out"}')"
