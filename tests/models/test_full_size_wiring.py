"""Every full-size preset's wiring end to end on CPU: full widths, full vocabulary and the real token ids, with the
LLM and the vision tower cut to one layer each (prefill, a few decode steps, and the `latency` and `run` paths)."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from PIL import Image

from stf_bench.cli import main
from stf_bench.models import presets
from stf_bench.models.loading import load_model
from stf_bench.models.tokenizer import IMAGE_TOKEN, build_tiny_tokenizer

FULL = [p.name for p in presets.list_presets() if not p.tiny]


@pytest.fixture
def one_layer(monkeypatch):
    """Full-size presets with one LLM layer and one vision layer (MBTF then fuses the one block there is)."""
    presets.cut_full_size(1, 1, setitem=monkeypatch.setitem)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    gc.collect()  # one full-width model at a time (up to ~5 GB in float32)


def test_stand_in_tokenizer_puts_image_at_the_given_id():
    tok = build_tiny_tokenizer(32000)
    ids = tok("USER: <image>\nhi")["input_ids"]
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == 32000 and ids.count(32000) == 1
    assert tok.decode(ids, skip_special_tokens=False).endswith("USER: <image>\nhi")
    assert build_tiny_tokenizer().convert_tokens_to_ids(IMAGE_TOKEN) == 260  # the tiny presets' unchanged


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_preset_prefills_and_decodes(name, one_layer):
    model, processor = load_model(name, random_weights=True, dtype="float32")
    config = model.config
    assert config.text_config.vocab_size == presets.LLMS[presets.PRESETS[name].llm]["vocab_size"]
    assert processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == config.image_token_index
    inputs = processor(images=[Image.new("RGB", (320, 200), (200, 30, 30))], text=["USER: <image>\nWhat? ASSISTANT:"])
    assert int((inputs["input_ids"] == config.image_token_index).sum()) == config.num_visual_tokens
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.slow
def test_latency_and_run_paths_of_a_full_size_preset(one_layer, tmp_path, capsys):
    """The two commands of Table 9 / docs/BENCHMARKS.md, on stf-7b cut to one layer each (shared by every preset)."""
    name = "stf-7b"
    capsys.readouterr()
    assert main(["latency", "--model", name, "--random-weights", "--device", "cpu", "--dtype", "float32",
                 "--batch-size", "1", "--warmup", "0", "--iters", "1", "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert name in report["models"]
    gc.collect()
    assert main(["run", "--model", name, "--model-args", "random_weights=true", "--dtype", "float32",
                 "--tasks", "pope", "--limit", "1", "--no-store", "--no-progress", "--format", "json",
                 "--output-dir", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)
