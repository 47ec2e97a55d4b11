"""LLaVA-1.5's projector, `mlp2x_gelu`: Linear(C, H) - GELU - Linear(H, H) on each of the 576 tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod, mlp_params
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn


# the original-LLaVA layout of this MLP (an nn.Sequential called mm_projector), in checkpoints and stage-1 files
ORIGINAL_MLP_KEYS = {"model.mm_projector.0.": "linear_1.", "model.mm_projector.2.": "linear_2."}


@register
class LlavaMlp(ProjectorMethod):
    name = "mlp2x_gelu"
    summary = "LLaVA-1.5's two-layer MLP, 576 tokens"
    aliases = ("mlp",)
    token_wise = True
    checkpoint_keys = {"original": ORIGINAL_MLP_KEYS, "transformers": {"multi_modal_projector.": ""}}

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import LlavaMlpProjector

        return LlavaMlpProjector(self.shape.vision_width, self.shape.llm_width)

    def param_count(self) -> int:
        return mlp_params(self.shape.vision_width, self.shape.llm_width, self.shape.llm_width)
