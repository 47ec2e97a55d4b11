"""TokenConcat (the paper's Table 6): plain 2x2 token concatenation (token-major), then an MLP: 144 tokens."""

from __future__ import annotations

import torch
from torch import nn

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.layers import window_concat
from stf_bench.methods.registry import register

WINDOW = 2


class TokenConcatProjector(nn.Module):
    """window_concat(k), then Linear(k*k*C, H) - GELU - Linear(H, H)."""

    def __init__(self, c: int, h: int, k: int = WINDOW):
        super().__init__()
        self.k = k
        self.linear_1 = nn.Linear(k * k * c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(window_concat(x, self.k))))  # (B, (G/k)^2, H)


@register
class TokenConcat(ProjectorMethod):
    name = "token_concat"
    summary = "2x2 token concatenation + MLP, 144 tokens (Table 6)"
    aliases = ("tokenconcat",)

    def build(self) -> nn.Module:
        return TokenConcatProjector(self.shape.vision_width, self.shape.llm_width)

    def tokens_out(self, tokens_in: int) -> int:
        return (self.shape.grid // WINDOW) ** 2
