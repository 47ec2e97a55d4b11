"""MustDrop against the official code's own outputs on identical tensors (liuting20/MustDrop @ 909afa5; the committed
outputs and the commands that made them: tests/data/mustdrop/make_official.py), per-image token counts in a batch,
and decoding from the pruned KV cache equal to recomputation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, get_method
from stf_bench.methods.mustdrop import PRESETS, dual_attention_keep, key_set, window_merge
from stf_bench.models import load_model

OFFICIAL = torch.load(Path(__file__).parents[1] / "data" / "mustdrop" / "official.pt", weights_only=True)
# the tiny LLM has two layers: drop after each of them
TINY = {"method.first_layer": 0, "method.every": 1, "method.stages": 2, "method.global_thr": 0.011,
        "method.individual_thr": 0.01}


@pytest.mark.parametrize("case", range(len(OFFICIAL["merge"])))
def test_window_merge_equals_the_official_code(case):
    entry = OFFICIAL["merge"][case]
    got = window_merge(entry["hidden"], 24, 3, 0.8)
    assert got.shape == entry["merged"].shape
    assert torch.allclose(got, entry["merged"], atol=1e-6, rtol=0)


def test_the_official_cases_merge_different_numbers_of_windows():
    counts = [entry["merged"].shape[0] - 1 for entry in OFFICIAL["merge"]]
    assert len(set(counts)) == len(counts) and max(counts) < 576


@pytest.mark.parametrize("case", range(len(OFFICIAL["key_set"])))
def test_key_set_equals_the_official_code(case):
    entry = OFFICIAL["key_set"][case]
    attention = (entry["q"] @ entry["k"].transpose(-1, -2) / 2).softmax(-1)  # as the make script built it
    got = key_set(attention, 0.08)
    assert torch.equal(got, entry["index"])


@pytest.mark.parametrize("case", range(len(OFFICIAL["filter"])))
def test_dual_attention_filter_equals_the_official_code(case):
    entry = OFFICIAL["filter"][case]
    kept, keys = dual_attention_keep(entry["attention"], entry["keys"], entry["global_thr"], entry["individual_thr"])
    assert 0 < len(entry["kept"]) < entry["img_seq"]  # the case drops some tokens and keeps some
    assert torch.equal(kept, entry["kept"])
    assert torch.equal(keys, entry["new_keys"].reshape(-1))


def test_presets_are_the_published_thresholds_and_build():
    assert PRESETS[192] == {"global_thr": 0.001, "individual_thr": 0.001}
    assert PRESETS[128] == {"global_thr": 0.0012, "individual_thr": 0.001}
    assert PRESETS[64] == {"global_thr": 0.011, "individual_thr": 0.01}
    method = get_method("mustdrop")
    for args in PRESETS.values():
        built = method(ModelShape(), **args)
        assert built.pruning_layers() == [2, 6, 10, 14]
    assert method.defaults()["global_thr"] == PRESETS[128]["global_thr"]  # Table 4's setting


def test_declarations():
    described = get_method("mustdrop").describe()
    assert described["acts_on"] == "llm" and described["vision_hook"] == 1 and described["varying_tokens"]
    assert described["prunes_kv_cache"] and described["needs_attention"]
    paths = get_method("mustdrop").fast_paths()
    assert not paths.visual_cache and not paths.shared_prefill and not paths.lean_decode


def test_a_window_that_does_not_tile_the_grid_is_refused():
    with pytest.raises(StfBenchError, match="window=5 does not tile the 24 x 24 patch grid; valid"):
        get_method("mustdrop")(ModelShape(), window=5)


def _images() -> list[Image.Image]:
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return [Image.new("RGB", (64, 48), (120, 30, 200)), Image.fromarray(noise)]


def _inputs(processor, images, questions):
    processor.tokenizer.padding_side = "left"
    prompts = [f"USER: <image>\n{q} ASSISTANT:" for q in questions]
    return processor(images=images, text=prompts, return_tensors="pt", padding=True)


QUESTIONS = ("What is it?", "Which colour is the biggest shape in this image?")


def test_two_images_give_different_counts_and_each_row_equals_its_run_alone():
    model, processor = load_model("llava-tiny", method="mustdrop", **TINY)
    images = _images()
    with torch.no_grad():
        together = model(**_inputs(processor, images, QUESTIONS)).logits[:, -1]
        counts = list(model.model.token_method.run_summary()["visual_tokens_per_image"])
        alone = [model(**_inputs(processor, [im], (q,))).logits[0, -1] for im, q in zip(images, QUESTIONS)]
    assert counts[0] != counts[1] and max(counts) <= 576  # the flat image merges windows, the noise hardly any
    assert model.model.token_method.run_summary()["visual_tokens_per_image"][2:] == counts
    for b in range(2):
        assert torch.allclose(together[b], alone[b], atol=1e-5)
    schedules = model.model.token_method.schedules
    assert all(s[0] >= s[1] >= s[-1] for s in schedules)  # the LLM stage drops tokens after layers 0 and 1


def _recompute(model, inputs, steps: int) -> torch.Tensor:
    """Greedy tokens by recomputation: at every step the whole sequence through `forward_llm`, the prefill's drops
    decided on the prompt alone, no KV cache kept between steps."""
    inner, method = model.model, model.model.token_method
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    image = ids == model.config.image_token_id
    with torch.no_grad():
        features = inner.visual_tokens(inputs["pixel_values"])
        vision, inner.vision_context = inner.vision_context, None
        embeds = inner.get_input_embeddings()(ids.masked_fill(image, 0)).masked_scatter(image[..., None], features)
        prompt, out = ids.shape[1], []
        for _ in range(steps):
            hidden = method.forward_llm(inner.language_model, embeds, mask, torch.nn.functional.pad(
                image, (0, embeds.shape[1] - prompt)), features.shape[1], vision=vision, prompt_length=prompt)
            token = model.lm_head(hidden[:, -1]).argmax(-1)
            out.append(token)
            embeds = torch.cat([embeds, inner.get_input_embeddings()(token)[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return torch.stack(out, dim=1)


def test_cached_decoding_equals_recomputation():
    model, processor = load_model("llava-tiny", method="mustdrop", **TINY)
    inputs = _inputs(processor, _images(), QUESTIONS)
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True,
                                eos_token_id=None)[:, inputs["input_ids"].shape[1]:]
    assert torch.equal(cached, _recompute(model, inputs, 6))


@pytest.mark.parametrize("args", [TINY, {}])
def test_its_own_decode_loop_gives_the_tokens_of_generate(args):
    """MustDrop decodes through the base model's loop (`plans_decode`), not `generate`; same tokens, dropping
    inside the tiny LLM (TINY) or not (the defaults prune after layers 2, 6, ...: beyond its two)."""
    from test_fastv import assert_own_loop_answers_as_generate

    model, processor = load_model("llava-tiny", method="mustdrop", **args)
    assert_own_loop_answers_as_generate(model, processor)


def test_decoding_into_the_adapters_reserved_cache_equals_a_plain_cache():
    """Regression: the prefill pruned each layer's cache by assigning its `keys`, which the adapter's reserved
    cache (`generation.ReservedLayer`, room written in place) ignored: the next step wrote after the unpruned
    length and failed (a size mismatch) wherever MustDrop drops inside the LLM."""
    from stf_bench.models.generation import reserved_cache

    model, processor = load_model("llava-tiny", method="mustdrop", **TINY)
    inputs = _inputs(processor, _images(), QUESTIONS)
    with torch.no_grad():
        plain = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True, eos_token_id=None)
        reserved = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True, eos_token_id=None,
                                  past_key_values=reserved_cache(model, 6))
    assert torch.equal(reserved, plain)


def test_features_from_elsewhere_are_refused():
    model, processor = load_model("llava-tiny", method="mustdrop", **TINY)
    inputs = _inputs(processor, _images()[:1], QUESTIONS[:1])
    features = model.model.visual_tokens(inputs["pixel_values"])
    model.model.vision_context = None
    with pytest.raises(StfBenchError, match="reads what its vision stage found"):
        model.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    mm_encoder_outputs={"image": features})


def test_the_prefill_leaves_the_finally_kept_tokens_in_the_cache_from_the_first_pruning_layer_on():
    from transformers import DynamicCache

    model, processor = load_model("llava-tiny", method="mustdrop", **{**TINY, "method.first_layer": 1,
                                                                       "method.stages": 1})
    inputs = _inputs(processor, _images()[:1], QUESTIONS[:1])
    cache = DynamicCache()
    with torch.no_grad():
        model(**inputs, past_key_values=cache, use_cache=True)
    before = model.model.token_method.schedules[-1][1]  # entering layer 1, whose output is pruned
    text = inputs["input_ids"].shape[1] - 576
    full, pruned = (cache.layers[i].keys.shape[2] - text for i in range(2))
    assert before < 576 and full == before  # layer 0: every real visual token, the padding placeholders gone
    assert math.ceil(0.08 * before) <= pruned < before  # layer 1: the kept ones, the key set at least


def _tiny_llm_flops(model, layers: int, n: int, part: str = "llm") -> int:
    """calflops count of the tiny backbone cut to `layers` layers over n tokens (meta device)."""
    import copy

    from stf_bench.profile.flops import count_flops, counting_twin

    llm = copy.deepcopy(model.model.language_model)
    llm.config.num_hidden_layers = layers
    twin = counting_twin(llm)
    embeds = torch.empty(1, n, llm.config.hidden_size, device="meta")
    mask = torch.ones(1, n, dtype=torch.long, device="meta")
    module = twin if part == "llm" else twin.norm
    return count_flops(twin, lambda: twin(inputs_embeds=embeds, attention_mask=mask, use_cache=False), {"x": module})["x"]


def test_paper_flops_are_the_mean_of_each_images_per_layer_count():
    from stf_bench.profile.flops import paper_report

    model, processor = load_model("llava-tiny", method="mustdrop", **TINY)
    bound = paper_report(model, "x")
    assert bound.visual_tokens == 576 and "bound" in bound.details["flops_over"]
    with torch.no_grad():
        model(**_inputs(processor, _images(), QUESTIONS))
    schedules = model.model.token_method.schedules
    assert len(schedules) == 2 and schedules[0] != schedules[1] and all(len(set(s)) == 2 for s in schedules)
    want = []
    for n0, n1 in schedules:  # layer 0 on n0 tokens, layer 1 on n1 (the drop after layer 0), norm on n1
        per_layer = {n: _tiny_llm_flops(model, 2, n) - _tiny_llm_flops(model, 1, n) for n in (n0, n1)}
        rest = _tiny_llm_flops(model, 1, n0) - per_layer[n0]  # rotary embedding + final norm
        want.append(rest - _tiny_llm_flops(model, 1, n0, "norm") + _tiny_llm_flops(model, 1, n1, "norm")
                    + per_layer[n0] + per_layer[n1])
    report = paper_report(model, "x")
    assert report.tflops * 1e12 == pytest.approx(sum(want) / 2, rel=1e-12)
    assert report.details["visual_tokens_per_image"] == [s[0] for s in schedules]
    assert report.details["mean_visual_tokens"] == sum(s[0] for s in schedules) / 2


def test_prefill_flops_of_a_per_image_count_are_refused():
    from stf_bench.profile.flops import count_prefill

    model, _ = load_model("llava-tiny", method="mustdrop")
    with pytest.raises(StfBenchError, match="use --convention paper"):
        count_prefill(model, torch.ones(1, 600, dtype=torch.long))


def test_flops_cli_without_images_counts_the_bound_and_says_so(capsys):
    import json

    from stf_bench.cli import main

    assert main(["flops", "--model", "llava-1.5-7b", "--method", "mustdrop", "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["flops", "--model", "llava-1.5-7b", "--format", "json", "--no-store"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert report["tflops"] == base["tflops"] and report["visual_tokens"] == 576
    assert "bound" in report["details"]["flops_over"]
