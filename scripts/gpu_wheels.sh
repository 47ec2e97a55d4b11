#!/usr/bin/env bash
# Wheels for a GPU machine that has torch (cp312) but no package index: what stf-bench's benchmarks import beyond
# that machine's image (benchmarks/gpu_image_packages.txt): lmms-eval and its runtime needs, calflops (FLOPs of
# every latency report), decord for lmms-eval's llava_hf, and the transformers/hub/tokenizers versions of
# requirements.lock; downloaded into .whl/ (git-ignored), 23 wheels, 42.8 MiB (2026-12-05). At the end it checks
# that the wheels and the working tree fit in the 64 MiB one GPU call carries (benchmarks/gpu_bench.py --check-carry).
# `bash scripts/gpu_wheels.sh --list` prints the name==version list without downloading.
# On the GPU machine, scripts/gpu_bench.sh installs them (pip --no-index --target /tmp/site) before the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
# Names only: every version comes from requirements.lock (one source of truth); decord, which only the `bench`
# extra needs, from pyproject.toml.
PACKAGES=(
  lmms-eval transformers huggingface-hub tokenizers calflops datasets evaluate loguru dill multiprocess numexpr zstandard
  chardet httpcore2 httpx2 platformdirs python-dotenv pytz sniffio tenacity truststore wcwidth
)
pin() {  # name==version of package $1 in requirements.lock
  grep -iE "^$1==" requirements.lock || { echo "gpu_wheels.sh: $1 is not in requirements.lock" >&2; exit 2; }
}
WHEELS=()
for name in "${PACKAGES[@]}"; do WHEELS+=("$(pin "$name")"); done
WHEELS+=("$(grep -oE 'decord==[0-9.]+' pyproject.toml | head -1)")
if [ "${1:-}" = --list ]; then printf '%s\n' "${WHEELS[@]}"; exit 0; fi  # what would be fetched
mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any \
    -d .whl "$wheel" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
done
python3 benchmarks/gpu_bench.py --check-carry .whl
