"""FastV against an independent reference (transformers' own eager attention weights and layers), its token
schedule and FLOPs (an independent per-layer count), r=0 equal to the base model, bad arguments refused."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, get_method
from stf_bench.models import load_model


def _inputs(processor, questions=("What is in the picture?",), first_image: int = 0):
    images = [Image.new("RGB", (40 + 9 * i, 30 + 4 * i), (200 - 50 * i, 40 * i, 90))
              for i in range(first_image, first_image + len(questions))]
    processor.tokenizer.padding_side = "left"
    prompts = [f"USER: <image>\n{q} ASSISTANT:" for q in questions]
    return processor(images=images, text=prompts, return_tensors="pt", padding=True)


def _reference_last_hidden(model, inputs, k: int, r: float) -> torch.Tensor:
    """FastV as the reference computes it, for one unpadded prompt: layer k-1's attention weights from transformers
    (eager, output_attentions), averaged over heads, last row; keep round(n(1-r)) image tokens + all text tokens in
    order, original position ids; the remaining layers on that sequence with a plain causal mask."""
    llm = model.model.language_model
    llm.set_attn_implementation("eager")
    ids = inputs["input_ids"]
    image = ids[0] == model.config.image_token_id
    with torch.no_grad():
        embeds = model.model(**inputs, output_hidden_states=True, output_attentions=True, use_cache=False)
        hidden_k = embeds.hidden_states[k]  # (1, T, H) input of layer k
        attention = embeds.attentions[k - 1].mean(1)[0, -1]  # (T,) last token, layer k-1, mean over heads
        n = int(image.sum())
        top = attention[image].topk(round(n * (1 - r))).indices
        keep = torch.cat([torch.nonzero(~image)[:, 0], torch.nonzero(image)[:, 0][top]]).sort().values
        hidden, positions = hidden_k[:, keep], keep[None]
        rotary = llm.rotary_emb(hidden, position_ids=positions)
        t = len(keep)
        mask = torch.full((t, t), torch.finfo(hidden.dtype).min).triu(1)[None, None]
        for layer in llm.layers[k:]:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
        return llm.norm(hidden)


@pytest.mark.parametrize("r", [0.5, 0.75])
def test_fastv_equals_the_reference_computation(r):
    base, processor = load_model("llava-tiny")
    model, _ = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": r})
    inputs = _inputs(processor)
    want = _reference_last_hidden(base, inputs, 1, r)
    with torch.no_grad():
        got = model.model(**inputs).last_hidden_state
    assert got.shape == want.shape == (1, inputs["input_ids"].shape[1] - 576 + round(576 * (1 - r)), 64)
    assert torch.allclose(got, want, atol=1e-5)


def test_fastv_r0_answers_exactly_as_the_base_model_in_a_padded_batch():
    base, processor = load_model("llava-tiny")
    model, _ = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": 0.0})
    inputs = _inputs(processor, ("What is it?", "Which colour is the biggest shape in this image?"))
    with torch.no_grad():
        want = base.generate(**inputs, max_new_tokens=6, do_sample=False)
        got = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(got, want)
    assert model.generation_config.use_cache is False  # the token-drop version recomputes each step


def test_batched_rows_are_ranked_each_on_its_own():
    _, processor = load_model("llava-tiny")
    model, _ = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": 0.75})
    questions = ("What is it?", "Which colour is the biggest shape in this image?")
    batch = _inputs(processor, questions)
    with torch.no_grad():
        together = model(**batch).logits[:, -1]
        alone = [model(**_inputs(processor, (q,), i)).logits[0, -1] for i, q in enumerate(questions)]
    assert torch.allclose(together[1], alone[1], atol=1e-4)  # the longest row has no padding
    assert torch.allclose(together[0], alone[0], atol=1e-4)


def test_schedule_and_refused_arguments():
    fastv = get_method("fastv")
    assert fastv(ModelShape(llm_layers=32), k=2, r=0.75).token_schedule(576) == [576] * 2 + [144] * 30
    assert fastv.text_conditioned and fastv.acts_on == "llm"
    for k in (32, 33):  # at k = the layer count nothing is left to prune: refused too, not run as "+ fastv"
        with pytest.raises(StfBenchError, match="valid: k in 1..31"):
            fastv(ModelShape(llm_layers=32), k=k)
    with pytest.raises(StfBenchError, match="r=1.5 is out of range"):
        fastv(ModelShape(), r=1.5)


def _llm_flops(layers: int, n: int, part: str = "llm") -> int:
    """calflops count of a Vicuna-7B backbone cut to `layers` layers over n tokens (meta device)."""
    from stf_bench.profile.flops import count_flops, counting_twin

    model, _ = load_model("llava-1.5-7b", random_weights=True, device="meta")
    llm = model.model.language_model
    llm.config.num_hidden_layers = layers
    twin = counting_twin(llm)
    embeds = torch.empty(1, n, 4096, device="meta")
    mask = torch.ones(1, n, dtype=torch.long, device="meta")
    module = twin if part == "llm" else twin.norm
    return count_flops(twin, lambda: twin(inputs_embeds=embeds, attention_mask=mask, use_cache=False), {"x": module})["x"]


def test_flops_of_fastv_is_the_per_layer_count(capsys):
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "fastv", "--method-args", "k=2,r=0.75",
                 "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    per_layer = {n: _llm_flops(2, n) - _llm_flops(1, n) for n in (576, 144)}
    rest = {n: _llm_flops(1, n) - per_layer[n] for n in (576, 144)}  # rotary embedding + final norm
    norm = {n: _llm_flops(1, n, "norm") for n in (576, 144)}
    want = rest[576] - norm[576] + norm[144] + 2 * per_layer[576] + 30 * per_layer[144]
    assert report["tflops"] * 1e12 == pytest.approx(want, rel=1e-12)
    assert report["details"]["token_schedule"] == [576] * 2 + [144] * 30
    assert report["model"] == "llava-1.5-7b + fastv(k=2, r=0.75)"


def test_run_with_fastv_scores(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "llava-tiny", "--method", "fastv", "--method-args", "k=1", "--tasks", "pope",
                 "--limit", "2", "--output-dir", str(tmp_path / "out"), "--no-store", "--format", "json",
                 "--no-progress"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["pope"]["f1"] <= 100


def test_a_fastv_run_sits_beside_the_fastv_row_of_table_2_not_llava():
    """Table 2's FastV row cannot be traced to the training-free method: a FastV run sits beside it (never judged
    against it, tests/methods/test_published_rows.py), and is never LLaVA-1.5's reproduction either."""
    from stf_bench.published import load_published
    from stf_bench.report.attributes import matches, run_attributes

    rows = {r.method: r for r in load_published().tables["2"].rows}
    fastv = run_attributes("llava-1.5-7b", {"method": "fastv", "method.k": 2, "method.r": 0.75})
    plain = run_attributes("llava-1.5-7b", {})
    assert matches(fastv, rows["FastV"].beside) and not matches(fastv, rows["LLaVA-1.5 (full tuning)"].match)
    assert not rows["FastV"].match
    assert matches(plain, rows["LLaVA-1.5 (full tuning)"].match) and not matches(plain, rows["FastV"].beside)
    assert not matches(run_attributes("llava-1.5-7b", {"method": "fastv", "method.r": 0.5}), rows["FastV"].beside)


def test_flops_table_2_computes_the_fastv_row_at_its_setting(capsys):
    assert main(["flops", "--table", "2", "--format", "json", "--no-store"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    computed = rows["FastV"]["computed"]
    assert computed["model"] == "llava-1.5-7b + fastv(k=2, r=0.75)"
    assert computed["details"]["token_schedule"] == [576] * 2 + [144] * 30
    assert rows["FastV"]["published_tflops"] == 1.9 and computed["tflops"] == pytest.approx(2.236, abs=5e-4)


def test_lmms_eval_spelling_and_cli_spelling_are_one_row():
    from stf_bench.report.attributes import row_label

    cli = {"method": "fastv", "method.k": 2, "method.r": 0.75}  # what --method fastv --method-args r=0.75 records
    lmms = {"method": "fastv", "method.r": 0.75}  # --model_args pretrained=...,method=fastv,method.r=0.75
    assert row_label("llava-1.5-7b", cli, "llava") == row_label("llava-1.5-7b", lmms, "llava") \
        == "llava-1.5-7b + fastv(k=2, r=0.75) [llava]"


def test_on_a_hand_set_attention_map_the_expected_tokens_are_kept():
    from stf_bench.methods.fastv import keep_index

    # two rows, 9 positions: BOS, 2 text, 4 visual (3..6), 2 text; row 1 left-padded by one (its visual at 4..7)
    image = torch.zeros(2, 9, dtype=torch.bool)
    image[0, 3:7], image[1, 4:8] = True, True
    scores = torch.tensor([[0.3, 0.1, 0.1, 0.05, 0.4, 0.01, 0.2, 0.0, 0.0],
                           [0.0, 0.2, 0.1, 0.1, 0.3, 0.02, 0.03, 0.25, 0.0]])
    kept = keep_index(scores, image, visual=4, keep=2)
    assert kept.tolist() == [[0, 1, 2, 4, 6, 7, 8], [0, 1, 2, 3, 4, 7, 8]]  # the two best visual, all text, in order


def _cached_and_recomputed(model, inputs, steps: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(new tokens, cached logits, recomputed logits) of `steps` greedy steps: `generate` with the KV cache against
    `_recomputed` (shared by the in-LLM methods that decode from a pruned cache)."""
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, use_cache=True, output_scores=True,
                             return_dict_in_generate=True)
    return out.sequences[:, inputs["input_ids"].shape[1]:], torch.stack(out.scores, dim=1), _recomputed(model, inputs,
                                                                                                        steps)


def _recomputed(model, inputs, steps: int) -> torch.Tensor:
    """(B, steps, vocab) greedy logits with no cache: every step runs the whole sequence through
    `FastV.forward_llm`, ranked by the last prompt token (the cached kind's ranking, which later tokens cannot
    change) — the recomputation the pruned KV cache must reproduce."""
    method, llm = model.config.token_method, model.model.language_model
    embeds = model.model.get_input_embeddings()
    image = inputs["input_ids"] == model.config.image_token_id
    with torch.no_grad():
        full = embeds(inputs["input_ids"].masked_fill(image, 0))
        full = full.masked_scatter(image[..., None], model.model.visual_tokens(inputs["pixel_values"]))
        mask, prompt, logits = inputs["attention_mask"], full.shape[1], []
        for _ in range(steps):
            hidden = method.forward_llm(llm, full, mask, image, model.config.num_visual_tokens, rank_at=prompt - 1)
            logits.append(model.lm_head(hidden[:, -1]))
            token = logits[-1].argmax(-1, keepdim=True)
            full = torch.cat([full, embeds(token)], dim=1)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            image = torch.cat([image, torch.zeros_like(token, dtype=torch.bool)], dim=1)
    return torch.stack(logits, dim=1)


def _until_eos(ids: list[int], eos: set[int]) -> list[int]:
    """The ids before the first eos (`generate` pads a finished row with eos here)."""
    return next((ids[:i] for i, t in enumerate(ids) if t in eos), ids)


def _a_stop_string(tokenizer, rows: list[list[int]]) -> tuple[int, str]:
    """(row, text): a piece of text one row generates after its first token and not before, so that a stop string
    ends that row early."""
    for row, ids in enumerate(rows):
        for k in range(1, len(ids) - 1):
            piece = tokenizer.decode(ids[k:k + 1]).strip()
            if piece and piece not in tokenizer.decode(ids[:k]):
                return row, piece
    raise AssertionError("no row generates a new piece of text to stop on")


def assert_own_loop_answers_as_generate(model, processor) -> None:
    """The method's own greedy loop (`pruned_greedy_generate`, what the adapter runs for a method that
    `plans_decode`) gives exactly the tokens of the adapter's former path, `generate` on the reserved cache with
    its stopping rules (`RowStops`), for a left-padded batch of three: one row ended by a stop string, one by a
    short max_new_tokens (both leave the loop's batch early), one running to the longest max_new_tokens."""
    from transformers import StoppingCriteriaList

    from stf_bench.adapter.stopping import GreedyStops, RowStops
    from stf_bench.models.generation import eos_ids, pruned_greedy_generate, reserved_cache

    tok = processor.tokenizer
    inputs = _inputs(processor, ("What is it?", "Which colour is the biggest shape in this image?", "How many?"))
    eos = eos_ids(model, tok)
    free = pruned_greedy_generate(model, dict(inputs), [12] * 3, eos_token_ids=eos)
    stopped, stop = _a_stop_string(tok, free)
    short = (stopped + 1) % 3
    max_new = [5 if row == short else 12 for row in range(3)]
    until = [[stop] if row == stopped else ["never in this text"] for row in range(3)]
    own = pruned_greedy_generate(model, dict(inputs), max_new, eos_token_ids=eos, stop=GreedyStops(tok).check(until))
    prompt = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=True,
                             past_key_values=reserved_cache(model, 12), pad_token_id=tok.eos_token_id,
                             stopping_criteria=StoppingCriteriaList([RowStops(tok, prompt, max_new, until)]))
    assert own == [_until_eos(row.tolist(), eos) for row in out[:, prompt:]]
    assert 1 < len(own[stopped]) < 12 and stop in tok.decode(own[stopped])  # ended by its stop string
    assert len(own[short]) == 5 and len(own[3 - stopped - short]) == 12
    # The logits too (the tokens of a tiny random model can survive a wrong mask or position): every row to 6 tokens
    logits: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_hook(lambda m, a, o: logits.append(o.reshape(-1, o.shape[-1]).clone()))
    try:
        pruned_greedy_generate(model, dict(inputs), [6] * 3, eos_token_ids=set())
        own_logits, logits[:] = torch.stack(logits), []
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True, eos_token_id=None,
                           past_key_values=reserved_cache(model, 6))
    finally:
        hook.remove()
    torch.testing.assert_close(own_logits, torch.stack(logits), rtol=0, atol=1e-5)


@pytest.mark.parametrize("r", [0.5, 0.9])
def test_its_own_decode_loop_gives_the_tokens_of_generate(r):
    """Issue 27: FastV decodes through the base model's loop (`plans_decode`), not `generate`; same tokens."""
    model, processor = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": r})
    assert_own_loop_answers_as_generate(model, processor)


@pytest.mark.parametrize("r", [0.25, 0.5, 0.75, 0.9])
def test_decoding_from_the_pruned_cache_equals_recomputation(r):
    """The cached kind (prefill once with the drop, decode from the pruned KV cache) gives the tokens and logits
    of recomputing the whole sequence at every step, for one prompt and a left-padded batch (k=1: the tiny LLM
    has two layers, so layer 1 decodes from a pruned cache and layer 0 from a full one)."""
    model, processor = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": r})
    for questions in (("What is in the picture?",), ("What is it?", "Which colour is the biggest shape here?")):
        new_tokens, got, want = _cached_and_recomputed(model, _inputs(processor, questions))
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        assert torch.equal(new_tokens, want.argmax(-1))
        assert torch.allclose(got, want, atol=1e-5)


def test_the_evaluation_adapter_decodes_fastv_from_its_cache_not_the_whole_prompt(monkeypatch):
    """Regression (issue 27): FastV recomputed the whole prompt for every generated token. Through the adapter (fast
    paths on or off) the first LLM layer now sees the prompt once, then one token per step; plain `generate()`
    still recomputes. Decode steps may run the layer through `generation._lean_layer` (no module call), which is
    counted too."""
    from lmms_eval.api.instance import Instance

    from stf_bench.adapter.lmms_model import StfBenchLmms
    from stf_bench.models import generation

    first_layers: list = []  # layer 0 of each model built below
    lean_layer = generation._lean_layer

    def counted_lean_layer(layer, hidden, *args):
        if any(layer is first for first in first_layers):
            seen.append(hidden.shape[1])
        return lean_layer(layer, hidden, *args)

    monkeypatch.setattr(generation, "_lean_layer", counted_lean_layer)

    image = Image.new("RGB", (40, 30), (200, 40, 90))
    for fast in ("true", "false"):
        lm = StfBenchLmms(preset="llava-tiny", device="cpu", dtype="float32", method="fastv", fast_paths=fast,
                          **{"method.k": 1, "method.r": 0.75})
        lm.show_progress = False
        lm.task_dict = {"t": {"test": [{"image": image}]}}
        gen = {"until": ["ASSISTANT:"], "max_new_tokens": 4, "temperature": 0}
        request = Instance("generate_until", ("What is this?", gen, lambda d: [d["image"]], 0, "t", "test"), idx=0,
                           metadata={"task": "t", "doc_id": 0, "repeats": 1})
        seen: list[int] = []
        first_layers.append(lm.model.model.language_model.layers[0])
        lm.model.model.language_model.layers[0].register_forward_hook(
            lambda m, a, o, seen=seen: seen.append(a[0].shape[1]))
        lm.generate_until([request])
        assert len(seen) >= 2 and seen[0] > 576  # the prompt with its 576 visual tokens
        assert set(seen[1:]) == {1}  # one prefill over the prompt, then one token per step
    seen.clear()
    model, processor = lm.model, lm.processor
    with torch.no_grad():
        model.generate(**_inputs(processor), max_new_tokens=4, do_sample=False)
    assert seen[1:] == [seen[0] + i for i in range(1, len(seen))]  # the whole sequence at every step


def test_a_fastv_that_drops_nothing_is_refused_before_any_work_and_r0_warns_once(capsys, caplog, monkeypatch):
    """`--method fastv` on a 2-layer model ran with k=2, dropped nothing, warned 11 times and was stored as
    `+ fastv`: refused now, with the valid range, before a model is built."""
    from stf_bench.cli import main

    assert main(["run", "--model", "llava-tiny", "--method", "fastv", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "fastv: k=2 leaves no layer to prune" in err and "valid: k in 1..1" in err
    from stf_bench import load_model
    from stf_bench.methods import fastv as fastv_module

    monkeypatch.setattr(fastv_module, "_WARNED", set())  # as in a fresh process
    with caplog.at_level("WARNING", logger="stf_bench.methods.fastv"):
        model, _ = load_model("llava-tiny", method="fastv", **{"method.k": 1, "method.r": 0.0})
        for _ in range(10):
            assert model.config.token_method is not None  # the config rebuilds its method on every read
    assert sum("r=0 drops no visual token" in r.getMessage() for r in caplog.records) == 1
