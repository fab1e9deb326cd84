#!/usr/bin/env bash
# Sets up (when needed) and runs the whole test suite in release mode (reusing set-up's build).
set -euo pipefail
# Files the build and the tests create are not writable by group or others: archai refuses
# plugins that are (loading one runs its code).
umask 022
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh
cargo test --release --workspace "$@"
