"""Checkpoint formats 1-4, each written here by the test itself, loaded by `load_model`, and compared against an
independent reference computation (transformers' own LLaVA, or CLIP + Llama + projector math written below)."""

import json
import time

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from stf_bench import load_model
from stf_bench.errors import StfBenchError
from stf_bench.models.tokenizer import build_tiny_tokenizer

VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=24, num_attention_heads=2, image_size=336,
              patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=260, max_position_embeddings=1024, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
C, H = VISION["hidden_size"], TEXT["hidden_size"]


def _pixels(seed: int = 0, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 336, 336, generator=torch.Generator().manual_seed(seed))


def _text_ids(processor, n_visual: int, batch: int) -> torch.Tensor:
    prompt = "USER: <image>\nWhat is shown? ASSISTANT:"
    inputs = processor.text_inputs([prompt] * batch)
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == n_visual * batch
    return inputs["input_ids"]


def _reference_logits(vision: CLIPVisionModel, llm: LlamaForCausalLM, project, pixels, ids, image_id):
    """LLaVA by hand: ViT hidden states -> `project` -> spliced into the LLM's embeddings at the placeholders."""
    with torch.no_grad():
        hs = vision(pixels, output_hidden_states=True).hidden_states
        feats = project(hs)  # (B, N, H)
        emb = llm.get_input_embeddings()(ids.clamp(max=llm.config.vocab_size - 1))
        for b in range(ids.shape[0]):
            pos = (ids[b] == image_id).nonzero().flatten()
            emb[b, pos] = feats[b]
        return llm(inputs_embeds=emb).logits


def _mlp(w1, b1, w2, b2, x):
    return torch.nn.functional.gelu(x @ w1.T + b1) @ w2.T + b2


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.05


def _save_original(tmp_path, vision, llm, projector_state, extra_cfg=None):
    """Original-LLaVA layout: model.layers.*, model.vision_tower.vision_tower.vision_model.*, model.mm_projector*."""
    state = {}
    for k, v in llm.state_dict().items():
        state[k] = v.clone()  # model.layers..., model.embed_tokens, model.norm, lm_head
    for k, v in vision.state_dict().items():
        if not k.endswith("position_ids"):
            state["model.vision_tower.vision_tower.vision_model." + k] = v.clone()  # the release's layout
    state.update(projector_state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    cfg = {**TEXT, "model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"],
           "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": C, "mm_vision_select_layer": -2,
           "mm_vision_select_feature": "patch", "mm_vision_tower": str(tmp_path / "clip"), "image_aspect_ratio": "pad",
           "mm_use_im_start_end": False, **(extra_cfg or {})}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "clip").mkdir()
    vision.config.save_pretrained(tmp_path / "clip")
    tok = build_tiny_tokenizer()
    tok.save_pretrained(tmp_path)
    return tmp_path


def _modules(seed=0):
    torch.manual_seed(seed)
    vision = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    llm = LlamaForCausalLM(LlamaConfig(**TEXT)).eval()
    return vision, llm


def test_format1_transformers_llava_matches_transformers_forward(tmp_path):
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**{**TEXT, "vocab_size": 261}),
                      image_token_index=260)
    ref = LlavaForConditionalGeneration(cfg).eval()
    ref.save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    model, processor = load_model(tmp_path)
    assert model.num_visual_tokens == 576 and model.config.projector_type == "mlp2x_gelu"
    pixels = _pixels()
    ids = _text_ids(processor, 576, 2)
    with torch.no_grad():
        want_tokens = ref.model.get_image_features(pixel_values=pixels).pooler_output
        assert torch.allclose(model.visual_tokens(pixels), torch.stack(list(want_tokens)), atol=1e-5)
        want = ref(input_ids=ids, pixel_values=pixels).logits
        got = model(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(got, want, atol=1e-4)


def test_format2_original_llava_matches_reference(tmp_path):
    vision, llm = _modules(1)
    w1, b1, w2, b2 = _rand(H, C, seed=1), _rand(H, seed=2), _rand(H, H, seed=3), _rand(H, seed=4)
    _save_original(tmp_path, vision, llm, {"model.mm_projector.0.weight": w1, "model.mm_projector.0.bias": b1,
                                           "model.mm_projector.2.weight": w2, "model.mm_projector.2.bias": b2})
    model, processor = load_model(tmp_path)
    assert model.config.projector_type == "mlp2x_gelu" and model.num_visual_tokens == 576
    image_id = processor.image_token_id
    assert image_id == TEXT["vocab_size"]  # <image> added after the vocab: outside the embedding table
    pixels, ids = _pixels(1), _text_ids(processor, 576, 2)
    want = _reference_logits(vision, llm, lambda hs: _mlp(w1, b1, w2, b2, hs[-2][:, 1:]), pixels, ids, image_id)
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(got, want, atol=1e-4)


def _stf_reference(hs, mb, stf):
    """Released MBTF+STF written out: blocks [-2, 21, ..., 3], per-token MLP, 2x2 channel-major regroup, MLP."""
    x = torch.cat([hs[i][:, 1:] for i in (-2, 21, 18, 15, 12, 9, 6, 3)], dim=-1)
    x = _mlp(*mb, x)  # (B, 576, C)
    b = x.shape[0]
    grid = x.view(b, 24, 24, C)
    fused = torch.empty(b, 144, 4 * C)
    for i in range(12):
        for j in range(12):
            for dy in range(2):
                for dx in range(2):
                    fused[:, i * 12 + j, dy * 2 + dx::4] = grid[:, 2 * i + dy, 2 * j + dx]
    return _mlp(*stf, fused)


def _stf_projector_state(seed=10):
    mb = (_rand(4 * C, 8 * C, seed=seed), _rand(4 * C, seed=seed + 1), _rand(C, 4 * C, seed=seed + 2), _rand(C, seed=seed + 3))
    stf = (_rand(16 * C, 4 * C, seed=seed + 4), _rand(16 * C, seed=seed + 5), _rand(H, 16 * C, seed=seed + 6),
           _rand(H, seed=seed + 7))
    state = {}
    for prefix, (wa, ba, wb, bb) in (("model.mm_projector_crosslayer.", mb), ("model.mm_projector.", stf)):
        state.update({prefix + "0.weight": wa, prefix + "0.bias": ba, prefix + "2.weight": wb, prefix + "2.bias": bb})
    return mb, stf, state


def test_format3_stf_release_matches_reference(tmp_path):
    vision, llm = _modules(2)
    mb, stf, state = _stf_projector_state()
    _save_original(tmp_path, vision, llm, state)
    model, processor = load_model(tmp_path)
    assert model.config.projector_type == "mbtf+stf" and model.num_visual_tokens == 144
    assert model.config.mbtf_blocks == 8
    pixels, ids = _pixels(2), _text_ids(processor, 144, 2)
    with torch.no_grad():
        hs = vision(pixels, output_hidden_states=True).hidden_states
        assert torch.allclose(model.visual_tokens(pixels), _stf_reference(hs, mb, stf), atol=1e-5)
        got = model(input_ids=ids, pixel_values=pixels).logits
    want = _reference_logits(vision, llm, lambda hs: _stf_reference(hs, mb, stf), pixels, ids, processor.image_token_id)
    assert torch.allclose(got, want, atol=1e-4)


def test_format3_stage1_projector_bin_weights_only(tmp_path, tiny_model):
    model, _ = tiny_model("stf-tiny")
    c = model.config.vision_config.hidden_size
    h = model.config.text_config.hidden_size
    state = {"model.mm_projector_crosslayer.0.weight": _rand(4 * c, 8 * c, seed=30),
             "model.mm_projector_crosslayer.0.bias": _rand(4 * c, seed=31),
             "model.mm_projector_crosslayer.2.weight": _rand(c, 4 * c, seed=32),
             "model.mm_projector_crosslayer.2.bias": _rand(c, seed=33),
             "model.mm_projector.0.weight": _rand(16 * c, 4 * c, seed=34), "model.mm_projector.0.bias": _rand(16 * c, seed=35),
             "model.mm_projector.2.weight": _rand(h, 16 * c, seed=36), "model.mm_projector.2.bias": _rand(h, seed=37)}
    torch.save(state, tmp_path / "mm_projector.bin")
    loaded, _ = load_model("stf-tiny", projector_weights=tmp_path / "mm_projector.bin")
    assert torch.equal(loaded.model.multi_modal_projector.mbtf[0].weight, state["model.mm_projector_crosslayer.0.weight"])
    assert torch.equal(loaded.model.multi_modal_projector.stf[2].bias, state["model.mm_projector.2.bias"])
    # a pickle carrying code is refused, not executed
    torch.save({"model.mm_projector.0.weight": object()}, tmp_path / "evil.bin")
    with pytest.raises(StfBenchError, match="weights-only"):
        load_model("stf-tiny", projector_weights=tmp_path / "evil.bin")


def test_format4_save_pretrained_round_trips_exactly(tmp_path):
    model, processor = load_model("stf-tiny", k=2, e=2)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor2 = load_model(tmp_path)
    assert again.config.stf_e == 2 and again.num_visual_tokens == 288 == processor2.num_visual_tokens
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = _text_ids(processor2, 288, 1)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, pixel_values=_pixels(3, 1)).logits,
                           again(input_ids=ids, pixel_values=_pixels(3, 1)).logits)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    vision, llm = _modules(3)
    _save_original(tmp_path, vision, llm, {"model.mm_projector.0.weight": _rand(H, C + 1, seed=1),
                                           "model.mm_projector.0.bias": _rand(H, seed=2),
                                           "model.mm_projector.2.weight": _rand(H, H, seed=3),
                                           "model.mm_projector.2.bias": _rand(H, seed=4)})
    with pytest.raises(StfBenchError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "model.multi_modal_projector.linear_1.weight" in msg and f"[{H}, {C + 1}]" in msg and f"[{H}, {C}]" in msg


def test_missing_key_is_named(tmp_path):
    vision, llm = _modules(4)
    _save_original(tmp_path, vision, llm, {"model.mm_projector.0.weight": _rand(H, C, seed=1),
                                           "model.mm_projector.0.bias": _rand(H, seed=2)})
    with pytest.raises(StfBenchError, match="lacks model.multi_modal_projector.linear_2"):
        load_model(tmp_path)


def test_hub_id_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(StfBenchError, match="hf download visresearch/LLaVA-STF"):
        load_model("stf-7b")
    with pytest.raises(StfBenchError, match="local hub cache"):
        load_model("someone/some-llava")
    assert time.monotonic() - start < 30


def test_unknown_names_and_files(tmp_path):
    with pytest.raises(StfBenchError, match="stf-tiny"):
        load_model("no-such-model")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(StfBenchError, match="directory"):
        load_model(tmp_path / "w.bin")
    with pytest.raises(StfBenchError, match="no released weights"):
        load_model("avgpool-7b")


def test_format1_legacy_llava_hf_key_layout(tmp_path):
    """The hub's llava-hf checkpoints use the transformers 4.x layout (language_model.model.*, vision_tower.*)."""
    from safetensors.torch import load_file

    torch.manual_seed(5)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**{**TEXT, "vocab_size": 261}),
                      image_token_index=260)
    ref = LlavaForConditionalGeneration(cfg).eval()
    ref.save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    legacy = {}
    for key, value in load_file(tmp_path / "model.safetensors").items():
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = "vision_tower.vision_model." + key[len("vision_tower."):]  # the hub's CLIP layout
        legacy[key] = value
    assert any(k.startswith("language_model.model.layers.") for k in legacy)
    assert "language_model.lm_head.weight" in legacy and "vision_tower.vision_model.post_layernorm.weight" in legacy
    save_file(legacy, str(tmp_path / "model.safetensors"))
    model, processor = load_model(tmp_path)
    pixels, ids = _pixels(4, 1), _text_ids(processor, 576, 1)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids, pixel_values=pixels).logits,
                              ref(input_ids=ids, pixel_values=pixels).logits, atol=1e-4)


def test_export_llava_hf_loads_in_transformers_with_identical_logits(tmp_path):
    from transformers import AutoProcessor

    from stf_bench.models.export import export_llava_hf

    model, processor = load_model("llava-tiny")
    export_llava_hf(model, processor, tmp_path)
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    hf_processor = AutoProcessor.from_pretrained(tmp_path)
    from PIL import Image

    image = Image.new("RGB", (336, 336), (10, 120, 240))
    ours = processor(images=[image], text=["USER: <image>\nColour? ASSISTANT:"])
    theirs = hf_processor(images=[image], text=["USER: <image>\nColour? ASSISTANT:"], return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**ours).logits, hf(**theirs).logits, atol=1e-5)
    with pytest.raises(StfBenchError, match="mlp2x_gelu"):
        export_llava_hf(load_model("stf-tiny")[0], processor, tmp_path / "x")


def test_parse_dtype_one_table_for_loader_and_adapter():
    from stf_bench.models.loading import parse_dtype

    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("half") is torch.float16
    assert parse_dtype(None, "cpu") is torch.float32 and parse_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(StfBenchError, match="unknown dtype 'int3'; valid: float32"):
        parse_dtype("int3")


def test_base_weights_fill_the_llm_and_vision_tower_and_leave_the_projector_random(tmp_path, monkeypatch):
    """`load_base_model` (stf-bench train on a full-size preset): the LLM from a Llama-layout checkpoint (`model.*`,
    `lm_head.*`, as lmsys/vicuna-7b-v1.5 ships), the tower from a CLIPModel (`vision_model.*`, its text half
    ignored), the projector the seeded random one; a missing tensor is named. Checked on llava-tiny's shapes."""
    from stf_bench.models import loading

    source, _ = load_model("llava-tiny", seed=7)
    state = {k: v.clone().contiguous() for k, v in source.state_dict().items()}
    llm = {k.replace("model.language_model.", "model.", 1): v for k, v in state.items()
           if k.startswith(("model.language_model.", "lm_head."))}
    clip = {k.replace("model.vision_tower.", "vision_model.", 1): v for k, v in state.items()
            if k.startswith("model.vision_tower.")}
    clip["text_model.embeddings.token_embedding.weight"] = torch.zeros(3, 2)  # CLIPModel's text half: not ours
    (tmp_path / "llm").mkdir()
    (tmp_path / "clip").mkdir()
    save_file(llm, tmp_path / "llm" / "model.safetensors")
    save_file(clip, tmp_path / "clip" / "model.safetensors")
    monkeypatch.setattr(loading, "base_weight_dirs", lambda name: (tmp_path / "llm", tmp_path / "clip"))
    model, _ = loading.load_base_model("llava-tiny", seed=42)
    random, _ = load_model("llava-tiny", seed=42)
    ours, theirs = model.state_dict(), random.state_dict()
    for key, value in ours.items():
        expected = theirs[key] if key.startswith("model.multi_modal_projector.") else state[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(ours["lm_head.weight"], theirs["lm_head.weight"])  # the base weights did replace them
    del llm["model.norm.weight"]
    save_file(llm, tmp_path / "llm" / "model.safetensors")
    with pytest.raises(StfBenchError, match="lacks model.language_model.norm.weight"):
        loading.load_base_model("llava-tiny", seed=42)


def test_base_weights_missing_offline_name_every_repo_and_the_command(tmp_path, monkeypatch):
    """Offline with a cache that holds only a tokenizer of Vicuna (not its weights) and no CLIP: one error naming both
    repos, `hf download` for each, and --init random."""
    import huggingface_hub.constants

    from stf_bench.models import loading

    snapshot = tmp_path / "models--lmsys--vicuna-7b-v1.5" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer_config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StfBenchError) as caught:
        loading.base_weight_dirs("stf-7b")
    message = str(caught.value)
    assert "base weights of lmsys/vicuna-7b-v1.5 and openai/clip-vit-large-patch14-336" in message
    assert "`hf download lmsys/vicuna-7b-v1.5`" in message and "--init random" in message
    (snapshot / "model.safetensors").write_bytes(b"")  # now the weights are there (as far as the check goes)
    with pytest.raises(StfBenchError, match="base weights of openai/clip-vit-large-patch14-336, not"):
        loading.base_weight_dirs("stf-7b")
