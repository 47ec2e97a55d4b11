"""One preset's facts for `stf-bench models`, from the declarations alone: no torch, no model built (a listing of
every preset took 12 s when each was built on `meta`; tests/models/test_presets.py checks these counts against
the models built on `meta`)."""

from __future__ import annotations


def describe(name: str, **overrides) -> dict:
    """Name, projector, visual tokens, parameter counts, LLM, vision tower, projector arguments, weights, note."""
    from stf_bench.models.presets import check_model_args, get_preset, llm_params, preset_shape

    preset = get_preset(name)
    projector, method = check_model_args(name, overrides)
    tokens = preset_shape(name, overrides.get("image_size")).grid ** 2
    if method is not None and method.acts_on == "vision":  # as StfLlavaConfig.num_visual_tokens counts them
        tokens = method.tokens_out(tokens)
    return {
        "name": name,
        "projector": projector.name,
        "visual_tokens": projector.tokens_out(tokens),
        "projector_params": projector.param_count(),
        "llm": preset.llm,
        "llm_params": llm_params(name),
        "vision_tower": preset.vision,
        "projector_args": dict(projector.args),  # what the projector declares (k, e, mbtf_blocks, ...)
        "weights": preset.weights or (f"shipped: {preset.shipped} (trained on sample data)" if preset.shipped else
                                      "deterministic (seed 0), built offline" if preset.tiny else None),
        "note": preset.note,
    }
