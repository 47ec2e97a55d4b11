"""MBTF alone (the paper's Table 3): M ViT blocks fused per token, then LLaVA's MLP; 576 tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.fusion import MBTF_PARAMS, check_mbtf, fusion_params, mbtf_layers
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn


@register
class Mbtf(ProjectorMethod):
    name = "mbtf"
    summary = "Multi-Block Token Fusion, 576 tokens (Table 3)"
    params = MBTF_PARAMS
    token_wise = True
    components = ("mbtf",)

    def check(self) -> None:
        check_mbtf(self.args, self.shape.vision_layers)

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import FusionProjector

        return FusionProjector(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=self.args["mbtf_blocks"],
                               k=None)

    def param_count(self) -> int:
        return fusion_params(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=self.args["mbtf_blocks"],
                             k=None)

    def feature_layers(self, default_layer: int) -> list[int]:
        return mbtf_layers(self.args["mbtf_blocks"], self.shape.vision_layers, self.args["mbtf_top_layer"])
