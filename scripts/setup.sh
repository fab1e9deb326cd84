#!/usr/bin/env bash
# Idempotent set-up: libtorch (PyTorch 2.11.0 wheel in a venv outside the clone), Debian packages,
# and a release build of the workspace with every plugin gathered in target/plugins/.
# A second run takes seconds.
set -euo pipefail
# Files the build and the tests create are not writable by group or others: archai refuses
# plugins that are (loading one runs its code).
umask 022
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

TORCH_VERSION=2.11.0
ARCHAI_TORCH_HOME="${ARCHAI_TORCH_HOME:-$HOME/.cache/archai-rs/torch-$TORCH_VERSION}"
log() { printf '[setup] %s\n' "$*" >&2; }

command -v cargo >/dev/null || {
  log "no cargo on PATH: install the stable Rust toolchain (https://rustup.rs), then run this again"
  exit 1
}

# --- Debian packages -------------------------------------------------------------------------
# dataset-fashion-mnist: the default real dataset; libgloo-dev: gloo headers for the c10d shim;
# libgoogle-perftools-dev: tcmalloc, linked into the archai binary (host/build.rs);
# python3-venv: the torch venv; g++: the C++ shims (c10d, CUDA loading); chromium: headless
# screenshots of the HTML reports in the tests; fonts-dejavu-core: the text of the PNG plots.
apt_pkgs=(dataset-fashion-mnist libgloo-dev libgoogle-perftools-dev python3-venv g++ chromium fonts-dejavu-core)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- PyTorch 2.11.0 wheel (libtorch for tch 0.24) --------------------------------------------
py="$ARCHAI_TORCH_HOME/bin/python"
stamp="$ARCHAI_TORCH_HOME/.archai-torch-ok"
if [ ! -f "$stamp" ]; then
  log "installing torch==$TORCH_VERSION into $ARCHAI_TORCH_HOME (about a minute, ~4.7 GB)"
  mkdir -p "$(dirname "$ARCHAI_TORCH_HOME")"
  [ -x "$py" ] || python3 -m venv "$ARCHAI_TORCH_HOME"
  "$py" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  "$py" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
  touch "$stamp"
fi
LIBTORCH="$("$py" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)"
if [ -z "$LIBTORCH" ] || [ ! -d "$LIBTORCH/lib" ]; then
  LIBTORCH="$(ls -d "$ARCHAI_TORCH_HOME"/lib/python3*/site-packages/torch | head -n1)"
fi
[ -f "$LIBTORCH/lib/libtorch_cpu.so" ] || { log "libtorch not found under $LIBTORCH"; exit 1; }

# torch-sys rebuilds its C++ wrapper whenever LIBTORCH changes or is missing, so pin it in the
# repo's cargo config: plain `cargo build` / `cargo test` then work after set-up.
mkdir -p .cargo
cfg=".cargo/config.toml"
# OMP_WAIT_POLICY reaches every process cargo runs (tests and the archai runs they start): tests
# run in parallel, and libgomp's default busy-waiting threads of two processes on 2 cores made a
# pair of toy runs take 117 s instead of 20 s.
want="[env]
LIBTORCH = \"$LIBTORCH\"
ARCHAI_TORCH_PYTHON = \"$py\"
OMP_WAIT_POLICY = \"PASSIVE\"
"
if [ ! -f "$cfg" ] || [ "$(cat "$cfg")" != "$(printf '%s' "$want")" ]; then
  printf '%s' "$want" >"$cfg"
  log "wrote $cfg (LIBTORCH=$LIBTORCH)"
fi
export LIBTORCH ARCHAI_TORCH_PYTHON="$py"

# --- Release build of the workspace ----------------------------------------------------------
log "cargo build --release --workspace"
cargo build --release --workspace --quiet
scripts/gather-plugins.sh
log "ready: target/release/archai, plugins in target/plugins/"
