"""SparseVLM against the official code's own outputs on identical tensors (Gumpest/SparseVLMs @ 91fb6d9; the
committed outputs and the commands that made them: tests/data/sparsevlm/make_official.py), its wiring in the LLM
against transformers' eager attention, decoding from the pruned cache against recomputation, its schedule, FLOPs,
run summary and refused arguments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

# FastV's tests: the prompts, the recomputation at every step (decisions of the prompt's last token: rank_at) and
# the independent per-layer FLOPs count
from test_fastv import _cached_and_recomputed, _inputs, _llm_flops, assert_own_loop_answers_as_generate

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, get_method
from stf_bench.methods.sparsevlm import PRESETS, prune_step, rows_attention, select_raters
from stf_bench.models import load_model

DATA = Path(__file__).resolve().parents[1] / "data" / "sparsevlm"
OFFICIAL = torch.load(DATA / "official.pt", weights_only=True)
SEED, HEADS, HEAD_DIM = 91, 4, 4  # as make_official.py
# (name, prefix, visual, text, scale, bias), as make_official.py; the first case of a shape holds its inputs
CASES = {"s192": (5, 576, 40, 13.5, 0.0, "s192"), "s128": (5, 576, 40, 9.0, 6.0, "s192"),
         "s64": (5, 576, 40, 0.8, 0.0, "s192"), "small": (3, 24, 30, 13.5, 0.0, "small"),
         "few": (3, 6, 30, 9.0, 6.0, "few")}


def _stand_in_attention(hidden: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor) -> torch.Tensor:
    """make_official.py's stand-in layer attention (1, heads, T, T), computed the same way."""
    t = hidden.shape[1]
    q = (hidden @ wq).view(1, t, HEADS, HEAD_DIM).transpose(1, 2)
    k = (hidden @ wk).view(1, t, HEADS, HEAD_DIM).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM)
    return scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_raters_kept_indices_and_tokens_equal_the_official_code(case):
    """Four pruning layers in a row: the same raters, kept visual indices, rank branch, visual counts and tokens
    (kept and recycled, in the same order) as the official statements of `LlamaDynamicvitModel.forward`."""
    prefix, visual, _, scale, bias, inputs = CASES[case]
    embeds, weights = OFFICIAL[f"{inputs}.embeds"], OFFICIAL[f"{inputs}.weights"]
    raters = select_raters(embeds[0], prefix, visual)
    assert raters.tolist() == OFFICIAL[f"{case}.raters"].tolist()
    generator = torch.Generator().manual_seed(SEED)
    hidden, v = embeds, visual
    for layer in range(weights.shape[0]):
        wq, wk, wo = weights[layer]
        attention = _stand_in_attention(hidden, wq, wk).mean(1)[0]
        relation = attention[raters + prefix + v, prefix:prefix + v]
        out = hidden + torch.tanh(hidden @ wo)
        sequence, kept, recycled = prune_step(relation, out[0], prefix, scale, bias, generator)
        hidden, v_before, v = sequence[None], v, len(kept) + recycled
        assert kept.tolist() == OFFICIAL[f"{case}.{layer}.kept"].tolist()
        assert (len(kept) < v_before) == bool(OFFICIAL[f"{case}.{layer}.pruned"])
        assert v == int(OFFICIAL[f"{case}.{layer}.visual"])
        torch.testing.assert_close(hidden[0, prefix:prefix + v], OFFICIAL[f"{case}.{layer}.tokens"], rtol=0,
                                   atol=1e-6)


def test_the_published_settings_are_presets_of_its_arguments():
    """Each published row is a complete, valid argument set; it resolves to itself (nothing left to defaults)."""
    method = get_method("sparsevlm")
    for tokens, args in PRESETS.items():
        assert method.resolve(args) == args and args["tokens"] == tokens
    assert {(a["scale"], a["bias"]) for a in PRESETS.values()} == {(13.5, 0.0), (9.0, 6.0), (0.8, 0.0)}


def _sparse(**args):
    return load_model("llava-tiny", method="sparsevlm", **{f"method.{k}": v for k, v in args.items()})


def test_rows_attention_equals_the_layers_own_eager_attention():
    base, processor = load_model("llava-tiny")
    llm = base.model.language_model
    llm.set_attn_implementation("eager")
    inputs = _inputs(processor)
    with torch.no_grad():
        out = base.model(**inputs, output_hidden_states=True, output_attentions=True, use_cache=False)
        hidden = out.hidden_states[0]
        positions = torch.arange(hidden.shape[1])[None]
        rows = torch.tensor([600, 610, hidden.shape[1] - 1])
        got = rows_attention(llm.layers[0], hidden, llm.rotary_emb(hidden, position_ids=positions), rows)
    torch.testing.assert_close(got, out.attentions[0].mean(1)[0, rows].float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("preset", [64, 128, 192])
def test_in_the_llm_it_prunes_the_output_of_its_layer_by_that_layers_attention(preset):
    """Reference wiring on the tiny LLM (layers=0): raters from the LLM's input embeddings; layer 0's eager attention
    (transformers', averaged over heads) rates; layer 0's output is pruned and recycled (`prune_step`, checked
    against the official code above); layer 1 runs on that sequence with positions 0, 1, ..."""
    base, processor = load_model("llava-tiny")
    args = {**PRESETS[preset], "layers": "0"}
    model, _ = _sparse(**args)
    llm = base.model.language_model
    llm.set_attn_implementation("eager")
    inputs = _inputs(processor)
    image = torch.nonzero(inputs["input_ids"][0] == base.config.image_token_id)[:, 0]
    start, n = int(image[0]), len(image)
    with torch.no_grad():
        out = base.model(**inputs, output_hidden_states=True, output_attentions=True, use_cache=False)
        embeds, layer0 = out.hidden_states[0], out.hidden_states[1]
        raters = select_raters(embeds[0], start, n)
        relation = out.attentions[0].mean(1)[0, raters + start + n, start:start + n].float()
        sequence, kept, recycled = prune_step(relation, layer0[0], start, args["scale"], args["bias"],
                                              torch.Generator().manual_seed(0))
        hidden = sequence[None]
        positions = torch.arange(hidden.shape[1])[None]
        t = hidden.shape[1]
        mask = torch.full((t, t), torch.finfo(hidden.dtype).min).triu(1)[None, None]
        hidden = llm.layers[1](hidden, attention_mask=mask, position_ids=positions,
                               position_embeddings=llm.rotary_emb(hidden, position_ids=positions))
        want = llm.norm(hidden)
        got = model.model(**inputs).last_hidden_state
    assert 0 < len(kept) < n and recycled >= 1
    assert got.shape == want.shape == (1, inputs["input_ids"].shape[1] - n + len(kept) + recycled, 64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("preset", [64, 128, 192])
def test_decoding_from_the_pruned_cache_equals_recomputation(preset):
    """Prefill once with the pruning, decode from the pruned KV cache (each layer numbering new tokens after its own
    cached ones): the tokens and logits of recomputing the whole sequence at every step, for one prompt and a
    left-padded batch whose rows keep different counts (layers=0: layer 1 decodes from a pruned cache)."""
    model, processor = _sparse(**{**PRESETS[preset], "layers": "0"})
    for questions in (("What is in the picture?",), ("What is it?", "Which colour is the biggest shape here?")):
        new_tokens, got, want = _cached_and_recomputed(model, _inputs(processor, questions))
        assert torch.equal(new_tokens, want.argmax(-1))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    counts = model.model.token_method.counts
    assert len({c[1] for c in counts}) > 1  # adaptive: the rows kept different counts


@pytest.mark.parametrize("preset", [64, 192])
def test_its_own_decode_loop_gives_the_tokens_of_generate(preset):
    """SparseVLM decodes through the base model's loop (`plans_decode`), not `generate`; same tokens, with rows
    that keep different counts (layers=0: layer 1 decodes from a pruned cache)."""
    model, processor = _sparse(**{**PRESETS[preset], "layers": "0"})
    assert_own_loop_answers_as_generate(model, processor)


def test_the_evaluation_adapter_prefills_once_with_the_pruning_then_decodes_one_token_per_step(monkeypatch):
    """Through the adapter (as `run` calls it), layer 1 sees the pruned prompt once, then one token per step
    (decode steps may run the layer through `generation._lean_layer`, no module call: counted too)."""
    from lmms_eval.api.instance import Instance
    from PIL import Image

    from stf_bench.adapter.lmms_model import StfBenchLmms
    from stf_bench.models import generation

    lm = StfBenchLmms(preset="llava-tiny", device="cpu", dtype="float32", method="sparsevlm",
                      **{f"method.{k}": v for k, v in {**PRESETS[64], "layers": "0"}.items()})
    lm.show_progress = False
    lm.task_dict = {"t": {"test": [{"image": Image.new("RGB", (40, 30), (200, 40, 90))}]}}
    gen = {"until": ["ASSISTANT:"], "max_new_tokens": 4, "temperature": 0}
    request = Instance("generate_until", ("What is this?", gen, lambda d: [d["image"]], 0, "t", "test"), idx=0,
                       metadata={"task": "t", "doc_id": 0, "repeats": 1})
    seen: list[int] = []
    layers = lm.model.model.language_model.layers
    for layer in layers[:2]:
        layer.register_forward_hook(lambda m, a, o, seen=seen: seen.append(a[0].shape[1]))
    lean_layer = generation._lean_layer

    def counted_lean_layer(layer, hidden, *args):
        seen.append(hidden.shape[1])
        return lean_layer(layer, hidden, *args)

    monkeypatch.setattr(generation, "_lean_layer", counted_lean_layer)
    lm.generate_until([request])
    (counts,) = lm.model.model.token_method.counts
    assert seen[0] > 576 and seen[1] == seen[0] - 576 + counts[1] < seen[0]  # layer 1: the pruned prompt
    assert len(seen) >= 4 and set(seen[2:]) == {1}


def test_the_same_seed_gives_the_same_answer():
    outs = []
    for _ in range(2):
        model, processor = _sparse(layers="0", scale=0.8)
        with torch.no_grad():
            outs.append(model.model(**_inputs(processor)).last_hidden_state)
    assert torch.equal(outs[0], outs[1])


def test_schedule_is_nominal_until_prompts_run_then_measured():
    method = get_method("sparsevlm")(ModelShape(), **PRESETS[192])
    # 576 at layers 0..2 (layer 2 prunes its output), then 192 * 32 - 3 * 576 = 4416 over 29 layers: 8 x 153, 21 x 152
    assert method.token_schedule(576) == [576] * 3 + [153] * 8 + [152] * 21
    assert sum(method.token_schedule(576)) == 192 * 32
    method.counts = [[576] * 3 + [100] * 30, [576] * 3 + [50] * 30]  # 32 layers, then after the last
    assert method.token_schedule(576) == [576] * 3 + [75] * 29
    summary = method.run_summary()["sparsevlm_counts"]
    assert summary["prefills"] == 2 and summary["mean"] == pytest.approx((3 * 576 + 29 * 75) / 32)
    # the reference's "equal token number" counts layer 2 after its pruning
    assert summary["reference_equal_tokens"] == pytest.approx((2 * 576 + 30 * 75) / 32)


def test_bad_layers_are_refused_and_a_shallow_llm_scales_the_schedule():
    with pytest.raises(StfBenchError, match="this LLM has 32 layers"):
        get_method("sparsevlm")(ModelShape(), layers="2-6-40")
    with pytest.raises(StfBenchError, match="'-'-separated"):
        get_method("sparsevlm")(ModelShape(), layers="two")
    assert get_method("sparsevlm")(ModelShape(llm_layers=2)).prune_layers() == [0, 1]
    assert get_method("sparsevlm")(ModelShape(llm_layers=40)).prune_layers() == [2, 6, 15, 19]


def test_a_bad_argument_exits_2_before_any_work(capsys):
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "sparsevlm", "--method-args", "layers=1-99",
                 "--no-store"]) == 2
    assert "layers" in capsys.readouterr().err


def test_flops_is_the_per_layer_count_of_its_schedule(capsys):
    """`flops --method sparsevlm` at the 128-token setting: layers 0..2 at 576 tokens, 29 layers sharing
    128 * 32 - 3 * 576 = 2368 (19 x 82 + 10 x 81), each layer counted independently."""
    args = ",".join(f"{k}={v}" for k, v in PRESETS[128].items())
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "sparsevlm", "--method-args", args,
                 "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    schedule = [576] * 3 + [82] * 19 + [81] * 10
    assert report["details"]["token_schedule"] == schedule
    per_layer = {n: _llm_flops(2, n) - _llm_flops(1, n) for n in set(schedule)}
    rest, norm = _llm_flops(1, 576) - per_layer[576], {n: _llm_flops(1, n, "norm") for n in (576, 81)}
    want = rest - norm[576] + norm[81] + sum(per_layer[n] for n in schedule)
    assert report["tflops"] * 1e12 == pytest.approx(want, rel=1e-12)


def _tiny_per_layer_want(model, schedule: list[int]) -> float:
    """An independent paper-convention count of the tiny (2-layer) backbone over `schedule`: layer 0 and the rotary
    embedding at the entering count, layer 1 at its own, the final norm at the last count (0 tokens: nothing)."""
    from test_mustdrop import _tiny_llm_flops

    first, second = schedule
    want = _tiny_llm_flops(model, 1, first) - _tiny_llm_flops(model, 1, first, "norm")
    if second:
        want += (_tiny_llm_flops(model, 2, second) - _tiny_llm_flops(model, 1, second)
                 + _tiny_llm_flops(model, 1, second, "norm"))
    return want


def test_flops_on_a_shallow_llm_count_a_layer_left_without_visual_tokens_as_nothing(capsys):
    """Regression: on the 2-layer tiny LLM the nominal schedule leaves layer 1 no visual token ([576, 0]: the mean
    of 192 over two layers is spent in layer 0), and `flops --method sparsevlm` failed with a reshape error."""
    assert main(["flops", "--model", "llava-tiny", "--method", "sparsevlm", "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["details"]["token_schedule"] == [576, 0]
    model, _ = _sparse()
    assert report["tflops"] * 1e12 == pytest.approx(_tiny_per_layer_want(model, [576, 0]), rel=1e-12)


def test_flops_of_a_model_that_ran_prompts_count_its_measured_schedule():
    """The paper FLOPs of a model that has run SparseVLM prompts (in the same process) count the schedule its
    method measured, not the nominal one (the config builds a fresh method, which has seen no prompt)."""
    from stf_bench.profile.flops import paper_report

    model, processor = _sparse(**{**PRESETS[64], "layers": "0"})
    with torch.no_grad():
        model(**_inputs(processor))
    measured = model.model.token_method.token_schedule(576)
    assert measured != model.config.token_schedule and 0 < measured[1] < 576  # nominal: [576, 0]
    report = paper_report(model, "llava-tiny + sparsevlm")
    assert report.details["token_schedule"] == measured
    assert report.tflops * 1e12 == pytest.approx(_tiny_per_layer_want(model, measured), rel=1e-12)


def test_prefill_flops_run_on_meta_by_its_schedule(capsys):
    """On `meta` (the prefill convention, what `latency` also counts) the rank cannot be computed: the layers run
    over the schedule's counts; the LLM part is then below the base model's and the vision parts equal."""
    figures = []
    for method in ([], ["--method", "sparsevlm"]):
        assert main(["flops", "--model", "llava-1.5-7b", *method, "--convention", "prefill", "--format", "json",
                     "--no-store"]) == 0
        figures.append(json.loads(capsys.readouterr().out)["components"])
    base, sparse = figures
    assert sparse["vision_tower"] == base["vision_tower"] and 0 < sparse["llm"] < 0.6 * base["llm"]


@pytest.mark.slow  # about 90 s on a shared 2-core CPU (lmms-eval loads two tasks)
def test_run_exits_0_and_records_its_adaptive_counts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "llava-tiny", "--method", "sparsevlm", "--tasks", "pope,gqa", "--limit", "4",
                 "--output-dir", str(tmp_path / "out"), "--no-store", "--format", "json", "--no-progress"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"pope", "gqa"}
    (results,) = (tmp_path / "out").glob("llava-tiny/*_results.json")
    counts = json.loads(results.read_text())["stf_bench"]["method_summary"]["sparsevlm_counts"]
    assert counts["prefills"] >= 8 and len(counts["mean_per_layer"]) == 2
    assert counts["mean_per_layer"][0] == 576 and 0 < counts["mean_per_layer"][1] < 576


def test_methods_lists_it_with_its_declarations(capsys):
    assert main(["methods", "--format", "json"]) == 0
    (row,) = [m for m in json.loads(capsys.readouterr().out) if m["name"] == "sparsevlm"]
    assert row["acts_on"] == "llm" and row["text_conditioned"] and row["prunes_kv_cache"]
    assert [p["name"] for p in row["params"]] == ["scale", "bias", "layers", "tokens", "seed"]
