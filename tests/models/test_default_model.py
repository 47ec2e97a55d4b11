"""Shipped preset weights (`Preset.shipped`, stf_bench/models/default_model.py): loaded strictly into the preset's
build, a missing file or a shape that model arguments changed refused with the fix."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from stf_bench.errors import StfBenchError
from stf_bench.models import default_model, load_model, presets


@pytest.fixture
def shipped_preset(tmp_path, monkeypatch):
    """A tiny preset whose shipped weights are stf-tiny's with seed 5, in a temporary DEFAULT_DIR."""
    source, _ = load_model("stf-tiny", seed=5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    monkeypatch.setattr(default_model, "DEFAULT_DIR", tmp_path)
    monkeypatch.setitem(presets.PRESETS, "shipped-tiny",
                        dataclasses.replace(presets.PRESETS["stf-tiny"], name="shipped-tiny", shipped="w.safetensors"))
    return source


def test_a_shipped_preset_loads_its_weights_not_the_seeded_ones(shipped_preset):
    model, _ = load_model("shipped-tiny")
    seeded, _ = load_model("stf-tiny")
    want, got, other = shipped_preset.state_dict(), model.state_dict(), seeded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not all(torch.equal(other[k], got[k]) for k in other)
    assert all(p.is_meta for p in load_model("shipped-tiny", device="meta")[0].parameters())  # nothing read on meta


def test_shipped_weights_that_do_not_fit_or_are_missing_are_named(shipped_preset, tmp_path):
    with pytest.raises(StfBenchError, match=r"does not fit the model asked for: .* is \(512, 128\) there"):
        load_model("shipped-tiny", k=4, e=8)
    (tmp_path / "w.safetensors").unlink()
    with pytest.raises(StfBenchError, match="make_default_model.py"):
        load_model("shipped-tiny")


@pytest.mark.slow
def test_make_default_model_is_deterministic(tmp_path):
    """Two short runs of scripts/make_default_model.py (one step a stage) write the same weights on CPU."""
    import hashlib
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_default_model.py"
    digests = []
    for n in range(2):
        work = tmp_path / f"w{n}"
        proc = subprocess.run([sys.executable, str(script), "--work-dir", str(work), "--no-install", "--max-steps", "1"],
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        digests.append(hashlib.sha256((work / "finetune" / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
