"""Two CPU processes (gloo, the env vars accelerate/torchrun set) give the single-process scores and predictions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stf_bench.cli import main
from stf_bench.models.default_model import DEFAULT_MODEL


def _argv(out: Path) -> list[str]:
    return ["run", "--output-dir", str(out), "--batch-size", "2", "--format", "json", "--no-store", "--no-progress",
            "--device", "cpu"]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, tiny_tasks, monkeypatch, capsys, cli_child, sample_predictions, free_port):
    import stf_bench.run

    reg = tiny_tasks(rows=5)  # odd: the ranks get 3 and 2 rows, lmms-eval pads the short one
    out2 = tmp_path / "two"
    port = free_port
    procs = []
    for rank in range(2):
        command, env = cli_child(reg.folder, _argv(out2), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                                 LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            outputs.append((proc.returncode, stdout.decode(), stderr.decode()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
    assert outputs[1][1].strip() == "", "only rank 0 reports"
    two = json.loads(outputs[0][1])
    assert sorted(p.name for p in (out2 / ".resume").glob("*/*.jsonl")) == ["answers.rank0.jsonl", "answers.rank1.jsonl"]
    saved = json.loads(next(out2.glob(f"{DEFAULT_MODEL}/*_results.json")).read_text())
    assert saved["stf_bench"]["world_size"] == 2 and saved["n-samples"]["stfb_tiny_a"]["effective"] == 5

    monkeypatch.setattr(stf_bench.run, "task_specs", reg, raising=False)
    capsys.readouterr()
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert main(_argv(tmp_path / "one")) == 0
    one = json.loads(capsys.readouterr().out)
    assert two == one
    assert sample_predictions(out2) == sample_predictions(tmp_path / "one")
    assert all(len(rows) == 5 for rows in sample_predictions(out2).values())


def test_the_process_group_is_torn_down_before_exit(tmp_path):
    """Left to interpreter exit, gloo's threads could abort a finished rank (SIGABRT after writing its results)."""
    import torch.distributed as dist

    from stf_bench.run.runner import end_distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()
    end_distributed()  # and a no-op without a group
