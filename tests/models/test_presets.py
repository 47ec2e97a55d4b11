"""Preset registry, `stf-bench models`, overrides, and every full-size preset on the meta device."""

import json

import pytest
import torch

from stf_bench import load_model
from stf_bench.args import parse_model_args
from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.models.presets import PRESETS

FULL = [name for name, p in PRESETS.items() if not p.tiny]


def test_every_preset_has_a_tiny_twin_with_the_same_architecture():
    required = {"llava-1.5-7b", "llava-1.5-13b", "stf-7b", "stf-13b", "mbtf-7b", "stf-only-7b", "avgpool-7b",
                "tokenconcat-7b", "qformer-7b", "llava-llama3.1-8b", "stf-llama3.1-8b"}
    assert required <= set(FULL)
    tiny = {p.note.removeprefix("tiny twin of "): p for p in PRESETS.values() if p.tiny and not p.shipped}
    assert set(FULL) == set(tiny)
    for name in FULL:
        assert tiny[name].projector == PRESETS[name].projector
    assert {"stf-tiny", "llava-tiny", "avgpool-tiny"} <= set(PRESETS)


@pytest.mark.parametrize("name", FULL)
def test_full_size_presets_build_on_meta(name):
    model, processor = load_model(name, random_weights=True, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert processor.num_visual_tokens == model.num_visual_tokens
    pixels = torch.empty(1, 3, 336, 336, device="meta")
    assert model.visual_tokens(pixels).shape == (1, model.num_visual_tokens, model.config.text_config.hidden_size)


def test_models_json_reports_the_published_parameter_counts(capsys):
    assert main(["models", "--format", "json", "--no-tiny"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mbtf-7b"]["projector_params"] - rows["llava-1.5-7b"]["projector_params"] == 37_753_856  # MBTF
    assert rows["stf-only-7b"]["projector_params"] == 134_238_208  # STF
    assert rows["stf-7b"]["projector_params"] == 37_753_856 + 134_238_208  # MBTF + STF
    assert rows["llava-1.5-7b"]["projector_params"] == 20_979_712
    assert rows["stf-7b"]["visual_tokens"] == 144 and rows["llava-1.5-7b"]["visual_tokens"] == 576
    assert rows["stf-7b"]["weights"] == "visresearch/LLaVA-STF/full-parameter-finetune"


def test_models_table_lists_tiny_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "stf-tiny" in out and "134,238,208" in out


def test_model_args_parse_and_apply():
    assert parse_model_args("k=4,e=8,mbtf_blocks=16,attn_implementation=eager") == {
        "k": 4, "e": 8, "mbtf_blocks": 16, "attn_implementation": "eager"}
    model, processor = load_model("stf-tiny", **parse_model_args("k=4,e=8,mbtf_blocks=16"))
    assert model.num_visual_tokens == 288 == processor.num_visual_tokens
    assert len(model.config.feature_layers) == 16
    with pytest.raises(StfBenchError, match="key=value"):
        parse_model_args("k4")
    with pytest.raises(StfBenchError, match="k=5 does not divide"):
        load_model("stf-tiny", k=5)
    with pytest.raises(StfBenchError, match="unknown model argument 'kk'"):
        load_model("stf-tiny", kk=2)


def test_cli_reports_bad_input_with_exit_2(capsys):
    assert main(["models", "--model-args", "e=3"]) == 2
    assert "e=3 does not divide" in capsys.readouterr().err


def test_tiny_weights_are_deterministic_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = load_model("stf-tiny")
    after = torch.rand(1)
    b, _ = load_model("stf-tiny")
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_argument_of_another_projector_is_refused_with_the_valid_ones():
    """`--model llava-tiny --model-args k=3` was accepted, changed nothing, and was stored as another model."""
    with pytest.raises(StfBenchError, match=r"'k' does not apply to llava-tiny: its projector mlp2x_gelu .*stf"):
        load_model("llava-tiny", k=3)
    with pytest.raises(StfBenchError, match=r"'qformer_queries' does not apply to stf-tiny.*k: int"):
        load_model("stf-tiny", qformer_queries=16)
    model, _ = load_model("llava-tiny", projector="stf", k=3)  # the projector named too: k is its argument
    assert model.num_visual_tokens == 64


@pytest.mark.parametrize("name", list(PRESETS))
def test_models_listing_counts_equal_the_model_built_on_meta(name):
    """`stf-bench models` counts from the declarations (12 s to build every preset before): the same numbers."""
    from stf_bench.models.presets import get_preset
    from stf_bench.models.summary import describe

    overrides = {"k": 4, "e": 8} if get_preset(name).projector in ("stf", "mbtf+stf") else {}
    facts = describe(name, **overrides)
    model, _ = load_model(name, random_weights=True, device="meta", **overrides)
    assert facts["visual_tokens"] == model.num_visual_tokens
    assert facts["projector_params"] == model.projector_params()
    assert facts["llm_params"] == sum(p.numel() for p in model.model.language_model.parameters())
    assert facts["projector_args"] == dict(model.config.projector_method.args)


def test_models_listing_imports_no_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from stf_bench.cli import main; rc = main(['models', '--format', 'json']); "
            "print(rc, [m for m in ('torch', 'transformers') if m in sys.modules], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr
    assert json.loads(proc.stdout)[0]["name"] == "llava-1.5-7b"


def test_cut_full_size_keeps_widths_and_cuts_only_the_full_size_layers(monkeypatch):
    """The one-layer cut shared by the GPU benchmark's dry run and tests/models/test_full_size_wiring.py."""
    from stf_bench.models import presets

    tiny_before = {name: presets.preset_config(name).to_dict() for name, p in PRESETS.items() if p.tiny}
    width = presets.preset_config("stf-13b").text_config.hidden_size
    presets.cut_full_size(1, 2, setitem=monkeypatch.setitem)
    for name, preset in PRESETS.items():
        config = presets.preset_config(name)
        if preset.tiny:
            assert config.to_dict() == tiny_before[name]
            continue
        assert config.text_config.num_hidden_layers == 1 and config.vision_config.num_hidden_layers == 2, name
        if "mbtf" in preset.projector:
            assert preset.settings["mbtf_blocks"] == 1
    assert presets.preset_config("stf-13b").text_config.hidden_size == width
    monkeypatch.undo()
    assert presets.preset_config("stf-7b").text_config.num_hidden_layers == 32
