"""What a recorded model is (projector, k, E, MBTF blocks, LLM, ...), so the report knows which tables it joins.

Attributes come from, in increasing priority: the preset registry (`stf_bench.models.presets`, by the model or
`preset=` name), the model config recorded with the run, and the run's model arguments (`k=4,e=8,...`).
"""

from __future__ import annotations

from typing import Any

# model-args / config keys -> attribute names
ARG_ALIASES = {"projector": "projector", "projector_type": "projector", "k": "k", "stf_k": "k", "e": "e",
               "stf_e": "e", "mbtf_blocks": "mbtf_blocks", "llm": "llm", "image_size": "image_size",
               "vision_tuned": "vision_tuned"}
PROJECTOR_ALIASES = {"tokenconcat": "token_concat", "mbtf_stf": "mbtf+stf", "q-former": "qformer",
                     "q_former": "qformer", "mlp": "mlp2x_gelu"}
STF_PROJECTORS = ("stf", "mbtf+stf")
MBTF_PROJECTORS = ("mbtf", "mbtf+stf")
DEFAULT_IMAGE_SIZE = 336
# model arguments that do not change what the model computes: left out of a row's label and identity
# (`data` stays: a score on the embedded sample rows is not a benchmark score)
RUN_ONLY_ARGS = {"pretrained", "preset", "model", "device", "device_map", "dtype", "torch_dtype", "batch_size",
                 "attn_implementation", "protocol", "data_dir", "max_new_tokens", "use_cache", "_positional"}

WEIGHTS_AND_DATA_ARGS = {"data", "random_weights", "seed", "projector_weights", "vision_tower"}


def preset_attributes(name: str | None) -> dict:
    """Attributes of a registered preset (projector, llm, its settings), or {} for other names."""
    if not name:
        return {}
    try:
        from stf_bench.models.presets import PRESETS
    except Exception:  # the registry is optional here: a report must render without the model code
        return {}
    preset = PRESETS.get(name)
    if preset is None:
        return {}
    attrs = {"preset": name, "projector": preset.projector, "llm": preset.llm}
    attrs.update(_normalize(preset.settings))
    return attrs


def _normalize(values: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = ARG_ALIASES.get(key)
        if name is None or value is None:
            continue
        if name == "projector":
            value = PROJECTOR_ALIASES.get(str(value).lower(), str(value).lower())
        elif name in ("k", "e", "mbtf_blocks", "image_size"):
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        elif name == "vision_tuned":
            value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        out[name] = value
    return out


def run_attributes(model: str, model_args: dict | None = None, model_config: dict | None = None) -> dict:
    """Normalized attributes of a recorded model; defaults filled in (k=2, E=1, 8 MBTF blocks, frozen vision)."""
    model_args = model_args or {}
    attrs = preset_attributes(model_args.get("preset") or model_args.get("pretrained") or model)
    if model_config:
        attrs.update(preset_attributes(model_config.get("preset")) if not attrs else {})
        config_attrs = _normalize({k: v for k, v in model_config.items() if k != "image_size"})
        attrs.update(config_attrs)
        size = (model_config.get("vision_config") or {}).get("image_size") or model_config.get("image_size")
        if size and int(size) != DEFAULT_IMAGE_SIZE:
            attrs["image_size"] = int(size)
    attrs.update(_normalize(model_args))
    if model_args.get("data") is not None:
        attrs["data"] = str(model_args["data"])
    projector = attrs.get("projector")
    if projector in STF_PROJECTORS:
        attrs.setdefault("k", 2)
        attrs.setdefault("e", 1)
    if projector in MBTF_PROJECTORS:
        attrs.setdefault("mbtf_blocks", 8)
    attrs.setdefault("vision_tuned", False)
    return attrs


def matches(attrs: dict, pattern: dict, keys: list[str] | None = None) -> bool:
    """Whether `attrs` agrees with `pattern` on `keys` (default: all of the pattern's keys; list = any of)."""
    for key in pattern if keys is None else keys:
        if key not in pattern:
            return False
        want, have = pattern[key], attrs.get(key)
        if isinstance(want, list) and have not in want or not isinstance(want, list) and have != want:
            return False
    return True


def identity_args(model_args: dict) -> dict:
    """The model arguments that change what the model computes (for a row's identity and label)."""
    return {k: v for k, v in model_args.items() if k not in RUN_ONLY_ARGS}


def architecture_args(model_args: dict) -> dict:
    """The model arguments that change the architecture (what FLOPs depend on): not data, not weights."""
    return {k: v for k, v in identity_args(model_args).items() if k not in WEIGHTS_AND_DATA_ARGS}


def row_label(model: str, model_args: dict, protocol: str | None) -> str:
    """'stf-7b (k=4, e=8) [llava]': model, the arguments that matter, the protocol."""
    args = identity_args(model_args)
    label = model + (f" ({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
    return label + (f" [{protocol}]" if protocol else "")
