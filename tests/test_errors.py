"""Ordinary mistakes get exit 2, one clear line on stderr, and nothing result-like written (issue items 6-10)."""

from __future__ import annotations

import pytest
import torch

from stf_bench import devices
from stf_bench.cli import main
from stf_bench.errors import StfBenchError


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("stf-bench ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- item 6: devices and memory

@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:1"])
def test_every_cuda_index_spelling_is_accepted_syntax(name):
    assert devices.check_device_name(name) == name


@pytest.mark.parametrize("command", ["run", "latency"])
@pytest.mark.parametrize("device, message", [("tpu", "cpu or cuda[:N]"), ("cuda", "sees no CUDA GPU"),
                                             ("cuda:0", "sees no CUDA GPU")])
def test_bad_or_absent_device_is_refused_before_work(command, device, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out_dir = tmp_path / "results"
    extra = ["--output-dir", str(out_dir)] if command == "run" else ["--iters", "1", "--warmup", "0"]
    code, out, err = _cli(capsys, command, "--model", "stf-tiny", "--device", device, "--no-store", *extra)
    assert code == 2 and out == ""
    assert message in _one_error_line(err)
    assert not out_dir.exists()


def test_cuda_index_beyond_the_visible_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(StfBenchError, match="sees 2 GPU"):
        devices.resolve_device("cuda:2")


def test_latency_checks_memory_before_loading(capsys, monkeypatch):
    from stf_bench.profile import latency

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although it cannot fit")

    monkeypatch.setattr(devices, "available_memory", lambda device: 1000)
    monkeypatch.setattr(latency, "load_model", never)
    code, out, err = _cli(capsys, "latency", "--model", "stf-tiny", "--device", "cpu", "--iters", "1",
                          "--warmup", "0", "--no-store")
    assert code == 2 and out == "" and "for its weights" in _one_error_line(err)
