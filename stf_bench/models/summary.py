"""One preset's facts for `stf-bench models`: counts computed from the model built on `meta` (nothing allocated)."""

from __future__ import annotations


def describe(name: str, **overrides) -> dict:
    """Name, projector, visual tokens, parameter counts, LLM, vision tower, projector arguments, weights, note."""
    from stf_bench.models.loading import load_model
    from stf_bench.models.presets import get_preset

    preset = get_preset(name)
    model, _ = load_model(name, random_weights=True, device="meta", **overrides)
    projector = model.config.projector_method
    return {
        "name": name,
        "projector": projector.name,
        "visual_tokens": model.num_visual_tokens,
        "projector_params": model.projector_params(),
        "llm": preset.llm,
        "llm_params": sum(p.numel() for p in model.model.language_model.parameters()),
        "vision_tower": preset.vision,
        "projector_args": dict(projector.args),  # what the projector declares (k, e, mbtf_blocks, ...)
        "weights": preset.weights or ("deterministic (seed 0), built offline" if preset.tiny else None),
        "note": preset.note,
    }
