"""`load_model`: presets, local checkpoints and hub ids -> (model, processor).

Checkpoint formats understood (docs/facts.md section 2):
1. transformers-format LLaVA (`llava-hf/llava-1.5-7b-hf`; `model_type: llava`), old and new key layouts;
2. original-LLaVA format (`liuhaotian/llava-v1.5-7b`: `model_type` `llava` or `llava_llama`, Llama fields at the
   top level, `LlavaLlamaForCausalLM`; sharded `pytorch_model-*.bin` with an index; sentencepiece tokenizer);
3. the LLaVA-STF release (original format plus `mm_projector_crosslayer`), and its stage-1 `mm_projector.bin`
   through `projector_weights=`;
4. our own `save_pretrained` output (`model_type: stf_llava`).
Formats 1 and 4 load through transformers' `from_pretrained` (`key_mapping=` renames the older layouts; its loading
info, missing / unexpected / mismatched keys, is checked here); formats 2 and 3 have no transformers class, so their
keys are mapped by hand (`_from_original_llava`). Pickled `.bin` files are read only with
`torch.load(weights_only=True)`; nothing runs remote code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import socket
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, GenerationConfig, LlamaConfig

from stf_bench.compat import from_pretrained_kwargs
from stf_bench.errors import StfBenchError
from stf_bench.models.input_ids import SlowLlamaTokenizer
from stf_bench.models.modeling import StfLlavaConfig, StfLlavaForConditionalGeneration
from stf_bench.models.partitioned import write_weights
from stf_bench.models.presets import (
    CLIP_L_336,
    LLM_TOKENIZERS,
    PRESETS,
    check_model_name,
    get_preset,
    preset_config,
    split_overrides,
)
from stf_bench.models.processing import StfLlavaProcessor, clip_image_processor
from stf_bench.models.tokenizer import IMAGE_TOKEN, build_tiny_tokenizer

log = logging.getLogger(__name__)
CLIP_L_336_ID = "openai/clip-vit-large-patch14-336"
IGNORED_KEYS = re.compile(r"(position_ids|rotary_emb\.inv_freq)$")  # buffers some checkpoints carry


def load_model(name_or_path: str | os.PathLike, *, random_weights: bool = False, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, **overrides) -> tuple[StfLlavaForConditionalGeneration, StfLlavaProcessor]:
    """Build or load a model of the family and its processor.

    `name_or_path`: a preset (`stf-7b`, `stf-tiny`, ...), a local checkpoint directory or a hub id. `random_weights`
    builds a full-size preset from its config alone (latency and FLOPs do not depend on weight values);
    `device="meta"` allocates nothing. Overrides: `k`, `e`, `mbtf_blocks`, ... (config) and `attn_implementation`,
    `seed`, `projector_weights` (a stage-1 `mm_projector.bin` or safetensors), `vision_tower` (a local CLIP dir).
    """
    name = str(name_or_path)
    device = torch.device(device or "cpu")
    dtype = parse_dtype(dtype, device)
    config_overrides, options = split_overrides(overrides)
    check_model_name(name)  # an unknown preset, a missing path or a file: one clear error
    if name in PRESETS:
        preset = get_preset(name)
        if preset.tiny or random_weights:
            config = preset_config(name, **config_overrides)
            _set_attn(config, options)
            model = build_random(config, device=device, dtype=dtype, seed=options.get("seed", 0))
            if preset.shipped and device.type != "meta":
                from stf_bench.models.default_model import load_shipped

                load_shipped(model, preset.shipped)
            tokenizer, slow = (build_tiny_tokenizer(), None) if preset.tiny else _cached_tokenizer(
                preset.weights or LLM_TOKENIZERS[preset.llm], config.image_token_index)
            processor = _processor(config, tokenizer, slow)
        else:
            if preset.weights is None:
                raise StfBenchError(f"preset {name!r} has no released weights; pass random_weights=True "
                                    f"(--random-weights) to build it untrained, or a checkpoint directory you trained")
            preset_config(name, **config_overrides)  # an impossible k/e is named before any download
            model, processor = load_checkpoint(fetch(preset.weights), device=device, dtype=dtype, options=options,
                                               config_overrides=config_overrides)
    elif Path(name).expanduser().is_dir():
        model, processor = load_checkpoint(Path(name).expanduser(), device=device, dtype=dtype, options=options,
                                           config_overrides=config_overrides)
    else:  # a hub id: check_model_name lets nothing else through
        model, processor = load_checkpoint(fetch(name), device=device, dtype=dtype, options=options,
                                           config_overrides=config_overrides)
    if options.get("projector_weights"):
        load_projector_weights(model, options["projector_weights"])
    model.eval()
    return model, processor


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(dtype: torch.dtype | str | None, device: torch.device | str = "cpu") -> torch.dtype:
    """'bf16' -> torch.bfloat16; None or 'auto' -> the device's default (bfloat16 on CUDA, float32 elsewhere)."""
    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise StfBenchError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}") from None


def _set_attn(config: StfLlavaConfig, options: dict) -> None:
    attn = options.get("attn_implementation")
    if attn:
        if attn not in ("eager", "sdpa", "flash_attention_2"):
            raise StfBenchError(f"unknown attn_implementation {attn!r}; valid: eager, sdpa, flash_attention_2")
        for cfg in (config, config.text_config, config.vision_config):
            cfg._attn_implementation = attn


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_random(config: StfLlavaConfig, *, device: torch.device, dtype: torch.dtype, seed: int = 0
                 ) -> StfLlavaForConditionalGeneration:
    """Instantiate with deterministic random weights (fixed seed, global RNG untouched); on `meta`, nothing allocated."""
    with torch.random.fork_rng(devices=[]), _default_dtype(dtype), torch.device(device):
        torch.manual_seed(seed)
        return StfLlavaForConditionalGeneration(config)


def _processor(config: StfLlavaConfig, tokenizer, slow: SlowLlamaTokenizer | None = None) -> StfLlavaProcessor:
    """The processor of `config`; `slow`: the checkpoint's `tokenizer.model` as LLaVA's slow tokenizer reads it
    (`SlowLlamaTokenizer.from_directory`), which then builds every input id."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return StfLlavaProcessor(tokenizer, clip_image_processor(config.vision_config.image_size), config.num_visual_tokens,
                             pad_to_square=config.image_aspect_ratio == "pad", slow_tokenizer=slow)


def _cached_tokenizer(repo: str | None, image_token_index: int | None = None):
    """(tokenizer, slow tokenizer or None): the real ones if the repo is in the local hub cache; else the
    byte-level one (random-weight runs only), its `<image>` at the config's `image_token_index` so that prompts and
    model agree."""
    if repo:
        repo_id, sub = _split_repo(repo)
        from huggingface_hub import snapshot_download
        try:
            path = Path(snapshot_download(repo_id, local_files_only=True)) / sub
        except Exception:  # not cached: fall through, with a note
            path = None
        if path is not None:  # cached: a tokenizer that cannot be read is an error, never a silent stand-in
            try:
                return _add_image_token(AutoTokenizer.from_pretrained(path)), SlowLlamaTokenizer.from_directory(path)
            except Exception as exc:
                raise StfBenchError(
                    f"the cached tokenizer of {repo} in {path} cannot be read ({type(exc).__name__}: {exc}); "
                    f"download it again with `hf download {repo_id}` or remove that folder from the hub cache") from exc
    log.info("no cached tokenizer for %s: using the byte-level tokenizer (text token counts will differ)", repo)
    return build_tiny_tokenizer(image_token_index), None


def _add_image_token(tokenizer):
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.padding_side = "left"
    return tokenizer


# ----------------------------------------------------------------------------------------------------------------
# hub access: cached snapshot, else a fast, clear failure (never a hang)

def _split_repo(spec: str) -> tuple[str, str]:
    """`owner/name/sub/folder` -> (`owner/name`, `sub/folder`)."""
    parts = spec.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def fetch(spec: str) -> Path:
    """Local directory of hub repo `owner/name[/subfolder]`, from the cache or downloaded; StfBenchError offline."""
    from huggingface_hub import snapshot_download

    repo_id, sub = _split_repo(spec)
    patterns = [f"{sub}/*"] if sub else None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)) / sub
    except Exception:
        pass
    how = (f"download it where the hub is reachable with `hf download {repo_id}"
           f"{' --include ' + repr(sub + '/*') if sub else ''} --local-dir DIR`, copy DIR here and pass "
           f"the directory{' DIR/' + sub if sub else ' DIR'} as the model")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or not _hub_reachable():
        raise StfBenchError(f"{spec} is not in the local hub cache and the hub is unreachable (offline); {how}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns)) / sub
    except Exception as exc:
        raise StfBenchError(f"could not download {spec}: {exc}; {how}") from None


# ----------------------------------------------------------------------------------------------------------------
# checkpoints

def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: the shards its index lists, else every *.safetensors, else *.bin (weights_only).

    An index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) names the shards exactly, so that a
    stage-1 `mm_projector.bin` or `training_args.bin` beside them is never read as part of the model."""
    index = next((directory / name for name in INDEX_FILES if (directory / name).is_file()), None)
    shards = _index_shards(index) if index else None
    if shards is None:
        shards = sorted(directory.glob("*.safetensors")) or sorted(
            p for p in directory.glob("*.bin") if p.name not in NOT_WEIGHTS)
    if not shards:
        raise StfBenchError(f"no *.safetensors or *.bin weights in {directory}")
    state: dict[str, torch.Tensor] = {}
    for f in shards:
        state.update(_read_safetensors(f) if f.suffix == ".safetensors" else _torch_load(f))
    return state


NOT_WEIGHTS = ("training_args.bin", "mm_projector.bin")  # pickled arguments; the stage-1 projector (projector_weights=)
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _index_shards(index: Path) -> list[Path]:
    """The shard files a checkpoint index names; every one must exist."""
    directory = index.parent
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StfBenchError(f"{index} is not a checkpoint index (no readable weight_map: {exc})") from None
    files = [directory / f for f in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise StfBenchError(f"{index} lists {len(files)} shard(s) but {len(missing)} are missing from "
                            f"{directory}: {', '.join(missing)}; the download is incomplete")
    return files


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file; a truncated or corrupt file is a StfBenchError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise _incomplete_safetensors(path, exc) from None


def _check_safetensors(path: Path) -> None:
    """Open one safetensors file's header, which safetensors checks against the file's length: a truncated or corrupt
    file is a StfBenchError naming it, before from_pretrained reads any tensor."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError) as exc:
        raise _incomplete_safetensors(path, exc) from None


def _incomplete_safetensors(path: Path, exc: Exception) -> StfBenchError:
    return StfBenchError(f"{path} is not a complete safetensors file ({exc}); the download was probably cut short: "
                         f"download it again")


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StfBenchError(f"{path} is not a weights-only PyTorch file ({exc}); stf-bench never unpickles code; "
                            f"convert it to safetensors") from None


def load_checkpoint(directory: Path, *, device: torch.device, dtype: torch.dtype, options: dict | None = None,
                    config_overrides: dict | None = None) -> tuple[StfLlavaForConditionalGeneration, StfLlavaProcessor]:
    """Load any supported checkpoint format from a local directory: formats 1 and 4 through from_pretrained, the
    original-LLaVA / LLaVA-STF ones by their hand-written key maps."""
    options, config_overrides = options or {}, config_overrides or {}
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise StfBenchError(f"{directory} has no config.json: not a model checkpoint directory")
    raw = json.loads(cfg_path.read_text())
    kind = checkpoint_format(raw, cfg_path)
    if kind == "original":  # before reading weights: a missing vision tower or tokenizer fails fast
        tokenizer = _add_image_token(_load_tokenizer(directory))
        _original_vision_tower_source(raw, options)
        config, state = _from_original_llava(raw, read_state_dict(directory), tokenizer, options, config_overrides)
        _set_attn(config, options)
        return (_materialise(config, state, device, dtype, directory),
                _processor(config, tokenizer, SlowLlamaTokenizer.from_directory(directory)))
    _check_transformers_weights(directory)  # missing or truncated weights are named before the config is built
    if kind == "stf_llava":
        config = StfLlavaConfig.from_pretrained(directory, **config_overrides)
    else:
        config = _config_from_llava_hf(raw, config_overrides)
    _set_attn(config, options)
    model = _from_pretrained(directory, config, device, dtype)
    if (directory / "stf_processor.json").is_file():
        processor = StfLlavaProcessor.from_pretrained(directory)
        processor.num_visual_tokens = config.num_visual_tokens
    else:
        processor = _processor(config, _add_image_token(_load_tokenizer(directory)),
                               SlowLlamaTokenizer.from_directory(directory))
    return model, processor


def checkpoint_format(raw: dict, cfg_path: Path | str = "config.json") -> str:
    """`stf_llava`, `llava_hf` (transformers format) or `original` (LLaVA / LLaVA-STF), told apart by content.

    The original release's `model_type` is `llava` (2023) or `llava_llama` (later), so `model_type` alone cannot
    separate it from the transformers format: that one nests `text_config`, the original keeps the Llama fields at the
    top level beside `mm_*` fields and names `LlavaLlamaForCausalLM` (docs/facts.md section 2)."""
    kind = raw.get("model_type")
    if kind == "stf_llava":
        return "stf_llava"
    original = ("LlavaLlamaForCausalLM" in (raw.get("architectures") or [])
                or any(k in raw for k in ("mm_vision_tower", "mm_projector_type", "mm_hidden_size")))
    if kind == "llava_llama" or (kind == "llava" and original and "text_config" not in raw):
        return "original"
    if kind == "llava" and "text_config" in raw:
        return "llava_hf"
    if kind == "llava":
        raise StfBenchError(f"{cfg_path}: model_type 'llava' but neither transformers format (no text_config) nor "
                            f"original LLaVA (no mm_vision_tower / LlavaLlamaForCausalLM); not a checkpoint stf-bench "
                            f"can read")
    raise StfBenchError(f"{cfg_path}: model_type {kind!r} is not one stf-bench loads; expected llava "
                        f"(transformers format or original LLaVA), llava_llama (original LLaVA / LLaVA-STF) or "
                        f"stf_llava")


def _load_tokenizer(directory: Path):
    """The checkpoint's tokenizer: tokenizer.json, or a sentencepiece-only `tokenizer.model` (original LLaVA)."""
    if not any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json",
                                                    "tokenizer_config.json")):
        raise StfBenchError(f"{directory} has no tokenizer (tokenizer.json or tokenizer.model); copy the tokenizer "
                            f"files of the checkpoint's LLM into it")
    try:
        return AutoTokenizer.from_pretrained(directory)
    except (ImportError, ValueError, OSError) as exc:
        raise StfBenchError(f"cannot read the tokenizer in {directory}: {exc} (a sentencepiece-only tokenizer.model "
                            f"needs the sentencepiece package)") from None


VISION_PREFIX = re.compile(r"^(model\.)?vision_tower\.(vision_tower\.)?(vision_model\.)?")


def _map_vision_key(key: str) -> str:
    """Every published layout of the CLIP tower (`vision_tower.vision_model.*`, original LLaVA's
    `model.vision_tower.vision_tower.vision_model.*`) -> transformers 5's `model.vision_tower.*`."""
    return VISION_PREFIX.sub("model.vision_tower.", key, count=1)


def _config_from_llava_hf(raw: dict, overrides: dict) -> StfLlavaConfig:
    fields = {k: raw[k] for k in ("image_token_index", "vision_feature_layer", "projector_hidden_act") if k in raw}
    text = LlamaConfig(**{k: v for k, v in raw["text_config"].items() if k != "model_type"})
    vision = CLIPVisionConfig(**{k: v for k, v in raw["vision_config"].items() if k != "model_type"})
    if raw.get("image_token_id") is not None and "image_token_index" not in fields:
        fields["image_token_index"] = raw["image_token_id"]
    return StfLlavaConfig(vision_config=vision, text_config=text,
                          **{"projector_type": projector_of_format("transformers").name, **fields, **overrides})


def _from_original_llava(raw: dict, state: dict, tokenizer, options: dict, overrides: dict):
    """Original LLaVA / LLaVA-STF: rebuild our config from the llama fields + projector shapes; rename keys."""
    text_fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                   "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
                   "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "tie_word_embeddings")
    text = LlamaConfig(**{k: raw[k] for k in text_fields if raw.get(k) is not None})
    vision_cfg, vision_state = _original_vision_tower(raw, state, options)
    c = vision_cfg.hidden_size
    fields: dict = {"image_token_index": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                    "vision_feature_layer": raw.get("mm_vision_select_layer", -2),
                    "image_aspect_ratio": raw.get("image_aspect_ratio", "pad")}
    projector = projector_of_original(state, directory_hint=raw.get("_name_or_path", "the checkpoint"))
    fields["projector_type"] = projector.name
    fields.update(projector.config_from_checkpoint("original", state, c))
    prefix_map = {old: "model.multi_modal_projector." + new for old, new in projector.checkpoint_keys["original"].items()}
    fields.update(overrides)
    config = StfLlavaConfig(vision_config=vision_cfg, text_config=text, **fields)
    mapped = {}
    for key, value in state.items():
        if key.startswith("model.vision_tower."):
            continue
        for old, new in {**prefix_map, "model.": "model.language_model.", "lm_head.": "lm_head."}.items():
            if key.startswith(old):
                mapped[new + key[len(old):]] = value
                break
        else:
            mapped[key] = value
    mapped.update(vision_state)
    return config, mapped


def projector_of_format(fmt: str):
    """The one registered projector that declares checkpoint format `fmt` (transformers' llava format holds only
    LLaVA-1.5's MLP)."""
    from stf_bench.methods import list_methods

    found = [m for m in list_methods("projector") if fmt in m.checkpoint_keys]
    if len(found) != 1:
        raise StfBenchError(f"{len(found)} registered projectors declare the {fmt!r} checkpoint format "
                            f"({', '.join(m.name for m in found) or 'none'}); exactly one must")
    return found[0]


ORIGINAL_PROJECTOR_PREFIX = "model.mm_projector"  # every projector key of the original-LLaVA layout starts so


def projector_of_original(state: dict, directory_hint: str = "the checkpoint"):
    """The registered projector whose original-LLaVA key map (`checkpoint_keys["original"]`) accounts for every
    projector key of the checkpoint; of several, the one whose prefixes match the keys most specifically (the
    LLaVA MLP's `mm_projector.0.` before MBTF+STF's `mm_projector.`). Missing keys are named later, by shape check."""
    from stf_bench.methods import list_methods

    keys = [k for k in state if k.startswith(ORIGINAL_PROJECTOR_PREFIX)]
    scores = {}
    for method in list_methods("projector"):
        prefixes = method.checkpoint_keys.get("original") or {}
        matched = [max((len(p) for p in prefixes if k.startswith(p)), default=0) for k in keys]
        if prefixes and keys and all(matched):
            scores[method] = sum(matched)
    best = sorted(scores, key=scores.get, reverse=True)
    if not best or len(best) > 1 and scores[best[0]] == scores[best[1]]:
        known = {m.name: sorted(m.checkpoint_keys["original"]) for m in list_methods("projector")
                 if "original" in m.checkpoint_keys}
        roots = sorted({k.rsplit(".", 2)[0] for k in keys})
        raise StfBenchError(f"{directory_hint}: projector keys under {roots or 'nothing'} fit "
                            f"{'several' if best else 'no'} registered projector layouts equally; known: {known}")
    return best[0]


def _original_vision_tower(raw: dict, state: dict, options: dict) -> tuple[CLIPVisionConfig, dict]:
    """Vision config and weights of an original-format checkpoint: embedded CLIP-L/336 config, or a local CLIP dir."""
    tower = options.get("vision_tower") or raw.get("mm_vision_tower", CLIP_L_336_ID)
    weights = {_map_vision_key(k): v for k, v in state.items() if k.startswith("model.vision_tower.")}
    if Path(str(tower)).is_dir():
        cfg_raw = json.loads((Path(tower) / "config.json").read_text())
        cfg_raw = cfg_raw.get("vision_config", cfg_raw)
        config = CLIPVisionConfig(**{k: v for k, v in cfg_raw.items() if k != "model_type"})
        if not weights:
            weights = _clip_vision_weights(read_state_dict(Path(tower)))
    elif tower == CLIP_L_336_ID:
        config = CLIPVisionConfig(**CLIP_L_336)
        if not weights:
            clip_dir = _fetch_vision_tower()
            weights = _clip_vision_weights(read_state_dict(clip_dir))
    else:
        raise StfBenchError(f"vision tower {tower!r} is neither {CLIP_L_336_ID} nor a local directory; "
                            f"pass vision_tower=/path/to/clip")
    return config, weights


def _clip_vision_weights(state: dict) -> dict:
    """A CLIP directory's vision tower weights: `vision_model.*` of a CLIPModel (openai's) or of transformers 4's
    CLIPVisionModel, or the unprefixed `embeddings.* / encoder.*` transformers 5's CLIPVisionModel writes."""
    if any("vision_model." in k for k in state):
        return {"model.vision_tower." + k.split("vision_model.", 1)[1]: v for k, v in state.items()
                if "vision_model." in k}
    return {"model.vision_tower." + k: v for k, v in state.items()}


def _original_vision_tower_source(raw: dict, options: dict) -> None:
    """Fail before any weights are read when the tower named by `vision_tower=` / `mm_vision_tower` is unusable."""
    tower = options.get("vision_tower")
    if tower and not Path(str(tower)).is_dir():
        raise StfBenchError(f"vision_tower={tower}: no such directory; pass vision_tower=DIR, a local CLIP "
                            f"directory ({CLIP_L_336_ID} as `hf download` writes it)")
    if tower and not (Path(str(tower)) / "config.json").is_file():
        raise StfBenchError(f"vision_tower={tower}: the directory has no config.json; pass vision_tower=DIR, a "
                            f"local CLIP directory ({CLIP_L_336_ID} as `hf download` writes it)")


def _fetch_vision_tower() -> Path:
    """CLIP-L/336 for a checkpoint that carries no vision tower weights; offline, say how to pass it."""
    try:
        return fetch(CLIP_L_336_ID)
    except StfBenchError:
        raise StfBenchError(f"the checkpoint has no vision tower weights and its vision tower {CLIP_L_336_ID} is "
                            f"not in the local hub cache (offline, or the download failed); get it with "
                            f"`hf download {CLIP_L_336_ID} --local-dir DIR` and pass --model-args vision_tower=DIR"
                            ) from None


# transformers' llava layouts -> our model's (transformers 5's). Applied in turn by from_pretrained's `key_mapping=`
# (regex -> replacement): the 4.x layout of the hub's llava-hf repos (language_model.model.*, multi_modal_projector.*,
# which 5.x save_pretrained of LlavaForConditionalGeneration still writes), and every CLIP tower prefix.
LLAVA_HF_KEY_MAPPING = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    VISION_PREFIX.pattern: "model.vision_tower.",
}
# Which files from_pretrained reads from a local directory, in its order of preference (transformers 5.24,
# modeling_utils._get_resolved_checkpoint_files with use_safetensors=None).
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json")


def _check_transformers_weights(directory: Path) -> None:
    """Check the weight files from_pretrained will read before it does: every shard of an index present, every
    safetensors file complete, so that those failures read as they do for the other formats."""
    name = next((n for n in TRANSFORMERS_WEIGHTS if (directory / n).is_file()), None)
    if name is None:
        raise StfBenchError(f"no weights transformers can read in {directory}: a transformers-format or stf_llava "
                            f"checkpoint holds {', '.join(TRANSFORMERS_WEIGHTS[:-1])} or {TRANSFORMERS_WEIGHTS[-1]} "
                            f"(what save_pretrained writes)")
    files = _index_shards(directory / name) if name.endswith(".index.json") else [directory / name]
    for f in files:
        if f.suffix == ".safetensors":
            _check_safetensors(f)


class _NoLoadReport(logging.Filter):
    """Drops from_pretrained's LOAD REPORT warning: `check_loading_info` turns what it lists into one StfBenchError."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def _from_pretrained(directory: Path, config: StfLlavaConfig, device: torch.device, dtype: torch.dtype
                     ) -> StfLlavaForConditionalGeneration:
    """Load a transformers-format or stf_llava checkpoint with transformers' own loader, then refuse it if any key
    is missing, unexpected or of the wrong shape.

    Relies on `PreTrainedModel.from_pretrained` of transformers 5.x (5.24 and 5.25 tested): `config=` (ours, overrides
    applied), `key_mapping=`, `dtype=`, `device_map=` (`meta` included), `ignore_mismatched_sizes=True` with
    `output_loading_info=True` (mismatches reported, not raised, so that the message names the shapes),
    `local_files_only=True` (the directory is local: no hub call), `weights_only=True` and no hub kernels
    (`compat.from_pretrained_kwargs`: 5.25 kernelizes by default and refuses `meta`). The caller has checked
    the weight files (`_check_transformers_weights`)."""
    from transformers.utils import logging as hf_logging

    report_filter = _NoLoadReport()
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_logger.addFilter(report_filter)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar: a run shows one progress bar, its own
    try:
        model, info = StfLlavaForConditionalGeneration.from_pretrained(
            directory, config=config, key_mapping=LLAVA_HF_KEY_MAPPING, output_loading_info=True, dtype=dtype,
            device_map={"": device}, ignore_mismatched_sizes=True, local_files_only=True, weights_only=True,
            trust_remote_code=False, generation_config=GenerationConfig(), **from_pretrained_kwargs())
    except pickle.UnpicklingError as exc:
        raise StfBenchError(f"a *.bin weight file in {directory} is not a weights-only PyTorch file ({exc}); "
                            f"stf-bench never unpickles code; convert it to safetensors") from None
    finally:
        report_logger.removeFilter(report_filter)
        if bars:
            hf_logging.enable_progress_bar()
    check_loading_info(model, info, directory)
    model.generation_config = model.default_generation_config()  # as a model built from its config has
    return model


def check_loading_info(model: StfLlavaForConditionalGeneration, info: dict, source: Path | str) -> None:
    """from_pretrained's loading info -> a StfBenchError naming the missing, mismatched or unexpected keys (as
    from_pretrained reports them, after `key_mapping`), as `check_state_dict` does for hand-mapped checkpoints.
    (Its `error_msgs` never reach here: from_pretrained raises on them itself.)"""
    what = getattr(model.config, "projector_type", "?")
    missing = sorted(k for k in info["missing_keys"] if not IGNORED_KEYS.search(k))
    if missing:
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        raise StfBenchError(f"{source}: checkpoint lacks {_listed(missing, shapes, 'model expects shape')}; "
                            f"is it the right model or projector for {what}?")
    mismatched = sorted(info["mismatched_keys"])
    if mismatched:
        key, got, want = mismatched[0]
        raise StfBenchError(f"{source}: {key} has shape {list(got)} in the checkpoint but the model expects "
                            f"{list(want)}; check k/e/mbtf_blocks or the preset"
                            + (f" ({len(mismatched)} such keys: {_listed([k for k, _, _ in mismatched])})"
                               if len(mismatched) > 1 else ""))
    unexpected = sorted(k for k in info["unexpected_keys"] if not IGNORED_KEYS.search(k))
    if unexpected:
        raise StfBenchError(f"{source}: unexpected key {_listed(unexpected)} that the model ({what}) has no place "
                            f"for; {len(unexpected)} such keys in all")


def _listed(keys: list[str], shapes: dict | None = None, note: str = "", most: int = 8) -> str:
    """`k1 (note [..]), k2, ... and N more`: the first keys of a refusal, so that the message stays one line."""
    head = [f"{k} ({note} {shapes[k]})" if shapes and k in shapes else k for k in keys[:most]]
    return ", ".join(head) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _materialise(config: StfLlavaConfig, state: dict, device: torch.device, dtype: torch.dtype, source: Path
                 ) -> StfLlavaForConditionalGeneration:
    """Build with parameters on `meta` (buffers real), check every key and shape, then assign the tensors."""
    from accelerate import init_empty_weights

    if device.type == "meta":
        with torch.device("meta"):
            model = StfLlavaForConditionalGeneration(config)
        check_state_dict(model, state, source)
        return model.to(dtype)
    with init_empty_weights(include_buffers=False):
        model = StfLlavaForConditionalGeneration(config)
    check_state_dict(model, state, source)
    state = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()
             if not IGNORED_KEYS.search(k)}
    model.load_state_dict(state, strict=False, assign=True)
    return model.to(device)


def check_state_dict(model: torch.nn.Module, state: dict, source: Path | str) -> None:
    """Every parameter present with its shape, nothing left over; else name the first offending key and shapes."""
    expected = {k: tuple(getattr(v, "ds_shape", v.shape)) for k, v in model.state_dict(keep_vars=True).items()
                if not IGNORED_KEYS.search(k)}  # ds_shape: a parameter partitioned by ZeRO-3 holds an empty tensor
    got = {k: tuple(v.shape) for k, v in state.items() if not IGNORED_KEYS.search(k)}
    for key, shape in expected.items():
        if key not in got:
            raise StfBenchError(f"{source}: checkpoint lacks {key} (model expects shape {list(shape)}); "
                                f"is it the right model or projector for {getattr(model.config, 'projector_type', '?')}?")
        if got[key] != shape:
            raise StfBenchError(f"{source}: {key} has shape {list(got[key])} in the checkpoint but the model expects "
                                f"{list(shape)}; check k/e/mbtf_blocks or the preset")
    extra = sorted(set(got) - set(expected))
    if extra:
        raise StfBenchError(f"{source}: unexpected key {extra[0]} (shape {list(got[extra[0]])}) that the model "
                            f"({getattr(model.config, 'projector_type', type(model).__name__)}) has no place for; {len(extra)} such keys in all")


STAGE1_PREFIX = "model.mm_projector."  # where LLaVA's train.py saves a projector's keys in `mm_projector.bin`


def stage1_keys(projector_method) -> dict[str, str]:
    """Stage-1 file key prefix -> key prefix inside the projector: the projector's declared original layout
    (`checkpoint_keys["original"]`), else its own keys under `model.mm_projector.` (what LLaVA's trainer writes for
    a projector module called mm_projector; `stf-bench train` writes that for projectors without a release)."""
    return projector_method.checkpoint_keys.get("original") or {STAGE1_PREFIX: ""}


def load_projector_weights(model: StfLlavaForConditionalGeneration, path: str | os.PathLike) -> None:
    """Load a stage-1 projector file (`mm_projector.bin` of the release, or safetensors) into the model's projector."""
    path = Path(path)
    if not path.is_file():
        raise StfBenchError(f"projector weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        raw = load_file(path)
    else:
        raw = _torch_load(path)
    prefix_map = stage1_keys(model.config.projector_method)
    state = {}
    for key, value in raw.items():
        for old, new in prefix_map.items():
            if key.startswith(old):
                state[new + key[len(old):]] = value
                break
        else:
            raise StfBenchError(f"{path}: unexpected key {key}; expected keys under {', '.join(prefix_map)}")
    projector = model.model.multi_modal_projector
    check_state_dict(projector, state, path)
    ref = next(projector.parameters())
    if hasattr(ref, "ds_id"):  # partitioned by ZeRO-3's zero.Init (`stf-bench train --deepspeed zero3`)
        write_weights(projector, state)
        return
    projector.load_state_dict({k: v.to(ref.device, ref.dtype) for k, v in state.items()}, assign=ref.is_meta)


# ----------------------------------------------------------------------------------------------------------------
# base weights: where LLaVA's training starts (stage 1 and stage 2 of `stf-bench train` on a full-size preset)

def base_weight_dirs(name: str) -> tuple[Path, Path]:
    """Local directories of a full-size preset's base weights, its LLM (`LLM_TOKENIZERS`: lmsys/vicuna-7b-v1.5,
    lmsys/vicuna-13b-v1.5, meta-llama/Llama-3.1-8B-Instruct) and CLIP ViT-L/14-336, from the hub cache or downloaded.
    Offline or unreachable: one StfBenchError naming every missing repo and the command that downloads it (never a
    hang: `fetch` checks HF_HUB_OFFLINE and the hub's reachability with a 3 s timeout first)."""
    preset = get_preset(name)
    repos = [LLM_TOKENIZERS[preset.llm], CLIP_L_336_ID]
    found, missing = [], []
    for repo in repos:
        try:
            directory = fetch(repo)
        except StfBenchError:
            directory = None
        if directory is None or not _holds_weights(directory):  # a cache of the tokenizer alone is not the weights
            missing.append(repo)
        else:
            found.append(directory)
    if missing:
        raise StfBenchError(
            f"{name} starts from the base weights of {' and '.join(missing)}, not in the local hub cache and not "
            f"downloaded (offline, the hub unreachable, or only part of the repo cached); run {' and '.join(f'`hf download {r}`' for r in missing)} "
            f"where the hub is reachable (into this machine's hub cache, HF_HOME), or pass --init random for a run "
            f"from random weights")
    return found[0], found[1]


def load_base_model(name: str, *, seed: int = 0, device: str | torch.device | None = None,
                    dtype: torch.dtype | str | None = None, build_context: contextlib.AbstractContextManager | None = None,
                    **overrides) -> tuple[StfLlavaForConditionalGeneration, StfLlavaProcessor]:
    """A full-size preset as LLaVA-1.5's training starts it: the LLM's base weights (Vicuna-1.5 or Llama-3.1) and
    CLIP ViT-L/14-336's vision tower, the projector random (`seed`), the LLM's own tokenizer. Every LLM and vision
    tensor must come from the base checkpoints with its shape (else a StfBenchError naming the key). The model is
    first built with random weights, then overwritten: memory is the model once plus the base state dicts. Tiny
    presets have no base weights (`stf-bench train` starts them from random ones). `build_context` is entered around
    the build alone (`stf-bench train --deepspeed zero3`: `partitioned_build`, deepspeed.zero.Init): the weights are
    then written one gathered parameter at a time (`write_weights`)."""
    llm_dir, clip_dir = base_weight_dirs(name)
    with build_context or contextlib.nullcontext():
        model, processor = load_model(name, random_weights=True, seed=seed, device=device, dtype=dtype, **overrides)
    state = {("model.language_model." + k[len("model."):] if k.startswith("model.") else k): v
             for k, v in read_state_dict(llm_dir).items()}
    state.update(_clip_vision_weights(read_state_dict(clip_dir)))
    projector = "model.multi_modal_projector."
    state = {k: v for k, v in state.items() if not IGNORED_KEYS.search(k) and not k.startswith(projector)}
    own = {k: v for k, v in model.state_dict(keep_vars=True).items() if k.startswith(projector)}
    check_state_dict(model, {**state, **{k: torch.empty(getattr(v, "ds_shape", v.shape), device="meta")
                                         for k, v in own.items()}}, f"{llm_dir.name} + {clip_dir.name}")
    write_weights(model, state)
    return model, processor


def _holds_weights(directory: Path) -> bool:
    """Whether a checkpoint directory has weight files (an index, safetensors, or pickled weights)."""
    return (any((directory / name).is_file() for name in INDEX_FILES) or any(directory.glob("*.safetensors"))
            or any(p.name not in NOT_WEIGHTS for p in directory.glob("*.bin")))
