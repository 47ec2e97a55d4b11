#!/usr/bin/env bash
# Wheels for a GPU machine that has torch (cp312) but no package index: what stf-bench's benchmarks import beyond
# that machine's image (lmms-eval 0.7.3 and its runtime needs, decord for lmms-eval's llava_hf, and the
# transformers/hub/tokenizers versions pinned here), downloaded into .whl/ (git-ignored), about 43 MB.
# On the GPU machine, before the benchmark:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
WHEELS=(
  lmms_eval==0.7.3 transformers==5.23.0 huggingface_hub==2.4.0 tokenizers==0.23.3 datasets==5.2.0 evaluate==0.4.6
  decord==0.6.0 loguru==0.7.3 dill==0.4.1 multiprocess==0.70.19 numexpr==2.14.2 zstandard==0.25.0 chardet==6.0.0.post1
  httpcore2==2.16.2 httpx2==2.16.2 platformdirs==4.14.7 python-dotenv==1.2.4 pytz==2026.6 sniffio==1.3.1
  tenacity==9.2.1 truststore==0.10.5 wcwidth==0.9.4
)
mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any \
    -d .whl "$wheel" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
done
du -sh .whl
