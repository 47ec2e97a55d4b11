"""scripts/gpu_bench.sh: its dry run on the CPU (the whole GPU run's wiring on full-size presets cut to a few layers),
the steps' time limits (a step that runs out of time loses nothing earlier), and what a GPU call can carry."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_bench.py"


# Distributions a library imports only when they happen to be installed: here, not on the GPU image. transformers
# (5.25, transformers/integrations/hub_kernels.py) imports `kernels` under `is_kernels_available()`, and the lock
# holds kernels because transformers 5.25 declares it; the GPU image's transformers 5.17 runs without it. accelerate
# and transformers import DeepSpeed (and with it hjson and pydantic) when it is installed (`is_deepspeed_available`):
# the test install holds it for `stf-bench train --deepspeed`; the GPU image does not, and the benchmark runs without.
IMPORTED_ONLY_WHEN_INSTALLED = {"kernels", "deepspeed", "hjson", "pydantic", "pydantic-core", "annotated-types",
                                "typing-inspection"}


def _names(lines: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines
            if line.strip() and not line.startswith("#")}


@pytest.mark.slow
def test_dry_run_runs_every_step_on_full_size_wiring_and_imports_only_what_the_gpu_machine_has(tmp_path):
    """The GPU command, on the CPU: every step ends, writes its JSON and Markdown, and each step's process imports
    only distributions that the GPU image holds or scripts/gpu_wheels.sh carries (calflops was missing)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", "scripts/gpu_bench.sh", "--dry-run", "--out", str(out), "--limit-scale", "6",
                           "--budget", "3000"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {"table9": "ok", "methods": "ok", "adapter": "ok", "precision": "ok", "train": "ok"}
    # what the GPU tool brings back: at most 8 plain files, no folders
    assert len(list(out.iterdir())) <= 8 and all(p.is_file() for p in out.iterdir())

    table9 = json.loads((out / "table9.json").read_text())
    assert table9["complete"] and set(table9["results"]) == {"batch_2", "batch_1"}
    for size, report in ((2, table9["results"]["batch_2"]), (1, table9["results"]["batch_1"])):
        assert report["batch_size"] == size and list(report["models"]) == ["llava-1.5-7b", "stf-7b"]
        llava, stf = report["models"].values()
        assert (llava["visual_tokens"], stf["visual_tokens"]) == (576, 144)  # the full-size projectors
        assert llava["attention"] == {"llm": "sdpa", "vision": "sdpa"} and report["dtype"] == "bfloat16"
        assert set(llava["ttft_per_sample_ms"]) == {"mean", "median", "p90"} and llava["achieved_tflops_per_s"] > 0
        assert llava["memory"]["peak_bytes"] > 0 and report["ratios"]["paper_flops"] > 1
    methods = json.loads((out / "methods.json").read_text())
    (row,) = methods["results"]["rows"]
    assert row["label"] == "llava-1.5-7b + fastv(k=1, r=0.75)" and row["visual_tokens"] == "576 -> 144"
    adapter = json.loads((out / "adapter.json").read_text())["results"]
    assert adapter["model"] == "llava-1.5-7b" and adapter["requests"] == 1 and adapter["identical"] == 1
    precision = json.loads((out / "precision.json").read_text())["results"]["presets"]
    assert precision[0]["loaded_as"] == {"float32": "float32", "bfloat16": "bfloat16"}
    assert precision[0]["requests"] == sum(t["requests"] for t in precision[0]["per_task"].values())
    train = json.loads((out / "train.json").read_text())
    assert train["complete"] and train["results"]["mode"] == "bf16" and train["results"]["stage"] == "finetune"
    runs = train["results"]["models"]
    assert list(runs) == ["llava-1.5-7b", "stf-7b"]
    assert [(r["visual_tokens"], r["steps_timed"], r["weights_dtype"]) for r in runs.values()] == [
        (576, 1, "bfloat16"), (144, 1, "bfloat16")]
    assert runs["stf-7b"]["trainable_parameters"] > 2 * 32000 * 4096  # full widths and vocabulary, LLM trained

    text = (out / "gpu_bench.md").read_text()
    for heading in ("Table 9: llava-1.5-7b vs stf-7b, batch 2", "Table 9: llava-1.5-7b vs stf-7b, batch 1",
                    "llava-1.5-7b + fastv(k=1, r=0.75)", "stf_bench adapter vs lmms-eval llava_hf",
                    "bfloat16 vs float32 greedy answers", "One training step, llava-1.5-7b vs stf-7b (finetune)",
                    "s / step (median of 1)"):
        assert heading in text, heading
    image = _names((ROOT / "benchmarks" / "gpu_image_packages.txt").read_text().splitlines())
    listed = subprocess.run(["bash", "scripts/gpu_wheels.sh", "--list"], cwd=ROOT, capture_output=True, text=True)
    carried = _names(listed.stdout.splitlines())
    for step in ("table9", "methods", "adapter", "precision", "train"):
        imported = set(json.loads((out / f"{step}.json").read_text())["environment"]["distributions"])
        assert {"torch", "transformers"} <= imported
        assert not imported - image - carried - {"stf-bench"} - IMPORTED_ONLY_WHEN_INSTALLED, (
            f"{step} imports what the GPU machine lacks")


def test_a_step_out_of_time_is_killed_alone_and_earlier_output_is_kept(tmp_path, monkeypatch, capsys, load_benchmark):
    """Three stand-in steps: the first ends, the second hangs past its limit after writing part of its output, the
    third still runs. The first's output and the second's part survive; the run exits 1."""
    gpu_bench = load_benchmark("gpu_bench")
    quick, hang, after = (dataclasses.replace(s, limit_s=limit) for s, limit in zip(gpu_bench.STEPS[:3], (30, 3, 30)))
    monkeypatch.setattr(gpu_bench, "STEPS", (quick, hang, after))

    def command(step, out, dry_run):
        sleep = 600 if step is hang else 0
        body = {"complete": step is not hang, "markdown": f"figures of {step.name}", "results": {"n": 1}}
        return [sys.executable, "-c", f"import json, pathlib, time; pathlib.Path({str(out)!r}, "
                f"{step.name + '.json'!r}).write_text(json.dumps({body!r})); print('started', flush=True); "
                f"time.sleep({sleep})"]

    monkeypatch.setattr(gpu_bench, "step_command", command)
    out = tmp_path / "out"
    assert gpu_bench.main(["--out", str(out)]) == 1
    steps = {s["name"]: s for s in json.loads((out / "summary.json").read_text())["steps"]}
    assert steps[quick.name]["status"] == "ok" and steps[after.name]["status"] == "ok"
    assert steps[hang.name]["status"] == "timed out after 3 s (killed)" and steps[hang.name]["seconds"] < 60
    text = (out / "gpu_bench.md").read_text()
    assert f"figures of {quick.name}" in text and f"figures of {after.name}" in text
    assert f"figures of {hang.name}" in text and "(partial: what finished before it stopped)" in text
    assert "timed out" in capsys.readouterr().out


def test_a_spent_budget_starts_no_step_and_an_unknown_step_is_refused(tmp_path, capsys, load_benchmark):
    gpu_bench = load_benchmark("gpu_bench")
    assert gpu_bench.main(["--out", str(tmp_path), "--budget", "5", "--steps", "table9,train"]) == 0
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert steps[0]["status"] == "skipped" and steps[0]["reason"].startswith("not started: ")
    assert gpu_bench.main(["--out", str(tmp_path), "--steps", "table9,tabel9"]) == 2
    assert "unknown step tabel9; valid: table9, methods" in capsys.readouterr().err


def _sized(folder: Path, sizes: dict[str, int]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for name, size in sizes.items():
        path = folder / name
        with path.open("wb") as f:
            f.truncate(size)  # sparse: the size counts, no disk is spent
        paths.append(path)
    return paths


def test_carried_wheels_and_tree_are_checked_against_the_64_mib_of_one_call(tmp_path, load_benchmark):
    """On a fixture list (the real wheels need the network): the sum, the limit, and two versions of one package."""
    carry_report = load_benchmark("gpu_bench").carry_report
    mib = 2**20
    tree = _sized(tmp_path / "tree", {"a.py": 2 * mib})
    wheels = _sized(tmp_path / "w", {"lmms_eval-0.7.3-py3-none-any.whl": 40 * mib,
                                     "transformers-5.24.0-py3-none-any.whl": 20 * mib})
    fits, line = carry_report(wheels, tree)
    assert fits and line.startswith("2 wheels 60.0 MiB + working tree (1 files) 2.0 MiB = 62.0 MiB of the 64 MiB")
    wheels += _sized(tmp_path / "w", {"calflops-0.3.2-py3-none-any.whl": 3 * mib})
    fits, line = carry_report(wheels, tree)
    assert not fits and line.endswith("over by 1.0 MiB; carry fewer wheels")
    twice = wheels[:1] + _sized(tmp_path / "w", {"transformers-5.23.0-py3-none-any.whl": mib})
    fits, line = carry_report(twice + wheels[1:2], tree)
    assert not fits and "more than one wheel of transformers" in line


def test_check_carry_reads_the_wheel_folder_and_the_real_tree(tmp_path, load_benchmark):
    """`--check-carry` as scripts/gpu_wheels.sh calls it: the working tree is counted from git, exit 2 when over."""
    gpu_bench = load_benchmark("gpu_bench")
    tree = gpu_bench.tree_files(ROOT)
    assert SCRIPT in tree and not any(".venv" in p.parts or ".whl" in p.parts for p in tree)
    _sized(tmp_path, {"torch-2.11.0-cp312-cp312-linux_x86_64.whl": 70 * 2**20})
    done = subprocess.run([sys.executable, str(SCRIPT), "--check-carry", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "carry fewer wheels" in done.stderr
