#!/usr/bin/env bash
# Fuzzes the parsers of what users hand archai (IDX, NPY, CIFAR, image folders, YAML configs,
# --set flags, ModelDesc files) for a while and prints one line of figures per target:
#
#   scripts/fuzz.sh                      # every target, 600 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh npy  # one target, one minute
#   scripts/fuzz.sh --seed 7 config set  # another random sequence
#
# Failing inputs land in target/fuzz-findings/ (with what went wrong beside them); the test suite
# runs the same targets for a few thousand cases each (tests/fuzz/bounded.rs).
set -euo pipefail
umask 022
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo build --release --quiet -p archai-tests --bin fuzz
exec target/release/fuzz --seconds "${FUZZ_SECONDS:-600}" "$@"
