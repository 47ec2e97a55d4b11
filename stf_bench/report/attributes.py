"""What a recorded model is (projector, k, E, MBTF blocks, LLM, ...), so the report knows which tables it joins.

Attributes come from, in increasing priority: the preset registry (`stf_bench.models.presets`, by the model or
`preset=` name), the provenance of a checkpoint `stf-bench train` made (its preset and model arguments), the model
config recorded with the run, and the run's model arguments (`k=4,e=8,...`). A projector's arguments are attributes
under their argument names (`k`, `mbtf_blocks`, a plug-in's own), read from the method registry: each parameter's
name and config field (`stf_k`) name it, its type casts it.
"""

from __future__ import annotations

from typing import Any

from stf_bench.args import METHOD_ARG_PREFIX, TRUE_WORDS

# model-args / config keys that are not a projector's argument -> attribute names
BASE_ALIASES = {"projector": "projector", "projector_type": "projector", "llm": "llm", "image_size": "image_size",
                "vision_tuned": "vision_tuned", "method": "method"}
TRAINED_WITH = "trained_with"  # attribute of a checkpoint `stf-bench train` made: "stf-bench"
TRAINING_DATA = "training_data"  # ... and the data it was trained on ("samples", "hub", a file)
DEFAULT_IMAGE_SIZE = 336
# model arguments that do not change what the model computes: left out of a row's label and identity
# (`data` stays: a score on the embedded sample rows is not a benchmark score)
RUN_ONLY_ARGS = {"pretrained", "preset", "model", "device", "device_map", "dtype", "torch_dtype", "batch_size",
                 "attn_implementation", "protocol", "data_dir", "max_new_tokens", "use_cache", "_positional",
                 "visual_cache", "fast_paths"}

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


def projector_arguments() -> dict[str, Any]:
    """Every registered projector's arguments: name and config field -> its `Param` (the first projector declaring
    it; the registry refuses one name stored in two fields). {} when the registry cannot load (a report renders
    without the model code)."""
    try:
        from stf_bench.methods.registry import list_methods
        projectors = list_methods("projector")
    except Exception:
        return {}
    out: dict[str, Any] = {}
    for projector in projectors:
        for param in projector.params:
            for key in (param.name, param.config_field):
                if key:
                    out.setdefault(key, param)
    return out


def _normalize(values: dict) -> dict:
    out: dict[str, Any] = {}
    params = projector_arguments()
    for key, value in values.items():
        if value is None:
            continue
        if key.startswith(METHOD_ARG_PREFIX):
            out[key] = value
            continue
        param = params.get(key) if key not in BASE_ALIASES else None
        if param is not None:
            try:
                out[param.name] = param.parse(value, "report")
            except Exception:  # a value the projector would refuse: not an attribute
                continue
            continue
        name = BASE_ALIASES.get(key)
        if name in ("projector", "method"):
            value = _canonical(str(value).lower())
        elif name == "image_size":
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        elif name == "vision_tuned":
            value = value if isinstance(value, bool) else str(value).lower() in TRUE_WORDS
        elif name is None:
            continue
        out[name] = value
    return out


def training_attributes(training: dict | None) -> dict:
    """Attributes of a checkpoint from the provenance `stf-bench train` wrote (its preset, then the model arguments
    it was trained with), marked `trained_with: stf-bench` with the training data ("samples", "hub" or the file)."""
    if not training:
        return {}
    attrs = preset_attributes(training.get("preset"))
    attrs.update(_normalize(training.get("model_args") or {}))
    if (training.get("recipe") or {}).get("unfreeze_vision_tower"):  # `--unfreeze-vision-tower`: Table 13's row
        attrs["vision_tuned"] = True
    attrs[TRAINED_WITH] = "stf-bench"
    attrs[TRAINING_DATA] = training_data(training)
    return attrs


def training_data(training: dict) -> str:
    """'samples' (the training samples), 'hub' (LLaVA's sets from the hub) or the data file a model was trained on."""
    source = str((training.get("data") or {}).get("source") or "unknown")
    return "samples" if source.startswith("samples") else source


def training_note(training: dict | None) -> str:
    """'trained with stf-bench (stf-tiny, finetune, 2 steps, training data=samples)' for a row label; '' else."""
    if not training:
        return ""
    steps = training.get("steps")
    parts = [str(training.get("preset")), str(training.get("stage")),
             f"{steps} step{'s' if steps != 1 else ''}", f"training data={training_data(training)}"]
    return f"trained with stf-bench ({', '.join(parts)})"


def run_attributes(model: str, model_args: dict | None = None, model_config: dict | None = None,
                   training: dict | None = None) -> dict:
    """Normalized attributes of a recorded model; defaults filled in (k=2, E=1, 8 MBTF blocks, frozen vision).
    `training`: the provenance of a checkpoint `stf-bench train` made (the store's `runs.training`)."""
    model_args = model_args or {}
    attrs = preset_attributes(model_args.get("preset") or model_args.get("pretrained") or model)
    attrs.update(training_attributes(training))
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
    _fill_defaults(attrs)
    attrs.setdefault("vision_tuned", False)
    return attrs


def _registered(name: str | None):
    """The registered method called `name` (or one of its aliases), or None; the registry is optional here."""
    if not name:
        return None
    try:
        from stf_bench.methods.registry import find_method
    except Exception:  # a report must render without the model code
        return None
    return find_method(name)


def _canonical(name: str) -> str:
    method = _registered(name)
    return method.name if method is not None else name


def _fill_defaults(attrs: dict) -> None:
    """The defaults the projector and method declare, for the arguments a record left out (k=2, E=1, M=8, ...)."""
    projector = _registered(attrs.get("projector"))
    for param in projector.params if projector is not None else ():
        if param.default is not None:
            attrs.setdefault(param.name, param.default)
    method = _registered(attrs.get("method"))
    for param in method.params if method is not None else ():
        attrs.setdefault(METHOD_ARG_PREFIX + param.name, param.default)


def matches(attrs: dict, pattern: dict, keys: list[str] | None = None) -> bool:
    """Whether `attrs` agrees with `pattern` on `keys` (default: all of the pattern's keys; list = any of).

    A whole pattern (no `keys`) that names no method matches only attributes without one: a method applied on
    top of a model makes a different row than the model.
    """
    if keys is None and "method" not in pattern and attrs.get("method"):
        return False
    for key in pattern if keys is None else keys:
        if key not in pattern:
            return False
        want, have = pattern[key], attrs.get(key)
        if isinstance(want, list) and have not in want or not isinstance(want, list) and have != want:
            return False
    return True


def identity_args(model_args: dict) -> dict:
    """The model arguments that change what the model computes (for a row's identity and label); a method's
    arguments with its declared defaults filled in, so that `method=fastv` (lmms-eval's --model_args) and
    `--method fastv --method-args r=0.5` are one row."""
    args = {k: v for k, v in model_args.items() if k not in RUN_ONLY_ARGS}
    method = _registered(args.get("method"))
    if method is not None:  # its arguments in declared order, defaults filled in
        given = {k: args.pop(k) for k in list(args) if k.startswith(METHOD_ARG_PREFIX)}
        for param in method.params:
            key = METHOD_ARG_PREFIX + param.name
            args[key] = given.pop(key, param.default)
        args.update(given)  # arguments the method does not declare stay visible
    return args


def architecture_args(model_args: dict) -> dict:
    """The model arguments that change the architecture (what FLOPs depend on): not data, not weights."""
    return {k: v for k, v in identity_args(model_args).items() if k not in WEIGHTS_AND_DATA_ARGS}


def row_label(model: str, model_args: dict, protocol: str | None) -> str:
    """'stf-7b (k=4, e=8) [llava]' or 'llava-1.5-7b + fastv(k=2, r=0.5) [llava]': model, the arguments that matter,
    the training-free method with its arguments, the protocol."""
    from stf_bench.methods.options import method_suffix, split_method_args

    args = identity_args(model_args)
    rest, _, _ = split_method_args(args)
    label = model + (f" ({', '.join(f'{k}={v}' for k, v in rest.items())})" if rest else "") + method_suffix(args)
    return label + (f" [{protocol}]" if protocol else "")
