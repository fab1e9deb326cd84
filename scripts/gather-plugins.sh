#!/usr/bin/env bash
# Copies every plugin library of the workspace's release build into target/plugins/ and, beside
# the plugin crates' sources, into plugins/ (git ignores *.so there), so that both
# `archai --plugin-dir ./plugins run` and the default plugin directory find them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
mkdir -p target/plugins
rm -f target/plugins/*.so plugins/*.so
for manifest in plugins/*/Cargo.toml; do
  grep -q 'cdylib' "$manifest" || continue
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
  lib="target/release/lib${name//-/_}.so"
  [ -f "$lib" ] || { echo "gather-plugins: $lib missing; build with cargo build --release --workspace" >&2; exit 1; }
  cp "$lib" target/plugins/
  cp "$lib" plugins/
done
# archai refuses plugin files and directories that group or others can write (loading a plugin
# runs its code); a checkout made under a permissive umask would otherwise be refused.
chmod go-w target/plugins plugins target/plugins/*.so plugins/*.so
