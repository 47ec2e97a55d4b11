"""What a built wheel carries: every package folder, the task files and the published numbers."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    block = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M)
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "stf_bench").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_the_installed_lmms_eval_entry_point_is_pyproject_s_and_loads():
    """The entry point is written into the install's metadata: after a move of its module an install made before
    it points lmms-eval at a module that is gone (lmms-eval only logs a warning, then `--model stf_bench` is
    unknown). Named here, with the fix."""
    from importlib.metadata import entry_points

    declared = re.search(r'^\[project\.entry-points\."lmms_eval\.models"\]\nstf_bench = "([\w.:]+)"',
                         (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    installed = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "stf_bench"]
    assert [ep.value for ep in installed] == [declared], (
        f"the metadata in {installed[0].dist.locate_file('') if installed else 'the install'} is stale: re-run "
        f"`bash scripts/install.sh test`, and delete a stf_bench.egg-info an earlier build left in the checkout (Python "
        f"started there reads it first)")
    assert [m.model_id for m in installed[0].load()()] == ["stf_bench"]


def test_the_wheel_ships_tasks_and_baselines_and_runs_from_outside_the_checkout(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("stf_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("stf_bench/accuracy/pope.py", "stf_bench/tasks/stf_llava/stf_pope.yaml",
                    "stf_bench/tasks/stf_llava/_stf_llava_template_yaml", "stf_bench/baselines/tables.yaml",
                    "stf_bench/baselines/published.csv"):
        assert shipped in names, f"{shipped} is not in the wheel"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import stf_bench.run.task_specs as t, stf_bench.published as p, sys; "
            "print(t.TASKS_DIR); print(p.baselines_dir()); p.load_published(); "
            "sys.exit(0 if str(t.TASKS_DIR).startswith(sys.argv[1]) else 1)")
    run = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert str(site / "stf_bench" / "baselines") in run.stdout


def _lock() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def test_the_lock_is_generated_and_holds_no_torch_and_no_cuda_packages():
    text = (ROOT / "requirements.lock").read_text()
    assert "bash scripts/lock.sh" in text.splitlines()[1], "requirements.lock must say how it was generated"
    lock = _lock()
    assert "torch" not in lock and "stf-bench" not in lock
    assert not [n for n in lock if n.startswith(("nvidia-", "triton"))], "the lock resolved a CUDA torch"
    omitted = re.findall(r"^([\w.\-]+) ; sys_platform == \"never\"", (ROOT / "scripts/lock-overrides.txt").read_text(),
                         re.M)
    assert omitted and not [n for n in omitted if re.sub(r"[-_.]+", "-", n).lower() in lock]


def test_pyproject_lower_bounds_are_the_lock_s_versions():
    lock = _lock()
    project = (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("[project.scripts]")[0]
    bounds = re.findall(r'"([A-Za-z0-9_.\-]+)>=([0-9][^",]*)[,"]', project)  # an upper bound may follow
    wrong = [(n, v, lock.get(re.sub(r"[-_.]+", "-", n).lower())) for n, v in bounds
             if n != "torch" and lock.get(re.sub(r"[-_.]+", "-", n).lower()) != v]
    assert bounds and not wrong, f"lower bounds that are not the lock's versions (name, bound, lock): {wrong}"
