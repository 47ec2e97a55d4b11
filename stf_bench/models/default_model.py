"""Shipped preset weights (`Preset.shipped`: a file in stf_bench/models/default/, loaded strictly into the preset's
build), meant for the default model of `stf-bench run`: `stf-tiny-trained`, the stf-tiny preset trained by
`stf-bench train` on the built-in training samples (`scripts/make_default_model.py`).

Registered in stf_bench/models/presets.py (`shipped=DEFAULT_WEIGHTS.name`). Its scores on the sample data show that
the pipeline learns (tests/models/test_default_model.py compares them with the untrained stf-tiny's); they measure
nothing about the method, and the preset's note (NOTE, in its model summary) says so.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "stf-tiny-trained"
TRAINED_FROM = "stf-tiny"  # the preset trained (its architecture, tokenizer and processor)
DEFAULT_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_WEIGHTS = DEFAULT_DIR / "stf-tiny-trained.safetensors"
DEFAULT_PROVENANCE = DEFAULT_DIR / "training.json"
NOTE = "trained by stf-bench on its sample data; not a real score"


def load_shipped(model, filename: str) -> None:
    """Load a preset's shipped weights (`Preset.shipped`, a file in DEFAULT_DIR) into `model`, built from the
    preset's config: every tensor, strictly; a missing file or a shape that model arguments changed is one clear
    error naming the fix."""
    from safetensors.torch import load_file

    from stf_bench.errors import StfBenchError

    path = DEFAULT_DIR / filename
    if not path.is_file():
        raise StfBenchError(f"the shipped weights {path} are missing; re-make them with "
                            f"`python scripts/make_default_model.py` (a few minutes on CPU) or reinstall stf-bench")
    state = load_file(str(path))
    own = {k: tuple(getattr(v, "ds_shape", v.shape)) for k, v in model.state_dict(keep_vars=True).items()}
    for key, tensor in state.items():  # ds_shape: a parameter partitioned by ZeRO-3 (`train --deepspeed zero3`)
        if key in own and own[key] != tuple(tensor.shape):
            raise StfBenchError(f"{path.name} does not fit the model asked for: {key} is {tuple(tensor.shape)} "
                                f"there, {own[key]} here; its model arguments change shapes the "
                                f"shipped weights were trained with (train one with `stf-bench train`)")
    if any(hasattr(p, "ds_id") for p in model.parameters()):
        from stf_bench.models.partitioned import write_weights

        missing = [k for k in own if k not in state and k not in _tied(model)]
        unexpected = [k for k in state if k not in own]
        if not missing and not unexpected:
            write_weights(model, state)
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied(model)]
    if missing or unexpected:
        raise StfBenchError(f"{path.name} does not fit the model asked for: "
                            f"{'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0]}; "
                            f"re-make it with `python scripts/make_default_model.py`")


def _tied(model) -> set[str]:
    """Keys that save_pretrained leaves out because they share a tensor with another (tied embeddings)."""
    keys = getattr(model, "_tied_weights_keys", None) or {}
    return set(keys if not isinstance(keys, dict) else keys.keys())
