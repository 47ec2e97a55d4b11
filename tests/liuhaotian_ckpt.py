"""A tiny checkpoint in exactly the file layout of `liuhaotian/llava-v1.5-7b` (docs/facts.md section 2), and a tiny
CLIP directory for `vision_tower=`: sharded `pytorch_model-0000N-of-00002.bin` with their index, `mm_projector.bin`
beside them, a sentencepiece-only tokenizer (`tokenizer.model`, no `tokenizer.json`), no vision tower weights."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=24, num_attention_heads=2, image_size=336,
              patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16)
CLIP_TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 vocab_size=64, max_position_embeddings=16, projection_dim=16)
SP_VOCAB = 320
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=SP_VOCAB, max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)
_ADDED = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
CORPUS = ["USER: Is there a dog in the image? Answer the question using a single word or phrase. ASSISTANT: yes",
          "A chat between a curious human and an artificial intelligence assistant. no, a cat and a person.",
          "What is the color of the car? Which option is correct? A B C D 0 1 2 3 4 5 6 7 8 9"] * 20


class _TrainingArguments:
    """Stands in for the pickled `TrainingArguments` the release carries: loading it would run code."""


def train_sentencepiece(path: Path) -> None:
    """A Llama-style sentencepiece BPE model (byte fallback, <unk>=0 <s>=1 </s>=2), trained in well under a second."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=buffer, vocab_size=SP_VOCAB,
                                   model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   character_coverage=1.0, minloglevel=2)
    path.write_bytes(buffer.getvalue())


def write_tiny_clip(folder: Path, seed: int = 0) -> tuple[Path, CLIPVisionModel]:
    """A tiny CLIP in the layout of `openai/clip-vit-large-patch14-336`: a CLIPModel (vision and text towers, keys
    `vision_model.*` / `text_model.*`, config with `vision_config`); returns its vision tower for references."""
    torch.manual_seed(seed)
    clip = CLIPModel(CLIPConfig(vision_config=VISION, text_config=CLIP_TEXT, projection_dim=16)).eval()
    clip.save_pretrained(folder)
    vision = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    vision.load_state_dict(clip.vision_model.state_dict())
    return folder, vision


def write_liuhaotian_checkpoint(folder: Path, seed: int = 0, tokenizer_model: Path | None = None,
                                model_type: str = "llava", legacy: bool | None = False,
                                ) -> tuple[Path, LlamaForCausalLM, dict]:
    """Write the checkpoint; returns (folder, the LLM, the projector tensors) for reference computations.

    `tokenizer_model`: a sentencepiece model to ship instead of the tiny trained one (e.g. the real LLaMA one in
    tests/data/llama; the LLM's vocabulary follows it); `model_type`: `llava` (2023) or `llava_llama`; `legacy`:
    what tokenizer_config.json says (None: the key left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_model is not None:
        (folder / "tokenizer.model").write_bytes(tokenizer_model.read_bytes())
    else:
        train_sentencepiece(folder / "tokenizer.model")
    import sentencepiece as spm

    text = {**TEXT, "vocab_size": spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()}
    torch.manual_seed(seed)
    llm = LlamaForCausalLM(LlamaConfig(**text)).eval()
    with torch.no_grad():  # the release is float16: round here so that the returned LLM is what the files hold
        for param in llm.parameters():
            param.copy_(param.half().float())
    c, h = VISION["hidden_size"], TEXT["hidden_size"]
    gen = torch.Generator().manual_seed(seed + 1)
    projector = {"model.mm_projector.0.weight": torch.randn(h, c, generator=gen) * 0.05,
                 "model.mm_projector.0.bias": torch.randn(h, generator=gen) * 0.05,
                 "model.mm_projector.2.weight": torch.randn(h, h, generator=gen) * 0.05,
                 "model.mm_projector.2.bias": torch.randn(h, generator=gen) * 0.05}
    projector = {k: v.half().float() for k, v in projector.items()}
    state = {k: v.clone().half() for k, v in llm.state_dict().items()}
    state.update({k: v.half() for k, v in projector.items()})
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for name, names in shards.items():
        torch.save({k: state[k] for k in names}, folder / name)
        weight_map.update(dict.fromkeys(names, name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    # the stage-1 projector of the release: other values than the fine-tuned one, never to be loaded as the model's
    torch.save({k: torch.zeros_like(v).half() for k, v in projector.items()}, folder / "mm_projector.bin")
    (folder / "training_args.bin").write_bytes(pickle.dumps(_TrainingArguments()))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    config = {"_name_or_path": "./checkpoints/vicuna-7b-v1-5", "architectures": ["LlavaLlamaForCausalLM"],
              **text, "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "image_aspect_ratio": "pad",
              "initializer_range": 0.02, "max_length": 4096, "mm_hidden_size": c, "mm_projector_type": "mlp2x_gelu",
              "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
              "mm_vision_select_layer": -2, "mm_vision_tower": "openai/clip-vit-large-patch14-336",
              "model_type": model_type, "pretraining_tp": 1, "rope_scaling": None, "tie_word_embeddings": False,
              "torch_dtype": "float16", "transformers_version": "4.31.0", "tune_mm_mlp_adapter": False,
              "tune_mm_vision_resampler": False, "unfreeze_mm_vision_tower": False, "use_cache": True,
              "use_mm_proj": True}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "max_length": 4096}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": {**_ADDED, "content": "<s>"},
        "clean_up_tokenization_spaces": False, "eos_token": {**_ADDED, "content": "</s>"},
        **({} if legacy is None else {"legacy": legacy}), "model_max_length": 2048, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer", "unk_token": {**_ADDED, "content": "<unk>"}}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}))
    return folder, llm, projector

