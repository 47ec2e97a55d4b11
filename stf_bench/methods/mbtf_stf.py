"""MBTF + STF, the released LLaVA-STF model: M ViT blocks fused per token, then k x k windows fused; 144 tokens.

In the original-LLaVA checkpoint layout of the release, MBTF is `model.mm_projector_crosslayer` and STF
`model.mm_projector` (docs/facts.md section 2); the same names in its stage-1 `mm_projector.bin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.fusion import (
    MBTF_PARAMS,
    STF_PARAMS,
    check_mbtf,
    check_stf,
    fusion_params,
    mbtf_layers,
    stf_tokens,
)
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn


@register
class MbtfStf(ProjectorMethod):
    name = "mbtf+stf"
    summary = "MBTF then STF, the released model: 144 tokens at k=2, E=1"
    aliases = ("mbtf_stf",)
    params = MBTF_PARAMS + STF_PARAMS
    components = ("mbtf", "stf")
    checkpoint_keys = {"original": {"model.mm_projector_crosslayer.": "mbtf.", "model.mm_projector.": "stf."}}

    def check(self) -> None:
        check_stf(self.args, self.shape.grid)
        check_mbtf(self.args, self.shape.vision_layers)

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import FusionProjector

        return FusionProjector(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=self.args["mbtf_blocks"],
                               k=self.args["k"], e=self.args["e"], stf_hidden=self.args["stf_hidden"])

    def param_count(self) -> int:
        return fusion_params(self.shape.vision_width, self.shape.llm_width, mbtf_blocks=self.args["mbtf_blocks"],
                             k=self.args["k"], e=self.args["e"], stf_hidden=self.args["stf_hidden"])

    def feature_layers(self, default_layer: int) -> list[int]:
        return mbtf_layers(self.args["mbtf_blocks"], self.shape.vision_layers, self.args["mbtf_top_layer"])

    def tokens_out(self, tokens_in: int) -> int:
        return stf_tokens(self.args, self.shape.grid)

    @classmethod
    def config_from_checkpoint(cls, fmt: str, state: dict, vision_width: int) -> dict:
        if fmt != "original":
            return {}
        w_mbtf = state["model.mm_projector_crosslayer.0.weight"]  # (4C, M*C)
        return {"mbtf_blocks": w_mbtf.shape[1] // vision_width,
                "stf_hidden": state["model.mm_projector.0.weight"].shape[0]}
