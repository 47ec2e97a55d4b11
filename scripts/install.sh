#!/usr/bin/env bash
# Install stf-bench into ./.venv (or $STF_BENCH_VENV) without breaking transformers' LLaVA import.
#
# Why a script and not a plain `pip install -e .`: lmms-eval declares torchvision (and timm, which needs it).
# The registry's torchvision is a CUDA build; beside a CPU torch it breaks `import torchvision`, and with it
# `from transformers import LlavaForConditionalGeneration`. lmms-eval itself runs without torchvision, so we
# install lmms-eval with --no-deps and declare the dependencies it really needs in our own pyproject.toml.
#
# Usage: bash scripts/install.sh [EXTRA]   (EXTRA: test, bench, dev; default none)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STF_BENCH_VENV:-.venv}"
extra="${1:-}"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts)
# (--no-warn-conflicts: pip would list every lmms-eval requirement we leave out on purpose, torchvision first)
[ -d /opt/wheels ] && pip+=(--find-links /opt/wheels)
# 1. torch first, pinned: a CPU wheel where one is provided locally; otherwise the registry's build.
"${pip[@]}" "torch==${STF_BENCH_TORCH:-2.13.0}"
# 2. lmms-eval without its declared dependencies (see above).
"${pip[@]}" --no-deps "lmms-eval==0.7.3"
# 3. stf-bench itself, editable, with the dependencies lmms-eval needs at run time.
if [ -n "$extra" ]; then "${pip[@]}" -e ".[$extra]"; else "${pip[@]}" -e .; fi
# 4. refuse an environment with a broken torchvision: it would break transformers' LLaVA import.
"$venv/bin/python" - <<'PY'
import importlib.util, sys
if importlib.util.find_spec("torchvision") is not None:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a CUDA torchvision beside a CPU torch
        sys.exit(f"install.sh: torchvision is installed but broken ({exc}); run "
                 f"'{sys.executable} -m pip uninstall -y torchvision' and rerun this script")
from transformers import LlavaForConditionalGeneration  # noqa: F401
import lmms_eval.evaluator  # noqa: F401
PY
echo "stf-bench installed in $venv"
