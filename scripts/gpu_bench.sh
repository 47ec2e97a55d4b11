#!/usr/bin/env bash
# The full-size figures of docs/BENCHMARKS.md in one command on a lent GPU machine (python3 with torch, no package
# index): installs the wheels that scripts/gpu_wheels.sh put in .whl/ (carried with the working tree), then runs
# benchmarks/gpu_bench.py, which writes its JSON and Markdown under $OUT step by step. Arguments go to gpu_bench.py.
#   bash scripts/gpu_bench.sh                 # on the GPU machine: `run` with carry [".whl"], timeout_s 600
#   bash scripts/gpu_bench.sh --dry-run       # here, on the CPU: the same steps on full-size presets cut to a few
#                                             # layers (no wheels installed; PYTHON=.venv/bin/python)
# docs/BENCHMARKS.md ("On a lent GPU") has the exact call and what comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
case " $* " in
  *" --dry-run "*) ;;  # the CPU environment already has everything
  *)
    ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_bench.sh: no wheels in .whl/: run 'bash scripts/gpu_wheels.sh' where pip works, then carry .whl" >&2; exit 2; }
    SITE="${GPU_BENCH_SITE:-/tmp/site}"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    nvidia-smi -L || true
    ;;
esac
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_bench.py "$@"
