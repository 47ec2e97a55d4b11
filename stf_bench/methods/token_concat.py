"""TokenConcat (the paper's Table 6): plain 2x2 token concatenation (token-major), then an MLP: 144 tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod, mlp_params
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn

WINDOW = 2


@register
class TokenConcat(ProjectorMethod):
    name = "token_concat"
    summary = "2x2 token concatenation + MLP, 144 tokens (Table 6)"
    aliases = ("tokenconcat",)

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import TokenConcatProjector

        return TokenConcatProjector(self.shape.vision_width, self.shape.llm_width, WINDOW)

    def param_count(self) -> int:
        return mlp_params(WINDOW * WINDOW * self.shape.vision_width, self.shape.llm_width, self.shape.llm_width)

    def tokens_out(self, tokens_in: int) -> int:
        return (self.shape.grid // WINDOW) ** 2
