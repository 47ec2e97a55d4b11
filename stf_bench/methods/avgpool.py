"""AvgPool (the paper's Table 6): 2x2 average pooling with stride 2, then LLaVA's MLP: 144 tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod, mlp_params
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn

WINDOW = 2


@register
class AvgPool(ProjectorMethod):
    name = "avgpool"
    summary = "2x2 average pooling + MLP, 144 tokens (Table 6)"

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import AvgPoolProjector

        return AvgPoolProjector(self.shape.vision_width, self.shape.llm_width, WINDOW)

    def param_count(self) -> int:
        return mlp_params(self.shape.vision_width, self.shape.llm_width, self.shape.llm_width)

    def tokens_out(self, tokens_in: int) -> int:
        return (self.shape.grid // WINDOW) ** 2
