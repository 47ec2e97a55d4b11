#!/usr/bin/env bash
# Install stf-bench into ./.venv (or $STF_BENCH_VENV): by default exactly the versions of requirements.lock.
#
# Usage: bash scripts/install.sh [EXTRA]   (EXTRA: test, bench, dev; default none)
#   STF_BENCH_LATEST=1  ignore the lock: the newest versions the registry serves within pyproject's ranges
#   STF_BENCH_TORCH=V   the torch to pin (default 2.13.0: the local CPU wheel here; on a GPU machine, its own torch)
#
# Why a script and not a plain `pip install -e .`: lmms-eval declares torchvision (and timm, which needs it).
# The registry's torchvision is a CUDA build; beside a CPU torch it breaks `import torchvision`, and with it
# `from transformers import LlavaForConditionalGeneration`. lmms-eval itself runs without torchvision, so it is
# installed with --no-deps and what it really needs is declared in our pyproject.toml (and locked). The packages
# left out on purpose are listed in scripts/lock-overrides.txt; `pip check` must report nothing but those.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STF_BENCH_VENV:-.venv}"
extra="${1:-}"
py="${PYTHON:-python3}"
uv_version=0.13.9  # the installer (and the lock's resolver, scripts/lock.sh)
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts)
[ -d /opt/wheels ] && pip+=(--find-links /opt/wheels)
# 1. torch first, pinned, with pip: a CPU wheel where one is provided locally (uv does not look there).
"${pip[@]}" "torch==${STF_BENCH_TORCH:-2.13.0}" "uv==$uv_version"
uv=("$venv/bin/uv" pip install --quiet --python "$venv/bin/python")
target=.
[ -n "$extra" ] && target=".[$extra]"
if [ "${STF_BENCH_LATEST:-0}" = 1 ]; then
  # 2a. newest within pyproject's ranges (torch stays as installed), lmms-eval newest without its dependencies.
  torch_pin="$venv/torch-pin.txt"  # --upgrade must not replace the pinned torch (a newer one is a CUDA build)
  "$venv/bin/python" -c 'import torch; print(f"torch=={torch.__version__}")' > "$torch_pin"
  "${uv[@]}" --upgrade -c "$torch_pin" -e "$target"
  "${uv[@]}" --upgrade --no-deps lmms-eval
else
  # 2b. the lock, exactly (it holds every dependency, transitive ones included), then stf-bench itself and any
  # extra beyond the lock's test tools, constrained by the lock.
  "${uv[@]}" --no-deps -r requirements.lock
  "${uv[@]}" -c requirements.lock -e "$target"
fi
# 3. `pip check`: nothing may conflict but the dependencies of lmms-eval left out on purpose.
omitted=$(sed -e 's/#.*//' -e 's/[ ;=<>].*//' scripts/lock-overrides.txt | grep -v '^torch$' | grep . | tr '_A-Z' '-a-z' | tr '\n' '|')
conflicts=$("$venv/bin/python" -m pip check 2>&1 | grep -v '^No broken requirements' \
  | grep -viE "^lmms-eval [^ ]+ requires (${omitted%|}), which is not installed" || true)
if [ -n "$conflicts" ]; then
  echo "install.sh: pip check found conflicts beyond the omissions of scripts/lock-overrides.txt:" >&2
  echo "$conflicts" >&2
  exit 1
fi
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
echo "stf-bench installed in $venv ($([ "${STF_BENCH_LATEST:-0}" = 1 ] && echo "newest versions" || echo "requirements.lock"))"
