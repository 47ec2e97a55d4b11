"""STF alone (the paper's Table 3): k x k windows of the penultimate ViT block fused into E tokens each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.fusion import STF_PARAMS, check_stf, fusion_params, stf_tokens
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn


@register
class Stf(ProjectorMethod):
    name = "stf"
    summary = "Spatial Token Fusion, (24/k)^2 * E tokens (Table 3)"
    params = STF_PARAMS
    components = ("stf",)

    def check(self) -> None:
        check_stf(self.args, self.shape.grid)

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import FusionProjector

        return FusionProjector(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=None, k=self.args["k"],
                               e=self.args["e"], stf_hidden=self.args["stf_hidden"])

    def param_count(self) -> int:
        return fusion_params(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=None, k=self.args["k"],
                             e=self.args["e"], stf_hidden=self.args["stf_hidden"])

    def tokens_out(self, tokens_in: int) -> int:
        return stf_tokens(self.args, self.shape.grid)
