#!/usr/bin/env bash
# Regenerate requirements.lock, the known-good set that scripts/install.sh installs by default:
#   bash scripts/lock.sh                                  # keep today's pins, add/remove what pyproject changed
#   bash scripts/lock.sh --upgrade                        # move every pin to the newest the registry serves
#   bash scripts/lock.sh --upgrade-package transformers   # move one
# The resolver is uv (pinned below), run on scripts/lock.in (stf-bench[test] + lmms-eval) with
# scripts/lock-overrides.txt (lmms-eval's dependencies left out on purpose). torch is resolved as the local CPU
# wheel (its own dependencies get locked without CUDA packages) and left out of the lock: install.sh pins it alone.
# Never edit requirements.lock by hand; after a change, run the suite on the new lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
uv_version=0.13.9
wheels="${STF_BENCH_WHEELS:-/opt/wheels}"  # where the CPU torch wheel of install.sh lies
tools=".tools/uv-$uv_version"
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools" && "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
fi
ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1 || {
  echo "lock.sh: no CPU torch wheel in $wheels (set STF_BENCH_WHEELS): without it torch's CUDA dependencies would be locked" >&2
  exit 2
}
"$tools/bin/uv" pip compile scripts/lock.in --override scripts/lock-overrides.txt --find-links "$wheels" \
  --no-emit-package torch --no-emit-package stf-bench --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "bash scripts/lock.sh" --quiet -o requirements.lock "$@"
echo "requirements.lock regenerated ($(grep -c '==' requirements.lock) pins)"
