"""The adapter throughput benchmark's own argument checks (the benchmark itself runs outside the suite)."""

import argparse
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "adapter_throughput.py"


def test_counts_must_be_positive(load_benchmark):
    positive = load_benchmark("adapter_throughput").positive
    assert positive("3") == 3
    for bad in ("0", "-2"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a positive integer"):
            positive(bad)


def _pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` in a script or pyproject (names normalised as pip does)."""
    import re

    return {re.sub(r"[-_.]+", "-", name).lower(): version
            for name, version in re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][A-Za-z0-9.+]*)", text)}


def test_gpu_wheels_take_every_version_from_the_lock():
    """scripts/gpu_wheels.sh names packages only: each must be in requirements.lock, and the script pins nothing
    itself, so the GPU run tests the locked setup."""
    import subprocess

    root = SCRIPT.parents[1]
    script = (root / "scripts" / "gpu_wheels.sh").read_text()
    assert not _pins(script), f"gpu_wheels.sh pins versions of its own: {_pins(script)}"
    names = script.split("PACKAGES=(")[1].split(")")[0].split()
    lock = _pins((root / "requirements.lock").read_text())
    assert names and not [n for n in names if n not in lock], "gpu_wheels.sh names packages not in requirements.lock"
    listed = subprocess.run(["bash", "scripts/gpu_wheels.sh", "--list"], cwd=root, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "lmms-eval==" + lock["lmms-eval"] in listed.stdout.lower()
    assert "decord==" + _pins((root / "pyproject.toml").read_text())["decord"] in listed.stdout


def test_missing_decord_exits_with_the_install_command(monkeypatch, load_benchmark):
    """llava_hf imports decord at module level: without it the benchmark stops with the command that installs it,
    not a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "lmms_eval.models.simple.llava_hf", raising=False)
    with pytest.raises(SystemExit, match=r"pip install decord==0\.6\.0"):
        load_benchmark("adapter_throughput").llava_hf_class()


def test_generate_errors_are_recorded_and_still_raised(load_benchmark):
    """llava_hf catches a failing generate() and answers '' (a 7B export without the image token's embedding row did
    that): the benchmark records every such error, so that it stops instead of timing a failure."""
    import torch

    module = load_benchmark("adapter_throughput")

    class Failing(torch.nn.Module):
        def generate(self, ids):
            if ids < 0:
                raise IndexError("index out of range in self")
            return ids

    model = Failing()
    errors = module.record_errors(model)
    assert model.generate(3) == 3 and errors == []
    with pytest.raises(IndexError):
        model.generate(-1)
    assert [str(e) for e in errors] == ["index out of range in self"]


def test_the_image_token_gets_a_zero_embedding_row_and_no_argmax_changes(load_benchmark):
    """Full-size presets put <image> at id 32000, outside the 32000-token vocabulary, which transformers' LlavaModel
    cannot embed; the export is padded to 32064 rows (as llava-hf's) with zero rows that change no argmax."""
    import torch

    from stf_bench.models import presets
    from stf_bench.models.loading import build_random

    module = load_benchmark("adapter_throughput")
    config = presets.preset_config("llava-tiny")
    vocab = config.image_token_id = config.text_config.vocab_size  # where the full-size presets put <image>
    model = build_random(config, device=torch.device("cpu"), dtype=torch.float32)
    hidden = torch.randn(1, 3, config.text_config.hidden_size)
    before = model.lm_head(hidden)
    module.pad_vocab_to_image_token(model)
    rows = -(-(vocab + 1) // 64) * 64
    assert model.get_input_embeddings().weight.shape[0] == rows == model.config.text_config.vocab_size > vocab
    assert model.get_input_embeddings().weight[config.image_token_id].abs().sum() == 0
    after = model.lm_head(hidden)
    torch.testing.assert_close(after[..., :vocab], before, rtol=0, atol=1e-6)  # a wider matmul may round apart
    assert not after[..., vocab:].any() and torch.equal(after.argmax(-1), before.argmax(-1))
