#!/usr/bin/env bash
# Sets up (when needed) and runs the main job: a toy DARTS search + eval on Fashion-MNIST.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh
./target/release/archai plugins
./target/release/archai run confs/algos/darts.yaml --toy "$@"
