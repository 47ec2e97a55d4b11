"""The model family: projectors, the LLaVA subclass, presets, processor and checkpoint loading.

The public names are imported on first use, so that `stf_bench.models.presets` (names and configs, no torch)
stays cheap for the command line's argument checks.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"StfLlavaConfig": "stf_bench.models.modeling", "StfLlavaForConditionalGeneration": "stf_bench.models.modeling",
            "get_preset": "stf_bench.models.presets", "list_presets": "stf_bench.models.presets",
            "load_model": "stf_bench.models.loading"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stf_bench.models' has no attribute {name!r}")
