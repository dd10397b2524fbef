#!/usr/bin/env bash
# Makes a Debian/Ubuntu machine ready to build and test yolo5: LibTorch (Debian's libtorch-dev when
# no other LibTorch is found), the build tools, the npm dependencies and the native build.
# Safe to run again: it installs only what is missing and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# Where the build would find a LibTorch (same order as CMakeLists.txt).
torch_found() {
  if [ -n "${LIBTORCH:-}" ] && [ -f "$LIBTORCH/share/cmake/Torch/TorchConfig.cmake" ]; then
    log "LibTorch from LIBTORCH=$LIBTORCH"; return 0
  fi
  if [ -n "${Torch_DIR:-}" ] && [ -f "$Torch_DIR/TorchConfig.cmake" ]; then
    log "LibTorch from Torch_DIR=$Torch_DIR"; return 0
  fi
  local py prefix
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      prefix=$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
      # Debian's python3-torch names a prefix that does not exist: check it.
      if [ -n "$prefix" ] && [ -f "$prefix/Torch/TorchConfig.cmake" ]; then
        log "LibTorch from the Python torch at $prefix"; return 0
      fi
    fi
  done
  local f
  for f in /usr/lib/*/cmake/Torch/TorchConfig.cmake /usr/share/cmake/Torch/TorchConfig.cmake \
           /usr/local/share/cmake/Torch/TorchConfig.cmake; do
    if [ -f "$f" ]; then log "LibTorch (system) at $(dirname "$f")"; return 0; fi
  done
  return 1
}

missing=()
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }

if command -v dpkg >/dev/null 2>&1; then
  torch_found || need_pkg libtorch-dev
  need_pkg cmake
  need_pkg g++
  need_pkg make
  need_pkg clang-format
  need_pkg libstb-dev
  # Distributed training: Debian's LibTorch links its libgloo.so.0 but the headers c10d's Gloo
  # process group includes come apart (a Python torch's LibTorch ships them itself).
  if dpkg -s libtorch-dev >/dev/null 2>&1 || [[ " ${missing[*]:-} " == *" libtorch-dev "* ]]; then
    need_pkg libgloo-dev
  fi
  # Debian's LibTorch calls BLAS through libblas.so.3: OpenBLAS instead of the reference BLAS is
  # ~30x faster matrix products (convolutions go through oneDNN either way).
  if dpkg -s libtorch-dev >/dev/null 2>&1 || [[ " ${missing[*]:-} " == *" libtorch-dev "* ]]; then
    need_pkg libopenblas0-pthread
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing with apt: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  torch_found || { log "no LibTorch found and no apt here: set LIBTORCH=/path/to/libtorch"; exit 1; }
fi

# onnxruntime-node (dev dependency) must not try to download GPU providers.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --ignore-scripts
else
  npm install --no-audit --no-fund --ignore-scripts
fi
log "building the native addon and the TypeScript"
npm run build
log "ready: $(node -e "const y=require('./dist');const r=y.runtimeInfo();console.log('yolo5 '+r.version+', LibTorch '+r.libtorch+', '+r.threads+' threads, CUDA '+(r.cuda.available?r.cuda.deviceCount+' device(s)':'no'))")"
