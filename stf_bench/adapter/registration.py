"""lmms-eval model registration through the `lmms_eval.models` entry point (the decorator alone is not enough in 0.7)."""

from __future__ import annotations

MODEL_ID = "stf_bench"
CLASS_PATH = "stf_bench.adapter.lmms_model.StfBenchLmms"


def manifests() -> list:
    """The manifests lmms-eval's registry loads: one simple-mode model, `stf_bench`, for the whole family.

    A callable so that importing this module (which lmms-eval does while its registry is being built) stays cheap.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH, aliases=("stf-bench",))]
