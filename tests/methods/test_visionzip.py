"""VisionZip against a loop re-statement of the reference's rules (dvlab-research/VisionZip
visionzip/clip_encoder.py @ 3151f6d): dominant = CLS + top (dominant - 1) patches by head-summed CLS attention, in
order; contextual = targets every M // c of the rest, the others merged into the most key-similar target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, VisionContext, get_method
from stf_bench.methods.visionzip import SETTINGS
from stf_bench.models import load_model
from stf_bench.profile.flops import count_flops, counting_twin

N = 576


def reference_visionzip(hidden: np.ndarray, attn: np.ndarray, keys: np.ndarray, dominant: int,
                        contextual: int) -> np.ndarray:
    """One image: hidden (1+N, C), attn (H, 1+N, 1+N), keys (H, 1+N, d) -> (dominant + contextual, C)."""
    scores = attn[:, 0, 1:].sum(axis=0)
    top = sorted(range(N), key=lambda i: -scores[i])[:dominant - 1]
    keep = sorted([0] + [i + 1 for i in top])
    rest = [i for i in range(N + 1) if i not in keep]
    out = [hidden[i] for i in keep]
    metric = keys.mean(axis=0)[rest]
    metric = metric / np.linalg.norm(metric, axis=-1, keepdims=True)
    m = len(rest)
    step = max(1, m // contextual)
    targets = list(range(0, m, step))[:contextual]
    assigned = {t: [] for t in targets}
    for i in range(m):
        if i not in targets:
            best = max(targets, key=lambda t: float(metric[i] @ metric[t]))
            assigned[best].append(i)
    for t in targets:
        merged = np.mean([hidden[rest[i]] for i in assigned[t]], axis=0) if assigned[t] else 0.0
        out.append(hidden[rest[t]] + merged)
    return np.stack(out)


def random_context(batch: int = 2, width: int = 8, heads: int = 2, seed: int = 0) -> VisionContext:
    """Random float64 attention (rows sum to 1), keys and hidden states, CLS at index 0."""
    g = torch.Generator().manual_seed(seed)
    attn = torch.softmax(3 * torch.randn(batch, heads, N + 1, N + 1, generator=g, dtype=torch.float64), dim=-1)
    keys = torch.randn(batch, heads, N + 1, 4, generator=g, dtype=torch.float64)
    hidden = torch.randn(batch, N + 1, width, generator=g, dtype=torch.float64)
    return VisionContext(grid=24, attentions=attn, keys=keys, hidden=hidden)


def build(**args) -> object:
    return get_method("visionzip")(ModelShape(), **args)


@pytest.mark.parametrize("dominant,contextual", [(54, 10), (108, 20), (162, 30), (122, 22), (7, 3), (570, 7)])
def test_reduce_equals_the_loop_reference(dominant, contextual):
    ctx = random_context()
    out = build(dominant=dominant, contextual=contextual).reduce(ctx.hidden[:, 1:], ctx)
    assert out.shape == (2, dominant + contextual, 8)
    for b in range(2):
        expected = reference_visionzip(ctx.hidden[b].numpy(), ctx.attentions[b].numpy(), ctx.keys[b].numpy(),
                                       dominant, contextual)
        np.testing.assert_allclose(out[b].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_hand_set_attention_keeps_and_merges_the_expected_tokens():
    """CLS attends to patches 3, 5, 100, 400; keys put rest tokens 0..99 near target 0, the others near target 1."""
    hidden = torch.arange(N + 1, dtype=torch.float64).view(1, N + 1, 1).repeat(1, 1, 2)
    attn = torch.full((1, 2, N + 1, N + 1), 1e-4, dtype=torch.float64)
    for rank, patch in enumerate([400, 3, 100, 5]):
        attn[0, rank % 2, 0, patch + 1] = 0.1 + rank / 100
    keys = torch.zeros(1, 2, N + 1, 2, dtype=torch.float64)
    keys[..., 0] = 1.0  # rest tokens are all near (1, 0) ...
    rest = [i for i in range(1, N + 1) if i not in (4, 6, 101, 401)]  # token index = patch + 1
    keys[0, :, rest[286:], :] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # ... but the second half near (0, 1)
    ctx = VisionContext(grid=24, attentions=attn, keys=keys, hidden=hidden)
    out = build(dominant=5, contextual=2).reduce(hidden[:, 1:], ctx)[0, :, 0]
    assert out[:5].tolist() == [0, 4, 6, 101, 401]  # CLS, then patches 3, 5, 100, 400 in order
    first, second = rest[:286], rest[286:]  # M = 572 rest tokens, step 286: targets rest[0] and rest[286]
    assert out[5].item() == pytest.approx(first[0] + np.mean(first[1:]))
    assert out[6].item() == pytest.approx(second[0] + np.mean(second[1:]))


def test_published_settings_give_their_token_counts():
    for tokens, (dominant, contextual) in SETTINGS.items():
        model, processor = load_model("llava-tiny", method="visionzip",
                                      **{"method.dominant": dominant, "method.contextual": contextual})
        assert model.config.num_visual_tokens == processor.num_visual_tokens == tokens
    assert build().args == {"dominant": 54, "contextual": 10, "cls": True} and build().tokens_out(N) == 64


def test_keeping_every_token_equals_the_base_model(tiny_model):
    """dominant=576, contextual=0, cls=false: the base model's visual tokens, same order; with cls (577), CLS first."""
    pixels = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(1))
    base, _ = tiny_model("llava-tiny")
    every, _ = load_model("llava-tiny", method="visionzip",
                          **{"method.dominant": 576, "method.contextual": 0, "method.cls": False})
    with_cls, _ = load_model("llava-tiny", method="visionzip", **{"method.dominant": 577, "method.contextual": 0})
    with torch.no_grad():
        expected = base.visual_tokens(pixels)
        assert torch.equal(every.visual_tokens(pixels), expected)
        tokens = with_cls.visual_tokens(pixels)
        cls = base.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, :1]
        cls_token = base.model.multi_modal_projector(cls)
    assert tokens.shape == (2, 577, expected.shape[-1])
    assert torch.allclose(tokens[:, 1:], expected, atol=1e-6) and torch.allclose(tokens[:, :1], cls_token, atol=1e-6)


def test_model_output_equals_the_loop_reference_on_clips_own_attention():
    model, _ = load_model("llava-tiny", method="visionzip", attn_implementation="eager")
    pixels = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tower = model.model.vision_tower
        keys = []
        hook = tower.encoder.layers[-2].self_attn.k_proj.register_forward_hook(lambda m, a, o: keys.append(o))
        own = tower(pixels, output_attentions=True, output_hidden_states=True)
        hook.remove()
        features = model.model.token_reduction(model.vision_features(pixels), _filled(model, pixels))
    heads = model.config.vision_config.num_attention_heads
    key = keys[0].view(1, N + 1, heads, -1).transpose(1, 2)  # the reference's `_shape` of k_proj's output
    expected = reference_visionzip(own.hidden_states[-2][0].double().numpy(), own.attentions[-2][0].double().numpy(),
                                   key[0].double().numpy(), 54, 10)
    np.testing.assert_allclose(features[0].numpy(), expected, atol=1e-5)


def _filled(model, pixels: torch.Tensor) -> VisionContext:
    """The context the model fills for its method."""
    ctx = VisionContext(grid=24, block=model.model.token_method.attention_block)
    model.model.vision_features(pixels, ctx)
    return ctx


def test_reduce_runs_on_meta_tensors():
    ctx = VisionContext(grid=24, attentions=torch.empty(1, 16, N + 1, N + 1, device="meta"),
                        keys=torch.empty(1, 16, N + 1, 64, device="meta"), hidden=torch.empty(1, N + 1, 1024,
                                                                                                device="meta"))
    out = build().reduce(torch.empty(1, N, 1024, device="meta"), ctx)
    assert out.is_meta and out.shape == (1, 64, 1024)


@pytest.mark.parametrize("args,needle", [
    ({"dominant": 0}, "dominant=0 is out of range"),
    ({"contextual": -1}, "contextual=-1 is out of range"),
    ({"dominant": 570, "contextual": 10}, "valid: dominant in [1, 577], contextual in [0, 577 - dominant]"),
    ({"dominant": 577, "cls": False}, "576 patches (cls=false)"),
])
def test_impossible_arguments_are_refused_with_the_valid_range(args, needle):
    with pytest.raises(StfBenchError) as info:
        build(**args)
    assert needle in str(info.value)


def test_impossible_arguments_exit_2(capsys):
    assert main(["flops", "--model", "llava-tiny", "--method", "visionzip", "--method-args",
                 "dominant=600,contextual=10", "--no-store"]) == 2
    assert "dominant=600" in capsys.readouterr().err


def test_paper_flops_equal_the_llm_over_64_tokens_and_prefill_counts_the_method(capsys):
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "visionzip", "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    llm = counting_twin(load_model("llava-1.5-7b", random_weights=True, device="meta")[0].model.language_model)
    embeds = torch.empty(1, 64, llm.config.hidden_size, device="meta")
    mask = torch.ones(1, 64, dtype=torch.long, device="meta")
    expected = count_flops(llm, lambda: llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False),
                           {"llm": llm})["llm"]
    assert report["visual_tokens"] == 64 and report["tflops"] == pytest.approx(expected / 1e12, rel=1e-12)
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "visionzip", "--convention", "prefill",
                 "--format", "json", "--no-store"]) == 0
    prefill = json.loads(capsys.readouterr().out)
    attention = 2 * 16 * (N + 1) * (N + 1) * 64  # at least the CLIP attention map it reads (16 heads of 64)
    assert prefill["components"]["method"] * 1e12 >= attention and prefill["visual_tokens"] == 64


def test_run_scores_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--model", "llava-tiny", "--method", "visionzip", "--tasks", "pope", "--limit", "2", "--no-store",
            "--output-dir", str(tmp_path / "out"), "--format", "json", "--no-progress"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"pope"} and 0 <= scores["pope"]["f1"] <= 100
