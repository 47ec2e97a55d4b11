"""`stf-bench lmms-tasks`: the README's lmms-eval example runs offline on the tiny preset and the project's tasks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stf_bench.run import lmms_tasks
from stf_bench.run.task_specs import TASKS_DIR

ROOT = Path(__file__).resolve().parents[2]


def readme_lmms_commands() -> list[list[str]]:
    """The README's two lines: write the task files, then run lmms-eval on them."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    export = next(line for line in lines if line.startswith(".venv/bin/stf-bench lmms-tasks "))
    run = next(line for line in lines if line.startswith(".venv/bin/python -m lmms_eval "))
    return [shlex.split(export), shlex.split(run)]


def _local(argv: list[str]) -> list[str]:
    """The README's `.venv/bin/...` spelled with this interpreter."""
    if argv[0] == ".venv/bin/stf-bench":
        return [sys.executable, "-m", "stf_bench.cli", *argv[1:]]
    return [sys.executable, *argv[1:]]


@pytest.mark.slow
def test_the_readme_lmms_eval_example_runs_offline(tmp_path):
    export, run = readme_lmms_commands()
    assert "--include_path" in run and "--limit" in run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for argv in (export, run):
        proc = subprocess.run(_local(argv), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = run[run.index("--tasks") + 1].split(",")
    out = Path(tmp_path / run[run.index("--output_path") + 1])
    results = json.loads(next(out.rglob("*_results.json")).read_text())  # lmms-eval exits 0 even on failure
    assert sorted(results["results"]) == sorted(tasks)
    limit = int(run[run.index("--limit") + 1])
    assert all(results["n-samples"][t]["effective"] == limit for t in tasks)


def test_task_files_include_the_project_s_and_read_local_parquet(tmp_path):
    written = lmms_tasks.write_task_files(tmp_path, ["pope", "gqa", "mmbench_cn_dev"])
    assert [p.name for p in written] == ["stf_pope.yaml", "stf_gqa.yaml", "stf_mmbench_cn_dev.yaml"]
    pope = yaml.safe_load((tmp_path / "stf_pope.yaml").read_text())
    assert pope["include"] == str(TASKS_DIR / "stf_pope.yaml") and pope["dataset_path"] == "parquet"
    assert all(Path(f).is_file() for f in pope["dataset_kwargs"]["data_files"]["test"])
    assert "!function stf_bench_data.gqa_process_docs" in (tmp_path / "stf_gqa.yaml").read_text()
    hooks = (tmp_path / "stf_bench_data.py").read_text()
    compile(hooks, "stf_bench_data.py", "exec")
    assert "\ngqa_process_docs = " in hooks and "\nmmbench_cn_dev_process_docs = " in hooks


def test_a_relative_data_dir_is_written_as_an_absolute_path(tmp_path, monkeypatch):
    """lmms-eval copies the task's data files into its results; `stf-bench score` must find them from any folder."""
    from stf_bench.data.samples import ensure_samples

    monkeypatch.chdir(ensure_samples().parent)
    lmms_tasks.write_task_files(tmp_path, ["pope"], data_dir=ensure_samples().name)
    (file,) = yaml.safe_load((tmp_path / "stf_pope.yaml").read_text())["dataset_kwargs"]["data_files"]["test"]
    assert Path(file).is_absolute() and Path(file).is_file()
