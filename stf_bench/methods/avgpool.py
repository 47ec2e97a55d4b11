"""AvgPool (the paper's Table 6): 2x2 average pooling with stride 2, then LLaVA's MLP: 144 tokens."""

from __future__ import annotations

import torch
from torch import nn

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.layers import window_avgpool
from stf_bench.methods.llava_mlp import LlavaMlpProjector
from stf_bench.methods.registry import register

WINDOW = 2


class AvgPoolProjector(LlavaMlpProjector):
    """k x k average pooling, stride k, then the LLaVA MLP."""

    def __init__(self, c: int, h: int, k: int = WINDOW):
        super().__init__(c, h)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(window_avgpool(x, self.k))  # (B, G*G, C) -> (B, (G/k)^2, H)


@register
class AvgPool(ProjectorMethod):
    name = "avgpool"
    summary = "2x2 average pooling + MLP, 144 tokens (Table 6)"

    def build(self) -> nn.Module:
        return AvgPoolProjector(self.shape.vision_width, self.shape.llm_width)

    def tokens_out(self, tokens_in: int) -> int:
        return (self.shape.grid // WINDOW) ** 2
