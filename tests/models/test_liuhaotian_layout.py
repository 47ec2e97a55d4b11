"""The original LLaVA-1.5 checkpoint (`liuhaotian/llava-v1.5-7b`) in its exact file layout: `model_type: llava` with
`LlavaLlamaForCausalLM`, index + `.bin` shards, `mm_projector.bin` beside them, sentencepiece-only tokenizer and no
vision tower weights (tests/liuhaotian_ckpt.py writes it tiny)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from stf_bench import load_model
from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.models.loading import checkpoint_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from liuhaotian_ckpt import write_liuhaotian_checkpoint, write_tiny_clip  # noqa: E402

pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(checkpoint dir, CLIP dir, vision tower, LLM, projector tensors)."""
    root = tmp_path_factory.mktemp("liuhaotian")
    ckpt, llm, projector = write_liuhaotian_checkpoint(root / "llava-v1.5-7b")
    clip, vision = write_tiny_clip(root / "clip-vit-large-patch14-336")
    return ckpt, clip, vision, llm, projector


def test_fixture_is_the_release_layout(release):
    ckpt = release[0]
    names = {p.name for p in ckpt.iterdir()}
    assert {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
            "mm_projector.bin", "tokenizer.model", "tokenizer_config.json", "config.json"} <= names
    assert "tokenizer.json" not in names and not any(n.endswith(".safetensors") for n in names)
    raw = json.loads((ckpt / "config.json").read_text())
    assert raw["model_type"] == "llava" and raw["architectures"] == ["LlavaLlamaForCausalLM"]
    assert "text_config" not in raw and raw["mm_vision_tower"] == "openai/clip-vit-large-patch14-336"


def test_formats_are_told_apart_by_content(release):
    raw = json.loads((release[0] / "config.json").read_text())
    assert checkpoint_format(raw) == "original"
    assert checkpoint_format({**raw, "model_type": "llava_llama"}) == "original"
    assert checkpoint_format({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
                              "text_config": {}, "vision_config": {}}) == "llava_hf"
    assert checkpoint_format({"model_type": "stf_llava"}) == "stf_llava"
    with pytest.raises(StfBenchError, match="neither transformers format"):
        checkpoint_format({"model_type": "llava"})
    with pytest.raises(StfBenchError, match="'bert'"):
        checkpoint_format({"model_type": "bert"})


def test_loads_with_the_shards_and_matches_a_reference_forward(release):
    ckpt, clip, vision, llm, projector = release
    model, processor = load_model(ckpt, vision_tower=str(clip))
    assert model.config.projector_type == "mlp2x_gelu" and model.num_visual_tokens == 576
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(ckpt / "tokenizer.model"))
    text = "USER: Is there a dog in the image?\nASSISTANT: yes 中"
    assert processor.tokenizer(text)["input_ids"] == [1, *sp.encode(text)]  # tokenizer.model, read as Llama does
    image_id = processor.image_token_id
    assert image_id == llm.config.vocab_size  # <image> added after the sentencepiece vocab
    ids = processor.text_inputs(["USER: <image>\nIs there a dog in the image? ASSISTANT:"])["input_ids"]
    assert int((ids == image_id).sum()) == 576
    pixels = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(3))
    w1, b1 = projector["model.mm_projector.0.weight"], projector["model.mm_projector.0.bias"]
    w2, b2 = projector["model.mm_projector.2.weight"], projector["model.mm_projector.2.bias"]
    with torch.no_grad():
        feats = vision(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        tokens = torch.nn.functional.gelu(feats @ w1.T + b1) @ w2.T + b2
        emb = llm.get_input_embeddings()(ids.clamp(max=image_id - 1))
        emb[ids == image_id] = tokens.reshape(-1, tokens.shape[-1])
        want = llm(inputs_embeds=emb).logits
        got = model(input_ids=ids, pixel_values=pixels).logits
    # the fine-tuned projector from the shards, not the zeros of the mm_projector.bin beside them
    assert torch.allclose(got, want, atol=1e-4)


def test_missing_vision_tower_offline_names_the_model_arg(release, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(StfBenchError, match=r"vision_tower=DIR"):
        load_model(release[0])
    with pytest.raises(StfBenchError, match=r"vision_tower=.*no such directory"):
        load_model(release[0], vision_tower=str(tmp_path / "nowhere"))


def test_a_missing_shard_is_named(release, tmp_path):
    ckpt = shutil.copytree(release[0], tmp_path / "ckpt")
    (ckpt / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(StfBenchError, match="pytorch_model-00002-of-00002.bin"):
        load_model(ckpt, vision_tower=str(release[1]))


def test_run_pope_on_the_release_layout_exits_0(release, tmp_path, capsys):
    ckpt, clip = release[0], release[1]
    code = main(["run", "--model", str(ckpt), "--model-args", f"vision_tower={clip}", "--tasks", "pope",
                 "--limit", "2", "--device", "cpu", "--output-dir", str(tmp_path / "out"), "--no-progress",
                 "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    assert set(json.loads(out)) == {"pope"}
