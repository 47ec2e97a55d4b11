"""FLOPs: the paper convention reproduces the published TFLOPs cells; calflops agrees with FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from calflops import pytorch_ops
from torch.utils.flop_counter import FlopCounterMode

from stf_bench import load_model
from stf_bench.profile.flops import count_flops, count_paper, count_prefill, counting_twin, paper_report
from stf_bench.profile.flops_tables import flops_table, preset_for

# calflops 0.3.2 on Vicuna-7B, eager attention, no lm_head (docs/facts.md section 4, measured independently)
DESIGN_TFLOPS = {576: 7.635, 288: 3.774, 144: 1.876, 72: 0.935, 36: 0.467}


def meta_model(name: str, **overrides):
    return load_model(name, random_weights=True, device="meta", **overrides)[0]


@pytest.mark.parametrize("name,tokens", [("llava-1.5-7b", 576), ("mbtf-7b", 576), ("stf-7b", 144),
                                         ("stf-only-7b", 144), ("avgpool-7b", 144), ("tokenconcat-7b", 144),
                                         ("qformer-7b", 144)])
def test_paper_convention_of_7b_presets(name: str, tokens: int) -> None:
    report = paper_report(meta_model(name), name)
    assert report.visual_tokens == tokens
    assert report.tflops == pytest.approx(DESIGN_TFLOPS[tokens], abs=5e-4)


@pytest.mark.parametrize("table", ["2", "3", "5", "6"])
def test_paper_tables_round_to_published_cells(table: str) -> None:
    _, rows = flops_table(table)
    built = [r for r in rows if r.report is not None]
    assert len(built) >= 3
    for row in built:  # a training-free method's row is built at a setting we chose: it need not agree
        if "method" not in row.overrides:
            assert round(row.report.tflops, 1) == row.published, row.method
    if table == "5":  # every (k, E) of the grid is built with its own setting
        assert {r.method: r.report.visual_tokens for r in rows} == {
            "k=1, E=1": 576, "k=2, E=1": 144, "k=2, E=2": 288, "k=4, E=4": 144, "k=4, E=8": 288,
            "k=8, E=4": 36, "k=8, E=8": 72, "k=8, E=16": 144, "k=8, E=32": 288}


def test_preset_for_match_attributes() -> None:
    assert preset_for({"projector": "mbtf+stf", "k": 4, "e": 8, "mbtf_blocks": 8, "llm": "vicuna-1.5-7b"}) == (
        "stf-7b", {"k": 4, "e": 8})
    assert preset_for({"projector": "mlp2x_gelu", "llm": "vicuna-1.5-13b"}) == ("llava-1.5-13b", {})
    assert preset_for({}) is None


def test_other_backbones_get_their_own_figure() -> None:
    llama = paper_report(meta_model("stf-llama3.1-8b"), "stf-llama3.1-8b").tflops
    vicuna13 = paper_report(meta_model("stf-13b"), "stf-13b").tflops
    assert llama != pytest.approx(DESIGN_TFLOPS[144], abs=0.05)
    assert vicuna13 > DESIGN_TFLOPS[144] * 1.5


def test_paper_flops_grow_with_tokens_and_match_a_closed_form_on_tiny() -> None:
    cfg = meta_model("llava-tiny").config.text_config
    flops = count_paper(meta_model("llava-tiny"))["llm"]
    n, h, f, layers = 576, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    matmuls = layers * (2 * n * h * 4 * h + 2 * n * h * 3 * f + 2 * 2 * n * n * h)
    assert matmuls < flops < matmuls * 1.1  # plus norms, activations, softmax and residual adds


def _zero(*args, **kwargs):
    return 0, 0


MATMUL_KINDS = ("_linear_flops_compute", "_matmul_flops_compute", "_addmm_flops_compute", "_einsum_flops_compute",
                "_tensor_addmm_flops_compute", "_conv_flops_compute", "_conv_trans_flops_compute")


@pytest.mark.parametrize("name", ["stf-tiny", "qformer-tiny", "llava-llama3.1-tiny", "stf-7b"])
def test_calflops_and_flop_counter_agree_on_matmuls(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for attr in dir(pytorch_ops):
        if attr.endswith("_flops_compute") and attr not in MATMUL_KINDS:
            monkeypatch.setattr(pytorch_ops, attr, _zero)  # keep matrix products only: what FlopCounterMode counts
    model, processor = load_model(name, random_weights=True, device="meta")
    ids = processor.text_inputs(["USER: <image>\nWhat is it? ASSISTANT:"])["input_ids"]
    ours = sum(count_prefill(model, ids).values())
    twin = counting_twin(model)
    size = twin.config.vision_config.image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        twin(input_ids=ids.to("meta"), pixel_values=torch.empty(1, 3, size, size, device="meta"),
             attention_mask=torch.ones_like(ids, device="meta"), use_cache=False, logits_to_keep=1)
    assert ours == counter.get_total_flops()


def test_sdpa_is_counted_although_calflops_misses_it() -> None:
    attn = torch.nn.MultiheadAttention(64, 4, batch_first=True, device="meta")
    q = torch.empty(2, 10, 64, device="meta")
    kv = torch.empty(2, 30, 64, device="meta")
    flops = count_flops(attn, lambda: attn(q, kv, kv, need_weights=False), {"attn": attn})["attn"]
    projections = 2 * 2 * 64 * 64 * (10 + 30 + 30 + 10)
    assert flops == projections + 2 * 2 * 10 * 30 * (64 + 64)


def test_patches_are_undone_when_the_forward_raises() -> None:
    linear, matmul, sdpa = torch.nn.functional.linear, torch.matmul, torch.nn.functional.scaled_dot_product_attention
    layer = torch.nn.Linear(4, 4)

    def boom() -> None:
        layer(torch.ones(1, 4))
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        count_flops(layer, boom, {"layer": layer})
    assert torch.nn.functional.linear is linear and torch.matmul is matmul
    assert torch.nn.functional.scaled_dot_product_attention is sdpa
    assert not hasattr(layer, "__flops__") and not layer._forward_hooks
    assert count_flops(layer, lambda: layer(torch.ones(3, 4)), {"layer": layer})["layer"] == 2 * 3 * 4 * 4


def test_prefill_components_and_total() -> None:
    model, processor = load_model("stf-7b", random_weights=True, device="meta")
    ids = processor.text_inputs(["USER: <image>\nWhat color is the bus? ASSISTANT:"])["input_ids"]
    flops = count_prefill(model, ids)
    assert list(flops) == ["vision_tower", "mbtf", "stf", "llm", "lm_head"]
    assert flops["lm_head"] == 2 * 4096 * 32000  # one position only: the first generated token
    gelu = 1  # calflops counts one FLOP per GELU input element
    assert flops["mbtf"] == 2 * 576 * (8 * 1024 * 4096 + 4096 * 1024) + gelu * 576 * 4096
    assert flops["stf"] == 2 * 144 * (4096 * 16384 + 16384 * 4096) + gelu * 144 * 16384
    assert flops["llm"] > count_paper(model)["llm"]  # visual + text tokens
    llava, llava_processor = load_model("llava-1.5-7b", random_weights=True, device="meta")
    llava_ids = llava_processor.text_inputs(["USER: <image>\nWhat? ASSISTANT:"])["input_ids"]
    baseline = count_prefill(llava, llava_ids)
    assert list(baseline) == ["vision_tower", "projector", "llm", "lm_head"]
    assert baseline["projector"] == 2 * 576 * (1024 * 4096 + 4096 * 4096) + gelu * 576 * 4096
