#!/usr/bin/env bash
# Sets up (when needed) and runs the whole test suite in release mode (reusing set-up's build).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh
cargo test --release --workspace "$@"
