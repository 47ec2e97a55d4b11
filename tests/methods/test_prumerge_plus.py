"""PruMerge+ against a loop re-statement of the reference's rules (42Shawn/LLaVA-PruMerge
llava/model/multimodal_encoder/clip_encoder.py @ 097c041, `token_prune_merge_advanced_plus`, adaptive): IQR outliers
of the last block's CLS attention, uniform additions, 32-neighbour key merging, one extra token."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, VisionContext, get_method
from stf_bench.models import load_model

N, WIDTH, HEADS = 576, 8, 2


def reference_selection(cls_attn: np.ndarray) -> list[int]:
    """The reference's kept patches, in its order: outliers by attention, then the uniform ones not among them."""
    q1, q3 = np.percentile(cls_attn, 25), np.percentile(cls_attn, 75)
    ratio = len(np.where(cls_attn > q3 + 1.5 * (q3 - q1))[0]) / len(cls_attn)
    idx = [int(i) for i in np.argsort(-cls_attn, kind="stable")[:int(N * ratio)]]
    step_length = int(1 / ratio)
    return idx + [x for x in range(0, 575, int(step_length / 3)) if x not in idx]


def reference_merge(x: np.ndarray, keys: np.ndarray, cls_attn: np.ndarray, idx: list[int]) -> np.ndarray:
    """Each kept token plus its 32 most key-similar others weighted by CLS attention; then the extra token."""
    unit = keys / np.linalg.norm(keys, axis=-1, keepdims=True)
    out = []
    for i in idx:
        others = [j for j in range(N) if j != i]
        similar = sorted(others, key=lambda j: -float(unit[i] @ unit[j]))[:32]
        out.append(x[i] + sum(x[j] * cls_attn[j] for j in similar))
    pruned = [j for j in range(N) if j not in idx]
    out.append(sum(x[j] * cls_attn[j] for j in pruned))
    return np.stack(out)


def cls_attention(ctx: VisionContext) -> np.ndarray:
    """(B, N) softmax(q_cls k^T / sqrt(C)) to the patches, from full-width (heads concatenated) q and k."""
    q = ctx.queries.transpose(1, 2).reshape(ctx.queries.shape[0], N + 1, -1)
    k = ctx.keys.transpose(1, 2).reshape(ctx.keys.shape[0], N + 1, -1)
    logits = (q[:, 0:1] @ k.transpose(1, 2))[:, 0] / np.sqrt(WIDTH)
    return torch.softmax(logits, dim=-1)[:, 1:].numpy()


def random_context(seed: int = 0, boosted: int = 20) -> tuple[torch.Tensor, VisionContext]:
    """Random float64 q/k/features; `boosted` patches' keys pulled towards the CLS query (attention outliers)."""
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(2, HEADS, N + 1, WIDTH // HEADS, generator=g, dtype=torch.float64)
    keys = torch.randn(2, HEADS, N + 1, WIDTH // HEADS, generator=g, dtype=torch.float64)
    for b in range(2):
        patches = torch.randperm(N, generator=g)[:boosted + 5 * b] + 1
        keys[b, :, patches] += 2 * queries[b, :, :1] * torch.rand(len(patches), 1, generator=g, dtype=torch.float64)
    features = torch.randn(2, N, WIDTH, generator=g, dtype=torch.float64)
    return features, VisionContext(grid=24, keys=keys, queries=queries)


def build(**args) -> object:
    return get_method("prumerge+")(ModelShape(), **args)


def expected(features: torch.Tensor, ctx: VisionContext, b: int, idx: list[int]) -> np.ndarray:
    keys = ctx.keys.transpose(1, 2).reshape(2, N + 1, -1)[b, 1:].numpy()
    return reference_merge(features[b].numpy(), keys, cls_attention(ctx)[b], idx)


def test_reduce_at_the_reference_count_equals_the_loop_reference():
    features, ctx = random_context()
    attn = cls_attention(ctx)
    for b in range(2):
        idx = reference_selection(attn[b])
        method = build(tokens=len(idx) + 1)
        out = method.reduce(features, ctx)[b].numpy()
        np.testing.assert_allclose(out, expected(features, ctx, b, idx), rtol=1e-10, atol=1e-12)
        assert method.counts == [len(reference_selection(a)) + 1 for a in attn]  # both images' reference counts


def test_fewer_tokens_truncate_and_more_continue_by_attention():
    features, ctx = random_context(seed=1)
    attn = cls_attention(ctx)[0]
    idx = reference_selection(attn)
    assert len(idx) > 20
    out = build(tokens=11).reduce(features, ctx)[0].numpy()
    np.testing.assert_allclose(out, expected(features, ctx, 0, idx[:10]), rtol=1e-10, atol=1e-12)
    extra = [int(i) for i in np.argsort(-attn, kind="stable") if int(i) not in idx][:6]
    out = build(tokens=len(idx) + 7).reduce(features, ctx)[0].numpy()
    np.testing.assert_allclose(out, expected(features, ctx, 0, idx + extra), rtol=1e-10, atol=1e-12)


def test_hand_set_attention_keeps_the_expected_tokens():
    """CLS attends to patches 300 > 50 > 10, equally to all others: 3 outliers (IQR 0), ratio 3/576, int(192/3) = 64:
    uniform 0, 64, ..., 512; the reference count 3 + 9 + 1 = 13."""
    queries = torch.zeros(1, HEADS, N + 1, WIDTH // HEADS, dtype=torch.float64)
    queries[0, 0, 0, 0] = 10.0
    keys = torch.randn(1, HEADS, N + 1, WIDTH // HEADS, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64)
    keys[0, 0, :, 0] = 0.0
    for patch, logit in ((300, 3.0), (50, 2.0), (10, 1.0)):
        keys[0, 0, patch + 1, 0] = logit
    ctx = VisionContext(grid=24, keys=keys, queries=queries)
    features = torch.arange(N, dtype=torch.float64).view(1, N, 1).repeat(1, 1, WIDTH)
    method = build(tokens=13)
    out = method.reduce(features, ctx)
    kept = [300, 50, 10, 0, 64, 128, 192, 256, 320, 384, 448, 512]
    assert reference_selection(cls_attention(ctx)[0]) == kept and method.counts == [13]
    attn = cls_attention(ctx)[0]
    unit = keys.transpose(1, 2).reshape(N + 1, -1)[1:].numpy()
    unit = unit / np.linalg.norm(unit, axis=-1, keepdims=True)
    for row, i in enumerate(kept):
        similar = np.argsort(-(unit @ unit[i]), kind="stable")
        similar = [int(j) for j in similar if j != i][:32]
        assert out[0, row, 0].item() == pytest.approx(i + sum(j * attn[j] for j in similar), rel=1e-9)
    assert out[0, 12, 0].item() == pytest.approx(sum(j * attn[j] for j in range(N) if j not in kept), rel=1e-9)
    assert method.count_summary() == {"images": 1, "mean": 13.0, "min": 13, "max": 13, "tokens_fed": 13}


def test_the_model_reads_clips_last_block_on_the_penultimate_output_as_the_reference_hooks_it():
    """The reference hooks layers[23].self_attn.{q,k}_proj during a full tower forward."""
    model, _ = load_model("llava-tiny", method="prumerge+")
    pixels = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(4))
    caught = {}
    block = model.model.vision_tower.encoder.layers[23].self_attn
    hooks = [block.k_proj.register_forward_hook(lambda m, a, o: caught.update(k=o)),
             block.q_proj.register_forward_hook(lambda m, a, o: caught.update(q=o))]
    ctx = VisionContext(grid=24, block=model.model.token_method.attention_block)
    with torch.no_grad():
        model.model.vision_features(pixels, ctx)
        caught.clear()
        own = model.model.vision_tower(pixels, output_hidden_states=True)
        tokens = model.visual_tokens(pixels)
    for hook in hooks:
        hook.remove()
    assert torch.allclose(ctx.keys.transpose(1, 2).reshape(2, N + 1, -1), caught["k"], atol=1e-5)
    assert torch.allclose(ctx.queries.transpose(1, 2).reshape(2, N + 1, -1), caught["q"], atol=1e-5)
    assert torch.allclose(ctx.hidden, own.hidden_states[-2], atol=1e-5)
    assert tokens.shape[1] == model.config.num_visual_tokens == 144
    summary = model.model.token_method.count_summary()
    assert summary["images"] == 2 and summary["min"] <= summary["mean"] <= summary["max"] and summary["min"] >= 1


def test_reduce_runs_on_meta_tensors():
    ctx = VisionContext(grid=24, keys=torch.empty(1, 16, N + 1, 64, device="meta"),
                        queries=torch.empty(1, 16, N + 1, 64, device="meta"))
    method = build()
    out = method.reduce(torch.empty(1, N, 1024, device="meta"), ctx)
    assert out.is_meta and out.shape == (1, 144, 1024) and method.counts == []


@pytest.mark.parametrize("tokens,needle", [(1, "tokens=1 is out of range"), (578, "valid: 2..577")])
def test_impossible_arguments_are_refused(tokens, needle):
    with pytest.raises(StfBenchError) as info:
        build(tokens=tokens)
    assert needle in str(info.value)


def test_impossible_arguments_exit_2_and_flops_count_the_fixed_tokens(capsys):
    assert main(["flops", "--model", "llava-tiny", "--method", "prumerge+", "--method-args", "tokens=999",
                 "--no-store"]) == 2
    assert "tokens=999" in capsys.readouterr().err
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "prumerge+", "--convention", "prefill",
                 "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["visual_tokens"] == 144 and report["components"]["method"] > 0


def test_run_scores_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--model", "llava-tiny", "--method", "prumerge+", "--tasks", "pope", "--limit", "2", "--no-store",
            "--output-dir", str(tmp_path / "out"), "--format", "json", "--no-progress"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"pope"} and 0 <= scores["pope"]["f1"] <= 100
    (results,) = (tmp_path / "out").glob("llava-tiny/*_results.json")
    counts = json.loads(results.read_text())["stf_bench"]["method_summary"]["reference_token_counts"]
    assert counts["images"] >= 1 and counts["min"] <= counts["mean"] <= counts["max"] and counts["tokens_fed"] == 144
