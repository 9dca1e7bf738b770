#!/usr/bin/env bash
# Install what building and testing Tertulia needs on Debian/Ubuntu, skipping what is present.
# Usage: scripts/install-deps.sh [PACKAGE...]   (extra apt packages on top of the base set;
#        pip:SPEC installs a Python package with pip instead, e.g. pip:spake2==0.9)
set -euo pipefail

pip_specs=()
apt_extra=()
for arg in "$@"; do
  case "$arg" in
    pip:*) pip_specs+=("${arg#pip:}") ;;
    *) apt_extra+=("$arg") ;;
  esac
done
set -- ${apt_extra[@]+"${apt_extra[@]}"}

# Build tools, the system libraries the Tauri desktop app links against (WebKitGTK 4.1), and
# a colour emoji font so emoji draw as emoji, not boxes (the .deb depends on it too).
base_packages=(build-essential pkg-config ca-certificates file
  libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev librsvg2-dev libssl-dev
  fonts-noto-color-emoji)
packages=("${base_packages[@]}" "$@")

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to install: $*" >&2; exit 1; fi
}

if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing system packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "note: not a Debian/Ubuntu system; make sure these are installed: ${packages[*]}" >&2
fi

# Python packages the tests use (the independent SPAKE2 implementation for the interop test).
for spec in ${pip_specs[@]+"${pip_specs[@]}"}; do
  name=${spec%%[=<>]*}
  if ! python3 -c "import $name" 2>/dev/null; then
    echo "==> installing Python package: $spec"
    python3 -m pip install --quiet "$spec" 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages "$spec"
  fi
done

# The Rust toolchain: the highest rust-version among the crates in Cargo.lock (tauri 2.12 and
# its crates, the app itself; tauri-driver 2.1, which make test installs, asks the same).
min_minor=90
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "==> no Rust toolchain found; trying the distribution's rustup"
  if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup 2>/dev/null; then
    rustup default stable
  else
    echo "error: install Rust 1.$min_minor or newer (https://rustup.rs), then run this again" >&2
    exit 1
  fi
fi
version=$(rustc --version | awk '{print $2}')
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt "$min_minor" ]; }; then
  echo "error: Rust $version is too old; Tertulia needs 1.$min_minor or newer (rustup update)" >&2
  exit 1
fi
