#!/usr/bin/env bash
# The CUDA path in one command (issue 15), on a Linux machine with an NVIDIA GPU and a Python torch
# (a CUDA build), with or without Node installed:
#   1. Node from PATH, else the binary brought along in tools/node.xz (see --pack);
#   2. builds the addon against that Python torch (torch.utils.cmake_prefix_path);
#   3. runs test/device.test.ts, then the rest of the suite, on the GPU (YOLO5_DEVICE=N: every
#      model the tests load without a device goes there);
#   4. benchmarks yolov5s at 640 px, batch 64, --freeze 0/10/24, fp32 and AMP (fp16 with loss
#      scaling), cuDNN benchmark mode on: images/s and max_memory_allocated per configuration;
#   5. writes everything into one JSON (default bench/gpu-check.json).
#
#   scripts/gpu-check.sh [--device N] [--fixtures DIR] [--out FILE] [--steps N]
#   scripts/gpu-check.sh --cpu-dry-run     # the same flow on the CPU at tiny sizes (CI runs it)
#   scripts/gpu-check.sh --pack            # on a machine with Node and the built tree: make
#                                          # tools/gpu-kit.tar (Node, runtime node_modules, the
#                                          # compiled tests and the fixtures) to carry to the GPU
#
# On the GPU machine: unpack the checkout, `tar -xf tools/gpu-kit.tar`, run this script. The GPU
# machine needs a C++17 compiler, CMake ≥ 3.18 and the CUDA toolkit (CMake's Torch package looks
# for nvcc); nothing is downloaded. The fixtures come from --fixtures DIR, else ../shared/fixtures/
# reference, else tools/fixtures (packed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
PACK=0
DEVICE=0
FIXTURES=""
OUT=""
STEPS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --pack) PACK=1 ;;
    --device) DEVICE="$2"; shift ;;
    --fixtures) FIXTURES="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --steps) STEPS="$2"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "gpu-check: $*"; }
die() { echo "gpu-check: $*" >&2; exit 1; }

# --- 1. Node ------------------------------------------------------------------------------------
if command -v node >/dev/null 2>&1; then
  NODE=$(command -v node)
elif [ -f tools/node.xz ]; then
  mkdir -p tools/bin
  [ -x tools/bin/node ] || { xz -dc tools/node.xz > tools/bin/node && chmod +x tools/bin/node; }
  NODE=$ROOT/tools/bin/node
  export PATH="$ROOT/tools/bin:$PATH"
  "$NODE" --version >/dev/null 2>&1 ||
    die "tools/bin/node does not run here (missing libraries? $(ldd "$NODE" 2>/dev/null | grep 'not found' | tr -s ' ' | tr '\n' ' '))"
else
  die "no node on PATH and no tools/node.xz (make it where Node is: scripts/gpu-check.sh --pack)"
fi
say "node $("$NODE" --version) at $NODE"

if [ "$PACK" = 1 ]; then
  [ -d dist-test/test ] || die "build the tests first (npm run build && npx tsc -p tsconfig.test.json)"
  mkdir -p tools
  xz -9 -T0 < "$NODE" > tools/node.xz
  # Runtime dependencies only (the tests run from dist-test/, compiled here).
  MODS=$(npm ls --omit=dev --all --parseable 2>/dev/null | grep '/node_modules/' | sed 's|.*/node_modules/|node_modules/|' | sort -u)
  SRC=$(readlink -f node_modules)
  rm -rf tools/fixtures && cp -r "$(readlink -f "${FIXTURES:-../shared/fixtures/reference}")" tools/fixtures
  tar -cf tools/gpu-kit.tar tools/node.xz tools/fixtures dist-test \
    --transform "s|^${SRC#/}|node_modules|" -C / $(for m in $MODS; do echo "${SRC#/}/${m#node_modules/}"; done)
  say "wrote tools/gpu-kit.tar ($(du -h tools/gpu-kit.tar | cut -f1)); on the GPU machine: tar -xf tools/gpu-kit.tar && scripts/gpu-check.sh"
  exit 0
fi
[ -d node_modules/cmake-js ] || die "node_modules is missing: npm ci, or unpack tools/gpu-kit.tar"

# --- 2. LibTorch --------------------------------------------------------------------------------
PY_TORCH="none"
if [ "$DRY" = 0 ]; then
  PREFIX=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') ||
    die "no Python torch (python3 -c 'import torch') on this machine"
  PY_TORCH=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())')
  say "Python torch $PY_TORCH at $PREFIX"
  export Torch_DIR="$PREFIX/Torch"
  # A pip torch ships its CUDA libraries beside it: let the loader find them for the tests too.
  TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # A build/ copied along remembers its LibTorch in the CMake cache: start it afresh for this one.
  if [ -f build/CMakeCache.txt ] && ! grep -qxF "Torch_DIR:PATH=$Torch_DIR" build/CMakeCache.txt; then
    say "build/ was configured for another LibTorch: building afresh"
    rm -rf build
  fi
fi

# --- 3. Build -----------------------------------------------------------------------------------
FIXTURES=${FIXTURES:-$( [ -d ../shared/fixtures/reference ] && echo ../shared/fixtures/reference || echo tools/fixtures )}
[ -d "$FIXTURES" ] || die "no fixtures at $FIXTURES (pass --fixtures DIR)"
export YOLO5_FIXTURES=$(readlink -f "$FIXTURES")
say "building the addon"
"$NODE" node_modules/cmake-js/bin/cmake-js compile > build.log 2>&1 || { tail -30 build.log; die "build failed (build.log)"; }
if [ -d node_modules/typescript ]; then
  "$NODE" node_modules/typescript/bin/tsc -p tsconfig.test.json
fi
[ -f dist-test/test/device.test.js ] || die "dist-test/ is missing: compile the tests where TypeScript is (or --pack)"

# --- 4. Tests -----------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  export YOLO5_DEVICE=cpu
  TESTS=(dist-test/test/device.test.js)
else
  export YOLO5_DEVICE=$DEVICE
  TESTS=(dist-test/test/device.test.js)
  for f in dist-test/test/*.test.js; do [ "$f" = dist-test/test/device.test.js ] || TESTS+=("$f"); done
fi
REPORT=$(mktemp -d)
FAILED=0
for f in "${TESTS[@]}"; do
  name=$(basename "$f" .test.js)
  if "$NODE" --test --test-concurrency=1 --test-reporter=tap "$f" > "$REPORT/$name.tap" 2>&1; then
    say "tests $name: ok"
  else
    FAILED=$((FAILED + 1))
    say "tests $name: FAILED (see the JSON)"
  fi
done

# --- 5. Benchmark -------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  BENCH=(--device cpu --cfg yolov5n --img 64 --batch 4 --steps "${STEPS:-2}" --amp 0,1 --workers 1)
  OUT=${OUT:-$REPORT/gpu-check.json}
else
  BENCH=(--device "$DEVICE" --cfg yolov5s --img 640 --batch 64 --steps "${STEPS:-20}" --amp 0,1
         --cudnn-benchmark 1 --workers "$(nproc)")
  OUT=${OUT:-bench/gpu-check.json}
fi
say "benchmark: ${BENCH[*]}"
"$NODE" dist-test/scripts/bench.js "${BENCH[@]}" --freezes 0,10,24 --repeat 1 --detect-runs 0 \
  --out "$REPORT/bench.json" > "$REPORT/bench.txt" 2>&1 || { cat "$REPORT/bench.txt"; die "benchmark failed"; }

# --- 6. One JSON --------------------------------------------------------------------------------
GPU=$( (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true) | head -1)
mkdir -p "$(dirname "$OUT")"
"$NODE" -e '
const fs = require("fs"), path = require("path");
const [dir, out, dry, gpu, torch, failed] = process.argv.slice(1);
const tests = {};
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".tap"))) {
  const tap = fs.readFileSync(path.join(dir, f), "utf8");
  const count = (k) => Number((new RegExp(`^# ${k} (\\d+)`, "m").exec(tap) || [0, 0])[1]);
  const failures = [...tap.matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1]);
  tests[f.replace(/\.tap$/, "")] = { pass: count("pass"), fail: count("fail"), skipped: count("skipped"), failures };
}
const addon = require(path.resolve("build/Release/yolo5.node"));
const result = {
  date: new Date().toISOString(), dryRun: dry === "1", gpu: gpu || null, pythonTorch: torch,
  libtorch: addon.libtorchVersion, cuda: addon.cudaInfo(), node: process.version,
  testFilesFailed: Number(failed), tests,
  bench: JSON.parse(fs.readFileSync(path.join(dir, "bench.json"), "utf8")),
};
fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
' "$REPORT" "$OUT" "$DRY" "$GPU" "$PY_TORCH" "$FAILED"
cat "$REPORT/bench.txt"
say "wrote $OUT ($FAILED test file(s) failed)"
[ "$FAILED" = 0 ]
