"""`pixel_shuffle`: space-to-depth of each `scale` x `scale` window of the patch grid, then an MLP to the LLM width.

The pixel-shuffle connector of InternVL and Idefics3, here as a trained projector: (B, G*G, C) vision tokens ->
`torch.nn.functional.pixel_unshuffle` -> (B, (G/scale)^2, scale^2 * C) -> Linear - GELU - Linear -> (B, (G/scale)^2,
H). It has an argument of its own, `scale`, stored in the model config's field `pixel_shuffle_scale`: the `Param`
declares the field and its default, and that is all the config needs. The last line adds its presets (the
full-size one and its `-tiny` twin).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stf_bench.errors import StfBenchError
from stf_bench.methods import Param, ProjectorMethod
from stf_bench.methods.base import divisors, mlp_params
from stf_bench.models.presets import register_presets

__all__ = ["PixelShuffle", "PixelShuffleProjector"]


class PixelShuffle(ProjectorMethod):
    name = "pixel_shuffle"
    summary = "space-to-depth of scale x scale windows + MLP, (24/scale)^2 tokens (a plug-in example)"
    params = (Param("scale", 2, int, "window side folded into channels; must divide the patch grid",
                    "pixel_shuffle_scale", minimum=1),)

    def check(self) -> None:
        if self.args["scale"] not in divisors(self.shape.grid):
            raise StfBenchError(f"pixel_shuffle: scale={self.args['scale']} does not divide the {self.shape.grid}x"
                                f"{self.shape.grid} patch grid; valid scale: {divisors(self.shape.grid)}")

    def build(self) -> nn.Module:
        return PixelShuffleProjector(self.shape.vision_width, self.shape.llm_width, self.args["scale"])

    def param_count(self) -> int:
        c, h, s = self.shape.vision_width, self.shape.llm_width, self.args["scale"]
        return mlp_params(s * s * c, h, h)

    def tokens_out(self, tokens_in: int) -> int:
        return (self.shape.grid // self.args["scale"]) ** 2


class PixelShuffleProjector(nn.Module):
    """(B, G*G, C) -> pixel_unshuffle -> (B, (G/s)^2, s*s*C) -> Linear - GELU - Linear -> (B, (G/s)^2, H)."""

    def __init__(self, c: int, h: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.linear_1 = nn.Linear(scale * scale * c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        g = math.isqrt(n)
        grid = x.transpose(1, 2).reshape(b, c, g, g)  # (B, C, G, G)
        folded = nn.functional.pixel_unshuffle(grid, self.scale)  # (B, C*s*s, G/s, G/s), channel-major
        tokens = folded.flatten(2).transpose(1, 2)  # (B, (G/s)^2, C*s*s), windows row-major
        return self.linear_2(self.act(self.linear_1(tokens)))


register_presets("pixelshuffle-7b", "pixel_shuffle", "vicuna-1.5-7b", tiny_name="pixelshuffle-tiny",
                 note="pixel-shuffle projector plug-in, 144 tokens (examples/projector-plugin)")
