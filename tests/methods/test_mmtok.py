"""MMTok against the official code's own outputs on identical tensors (Ironieser/MMTok @ d1522cd; the committed
outputs and the commands that made them: tests/data/mmtok/make_official.py), the question and padding reaching it
through the model, its presets, CLI listing, runs and FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, VisionContext, get_method
from stf_bench.methods import mmtok as mmtok_module
from stf_bench.methods.base import padding_patches
from stf_bench.methods.mmtok import PRESETS, keywords
from stf_bench.models import load_model
from stf_bench.models.conversation import vicuna_v1
from stf_bench.profile.flops import count_flops, counting_twin

DATA = Path(__file__).resolve().parents[1] / "data" / "mmtok"
OFFICIAL = torch.load(DATA / "official.pt", weights_only=True)
FACTS = json.loads((DATA / "official.json").read_text())
CASES = sorted({key.split(".")[0] for key in OFFICIAL if "." in key})


def build(**args):
    return get_method("mmtok")(ModelShape(), **args)


@pytest.mark.parametrize("case", CASES)
def test_kept_indices_and_tokens_equal_the_official_code(case):
    """Same kept indices (ascending) and the same tokens as `mm_coverage_selection`, padding excluded as LLaVA-1.5's
    `calculate_padding_patch_indices` says, at the published 64/128/192 settings."""
    k = int(case[1:].split("_")[0])
    size = OFFICIAL.get(f"{case}.size")
    padding = [] if size is None else padding_patches(*size.tolist(), 336, 14)
    ctx = VisionContext(grid=24, features=OFFICIAL["clip"][None], question_embeds=[OFFICIAL["text"]],
                        padding=[padding])
    method = build(**PRESETS[k])
    out = method.reduce(OFFICIAL["projected"][None], ctx)
    chosen = mmtok_module.coverage_select(OFFICIAL["text"], OFFICIAL["projected"], OFFICIAL["clip"], k, 0.5, 0.02,
                                          0.2, padding)
    assert chosen.tolist() == OFFICIAL[f"{case}.indices"].tolist()
    assert out.shape == (1, k, OFFICIAL["projected"].shape[1])
    torch.testing.assert_close(out[0], OFFICIAL[f"{case}.tokens"], rtol=0, atol=1e-6)
    assert not set(chosen.tolist()) & set(padding)
    other_question = mmtok_module.coverage_select(OFFICIAL["text"][:3], OFFICIAL["projected"], OFFICIAL["clip"], k,
                                                  0.5, 0.02, 0.2, padding)
    assert other_question.tolist() != chosen.tolist()  # the data exercise the question's term


def test_keywords_equal_the_official_text_processor():
    for question, official in FACTS["keywords"].items():
        assert keywords(question) == official, question


def test_padding_geometry_equals_the_official_one():
    for row in FACTS["padding"]:
        assert padding_patches(*row["size"], 336, 14) == row["indices"], row["size"]
    assert any(row["indices"] for row in FACTS["padding"]) and padding_patches(500, 500, 336, 14) == []


def test_fewer_unpadded_patches_than_tokens_keeps_distinct_patches():
    """Documented deviation: where the reference would repeat index 0, the padding exclusion is dropped."""
    gen = torch.Generator().manual_seed(0)
    padding = padding_patches(3000, 100, 336, 14)  # only a thin strip of rows is image
    assert 576 - len(padding) < 192
    chosen = mmtok_module.coverage_select(torch.randn(3, 8, generator=gen), torch.randn(576, 8, generator=gen),
                                          torch.randn(576, 4, generator=gen), 192, 0.5, 0.02, 0.2, padding)
    assert len(set(chosen.tolist())) == 192 and chosen.tolist() == sorted(chosen.tolist())


def test_presets_are_the_published_settings_and_token_counts():
    assert sorted(PRESETS) == [64, 128, 192]
    for tokens, args in PRESETS.items():
        model, processor = load_model("llava-tiny", method="mmtok", **{f"method.{k}": v for k, v in args.items()})
        assert model.config.num_visual_tokens == processor.num_visual_tokens == tokens
        assert args["alpha"] == 0.5 and (args["text_temperature"], args["vision_temperature"]) == (0.02, 0.2)
    assert build().args == PRESETS[64]


def test_too_many_tokens_is_refused_with_the_range():
    with pytest.raises(StfBenchError, match=r"tokens=600 is more than the 576 patches there are; valid: tokens in"):
        build(tokens=600)


def test_question_and_padding_reach_the_method_through_generate(monkeypatch):
    """The processor's question ids (keywords, each word alone, no BOS) and the image size travel through
    transformers' generate to `reduce`: the text rows are the LLM's embedding rows of those ids, and the padding is
    that of the original image size."""
    model, processor = load_model("llava-tiny", method="mmtok", **{"method.tokens": 32})
    seen = []
    real = mmtok_module.coverage_select

    def spy(text, projected, clip, k, *args):
        seen.append((text.detach().clone(), clip.shape, k, args[-1]))
        return real(text, projected, clip, k, *args)

    monkeypatch.setattr(mmtok_module, "coverage_select", spy)
    image = Image.new("RGB", (640, 427), (200, 30, 30))
    prompt = vicuna_v1("Is there a red car in the image?\nAnswer the question using a single word or phrase.")
    extra = processor.question_inputs([prompt], [image], model.config.token_method)
    ids = extra["question_ids"][0]
    want_ids = [i for word in ["there", "red", "car", "in", "image"] for i in processor.encode_chunk(word)[1:]]
    assert ids.tolist() == want_ids and extra["image_sizes"].tolist() == [[640, 427]]
    inputs = {**processor.text_inputs([prompt]), **extra,
              "pixel_values": processor.preprocess_images([image])}
    model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert len(seen) == 1
    text, clip_shape, k, padding = seen[0]
    torch.testing.assert_close(text, model.get_input_embeddings()(ids))
    assert clip_shape == (576, model.config.vision_config.hidden_size) and k == 32
    assert padding == padding_patches(640, 427, 336, 14) and padding


def test_methods_lists_mmtok_with_its_declarations(capsys):
    assert main(["methods", "--format", "json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["mmtok"]
    assert (row["acts_on"], row["text_conditioned"], row["reads_question"], row["after_projector"]) == \
        ("vision", True, True, True)
    assert [p["name"] for p in row["params"]] == ["tokens", "alpha", "text_temperature", "vision_temperature"]


def test_run_on_pope_and_gqa_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--model", "llava-tiny", "--method", "mmtok", "--method-args", "tokens=128", "--tasks", "pope,gqa",
            "--limit", "4", "--no-store", "--output-dir", str(tmp_path / "out"), "--format", "json", "--no-progress"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"pope", "gqa"} and 0 <= scores["pope"]["f1"] <= 100


def test_flops_is_the_backbone_over_the_kept_tokens(capsys):
    """The paper convention: a fixed count, so the figure is the 32-layer Vicuna-7B backbone counted apart over 128
    tokens, and lies just above its closed-form matmul count."""
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "mmtok", "--method-args", "tokens=128",
                 "--format", "json", "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    model, _ = load_model("llava-1.5-7b", random_weights=True, device="meta")
    twin = counting_twin(model.model.language_model)
    embeds = torch.empty(1, 128, 4096, device="meta")
    mask = torch.ones(1, 128, dtype=torch.long, device="meta")
    count = count_flops(twin, lambda: twin(inputs_embeds=embeds, attention_mask=mask, use_cache=False),
                        {"x": twin})["x"]
    assert report["tflops"] * 1e12 == pytest.approx(count, rel=1e-12)
    n, h, f = 128, 4096, 11008
    matmuls = 32 * (2 * n * h * 4 * h + 2 * n * h * 3 * f + 2 * 2 * n * n * h)
    assert matmuls < report["tflops"] * 1e12 < matmuls * 1.1
    assert report["visual_tokens"] == 128 and report["details"]["method"] == "mmtok"


def test_question_inputs_refuse_two_images_in_one_prompt_and_skip_other_methods():
    model, processor = load_model("llava-tiny", method="mmtok")
    image = Image.new("RGB", (32, 32))
    two = vicuna_v1("<image>\n<image>\nSame place?")
    with pytest.raises(StfBenchError, match="mmtok reads one question per image; give one image per prompt"):
        processor.question_inputs([two], [image, image], model.config.token_method)
    assert processor.question_inputs([vicuna_v1("Any?")], [image], get_method("visionzip")(ModelShape())) == {}
    assert processor.question_inputs([vicuna_v1("Any?")], [image], None) == {}
