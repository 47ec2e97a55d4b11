"""The model family: projectors, the LLaVA subclass, presets, processor and checkpoint loading."""

from stf_bench.models.loading import load_model
from stf_bench.models.modeling import StfLlavaConfig, StfLlavaForConditionalGeneration
from stf_bench.models.presets import get_preset, list_presets, parse_model_args

__all__ = ["StfLlavaConfig", "StfLlavaForConditionalGeneration", "get_preset", "list_presets", "load_model",
           "parse_model_args"]
