"""The preset registry, timm-style: one name, one config; `-tiny` twins share the architecture at tiny widths.

Full-size presets follow the paper (CLIP ViT-L/14-336 + Vicuna-1.5 7B/13B, or Llama-3.1-8B). Tiny twins keep
the 24x24 patch grid and the 24 vision blocks (MBTF indexes them) and shrink every width, so that every code path
runs on a CPU in seconds with deterministic weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from stf_bench.args import METHOD_ARG_PREFIX, parse_model_args
from stf_bench.errors import StfBenchError

# The public, fixed CLIP-L/336 vision config (openai/clip-vit-large-patch14-336), embedded: no download needed.
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
CLIP_TINY = dict(CLIP_L_336, hidden_size=32, intermediate_size=64, num_attention_heads=2, projection_dim=32)

VICUNA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
VICUNA_13B = dict(VICUNA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40)
LLAMA31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                  bos_token_id=128000, eos_token_id=128001)
TINY_VOCAB = 261  # stf_bench.models.tokenizer: 4 specials + 256 bytes + <image>
VICUNA_TINY = dict(VICUNA_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=4, vocab_size=TINY_VOCAB, max_position_embeddings=2048,
                   bos_token_id=1, eos_token_id=2, pad_token_id=3)
LLAMA31_TINY = dict(LLAMA31_8B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=TINY_VOCAB, max_position_embeddings=131072,
                    bos_token_id=1, eos_token_id=2, pad_token_id=3)

LLMS = {"vicuna-1.5-7b": VICUNA_7B, "vicuna-1.5-13b": VICUNA_13B, "llama-3.1-8b": LLAMA31_8B,
        "vicuna-tiny": VICUNA_TINY, "llama-3.1-tiny": LLAMA31_TINY}
# Where the real tokenizer of each LLM lives on the hub (used from the local cache for random-weight builds).
LLM_TOKENIZERS = {"vicuna-1.5-7b": "lmsys/vicuna-7b-v1.5", "vicuna-1.5-13b": "lmsys/vicuna-13b-v1.5",
                  "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct", "vicuna-tiny": None, "llama-3.1-tiny": None}
VISION = {"clip-vit-large-patch14-336": CLIP_L_336, "clip-tiny": CLIP_TINY}

# User-facing override names (lmms-eval `k=v` style) -> config fields; each projector's own arguments come from
# its registry entry (`override_fields`). `method=NAME` picks a training-free method, `method.ARG=v` its arguments.
BASE_OVERRIDE_FIELDS = {"image_aspect_ratio": "image_aspect_ratio", "projector": "projector_type", "method": "method",
                        "image_size": "image_size"}  # image_size: the vision tower's input (Table 11: 224 px)
LOAD_OPTIONS = ("attn_implementation", "seed", "projector_weights", "vision_tower")


def override_fields() -> dict[str, str]:
    """Every override name -> its config field: the base ones plus each registered projector's arguments."""
    from stf_bench.methods import list_methods

    fields = dict(BASE_OVERRIDE_FIELDS)
    for method in list_methods("projector"):
        fields.update({p.name: p.config_field for p in method.params if p.config_field})
    return fields


@dataclass(frozen=True)
class Preset:
    """A named model: projector, LLM, vision tower, and where its weights live (hub id[/subfolder]) if released."""

    name: str
    projector: str
    llm: str
    vision: str
    weights: str | None = None
    settings: dict = field(default_factory=dict)
    note: str = ""
    shipped: str | None = None  # weights file shipped in stf_bench/models/default/ (stf_bench.models.default_model)

    @property
    def tiny(self) -> bool:
        return self.vision == "clip-tiny"


def _family(name: str, projector: str, llm: str, weights: str | None = None, note: str = "", tiny_name: str = "",
            **settings) -> list[Preset]:
    tiny_llm = "llama-3.1-tiny" if llm.startswith("llama") else "vicuna-tiny"
    return [Preset(name, projector, llm, "clip-vit-large-patch14-336", weights, settings, note),
            Preset(tiny_name, projector, tiny_llm, "clip-tiny", None, settings, f"tiny twin of {name}")]


class PresetTable(dict):
    """The preset registry: the built-ins below plus those installed projector plug-ins add with `register_presets`
    when the method registry imports them (entry points). A lookup or a listing loads the method registry first (it
    needs no torch), so that a plug-in's preset is known wherever a built-in is."""

    def _ready(self) -> None:
        from stf_bench.methods.registry import list_methods

        list_methods()  # imports the plug-ins once; their module-level `register_presets` lines fill this table

    def __contains__(self, name: object) -> bool:
        self._ready()
        return super().__contains__(name)

    def __getitem__(self, name: str) -> Preset:
        self._ready()
        return super().__getitem__(name)

    def get(self, name: str, default=None):
        self._ready()
        return super().get(name, default)

    def __iter__(self):
        self._ready()
        return super().__iter__()

    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def keys(self):
        self._ready()
        return super().keys()

    def values(self):
        self._ready()
        return super().values()

    def items(self):
        self._ready()
        return super().items()


def register_presets(name: str, projector: str, llm: str, *, tiny_name: str, weights: str | None = None,
                     note: str = "", **settings) -> None:
    """Add a full-size preset and its `-tiny` twin (the one preset line of a plug-in projector's file):
    `register_presets("pixelshuffle-7b", "pixel_shuffle", "vicuna-1.5-7b", tiny_name="pixelshuffle-tiny")`.
    `llm` is one of LLMS; a name already taken (by another preset) is an error naming it."""
    if llm not in LLMS or llm.endswith("tiny"):
        raise StfBenchError(f"preset {name}: unknown LLM {llm!r}; valid: "
                            f"{', '.join(k for k in LLMS if not k.endswith('tiny'))}")
    for preset in _family(name, projector, llm, weights, note, tiny_name, **settings):
        if dict.get(PRESETS, preset.name) == preset:  # the same line run twice (the module imported again)
            continue
        if dict.__contains__(PRESETS, preset.name):
            raise StfBenchError(f"preset name {preset.name!r} is taken; pick another name for the {projector} preset")
        dict.__setitem__(PRESETS, preset.name, preset)


PRESETS: dict[str, Preset] = PresetTable({p.name: p for p in [
    *_family("llava-1.5-7b", "mlp2x_gelu", "vicuna-1.5-7b", "llava-hf/llava-1.5-7b-hf",
             "LLaVA-1.5 baseline, 576 tokens", "llava-tiny"),
    *_family("llava-1.5-13b", "mlp2x_gelu", "vicuna-1.5-13b", "llava-hf/llava-1.5-13b-hf",
             "LLaVA-1.5 baseline, 576 tokens", "llava-13b-tiny"),
    *_family("stf-7b", "mbtf+stf", "vicuna-1.5-7b", "visresearch/LLaVA-STF/full-parameter-finetune",
             "released MBTF+STF (k=2, E=1, 8 blocks), 144 tokens", "stf-tiny"),
    *_family("stf-13b", "mbtf+stf", "vicuna-1.5-13b", None, "MBTF+STF on 13B (Table 10); no released weights",
             "stf-13b-tiny"),
    *_family("mbtf-7b", "mbtf", "vicuna-1.5-7b", None, "MBTF only, 576 tokens (Table 3)", "mbtf-tiny"),
    *_family("stf-only-7b", "stf", "vicuna-1.5-7b", None, "STF only, no MBTF, 144 tokens (Table 3)", "stf-only-tiny"),
    *_family("avgpool-7b", "avgpool", "vicuna-1.5-7b", None, "2x2 average pooling + MLP, 144 tokens (Table 6)",
             "avgpool-tiny"),
    *_family("tokenconcat-7b", "token_concat", "vicuna-1.5-7b", None, "2x2 token concatenation + MLP (Table 6)",
             "tokenconcat-tiny"),
    *_family("qformer-7b", "qformer", "vicuna-1.5-7b", None, "Q-Former, 144 queries (Table 6)", "qformer-tiny"),
    # Meant as the default model of `stf-bench run`: stf-tiny with the weights scripts/make_default_model.py trained on
    # the sample data (stf_bench/models/default_model.py); its scores show training works, they measure nothing.
    Preset("stf-tiny-trained", "mbtf+stf", "vicuna-tiny", "clip-tiny", None, {},
           "stf-tiny trained by stf-bench on its sample data; not a real score",
           shipped="stf-tiny-trained.safetensors"),
    *_family("llava-llama3.1-8b", "mlp2x_gelu", "llama-3.1-8b", None, "LLaVA on Llama-3.1-8B (Table 12)",
             "llava-llama3.1-tiny"),
    *_family("stf-llama3.1-8b", "mbtf+stf", "llama-3.1-8b", None, "MBTF+STF on Llama-3.1-8B (Table 12)",
             "stf-llama3.1-tiny"),
]})


def list_presets() -> list[Preset]:
    """All presets, full-size first, in registry order."""
    return sorted(PRESETS.values(), key=lambda p: p.tiny)


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a StfBenchError listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise StfBenchError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)} "
                            f"(or a local checkpoint directory, or a hub id); `stf-bench models` lists them") from None


def cut_full_size(llm_layers: int = 1, vision_layers: int = 1,
                  setitem: Callable[[dict, str, object], None] | None = None) -> None:
    """Every full-size preset keeps its widths, vocabulary and token ids, with its vision tower and LLM cut to a few
    layers (MBTF then fuses the one block there is): the wiring of a 7B-13B model on a CPU, never a figure (the GPU
    benchmark's dry run, tests/models/test_full_size_wiring.py). Changes this process's registry; a test passes
    `monkeypatch.setitem` as `setitem` so that the cut is undone after it."""
    put = setitem or dict.__setitem__
    full = [p for p in PRESETS.values() if not p.tiny]
    for vision in sorted({p.vision for p in full}):
        put(VISION, vision, {**VISION[vision], "num_hidden_layers": vision_layers})
    for llm in sorted({p.llm for p in full}):
        put(LLMS, llm, {**LLMS[llm], "num_hidden_layers": llm_layers})
    for preset in full:
        if "mbtf" in preset.projector:
            put(PRESETS, preset.name, replace(preset, settings={**preset.settings, "mbtf_blocks": 1}))


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """Separate config overrides (k, e, ...) from load options (attn_implementation, ...); refuse unknown keys."""
    config, options = {}, {}
    fields = override_fields()
    for key, value in overrides.items():
        if key.startswith(METHOD_ARG_PREFIX):
            config.setdefault("method_args", {})[key[len(METHOD_ARG_PREFIX):]] = value
        elif key == "method_args":
            config.setdefault("method_args", {}).update(parse_model_args(value))
        elif key in fields:
            config[fields[key]] = value
        elif key in fields.values():
            config[key] = value
        elif key in LOAD_OPTIONS:
            options[key] = value
        else:
            raise StfBenchError(f"unknown model argument {key!r}; valid: {', '.join([*fields, *LOAD_OPTIONS])}, "
                                f"and method.ARG=VALUE for the arguments of a method=NAME")
    if "method_args" in config and not config.get("method"):
        raise StfBenchError(f"method arguments {sorted(config['method_args'])} given without a method; add "
                            f"method=NAME (--method NAME)")
    return config, options


def refuse_foreign_fields(projector: str, fields: dict, model: str) -> None:
    """Refuse config fields of another projector's arguments (`--model llava-tiny --model-args k=3` was accepted,
    changed nothing, and was stored as a different model): the error lists the projector's own arguments."""
    from stf_bench.methods.registry import get_projector, list_methods

    cls = get_projector(projector)
    own = {p.config_field for p in cls.params if p.config_field}
    owners: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for method in list_methods("projector"):
        for p in method.params:
            if p.config_field:
                owners.setdefault(p.config_field, []).append(method.name)
                names[p.config_field] = p.name
    foreign = [f for f in fields if f in owners and f not in own]
    if foreign:
        valid = "; ".join(p.describe() for p in cls.params) or "none"
        raise StfBenchError(f"model argument {names[foreign[0]]!r} does not apply to {model}: its projector "
                            f"{projector} has no such argument (it belongs to {', '.join(owners[foreign[0]])}); "
                            f"{projector}'s arguments: {valid}")


def own_overrides(name: str, overrides: dict) -> dict:
    """`overrides` less the projector arguments a preset's projector does not have (`stf-bench models --model-args
    k=4` applies k to the presets that have it and lists the others unchanged)."""
    from stf_bench.methods.registry import get_projector

    fields = override_fields()
    preset = get_preset(name)
    projector = get_projector(str(overrides.get("projector", preset.projector)))
    own = {p.name for p in projector.params} | {p.config_field for p in projector.params}
    projector_args = {k: field for k, field in fields.items() if field not in BASE_OVERRIDE_FIELDS.values()}
    others = set(projector_args) | set(projector_args.values())
    return {k: v for k, v in overrides.items() if k in own or k not in others}


def vision_config(preset: Preset, image_size=None) -> dict:
    """The preset's vision tower config, at `image_size` (the `image_size=` model argument) when given: a positive
    multiple of the patch size (224 for CLIP ViT-L/14 at 224 px, the paper's Table 11)."""
    vision = dict(VISION[preset.vision])
    if image_size is not None:
        patch = vision["patch_size"]
        try:
            size = int(image_size)
        except (TypeError, ValueError):
            size = 0
        if size <= 0 or size % patch:
            raise StfBenchError(f"model argument image_size={image_size}: use a positive multiple of the patch size "
                                f"{patch} (e.g. 224 or 336)")
        vision["image_size"] = size
    return vision


def preset_shape(name: str, image_size=None):
    """The `ModelShape` of a preset (at `image_size` when given), read off its declared configs (no torch, no
    transformers)."""
    from stf_bench.methods.base import ModelShape

    preset = get_preset(name)
    vision, text = vision_config(preset, image_size), LLMS[preset.llm]
    return ModelShape(grid=vision["image_size"] // vision["patch_size"], vision_layers=vision["num_hidden_layers"],
                      vision_width=vision["hidden_size"], llm_width=text["hidden_size"],
                      llm_layers=text["num_hidden_layers"])


def check_model_args(name: str, model_args: dict):
    """Before any heavy import: every model argument's name, and, for a preset, the projector's and the method's
    values on its shape (k divides the grid, e divides k^2, FastV's k below the LLM's layers, ...), exactly as the
    model's config will check them. Loads the method declarations only, never torch.

    Returns a preset's (projector, training-free method or None), built for its shape; None for a checkpoint."""
    from stf_bench.methods.registry import get_projector, get_training_free, list_methods

    fields, _ = split_overrides(model_args)
    if name not in PRESETS:  # a checkpoint: its projector and shape are known once its config is read
        return None
    preset = get_preset(name)
    fields = {**split_overrides(preset.settings)[0], **fields}
    projector = fields.get("projector_type", preset.projector)
    refuse_foreign_fields(projector, fields, name)
    shape = preset_shape(name, fields.get("image_size"))
    cls = get_projector(projector)
    built = cls(shape, **{p.name: fields[p.config_field] for p in cls.params if p.config_field in fields})
    method = get_training_free(fields["method"])(shape, **(fields.get("method_args") or {})) \
        if fields.get("method") else None
    if method is not None and method.acts_on == "vision" and not built.token_wise:  # as StfLlavaConfig refuses it
        token_wise = ", ".join(m.name for m in list_methods("projector") if m.token_wise)
        raise StfBenchError(f"method {method.name!r} selects vision tokens before the projector, but {name}'s "
                            f"projector {projector!r} does not map tokens one by one; pick a model whose projector "
                            f"does ({token_wise}: `stf-bench models`)")
    return built, method


def llm_params(name: str) -> int:
    """Parameters of a preset's LLM backbone (Llama: embeddings, attention and MLP weights without biases, two
    RMSNorms per layer and the final one; no `lm_head`), from its declared widths."""
    text = LLMS[get_preset(name).llm]
    h, layers, heads = text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]
    kv_width = text["num_key_value_heads"] * (h // heads)
    layer = 2 * h * h + 2 * h * kv_width + 3 * h * text["intermediate_size"] + 2 * h
    return text["vocab_size"] * h + layers * layer + h


def preset_config(name: str, **overrides):
    """The StfLlavaConfig of a preset with config overrides applied (k=, e=, mbtf_blocks=, ...)."""
    from transformers import CLIPVisionConfig, LlamaConfig

    from stf_bench.models.modeling import StfLlavaConfig

    preset = get_preset(name)
    fields, _ = split_overrides({**preset.settings, **overrides})
    fields.setdefault("projector_type", preset.projector)
    refuse_foreign_fields(fields["projector_type"], fields, name)
    text = LlamaConfig(**LLMS[preset.llm])
    vision = CLIPVisionConfig(**vision_config(preset, fields.pop("image_size", None)))
    image_token = TINY_VOCAB - 1 if preset.tiny else text.vocab_size  # outside the LLM's vocab for full size
    try:
        return StfLlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                              preset=name, **fields)
    except StfBenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise StfBenchError(f"invalid model arguments for {name}: {exc}") from None


HUB_ID = r"[\w.-]+/[\w.-]+(/[\w./-]+)?"


def check_model_name(name: str) -> None:
    """Before any slow work: `name` is a preset, an existing checkpoint directory or a hub id, else one clear error."""
    if name in PRESETS or re.fullmatch(HUB_ID, name) and not looks_like_path(name):
        return
    path = Path(name).expanduser()
    if looks_like_path(name) and not path.exists():
        raise StfBenchError(f"checkpoint directory {name} does not exist (a name with ./, ../, / or ~ is a local "
                            f"path; presets: `stf-bench models`; hub ids look like owner/name)")
    if path.is_file():
        raise StfBenchError(f"{name} is a file; pass the checkpoint's directory (a stage-1 projector file goes in "
                            f"projector_weights=..., with a preset such as stf-7b)")
    if not path.is_dir():
        get_preset(name)  # raises with the list of presets


def looks_like_path(name: str) -> bool:
    """A local path, never a preset or hub id: starts with /, ./, ../ or ~, holds a backslash, or exists."""
    return (name.startswith(("/", "./", "../", "~", ".\\")) or name in (".", "..") or "\\" in name
            or Path(name).exists())
